//! The `do-sim` command: serve a seeded simulator, push an image, start a GC.

use std::time::Duration;

use clap::Parser;

use crate::client::*;
use crate::handle::Sim;
use crate::seed::{Seed, DEFAULT_TOKEN};
use crate::state::{RateLimit, Timing};

const AFTER_HELP: &str = "\
Started with no --state file, the simulator holds:
  registry   example-registry (Basic tier, fra1)
  repository web: v1.0.0, v1.1.0, and v1.2.0 also tagged latest
  app        example-app: service web runs web:v1.2.0, ACTIVE deployment

Apps can be created (POST /v2/apps: names are unique), proposed (POST /v2/apps/propose: every
problem as `error validating app spec field \"FIELD\": WHY`, one per line) and deleted. Stored
specs gain what App Platform fills in (region, instance size and count, ingress for routes;
secrets encrypted), and a new app has no live URL until its first deployment is ACTIVE.

The registry host (the OCI distribution API, as docker uses it) is served on the same address:
  GET /v2/ answers with a Bearer challenge; tokens come from /v2/registry/auth for credentials
  from GET /v2/registries/NAME/docker-credentials. No pushes while a GC runs.

Control API (no token needed) for tests, the demo and benchmarks:
  POST   /_sim/push         {\"repository\",\"tag\",\"size_bytes\"?,\"registry\"?,\"platforms\"?,\"attestations\"?,\"labels\"?}
                            platforms [\"linux/amd64\",…] pushes an index, as buildx does (409 while a GC runs)
                            {\"repository\",\"signature_of|attestation_of|sbom_of|referrer_of\":TAG,\"fallback_tag\"?}
                            pushes what cosign pushes about that image (sha256-<digest>.sig, .att, .sbom; an
                            OCI 1.1 referrer, with the sha256-<digest> fallback index when fallback_tag)
  PUT    /_sim/registry-options  {\"registry\"?,\"hide_index_children\"?,\"gc_keeps_index_children\"?,\"referrers_api\"?}
  POST   /_sim/gc           {\"type\"?,\"plan\"?:[{\"status\",\"ms\"}],\"final_status\"?}
  POST   /_sim/faults       {\"path\",\"method\"?,\"kind\":\"status|echo|drop|malformed|truncated|latency|drop_after_apply|body\",\"times\"?}
  GET    /_sim/requests     the request log;  DELETE clears it
  GET    /_sim/registry-requests  the registry host's request log
  GET    /_sim/state        everything the simulator holds
  PUT    /_sim/rate-limit   {\"per_hour\",\"per_minute\",\"window_scale\"}
  PUT    /_sim/latency      {\"ms\"}  added to every API and registry-host request
  POST   /_sim/apps/ID/next-deployment  {\"outcome\":\"success|build_error|deploy_error|hang|canceled|superseded|
                            auto_rollback\",\"phase_ms\"?,\"live\"?:{\"scenario\":\"healthy|failing|failing_for|failing_after|
                            failing_between|flapping|wrong_version\",\"ms\"?,\"from_ms\"?,\"to_ms\"?,\"period_ms\"?,\"version\"?}}
  GET    /v2/apps/ID/health the app's health, from its ACTIVE deployment's live scenario
  PUT    /_sim/quirks       {\"update_without_pending\"?,\"normalized_specs\"?}  the live API's ways
  GET    /_sim/live/APP/…   the app's live URL: answers per its ACTIVE deployment (x-app-version)

Pushing an image from a shell (what `docker push` is in the demo):
  do-sim push --api-url http://127.0.0.1:8080 --repository web --tag v2.0.0 \\
    --label org.opencontainers.image.revision=$(git rev-parse HEAD)

Example:
  do-sim --listen 127.0.0.1:8080 &
  DIGITALOCEAN_API_URL=http://127.0.0.1:8080 DIGITALOCEAN_ACCESS_TOKEN=sim-token \\
    do-gc-wait --registry example-registry

Exit codes:
  0  stopped (the server), or pushed / started (push, gc)
  1  push or gc failed: the simulator refused or could not be reached
  2  usage error: bad flags, an unreadable --state file, an address it cannot listen on";

/// A local simulator of the DigitalOcean API parts do-release uses.
#[derive(Parser, Debug)]
#[command(name = "do-sim", version, after_help = AFTER_HELP, args_conflicts_with_subcommands = true)]
pub struct Cli {
    #[command(subcommand)]
    command: Option<Command>,

    /// Address to listen on; port 0 picks a free one. The URL is printed on stdout.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8080")]
    listen: String,

    /// Seed the state from this JSON file instead of the default world
    #[arg(long, value_name = "FILE")]
    state: Option<std::path::PathBuf>,

    /// The token clients must send (a simulator token, not a real one)
    #[arg(long, value_name = "TOKEN", default_value = DEFAULT_TOKEN)]
    token: String,

    /// How long each garbage-collection status lasts
    #[arg(long, value_name = "DURATION", default_value = "2s", value_parser = parse_duration)]
    gc_step: Duration,

    /// How long each deployment phase lasts
    #[arg(long, value_name = "DURATION", default_value = "1s", value_parser = parse_duration)]
    deploy_phase: Duration,

    /// Hourly request limit per token
    #[arg(long, value_name = "N", default_value_t = 5000)]
    rate_limit_per_hour: u64,

    /// Burst limit: requests per minute
    #[arg(long, value_name = "N", default_value_t = 250)]
    rate_limit_per_minute: u64,

    /// Shrink the rate-limit windows: 0.01 makes the hour 36 seconds and the minute 0.6
    #[arg(long, value_name = "FACTOR", default_value_t = 1.0)]
    rate_window_scale: f64,

    /// Add this delay to every API and registry-host request, as a round trip to the real API
    /// would (100ms is typical); overrides the state file's latency_ms
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    latency: Option<Duration>,
}

#[derive(clap::Subcommand, Debug)]
pub enum Command {
    /// Push an image to a running simulator, as `docker push` would (refused while a GC runs)
    Push {
        /// The simulator's URL
        #[arg(long, value_name = "URL", env = "DIGITALOCEAN_API_URL")]
        api_url: String,
        /// The registry (default: the simulator's first)
        #[arg(long, value_name = "NAME")]
        registry: Option<String>,
        /// The repository to push to (created when new)
        #[arg(long, value_name = "REPO")]
        repository: String,
        /// The tag the image gets (moved from any image that had it)
        #[arg(long, value_name = "TAG", required_unless_present_any = ["signature_of", "attestation_of", "sbom_of", "referrer_of"])]
        tag: Option<String>,
        /// Push a cosign signature of this image (tag or digest): `sha256-<digest>.sig`
        #[arg(long, value_name = "TAG", group = "artifact", conflicts_with = "tag")]
        signature_of: Option<String>,
        /// Push a cosign attestation of this image: `sha256-<digest>.att`
        #[arg(long, value_name = "TAG", group = "artifact", conflicts_with = "tag")]
        attestation_of: Option<String>,
        /// Push a cosign SBOM of this image: `sha256-<digest>.sbom`
        #[arg(long, value_name = "TAG", group = "artifact", conflicts_with = "tag")]
        sbom_of: Option<String>,
        /// Push an OCI 1.1 referrer (an untagged manifest whose subject is this image)
        #[arg(long, value_name = "TAG", group = "artifact", conflicts_with = "tag")]
        referrer_of: Option<String>,
        /// With --referrer-of: also the referrers fallback index, tagged `sha256-<digest>`
        #[arg(long, requires = "referrer_of")]
        fallback_tag: bool,
        /// The size of each image's layer
        #[arg(long, value_name = "BYTES", default_value_t = 20 * 1024 * 1024)]
        size_bytes: u64,
        /// Push a multi-platform index with an image per platform, as buildx does (repeatable)
        #[arg(long = "platform", value_name = "OS/ARCH")]
        platforms: Vec<String>,
        /// A label in the image's config, as `docker build --label` sets it (repeatable)
        #[arg(long = "label", value_name = "KEY=VALUE", value_parser = parse_label)]
        labels: Vec<(String, String)>,
    },
    /// Start a garbage collection in a running simulator (the registry is read-only while it runs)
    Gc {
        /// The simulator's URL
        #[arg(long, value_name = "URL", env = "DIGITALOCEAN_API_URL")]
        api_url: String,
        /// The registry (default: the simulator's first)
        #[arg(long, value_name = "NAME")]
        registry: Option<String>,
        /// How long each of its statuses lasts
        #[arg(long, value_name = "DURATION", default_value = "2s", value_parser = parse_duration)]
        step: Duration,
    },
}

fn parse_label(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((key, value)) if !key.trim().is_empty() => Ok((key.trim().to_string(), value.to_string())),
        _ => Err(format!("give KEY=VALUE, not {text:?}")),
    }
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    let span: jiff::Span = text.parse().map_err(|_| format!("cannot read duration {text:?}: use 500ms, 2s or 1m"))?;
    let signed = span.to_duration(jiff::SpanRelativeTo::days_are_24_hours()).map_err(|e| e.to_string())?;
    Duration::try_from(signed).map_err(|_| format!("duration {text:?} is negative"))
}

/// `do-sim`'s entry point.
pub fn main() -> i32 {
    let cli = Cli::parse();
    let (result, failure_code) = match cli.command {
        Some(Command::Push {
            api_url,
            registry,
            repository,
            tag,
            size_bytes,
            platforms,
            labels,
            signature_of,
            attestation_of,
            sbom_of,
            referrer_of,
            fallback_tag,
        }) => {
            let artifact = [
                ("signature_of", signature_of),
                ("attestation_of", attestation_of),
                ("sbom_of", sbom_of),
                ("referrer_of", referrer_of),
            ]
            .into_iter()
            .find_map(|(key, of)| of.map(|of| (key, of)));
            let image = PushRequest {
                registry,
                repository,
                tag: tag.unwrap_or_default(),
                size_bytes,
                platforms,
                labels: labels.into_iter().collect(),
                artifact,
                fallback_tag,
            };
            (push_to(&api_url, &image), 1)
        }
        Some(Command::Gc { api_url, registry, step }) => (start_gc_at(&api_url, registry.as_deref(), step), 1),
        None => (run(cli), 2),
    };
    match result {
        Ok(()) => 0,
        Err(error) => {
            eprintln!("do-sim: error: {error:#}");
            failure_code
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let timing =
        Timing { gc_step_ms: cli.gc_step.as_millis() as u64, deploy_phase_ms: cli.deploy_phase.as_millis() as u64 };
    let mut seed: Seed = match &cli.state {
        None => Seed::default_world(),
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| anyhow::anyhow!("cannot read --state {}: {e}", path.display()))?;
            serde_json::from_str(&text).map_err(|e| anyhow::anyhow!("--state {}: {e}", path.display()))?
        }
    };
    seed.rate_limit.get_or_insert(RateLimit {
        per_hour: cli.rate_limit_per_hour,
        per_minute: cli.rate_limit_per_minute,
        window_scale: cli.rate_window_scale,
    });
    if let Some(latency) = cli.latency {
        seed.latency_ms = Some(latency.as_millis() as u64);
    }
    let state = seed.into_state(&cli.token, timing)?;
    let sim = Sim::start(&cli.listen, state).map_err(|error| {
        if error.to_string().to_ascii_lowercase().contains("address already in use") {
            anyhow::anyhow!("cannot listen on {}: the address is in use; pass --listen 127.0.0.1:0 to pick a free port (the URL is printed)", cli.listen)
        } else {
            error
        }
    })?;
    println!("{}", sim.url());
    eprintln!(
        "do-sim: serving the DigitalOcean API simulator on {} (clients send the token given by --token); Ctrl-C stops it",
        sim.url()
    );
    sim.wait();
    Ok(())
}
