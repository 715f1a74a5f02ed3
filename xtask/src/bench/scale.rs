//! Scale: a dry run over 10,000 or 100,000 manifests, and dry runs over many repositories with
//! a simulated round trip at --concurrency 1 and at the default.

use anyhow::Context;
use serde_json::{json, Value};

use super::*;

/// A dry run over `size` manifests in one repository, rate limit lifted, no latency: the
/// simulator's load time and memory, do-prune's wall time and peak memory.
pub(super) fn dry_run_at_scale(binaries: &BenchBinaries, size: usize, quick: bool) -> anyhow::Result<Vec<Row>> {
    use std::io::Write;
    // Written line by line, so this process stays small (see `run`).
    let sim = SimProcess::start_with(
        &binaries.sim,
        |file| {
            file.write_all(
                br#"{"rate_limit": {"per_hour": 1000000000, "per_minute": 1000000000, "window_scale": 1.0},"#,
            )?;
            file.write_all(br#""registries": [{"name": "bench", "tier": "professional", "repositories": [{"name": "web", "manifests": ["#)?;
            for i in 0..size {
                let comma = if i == 0 { "" } else { "," };
                writeln!(file, r#"{comma}{{"tags": ["v{i}"], "size_bytes": 1000}}"#)?;
            }
            file.write_all(b"]}]}]}")?;
            Ok(true)
        },
        &[],
    )?;
    let sim_memory = sim.resident_bytes();
    let own_peak = own_peak_bytes();
    let run = run_tool(&binaries.prune, sim.url(), &["--keep-last", "10", "-q"])?;
    anyhow::ensure!(run.success, "do-prune failed: {}", run.stderr);
    // Not above this process's own peak: the figure is only an upper bound (see `run`).
    let exact = own_peak.is_none_or(|own| run.peak_bytes > own);
    let n = thousands(size);
    let per_10k = run.peak_bytes as f64 / (size as f64 / 10_000.0);
    let memory = if exact { mib(per_10k as u64) } else { format!("at most {}", mib(per_10k as u64)) };
    Ok(vec![
        row(
            format!("do-sim: load {n} manifests from a state file"),
            seconds(sim.load_seconds),
            "a few seconds (at most 5 s)",
            (!quick).then_some(sim.load_seconds <= 5.0),
        ),
        row(format!("do-sim: memory holding {n} manifests"), sim_memory.map_or("?".into(), mib), "", None),
        row(
            format!("dry run over {n} manifests, one repository"),
            seconds(run.wall_seconds),
            "under 10 s, simulator included",
            (!quick).then_some(run.wall_seconds < 10.0),
        ),
        row("do-prune peak memory per 10,000 manifests", memory, "", None),
    ])
}

/// Dry runs over many repositories with a simulated round trip, at `--concurrency 1` and at
/// the default, under the real rate limit (250 a minute, 5,000 an hour).
pub(super) fn latency_rows(
    binaries: &BenchBinaries,
    repositories: usize,
    per_repository: usize,
    latency_ms: u64,
    quick: bool,
) -> anyhow::Result<Vec<Row>> {
    let repositories: Vec<Value> = (0..repositories)
        .map(|r| {
            let manifests: Vec<Value> =
                (0..per_repository).map(|i| json!({"tags": [format!("v{i}")], "size_bytes": 1000})).collect();
            json!({"name": format!("svc-{r:02}"), "manifests": manifests})
        })
        .collect();
    let count = repositories.len();
    let seed = json!({"registries": [{"name": "bench", "tier": "professional", "repositories": repositories}]});
    let latency = format!("{latency_ms}ms");
    let mut runs = Vec::new();
    for concurrency in [Some("1"), None] {
        let sim = SimProcess::start(&binaries.sim, Some(&seed), &["--latency", &latency])?;
        let mut args = vec!["--keep-last", "10", "-q"];
        args.extend(concurrency.iter().flat_map(|n| ["--concurrency", n]));
        let run = run_tool(&binaries.prune, sim.url(), &args)?;
        anyhow::ensure!(run.success, "do-prune failed: {}", run.stderr);
        let record: Value = serde_json::from_slice(&run.stdout).context("do-prune's record")?;
        let api = record["data"]["requests"].as_u64().unwrap_or(0);
        let registry = record["data"]["registry_requests"].as_u64().unwrap_or(0);
        runs.push((concurrency, run.wall_seconds, api, registry));
    }
    let (sequential, concurrent) = (runs[0], runs[1]);
    let ratio = concurrent.1 / sequential.1;
    // The burst window admits 250 API requests a minute: any more must wait for the next one.
    let rate_limit_least = (concurrent.2.div_ceil(250).saturating_sub(1) * 60) as f64;
    let round_trips = (concurrent.2 + concurrent.3) as f64 * latency_ms as f64 / 1000.0;
    let shape = format!("{count} repositories × {per_repository}, {latency_ms} ms a request");
    Ok(vec![
        row(
            format!("dry run, {shape}, --concurrency 1"),
            seconds(sequential.1),
            format!("{} round trips", sequential.2 + sequential.3),
            None,
        ),
        row(
            format!("dry run, {shape}, default concurrency"),
            seconds(concurrent.1),
            format!(
                "rate limit allows {} for {} API requests; their round trips alone {} one at a time",
                seconds(rate_limit_least),
                concurrent.2,
                seconds(round_trips)
            ),
            None,
        ),
        row(
            "  default concurrency / --concurrency 1",
            format!("{ratio:.2}"),
            "at most 0.33",
            (!quick).then_some(ratio <= 1.0 / 3.0),
        ),
    ])
}
