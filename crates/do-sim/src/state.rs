//! The simulator's state: registries, manifests, garbage collections, apps and deployments.
//! Time-driven states (GC status, deployment phase) are derived from the time elapsed since
//! they started, and their effects are applied once, the first time a request sees them end.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::content::{self, Document};

/// The simulated durations. Real GCs take about 15 minutes and deployments several; the
/// simulator defaults to seconds so the demo and tests stay quick.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default)]
pub struct Timing {
    /// How long each GC status before the final one lasts.
    pub gc_step_ms: u64,
    /// How long each deployment phase before the final one lasts.
    pub deploy_phase_ms: u64,
}

impl Default for Timing {
    fn default() -> Timing {
        Timing { gc_step_ms: 1000, deploy_phase_ms: 1000 }
    }
}

pub const GC_STATUSES: [&str; 4] =
    ["requested", "waiting for write JWTs to expire", "scanning manifests", "deleting unreferenced blobs"];
pub const DEFAULT_GC_TYPE: &str = "unreferenced blobs only";

#[derive(Clone, Debug, Serialize)]
pub struct Tier {
    pub name: &'static str,
    pub slug: &'static str,
    pub included_repositories: u64,
    pub included_storage_bytes: u64,
    pub allow_storage_overage: bool,
    pub included_bandwidth_bytes: u64,
    pub monthly_price_in_cents: u64,
    pub storage_overage_price_in_cents: u64,
}

pub fn tier(slug: &str) -> Option<Tier> {
    let (name, slug, repositories, storage, overage, price) = match slug {
        "starter" => ("Starter", "starter", 1, 524_288_000, false, 0),
        "basic" => ("Basic", "basic", 5, 5_368_709_120, true, 500),
        "professional" => ("Professional", "professional", 0, 107_374_182_400, true, 2000),
        _ => return None,
    };
    Some(Tier {
        name,
        slug,
        included_repositories: repositories,
        included_storage_bytes: storage,
        allow_storage_overage: overage,
        included_bandwidth_bytes: storage,
        monthly_price_in_cents: price,
        storage_overage_price_in_cents: 2,
    })
}

#[derive(Clone, Debug)]
pub struct Manifest {
    pub digest: String,
    pub media_type: String,
    /// The bytes the registry serves; `digest` is their SHA-256.
    pub content: Arc<Vec<u8>>,
    pub tags: Vec<String>,
    /// (blob digest, compressed size): the config and layers.
    pub blobs: Vec<(String, u64)>,
    /// The manifests an index holds.
    pub children: Vec<String>,
    /// The manifest a referrer points at.
    pub subject: Option<String>,
    pub size_bytes: u64,
    pub updated_at: String,
    /// Orders manifests by recency when timestamps tie.
    pub sequence: u64,
}

impl Manifest {
    pub fn from_document(document: Document, tags: Vec<String>, updated_at: String, sequence: u64) -> Manifest {
        let compressed: u64 = document.blobs.iter().map(|(_, size)| size).sum();
        Manifest {
            digest: document.digest,
            media_type: document.media_type,
            content: document.content,
            tags,
            blobs: document.blobs,
            children: document.children,
            subject: document.subject,
            size_bytes: compressed + compressed / 3,
            updated_at,
            sequence,
        }
    }

    pub fn compressed_size(&self) -> u64 {
        self.blobs.iter().map(|(_, size)| size).sum()
    }
}

/// A repository's manifests, indexed so that a listing page, a delete, a push and a look-up by
/// digest or tag cost time independent of how many manifests the repository holds.
#[derive(Clone, Debug, Default)]
pub struct Repository {
    /// By `sequence`, oldest first: the listing is this map read backwards.
    by_sequence: BTreeMap<u64, Manifest>,
    by_digest: HashMap<String, u64>,
    by_tag: HashMap<String, u64>,
}

impl Repository {
    pub fn from_manifests(manifests: Vec<Manifest>) -> Repository {
        let mut repository = Repository::default();
        for manifest in manifests {
            repository.insert(manifest);
        }
        repository
    }

    pub fn len(&self) -> usize {
        self.by_sequence.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_sequence.is_empty()
    }

    /// Oldest first; `.rev()` for the listing's newest-first order.
    pub fn manifests(&self) -> impl DoubleEndedIterator<Item = &Manifest> + ExactSizeIterator {
        self.by_sequence.values()
    }

    pub fn newest(&self) -> Option<&Manifest> {
        self.by_sequence.values().next_back()
    }

    pub fn tag_count(&self) -> usize {
        self.by_tag.len()
    }

    pub fn get(&self, digest: &str) -> Option<&Manifest> {
        self.by_digest.get(digest).and_then(|sequence| self.by_sequence.get(sequence))
    }

    pub fn tagged(&self, tag: &str) -> Option<&Manifest> {
        self.by_tag.get(tag).and_then(|sequence| self.by_sequence.get(sequence))
    }

    /// Adds a manifest (replacing one of the same digest); its tags move to it.
    pub fn insert(&mut self, manifest: Manifest) {
        self.remove(&manifest.digest);
        for tag in &manifest.tags {
            self.untag(tag);
        }
        self.by_digest.insert(manifest.digest.clone(), manifest.sequence);
        for tag in &manifest.tags {
            self.by_tag.insert(tag.clone(), manifest.sequence);
        }
        self.by_sequence.insert(manifest.sequence, manifest);
    }

    pub fn remove(&mut self, digest: &str) -> Option<Manifest> {
        let sequence = self.by_digest.remove(digest)?;
        let manifest = self.by_sequence.remove(&sequence)?;
        for tag in &manifest.tags {
            self.by_tag.remove(tag);
        }
        Some(manifest)
    }

    /// Takes `tag` off whichever manifest has it; false when none has.
    pub fn untag(&mut self, tag: &str) -> bool {
        let Some(sequence) = self.by_tag.remove(tag) else { return false };
        if let Some(manifest) = self.by_sequence.get_mut(&sequence) {
            manifest.tags.retain(|t| t != tag);
        }
        true
    }

    /// Tags the manifest `digest` as a push does: the tag moves to it and it becomes the newest.
    pub fn tag(&mut self, digest: &str, tag: &str, sequence: u64, updated_at: String) -> Option<&Manifest> {
        self.untag(tag);
        let mut manifest = self.remove(digest)?;
        manifest.tags.push(tag.to_string());
        manifest.sequence = sequence;
        manifest.updated_at = updated_at;
        self.insert(manifest);
        self.by_sequence.get(&sequence)
    }

    pub fn retain(&mut self, keep: impl Fn(&Manifest) -> bool) {
        let gone: Vec<String> = self.manifests().filter(|m| !keep(m)).map(|m| m.digest.clone()).collect();
        for digest in gone {
            self.remove(&digest);
        }
    }

    /// Edits the manifests freely (tests and hostile scenarios); the indexes are rebuilt after.
    pub fn edit<R>(&mut self, change: impl FnOnce(&mut Vec<Manifest>) -> R) -> R {
        let mut manifests: Vec<Manifest> = std::mem::take(&mut self.by_sequence).into_values().collect();
        let result = change(&mut manifests);
        *self = Repository::from_manifests(manifests);
        result
    }

    /// Digests held, directly or through nested indexes, by tagged manifests.
    pub fn held_by_tagged(&self) -> BTreeSet<String> {
        let mut held = BTreeSet::new();
        let mut queue: Vec<&str> = self.manifests().filter(|m| !m.tags.is_empty()).map(|m| m.digest.as_str()).collect();
        while let Some(digest) = queue.pop() {
            for child in self.get(digest).map(|m| m.children.as_slice()).unwrap_or_default() {
                if held.insert(child.clone()) {
                    queue.push(child);
                }
            }
        }
        held
    }

    /// Untagged manifests that some manifest of the repository holds as an index child.
    pub fn index_children(&self) -> BTreeSet<&str> {
        self.manifests().flat_map(|m| m.children.iter().map(String::as_str)).collect()
    }

    pub fn find(&self, reference: &str) -> Option<&Manifest> {
        if reference.contains(':') {
            self.get(reference)
        } else {
            self.tagged(reference)
        }
    }
}

#[derive(Clone, Debug)]
pub struct GcRun {
    pub uuid: String,
    pub gc_type: String,
    pub created_at: String,
    pub updated_at: String,
    pub started: Instant,
    /// Statuses before the end, each with how long it lasts.
    pub plan: Vec<(String, Duration)>,
    /// Where the run ends on its own: `succeeded` or `failed`.
    pub final_status: String,
    pub cancel_requested: Option<Instant>,
    pub cancel_duration: Duration,
    /// Set once the run ended and its effects were applied.
    pub ended: Option<String>,
    pub blobs_deleted: u64,
    pub freed_bytes: u64,
}

impl GcRun {
    pub fn status_at(&self, now: Instant) -> String {
        if let Some(ended) = &self.ended {
            return ended.clone();
        }
        if let Some(cancelled_at) = self.cancel_requested {
            return if now.duration_since(cancelled_at) >= self.cancel_duration {
                "cancelled".into()
            } else {
                "cancelling".into()
            };
        }
        let mut elapsed = now.duration_since(self.started);
        for (status, lasts) in &self.plan {
            if elapsed < *lasts {
                return status.clone();
            }
            elapsed -= *lasts;
        }
        self.final_status.clone()
    }

    pub fn is_active(&self, now: Instant) -> bool {
        !matches!(self.status_at(now).as_str(), "succeeded" | "failed" | "cancelled")
    }

    pub fn to_json(&self, registry: &str, now: Instant) -> Value {
        json!({
            "uuid": self.uuid,
            "registry_name": registry,
            "status": self.status_at(now),
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "blobs_deleted": self.blobs_deleted,
            "freed_bytes": self.freed_bytes,
        })
    }
}

#[derive(Clone, Debug)]
pub struct Registry {
    pub name: String,
    pub region: String,
    pub tier: String,
    pub created_at: String,
    pub repositories: BTreeMap<String, Repository>,
    /// Every blob stored, referenced or not: what storage usage counts.
    pub blob_store: BTreeMap<String, u64>,
    /// The bytes of the blobs small enough to keep (configs, small uploads); GET serves these.
    pub blob_bodies: BTreeMap<String, std::sync::Arc<Vec<u8>>>,
    pub gcs: Vec<GcRun>,
    /// The API's digests listing leaves out untagged manifests that an index holds.
    pub hide_index_children: bool,
    /// The registry host answers the OCI referrers API (`GET /v2/<name>/referrers/<digest>`);
    /// off, as on DOCR, it answers 404.
    pub referrers_api: bool,
    /// GC of an untagged type spares untagged manifests that a tagged index holds (distribution
    /// v3). Off, the worst case and the default: it deletes them, as distribution 2.x did.
    pub gc_keeps_index_children: bool,
    /// Blob uploads started through the registry API: id -> repository.
    pub uploads: BTreeMap<String, String>,
}

impl Registry {
    pub fn storage_usage_bytes(&self) -> u64 {
        self.blob_store.values().sum()
    }

    pub fn active_gc(&self, now: Instant) -> Option<&GcRun> {
        self.gcs.iter().find(|gc| gc.is_active(now))
    }

    /// Refuses writes while a GC runs: the registry is read-only then.
    pub fn check_writable(&self, now: Instant) -> Result<(), SimError> {
        match self.active_gc(now) {
            Some(_) => Err(SimError::new(
                409,
                "conflict",
                "the registry is in read-only mode while garbage collection runs; try again after it ends",
            )),
            None => Ok(()),
        }
    }

    fn referenced_blobs(&self) -> BTreeSet<String> {
        self.repositories
            .values()
            .flat_map(|r| r.manifests())
            .flat_map(|m| m.blobs.iter().map(|(d, _)| d.clone()))
            .collect()
    }

    /// Applies the effects of GCs that have ended since the last look.
    fn settle_gcs(&mut self, now: Instant) {
        for index in 0..self.gcs.len() {
            if self.gcs[index].ended.is_some() {
                continue;
            }
            let status = self.gcs[index].status_at(now);
            if !matches!(status.as_str(), "succeeded" | "failed" | "cancelled") {
                continue;
            }
            if status == "succeeded" {
                let gc_type = self.gcs[index].gc_type.clone();
                if gc_type.contains("untagged manifests") {
                    let keeps_children = self.gc_keeps_index_children;
                    for repository in self.repositories.values_mut() {
                        let spared = if keeps_children { repository.held_by_tagged() } else { BTreeSet::new() };
                        repository.retain(|m| !m.tags.is_empty() || spared.contains(&m.digest));
                    }
                }
                if gc_type.contains("unreferenced blobs") {
                    let referenced = self.referenced_blobs();
                    let before = (self.blob_store.len() as u64, self.storage_usage_bytes());
                    self.blob_store.retain(|digest, _| referenced.contains(digest));
                    self.blob_bodies.retain(|digest, _| referenced.contains(digest));
                    self.gcs[index].blobs_deleted = before.0 - self.blob_store.len() as u64;
                    self.gcs[index].freed_bytes = before.1 - self.storage_usage_bytes();
                }
            }
            self.gcs[index].ended = Some(status);
            self.gcs[index].updated_at = now_rfc3339();
        }
    }
}

/// A multi-platform push: what [`State::push_index`] stores.
#[derive(Clone, Debug)]
pub struct IndexPush {
    pub registry: String,
    pub repository: String,
    pub tag: String,
    pub platforms: Vec<String>,
    pub attestations: bool,
    pub size_bytes: u64,
    /// Labels of each platform image's config (`org.opencontainers.image.revision`, say).
    pub labels: Value,
}

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
}

impl Deployment {
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
            Outcome::DeployError if index >= 4 => "ERROR".into(),
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
            (Outcome::DeployError, "DEPLOY") => {
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
    fn settle(&mut self, now: Instant, new_ids: &mut dyn FnMut() -> String) {
        let mut replacements = Vec::new();
        for deployment in &mut self.deployments {
            if deployment.settled.is_none() && deployment.is_terminal(now) {
                let phase = deployment.phase_at(now);
                deployment.was_active |= phase == "ACTIVE";
                if phase == "ACTIVE" {
                    deployment.active_since.get_or_insert(now);
                }
                if phase == "SUPERSEDED" {
                    replacements.push(Deployment {
                        id: String::new(),
                        spec: deployment.spec.clone(),
                        cause: "a newer deployment was requested".into(),
                        created_at: now_rfc3339(),
                        started: now,
                        phase_duration: deployment.phase_duration,
                        outcome: Outcome::Success,
                        settled: None,
                        cloned_from: None,
                        was_active: false,
                        active_since: None,
                        live: Live::Healthy,
                    });
                }
                deployment.settled = Some((phase, now_rfc3339()));
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

/// One API request as the simulator saw it (control requests are not logged).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct LoggedRequest {
    /// Milliseconds since the simulator started.
    pub at_ms: u64,
    pub method: String,
    /// The raw request target, percent-encoding preserved.
    pub url: String,
    pub status: u16,
    pub body: Option<String>,
    /// Whether the request carried the right token.
    pub authorized: bool,
}

impl LoggedRequest {
    pub fn is_mutating(&self) -> bool {
        self.method != "GET" && self.method != "HEAD"
    }
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum FaultKind {
    /// Answer with this status and DigitalOcean's error body.
    Status {
        status: u16,
        #[serde(default)]
        retry_after: Option<u64>,
    },
    /// Break the connection without a usable response.
    #[default]
    Drop,
    /// Answer 200 with a body that is not JSON.
    Malformed,
    /// Start a 200 answer and cut it off half way through the body.
    Truncated,
    /// Wait this long, then answer normally.
    Latency { ms: u64 },
    /// Do what was asked, then break the connection: the client cannot tell it happened.
    DropAfterApply,
    /// Answer with this status and an error whose message repeats the request's Authorization
    /// header, as a careless proxy or server does.
    Echo { status: u16 },
    /// Do what was asked, then answer with this status and raw body instead (an edge proxy's
    /// HTML 524 after the origin acted, a 204 where a body is expected).
    AnswerAfterApply {
        status: u16,
        #[serde(default)]
        body: String,
        #[serde(default)]
        content_type: Option<String>,
    },
    /// Answer with this status and JSON body instead (an answer shaped unlike the spec's).
    Body {
        #[serde(default = "ok_status")]
        status: u16,
        body: Value,
    },
}

fn ok_status() -> u16 {
    200
}

/// A fault for the next `times` requests whose method matches and whose path starts with `path`
/// (or, when `path` ends with `$`, is exactly the rest).
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
pub struct Fault {
    #[serde(default)]
    pub method: Option<String>,
    pub path: String,
    #[serde(flatten)]
    pub kind: FaultKind,
    #[serde(default = "one")]
    pub times: u32,
}

fn one() -> u32 {
    1
}

/// Rate limits: `per_hour` over a sliding `hour`, and the burst limit `per_minute` over a
/// sliding `minute`. Both windows shrink with `window_scale` so tests can reach the limits.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default)]
pub struct RateLimit {
    pub per_hour: u64,
    pub per_minute: u64,
    pub window_scale: f64,
}

impl Default for RateLimit {
    fn default() -> RateLimit {
        RateLimit { per_hour: 5000, per_minute: 250, window_scale: 1.0 }
    }
}

pub struct State {
    pub token: String,
    pub timing: Timing,
    pub registries: BTreeMap<String, Registry>,
    pub apps: Vec<App>,
    pub faults: Vec<Fault>,
    pub requests: Vec<LoggedRequest>,
    pub rate_limit: RateLimit,
    /// Added to every request to the API and the registry host (not the control API): a round trip.
    pub latency: Duration,
    pub request_times: std::collections::VecDeque<Instant>,
    pub counter: u64,
    pub started: Instant,
    /// Downloads of historic log URLs: (url, whether an Authorization header came along).
    pub log_downloads: Vec<(String, bool)>,
    /// Write pagination links with this base instead of the simulator's own URL (to test that
    /// clients never follow a link, and the token, to another host).
    pub link_base: Option<String>,
    /// The API's address as clients reach it (behind a TLS front or a proxy): pagination links
    /// and the registry's token realm name it instead of the simulator's own URL.
    pub public_url: Option<String>,
    /// Registry credentials handed out by docker-credentials.
    pub credentials: Vec<IssuedCredential>,
    /// Bearer tokens the registry's token service handed out.
    pub registry_tokens: BTreeMap<String, RegistryGrant>,
    /// Requests to the registry host (the OCI distribution API), kept apart from API requests.
    pub registry_requests: Vec<RegistryRequest>,
    /// Lines every deployment log ends with (an app that prints its environment, say).
    pub extra_log_lines: Vec<String>,
    /// Ways the live API answers that the spec does not show.
    pub quirks: Quirks,
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

/// Registry credentials from `GET …/docker-credentials`.
#[derive(Clone, Debug)]
pub struct IssuedCredential {
    pub user: String,
    pub password: String,
    pub registry: String,
    pub read_write: bool,
    pub expires: Option<Instant>,
}

/// What a registry Bearer token allows.
#[derive(Clone, Debug)]
pub struct RegistryGrant {
    /// `registry/repository`.
    pub name: String,
    pub push: bool,
}

/// One request to the registry host.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct RegistryRequest {
    pub at_ms: u64,
    pub method: String,
    pub url: String,
    pub status: u16,
    /// `none`, `basic`, `bearer`, or `api-token` when the DigitalOcean API token came along
    /// (which must never happen).
    pub authorization: String,
}

impl State {
    pub fn new(token: String, timing: Timing) -> State {
        State {
            token,
            timing,
            registries: BTreeMap::new(),
            apps: Vec::new(),
            faults: Vec::new(),
            requests: Vec::new(),
            rate_limit: RateLimit::default(),
            latency: Duration::ZERO,
            request_times: Default::default(),
            counter: 0,
            started: Instant::now(),
            log_downloads: Vec::new(),
            link_base: None,
            public_url: None,
            credentials: Vec::new(),
            registry_tokens: BTreeMap::new(),
            registry_requests: Vec::new(),
            extra_log_lines: Vec::new(),
            quirks: Quirks::default(),
        }
    }

    /// Advances everything that is driven by time.
    pub fn settle(&mut self, now: Instant) {
        for registry in self.registries.values_mut() {
            registry.settle_gcs(now);
        }
        let counter = &mut self.counter;
        let mut new_id = || {
            *counter += 1;
            uuid_for(*counter)
        };
        for app in &mut self.apps {
            app.settle(now, &mut new_id);
        }
    }

    pub fn next_id(&mut self) -> u64 {
        self.counter += 1;
        self.counter
    }

    /// A UUID-shaped identifier, unique within this simulator.
    pub fn uuid(&mut self) -> String {
        uuid_for(self.next_id())
    }

    pub fn registry_mut(&mut self, name: &str) -> Result<&mut Registry, SimError> {
        self.registries.get_mut(name).ok_or_else(SimError::not_found)
    }

    /// Pushes an image as `docker push` does: a new manifest with one new layer of `size_bytes`,
    /// taking `tag` from any manifest that had it. Refused while a GC runs (read-only).
    pub fn push(
        &mut self,
        registry: &str,
        repository: &str,
        tag: &str,
        size_bytes: u64,
        labels: &Value,
        now: Instant,
    ) -> Result<Value, SimError> {
        let label = format!("{registry}/{repository}:{tag} #{}", self.next_id());
        self.store(registry, repository, vec![content::image_labelled(&label, size_bytes, labels)], Some(tag), now)
    }

    /// Pushes a multi-platform image as `docker buildx build --push` does: an untagged image
    /// per platform (and an attestation manifest for each with `attestations`), then the
    /// index, tagged. Each platform gets its own layer of `size_bytes`.
    pub fn push_index(&mut self, image: &IndexPush, now: Instant) -> Result<Value, SimError> {
        let label = format!("{}/{}:{} #{}", image.registry, image.repository, image.tag, self.next_id());
        let documents = content::index(&label, &image.platforms, image.attestations, image.size_bytes, &image.labels);
        self.store(&image.registry, &image.repository, documents, Some(&image.tag), now)
    }

    /// Stores documents in order (children before the index that holds them); the last one
    /// gets `tag`, which moves away from any other manifest. Returns the last one as the API
    /// lists it.
    pub fn store(
        &mut self,
        registry: &str,
        repository: &str,
        documents: Vec<Document>,
        tag: Option<&str>,
        now: Instant,
    ) -> Result<Value, SimError> {
        self.settle(now);
        let sequences: Vec<u64> = documents.iter().map(|_| self.next_id()).collect();
        let registry_state = self.registry_mut(registry)?;
        registry_state.check_writable(now)?;
        let repository_state = registry_state.repositories.entry(repository.to_string()).or_default();
        let last = documents.len().saturating_sub(1);
        let mut shown = Value::Null;
        let mut blobs = Vec::new();
        for (index, (document, sequence)) in documents.into_iter().zip(sequences).enumerate() {
            let tag = tag.filter(|_| index == last);
            blobs.extend(document.blobs.iter().cloned());
            registry_state.blob_bodies.extend(document.bodies.iter().cloned());
            let digest = document.digest.clone();
            if repository_state.get(&digest).is_none() {
                repository_state.insert(Manifest::from_document(document, Vec::new(), now_rfc3339(), sequence));
            }
            let manifest = match tag {
                Some(tag) => repository_state.tag(&digest, tag, sequence, now_rfc3339()),
                None => repository_state.get(&digest),
            };
            shown = manifest_json(registry, repository, manifest.expect("just stored"));
        }
        registry_state.blob_store.extend(blobs);
        Ok(shown)
    }

    /// Starts a GC with the standard status sequence, or refuses while one is active.
    pub fn start_gc(
        &mut self,
        registry: &str,
        gc_type: &str,
        plan: Option<Vec<(String, Duration)>>,
        final_status: &str,
        now: Instant,
    ) -> Result<Value, SimError> {
        self.settle(now);
        let uuid = self.uuid();
        let step = Duration::from_millis(self.timing.gc_step_ms);
        let registry_state = self.registry_mut(registry)?;
        if registry_state.active_gc(now).is_some() {
            return Err(SimError::new(409, "conflict", "a garbage collection is already active for this registry"));
        }
        let created_at = now_rfc3339();
        let run = GcRun {
            uuid,
            gc_type: gc_type.to_string(),
            updated_at: created_at.clone(),
            created_at,
            started: now,
            plan: plan.unwrap_or_else(|| GC_STATUSES.iter().map(|s| (s.to_string(), step)).collect()),
            final_status: final_status.to_string(),
            cancel_requested: None,
            cancel_duration: step,
            ended: None,
            blobs_deleted: 0,
            freed_bytes: 0,
        };
        let shown = run.to_json(registry, now);
        registry_state.gcs.push(run);
        Ok(shown)
    }

    /// Adds an app running `spec`, with an ACTIVE deployment of it when `active`; returns its id
    /// (`id`, or a new one from this simulator's counter, so ids never collide).
    pub fn add_app(&mut self, id: Option<String>, spec: Value, active: bool, now: Instant) -> String {
        let id = id.unwrap_or_else(|| self.uuid());
        let mut app = App {
            id: id.clone(),
            spec,
            created_at: "2026-01-05T09:00:00Z".into(),
            deployments: Vec::new(),
            next_outcome: Outcome::Success,
            next_phase_duration: None,
            next_live: Live::Healthy,
            pinned: None,
        };
        if active {
            app.deployments.push(Deployment {
                id: self.uuid(),
                spec: app.spec.clone(),
                cause: "initial deployment".into(),
                created_at: "2026-01-05T09:00:00Z".into(),
                started: now,
                phase_duration: Duration::from_millis(1),
                outcome: Outcome::Success,
                settled: Some(("ACTIVE".into(), "2026-01-05T09:05:00Z".into())),
                cloned_from: None,
                was_active: true,
                active_since: Some(now),
                live: Live::Healthy,
            });
        }
        self.apps.push(app);
        id
    }

    pub fn app_index(&self, id_or_name: &str) -> Option<usize> {
        self.apps
            .iter()
            .position(|app| app.id == id_or_name || app.spec.get("name").and_then(Value::as_str) == Some(id_or_name))
    }

    /// Creates a deployment of the app's current spec. A deployment still in progress is superseded.
    pub fn create_deployment(&mut self, app_index: usize, cause: &str, now: Instant) -> Value {
        self.create_deployment_of(app_index, cause, None, now)
    }

    /// Creates a deployment of `rollback_to`'s spec, or of the app's spec. The scripted outcome
    /// (`next_outcome`) applies to this one deployment; later ones succeed.
    pub fn create_deployment_of(
        &mut self,
        app_index: usize,
        cause: &str,
        rollback_to: Option<usize>,
        now: Instant,
    ) -> Value {
        self.settle(now);
        let id = self.uuid();
        let default_duration = Duration::from_millis(self.timing.deploy_phase_ms);
        let app = &mut self.apps[app_index];
        for older in &mut app.deployments {
            if !older.is_terminal(now) {
                older.settled = Some(("SUPERSEDED".into(), now_rfc3339()));
            }
        }
        let (spec, cloned_from) = match rollback_to {
            Some(target) => (app.deployments[target].spec.clone(), Some(app.deployments[target].id.clone())),
            None => (app.spec.clone(), None),
        };
        let deployment = Deployment {
            id,
            spec,
            cause: cause.to_string(),
            created_at: now_rfc3339(),
            started: now,
            phase_duration: app.next_phase_duration.unwrap_or(default_duration),
            outcome: std::mem::take(&mut app.next_outcome),
            settled: None,
            cloned_from,
            was_active: false,
            active_since: None,
            live: std::mem::take(&mut app.next_live),
        };
        let shown = deployment.to_json(now);
        app.deployments.push(deployment);
        shown
    }
}

#[derive(Debug, Clone)]
pub struct SimError {
    pub status: u16,
    pub id: &'static str,
    pub message: String,
}

impl SimError {
    pub fn new(status: u16, id: &'static str, message: impl Into<String>) -> SimError {
        SimError { status, id, message: message.into() }
    }
    pub fn not_found() -> SimError {
        SimError::new(404, "not_found", "The resource you requested could not be found.")
    }
    pub fn bad_request(message: impl Into<String>) -> SimError {
        SimError::new(400, "bad_request", message)
    }
}

pub fn manifest_json(registry: &str, repository: &str, manifest: &Manifest) -> Value {
    json!({
        "registry_name": registry,
        "repository": repository,
        "digest": manifest.digest,
        "compressed_size_bytes": manifest.compressed_size(),
        "size_bytes": manifest.size_bytes,
        "updated_at": manifest.updated_at,
        "tags": manifest.tags,
        "blobs": manifest.blobs.iter().map(|(digest, size)| json!({"digest": digest, "compressed_size_bytes": size})).collect::<Vec<_>>(),
    })
}

fn uuid_for(n: u64) -> String {
    let h = hash64(&("uuid", n));
    format!("{:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}", h >> 32, (h >> 16) & 0xffff, h & 0xfff, n & 0xfff, n)
}

fn hash64(value: &impl Hash) -> u64 {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    value.hash(&mut hasher);
    hasher.finish()
}

pub fn now_rfc3339() -> String {
    let now = jiff::Timestamp::now();
    jiff::Timestamp::from_second(now.as_second()).unwrap_or(now).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest(label: &str, tags: &[&str], sequence: u64) -> Manifest {
        let tags = tags.iter().map(|t| t.to_string()).collect();
        Manifest::from_document(content::image(label, 10), tags, "2026-01-01T00:00:00Z".into(), sequence)
    }

    fn listing(repository: &Repository) -> Vec<(u64, Vec<String>)> {
        repository.manifests().rev().map(|m| (m.sequence, m.tags.clone())).collect()
    }

    #[test]
    fn the_indexes_follow_every_change() {
        let (a, b, c) = (manifest("a", &["v1"], 1), manifest("b", &["v2", "latest"], 2), manifest("c", &[], 3));
        let (a_digest, b_digest, c_digest) = (a.digest.clone(), b.digest.clone(), c.digest.clone());
        let mut repository = Repository::from_manifests(vec![c, a, b]);
        assert_eq!(
            listing(&repository),
            vec![(3, vec![]), (2, vec!["v2".into(), "latest".into()]), (1, vec!["v1".into()])]
        );
        assert_eq!((repository.len(), repository.tag_count()), (3, 3));
        assert_eq!(repository.find("latest").map(|m| &m.digest), Some(&b_digest));
        assert_eq!(repository.newest().map(|m| &m.digest), Some(&c_digest));

        // A push moves `latest` to the untagged manifest, which becomes the newest.
        repository.tag(&c_digest, "latest", 4, "2026-01-02T00:00:00Z".into());
        assert_eq!(repository.find("latest").map(|m| &m.digest), Some(&c_digest));
        assert_eq!(repository.get(&b_digest).map(|m| m.tags.clone()), Some(vec!["v2".to_string()]));
        assert_eq!(listing(&repository)[0], (4, vec!["latest".to_string()]));
        assert_eq!(repository.tag_count(), 3);

        assert!(repository.untag("v2"));
        assert!(!repository.untag("v2"));
        assert!(repository.find("v2").is_none());
        assert_eq!(repository.remove(&a_digest).map(|m| m.sequence), Some(1));
        assert!(repository.remove(&a_digest).is_none());
        assert!(repository.find("v1").is_none() && repository.find(&a_digest).is_none());
        assert_eq!((repository.len(), repository.tag_count()), (2, 1));

        repository.retain(|m| !m.tags.is_empty());
        assert_eq!(listing(&repository), vec![(4, vec!["latest".to_string()])]);
        repository.edit(|manifests| manifests[0].tags.push("v9".into()));
        assert_eq!(repository.find("v9").map(|m| &m.digest), Some(&c_digest));
        assert_eq!(repository.tag_count(), 2);
    }
}
