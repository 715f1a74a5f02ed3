//! `cargo xtask bench`: figures that tests must not time. The load benchmark prunes thousands
//! of manifests against a simulator whose rate limit is scaled down, and compares the time it
//! took with the least time the limit allows.

use std::process::Command;
use std::time::Instant;

use anyhow::Context;
use serde::Serialize;
use serde_json::json;

use crate::release::Binaries;

#[derive(Debug, Serialize)]
pub struct LoadFigures {
    pub deletions: usize,
    pub deleted: usize,
    pub failed: usize,
    /// Requests the simulator accepted (listing, deletions).
    pub accepted_requests: usize,
    /// Requests it answered with 429 (retried by the client).
    pub rejected_429: usize,
    pub limit_per_window: u64,
    pub window_seconds: f64,
    /// From the first accepted request to the last.
    pub elapsed_seconds: f64,
    /// The least time the sliding window allows for the accepted requests.
    pub ideal_seconds: f64,
    /// ideal / elapsed: 1.0 is the limit itself.
    pub throughput_of_limit: f64,
    pub requests_per_second: f64,
    pub wall_seconds: f64,
}

/// Prunes `deletions` expired manifests with a burst limit of `per_window` requests per
/// `60 × scale` seconds.
pub fn prune_load(binaries: &Binaries, deletions: usize, per_window: u64, scale: f64) -> anyhow::Result<LoadFigures> {
    let manifests: Vec<serde_json::Value> =
        (0..=deletions).map(|i| json!({"tags": [format!("v{i}")], "size_bytes": 1024})).collect();
    let seed: do_sim::Seed = serde_json::from_value(json!({
        "registries": [{"name": "bench", "tier": "professional", "repositories": [{"name": "web", "manifests": manifests}]}],
        "rate_limit": {"per_hour": 1_000_000, "per_minute": per_window, "window_scale": scale},
    }))?;
    let sim = do_sim::Sim::start("127.0.0.1:0", seed.into_state(do_sim::DEFAULT_TOKEN, Default::default())?)?;
    let started = Instant::now();
    let output = Command::new(&binaries.prune)
        .args(["--keep-last", "1", "--execute", "--gc", "off", "--concurrency", "4", "-q"])
        .env("DIGITALOCEAN_API_URL", sim.url())
        .env("DIGITALOCEAN_ACCESS_TOKEN", sim.token())
        .env("DO_RELEASE_RETRY_MAX_TIME", "10m")
        .stdin(std::process::Stdio::null())
        .output()
        .context("cannot run do-prune")?;
    let wall_seconds = started.elapsed().as_secs_f64();
    anyhow::ensure!(output.status.success(), "do-prune failed: {}", String::from_utf8_lossy(&output.stderr));
    let record: serde_json::Value = serde_json::from_slice(&output.stdout).context("do-prune's record")?;
    let log = sim.requests();
    let accepted: Vec<&do_sim::LoggedRequest> = log.iter().filter(|r| r.status != 429 && r.status != 0).collect();
    let rejected = log.iter().filter(|r| r.status == 429).count();
    let deleted = log.iter().filter(|r| r.method == "DELETE" && r.status == 204).count();
    let first = accepted.first().map(|r| r.at_ms).unwrap_or(0);
    let last = accepted.last().map(|r| r.at_ms).unwrap_or(0);
    let elapsed_seconds = (last - first) as f64 / 1000.0;
    let window_seconds = 60.0 * scale;
    let windows = (accepted.len() as f64 / per_window as f64).ceil() - 1.0;
    let ideal_seconds = windows.max(0.0) * window_seconds;
    Ok(LoadFigures {
        deletions,
        deleted,
        failed: record["data"]["failed"].as_array().map_or(0, Vec::len),
        accepted_requests: accepted.len(),
        rejected_429: rejected,
        limit_per_window: per_window,
        window_seconds,
        elapsed_seconds,
        ideal_seconds,
        throughput_of_limit: if elapsed_seconds > 0.0 { ideal_seconds / elapsed_seconds } else { 0.0 },
        requests_per_second: accepted.len() as f64 / elapsed_seconds.max(0.001),
        wall_seconds,
    })
}

/// What a prune of issue 10's scenario costs, request by request, with the bound it must keep.
#[derive(Debug, Serialize)]
pub struct EconomyFigures {
    pub manifests: usize,
    /// Expired indexes, their children and unreferenced untagged manifests: what must go.
    pub expected_deletions: usize,
    pub deletions: usize,
    /// Manifests still in the registry that the run should have kept, and are fully readable.
    pub kept_readable: usize,
    /// Listing pages: repositoriesV2 and digests, to plan and again right before deleting.
    pub listing_pages: usize,
    /// App list and deployment pages, to plan and again right before deleting.
    pub app_reads: usize,
    /// GETs of manifests on the registry host.
    pub manifest_reads: usize,
    /// One read per kept image and per untagged manifest outside the kept indexes.
    pub manifest_read_bound: usize,
    pub gc_calls: usize,
    /// The registry list and the registry credentials.
    pub other_api_requests: usize,
    /// The registry host's challenge and token requests.
    pub registry_auth_requests: usize,
    /// Every API request, and what the record says it made.
    pub api_requests: usize,
    pub recorded_requests: u64,
    pub wall_seconds: f64,
}

/// Issue 10's acceptance scenario: 500 tagged images pushed as indexes with 2 untagged children
/// each (an image and its attestation), 500 untagged manifests nothing references, 300 of the
/// indexes expired (`--keep-last 200`); an executed prune.
pub fn prune_economy(binaries: &Binaries) -> anyhow::Result<EconomyFigures> {
    let (indexes, expired, unreferenced) = (500usize, 300usize, 500usize);
    let mut manifests: Vec<serde_json::Value> =
        (0..unreferenced).map(|_| json!({"tags": [], "size_bytes": 2048})).collect();
    manifests.extend((0..indexes).map(|i| {
        json!({"tags": [format!("v1.{i}.0")], "size_bytes": 4096, "platforms": ["linux/amd64"], "attestations": true})
    }));
    let newest = format!("v1.{}.0", indexes - 1);
    let seed: do_sim::Seed = serde_json::from_value(json!({
        "registries": [{"name": "bench", "tier": "professional", "repositories": [{"name": "web", "manifests": manifests}]}],
        "apps": [{"spec": do_sim::default_app_spec("shop", "web", &newest)}],
        "rate_limit": {"per_hour": 1_000_000, "per_minute": 1_000_000, "window_scale": 1.0},
    }))?;
    let sim = do_sim::Sim::start("127.0.0.1:0", seed.into_state(do_sim::DEFAULT_TOKEN, Default::default())?)?;
    let started = Instant::now();
    let output = Command::new(&binaries.prune)
        .args(["--keep-last", "200", "--execute", "--gc", "start", "-q"])
        .env("DIGITALOCEAN_API_URL", sim.url())
        .env("DIGITALOCEAN_ACCESS_TOKEN", sim.token())
        .env_remove("DIGITALOCEAN_REGISTRY_URL")
        .stdin(std::process::Stdio::null())
        .output()
        .context("cannot run do-prune")?;
    let wall_seconds = started.elapsed().as_secs_f64();
    anyhow::ensure!(output.status.success(), "do-prune failed: {}", String::from_utf8_lossy(&output.stderr));
    let record: serde_json::Value = serde_json::from_slice(&output.stdout).context("do-prune's record")?;
    let log = sim.requests();
    let count = |test: &dyn Fn(&do_sim::LoggedRequest) -> bool| log.iter().filter(|r| test(r)).count();
    let registry_log = sim.registry_requests();
    let manifest_reads = registry_log.iter().filter(|r| r.method == "GET" && r.url.contains("/manifests/")).count();
    let snapshot = sim.snapshot();
    let remaining = snapshot["registries"][0]["repositories"][0]["manifests"].as_array().map_or(0, Vec::len);
    let kept_images = indexes - expired;
    let reader_client = crate::bench::sim_reader(&sim, "bench")?;
    let mut kept_readable = 0;
    for manifest in snapshot["registries"][0]["repositories"][0]["manifests"].as_array().into_iter().flatten() {
        if manifest["tags"].as_array().is_some_and(|t| !t.is_empty()) {
            let digest = manifest["digest"].as_str().unwrap_or_default();
            let info = reader_client.manifest("web", digest)?;
            for child in &info.children {
                reader_client.manifest("web", &child.digest)?;
            }
            kept_readable += 1 + info.children.len();
        }
    }
    anyhow::ensure!(
        remaining == kept_readable,
        "{remaining} manifests remain but {kept_readable} are kept images and their children"
    );
    Ok(EconomyFigures {
        manifests: unreferenced + indexes * 3,
        expected_deletions: expired * 3 + unreferenced,
        deletions: count(&|r| r.method == "DELETE" && r.status == 204),
        kept_readable,
        listing_pages: count(&|r| {
            r.method == "GET" && (r.url.contains("/repositoriesV2") || r.url.contains("/digests?"))
        }),
        app_reads: count(&|r| r.method == "GET" && r.url.starts_with("/v2/apps")),
        manifest_reads,
        manifest_read_bound: kept_images + expired * 2 + unreferenced,
        gc_calls: count(&|r| r.url.contains("garbage-collection")),
        other_api_requests: count(&|r| r.url == "/v2/registries" || r.url.contains("docker-credentials")),
        registry_auth_requests: registry_log.len() - manifest_reads,
        api_requests: log.len(),
        recorded_requests: record["data"]["requests"].as_u64().unwrap_or(0),
        wall_seconds,
    })
}

/// A registry reader for a simulator, with credentials from its API.
fn sim_reader(sim: &do_sim::Sim, registry: &str) -> anyhow::Result<do_core::oci::RegistryClient> {
    let config = do_core::api::ClientConfig {
        api_url: sim.url().to_string(),
        token: do_core::api::Secret::new(sim.token()),
        retry: do_core::api::RetryPolicy::default(),
        request_timeout: std::time::Duration::from_secs(30),
        connect_timeout: std::time::Duration::from_secs(10),
    };
    let quiet = std::sync::Arc::new(do_core::progress::Progress::new("bench", true, false));
    let client = do_core::Client::new(config, quiet.clone())?;
    do_core::oci::RegistryClient::from_api(
        &client,
        registry,
        sim.registry_url(),
        std::time::Duration::from_secs(600),
        false,
        quiet,
    )
}

impl EconomyFigures {
    /// The table `cargo xtask bench` prints: each count next to its bound.
    pub fn table(&self) -> String {
        let rows = [
            (
                "listing pages (plan + re-check)",
                self.listing_pages.to_string(),
                "1 + 2 × 10 (repositories, then digests twice)".to_string(),
            ),
            ("app reads (plan + re-check)", self.app_reads.to_string(), "2 × 2".to_string()),
            (
                "manifest reads",
                self.manifest_reads.to_string(),
                format!("{} (kept images + untagged outside them)", self.manifest_read_bound),
            ),
            (
                "deletions",
                self.deletions.to_string(),
                format!("{} (300 indexes, 600 children, 500 unreferenced)", self.expected_deletions),
            ),
            ("GC calls", self.gc_calls.to_string(), "2 (is one running, start)".to_string()),
            ("other API requests", self.other_api_requests.to_string(), "2 (registry, credentials)".to_string()),
            ("registry challenge and token", self.registry_auth_requests.to_string(), "2".to_string()),
            (
                "kept manifests fully readable",
                self.kept_readable.to_string(),
                "600 (200 indexes and their children)".to_string(),
            ),
        ];
        let mut text = format!("prune of {} manifests ({:.1} s):\n", self.manifests, self.wall_seconds);
        for (what, got, bound) in rows {
            text.push_str(&format!("  {what:<34} {got:>6}   bound {bound}\n"));
        }
        text
    }
}
