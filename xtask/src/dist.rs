//! `cargo xtask dist`: the release archives. Builds the tools with `--profile dist` (for a target
//! triple, when given), holds each binary to the size budget, and packs them as
//! `do-release-<version>-<target>.tar.gz` with a `.sha256` file beside it in `sha256sum`'s
//! format. The release workflow runs this on each platform; `scripts/install.sh` (the
//! GitHub Action's installer) checks downloads against the checksums committed from it.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::Context;

/// The programs an archive holds.
pub const TOOLS: [&str; 6] = ["do-tag", "do-gc-wait", "do-deploy", "do-prune", "do-login", "do-sim"];
/// The most a release binary may weigh, in bytes.
pub const SIZE_BUDGET: u64 = 8_000_000;

/// What `pack` made.
#[derive(Debug)]
pub struct Archive {
    pub path: PathBuf,
    pub checksum_file: PathBuf,
    pub sha256: String,
    /// Each tool and its size in bytes.
    pub sizes: Vec<(String, u64)>,
}

/// The host's target triple, as rustc names it.
pub fn host_target() -> anyhow::Result<String> {
    let output = Command::new("rustc").arg("-vV").output().context("cannot run rustc -vV")?;
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("host: ").map(str::to_string))
        .context("rustc -vV names no host")
}

/// `cargo build --profile dist --locked --bins [--target TARGET]` (the release profile with
/// LTO and one codegen unit), then the directory of the binaries.
pub fn build(workspace: &Path, target: Option<&str>) -> anyhow::Result<PathBuf> {
    let mut command = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    command.current_dir(workspace).args(["build", "--profile", "dist", "--locked", "--bins"]);
    if let Some(target) = target {
        command.args(["--target", target]);
    }
    for (name, _) in std::env::vars_os() {
        if name.to_str().is_some_and(crate::release::is_cargo_run_variable) {
            command.env_remove(&name);
        }
    }
    let status = command.status().context("cannot run cargo")?;
    anyhow::ensure!(status.success(), "the release build failed ({status})");
    let dir = match target {
        Some(target) => workspace.join("target").join(target).join("dist"),
        None => workspace.join("target/dist"),
    };
    Ok(dir)
}

/// Packs the tools in `binaries` into `out`, refusing a binary over `budget` bytes.
pub fn pack(binaries: &Path, version: &str, target: &str, out: &Path, budget: u64) -> anyhow::Result<Archive> {
    anyhow::ensure!(
        target.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-'),
        "invalid target {target:?}"
    );
    let name = format!("do-release-{version}-{target}");
    let staging = tempfile::tempdir()?;
    let folder = staging.path().join(&name);
    std::fs::create_dir(&folder)?;
    let mut sizes = Vec::new();
    for tool in TOOLS {
        let from = binaries.join(tool);
        let size = std::fs::metadata(&from).with_context(|| format!("no {} (build first)", from.display()))?.len();
        anyhow::ensure!(
            size <= budget,
            "{tool} is {size} bytes, over the budget of {budget}: check the dist profile in Cargo.toml"
        );
        std::fs::copy(&from, folder.join(tool))?;
        sizes.push((tool.to_string(), size));
    }
    std::fs::create_dir_all(out)?;
    let path = out.join(format!("{name}.tar.gz"));
    let status = Command::new("tar")
        .arg("-czf")
        .arg(&path)
        .arg("-C")
        .arg(staging.path())
        .arg(&name)
        .status()
        .context("cannot run tar")?;
    anyhow::ensure!(status.success(), "tar failed ({status})");
    let sha256 = sha256_hex(&std::fs::read(&path)?);
    let checksum_file = out.join(format!("{name}.tar.gz.sha256"));
    std::fs::write(&checksum_file, format!("{sha256}  {name}.tar.gz\n"))?;
    Ok(Archive { path, checksum_file, sha256, sizes })
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    ring::digest::digest(&ring::digest::SHA256, bytes).as_ref().iter().map(|b| format!("{b:02x}")).collect()
}
