//! do-gc-wait: waits until no registry garbage collection runs.

mod cli;

use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;
use do_core::api::segment;
use do_core::poll::{Check, Poller};
use do_core::progress::Progress;
use do_core::types::{GarbageCollection, GcStatus, Registry};
use do_core::{validate, Client, Exit, Failure};
use serde::Serialize;

pub use cli::Cli;

const TOOL: &str = "do-gc-wait";

/// The `gc-wait` record, v1.
#[derive(Debug, Serialize)]
pub struct GcWaitRecord {
    pub registry: String,
    /// `clear`, `succeeded`, `failed`, `cancelled` or `timeout`.
    pub outcome: String,
    pub waited_ms: u64,
    pub polls: u32,
    /// The GC that was seen last, or null when none ran.
    pub gc: Option<SeenGc>,
    /// Whether this run cancelled it (`--cancel-after`).
    pub cancelled: bool,
}

#[derive(Debug, Serialize)]
pub struct SeenGc {
    pub uuid: String,
    pub status: String,
    /// The API does not return the type of a GC; null unless it does.
    #[serde(rename = "type")]
    pub gc_type: Option<String>,
    pub created_at: Option<String>,
    pub updated_at: Option<String>,
    pub blobs_deleted: Option<u64>,
    pub freed_bytes: Option<u64>,
}

impl From<&GarbageCollection> for SeenGc {
    fn from(gc: &GarbageCollection) -> SeenGc {
        SeenGc {
            uuid: gc.uuid.clone(),
            status: gc.status.to_string(),
            gc_type: gc.gc_type.as_ref().map(ToString::to_string),
            created_at: gc.created_at.clone(),
            updated_at: gc.updated_at.clone(),
            blobs_deleted: gc.blobs_deleted,
            freed_bytes: gc.freed_bytes,
        }
    }
}

pub fn main() -> i32 {
    do_core::exit::run_main(TOOL, || run(Cli::parse()))
}

pub fn run(cli: Cli) -> anyhow::Result<Exit> {
    if let Some(shell) = cli.io.completions {
        return do_core::cli::print_completions::<Cli>(shell, TOOL);
    }
    let start = do_core::start::begin(&cli.io, cli.timeout)?;
    let flags = [("--timeout", cli.timeout), ("--interval", cli.interval), ("--max-interval", cli.max_interval)];
    do_core::start::check_durations(&cli.api, &flags)?;
    let registry_from_input = start.input.last("image").and_then(|record| record.str("registry")).map(str::to_string);
    let registry = cli.registry.clone().or(registry_from_input);
    if let Some(name) = &registry {
        validate::registry_name(name)?;
    }
    let progress = cli.io.progress(TOOL);
    let (client, mut output) = start.connect(&cli.api, &progress)?;
    let registry = match registry {
        Some(name) => confirm_registry(&client, &name)?,
        None => do_core::registry::find(&client, None)?.name,
    };
    let poller = Poller { interval: cli.interval, max_interval: cli.max_interval, deadline: start.deadline };
    let waited = wait(&client, &progress, &registry, &poller, cli.cancel_after)?;
    let outcome = match (&waited.polled.outcome, &waited.last_seen) {
        (None, _) => "timeout".to_string(),
        (Some(()), None) => "clear".to_string(),
        (Some(()), Some(gc)) if gc.status.is_terminal() => gc.status.to_string(),
        // It ended between looks and the list did not say how.
        (Some(()), Some(_)) => "ended".to_string(),
    };
    let record = GcWaitRecord {
        registry: registry.clone(),
        outcome,
        waited_ms: waited.polled.waited.as_millis() as u64,
        polls: waited.polled.polls,
        gc: waited.last_seen.as_ref().map(SeenGc::from),
        cancelled: waited.cancelled,
    };
    output.emit("gc-wait", 1, &record)?;
    report(&progress, &record, waited.last_seen.as_ref(), waited.polled.waited);
    github_outputs(&record, waited.polled.waited)?;
    if waited.polled.outcome.is_none() {
        return Err(Failure::deadline(format!(
            "garbage collection still running on {registry} after {}; rerun later, raise --timeout, or use --cancel-after",
            do_core::duration::human(cli.timeout)
        )));
    }
    Ok(Exit::Done)
}

/// How the wait went: the polls, the GC last seen, whether it was cancelled.
struct Waited {
    polled: do_core::poll::Polled<()>,
    last_seen: Option<GarbageCollection>,
    cancelled: bool,
}

/// Waits until no GC runs on `registry` (or the deadline), cancelling one active for longer than
/// `cancel_after` once.
fn wait(
    client: &Client,
    progress: &Progress,
    registry: &str,
    poller: &Poller,
    cancel_after: Option<Duration>,
) -> anyhow::Result<Waited> {
    let gc_path = format!("/v2/registries/{}/garbage-collection", segment(registry));
    let mut last_seen: Option<GarbageCollection> = None;
    let mut cancelled = false;
    let mut first_seen_at: Option<Instant> = None;
    let polled = poller.run(progress, || {
        let Some(gc) = client.get_object_or_none::<GarbageCollection>(&gc_path, "garbage_collection")? else {
            // Gone between two looks: its entry in the list tells how it ended.
            if let Some(seen) = last_seen.take() {
                last_seen = Some(ended_gc(client, registry, &seen.uuid)?.unwrap_or(seen));
            }
            return Ok(Check::Done(()));
        };
        let seen_at = *first_seen_at.get_or_insert_with(Instant::now);
        let state = format!("garbage collection {} is {}", gc.uuid, gc.status);
        if gc.status.is_terminal() {
            last_seen = Some(gc);
            return Ok(Check::Done(()));
        }
        if let Some(limit) = cancel_after {
            if !cancelled && gc.status != GcStatus::Cancelling && gc_age(&gc, seen_at) > limit {
                let over = do_core::duration::human(limit);
                progress.info(&format!("cancelling garbage collection {} (active for more than {over})", gc.uuid));
                let cancel_path = format!("{gc_path}/{}", segment(&gc.uuid));
                client
                    .put::<GarbageCollection>(&cancel_path, &serde_json::json!({"cancel": true}), "garbage_collection")
                    .context("could not cancel the garbage collection")?;
                cancelled = true;
            }
        }
        last_seen = Some(gc);
        Ok(Check::Waiting(state))
    })?;
    Ok(Waited { polled, last_seen, cancelled })
}

fn github_outputs(record: &GcWaitRecord, waited: Duration) -> anyhow::Result<()> {
    let Some(github) = do_core::github::GitHub::from_env() else { return Ok(()) };
    github
        .outputs(&[
            ("registry", record.registry.clone()),
            ("gc_outcome", record.outcome.clone()),
            ("waited_ms", record.waited_ms.to_string()),
        ])
        .and_then(|()| {
            github.summary(&format!(
                "### do-gc-wait\n\n| registry | garbage collection | waited |\n|---|---|---|\n| {} | {} | {} |\n",
                record.registry,
                record.outcome,
                do_core::duration::human(waited)
            ))
        })
        .context("cannot write the GitHub Actions output files")
}

/// How long a GC has been active: from its `created_at`, or else from when we first saw it.
fn gc_age(gc: &GarbageCollection, first_seen: Instant) -> Duration {
    let created = gc.created_at.as_deref().and_then(do_core::duration::parse_timestamp);
    match created {
        Some(created) => {
            let seconds = jiff::Timestamp::now().duration_since(created).as_secs_f64().max(0.0);
            Duration::from_secs_f64(seconds).max(first_seen.elapsed())
        }
        None => first_seen.elapsed(),
    }
}

fn report(progress: &Progress, record: &GcWaitRecord, gc: Option<&GarbageCollection>, waited: Duration) {
    let registry = &record.registry;
    match (record.outcome.as_str(), gc) {
        ("clear", _) => progress.info(&format!("no garbage collection running on {registry}")),
        ("timeout", _) => {}
        ("failed", Some(gc)) => progress.warn(&format!(
            "garbage collection {} failed; {registry} is writable again (waited {})",
            gc.uuid,
            do_core::duration::human(waited)
        )),
        ("cancelled", Some(gc)) => progress.warn(&format!(
            "garbage collection {} was cancelled; {registry} is writable again (waited {})",
            gc.uuid,
            do_core::duration::human(waited)
        )),
        (outcome, _) => progress.info(&format!(
            "garbage collection {outcome}; {registry} is writable (waited {})",
            do_core::duration::human(waited)
        )),
    }
}

/// The final state of a GC that is no longer active, from the newest page of the GC list.
fn ended_gc(client: &Client, registry: &str, uuid: &str) -> anyhow::Result<Option<GarbageCollection>> {
    let path = format!("/v2/registries/{}/garbage-collections?page=1&per_page=20", segment(registry));
    let recent: Vec<GarbageCollection> = client.get_object(&path, "garbage_collections")?;
    Ok(recent.into_iter().find(|gc| gc.uuid == uuid && gc.status.is_terminal()))
}

/// A registry named by the user must exist: otherwise the 404 of "no active GC" would
/// hide a typo and we would fail open.
fn confirm_registry(client: &Client, name: &str) -> anyhow::Result<String> {
    let path = format!("/v2/registries/{}", segment(name));
    match client.get_object_or_none::<Registry>(&path, "registry")? {
        Some(_) => Ok(name.to_string()),
        None => {
            let listed: Vec<Registry> = client.get_object("/v2/registries", "registries").unwrap_or_default();
            let names: Vec<&str> = listed.iter().map(|r| r.name.as_str()).collect();
            let has = if names.is_empty() { "no registry".to_string() } else { names.join(", ") };
            // A name that does not exist is bad input, as in every tool: exit 2.
            Err(do_core::Failure::usage(format!(
                "registry {name:?} does not exist in this account, which has: {has}; check --registry"
            )))
        }
    }
}
