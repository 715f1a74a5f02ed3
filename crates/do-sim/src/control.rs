//! The control API (`/_sim/...`): faults, pushes, rate limits, latency and the state, for
//! tests and the demo; never part of what a tool may call.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::state::{Fault, Outcome, SimError, DEFAULT_GC_TYPE};
use crate::wire::*;

pub(crate) fn control(shared: &Shared, incoming: &Incoming) -> Answer {
    let now = Instant::now();
    let mut state = shared.lock();
    let segments: Vec<&str> = incoming.segments.iter().map(String::as_str).collect();
    let body = incoming.body.clone().unwrap_or(Value::Null);
    let first_registry = || state.registries.keys().next().cloned().unwrap_or_default();
    match (incoming.method.as_str(), &segments[1..]) {
        ("GET", ["state"]) => ok(crate::snapshot::snapshot(&mut state, now)),
        ("GET", ["requests"]) => ok(json!({"requests": state.requests})),
        ("GET", ["registry-requests"]) => ok(json!({"requests": state.registry_requests})),
        ("DELETE", ["requests"]) => {
            state.requests.clear();
            Ok((204, None))
        }
        ("POST", ["faults"]) => {
            let faults: Vec<Fault> = match body {
                Value::Array(_) => serde_json::from_value(body),
                other => serde_json::from_value(other).map(|fault| vec![fault]),
            }
            .map_err(|e| SimError::bad_request(format!("invalid fault: {e}")))?;
            state.faults.extend(faults);
            Ok((204, None))
        }
        ("DELETE", ["faults"]) => {
            state.faults.clear();
            Ok((204, None))
        }
        ("PUT", ["latency"]) => {
            let ms = body.get("ms").and_then(Value::as_u64).ok_or_else(|| SimError::bad_request("give {\"ms\": N}"))?;
            state.latency = Duration::from_millis(ms);
            ok(json!({"latency_ms": ms}))
        }
        ("PUT", ["rate-limit"]) => {
            state.rate_limit =
                serde_json::from_value(body).map_err(|e| SimError::bad_request(format!("invalid rate limit: {e}")))?;
            state.request_times.clear();
            Ok((204, None))
        }
        ("POST", ["push"]) => {
            let registry =
                body.get("registry").and_then(Value::as_str).map(str::to_string).unwrap_or_else(first_registry);
            let repository = body
                .get("repository")
                .and_then(Value::as_str)
                .ok_or_else(|| SimError::bad_request("repository is required"))?;
            if let Some((kind, of)) = crate::artifacts::asked(&body)? {
                let push = crate::artifacts::ArtifactPush {
                    registry,
                    repository: repository.to_string(),
                    of,
                    kind,
                    fallback_tag: body.get("fallback_tag").and_then(Value::as_bool).unwrap_or(false),
                };
                let manifest = crate::artifacts::push(&mut state, &push, now)?;
                return Ok((201, Some(json!({"manifest": manifest}))));
            }
            let tag =
                body.get("tag").and_then(Value::as_str).ok_or_else(|| SimError::bad_request("tag is required"))?;
            let size = body.get("size_bytes").and_then(Value::as_u64).unwrap_or(20 * 1024 * 1024);
            let platforms: Vec<String> = body
                .get("platforms")
                .and_then(Value::as_array)
                .map(|list| list.iter().filter_map(Value::as_str).map(str::to_string).collect())
                .unwrap_or_default();
            let labels = body.get("labels").cloned().unwrap_or(Value::Null);
            if !(labels.is_null() || labels.as_object().is_some_and(|l| l.values().all(Value::is_string))) {
                return Err(SimError::bad_request("labels must be an object of strings"));
            }
            let manifest = if platforms.is_empty() {
                state.push(&registry, repository, tag, size, &labels, now)?
            } else {
                let push = crate::state::IndexPush {
                    registry,
                    repository: repository.to_string(),
                    tag: tag.to_string(),
                    platforms,
                    attestations: body.get("attestations").and_then(Value::as_bool).unwrap_or(true),
                    size_bytes: size,
                    labels,
                };
                state.push_index(&push, now)?
            };
            Ok((201, Some(json!({"manifest": manifest}))))
        }
        ("PUT", ["quirks"]) => {
            state.quirks =
                serde_json::from_value(body).map_err(|e| SimError::bad_request(format!("invalid quirks: {e}")))?;
            Ok((204, None))
        }
        ("PUT", ["registry-options"]) => {
            let registry =
                body.get("registry").and_then(Value::as_str).map(str::to_string).unwrap_or_else(first_registry);
            let registry = state.registry_mut(&registry)?;
            if let Some(on) = body.get("referrers_api").and_then(Value::as_bool) {
                registry.referrers_api = on;
            }
            if let Some(hide) = body.get("hide_index_children").and_then(Value::as_bool) {
                registry.hide_index_children = hide;
            }
            if let Some(keeps) = body.get("gc_keeps_index_children").and_then(Value::as_bool) {
                registry.gc_keeps_index_children = keeps;
            }
            Ok((204, None))
        }
        ("POST", ["gc"]) => {
            let registry =
                body.get("registry").and_then(Value::as_str).map(str::to_string).unwrap_or_else(first_registry);
            let gc_type = body.get("type").and_then(Value::as_str).unwrap_or(DEFAULT_GC_TYPE).to_string();
            let final_status = body.get("final_status").and_then(Value::as_str).unwrap_or("succeeded").to_string();
            let plan = body.get("plan").and_then(Value::as_array).map(|steps| {
                steps
                    .iter()
                    .map(|step| {
                        let status = step.get("status").and_then(Value::as_str).unwrap_or("requested").to_string();
                        (status, Duration::from_millis(step.get("ms").and_then(Value::as_u64).unwrap_or(0)))
                    })
                    .collect()
            });
            let gc = state.start_gc(&registry, &gc_type, plan, &final_status, now)?;
            Ok((201, Some(json!({"garbage_collection": gc}))))
        }
        ("POST", ["apps", app, "next-deployment"]) => {
            let index = state.app_index(app).ok_or_else(SimError::not_found)?;
            let outcome: Outcome = serde_json::from_value(body.get("outcome").cloned().unwrap_or(json!("success")))
                .map_err(|e| SimError::bad_request(format!("invalid outcome: {e}")))?;
            state.apps[index].next_outcome = outcome;
            state.apps[index].next_phase_duration =
                body.get("phase_ms").and_then(Value::as_u64).map(Duration::from_millis);
            if let Some(live) = body.get("live") {
                state.apps[index].next_live = serde_json::from_value(live.clone())
                    .map_err(|e| SimError::bad_request(format!("invalid live scenario: {e}")))?;
            }
            Ok((204, None))
        }
        _ => Err(SimError::not_found()),
    }
}
