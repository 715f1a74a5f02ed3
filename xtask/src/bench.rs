//! `cargo xtask bench`: figures that tests must not time, each measured in one run next to
//! the bound it must keep. The tools and the simulator run as separate processes built with
//! `--release` (what users run), so the figures are the tools' and not a debug build's.
//!
//! `--quick` runs the small sizes only; a test runs it so the benchmark itself cannot rot.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Instant;

use anyhow::Context;
use serde::Serialize;
use serde_json::{json, Value};

/// The binaries the benchmark runs.
#[derive(Clone, Debug)]
pub struct BenchBinaries {
    pub prune: PathBuf,
    pub deploy: PathBuf,
    pub sim: PathBuf,
}

impl BenchBinaries {
    pub fn in_dir(dir: &Path) -> BenchBinaries {
        BenchBinaries { prune: dir.join("do-prune"), deploy: dir.join("do-deploy"), sim: dir.join("do-sim") }
    }

    /// `cargo build --release --bins`, then the paths of the binaries.
    pub fn build_release(workspace: &Path) -> anyhow::Result<BenchBinaries> {
        eprintln!("bench: building the tools with --release (a first build takes a few minutes on 2 cores)");
        let mut command = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
        command.current_dir(workspace).args(["build", "--release", "--bins"]);
        for (name, _) in std::env::vars_os() {
            if name.to_str().is_some_and(crate::release::is_cargo_run_variable) {
                command.env_remove(&name);
            }
        }
        let status = command.status().context("cannot run cargo")?;
        anyhow::ensure!(status.success(), "building the tools failed ({status})");
        Ok(BenchBinaries::in_dir(&workspace.join("target/release")))
    }
}

/// One line of the table: what was measured, the figure, the bound it is held to, and
/// whether it holds (`None`: a figure stated, with no bound in this mode).
#[derive(Clone, Debug, Serialize)]
pub struct Row {
    pub measure: String,
    pub measured: String,
    pub bound: String,
    pub holds: Option<bool>,
}

fn row(measure: impl Into<String>, measured: impl Into<String>, bound: impl Into<String>, holds: Option<bool>) -> Row {
    Row { measure: measure.into(), measured: measured.into(), bound: bound.into(), holds }
}

/// The table `cargo xtask bench` prints.
pub fn table(rows: &[Row]) -> String {
    let width = |f: fn(&Row) -> &str, title: &str| rows.iter().map(|r| f(r).chars().count()).chain([title.len()]).max();
    let w1 = width(|r| &r.measure, "measure").unwrap_or(0);
    let w2 = width(|r| &r.measured, "measured").unwrap_or(0);
    let w3 = width(|r| &r.bound, "bound").unwrap_or(0);
    let mut text = format!("{:<w1$}  {:>w2$}  {:<w3$}  holds\n", "measure", "measured", "bound");
    for r in rows {
        let holds = match r.holds {
            Some(true) => "yes",
            Some(false) => "NO",
            None => "-",
        };
        text.push_str(&format!("{:<w1$}  {:>w2$}  {:<w3$}  {holds}\n", r.measure, r.measured, r.bound));
    }
    text
}

/// Every row; `quick` keeps the sizes small enough for a test.
pub fn run(binaries: &BenchBinaries, quick: bool) -> anyhow::Result<Vec<Row>> {
    let mut rows = Vec::new();
    // First, while this process is small: a child's peak memory as the kernel reports it is at
    // least the parent's peak when it was started (the exec inherits the high-water mark).
    let size = if quick { 10_000 } else { 100_000 };
    eprintln!("bench: a dry run over {size} manifests in one repository...");
    rows.extend(dry_run_at_scale(binaries, size, quick)?);
    let scales: &[usize] = if quick { &[1] } else { &[1, 10, 50] };
    for &scale in scales {
        eprintln!("bench: an executed prune of {} manifests...", 2000 * scale);
        rows.extend(prune_economy(binaries, scale)?.rows());
    }
    let signed = if quick { 1 } else { 10 };
    eprintln!("bench: an executed prune of {} manifests, every image signed and attested...", 2000 * signed);
    rows.extend(prune_economy_of(binaries, signed, true)?.rows());
    let (repositories, per_repository, latency) = if quick { (20, 200, 20) } else { (50, 400, 100) };
    eprintln!("bench: dry runs over {repositories} repositories of {per_repository} at {latency} ms a request...");
    rows.extend(latency_rows(binaries, repositories, per_repository, latency, quick)?);
    let (deletions, per_window) = if quick { (600, 300) } else { (3000, 300) };
    eprintln!("bench: pruning {deletions} manifests under a limit of {per_window} requests per 3 s...");
    rows.push(prune_load(&binaries.prune, deletions, per_window, 0.05)?.row(!quick));
    eprintln!("bench: following a deployment...");
    rows.push(deploy_lag(binaries, quick)?);
    Ok(rows)
}

/// The simulator as its own process, seeded from a state file.
pub struct SimProcess {
    child: Child,
    url: String,
    agent: ureq::Agent,
    /// From the start of the process to its URL on stdout: loading the state file.
    pub load_seconds: f64,
    _dir: tempfile::TempDir,
}

impl SimProcess {
    pub fn start(binary: &Path, seed: Option<&Value>, args: &[&str]) -> anyhow::Result<SimProcess> {
        SimProcess::start_with(
            binary,
            |file| Ok(seed.map(|seed| serde_json::to_writer(file, seed)).transpose()?.is_some()),
            args,
        )
    }

    /// Starts do-sim with the state `write` writes (`Ok(false)`: none, the default world).
    pub fn start_with(
        binary: &Path,
        write: impl FnOnce(&mut std::io::BufWriter<std::fs::File>) -> anyhow::Result<bool>,
        args: &[&str],
    ) -> anyhow::Result<SimProcess> {
        let dir = tempfile::tempdir()?;
        let mut command = Command::new(binary);
        command.args(["--listen", "127.0.0.1:0"]).args(args);
        let path = dir.path().join("state.json");
        let mut file = std::io::BufWriter::new(std::fs::File::create(&path)?);
        if write(&mut file)? {
            std::io::Write::flush(&mut file)?;
            command.arg("--state").arg(&path);
        }
        drop(file);
        let started = Instant::now();
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("cannot run {}", binary.display()))?;
        let mut first = String::new();
        BufReader::new(child.stdout.take().context("do-sim's stdout")?).read_line(&mut first)?;
        let load_seconds = started.elapsed().as_secs_f64();
        let url = first.trim().to_string();
        anyhow::ensure!(url.starts_with("http://127.0.0.1:"), "do-sim did not start: {first:?}");
        let agent = ureq::Agent::config_builder().http_status_as_error(false).proxy(None).build().into();
        Ok(SimProcess { child, url, agent, load_seconds, _dir: dir })
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    fn control(&self, route: &str) -> anyhow::Result<Value> {
        let mut answer = self.agent.get(format!("{}/_sim/{route}", self.url)).call()?;
        let text = answer.body_mut().with_config().limit(1 << 30).read_to_string()?;
        Ok(serde_json::from_str(&text)?)
    }

    fn requests(&self, route: &str) -> anyhow::Result<Vec<Value>> {
        Ok(self.control(route)?["requests"].as_array().cloned().unwrap_or_default())
    }

    /// What the process holds in memory now (VmRSS), in bytes.
    pub fn resident_bytes(&self) -> Option<u64> {
        proc_status_bytes(&self.child.id().to_string(), "VmRSS:")
    }
}

impl Drop for SimProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// This process's peak resident memory (VmHWM), in bytes.
fn own_peak_bytes() -> Option<u64> {
    proc_status_bytes("self", "VmHWM:")
}

/// A memory figure (`VmRSS:`, `VmHWM:`) of /proc/PROCESS/status, in bytes.
fn proc_status_bytes(process: &str, key: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{process}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with(key))?;
    line.split_whitespace().nth(1)?.parse::<u64>().ok().map(|kib| kib * 1024)
}

/// A finished tool run with its wall time and peak memory.
pub struct Measured {
    pub success: bool,
    pub stdout: Vec<u8>,
    pub stderr: String,
    pub wall_seconds: f64,
    /// The process's own peak resident memory (getrusage of that one child), in bytes.
    pub peak_bytes: u64,
}

/// Runs a tool against a simulator process and measures it.
pub fn run_tool(binary: &Path, sim_url: &str, args: &[&str]) -> anyhow::Result<Measured> {
    let dir = tempfile::tempdir()?;
    let (out, err) = (dir.path().join("stdout"), dir.path().join("stderr"));
    let started = Instant::now();
    let child = Command::new(binary)
        .args(args)
        .env("DIGITALOCEAN_API_URL", sim_url)
        .env("DIGITALOCEAN_ACCESS_TOKEN", do_sim::DEFAULT_TOKEN)
        .env("DO_RELEASE_RETRY_MAX_TIME", "10m")
        .env_remove("DIGITALOCEAN_REGISTRY_URL")
        .env_remove("GITHUB_ACTIONS")
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out)?)
        .stderr(std::fs::File::create(&err)?)
        .spawn()
        .with_context(|| format!("cannot run {}", binary.display()))?;
    let (success, peak_bytes) = wait_measured(child)?;
    Ok(Measured {
        success,
        stdout: std::fs::read(&out)?,
        stderr: std::fs::read_to_string(&err).unwrap_or_default(),
        wall_seconds: started.elapsed().as_secs_f64(),
        peak_bytes,
    })
}

/// Waits for `child` with wait4, which reports that one process's peak memory (getrusage of
/// all children would also count cargo's and the simulator's). Linux starts a child's figure
/// at its parent's peak, so it is the tool's own only while the tool outgrows this process.
fn wait_measured(child: Child) -> anyhow::Result<(bool, u64)> {
    let pid = child.id() as libc::pid_t;
    let mut status: libc::c_int = 0;
    // SAFETY: both out-pointers point at live locals of the right types; the child is ours and
    // not waited for elsewhere (std's `Child` is dropped without waiting).
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let waited = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    anyhow::ensure!(waited == pid, "waiting for the tool failed: {}", std::io::Error::last_os_error());
    drop(child);
    let success = libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0;
    // ru_maxrss is in KiB on Linux.
    Ok((success, usage.ru_maxrss as u64 * 1024))
}

/// What a prune of issue 10's scenario costs, request by request, with the bound it must keep.
#[derive(Debug, Serialize)]
pub struct EconomyFigures {
    pub manifests: usize,
    /// Expired indexes, their children and unreferenced untagged manifests: what must go.
    pub expected_deletions: usize,
    pub deletions: usize,
    /// Manifests left in the registry: the kept indexes and their children.
    pub remaining: usize,
    pub expected_remaining: usize,
    /// Every index left holds all its children, and nothing else is left.
    pub kept_whole: bool,
    /// Listing pages: repositoriesV2 and digests, to plan and again right before deleting.
    pub listing_pages: usize,
    pub listing_page_bound: usize,
    /// App list and deployment pages, to plan and again right before deleting.
    pub app_reads: usize,
    /// GETs of manifests on the registry host.
    pub manifest_reads: usize,
    /// One read per kept image (and its artifacts) and per untagged manifest outside them.
    pub manifest_read_bound: usize,
    pub gc_calls: usize,
    /// The registry list and the registry credentials.
    pub other_api_requests: usize,
    /// The registry host's challenge and token requests.
    pub registry_auth_requests: usize,
    /// The one probe of the registry's referrers API (the simulator, like DOCR, has none).
    pub referrers_probes: usize,
    /// Every API request, and what the record says it made.
    pub api_requests: usize,
    pub recorded_requests: u64,
    /// Every request to the API and the registry host.
    pub total_requests: usize,
    /// The least a prune can make that reads what it deletes and re-checks before deleting.
    pub lower_bound: usize,
    /// A script that lists once and deletes each manifest, reading nothing and re-checking
    /// nothing (unsafe for indexes; what users glue together today).
    pub naive_requests: usize,
    pub wall_seconds: f64,
    /// Every image has a cosign signature and attestation.
    pub signed: bool,
}

/// Issue 10's acceptance scenario times `scale`: 500 tagged images pushed as indexes with 2
/// untagged children each (an image and its attestation), 500 untagged manifests nothing
/// references, 300 of the indexes expired (`--keep-last 200`); an executed prune.
pub fn prune_economy(binaries: &BenchBinaries, scale: usize) -> anyhow::Result<EconomyFigures> {
    prune_economy_of(binaries, scale, false)
}

/// The same scenario; with `signed`, every image also gets a cosign signature and attestation
/// (`sha256-<digest>.sig`, `.att`) pushed after it, as a signing team's CI does: they take no
/// `--keep-last` place, the kept images' are kept (and read), the expired images' deleted.
pub fn prune_economy_of(binaries: &BenchBinaries, scale: usize, signed: bool) -> anyhow::Result<EconomyFigures> {
    let (indexes, expired, unreferenced) = (500 * scale, 300 * scale, 500 * scale);
    let per_image = if signed { 2 } else { 0 };
    let mut manifests: Vec<Value> = (0..unreferenced).map(|_| json!({"tags": [], "size_bytes": 2048})).collect();
    for i in 0..indexes {
        let tag = format!("v1.{i}.0");
        manifests.push(json!({"tags": [tag], "size_bytes": 4096, "platforms": ["linux/amd64"], "attestations": true}));
        if signed {
            manifests.push(json!({"signature_of": tag}));
            manifests.push(json!({"attestation_of": tag}));
        }
    }
    let newest = format!("v1.{}.0", indexes - 1);
    let seed = json!({
        "registries": [{"name": "bench", "tier": "professional", "repositories": [{"name": "web", "manifests": manifests}]}],
        "apps": [{"spec": do_sim::default_app_spec("shop", "web", &newest)}],
        "rate_limit": {"per_hour": 1_000_000_000u64, "per_minute": 1_000_000_000u64, "window_scale": 1.0},
    });
    let sim = SimProcess::start(&binaries.sim, Some(&seed), &[])?;
    let keep = (indexes - expired).to_string();
    let run = run_tool(&binaries.prune, sim.url(), &["--keep-last", &keep, "--execute", "--gc", "start", "-q"])?;
    anyhow::ensure!(run.success, "do-prune failed: {}", run.stderr);
    let record: Value = serde_json::from_slice(&run.stdout).context("do-prune's record")?;
    let log = sim.requests("requests")?;
    let registry_log = sim.requests("registry-requests")?;
    let method = |r: &Value| r["method"].as_str().unwrap_or_default().to_string();
    let url = |r: &Value| r["url"].as_str().unwrap_or_default().to_string();
    let count = |test: &dyn Fn(&str, &str, u64) -> bool| {
        log.iter().filter(|r| test(&method(r), &url(r), r["status"].as_u64().unwrap_or(0))).count()
    };
    let manifest_reads = registry_log.iter().filter(|r| method(r) == "GET" && url(r).contains("/manifests/")).count();
    let referrers_probes = registry_log.iter().filter(|r| url(r).contains("/referrers/")).count();
    let snapshot = sim.control("state")?;
    let left = snapshot["registries"][0]["repositories"][0]["manifests"].as_array().cloned().unwrap_or_default();
    let remaining = left.len();
    // Whole: every manifest left is a tagged index or a child of one, and no index lost a child.
    let present: std::collections::BTreeSet<&str> = left.iter().filter_map(|m| m["digest"].as_str()).collect();
    let tagged: Vec<&Value> = left.iter().filter(|m| m["tags"].as_array().is_some_and(|t| !t.is_empty())).collect();
    let children: std::collections::BTreeSet<&str> =
        tagged.iter().flat_map(|m| m["children"].as_array().into_iter().flatten()).filter_map(Value::as_str).collect();
    let kept_whole = children.iter().all(|c| present.contains(c)) && tagged.len() + children.len() == remaining;
    let kept_images = indexes - expired;
    let total = unreferenced + indexes * (3 + per_image);
    let digest_pages = total.div_ceil(200);
    let expected_deletions = expired * (3 + per_image) + unreferenced;
    let listing_page_bound = 1 + 2 * digest_pages;
    // The kept images and their signatures and attestations, the children of the expired images
    // and every unreferenced untagged manifest; where the repository holds artifacts, the expired
    // images too (one could be an OCI referrer under an ordinary tag). An expired image's
    // artifacts go unread: their tags say what they are.
    let expired_reads = if signed { expired } else { 0 };
    let manifest_read_bound = kept_images * (1 + per_image) + expired_reads + expired * 2 + unreferenced;
    // Listing twice, apps twice, the reads, the deletions, GC check and start, registry list
    // and credentials, the registry host's challenge and token, the referrers API probe.
    let lower_bound = listing_page_bound + 4 + manifest_read_bound + expected_deletions + 2 + 2 + 2 + 1;
    Ok(EconomyFigures {
        manifests: total,
        expected_deletions,
        deletions: count(&|m, _, status| m == "DELETE" && status == 204),
        remaining,
        expected_remaining: kept_images * (3 + per_image),
        signed,
        kept_whole,
        listing_pages: count(&|m, u, _| m == "GET" && (u.contains("/repositoriesV2") || u.contains("/digests?"))),
        listing_page_bound,
        app_reads: count(&|m, u, _| m == "GET" && u.starts_with("/v2/apps")),
        manifest_reads,
        manifest_read_bound,
        gc_calls: count(&|_, u, _| u.contains("garbage-collection")),
        other_api_requests: count(&|_, u, _| u == "/v2/registries" || u.contains("docker-credentials")),
        registry_auth_requests: registry_log.len() - manifest_reads - referrers_probes,
        referrers_probes,
        api_requests: log.len(),
        recorded_requests: record["data"]["requests"].as_u64().unwrap_or(0),
        total_requests: log.len() + registry_log.len(),
        lower_bound,
        naive_requests: 1 + digest_pages + expected_deletions + 1,
        wall_seconds: run.wall_seconds,
    })
}

impl EconomyFigures {
    /// Each category within its bound, and nothing but the expected deletions.
    pub fn within_bounds(&self) -> bool {
        self.deletions == self.expected_deletions
            && self.remaining == self.expected_remaining
            && self.kept_whole
            && self.listing_pages <= self.listing_page_bound
            && self.app_reads <= 4
            && self.manifest_reads <= self.manifest_read_bound
            && self.gc_calls <= 2
            && self.other_api_requests <= 2
            && self.registry_auth_requests <= 2
            && self.referrers_probes <= 1
            && self.recorded_requests as usize == self.api_requests
    }

    pub fn rows(&self) -> Vec<Row> {
        let n = format!("{}{}", thousands(self.manifests), if self.signed { " signed" } else { "" });
        vec![
            row(
                format!("prune of {n} manifests: requests"),
                thousands(self.total_requests),
                format!(
                    "lower bound {}; naive list-and-delete {}",
                    thousands(self.lower_bound),
                    thousands(self.naive_requests)
                ),
                Some(self.within_bounds() && self.total_requests <= self.lower_bound),
            ),
            row(
                format!("prune of {n} manifests: deletions, left"),
                format!("{}, {}", thousands(self.deletions), thousands(self.remaining)),
                format!(
                    "exactly {}, {} (kept indexes, children, artifacts)",
                    thousands(self.expected_deletions),
                    thousands(self.expected_remaining)
                ),
                Some(
                    self.deletions == self.expected_deletions
                        && self.remaining == self.expected_remaining
                        && self.kept_whole,
                ),
            ),
            row(
                format!("prune of {n} manifests: reads, pages"),
                format!("{}, {}", thousands(self.manifest_reads), self.listing_pages),
                format!(
                    "at most {} (kept + untagged outside them), {}",
                    thousands(self.manifest_read_bound),
                    self.listing_page_bound
                ),
                Some(self.manifest_reads <= self.manifest_read_bound && self.listing_pages <= self.listing_page_bound),
            ),
            row(format!("prune of {n} manifests: wall time"), seconds(self.wall_seconds), "", None),
        ]
    }
}

/// A dry run over `size` manifests in one repository, rate limit lifted, no latency: the
/// simulator's load time and memory, do-prune's wall time and peak memory.
fn dry_run_at_scale(binaries: &BenchBinaries, size: usize, quick: bool) -> anyhow::Result<Vec<Row>> {
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
fn latency_rows(
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
fn deploy_lag(binaries: &BenchBinaries, quick: bool) -> anyhow::Result<Row> {
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

fn thousands(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn seconds(s: f64) -> String {
    format!("{} s", round1(s))
}

fn round1(s: f64) -> String {
    format!("{s:.1}")
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_read_as_people_write_them() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(thousands(100_000), "100,000");
        assert_eq!(thousands(1_234_567), "1,234,567");
    }
}
