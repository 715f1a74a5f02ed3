//! `cargo xtask`: project automation in Rust rather than shell scripts.

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::{Parser, Subcommand};
use xshell::{cmd, Shell};
use xtask::config::{Config, CONFIG_FILE, CONFIG_HELP};
use xtask::release::{release, Binaries, Options};

#[derive(Parser)]
#[command(name = "cargo xtask", about = "do-release project automation")]
struct Cli {
    #[command(subcommand)]
    command: Task,
}

#[derive(Subcommand)]
enum Task {
    /// What CI runs: cargo fmt --check, clippy with -D warnings, cargo test --workspace
    Ci,
    /// The whole release offline against the simulator: no docker, token or configuration
    Demo,
    /// Release an app: gc-wait, tag, gc-wait, build and push, deploy, prune (a dry run unless --execute)
    #[command(after_help = CONFIG_HELP)]
    Release(Box<ReleaseArgs>),
    /// Generate shell completions and man pages into target/xtask/
    Docs,
    /// Settle what DOCR's untagged GC does to an index's children, on a scratch registry of yours
    #[command(after_help = GC_CANARY_HELP)]
    GcCanary(GcCanaryArgs),
    /// Benchmarks: a prune's request economy over 2,000 manifests, and 3,000 deletions under a scaled-down rate limit
    Bench,
}

const GC_CANARY_HELP: &str = "\
Pushes a tiny synthetic multi-platform image (two platform images and an attestation, as docker
buildx makes them) to REPOSITORY of the registry, runs a garbage collection of type \"untagged
manifests and unreferenced blobs\" (about 15 minutes on DOCR), and reports, as JSON on stdout,
whether the untagged manifests the tagged index holds survived, and whether the API's digests
listing shows them. Then it deletes the canary repository (unless --keep).

The GC covers the whole registry, so the registry must hold no other repository: use a scratch
registry (Professional plans allow several). The token needs registry:read, registry:update,
registry:create and registry:delete; it comes from DIGITALOCEAN_ACCESS_TOKEN.

Example:
  DIGITALOCEAN_ACCESS_TOKEN=... cargo xtask gc-canary --registry my-scratch-registry

Exit codes: 0 measured (whatever the verdict), 1 failed, 2 refused (another repository, a running GC)";

#[derive(clap::Args)]
struct GcCanaryArgs {
    /// The scratch registry: it must hold no repository but the canary's
    #[arg(long, value_name = "NAME")]
    registry: String,
    /// The repository the canary is pushed to (deleted afterwards)
    #[arg(long, value_name = "NAME", default_value = "do-release-gc-canary")]
    repository: String,
    /// How long to wait for the GC
    #[arg(long, value_name = "DURATION", default_value = "45m", value_parser = do_core::duration::parse_duration)]
    timeout: std::time::Duration,
    /// Leave the canary repository in place
    #[arg(long)]
    keep: bool,
}

/// Flags override the keys of do-release.toml of the same name.
#[derive(clap::Args)]
struct ReleaseArgs {
    /// The app repository
    #[arg(short = 'C', value_name = "DIR", default_value = ".")]
    dir: PathBuf,
    /// The configuration file (default: DIR/do-release.toml)
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Release; without it every step runs in its dry-run mode
    #[arg(long)]
    execute: bool,
    #[arg(long)]
    registry: Option<String>,
    #[arg(long)]
    repository: Option<String>,
    #[arg(long)]
    app: Option<String>,
    #[arg(long = "component", value_name = "NAME")]
    components: Vec<String>,
    #[arg(long)]
    remote: Option<String>,
    #[arg(long = "allow-branch", value_name = "GLOB")]
    allow_branch: Vec<String>,
    #[arg(long)]
    tag_prefix: Option<String>,
    #[arg(long)]
    bump: Option<String>,
    #[arg(long)]
    builder: Option<String>,
    /// The build command, as one shell-free list of words separated by spaces
    #[arg(long, value_name = "WORDS")]
    build: Option<String>,
    /// The push command, as words separated by spaces
    #[arg(long, value_name = "WORDS")]
    push: Option<String>,
    #[arg(long)]
    keep_last: Option<usize>,
    #[arg(long)]
    keep_within: Option<String>,
    #[arg(long = "keep-tag", value_name = "REGEX")]
    keep_tags: Vec<String>,
    #[arg(long)]
    keep_rollback: Option<usize>,
    #[arg(long)]
    gc: Option<String>,
    #[arg(long)]
    gc_type: Option<String>,
    #[arg(long)]
    gc_timeout: Option<String>,
    #[arg(long)]
    deploy_timeout: Option<String>,
    #[arg(long, value_name = "PATH")]
    check_path: Option<String>,
    #[arg(long, value_name = "HEADER")]
    check_version_header: Option<String>,
    #[arg(long)]
    rollback_on_failure: Option<bool>,
    #[arg(long)]
    poll_interval: Option<String>,
}

fn main() {
    let cli = Cli::parse();
    if let Err(error) = run(cli.command) {
        eprintln!("xtask: error: {error:#}");
        std::process::exit(1);
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
            println!(
                "\nrun report ({}):",
                outcome.out_dir.as_deref().map(|d| d.display().to_string()).unwrap_or_default()
            );
            print!("{}", String::from_utf8_lossy(&outcome.report));
            println!("\n{}", outcome.text);
            println!("demo finished in {}", do_core::duration::human(started.elapsed()));
            anyhow::ensure!(outcome.exit == 0, "the demo release failed with exit {}", outcome.exit);
            Ok(())
        }
        Task::Release(args) => {
            let config = load_config(&args)?;
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
        Task::Bench => {
            let binaries = Binaries::build(&root)?;
            eprintln!("bench: the request economy of a prune of 2,000 manifests (issue 10's acceptance)...");
            let economy = xtask::bench::prune_economy(&binaries)?;
            eprint!("{}", economy.table());
            let out = root.join("target/xtask/bench");
            std::fs::create_dir_all(&out)?;
            std::fs::write(out.join("prune-economy.json"), serde_json::to_string_pretty(&economy)? + "\n")?;
            eprintln!("bench: pruning 3000 manifests under a limit of 300 requests per 3 s (100/s)...");
            let figures = xtask::bench::prune_load(&binaries, 3000, 300, 0.05)?;
            let out = root.join("target/xtask/bench");
            std::fs::create_dir_all(&out)?;
            std::fs::write(out.join("prune-load.json"), serde_json::to_string_pretty(&figures)? + "\n")?;
            println!("{}", serde_json::to_string_pretty(&figures)?);
            eprintln!(
                "bench: {} of {} deleted, {} failed; {} requests accepted, {} answered 429 and retried; {:.1} s against an ideal {:.1} s: {:.1}% of the limit",
                figures.deleted,
                figures.deletions,
                figures.failed,
                figures.accepted_requests,
                figures.rejected_429,
                figures.elapsed_seconds,
                figures.ideal_seconds,
                figures.throughput_of_limit * 100.0
            );
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
        Task::Docs => {
            let out = root.join("target/xtask");
            let written = xtask::docs::generate(&out)?;
            eprintln!("wrote {} files under {}/completions and {}/man", written.len(), out.display(), out.display());
            Ok(())
        }
    }
}

fn load_config(args: &ReleaseArgs) -> anyhow::Result<Config> {
    let path = args.config.clone().unwrap_or_else(|| args.dir.join(CONFIG_FILE));
    let mut config = match std::fs::read_to_string(&path) {
        Ok(text) => Config::from_toml(&text, &path.display().to_string())?,
        Err(_) if args.config.is_none() => Config::default(),
        Err(error) => anyhow::bail!("cannot read --config {}: {error}", path.display()),
    };
    let words = |text: &String| text.split_whitespace().map(str::to_string).collect::<Vec<_>>();
    macro_rules! set {
        ($($field:ident),*) => { $( if let Some(value) = &args.$field { config.$field = value.clone(); } )* };
    }
    set!(
        registry,
        repository,
        app,
        remote,
        tag_prefix,
        bump,
        builder,
        keep_within,
        gc,
        gc_type,
        gc_timeout,
        deploy_timeout,
        check_path,
        check_version_header,
        poll_interval
    );
    if let Some(value) = args.keep_last {
        config.keep_last = value;
    }
    if let Some(value) = args.keep_rollback {
        config.keep_rollback = value;
    }
    if let Some(value) = args.rollback_on_failure {
        config.rollback_on_failure = value;
    }
    if let Some(build) = &args.build {
        config.build = words(build);
    }
    if let Some(push) = &args.push {
        config.push = words(push);
    }
    for (list, extra) in [
        (&mut config.components, &args.components),
        (&mut config.allow_branch, &args.allow_branch),
        (&mut config.keep_tags, &args.keep_tags),
    ] {
        if !extra.is_empty() {
            *list = extra.clone();
        }
    }
    config.check()?;
    Ok(config)
}
