//! do-prune: delete registry images a retention policy no longer keeps, never those a
//! deployment needs, then start garbage collection with an explicit type.

mod cli;
pub mod policy;
mod protect;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;
use std::time::Instant;

use anyhow::Context;
use clap::Parser;
use do_core::api::{has_status, segment};
use do_core::contract::Output;
use do_core::poll::{Check, Poller};
use do_core::progress::Progress;
use do_core::types::{GarbageCollection, GcStatus, Manifest, Registry, Repository};
use do_core::{validate, Client, Exit, Failure};
use serde::{Deserialize, Serialize};
use serde_json::json;

pub use cli::{Cli, GcMode};
use policy::{Action, Deletion, Kept, Policy, Protected, RepositoryPlan};

const TOOL: &str = "do-prune";
const PLAN_VERSION: u64 = 1;

/// A plan as `--plan-out` saves it and `--apply` reads it.
#[derive(Debug, Serialize, Deserialize)]
pub struct SavedPlan {
    pub version: u64,
    pub registry: String,
    pub created_at: String,
    pub policy: Policy,
    pub repositories: Vec<RepositoryPlan>,
}

/// The `prune` record, v1.
#[derive(Debug, Serialize)]
pub struct PruneRecord {
    pub registry: String,
    pub dry_run: bool,
    pub policy: Policy,
    pub usage: Usage,
    pub repositories: Vec<RepositoryPlan>,
    pub failed: Vec<Failed>,
    /// Saved-plan entries not applied, and why.
    pub skipped: Vec<Skipped>,
    pub gc: Option<GcReport>,
    /// HTTP requests this run made, retries included.
    pub requests: u64,
}

#[derive(Debug, Default, Serialize)]
pub struct Usage {
    pub before_bytes: Option<u64>,
    pub included_bytes: Option<u64>,
    pub estimated_after_bytes: Option<u64>,
    pub before_percent: Option<f64>,
    pub estimated_after_percent: Option<f64>,
}

#[derive(Debug, Serialize)]
pub struct Failed {
    pub repository: String,
    pub digest: String,
    pub tags: Vec<String>,
    pub error: String,
}

#[derive(Debug, Serialize)]
pub struct Skipped {
    pub repository: String,
    pub digest: String,
    pub reason: String,
}

#[derive(Debug, Serialize)]
pub struct GcReport {
    pub uuid: String,
    #[serde(rename = "type")]
    pub gc_type: Option<String>,
    pub status: String,
    /// A GC was already running, so none was started.
    pub already_running: bool,
    pub freed_bytes: Option<u64>,
}

pub fn main() -> i32 {
    do_core::exit::run_main(TOOL, || run(Cli::parse()))
}

pub fn run(cli: Cli) -> anyhow::Result<Exit> {
    let input = cli.io.read_input()?;
    if let Some(registry) = &cli.registry {
        validate::registry_name(registry)?;
    }
    for repository in &cli.repository {
        validate::repository_name(repository)?;
    }
    for app in &cli.protect_app {
        if app.is_empty() || app.len() > 64 || !app.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
            return Err(Failure::usage(format!("invalid --protect-app {}", validate::shown(app))));
        }
    }
    let patterns = policy::compile_keep_tags(&cli.keep_tag).map_err(Failure::usage)?;
    let saved = cli.apply.as_ref().map(|path| read_plan(path)).transpose()?;
    let policy = match &saved {
        Some(saved) => saved.policy.clone(),
        None => Policy {
            keep_tags: cli.keep_tag.clone(),
            keep_last: cli.keep_last,
            keep_within_seconds: cli.keep_within.map(|d| d.as_secs()),
            allow_empty: cli.allow_empty,
        },
    };
    let progress = cli.io.progress(TOOL);
    let client = cli.api.client(progress.clone())?;
    let deadline = Instant::now() + cli.timeout;
    client.set_deadline(deadline);
    let mut output = Output::stdout();
    output.pass_through(&input)?;

    let registries: Vec<Registry> = client.get_object("/v2/registries", "registries")?;
    let registry = do_core::registry::choose(
        &registries,
        cli.registry.as_deref().or(saved.as_ref().map(|s| s.registry.as_str())),
    )?;
    let registry_path = format!("/v2/registries/{}", segment(&registry.name));

    let mut protected = Protected::default();
    protect::from_input(&input, &mut protected);
    let spec_images = protect::from_apps(&client, &cli.protect_app, cli.keep_rollback)?;

    let repository_names: Vec<String> = match (&saved, cli.repository.is_empty()) {
        (Some(saved), _) => saved.repositories.iter().map(|r| r.name.clone()).collect(),
        (None, false) => cli.repository.clone(),
        (None, true) => {
            let repositories: Vec<Repository> =
                client.get_all(&format!("{registry_path}/repositoriesV2"), "repositories")?;
            repositories.into_iter().map(|r| r.name).collect()
        }
    };
    let mut listings: BTreeMap<String, Vec<Manifest>> = BTreeMap::new();
    for name in &repository_names {
        let path = format!("{registry_path}/repositories/{}/digests", segment(name));
        let manifests: Vec<Manifest> = client.get_all(&path, "manifests").map_err(|error| {
            if has_status(&error, 404) {
                Failure::usage(format!("repository {name:?} is not in registry {}", registry.name))
            } else {
                error
            }
        })?;
        protect::resolve(&spec_images, name, &manifests, &mut protected);
        listings.insert(name.clone(), manifests);
    }

    let now = jiff::Timestamp::now().as_second();
    let mut skipped = Vec::new();
    let mut plans: Vec<RepositoryPlan> = match &saved {
        Some(saved) => recheck_saved(saved, &listings, &protected, &mut skipped),
        None => listings
            .iter()
            .map(|(name, manifests)| policy::plan_repository(name, manifests, &policy, &patterns, &protected, now))
            .collect(),
    };

    let gc_sweeps_untagged = cli.gc != GcMode::Off && cli.gc_type.contains("untagged manifests");
    let mut usage = usage_before(registry);
    if let (Some(percent), Some(included)) = (cli.target_usage, usage.included_bytes) {
        trim_to_target(
            &mut plans,
            &listings,
            usage.before_bytes.unwrap_or(0),
            included * u64::from(percent) / 100,
            gc_sweeps_untagged,
        );
    }
    usage.estimated_after_bytes =
        usage.before_bytes.map(|before| before.saturating_sub(estimated_freed(&plans, &listings, gc_sweeps_untagged)));
    usage.estimated_after_percent = percent_of(usage.estimated_after_bytes, usage.included_bytes);

    let deletion_count: usize = plans.iter().map(|p| p.deleted.len()).sum();
    if let Some(limit) = cli.max_delete {
        if deletion_count > limit {
            return Err(Failure::usage(format!(
                "the plan has {deletion_count} deletions, more than --max-delete {limit}; nothing was deleted (raise the limit or keep more)"
            )));
        }
    }
    let mut gc_type = cli.gc_type.clone();
    let untagged_but_needed: Vec<&Kept> =
        plans.iter().flat_map(|p| p.kept.iter()).filter(|k| k.tags.is_empty()).collect();
    if gc_type.contains("untagged manifests") && !untagged_but_needed.is_empty() {
        progress.warn(&format!(
            "{} untagged manifest(s) are needed ({}); GC type becomes \"unreferenced blobs only\" so it cannot remove them",
            untagged_but_needed.len(),
            untagged_but_needed[0].reason
        ));
        gc_type = "unreferenced blobs only".to_string();
    }
    print_table(&progress, &plans, &usage, !cli.execute);
    let mut record = PruneRecord {
        registry: registry.name.clone(),
        dry_run: !cli.execute,
        policy: policy.clone(),
        usage,
        repositories: plans,
        failed: Vec::new(),
        skipped,
        gc: None,
        requests: 0,
    };
    if let Some(path) = &cli.plan_out {
        let plan = SavedPlan {
            version: PLAN_VERSION,
            registry: registry.name.clone(),
            created_at: do_core::duration::now_rfc3339(),
            policy,
            repositories: record.repositories.clone(),
        };
        std::fs::write(path, serde_json::to_string_pretty(&plan)? + "\n")
            .with_context(|| format!("cannot write --plan-out {}", path.display()))?;
        progress.info(&format!("plan saved to {}", path.display()));
    }
    if !cli.execute {
        record.requests = client.requests_made();
        output.emit("prune", 1, &record)?;
        github_outputs(&record)?;
        progress.info("dry run: nothing was deleted; add --execute to delete");
        return Ok(Exit::Done);
    }

    record.failed = delete_all(&client, &progress, &registry_path, &record.repositories, usize::from(cli.concurrency));
    let deleted_something = deletion_count > record.failed.len();
    let untagged_total: u64 = record.repositories.iter().map(|p| p.untagged.count).sum();
    let mut exit = Exit::Done;
    if cli.gc != GcMode::Off && (deleted_something || untagged_total > 0) {
        let (gc, gc_exit) = garbage_collect(&client, &progress, &cli, &registry.name, &gc_type, deadline)?;
        record.gc = gc;
        exit = gc_exit;
    } else if cli.gc != GcMode::Off {
        progress.info("nothing was deleted and nothing is untagged; no garbage collection started");
    }
    record.requests = client.requests_made();
    output.emit("prune", 1, &record)?;
    github_outputs(&record)?;
    if !record.failed.is_empty() {
        return Err(anyhow::anyhow!(
            "{} of {deletion_count} deletions failed (listed in the record); rerun to retry them",
            record.failed.len()
        ));
    }
    match exit {
        Exit::Deadline => Err(Failure::deadline("garbage collection still running at the deadline")),
        Exit::RemoteFailed => Err(Failure::remote("the garbage collection failed")),
        other => Ok(other),
    }
}

fn github_outputs(record: &PruneRecord) -> anyhow::Result<()> {
    let Some(github) = do_core::github::GitHub::from_env() else { return Ok(()) };
    let deleted: usize = record.repositories.iter().map(|r| r.deleted.len()).sum::<usize>() - record.failed.len();
    let freed = match (record.usage.before_bytes, record.usage.estimated_after_bytes) {
        (Some(before), Some(after)) => before.saturating_sub(after),
        _ => 0,
    };
    github.outputs(&[
        ("deleted_count", deleted.to_string()),
        ("freed_bytes", freed.to_string()),
        ("dry_run", record.dry_run.to_string()),
        ("gc_uuid", record.gc.as_ref().map(|gc| gc.uuid.clone()).unwrap_or_default()),
    ])?;
    let mut summary = format!(
        "### do-prune{}\n\n| repository | kept | deleted | untagged |\n|---|---|---|---|\n",
        if record.dry_run { " (dry run)" } else { "" }
    );
    for plan in &record.repositories {
        summary.push_str(&format!(
            "| {} | {} | {} | {} |\n",
            plan.name,
            plan.kept.len(),
            plan.deleted.len(),
            plan.untagged.count
        ));
    }
    summary.push_str(&format!("\nAbout {} freed after GC", size(freed)));
    if let Some(gc) = &record.gc {
        summary.push_str(&format!("; garbage collection `{}` {}", gc.uuid, gc.status));
    }
    summary.push('\n');
    github.summary(&summary)?;
    Ok(())
}

fn read_plan(path: &std::path::Path) -> anyhow::Result<SavedPlan> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Failure::usage(format!("cannot read --apply {}: {e}", path.display())))?;
    let plan: SavedPlan = serde_json::from_str(&text)
        .map_err(|e| Failure::usage(format!("--apply {}: not a do-prune plan: {e}", path.display())))?;
    if plan.version != PLAN_VERSION {
        return Err(Failure::usage(format!(
            "--apply {}: plan version {} is not {PLAN_VERSION}",
            path.display(),
            plan.version
        )));
    }
    validate::registry_name(&plan.registry)?;
    for repository in &plan.repositories {
        validate::repository_name(&repository.name)?;
        for deletion in &repository.deleted {
            validate::digest(&deletion.digest)?;
            for tag in &deletion.tags {
                validate::tag_name(tag)?;
            }
        }
    }
    Ok(plan)
}

/// A saved plan against today's registry: entries whose manifest is gone, changed (tags or
/// `updated_at`) or now protected are skipped, each with its reason.
fn recheck_saved(
    saved: &SavedPlan,
    listings: &BTreeMap<String, Vec<Manifest>>,
    protected: &Protected,
    skipped: &mut Vec<Skipped>,
) -> Vec<RepositoryPlan> {
    let mut plans = Vec::new();
    for planned in &saved.repositories {
        let current = listings.get(&planned.name).map(Vec::as_slice).unwrap_or(&[]);
        let mut plan = RepositoryPlan {
            name: planned.name.clone(),
            kept: Vec::new(),
            deleted: Vec::new(),
            untagged: planned.untagged.clone(),
        };
        for deletion in &planned.deleted {
            let skip =
                |reason: String| Skipped { repository: planned.name.clone(), digest: deletion.digest.clone(), reason };
            let Some(manifest) = current.iter().find(|m| m.digest == deletion.digest) else {
                skipped.push(skip("gone since the plan".into()));
                continue;
            };
            if manifest.tags != deletion.all_tags || manifest.updated_at != deletion.updated_at {
                skipped.push(skip(format!("changed since the plan (tags now {:?})", manifest.tags)));
                continue;
            }
            if let Some(reason) = protected.digest(&planned.name, &deletion.digest) {
                skipped.push(skip(format!("now protected: {reason}")));
                continue;
            }
            plan.deleted.push(deletion.clone());
        }
        if !saved.policy.allow_empty {
            let tagged: Vec<&Manifest> = current.iter().filter(|m| !m.tags.is_empty()).collect();
            let all_go = !tagged.is_empty()
                && tagged
                    .iter()
                    .all(|m| plan.deleted.iter().any(|d| d.digest == m.digest && d.action == Action::Manifest));
            if all_go {
                let newest = tagged.iter().max_by_key(|m| policy::epoch(m)).expect("not empty");
                plan.deleted.retain(|d| d.digest != newest.digest);
                skipped.push(Skipped {
                    repository: planned.name.clone(),
                    digest: newest.digest.clone(),
                    reason: "the repository's last tagged manifest".into(),
                });
            }
        }
        plans.push(plan);
    }
    plans
}

fn usage_before(registry: &Registry) -> Usage {
    let included = registry.subscription.as_ref().and_then(|s| s.tier.as_ref()).and_then(|t| t.included_storage_bytes);
    Usage {
        before_bytes: registry.storage_usage_bytes,
        included_bytes: included,
        estimated_after_bytes: None,
        before_percent: percent_of(registry.storage_usage_bytes, included),
        estimated_after_percent: None,
    }
}

fn percent_of(bytes: Option<u64>, included: Option<u64>) -> Option<f64> {
    match (bytes, included) {
        (Some(bytes), Some(included)) if included > 0 => Some((bytes as f64 * 1000.0 / included as f64).round() / 10.0),
        _ => None,
    }
}

/// What a GC frees after the planned deletions: blobs no remaining manifest uses.
fn estimated_freed(
    plans: &[RepositoryPlan],
    listings: &BTreeMap<String, Vec<Manifest>>,
    gc_sweeps_untagged: bool,
) -> u64 {
    let all: Vec<&Manifest> = listings.values().flatten().collect();
    let needed_untagged: BTreeSet<&str> =
        plans.iter().flat_map(|p| p.kept.iter()).filter(|k| k.tags.is_empty()).map(|k| k.digest.as_str()).collect();
    let mut gone: BTreeSet<&str> = plans
        .iter()
        .flat_map(|p| p.deleted.iter())
        .filter(|d| d.action == Action::Manifest)
        .map(|d| d.digest.as_str())
        .collect();
    if gc_sweeps_untagged {
        gone.extend(
            all.iter()
                .filter(|m| m.tags.is_empty() && !needed_untagged.contains(m.digest.as_str()))
                .map(|m| m.digest.as_str()),
        );
    }
    policy::freed_bytes(&all, &gone)
}

/// Keeps deletions back, newest first, as long as the estimate stays at or under the target.
fn trim_to_target(
    plans: &mut [RepositoryPlan],
    listings: &BTreeMap<String, Vec<Manifest>>,
    before: u64,
    target: u64,
    gc_sweeps_untagged: bool,
) {
    let mut candidates: Vec<(Option<i64>, usize, String)> = plans
        .iter()
        .enumerate()
        .flat_map(|(index, plan)| {
            plan.deleted.iter().map(move |d| {
                (
                    d.updated_at.as_deref().and_then(do_core::duration::parse_timestamp).map(|t| t.as_second()),
                    index,
                    d.digest.clone(),
                )
            })
        })
        .collect();
    candidates.sort();
    let mut chosen: BTreeSet<(usize, String)> = BTreeSet::new();
    let original: Vec<Vec<Deletion>> = plans.iter().map(|p| p.deleted.clone()).collect();
    for plan in plans.iter_mut() {
        plan.deleted.clear();
    }
    let estimate =
        |plans: &[RepositoryPlan]| before.saturating_sub(estimated_freed(plans, listings, gc_sweeps_untagged));
    for (_, index, digest) in candidates {
        if estimate(plans) <= target {
            break;
        }
        chosen.insert((index, digest.clone()));
        if let Some(deletion) = original[index].iter().find(|d| d.digest == digest) {
            plans[index].deleted.push(deletion.clone());
        }
    }
    for (index, plan) in plans.iter_mut().enumerate() {
        for deletion in &original[index] {
            if !chosen.contains(&(index, deletion.digest.clone())) && deletion.action == Action::Manifest {
                plan.kept.push(Kept {
                    digest: deletion.digest.clone(),
                    tags: deletion.tags.clone(),
                    reason: "not needed to reach --target-usage".into(),
                });
            }
        }
    }
}

fn print_table(progress: &Progress, plans: &[RepositoryPlan], usage: &Usage, dry_run: bool) {
    let width = plans.iter().map(|p| p.name.len()).max().unwrap_or(10).max(10);
    progress.info(&format!(
        "{:<width$}  {:>6}  {:>8}  {:>12}  {:>8}  {:>12}",
        "repository", "kept", "deleted", "deleted size", "untagged", "untagged size"
    ));
    for plan in plans {
        let deleted_bytes: u64 = plan.deleted.iter().filter(|d| d.action == Action::Manifest).map(|d| d.bytes).sum();
        progress.info(&format!(
            "{:<width$}  {:>6}  {:>8}  {:>12}  {:>8}  {:>12}",
            plan.name,
            plan.kept.len(),
            plan.deleted.len(),
            size(deleted_bytes),
            plan.untagged.count,
            size(plan.untagged.bytes)
        ));
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

fn size(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["B", "KiB", "MiB", "GiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// Deletes concurrently; a failure does not stop the others. A 404 means it is already gone
/// (a rerun after an interruption), which is what we wanted.
fn delete_all(
    client: &Client,
    progress: &Progress,
    registry_path: &str,
    plans: &[RepositoryPlan],
    concurrency: usize,
) -> Vec<Failed> {
    let mut requests: Vec<(String, &Deletion, String)> = Vec::new();
    for plan in plans {
        let repository_path = format!("{registry_path}/repositories/{}", segment(&plan.name));
        for deletion in &plan.deleted {
            match deletion.action {
                Action::Manifest => requests.push((
                    plan.name.clone(),
                    deletion,
                    format!("{repository_path}/digests/{}", segment(&deletion.digest)),
                )),
                Action::Tags => {
                    for tag in &deletion.tags {
                        requests.push((
                            plan.name.clone(),
                            deletion,
                            format!("{repository_path}/tags/{}", segment(tag)),
                        ));
                    }
                }
            }
        }
    }
    let total = requests.len();
    let queue = Mutex::new(requests.into_iter());
    let failed = Mutex::new(Vec::new());
    let done = std::sync::atomic::AtomicUsize::new(0);
    std::thread::scope(|scope| {
        for _ in 0..concurrency.min(total.max(1)) {
            scope.spawn(|| loop {
                let next = queue.lock().unwrap_or_else(|e| e.into_inner()).next();
                let Some((repository, deletion, path)) = next else { break };
                match client.delete(&path) {
                    Ok(()) => {}
                    Err(error) if has_status(&error, 404) => progress.debug(&format!("{path}: already gone")),
                    Err(error) => failed.lock().unwrap_or_else(|e| e.into_inner()).push(Failed {
                        repository,
                        digest: deletion.digest.clone(),
                        tags: deletion.tags.clone(),
                        error: format!("{error:#}"),
                    }),
                }
                let count = done.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
                // Every tenth part, so CI logs get about ten lines however many deletions there are.
                if count.is_multiple_of((total / 10).max(1)) || count == total {
                    progress.status(&format!("deleting: {count}/{total}"), "");
                }
            });
        }
    });
    progress.finish();
    let failed = failed.into_inner().unwrap_or_else(|e| e.into_inner());
    progress.info(&format!(
        "{} of {total} deletions done{}",
        total - failed.len(),
        if failed.is_empty() { String::new() } else { format!(", {} failed", failed.len()) }
    ));
    for failure in &failed {
        progress.warn(&format!("could not delete {}@{}: {}", failure.repository, failure.digest, failure.error));
    }
    failed
}

/// Starts GC with an explicit type (through the endpoint that accepts one), or reports the one
/// already running; waits for it with `--gc wait`.
fn garbage_collect(
    client: &Client,
    progress: &Progress,
    cli: &Cli,
    registry: &str,
    gc_type: &str,
    deadline: Instant,
) -> anyhow::Result<(Option<GcReport>, Exit)> {
    let active_path = format!("/v2/registries/{}/garbage-collection", segment(registry));
    let report = |gc: &GarbageCollection, gc_type: Option<&str>, already_running: bool| GcReport {
        uuid: gc.uuid.clone(),
        gc_type: gc_type.map(str::to_string),
        status: gc.status.to_string(),
        already_running,
        freed_bytes: gc.freed_bytes,
    };
    let (mut gc_report, uuid) =
        match client.get_object_or_none::<GarbageCollection>(&active_path, "garbage_collection")? {
            Some(active) => {
                progress.info(&format!(
                    "garbage collection {} is already running ({}); not starting another",
                    active.uuid, active.status
                ));
                (report(&active, None, true), active.uuid.clone())
            }
            None => {
                // The registries family declares no body for this call; the registry family takes the type.
                let start_path = format!("/v2/registry/{}/garbage-collection", segment(registry));
                let started = match client.post_create::<GarbageCollection>(
                    &start_path,
                    Some(&json!({"type": gc_type})),
                    "garbage_collection",
                ) {
                    Ok(gc) => gc,
                    Err(error) if do_core::api::is_ambiguous(&error) || has_status(&error, 409) => {
                        // Ambiguous, or refused as already active: look before anything else.
                        match client.get_object_or_none::<GarbageCollection>(&active_path, "garbage_collection")? {
                            Some(gc) => gc,
                            None => return Err(error.context("could not start garbage collection")),
                        }
                    }
                    Err(error) => return Err(error.context("could not start garbage collection")),
                };
                progress.info(&format!("garbage collection {} started (type: {gc_type})", started.uuid));
                (report(&started, Some(gc_type), false), started.uuid.clone())
            }
        };
    if cli.gc != GcMode::Wait {
        return Ok((Some(gc_report), Exit::Done));
    }
    let poller =
        Poller { interval: cli.interval, max_interval: cli.interval.max(std::time::Duration::from_secs(60)), deadline };
    let list_path = format!("/v2/registries/{}/garbage-collections?page=1&per_page=20", segment(registry));
    let polled = poller.run(progress, || {
        match client.get_object_or_none::<GarbageCollection>(&active_path, "garbage_collection")? {
            Some(gc) if gc.uuid == uuid && !gc.status.is_terminal() => {
                Ok(Check::Waiting(format!("garbage collection {uuid} is {}", gc.status)))
            }
            _ => {
                let recent: Vec<GarbageCollection> = client.get_object(&list_path, "garbage_collections")?;
                Ok(Check::Done(recent.into_iter().find(|gc| gc.uuid == uuid)))
            }
        }
    })?;
    match polled.outcome {
        None => Ok((Some(gc_report), Exit::Deadline)),
        Some(ended) => {
            if let Some(ended) = ended {
                gc_report.status = ended.status.to_string();
                gc_report.freed_bytes = ended.freed_bytes;
            }
            progress.info(&format!(
                "garbage collection {uuid} ended {}{}",
                gc_report.status,
                gc_report.freed_bytes.map(|b| format!(", freed {}", size(b))).unwrap_or_default()
            ));
            let failed = GcStatus::from(gc_report.status.as_str()) == GcStatus::Failed;
            Ok((Some(gc_report), if failed { Exit::RemoteFailed } else { Exit::Done }))
        }
    }
}

#[cfg(test)]
mod properties {
    use super::*;
    use do_core::types::Blob;
    use proptest::prelude::*;

    const TAGS: [&str; 10] = ["latest", "v1", "v2", "v3", "v4", "v5", "release-1", "release-2", "main", "dev"];

    /// A repository: each manifest has a unique digest, tags drawn so no tag is on two
    /// manifests, an age in days and blobs from a shared pool.
    fn repository() -> impl Strategy<Value = Vec<Manifest>> {
        proptest::collection::vec(
            (proptest::collection::vec(0usize..TAGS.len(), 0..3), 0i64..60, proptest::collection::vec(0u8..8, 1..3)),
            0..14,
        )
        .prop_map(|specs| {
            let mut used = BTreeSet::new();
            specs
                .into_iter()
                .enumerate()
                .map(|(i, (tags, age, blobs))| {
                    let tags: Vec<String> =
                        tags.into_iter().filter(|t| used.insert(*t)).map(|t| TAGS[t].to_string()).collect();
                    Manifest {
                        digest: format!("sha256:{i:064x}"),
                        tags,
                        updated_at: Some(
                            jiff::Timestamp::from_second(1_800_000_000 - age * 86_400).unwrap().to_string(),
                        ),
                        compressed_size_bytes: Some(100),
                        blobs: blobs
                            .into_iter()
                            .map(|b| Blob { digest: Some(format!("blob-{b}")), compressed_size_bytes: Some(10) })
                            .collect(),
                        ..Manifest::default()
                    }
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

    /// What the registry looks like after a plan is carried out.
    fn apply(manifests: &[Manifest], plan: &RepositoryPlan) -> Vec<Manifest> {
        manifests
            .iter()
            .filter(|m| !plan.deleted.iter().any(|d| d.digest == m.digest && d.action == Action::Manifest))
            .map(|m| {
                let mut m = m.clone();
                for deletion in plan.deleted.iter().filter(|d| d.digest == m.digest && d.action == Action::Tags) {
                    m.tags.retain(|t| !deletion.tags.contains(t));
                }
                m
            })
            .collect()
    }

    proptest! {
        #[test]
        fn prune_plans_keep_what_they_must(
            manifests in repository(),
            policy in policy(),
            protected_picks in proptest::collection::vec(0usize..14, 0..4),
            protected_tag in proptest::option::of(0usize..TAGS.len()),
        ) {
            let mut protected = Protected::default();
            for pick in &protected_picks {
                if let Some(m) = manifests.get(*pick) {
                    protected.digests.insert(("web".into(), m.digest.clone()), "deployed".into());
                }
            }
            if let Some(tag) = protected_tag {
                protected.tags.insert((None, TAGS[tag].to_string()), "named by the tag record".into());
            }
            let patterns = policy::compile_keep_tags(&policy.keep_tags).unwrap();
            let plan = policy::plan_repository("web", &manifests, &policy, &patterns, &protected, 1_800_000_000);

            // A protected digest is never touched, not even one of its tags.
            for deletion in &plan.deleted {
                prop_assert!(protected.digest("web", &deletion.digest).is_none(), "deleted protected {}", deletion.digest);
            }
            // A manifest a kept tag points to is never deleted, and kept tags stay.
            for kept in plan.kept.iter().filter(|k| !k.tags.is_empty()) {
                for deletion in plan.deleted.iter().filter(|d| d.digest == kept.digest) {
                    prop_assert_eq!(deletion.action, Action::Tags);
                    prop_assert!(deletion.tags.iter().all(|t| !kept.tags.contains(t)));
                }
            }
            // Without --allow-empty a repository keeps a tagged manifest.
            let after = apply(&manifests, &plan);
            if !policy.allow_empty && manifests.iter().any(|m| !m.tags.is_empty()) {
                prop_assert!(after.iter().any(|m| !m.tags.is_empty()), "the repository lost its last tagged manifest");
            }
            // Applying the same plan a second time deletes nothing.
            let saved = SavedPlan { version: PLAN_VERSION, registry: "reg".into(), created_at: String::new(), policy: policy.clone(), repositories: vec![plan.clone()] };
            let listings = BTreeMap::from([("web".to_string(), after)]);
            let mut skipped = Vec::new();
            let second = recheck_saved(&saved, &listings, &protected, &mut skipped);
            prop_assert!(second.iter().all(|p| p.deleted.is_empty()), "the second apply would delete {:?}", second);
            prop_assert_eq!(skipped.len(), plan.deleted.len());
        }
    }
}
