//! Step 1, preflight: the next version, the builder, the token against the registry and the app,
//! whether the image tag exists. A failure is exit 2 with nothing changed.

use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use do_core::progress::Progress;
use do_core::types::App;
use do_core::Client;

use super::*;

impl Runner<'_> {
    /// Every check that can be made before anything changes, one line each.
    pub(super) fn preflight(&mut self) -> Result<(), CheckFailed> {
        let mut lines = String::new();
        let result = self.preflight_checks(&mut lines);
        if let Err(CheckFailed(why)) = &result {
            let line = format!("  FAIL  {why}");
            self.say(&line);
            lines.push_str(&line);
            lines.push('\n');
        }
        let code = if result.is_ok() { 0 } else { 2 };
        let _ = std::fs::write(self.staging.path().join("1-preflight.log"), &lines);
        self.steps.push(StepRun {
            name: "preflight".into(),
            what: "checks".into(),
            code,
            stdout: Vec::new(),
            stderr: lines,
        });
        result
    }

    pub(super) fn ok(&self, lines: &mut String, what: &str, detail: &str) {
        let line = format!("  ok    {what:<8}  {detail}");
        self.say(&line);
        lines.push_str(&line);
        lines.push('\n');
    }

    pub(super) fn preflight_checks(&mut self, lines: &mut String) -> Result<(), CheckFailed> {
        let config = self.config().clone();
        let fail = |what: &str, why: String| CheckFailed(format!("{what:<8}  {why}"));

        // The version, and the git checks: do-tag's dry run refuses a dirty tree, a branch
        // outside allow_branch, a shallow clone, a tag that exists elsewhere.
        let mut tag_args =
            vec!["-C".to_string(), self.options.repo_dir.display().to_string(), "--bump".into(), config.bump.clone()];
        tag_args.extend(["--prefix".into(), config.prefix.clone(), "--remote".into(), config.remote.clone()]);
        for glob in &config.allow_branch {
            tag_args.extend(["--allow-branch".into(), glob.clone()]);
        }
        for path in &config.paths {
            tag_args.extend(["--path".into(), path.clone()]);
        }
        tag_args.extend(["--dry-run".into(), "--no-input".into(), "--quiet".into()]);
        let code = self
            .tool("preflight", "do-tag", &self.options.binaries.tag.clone(), &tag_args)
            .map_err(|e| fail("git", format!("{e:#}")))?;
        let stderr = self.steps.last().map(|s| s.stderr.trim().to_string()).unwrap_or_default();
        if code != 0 {
            let why =
                stderr.lines().last().unwrap_or("do-tag refused").trim_start_matches("do-tag: error: ").to_string();
            return Err(fail("git", why));
        }
        let dry_run_output = self.steps.last().map(|s| s.stdout.clone()).unwrap_or_default();
        let tag = last_record(&dry_run_output, "tag").ok_or_else(|| fail("git", "do-tag gave no tag record".into()))?;
        if !self.options.execute {
            self.stream = dry_run_output;
        }
        let text = |key: &str| tag[key].as_str().unwrap_or_default().to_string();
        self.plan.tag = text("tag");
        self.plan.version = text("version");
        self.plan.commit = text("commit");
        self.plan.why = text("why");
        self.plan.nothing =
            text("bump") == "none" && tag["created"] == false && text("why").starts_with("nothing to release");
        if self.plan.nothing {
            self.ok(lines, "git", &self.plan.why.clone());
            self.plan.tag.clear();
            return Ok(());
        }
        std::fs::write(self.staging.path().join("notes.md"), text("notes"))
            .map_err(|e| fail("git", format!("cannot save the notes: {e}")))?;
        self.ok(
            lines,
            "git",
            &format!(
                "{} is clean and on its remote; next version {} ({})",
                short(&self.plan.commit),
                self.plan.tag,
                text("why")
            ),
        );

        let detail = self.check_builder().map_err(|why| fail("builder", why))?;
        self.ok(lines, "builder", &detail);

        let client = self.client().map_err(|e| fail("token", format!("{e:#}")))?;
        let registry = self.check_registry(&client).map_err(|e| fail("registry", e))?;
        self.plan.registry = registry.clone();
        self.plan.image = format!("registry.digitalocean.com/{registry}/{}:{}", config.repository, self.plan.tag);
        self.ok(lines, "registry", &format!("{registry}: the token can read it"));
        let detail = self.check_app(&client).map_err(|why| fail("app", why))?;
        self.ok(lines, "app", &detail);
        let detail = self.check_existing_image(&client).map_err(|why| fail("image", why))?;
        self.ok(lines, "image", &detail);
        Ok(())
    }

    pub(super) fn check_builder(&self) -> Result<String, String> {
        let config = self.config();
        let path = self.env("PATH");
        match config.builder.as_str() {
            "simulator" => {
                let api = self.env(do_core::api::API_URL_VARIABLE).unwrap_or_default();
                if !do_core::api::is_loopback_url(&api) {
                    return Err("builder \"simulator\" pushes to do-sim only: set DIGITALOCEAN_API_URL to a simulator on 127.0.0.1, or use builder \"docker\"".into());
                }
                Ok("simulator: the push makes a synthetic multi-platform image in do-sim".into())
            }
            "docker" => {
                let docker = &config.build[0];
                let found = find_program(docker, &self.options.repo_dir, path.as_deref())
                    .ok_or_else(|| format!("{docker} is not on PATH: install Docker, or set builder = \"commands\" with your own build and push"))?;
                let mut version = Command::new(&found);
                version.args(["version", "--format", "{{.Server.Version}}"]).current_dir(&self.options.repo_dir);
                version.envs(self.options.env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
                let output = output_within(version, Duration::from_secs(20))
                    .map_err(|e| format!("{docker} version did not answer: {e}"))?;
                if !output.status.success() {
                    let said = String::from_utf8_lossy(&output.stderr);
                    return Err(format!(
                        "the docker daemon does not answer ({}): start Docker (or Colima, OrbStack) and rerun",
                        said.lines().find(|l| !l.trim().is_empty()).unwrap_or("no reason given").trim()
                    ));
                }
                let uses_file = config.build.iter().any(|a| a == "-f" || a == "--file" || a.starts_with("--file="));
                if !uses_file {
                    let context = config.build.last().map(String::as_str).unwrap_or(".");
                    let dockerfile = self.options.repo_dir.join(context).join("Dockerfile");
                    if !dockerfile.is_file() {
                        return Err(format!(
                            "no Dockerfile at {}: add one, or give the build command -f FILE",
                            dockerfile.display()
                        ));
                    }
                }
                let server = String::from_utf8_lossy(&output.stdout).trim().to_string();
                Ok(format!("docker {server}, daemon answering; Dockerfile found"))
            }
            _ => {
                for (what, command) in [("build", &config.build), ("push", &config.push)] {
                    let program = &command[0];
                    if find_program(program, &self.options.repo_dir, path.as_deref()).is_none() {
                        return Err(format!(
                            "the {what} command {program:?} is not found (on PATH, or relative to {})",
                            self.options.repo_dir.display()
                        ));
                    }
                }
                Ok(format!("commands: {} and {} found", config.build[0], config.push[0]))
            }
        }
    }

    pub(super) fn check_registry(&self, client: &Client) -> Result<String, String> {
        let wanted = Some(self.config().registry.as_str()).filter(|r| !r.is_empty());
        do_core::registry::find(client, wanted).map(|r| r.name).map_err(|e| scope_hint(&e, "registry:read"))
    }

    pub(super) fn check_app(&self, client: &Client) -> Result<String, String> {
        let config = self.config();
        let file = self.spec_file()?;
        let wanted = match &file {
            Some((name, _)) => name.clone(),
            None => config.app.clone(),
        };
        let apps: Vec<App> = client.get_all("/v2/apps", "apps").map_err(|e| scope_hint(&e, "app:read"))?;
        let app = apps.iter().find(|a| a.name() == wanted || (file.is_none() && a.id == wanted)).ok_or_else(|| {
            let names: Vec<&str> = apps.iter().map(App::name).collect();
            format!(
                "no app named {wanted:?}{}; the account has: {}",
                if file.is_some() {
                    " (the spec's name): create it once with do-deploy --spec FILE --create"
                } else {
                    ""
                },
                if names.is_empty() { "no apps".to_string() } else { names.join(", ") }
            )
        })?;
        // With a spec, the components that will run the image are the spec's, not the live app's.
        let spec = file.map(|(_, spec)| spec).unwrap_or_else(|| app.spec.clone());
        let components = do_deploy::spec::matching_components(&spec, &config.repository, &config.components)?;
        let names: Vec<String> = components.iter().map(|c| format!("{} {}", c.kind, c.name)).collect();
        Ok(format!("{} runs {} in {}", app.name(), config.repository, names.join(", ")))
    }

    /// With `spec`: the app name and the spec, read as do-deploy will read them (references in
    /// the spec from `spec_env` only); the name must be `app`'s when both are given.
    pub(super) fn spec_file(&self) -> Result<Option<(String, serde_json::Value)>, String> {
        let config = self.config();
        if config.spec.is_empty() {
            return Ok(None);
        }
        let path = self.options.repo_dir.join(&config.spec);
        let env = |name: &str| {
            self.options
                .env
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
                .or_else(|| std::env::var(name).ok())
        };
        let token = env(do_core::api::TOKEN_VARIABLE);
        let (spec, _) = do_deploy::specfile::load(&path, &config.spec_env, token.as_deref(), &env, false)
            .map_err(|e| format!("{e:#}"))?;
        let name = spec["name"].as_str().unwrap_or_default().to_string();
        if !config.app.is_empty() && config.app != name {
            return Err(format!(
                "app is {:?} but {} names the app {name:?}: give one of them",
                config.app, config.spec
            ));
        }
        Ok(Some((name, spec)))
    }

    /// A tag already in the registry is this release's image only when it was built from HEAD.
    pub(super) fn check_existing_image(&mut self, client: &Client) -> Result<String, String> {
        let config = self.config().clone();
        let digest = self.pushed_digest(client, &self.plan.registry, &self.plan.tag).map_err(|e| format!("{e:#}"))?;
        let Some(digest) = digest else {
            return Ok(format!("{}:{} is not in the registry yet", config.repository, self.plan.tag));
        };
        let url = do_core::oci::registry_url_for(
            &self.env(do_core::api::API_URL_VARIABLE).unwrap_or_else(|| do_core::api::DEFAULT_API_URL.into()),
            self.env(do_core::oci::REGISTRY_URL_VARIABLE).as_deref(),
        )
        .map_err(|e| format!("{e:#}"))?;
        let quiet = Arc::new(Progress::new("release", true, false));
        let reader = do_core::oci::RegistryClient::from_api(
            client,
            &self.plan.registry,
            &url,
            Duration::from_secs(300),
            false,
            quiet,
        )
        .map_err(|e| format!("{e:#}"))?;
        let labels = reader
            .image_labels(&config.repository, &self.plan.tag)
            .map_err(|e| format!("cannot read the labels of {}:{}: {e:#}", config.repository, self.plan.tag))?
            .map(|(_, labels)| labels)
            .unwrap_or_default();
        match labels.get(REVISION_LABEL) {
            Some(revision) if *revision == self.plan.commit => {
                self.plan.reuse = Some(digest.clone());
                Ok(format!(
                    "{}:{} is already in the registry, built from HEAD ({}): a rerun; it is not built or pushed again",
                    config.repository,
                    self.plan.tag,
                    short(revision)
                ))
            }
            Some(revision) => Err(format!(
                "{}:{} is already in the registry, built from commit {}, not HEAD ({}); delete that tag from the registry or release another version",
                config.repository,
                self.plan.tag,
                short(revision),
                short(&self.plan.commit)
            )),
            None => Err(format!(
                "{}:{} is already in the registry without a {REVISION_LABEL} label, so it cannot be told from an image of another commit; delete that tag from the registry, or label your builds (--label {REVISION_LABEL}={{revision}})",
                config.repository, self.plan.tag
            )),
        }
    }
}
