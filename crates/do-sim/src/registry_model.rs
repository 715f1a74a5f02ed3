//! The registry as the simulator holds it: subscription tiers, manifests indexed by digest,
//! tag and recency, garbage collections and their time-driven statuses.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::{json, Value};

use crate::basics::{now_rfc3339, SimError};
use crate::content::Document;

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
    /// The sequences newest first, made on the first listing page after a change: a page is
    /// then a slice, not a walk past every manifest before it.
    newest_first: std::cell::OnceCell<Vec<u64>>,
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

    /// The listing's page: `take` manifests, newest first, after the `skip` newest.
    pub fn newest_first(&self, skip: usize, take: usize) -> impl Iterator<Item = &Manifest> {
        let order = self.newest_first.get_or_init(|| self.by_sequence.keys().rev().copied().collect());
        order.iter().skip(skip).take(take).filter_map(|sequence| self.by_sequence.get(sequence))
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
        self.newest_first = Default::default();
    }

    pub fn remove(&mut self, digest: &str) -> Option<Manifest> {
        let sequence = self.by_digest.remove(digest)?;
        let manifest = self.by_sequence.remove(&sequence)?;
        self.newest_first = Default::default();
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
    pub(crate) fn settle_gcs(&mut self, now: Instant) {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest(digest: &str, sequence: u64) -> Manifest {
        Manifest {
            digest: digest.into(),
            media_type: String::new(),
            content: Arc::new(Vec::new()),
            tags: Vec::new(),
            blobs: Vec::new(),
            children: Vec::new(),
            subject: None,
            size_bytes: 0,
            updated_at: String::new(),
            sequence,
        }
    }

    fn page(repository: &Repository, skip: usize, take: usize) -> Vec<&str> {
        repository.newest_first(skip, take).map(|m| m.digest.as_str()).collect()
    }

    #[test]
    fn a_listing_page_is_newest_first_and_follows_every_change() {
        let mut repository = Repository::from_manifests((1..=5).map(|i| manifest(&format!("d{i}"), i)).collect());
        assert_eq!(page(&repository, 0, 2), ["d5", "d4"]);
        assert_eq!(page(&repository, 4, 2), ["d1"]);
        repository.insert(manifest("d6", 6));
        assert_eq!(page(&repository, 0, 2), ["d6", "d5"], "a push is first");
        repository.remove("d5");
        assert_eq!(page(&repository, 0, 2), ["d6", "d4"], "a deletion is gone");
        repository.tag("d1", "v1", 7, String::new());
        assert_eq!(page(&repository, 0, 1), ["d1"], "a tagged manifest becomes the newest");
        repository.edit(|manifests| manifests.retain(|m| m.digest != "d1"));
        assert_eq!(page(&repository, 0, 9), ["d6", "d4", "d3", "d2"]);
    }
}
