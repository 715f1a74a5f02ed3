//! The simulator's state: registries, manifests, garbage collections, apps and deployments.
//! Time-driven states (GC status, deployment phase) are derived from the time elapsed since
//! they started, and their effects are applied once, the first time a request sees them end.

use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::Value;

pub use crate::apps_model::*;
pub use crate::basics::*;
use crate::content::{self, Document};
pub use crate::faults::*;
pub use crate::registry_model::*;

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
    /// `registry/repository` -> whether pushes are allowed there: one token may be for several
    /// repositories (a token request may name several scopes).
    pub names: BTreeMap<String, bool>,
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

fn uuid_for(n: u64) -> String {
    let h = hash64(&("uuid", n));
    format!("{:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}", h >> 32, (h >> 16) & 0xffff, h & 0xfff, n & 0xfff, n)
}

fn hash64(value: &impl Hash) -> u64 {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    value.hash(&mut hasher);
    hasher.finish()
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
