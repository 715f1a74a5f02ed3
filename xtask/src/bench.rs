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
