//! Rolling back after a failure, and never over someone else's newer work: the rollback returns
//! only to the deployment that was ACTIVE when this run began, and only while that (or this
//! run's own) is the ACTIVE one and nothing newer exists or runs.

use std::collections::BTreeSet;

use do_core::api::segment;
use do_core::types::{App, Deployment, Phase};
use serde_json::{json, Value};

use crate::{Ctx, RollbackReport};

/// Rolls back to `to`, the deployment that was ACTIVE when this run began, and follows the
/// rollback; or says why it did not. `ours` is the deployment this run made.
pub(crate) fn roll_back(ctx: &Ctx, app: &App, to: Option<&str>, ours: &str) -> RollbackReport {
    let Some(to) = to else {
        ctx.progress.warn("no rollback: no deployment was ACTIVE when this run began");
        return RollbackReport {
            skipped: Some("no deployment was ACTIVE when this run began".into()),
            ..RollbackReport::default()
        };
    };
    let mut report = RollbackReport { to_deployment_id: to.to_string(), ..RollbackReport::default() };
    let blocker = match rollback_blocker(ctx, app, to, ours) {
        Ok(blocker) => blocker,
        Err(error) => {
            Some(format!("the app could not be read to make sure a rollback undoes nothing newer: {error:#}"))
        }
    };
    if let Some(why) = blocker {
        ctx.progress.warn(&format!("no rollback: {why}"));
        report.skipped = Some(why);
        return report;
    }
    let body = json!({"deployment_id": to, "skip_pin": true});
    let base = format!("/v2/apps/{}/rollback", segment(&app.id));
    let mut attempt = || -> anyhow::Result<Option<Deployment>> {
        let validation = ctx.client.post_raw(&format!("{base}/validate"), Some(&body))?;
        let verdict: Value = serde_json::from_slice(&validation.body).unwrap_or(Value::Null);
        if verdict.get("valid").and_then(Value::as_bool) != Some(true) {
            let why = verdict.pointer("/error/message").and_then(Value::as_str).unwrap_or("the API gave no reason");
            anyhow::bail!("rollback to {to} is not valid: {why}");
        }
        ctx.progress.info(&format!("rolling back to deployment {to}"));
        let known: BTreeSet<String> = crate::update::recent_deployments(ctx, app)?.into_iter().map(|d| d.id).collect();
        let rollback = match ctx.client.post_create::<Deployment>(&base, Some(&body), "deployment") {
            Ok(deployment) => deployment,
            Err(error) if do_core::api::is_ambiguous(&error) => {
                let clones_target = |d: &Deployment| d.cloned_from.as_deref().is_none_or(|from| from == to);
                crate::update::find_created(ctx, app, &known, clones_target, "the rollback request")?
            }
            Err(error) => return Err(error),
        };
        report.deployment_id = Some(rollback.id.clone());
        crate::follow::follow(ctx, app, &rollback.id).ended
    };
    let outcome = attempt();
    match outcome {
        Ok(Some(done)) => {
            report.phase = Some(done.phase.to_string());
            if done.phase == Phase::Active {
                ctx.progress.info(&format!("rolled back: deployment {} is ACTIVE", done.id));
            } else {
                ctx.progress.warn(&format!("the rollback deployment {} ended {}", done.id, done.phase));
            }
        }
        Ok(None) => {
            report.phase = Some("TIMEOUT".into());
            ctx.progress.warn("the rollback was still running at the deadline");
        }
        Err(error) => {
            ctx.progress.warn(&format!("rollback failed: {error:#}"));
            report.error = Some(format!("{error:#}"));
        }
    }
    report
}

/// Why a rollback to `to` would undo someone else's newer work, if it would: `to` (or, when
/// the check failed, ours) must be the ACTIVE deployment, nothing other than ours in progress
/// or pending, and no deployment newer than ours.
fn rollback_blocker(ctx: &Ctx, app: &App, to: &str, ours: &str) -> anyhow::Result<Option<String>> {
    let fresh: App = ctx.client.get_object(&format!("/v2/apps/{}", segment(&app.id)), "app")?;
    let active = fresh.active_deployment.as_ref().map(|d| d.id.as_str());
    if active != Some(to) && active != Some(ours) {
        return Ok(Some(format!(
            "deployment {} is ACTIVE now, not {to}, which was when this run began: a rollback would undo it",
            active.unwrap_or("(none)")
        )));
    }
    for busy in [&fresh.in_progress_deployment, &fresh.pending_deployment].into_iter().flatten() {
        if busy.id != ours && !busy.phase.is_terminal() {
            return Ok(Some(format!("deployment {} is {} now: a rollback would supersede it", busy.id, busy.phase)));
        }
    }
    let recent = crate::update::recent_deployments(ctx, app)?;
    if let Some(newer) = recent.iter().take_while(|d| d.id != ours).find(|d| d.id != to) {
        return Ok(Some(format!(
            "deployment {} ({}) was made after this run's: a rollback would undo it",
            newer.id,
            newer.cause.as_deref().unwrap_or("no cause given")
        )));
    }
    Ok(None)
}
