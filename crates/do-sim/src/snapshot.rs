//! A JSON view of everything the simulator holds (`GET /_sim/state`, `Sim::snapshot`).

use std::time::Instant;

use serde_json::{json, Value};

use crate::state::State;

pub(crate) fn snapshot(state: &mut State, now: Instant) -> Value {
    state.settle(now);
    let registries: Vec<Value> = state
        .registries
        .values()
        .map(|registry| {
            json!({
                "name": registry.name,
                "tier": registry.tier,
                "storage_usage_bytes": registry.storage_usage_bytes(),
                "read_only": registry.active_gc(now).is_some(),
                "repositories": registry.repositories.iter().map(|(name, repository)| json!({
                    "name": name,
                    "manifests": repository.manifests().map(|m| crate::distribution::snapshot_manifest(&registry.name, name, m)).collect::<Vec<_>>(),
                })).collect::<Vec<_>>(),
                "garbage_collections": registry.gcs.iter().map(|gc| {
                    let mut shown = gc.to_json(&registry.name, now);
                    shown["type"] = json!(gc.gc_type);
                    shown
                }).collect::<Vec<_>>(),
            })
        })
        .collect();
    let apps: Vec<Value> = state
        .apps
        .iter()
        .map(|app| {
            json!({
                "id": app.id,
                "spec": app.spec,
                "deployments": app.deployments.iter().map(|d| json!({
                    "id": d.id, "phase": d.phase_at(now), "cause": d.cause, "spec": d.spec, "cloned_from": d.cloned_from,
                    "started_ms": d.started.saturating_duration_since(state.started).as_millis() as u64,
                    "phase_ms": d.phase_duration.as_millis() as u64,
                })).collect::<Vec<_>>(),
                "pinned": app.pinned,
            })
        })
        .collect();
    json!({"registries": registries, "apps": apps})
}
