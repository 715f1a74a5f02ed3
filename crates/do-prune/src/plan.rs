//! Planning one repository: the retention policy (or a saved plan) decides the tagged
//! manifests; the keep closure, from manifests read on the registry host, decides the untagged
//! ones and rescues any tagged one a kept index holds. A repository where a read failed gets no
//! deletion at all (fail closed).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Condvar, Mutex};

use do_core::oci::{NotInRegistry, RegistryClient};
use do_core::progress::Progress;
use do_core::types::Manifest;
use do_core::Exit;
use serde::{Deserialize, Serialize};

use crate::closure::{self, Closure, Read};
use crate::policy::{self, Action, Deletion, Kept, Policy, Protected};

/// Untagged manifests left in place: held by a kept index, referring to a kept manifest, or
/// pushed too recently.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Untagged {
    pub count: u64,
    pub bytes: u64,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct RepositoryPlan {
    pub name: String,
    pub kept: Vec<Kept>,
    /// Tagged deletions first, then untagged ones, each index before what it holds.
    pub deleted: Vec<Deletion>,
    pub untagged_kept: Untagged,
    /// Why nothing in this repository is deleted, when a read failed.
    #[serde(default)]
    pub blocked: Option<String>,
}

/// A saved-plan entry not applied, and why.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct Skipped {
    pub repository: String,
    pub digest: String,
    pub reason: String,
}

/// What decides the tagged manifests.
pub enum Rules<'a> {
    /// `limit`: with --target-usage, the tagged manifests that may go whole; the policy's other
    /// whole deletions are kept.
    Policy { policy: &'a Policy, patterns: &'a [regex::Regex], now: i64, limit: Option<&'a BTreeSet<String>> },
    /// A saved plan's entries for this repository, checked against today's registry.
    Saved { entries: &'a RepositoryPlan, policy: &'a Policy },
}

/// Manifests read from the registry host, by repository and digest; reads are made as the
/// closure asks for them, several at once, and never twice.
pub struct Reads<'a> {
    reader: &'a RegistryClient,
    cache: Mutex<BTreeMap<String, BTreeMap<String, Read>>>,
    concurrency: usize,
    /// Reads under way, over every repository planned at once: never more than `concurrency`.
    in_flight: (Mutex<usize>, Condvar),
    progress: &'a Progress,
}

impl<'a> Reads<'a> {
    pub fn new(reader: &'a RegistryClient, concurrency: usize, progress: &'a Progress) -> Reads<'a> {
        Reads {
            reader,
            cache: Mutex::new(BTreeMap::new()),
            concurrency: concurrency.max(1),
            in_flight: (Mutex::new(0), Condvar::new()),
            progress,
        }
    }

    /// One manifest read, waiting for a free place when `concurrency` reads are under way.
    fn read_one(&self, repository: &str, digest: &str) -> anyhow::Result<do_core::oci::ManifestInfo> {
        let (count, freed) = &self.in_flight;
        {
            let mut running = count.lock().unwrap_or_else(|e| e.into_inner());
            while *running >= self.concurrency {
                running = freed.wait(running).unwrap_or_else(|e| e.into_inner());
            }
            *running += 1;
        }
        let result = self.reader.manifest(repository, digest);
        *count.lock().unwrap_or_else(|e| e.into_inner()) -= 1;
        freed.notify_one();
        result
    }

    /// The repository's closure of `roots`, reading until it is complete. A deadline reached
    /// while reading is an error (exit 3); any other failed read is in the closure's `failed`.
    pub fn closure(
        &self,
        repository: &str,
        listing: &[Manifest],
        roots: &BTreeMap<String, String>,
    ) -> anyhow::Result<Closure> {
        loop {
            let (closure, progress) = {
                let cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
                let empty = BTreeMap::new();
                let read = cache.get(repository).unwrap_or(&empty);
                let closure = closure::compute(listing, roots, read);
                let progress = closure.pending.iter().any(|digest| !read.contains_key(digest));
                (closure, progress)
            };
            if closure.is_complete() {
                return Ok(closure);
            }
            // Each round reads something new, so the loop ends; fail closed if it would not.
            anyhow::ensure!(
                progress,
                "the keep closure of {repository} asks again for manifests already read; nothing was deleted"
            );
            self.read_all(repository, &closure.pending)?;
        }
    }

    /// The reads made so far in a repository (for ordering deletions).
    pub fn of(&self, repository: &str) -> BTreeMap<String, Read> {
        self.cache.lock().unwrap_or_else(|e| e.into_inner()).get(repository).cloned().unwrap_or_default()
    }

    fn read_all(&self, repository: &str, digests: &[String]) -> anyhow::Result<()> {
        let total = digests.len();
        let done = std::sync::atomic::AtomicUsize::new(0);
        let read = do_core::concurrent::try_map(digests, self.concurrency, |digest| {
            let read = match self.read_one(repository, digest) {
                Ok(info) => Read::Info(info),
                Err(error) if error.chain().any(|c| c.is::<NotInRegistry>()) => Read::Missing,
                // The deadline stops the reads; any other failure is recorded (and fails closed).
                Err(error) if do_core::exit::exit_code_of(&error) == Exit::Deadline => return Err(error),
                Err(error) => Read::Failed(format!("{error:#}")),
            };
            self.cache
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .entry(repository.to_string())
                .or_default()
                .insert(digest.clone(), read);
            let count = done.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
            if count.is_multiple_of((total / 10).max(1)) || count == total {
                self.progress.status(&format!("reading manifests of {repository}: {count}/{total}"));
            }
            Ok(())
        });
        self.progress.finish();
        read.map(drop)
            .map_err(|error| error.context("the deadline passed while reading manifests; nothing was deleted"))
    }
}

/// A repository's plan, with the closure it rests on.
pub struct Planned {
    pub plan: RepositoryPlan,
    pub closure: Closure,
    /// What the closure started from: kept and protected manifests, recent untagged ones.
    pub roots: BTreeMap<String, String>,
    pub skipped: Vec<Skipped>,
}

/// Plans one repository.
pub fn plan_repository(
    name: &str,
    listing: &[Manifest],
    protected: &Protected,
    rules: &Rules,
    grace_cutoff: i64,
    reads: &Reads,
) -> anyhow::Result<Planned> {
    let mut skipped = Vec::new();
    let skip =
        |digest: &str, reason: String| Skipped { repository: name.to_string(), digest: digest.to_string(), reason };
    let (mut kept, mut tagged_deletions, saved_untagged) = match rules {
        Rules::Policy { policy, patterns, now, limit } => {
            let mut tagged = policy::plan_tagged(listing, policy, patterns, protected, *now);
            if let Some(limit) = limit {
                let (going, spared): (Vec<Deletion>, Vec<Deletion>) =
                    tagged.deleted.into_iter().partition(|d| d.action == Action::Tags || limit.contains(&d.digest));
                tagged.deleted = going;
                tagged.kept.extend(spared.into_iter().map(|d| Kept {
                    digest: d.digest,
                    tags: d.all_tags,
                    reason: "not needed to reach --target-usage".into(),
                }));
            }
            (tagged.kept, tagged.deleted, Vec::new())
        }
        Rules::Saved { entries, policy } => {
            let (kept, deletions, untagged, stale) = recheck_saved(name, entries, policy, listing, protected);
            skipped.extend(stale);
            (kept, deletions, untagged)
        }
    };
    let mut roots: BTreeMap<String, String> = BTreeMap::new();
    for kept in &kept {
        roots.entry(kept.digest.clone()).or_insert_with(|| kept.reason.clone());
    }
    for (digest, reason) in &protected.digests {
        roots.entry(digest.clone()).or_insert_with(|| reason.clone());
    }
    for manifest in listing.iter().filter(|m| m.tags.is_empty()) {
        match policy::epoch(manifest) {
            Some(at) if at < grace_cutoff => {}
            Some(_) => {
                roots.entry(manifest.digest.clone()).or_insert_with(|| {
                    "untagged and pushed within --untagged-grace (it may be part of a push in progress)".to_string()
                });
            }
            None => {
                roots
                    .entry(manifest.digest.clone())
                    .or_insert_with(|| "untagged, and its updated_at cannot be read".to_string());
            }
        }
    }
    let closure = reads.closure(name, listing, &roots)?;

    // A tagged manifest a kept index holds (or one that refers to a kept one) stays.
    let (rescued, deletions): (Vec<Deletion>, Vec<Deletion>) = tagged_deletions.drain(..).partition(|d| {
        d.action == Action::Manifest && closure.kept.contains_key(&d.digest) && !roots.contains_key(&d.digest)
    });
    for deletion in rescued {
        let reason = closure.kept[&deletion.digest].clone();
        match rules {
            Rules::Policy { .. } => kept.push(Kept { digest: deletion.digest, tags: deletion.all_tags, reason }),
            Rules::Saved { .. } => skipped.push(skip(&deletion.digest, format!("now needed: {reason}"))),
        }
    }
    let by_digest: BTreeMap<&str, &Manifest> = listing.iter().map(|m| (m.digest.as_str(), m)).collect();
    let garbage: Vec<Deletion> = closure
        .deletable
        .iter()
        .filter_map(|digest| by_digest.get(digest.as_str()))
        .map(|m| policy::deletion(m, Vec::new(), Action::Manifest, "untagged, and nothing kept holds or refers to it"))
        .collect();
    let mut untagged_deletions = match rules {
        Rules::Policy { .. } => garbage,
        Rules::Saved { .. } => {
            let garbage: BTreeSet<&str> = garbage.iter().map(|d| d.digest.as_str()).collect();
            let mut applied = Vec::new();
            for entry in saved_untagged {
                if garbage.contains(entry.digest.as_str()) {
                    applied.push(entry);
                } else {
                    let reason = closure
                        .kept
                        .get(&entry.digest)
                        .cloned()
                        .unwrap_or_else(|| "it cannot be deleted safely now".into());
                    skipped.push(skip(&entry.digest, format!("no longer garbage: {reason}")));
                }
            }
            let order: BTreeMap<&str, usize> =
                closure.deletable.iter().enumerate().map(|(i, d)| (d.as_str(), i)).collect();
            applied.sort_by_key(|d| order.get(d.digest.as_str()).copied().unwrap_or(usize::MAX));
            applied
        }
    };
    let mut blocked = None;
    let mut deleted = deletions;
    if let Some((digest, why)) = closure.failed.first() {
        let reason = format!(
            "nothing in this repository is deleted: {} manifest read(s) failed, so what the kept images need is unknown (first: {} {why})",
            closure.failed.len(),
            closure::short(digest)
        );
        for deletion in deleted.drain(..) {
            if deletion.action == Action::Manifest {
                kept.push(Kept { digest: deletion.digest, tags: deletion.all_tags, reason: reason.clone() });
            }
        }
        untagged_deletions.clear();
        blocked = Some(reason);
    }
    deleted.extend(untagged_deletions);
    let mut untagged_kept = Untagged::default();
    for manifest in listing.iter().filter(|m| m.tags.is_empty() && closure.kept.contains_key(&m.digest)) {
        untagged_kept.count += 1;
        untagged_kept.bytes += policy::bytes(manifest);
    }
    for (digest, reason) in
        protected.digests.iter().filter(|(d, _)| by_digest.get(d.as_str()).is_some_and(|m| m.tags.is_empty()))
    {
        kept.push(Kept { digest: digest.clone(), tags: Vec::new(), reason: reason.clone() });
    }
    Ok(Planned {
        plan: RepositoryPlan { name: name.to_string(), kept, deleted, untagged_kept, blocked },
        closure,
        roots,
        skipped,
    })
}

/// A saved plan's entries against today's listing: the kept manifests (roots), the tagged
/// deletions still valid, the untagged entries still untagged, and the entries skipped.
fn recheck_saved(
    name: &str,
    entries: &RepositoryPlan,
    policy: &Policy,
    listing: &[Manifest],
    protected: &Protected,
) -> (Vec<Kept>, Vec<Deletion>, Vec<Deletion>, Vec<Skipped>) {
    let by_digest: BTreeMap<&str, &Manifest> = listing.iter().map(|m| (m.digest.as_str(), m)).collect();
    let newest = newest_tagged(listing);
    let mut skipped = Vec::new();
    let mut deletions = Vec::new();
    let mut untagged = Vec::new();
    for entry in &entries.deleted {
        let skip = |reason: String| Skipped { repository: name.to_string(), digest: entry.digest.clone(), reason };
        let Some(manifest) = by_digest.get(entry.digest.as_str()) else {
            skipped.push(skip("gone since the plan".into()));
            continue;
        };
        if manifest.tags != entry.all_tags || manifest.updated_at != entry.updated_at {
            skipped.push(skip(format!("changed since the plan (tags now {:?})", manifest.tags)));
            continue;
        }
        if let Some(reason) = protected.digests.get(&entry.digest) {
            skipped.push(skip(format!("now protected: {reason}")));
            continue;
        }
        if let Some(reason) = manifest.tags.iter().find_map(|t| protected.tags.get(t)) {
            skipped.push(skip(format!("now protected: {reason}")));
            continue;
        }
        if entry.all_tags.is_empty() {
            untagged.push(entry.clone());
        } else if entry.action == Action::Manifest && !policy.allow_empty && newest == Some(entry.digest.as_str()) {
            skipped.push(skip("the repository's newest tagged manifest (--allow-empty deletes it)".into()));
        } else {
            deletions.push(entry.clone());
        }
    }
    let going: BTreeSet<&str> =
        deletions.iter().filter(|d| d.action == Action::Manifest).map(|d| d.digest.as_str()).collect();
    let saved_reasons: BTreeMap<&str, &str> =
        entries.kept.iter().map(|k| (k.digest.as_str(), k.reason.as_str())).collect();
    let kept = listing
        .iter()
        .filter(|m| !m.tags.is_empty() && !going.contains(m.digest.as_str()))
        .map(|m| Kept {
            digest: m.digest.clone(),
            tags: m.tags.clone(),
            reason: saved_reasons
                .get(m.digest.as_str())
                .map(|r| r.to_string())
                .unwrap_or_else(|| "not in the saved plan".into()),
        })
        .collect();
    (kept, deletions, untagged, skipped)
}

/// The digest the policy counts as a repository's newest tagged manifest.
fn newest_tagged(listing: &[Manifest]) -> Option<&str> {
    let tagged = listing.iter().filter(|m| !m.tags.is_empty());
    if let Some(unreadable) = tagged.clone().find(|m| policy::epoch(m).is_none()) {
        return Some(&unreadable.digest);
    }
    tagged.min_by(|a, b| policy::newest_first(a, b)).map(|m| m.digest.as_str())
}

/// Whether a GC of `gc_type` is safe: an untagged type only when no repository's closure holds
/// an untagged manifest, every read succeeded and the listing shows index children; else why not.
pub fn untagged_gc_refusal(closures: &[(&str, &Closure, &[Manifest])]) -> Option<String> {
    for (name, closure, listing) in closures {
        if let Some((digest, why)) = closure.failed.first() {
            return Some(format!(
                "a manifest of {name} could not be read ({} {why}), so what GC would remove is unknown",
                closure::short(digest)
            ));
        }
        if !closure.unlisted.is_empty() {
            return Some(format!(
                "the API listing does not show the manifests an index of {name} holds ({} of them), so GC could remove what a kept image needs",
                closure.unlisted.len()
            ));
        }
        let needed: Vec<&Manifest> =
            listing.iter().filter(|m| m.tags.is_empty() && closure.kept.contains_key(&m.digest)).collect();
        if let Some(first) = needed.first() {
            return Some(format!(
                "{} untagged manifest(s) of {name} must stay, which an untagged GC would remove (for example {}: {})",
                needed.len(),
                closure::short(&first.digest),
                closure.kept[&first.digest]
            ));
        }
    }
    None
}
