//! `cargo xtask`'s command line, in the library so its completions and man page are generated
//! with the tools'.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::config::CONFIG_HELP;

#[derive(Parser)]
#[command(name = "cargo xtask", bin_name = "cargo xtask", about = "do-release project automation", version)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Task,
}

#[derive(Subcommand)]
pub enum Task {
    /// What CI runs: cargo fmt --check, clippy with -D warnings, cargo test --workspace
    Ci,
    /// The whole release offline against the simulator: no docker, token or configuration
    Demo,
    /// Release an app: preflight, build, gc-wait, tag, push, deploy, prune (a dry run unless --execute)
    #[command(after_help = format!("{RELEASE_HELP}{CONFIG_HELP}"))]
    Release(Box<ReleaseArgs>),
    /// Generate shell completions and man pages into target/xtask/
    Docs,
    /// Release archives: build with --release, check each binary's size, pack with a SHA-256 file
    #[command(after_help = DIST_HELP)]
    Dist(DistArgs),
    /// Settle what DOCR's untagged GC does to an index's children, on a scratch registry of yours
    #[command(after_help = GC_CANARY_HELP)]
    GcCanary(GcCanaryArgs),
    /// Benchmarks, each figure beside its bound: request economy, scale, latency, rate limit, polling, memory
    #[command(after_help = BENCH_HELP)]
    Bench(BenchArgs),
}

const DIST_HELP: &str = "\
Writes target/distrib/do-release-<version>-<target>.tar.gz (do-tag, do-gc-wait, do-deploy,
do-prune, do-login, do-sim) and a .sha256 file beside it; exit 1 if a binary is over 8 MB.

Examples:
  cargo xtask dist
  cargo xtask dist --target x86_64-unknown-linux-musl";

#[derive(clap::Args, Debug)]
pub struct DistArgs {
    /// The target triple to build for [default: this machine's]
    #[arg(long, value_name = "TRIPLE")]
    pub target: Option<String>,
    /// Where the archive goes
    #[arg(long, value_name = "DIR", default_value = "target/distrib")]
    pub out: PathBuf,
}

const BENCH_HELP: &str = "\
Builds the tools and the simulator with --release, runs each scenario against its own do-sim
process on 127.0.0.1, prints one table on stdout and saves it to target/xtask/bench/bench.json.
Exit 1 when a figure misses its bound. The full run takes about five minutes on 2 cores.

Examples:
  cargo xtask bench
  cargo xtask bench --quick     # the small sizes only (what the test suite runs)";

#[derive(clap::Args, Debug)]
pub struct BenchArgs {
    /// Only the small sizes: 2,000 manifests, a 10,000-manifest dry run, short latency runs
    #[arg(long)]
    pub quick: bool,
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
pub struct GcCanaryArgs {
    /// The scratch registry: it must hold no repository but the canary's
    #[arg(long, value_name = "NAME")]
    pub registry: String,
    /// The repository the canary is pushed to (deleted afterwards)
    #[arg(long, value_name = "NAME", default_value = "do-release-gc-canary")]
    pub repository: String,
    /// How long to wait for the GC
    #[arg(long, value_name = "DURATION", default_value = "45m", value_parser = do_core::duration::parse_duration)]
    pub timeout: std::time::Duration,
    /// Leave the canary repository in place
    #[arg(long)]
    pub keep: bool,
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
the flag of the same name (a flag's default is its key's, listed below). A flag that feeds a
tool's flag has that flag's name (--prefix, --interval, --keep-last, --rollback-on-failure);
the two timeouts say whose --timeout they are.

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
pub struct ReleaseArgs {
    /// The app repository (its do-release.toml is read)
    #[arg(short = 'C', value_name = "DIR", default_value = ".")]
    pub dir: PathBuf,
    /// The configuration file (default: DIR/do-release.toml)
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Release; without it every step runs in its dry-run mode and nothing changes
    #[arg(long)]
    pub execute: bool,
    /// The DOCR registry (default: the account's only one)
    #[arg(long, value_name = "NAME")]
    pub registry: Option<String>,
    /// The DOCR repository the app runs
    #[arg(long, value_name = "NAME")]
    pub repository: Option<String>,
    /// The App Platform app, by name or id
    #[arg(long, value_name = "NAME_OR_ID")]
    pub app: Option<String>,
    /// The app spec in the app repository (.do/app.yaml, say): deploy it with do-deploy --spec
    #[arg(long, value_name = "FILE")]
    pub spec: Option<String>,
    /// A variable the spec's ${NAME} may use (repeatable)
    #[arg(long = "spec-env", value_name = "NAME")]
    pub spec_env: Vec<String>,
    /// Deploy only these components (repeatable; default: every one running the repository)
    #[arg(long = "component", value_name = "NAME")]
    pub components: Vec<String>,
    /// The git remote the tag is pushed to
    #[arg(long, value_name = "NAME")]
    pub remote: Option<String>,
    /// Release only from a branch matching GLOB (repeatable)
    #[arg(long = "allow-branch", value_name = "GLOB")]
    pub allow_branch: Vec<String>,
    /// The prefix of version tags (do-tag --prefix)
    #[arg(long, value_name = "PREFIX", alias = "tag-prefix")]
    pub prefix: Option<String>,
    /// Count only commits touching DIR for the version and the notes (repeatable)
    #[arg(long = "path", value_name = "DIR")]
    pub paths: Vec<String>,
    /// patch, minor, major, or auto (from conventional commits)
    #[arg(long, value_name = "BUMP")]
    pub bump: Option<String>,
    /// docker, commands (the build and push keys) or simulator (do-sim only)
    #[arg(long, value_name = "BUILDER")]
    pub builder: Option<String>,
    /// The build command, as words separated by spaces ({image} {tag} {registry} {repository} {revision})
    #[arg(long, value_name = "WORDS")]
    pub build: Option<String>,
    /// The push command, as words separated by spaces
    #[arg(long, value_name = "WORDS")]
    pub push: Option<String>,
    /// Keep the N most recent tagged images of each repository
    #[arg(long, value_name = "N")]
    pub keep_last: Option<usize>,
    /// Keep images pushed within this long ("" = off)
    #[arg(long, value_name = "DURATION")]
    pub keep_within: Option<String>,
    /// Keep tags matching REGEX (repeatable)
    #[arg(long = "keep-tag", value_name = "REGEX")]
    pub keep_tags: Vec<String>,
    /// Keep the images of the last N deployments each app may roll back to
    #[arg(long, value_name = "N")]
    pub keep_rollback: Option<usize>,
    /// After pruning: start, wait (start and wait for the end) or off
    #[arg(long, value_name = "WHAT")]
    pub gc: Option<String>,
    /// The GC type ("unreferenced blobs only" unless nothing needs an untagged manifest)
    #[arg(long, value_name = "TYPE")]
    pub gc_type: Option<String>,
    /// How long to wait for a running GC before the push (do-gc-wait --timeout)
    #[arg(long, value_name = "DURATION")]
    pub gc_timeout: Option<String>,
    /// How long to follow the deployment (do-deploy --timeout)
    #[arg(long, value_name = "DURATION")]
    pub deploy_timeout: Option<String>,
    /// After ACTIVE, ask this path of the app's live URL until it answers 200
    #[arg(long, value_name = "PATH")]
    pub check_path: Option<String>,
    /// And expect the released tag in this header (x-app-version, say)
    #[arg(long, value_name = "HEADER")]
    pub check_version_header: Option<String>,
    /// Keep watching after ACTIVE this long (do-deploy --soak; "" = off)
    #[arg(long, value_name = "DURATION")]
    pub soak: Option<String>,
    /// Roll back when the deployment or its check fails (the default)
    #[arg(long, overrides_with = "no_rollback_on_failure")]
    pub rollback_on_failure: bool,
    /// Do not roll back when the deployment or its check fails
    #[arg(long, overrides_with = "rollback_on_failure")]
    pub no_rollback_on_failure: bool,
    /// The first pause between looks at GC and deployments (the tools' --interval)
    #[arg(long, value_name = "DURATION", alias = "poll-interval")]
    pub interval: Option<String>,
}
