//! do-deploy: point an App Platform app at a new image, follow the deployment to the end (and
//! the one that superseded it, when that runs the same image), verify the release answers,
//! explain failures, and roll back without ever undoing someone else's newer work.
//!
//! Read top to bottom, `Deployer::deploy` is the run: find the app and the image (with
//! `--spec`, the app the spec names, made when missing: `create.rs`); follow a
//! deployment already running the image, or wait for (or cancel) another in progress; update
//! the spec once (`update.rs`); follow to the end (`follow.rs`); on ACTIVE, check the live URL
//! (`check.rs`); on failure, say why and roll back under the rules (`rollback.rs`). From the
//! first request that may change something, every outcome is written to the record.

mod check;
mod cli;
mod create;
pub mod diff;
mod follow;
mod preview;
mod rollback;
pub mod spec;
pub mod specfile;
pub mod speckeys;
pub mod target;
mod update;

use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;
use do_core::api::segment;
use do_core::contract::Output;
use do_core::progress::Progress;
use do_core::types::{App, Manifest, Phase, Tag};
use do_core::{validate, Client, Exit, Failure};
use serde::Serialize;
use serde_json::{json, Value};

pub use check::CheckReport;
pub use cli::{Cli, IfBusy};
use spec::{ComponentChange, Pin, Wanted};
use target::{ImageFlags, Reference, Target};

const TOOL: &str = "do-deploy";
const LOG_EXCERPT_LINES: usize = 10;

/// The `deploy` record, v1.
#[derive(Debug, Serialize)]
pub struct DeployRecord {
    pub app_id: String,
    pub app_name: String,
    /// The deployment followed to its end (the one that superseded ours, when adopted); null
    /// for a dry run or when none could be found.
    pub deployment_id: Option<String>,
    /// The ACTIVE deployment before this run.
    pub previous_deployment_id: Option<String>,
    pub phase: String,
    /// `REPO@DIGEST` (or `REPO:TAG` with --pin tag); null for --redeploy.
    pub image: Option<String>,
    pub components: Vec<ComponentChange>,
    pub changed: bool,
    pub dry_run: bool,
    pub cause: Option<String>,
    pub duration_ms: u64,
    pub live_url: Option<String>,
    /// How the run ended: `active`, `unchanged`, `dry_run`, `created` (--no-wait), `failed`,
    /// `check_failed`, `superseded`, `deadline`, or `unknown` (lost track of it).
    pub outcome: String,
    pub failure: Option<FailureReport>,
    /// The deployment that superseded ours; `adopted` when it ran the same image and was followed.
    pub superseded_by: Option<SupersededBy>,
    pub check: Option<CheckReport>,
    pub rollback: Option<RollbackReport>,
    /// The app was created by this run (--create or --preview).
    pub created: bool,
    /// The preview name, with --preview.
    pub preview: Option<String>,
    /// With --spec: each field the spec sent changes (or, in a dry run, would change).
    pub spec_changes: Vec<diff::SpecChange>,
}

/// What `--spec` asks for, read and checked before any request.
#[derive(Debug, Clone)]
pub struct SpecPlan {
    /// The file's spec, expanded, made a preview's when asked; components not yet pinned.
    pub spec: Value,
    pub preview: Option<String>,
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

#[derive(Debug, Serialize)]
pub struct FailureReport {
    /// The failed step, or `check` when the live URL did not answer as expected.
    pub step: Option<String>,
    pub reason: Option<String>,
    pub component: Option<String>,
    pub log_type: Option<String>,
    pub log_excerpt: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct SupersededBy {
    pub deployment_id: String,
    pub cause: Option<String>,
    pub phase: String,
    pub adopted: bool,
}

#[derive(Debug, Default, Serialize)]
pub struct RollbackReport {
    /// The deployment rolled back to (the one ACTIVE when the run began).
    pub to_deployment_id: String,
    /// The rollback deployment, when one was created.
    pub deployment_id: Option<String>,
    pub phase: Option<String>,
    pub error: Option<String>,
    /// Why no rollback was made (it would have undone newer work, say).
    pub skipped: Option<String>,
}

pub fn main() -> i32 {
    do_core::exit::run_main(TOOL, || run(Cli::parse()))
}

pub fn run(cli: Cli) -> anyhow::Result<Exit> {
    let started = Instant::now();
    let deadline = started + cli.timeout;
    let input = cli.io.read_input(deadline)?;
    if let Some(app) = &cli.app {
        check_app_reference(app)?;
    }
    let loopback = do_core::api::is_loopback_url(&cli.api.api_url);
    do_core::cli::check_duration("--timeout", cli.timeout, loopback)?;
    do_core::cli::check_duration("--interval", cli.interval, loopback)?;
    do_core::cli::check_duration("--max-interval", cli.max_interval, loopback)?;
    do_core::cli::check_duration("--check-timeout", cli.check_timeout, loopback)?;
    for component in &cli.component {
        if component.is_empty()
            || component.len() > 32
            || !component.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        {
            return Err(Failure::usage(format!("invalid --component {}", validate::shown(component))));
        }
    }
    if cli.log_lines > 10_000 {
        return Err(Failure::usage("--log-lines is at most 10000"));
    }
    let expectations = check::parse_expectations(cli.expect_body.as_deref(), &cli.expect_header)?;
    let checking = cli.check_path.is_some() || cli.check_url.is_some();
    if !checking && (cli.expect_body.is_some() || !cli.expect_header.is_empty()) {
        return Err(Failure::usage("--expect-body and --expect-header need --check-path or --check-url"));
    }
    if let Some(url) = &cli.check_url {
        check::check_url(url)?;
    }
    if let Some(path) = &cli.check_path {
        if !path.starts_with('/') || path.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(Failure::usage(format!("--check-path {}: give a path like /healthz", validate::shown(path))));
        }
    }
    for name in cli.preview.iter().chain(&cli.delete_preview) {
        specfile::check_preview_name(name)?;
    }
    let progress = cli.io.progress(TOOL);
    let preview_envs = match cli.preview_env.is_empty() {
        true => Vec::new(),
        false => {
            let token = cli.api.token(&progress)?;
            let parse = |text: &String| specfile::parse_preview_env(text, Some(token.expose()));
            cli.preview_env.iter().map(parse).collect::<anyhow::Result<Vec<_>>>()?
        }
    };
    let read_spec = |names_only: bool| -> anyhow::Result<Option<Value>> {
        let Some(path) = &cli.spec else { return Ok(None) };
        let token = cli.api.token(&progress)?;
        let env = |name: &str| std::env::var(name).ok();
        let (spec, expansion) = specfile::load(path, &cli.spec_env, Some(token.expose()), &env, names_only)?;
        expansion.secret_values.iter().for_each(|secret| do_core::redact::register(secret));
        Ok(Some(spec))
    };
    if let Some(preview) = &cli.delete_preview {
        let spec = read_spec(true)?.ok_or_else(|| {
            Failure::usage("--delete-preview needs --spec FILE: the preview's app is named after the spec's name")
        })?;
        let base = spec["name"].as_str().unwrap_or_default();
        let client = cli.api.client(progress.clone())?;
        client.set_deadline(deadline);
        let mut output = Output::stdout();
        output.pass_through(&input)?;
        let (record, outcome) = preview::delete(&client, &progress, base, preview, cli.dry_run)?;
        output.emit("preview-delete", 1, &record)?;
        if let Some(github) = do_core::github::GitHub::from_env() {
            github
                .outputs(&[("app_name", record.app_name.clone()), ("deleted", record.deleted.to_string())])
                .context("cannot write the GitHub Actions output files")?;
        }
        return outcome;
    }
    let spec = read_spec(false)?;
    if let Some(spec) = spec.as_ref().filter(|spec| cli.preview.is_none() && specfile::carries_preview_mark(spec)) {
        return Err(Failure::usage(format!(
            "the spec gives its components {}, which only do-deploy --preview sets (on preview apps, which --delete-preview deletes); remove it from {} or deploy with --preview",
            specfile::PREVIEW_MARKER,
            spec["name"].as_str().unwrap_or("the spec")
        )));
    }
    let plan = spec.map(|spec| SpecPlan {
        spec: match &cli.preview {
            Some(preview) => specfile::for_preview(&spec, preview, &preview_envs),
            None => spec,
        },
        preview: cli.preview.clone(),
        may_create: cli.create || cli.preview.is_some(),
    });
    let target = if cli.redeploy {
        None
    } else {
        let flags = ImageFlags {
            image: cli.image.as_deref(),
            registry: cli.registry.as_deref(),
            repository: cli.repository.as_deref(),
            tag: cli.tag.as_deref(),
            digest: cli.digest.as_deref(),
        };
        Some(target::choose(&flags, &input)?)
    };
    let client = cli.api.client(progress.clone())?;
    client.set_deadline(deadline);
    let mut output = Output::stdout();
    output.pass_through(&input)?;

    let deployer = Deployer {
        cli: &cli,
        client: &client,
        progress: &progress,
        started,
        deadline,
        expectations,
        last_phase: Default::default(),
        plan,
        intended_spec: Default::default(),
    };
    let (record, exit) = deployer.deploy(target)?;
    output.emit("deploy", 1, &record)?;
    github_outputs(&record).context("cannot write the GitHub Actions output files")?;
    let reason = record.failure.as_ref().and_then(|f| f.reason.as_deref());
    let deployment = record.deployment_id.as_deref().unwrap_or("?");
    match (exit, record.outcome.as_str()) {
        (Exit::RemoteFailed, "check_failed") => Err(Failure::remote(format!(
            "deployment {deployment} is ACTIVE, but the check failed: {}",
            reason.unwrap_or("no reason")
        ))),
        (Exit::RemoteFailed, _) => Err(Failure::remote(format!(
            "deployment {deployment} ended {}{}",
            record.phase,
            reason.map(|r| format!(": {r}")).unwrap_or_default()
        ))),
        (Exit::Deadline, _) if record.deployment_id.is_none() => Err(Failure::deadline(format!(
            "the deadline ({}) passed before do-deploy saw the deployment it asked for; one may have started: rerun do-deploy with the same image to follow it, or raise --timeout",
            do_core::duration::human(cli.timeout)
        ))),
        (Exit::Deadline, _) => Err(Failure::deadline(format!(
            "deployment {deployment} is still {} after {} and keeps running; rerun do-deploy with the same image to follow it, or raise --timeout",
            record.phase,
            do_core::duration::human(cli.timeout)
        ))),
        (Exit::Failed, "superseded") => {
            let newer = record.superseded_by.as_ref();
            Err(anyhow::anyhow!(
                "deployment {} was superseded by {} ({}), which runs another image; nothing was rolled back",
                record.previous_deployment_id.as_deref().map_or(deployment, |_| deployment),
                newer.map_or("a deployment that cannot be found", |n| n.deployment_id.as_str()),
                newer.and_then(|n| n.cause.as_deref()).unwrap_or("no cause given")
            ))
        }
        (Exit::Failed, _) => Err(anyhow::anyhow!(
            "{}; deployment {deployment} may still be running: rerun do-deploy with the same image to follow it",
            reason.unwrap_or("lost track of the deployment")
        )),
        (other, _) => Ok(other),
    }
}

fn github_outputs(record: &DeployRecord) -> anyhow::Result<()> {
    let Some(github) = do_core::github::GitHub::from_env() else { return Ok(()) };
    let digest =
        record.image.as_deref().and_then(|image| image.split_once('@')).map(|(_, d)| d.to_string()).unwrap_or_default();
    github.outputs(&[
        ("app_id", record.app_id.clone()),
        ("deployment_id", record.deployment_id.clone().unwrap_or_default()),
        ("phase", record.phase.clone()),
        ("digest", digest),
        ("image", record.image.clone().unwrap_or_default()),
        ("changed", record.changed.to_string()),
        ("app_name", record.app_name.clone()),
        ("live_url", record.live_url.clone().unwrap_or_default()),
    ])?;
    let mut summary = format!(
        "### do-deploy\n\n**{}**: deployment `{}` is **{}**{}\n\n| component | before | after |\n|---|---|---|\n",
        record.app_name,
        record.deployment_id.as_deref().unwrap_or("none"),
        record.phase,
        if record.dry_run { " (dry run)" } else { "" }
    );
    for change in &record.components {
        summary.push_str(&format!(
            "| {} {} | `{}` | `{}` |\n",
            change.kind, change.name, change.image_before, change.image_after
        ));
    }
    if let Some(live_url) = &record.live_url {
        summary.push_str(&format!("\nLive at {live_url}\n"));
    }
    if !record.spec_changes.is_empty() {
        summary.push_str("\n| spec field | before | after |\n|---|---|---|\n");
        for change in &record.spec_changes {
            let cell = |value: &Option<String>| value.as_deref().map_or("(none)".to_string(), |v| format!("`{v}`"));
            summary.push_str(&format!("| `{}` | {} | {} |\n", change.path, cell(&change.before), cell(&change.after)));
        }
    }
    if let Some(failure) = &record.failure {
        summary.push_str(&format!(
            "\nFailed in step `{}`: {}\n",
            failure.step.as_deref().unwrap_or("?"),
            failure.reason.as_deref().unwrap_or("no reason given")
        ));
    }
    github.summary(&summary)?;
    Ok(())
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

fn check_app_reference(app: &str) -> anyhow::Result<()> {
    let ok = !app.is_empty() && app.len() <= 64 && app.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(Failure::usage(format!("invalid --app {}: give the app's name or id", validate::shown(app))))
    }
}

fn looks_like_uuid(text: &str) -> bool {
    text.len() == 36
        && text
            .bytes()
            .enumerate()
            .all(|(i, b)| if [8, 13, 18, 23].contains(&i) { b == b'-' } else { b.is_ascii_hexdigit() })
}

struct Deployer<'a> {
    cli: &'a Cli,
    client: &'a Client,
    progress: &'a Progress,
    started: Instant,
    deadline: Instant,
    /// What the check after ACTIVE expects of the body and the headers.
    expectations: check::Expectations,
    /// The phase the followed deployment was last seen in.
    last_phase: std::sync::Mutex<Option<String>>,
    /// With --spec: the app spec file, checked.
    plan: Option<SpecPlan>,
    /// With --spec: the whole spec this run sends. A deployment is this run's intent only when
    /// its spec is this one, not merely when it runs the image.
    intended_spec: std::sync::Mutex<Option<Value>>,
}

impl Deployer<'_> {
    fn deploy(&self, target: Option<Target>) -> anyhow::Result<(DeployRecord, Exit)> {
        let cli = self.cli;
        let wanted = target.as_ref().map(|target| self.resolve(target)).transpose()?;
        let repository = target.as_ref().map(|t| t.repository.as_str());
        let (mut app, created, mut from_file) = match (&self.plan, &wanted, repository) {
            (Some(plan), Some(wanted), Some(repository)) => match self.app_for_spec(plan, wanted, repository)? {
                create::SpecApp::Ready { app, created, from_file } => (*app, created, Some(from_file)),
                create::SpecApp::DryRunCreate(record) => return Ok((*record, Exit::Done)),
            },
            (Some(_), _, _) => return Err(Failure::usage("--spec needs the image to pin: --image, --repository with --tag or --digest, or an image record on stdin")),
            (None, _, _) => {
                let app = self.find_app(cli.app.as_deref().unwrap_or_default())?;
                if let Some(repository) = repository {
                    spec::matching_components(&app.spec, repository, &cli.component).map_err(Failure::usage)?;
                }
                (app, false, None)
            }
        };
        let app_path = format!("/v2/apps/{}", segment(&app.id));
        // The one a rollback may return to: ACTIVE when this run began.
        let began_active = app.active_deployment.as_ref().map(|d| d.id.clone());
        let mut record = DeployRecord {
            app_id: app.id.clone(),
            app_name: app.name().to_string(),
            deployment_id: None,
            previous_deployment_id: began_active.clone(),
            phase: String::new(),
            image: wanted.as_ref().map(Wanted::shown),
            components: Vec::new(),
            changed: false,
            dry_run: cli.dry_run,
            cause: None,
            duration_ms: 0,
            live_url: app.live_url.clone(),
            outcome: String::new(),
            failure: None,
            superseded_by: None,
            check: None,
            rollback: None,
            created,
            preview: self.plan.as_ref().and_then(|plan| plan.preview.clone()),
            spec_changes: Vec::new(),
        };
        if let (true, Some(file)) = (created, &from_file) {
            // What the create did: every field is new, and so is every component's image.
            record.spec_changes = diff::changes(&json!({}), &file.new_spec);
            record.components = spec::told_against_live(file.changes.clone(), &file.components, &json!({}));
        }
        let runs_wanted = |spec: &serde_json::Value| match (&wanted, repository) {
            (Some(wanted), Some(repository)) => self.runs_wanted(spec, wanted, repository),
            _ => false,
        };

        // A deployment in progress or pending that already runs the wanted image is ours (an
        // earlier, interrupted run) or another run's of the same image: follow it.
        let mut adopted = None;
        let busy = [&app.in_progress_deployment, &app.pending_deployment]
            .into_iter()
            .flatten()
            .find(|d| !d.phase.is_terminal())
            .cloned();
        if let Some(busy) = busy {
            if runs_wanted(&busy.spec) {
                self.progress
                    .info(&format!("deployment {} ({}) already deploys this image; following it", busy.id, busy.phase));
                adopted = Some(busy);
            } else if cli.dry_run {
                self.progress.info(&format!(
                    "dry run: deployment {} is in progress; --if-busy {:?} would apply",
                    busy.id, cli.if_busy
                ));
            } else {
                self.handle_busy(&app, &busy)?;
                app = self.client.get_object(&app_path, "app")?;
                // The wait may have been long: the spec to send is made again from the app as it
                // is now, so a secret rotated or a domain added meanwhile is neither undone nor lost.
                if let (Some(plan), Some(wanted), Some(repository), Some(_)) =
                    (&self.plan, &wanted, repository, &from_file)
                {
                    let file = self.spec_to_send(plan, wanted, repository, Some(&app))?;
                    self.intend(&file.new_spec);
                    from_file = Some(file);
                }
            }
        }

        let update = match (&wanted, repository, &adopted) {
            (Some(wanted), Some(repository), None) => {
                let (new_spec, changes) = match &from_file {
                    Some(file) => {
                        record.spec_changes = diff::changes(&app.spec, &file.new_spec);
                        (
                            file.new_spec.clone(),
                            spec::told_against_live(file.changes.clone(), &file.components, &app.spec),
                        )
                    }
                    None => {
                        let components =
                            spec::matching_components(&app.spec, repository, &cli.component).map_err(Failure::usage)?;
                        spec::pin(&app.spec, &components, wanted)
                    }
                };
                if !cli.allow_downgrade {
                    self.warn_if_downgrade(target.as_ref(), &changes, wanted);
                }
                record.components = changes;
                let active_spec = app.active_deployment.as_ref().map(|d| &d.spec).unwrap_or(&app.spec);
                let already = app.in_progress_deployment.is_none()
                    && app.active_deployment.is_some()
                    && runs_wanted(active_spec)
                    && runs_wanted(&app.spec)
                    && record.spec_changes.is_empty();
                if already && !cli.force {
                    let active = app.active_deployment.as_ref().expect("checked above");
                    self.progress.info(&format!(
                        "{} already runs {} on every matched component; nothing to do",
                        app.name(),
                        record.image.as_deref().unwrap_or("")
                    ));
                    record.deployment_id = Some(active.id.clone());
                    record.phase = active.phase.to_string();
                    record.cause = active.cause.clone();
                    record.outcome = "unchanged".into();
                    record.components.iter_mut().for_each(|c| c.image_before = c.image_after.clone());
                    return Ok((record, Exit::Done));
                }
                Some(new_spec)
            }
            _ => None,
        };
        record.changed = true;

        if cli.dry_run {
            if from_file.is_some() {
                self.progress.info(&format!(
                    "dry run: the spec would change {} field{} of {}{}",
                    record.spec_changes.len(),
                    if record.spec_changes.len() == 1 { "" } else { "s" },
                    app.name(),
                    if record.spec_changes.is_empty() { "" } else { ":" }
                ));
                for change in &record.spec_changes {
                    self.progress.info(&format!("  {change}"));
                }
            }
            for change in &record.components {
                self.progress.info(&format!(
                    "dry run: {} {}: {} -> {}{}",
                    change.kind,
                    change.name,
                    change.image_before,
                    change.image_after,
                    if change.deploy_on_push_disabled { " (deploy_on_push turned off)" } else { "" }
                ));
            }
            if wanted.is_none() {
                self.progress.info(&format!(
                    "dry run: would create a deployment of {}{}",
                    app.name(),
                    if cli.force_rebuild { " with a rebuild" } else { "" }
                ));
            }
            record.phase =
                app.active_deployment.as_ref().map(|d| d.phase.to_string()).unwrap_or_else(|| "UNKNOWN".into());
            record.outcome = "dry_run".into();
            return Ok((record, Exit::Done));
        }

        for change in &record.components {
            if change.deploy_on_push_disabled {
                self.progress.warn(&format!(
                    "{} {}: deploy_on_push turned off, since App Platform refuses it with a digest",
                    change.kind, change.name
                ));
            }
        }
        // From here a request may change something: every outcome goes into the record.
        let started = match (adopted, update, &wanted, repository) {
            (Some(adopted), _, _, _) => Ok(adopted),
            (None, Some(new_spec), Some(wanted), Some(repository)) => {
                self.update_spec(&app, new_spec, wanted, repository)
            }
            _ => self.create_deployment(
                &app,
                &format!("{app_path}/deployments"),
                &json!({"force_build": cli.force_rebuild}),
            ),
        };
        let deployment = match started {
            Ok(deployment) => deployment,
            Err(error) => return Ok(self.lost(record, &error, "unknown")),
        };
        record.deployment_id = Some(deployment.id.clone());
        record.cause = deployment.cause.clone();
        self.progress.info(&format!(
            "deployment {} of {} ({})",
            deployment.id,
            app.name(),
            record.image.as_deref().unwrap_or("redeploy")
        ));
        if cli.no_wait {
            record.phase = deployment.phase.to_string();
            record.outcome = "created".into();
            record.duration_ms = self.started.elapsed().as_millis() as u64;
            return Ok((record, Exit::Done));
        }

        // Follow it to its end; a deployment that superseded it and runs the same image is followed in turn.
        let mut current = deployment;
        let done = loop {
            let done = match self.follow(&app, &current.id) {
                Ok(Some(done)) => done,
                Ok(None) => {
                    record.duration_ms = self.started.elapsed().as_millis() as u64;
                    record.phase = self
                        .last_phase
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .clone()
                        .unwrap_or_else(|| "UNKNOWN".into());
                    record.outcome = "deadline".into();
                    return Ok((record, Exit::Deadline));
                }
                Err(error) => return Ok(self.lost(record, &error, "unknown")),
            };
            if done.phase != Phase::Superseded {
                break done;
            }
            let newer = match self.superseded_by(&app, &done) {
                Ok(newer) => newer,
                Err(error) => return Ok(self.lost(record, &error, "superseded")),
            };
            let same = newer.as_ref().is_some_and(|newer| match &wanted {
                Some(_) => runs_wanted(&newer.spec),
                None => spec::normalized(&newer.spec) == spec::normalized(&done.spec),
            });
            record.superseded_by = newer.as_ref().map(|newer| SupersededBy {
                deployment_id: newer.id.clone(),
                cause: newer.cause.clone(),
                phase: newer.phase.to_string(),
                adopted: same,
            });
            match newer {
                Some(newer) if same => {
                    self.progress.info(&format!(
                        "deployment {} was superseded by {} ({}), which deploys the same image; following it",
                        done.id,
                        newer.id,
                        newer.cause.as_deref().unwrap_or("no cause given")
                    ));
                    record.deployment_id = Some(newer.id.clone());
                    record.cause = newer.cause.clone();
                    current = newer;
                }
                _ => {
                    // Someone deployed something else: never roll back over it.
                    record.phase = Phase::Superseded.to_string();
                    record.outcome = "superseded".into();
                    record.duration_ms = self.started.elapsed().as_millis() as u64;
                    return Ok((record, Exit::Failed));
                }
            }
        };
        record.duration_ms = self.started.elapsed().as_millis() as u64;
        record.phase = done.phase.to_string();
        if done.phase == Phase::Active && app.live_url.is_none() {
            // A new app gets its URL with its first ACTIVE deployment.
            if let Ok(fresh) = self.client.get_object::<App>(&app_path, "app") {
                app.live_url = fresh.live_url;
            }
            record.live_url = app.live_url.clone();
        }
        if done.phase == Phase::Active {
            self.progress.info(&format!(
                "deployment {} is ACTIVE after {}{}",
                done.id,
                do_core::duration::human(self.started.elapsed()),
                app.live_url.as_deref().map(|u| format!("; live at {u}")).unwrap_or_default()
            ));
            if let Some(report) = self.check_release(&app) {
                let passed = report.passed;
                record.check = Some(report);
                if !passed {
                    let check = record.check.as_ref().expect("just set");
                    self.progress.warn(&format!(
                        "the check of {} failed after {} attempts: {} (status {}, headers {:?})",
                        check.url,
                        check.attempts,
                        check.reason.as_deref().unwrap_or("?"),
                        check.status.map_or("none".to_string(), |s| s.to_string()),
                        check.headers
                    ));
                    if let Some(body) = &check.body_excerpt {
                        self.progress.info(&format!("the answer began: {}", body.trim_end()));
                    }
                    record.failure = Some(FailureReport {
                        step: Some("check".into()),
                        reason: check.reason.clone(),
                        component: None,
                        log_type: None,
                        log_excerpt: Vec::new(),
                    });
                    record.outcome = "check_failed".into();
                    if cli.rollback_on_failure {
                        record.rollback = Some(self.roll_back(&app, began_active.as_deref(), &done.id));
                    }
                    record.duration_ms = self.started.elapsed().as_millis() as u64;
                    return Ok((record, Exit::RemoteFailed));
                }
                self.progress.info("the check passed");
            }
            record.outcome = "active".into();
            record.duration_ms = self.started.elapsed().as_millis() as u64;
            return Ok((record, Exit::Done));
        }
        let first_component = record.components.first().map(|c| c.name.clone());
        record.failure = Some(self.explain_failure(&app, &done, first_component.as_deref()));
        record.outcome = "failed".into();
        if cli.rollback_on_failure {
            record.rollback = Some(self.roll_back(&app, began_active.as_deref(), &done.id));
        }
        record.duration_ms = self.started.elapsed().as_millis() as u64;
        Ok((record, Exit::RemoteFailed))
    }

    /// The record when something went wrong after a request that may have changed something:
    /// what is known, and the exit code the error calls for (3 at the deadline, else 1).
    fn lost(&self, mut record: DeployRecord, error: &anyhow::Error, outcome: &str) -> (DeployRecord, Exit) {
        record.duration_ms = self.started.elapsed().as_millis() as u64;
        record.phase =
            self.last_phase.lock().unwrap_or_else(|e| e.into_inner()).clone().unwrap_or_else(|| "UNKNOWN".into());
        let exit = match do_core::exit::exit_code_of(error) {
            Exit::Deadline => Exit::Deadline,
            _ => Exit::Failed,
        };
        record.outcome = if exit == Exit::Deadline { "deadline".into() } else { outcome.into() };
        let reason = if record.deployment_id.is_some() {
            format!("lost track of the deployment: {error:#}")
        } else {
            format!("{error:#}")
        };
        record.failure = Some(FailureReport {
            step: None,
            reason: Some(reason),
            component: None,
            log_type: None,
            log_excerpt: Vec::new(),
        });
        (record, exit)
    }

    /// Checks the release after ACTIVE, when asked: `--check-url`, or `--check-path` on the
    /// app's live URL.
    fn check_release(&self, app: &App) -> Option<CheckReport> {
        let url = match (&self.cli.check_url, &self.cli.check_path) {
            (Some(url), _) => url.clone(),
            (None, Some(path)) => {
                let live = app.live_url.clone().or_else(|| {
                    let fresh: Option<App> =
                        self.client.get_object(&format!("/v2/apps/{}", segment(&app.id)), "app").ok();
                    fresh.and_then(|a| a.live_url)
                });
                let Some(live) = live else {
                    return Some(CheckReport {
                        url: path.clone(),
                        reason: Some("the app has no live URL to check".into()),
                        ..CheckReport::default()
                    });
                };
                if let Err(error) = check::check_url(&live) {
                    return Some(CheckReport {
                        url: live,
                        reason: Some(format!("{error:#}")),
                        ..CheckReport::default()
                    });
                }
                format!("{}{path}", live.trim_end_matches('/'))
            }
            (None, None) => return None,
        };
        self.progress.info(&format!("checking {url}"));
        let spec = check::CheckSpec {
            url,
            status: self.cli.expect_status,
            body: self.expectations.body.clone(),
            headers: self.expectations.headers.clone(),
            timeout: self.cli.check_timeout,
            interval: self.cli.interval.min(Duration::from_secs(2)),
        };
        Some(check::run(&spec, self.deadline, self.progress))
    }

    fn find_app(&self, name_or_id: &str) -> anyhow::Result<App> {
        if looks_like_uuid(name_or_id) {
            if let Some(app) =
                self.client.get_object_or_none::<App>(&format!("/v2/apps/{}", segment(name_or_id)), "app")?
            {
                return Ok(app);
            }
        }
        let apps: Vec<App> = self.client.get_all("/v2/apps", "apps")?;
        let names: Vec<&str> = apps.iter().map(App::name).collect();
        match apps.iter().find(|app| app.name() == name_or_id || app.id == name_or_id) {
            Some(app) => Ok(app.clone()),
            None => Err(Failure::usage(format!(
                "no app named {name_or_id:?}; the account has: {}",
                if names.is_empty() { "no apps".to_string() } else { names.join(", ") }
            ))),
        }
    }

    /// Warns when the change would run an older version than the one running (a quick start's
    /// `--tag v1.1.0` over v1.2.0, say); a digest-pinned component's version comes from its tags.
    fn warn_if_downgrade(&self, target: Option<&Target>, changes: &[spec::ComponentChange], wanted: &Wanted) {
        let (Some(target), Some(tag)) = (target, wanted.tag.as_deref()) else { return };
        let tags_of = |digest: &str| -> Vec<String> {
            let Ok(registry) = self.registry(target) else { return Vec::new() };
            let path =
                format!("/v2/registries/{}/repositories/{}/tags", segment(&registry), segment(&target.repository));
            let tags: Vec<Tag> = self.client.get_all(&path, "tags").unwrap_or_default();
            tags.into_iter().filter(|t| t.manifest_digest.as_deref() == Some(digest)).map(|t| t.tag).collect()
        };
        if let Some((change, running)) = spec::downgrade(changes, tag, tags_of) {
            self.progress.warn(&format!(
                "{} {} runs {running}, newer than {tag}: this deploys an older version (pass --allow-downgrade if that is what you want)",
                change.kind, change.name
            ));
        }
    }

    fn registry(&self, target: &Target) -> anyhow::Result<String> {
        if let Some(registry) = &target.registry {
            return Ok(registry.clone());
        }
        Ok(do_core::registry::find(self.client, None)?.name)
    }

    /// The digest to deploy: a tag is resolved through the registry; a digest must exist there.
    fn resolve(&self, target: &Target) -> anyhow::Result<Wanted> {
        let registry = self.registry(target)?;
        let base = format!("/v2/registries/{}/repositories/{}", segment(&registry), segment(&target.repository));
        let missing_repository = |error: anyhow::Error| {
            if do_core::api::has_status(&error, 404) {
                Failure::usage(format!("repository {:?} is not in registry {registry}", target.repository))
            } else {
                error
            }
        };
        match &target.reference {
            Reference::Tag(tag) => {
                let tags: Vec<Tag> =
                    self.client.get_all(&format!("{base}/tags"), "tags").map_err(missing_repository)?;
                let found = tags.iter().find(|t| &t.tag == tag).and_then(|t| t.manifest_digest.clone());
                let Some(found) = found else {
                    if self.cli.dry_run {
                        // A release's dry run plans the deployment before the image is pushed.
                        self.progress.info(&format!(
                            "dry run: {}:{tag} is not in {registry} yet; once pushed it is pinned by its digest",
                            target.repository
                        ));
                        let repository = target.repository.clone();
                        return Ok(Wanted { repository, tag: Some(tag.clone()), digest: String::new(), pin: Pin::Tag });
                    }
                    return Err(Failure::usage(format!(
                        "tag {tag} is not in {registry}/{}; push it first",
                        target.repository
                    )));
                };
                self.progress.info(&format!("{}:{tag} is {found}", target.repository));
                Ok(Wanted {
                    repository: target.repository.clone(),
                    tag: Some(tag.clone()),
                    digest: found,
                    pin: self.cli.pin,
                })
            }
            Reference::Digest(digest) => {
                let manifests: Vec<Manifest> =
                    self.client.get_all(&format!("{base}/digests"), "manifests").map_err(missing_repository)?;
                let manifest = manifests.iter().find(|m| &m.digest == digest).ok_or_else(|| {
                    Failure::usage(format!("digest {digest} is not in {registry}/{}", target.repository))
                })?;
                if self.cli.pin == Pin::Tag && manifest.tags.is_empty() {
                    return Err(Failure::usage(format!("--pin tag, but {digest} has no tag; use --pin digest")));
                }
                let tag = manifest.tags.iter().find(|t| *t != "latest").or(manifest.tags.first()).cloned();
                Ok(Wanted { repository: target.repository.clone(), tag, digest: digest.clone(), pin: self.cli.pin })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn app_ids_are_told_from_names() {
        assert!(looks_like_uuid("4f6c71e2-1e90-4762-9fee-6cc4a0a9f2cf"));
        assert!(!looks_like_uuid("my-app"));
        assert!(check_app_reference("my-app").is_ok());
        assert!(check_app_reference("my app").is_err());
        assert!(check_app_reference("../x").is_err());
    }
}
