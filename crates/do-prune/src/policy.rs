//! The retention policy over one repository's tagged manifests: which stay (and why), which go
//! whole, which lose only some tags. Untagged manifests are not decided here but by the keep
//! closure (`closure.rs`), since what they are (an index's child, a referrer) is not in the
//! listing. Pure: no requests, so it is unit-, property- and mutation-tested.

use std::collections::BTreeMap;

use do_core::digest::Digest;
use do_core::short_text::ShortText;
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
    pub digests: BTreeMap<Digest, String>,
    /// tag -> reason
    pub tags: BTreeMap<String, String>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Kept {
    pub digest: Digest,
    pub tags: Vec<String>,
    pub reason: String,
}

#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Delete the manifest (and with it all its tags).
    Manifest,
    /// Delete only these tags; the manifest stays, tagged by the kept ones.
    Tags,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Deletion {
    pub digest: Digest,
    /// With `manifest`: every tag it had (none for an untagged manifest). With `tags`: the tags to delete.
    pub tags: Vec<String>,
    /// The tags it had when planned (a saved plan is applied only if they still match).
    pub all_tags: Vec<String>,
    pub updated_at: Option<ShortText>,
    /// Compressed bytes of the manifest's blobs (what a later GC may free).
    pub bytes: u64,
    pub action: Action,
    /// Why it goes: one of a few texts, shared rather than copied into each of 80,000.
    #[serde(default)]
    pub reason: std::borrow::Cow<'static, str>,
    /// What it is of, when it is an artifact (a signature, attestation, SBOM or referrer):
    /// boxed, as most deletions are not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact: Option<Box<ArtifactOf>>,
}

/// An artifact's kind and subject, on its deletion.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct ArtifactOf {
    pub kind: crate::artifacts::Kind,
    pub subject: Digest,
}

/// What the policy decides for one repository's tagged manifests.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TaggedPlan {
    pub kept: Vec<Kept>,
    pub deleted: Vec<Deletion>,
    /// Manifests whose `updated_at` cannot be read: kept, and worth a warning.
    pub unreadable_times: Vec<(Digest, Option<ShortText>)>,
}

/// Decides the tagged manifests of one repository. Untagged manifests in `manifests` are ignored.
pub fn plan_tagged(
    manifests: &[&Manifest],
    policy: &Policy,
    keep_tag_patterns: &[regex::Regex],
    protected: &Protected,
    now_epoch: i64,
) -> TaggedPlan {
    // Room for every tagged manifest to go, at once (20,000 deletions grown by doubling had
    // room for 32,768).
    let mut plan = TaggedPlan::default();
    plan.deleted.reserve_exact(manifests.len());
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
        plan.kept.push(Kept { digest: manifest.digest.clone(), tags: manifest.tags.to_vec(), reason });
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
            plan.kept.push(Kept { digest: manifest.digest.clone(), tags: manifest.tags.to_vec(), reason });
            continue;
        }
        plan_tags(&mut plan, manifest, keep_tag_patterns);
    }
    plan
}

/// A manifest no rule keeps whole: deleted, or, when some of its tags stay on their own
/// (`latest`, --keep-tag), kept with those while the others are deleted.
fn plan_tags(plan: &mut TaggedPlan, manifest: &Manifest, keep_tag_patterns: &[regex::Regex]) {
    let kept_tags: Vec<(&String, String)> =
        manifest.tags.iter().filter_map(|tag| kept_tag_reason(tag, keep_tag_patterns).map(|why| (tag, why))).collect();
    if kept_tags.is_empty() {
        plan.deleted.push(deletion(manifest, manifest.tags.to_vec(), Action::Manifest, "kept by no rule"));
        return;
    }
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

pub fn deletion(
    manifest: &Manifest,
    tags: Vec<String>,
    action: Action,
    reason: impl Into<std::borrow::Cow<'static, str>>,
) -> Deletion {
    Deletion {
        digest: manifest.digest.clone(),
        tags,
        all_tags: manifest.tags.to_vec(),
        updated_at: manifest.updated_at.clone(),
        bytes: bytes(manifest),
        action,
        reason: reason.into(),
        artifact: None,
    }
}

pub fn bytes(manifest: &Manifest) -> u64 {
    manifest
        .compressed_size_bytes
        .get()
        .or(manifest.size_bytes.get())
        .unwrap_or_else(|| manifest.blobs.iter().filter_map(|b| b.compressed_size_bytes.get()).sum())
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
#[path = "policy_tests/tests.rs"]
mod tests;

#[cfg(test)]
#[path = "policy_tests/properties.rs"]
mod properties;
