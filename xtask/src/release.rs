//! `cargo xtask release`: the whole release as a chain of the real tools, each a process fed
//! the previous one's JSON Lines, in an order where nothing irreversible happens before
//! everything that can be checked was checked and the image was built:
//!
//! 1. preflight: the next version (do-tag's dry run: clean tree, allowed branch, remote), the
//!    builder, the token against the registry and the app, and whether the image tag already
//!    exists (reused only when built from HEAD's commit); any failure is exit 2, nothing changed
//! 2. build: the image, locally, labelled with the commit
//! 3. gc-wait: no push while the registry is read-only
//! 4. tag: the git tag, created and pushed
//! 5. push: the image (which emits the `image` record)
//! 6. deploy
//! 7. prune
//!
//! Every step's output is saved under `target/xtask/release-<tag>/` as `N-step.*`. A dry run
//! (no `execute`) runs each tool in its dry-run mode and builds and pushes nothing.

use std::io::{BufRead, BufReader, IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use do_core::api::{segment, ClientConfig, RetryPolicy, Secret};
use do_core::progress::Progress;
use do_core::types::{App, GarbageCollection, Tag};
use do_core::{Client, Exit, Failure};
use serde_json::{json, Value};

use crate::config::Config;

/// The steps of a release, in order; their numbers are the same in the plan, the live output
/// and the saved files.
pub const STEPS: [&str; 7] = ["preflight", "build", "gc-wait", "tag", "push", "deploy", "prune"];

/// The image label that names the commit an image was built from.
pub const REVISION_LABEL: &str = "org.opencontainers.image.revision";

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

/// Variables `cargo run` sets for the program it runs. Passed on to a nested `cargo build`,
/// they change the fingerprints of crates whose build reads them (ring does), so `cargo xtask`
/// and a plain `cargo build` or `cargo test` would each rebuild them in turn.
pub fn is_cargo_run_variable(name: &str) -> bool {
    const EXACT: [&str; 8] = [
        "CARGO_MANIFEST_DIR",
        "CARGO_MANIFEST_PATH",
        "CARGO_CRATE_NAME",
        "CARGO_BIN_NAME",
        "CARGO_PRIMARY_PACKAGE",
        "CARGO_TARGET_TMPDIR",
        "CARGO_RUSTC_CURRENT_DIR",
        "OUT_DIR",
    ];
    EXACT.contains(&name) || name.starts_with("CARGO_PKG_") || name.starts_with("CARGO_BIN_EXE_")
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

    /// `cargo build --bins` in the workspace, then the paths of the binaries. The first build
    /// says why it takes a while and shows cargo's progress.
    pub fn build(workspace: &Path) -> anyhow::Result<Binaries> {
        let binaries = Binaries::in_dir(&workspace.join("target/debug"));
        let first = !binaries.prune.exists();
        if first {
            eprintln!(
                "xtask: building the tools first; a first build compiles about 150 crates (a minute or two on 2 cores), later runs reuse it"
            );
        }
        let mut command = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
        command.current_dir(workspace).args(["build", "--bins"]);
        if !first {
            command.arg("--quiet");
        }
        for (name, _) in std::env::vars_os() {
            if name.to_str().is_some_and(is_cargo_run_variable) {
                command.env_remove(&name);
            }
        }
        let status = command.status().context("cannot run cargo")?;
        anyhow::ensure!(status.success(), "building the tools failed ({status})");
        Ok(binaries)
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
    /// Extra environment for the tools and the builder (the API URL and token, say).
    pub env: Vec<(String, String)>,
    /// Show the steps and the tools' progress on stderr as they run.
    pub echo: bool,
}

#[derive(Debug)]
pub struct StepRun {
    /// The step (one of [`STEPS`]).
    pub name: String,
    /// What ran: a tool, `builder`, or the step's own checks.
    pub what: String,
    pub code: i32,
    pub stdout: Vec<u8>,
    /// What it said on stderr (live status lines reduced to their last state).
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
    /// The plan for people (dry run), the summary (executed), or what failed.
    pub text: String,
}

impl Outcome {
    pub fn records(&self) -> Vec<Value> {
        String::from_utf8_lossy(&self.report).lines().filter_map(|line| serde_json::from_str(line).ok()).collect()
    }

    pub fn last(&self, kind: &str) -> Option<Value> {
        self.records().into_iter().rev().find(|r| r["kind"] == kind).map(|r| r["data"].clone())
    }

    /// The run of step `name` (the last, when it ran more than once).
    pub fn step(&self, name: &str) -> Option<&StepRun> {
        self.steps.iter().rev().find(|s| s.name == name)
    }
}

/// What preflight established, for the steps after it.
#[derive(Clone, Debug, Default)]
struct Plan {
    registry: String,
    tag: String,
    version: String,
    commit: String,
    /// Why this version (the bump and the commits behind it).
    why: String,
    image: String,
    /// The registry already holds the tag, built from HEAD: its digest (a rerun).
    reuse: Option<String>,
    gc_busy: bool,
    /// do-tag found no commit since the previous tag (with `bump = "auto"`): nothing to release.
    nothing: bool,
}

struct Runner<'a> {
    options: &'a Options,
    staging: tempfile::TempDir,
    steps: Vec<StepRun>,
    stream: Vec<u8>,
    plan: Plan,
    /// Whether the tools may draw their live status line (our stderr is a terminal).
    live: bool,
}

pub fn release(options: &Options) -> anyhow::Result<Outcome> {
    options.config.check().map_err(|e| Failure::usage(format!("{e:#}")))?;
    std::fs::create_dir_all(&options.out_root)
        .with_context(|| format!("cannot create {}", options.out_root.display()))?;
    let staging = tempfile::Builder::new().prefix("release-pending-").tempdir_in(&options.out_root)?;
    let live = options.echo && std::io::stderr().is_terminal() && std::env::var_os("CI").is_none();
    let mut runner = Runner { options, staging, steps: Vec::new(), stream: Vec::new(), plan: Plan::default(), live };
    let result = runner.run();
    let tag = (!runner.plan.tag.is_empty()).then(|| runner.plan.tag.clone());
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

fn step_number(name: &str) -> usize {
    STEPS.iter().position(|s| *s == name).map_or(0, |i| i + 1)
}

/// What a live status line leaves once it is done: each line as last drawn, escapes removed.
pub fn settled_text(raw: &str) -> String {
    let mut text = String::new();
    for line in raw.split('\n') {
        let last = line.rsplit('\r').find(|part| !part.replace("\x1b[2K", "").is_empty()).unwrap_or("");
        let clean = last.replace("\x1b[2K", "");
        if !clean.is_empty() {
            text.push_str(&clean);
            text.push('\n');
        }
    }
    text
}

/// A program as the OS would find it: a path (relative to `dir`) or a name on `path`.
fn find_program(program: &str, dir: &Path, path: Option<&str>) -> Option<PathBuf> {
    if program.contains('/') {
        let candidate = dir.join(program);
        return candidate.is_file().then_some(candidate);
    }
    std::env::split_paths(path.unwrap_or_default()).map(|d| d.join(program)).find(|c| c.is_file())
}

/// A failed preflight check: exit 2, nothing changed.
struct CheckFailed(String);

impl Runner<'_> {
    fn config(&self) -> &Config {
        &self.options.config
    }

    fn env(&self, key: &str) -> Option<String> {
        self.options.env.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone()).or_else(|| std::env::var(key).ok())
    }

    fn say(&self, message: &str) {
        if self.options.echo {
            eprintln!("{message}");
        }
    }

    fn heading(&self, name: &str, note: &str) {
        let separator = if note.is_empty() { "" } else { ": " };
        self.say(&format!("[{}/{}] {name}{separator}{note}", step_number(name), STEPS.len()));
    }

    /// Runs the steps; returns the exit code (0 or the failed step's) and the text for people.
    fn run(&mut self) -> anyhow::Result<(i32, String)> {
        let execute = self.options.execute;
        self.heading("preflight", "");
        if let Err(failed) = self.preflight() {
            return Ok((Exit::Usage as i32, format!("preflight failed, nothing was changed: {}", failed.0)));
        }
        if self.plan.nothing {
            // Ends here: nothing built, tagged, deployed or pruned.
            let why = self.plan.why.split(':').next().unwrap_or_default().to_string();
            return Ok((0, format!("{why}; nothing was done (set bump to a level to release anyway)")));
        }

        if execute && self.plan.reuse.is_none() {
            self.heading("build", &self.plan.image.clone());
            if let Err(error) = self.build() {
                self.record_failure("build", "builder", &error);
                return Ok((1, format!("step 2 build failed, nothing was tagged or pushed: {error:#}")));
            }
        } else if execute {
            self.heading("build", "skipped: the registry already has this commit's image");
        } else {
            self.heading("build", "dry run: nothing built");
        }

        let config = self.config().clone();
        let interval = config.poll_interval.clone();
        let mut gc_args =
            vec!["--registry".to_string(), self.plan.registry.clone(), "--interval".into(), interval.clone()];
        // A dry run looks once: a running GC is reported, not waited for.
        gc_args.extend(["--timeout".into(), if execute { config.gc_timeout.clone() } else { "1s".into() }]);
        self.heading("gc-wait", "");
        let code = self.tool("gc-wait", "do-gc-wait", &self.options.binaries.gc_wait.clone(), &gc_args)?;
        self.plan.gc_busy = code == 3 && !execute;
        if code != 0 && !self.plan.gc_busy {
            return Ok((code, format!("step 3 gc-wait failed with exit {code}; nothing was tagged or pushed")));
        }

        if execute {
            self.heading("tag", &self.plan.tag.clone());
            let mut tag_args = vec!["-C".to_string(), self.options.repo_dir.display().to_string()];
            tag_args.extend([
                "--set-version".into(),
                self.plan.version.clone(),
                "--prefix".into(),
                config.tag_prefix.clone(),
            ]);
            tag_args.extend(["--remote".into(), config.remote.clone()]);
            for glob in &config.allow_branch {
                tag_args.extend(["--allow-branch".into(), glob.clone()]);
            }
            for path in &config.paths {
                tag_args.extend(["--path".into(), path.clone()]);
            }
            let notes = self.staging.path().join("notes.md");
            tag_args.extend(["--notes-file".into(), notes.display().to_string()]);
            let code = self.tool("tag", "do-tag", &self.options.binaries.tag.clone(), &tag_args)?;
            if code != 0 {
                return Ok((code, format!("step 4 tag failed with exit {code}; the image was built but not pushed")));
            }
            self.heading("push", &self.plan.image.clone());
            if let Err(error) = self.push() {
                self.record_failure("push", "builder", &error);
                return Ok((1, format!("step 5 push failed: {error:#}")));
            }
        } else {
            self.heading("tag", &format!("dry run: would tag {} and push the tag", self.plan.tag));
            self.heading("push", &format!("dry run: would push {}", self.plan.image));
        }

        let mut deploy_args = match config.spec.as_str() {
            "" => vec!["--app".to_string(), config.app.clone()],
            spec => vec!["--spec".to_string(), self.options.repo_dir.join(spec).display().to_string()],
        };
        for name in &config.spec_env {
            deploy_args.extend(["--spec-env".to_string(), name.clone()]);
        }
        deploy_args.extend(["--repository".to_string(), config.repository.clone()]);
        deploy_args.extend(["--registry".to_string(), self.plan.registry.clone()]);
        deploy_args.extend(["--interval".into(), interval.clone(), "--timeout".into(), config.deploy_timeout.clone()]);
        for component in &config.components {
            deploy_args.extend(["--component".into(), component.clone()]);
        }
        if !config.check_path.is_empty() {
            deploy_args.extend(["--check-path".into(), config.check_path.clone()]);
        }
        if !config.check_version_header.is_empty() {
            let exact_tag = format!("^{}$", self.plan.tag.replace('.', "\\.").replace('+', "\\+"));
            deploy_args.extend(["--expect-header".into(), format!("{}={exact_tag}", config.check_version_header)]);
        }
        if config.rollback_on_failure {
            deploy_args.push("--rollback-on-failure".into());
        }
        if !execute {
            // The plan goes on past a GC still running (the real run waits for it): nothing acts.
            deploy_args.extend(["--dry-run".into(), "--ignore-upstream-failure".into()]);
        }
        self.heading("deploy", "");
        let code = self.tool("deploy", "do-deploy", &self.options.binaries.deploy.clone(), &deploy_args)?;
        if code != 0 {
            return Ok((code, format!("step 6 deploy failed with exit {code}")));
        }

        let mut prune_args = vec!["--registry".to_string(), self.plan.registry.clone()];
        prune_args.extend(["--keep-last".into(), config.keep_last.to_string()]);
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
        } else {
            prune_args.push("--ignore-upstream-failure".into());
        }
        self.heading("prune", "");
        let code = self.tool("prune", "do-prune", &self.options.binaries.prune.clone(), &prune_args)?;
        if code != 0 {
            return Ok((code, format!("step 7 prune failed with exit {code}")));
        }
        Ok((0, if execute { self.summary() } else { self.dry_run_plan() }))
    }

    fn record_failure(&mut self, step: &str, what: &str, error: &anyhow::Error) {
        let message = do_core::redact::redact(&format!("{error:#}"));
        self.say(&format!("  {step} failed: {message}"));
        let path = self.staging.path().join(format!("{}-{step}.error", step_number(step)));
        let _ = std::fs::write(path, format!("{message}\n"));
        // A builder that failed has its run in the list already, with its output.
        if !self.steps.last().is_some_and(|last| last.name == step && last.code != 0) {
            self.steps.push(StepRun {
                name: step.into(),
                what: what.into(),
                code: 1,
                stdout: Vec::new(),
                stderr: message,
            });
        }
    }

    /// Every check that can be made before anything changes, one line each.
    fn preflight(&mut self) -> Result<(), CheckFailed> {
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

    fn ok(&self, lines: &mut String, what: &str, detail: &str) {
        let line = format!("  ok    {what:<8}  {detail}");
        self.say(&line);
        lines.push_str(&line);
        lines.push('\n');
    }

    fn preflight_checks(&mut self, lines: &mut String) -> Result<(), CheckFailed> {
        let config = self.config().clone();
        let fail = |what: &str, why: String| CheckFailed(format!("{what:<8}  {why}"));

        // The version, and the git checks: do-tag's dry run refuses a dirty tree, a branch
        // outside allow_branch, a shallow clone, a tag that exists elsewhere.
        let mut tag_args =
            vec!["-C".to_string(), self.options.repo_dir.display().to_string(), "--bump".into(), config.bump.clone()];
        tag_args.extend(["--prefix".into(), config.tag_prefix.clone(), "--remote".into(), config.remote.clone()]);
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

    fn check_builder(&self) -> Result<String, String> {
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

    fn check_registry(&self, client: &Client) -> Result<String, String> {
        let wanted = Some(self.config().registry.as_str()).filter(|r| !r.is_empty());
        do_core::registry::find(client, wanted).map(|r| r.name).map_err(|e| scope_hint(&e, "registry:read"))
    }

    fn check_app(&self, client: &Client) -> Result<String, String> {
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
    fn spec_file(&self) -> Result<Option<(String, serde_json::Value)>, String> {
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
    fn check_existing_image(&mut self, client: &Client) -> Result<String, String> {
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

    /// Runs one tool with the stream so far on stdin; its stdout becomes the stream. Its
    /// stderr is passed through as it comes (the live status line included, on a terminal).
    fn tool(&mut self, step: &str, what: &str, binary: &Path, args: &[String]) -> anyhow::Result<i32> {
        let mut command = Command::new(binary);
        command
            .args(args)
            .envs(self.options.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .env("DO_RELEASE_PROGRESS", if self.live { "live" } else { "plain" })
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = command.spawn().with_context(|| format!("cannot start {}", binary.display()))?;
        let mut stdin = child.stdin.take().expect("piped");
        let input = self.stream.clone();
        let writer = std::thread::spawn(move || {
            let _ = stdin.write_all(&input);
        });
        let mut stderr = child.stderr.take().expect("piped");
        let echo = self.options.echo;
        let reader = std::thread::spawn(move || {
            let mut collected = Vec::new();
            let mut buffer = [0u8; 4096];
            loop {
                match stderr.read(&mut buffer) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        if echo {
                            let mut out = std::io::stderr().lock();
                            let _ = out.write_all(&buffer[..n]);
                            let _ = out.flush();
                        }
                        collected.extend_from_slice(&buffer[..n]);
                    }
                }
            }
            settled_text(&String::from_utf8_lossy(&collected))
        });
        let mut stdout = Vec::new();
        child.stdout.take().expect("piped").read_to_end(&mut stdout)?;
        let status = child.wait()?;
        let _ = writer.join();
        let stderr = reader.join().unwrap_or_default();
        let code = status.code().unwrap_or(1);
        let file = self.file_name(step, what);
        std::fs::write(self.staging.path().join(format!("{file}.jsonl")), &stdout)?;
        std::fs::write(self.staging.path().join(format!("{file}.log")), do_core::redact::redact(&stderr))?;
        // Preflight's do-tag dry run reports the version; its record joins the stream only in a
        // dry run, where no real tag record will follow.
        if !stdout.is_empty() && step != "preflight" {
            self.stream = stdout.clone();
        }
        self.steps.push(StepRun { name: step.to_string(), what: what.to_string(), code, stdout, stderr });
        Ok(code)
    }

    /// `N-step` for the step's own tool, `N-step.what` for anything else it runs.
    fn file_name(&self, step: &str, what: &str) -> String {
        let own = matches!(
            (step, what),
            ("gc-wait", "do-gc-wait") | ("tag", "do-tag") | ("deploy", "do-deploy") | ("prune", "do-prune")
        );
        let number = step_number(step);
        if own {
            format!("{number}-{step}")
        } else {
            format!("{number}-{step}.{what}")
        }
    }

    fn client(&self) -> anyhow::Result<Client> {
        let token = self
            .env(do_core::api::TOKEN_VARIABLE)
            .filter(|t| !t.trim().is_empty())
            .context("no API token: set DIGITALOCEAN_ACCESS_TOKEN (scopes: registry read/update, app read/update)")?;
        do_core::api::check_token(token.trim(), "DIGITALOCEAN_ACCESS_TOKEN")?;
        let config = ClientConfig {
            api_url: self
                .env(do_core::api::API_URL_VARIABLE)
                .unwrap_or_else(|| do_core::api::DEFAULT_API_URL.to_string()),
            token: Secret::new(token.trim().to_string()),
            retry: RetryPolicy::default(),
            request_timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(10),
        };
        Client::new(config, Arc::new(Progress::new("release", true, false)))
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

    fn fill(&self, command: &[String]) -> Vec<String> {
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
    fn build(&mut self) -> anyhow::Result<()> {
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
    fn push(&mut self) -> anyhow::Result<()> {
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
                self.config().poll_interval.clone(),
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

    fn push_once(&mut self, client: &Client) -> anyhow::Result<()> {
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
    fn run_builder(&mut self, step: &str, args: &[String], docker_config: Option<&Path>) -> anyhow::Result<()> {
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

    fn dry_run_plan(&self) -> String {
        let plan = &self.plan;
        let mut text = String::from("release plan (dry run; nothing was changed; add --execute to release):\n");
        let gc = if plan.gc_busy {
            let gc = last_record(&self.stream, "gc-wait").unwrap_or_default();
            format!(
                "garbage collection {} is {}: the release would wait for it",
                gc["gc"]["uuid"].as_str().unwrap_or("?"),
                gc["gc"]["status"].as_str().unwrap_or("running")
            )
        } else {
            "no garbage collection running".to_string()
        };
        let build = match &plan.reuse {
            Some(digest) => format!("already in the registry from HEAD ({}), not built again", short_digest(digest)),
            None => format!(
                "{} from {} (label {REVISION_LABEL}={})",
                plan.image,
                self.options.repo_dir.display(),
                short(&plan.commit)
            ),
        };
        let mut rows = vec![
            ("build", build),
            ("gc-wait", format!("registry {}: {gc}", plan.registry)),
            ("tag", format!("{} on {}, pushed to {}", plan.tag, short(&plan.commit), self.config().remote)),
            (
                "push",
                if plan.reuse.is_some() {
                    "nothing to push".to_string()
                } else {
                    format!("{}, then pinned by digest", plan.image)
                },
            ),
        ];
        if let Some(deploy) = last_record(&self.stream, "deploy") {
            let changes: Vec<String> = deploy["components"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|c| {
                    format!(
                        "{} {}: {} -> {}",
                        c["kind"].as_str().unwrap_or(""),
                        c["name"].as_str().unwrap_or(""),
                        c["image_before"].as_str().unwrap_or(""),
                        c["image_after"].as_str().unwrap_or("")
                    )
                })
                .collect();
            rows.push(("deploy", format!("{} {}", deploy["app_name"].as_str().unwrap_or("?"), changes.join("; "))));
        }
        if let Some(prune) = last_record(&self.stream, "prune") {
            let (deleted, untagged) = prune_counts(&prune);
            rows.push((
                "prune",
                format!(
                    "{deleted} deletion(s), {untagged} of them untagged manifests; usage {} -> about {}",
                    bytes_text(&prune["usage"]["before_bytes"]),
                    bytes_text(&prune["usage"]["estimated_after_bytes"])
                ),
            ));
        }
        text.push_str(&format!("  [1/{}] preflight  every check passed\n", STEPS.len()));
        for (name, row) in rows {
            text.push_str(&format!("  [{}/{}] {name:<9}  {row}\n", step_number(name), STEPS.len()));
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
            "released {} ({}):\n  waited for GC  {}\n  image          {}\n  deployment     {} {}{check}\n  pruned         {deleted} deletion(s), about {} freed once GC ends\n  GC started     {gc}\n",
            tag["tag"].as_str().unwrap_or("?"),
            self.plan.why,
            do_core::duration::human(Duration::from_millis(waited_ms)),
            image["digest"].as_str().unwrap_or("?"),
            deploy["deployment_id"].as_str().unwrap_or("?"),
            deploy["phase"].as_str().unwrap_or("?"),
            do_core::units::bytes(freed),
        )
    }
}

fn short(commit: &str) -> &str {
    commit.get(..12).unwrap_or(commit)
}

fn short_digest(digest: &str) -> &str {
    digest.get(..19).unwrap_or(digest)
}

fn bytes_text(value: &Value) -> String {
    value.as_u64().map(do_core::units::bytes).unwrap_or_else(|| "?".into())
}

/// Turns an API error into what to do: a refused token names the scope it needs.
fn scope_hint(error: &anyhow::Error, scope: &str) -> String {
    if do_core::api::has_status(error, 401) {
        "the token was refused (401): check DIGITALOCEAN_ACCESS_TOKEN".to_string()
    } else if do_core::api::has_status(error, 403) {
        format!("the token lacks the {scope} scope (403): give it {scope}, or use a full-access token")
    } else {
        format!("{error:#}")
    }
}

/// Runs a command and gives up on it after `timeout`.
fn output_within(mut command: Command, timeout: Duration) -> anyhow::Result<std::process::Output> {
    command.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = command.spawn()?;
    let started = Instant::now();
    loop {
        if child.try_wait()?.is_some() {
            return Ok(child.wait_with_output()?);
        }
        if started.elapsed() > timeout {
            let _ = child.kill();
            let _ = child.wait();
            anyhow::bail!("no answer within {}", do_core::duration::human(timeout));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_live_status_line_settles_to_its_last_state() {
        let raw =
            "do-prune: reading\r\x1b[2Kdo-prune: deleting 1/9\r\x1b[2Kdo-prune: deleting 9/9\n\x1b[2Kdo-prune: done\n";
        assert_eq!(settled_text(raw), "do-prune: deleting 9/9\ndo-prune: done\n");
    }

    #[test]
    fn variables_cargo_run_sets_are_told_from_the_users() {
        for name in ["CARGO_MANIFEST_DIR", "CARGO_PKG_NAME", "CARGO_BIN_NAME", "OUT_DIR", "CARGO_BIN_EXE_do-prune"] {
            assert!(is_cargo_run_variable(name), "{name}");
        }
        for name in ["CARGO_HOME", "CARGO_TARGET_DIR", "CARGO", "CARGO_BUILD_JOBS", "PATH"] {
            assert!(!is_cargo_run_variable(name), "{name}");
        }
    }
}
