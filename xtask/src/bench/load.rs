//! Load and lag: deletions under the API's rate limit, and how soon a deployment's end is noticed.

use std::path::Path;

use anyhow::Context;
use serde::Serialize;
use serde_json::{json, Value};

use super::*;

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

impl LoadFigures {
    /// `holds`: whether the 90% bound applies (not at the quick size, where the whole seconds
    /// of `retry-after` weigh more than the limit itself).
    pub fn row(&self, holds: bool) -> Row {
        row(
            format!(
                "{} deletions under {} requests per {} s",
                thousands(self.deletions),
                self.limit_per_window,
                self.window_seconds
            ),
            format!("{:.1}% of the limit", self.throughput_of_limit * 100.0),
            format!(
                "at least 90% ({} s against the least {} s; {} answered 429)",
                round1(self.elapsed_seconds),
                round1(self.ideal_seconds),
                self.rejected_429
            ),
            holds.then_some(self.throughput_of_limit >= 0.9),
        )
    }
}

/// Prunes `deletions` expired manifests with a burst limit of `per_window` requests per
/// `60 × scale` seconds (the simulator in this process: its log times every request).
pub fn prune_load(prune: &Path, deletions: usize, per_window: u64, scale: f64) -> anyhow::Result<LoadFigures> {
    let manifests: Vec<serde_json::Value> =
        (0..=deletions).map(|i| json!({"tags": [format!("v{i}")], "size_bytes": 1024})).collect();
    let seed: do_sim::Seed = serde_json::from_value(json!({
        "registries": [{"name": "bench", "tier": "professional", "repositories": [{"name": "web", "manifests": manifests}]}],
        "rate_limit": {"per_hour": 1_000_000, "per_minute": per_window, "window_scale": scale},
    }))?;
    let sim = do_sim::Sim::start("127.0.0.1:0", seed.into_state(do_sim::DEFAULT_TOKEN, Default::default())?)?;
    let run =
        run_tool(prune, sim.url(), &["--keep-last", "1", "--execute", "--gc", "off", "--concurrency", "4", "-q"])?;
    anyhow::ensure!(run.success, "do-prune failed: {}", run.stderr);
    let record: serde_json::Value = serde_json::from_slice(&run.stdout).context("do-prune's record")?;
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
    let failed = record["data"]["failed"].as_array().map_or(0, Vec::len);
    anyhow::ensure!(deleted == deletions && failed == 0, "{deleted} of {deletions} deleted, {failed} failed");
    Ok(LoadFigures {
        deletions,
        deleted,
        failed,
        accepted_requests: accepted.len(),
        rejected_429: rejected,
        limit_per_window: per_window,
        window_seconds,
        elapsed_seconds,
        ideal_seconds,
        throughput_of_limit: if elapsed_seconds > 0.0 { ideal_seconds / elapsed_seconds } else { 0.0 },
        requests_per_second: accepted.len() as f64 / elapsed_seconds.max(0.001),
        wall_seconds: run.wall_seconds,
    })
}

/// do-deploy follows a deployment of 4 phases of 500 ms, looking every second: the end must
/// be seen by the first look after it.
pub(super) fn deploy_lag(binaries: &BenchBinaries, quick: bool) -> anyhow::Result<Row> {
    let interval_ms = 1000;
    let sim = SimProcess::start(&binaries.sim, None, &["--deploy-phase", "500ms"])?;
    let interval = format!("{interval_ms}ms");
    let args = [
        "--app",
        do_sim::DEFAULT_APP,
        "--repository",
        do_sim::DEFAULT_REPOSITORY,
        "--tag",
        "v1.1.0",
        "--allow-downgrade",
        "--interval",
        &interval,
        "--max-interval",
        &interval,
        "-q",
    ];
    let run = run_tool(&binaries.deploy, sim.url(), &args)?;
    anyhow::ensure!(run.success, "do-deploy failed: {}", run.stderr);
    let record: Value = serde_json::from_slice(&run.stdout).context("do-deploy's record")?;
    let id = record["data"]["deployment_id"].as_str().context("the record has no deployment_id")?.to_string();
    let snapshot = sim.control("state")?;
    let deployment = snapshot["apps"][0]["deployments"]
        .as_array()
        .and_then(|all| all.iter().find(|d| d["id"] == id.as_str()))
        .context("the deployment is not in the simulator")?;
    let ended_ms = deployment["started_ms"].as_u64().unwrap_or(0) + 4 * deployment["phase_ms"].as_u64().unwrap_or(0);
    let looks: Vec<u64> = sim
        .requests("requests")?
        .iter()
        .filter(|r| r["url"].as_str().is_some_and(|u| u.ends_with(&format!("/deployments/{id}"))))
        .filter_map(|r| r["at_ms"].as_u64())
        .collect();
    let last = looks.last().copied().unwrap_or(0);
    let lag = last.saturating_sub(ended_ms);
    Ok(row(
        "deployment end noticed after it happened",
        format!("{lag} ms"),
        format!("within one poll interval ({interval_ms} ms, plus 100 ms for scheduling)"),
        // A bound of time, so not held at the quick size (run by `cargo test`, on a busy machine).
        (!quick).then_some(last >= ended_ms && lag <= interval_ms + 100),
    ))
}
