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

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::Context;
use do_core::{Exit, Failure};
use serde_json::Value;

use crate::config::Config;

mod preflight;
mod process;
mod push;
mod report;

pub use process::settled_text;
use process::{find_program, last_record, output_within};
use report::{scope_hint, short};

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

fn step_number(name: &str) -> usize {
    STEPS.iter().position(|s| *s == name).map_or(0, |i| i + 1)
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
        let interval = config.interval.clone();
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
                config.prefix.clone(),
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
        if !config.soak.is_empty() {
            deploy_args.extend(["--soak".into(), config.soak.clone()]);
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
