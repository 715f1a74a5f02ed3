//! do-prune: delete registry images a retention policy no longer keeps, never one that a
//! deployment needs or that a kept image is made of, then start garbage collection.
//!
//! Read top to bottom, a run is: check every flag, input record and saved plan (exit 2 before
//! any request); gather the registry, every repository's listing and what the apps need; plan
//! each repository (policy, then the keep closure from manifests read on the registry host);
//! decide the GC type; show the plan; and, with --execute, wait out a running GC, re-check apps
//! and listings right before deleting, delete (tags, then untagged garbage, parents first), and
//! start GC. The record is written whatever happens after the first deletion.
//!
//! `run` reads as those phases, each a function of an explicit `Ctx` (API, progress, registry,
//! deadline, checked settings): `args.rs` (the checks), `gather` with `listing.rs` and
//! `protect.rs`, `plan` with `planning.rs` (the registry), `plan.rs` (one repository, with
//! reads: `reads.rs`), `policy.rs`, `closure.rs` and `artifacts.rs` (pure), `usage.rs`; then
//! `saved.rs` (--plan-out, --apply), `apply.rs`, and the record (`report.rs`); `written.rs`
//! describes the garbage a plan names by digest from the listing, as it is written.

mod apply;
mod args;
pub mod artifacts;
mod cli;
pub mod closure;
mod known;
mod listing;
mod plan;
mod planning;
pub mod policy;
mod protect;
mod reads;
mod report;
mod saved;
pub mod usage;
mod written;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;
use do_core::api::segment;
use do_core::contract::Output;
use do_core::digest::Digest;
use do_core::manifest_cache::{self, ManifestCache};
use do_core::oci::RegistryClient;
use do_core::progress::Progress;
use do_core::types::{Manifest, Registry};
use do_core::{Client, Exit, Failure};

use args::Settings;
pub use cli::{Cli, GcMode};
use plan::{Planned, RepositoryPlan};
use protect::SpecImage;
use reads::{AllReads, Reader};
use report::PruneRecord;
pub use saved::SavedPlan;
use written::Described;

const TOOL: &str = "do-prune";
const PLAN_VERSION: u64 = 2;
const RECORD_VERSION: u64 = 2;
/// How long the registry credentials for reading manifests live.
const READ_CREDENTIALS_EXPIRY: Duration = Duration::from_secs(900);

pub fn main() -> i32 {
    do_core::exit::run_main(TOOL, || run(Cli::parse()))
}

/// What every phase works with: the API, progress on stderr, the registry, the deadline and
/// the checked settings.
pub(crate) struct Ctx<'a> {
    pub client: &'a Client,
    pub progress: &'a Progress,
    pub registry: String,
    /// `/v2/registries/<registry>`.
    pub registry_path: String,
    pub deadline: Instant,
    pub settings: &'a Settings,
}

pub fn run(cli: Cli) -> anyhow::Result<Exit> {
    if let Some(shell) = cli.io.completions {
        return do_core::cli::print_completions::<Cli>(shell, TOOL);
    }
    // Everything given is checked before the first request.
    let start = do_core::start::begin(&cli.io, cli.timeout)?;
    let settings = args::settings(&cli, &start.input)?;
    let api_url = do_core::api::checked_base_url(&cli.api.api_url)?;
    let registry_url = do_core::oci::registry_url_for(&api_url, cli.registry_url.as_deref())?;
    let progress = cli.io.progress(TOOL);
    let (client, mut output) = start.connect(&cli.api, &progress)?;
    let deadline = start.deadline;
    let registries: Vec<Registry> = client.get_object("/v2/registries", "registries")?;
    let named = settings.registry.as_deref().or(settings.saved.as_ref().map(|s| s.registry.as_str()));
    let registry = do_core::registry::choose(&registries, named)?.clone();
    let ctx = Ctx {
        client: &client,
        progress: &progress,
        registry_path: format!("/v2/registries/{}", segment(&registry.name)),
        registry: registry.name.clone(),
        deadline,
        settings: &settings,
    };
    prune(&ctx, &registry, &registry_url, &mut output)
}

/// What the run works on: every repository's listing (GC covers the registry, whatever
/// --repository says), the ones to prune, and the images the apps need.
struct Gathered {
    listings: BTreeMap<String, Vec<Manifest>>,
    selected: Vec<String>,
    images: Vec<SpecImage>,
}

/// The registry's plan: each repository's, the usage before and after, the deletions
/// --target-usage allows, the GC type.
struct Whole {
    planned: Vec<Planned>,
    /// The subscription's included storage.
    included: Option<u64>,
    limit: Option<BTreeSet<Digest>>,
    gc_type: String,
    /// What was learnt of each repository while planning, for the plan made again at apply.
    reads: AllReads,
}

fn prune(
    ctx: &Ctx,
    registry: &Registry,
    registry_url: &str,
    output: &mut Output<std::io::Stdout>,
) -> anyhow::Result<Exit> {
    let s = ctx.settings;
    let gathered = gather(ctx)?;
    let registry_client = registry_client(ctx, registry_url, &gathered.selected)?;
    let reader = Reader::new(&registry_client, usize::from(s.concurrency), ctx.progress);
    let Whole { planned, included, limit, gc_type, reads } = plan(ctx, registry, &gathered, &reader)?;
    let (unlisted, indexes_read) = warn_about(ctx, &planned, &reads);
    let whys = untagged_whys(&planned, &gathered.listings);
    // What planning learnt is told: only the plans go on, with the reads if they are applied
    // (a dry run is done reading). The usage is counted in the room that leaves.
    let mut skipped = Vec::new();
    let mut plans: Vec<RepositoryPlan> = planned
        .into_iter()
        .map(|p| {
            skipped.extend(p.skipped);
            p.plan
        })
        .collect();
    let mut reads = if s.execute { reads } else { AllReads::new() };
    let usage = planning::usage(registry, included, &gathered.listings, &plans);
    show(ctx, &plans, &gathered.listings, &usage, &whys)?;
    let mut record = PruneRecord {
        registry: ctx.registry.clone(),
        dry_run: !s.execute,
        policy: s.policy.clone(),
        usage,
        // Filled at the end from the plans as applied: held once, not copied.
        repositories: Vec::new(),
        failed: Vec::new(),
        skipped,
        kept_at_recheck: Vec::new(),
        index_children_listed: indexes_read.then_some(unlisted == 0),
        referrers_api: reader.referrers_api(),
        gc: None,
        requests: 0,
        registry_requests: 0,
        cache: None,
    };
    let outcome = if s.execute {
        // Apply: the record is written whatever happens from here on.
        apply::apply(ctx, &mut plans, &gathered.listings, (&reader, &mut reads), limit.as_ref(), &gc_type, &mut record)
    } else {
        tell_running_gc(ctx)?;
        Ok(Exit::Done)
    };
    // What was read is not needed for the record: gone before it is written. The listings
    // describe the garbage the plans name.
    drop(reads);
    record.repositories = plans.iter().map(|plan| Described::of(plan, &gathered.listings)).collect();
    record.requests = ctx.client.requests_made();
    record.registry_requests = registry_client.requests_made();
    record.cache = registry_client.cache().map(|cache| {
        cache.flush();
        cache.used()
    });
    output.emit("prune", RECORD_VERSION, &record)?;
    report::github_outputs(&record)?;
    if !s.execute {
        ctx.progress.info("dry run: nothing was deleted; add --execute to delete");
    }
    let exit = outcome.and_then(|exit| exit_of(&record, exit));
    // The cache reads its pack again to put it in order: once the listings are gone.
    drop(record);
    drop((plans, gathered));
    if let Some(cache) = registry_client.cache() {
        cache.finish();
    }
    exit
}

/// Holds the plan to --max-delete, shows it on stderr and saves it with --plan-out.
fn show(
    ctx: &Ctx,
    plans: &[RepositoryPlan],
    listings: &BTreeMap<String, Vec<Manifest>>,
    usage: &report::Usage,
    whys: &report::UntaggedWhys,
) -> anyhow::Result<()> {
    let s = ctx.settings;
    let deletion_count: usize = plans.iter().map(RepositoryPlan::deletion_count).sum();
    if let Some(limit) = s.max_delete.filter(|limit| deletion_count > *limit) {
        return Err(Failure::usage(format!(
            "the plan has {deletion_count} deletions, more than --max-delete {limit}; nothing was deleted (raise the limit or keep more)"
        )));
    }
    let described: Vec<Described> = plans.iter().map(|plan| Described::of(plan, listings)).collect();
    report::print_table(ctx.progress, &described, usage, !s.execute, whys);
    if let Some(path) = &s.plan_out {
        saved::write_plan(ctx, path, &described)?;
    }
    Ok(())
}

/// The client for the registry host: short-lived read-only credentials, the manifest cache,
/// and one token request for the repositories to plan (where it fails, each asks for its own).
fn registry_client(ctx: &Ctx, registry_url: &str, selected: &[String]) -> anyhow::Result<RegistryClient> {
    let s = ctx.settings;
    let client = RegistryClient::from_api(
        ctx.client,
        &ctx.registry,
        registry_url,
        READ_CREDENTIALS_EXPIRY,
        false,
        Arc::new(Progress::new(TOOL, s.quiet, s.verbose)),
    )
    .context(
        "cannot read manifests from the registry, which deciding what is safe to delete needs; nothing was deleted",
    )?;
    let cache = s.cache_dir.as_deref().and_then(|dir| ManifestCache::open(dir, manifest_cache::DEFAULT_MAX_BYTES));
    let client = client.with_cache(cache);
    if let Err(error) = client.authorize(selected, false) {
        ctx.progress.debug(&format!("one registry token for every repository: {error:#}"));
    }
    Ok(client)
}

fn gather(ctx: &Ctx) -> anyhow::Result<Gathered> {
    let s = ctx.settings;
    let listings = listing::list_everything(ctx)?;
    let chosen = s.registry.is_some() || s.saved.is_some();
    let names = listings.keys().map(String::as_str);
    for warning in protect::check_references(&s.references, &ctx.registry, chosen, names)? {
        ctx.progress.warn(&warning);
    }
    let selected = listing::selected_repositories(ctx, &listings)?;
    let images = protect::from_apps(ctx.client, &ctx.registry, &s.protect_app, s.keep_rollback)?;
    Ok(Gathered { listings, selected, images })
}

fn plan(ctx: &Ctx, registry: &Registry, gathered: &Gathered, reader: &Reader) -> anyhow::Result<Whole> {
    let mut reads = AllReads::new();
    let Gathered { listings, selected, images } = gathered;
    let mut planned = planning::plan_all(ctx, selected, listings, images, (reader, &mut reads), None)?;
    let included = planning::included_storage(ctx, registry)?;
    let mut limit = None;
    if let (Some(percent), Some(included)) = (ctx.settings.target_usage, included) {
        let chosen = planning::trim_to_target(
            ctx,
            &planned,
            listings,
            (reader, &mut reads),
            included * u64::from(percent) / 100,
        )?;
        planned = planning::plan_all(ctx, selected, listings, images, (reader, &mut reads), Some(&chosen))?;
        limit = Some(chosen);
    }
    let gc_type = planning::gc_type(ctx, &planned, selected, listings, images, (reader, &mut reads))?;
    Ok(Whole { planned, included, limit, gc_type, reads })
}

/// Warns of what the plan could not be sure of; how many index children the listing lacks, and
/// whether any index was read.
fn warn_about(ctx: &Ctx, planned: &[Planned], reads: &AllReads) -> (usize, bool) {
    for planned in planned {
        let unreadable = planned.plan.kept.iter().filter(|k| k.reason.contains("cannot be read"));
        for (digest, updated_at) in unreadable.map(|k| (&k.digest, &k.reason)) {
            ctx.progress.warn(&format!("{} {}: {updated_at}", planned.plan.name, closure::short(digest)));
        }
    }
    let unlisted: usize = planned.iter().map(|p| p.closure.unlisted.len()).sum();
    let indexes_read = planned.iter().any(|p| {
        reads
            .get(&p.plan.name)
            .is_some_and(|r| r.read.values().any(|r| matches!(r, closure::Read::Info(i) if i.is_index())))
    });
    if unlisted > 0 {
        ctx.progress.warn(&format!(
            "the API listing does not show {unlisted} manifest(s) that kept indexes hold; the children of deleted indexes stay in the registry, and GC stays \"unreferenced blobs only\""
        ));
    }
    for missing in planned.iter().flat_map(|p| p.closure.missing.iter().map(move |d| (&p.plan.name, d))) {
        ctx.progress.warn(&format!(
            "{}: a kept image holds {}, which the registry does not have (the image is already broken)",
            missing.0, missing.1
        ));
    }
    (unlisted, indexes_read)
}

/// Why each repository's kept untagged manifests stay, by kind of reason.
fn untagged_whys(planned: &[Planned], listings: &BTreeMap<String, Vec<Manifest>>) -> report::UntaggedWhys {
    planned
        .iter()
        .map(|p| {
            let untagged = listings.get(&p.plan.name).into_iter().flatten().filter(|m| m.tags.is_empty());
            let reasons = untagged.filter_map(|m| p.closure.kept.get(&m.digest).map(String::as_str));
            (p.plan.name.clone(), report::untagged_whys(reasons))
        })
        .collect()
}

/// A dry run says when a GC runs, which an executed run would wait out.
fn tell_running_gc(ctx: &Ctx) -> anyhow::Result<()> {
    if let Some(gc) = apply::active_gc(ctx.client, &ctx.registry)? {
        ctx.progress.info(&format!(
            "garbage collection {} is running ({}); an executed prune waits for it before deleting",
            gc.uuid, gc.status
        ));
    }
    Ok(())
}

/// The exit the run calls for, with the message that goes with it (a dry run's is 0 unless a
/// repository was blocked).
fn exit_of(record: &PruneRecord, exit: Exit) -> anyhow::Result<Exit> {
    if !record.failed.is_empty() {
        return Err(anyhow::anyhow!(
            "{} of {} deletions failed (listed in the record); rerun to retry them",
            record.failed.len(),
            record.repositories.iter().map(|r| r.plan.deletion_count()).sum::<usize>()
        ));
    }
    if let Some(error) = blocked_error(record) {
        return Err(error);
    }
    if let Some(error) = record.gc.as_ref().and_then(|gc| gc.error.as_deref()) {
        return Err(anyhow::anyhow!("the deletions are done, but garbage collection did not start: {error}"));
    }
    match exit {
        Exit::Deadline => Err(Failure::deadline("garbage collection still running at the deadline")),
        Exit::RemoteFailed => Err(Failure::remote("the garbage collection failed")),
        other => Ok(other),
    }
}

/// A run where some repository could not be planned safely did not do all it was asked: exit 1.
fn blocked_error(record: &PruneRecord) -> Option<anyhow::Error> {
    let blocked: Vec<&str> =
        record.repositories.iter().filter(|r| r.plan.blocked.is_some()).map(|r| r.plan.name.as_str()).collect();
    (!blocked.is_empty()).then(|| {
        anyhow::anyhow!(
            "nothing was deleted in {}: manifests could not be read from the registry (the record says which); rerun when the registry answers",
            blocked.join(", ")
        )
    })
}
