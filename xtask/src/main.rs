//! `cargo xtask`: project automation in Rust rather than shell scripts.

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Parser;
use xshell::{cmd, Shell};
use xtask::cli::{Cli, Task};
use xtask::release::{release, Binaries, Options};

fn main() {
    let cli = Cli::parse();
    if let Err(error) = run(cli.command) {
        eprintln!("xtask: error: {}", do_core::redact::redact(&format!("{error:#}")));
        std::process::exit(do_core::exit::exit_code_of(&error) as i32);
    }
}

fn project_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("xtask lives in the workspace").to_path_buf()
}

fn run(task: Task) -> anyhow::Result<()> {
    let root = project_root();
    match task {
        Task::Ci => {
            let sh = Shell::new()?;
            sh.change_dir(&root);
            cmd!(sh, "cargo fmt --all -- --check").run().context("formatting differs: run `cargo fmt --all`")?;
            cmd!(sh, "cargo clippy --workspace --all-targets -- -D warnings").run().context("clippy found problems")?;
            cmd!(sh, "cargo test --workspace").run().context("tests failed")?;
            Ok(())
        }
        Task::Demo => {
            let binaries = Binaries::build(&root)?;
            let started = std::time::Instant::now();
            let outcome = xtask::demo::run(binaries, &root.join("target/xtask/demo"), true)?;
            eprintln!("\n{}", outcome.text);
            if let Some(dir) = &outcome.out_dir {
                eprintln!(
                    "report: {} (every record of every step; each step's output beside it)",
                    dir.join("report.jsonl").display()
                );
            }
            eprintln!("demo finished in {}", do_core::duration::human(started.elapsed()));
            anyhow::ensure!(outcome.exit == 0, "the demo release failed with exit {}", outcome.exit);
            Ok(())
        }
        Task::Release(args) => {
            let config = xtask::config::with_flags(&args)?;
            let binaries = Binaries::build(&root)?;
            let options = Options {
                config,
                repo_dir: args.dir.clone(),
                execute: args.execute,
                binaries,
                out_root: root.join("target/xtask"),
                env: Vec::new(),
                echo: true,
            };
            let outcome = release(&options)?;
            print!("{}", String::from_utf8_lossy(&outcome.report));
            eprintln!("\n{}", outcome.text);
            if let Some(dir) = &outcome.out_dir {
                eprintln!("step outputs: {}", dir.display());
            }
            std::process::exit(outcome.exit);
        }
        Task::Bench(args) => {
            let binaries = xtask::bench::BenchBinaries::build_release(&root)?;
            let rows = xtask::bench::run(&binaries, args.quick)?;
            let out = root.join("target/xtask/bench");
            std::fs::create_dir_all(&out)?;
            std::fs::write(out.join("bench.json"), serde_json::to_string_pretty(&rows)? + "\n")?;
            print!("{}", xtask::bench::table(&rows));
            eprintln!("bench: figures saved to {}", out.join("bench.json").display());
            let broken: Vec<&str> =
                rows.iter().filter(|r| r.holds == Some(false)).map(|r| r.measure.as_str()).collect();
            anyhow::ensure!(broken.is_empty(), "bounds not kept: {}", broken.join("; "));
            Ok(())
        }
        Task::GcCanary(args) => {
            let token = std::env::var(do_core::api::TOKEN_VARIABLE)
                .ok()
                .filter(|t| !t.trim().is_empty())
                .context("no API token: set DIGITALOCEAN_ACCESS_TOKEN")?;
            let options = xtask::canary::Options {
                api_url: std::env::var(do_core::api::API_URL_VARIABLE)
                    .unwrap_or_else(|_| do_core::api::DEFAULT_API_URL.into()),
                token: do_core::api::Secret::new(token.trim().to_string()),
                registry: args.registry,
                registry_url: std::env::var(do_core::oci::REGISTRY_URL_VARIABLE).ok(),
                repository: args.repository,
                timeout: args.timeout,
                interval: std::time::Duration::from_secs(15),
                keep: args.keep,
                quiet: false,
            };
            match xtask::canary::run(&options) {
                Ok(report) => {
                    println!("{}", serde_json::to_string_pretty(&report)?);
                    eprintln!("gc-canary: {}", report.verdict);
                    Ok(())
                }
                Err(error) => {
                    eprintln!("gc-canary: error: {error:#}");
                    std::process::exit(do_core::exit::exit_code_of(&error) as i32);
                }
            }
        }
        Task::Dist(args) => {
            let target = match &args.target {
                Some(target) => target.clone(),
                None => xtask::dist::host_target()?,
            };
            let binaries = xtask::dist::build(&root, args.target.as_deref())?;
            let out = if args.out.is_absolute() { args.out.clone() } else { root.join(&args.out) };
            let archive =
                xtask::dist::pack(&binaries, env!("CARGO_PKG_VERSION"), &target, &out, xtask::dist::SIZE_BUDGET)?;
            for (tool, size) in &archive.sizes {
                eprintln!("dist: {tool:<11} {:>5.1} MB", *size as f64 / 1e6);
            }
            println!("{}  {}", archive.sha256, archive.path.display());
            Ok(())
        }
        Task::Docs => {
            let out = root.join("target/xtask");
            let written = xtask::docs::generate(&out)?;
            eprintln!("wrote {} files under {}/completions and {}/man", written.len(), out.display(), out.display());
            Ok(())
        }
    }
}
