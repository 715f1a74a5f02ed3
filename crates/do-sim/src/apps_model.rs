//! Apps and deployments as the simulator holds them: phases driven by elapsed time, scripted
//! outcomes, specs normalised as the live API answers them.

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::basics::now_rfc3339;

/// How a deployment ends on its own.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    #[default]
    Success,
    BuildError,
    DeployError,
    /// Never leaves DEPLOYING.
    Hang,
    /// Canceled (as from the control panel) once it reaches PENDING_DEPLOY.
    Canceled,
    /// Replaced by a newer deployment (which succeeds) once it reaches PENDING_DEPLOY.
    Superseded,
    /// Fails as DeployError does, and App Platform then rolls the app back on its own to the
    /// deployment that was ACTIVE before (a deployment whose cause says AUTO_ROLLBACK).
    AutoRollback,
}

/// The cause App Platform's own rollback deployment carries in the simulator.
pub fn auto_rollback_cause(to: &str) -> String {
    format!("AUTO_ROLLBACK: App Platform rolled back automatically to deployment {to}")
}

pub const PHASES: [&str; 4] = ["PENDING_BUILD", "BUILDING", "PENDING_DEPLOY", "DEPLOYING"];

#[derive(Clone, Debug)]
pub struct Deployment {
    pub id: String,
    pub spec: Value,
    pub cause: String,
    pub created_at: String,
    pub started: Instant,
    pub phase_duration: Duration,
    pub outcome: Outcome,
    /// Set when the phase was decided from outside (cancel, superseded) or once it ended.
    pub settled: Option<(String, String)>,
    /// The deployment a rollback cloned.
    pub cloned_from: Option<String>,
    /// Whether it was ever ACTIVE (rollback targets must have been).
    pub was_active: bool,
    /// When it became ACTIVE.
    pub active_since: Option<Instant>,
    /// How the app answers at its live URL while this deployment is ACTIVE.
    pub live: Live,
}

/// How an app answers at its live URL (the simulator serves it) while a deployment is ACTIVE.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case", tag = "scenario")]
pub enum Live {
    /// 200, with the version it runs in the `x-app-version` header and the body.
    #[default]
    Healthy,
    /// 500 for this long after becoming ACTIVE, then healthy (a slow start).
    FailingFor { ms: u64 },
    /// 500 always.
    Failing,
    /// 200, but it reports this version (the old image still serving).
    WrongVersion { version: String },
    /// Healthy for this long after becoming ACTIVE, then 500 for good (a release that breaks
    /// under real traffic).
    FailingAfter { ms: u64 },
    /// Healthy except between these times after becoming ACTIVE (one blip).
    FailingBetween { from_ms: u64, to_ms: u64 },
    /// Healthy and failing by turns, each for this long (a flapping release).
    Flapping { period_ms: u64 },
}

impl Live {
    /// Whether the app fails its requests this long after the deployment became ACTIVE.
    pub fn failing(&self, since_active: Duration) -> bool {
        let ms = since_active.as_millis() as u64;
        match self {
            Live::Healthy | Live::WrongVersion { .. } => false,
            Live::Failing => true,
            Live::FailingFor { ms: until } => ms < *until,
            Live::FailingAfter { ms: after } => ms >= *after,
            Live::FailingBetween { from_ms, to_ms } => (*from_ms..*to_ms).contains(&ms),
            Live::Flapping { period_ms } => (ms / (*period_ms).max(1)) % 2 == 1,
        }
    }
}

impl Deployment {
    /// A new deployment of `of`'s spec that succeeds, made by the platform at `now`.
    fn successor(of: &Deployment, cause: &str, now: Instant) -> Deployment {
        Deployment {
            id: String::new(),
            spec: of.spec.clone(),
            cause: cause.to_string(),
            created_at: now_rfc3339(),
            started: now,
            phase_duration: of.phase_duration,
            outcome: Outcome::Success,
            settled: None,
            cloned_from: None,
            was_active: false,
            active_since: None,
            live: Live::Healthy,
        }
    }

    /// Whether the app fails its requests now, while this deployment is ACTIVE.
    pub fn failing(&self, now: Instant) -> bool {
        self.live.failing(now.duration_since(self.active_since.unwrap_or(self.started)))
    }

    /// The phase now and the index of the running phase (0..=4; 4 means it reached the end).
    pub fn phase_at(&self, now: Instant) -> String {
        if let Some((phase, _)) = &self.settled {
            return phase.clone();
        }
        let index = (now.duration_since(self.started).as_millis() / self.phase_duration.as_millis().max(1)) as usize;
        match self.outcome {
            Outcome::BuildError if index >= 2 => "ERROR".into(),
            Outcome::Canceled if index >= 2 => "CANCELED".into(),
            Outcome::Superseded if index >= 2 => "SUPERSEDED".into(),
            Outcome::Hang if index >= 3 => "DEPLOYING".into(),
            Outcome::DeployError | Outcome::AutoRollback if index >= 4 => "ERROR".into(),
            _ if index >= 4 => "ACTIVE".into(),
            _ => PHASES[index].into(),
        }
    }

    pub fn is_terminal(&self, now: Instant) -> bool {
        matches!(self.phase_at(now).as_str(), "ACTIVE" | "ERROR" | "CANCELED" | "SUPERSEDED")
    }

    fn progress(&self, now: Instant) -> Value {
        let phase = self.phase_at(now);
        let components = component_names(&self.spec);
        let (build, deploy) = match phase.as_str() {
            "PENDING_BUILD" => ("PENDING", "PENDING"),
            "BUILDING" => ("RUNNING", "PENDING"),
            "PENDING_DEPLOY" => ("SUCCESS", "PENDING"),
            "DEPLOYING" => ("SUCCESS", "RUNNING"),
            "ACTIVE" | "SUPERSEDED" => ("SUCCESS", "SUCCESS"),
            "ERROR" if self.outcome == Outcome::BuildError => ("ERROR", "PENDING"),
            "ERROR" => ("SUCCESS", "ERROR"),
            _ => ("PENDING", "PENDING"),
        };
        let step = |name: &str, status: &str, message_base: &str| {
            let children: Vec<Value> = components
                .iter()
                .map(|component| {
                    let mut child = json!({"name": format!("{name}-{component}"), "status": status, "component_name": component, "message_base": message_base});
                    if status == "ERROR" {
                        let (code, message) = if name == "build" {
                            ("BuildJobFailed", format!("the build of {component} failed: exit status 1"))
                        } else {
                            ("DeployContainerHealthChecksFailed", format!("{component} failed its health checks"))
                        };
                        child["reason"] = json!({"code": code, "message": message});
                    }
                    child
                })
                .collect();
            let mut step = json!({"name": name, "status": status, "steps": children});
            if status == "ERROR" {
                step["reason"] = children[0]["reason"].clone();
            }
            step
        };
        let steps = vec![step("build", build, "Building"), step("deploy", deploy, "Deploying")];
        let summary: Vec<Value> =
            steps.iter().flat_map(|s| s["steps"].as_array().cloned().unwrap_or_default()).collect();
        let count = |status: &str| summary.iter().filter(|s| s["status"] == status).count();
        json!({
            "pending_steps": count("PENDING"),
            "running_steps": count("RUNNING"),
            "success_steps": count("SUCCESS"),
            "error_steps": count("ERROR"),
            "total_steps": summary.len(),
            "steps": steps,
            "summary_steps": summary,
        })
    }

    /// The log a phase of this deployment wrote, or `None` when it never reached that phase.
    pub fn log(&self, component: &str, log_type: &str, now: Instant) -> Option<String> {
        let index = (now.duration_since(self.started).as_millis() / self.phase_duration.as_millis().max(1)) as usize;
        let reached = match log_type {
            "BUILD" => index >= 1 || self.settled.is_some(),
            "DEPLOY" => self.outcome != Outcome::BuildError && (index >= 3 || self.settled.is_some()),
            _ => false,
        };
        if !reached {
            return None;
        }
        let mut lines: Vec<String> =
            (1..=60).map(|n| format!("[{component}] [{log_type}] step {n}: working")).collect();
        match (self.outcome, log_type) {
            (Outcome::BuildError, "BUILD") => {
                lines.push(format!("[{component}] [BUILD] error: failed to solve: process \"/bin/sh -c make\" did not complete successfully: exit code: 2"));
                lines.push(format!("[{component}] [BUILD] build failed: exit status 1"));
            }
            (Outcome::DeployError | Outcome::AutoRollback, "DEPLOY") => {
                lines.push(format!("[{component}] [DEPLOY] readiness probe failed: connection refused on :8080"));
                lines.push(format!("[{component}] [DEPLOY] health checks failed"));
            }
            _ => lines.push(format!("[{component}] [{log_type}] done")),
        }
        Some(lines.join("\n") + "\n")
    }

    pub fn to_json(&self, now: Instant) -> Value {
        let phase = self.phase_at(now);
        let components: Vec<Value> = component_names(&self.spec)
            .into_iter()
            .map(|name| json!({"name": name, "source_commit_hash": ""}))
            .collect();
        let mut shown = json!({
            "id": self.id,
            "spec": self.spec,
            "phase": phase,
            "phase_last_updated_at": self.settled.as_ref().map(|(_, at)| at.clone()).unwrap_or_else(now_rfc3339),
            "progress": self.progress(now),
            "cause": self.cause,
            "created_at": self.created_at,
            "updated_at": now_rfc3339(),
            "tier_slug": "basic",
            "services": components,
        });
        if let Some(cloned_from) = &self.cloned_from {
            shown["cloned_from"] = json!(cloned_from);
        }
        shown
    }
}

pub fn component_names(spec: &Value) -> Vec<String> {
    ["services", "workers", "jobs", "static_sites"]
        .iter()
        .flat_map(|kind| spec.get(*kind).and_then(Value::as_array).cloned().unwrap_or_default())
        .filter_map(|component| component.get("name").and_then(Value::as_str).map(str::to_string))
        .collect()
}

#[derive(Clone, Debug)]
pub struct App {
    pub id: String,
    pub spec: Value,
    pub created_at: String,
    /// Newest last.
    pub deployments: Vec<Deployment>,
    /// The outcome and phase length for the next deployments (tests script these).
    pub next_outcome: Outcome,
    pub next_phase_duration: Option<Duration>,
    /// How the next deployment answers at the live URL once ACTIVE.
    pub next_live: Live,
    /// The rollback deployment the app is pinned to, until commit or revert.
    pub pinned: Option<String>,
}

impl App {
    pub fn active(&self, now: Instant) -> Option<&Deployment> {
        self.deployments.iter().rev().find(|d| d.phase_at(now) == "ACTIVE")
    }

    pub fn in_progress(&self, now: Instant) -> Option<&Deployment> {
        self.deployments.iter().rev().find(|d| !d.is_terminal(now))
    }

    /// Settles ended deployments: the newest ACTIVE one supersedes older ACTIVE ones, and
    /// the app's spec becomes what it runs.
    pub(crate) fn settle(&mut self, now: Instant, new_ids: &mut dyn FnMut() -> String) {
        let mut replacements = Vec::new();
        let mut rollbacks = Vec::new();
        for deployment in &mut self.deployments {
            if deployment.settled.is_none() && deployment.is_terminal(now) {
                let phase = deployment.phase_at(now);
                deployment.was_active |= phase == "ACTIVE";
                if phase == "ACTIVE" {
                    deployment.active_since.get_or_insert(now);
                }
                if phase == "SUPERSEDED" {
                    replacements.push(Deployment::successor(deployment, "a newer deployment was requested", now));
                }
                if phase == "ERROR" && deployment.outcome == Outcome::AutoRollback {
                    rollbacks.push(deployment.id.clone());
                }
                deployment.settled = Some((phase, now_rfc3339()));
            }
        }
        // App Platform's own rollback: to the newest deployment that was ACTIVE before the failed one.
        for failed in rollbacks {
            let position = self.deployments.iter().position(|d| d.id == failed).unwrap_or(0);
            if let Some(target) = self.deployments[..position].iter().rev().find(|d| d.was_active) {
                let mut rollback = Deployment::successor(target, &auto_rollback_cause(&target.id), now);
                rollback.cloned_from = Some(target.id.clone());
                rollback.live = target.live.clone();
                self.spec = target.spec.clone();
                replacements.push(rollback);
            }
        }
        for mut replacement in replacements {
            replacement.id = new_ids();
            self.deployments.push(replacement);
        }
        if let Some(newest_active) = self.deployments.iter().rposition(|d| d.phase_at(now) == "ACTIVE") {
            for older in &mut self.deployments[..newest_active] {
                if older.phase_at(now) == "ACTIVE" {
                    older.settled = Some(("SUPERSEDED".into(), now_rfc3339()));
                }
            }
        }
    }

    pub fn to_json(&self, now: Instant, live_url: &str) -> Value {
        let mut app = json!({
            "id": self.id,
            "owner_uuid": "00000000-0000-4000-8000-0000000000aa",
            "spec": self.spec,
            "created_at": self.created_at,
            "updated_at": now_rfc3339(),
            "tier_slug": "basic",
            "region": {"slug": "fra", "label": "Frankfurt", "flag": "germany", "continent": "Europe", "data_centers": ["fra1"]},
        });
        // A new app has no URL until its first deployment is ACTIVE.
        if self.deployments.iter().any(|d| d.was_active || d.phase_at(now) == "ACTIVE") {
            app["default_ingress"] = json!(live_url);
            app["live_url"] = json!(live_url);
            app["live_url_base"] = json!(live_url);
            app["live_domain"] = json!(live_url.trim_start_matches("https://").trim_start_matches("http://"));
        }
        if let Some(last) = self.deployments.last() {
            app["last_deployment_created_at"] = json!(last.created_at);
        }
        if let Some(active) = self.active(now) {
            app["active_deployment"] = active.to_json(now);
        }
        if let Some(in_progress) = self.in_progress(now) {
            app["in_progress_deployment"] = in_progress.to_json(now);
        }
        if let Some(pinned) = self.pinned.as_ref().and_then(|id| self.deployments.iter().find(|d| d.id == *id)) {
            app["pinned_deployment"] = pinned.to_json(now);
        }
        app
    }
}

/// Ways the live App Platform API answers that the published spec does not show, each off by
/// default so the spec's shape is the baseline.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct Quirks {
    /// The app update's (and create's) answer has no `pending_deployment` (digitalocean/godo#601).
    pub update_without_pending: bool,
    /// Specs in answers are normalised as proto3 JSON does: false, empty and null values left out.
    pub normalized_specs: bool,
}

/// A spec as proto3 JSON writes it: false, empty strings, empty lists and objects, and nulls
/// left out, at every depth.
pub fn normalized(value: &Value) -> Option<Value> {
    match value {
        Value::Null | Value::Bool(false) => None,
        Value::String(s) if s.is_empty() => None,
        Value::Array(items) => {
            let kept: Vec<Value> = items.iter().filter_map(normalized).collect();
            (!kept.is_empty()).then_some(Value::Array(kept))
        }
        Value::Object(map) => {
            let kept: serde_json::Map<String, Value> =
                map.iter().filter_map(|(k, v)| normalized(v).map(|v| (k.clone(), v))).collect();
            (!kept.is_empty()).then_some(Value::Object(kept))
        }
        other => Some(other.clone()),
    }
}

/// Normalises every `spec` in an answer, when the quirk is on.
pub fn normalize_specs(value: &mut Value) {
    match value {
        Value::Object(map) => {
            for (key, inner) in map.iter_mut() {
                if key == "spec" {
                    *inner = normalized(inner).unwrap_or_else(|| json!({}));
                } else {
                    normalize_specs(inner);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(normalize_specs),
        _ => {}
    }
}
