//! `cargo xtask bench`: figures that tests must not time, each measured in one run next to
//! the bound it must keep. The tools and the simulator run as separate processes built with
//! `--release` (what users run), so the figures are the tools' and not a debug build's.
//!
//! `--quick` runs the small sizes only; a test runs it so the benchmark itself cannot rot.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::Context;
use serde::Serialize;

mod economy;
mod load;
mod process;
mod scale;

pub use economy::{prune_economy, prune_economy_of, EconomyFigures};
use load::*;
pub use load::{prune_load, LoadFigures};
use process::*;
pub use process::{run_tool, Measured, SimProcess};
use scale::*;

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
