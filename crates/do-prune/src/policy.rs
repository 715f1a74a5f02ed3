//! The retention policy over one repository's tagged manifests: which stay (and why), which go
//! whole, which lose only some tags. Untagged manifests are not decided here but by the keep
//! closure (`closure.rs`), since what they are (an index's child, a referrer) is not in the
//! listing. Pure: no requests, so it is unit-, property- and mutation-tested.

use std::collections::BTreeMap;

use do_core::types::Manifest;
use serde::{Deserialize, Serialize};

/// The rules. A manifest is kept if any rule keeps it.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Policy {
    /// Tag patterns (whole-tag regular expressions) whose tags stay; `latest` always does.
    pub keep_tags: Vec<String>,
    /// The N most recent tagged manifests per repository stay.
    pub keep_last: usize,
    /// Manifests updated within this many seconds stay.
    pub keep_within_seconds: Option<u64>,
    /// Allow deleting a repository's newest tagged manifest.
    pub allow_empty: bool,
}

/// One repository's digests and tags that must not be deleted, each with why.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Protected {
    /// digest -> reason
    pub digests: BTreeMap<String, String>,
    /// tag -> reason
    pub tags: BTreeMap<String, String>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Kept {
    pub digest: String,
    pub tags: Vec<String>,
    pub reason: String,
}

#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Delete the manifest (and with it all its tags).
    Manifest,
    /// Delete only these tags; the manifest stays, tagged by the kept ones.
    Tags,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Deletion {
    pub digest: String,
    /// With `manifest`: every tag it had (none for an untagged manifest). With `tags`: the tags to delete.
    pub tags: Vec<String>,
    /// The tags it had when planned (a saved plan is applied only if they still match).
    pub all_tags: Vec<String>,
    pub updated_at: Option<String>,
    /// Compressed bytes of the manifest's blobs (what a later GC may free).
    pub bytes: u64,
    pub action: Action,
    /// Why it goes.
    #[serde(default)]
    pub reason: String,
    /// What it is of, when it is an artifact (a signature, attestation, SBOM or referrer).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact: Option<ArtifactOf>,
}

/// An artifact's kind and subject, on its deletion.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct ArtifactOf {
    pub kind: crate::artifacts::Kind,
    pub subject: String,
}

/// What the policy decides for one repository's tagged manifests.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TaggedPlan {
    pub kept: Vec<Kept>,
    pub deleted: Vec<Deletion>,
    /// Manifests whose `updated_at` cannot be read: kept, and worth a warning.
    pub unreadable_times: Vec<(String, Option<String>)>,
}

/// Decides the tagged manifests of one repository. Untagged manifests in `manifests` are ignored.
pub fn plan_tagged(
    manifests: &[Manifest],
    policy: &Policy,
    keep_tag_patterns: &[regex::Regex],
    protected: &Protected,
    now_epoch: i64,
) -> TaggedPlan {
    let mut plan = TaggedPlan::default();
    let (mut readable, unreadable): (Vec<&Manifest>, Vec<&Manifest>) =
        manifests.iter().filter(|m| !m.tags.is_empty()).partition(|m| epoch(m).is_some());
    readable.sort_by(|a, b| newest_first(a, b));
    // The time of the last --keep-last place: images pushed in that same second are all kept,
    // since which of them is "more recent" is an accident of the clock.
    let boundary = policy.keep_last.checked_sub(1).and_then(|last| readable.get(last)).and_then(|m| epoch(m));
    for manifest in &unreadable {
        plan.unreadable_times.push((manifest.digest.clone(), manifest.updated_at.clone()));
        let reason = protected.digests.get(&manifest.digest).cloned().unwrap_or_else(|| {
            format!(
                "its updated_at {} cannot be read, so it counts as newest",
                manifest.updated_at.as_deref().map(|t| format!("{t:?}")).unwrap_or_else(|| "(none)".into())
            )
        });
        plan.kept.push(Kept { digest: manifest.digest.clone(), tags: manifest.tags.clone(), reason });
    }
    for (rank, manifest) in readable.iter().enumerate() {
        let newest = rank == 0 && unreadable.is_empty();
        let whole_reason = protected
            .digests
            .get(&manifest.digest)
            .cloned()
            .or_else(|| {
                (rank < policy.keep_last).then(|| format!("one of the {} most recent (--keep-last)", policy.keep_last))
            })
            .or_else(|| {
                (epoch(manifest) == boundary).then(|| {
                    format!(
                        "pushed in the same second as the last of the {} most recent (--keep-last): a tie is kept whole",
                        policy.keep_last
                    )
                })
            })
            .or_else(|| {
                let within = policy.keep_within_seconds?;
                let age = now_epoch - epoch(manifest)?;
                (age <= within as i64).then(|| {
                    format!(
                        "updated within {} (--keep-within)",
                        do_core::duration::human(std::time::Duration::from_secs(within))
                    )
                })
            })
            .or_else(|| manifest.tags.iter().find_map(|tag| protected.tags.get(tag).cloned()))
            .or_else(|| {
                (newest && !policy.allow_empty)
                    .then(|| "the repository's newest tagged manifest (--allow-empty deletes it)".to_string())
            });
        if let Some(reason) = whole_reason {
            plan.kept.push(Kept { digest: manifest.digest.clone(), tags: manifest.tags.clone(), reason });
            continue;
        }
        let kept_tags: Vec<(&String, String)> = manifest
            .tags
            .iter()
            .filter_map(|tag| kept_tag_reason(tag, keep_tag_patterns).map(|why| (tag, why)))
            .collect();
        if kept_tags.is_empty() {
            plan.deleted.push(deletion(manifest, manifest.tags.clone(), Action::Manifest, "kept by no rule"));
        } else {
            let reason = kept_tags.iter().map(|(_, why)| why.as_str()).collect::<Vec<_>>().join("; ");
            let doomed: Vec<String> =
                manifest.tags.iter().filter(|t| !kept_tags.iter().any(|(kept, _)| kept == t)).cloned().collect();
            plan.kept.push(Kept {
                digest: manifest.digest.clone(),
                tags: kept_tags.iter().map(|(tag, _)| (*tag).clone()).collect(),
                reason,
            });
            if !doomed.is_empty() {
                plan.deleted.push(deletion(manifest, doomed, Action::Tags, "tags kept by no rule"));
            }
        }
    }
    plan
}

/// Why a tag stays on its own: `latest`, or a `--keep-tag` pattern.
pub fn kept_tag_reason(tag: &str, keep_tag_patterns: &[regex::Regex]) -> Option<String> {
    if tag == "latest" {
        return Some("tag latest".to_string());
    }
    keep_tag_patterns
        .iter()
        .find(|re| re.is_match(tag))
        .map(|re| format!("tag {tag} matches --keep-tag {}", re.as_str()))
}

pub fn deletion(manifest: &Manifest, tags: Vec<String>, action: Action, reason: &str) -> Deletion {
    Deletion {
        digest: manifest.digest.clone(),
        tags,
        all_tags: manifest.tags.clone(),
        updated_at: manifest.updated_at.clone(),
        bytes: bytes(manifest),
        action,
        reason: reason.to_string(),
        artifact: None,
    }
}

pub fn bytes(manifest: &Manifest) -> u64 {
    manifest
        .compressed_size_bytes
        .or(manifest.size_bytes)
        .unwrap_or_else(|| manifest.blobs.iter().filter_map(|b| b.compressed_size_bytes).sum())
}

/// The default retention, the one place it is set: do-prune's `--keep-last`, the xtask's
/// `keep_last` and `scripts/release.sh` all use it (with `--keep-rollback 2`, `latest` and each
/// repository's newest image, and every image an app runs or may roll back to).
pub const DEFAULT_KEEP_LAST: usize = 10;

/// The order of recency: newest `updated_at` first; images pushed in the same second by the
/// highest semantic version among their tags (`v2.0.10` above `v2.0.9`), then the greatest tag,
/// then the digest, so the order never depends on the listing's.
pub fn newest_first(a: &Manifest, b: &Manifest) -> std::cmp::Ordering {
    epoch(b)
        .cmp(&epoch(a))
        .then_with(|| highest_version(b).cmp(&highest_version(a)))
        .then_with(|| b.tags.iter().max().cmp(&a.tags.iter().max()))
        .then_with(|| a.digest.cmp(&b.digest))
}

/// The highest semantic version among the tags (a leading `v` or other letters are ignored:
/// `v1.2.3`, `release-1.2.3`).
fn highest_version(manifest: &Manifest) -> Option<semver::Version> {
    manifest
        .tags
        .iter()
        .filter_map(|tag| semver::Version::parse(tag.trim_start_matches(|c: char| !c.is_ascii_digit())).ok())
        .max()
}

pub fn epoch(manifest: &Manifest) -> Option<i64> {
    manifest.updated_at.as_deref().and_then(do_core::duration::parse_timestamp).map(|t| t.as_second())
}

/// Compiles `--keep-tag` patterns to match whole tags.
pub fn compile_keep_tags(patterns: &[String]) -> Result<Vec<regex::Regex>, String> {
    patterns
        .iter()
        .map(|pattern| {
            regex::Regex::new(&format!("^(?:{pattern})$")).map_err(|e| {
                format!(
                    "--keep-tag {}: not a valid regular expression: {}",
                    do_core::validate::shown(pattern),
                    e.to_string().lines().last().unwrap_or("")
                )
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use do_core::types::Blob;

    const DAY: i64 = 86_400;
    const NOW: i64 = 1_800_000_000;

    fn manifest(digest: &str, tags: &[&str], days_old: i64) -> Manifest {
        Manifest {
            digest: digest.into(),
            tags: tags.iter().map(|t| t.to_string()).collect(),
            updated_at: Some(jiff::Timestamp::from_second(NOW - days_old * DAY).unwrap().to_string()),
            compressed_size_bytes: Some(100),
            blobs: vec![Blob { digest: Some(format!("blob-{digest}")), compressed_size_bytes: Some(100) }],
            ..Manifest::default()
        }
    }

    fn plan(manifests: &[Manifest], policy: &Policy, protected: &Protected) -> TaggedPlan {
        let patterns = compile_keep_tags(&policy.keep_tags).unwrap();
        plan_tagged(manifests, policy, &patterns, protected, NOW)
    }

    fn deleted(plan: &TaggedPlan) -> Vec<(&str, Action)> {
        plan.deleted.iter().map(|d| (d.digest.as_str(), d.action)).collect()
    }

    fn reason<'a>(plan: &'a TaggedPlan, digest: &str) -> &'a str {
        &plan
            .kept
            .iter()
            .find(|k| k.digest == digest)
            .unwrap_or_else(|| panic!("{digest} is not kept: {plan:?}"))
            .reason
    }

    fn registry() -> Vec<Manifest> {
        vec![
            manifest("a", &["v1"], 40),
            manifest("b", &["v2"], 30),
            manifest("c", &["v3", "latest"], 20),
            manifest("d", &["v4"], 10),
            manifest("e", &["release-5", "v5"], 5),
            manifest("u", &[], 50),
        ]
    }

    #[test]
    fn images_pushed_in_the_same_second_are_ordered_by_version_then_tag_then_digest() {
        // The order of recency (which image is the newest, which fills a --keep-last place first).
        let order = |manifests: &[Manifest]| {
            let mut sorted: Vec<&Manifest> = manifests.iter().collect();
            sorted.sort_by(|a, b| newest_first(a, b));
            sorted.iter().map(|m| m.digest.clone()).collect::<Vec<_>>()
        };
        // Semantic versions, not text: v2.0.10 is newer than v2.0.9 and v2.0.7 than v2.0.2.
        let same_second =
            [manifest("a", &["v2.0.2"], 1), manifest("b", &["v2.0.10"], 1), manifest("c", &["v2.0.9"], 1)];
        assert_eq!(order(&same_second), ["b", "c", "a"]);
        // A prefix other than v, and a tag that is not a version, which counts below any version.
        let mixed = [manifest("a", &["build-7"], 1), manifest("b", &["release-1.0.0"], 1)];
        assert_eq!(order(&mixed), ["b", "a"]);
        // No versions: the greatest tag; the same tags: the smallest digest.
        assert_eq!(order(&[manifest("a", &["alpha"], 1), manifest("b", &["beta"], 1)]), ["b", "a"]);
        assert_eq!(order(&[manifest("b", &["x"], 1), manifest("a", &["x"], 1)]), ["a", "b"]);
        // Time still comes first.
        assert_eq!(order(&[manifest("a", &["v9.0.0"], 2), manifest("b", &["v1.0.0"], 1)]), ["b", "a"]);
        // The highest version among several tags counts.
        assert_eq!(order(&[manifest("a", &["v3.0.0", "v1.0.0"], 1), manifest("b", &["v2.0.0"], 1)]), ["a", "b"]);
        // The newest-image rail follows that order among images pushed in one second.
        let p = plan(&same_second, &Policy::default(), &Protected::default());
        assert_eq!(reason(&p, "b"), "the repository's newest tagged manifest (--allow-empty deletes it)");
        assert_eq!(deleted(&p), [("c", Action::Manifest), ("a", Action::Manifest)]);
    }

    #[test]
    fn keep_last_keeps_the_most_recent_by_updated_at() {
        let p = plan(&registry(), &Policy { keep_last: 2, ..Policy::default() }, &Protected::default());
        assert_eq!(deleted(&p), [("c", Action::Tags), ("b", Action::Manifest), ("a", Action::Manifest)]);
        assert_eq!(reason(&p, "c"), "tag latest");
        assert_eq!(reason(&p, "e"), "one of the 2 most recent (--keep-last)");
        assert_eq!(reason(&p, "d"), "one of the 2 most recent (--keep-last)");
        assert!(p.kept.iter().chain(p.kept.iter()).all(|k| k.digest != "u"), "untagged manifests are not decided here");
        assert_eq!(p.deleted[1].reason, "kept by no rule");
        assert_eq!(p.deleted[0].reason, "tags kept by no rule");
        assert_eq!(p.deleted[1].bytes, 100);
    }

    #[test]
    fn keep_last_keeps_every_image_tied_on_time_at_its_boundary() {
        // b and a were pushed in the same second, c earlier: --keep-last 1 keeps b and a both.
        let mut tied = vec![manifest("b", &["v2"], 3), manifest("a", &["v1"], 3), manifest("c", &["v3"], 9)];
        let p = plan(&tied, &Policy { keep_last: 1, ..Policy::default() }, &Protected::default());
        assert_eq!(deleted(&p), [("c", Action::Manifest)]);
        assert_eq!(reason(&p, "b"), "one of the 1 most recent (--keep-last)");
        assert_eq!(
            reason(&p, "a"),
            "pushed in the same second as the last of the 1 most recent (--keep-last): a tie is kept whole"
        );
        tied.reverse();
        let again = plan(&tied, &Policy { keep_last: 1, ..Policy::default() }, &Protected::default());
        assert_eq!(deleted(&again), deleted(&p), "the listing order does not matter");
        // A tie below the boundary changes nothing.
        let p = plan(
            &[
                manifest("n", &["v9"], 1),
                manifest("m", &["v8"], 1),
                manifest("o", &["v1"], 5),
                manifest("p", &["v0"], 5),
            ],
            &Policy { keep_last: 1, ..Policy::default() },
            &Protected::default(),
        );
        assert_eq!(deleted(&p), [("o", Action::Manifest), ("p", Action::Manifest)], "{p:?}");
        assert!(reason(&p, "m").contains("a tie is kept whole"));
        let none = plan(
            &[manifest("n", &["v9"], 1), manifest("m", &["v8"], 1)],
            &Policy { keep_last: 0, allow_empty: true, ..Policy::default() },
            &Protected::default(),
        );
        assert_eq!(none.deleted.len(), 2, "--keep-last 0 has no boundary");
    }

    #[test]
    fn keep_within_keeps_recent_updates_up_to_the_boundary() {
        let p = plan(
            &registry(),
            &Policy { keep_within_seconds: Some(10 * DAY as u64), ..Policy::default() },
            &Protected::default(),
        );
        assert_eq!(deleted(&p), [("c", Action::Tags), ("b", Action::Manifest), ("a", Action::Manifest)]);
        assert_eq!(reason(&p, "d"), "updated within 10d (--keep-within)", "exactly 10 days old is within");
    }

    #[test]
    fn keep_tag_matches_whole_tags_and_deletes_only_the_other_tags() {
        let p = plan(
            &registry(),
            &Policy { keep_tags: vec!["release-.*".into()], allow_empty: true, ..Policy::default() },
            &Protected::default(),
        );
        let partial = p.deleted.iter().find(|d| d.digest == "e").unwrap();
        assert_eq!((partial.action, partial.tags.clone()), (Action::Tags, vec!["v5".to_string()]));
        assert_eq!(partial.all_tags, ["release-5", "v5"]);
        let kept = p.kept.iter().find(|k| k.digest == "e").unwrap();
        assert_eq!(kept.tags, ["release-5"]);
        assert_eq!(kept.reason, "tag release-5 matches --keep-tag ^(?:release-.*)$");
        // Patterns are anchored: `v` does not match `v1`.
        let anchored = plan(
            &registry(),
            &Policy { keep_tags: vec!["v".into()], allow_empty: true, ..Policy::default() },
            &Protected::default(),
        );
        assert!(anchored.deleted.iter().any(|d| d.digest == "a" && d.action == Action::Manifest));
        let both = plan(
            &[manifest("m", &["x1", "y1", "z1"], 40), manifest("n", &["new"], 1)],
            &Policy { keep_tags: vec!["x.*".into(), "y.*".into()], ..Policy::default() },
            &Protected::default(),
        );
        assert_eq!(reason(&both, "m"), "tag x1 matches --keep-tag ^(?:x.*)$; tag y1 matches --keep-tag ^(?:y.*)$");
        assert_eq!(both.deleted[0].tags, ["z1"]);
    }

    #[test]
    fn latest_is_always_kept_but_its_other_tags_may_go() {
        let p = plan(&registry(), &Policy { allow_empty: true, ..Policy::default() }, &Protected::default());
        let c = p.deleted.iter().find(|d| d.digest == "c").unwrap();
        assert_eq!((c.action, c.tags.clone()), (Action::Tags, vec!["v3".to_string()]));
        assert!(p.kept.iter().any(|k| k.digest == "c" && k.tags == ["latest"]));
        let only_latest = plan(
            &[manifest("l", &["latest"], 90)],
            &Policy { allow_empty: true, ..Policy::default() },
            &Protected::default(),
        );
        assert!(only_latest.deleted.is_empty(), "nothing to delete when latest is the only tag");
    }

    #[test]
    fn protected_digests_and_tags_are_kept_whole() {
        let mut protected = Protected::default();
        protected.digests.insert("a".into(), "active deployment of shop".into());
        protected.tags.insert("v2".into(), "named by the tag record".into());
        let p = plan(&registry(), &Policy { allow_empty: true, ..Policy::default() }, &protected);
        assert_eq!(reason(&p, "a"), "active deployment of shop");
        assert_eq!(p.kept.iter().find(|k| k.digest == "a").unwrap().tags, ["v1"]);
        assert_eq!(reason(&p, "b"), "named by the tag record");
        assert!(!p.deleted.iter().any(|d| d.digest == "a" || d.digest == "b"));
    }

    #[test]
    fn the_newest_tagged_manifest_stays_without_allow_empty() {
        let manifests = vec![manifest("a", &["v1"], 40), manifest("b", &["v2"], 30)];
        let p = plan(&manifests, &Policy::default(), &Protected::default());
        assert_eq!(deleted(&p), [("a", Action::Manifest)]);
        assert_eq!(reason(&p, "b"), "the repository's newest tagged manifest (--allow-empty deletes it)");
        let p = plan(&manifests, &Policy { allow_empty: true, ..Policy::default() }, &Protected::default());
        assert_eq!(p.deleted.len(), 2);
        // Kept whole even when a --keep-tag keeps another manifest: two runs with different
        // patterns at once then both keep the same one, so the repository is never emptied.
        let with_pattern = vec![manifest("r", &["release-1"], 40), manifest("n", &["v9", "nightly"], 1)];
        let p = plan(
            &with_pattern,
            &Policy { keep_tags: vec!["release-.*".into()], ..Policy::default() },
            &Protected::default(),
        );
        assert!(p.deleted.is_empty(), "{p:?}");
        assert_eq!(p.kept.iter().find(|k| k.digest == "n").unwrap().tags, ["v9", "nightly"]);
    }

    #[test]
    fn an_unreadable_time_counts_as_newest_and_is_kept() {
        let mut odd = vec![manifest("a", &["v1"], 400), manifest("b", &["v2"], 300), manifest("c", &["v3"], 200)];
        odd[0].updated_at = Some("2026-11-29 10:00".into());
        odd[1].updated_at = None;
        let p = plan(&odd, &Policy::default(), &Protected::default());
        assert_eq!(reason(&p, "a"), "its updated_at \"2026-11-29 10:00\" cannot be read, so it counts as newest");
        assert_eq!(reason(&p, "b"), "its updated_at (none) cannot be read, so it counts as newest");
        assert_eq!(deleted(&p), [("c", Action::Manifest)], "the rail does not also keep c: a and b are newer");
        assert_eq!(
            p.unreadable_times,
            [("a".to_string(), Some("2026-11-29 10:00".to_string())), ("b".to_string(), None)]
        );
        let p = plan(&odd, &Policy { keep_last: 1, ..Policy::default() }, &Protected::default());
        assert_eq!(
            reason(&p, "c"),
            "one of the 1 most recent (--keep-last)",
            "unreadable ones take no --keep-last place"
        );
        let mut protected = Protected::default();
        protected.digests.insert("b".into(), "deployed".into());
        assert_eq!(reason(&plan(&odd, &Policy::default(), &protected), "b"), "deployed");
    }

    #[test]
    fn sizes_and_times() {
        let mut m = manifest("a", &["v1"], 1);
        assert_eq!(bytes(&m), 100);
        m.compressed_size_bytes = None;
        m.size_bytes = Some(7);
        assert_eq!(bytes(&m), 7);
        m.size_bytes = None;
        m.blobs = vec![
            Blob { digest: None, compressed_size_bytes: Some(3) },
            Blob { digest: None, compressed_size_bytes: Some(4) },
        ];
        assert_eq!(bytes(&m), 7);
        assert_eq!(epoch(&manifest("t", &[], 0)), Some(NOW));
    }

    #[test]
    fn bad_patterns_are_reported() {
        let error = compile_keep_tags(&["(".into()]).unwrap_err();
        assert!(error.contains("not a valid regular expression"), "{error}");
    }
}

#[cfg(test)]
mod properties {
    use super::*;
    use proptest::prelude::*;

    const TAGS: [&str; 10] = ["latest", "v1", "v2", "v3", "v4", "v5", "release-1", "release-2", "main", "dev"];
    const NOW: i64 = 1_800_000_000;

    /// A repository: unique digests, no tag on two manifests, ages in days (some unreadable).
    fn repository() -> impl Strategy<Value = Vec<Manifest>> {
        proptest::collection::vec(
            (proptest::collection::vec(0usize..TAGS.len(), 0..3), proptest::option::weighted(0.9, 0i64..60)),
            0..14,
        )
        .prop_map(|specs| {
            let mut used = std::collections::BTreeSet::new();
            specs
                .into_iter()
                .enumerate()
                .map(|(i, (tags, age))| Manifest {
                    digest: format!("sha256:{i:064x}"),
                    tags: tags.into_iter().filter(|t| used.insert(*t)).map(|t| TAGS[t].to_string()).collect(),
                    updated_at: Some(match age {
                        Some(days) => jiff::Timestamp::from_second(NOW - days * 86_400).unwrap().to_string(),
                        None => "yesterday".to_string(),
                    }),
                    compressed_size_bytes: Some(100),
                    ..Manifest::default()
                })
                .collect()
        })
    }

    fn policy() -> impl Strategy<Value = Policy> {
        (0usize..4, proptest::option::of(0u64..40), any::<bool>(), any::<bool>()).prop_map(
            |(keep_last, days, release, allow_empty)| Policy {
                keep_tags: if release { vec!["release-.*".into()] } else { vec![] },
                keep_last,
                keep_within_seconds: days.map(|d| d * 86_400),
                allow_empty,
            },
        )
    }

    proptest! {
        #[test]
        fn plans_keep_what_they_must(
            manifests in repository(),
            policy in policy(),
            protected_picks in proptest::collection::vec(0usize..14, 0..4),
            protected_tag in proptest::option::of(0usize..TAGS.len()),
        ) {
            let mut protected = Protected::default();
            for pick in &protected_picks {
                if let Some(m) = manifests.get(*pick) {
                    protected.digests.insert(m.digest.clone(), "deployed".into());
                }
            }
            if let Some(tag) = protected_tag {
                protected.tags.insert(TAGS[tag].to_string(), "named by the tag record".into());
            }
            let patterns = compile_keep_tags(&policy.keep_tags).unwrap();
            let plan = plan_tagged(&manifests, &policy, &patterns, &protected, NOW);
            let tagged: Vec<&Manifest> = manifests.iter().filter(|m| !m.tags.is_empty()).collect();

            // Every tagged manifest is decided once: kept, or deleted whole, or both kept and
            // stripped of some tags; untagged ones are not decided here.
            for manifest in &manifests {
                let kept = plan.kept.iter().filter(|k| k.digest == manifest.digest).count();
                let whole = plan.deleted.iter().filter(|d| d.digest == manifest.digest && d.action == Action::Manifest).count();
                let partial = plan.deleted.iter().filter(|d| d.digest == manifest.digest && d.action == Action::Tags).count();
                if manifest.tags.is_empty() {
                    prop_assert_eq!((kept, whole, partial), (0, 0, 0));
                } else {
                    prop_assert!(kept + whole == 1 && partial <= kept, "{:?}", manifest.digest);
                }
            }
            for deletion in &plan.deleted {
                // A protected digest loses nothing, not even a tag; `latest` and kept tags never go.
                prop_assert!(!protected.digests.contains_key(&deletion.digest));
                prop_assert!(deletion.tags.iter().all(|t| kept_tag_reason(t, &patterns).is_none() && !protected.tags.contains_key(t)));
                prop_assert!(deletion.tags.iter().all(|t| deletion.all_tags.contains(t)));
                // An unreadable time counts as newest: such a manifest is never deleted whole.
                prop_assert!(deletion.action == Action::Tags || epoch(manifests.iter().find(|m| m.digest == deletion.digest).unwrap()).is_some());
            }
            // Without --allow-empty a repository with tagged manifests keeps at least one whole.
            if !policy.allow_empty && !tagged.is_empty() {
                prop_assert!(plan.kept.iter().any(|k| tagged.iter().any(|m| m.digest == k.digest && m.tags == k.tags)));
            }
            // The N most recent readable ones are kept.
            let mut readable: Vec<&&Manifest> = tagged.iter().filter(|m| epoch(m).is_some()).collect();
            readable.sort_by(|a, b| newest_first(a, b));
            for recent in readable.iter().take(policy.keep_last) {
                prop_assert!(!plan.deleted.iter().any(|d| d.digest == recent.digest && d.action == Action::Manifest));
            }
            // And every one pushed in the same second as the last of them.
            if let Some(last) = policy.keep_last.checked_sub(1).and_then(|i| readable.get(i)) {
                for tied in readable.iter().filter(|m| epoch(m) == epoch(last)) {
                    prop_assert!(!plan.deleted.iter().any(|d| d.digest == tied.digest && d.action == Action::Manifest));
                }
            }
        }
    }
}
