//! do-prune's flags, input records and saved plan checked before any request (exit 2 for
//! anything wrong), and turned into the `Settings` every phase reads.

use std::path::PathBuf;
use std::time::Duration;

use do_core::contract::Input;
use do_core::{validate, Failure};

use crate::policy::{self, Policy};
use crate::protect::{self, Reference};
use crate::saved::{self, SavedPlan};
use crate::{Cli, GcMode};

/// A run's flags, input and saved plan once checked, owned: what every phase reads.
pub(crate) struct Settings {
    /// `--registry`, as given.
    pub registry: Option<String>,
    pub repository: Vec<String>,
    pub protect_app: Vec<String>,
    pub keep_rollback: usize,
    pub keep_artifacts: bool,
    pub target_usage: Option<u8>,
    pub max_delete: Option<usize>,
    pub execute: bool,
    pub plan_out: Option<PathBuf>,
    pub gc: GcMode,
    pub gc_type: String,
    pub concurrency: u16,
    /// Where manifests are kept between runs (None: `--no-cache`, or no default place).
    pub cache_dir: Option<PathBuf>,
    pub interval: Duration,
    pub max_interval: Duration,
    pub quiet: bool,
    pub verbose: bool,
    /// Images the input records protect, and the tags they name.
    pub references: Vec<Reference>,
    pub record_tags: Vec<(String, String)>,
    pub policy: Policy,
    pub patterns: Vec<regex::Regex>,
    pub saved: Option<SavedPlan>,
    /// The run's clock (epoch seconds), and the time before which untagged manifests are judged.
    pub now: i64,
    pub grace_cutoff: i64,
}

pub(crate) fn settings(cli: &Cli, input: &Input) -> anyhow::Result<Settings> {
    do_core::start::check_durations(
        &cli.api,
        &[("--timeout", cli.timeout), ("--interval", cli.interval), ("--max-interval", cli.max_interval)],
    )?;
    if let Some(registry) = &cli.registry {
        validate::registry_name(registry)?;
    }
    for repository in &cli.repository {
        validate::repository_name(repository)?;
    }
    for app in &cli.protect_app {
        validate::app_reference(app, "--protect-app")?;
    }
    let protect::InputProtection { references, tags: record_tags } = protect::from_input(input)?;
    let saved = cli.apply.as_ref().map(|path| saved::read_plan(path)).transpose()?;
    let policy = match &saved {
        Some(saved) => saved.policy.clone(),
        None => Policy {
            keep_tags: cli.keep_tag.clone(),
            keep_last: cli.keep_last,
            keep_within_seconds: cli.keep_within.map(|d| d.as_secs()),
            allow_empty: cli.allow_empty,
        },
    };
    let patterns = policy::compile_keep_tags(&policy.keep_tags).map_err(Failure::usage)?;
    if let Some(saved) = &saved {
        saved::check_saved_entries(saved, &patterns)?;
        if let Some(flag) = cli.registry.as_deref().filter(|flag| *flag != saved.registry) {
            return Err(Failure::usage(format!(
                "--registry {flag} differs from the saved plan's registry {}",
                saved.registry
            )));
        }
    }
    let now = jiff::Timestamp::now().as_second();
    let cache_dir = cache_dir(cli)?;
    Ok(Settings {
        registry: cli.registry.clone(),
        repository: cli.repository.clone(),
        protect_app: cli.protect_app.clone(),
        keep_rollback: cli.keep_rollback,
        keep_artifacts: cli.keep_artifacts,
        target_usage: cli.target_usage,
        max_delete: cli.max_delete,
        execute: cli.execute,
        plan_out: cli.plan_out.clone(),
        gc: cli.gc,
        gc_type: cli.gc_type.clone(),
        concurrency: cli.concurrency,
        cache_dir,
        interval: cli.interval,
        max_interval: cli.max_interval,
        quiet: cli.io.quiet,
        verbose: cli.io.verbose,
        references,
        record_tags,
        policy,
        patterns,
        saved,
        now,
        grace_cutoff: now - cli.untagged_grace.as_secs() as i64,
    })
}

/// `--cache-dir` when it can be used (exit 2 when not), else the default place; none with
/// `--no-cache`.
fn cache_dir(cli: &Cli) -> anyhow::Result<Option<PathBuf>> {
    if cli.no_cache {
        return Ok(None);
    }
    let Some(dir) = &cli.cache_dir else { return Ok(do_core::manifest_cache::default_dir()) };
    if do_core::manifest_cache::usable_dir(dir) {
        return Ok(Some(dir.clone()));
    }
    Err(Failure::usage(format!(
        "--cache-dir {}: cannot be created or written; give a writable directory, or --no-cache",
        dir.display()
    )))
}
