//! An app's live URL, served by the simulator: `/_sim/live/APP/PATH` answers as the app's ACTIVE
//! deployment would, telling the version it runs (the tag of its image) in the `x-app-version`
//! header and the body, so a release can check that what went ACTIVE really serves. Each
//! deployment carries a scenario: healthy, failing for a while after it went ACTIVE (a slow
//! start), failing, turning bad after a while, one blip, flapping, or reporting another
//! version (the old image still serving). The app's health (`GET /v2/apps/{id}/health`)
//! follows the same scenario.

use std::time::Instant;

use serde_json::Value;

use crate::state::{Live, State};

type Answer = (u16, Vec<(String, String)>, String);

/// The answer at `rest` (`APP[/PATH]`).
pub fn answer(state: &mut State, rest: &str, now: Instant) -> Answer {
    state.settle(now);
    let app_name = rest.split('/').next().unwrap_or("");
    let Some(app) = state.apps.iter().find(|app| app.spec.get("name").and_then(Value::as_str) == Some(app_name)) else {
        return (404, Vec::new(), "no such app\n".into());
    };
    let Some(active) = app.active(now) else {
        return (503, Vec::new(), "no deployment is active\n".into());
    };
    let version = match &active.live {
        Live::WrongVersion { version } => version.clone(),
        _ => version_of(state, &active.spec),
    };
    if active.failing(now) {
        return (500, vec![("content-type".into(), "text/plain".into())], "upstream connect error\n".into());
    }
    let headers = vec![("content-type".into(), "text/plain".into()), ("x-app-version".into(), version.clone())];
    (200, headers, format!("{app_name} {version}\n"))
}

/// The version a spec runs: the tag of its first DOCR image, or, pinned by digest, the tag that
/// digest carries in the registry (not `latest` when it has another).
fn version_of(state: &State, spec: &Value) -> String {
    let image = ["services", "workers", "jobs"]
        .iter()
        .flat_map(|kind| spec.get(*kind).and_then(Value::as_array).cloned().unwrap_or_default())
        .find_map(|component| component.get("image").cloned());
    let Some(image) = image else { return "unknown".into() };
    let text = |key: &str| image.get(key).and_then(Value::as_str).filter(|s| !s.is_empty()).map(str::to_string);
    if let Some(tag) = text("tag") {
        return tag;
    }
    let (Some(repository), Some(digest)) = (text("repository"), text("digest")) else { return "unknown".into() };
    let tags: Vec<String> = state
        .registries
        .values()
        .filter_map(|registry| registry.repositories.get(&repository))
        .filter_map(|r| r.get(&digest))
        .flat_map(|m| m.tags.clone())
        .collect();
    tags.iter().find(|t| *t != "latest").or(tags.first()).cloned().unwrap_or(digest)
}

/// The app's health as `GET /v2/apps/{id}/health` tells it: per component of the ACTIVE
/// deployment, its replicas ready and its state, from the deployment's live scenario.
pub fn health(state: &mut State, app_index: usize, now: Instant) -> Value {
    state.settle(now);
    let app = &state.apps[app_index];
    let Some(active) = app.active(now) else { return serde_json::json!({"app_health": {"components": []}}) };
    let failing = active.failing(now);
    let components: Vec<Value> = crate::apps_model::component_names(&active.spec)
        .into_iter()
        .map(|name| {
            serde_json::json!({
                "name": name,
                "cpu_usage_percent": if failing { 0.5 } else { 12.5 },
                "memory_usage_percent": 30.0,
                "replicas_desired": 1,
                "replicas_ready": if failing { 0 } else { 1 },
                "state": if failing { "UNHEALTHY" } else { "HEALTHY" },
            })
        })
        .collect();
    serde_json::json!({"app_health": {"components": components}})
}
