//! What a prune tells: the `prune` record (v2), the table on stderr, and GitHub Actions outputs.

use do_core::digest::Digest;
use do_core::progress::Progress;
use serde::Serialize;

use std::collections::{BTreeMap, BTreeSet};

use crate::artifacts::{Artifact, Fate, Kind};
use crate::plan::{RepositoryPlan, Skipped};
use crate::policy::{Action, Kept, Policy};
use crate::written::Described;

/// The `prune` record, v2.
#[derive(Serialize)]
pub struct PruneRecord<'a> {
    pub registry: String,
    pub dry_run: bool,
    pub policy: Policy,
    pub usage: Usage,
    /// Each repository's plan, written with its listing.
    pub repositories: Vec<Described<'a>>,
    pub failed: Vec<Failed>,
    /// Saved-plan entries not applied, and why.
    pub skipped: Vec<Skipped>,
    /// Planned deletions dropped at the re-check right before deleting (a deployment started,
    /// the repository changed), each with why it stays.
    pub kept_at_recheck: Vec<RecheckKept>,
    /// Whether the API's digests listing shows the manifests an index holds: null when no
    /// kept index was read, false when some were missing from it.
    pub index_children_listed: Option<bool>,
    /// How artifacts were found: true when the registry answered the OCI referrers API, false
    /// when it has none (the `sha256-<digest>` tag scheme and `subject` fields), null when no
    /// kept image was asked about.
    pub referrers_api: Option<bool>,
    pub gc: Option<GcReport>,
    /// HTTP requests to the API this run made, retries included.
    pub requests: u64,
    /// HTTP requests to the registry host (manifest reads, tokens).
    pub registry_requests: u64,
    /// Manifests the cache answered, added and discarded (null with --no-cache or no cache).
    pub cache: Option<do_core::manifest_cache::CacheUse>,
}

#[derive(Debug, Default, Serialize)]
pub struct Usage {
    /// Unique blobs of every manifest the listing shows (what storage holds once GC has run).
    pub before_bytes: Option<u64>,
    /// What the registry reports, unreferenced blobs awaiting GC included.
    pub reported_bytes: Option<u64>,
    pub included_bytes: Option<u64>,
    /// Unique blobs of the manifests that remain.
    pub estimated_after_bytes: Option<u64>,
    pub before_percent: Option<f64>,
    pub estimated_after_percent: Option<f64>,
}

#[derive(Debug, Serialize)]
pub struct Failed {
    pub repository: String,
    pub digest: Digest,
    pub tags: Vec<String>,
    pub error: String,
}

#[derive(Debug, Serialize)]
pub struct RecheckKept {
    pub repository: String,
    #[serde(flatten)]
    pub kept: Kept,
}

#[derive(Debug, Default, Serialize)]
pub struct GcReport {
    pub uuid: Option<String>,
    #[serde(rename = "type")]
    pub gc_type: Option<String>,
    pub status: Option<String>,
    /// A GC was already running, so none was started.
    pub already_running: bool,
    pub freed_bytes: Option<u64>,
    /// Why starting or following the GC failed (the deletions before it stand).
    pub error: Option<String>,
}

pub fn percent_of(bytes: Option<u64>, included: Option<u64>) -> Option<f64> {
    match (bytes, included) {
        (Some(bytes), Some(included)) if included > 0 => Some((bytes as f64 * 1000.0 / included as f64).round() / 10.0),
        _ => None,
    }
}

pub use do_core::units::bytes as size;

/// At most this many kept and this many deleted images are listed per repository on stderr;
/// the record has them all.
const LINES_PER_LIST: usize = 12;

/// A repository's plan for people: what stays and why, one line each, cut at `limit` with a
/// count of the rest (the record has them all); what goes, one line per reason naming every tag
/// (never cut: a hidden deletion is the one that surprises), the untagged manifests as a count.
pub fn plan_lines(described: &Described, tally: &Tally, dry_run: bool, limit: usize) -> Vec<String> {
    let plan = described.plan;
    let name = |tags: &[String], digest: &Digest| {
        if tags.is_empty() {
            let text = digest.text();
            text.get(..19).unwrap_or(&text).to_string()
        } else {
            tags.join(" ")
        }
    };
    // Artifacts show under the image they are of, when that image has a line of its own.
    let subjects: BTreeSet<&Digest> = plan.artifacts.iter().map(|a| &a.subject).collect();
    let going: BTreeSet<&Digest> =
        plan.artifacts.iter().filter(|a| matches!(a.fate, Fate::Deleted | Fate::Orphan)).map(|a| &a.digest).collect();
    let images: BTreeSet<&Digest> = plan
        .kept
        .iter()
        .map(|k| &k.digest)
        .chain(plan.deleted.iter().filter(|d| d.artifact.is_none()).map(|d| &d.digest))
        .chain(plan.garbage.iter().filter(|d| !going.contains(d)))
        .filter(|d| subjects.contains(d))
        .collect();
    let attached =
        |a: &&Artifact| images.contains(&a.subject) && (a.fate == Fate::Deleted || a.reason.ends_with("which is kept"));
    let with =
        |digest: &Digest| artifact_counts(plan.artifacts.iter().filter(attached).filter(|a| a.subject == *digest));
    let mut lines = Vec::new();
    for (index, kept) in plan.kept.iter().enumerate() {
        if index == limit {
            lines.push(format!(
                "{}: and {} more kept (--verbose shows them; the prune record lists them)",
                plan.name,
                plan.kept.len() - limit
            ));
            break;
        }
        lines.push(format!(
            "{}: keep {}: {}{}",
            plan.name,
            name(&kept.tags, &kept.digest),
            kept.reason,
            with(&kept.digest)
        ));
    }
    let verb = if dry_run { "would delete" } else { "delete" };
    let mut reasons: Vec<(&str, Vec<String>)> = Vec::new();
    for deletion in plan.deleted.iter().filter(|d| !d.all_tags.is_empty() && d.artifact.is_none()) {
        let what = match deletion.action {
            Action::Manifest => {
                let counts = with(&deletion.digest);
                let counts = counts.strip_prefix(", ").map(|c| format!(" ({c})")).unwrap_or_default();
                format!("{}{counts}", name(&deletion.all_tags, &deletion.digest))
            }
            Action::Tags => format!("{} (the tag only)", deletion.tags.join(" ")),
        };
        match reasons.iter_mut().find(|(reason, _)| *reason == deletion.reason) {
            Some((_, names)) => names.push(what),
            None => reasons.push((&deletion.reason, vec![what])),
        }
    }
    for (reason, names) in reasons {
        lines.push(format!("{}: {verb} {}: {reason}", plan.name, names.join(", ")));
    }
    for artifact in plan.artifacts.iter().filter(|a| !attached(a)) {
        let what = if matches!(artifact.fate, Fate::Deleted | Fate::Orphan) { verb } else { "keep" };
        lines.push(format!("{}: {what} {}: {}", plan.name, name(&artifact.tags, &artifact.digest), artifact.reason));
    }
    if tally.untagged_images > 0 {
        lines.push(format!(
            "{}: {verb} {} untagged manifest(s), {}: nothing kept holds or refers to them",
            plan.name,
            tally.untagged_images,
            size(tally.untagged_image_bytes)
        ));
    }
    lines
}

/// What a plan deletes, counted in one pass over its deletions: the garbage is described from
/// the listing once for the table and the plan's lines together.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Tally {
    tagged: usize,
    untagged: usize,
    /// Bytes of the manifests deleted whole.
    bytes: u64,
    /// Untagged manifests deleted that are not artifacts, and their bytes.
    untagged_images: usize,
    untagged_image_bytes: u64,
}

pub fn tally(described: &Described) -> Tally {
    let mut tally = Tally::default();
    for deletion in described.deletions() {
        match deletion.all_tags.is_empty() {
            true => tally.untagged += 1,
            false => tally.tagged += 1,
        }
        if deletion.action == Action::Manifest {
            tally.bytes += deletion.bytes;
        }
        if deletion.all_tags.is_empty() && deletion.artifact.is_none() {
            tally.untagged_images += 1;
            tally.untagged_image_bytes += deletion.bytes;
        }
    }
    tally
}

/// Why a repository's kept untagged manifests stay: (kind of reason, how many), by repository.
pub type UntaggedWhys = BTreeMap<String, Vec<(&'static str, usize)>>;

/// The kinds of reason an untagged manifest stays for, from the keep closure's reasons.
pub fn untagged_whys<'a>(untagged_kept: impl Iterator<Item = &'a str>) -> Vec<(&'static str, usize)> {
    let mut counts: Vec<(&'static str, usize)> = Vec::new();
    for reason in untagged_kept {
        let kind = if reason.contains(" of index ") {
            "held by a kept index"
        } else if reason.starts_with("refers to ") {
            "referring to a kept image"
        } else if reason.contains("--untagged-grace") {
            "pushed within --untagged-grace (a push may be in progress)"
        } else if reason.contains("cannot be read") {
            "their push time cannot be read"
        } else {
            "needed by an app or named on the input"
        };
        match counts.iter_mut().find(|(k, _)| *k == kind) {
            Some((_, n)) => *n += 1,
            None => counts.push((kind, 1)),
        }
    }
    counts
}

/// `web: keep 3 untagged manifest(s), 2.0 MiB: 2 held by a kept index, 1 pushed within …`.
fn untagged_kept_line(plan: &RepositoryPlan, whys: &[(&str, usize)]) -> Option<String> {
    (plan.untagged_kept.count > 0).then(|| {
        let whys: Vec<String> = whys.iter().map(|(why, n)| format!("{n} {why}")).collect();
        format!(
            "{}: keep {} untagged manifest(s), {}: {}",
            plan.name,
            plan.untagged_kept.count,
            size(plan.untagged_kept.bytes),
            if whys.is_empty() { "the keep closure needs them".to_string() } else { whys.join(", ") }
        )
    })
}

/// `, with 1 signature, 2 attestations` for the artifacts given, or nothing.
fn artifact_counts<'a>(artifacts: impl Iterator<Item = &'a Artifact>) -> String {
    let mut counts: BTreeMap<Kind, usize> = BTreeMap::new();
    for artifact in artifacts {
        *counts.entry(artifact.kind).or_default() += 1;
    }
    counts
        .iter()
        .map(|(kind, n)| format!(", {n} {}{}", kind.noun(), if *n == 1 { "" } else { "s" }))
        .collect::<Vec<_>>()
        .join("")
        .replacen(", ", ", with ", 1)
}

/// A repository's row of the table: kept, deletions of tagged and of untagged manifests, the
/// size of the manifests deleted whole, untagged manifests kept.
fn table_row(plan: &RepositoryPlan, tally: &Tally, width: usize) -> String {
    format!(
        "{:<width$}  {:>6}  {:>12}  {:>8}  {:>12}  {:>14}",
        plan.name,
        plan.kept.len(),
        tally.tagged,
        tally.untagged,
        size(tally.bytes),
        plan.untagged_kept.count
    )
}

/// The plan on stderr: one line per repository, each repository's keeps and deletions with
/// their reasons, then the usage estimate.
pub fn print_table(progress: &Progress, plans: &[Described], usage: &Usage, dry_run: bool, whys: &UntaggedWhys) {
    let width = plans.iter().map(|p| p.plan.name.len()).max().unwrap_or(10).max(10);
    let deleted = if dry_run { "would delete" } else { "deleted" };
    progress.info(&format!(
        "{:<width$}  {:>6}  {:>12}  {:>8}  {:>12}  {:>14}",
        "repository", "kept", deleted, "untagged", "their size", "untagged kept"
    ));
    let tallies: Vec<Tally> = plans.iter().map(tally).collect();
    for (described, tally) in plans.iter().zip(&tallies) {
        let plan = described.plan;
        progress.info(&table_row(plan, tally, width));
        if let Some(why) = &plan.blocked {
            progress.warn(&format!("{}: {why}", plan.name));
        }
    }
    let limit = if progress.verbose() { usize::MAX } else { LINES_PER_LIST };
    for (described, tally) in plans.iter().zip(&tallies) {
        let plan = described.plan;
        for line in plan_lines(described, tally, dry_run, limit) {
            progress.info(&line);
        }
        if let Some(line) = untagged_kept_line(plan, whys.get(&plan.name).map_or(&[], Vec::as_slice)) {
            progress.info(&line);
        }
    }
    if let (Some(before), Some(after)) = (usage.before_bytes, usage.estimated_after_bytes) {
        let of = |p: Option<f64>| p.map(|p| format!(" ({p}% of the included storage)")).unwrap_or_default();
        progress.info(&format!(
            "usage {}{} -> about {}{} after {}GC",
            size(before),
            of(usage.before_percent),
            size(after),
            of(usage.estimated_after_percent),
            if dry_run { "the deletions and " } else { "" }
        ));
    }
}

pub fn github_outputs(record: &PruneRecord) -> anyhow::Result<()> {
    let Some(github) = do_core::github::GitHub::from_env() else { return Ok(()) };
    let planned: usize = record.repositories.iter().map(|r| r.plan.deletion_count()).sum();
    let deleted = if record.dry_run { 0 } else { planned.saturating_sub(record.failed.len()) };
    let freed = match (record.usage.before_bytes, record.usage.estimated_after_bytes) {
        (Some(before), Some(after)) => before.saturating_sub(after),
        _ => 0,
    };
    github.outputs(&[
        ("deleted_count", deleted.to_string()),
        ("planned_count", planned.to_string()),
        ("freed_bytes", freed.to_string()),
        ("dry_run", record.dry_run.to_string()),
        ("gc_uuid", record.gc.as_ref().and_then(|gc| gc.uuid.clone()).unwrap_or_default()),
    ])?;
    let mut summary = format!(
        "### do-prune{}\n\n| repository | kept | deleted | untagged kept | artifacts kept | artifacts deleted |\n|---|---|---|---|---|---|\n",
        if record.dry_run { " (dry run)" } else { "" }
    );
    for plan in record.repositories.iter().map(|r| r.plan) {
        let artifacts_deleted =
            plan.artifacts.iter().filter(|a| matches!(a.fate, Fate::Deleted | Fate::Orphan)).count();
        summary.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} |\n",
            plan.name,
            plan.kept.len(),
            plan.deletion_count(),
            plan.untagged_kept.count,
            plan.artifacts.len() - artifacts_deleted,
            artifacts_deleted
        ));
    }
    if record.dry_run {
        summary
            .push_str(&format!("\nThe plan would free about {} after GC (dry run: nothing was deleted)", size(freed)));
    } else {
        summary.push_str(&format!("\nAbout {} freed after GC", size(freed)));
    }
    if let Some(gc) = &record.gc {
        match (&gc.uuid, &gc.error) {
            (_, Some(error)) => summary.push_str(&format!("; garbage collection failed: {error}")),
            (Some(uuid), None) => {
                summary.push_str(&format!("; garbage collection `{uuid}` {}", gc.status.as_deref().unwrap_or("?")))
            }
            (None, None) => {}
        }
    }
    summary.push('\n');
    github.summary(&summary)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::{Deletion, Kept};
    use do_core::types::Manifest;

    fn deletion(tags: &[&str], action: Action, bytes: u64) -> Deletion {
        Deletion {
            digest: format!("sha256:{}", "d".repeat(64)).into(),
            tags: tags.iter().map(|t| t.to_string()).collect(),
            all_tags: tags.iter().map(|t| t.to_string()).collect(),
            updated_at: None,
            bytes,
            action,
            reason: "kept by no rule".into(),
            artifact: None,
        }
    }

    #[test]
    fn the_plan_for_people_names_each_tag_and_why_and_cuts_long_lists() {
        let plan = RepositoryPlan {
            name: "web".into(),
            kept: (0..4)
                .map(|i| Kept {
                    digest: format!("sha256:{i}").into(),
                    tags: vec![format!("v1.{i}")],
                    reason: format!("reason {i}"),
                })
                .collect(),
            deleted: vec![
                deletion(&["v0.9"], Action::Manifest, 10),
                deletion(&["v0.8", "old"], Action::Manifest, 10),
                deletion(&["v0.7"], Action::Manifest, 10),
                deletion(&["v0.6"], Action::Manifest, 10),
                Deletion { reason: "tags kept by no rule".into(), ..deletion(&["dev"], Action::Tags, 0) },
                deletion(&[], Action::Manifest, 2048),
            ],
            // Garbage is described from the listing: counted and sized with the rest.
            garbage: vec![format!("sha256:{}", "e".repeat(64)).into()],
            // The signature of the garbage goes with it, under it: no line of its own.
            artifacts: vec![Artifact {
                digest: format!("sha256:{}", "5".repeat(64)).into(),
                tags: vec![format!("sha256-{}.sig", "e".repeat(64))],
                kind: crate::artifacts::Kind::Signature,
                subject: format!("sha256:{}", "e".repeat(64)).into(),
                subject_tags: Vec::new(),
                fate: Fate::Deleted,
                reason: "signature of an untagged manifest, which is deleted".into(),
            }],
            ..RepositoryPlan::default()
        };
        let listing = [Manifest {
            digest: format!("sha256:{}", "e".repeat(64)).into(),
            compressed_size_bytes: Some(2048).into(),
            ..Manifest::default()
        }];
        let plan = Described { plan: &plan, listing: &listing };
        let counted = tally(&plan);
        let lines = plan_lines(&plan, &counted, true, 3);
        assert_eq!(
            lines,
            [
                "web: keep v1.0: reason 0",
                "web: keep v1.1: reason 1",
                "web: keep v1.2: reason 2",
                "web: and 1 more kept (--verbose shows them; the prune record lists them)",
                "web: would delete v0.9, v0.8 old, v0.7, v0.6: kept by no rule",
                "web: would delete dev (the tag only): tags kept by no rule",
                "web: would delete 2 untagged manifest(s), 4.0 KiB: nothing kept holds or refers to them",
            ]
        );
        let executed = plan_lines(&plan, &counted, false, 4);
        assert_eq!(executed[4], "web: delete v0.9, v0.8 old, v0.7, v0.6: kept by no rule");
        // The table: 4 kept; 5 deletions of tagged manifests, 2 of untagged; 4 KiB deleted whole.
        let row = format!("{:<10}  {:>6}  {:>12}  {:>8}  {:>12}  {:>14}", "web", 4, 5, 2, "4.0 KiB", 0);
        assert_eq!(table_row(plan.plan, &counted, 10), row);
        // No untagged deletion, no untagged line.
        let tagged_only = RepositoryPlan {
            name: "api".into(),
            deleted: vec![deletion(&["v1"], Action::Manifest, 10)],
            ..RepositoryPlan::default()
        };
        let tagged_only = Described { plan: &tagged_only, listing: &[] };
        let lines = plan_lines(&tagged_only, &tally(&tagged_only), true, 3);
        assert_eq!(lines, ["api: would delete v1: kept by no rule"]);
    }

    #[test]
    fn untagged_manifests_kept_say_why_by_kind_of_reason() {
        let reasons = [
            "the linux/amd64 image of index v2 (sha256:aaaa), which is kept",
            "an attestation of index v2 (sha256:aaaa), which is kept",
            "refers to sha256:bbbb, which is kept",
            "untagged and pushed within --untagged-grace (it may be part of a push in progress)",
            "untagged, and its updated_at cannot be read",
            "deployed by app shop",
        ];
        assert_eq!(
            untagged_whys(reasons.into_iter()),
            [
                ("held by a kept index", 2),
                ("referring to a kept image", 1),
                ("pushed within --untagged-grace (a push may be in progress)", 1),
                ("their push time cannot be read", 1),
                ("needed by an app or named on the input", 1),
            ]
        );
        let plan = RepositoryPlan {
            name: "web".into(),
            untagged_kept: crate::plan::Untagged { count: 3, bytes: 2048 },
            ..RepositoryPlan::default()
        };
        assert_eq!(
            untagged_kept_line(&plan, &[("held by a kept index", 2), ("referring to a kept image", 1)]).as_deref(),
            Some("web: keep 3 untagged manifest(s), 2.0 KiB: 2 held by a kept index, 1 referring to a kept image")
        );
        assert_eq!(untagged_kept_line(&RepositoryPlan::default(), &[]), None);
    }
}
