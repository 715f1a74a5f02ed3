//! Saved plans: what `--plan-out` writes and `--apply` reads, checked on their own before any
//! request (a hand-edited entry that strips a kept tag, say, is refused).

use std::collections::BTreeSet;
use std::io::Write;

use do_core::digest::Digest;
use do_core::{validate, Failure};
use serde::{Deserialize, Serialize};

use crate::plan::RepositoryPlan;
use crate::policy::{self, Action, Policy};
use crate::written::Described;
use crate::{closure, PLAN_VERSION};

/// A plan as `--apply` reads it (`--plan-out` writes the same fields: [`Written`]).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SavedPlan {
    pub version: u64,
    pub registry: String,
    pub created_at: String,
    pub policy: Policy,
    pub repositories: Vec<RepositoryPlan>,
}

pub(crate) fn read_plan(path: &std::path::Path) -> anyhow::Result<SavedPlan> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Failure::usage(format!("cannot read --apply {}: {e}", path.display())))?;
    let plan: SavedPlan = serde_json::from_str(&text)
        .map_err(|e| Failure::usage(format!("--apply {}: not a do-prune plan: {e}", path.display())))?;
    if plan.version != PLAN_VERSION {
        return Err(Failure::usage(format!(
            "--apply {}: plan version {} is not {PLAN_VERSION}; make the plan again with this do-prune",
            path.display(),
            plan.version
        )));
    }
    validate::registry_name(&plan.registry)?;
    for repository in &plan.repositories {
        validate::repository_name(&repository.name)?;
        for deletion in repository.deleted.iter().map(|d| &d.digest).chain(repository.kept.iter().map(|k| &k.digest)) {
            validate::digest(&deletion.text())?;
        }
        for tag in repository.deleted.iter().flat_map(|d| d.tags.iter().chain(d.all_tags.iter())) {
            validate::tag_name(tag)?;
        }
    }
    Ok(plan)
}

/// A saved plan's entries must make sense on their own: an entry that would strip tags the
/// plan keeps, or that could never have come from do-prune, is refused before any request.
pub(crate) fn check_saved_entries(plan: &SavedPlan, keep_patterns: &[regex::Regex]) -> anyhow::Result<()> {
    for repository in &plan.repositories {
        let bad = |digest: &Digest, why: String| {
            Failure::usage(format!(
                "--apply: the entry for {}@{} is inconsistent: {why}; nothing was deleted",
                repository.name,
                closure::short(digest)
            ))
        };
        let kept: BTreeSet<&Digest> = repository.kept.iter().map(|k| &k.digest).collect();
        let mut seen = BTreeSet::new();
        for entry in &repository.deleted {
            if !seen.insert((&entry.digest, entry.action)) {
                return Err(bad(&entry.digest, "it is listed twice".into()));
            }
            if let Some(stray) = entry.tags.iter().find(|t| !entry.all_tags.contains(t)) {
                return Err(bad(&entry.digest, format!("it deletes tag {stray}, which the manifest did not have")));
            }
            if let Some(kept_tag) = entry.tags.iter().find(|t| policy::kept_tag_reason(t, keep_patterns).is_some()) {
                return Err(bad(&entry.digest, format!("it deletes tag {kept_tag}, which the plan's policy keeps")));
            }
            match entry.action {
                Action::Manifest if entry.tags != entry.all_tags => {
                    return Err(bad(
                        &entry.digest,
                        "a whole-manifest deletion must list every tag the manifest had".into(),
                    ));
                }
                Action::Manifest if kept.contains(&entry.digest) => {
                    return Err(bad(&entry.digest, "the plan also keeps it".into()));
                }
                Action::Tags if entry.tags.is_empty() || entry.tags.len() >= entry.all_tags.len() => {
                    return Err(bad(&entry.digest, "a tag deletion must leave the manifest at least one tag".into()));
                }
                _ => {}
            }
        }
    }
    Ok(())
}

/// A plan as `--plan-out` writes it: [`SavedPlan`]'s fields, each repository's garbage
/// described from its listing.
#[derive(Serialize)]
struct Written<'a> {
    version: u64,
    registry: &'a str,
    created_at: String,
    policy: &'a Policy,
    repositories: &'a [Described<'a>],
}

/// Writes the plan `--plan-out` asks for (secrets redacted, though a plan holds none).
pub(crate) fn write_plan(ctx: &crate::Ctx, path: &std::path::Path, repositories: &[Described]) -> anyhow::Result<()> {
    let saved = Written {
        version: PLAN_VERSION,
        registry: &ctx.registry,
        created_at: do_core::duration::now_rfc3339(),
        policy: &ctx.settings.policy,
        repositories,
    };
    // Written as it is made, redacted as it passes: a plan of 100,000 deletions is never held
    // whole as text.
    let written = std::fs::File::create(path)
        .and_then(|file| do_core::redact::write_json(std::io::BufWriter::new(file), &saved, true))
        .and_then(|mut out| out.write_all(b"\n").and_then(|()| out.flush()));
    written.map_err(|e| anyhow::anyhow!("cannot write --plan-out {}: {e}", path.display()))?;
    ctx.progress.info(&format!("plan saved to {}", path.display()));
    Ok(())
}
