//! Following a deployment to its end, and saying why it failed: the step and reason, the tail of
//! the failed phase's log (fetched without the token), and which deployment superseded it.

use std::time::Duration;

use do_core::api::segment;
use do_core::poll::{Check, Poller};
use do_core::types::{App, Deployment, Phase};
use serde_json::Value;

use crate::{Ctx, FailureReport, LOG_EXCERPT_LINES};

pub(crate) fn deployment(ctx: &Ctx, app: &App, id: &str) -> anyhow::Result<Deployment> {
    ctx.client.get_object(&format!("/v2/apps/{}/deployments/{}", segment(&app.id), segment(id)), "deployment")
}

/// How following a deployment ended: its terminal state (`None` at the deadline), and the phase
/// it was last seen in (no request is sent after the deadline to ask again).
pub(crate) struct Followed {
    pub ended: anyhow::Result<Option<Deployment>>,
    pub last_phase: Option<String>,
}

/// Follows a deployment to a terminal phase.
pub(crate) fn follow(ctx: &Ctx, app: &App, id: &str) -> Followed {
    let s = ctx.settings;
    let poller = Poller { interval: s.interval, max_interval: s.max_interval, deadline: ctx.deadline };
    let mut last_phase = None;
    let polled = poller.run(ctx.progress, || {
        let deployment = deployment(ctx, app, id)?;
        last_phase = Some(deployment.phase.to_string());
        if deployment.phase.is_terminal() {
            return Ok(Check::Done(deployment));
        }
        Ok(Check::Waiting(describe_progress(&deployment)))
    });
    Followed { ended: polled.map(|polled| polled.outcome), last_phase }
}

pub(crate) fn explain_failure(
    ctx: &Ctx,
    app: &App,
    deployment: &Deployment,
    fallback_component: Option<&str>,
) -> FailureReport {
    let failed =
        deployment.progress.as_ref().and_then(|p| serde_json::to_value(p).ok()).and_then(|p| find_error_step(&p, None));
    let (step, reason, component, top) = match &failed {
        Some(found) => (found.step.clone(), found.reason.clone(), found.component.clone(), found.top.clone()),
        None => (None, None, None, None),
    };
    let component = component.or(fallback_component.map(str::to_string));
    let log_type = match (deployment.phase.clone(), top.as_deref()) {
        (Phase::Error, Some(top)) if top.contains("build") => Some("BUILD"),
        (Phase::Error, _) => Some("DEPLOY"),
        _ => None,
    };
    ctx.progress.warn(&format!(
        "deployment {} ended {}{}{}",
        deployment.id,
        deployment.phase,
        step.as_deref().map(|s| format!(" in step {s}")).unwrap_or_default(),
        reason.as_deref().map(|r| format!(": {r}")).unwrap_or_default()
    ));
    let mut log_excerpt = Vec::new();
    if let (Some(log_type), Some(component)) = (log_type, component.as_deref()) {
        match log_tail(ctx, app, deployment, component, log_type) {
            Ok(Some(lines)) => {
                ctx.progress.info(&format!("last {} lines of the {log_type} log of {component}:", lines.len()));
                do_core::github::group(&format!("{log_type} log of {component}"));
                for line in &lines {
                    eprintln!("  {line}");
                }
                do_core::github::end_group();
                log_excerpt = lines.iter().rev().take(LOG_EXCERPT_LINES).rev().cloned().collect();
            }
            Ok(None) => ctx.progress.info(&format!("no {log_type} log: the deployment never reached that phase")),
            Err(error) => ctx.progress.warn(&format!("could not fetch the {log_type} log: {error:#}")),
        }
    }
    FailureReport { step, reason, component, log_type: log_type.map(str::to_string), log_excerpt }
}

/// The last `--log-lines` lines of a phase's log. The historic URLs are downloaded without the token.
fn log_tail(
    ctx: &Ctx,
    app: &App,
    deployment: &Deployment,
    component: &str,
    log_type: &str,
) -> anyhow::Result<Option<Vec<String>>> {
    let path = format!(
        "/v2/apps/{}/deployments/{}/components/{}/logs?type={log_type}",
        segment(&app.id),
        segment(&deployment.id),
        segment(component)
    );
    let answer: Value = match ctx.client.get_object_or_none::<Value>(&path, "historic_urls") {
        Ok(Some(urls)) => urls,
        Ok(None) => return Ok(None),
        Err(error) if do_core::api::has_status(&error, 400) => return Ok(None),
        Err(error) => return Err(error),
    };
    let urls: Vec<String> =
        answer.as_array().into_iter().flatten().filter_map(Value::as_str).map(str::to_string).collect();
    let mut lines = Vec::new();
    for url in urls {
        let text = do_core::api::download_without_token(&url, Duration::from_secs(30), 32 * 1024 * 1024)?;
        // An app's log can print anything, its secrets included.
        lines.extend(text.lines().map(do_core::redact::redact));
    }
    let skip = lines.len().saturating_sub(ctx.settings.log_lines);
    Ok(Some(lines.split_off(skip)))
}

/// The deployment that superseded `ours`: of the app's newest deployments, the oldest one
/// newer than it (the list is newest first). `None` when the list does not show one.
pub(crate) fn superseded_by(ctx: &Ctx, app: &App, ours: &Deployment) -> anyhow::Result<Option<Deployment>> {
    let recent = crate::update::recent_deployments(ctx, app)?;
    let newer: Vec<Deployment> = match recent.iter().position(|d| d.id == ours.id) {
        Some(at) => recent[..at].to_vec(),
        None => recent.into_iter().filter(|d| d.created_at > ours.created_at).collect(),
    };
    Ok(newer.into_iter().last())
}

struct ErrorStep {
    step: Option<String>,
    reason: Option<String>,
    component: Option<String>,
    top: Option<String>,
}

/// The deepest step with status ERROR, its reason, component and top-level step name.
fn find_error_step(progress: &Value, top: Option<&str>) -> Option<ErrorStep> {
    let steps = progress.get("steps").and_then(Value::as_array)?;
    for step in steps {
        if step.get("status").and_then(Value::as_str) != Some("ERROR") {
            continue;
        }
        let name = step.get("name").and_then(Value::as_str);
        let top_name = top.or(name);
        if let Some(deeper) = find_error_step(step, top_name) {
            return Some(deeper);
        }
        let text = |pointer: &str| step.pointer(pointer).and_then(Value::as_str).map(str::to_string);
        return Some(ErrorStep {
            step: name.map(str::to_string),
            reason: text("/reason/message").or_else(|| text("/reason/code")),
            component: text("/component_name"),
            top: top_name.map(str::to_string),
        });
    }
    None
}

/// `BUILDING 1/4 Building web`: the phase, the step count and what runs now.
fn describe_progress(deployment: &Deployment) -> String {
    let mut text = deployment.phase.to_string();
    if let Some(progress) = &deployment.progress {
        if let (Some(done), Some(total)) = (progress.success_steps, progress.total_steps) {
            text.push_str(&format!(" {done}/{total}"));
        }
        let running = progress
            .summary_steps
            .iter()
            .chain(progress.steps.iter())
            .find(|s| s.status == do_core::types::StepStatus::Running);
        if let Some(step) = running {
            let what = step.message_base.clone().or(step.name.clone()).unwrap_or_default().to_lowercase();
            for word in [what, step.component_name.clone().unwrap_or_default()] {
                if !word.is_empty() {
                    text.push(' ');
                    text.push_str(&word);
                }
            }
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_deepest_error_step_is_found_with_its_reason() {
        let progress = json!({"steps": [
            {"name": "build", "status": "SUCCESS"},
            {"name": "deploy", "status": "ERROR", "steps": [
                {"name": "deploy-web", "status": "ERROR", "component_name": "web", "reason": {"code": "HealthCheck", "message": "health checks failed"}}
            ]}
        ]});
        let found = find_error_step(&progress, None).unwrap();
        assert_eq!(found.step.as_deref(), Some("deploy-web"));
        assert_eq!(found.reason.as_deref(), Some("health checks failed"));
        assert_eq!(found.component.as_deref(), Some("web"));
        assert_eq!(found.top.as_deref(), Some("deploy"));
        assert!(find_error_step(&json!({"steps": []}), None).is_none());
    }
}
