//! Building and pushing the image: the builder command filled in, the push retried once with
//! fresh credentials, the digest read back from the registry.

use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;
use do_core::api::segment;
use do_core::types::{GarbageCollection, Tag};
use do_core::Client;
use serde_json::json;

use super::*;

impl Runner<'_> {
    pub(super) fn pushed_digest(&self, client: &Client, registry: &str, tag: &str) -> anyhow::Result<Option<String>> {
        let path =
            format!("/v2/registries/{}/repositories/{}/tags", segment(registry), segment(&self.config().repository));
        match client.get_all::<Tag>(&path, "tags") {
            Ok(tags) => Ok(tags.into_iter().find(|t| t.tag == tag).and_then(|t| t.manifest_digest)),
            Err(error) if do_core::api::has_status(&error, 404) => Ok(None),
            Err(error) => Err(error),
        }
    }

    pub(super) fn fill(&self, command: &[String]) -> Vec<String> {
        let plan = &self.plan;
        command
            .iter()
            .map(|arg| {
                arg.replace("{image}", &plan.image)
                    .replace("{tag}", &plan.tag)
                    .replace("{registry}", &plan.registry)
                    .replace("{repository}", &self.config().repository)
                    .replace("{revision}", &plan.commit)
            })
            .collect()
    }

    /// Builds the image locally, with the user's own docker configuration (contexts, plugins,
    /// logins); the simulator builder has nothing to build.
    pub(super) fn build(&mut self) -> anyhow::Result<()> {
        if self.config().builder == "simulator" {
            self.say("  simulator: nothing to build; the push makes the image");
            return Ok(());
        }
        let command = self.fill(&self.config().build.clone());
        self.run_builder("build", &command, None)
    }

    /// Pushes the image (unless a rerun found it built from HEAD), then emits the `image`
    /// record with the digest the registry reports. A push refused because a GC started
    /// meanwhile waits for the GC and is tried once more.
    pub(super) fn push(&mut self) -> anyhow::Result<()> {
        let client = self.client()?;
        let (registry, tag, image) = (self.plan.registry.clone(), self.plan.tag.clone(), self.plan.image.clone());
        let pushed = self.plan.reuse.is_none();
        if let Some(digest) = &self.plan.reuse {
            self.say(&format!("  {image} is already in the registry ({digest}), built from HEAD; not pushed again"));
        } else if let Err(first) = self.push_once(&client) {
            let gc_path = format!("/v2/registries/{}/garbage-collection", segment(&registry));
            let active = client.get_object_or_none::<GarbageCollection>(&gc_path, "garbage_collection")?;
            if active.is_none() {
                return Err(first);
            }
            self.say("  the push was refused while a garbage collection runs; waiting for it, then pushing once more");
            let args = vec![
                "--registry".to_string(),
                registry.clone(),
                "--interval".into(),
                self.config().interval.clone(),
                "--timeout".into(),
                self.config().gc_timeout.clone(),
            ];
            let code = self.tool("push", "do-gc-wait", &self.options.binaries.gc_wait.clone(), &args)?;
            anyhow::ensure!(code == 0, "the garbage collection did not end (exit {code})");
            self.push_once(&client).context("the push failed again after the garbage collection")?;
        }
        let digest = match &self.plan.reuse {
            Some(digest) => digest.clone(),
            None => self
                .pushed_digest(&client, &registry, &tag)?
                .with_context(|| format!("pushed, but the registry does not list {tag}"))?,
        };
        let record = ImageRecord { registry, repository: self.config().repository.clone(), tag, digest, image, pushed };
        let line = do_core::contract::record_line("image", 1, &record)?;
        self.stream.extend_from_slice(line.as_bytes());
        self.stream.push(b'\n');
        std::fs::write(self.staging.path().join("5-push.jsonl"), &self.stream)?;
        self.steps.push(StepRun {
            name: "push".into(),
            what: "builder".into(),
            code: 0,
            stdout: self.stream.clone(),
            stderr: String::new(),
        });
        Ok(())
    }

    pub(super) fn push_once(&mut self, client: &Client) -> anyhow::Result<()> {
        let config = self.config().clone();
        match config.builder.as_str() {
            "simulator" => {
                // What `docker buildx build --push` makes: an index with per-platform images and
                // attestations, labelled with the commit.
                let body = json!({"registry": self.plan.registry, "repository": config.repository, "tag": self.plan.tag,
                                  "size_bytes": 15 * 1024 * 1024, "platforms": ["linux/amd64", "linux/arm64"], "attestations": true,
                                  "labels": {REVISION_LABEL: self.plan.commit}});
                client.post_raw("/_sim/push", Some(&body)).context("the simulator refused the push")?;
                self.say(&format!("  pushed {} to the simulator", self.plan.image));
                Ok(())
            }
            "docker" => {
                // Short-lived read-write credentials (do-login's), in a DOCKER_CONFIG only the
                // push sees (removed when dropped).
                let docker_config = tempfile::tempdir()?;
                do_login::login_into(client, &self.plan.registry, Duration::from_secs(900), docker_config.path())
                    .context("cannot log docker in to the registry")?;
                let command = self.fill(&config.push);
                self.run_builder("push", &command, Some(docker_config.path()))
            }
            _ => {
                let command = self.fill(&config.push);
                self.run_builder("push", &command, None)
            }
        }
    }

    /// Runs a build or push command, its output shown as it comes and saved to the step's log.
    pub(super) fn run_builder(
        &mut self,
        step: &str,
        args: &[String],
        docker_config: Option<&Path>,
    ) -> anyhow::Result<()> {
        let mut process = Command::new(&args[0]);
        process
            .args(&args[1..])
            .current_dir(&self.options.repo_dir)
            .envs(self.options.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(dir) = docker_config {
            process.env("DOCKER_CONFIG", dir);
        }
        let started = Instant::now();
        let mut child = process.spawn().with_context(|| format!("cannot run the {step} command {:?}", args[0]))?;
        let echo = self.options.echo;
        let forward = |stream: Box<dyn Read + Send>| {
            std::thread::spawn(move || {
                let mut collected = String::new();
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    let line = do_core::redact::redact(&line);
                    if echo {
                        eprintln!("  | {line}");
                    }
                    collected.push_str(&line);
                    collected.push('\n');
                }
                collected
            })
        };
        let out = forward(Box::new(child.stdout.take().expect("piped")));
        let err = forward(Box::new(child.stderr.take().expect("piped")));
        let status = child.wait()?;
        let log = format!("{}{}", out.join().unwrap_or_default(), err.join().unwrap_or_default());
        let file = format!("{}-{step}.builder.log", step_number(step));
        std::fs::write(self.staging.path().join(file), &log)?;
        self.steps.push(StepRun {
            name: step.into(),
            what: "builder".into(),
            code: status.code().unwrap_or(1),
            stdout: Vec::new(),
            stderr: log,
        });
        anyhow::ensure!(
            status.success(),
            "the {step} command failed ({status}) after {}",
            do_core::duration::human(started.elapsed())
        );
        Ok(())
    }
}
