//! `cargo xtask`: project automation in Rust rather than shell scripts.
//!
//! - `cargo xtask ci`: what CI runs: the format check, clippy with warnings as errors, and the tests.

use anyhow::Context;
use xshell::{cmd, Shell};

const HELP: &str = "\
cargo xtask <command>

Commands:
  ci     cargo fmt --check, cargo clippy --workspace --all-targets -- -D warnings, cargo test --workspace
";

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let command = args.next();
    let sh = Shell::new()?;
    sh.change_dir(project_root());
    match command.as_deref() {
        Some("ci") => ci(&sh),
        None | Some("help" | "-h" | "--help") => {
            print!("{HELP}");
            Ok(())
        }
        Some(other) => anyhow::bail!("unknown xtask command {other:?}; run `cargo xtask help`"),
    }
}

fn project_root() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("xtask lives in the workspace").to_path_buf()
}

fn ci(sh: &Shell) -> anyhow::Result<()> {
    cmd!(sh, "cargo fmt --all -- --check").run().context("formatting differs: run `cargo fmt --all`")?;
    cmd!(sh, "cargo clippy --workspace --all-targets -- -D warnings").run().context("clippy found problems")?;
    cmd!(sh, "cargo test --workspace").run().context("tests failed")?;
    Ok(())
}
