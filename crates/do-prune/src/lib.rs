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
//! Phases live in their own files: `policy.rs` and `closure.rs` (pure planning), `plan.rs`
//! (planning with reads), `protect.rs` (what must stay), `usage.rs`, `apply.rs`, `report.rs`.

mod apply;
pub mod artifacts;
mod cli;
pub mod closure;
mod plan;
pub mod policy;
mod protect;
mod reads;
mod report;
pub mod usage;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;
use do_core::api::{has_status, segment};
use do_core::contract::Output;
use do_core::oci::RegistryClient;
use do_core::progress::Progress;
use do_core::types::{GcType, Manifest, Registry, Repository, Subscription};
use do_core::{validate, Client, Exit, Failure};
use serde::{Deserialize, Serialize};

pub use cli::{Cli, GcMode};
use plan::{Planned, RepositoryPlan, Rules, Skipped};
use policy::{Action, Policy};
use protect::{Reference, SpecImage};
use reads::Reads;
use report::{PruneRecord, Usage};

const TOOL: &str = "do-prune";
const PLAN_VERSION: u64 = 2;
const RECORD_VERSION: u64 = 2;
/// How long the registry credentials for reading manifests live.
const READ_CREDENTIALS_EXPIRY: Duration = Duration::from_secs(900);

/// A plan as `--plan-out` saves it and `--apply` reads it.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SavedPlan {
    pub version: u64,
    pub registry: String,
    pub created_at: String,
    pub policy: Policy,
    pub repositories: Vec<RepositoryPlan>,
}

pub fn main() -> i32 {
    do_core::exit::run_main(TOOL, || run(Cli::parse()))
}

/// Everything a run works with once the flags and input are checked.
pub(crate) struct Prune<'a> {
    cli: &'a Cli,
    client: &'a Client,
    progress: &'a Progress,
    registry: String,
    registry_path: String,
    references: Vec<Reference>,
    record_tags: Vec<(String, String)>,
    policy: Policy,
    patterns: Vec<regex::Regex>,
    saved: Option<SavedPlan>,
    now: i64,
    grace_cutoff: i64,
    deadline: Instant,
}

pub fn run(cli: Cli) -> anyhow::Result<Exit> {
    // Everything given is checked before the first request.
    let deadline = Instant::now() + cli.timeout;
    let input = cli.io.read_input(deadline)?;
    let loopback = do_core::api::is_loopback_url(&cli.api.api_url);
    do_core::cli::check_duration("--timeout", cli.timeout, loopback)?;
    do_core::cli::check_duration("--interval", cli.interval, loopback)?;
    if let Some(registry) = &cli.registry {
        validate::registry_name(registry)?;
    }
    for repository in &cli.repository {
        validate::repository_name(repository)?;
    }
    for app in &cli.protect_app {
        validate::app_reference(app, "--protect-app")?;
    }
    let protect::InputProtection { references, tags: record_tags } = protect::from_input(&input)?;
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
    let patterns = policy::compile_keep_tags(&policy.keep_tags).map_err(Failure::usage)?;
    if let Some(saved) = &saved {
        check_saved_entries(saved, &patterns)?;
        if let Some(flag) = cli.registry.as_deref().filter(|flag| *flag != saved.registry) {
            return Err(Failure::usage(format!(
                "--registry {flag} differs from the saved plan's registry {}",
                saved.registry
            )));
        }
    }
    let registry_url = cli.registry_url.as_deref();
    let progress = cli.io.progress(TOOL);
    let client = cli.api.client(progress.clone())?;
    let registry_url = do_core::oci::registry_url_for(client.base_url(), registry_url)?;
    client.set_deadline(deadline);
    let mut output = Output::stdout();
    output.pass_through(&input)?;

    let registries: Vec<Registry> = client.get_object("/v2/registries", "registries")?;
    let registry = do_core::registry::choose(
        &registries,
        cli.registry.as_deref().or(saved.as_ref().map(|s| s.registry.as_str())),
    )?
    .clone();
    let now = jiff::Timestamp::now().as_second();
    let prune = Prune {
        cli: &cli,
        client: &client,
        progress: &progress,
        registry_path: format!("/v2/registries/{}", segment(&registry.name)),
        registry: registry.name.clone(),
        references,
        record_tags,
        policy,
        patterns,
        saved,
        now,
        grace_cutoff: now - cli.untagged_grace.as_secs() as i64,
        deadline,
    };
    prune.run(&registry, &registry_url, &mut output)
}

impl Prune<'_> {
    fn run(
        &self,
        registry: &Registry,
        registry_url: &str,
        output: &mut Output<std::io::Stdout>,
    ) -> anyhow::Result<Exit> {
        let cli = self.cli;
        // Gather: every repository, whatever --repository says, since GC covers the registry.
        let listings = self.list_everything()?;
        let chosen = cli.registry.is_some() || self.saved.is_some();
        for warning in
            protect::check_references(&self.references, &self.registry, chosen, listings.keys().map(String::as_str))?
        {
            self.progress.warn(&warning);
        }
        let selected = self.selected_repositories(&listings)?;
        let images = protect::from_apps(self.client, &self.registry, &cli.protect_app, cli.keep_rollback)?;
        let reader = RegistryClient::from_api(
            self.client,
            &self.registry,
            registry_url,
            READ_CREDENTIALS_EXPIRY,
            false,
            Arc::new(Progress::new(TOOL, cli.io.quiet, cli.io.verbose)),
        )
        .context(
            "cannot read manifests from the registry, which deciding what is safe to delete needs; nothing was deleted",
        )?;
        let reads = Reads::new(&reader, usize::from(cli.concurrency), self.progress);

        // Plan.
        let mut planned = self.plan_all(&selected, &listings, &images, &reads, None)?;
        let mut usage = self.usage_before(registry, &listings)?;
        let mut limit = None;
        if let (Some(percent), Some(included)) = (cli.target_usage, usage.included_bytes) {
            let chosen = self.trim_to_target(&planned, &listings, &reads, included * u64::from(percent) / 100)?;
            planned = self.plan_all(&selected, &listings, &images, &reads, Some(&chosen))?;
            limit = Some(chosen);
        }
        let gc_type = self.gc_type(&planned, &selected, &listings, &images, &reads)?;
        let gone: BTreeSet<(&str, &str)> = planned
            .iter()
            .flat_map(|p| {
                p.plan
                    .deleted
                    .iter()
                    .filter(|d| d.action == Action::Manifest)
                    .map(move |d| (p.plan.name.as_str(), d.digest.as_str()))
            })
            .collect();
        let gone = &gone;
        let after = usage::unique_blob_bytes(listings.iter().flat_map(|(name, manifests)| {
            manifests.iter().filter(move |m| !gone.contains(&(name.as_str(), m.digest.as_str())))
        }));
        usage.estimated_after_bytes = Some(after);
        usage.estimated_after_percent = report::percent_of(Some(after), usage.included_bytes);
        for planned in &planned {
            for (digest, updated_at) in
                planned.plan.kept.iter().filter(|k| k.reason.contains("cannot be read")).map(|k| (&k.digest, &k.reason))
            {
                self.progress.warn(&format!("{} {}: {updated_at}", planned.plan.name, closure::short(digest)));
            }
        }
        let unlisted: usize = planned.iter().map(|p| p.closure.unlisted.len()).sum();
        let indexes_read = planned.iter().any(|p| {
            reads.with(&p.plan.name, |r| r.values().any(|r| matches!(r, closure::Read::Info(i) if i.is_index())))
        });
        if unlisted > 0 {
            self.progress.warn(&format!(
                "the API listing does not show {unlisted} manifest(s) that kept indexes hold; the children of deleted indexes stay in the registry, and GC stays \"unreferenced blobs only\""
            ));
        }
        for missing in planned.iter().flat_map(|p| p.closure.missing.iter().map(move |d| (&p.plan.name, d))) {
            self.progress.warn(&format!(
                "{}: a kept image holds {}, which the registry does not have (the image is already broken)",
                missing.0, missing.1
            ));
        }

        let deletion_count: usize = planned.iter().map(|p| p.plan.deleted.len()).sum();
        if let Some(limit) = cli.max_delete {
            if deletion_count > limit {
                return Err(Failure::usage(format!(
                    "the plan has {deletion_count} deletions, more than --max-delete {limit}; nothing was deleted (raise the limit or keep more)"
                )));
            }
        }
        let plans: Vec<RepositoryPlan> = planned.iter().map(|p| p.plan.clone()).collect();
        report::print_table(self.progress, &plans, &usage, !cli.execute);
        let mut record = PruneRecord {
            registry: self.registry.clone(),
            dry_run: !cli.execute,
            policy: self.policy.clone(),
            usage,
            repositories: plans,
            failed: Vec::new(),
            skipped: planned.iter().flat_map(|p| p.skipped.iter().cloned()).collect::<Vec<Skipped>>(),
            kept_at_recheck: Vec::new(),
            index_children_listed: indexes_read.then_some(unlisted == 0),
            referrers_api: reads.referrers_api(),
            gc: None,
            requests: 0,
            registry_requests: 0,
        };
        if let Some(path) = &cli.plan_out {
            let saved = SavedPlan {
                version: PLAN_VERSION,
                registry: self.registry.clone(),
                created_at: do_core::duration::now_rfc3339(),
                policy: self.policy.clone(),
                repositories: record.repositories.clone(),
            };
            std::fs::write(path, do_core::redact::redact(&serde_json::to_string_pretty(&saved)?) + "\n")
                .with_context(|| format!("cannot write --plan-out {}", path.display()))?;
            self.progress.info(&format!("plan saved to {}", path.display()));
        }
        if !cli.execute {
            if let Some(gc) = apply::active_gc(self.client, &self.registry)? {
                self.progress.info(&format!(
                    "garbage collection {} is running ({}); an executed prune waits for it before deleting",
                    gc.uuid, gc.status
                ));
            }
            record.requests = self.client.requests_made();
            record.registry_requests = reader.requests_made();
            output.emit("prune", RECORD_VERSION, &record)?;
            report::github_outputs(&record)?;
            self.progress.info("dry run: nothing was deleted; add --execute to delete");
            return blocked_error(&record).map_or(Ok(Exit::Done), Err);
        }

        // Apply: the record is written whatever happens from here on.
        let outcome = self.apply(&mut planned, &listings, &reads, limit.as_ref(), &gc_type, &mut record);
        record.repositories = planned.iter().map(|p| p.plan.clone()).collect();
        record.requests = self.client.requests_made();
        record.registry_requests = reader.requests_made();
        output.emit("prune", RECORD_VERSION, &record)?;
        report::github_outputs(&record)?;
        let exit = outcome?;
        if !record.failed.is_empty() {
            return Err(anyhow::anyhow!(
                "{} of {} deletions failed (listed in the record); rerun to retry them",
                record.failed.len(),
                record.repositories.iter().map(|r| r.deleted.len()).sum::<usize>()
            ));
        }
        if let Some(error) = blocked_error(&record) {
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

    /// Every repository of the registry with its manifests, listed `--concurrency` requests at
    /// a time (repositories at once, and the pages of each once the first gives the total).
    fn list_everything(&self) -> anyhow::Result<BTreeMap<String, Vec<Manifest>>> {
        let repositories: Vec<Repository> =
            self.client.get_all(&format!("{}/repositoriesV2", self.registry_path), "repositories")?;
        let names: Vec<String> = repositories.into_iter().map(|r| r.name).collect();
        let paths: Vec<String> = names.iter().map(|name| self.digests_path(name)).collect();
        let listings = self
            .client
            .get_all_concurrently(&paths, "manifests", usize::from(self.cli.concurrency))
            .map_err(|error| self.missing_repository(error, &names))?;
        Ok(names.into_iter().zip(listings.into_iter().map(normalized)).collect())
    }

    /// A 404 on a listing names the repository: it is not (or no longer) in the registry.
    fn missing_repository(&self, error: anyhow::Error, names: &[String]) -> anyhow::Error {
        let failed = error.downcast_ref::<do_core::api::FailedListing>().and_then(|f| names.get(f.index));
        match failed {
            Some(name) if has_status(&error, 404) => {
                Failure::usage(format!("repository {name:?} is not in registry {}", self.registry))
            }
            _ => error,
        }
    }

    fn digests_path(&self, name: &str) -> String {
        format!("{}/repositories/{}/digests", self.registry_path, segment(name))
    }

    pub(crate) fn list_repository(&self, name: &str) -> anyhow::Result<Vec<Manifest>> {
        let paths = [self.digests_path(name)];
        let mut listings = self
            .client
            .get_all_concurrently(&paths, "manifests", usize::from(self.cli.concurrency))
            .map_err(|error| self.missing_repository(error, &[name.to_string()]))?;
        Ok(normalized(listings.pop().unwrap_or_default()))
    }

    /// The repositories to prune: --repository, the saved plan's, or all.
    fn selected_repositories(&self, listings: &BTreeMap<String, Vec<Manifest>>) -> anyhow::Result<Vec<String>> {
        let named: Vec<String> = match &self.saved {
            Some(saved) => return Ok(saved.repositories.iter().map(|r| r.name.clone()).collect()),
            None if self.cli.repository.is_empty() => return Ok(listings.keys().cloned().collect()),
            None => self.cli.repository.clone(),
        };
        for name in &named {
            if !listings.contains_key(name) {
                return Err(Failure::usage(format!(
                    "repository {name:?} is not in registry {} (it has: {})",
                    self.registry,
                    listings.keys().cloned().collect::<Vec<_>>().join(", ")
                )));
            }
        }
        Ok(named)
    }

    pub(crate) fn protected(&self, images: &[SpecImage], name: &str, listing: &[Manifest]) -> policy::Protected {
        protect::resolve(&self.references, &self.record_tags, images, &self.registry, name, listing)
    }

    pub(crate) fn rules<'b>(&'b self, name: &str, limit: Option<&'b BTreeSet<String>>) -> Rules<'b> {
        match &self.saved {
            Some(saved) => Rules::Saved {
                entries: saved
                    .repositories
                    .iter()
                    .find(|r| r.name == name)
                    .expect("saved repositories are the selected ones"),
                policy: &self.policy,
            },
            None => Rules::Policy { policy: &self.policy, patterns: &self.patterns, now: self.now, limit },
        }
    }

    /// Plans one repository; `listings` are every repository's, to tell an artifact whose
    /// subject lives in another repository from an orphan.
    pub(crate) fn plan_one(
        &self,
        name: &str,
        listing: &[Manifest],
        listings: &BTreeMap<String, Vec<Manifest>>,
        images: &[SpecImage],
        reads: &Reads,
        limit: Option<&BTreeSet<String>>,
    ) -> anyhow::Result<Planned> {
        let protected = self.protected(images, name, listing);
        let elsewhere = |digest: &str| {
            listings
                .iter()
                .find(|(other, manifests)| *other != name && manifests.iter().any(|m| m.digest == digest))
                .map(|(other, _)| other.clone())
        };
        let setting = plan::Setting {
            grace_cutoff: self.grace_cutoff,
            keep_artifacts: self.cli.keep_artifacts,
            elsewhere: &elsewhere,
        };
        plan::plan_repository(name, listing, &protected, &self.rules(name, limit), &setting, reads)
    }

    fn plan_all(
        &self,
        selected: &[String],
        listings: &BTreeMap<String, Vec<Manifest>>,
        images: &[SpecImage],
        reads: &Reads,
        limit: Option<&BTreeSet<String>>,
    ) -> anyhow::Result<Vec<Planned>> {
        // Repositories are planned side by side; `reads` keeps the manifest reads within --concurrency.
        let empty = Vec::new();
        do_core::concurrent::try_map(selected, usize::from(self.cli.concurrency), |name| {
            self.plan_one(name, listings.get(name).unwrap_or(&empty), listings, images, reads, limit)
        })
    }

    /// Usage before, from the listing; the included storage from the subscription. Without
    /// it, --target-usage cannot work and is a usage error.
    fn usage_before(&self, registry: &Registry, listings: &BTreeMap<String, Vec<Manifest>>) -> anyhow::Result<Usage> {
        let included_of = |s: &Subscription| s.tier.as_ref().and_then(|t| t.included_storage_bytes);
        let mut included = registry.subscription.as_ref().and_then(included_of);
        if included.is_none() && self.cli.target_usage.is_some() {
            let subscription: Option<Subscription> =
                self.client.get_object_or_none("/v2/registries/subscription", "subscription")?;
            included = subscription.as_ref().and_then(included_of);
        }
        if self.cli.target_usage.is_some() && included.is_none() {
            return Err(Failure::usage(
                "--target-usage needs the subscription's included storage, which the API did not give; nothing was deleted",
            ));
        }
        let before = usage::unique_blob_bytes(listings.values().flatten());
        Ok(Usage {
            before_bytes: Some(before),
            reported_bytes: registry.storage_usage_bytes,
            included_bytes: included,
            estimated_after_bytes: None,
            before_percent: report::percent_of(Some(before), included),
            estimated_after_percent: None,
        })
    }

    /// The tagged manifests to delete whole for --target-usage: oldest first, across
    /// repositories, only as many as bring the estimated usage to the target.
    fn trim_to_target(
        &self,
        planned: &[Planned],
        listings: &BTreeMap<String, Vec<Manifest>>,
        reads: &Reads,
        target: u64,
    ) -> anyhow::Result<BTreeSet<String>> {
        let mut candidates: Vec<(i64, &str, &str)> = planned
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
                            d.digest.as_str(),
                        )
                    })
            })
            .collect();
        candidates.sort();
        // Learn what every candidate holds, as if all were kept.
        for planned in planned {
            let mut roots = planned.roots.clone();
            for (_, _, digest) in candidates.iter().filter(|(_, name, _)| *name == planned.plan.name) {
                roots.entry(digest.to_string()).or_insert_with(String::new);
            }
            if let Some(listing) = listings.get(&planned.plan.name) {
                reads.closure(&planned.plan.name, listing, &roots, &planned.tag_artifacts)?;
            }
        }
        let usage_after = |k: usize| {
            let going: BTreeSet<(&str, &str)> =
                candidates[..k].iter().map(|(_, name, digest)| (*name, *digest)).collect();
            let mut gone: BTreeSet<(String, String)> = BTreeSet::new();
            for planned in planned {
                let name = planned.plan.name.as_str();
                let Some(listing) = listings.get(name) else { continue };
                let mut roots = planned.roots.clone();
                for (_, _, digest) in candidates[k..].iter().filter(|(_, n, _)| *n == name) {
                    roots.entry(digest.to_string()).or_insert_with(String::new);
                }
                let closure = reads.closure_now(name, listing, &roots, &planned.tag_artifacts);
                gone.extend(closure.outside.into_iter().map(|d| (name.to_string(), d)));
            }
            usage::unique_blob_bytes(listings.iter().flat_map(|(name, manifests)| {
                let gone = &gone;
                let going = &going;
                manifests.iter().filter(move |m| {
                    !going.contains(&(name.as_str(), m.digest.as_str()))
                        && !gone.contains(&(name.clone(), m.digest.clone()))
                })
            }))
        };
        let k = usage::deletions_for_target(candidates.len(), target, usage_after);
        if usage_after(k) > target {
            self.progress
                .warn("--target-usage cannot be reached with what the rules allow to delete; deleting all of that");
        }
        Ok(candidates[..k].iter().map(|(_, _, digest)| digest.to_string()).collect())
    }

    /// The GC type: "unreferenced blobs only" unless the user asked for an untagged type, which
    /// is allowed only when no repository of the registry needs an untagged manifest.
    fn gc_type(
        &self,
        planned: &[Planned],
        selected: &[String],
        listings: &BTreeMap<String, Vec<Manifest>>,
        images: &[SpecImage],
        reads: &Reads,
    ) -> anyhow::Result<String> {
        let requested = self.cli.gc_type.clone();
        if self.cli.gc == GcMode::Off || GcType::from(requested.as_str()) == GcType::UnreferencedBlobsOnly {
            return Ok(requested);
        }
        // Repositories not pruned keep everything: their closure is that of every tagged manifest.
        let mut others = Vec::new();
        for (name, listing) in listings.iter().filter(|(name, _)| !selected.contains(name)) {
            others.push((name.as_str(), self.everything_kept(name, listing, images, reads)?, listing.as_slice()));
        }
        let empty = Vec::new();
        let mut all: Vec<(&str, &closure::Closure, &[Manifest])> = planned
            .iter()
            .map(|p| (p.plan.name.as_str(), &p.closure, listings.get(&p.plan.name).unwrap_or(&empty).as_slice()))
            .collect();
        all.extend(others.iter().map(|(name, closure, listing)| (*name, closure, *listing)));
        match plan::untagged_gc_refusal(&all) {
            None => Ok(requested),
            Some(why) => Err(Failure::usage(format!(
                "refusing --gc-type {requested:?}: {why}; nothing was deleted (the default \"unreferenced blobs only\" is safe, and do-prune deletes unneeded untagged manifests itself)"
            ))),
        }
    }

    /// The closure of a repository if nothing in it were deleted: every tagged manifest, what
    /// `images` protect, and untagged ones within the grace period.
    fn everything_kept(
        &self,
        name: &str,
        listing: &[Manifest],
        images: &[SpecImage],
        reads: &Reads,
    ) -> anyhow::Result<closure::Closure> {
        let protected = self.protected(images, name, listing);
        let mut roots: BTreeMap<String, String> =
            listing.iter().filter(|m| !m.tags.is_empty()).map(|m| (m.digest.clone(), "tagged".to_string())).collect();
        roots.extend(protected.digests);
        for manifest in
            listing.iter().filter(|m| m.tags.is_empty() && policy::epoch(m).is_none_or(|at| at >= self.grace_cutoff))
        {
            roots.insert(manifest.digest.clone(), "untagged and pushed within --untagged-grace".into());
        }
        reads.closure(name, listing, &roots, &artifacts::by_tags(listing))
    }

    /// The GC type decided again, after the deletions, over the registry as it is now and what
    /// the apps need now (read again right before deleting): an untagged type that became unsafe
    /// since the plan (an app now runs an untagged manifest) gives way to "unreferenced blobs
    /// only", said on stderr. Only an untagged type costs the listing again.
    pub(crate) fn gc_type_now(&self, decided: &str, images: &[SpecImage], reads: &Reads) -> anyhow::Result<String> {
        if GcType::from(decided) == GcType::UnreferencedBlobsOnly {
            return Ok(decided.to_string());
        }
        let listings = self.list_everything()?;
        let mut all = Vec::new();
        for (name, listing) in &listings {
            all.push((name.as_str(), self.everything_kept(name, listing, images, reads)?, listing.as_slice()));
        }
        let closures: Vec<(&str, &closure::Closure, &[Manifest])> = all.iter().map(|(n, c, l)| (*n, c, *l)).collect();
        Ok(match plan::untagged_gc_refusal(&closures) {
            None => decided.to_string(),
            Some(why) => {
                let safe = "unreferenced blobs only";
                self.progress.warn(&format!(
                    "not starting a GC of type {decided:?} after all: {why} (it changed since the plan); starting {safe:?} instead"
                ));
                safe.to_string()
            }
        })
    }
}

/// Digests as the registry host writes them, whatever case the listing used.
fn normalized(mut manifests: Vec<Manifest>) -> Vec<Manifest> {
    for manifest in &mut manifests {
        manifest.digest = do_core::oci::normalize_digest(&manifest.digest);
    }
    manifests
}

/// A run where some repository could not be planned safely did not do all it was asked: exit 1.
fn blocked_error(record: &PruneRecord) -> Option<anyhow::Error> {
    let blocked: Vec<&str> =
        record.repositories.iter().filter(|r| r.blocked.is_some()).map(|r| r.name.as_str()).collect();
    (!blocked.is_empty()).then(|| {
        anyhow::anyhow!(
            "nothing was deleted in {}: manifests could not be read from the registry (the record says which); rerun when the registry answers",
            blocked.join(", ")
        )
    })
}

fn read_plan(path: &std::path::Path) -> anyhow::Result<SavedPlan> {
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
            validate::digest(deletion)?;
        }
        for tag in repository.deleted.iter().flat_map(|d| d.tags.iter().chain(d.all_tags.iter())) {
            validate::tag_name(tag)?;
        }
    }
    Ok(plan)
}

/// A saved plan's entries must make sense on their own: an entry that would strip tags the
/// plan keeps, or that could never have come from do-prune, is refused before any request.
fn check_saved_entries(plan: &SavedPlan, keep_patterns: &[regex::Regex]) -> anyhow::Result<()> {
    for repository in &plan.repositories {
        let bad = |digest: &str, why: String| {
            Failure::usage(format!(
                "--apply: the entry for {}@{} is inconsistent: {why}; nothing was deleted",
                repository.name,
                closure::short(digest)
            ))
        };
        let kept: BTreeSet<&str> = repository.kept.iter().map(|k| k.digest.as_str()).collect();
        let mut seen = BTreeSet::new();
        for entry in &repository.deleted {
            if !seen.insert((entry.digest.as_str(), entry.action)) {
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
                Action::Manifest if kept.contains(entry.digest.as_str()) => {
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
