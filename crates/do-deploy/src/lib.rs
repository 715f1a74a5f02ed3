//! do-deploy: point an App Platform app at a new image, follow the deployment to the end (and
//! the one that superseded it, when that runs the same image), verify the release answers,
//! explain failures, and roll back without ever undoing someone else's newer work.
//!
//! `run` reads as the phases: the flags checked (`args.rs`, exit 2 before any request), then
//! `deploy.rs`: gather the image and the app (`gather.rs`; with `--spec`, the app the spec
//! names, made when missing: `create.rs`), settle a deployment in progress, plan what to send
//! (pure), start it (`update.rs`), follow it to its end (`follow.rs`), judge the end
//! (`judge.rs`: the check in `check.rs`, the soak in `soak.rs`, App Platform's own rollback in
//! `platform.rs`, ours under its rules in `rollback.rs`), and one record (`record.rs`). Every phase reads the same `Ctx` (the API, progress, clock and checked
//! settings) and returns what the next needs; none keeps state for another.

mod args;
mod check;
mod cli;
mod create;
mod deploy;
pub mod diff;
mod follow;
mod gather;
mod images;
mod judge;
mod platform;
mod preview;
mod record;
mod rollback;
mod soak;
pub mod spec;
pub mod specfile;
pub mod speckeys;
mod sweep;
pub mod target;
mod update;

use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;
use do_core::progress::Progress;
use do_core::types::App;
use do_core::{Client, Exit, Failure};
use serde_json::Value;

pub use check::CheckReport;
pub use cli::{Cli, IfBusy};
pub use record::{DeployRecord, FailureReport, RollbackReport, SupersededBy};
pub use soak::{SoakReport, Tally};
use spec::Pin;

const TOOL: &str = "do-deploy";
const LOG_EXCERPT_LINES: usize = 10;

/// What `--spec` asks for, read and checked before any request.
#[derive(Debug, Clone)]
pub struct SpecPlan {
    /// The file's spec, expanded, made a preview's when asked; components not yet pinned.
    pub spec: Value,
    pub preview: Option<String>,
    /// The file's own name: a preview's app is BASE-PREVIEW.
    pub base_name: String,
    /// Whether a missing app is created (--create, --preview).
    pub may_create: bool,
}

impl SpecPlan {
    pub fn app_name(&self) -> &str {
        self.spec.get("name").and_then(Value::as_str).unwrap_or("")
    }
}

/// The app id a dry run reports for an app it would create.
pub const NOT_CREATED_YET: &str = "(not created yet)";

pub fn main() -> i32 {
    do_core::exit::run_main(TOOL, || run(Cli::parse()))
}

pub fn run(cli: Cli) -> anyhow::Result<Exit> {
    if let Some(shell) = cli.io.completions {
        return do_core::cli::print_completions::<Cli>(shell, TOOL);
    }
    let start = do_core::start::begin(&cli.io, cli.timeout)?;
    let expectations = args::check_flags(&cli)?;
    let progress = cli.io.progress(TOOL);
    if let Some(preview) = &cli.delete_preview {
        return delete_preview(&cli, &progress, &start, preview);
    }
    if cli.sweep_previews {
        return sweep_previews(&cli, &progress, &start);
    }
    let plan = args::spec_plan(&cli, &progress)?;
    let target = args::target(&cli, &start.input)?;
    let (client, mut output) = start.connect(&cli.api, &progress)?;
    let settings = args::settings(&cli, expectations, plan);
    let ctx = Ctx {
        client: &client,
        progress: &progress,
        started: start.started,
        deadline: start.deadline,
        settings: &settings,
    };
    let (record, exit) = deploy::deploy(&ctx, target)?;
    output.emit("deploy", 1, &record)?;
    record::github_outputs(&record).context("cannot write the GitHub Actions output files")?;
    record::exit_of(&record, exit, cli.timeout)
}

/// `--delete-preview`: the preview app of the spec's name, deleted under the preview guard.
fn delete_preview(
    cli: &Cli,
    progress: &std::sync::Arc<Progress>,
    start: &do_core::start::Start,
    preview: &str,
) -> anyhow::Result<Exit> {
    let spec = args::read_spec(cli, progress, true)?.ok_or_else(|| {
        Failure::usage("--delete-preview needs --spec FILE: the preview's app is named after the spec's name")
    })?;
    let base = spec["name"].as_str().unwrap_or_default();
    let (client, mut output) = start.connect(&cli.api, progress)?;
    let (mut record, mut outcome) = preview::delete(&client, progress, base, preview, cli.dry_run)?;
    // The images only once the preview is gone (or was never there): what it ran counts no more.
    if cli.delete_images && outcome.is_ok() && record.outcome != "failed" {
        let app = record.app_name.clone();
        record.images = images::delete_tags(&client, progress, &spec, (&app, preview), cli.dry_run)?;
        if let Some(failed) = record.images.iter().find(|i| i.fate == "failed") {
            outcome = Err(anyhow::anyhow!("could not delete {}:{}: {}", failed.repository, failed.tag, failed.reason));
        }
    }
    output.emit("preview-delete", 1, &record)?;
    if let Some(github) = do_core::github::GitHub::from_env() {
        github
            .outputs(&[("app_name", record.app_name.clone()), ("deleted", record.deleted.to_string())])
            .context("cannot write the GitHub Actions output files")?;
    }
    outcome
}

/// `--sweep-previews`: every preview of the spec not kept, deleted under the preview guard.
fn sweep_previews(
    cli: &Cli,
    progress: &std::sync::Arc<Progress>,
    start: &do_core::start::Start,
) -> anyhow::Result<Exit> {
    let rules = args::sweep_rules(cli)?;
    let spec =
        args::read_spec(cli, progress, true)?.ok_or_else(|| Failure::usage("--sweep-previews needs --spec FILE"))?;
    let base = spec["name"].as_str().unwrap_or_default();
    let (client, mut output) = start.connect(&cli.api, progress)?;
    let (record, outcome) = sweep::sweep(&client, progress, base, &rules, cli.execute)?;
    output.emit("preview-sweep", 1, &record)?;
    outcome
}

/// A preview run changes only an app that do-deploy made as that preview: an app that merely
/// has the name (a production app called `shop-pr-42`, say) is not overwritten.
pub(crate) fn check_is_preview(plan: &SpecPlan, app: &App) -> anyhow::Result<()> {
    let Some(preview) = &plan.preview else {
        if specfile::carries_preview_mark(&app.spec) {
            return Err(Failure::usage(format!(
                "app {} ({}) is a preview app (its components carry {}); deploy to it with --preview, never as production",
                app.name(),
                app.id,
                specfile::PREVIEW_MARKER
            )));
        }
        return Ok(());
    };
    if specfile::preview_marker(&app.spec) == Some(preview.as_str()) {
        return Ok(());
    }
    Err(Failure::usage(format!(
        "app {} ({}) exists but is not the preview {preview} made by do-deploy (no {}={preview} on its components); not touching it: pick another --preview name",
        app.name(),
        app.id,
        specfile::PREVIEW_MARKER
    )))
}

/// A run's flags once checked, owned: what every phase reads.
pub(crate) struct Settings {
    pub app: Option<String>,
    pub component: Vec<String>,
    pub dry_run: bool,
    pub if_busy: IfBusy,
    pub force: bool,
    pub force_rebuild: bool,
    pub allow_downgrade: bool,
    pub allow_removal: bool,
    pub no_wait: bool,
    pub rollback_on_failure: bool,
    pub pin: Pin,
    pub interval: Duration,
    pub max_interval: Duration,
    pub log_lines: usize,
    pub check_url: Option<String>,
    pub check_path: Option<String>,
    pub expect_status: u16,
    pub check_timeout: Duration,
    /// With --soak: how long to keep watching after ACTIVE, and how many failed looks in a row
    /// are a breach.
    pub soak: Option<soak::Soak>,
    /// With --max-previews: at most this many previews of the spec, and whether to evict the oldest.
    pub max_previews: Option<(usize, bool)>,
    /// What the check after ACTIVE expects of the body and the headers.
    pub expectations: check::Expectations,
    /// With --spec: the app spec file, checked.
    pub spec_plan: Option<SpecPlan>,
}

/// What every phase works with: the API, the progress on stderr, the run's clock and settings.
pub(crate) struct Ctx<'a> {
    pub client: &'a Client,
    pub progress: &'a Progress,
    pub started: Instant,
    pub deadline: Instant,
    pub settings: &'a Settings,
}
