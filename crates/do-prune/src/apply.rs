//! Carrying a plan out. The world may have changed since it was read, so right before deleting:
//! wait until no GC runs (the registry is read-only during one), read the apps again (a
//! deployment may have started while a large registry was listed), and, per repository, list it
//! again and plan it again; only what both plans delete is deleted, and anything newly needed
//! is kept and reported. Deletions go tags first, then untagged garbage, each index before what
//! it holds; none starts after the deadline. Then GC starts with the decided type.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use do_core::api::{has_status, is_ambiguous, segment};
use do_core::digest::Digest;
use do_core::poll::{Check, Poller};
use do_core::types::{GarbageCollection, GcStatus, Manifest};
use do_core::{Client, Exit, Failure};
use serde_json::json;

use crate::plan::RepositoryPlan;
use crate::policy::{Action, Deletion, Kept};
use crate::reads::{AllReads, Reader, Reads};
use crate::report::{size, Failed, GcReport, PruneRecord, RecheckKept};
use crate::written::NO_TAGS;
use crate::{closure, protect, Ctx, GcMode};

/// The GC running on `registry`, if one is.
pub fn active_gc(client: &Client, registry: &str) -> anyhow::Result<Option<GarbageCollection>> {
    client.get_object_or_none(&format!("/v2/registries/{}/garbage-collection", segment(registry)), "garbage_collection")
}

pub(crate) fn apply(
    ctx: &Ctx,
    planned: &mut [RepositoryPlan],
    listings: &BTreeMap<String, Vec<Manifest>>,
    (reader, reads): (&Reader, &mut AllReads),
    limit: Option<&BTreeSet<Digest>>,
    gc_type: &str,
    record: &mut PruneRecord,
) -> anyhow::Result<Exit> {
    let images = match wait_for_gc(ctx).and_then(|()| {
        protect::from_apps(ctx.client, &ctx.registry, &ctx.settings.protect_app, ctx.settings.keep_rollback)
    }) {
        Ok(images) => images,
        Err(error) => return Err(not_attempted(planned, error, record)),
    };
    let mut deleted = 0;
    for index in 0..planned.len() {
        if planned[index].deletion_count() == 0 {
            continue;
        }
        let name = planned[index].name.clone();
        let known = reads.entry(name.clone()).or_default();
        let again = crate::listing::list_repository(ctx, &name).and_then(|listing| {
            if listings.get(&name).is_none_or(|before| tagged(before) != tagged(&listing)) {
                ctx.progress.info(&format!("{name} changed since it was listed; planning it again"));
            }
            crate::planning::plan_one(ctx, &name, &listing, listings, &images, (reader, &mut *known), limit)
        });
        let again = match again {
            Ok(again) => again,
            Err(error) => return Err(not_attempted(&mut planned[index..], error, record)),
        };
        recheck(ctx, &mut planned[index], &again, record);
        let failed = delete(ctx, &name, &planned[index], known);
        deleted += planned[index].deletion_count() - failed.len();
        record.failed.extend(failed);
    }
    if record.failed.iter().any(|f| f.error == DEADLINE_PASSED) {
        return Err(Failure::deadline(
            "the deadline (--timeout) passed before every deletion was made; the record lists what was not",
        ));
    }
    if ctx.settings.gc == GcMode::Off {
        return Ok(Exit::Done);
    }
    let awaiting_gc = match (record.usage.reported_bytes, record.usage.before_bytes) {
        (Some(reported), Some(listed)) => reported > listed + (listed / 100).max(1024 * 1024),
        _ => false,
    };
    if deleted == 0 && !awaiting_gc {
        ctx.progress.info("nothing was deleted and nothing awaits a garbage collection; none started");
        return Ok(Exit::Done);
    }
    // Decided again after the last read of the apps: what they need may have changed.
    let gc_type = &crate::planning::gc_type_now(ctx, gc_type, &images, (reader, reads))?;
    start_gc(ctx, gc_type, record)
}

/// The plan's deletions of a repository against its plan made again right before deleting:
/// what the new plan no longer deletes is kept (and said), the rest goes in the new plan's order
/// (tagged first, then untagged garbage with each index before its children).
fn recheck(ctx: &Ctx, planned: &mut RepositoryPlan, again: &crate::plan::Planned, record: &mut PruneRecord) {
    let name = planned.name.clone();
    // Where each deletion comes in the new plan; the garbage's keys hold no tags to copy.
    let order: HashMap<Key, usize> = again.plan.deletion_keys().map(key).enumerate().map(|(i, k)| (k, i)).collect();
    let position =
        |(digest, action, tags): (&Digest, Action, &[String])| order.get(&key((digest, action, tags))).copied();
    let (mut going, staying): (Vec<Deletion>, Vec<Deletion>) =
        planned.deleted.drain(..).partition(|d| position((&d.digest, d.action, &d.tags)).is_some());
    going.sort_by_cached_key(|d| position((&d.digest, d.action, &d.tags)));
    let mut staying_garbage = Vec::new();
    planned.garbage.retain(|digest| {
        let still = position((digest, Action::Manifest, NO_TAGS)).is_some();
        if !still {
            staying_garbage.push(digest.clone());
        }
        still
    });
    planned.garbage.sort_by_cached_key(|digest| position((digest, Action::Manifest, NO_TAGS)));
    let staying = staying.iter().map(|d| (&d.digest, d.all_tags.as_slice()));
    for (digest, tags) in staying.chain(staying_garbage.iter().map(|digest| (digest, NO_TAGS))) {
        let reason = again
            .plan
            .kept
            .iter()
            .find(|k| k.digest == *digest)
            .map(|k| k.reason.clone())
            .or_else(|| again.closure.kept.get(digest).cloned())
            .or_else(|| again.skipped.iter().find(|s| s.digest == *digest).map(|s| s.reason.clone()))
            .unwrap_or_else(|| "changed since the plan".to_string());
        let kept = Kept {
            digest: digest.clone(),
            tags: tags.to_vec(),
            reason: format!("kept at the re-check before deleting: {reason}"),
        };
        ctx.progress.warn(&format!("{name} {}: {}", closure::short(&kept.digest), kept.reason));
        record.kept_at_recheck.push(RecheckKept { repository: name.clone(), kept: kept.clone() });
        planned.kept.push(kept);
    }
    planned.deleted = going;
}

/// Starts the GC and records how it went: a failure to start is told and is exit 1 (the
/// deletions stand); at the deadline, exit 3.
fn start_gc(ctx: &Ctx, gc_type: &str, record: &mut PruneRecord) -> anyhow::Result<Exit> {
    match garbage_collect(ctx, gc_type) {
        Ok((report, exit)) => {
            record.gc = Some(report);
            Ok(exit)
        }
        Err(error) => {
            let deadline = do_core::exit::exit_code_of(&error) == Exit::Deadline;
            if !deadline {
                ctx.progress.warn(&format!("garbage collection: {error:#}"));
            }
            record.gc = Some(GcReport {
                gc_type: Some(gc_type.to_string()),
                error: Some(format!("{error:#}")),
                ..GcReport::default()
            });
            if deadline {
                Err(error)
            } else {
                Ok(Exit::Failed)
            }
        }
    }
}

/// Waits until no GC runs, within the deadline; at the deadline nothing was deleted (exit 3).
fn wait_for_gc(ctx: &Ctx) -> anyhow::Result<()> {
    let Some(running) = active_gc(ctx.client, &ctx.registry)? else { return Ok(()) };
    ctx.progress.info(&format!(
        "garbage collection {} is running ({}); the registry is read-only until it ends, so waiting before deleting",
        running.uuid, running.status
    ));
    let poller =
        Poller { interval: ctx.settings.interval, max_interval: ctx.settings.max_interval, deadline: ctx.deadline };
    let polled = poller.run(ctx.progress, || match active_gc(ctx.client, &ctx.registry)? {
        Some(gc) => Ok(Check::Waiting(format!("garbage collection {} is {}", gc.uuid, gc.status))),
        None => Ok(Check::Done(())),
    })?;
    match polled.outcome {
        Some(()) => Ok(()),
        None => Err(Failure::deadline(format!(
            "garbage collection {} still runs at the deadline; nothing was deleted (rerun later or raise --timeout)",
            running.uuid
        ))),
    }
}

/// Deletes one repository's deletions in waves, several at once within a wave; a failure
/// does not stop the others, and a 404 means it is already gone.
fn delete(ctx: &Ctx, repository: &str, plan: &RepositoryPlan, reads: &Reads) -> Vec<Failed> {
    let base = format!("{}/repositories/{}", ctx.registry_path, segment(repository));
    let whole = |digest: &Digest| format!("{base}/digests/{}", segment(&digest.text()));
    // Releases' tags first, then the tagged artifacts (signatures) of what went.
    let (mut tagged_wave, mut artifact_wave) = (Vec::new(), Vec::new());
    for deletion in plan.deleted.iter().filter(|d| !d.all_tags.is_empty()) {
        let wave = if deletion.artifact.is_some() { &mut artifact_wave } else { &mut tagged_wave };
        match deletion.action {
            Action::Manifest => wave.push((&deletion.digest, deletion.tags.as_slice(), whole(&deletion.digest))),
            Action::Tags => {
                for tag in &deletion.tags {
                    wave.push((&deletion.digest, deletion.tags.as_slice(), format!("{base}/tags/{}", segment(tag))));
                }
            }
        }
    }
    // Untagged deletions (a saved plan's entries, the garbage) have no tags of their own.
    let untagged: Vec<&Digest> =
        plan.deleted.iter().filter(|d| d.all_tags.is_empty()).map(|d| &d.digest).chain(&plan.garbage).collect();
    let untagged_waves = closure::waves(&untagged, &reads.read);
    let mut waves = vec![tagged_wave, artifact_wave];
    for wave in &untagged_waves {
        waves.push(wave.iter().map(|digest| (digest, NO_TAGS, whole(digest))).collect());
    }
    let total: usize = waves.iter().map(Vec::len).sum();
    let done = AtomicUsize::new(0);
    let mut failed = Vec::new();
    for wave in waves.into_iter().filter(|w| !w.is_empty()) {
        let outcomes =
            do_core::concurrent::try_map(&wave, usize::from(ctx.settings.concurrency), |(digest, tags, path)| {
                let outcome = if Instant::now() >= ctx.deadline {
                    Err(DEADLINE_PASSED.to_string())
                } else {
                    match ctx.client.delete(path) {
                        Ok(()) => Ok(()),
                        Err(error) if has_status(&error, 404) => {
                            ctx.progress.debug(&format!("{path}: already gone"));
                            Ok(())
                        }
                        Err(error) => Err(format!("{error:#}")),
                    }
                };
                let count = done.fetch_add(1, Ordering::Relaxed) + 1;
                // Every tenth part, so CI logs get about ten lines however many deletions there are.
                if count.is_multiple_of((total / 10).max(1)) || count == total {
                    ctx.progress.status(&format!("deleting in {repository}: {count}/{total}"));
                }
                Ok::<_, std::convert::Infallible>(outcome.err().map(|error| Failed {
                    repository: repository.to_string(),
                    digest: (*digest).clone(),
                    tags: tags.to_vec(),
                    error,
                }))
            });
        failed.extend(outcomes.unwrap_or_else(|never| match never {}).into_iter().flatten());
    }
    ctx.progress.finish();
    // A manifest with several tag deletions counts once (its tags are next to each other:
    // outcomes come back in the wave's order).
    failed.dedup_by(|a, b| a.digest == b.digest && a.error == b.error);
    ctx.progress.info(&format!(
        "{repository}: {} of {} deletions done{}",
        plan.deletion_count() - failed.len(),
        plan.deletion_count(),
        if failed.is_empty() { String::new() } else { format!(", {} failed", failed.len()) }
    ));
    for failure in &failed {
        ctx.progress.warn(&format!("could not delete {}@{}: {}", failure.repository, failure.digest, failure.error));
    }
    failed
}

/// Starts GC with an explicit type through `/v2/registries/{r}/garbage-collection`, or
/// reports the one already running; waits for it with `--gc wait`.
fn garbage_collect(ctx: &Ctx, gc_type: &str) -> anyhow::Result<(GcReport, Exit)> {
    if Instant::now() >= ctx.deadline {
        return Err(Failure::deadline("the deadline (--timeout) passed before garbage collection could start"));
    }
    let path = format!("{}/garbage-collection", ctx.registry_path);
    let report = |gc: &GarbageCollection, gc_type: Option<&str>, already_running: bool| GcReport {
        uuid: Some(gc.uuid.clone()),
        gc_type: gc_type.map(str::to_string),
        status: Some(gc.status.to_string()),
        already_running,
        freed_bytes: gc.freed_bytes,
        error: None,
    };
    let started =
        match ctx.client.post_create::<GarbageCollection>(&path, Some(&json!({"type": gc_type})), "garbage_collection")
        {
            Ok(gc) => {
                ctx.progress.info(&format!("garbage collection {} started (type: {gc_type})", gc.uuid));
                report(&gc, Some(gc_type), false)
            }
            Err(error) if is_ambiguous(&error) || has_status(&error, 409) => {
                // Lost, or refused as one is already active: look before anything else.
                match active_gc(ctx.client, &ctx.registry)? {
                    Some(gc) if has_status(&error, 409) => {
                        ctx.progress.info(&format!(
                            "garbage collection {} is already running ({}); not starting another",
                            gc.uuid, gc.status
                        ));
                        report(&gc, None, true)
                    }
                    Some(gc) => report(&gc, Some(gc_type), false),
                    None => return Err(error.context("could not start garbage collection")),
                }
            }
            Err(error) => return Err(error.context("could not start garbage collection")),
        };
    if ctx.settings.gc != GcMode::Wait {
        ctx.progress.info(
            "the registry is read-only until the garbage collection ends (a push fails meanwhile); do-gc-wait waits for it",
        );
        return Ok((started, Exit::Done));
    }
    let uuid = started.uuid.clone().unwrap_or_default();
    let poller =
        Poller { interval: ctx.settings.interval, max_interval: ctx.settings.max_interval, deadline: ctx.deadline };
    let list_path = format!("{}/garbage-collections?page=1&per_page=20", ctx.registry_path);
    let polled = poller.run(ctx.progress, || match active_gc(ctx.client, &ctx.registry)? {
        Some(gc) if gc.uuid == uuid && !gc.status.is_terminal() => {
            Ok(Check::Waiting(format!("garbage collection {uuid} is {}", gc.status)))
        }
        _ => {
            let recent: Vec<GarbageCollection> = ctx.client.get_object(&list_path, "garbage_collections")?;
            Ok(Check::Done(recent.into_iter().find(|gc| gc.uuid == uuid)))
        }
    })?;
    let mut finished = started;
    match polled.outcome {
        None => Ok((finished, Exit::Deadline)),
        Some(ended) => {
            if let Some(ended) = ended {
                finished.status = Some(ended.status.to_string());
                finished.freed_bytes = ended.freed_bytes;
            }
            ctx.progress.info(&format!(
                "garbage collection {uuid} ended {}{}",
                finished.status.as_deref().unwrap_or("?"),
                finished.freed_bytes.map(|b| format!(", freed {}", size(b))).unwrap_or_default()
            ));
            let failed = finished.status.as_deref().map(GcStatus::from) == Some(GcStatus::Failed);
            Ok((finished, if failed { Exit::RemoteFailed } else { Exit::Done }))
        }
    }
}

const DEADLINE_PASSED: &str = "not attempted: the deadline (--timeout) passed";

/// Lists every deletion of `planned` as failed, not attempted, for `error`, which it returns:
/// the record then says exactly what was deleted (planned minus failed).
fn not_attempted(planned: &mut [RepositoryPlan], error: anyhow::Error, record: &mut PruneRecord) -> anyhow::Error {
    let why = format!("not attempted: {error:#}");
    for planned in planned.iter() {
        for (digest, _, tags) in planned.deletion_keys() {
            record.failed.push(Failed {
                repository: planned.name.clone(),
                digest: digest.clone(),
                tags: tags.to_vec(),
                error: why.clone(),
            });
        }
    }
    error
}

/// A deletion as the re-check matches it: digest, action, tags in order.
type Key<'a> = (&'a Digest, Action, Vec<&'a str>);

fn key<'a>((digest, action, tags): (&'a Digest, Action, &'a [String])) -> Key<'a> {
    let mut tags: Vec<&str> = tags.iter().map(String::as_str).collect();
    tags.sort_unstable();
    (digest, action, tags)
}

/// The tagged manifests of a listing: digest -> tags.
fn tagged(listing: &[Manifest]) -> BTreeMap<&Digest, BTreeSet<&str>> {
    listing
        .iter()
        .filter(|m| !m.tags.is_empty())
        .map(|m| (&m.digest, m.tags.iter().map(String::as_str).collect()))
        .collect()
}
