use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use do_core::cli::{ApiArgs, IoArgs};
use do_core::duration::parse_duration;

const AFTER_HELP: &str = "\
A dry run unless --execute: the plan is the output (a prune record with dry_run: true) and a
table on stderr. A tagged manifest is kept if any rule keeps it:
  the tag latest, always; --keep-tag REGEX (whole tags); --keep-last N; --keep-within DURATION;
  the repository's newest tagged manifest (unless --allow-empty); digests and tags named by
  tag, image and deploy records on the input; and what App Platform needs: for every app of
  the account, the current spec, the active, in-progress and pending deployments and the images
  of the last --keep-rollback distinct images per component that were ACTIVE before (a redeploy
  of the same image does not use up a place). If an app or its deployments cannot be read, nothing is deleted.
  --protect-app never narrows that: it checks that the named app exists and runs an image of
  this registry (exit 2 otherwise), for scripts that want to be told when an app moves.
A manifest none of whose tags is kept is deleted whole; if some tags are kept, only the others
are deleted.

Signatures, attestations and SBOMs are not releases: cosign's `sha256-<digest>.sig`, `.att` and
`.sbom` tags, any other `sha256-<digest>` tag (a referrers fallback index), and any manifest with
an OCI `subject` are artifacts of the image they name. They take no --keep-last place and never
count as the newest image; they stay while their image stays (every image an app runs keeps its
signatures) and go in the same run as their image (--keep-artifacts keeps them). One whose
image is nowhere in the registry is an orphan and goes; one whose image cannot be determined
(in another repository, unreadable) stays and is reported.

Images are often indexes (multi-platform builds, and buildx's default provenance attestation):
their platform and attestation manifests are untagged. do-prune reads manifests on the registry
host (DIGITALOCEAN_REGISTRY_URL, default https://registry.digitalocean.com; the simulator's own
address when the API is a loopback simulator) with short-lived read-only credentials, and keeps
everything a kept image holds or that refers to it. Untagged manifests nothing kept needs are
deleted by do-prune itself (each index before what it holds); if any manifest of a repository
cannot be read, nothing in that repository is deleted.

An executed prune waits for a running GC first (the registry is read-only during one), reads the
apps and re-lists each repository right before deleting, and keeps whatever became needed. Then
GC starts with an explicit type, by default \"unreferenced blobs only\". An untagged type is
refused (exit 2, nothing deleted) unless no repository of the registry needs an untagged
manifest, since GC covers the whole registry.

Token scopes: registry:read, registry:delete, registry:update (GC, registry credentials), app:read.

Examples:
  do-prune --keep-last 10 --keep-within 30d                 # the plan, nothing deleted
  do-prune --keep-last 10 --execute --gc wait
  do-prune --keep-tag 'release-.*' --target-usage 80 --execute
  do-prune --keep-last 5 --plan-out plan.json && do-prune --apply plan.json --execute

Output: the input records, then one record
  {\"kind\":\"prune\",\"v\":2,\"data\":{\"registry\",\"dry_run\",\"policy\",\"usage\",\"repositories\",\"failed\",
   \"skipped\",\"kept_at_recheck\",\"index_children_listed\",\"referrers_api\",\"gc\",\"requests\",
   \"registry_requests\",\"cache\"}}
  each repository: name, kept (digest, tags, reason), deleted (digest, tags, all_tags, bytes,
  action, reason), untagged_kept, blocked, artifacts; ARCHITECTURE.md lists every field

GitHub Actions outputs (written to $GITHUB_OUTPUT when GITHUB_ACTIONS=true):
  deleted_count  deletions made (0 in a dry run)
  planned_count  deletions in the plan
  freed_bytes    bytes the plan frees once GC has run, from the listing; in a dry run, what it
                 would free
  dry_run        true unless --execute
  gc_uuid        the garbage collection started (empty when none)

Exit codes:
  0  done (also: nothing to delete)
  1  failed: API error, some deletions failed, or GC did not start (all listed in the record)
  2  usage error, bad input, a rail (--max-delete), or an unsafe --gc-type; nothing was deleted
  3  deadline exceeded (waiting for a running GC before deleting: nothing deleted; or later)
  4  the GC it waited for failed";

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum GcMode {
    /// Start GC and return
    Start,
    /// Start GC and wait for it to end
    Wait,
    /// Do not start GC
    Off,
}

/// Delete DOCR images a retention policy no longer keeps, never those a deployment needs, then start GC.
#[derive(Parser, Debug)]
#[command(name = "do-prune", version, after_help = AFTER_HELP)]
pub struct Cli {
    /// The registry (found automatically when the account has one)
    #[arg(long, value_name = "NAME")]
    pub registry: Option<String>,

    /// Only these repositories (repeatable); by default all
    #[arg(long, visible_alias = "repo", value_name = "NAME")]
    pub repository: Vec<String>,

    /// Keep tags matching this regular expression (whole tag; repeatable)
    #[arg(long, value_name = "REGEX")]
    pub keep_tag: Vec<String>,

    /// Keep the N most recent tagged manifests of each repository (and every one pushed in the
    /// same second as the last of them: a tie is kept whole)
    #[arg(long, value_name = "N", default_value_t = crate::policy::DEFAULT_KEEP_LAST)]
    pub keep_last: usize,

    /// Keep manifests updated within this long (30d, 12h)
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub keep_within: Option<Duration>,

    /// Check that this app (name or id; repeatable) exists and runs an image of this registry;
    /// every app's images are protected whatever this says
    #[arg(long, value_name = "NAME_OR_ID")]
    pub protect_app: Vec<String>,

    /// Protect this many distinct earlier images per app component that were ACTIVE (the
    /// rollback targets; a redeploy of an image already counted does not count)
    #[arg(long, value_name = "N", default_value_t = 2)]
    pub keep_rollback: usize,

    /// Allow deleting a repository's newest tagged manifest (and so every tagged one)
    #[arg(long)]
    pub allow_empty: bool,

    /// Keep the signatures, attestations and SBOMs of deleted images (orphans still go)
    #[arg(long)]
    pub keep_artifacts: bool,

    /// Keep untagged manifests pushed within this long: they may be part of a push in progress
    #[arg(long, value_name = "DURATION", default_value = "1h", value_parser = parse_duration)]
    pub untagged_grace: Duration,

    /// Refuse (exit 2) when the plan has more than N deletions
    #[arg(long, value_name = "N")]
    pub max_delete: Option<usize>,

    /// Delete, oldest first and only what the rules allow, until the estimated usage is at most
    /// this percentage of the plan's included storage
    #[arg(long, value_name = "PERCENT", value_parser = clap::value_parser!(u8).range(1..=100))]
    pub target_usage: Option<u8>,

    /// Delete; without it this is a dry run
    #[arg(long)]
    pub execute: bool,

    /// Save the plan to FILE
    #[arg(long, value_name = "FILE")]
    pub plan_out: Option<PathBuf>,

    /// Use a saved plan; entries whose manifest changed since are skipped and reported
    #[arg(long, value_name = "FILE", conflicts_with_all = ["keep_tag", "keep_within", "target_usage", "repository"])]
    pub apply: Option<PathBuf>,

    /// After an executed prune: start GC, start it and wait, or leave it
    #[arg(long, value_enum, default_value_t = GcMode::Start)]
    pub gc: GcMode,

    /// The GC type to start; an untagged type only when nothing in the registry needs an untagged manifest
    #[arg(long, value_name = "TYPE", default_value = "unreferenced blobs only",
          value_parser = ["untagged manifests only", "unreferenced blobs only", "untagged manifests and unreferenced blobs"])]
    pub gc_type: String,

    /// Requests running at once: listing pages, manifest reads, deletions (all within the rate limit)
    #[arg(long, value_name = "N", default_value_t = 8, value_parser = clap::value_parser!(u16).range(1..=32))]
    pub concurrency: u16,

    /// Keep manifests read on the registry host here between runs, by digest (every entry is
    /// hashed when read; at most 256 MiB, least recently used go first) [default:
    /// $XDG_CACHE_HOME/do-release, else ~/.cache/do-release; none if it cannot be created]
    #[arg(long, value_name = "DIR", conflicts_with = "no_cache")]
    pub cache_dir: Option<PathBuf>,

    /// Read every manifest from the registry host; keep none between runs
    #[arg(long)]
    pub no_cache: bool,

    /// The registry host's URL (OCI distribution API), where manifests are read
    #[arg(long, value_name = "URL", env = do_core::oci::REGISTRY_URL_VARIABLE)]
    pub registry_url: Option<String>,

    /// Give up (exit 3) after this long
    #[arg(long, value_name = "DURATION", default_value = "1h", value_parser = parse_duration)]
    pub timeout: Duration,

    /// First pause between looks at a GC (one running before deleting, or ours with --gc wait);
    /// it grows by half each time up to --max-interval
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = parse_duration)]
    pub interval: Duration,

    /// Longest pause between looks at a GC
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = parse_duration)]
    pub max_interval: Duration,

    #[command(flatten)]
    pub api: ApiArgs,

    #[command(flatten)]
    pub io: IoArgs,
}
