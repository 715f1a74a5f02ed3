//! The simulator and the tools as processes: started, timed, their peak memory read from /proc.

use anyhow::Context;
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Instant;

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

    pub(super) fn control(&self, route: &str) -> anyhow::Result<Value> {
        let mut answer = self.agent.get(format!("{}/_sim/{route}", self.url)).call()?;
        let text = answer.body_mut().with_config().limit(1 << 30).read_to_string()?;
        Ok(serde_json::from_str(&text)?)
    }

    pub(super) fn requests(&self, route: &str) -> anyhow::Result<Vec<Value>> {
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
pub(super) fn own_peak_bytes() -> Option<u64> {
    proc_status_bytes("self", "VmHWM:")
}

/// A memory figure (`VmRSS:`, `VmHWM:`) of /proc/PROCESS/status, in bytes.
pub(super) fn proc_status_bytes(process: &str, key: &str) -> Option<u64> {
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
    /// The process's CPU time, user and system.
    pub cpu_seconds: f64,
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
        // A cache of this run's own unless `args` name one (--cache-dir).
        .env("XDG_CACHE_HOME", dir.path())
        .env_remove("DIGITALOCEAN_REGISTRY_URL")
        .env_remove("GITHUB_ACTIONS")
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out)?)
        .stderr(std::fs::File::create(&err)?)
        .spawn()
        .with_context(|| format!("cannot run {}", binary.display()))?;
    let (success, peak_bytes, cpu_seconds) = wait_measured(child)?;
    Ok(Measured {
        success,
        stdout: std::fs::read(&out)?,
        stderr: std::fs::read_to_string(&err).unwrap_or_default(),
        wall_seconds: started.elapsed().as_secs_f64(),
        peak_bytes,
        cpu_seconds,
    })
}

/// Waits for `child` with wait4, which reports that one process's peak memory and CPU time
/// (getrusage of all children would also count cargo's and the simulator's). Linux starts a
/// child's memory figure at its parent's peak, so it is the tool's own only while the tool
/// outgrows this process.
pub(super) fn wait_measured(child: Child) -> anyhow::Result<(bool, u64, f64)> {
    let pid = child.id() as libc::pid_t;
    let mut status: libc::c_int = 0;
    // SAFETY: both out-pointers point at live locals of the right types; the child is ours and
    // not waited for elsewhere (std's `Child` is dropped without waiting).
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let waited = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    anyhow::ensure!(waited == pid, "waiting for the tool failed: {}", std::io::Error::last_os_error());
    drop(child);
    let success = libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0;
    let seconds = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    // ru_maxrss is in KiB on Linux.
    Ok((success, usage.ru_maxrss as u64 * 1024, seconds(usage.ru_utime) + seconds(usage.ru_stime)))
}
