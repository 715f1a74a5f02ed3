//! Planning one repository: the retention policy (or a saved plan) decides the tagged
//! manifests; the keep closure, from manifests read on the registry host, decides the untagged
//! ones and rescues any tagged one a kept index holds. A repository where a read failed gets no
//! deletion at all (fail closed).

use std::collections::{BTreeMap, BTreeSet, HashMap};

use do_core::digest::Digest;
use do_core::types::Manifest;
use serde::{Deserialize, Serialize};

use crate::artifacts::{self, Artifact, Fate, Subjects};
use crate::closure::{self, Closure, Read};
use crate::policy::{self, Action, ArtifactOf, Deletion, Kept, Policy, Protected};
use crate::reads::{Reader, Reads};

/// Untagged manifests left in place: held by a kept index, referring to a kept manifest, or
/// pushed too recently.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Untagged {
    pub count: u64,
    pub bytes: u64,
}

/// Read from a saved plan; written through [`crate::written::Described`], which describes the
/// garbage from the listing.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
pub struct RepositoryPlan {
    pub name: String,
    pub kept: Vec<Kept>,
    /// Deletions held in full: tagged ones first, then a saved plan's untagged entries, each
    /// index before what it holds.
    pub deleted: Vec<Deletion>,
    /// The untagged garbage, deleted after `deleted`, each index before what it holds: by
    /// digest, described from the listing when written.
    #[serde(skip)]
    pub garbage: Vec<Digest>,
    pub untagged_kept: Untagged,
    /// Why nothing in this repository is deleted, when a read failed.
    #[serde(default)]
    pub blocked: Option<String>,
    /// Signatures, attestations, SBOMs and referrers, each with its subject and fate (those
    /// deleted are also in `deleted`); never counted among the kept images.
    #[serde(default)]
    pub artifacts: Vec<Artifact>,
}

/// A saved-plan entry not applied, and why.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct Skipped {
    pub repository: String,
    pub digest: Digest,
    pub reason: String,
}

/// What decides the tagged manifests.
pub enum Rules<'a> {
    /// `limit`: with --target-usage, the tagged manifests that may go whole; the policy's other
    /// whole deletions are kept.
    Policy { policy: &'a Policy, patterns: &'a [regex::Regex], now: i64, limit: Option<&'a BTreeSet<Digest>> },
    /// A saved plan's entries for this repository, checked against today's registry.
    Saved { entries: &'a RepositoryPlan, policy: &'a Policy },
}

/// A repository's plan, with the closure it rests on.
pub struct Planned {
    pub plan: RepositoryPlan,
    /// The closure the plan was made with; its `deletable` went into the plan's deletions.
    pub closure: Closure,
    /// What the closure started from: kept and protected manifests, recent untagged ones,
    /// artifacts that stay.
    pub roots: BTreeMap<Digest, String>,
    pub skipped: Vec<Skipped>,
    /// The manifests whose tags name their subject (cosign's scheme).
    pub tag_artifacts: BTreeMap<Digest, Subjects>,
    /// Manifests with a tag the rules keep on its own: releases whatever their reads show.
    pub kept_by_tag: BTreeSet<Digest>,
}

/// How every repository is planned, beyond its rules.
pub struct Setting<'a> {
    /// Untagged manifests updated after this (epoch seconds) stay: a push may be under way.
    pub grace_cutoff: i64,
    /// `--keep-artifacts`: artifacts of deleted images stay.
    pub keep_artifacts: bool,
    /// The other repository of the registry that lists a digest, if one does.
    pub elsewhere: &'a (dyn Fn(&Digest) -> Option<String> + Sync),
}

/// What decides the tagged releases gave: kept, tagged deletions, a saved plan's untagged and
/// artifact entries, and saved entries skipped.
struct TaggedDecision {
    kept: Vec<Kept>,
    deletions: Vec<Deletion>,
    saved_untagged: Vec<Deletion>,
    saved_artifacts: Vec<Deletion>,
    skipped: Vec<Skipped>,
}

/// Plans one repository.
///
/// A tagged manifest is read only when its read can change the plan: a kept one always (it is
/// a root of the closure); one the plan deletes whole when the repository holds any artifact at
/// all, since it may be an OCI referrer under an ordinary tag. A read that shows a `subject` on
/// a manifest planned as a release makes it an artifact, and the plan is made again.
pub fn plan_repository(
    name: &str,
    listing: &[Manifest],
    protected: &Protected,
    rules: &Rules,
    setting: &Setting,
    reader: &Reader,
    reads: &mut Reads,
) -> anyhow::Result<Planned> {
    // Each round that does not return reads manifests not read before, or finds a kept release
    // to be an artifact (which it stays from then on), so this many rounds suffice.
    let listed: HashMap<&Digest, &Manifest> = listing.iter().map(|m| (&m.digest, m)).collect();
    for _ in 0..=listing.len() {
        let planned = plan_once(name, (listing, &listed), protected, rules, setting, reader, reads)?;
        let (stale, unread) = {
            let read = &reads.read;
            let has_subject = |digest: &Digest| matches!(read.get(digest), Some(Read::Info(i)) if i.subject.is_some());
            let has_artifacts = !planned.tag_artifacts.is_empty() || listing.iter().any(|m| has_subject(&m.digest));
            // A kept release read while planning (as a root of the closure) may turn out to be
            // a referrer. (A release the plan deletes was either read before the plan, which
            // then knew it, or is read below and planned again.)
            let stale = planned
                .plan
                .kept
                .iter()
                .filter(|k| !k.tags.is_empty())
                .any(|k| has_subject(&k.digest) && !planned.kept_by_tag.contains(&k.digest));
            // A release the plan deletes may be an OCI referrer under an ordinary tag: read it
            // where the repository holds artifacts, or where its listing shows the empty config
            // OCI 1.1 artifacts carry.
            let unread: Vec<Digest> = planned
                .plan
                .deleted
                .iter()
                .filter(|d| d.artifact.is_none() && !d.all_tags.is_empty() && d.action == Action::Manifest)
                .filter(|d| has_artifacts || artifacts::looks_like_artifact(listed.get(&d.digest).copied()))
                .filter(|d| !read.contains_key(&d.digest))
                .map(|d| d.digest.clone())
                .collect();
            (stale, unread)
        };
        if !stale && unread.is_empty() {
            return Ok(planned);
        }
        reader.ensure(reads, name, &unread)?;
    }
    anyhow::bail!("the plan of {name} did not settle on which manifests are artifacts; nothing was deleted")
}

/// One plan of a repository, with what the reads made so far say about its manifests.
fn plan_once(
    name: &str,
    (listing, by_digest): (&[Manifest], &HashMap<&Digest, &Manifest>),
    protected: &Protected,
    rules: &Rules,
    setting: &Setting,
    reader: &Reader,
    reads: &mut Reads,
) -> anyhow::Result<Planned> {
    let Found { tag_artifacts, kept_by_tag, releases, tagged_failed } = find_artifacts(listing, rules, reads);
    let TaggedDecision { mut kept, deletions: mut deleted, saved_untagged, saved_artifacts, mut skipped } =
        decide_tagged(name, &releases, by_digest, protected, rules);
    let mut roots = roots_of(&kept, protected, listing, setting.grace_cutoff);
    // Where the registry has the referrers API, it names the referrers of the images the plan
    // deletes (the closure asks it for those of what stays).
    let going = deleted.iter().filter(|d| d.action == Action::Manifest).map(|d| &d.digest);
    reader.ask_referrers(reads, name, going);
    let (mut closure, decision, edges) =
        settle(name, listing, &mut roots, &tag_artifacts, setting, (reader, reads), &kept_by_tag)?;
    closure.failed.extend(tagged_failed);
    closure.failed.sort();
    closure.failed.dedup();
    let skip =
        |digest: &Digest, reason: String| Skipped { repository: name.to_string(), digest: digest.clone(), reason };
    // A tagged manifest a kept index holds (or one that refers to a kept one) stays. Taken out
    // in place: a partition made the many deleted again beside themselves.
    let rescued: Vec<Deletion> = deleted
        .extract_if(.., |d| {
            d.action == Action::Manifest && closure.kept.contains_key(&d.digest) && !roots.contains_key(&d.digest)
        })
        .collect();
    for deletion in rescued {
        let reason = closure.kept[&deletion.digest].clone();
        match rules {
            Rules::Policy { .. } => kept.push(Kept { digest: deletion.digest, tags: deletion.all_tags, reason }),
            Rules::Saved { .. } => skipped.push(skip(&deletion.digest, format!("now needed: {reason}"))),
        }
    }
    let going = artifacts_going(&decision);
    // The tagged deletions first, then the untagged: a saved plan's still deletable, or the
    // garbage, named by digest (described from the listing when written).
    let saved_garbage = match rules {
        Rules::Policy { .. } => {
            deleted.extend(tagged_artifact_deletions(by_digest, &going));
            None
        }
        Rules::Saved { .. } => {
            let saved = saved_untagged.into_iter().chain(saved_artifacts);
            let (tagged, untagged, stale) = recheck_untagged(saved, (by_digest, &going), &mut closure);
            skipped.extend(stale.into_iter().map(|(digest, why)| skip(&digest, why)));
            deleted.extend(tagged);
            Some(untagged)
        }
    };
    let blocked = blocked_by(&closure);
    let garbage = match (&blocked, saved_garbage) {
        (Some(_), _) => Vec::new(),
        (None, Some(untagged)) => {
            deleted.extend(untagged);
            Vec::new()
        }
        (None, None) => take_garbage(&mut closure),
    };
    let mut artifacts = decision.artifacts;
    if let Some(reason) = &blocked {
        block(reason, &mut deleted, &mut kept, &mut artifacts);
    }
    let untagged_kept = untagged_kept(listing, &closure);
    kept.extend(protected_untagged(listing, protected));
    Ok(Planned {
        plan: RepositoryPlan { name: name.to_string(), kept, deleted, garbage, untagged_kept, blocked, artifacts },
        closure,
        roots,
        skipped,
        tag_artifacts: edges,
        kept_by_tag,
    })
}

/// The untagged manifests listed that are protected, kept for that.
fn protected_untagged(listing: &[Manifest], protected: &Protected) -> Vec<Kept> {
    let untagged_listed: BTreeSet<&Digest> = listing.iter().filter(|m| m.tags.is_empty()).map(|m| &m.digest).collect();
    let listed = protected.digests.iter().filter(|(d, _)| untagged_listed.contains(d));
    listed.map(|(digest, reason)| Kept { digest: digest.clone(), tags: Vec::new(), reason: reason.clone() }).collect()
}

/// Why nothing in the repository may be deleted: a read failed, so what the kept images need
/// is unknown.
fn blocked_by(closure: &Closure) -> Option<String> {
    closure.failed.first().map(|(digest, why)| {
        format!(
            "nothing in this repository is deleted: {} manifest read(s) failed, so what the kept images need is unknown (first: {} {why})",
            closure.failed.len(),
            closure::short(digest)
        )
    })
}

/// A blocked repository: the releases it would delete are kept, and so are the artifacts, for
/// `reason`; nothing is deleted.
fn block(reason: &str, deleted: &mut Vec<Deletion>, kept: &mut Vec<Kept>, artifacts: &mut [Artifact]) {
    for deletion in deleted.drain(..) {
        if deletion.action == Action::Manifest && deletion.artifact.is_none() {
            kept.push(Kept { digest: deletion.digest, tags: deletion.all_tags, reason: reason.to_string() });
        }
    }
    for artifact in artifacts.iter_mut().filter(|a| matches!(a.fate, Fate::Deleted | Fate::Orphan)) {
        artifact.fate = Fate::Kept;
        artifact.reason = reason.to_string();
    }
}

/// Which tagged manifests of a repository are artifacts and which are releases.
struct Found<'a> {
    /// Artifacts by cosign's tag scheme: digest -> subjects.
    tag_artifacts: BTreeMap<Digest, Subjects>,
    /// Manifests with a tag the rules keep on its own (`latest`, --keep-tag): releases always.
    kept_by_tag: BTreeSet<Digest>,
    /// Tagged manifests that are neither kind of artifact.
    releases: Vec<&'a Manifest>,
    /// Tagged manifests whose read failed: whether they are artifacts is unknown.
    tagged_failed: Vec<(Digest, String)>,
}

/// Tells artifacts from releases: by cosign's tag scheme, else by a `subject` the manifest's
/// read (made so far) shows. One carrying a tag the rules keep on its own stays a release.
fn find_artifacts<'a>(listing: &'a [Manifest], rules: &Rules, reads: &Reads) -> Found<'a> {
    let patterns: Vec<regex::Regex> = match rules {
        Rules::Policy { patterns, .. } => patterns.to_vec(),
        Rules::Saved { policy, .. } => policy::compile_keep_tags(&policy.keep_tags).unwrap_or_default(),
    };
    let kept_by_tag: BTreeSet<Digest> = listing
        .iter()
        .filter(|m| m.tags.iter().any(|t| policy::kept_tag_reason(t, &patterns).is_some()))
        .map(|m| m.digest.clone())
        .collect();
    let mut tag_artifacts = artifacts::by_tags(listing);
    tag_artifacts.retain(|digest, _| !kept_by_tag.contains(digest));
    // A tagged manifest whose read failed may be a referrer: what it is stays unknown.
    let tagged: Vec<&Digest> = listing.iter().filter(|m| !m.tags.is_empty()).map(|m| &m.digest).collect();
    let tagged_failed: Vec<(Digest, String)> = tagged
        .iter()
        .filter_map(|d| match reads.read.get(d) {
            Some(Read::Failed(why)) => Some(((*d).clone(), why.to_string())),
            _ => None,
        })
        .collect();
    let mut tagged_artifacts = artifacts::with_subjects(tag_artifacts.clone(), listing, &reads.read);
    tagged_artifacts.retain(|digest, _| !kept_by_tag.contains(digest));
    let releases = listing.iter().filter(|m| !m.tags.is_empty() && !tagged_artifacts.contains_key(&m.digest)).collect();
    Found { tag_artifacts, kept_by_tag, releases, tagged_failed }
}

/// The artifacts the decision deletes, with those it leaves orphaned, by digest.
fn artifacts_going(decision: &artifacts::Decision) -> BTreeMap<&Digest, &Artifact> {
    decision
        .artifacts
        .iter()
        .filter(|a| matches!(a.fate, Fate::Deleted | Fate::Orphan))
        .map(|a| (&a.digest, a))
        .collect()
}

/// The deletions of the tagged artifacts that go.
fn tagged_artifact_deletions(
    by_digest: &HashMap<&Digest, &Manifest>,
    going: &BTreeMap<&Digest, &Artifact>,
) -> Vec<Deletion> {
    going
        .values()
        .filter(|a| !a.tags.is_empty())
        .filter_map(|a| by_digest.get(&a.digest).map(|m| artifact_deletion(m, a)))
        .collect()
}

/// The untagged garbage, untagged artifacts among it, in the closure's order: the closure's
/// `deletable` (manifests of the listing it was computed over), taken, not copied.
fn take_garbage(closure: &mut Closure) -> Vec<Digest> {
    std::mem::take(&mut closure.deletable)
}

/// The untagged manifests the closure keeps: how many, how large.
fn untagged_kept(listing: &[Manifest], closure: &Closure) -> Untagged {
    let mut untagged = Untagged::default();
    for manifest in listing.iter().filter(|m| m.tags.is_empty() && closure.kept.contains_key(&m.digest)) {
        untagged.count += 1;
        untagged.bytes += policy::bytes(manifest);
    }
    untagged
}

/// The rules over the releases (tagged manifests that are not artifacts).
fn decide_tagged(
    name: &str,
    releases: &[&Manifest],
    by_digest: &HashMap<&Digest, &Manifest>,
    protected: &Protected,
    rules: &Rules,
) -> TaggedDecision {
    match rules {
        Rules::Policy { policy, patterns, now, limit } => {
            let mut tagged = policy::plan_tagged(releases, policy, patterns, protected, *now);
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
            TaggedDecision {
                kept: tagged.kept,
                deletions: tagged.deleted,
                saved_untagged: Vec::new(),
                saved_artifacts: Vec::new(),
                skipped: Vec::new(),
            }
        }
        Rules::Saved { entries, policy } => {
            let (artifact_entries, release_entries): (Vec<Deletion>, Vec<Deletion>) =
                entries.deleted.iter().cloned().partition(|d| d.artifact.is_some());
            let entries = RepositoryPlan { deleted: release_entries, ..(*entries).clone() };
            let (kept, deletions, untagged, skipped) =
                recheck_saved(name, &entries, policy, releases, by_digest, protected);
            TaggedDecision { kept, deletions, saved_untagged: untagged, saved_artifacts: artifact_entries, skipped }
        }
    }
}

/// What the closure starts from: kept and protected manifests, and untagged ones too recent
/// (or too oddly dated) to judge.
fn roots_of(kept: &[Kept], protected: &Protected, listing: &[Manifest], grace_cutoff: i64) -> BTreeMap<Digest, String> {
    let mut roots: BTreeMap<Digest, String> = BTreeMap::new();
    for kept in kept {
        roots.entry(kept.digest.clone()).or_insert_with(|| kept.reason.clone());
    }
    for (digest, reason) in &protected.digests {
        roots.entry(digest.clone()).or_insert_with(|| reason.clone());
    }
    for manifest in listing.iter().filter(|m| m.tags.is_empty()) {
        let reason = match policy::epoch(manifest) {
            Some(at) if at < grace_cutoff => continue,
            Some(_) => "untagged and pushed within --untagged-grace (it may be part of a push in progress)",
            None => "untagged, and its updated_at cannot be read",
        };
        roots.entry(manifest.digest.clone()).or_insert_with(|| reason.to_string());
    }
    roots
}

/// The closure and the artifacts' fates, together: an artifact that stays outside the closure
/// becomes a root (so what it holds stays), and a subject no listing shows is read, until
/// neither changes anything. `kept_by_tag` are releases whatever their reads show.
fn settle(
    name: &str,
    listing: &[Manifest],
    roots: &mut BTreeMap<Digest, String>,
    tag_artifacts: &BTreeMap<Digest, Subjects>,
    setting: &Setting,
    (reader, reads): (&Reader, &mut Reads),
    kept_by_tag: &BTreeSet<Digest>,
) -> anyhow::Result<(Closure, artifacts::Decision, BTreeMap<Digest, Subjects>)> {
    // Each round adds a root or reads a manifest not read before; one that does neither would
    // repeat itself, so it fails closed.
    let mut before: Option<(usize, usize)> = None;
    loop {
        let closure = reader.closure(reads, name, listing, roots, tag_artifacts)?;
        let edges = reader.edges(reads, tag_artifacts);
        let mut all = artifacts::with_subjects(edges.clone(), listing, &reads.read);
        all.retain(|digest, _| !kept_by_tag.contains(digest));
        let world = artifacts::World {
            listing,
            kept: &closure.kept,
            reads: &reads.read,
            elsewhere: setting.elsewhere,
            keep_artifacts: setting.keep_artifacts,
        };
        let decision = artifacts::decide(&all, &world);
        if !decision.pending.is_empty() {
            reader.ensure(reads, name, &decision.pending)?;
        } else if !decision.new_roots.is_empty() {
            for (digest, reason) in decision.new_roots {
                roots.entry(digest).or_insert(reason);
            }
        } else {
            return Ok((closure, decision, edges));
        }
        let now = (roots.len(), reads.read.len());
        anyhow::ensure!(before != Some(now), "the artifacts of {name} did not settle; nothing was deleted");
        before = Some(now);
    }
}

/// The deletion of an artifact that goes.
pub(crate) fn artifact_deletion(manifest: &Manifest, artifact: &Artifact) -> Deletion {
    Deletion {
        artifact: Some(Box::new(ArtifactOf { kind: artifact.kind, subject: artifact.subject.clone() })),
        ..policy::deletion(manifest, manifest.tags.to_vec(), Action::Manifest, artifact.reason.clone())
    }
}

/// A saved plan's untagged and artifact entries that a fresh plan also deletes, the tagged
/// among them and the untagged, each in the fresh plan's order; the others with why they stay.
fn recheck_untagged(
    saved: impl Iterator<Item = Deletion>,
    (by_digest, going): (&HashMap<&Digest, &Manifest>, &BTreeMap<&Digest, &Artifact>),
    closure: &mut Closure,
) -> (Vec<Deletion>, Vec<Deletion>, Vec<(Digest, String)>) {
    let tagged_artifacts = tagged_artifact_deletions(by_digest, going);
    let garbage = take_garbage(closure);
    let fresh: Vec<&Digest> = tagged_artifacts.iter().map(|d| &d.digest).chain(&garbage).collect();
    let (applied, stale) = still_deletable(saved, &fresh, closure);
    let (tagged, untagged) = applied.into_iter().partition(|d| !d.all_tags.is_empty());
    (tagged, untagged, stale)
}

/// A saved plan's untagged and artifact entries that the fresh plan also deletes, in its
/// order; the others with why they stay.
fn still_deletable(
    saved: impl Iterator<Item = Deletion>,
    fresh: &[&Digest],
    closure: &Closure,
) -> (Vec<Deletion>, Vec<(Digest, String)>) {
    let order: BTreeMap<&Digest, usize> = fresh.iter().enumerate().map(|(i, d)| (*d, i)).collect();
    let mut applied = Vec::new();
    let mut stale = Vec::new();
    for entry in saved {
        if order.contains_key(&entry.digest) {
            applied.push(entry);
        } else {
            let reason =
                closure.kept.get(&entry.digest).cloned().unwrap_or_else(|| "it cannot be deleted safely now".into());
            stale.push((entry.digest.clone(), format!("no longer garbage: {reason}")));
        }
    }
    applied.sort_by_key(|d| order.get(&d.digest).copied().unwrap_or(usize::MAX));
    (applied, stale)
}

/// A saved plan's entries against today's listing: the kept releases (roots), the tagged
/// deletions still valid, the untagged entries still untagged, and the entries skipped.
/// `releases` are the listing's tagged manifests that are not artifacts.
fn recheck_saved(
    name: &str,
    entries: &RepositoryPlan,
    policy: &Policy,
    releases: &[&Manifest],
    by_digest: &HashMap<&Digest, &Manifest>,
    protected: &Protected,
) -> (Vec<Kept>, Vec<Deletion>, Vec<Deletion>, Vec<Skipped>) {
    let newest = newest_tagged(releases);
    let mut skipped = Vec::new();
    let mut deletions = Vec::new();
    let mut untagged = Vec::new();
    for entry in &entries.deleted {
        let skip = |reason: String| Skipped { repository: name.to_string(), digest: entry.digest.clone(), reason };
        let Some(manifest) = by_digest.get(&entry.digest) else {
            skipped.push(skip("gone since the plan".into()));
            continue;
        };
        if manifest.tags[..] != entry.all_tags[..] || manifest.updated_at != entry.updated_at {
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
        } else if entry.action == Action::Manifest && !policy.allow_empty && newest == Some(&entry.digest) {
            skipped.push(skip("the repository's newest tagged manifest (--allow-empty deletes it)".into()));
        } else {
            deletions.push(entry.clone());
        }
    }
    let going: BTreeSet<&Digest> =
        deletions.iter().filter(|d| d.action == Action::Manifest).map(|d| &d.digest).collect();
    let saved_reasons: BTreeMap<&Digest, &str> = entries.kept.iter().map(|k| (&k.digest, k.reason.as_str())).collect();
    let kept = releases
        .iter()
        .filter(|m| !going.contains(&m.digest))
        .map(|m| Kept {
            digest: m.digest.clone(),
            tags: m.tags.to_vec(),
            reason: saved_reasons
                .get(&m.digest)
                .map(|r| r.to_string())
                .unwrap_or_else(|| "not in the saved plan".into()),
        })
        .collect();
    (kept, deletions, untagged, skipped)
}

/// The digest the policy counts as a repository's newest tagged manifest.
fn newest_tagged<'a>(listing: &[&'a Manifest]) -> Option<&'a Digest> {
    let tagged = listing.iter().filter(|m| !m.tags.is_empty());
    if let Some(unreadable) = tagged.clone().find(|m| policy::epoch(m).is_none()) {
        return Some(&unreadable.digest);
    }
    tagged.min_by(|a, b| policy::newest_first(a, b)).map(|m| &m.digest)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn untagged(digest: &str, updated_at: Option<&str>) -> Manifest {
        Manifest { digest: digest.into(), updated_at: updated_at.map(Into::into), ..Manifest::default() }
    }

    #[test]
    fn untagged_manifests_pushed_at_or_after_the_grace_cutoff_or_undated_are_roots() {
        let cutoff = do_core::duration::parse_timestamp("2026-01-01T00:00:00Z").unwrap().as_second();
        let listing = vec![
            untagged("older", Some("2025-12-31T23:59:59Z")),
            untagged("at", Some("2026-01-01T00:00:00Z")),
            untagged("newer", Some("2026-01-01T00:00:01Z")),
            untagged("undated", None),
            Manifest { digest: "tagged".into(), tags: vec!["v1".into()].into(), ..Manifest::default() },
        ];
        let roots = roots_of(&[], &Protected::default(), &listing, cutoff);
        assert_eq!(roots.keys().collect::<Vec<_>>(), ["at", "newer", "undated"]);
        assert!(roots[&Digest::new("at")].contains("--untagged-grace"));
        assert_eq!(roots[&Digest::new("undated")], "untagged, and its updated_at cannot be read");
    }
}
