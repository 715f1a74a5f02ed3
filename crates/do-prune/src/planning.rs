//! The registry's plan: every selected repository planned (`plan::plan_repository`), trimmed to
//! `--target-usage` when asked, and the GC type decided (an untagged type only when nothing in
//! the whole registry needs an untagged manifest), again after the deletions.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use do_core::digest::Digest;
use do_core::types::{GcType, Manifest, Registry, Subscription};
use do_core::Failure;

use crate::plan::{self, Planned, RepositoryPlan, Rules};
use crate::policy::{self, Action};
use crate::protect::{self, SpecImage};
use crate::reads::{AllReads, Reader, Reads};
use crate::report::{self, Usage};
use crate::{artifacts, closure, usage, Ctx, GcMode};

pub(crate) fn protected(ctx: &Ctx, images: &[SpecImage], name: &str, listing: &[Manifest]) -> policy::Protected {
    protect::resolve(&ctx.settings.references, &ctx.settings.record_tags, images, &ctx.registry, name, listing)
}

pub(crate) fn rules<'b>(ctx: &'b Ctx, name: &str, limit: Option<&'b BTreeSet<Digest>>) -> Rules<'b> {
    match &ctx.settings.saved {
        Some(saved) => Rules::Saved {
            entries: saved
                .repositories
                .iter()
                .find(|r| r.name == name)
                .expect("saved repositories are the selected ones"),
            policy: &ctx.settings.policy,
        },
        None => Rules::Policy {
            policy: &ctx.settings.policy,
            patterns: &ctx.settings.patterns,
            now: ctx.settings.now,
            limit,
        },
    }
}

/// Plans one repository; `listings` are every repository's, to tell an artifact whose
/// subject lives in another repository from an orphan.
pub(crate) fn plan_one(
    ctx: &Ctx,
    name: &str,
    listing: &[Manifest],
    listings: &BTreeMap<String, Vec<Manifest>>,
    images: &[SpecImage],
    (reader, reads): (&Reader, &mut Reads),
    limit: Option<&BTreeSet<Digest>>,
) -> anyhow::Result<Planned> {
    let protected = protected(ctx, images, name, listing);
    let elsewhere = |digest: &Digest| {
        listings
            .iter()
            .find(|(other, manifests)| *other != name && manifests.iter().any(|m| m.digest == *digest))
            .map(|(other, _)| other.clone())
    };
    let setting = plan::Setting {
        grace_cutoff: ctx.settings.grace_cutoff,
        keep_artifacts: ctx.settings.keep_artifacts,
        elsewhere: &elsewhere,
    };
    plan::plan_repository(name, listing, &protected, &rules(ctx, name, limit), &setting, reader, reads)
}

pub(crate) fn plan_all(
    ctx: &Ctx,
    selected: &[String],
    listings: &BTreeMap<String, Vec<Manifest>>,
    images: &[SpecImage],
    (reader, reads): (&Reader, &mut AllReads),
    limit: Option<&BTreeSet<Digest>>,
) -> anyhow::Result<Vec<Planned>> {
    // Repositories are planned side by side, each with what was learnt of it; `reader` keeps
    // the manifest reads of all of them within --concurrency.
    let empty = Vec::new();
    let mut each: Vec<(&String, Reads)> =
        selected.iter().map(|name| (name, reads.remove(name).unwrap_or_default())).collect();
    let planned =
        do_core::concurrent::try_map_mut(&mut each, usize::from(ctx.settings.concurrency), |(name, known)| {
            plan_one(ctx, name, listings.get(*name).unwrap_or(&empty), listings, images, (reader, known), limit)
        });
    reads.extend(each.into_iter().map(|(name, known)| (name.clone(), known)));
    planned
}

/// The included storage, from the subscription. Without it, --target-usage cannot work and is
/// a usage error.
pub(crate) fn included_storage(ctx: &Ctx, registry: &Registry) -> anyhow::Result<Option<u64>> {
    let included_of = |s: &Subscription| s.tier.as_ref().and_then(|t| t.included_storage_bytes);
    let mut included = registry.subscription.as_ref().and_then(included_of);
    if included.is_none() && ctx.settings.target_usage.is_some() {
        let subscription: Option<Subscription> =
            ctx.client.get_object_or_none("/v2/registries/subscription", "subscription")?;
        included = subscription.as_ref().and_then(included_of);
    }
    if ctx.settings.target_usage.is_some() && included.is_none() {
        return Err(Failure::usage(
            "--target-usage needs the subscription's included storage, which the API did not give; nothing was deleted",
        ));
    }
    Ok(included)
}

/// Usage before, from the listing, and after the plans' deletions and a GC.
pub(crate) fn usage(
    registry: &Registry,
    included: Option<u64>,
    listings: &BTreeMap<String, Vec<Manifest>>,
    plans: &[RepositoryPlan],
) -> Usage {
    let before = usage::unique_blob_bytes(listings.values().flatten());
    // Each repository's whole deletions, hashed: looked up once for every manifest listed.
    let gone: BTreeMap<&str, HashSet<&Digest>> = plans
        .iter()
        .map(|plan| {
            let whole = plan.deletion_keys().filter(|(_, action, _)| *action == Action::Manifest);
            (plan.name.as_str(), whole.map(|(digest, _, _)| digest).collect())
        })
        .collect();
    let after = usage::unique_blob_bytes(listings.iter().flat_map(|(name, manifests)| {
        let gone = gone.get(name.as_str());
        manifests.iter().filter(move |m| !gone.is_some_and(|gone| gone.contains(&m.digest)))
    }));
    Usage {
        before_bytes: Some(before),
        reported_bytes: registry.storage_usage_bytes,
        included_bytes: included,
        estimated_after_bytes: Some(after),
        before_percent: report::percent_of(Some(before), included),
        estimated_after_percent: report::percent_of(Some(after), included),
    }
}

/// The tagged manifests to delete whole for --target-usage: oldest first, across
/// repositories, only as many as bring the estimated usage to the target.
pub(crate) fn trim_to_target(
    ctx: &Ctx,
    planned: &[Planned],
    listings: &BTreeMap<String, Vec<Manifest>>,
    (reader, reads): (&Reader, &mut AllReads),
    target: u64,
) -> anyhow::Result<BTreeSet<Digest>> {
    let mut candidates: Vec<(i64, &str, &Digest)> = planned
        .iter()
        .flat_map(|p| {
            p.plan
                .deleted
                .iter()
                .filter(|d| d.action == Action::Manifest && !d.all_tags.is_empty() && d.artifact.is_none())
                .map(move |d| {
                    (
                        d.updated_at
                            .as_deref()
                            .and_then(do_core::duration::parse_timestamp)
                            .map(|t| t.as_second())
                            .unwrap_or(i64::MAX),
                        p.plan.name.as_str(),
                        &d.digest,
                    )
                })
        })
        .collect();
    candidates.sort();
    // Learn what every candidate holds, as if all were kept.
    for planned in planned {
        let mut roots = planned.roots.clone();
        for (_, _, digest) in candidates.iter().filter(|(_, name, _)| *name == planned.plan.name) {
            roots.entry((*digest).clone()).or_insert_with(String::new);
        }
        if let Some(listing) = listings.get(&planned.plan.name) {
            let known = reads.entry(planned.plan.name.clone()).or_default();
            reader.closure(known, &planned.plan.name, listing, &roots, &planned.tag_artifacts)?;
        }
    }
    let nothing_read = Reads::default();
    let usage_after = |k: usize| {
        let going: BTreeSet<(&str, &Digest)> =
            candidates[..k].iter().map(|(_, name, digest)| (*name, *digest)).collect();
        let mut gone: BTreeSet<(String, Digest)> = BTreeSet::new();
        for planned in planned {
            let name = planned.plan.name.as_str();
            let Some(listing) = listings.get(name) else { continue };
            let mut roots = planned.roots.clone();
            for (_, _, digest) in candidates[k..].iter().filter(|(_, n, _)| *n == name) {
                roots.entry((*digest).clone()).or_insert_with(String::new);
            }
            let closure =
                reader.closure_now(reads.get(name).unwrap_or(&nothing_read), listing, &roots, &planned.tag_artifacts);
            gone.extend(closure.untagged_outside(listing).map(|m| (name.to_string(), m.digest.clone())));
        }
        usage::unique_blob_bytes(listings.iter().flat_map(|(name, manifests)| {
            let gone = &gone;
            let going = &going;
            manifests.iter().filter(move |m| {
                !going.contains(&(name.as_str(), &m.digest)) && !gone.contains(&(name.clone(), m.digest.clone()))
            })
        }))
    };
    let k = usage::deletions_for_target(candidates.len(), target, usage_after);
    if usage_after(k) > target {
        ctx.progress.warn("--target-usage cannot be reached with what the rules allow to delete; deleting all of that");
    }
    Ok(candidates[..k].iter().map(|(_, _, digest)| (*digest).clone()).collect())
}

/// The GC type: "unreferenced blobs only" unless the user asked for an untagged type, which
/// is allowed only when no repository of the registry needs an untagged manifest.
pub(crate) fn gc_type(
    ctx: &Ctx,
    planned: &[Planned],
    selected: &[String],
    listings: &BTreeMap<String, Vec<Manifest>>,
    images: &[SpecImage],
    (reader, reads): (&Reader, &mut AllReads),
) -> anyhow::Result<String> {
    let requested = ctx.settings.gc_type.clone();
    if ctx.settings.gc == GcMode::Off || GcType::from(requested.as_str()) == GcType::UnreferencedBlobsOnly {
        return Ok(requested);
    }
    // Repositories not pruned keep everything: their closure is that of every tagged manifest.
    let mut others = Vec::new();
    for (name, listing) in listings.iter().filter(|(name, _)| !selected.contains(name)) {
        let known = reads.entry(name.clone()).or_default();
        others.push((name.as_str(), everything_kept(ctx, name, listing, images, (reader, known))?, listing.as_slice()));
    }
    let empty = Vec::new();
    let mut all: Vec<(&str, &closure::Closure, &[Manifest])> = planned
        .iter()
        .map(|p| (p.plan.name.as_str(), &p.closure, listings.get(&p.plan.name).unwrap_or(&empty).as_slice()))
        .collect();
    all.extend(others.iter().map(|(name, closure, listing)| (*name, closure, *listing)));
    match untagged_gc_refusal(&all) {
        None => Ok(requested),
        Some(why) => Err(Failure::usage(format!(
            "refusing --gc-type {requested:?}: {why}; nothing was deleted (the default \"unreferenced blobs only\" is safe, and do-prune deletes unneeded untagged manifests itself)"
        ))),
    }
}

/// The closure of a repository if nothing in it were deleted: every tagged manifest, what
/// `images` protect, and untagged ones within the grace period.
pub(crate) fn everything_kept(
    ctx: &Ctx,
    name: &str,
    listing: &[Manifest],
    images: &[SpecImage],
    (reader, reads): (&Reader, &mut Reads),
) -> anyhow::Result<closure::Closure> {
    let protected = protected(ctx, images, name, listing);
    let mut roots: BTreeMap<Digest, String> =
        listing.iter().filter(|m| !m.tags.is_empty()).map(|m| (m.digest.clone(), "tagged".to_string())).collect();
    roots.extend(protected.digests);
    for manifest in listing
        .iter()
        .filter(|m| m.tags.is_empty() && policy::epoch(m).is_none_or(|at| at >= ctx.settings.grace_cutoff))
    {
        roots.insert(manifest.digest.clone(), "untagged and pushed within --untagged-grace".into());
    }
    reader.closure(reads, name, listing, &roots, &artifacts::by_tags(listing))
}

/// The GC type decided again, after the deletions, over the registry as it is now and what
/// the apps need now (read again right before deleting): an untagged type that became unsafe
/// since the plan (an app now runs an untagged manifest) gives way to "unreferenced blobs
/// only", said on stderr. Only an untagged type costs the listing again.
pub(crate) fn gc_type_now(
    ctx: &Ctx,
    decided: &str,
    images: &[SpecImage],
    (reader, reads): (&Reader, &mut AllReads),
) -> anyhow::Result<String> {
    if GcType::from(decided) == GcType::UnreferencedBlobsOnly {
        return Ok(decided.to_string());
    }
    let listings = crate::listing::list_everything(ctx)?;
    let mut all = Vec::new();
    for (name, listing) in &listings {
        let known = reads.entry(name.clone()).or_default();
        all.push((name.as_str(), everything_kept(ctx, name, listing, images, (reader, known))?, listing.as_slice()));
    }
    let closures: Vec<(&str, &closure::Closure, &[Manifest])> = all.iter().map(|(n, c, l)| (*n, c, *l)).collect();
    Ok(match untagged_gc_refusal(&closures) {
        None => decided.to_string(),
        Some(why) => {
            let safe = "unreferenced blobs only";
            ctx.progress.warn(&format!(
                "not starting a GC of type {decided:?} after all: {why} (it changed since the plan); starting {safe:?} instead"
            ));
            safe.to_string()
        }
    })
}

/// Whether a GC of `gc_type` is safe: an untagged type only when no repository's closure holds
/// an untagged manifest, every read succeeded and the listing shows index children; else why not.
fn untagged_gc_refusal(closures: &[(&str, &closure::Closure, &[Manifest])]) -> Option<String> {
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
