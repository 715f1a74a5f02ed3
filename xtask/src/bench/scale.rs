//! Scale: dry runs over 10,000 or 100,000 manifests, cold and warm, and dry runs over many
//! repositories with a simulated round trip at --concurrency 1 and at the default.

use anyhow::Context;
use serde_json::{json, Value};

use super::*;

/// Dry runs over `size` manifests in one repository, four in five untagged (each read on the
/// registry host), rate limit lifted, no latency: the simulator's load time and memory; then
/// do-prune with an empty manifest cache (cold) and again over the unchanged registry (warm):
/// wall time, CPU time per manifest read, peak memory per manifest, and reads in the warm run.
pub(super) fn dry_run_at_scale(binaries: &BenchBinaries, size: usize, quick: bool) -> anyhow::Result<Vec<Row>> {
    use std::io::Write;
    let untagged = size / 5 * 4;
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
                let tags = if i < untagged { String::new() } else { format!(r#""v{i}""#) };
                writeln!(file, r#"{comma}{{"tags": [{tags}], "size_bytes": 1000}}"#)?;
            }
            file.write_all(b"]}]}]}")?;
            Ok(true)
        },
        &[],
    )?;
    let sim_memory = sim.resident_bytes();
    let own_peak = own_peak_bytes();
    let cache = tempfile::tempdir()?;
    let cache_dir = cache.path().to_str().context("a temporary directory with a UTF-8 name")?;
    let args = ["--keep-last", "10", "-q", "--cache-dir", cache_dir];
    let cold = run_tool(&binaries.prune, sim.url(), &args)?;
    anyhow::ensure!(cold.success, "do-prune failed: {}", cold.stderr);
    let warm = run_tool(&binaries.prune, sim.url(), &args)?;
    anyhow::ensure!(warm.success, "do-prune failed: {}", warm.stderr);
    let reads = |run: &Measured| -> anyhow::Result<u64> {
        let record: Value = serde_json::from_slice(&run.stdout).context("do-prune's record")?;
        Ok(record["data"]["cache"]["added"].as_u64().unwrap_or(0))
    };
    let (cold_reads, warm_reads) = (reads(&cold)?, reads(&warm)?);
    // Not above this process's own peak: the figure is only an upper bound (see `run`).
    let exact = own_peak.is_none_or(|own| cold.peak_bytes > own);
    let per_manifest = cold.peak_bytes / size as u64;
    let memory = if exact { format!("{per_manifest} B") } else { format!("at most {per_manifest} B") };
    let cpu_per_read = cold.cpu_seconds / cold_reads.max(1) as f64 * 1e6;
    let n = thousands(size);
    let shape = format!("{n} manifests ({} untagged), one repository", thousands(untagged));
    Ok(vec![
        row(
            format!("do-sim: load {n} manifests from a state file"),
            seconds(sim.load_seconds),
            "a few seconds (at most 5 s)",
            (!quick).then_some(sim.load_seconds <= 5.0),
        ),
        row(format!("do-sim: memory holding {n} manifests"), sim_memory.map_or("?".into(), mib), "", None),
        row(
            format!("dry run over {shape}, cache empty"),
            seconds(cold.wall_seconds),
            "under 5 s, simulator included",
            (!quick).then_some(cold.wall_seconds < 5.0),
        ),
        row(
            format!("  do-prune CPU per manifest read ({} reads)", thousands(cold_reads as usize)),
            format!("{cpu_per_read:.0} µs"),
            "under 30 µs",
            (!quick).then_some(cpu_per_read < 30.0),
        ),
        row(
            "  of which the reads: CPU beyond the warm run's, per read",
            format!("{:.0} µs", (cold.cpu_seconds - warm.cpu_seconds).max(0.0) / cold_reads.max(1) as f64 * 1e6),
            format!("the warm run's CPU: {}", seconds(warm.cpu_seconds)),
            None,
        ),
        row("  do-prune peak memory per manifest", memory, "under 600 B", (!quick).then_some(per_manifest < 600)),
        row(
            "the same dry run again, registry unchanged",
            format!("{} ({warm_reads} reads)", seconds(warm.wall_seconds)),
            "under 2 s, no manifest read",
            // The reads are a count: held in the quick run too.
            Some(warm_reads == 0 && (quick || warm.wall_seconds < 2.0)),
        ),
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
        let mut args = vec!["--keep-last", "1", "-q"];
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
            "at most 0.25",
            (!quick).then_some(ratio <= 0.25),
        ),
    ])
}
