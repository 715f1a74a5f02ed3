//! `cargo xtask release`: the whole release as a chain of the real tools, each a process fed
//! the previous one's JSON Lines: do-gc-wait, do-tag, do-gc-wait again right before the push,
//! the build and push (which emits the `image` record), do-deploy, do-prune. Every step's
//! output is saved under `target/xtask/release-<tag>/`. A dry run unless `execute`.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use do_core::api::{segment, ClientConfig, RetryPolicy, Secret};
use do_core::progress::Progress;
use do_core::types::{GarbageCollection, Tag};
use do_core::Client;
use serde_json::{json, Value};

use crate::config::Config;

/// The `image` record, v1: what the push step emits.
#[derive(Debug, serde::Serialize)]
pub struct ImageRecord {
    pub registry: String,
    pub repository: String,
    pub tag: String,
    pub digest: String,
    /// The full reference pushed.
    pub image: String,
    /// False when a rerun found the image already in the registry.
    pub pushed: bool,
}

/// The tool binaries, built once.
#[derive(Clone, Debug)]
pub struct Binaries {
    pub gc_wait: PathBuf,
    pub tag: PathBuf,
    pub deploy: PathBuf,
    pub prune: PathBuf,
}

impl Binaries {
    pub fn in_dir(dir: &Path) -> Binaries {
        Binaries {
            gc_wait: dir.join("do-gc-wait"),
            tag: dir.join("do-tag"),
            deploy: dir.join("do-deploy"),
            prune: dir.join("do-prune"),
        }
    }

    /// `cargo build --bins` in the workspace, then the paths of the binaries.
    pub fn build(workspace: &Path) -> anyhow::Result<Binaries> {
        let sh = xshell::Shell::new()?;
        sh.change_dir(workspace);
        xshell::cmd!(sh, "cargo build --quiet --bins").run().context("building the tools failed")?;
        Ok(Binaries::in_dir(&workspace.join("target/debug")))
    }
}

pub struct Options {
    pub config: Config,
    /// The app's git repository.
    pub repo_dir: PathBuf,
    pub execute: bool,
    pub binaries: Binaries,
    /// Step outputs go to `out_root/release-<tag>/`.
    pub out_root: PathBuf,
    /// Extra environment for the tools and the push step (the API URL and token, say).
    pub env: Vec<(String, String)>,
    /// Show the tools' progress on stderr as they run.
    pub echo: bool,
}

#[derive(Debug)]
pub struct StepRun {
    pub name: String,
    pub code: i32,
    pub stdout: Vec<u8>,
    pub stderr: String,
}

#[derive(Debug)]
pub struct Outcome {
    pub tag: Option<String>,
    pub out_dir: Option<PathBuf>,
    pub steps: Vec<StepRun>,
    /// Every record of every step: the run report.
    pub report: Vec<u8>,
    /// 0, or the exit code of the step that failed.
    pub exit: i32,
    /// The plan for people (dry run) or the summary (executed).
    pub text: String,
}

impl Outcome {
    pub fn records(&self) -> Vec<Value> {
        String::from_utf8_lossy(&self.report).lines().filter_map(|line| serde_json::from_str(line).ok()).collect()
    }

    pub fn last(&self, kind: &str) -> Option<Value> {
        self.records().into_iter().rev().find(|r| r["kind"] == kind).map(|r| r["data"].clone())
    }
}

struct Runner<'a> {
    options: &'a Options,
    staging: tempfile::TempDir,
    steps: Vec<StepRun>,
    stream: Vec<u8>,
}

pub fn release(options: &Options) -> anyhow::Result<Outcome> {
    options.config.check()?;
    std::fs::create_dir_all(&options.out_root)
        .with_context(|| format!("cannot create {}", options.out_root.display()))?;
    let staging = tempfile::Builder::new().prefix("release-pending-").tempdir_in(&options.out_root)?;
    let mut runner = Runner { options, staging, steps: Vec::new(), stream: Vec::new() };
    let result = runner.run();
    let tag = last_record(&runner.stream, "tag").and_then(|t| t["tag"].as_str().map(str::to_string));
    let out_dir = runner.keep_outputs(tag.as_deref())?;
    let (exit, text) = result?;
    Ok(Outcome { tag, out_dir: Some(out_dir), steps: runner.steps, report: runner.stream, exit, text })
}

/// Deletions, and how many of them are untagged manifests, across a prune record's repositories.
fn prune_counts(prune: &Value) -> (usize, usize) {
    let repositories = prune["repositories"].as_array().map(Vec::as_slice).unwrap_or_default();
    let deletions: Vec<&Value> =
        repositories.iter().flat_map(|r| r["deleted"].as_array().into_iter().flatten()).collect();
    let untagged = deletions.iter().filter(|d| d["all_tags"].as_array().is_some_and(Vec::is_empty)).count();
    (deletions.len(), untagged)
}

fn last_record(stream: &[u8], kind: &str) -> Option<Value> {
    String::from_utf8_lossy(stream)
        .lines()
        .rev()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .find(|record| record["kind"] == kind)
        .map(|record| record["data"].clone())
}

impl Runner<'_> {
    fn config(&self) -> &Config {
        &self.options.config
    }

    fn env(&self, key: &str) -> Option<String> {
        self.options.env.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone()).or_else(|| std::env::var(key).ok())
    }

    fn say(&self, message: &str) {
        if self.options.echo {
            eprintln!("release: {message}");
        }
    }

    /// Runs the steps; returns the exit code (0 or the failed step's) and the text for people.
    fn run(&mut self) -> anyhow::Result<(i32, String)> {
        let config = self.config().clone();
        let execute = self.options.execute;
        let interval = config.poll_interval.clone();
        let registry_args =
            if config.registry.is_empty() { vec![] } else { vec!["--registry".to_string(), config.registry.clone()] };

        let mut gc_args = registry_args.clone();
        gc_args.extend(["--interval".into(), interval.clone(), "--timeout".into()]);
        // A dry run looks once: a running GC is reported, not waited for.
        gc_args.push(if execute { config.gc_timeout.clone() } else { "1s".into() });
        let code = self.step("gc-wait", &self.options.binaries.gc_wait.clone(), &gc_args)?;
        let gc_busy = code == 3 && !execute;
        if code != 0 && !gc_busy {
            return Ok((code, format!("step gc-wait failed with exit {code}")));
        }

        let mut tag_args =
            vec!["-C".to_string(), self.options.repo_dir.display().to_string(), "--bump".into(), config.bump.clone()];
        tag_args.extend(["--prefix".into(), config.tag_prefix.clone(), "--remote".into(), config.remote.clone()]);
        for glob in &config.allow_branch {
            tag_args.extend(["--allow-branch".into(), glob.clone()]);
        }
        if !execute {
            tag_args.push("--dry-run".into());
        }
        let code = self.step("tag", &self.options.binaries.tag.clone(), &tag_args)?;
        if code != 0 {
            return Ok((code, format!("step tag failed with exit {code}")));
        }
        let tag = last_record(&self.stream, "tag")
            .and_then(|t| t["tag"].as_str().map(str::to_string))
            .context("do-tag gave no tag record")?;
        let registry = self.registry()?;
        let image = format!("registry.digitalocean.com/{registry}/{}:{tag}", config.repository);

        if execute {
            let code = self.step("gc-wait", &self.options.binaries.gc_wait.clone(), &gc_args)?;
            if code != 0 {
                return Ok((code, format!("step gc-wait before the push failed with exit {code}")));
            }
            if let Err(error) = self.push(&registry, &tag, &image) {
                self.say(&format!("build and push failed: {error:#}"));
                self.steps.push(StepRun {
                    name: "push".into(),
                    code: 1,
                    stdout: Vec::new(),
                    stderr: format!("{error:#}"),
                });
                return Ok((1, format!("step push failed: {error:#}")));
            }
        } else {
            self.say(&format!("dry run: would build and push {image}"));
        }

        let mut deploy_args =
            vec!["--app".to_string(), config.app.clone(), "--repository".into(), config.repository.clone()];
        deploy_args.extend(["--registry".to_string(), registry.clone()]);
        deploy_args.extend(["--interval".into(), interval.clone(), "--timeout".into(), config.deploy_timeout.clone()]);
        for component in &config.components {
            deploy_args.extend(["--component".into(), component.clone()]);
        }
        if !config.check_path.is_empty() {
            deploy_args.extend(["--check-path".into(), config.check_path.clone()]);
        }
        if !config.check_version_header.is_empty() {
            let exact_tag = format!("^{}$", tag.replace('.', "\\.").replace('+', "\\+"));
            deploy_args.extend(["--expect-header".into(), format!("{}={exact_tag}", config.check_version_header)]);
        }
        if config.rollback_on_failure {
            deploy_args.push("--rollback-on-failure".into());
        }
        if !execute {
            deploy_args.push("--dry-run".into());
        }
        let code = self.step("deploy", &self.options.binaries.deploy.clone(), &deploy_args)?;
        if code != 0 {
            return Ok((code, format!("step deploy failed with exit {code}")));
        }

        let mut prune_args =
            vec!["--registry".to_string(), registry.clone(), "--keep-last".into(), config.keep_last.to_string()];
        prune_args.extend([
            "--keep-rollback".into(),
            config.keep_rollback.to_string(),
            "--gc".into(),
            config.gc.clone(),
        ]);
        prune_args.extend(["--gc-type".into(), config.gc_type.clone(), "--interval".into(), interval]);
        if !config.keep_within.is_empty() {
            prune_args.extend(["--keep-within".into(), config.keep_within.clone()]);
        }
        for pattern in &config.keep_tags {
            prune_args.extend(["--keep-tag".into(), pattern.clone()]);
        }
        if execute {
            prune_args.push("--execute".into());
        }
        let code = self.step("prune", &self.options.binaries.prune.clone(), &prune_args)?;
        if code != 0 {
            return Ok((code, format!("step prune failed with exit {code}")));
        }
        Ok((0, if execute { self.summary() } else { self.plan(gc_busy, &image) }))
    }

    /// Runs one tool with the stream so far on stdin; its stdout becomes the stream.
    fn step(&mut self, name: &str, binary: &Path, args: &[String]) -> anyhow::Result<i32> {
        let number = self.steps.len() + 1;
        self.say(&format!("step {number}: {name}"));
        let mut child = Command::new(binary)
            .args(args)
            .envs(self.options.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("cannot start {}", binary.display()))?;
        let mut stdin = child.stdin.take().expect("piped");
        let input = self.stream.clone();
        let writer = std::thread::spawn(move || {
            let _ = stdin.write_all(&input);
        });
        let stderr = child.stderr.take().expect("piped");
        let echo = self.options.echo;
        let reader = std::thread::spawn(move || {
            let mut collected = String::new();
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if echo {
                    eprintln!("{}", do_core::redact::redact(&line));
                }
                collected.push_str(&line);
                collected.push('\n');
            }
            collected
        });
        let mut stdout = Vec::new();
        child.stdout.take().expect("piped").read_to_end(&mut stdout)?;
        let status = child.wait()?;
        let _ = writer.join();
        let stderr = reader.join().unwrap_or_default();
        let code = status.code().unwrap_or(1);
        std::fs::write(self.staging.path().join(format!("{number}-{name}.jsonl")), &stdout)?;
        std::fs::write(self.staging.path().join(format!("{number}-{name}.log")), do_core::redact::redact(&stderr))?;
        if !stdout.is_empty() {
            self.stream = stdout.clone();
        }
        self.steps.push(StepRun { name: name.to_string(), code, stdout, stderr });
        Ok(code)
    }

    fn client(&self) -> anyhow::Result<Client> {
        let token = self
            .env(do_core::api::TOKEN_VARIABLE)
            .filter(|t| !t.trim().is_empty())
            .context("no API token: set DIGITALOCEAN_ACCESS_TOKEN")?;
        let config = ClientConfig {
            api_url: self
                .env(do_core::api::API_URL_VARIABLE)
                .unwrap_or_else(|| do_core::api::DEFAULT_API_URL.to_string()),
            token: Secret::new(token),
            retry: RetryPolicy::default(),
            request_timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(10),
        };
        Client::new(config, Arc::new(Progress::new("release", !self.options.echo, false)))
    }

    fn registry(&self) -> anyhow::Result<String> {
        if !self.config().registry.is_empty() {
            return Ok(self.config().registry.clone());
        }
        Ok(do_core::registry::find(&self.client()?, None)?.name)
    }

    fn pushed_digest(&self, client: &Client, registry: &str, tag: &str) -> anyhow::Result<Option<String>> {
        let path =
            format!("/v2/registries/{}/repositories/{}/tags", segment(registry), segment(&self.config().repository));
        match client.get_all::<Tag>(&path, "tags") {
            Ok(tags) => Ok(tags.into_iter().find(|t| t.tag == tag).and_then(|t| t.manifest_digest)),
            Err(error) if do_core::api::has_status(&error, 404) => Ok(None),
            Err(error) => Err(error),
        }
    }

    /// Builds and pushes unless the registry already has the tag (a rerun), then emits the
    /// `image` record with the digest the registry reports. A push refused because a GC
    /// started meanwhile waits for the GC and is tried once more.
    fn push(&mut self, registry: &str, tag: &str, image: &str) -> anyhow::Result<()> {
        let client = self.client()?;
        let already = self.pushed_digest(&client, registry, tag)?;
        let pushed = already.is_none();
        if let Some(digest) = &already {
            self.say(&format!("{image} is already in the registry ({digest}); not pushed again"));
        } else {
            self.say(&format!("building and pushing {image}"));
            let docker_config = self.build(&client, registry, tag, image)?;
            if let Err(first) = self.push_built(&client, registry, tag, image, docker_config.path()) {
                let gc_path = format!("/v2/registries/{}/garbage-collection", segment(registry));
                let active = client.get_object_or_none::<GarbageCollection>(&gc_path, "garbage_collection")?;
                if active.is_none() {
                    return Err(first);
                }
                self.say(
                    "the push was refused while a garbage collection runs; waiting for it, then pushing once more",
                );
                let args = vec![
                    "--registry".to_string(),
                    registry.to_string(),
                    "--interval".into(),
                    self.config().poll_interval.clone(),
                    "--timeout".into(),
                    self.config().gc_timeout.clone(),
                ];
                let code = self.step("gc-wait", &self.options.binaries.gc_wait.clone(), &args)?;
                anyhow::ensure!(code == 0, "the garbage collection did not end (exit {code})");
                self.push_built(&client, registry, tag, image, docker_config.path())
                    .context("the push failed again after the garbage collection")?;
            }
        }
        let digest = match already {
            Some(digest) => digest,
            None => self
                .pushed_digest(&client, registry, tag)?
                .with_context(|| format!("pushed, but the registry does not list {tag}"))?,
        };
        let record = ImageRecord {
            registry: registry.to_string(),
            repository: self.config().repository.clone(),
            tag: tag.to_string(),
            digest,
            image: image.to_string(),
            pushed,
        };
        let line = do_core::contract::record_line("image", 1, &record)?;
        self.stream.extend_from_slice(line.as_bytes());
        self.stream.push(b'\n');
        let number = self.steps.len() + 1;
        std::fs::write(self.staging.path().join(format!("{number}-image.jsonl")), &self.stream)?;
        self.steps.push(StepRun { name: "push".into(), code: 0, stdout: self.stream.clone(), stderr: String::new() });
        Ok(())
    }

    fn fill(&self, command: &[String], registry: &str, tag: &str, image: &str) -> Vec<String> {
        let repository = &self.config().repository;
        command
            .iter()
            .map(|arg| {
                arg.replace("{image}", image)
                    .replace("{tag}", tag)
                    .replace("{registry}", registry)
                    .replace("{repository}", repository)
            })
            .collect()
    }

    /// Builds the image; with the docker builder, also writes short-lived read-write registry
    /// credentials into a temporary DOCKER_CONFIG that only the push sees (removed when dropped).
    fn build(&self, client: &Client, registry: &str, tag: &str, image: &str) -> anyhow::Result<tempfile::TempDir> {
        let config = self.config();
        let docker_config = tempfile::tempdir()?;
        if config.builder == "simulator" {
            return Ok(docker_config);
        }
        if config.builder == "docker" {
            let path =
                format!("/v2/registries/{}/docker-credentials?read_write=true&expiry_seconds=900", segment(registry));
            let auths: Value = client.get_object(&path, "auths")?;
            do_core::redact::register_docker_auths(&auths);
            let file = docker_config.path().join("config.json");
            std::fs::write(&file, json!({ "auths": auths }).to_string())?;
            #[cfg(unix)]
            std::fs::set_permissions(&file, std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
        }
        self.run_command("build", &self.fill(&config.build, registry, tag, image), docker_config.path())?;
        Ok(docker_config)
    }

    fn push_built(
        &self,
        client: &Client,
        registry: &str,
        tag: &str,
        image: &str,
        docker_config: &Path,
    ) -> anyhow::Result<()> {
        let config = self.config();
        if config.builder == "simulator" {
            // What `docker buildx build --push` makes: an index with per-platform images and attestations.
            let body = json!({"registry": registry, "repository": config.repository, "tag": tag,
                              "size_bytes": 15 * 1024 * 1024, "platforms": ["linux/amd64", "linux/arm64"], "attestations": true});
            client.post_raw("/_sim/push", Some(&body)).context("the simulator refused the push")?;
            return Ok(());
        }
        self.run_command("push", &self.fill(&config.push, registry, tag, image), docker_config)
    }

    fn run_command(&self, what: &str, args: &[String], docker_config: &Path) -> anyhow::Result<()> {
        let mut process = Command::new(&args[0]);
        process
            .args(&args[1..])
            .current_dir(&self.options.repo_dir)
            .envs(self.options.env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        if self.config().builder == "docker" {
            process.env("DOCKER_CONFIG", docker_config);
        }
        let output = process.output().with_context(|| format!("cannot run the {what} command {:?}", args[0]))?;
        if self.options.echo {
            eprint!(
                "{}",
                do_core::redact::redact(&format!(
                    "{}{}",
                    String::from_utf8_lossy(&output.stdout),
                    String::from_utf8_lossy(&output.stderr)
                ))
            );
        }
        anyhow::ensure!(output.status.success(), "the {what} command failed ({})", output.status);
        Ok(())
    }

    /// Moves the step outputs to `release-<tag>/` (`release-<tag>-dry-run/` for a dry run).
    fn keep_outputs(&self, tag: Option<&str>) -> anyhow::Result<PathBuf> {
        let name = match (tag, self.options.execute) {
            (Some(tag), true) => format!("release-{tag}"),
            (Some(tag), false) => format!("release-{tag}-dry-run"),
            (None, _) => "release-untagged".to_string(),
        };
        let target = self.options.out_root.join(name);
        std::fs::create_dir_all(&target)?;
        for entry in std::fs::read_dir(self.staging.path())? {
            let entry = entry?;
            std::fs::rename(entry.path(), target.join(entry.file_name()))?;
        }
        std::fs::write(target.join("report.jsonl"), &self.stream)?;
        Ok(target)
    }

    fn plan(&self, gc_busy: bool, image: &str) -> String {
        let mut text = String::from("release plan (dry run; nothing was changed; add --execute to release):\n");
        if let Some(gc) = last_record(&self.stream, "gc-wait") {
            let state = if gc_busy {
                format!(
                    "garbage collection {} is {}: the release would wait for it",
                    gc["gc"]["uuid"].as_str().unwrap_or("?"),
                    gc["gc"]["status"].as_str().unwrap_or("running")
                )
            } else {
                "no garbage collection running".to_string()
            };
            text.push_str(&format!("  registry  {}: {state}\n", gc["registry"].as_str().unwrap_or("?")));
        }
        if let Some(tag) = last_record(&self.stream, "tag") {
            text.push_str(&format!(
                "  tag       {} on {} ({})\n",
                tag["tag"].as_str().unwrap_or("?"),
                tag["commit"].as_str().unwrap_or("?").get(..12).unwrap_or(""),
                tag["why"].as_str().unwrap_or("")
            ));
        }
        text.push_str(&format!("  image     {image}: built, pushed, pinned by digest\n"));
        if let Some(deploy) = last_record(&self.stream, "deploy") {
            for change in deploy["components"].as_array().into_iter().flatten() {
                text.push_str(&format!(
                    "  deploy    {} {} {}: {} -> {}\n",
                    deploy["app_name"].as_str().unwrap_or("?"),
                    change["kind"].as_str().unwrap_or(""),
                    change["name"].as_str().unwrap_or(""),
                    change["image_before"].as_str().unwrap_or(""),
                    change["image_after"].as_str().unwrap_or("")
                ));
            }
        }
        if let Some(prune) = last_record(&self.stream, "prune") {
            let (deleted, untagged) = prune_counts(&prune);
            text.push_str(&format!("  prune     {deleted} deletion(s), {untagged} of them untagged manifests; usage {} -> about {} bytes\n", prune["usage"]["before_bytes"], prune["usage"]["estimated_after_bytes"]));
        }
        text
    }

    fn summary(&self) -> String {
        let gc_waits: Vec<Value> = String::from_utf8_lossy(&self.stream)
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|r| r["kind"] == "gc-wait")
            .map(|r| r["data"].clone())
            .collect();
        let waited_ms: u64 = gc_waits.iter().filter_map(|g| g["waited_ms"].as_u64()).sum();
        let tag = last_record(&self.stream, "tag").unwrap_or_default();
        let image = last_record(&self.stream, "image").unwrap_or_default();
        let deploy = last_record(&self.stream, "deploy").unwrap_or_default();
        let prune = last_record(&self.stream, "prune").unwrap_or_default();
        let (deleted, _) = prune_counts(&prune);
        let freed = prune["usage"]["before_bytes"]
            .as_u64()
            .unwrap_or(0)
            .saturating_sub(prune["usage"]["estimated_after_bytes"].as_u64().unwrap_or(0));
        let gc = if prune["gc"].is_null() {
            "none".to_string()
        } else {
            format!(
                "{} ({}, {})",
                prune["gc"]["uuid"].as_str().unwrap_or("?"),
                prune["gc"]["type"].as_str().unwrap_or("type unknown"),
                prune["gc"]["status"].as_str().unwrap_or("?")
            )
        };
        let check = match deploy["check"].as_object() {
            Some(check) if check.get("passed") == Some(&Value::Bool(true)) => {
                let headers: Vec<String> = check
                    .get("headers")
                    .and_then(Value::as_object)
                    .into_iter()
                    .flatten()
                    .map(|(name, value)| format!("{name}: {}", value.as_str().unwrap_or("none")))
                    .collect();
                let seen = if headers.is_empty() { String::new() } else { format!(" ({})", headers.join(", ")) };
                format!(
                    "\n  check          {} answered {}{seen}",
                    check.get("url").and_then(Value::as_str).unwrap_or("?"),
                    check.get("status").unwrap_or(&Value::Null)
                )
            }
            _ => String::new(),
        };
        format!(
            "released {} ({}):\n  waited for GC  {}\n  image          {}\n  deployment     {} {}{check}\n  pruned         {deleted} deletion(s), about {} MiB freed once GC ends\n  GC started     {gc}\n",
            tag["tag"].as_str().unwrap_or("?"),
            tag["why"].as_str().unwrap_or(""),
            do_core::duration::human(Duration::from_millis(waited_ms)),
            image["digest"].as_str().unwrap_or("?"),
            deploy["deployment_id"].as_str().unwrap_or("?"),
            deploy["phase"].as_str().unwrap_or("?"),
            freed / (1024 * 1024),
        )
    }
}
