//! `cargo xtask`: project automation in Rust rather than shell scripts.

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::{Parser, Subcommand};
use xshell::{cmd, Shell};
use xtask::config::{Config, CONFIG_HELP};
use xtask::release::{release, Binaries, Options};

#[derive(Parser)]
#[command(name = "cargo xtask", bin_name = "cargo xtask", about = "do-release project automation", version)]
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
    /// Release an app: preflight, build, gc-wait, tag, push, deploy, prune (a dry run unless --execute)
    #[command(after_help = format!("{RELEASE_HELP}{CONFIG_HELP}"))]
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

const RELEASE_HELP: &str = "\
Steps, in this order (numbers as in the output and the saved files):
  1 preflight  the next version (do-tag's dry run: clean tree, allowed branch, on the remote),
               the builder (docker answering and a Dockerfile, or the commands found), the token
               against the registry and the app, the app running the repository, and whether
               the image tag already exists (reused only when built from HEAD's commit);
               any failure is exit 2 with nothing changed
  2 build      the image, locally, labelled org.opencontainers.image.revision=COMMIT
  3 gc-wait    no push while a garbage collection keeps the registry read-only
  4 tag        the git tag, created and pushed (only after a good build)
  5 push       the image, with short-lived registry credentials only the push sees
  6 deploy     do-deploy, followed to the end (and checked, with check_path)
  7 prune      do-prune, then GC
Without --execute every tool runs in its dry-run mode and nothing is built or pushed. A rerun
after a failure at any step continues without a second tag, push or deployment. Each step's
output is saved under target/xtask/release-TAG/.

Run it from the do-release checkout (where the cargo xtask alias lives), with -C naming the
app repository; DIR/do-release.toml holds the settings, and every key can be overridden by
the flag of the same name.

The token comes from DIGITALOCEAN_ACCESS_TOKEN (scopes: registry read and update, app read
and update); DIGITALOCEAN_API_URL points the tools at another API (a do-sim on 127.0.0.1).

Examples:
  cargo xtask release -C ../shop                      # the dry run: checks and the plan
  cargo xtask release -C ../shop --execute            # release
  cargo xtask release -C ../shop --execute --keep-last 5 --bump minor

Exit codes:
  0  released (or, without --execute, the plan is ready)
  1  a step failed (the output names it); rerun to continue
  2  bad configuration, or a preflight check failed; nothing was changed
  3  a deadline passed (a GC or the deployment outlasted its timeout)
  4  the deployment ended ERROR or CANCELED, or its check failed

";

/// Flags override the keys of do-release.toml of the same name.
#[derive(clap::Args)]
struct ReleaseArgs {
    /// The app repository (its do-release.toml is read)
    #[arg(short = 'C', value_name = "DIR", default_value = ".")]
    dir: PathBuf,
    /// The configuration file (default: DIR/do-release.toml)
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Release; without it every step runs in its dry-run mode and nothing changes
    #[arg(long)]
    execute: bool,
    /// The DOCR registry (default: the account's only one)
    #[arg(long, value_name = "NAME")]
    registry: Option<String>,
    /// The DOCR repository the app runs
    #[arg(long, value_name = "NAME")]
    repository: Option<String>,
    /// The App Platform app, by name or id
    #[arg(long, value_name = "NAME_OR_ID")]
    app: Option<String>,
    /// Deploy only these components (repeatable; default: every one running the repository)
    #[arg(long = "component", value_name = "NAME")]
    components: Vec<String>,
    /// The git remote the tag is pushed to
    #[arg(long, value_name = "NAME")]
    remote: Option<String>,
    /// Release only from a branch matching GLOB (repeatable)
    #[arg(long = "allow-branch", value_name = "GLOB")]
    allow_branch: Vec<String>,
    /// The prefix of version tags
    #[arg(long, value_name = "PREFIX")]
    tag_prefix: Option<String>,
    /// patch, minor, major, or auto (from conventional commits)
    #[arg(long, value_name = "BUMP")]
    bump: Option<String>,
    /// docker, commands (the build and push keys) or simulator (do-sim only)
    #[arg(long, value_name = "BUILDER")]
    builder: Option<String>,
    /// The build command, as words separated by spaces ({image} {tag} {registry} {repository} {revision})
    #[arg(long, value_name = "WORDS")]
    build: Option<String>,
    /// The push command, as words separated by spaces
    #[arg(long, value_name = "WORDS")]
    push: Option<String>,
    /// Keep the N most recent tagged images of each repository
    #[arg(long, value_name = "N")]
    keep_last: Option<usize>,
    /// Keep images pushed within this long ("" = off)
    #[arg(long, value_name = "DURATION")]
    keep_within: Option<String>,
    /// Keep tags matching REGEX (repeatable)
    #[arg(long = "keep-tag", value_name = "REGEX")]
    keep_tags: Vec<String>,
    /// Keep the images of the last N deployments each app may roll back to
    #[arg(long, value_name = "N")]
    keep_rollback: Option<usize>,
    /// After pruning: start, wait (start and wait for the end) or off
    #[arg(long, value_name = "WHAT")]
    gc: Option<String>,
    /// The GC type ("unreferenced blobs only" unless nothing needs an untagged manifest)
    #[arg(long, value_name = "TYPE")]
    gc_type: Option<String>,
    /// How long to wait for a running GC before the push
    #[arg(long, value_name = "DURATION")]
    gc_timeout: Option<String>,
    /// How long to follow the deployment
    #[arg(long, value_name = "DURATION")]
    deploy_timeout: Option<String>,
    /// After ACTIVE, ask this path of the app's live URL until it answers 200
    #[arg(long, value_name = "PATH")]
    check_path: Option<String>,
    /// And expect the released tag in this header (x-app-version, say)
    #[arg(long, value_name = "HEADER")]
    check_version_header: Option<String>,
    /// Roll back when the deployment or its check fails (true or false)
    #[arg(long, value_name = "BOOL")]
    rollback_on_failure: Option<bool>,
    /// The first pause between looks at GC and deployments
    #[arg(long, value_name = "DURATION")]
    poll_interval: Option<String>,
}

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
    let mut config =
        xtask::config::read(&args.dir, args.config.as_deref(), args.repository.is_some() && args.app.is_some())?;
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
    config.check().map_err(|e| do_core::Failure::usage(format!("{e:#}")))?;
    Ok(config)
}
