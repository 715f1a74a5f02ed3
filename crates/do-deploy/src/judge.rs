//! The judgement of a deployment that ended: ACTIVE and the check passed (or none asked), then
//! the soak when asked; ACTIVE but the check or the soak failed; failed, with App Platform's own
//! rollback told as such; each failure explained and, with --rollback-on-failure, rolled back
//! under the rules (`rollback.rs`).

use do_core::types::{App, Deployment, Phase};
use do_core::Exit;

use crate::check::CheckReport;
use crate::soak::SoakReport;
use crate::{follow, rollback};
use crate::{Ctx, DeployRecord, FailureReport, RollbackReport, SupersededBy};

/// What the end of the followed deployment means for the run.
#[derive(Default)]
pub(crate) struct Verdict {
    pub outcome: &'static str,
    pub exit: Exit,
    pub check: Option<CheckReport>,
    pub failure: Option<FailureReport>,
    pub rollback: Option<RollbackReport>,
    pub soak: Option<SoakReport>,
    pub superseded_by: Option<SupersededBy>,
}

/// What the end means: ACTIVE and the check passed (or none asked); ACTIVE but the check failed;
/// or failed. A failure is explained and, with --rollback-on-failure, rolled back under the rules.
pub(crate) fn judge(ctx: &Ctx, app: &App, done: &Deployment, record: &DeployRecord) -> Verdict {
    let s = ctx.settings;
    let began_active = record.previous_deployment_id.as_deref();
    let roll_back = || s.rollback_on_failure.then(|| rollback::roll_back(ctx, app, began_active, &done.id));
    if done.phase != Phase::Active {
        let first_component = record.components.first().map(|c| c.name.as_str());
        let mut failure = follow::explain_failure(ctx, app, done, first_component);
        // App Platform may have rolled back on its own: say so, and never roll back again.
        let recent = crate::update::recent_deployments(ctx, app).unwrap_or_default();
        if let Some(platform) = crate::platform::auto_rollback_after(&recent, &done.id) {
            let (outcome, rollback) = platform_rollback(ctx, platform, &mut failure);
            return Verdict {
                outcome,
                exit: Exit::RemoteFailed,
                failure: Some(failure),
                rollback,
                ..Verdict::default()
            };
        }
        let rollback = roll_back();
        return Verdict {
            outcome: "failed",
            exit: Exit::RemoteFailed,
            failure: Some(failure),
            rollback,
            ..Verdict::default()
        };
    }
    let live = app.live_url.as_deref().map(|u| format!("; live at {u}")).unwrap_or_default();
    let took = do_core::duration::human(ctx.started.elapsed());
    ctx.progress.info(&format!("deployment {} is ACTIVE after {took}{live}", done.id));
    let check = crate::check::release(ctx, app);
    match &check {
        Some(report) if !report.passed => {
            crate::check::tell_failure(ctx.progress, report);
            let failure = FailureReport {
                step: Some("check".into()),
                reason: report.reason.clone(),
                component: None,
                log_type: None,
                log_excerpt: Vec::new(),
            };
            let rollback = roll_back();
            Verdict {
                outcome: "check_failed",
                exit: Exit::RemoteFailed,
                check,
                failure: Some(failure),
                rollback,
                ..Verdict::default()
            }
        }
        _ => {
            if check.is_some() {
                ctx.progress.info("the check passed");
            }
            Verdict { outcome: "active", exit: Exit::Done, check, ..Verdict::default() }
        }
    }
}

/// App Platform rolled back on its own after our deployment: the release failed, and no
/// rollback is made here. The outcome and the rollback report.
fn platform_rollback(
    ctx: &Ctx,
    platform: &Deployment,
    failure: &mut FailureReport,
) -> (&'static str, Option<RollbackReport>) {
    let to = platform.cloned_from.clone().unwrap_or_else(|| "an earlier deployment".into());
    let said = format!("App Platform rolled back to deployment {to} on its own (deployment {})", platform.id);
    ctx.progress.warn(&format!("{said}; not rolling back again"));
    failure.reason = Some(match failure.reason.take() {
        Some(reason) => format!("{said}; {reason}"),
        None => said.clone(),
    });
    let report = RollbackReport {
        to_deployment_id: to,
        deployment_id: Some(platform.id.clone()),
        phase: Some(platform.phase.to_string()),
        skipped: Some(format!("{said}: none made here")),
        by_platform: true,
        ..RollbackReport::default()
    };
    ("platform_rollback", Some(report))
}

/// The soak after ACTIVE and a passed check: what it ends in means for the run.
pub(crate) fn soak_verdict(
    ctx: &Ctx,
    app: &App,
    done: &Deployment,
    record: &DeployRecord,
    soak: crate::soak::Soak,
    active: Verdict,
) -> Verdict {
    let check = match crate::check::spec_for(ctx, app) {
        Some(Ok(spec)) => Some(spec),
        _ => None,
    };
    let (report, ended) = crate::soak::watch(ctx, app, done, soak, check.as_ref());
    let failure = |step: &str, reason: String| {
        Some(FailureReport {
            step: Some(step.into()),
            reason: Some(reason),
            component: None,
            log_type: None,
            log_excerpt: Vec::new(),
        })
    };
    let soaked = Verdict { soak: Some(report.clone()), check: active.check, ..Verdict::default() };
    match ended {
        crate::soak::Ended::Passed => {
            ctx.progress.info(&format!("the soak passed: {} looks, {} failed", report.checks, report.failures));
            Verdict { outcome: "active", exit: Exit::Done, ..soaked }
        }
        crate::soak::Ended::Breached(what) => {
            let began_active = record.previous_deployment_id.as_deref();
            let rollback =
                ctx.settings.rollback_on_failure.then(|| rollback::roll_back(ctx, app, began_active, &done.id));
            Verdict {
                outcome: "soak_failed",
                exit: Exit::RemoteFailed,
                failure: failure("soak", what),
                rollback,
                ..soaked
            }
        }
        crate::soak::Ended::PlatformRollback(platform) => {
            let mut failed = FailureReport {
                step: Some("soak".into()),
                reason: None,
                component: None,
                log_type: None,
                log_excerpt: Vec::new(),
            };
            let (outcome, rollback) = platform_rollback(ctx, &platform, &mut failed);
            Verdict { outcome, exit: Exit::RemoteFailed, failure: Some(failed), rollback, ..soaked }
        }
        crate::soak::Ended::Superseded(newer) => {
            ctx.progress.warn(&format!("the soak ends: deployment {} is newer; nothing is rolled back", newer.id));
            let superseded_by = Some(SupersededBy {
                deployment_id: newer.id.clone(),
                cause: newer.cause.clone(),
                phase: newer.phase.to_string(),
                adopted: false,
            });
            Verdict { outcome: "superseded", exit: Exit::Failed, superseded_by, ..soaked }
        }
        crate::soak::Ended::Deadline => Verdict { outcome: "deadline", exit: Exit::Deadline, ..soaked },
    }
}
