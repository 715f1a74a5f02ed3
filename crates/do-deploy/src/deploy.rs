//! A deploy, phase by phase, each a function of what the earlier ones gave: find the app (with
//! `--spec`, the one the spec names, made when missing); settle a deployment already in
//! progress; plan what to send (pure); report a dry run; start the deployment; follow it to its
//! end (and the one that superseded it, when that runs the same image); judge the end (the check
//! after ACTIVE, the failure's reason, the rollback). The record is assembled here alone.

use do_core::api::segment;
use do_core::types::{App, Deployment, Phase};
use do_core::{Exit, Failure};
use serde_json::{json, Value};

use crate::create::{FromFile, SpecApp};
use crate::diff::SpecChange;
use crate::spec::{self, ComponentChange, Wanted};
use crate::target::Target;
use crate::update::Intent;
use crate::{create, diff, follow, gather, judge, update};
use crate::{Ctx, DeployRecord, FailureReport, Settings, SupersededBy};

/// The app this run deploys to, and with `--spec` the spec it sends.
struct Found {
    app: App,
    created: bool,
    from_file: Option<FromFile>,
}

/// What the run sends.
enum Plan {
    /// A deployment in progress already deploys this image: follow it.
    Follow(Box<Deployment>),
    /// Every matched component already runs the image: nothing to do.
    Unchanged,
    /// The spec to send (the app's own, pinned; or the file's).
    Update(Value),
    /// No image given: a new deployment of the spec as it is.
    Redeploy,
}

/// The plan with what it changes: each component's image, and with `--spec` each field.
struct Planned {
    plan: Plan,
    components: Option<Vec<ComponentChange>>,
    spec_changes: Option<Vec<SpecChange>>,
}

/// How following ended.
enum Ending {
    Done(Box<Deployment>),
    /// The deadline came first; the phase last seen.
    Deadline(Option<String>),
    /// Someone deployed something else over it.
    Superseded,
    /// A request failed after one that may have changed something.
    Lost {
        error: anyhow::Error,
        last_phase: Option<String>,
        outcome: &'static str,
    },
}

pub(crate) fn deploy(ctx: &Ctx, target: Option<Target>) -> anyhow::Result<(DeployRecord, Exit)> {
    let s = ctx.settings;
    let wanted = target.as_ref().map(|target| gather::resolve(ctx, target)).transpose()?;
    let repository = target.as_ref().map(|t| t.repository.as_str());
    let found = match find(ctx, wanted.as_ref(), repository)? {
        Ok(found) => found,
        Err(dry_run_create) => return Ok((dry_run_create, Exit::Done)),
    };
    let mut record = new_record(ctx, &found, wanted.as_ref());
    let (mut found, adopted) = settle_busy(ctx, found, wanted.as_ref(), repository)?;
    let intent = intent(s, wanted.as_ref(), repository, found.from_file.as_ref());
    let planned = plan(s, &found, intent.as_ref(), adopted).map_err(Failure::usage)?;
    if let (false, Some(wanted), Some(components)) = (s.allow_downgrade, &wanted, &planned.components) {
        gather::warn_if_downgrade(ctx, target.as_ref(), components, wanted);
    }
    record.components = planned.components.unwrap_or(record.components);
    record.spec_changes = planned.spec_changes.unwrap_or(record.spec_changes);
    if let Plan::Unchanged = planned.plan {
        return Ok((unchanged(ctx, record, &found.app), Exit::Done));
    }
    if let Some(refusal) = crate::platform::pinned_refusal(&found.app) {
        return Err(Failure::usage(refusal));
    }
    record.changed = true;
    if s.dry_run {
        record.phase = report_dry_run(ctx, &record, &found, wanted.is_none());
        record.outcome = "dry_run".into();
        return Ok((record, Exit::Done));
    }
    warn_deploy_on_push(ctx, &record.components);
    // From here a request may change something: every outcome goes into the record.
    let deployment = match start(ctx, &found.app, planned.plan, intent.as_ref()) {
        Ok(deployment) => deployment,
        Err(error) => return Ok(lost(ctx, record, &error, None, "unknown")),
    };
    record.deployment_id = Some(deployment.id.clone());
    record.cause = deployment.cause.clone();
    let shown = record.image.as_deref().unwrap_or("redeploy");
    ctx.progress.info(&format!("deployment {} of {} ({shown})", deployment.id, found.app.name()));
    if s.no_wait {
        record.phase = deployment.phase.to_string();
        record.outcome = "created".into();
        record.duration_ms = ctx.started.elapsed().as_millis() as u64;
        return Ok((record, Exit::Done));
    }
    let (ending, current, superseded_by) = follow_to_end(ctx, &found.app, deployment, intent.as_ref());
    record.deployment_id = Some(current.id.clone());
    record.cause = current.cause.clone();
    record.superseded_by = superseded_by;
    let done = match ending {
        Ending::Done(done) => *done,
        Ending::Deadline(last_phase) => return Ok(deadline(ctx, record, last_phase)),
        Ending::Superseded => return Ok(superseded(ctx, record)),
        Ending::Lost { error, last_phase, outcome } => return Ok(lost(ctx, record, &error, last_phase, outcome)),
    };
    refresh_live_url(ctx, &mut found.app, &done);
    let verdict = match (judge::judge(ctx, &found.app, &done, &record), s.soak) {
        (verdict, Some(soak)) if verdict.outcome == "active" => {
            judge::soak_verdict(ctx, &found.app, &done, &record, soak, verdict)
        }
        (verdict, _) => verdict,
    };
    record.live_url = found.app.live_url.clone();
    record.phase = done.phase.to_string();
    record.outcome = verdict.outcome.into();
    record.check = verdict.check;
    record.failure = verdict.failure;
    record.rollback = verdict.rollback;
    record.soak = verdict.soak;
    record.superseded_by = verdict.superseded_by.or(record.superseded_by);
    record.duration_ms = ctx.started.elapsed().as_millis() as u64;
    Ok((record, verdict.exit))
}

/// The app: with `--spec`, the one the spec names (made when missing, or the record of a dry
/// run that would make it); else `--app`, checked to have components running `repository`.
fn find(ctx: &Ctx, wanted: Option<&Wanted>, repository: Option<&str>) -> anyhow::Result<Result<Found, DeployRecord>> {
    let s = ctx.settings;
    match (&s.spec_plan, wanted, repository) {
        (Some(plan), Some(wanted), Some(repository)) => match create::app_for_spec(ctx, plan, wanted, repository)? {
            SpecApp::Ready { app, created, from_file } => {
                Ok(Ok(Found { app: *app, created, from_file: Some(from_file) }))
            }
            SpecApp::DryRunCreate(record) => Ok(Err(*record)),
        },
        (Some(_), _, _) => Err(Failure::usage(
            "--spec needs the image to pin: --image, --repository with --tag or --digest, or an image record on stdin",
        )),
        (None, _, _) => {
            let app = gather::find_app(ctx, s.app.as_deref().unwrap_or_default())?;
            if let Some(repository) = repository {
                spec::matching_components(&app.spec, repository, &s.component).map_err(Failure::usage)?;
            }
            Ok(Ok(Found { app, created: false, from_file: None }))
        }
    }
}

/// The record as the run begins; a created app's fields and images are all new.
fn new_record(ctx: &Ctx, found: &Found, wanted: Option<&Wanted>) -> DeployRecord {
    let app = &found.app;
    let (spec_changes, components) = match (found.created, &found.from_file) {
        (true, Some(file)) => (
            diff::changes(&json!({}), &file.new_spec),
            spec::told_against_live(file.changes.clone(), &file.components, &json!({})),
        ),
        _ => (Vec::new(), Vec::new()),
    };
    DeployRecord {
        app_id: app.id.clone(),
        app_name: app.name().to_string(),
        deployment_id: None,
        // The one a rollback may return to: ACTIVE when this run began.
        previous_deployment_id: app.active_deployment.as_ref().map(|d| d.id.clone()),
        phase: String::new(),
        image: wanted.map(Wanted::shown),
        components,
        changed: false,
        dry_run: ctx.settings.dry_run,
        cause: None,
        duration_ms: 0,
        live_url: app.live_url.clone(),
        outcome: String::new(),
        failure: None,
        superseded_by: None,
        check: None,
        rollback: None,
        created: found.created,
        preview: ctx.settings.spec_plan.as_ref().and_then(|plan| plan.preview.clone()),
        spec_changes,
        soak: None,
    }
}

/// What tells this run's deployments, once the image (and with `--spec`, the spec) is known.
fn intent<'a>(
    settings: &'a Settings,
    wanted: Option<&'a Wanted>,
    repository: Option<&'a str>,
    from_file: Option<&'a FromFile>,
) -> Option<Intent<'a>> {
    let (wanted, repository) = (wanted?, repository?);
    Some(Intent { wanted, repository, components: &settings.component, spec: from_file.map(|f| &f.new_spec) })
}

/// A deployment in progress or pending that already runs the wanted image is ours (an earlier,
/// interrupted run) or another run's of the same image: it is followed. Another one is waited
/// for, cancelled or refused (--if-busy); the app is then read again and the spec to send made
/// again from it, so a secret rotated or a domain added meanwhile is neither undone nor lost.
fn settle_busy(
    ctx: &Ctx,
    mut found: Found,
    wanted: Option<&Wanted>,
    repository: Option<&str>,
) -> anyhow::Result<(Found, Option<Deployment>)> {
    let s = ctx.settings;
    let busy = [&found.app.in_progress_deployment, &found.app.pending_deployment]
        .into_iter()
        .flatten()
        .find(|d| !d.phase.is_terminal())
        .cloned();
    let Some(busy) = busy else { return Ok((found, None)) };
    if intent(s, wanted, repository, found.from_file.as_ref()).is_some_and(|intent| intent.is_in(&busy.spec)) {
        ctx.progress.info(&format!("deployment {} ({}) already deploys this image; following it", busy.id, busy.phase));
        return Ok((found, Some(busy)));
    }
    if s.dry_run {
        let shown = format!("{:?}", s.if_busy);
        ctx.progress.info(&format!("dry run: deployment {} is in progress; --if-busy {shown} would apply", busy.id));
        return Ok((found, None));
    }
    update::handle_busy(ctx, &found.app, &busy)?;
    found.app = ctx.client.get_object(&format!("/v2/apps/{}", segment(&found.app.id)), "app")?;
    if let (Some(plan), Some(wanted), Some(repository), Some(_)) = (&s.spec_plan, wanted, repository, &found.from_file)
    {
        found.from_file = Some(create::spec_to_send(ctx, plan, wanted, repository, Some(&found.app))?);
    }
    Ok((found, None))
}

/// What to send, from the app as it is: pure. An image that already runs on every matched
/// component (and, with `--spec`, a spec that changes nothing) is `Unchanged` unless --force.
fn plan(
    settings: &Settings,
    found: &Found,
    intent: Option<&Intent>,
    adopted: Option<Deployment>,
) -> Result<Planned, String> {
    let app = &found.app;
    let (intent, None) = (intent, &adopted) else {
        let plan = adopted.map_or(Plan::Redeploy, |adopted| Plan::Follow(Box::new(adopted)));
        return Ok(Planned { plan, components: None, spec_changes: None });
    };
    let Some(intent) = intent else {
        return Ok(Planned { plan: Plan::Redeploy, components: None, spec_changes: None });
    };
    // What runs is the active deployment's spec: after a failed deployment the app's spec
    // already names the image that did not go live, and "X -> X" would hide that it is not running.
    let active_spec = app.active_deployment.as_ref().map(|d| &d.spec).unwrap_or(&app.spec);
    let (new_spec, components, spec_changes) = match &found.from_file {
        Some(file) => (
            file.new_spec.clone(),
            spec::told_against_live(file.changes.clone(), &file.components, active_spec),
            Some(diff::changes(&app.spec, &file.new_spec)),
        ),
        None => {
            let matched = spec::matching_components(&app.spec, intent.repository, &settings.component)?;
            let (new_spec, changes) = spec::pin(&app.spec, &matched, intent.wanted);
            (new_spec, spec::told_against_live(changes, &matched, active_spec), None)
        }
    };
    let already = app.in_progress_deployment.is_none()
        && app.active_deployment.is_some()
        && intent.is_in(active_spec)
        && intent.is_in(&app.spec)
        && spec_changes.as_ref().is_none_or(Vec::is_empty);
    let plan = if already && !settings.force { Plan::Unchanged } else { Plan::Update(new_spec) };
    Ok(Planned { plan, components: Some(components), spec_changes })
}

/// The record when every matched component already runs the image.
fn unchanged(ctx: &Ctx, mut record: DeployRecord, app: &App) -> DeployRecord {
    let active = app.active_deployment.as_ref().expect("an unchanged plan has an ACTIVE deployment");
    let image = record.image.as_deref().unwrap_or("");
    ctx.progress.info(&format!("{} already runs {image} on every matched component; nothing to do", app.name()));
    record.deployment_id = Some(active.id.clone());
    record.phase = active.phase.to_string();
    record.cause = active.cause.clone();
    record.outcome = "unchanged".into();
    record.components.iter_mut().for_each(|c| c.image_before = c.image_after.clone());
    record
}

/// Says what a dry run would do; the phase to report (the ACTIVE deployment's).
fn report_dry_run(ctx: &Ctx, record: &DeployRecord, found: &Found, redeploy: bool) -> String {
    let app = &found.app;
    if found.from_file.is_some() {
        let n = record.spec_changes.len();
        let (plural, colon) = (if n == 1 { "" } else { "s" }, if n == 0 { "" } else { ":" });
        ctx.progress.info(&format!("dry run: the spec would change {n} field{plural} of {}{colon}", app.name()));
        for change in &record.spec_changes {
            ctx.progress.info(&format!("  {change}"));
        }
    }
    for change in &record.components {
        let off = if change.deploy_on_push_disabled { " (deploy_on_push turned off)" } else { "" };
        ctx.progress.info(&format!(
            "dry run: {} {}: {} -> {}{off}",
            change.kind, change.name, change.image_before, change.image_after
        ));
    }
    if redeploy {
        let rebuild = if ctx.settings.force_rebuild { " with a rebuild" } else { "" };
        ctx.progress.info(&format!("dry run: would create a deployment of {}{rebuild}", app.name()));
    }
    app.active_deployment.as_ref().map(|d| d.phase.to_string()).unwrap_or_else(|| "UNKNOWN".into())
}

fn warn_deploy_on_push(ctx: &Ctx, components: &[ComponentChange]) {
    for change in components.iter().filter(|c| c.deploy_on_push_disabled) {
        ctx.progress.warn(&format!(
            "{} {}: deploy_on_push turned off, since App Platform refuses it with a digest",
            change.kind, change.name
        ));
    }
}

/// Starts the deployment the plan asks for (or takes the one to follow).
fn start(ctx: &Ctx, app: &App, plan: Plan, intent: Option<&Intent>) -> anyhow::Result<Deployment> {
    match (plan, intent) {
        (Plan::Follow(adopted), _) => Ok(*adopted),
        (Plan::Update(new_spec), Some(intent)) => update::update_spec(ctx, app, new_spec, intent),
        _ => {
            let path = format!("/v2/apps/{}/deployments", segment(&app.id));
            update::create_deployment(ctx, app, &path, &json!({"force_build": ctx.settings.force_rebuild}))
        }
    }
}

/// Follows `deployment` to its end; a deployment that superseded it and runs the same image (or,
/// for a redeploy, the same spec) is followed in turn. Also the deployment last followed and
/// what superseded ours.
fn follow_to_end(
    ctx: &Ctx,
    app: &App,
    deployment: Deployment,
    intent: Option<&Intent>,
) -> (Ending, Deployment, Option<SupersededBy>) {
    let mut current = deployment;
    let mut superseded_by = None;
    loop {
        let followed = follow::follow(ctx, app, &current.id);
        let last_phase = followed.last_phase;
        let done = match followed.ended {
            Ok(Some(done)) => done,
            Ok(None) => return (Ending::Deadline(last_phase), current, superseded_by),
            Err(error) => return (Ending::Lost { error, last_phase, outcome: "unknown" }, current, superseded_by),
        };
        if done.phase != Phase::Superseded {
            return (Ending::Done(Box::new(done)), current, superseded_by);
        }
        let newer = match follow::superseded_by(ctx, app, &done) {
            Ok(newer) => newer,
            Err(error) => return (Ending::Lost { error, last_phase, outcome: "superseded" }, current, superseded_by),
        };
        let same = newer.as_ref().is_some_and(|newer| match intent {
            Some(intent) => intent.is_in(&newer.spec),
            None => spec::normalized(&newer.spec) == spec::normalized(&done.spec),
        });
        superseded_by = newer.as_ref().map(|newer| SupersededBy {
            deployment_id: newer.id.clone(),
            cause: newer.cause.clone(),
            phase: newer.phase.to_string(),
            adopted: same,
        });
        match newer {
            Some(newer) if same => {
                let cause = newer.cause.as_deref().unwrap_or("no cause given");
                ctx.progress.info(&format!(
                    "deployment {} was superseded by {} ({cause}), which deploys the same image; following it",
                    done.id, newer.id
                ));
                current = newer;
            }
            // Someone deployed something else: never roll back over it.
            _ => return (Ending::Superseded, current, superseded_by),
        }
    }
}

/// A new app gets its URL with its first ACTIVE deployment.
fn refresh_live_url(ctx: &Ctx, app: &mut App, done: &Deployment) {
    if done.phase == Phase::Active && app.live_url.is_none() {
        if let Ok(fresh) = ctx.client.get_object::<App>(&format!("/v2/apps/{}", segment(&app.id)), "app") {
            app.live_url = fresh.live_url;
        }
    }
}

fn deadline(ctx: &Ctx, mut record: DeployRecord, last_phase: Option<String>) -> (DeployRecord, Exit) {
    record.duration_ms = ctx.started.elapsed().as_millis() as u64;
    record.phase = last_phase.unwrap_or_else(|| "UNKNOWN".into());
    record.outcome = "deadline".into();
    (record, Exit::Deadline)
}

fn superseded(ctx: &Ctx, mut record: DeployRecord) -> (DeployRecord, Exit) {
    record.phase = Phase::Superseded.to_string();
    record.outcome = "superseded".into();
    record.duration_ms = ctx.started.elapsed().as_millis() as u64;
    (record, Exit::Failed)
}

/// The record when something went wrong after a request that may have changed something:
/// what is known, and the exit code the error calls for (3 at the deadline, else 1).
fn lost(
    ctx: &Ctx,
    mut record: DeployRecord,
    error: &anyhow::Error,
    last_phase: Option<String>,
    outcome: &str,
) -> (DeployRecord, Exit) {
    record.duration_ms = ctx.started.elapsed().as_millis() as u64;
    record.phase = last_phase.unwrap_or_else(|| "UNKNOWN".into());
    let exit = match do_core::exit::exit_code_of(error) {
        Exit::Deadline => Exit::Deadline,
        _ => Exit::Failed,
    };
    record.outcome = if exit == Exit::Deadline { "deadline".into() } else { outcome.into() };
    let reason = match record.deployment_id {
        Some(_) => format!("lost track of the deployment: {error:#}"),
        None => format!("{error:#}"),
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
