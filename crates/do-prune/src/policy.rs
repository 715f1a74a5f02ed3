//! The retention policy: which manifests stay (and why), which go whole, which lose only some
//! tags, and what that frees. Pure: no requests, so it is unit- and property-tested.

use std::collections::{BTreeMap, BTreeSet};

use do_core::types::Manifest;
use serde::{Deserialize, Serialize};

/// The rules. A manifest is kept if any rule keeps it.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Policy {
    /// Tag patterns (whole-tag regular expressions) whose tags stay; `latest` always does.
    pub keep_tags: Vec<String>,
    /// The N most recent tagged manifests per repository stay.
    pub keep_last: usize,
    /// Manifests updated within this many seconds stay.
    pub keep_within_seconds: Option<u64>,
    /// Delete even a repository's last tagged manifest.
    pub allow_empty: bool,
}

/// Digests and tags that must not be deleted, each with why.
#[derive(Clone, Debug, Default)]
pub struct Protected {
    /// (repository, digest) -> reason
    pub digests: BTreeMap<(String, String), String>,
    /// (repository or None for any, tag) -> reason
    pub tags: BTreeMap<(Option<String>, String), String>,
}

impl Protected {
    pub fn digest(&self, repository: &str, digest: &str) -> Option<&String> {
        self.digests.get(&(repository.to_string(), digest.to_string()))
    }

    fn tag(&self, repository: &str, tag: &str) -> Option<&String> {
        self.tags
            .get(&(Some(repository.to_string()), tag.to_string()))
            .or_else(|| self.tags.get(&(None, tag.to_string())))
    }
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Kept {
    pub digest: String,
    pub tags: Vec<String>,
    pub reason: String,
}

#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
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
    /// With `manifest`: every tag it had. With `tags`: the tags to delete.
    pub tags: Vec<String>,
    /// The tags it had when planned (a saved plan is applied only if they still match).
    pub all_tags: Vec<String>,
    pub updated_at: Option<String>,
    /// Compressed bytes of the manifest (what a later GC may free).
    pub bytes: u64,
    pub action: Action,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Untagged {
    pub count: u64,
    pub bytes: u64,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct RepositoryPlan {
    pub name: String,
    pub kept: Vec<Kept>,
    pub deleted: Vec<Deletion>,
    /// Untagged manifests a GC of type `untagged manifests …` removes (protected ones excluded).
    pub untagged: Untagged,
}

/// Plans one repository.
pub fn plan_repository(
    repository: &str,
    manifests: &[Manifest],
    policy: &Policy,
    keep_tag_patterns: &[regex::Regex],
    protected: &Protected,
    now_epoch: i64,
) -> RepositoryPlan {
    let mut tagged: Vec<&Manifest> = manifests.iter().filter(|m| !m.tags.is_empty()).collect();
    // Most recent first; the digest breaks ties so the order never depends on listing order.
    tagged.sort_by(|a, b| epoch(b).cmp(&epoch(a)).then_with(|| a.digest.cmp(&b.digest)));
    let mut plan = RepositoryPlan {
        name: repository.to_string(),
        kept: Vec::new(),
        deleted: Vec::new(),
        untagged: Untagged::default(),
    };
    for manifest in manifests.iter().filter(|m| m.tags.is_empty()) {
        match protected.digest(repository, &manifest.digest) {
            Some(reason) => {
                plan.kept.push(Kept { digest: manifest.digest.clone(), tags: Vec::new(), reason: reason.clone() })
            }
            None => {
                plan.untagged.count += 1;
                plan.untagged.bytes += bytes(manifest);
            }
        }
    }
    for (rank, manifest) in tagged.iter().enumerate() {
        let whole_reason = protected
            .digest(repository, &manifest.digest)
            .cloned()
            .or_else(|| {
                (rank < policy.keep_last).then(|| format!("one of the {} most recent (--keep-last)", policy.keep_last))
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
            .or_else(|| manifest.tags.iter().find_map(|tag| protected.tag(repository, tag).cloned()));
        if let Some(reason) = whole_reason {
            plan.kept.push(Kept { digest: manifest.digest.clone(), tags: manifest.tags.clone(), reason });
            continue;
        }
        let kept_tags: Vec<(&String, String)> = manifest
            .tags
            .iter()
            .filter_map(|tag| {
                if tag == "latest" {
                    return Some((tag, "tag latest".to_string()));
                }
                keep_tag_patterns
                    .iter()
                    .find(|re| re.is_match(tag))
                    .map(|re| (tag, format!("tag {tag} matches --keep-tag {}", re.as_str())))
            })
            .collect();
        if kept_tags.is_empty() {
            plan.deleted.push(deletion(manifest, manifest.tags.clone(), Action::Manifest));
        } else {
            let reason = kept_tags.iter().map(|(_, why)| why.as_str()).collect::<Vec<_>>().join("; ");
            let kept_names: BTreeSet<&String> = kept_tags.iter().map(|(tag, _)| *tag).collect();
            let doomed: Vec<String> = manifest.tags.iter().filter(|t| !kept_names.contains(t)).cloned().collect();
            plan.kept.push(Kept {
                digest: manifest.digest.clone(),
                tags: kept_names.into_iter().cloned().collect(),
                reason,
            });
            if !doomed.is_empty() {
                plan.deleted.push(deletion(manifest, doomed, Action::Tags));
            }
        }
    }
    if !policy.allow_empty {
        let every_tagged_goes = !tagged.is_empty()
            && tagged.iter().all(|m| plan.deleted.iter().any(|d| d.digest == m.digest && d.action == Action::Manifest));
        if every_tagged_goes {
            let newest = tagged[0];
            plan.deleted.retain(|d| d.digest != newest.digest);
            plan.kept.push(Kept {
                digest: newest.digest.clone(),
                tags: newest.tags.clone(),
                reason: "the repository's last tagged manifest (--allow-empty deletes it)".into(),
            });
        }
    }
    plan
}

fn deletion(manifest: &Manifest, tags: Vec<String>, action: Action) -> Deletion {
    Deletion {
        digest: manifest.digest.clone(),
        tags,
        all_tags: manifest.tags.clone(),
        updated_at: manifest.updated_at.clone(),
        bytes: bytes(manifest),
        action,
    }
}

pub fn bytes(manifest: &Manifest) -> u64 {
    manifest
        .compressed_size_bytes
        .or(manifest.size_bytes)
        .unwrap_or_else(|| manifest.blobs.iter().filter_map(|b| b.compressed_size_bytes).sum())
}

pub fn epoch(manifest: &Manifest) -> Option<i64> {
    manifest.updated_at.as_deref().and_then(do_core::duration::parse_timestamp).map(|t| t.as_second())
}

/// Bytes a GC frees once `gone` manifests are removed: blobs that no remaining manifest uses.
pub fn freed_bytes(all: &[&Manifest], gone: &BTreeSet<&str>) -> u64 {
    let mut kept_blobs = BTreeSet::new();
    for manifest in all.iter().filter(|m| !gone.contains(m.digest.as_str())) {
        for blob in &manifest.blobs {
            if let Some(digest) = &blob.digest {
                kept_blobs.insert(digest.as_str());
            }
        }
    }
    let mut freed = BTreeMap::new();
    for manifest in all.iter().filter(|m| gone.contains(m.digest.as_str())) {
        if manifest.blobs.is_empty() {
            freed.insert(manifest.digest.as_str(), bytes(manifest));
        }
        for blob in &manifest.blobs {
            if let Some(digest) = blob.digest.as_deref().filter(|d| !kept_blobs.contains(d)) {
                freed.insert(digest, blob.compressed_size_bytes.unwrap_or(0));
            }
        }
    }
    freed.values().sum()
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

    fn plan(manifests: &[Manifest], policy: &Policy, protected: &Protected) -> RepositoryPlan {
        let patterns = compile_keep_tags(&policy.keep_tags).unwrap();
        plan_repository("web", manifests, policy, &patterns, protected, NOW)
    }

    fn deleted(plan: &RepositoryPlan) -> Vec<(&str, Action)> {
        plan.deleted.iter().map(|d| (d.digest.as_str(), d.action)).collect()
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
    fn keep_last_keeps_the_most_recent_by_updated_at() {
        let p = plan(&registry(), &Policy { keep_last: 2, ..Policy::default() }, &Protected::default());
        assert_eq!(deleted(&p), [("c", Action::Tags), ("b", Action::Manifest), ("a", Action::Manifest)]);
        assert!(p.kept.iter().any(|k| k.digest == "c" && k.reason == "tag latest"));
        assert_eq!(p.untagged, Untagged { count: 1, bytes: 100 });
    }

    #[test]
    fn keep_within_keeps_recent_updates() {
        let p = plan(
            &registry(),
            &Policy { keep_within_seconds: Some(15 * DAY as u64), ..Policy::default() },
            &Protected::default(),
        );
        assert_eq!(deleted(&p), [("c", Action::Tags), ("b", Action::Manifest), ("a", Action::Manifest)]);
        let d = p.kept.iter().find(|k| k.digest == "d").unwrap();
        assert_eq!(d.reason, "updated within 15d (--keep-within)");
    }

    #[test]
    fn keep_tag_matches_whole_tags_and_deletes_only_the_other_tags() {
        let p = plan(
            &registry(),
            &Policy { keep_tags: vec!["release-.*".into()], ..Policy::default() },
            &Protected::default(),
        );
        let partial = p.deleted.iter().find(|d| d.digest == "e").unwrap();
        assert_eq!((partial.action, partial.tags.clone()), (Action::Tags, vec!["v5".to_string()]));
        let kept = p.kept.iter().find(|k| k.digest == "e").unwrap();
        assert_eq!(kept.tags, ["release-5"]);
        // `v1` does not match `v1.*`-like prefixes by accident: patterns are anchored.
        let anchored =
            plan(&registry(), &Policy { keep_tags: vec!["v".into()], ..Policy::default() }, &Protected::default());
        assert!(anchored.deleted.iter().any(|d| d.digest == "a"));
    }

    #[test]
    fn latest_is_always_kept_but_its_other_tags_may_go() {
        let p = plan(&registry(), &Policy::default(), &Protected::default());
        let c = p.deleted.iter().find(|d| d.digest == "c").unwrap();
        assert_eq!((c.action, c.tags.clone()), (Action::Tags, vec!["v3".to_string()]));
        assert!(p.kept.iter().any(|k| k.digest == "c" && k.tags == ["latest"]));
    }

    #[test]
    fn protected_digests_are_kept_whole_even_untagged() {
        let mut protected = Protected::default();
        protected.digests.insert(("web".into(), "a".into()), "active deployment of shop".into());
        protected.digests.insert(("web".into(), "u".into()), "rollback target of shop".into());
        let p = plan(&registry(), &Policy::default(), &protected);
        assert!(p.kept.iter().any(|k| k.digest == "a" && k.tags == ["v1"] && k.reason == "active deployment of shop"));
        assert!(p.kept.iter().any(|k| k.digest == "u" && k.reason == "rollback target of shop"));
        assert_eq!(p.untagged.count, 0, "a protected untagged manifest is not counted for GC");
        assert!(!p.deleted.iter().any(|d| d.digest == "a"));
    }

    #[test]
    fn protected_tags_keep_their_manifest() {
        let mut protected = Protected::default();
        protected.tags.insert((None, "v2".into()), "named by the tag record".into());
        let p = plan(&registry(), &Policy::default(), &protected);
        assert!(p.kept.iter().any(|k| k.digest == "b" && k.reason == "named by the tag record"));
    }

    #[test]
    fn the_last_tagged_manifest_stays_without_allow_empty() {
        let manifests = vec![manifest("a", &["v1"], 40), manifest("b", &["v2"], 30)];
        let p = plan(&manifests, &Policy::default(), &Protected::default());
        assert_eq!(deleted(&p), [("a", Action::Manifest)]);
        assert!(p.kept.iter().any(|k| k.digest == "b" && k.reason.contains("--allow-empty")));
        let p = plan(&manifests, &Policy { allow_empty: true, ..Policy::default() }, &Protected::default());
        assert_eq!(p.deleted.len(), 2);
    }

    #[test]
    fn shared_blobs_are_not_counted_as_freed() {
        let mut a = manifest("a", &["v1"], 1);
        let b = manifest("b", &["v2"], 1);
        a.blobs.push(b.blobs[0].clone());
        let all = [&a, &b];
        assert_eq!(freed_bytes(&all, &BTreeSet::from(["a"])), 100, "b's blob stays");
        assert_eq!(freed_bytes(&all, &BTreeSet::from(["a", "b"])), 200);
    }

    #[test]
    fn bad_patterns_are_reported() {
        let error = compile_keep_tags(&["(".into()]).unwrap_err();
        assert!(error.contains("not a valid regular expression"), "{error}");
    }
}
