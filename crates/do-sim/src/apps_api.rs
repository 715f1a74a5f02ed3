//! The API's App Platform routes: apps, deployments and their logs, rollbacks, propose,
//! and the rules App Platform checks a spec against.

use std::time::Instant;

use serde_json::{json, Value};

use crate::paging::*;
use crate::state::{SimError, State};
use crate::wire::*;

/// The app's live URL: served by the simulator itself, answering per its ACTIVE deployment.
pub(crate) fn live_url(base_url: &str, app: &crate::state::App) -> String {
    format!("{base_url}/_sim/live/{}", app.spec.get("name").and_then(Value::as_str).unwrap_or("app"))
}

pub(crate) fn apps_route(
    state: &mut State,
    incoming: &Incoming,
    base_url: &str,
    now: Instant,
    rest: &[&str],
) -> Answer {
    match (incoming.method.as_str(), rest) {
        ("GET", []) => {
            let apps = state.apps.iter().map(|app| app.to_json(now, &live_url(base_url, app))).collect();
            listing("apps", apps, incoming, base_url)
        }
        ("POST", []) => {
            let spec = spec_in_body(incoming)?;
            check_spec(&spec)?;
            check_name_free(state, &spec, None)?;
            let id = state.add_app(None, crate::appspec::as_stored(&spec), false, now);
            let index = state.apps.iter().position(|app| app.id == id).expect("just added");
            state.apps[index].created_at = crate::state::now_rfc3339();
            let deployment = state.create_deployment(index, "initial deployment", now);
            ok(json!({ "app": app_with_pending(state, index, deployment, now, base_url) }))
        }
        ("POST", ["propose"]) => {
            let spec = spec_in_body(incoming)?;
            check_spec(&spec)?;
            let app_id = incoming.body.as_ref().and_then(|b| b.get("app_id")).and_then(Value::as_str);
            if let Some(app_id) = app_id {
                if !state.apps.iter().any(|app| app.id == app_id) {
                    return Err(SimError::not_found());
                }
            }
            let available = check_name_free(state, &spec, app_id).is_ok();
            ok(crate::appspec::proposal(&spec, available))
        }
        (method, [app_id, rest @ ..]) => {
            let index = state.apps.iter().position(|app| app.id == *app_id).ok_or_else(SimError::not_found)?;
            match (method, rest) {
                ("GET", []) => {
                    ok(json!({"app": state.apps[index].to_json(now, &live_url(base_url, &state.apps[index]))}))
                }
                ("PUT", []) | ("POST", ["deployments"]) if state.apps[index].pinned.is_some() => Err(SimError::new(
                    409,
                    "conflict",
                    "app_pinned: the app is pinned to a rollback; commit or revert it first",
                )),
                ("DELETE", []) => {
                    let app = state.apps.remove(index);
                    ok(json!({ "id": app.id }))
                }
                ("PUT", []) => {
                    let spec = spec_in_body(incoming)?;
                    check_spec(&spec)?;
                    let id = state.apps[index].id.clone();
                    check_name_free(state, &spec, Some(&id))?;
                    state.apps[index].spec = crate::appspec::as_stored(&spec);
                    let deployment = state.create_deployment(index, "app spec updated", now);
                    ok(json!({ "app": app_with_pending(state, index, deployment, now, base_url) }))
                }
                ("GET", ["health"]) => ok(crate::live::health(state, index, now)),
                ("GET", ["deployments"]) => {
                    let app = &state.apps[index];
                    let items = app.deployments.iter().rev().map(|d| d.to_json(now)).collect();
                    listing("deployments", items, incoming, base_url)
                }
                ("POST", ["deployments"]) => {
                    let Some(body) = incoming.body.as_ref().filter(|b| b.is_object()) else {
                        return Err(SimError::new(422, "unprocessable_entity", "Body parameter is required"));
                    };
                    let cause = if body.get("force_build").and_then(Value::as_bool) == Some(true) {
                        "manual (force rebuild)"
                    } else {
                        "manual"
                    };
                    ok(json!({"deployment": state.create_deployment(index, cause, now)}))
                }
                ("GET", ["deployments", deployment_id]) => {
                    let deployment = state.apps[index]
                        .deployments
                        .iter()
                        .find(|d| d.id == *deployment_id)
                        .ok_or_else(SimError::not_found)?;
                    ok(json!({"deployment": deployment.to_json(now)}))
                }
                ("GET", ["deployments", deployment_id, "components", component, "logs"]) => {
                    deployment_logs(state, incoming, base_url, now, index, deployment_id, Some(component))
                }
                ("GET", ["deployments", deployment_id, "logs"]) => {
                    deployment_logs(state, incoming, base_url, now, index, deployment_id, None)
                }
                ("POST", ["rollback", "validate"]) => {
                    let target = rollback_target(state, index, incoming)?;
                    match target {
                        Ok(_) => ok(json!({"valid": true, "warnings": []})),
                        Err((code, message)) => {
                            ok(json!({"valid": false, "error": {"code": code, "message": message, "components": []}}))
                        }
                    }
                }
                ("POST", ["rollback"]) => {
                    let target = rollback_target(state, index, incoming)?
                        .map_err(|(code, message)| SimError::new(400, "bad_request", format!("{code}: {message}")))?;
                    let skip_pin =
                        incoming.body.as_ref().and_then(|b| b.get("skip_pin")).and_then(Value::as_bool) == Some(true);
                    let deployment = state.create_deployment_of(index, "manual rollback", Some(target), now);
                    if !skip_pin {
                        state.apps[index].pinned = Some(deployment["id"].as_str().unwrap_or_default().to_string());
                    }
                    ok(json!({ "deployment": deployment }))
                }
                ("POST", ["rollback", "commit"]) => {
                    state.apps[index].pinned = None;
                    Ok((200, None))
                }
                ("POST", ["rollback", "revert"]) => {
                    if state.apps[index].pinned.take().is_none() {
                        return Err(SimError::new(400, "bad_request", "the app is not pinned by a rollback"));
                    }
                    ok(json!({"deployment": state.create_deployment(index, "rollback reverted", now)}))
                }
                ("POST", ["deployments", deployment_id, "cancel"]) => {
                    let deployment = state.apps[index]
                        .deployments
                        .iter_mut()
                        .find(|d| d.id == *deployment_id)
                        .ok_or_else(SimError::not_found)?;
                    if deployment.is_terminal(now) {
                        return Err(SimError::new(400, "bad_request", "the deployment has already ended"));
                    }
                    deployment.settled = Some(("CANCELED".into(), crate::state::now_rfc3339()));
                    ok(json!({"deployment": deployment.to_json(now)}))
                }
                _ => Err(SimError::not_found()),
            }
        }
        _ => Err(SimError::not_found()),
    }
}

pub(crate) fn deployment_logs(
    state: &State,
    incoming: &Incoming,
    base_url: &str,
    now: Instant,
    app_index: usize,
    deployment_id: &str,
    component: Option<&str>,
) -> Answer {
    let app = &state.apps[app_index];
    let deployment = app.deployments.iter().find(|d| d.id == deployment_id).ok_or_else(SimError::not_found)?;
    let log_type = incoming.query("type").ok_or_else(|| SimError::bad_request("type is required"))?;
    if !["UNSPECIFIED", "BUILD", "DEPLOY", "RUN", "RUN_RESTARTED", "AUTOSCALE_EVENT"].contains(&log_type) {
        return Err(SimError::bad_request(format!("invalid log type {log_type:?}")));
    }
    let components = match component {
        Some(name) if crate::state::component_names(&deployment.spec).iter().any(|c| c == name) => {
            vec![name.to_string()]
        }
        Some(_) => return Err(SimError::not_found()),
        None => crate::state::component_names(&deployment.spec),
    };
    let urls: Vec<String> = components
        .iter()
        .filter(|c| deployment.log(c, log_type, now).is_some())
        .map(|c| format!("{base_url}/_sim/logs/{}/{}/{c}/{log_type}?X-Sim-Signature=presigned", app.id, deployment.id))
        .collect();
    if urls.is_empty() {
        // What App Platform answers for a phase the deployment never reached.
        return Err(SimError::bad_request("the deployment has no logs of this type yet"));
    }
    ok(json!({"live_url": "", "historic_urls": urls}))
}

/// The deployment a rollback request names, if it can be rolled back to.
#[allow(clippy::type_complexity)]
pub(crate) fn rollback_target(
    state: &State,
    app_index: usize,
    incoming: &Incoming,
) -> Result<Result<usize, (&'static str, String)>, SimError> {
    let target_id = incoming
        .body
        .as_ref()
        .and_then(|b| b.get("deployment_id"))
        .and_then(Value::as_str)
        .ok_or_else(|| SimError::bad_request("deployment_id is required"))?;
    let app = &state.apps[app_index];
    if app.pinned.is_some() {
        return Ok(Err(("app_pinned", "the app is pinned to a rollback already".into())));
    }
    let Some(index) = app.deployments.iter().position(|d| d.id == target_id) else {
        return Err(SimError::not_found());
    };
    if !app.deployments[index].was_active {
        return Ok(Err(("incompatible_result", "the deployment never became active".into())));
    }
    Ok(Ok(index))
}

/// App names are unique: a 409 when an app other than `except` (an id) has the spec's name.
pub(crate) fn check_name_free(state: &State, spec: &Value, except: Option<&str>) -> Result<(), SimError> {
    let name = spec.get("name").and_then(Value::as_str);
    let taken = state
        .apps
        .iter()
        .any(|app| app.spec.get("name").and_then(Value::as_str) == name && Some(app.id.as_str()) != except);
    if taken {
        return Err(SimError::new(409, "conflict", format!("an app named {:?} already exists", name.unwrap_or(""))));
    }
    Ok(())
}

/// The app as create and update answer it: with the deployment they started as
/// `pending_deployment`, unless the live API's way (no such field) is asked for.
pub(crate) fn app_with_pending(state: &State, index: usize, deployment: Value, now: Instant, base_url: &str) -> Value {
    let app = &state.apps[index];
    let mut shown = app.to_json(now, &live_url(base_url, app));
    if !state.quirks.update_without_pending {
        shown["pending_deployment"] = deployment;
    }
    shown
}

/// `{"spec": {...}}` from the request body.
pub(crate) fn spec_in_body(incoming: &Incoming) -> Result<Value, SimError> {
    incoming
        .body
        .as_ref()
        .and_then(|b| b.get("spec"))
        .cloned()
        .ok_or_else(|| SimError::new(400, "bad_request", "the body must be {\"spec\": {...}}"))
}

/// The checks App Platform makes on a spec: every problem found, one per line.
pub(crate) fn check_spec(spec: &Value) -> Result<(), SimError> {
    let problems = crate::appspec::problems(spec);
    if problems.is_empty() {
        Ok(())
    } else {
        Err(SimError::new(400, "bad_request", problems.join("\n")))
    }
}
