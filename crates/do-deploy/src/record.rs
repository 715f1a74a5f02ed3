//! The `deploy` record and what is told from it: the GitHub Actions outputs and step summary,
//! and the exit code with its message.

use do_core::{Exit, Failure};
use serde::Serialize;

use crate::check::CheckReport;
use crate::diff;
use crate::spec::ComponentChange;

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
    /// `check_failed`, `soak_failed`, `platform_rollback` (App Platform rolled back on its own),
    /// `superseded`, `deadline`, or `unknown` (lost track of it).
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
    /// With --soak: how the watch after ACTIVE went.
    pub soak: Option<crate::soak::SoakReport>,
}

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
    /// App Platform rolled back on its own (`deployment_id` is its rollback); none was made here.
    pub by_platform: bool,
}

pub(crate) fn github_outputs(record: &DeployRecord) -> anyhow::Result<()> {
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
        ("soak_checks", record.soak.as_ref().map_or(0, |s| s.checks).to_string()),
        ("soak_failures", record.soak.as_ref().map_or(0, |s| s.failures).to_string()),
        ("soak_seconds", record.soak.as_ref().map_or(0, |s| s.elapsed_ms / 1000).to_string()),
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

/// The exit a record calls for, with the message that goes with it.
pub(crate) fn exit_of(record: &DeployRecord, exit: Exit, timeout: std::time::Duration) -> anyhow::Result<Exit> {
    let reason = record.failure.as_ref().and_then(|f| f.reason.as_deref());
    let deployment = record.deployment_id.as_deref().unwrap_or("?");
    match (exit, record.outcome.as_str()) {
        (Exit::RemoteFailed, "check_failed") => Err(Failure::remote(format!(
            "deployment {deployment} is ACTIVE, but the check failed: {}",
            reason.unwrap_or("no reason")
        ))),
        (Exit::RemoteFailed, "soak_failed") => Err(Failure::remote(format!(
            "deployment {deployment} went ACTIVE, but broke during the soak: {}",
            reason.unwrap_or("no reason")
        ))),
        (Exit::RemoteFailed, "platform_rollback") => {
            Err(Failure::remote(format!("the release failed: {}", reason.unwrap_or("App Platform rolled back"))))
        }
        (Exit::RemoteFailed, _) => Err(Failure::remote(format!(
            "deployment {deployment} ended {}{}",
            record.phase,
            reason.map(|r| format!(": {r}")).unwrap_or_default()
        ))),
        (Exit::Deadline, _) if record.deployment_id.is_none() => Err(Failure::deadline(format!(
            "the deadline ({}) passed before do-deploy saw the deployment it asked for; one may have started: rerun do-deploy with the same image to follow it, or raise --timeout",
            do_core::duration::human(timeout)
        ))),
        (Exit::Deadline, _) => Err(Failure::deadline(format!(
            "deployment {deployment} is still {} after {} and keeps running; rerun do-deploy with the same image to follow it, or raise --timeout",
            record.phase,
            do_core::duration::human(timeout)
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
