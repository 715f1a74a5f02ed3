use std::time::Duration;

use clap::Parser;
use do_core::cli::{ApiArgs, IoArgs};
use do_core::duration::parse_duration;

const AFTER_HELP: &str = "\
A registry is read-only while garbage collection (GC) runs, so a push then fails.
do-gc-wait returns once no GC is active. It never fails open: an auth, network or
server error is exit 1, never \"no GC running\".

Token scopes: registry:read (and registry:update with --cancel-after).

Examples:
  do-gc-wait --registry my-registry
  do-gc-wait --registry my-registry --timeout 20m --cancel-after 45m
  do-gc-wait --no-input | do-tag --bump auto | ...

Output: the input records, then one record
  {\"kind\":\"gc-wait\",\"v\":1,\"data\":{\"registry\",\"outcome\",\"waited_ms\",\"polls\",\"gc\",\"cancelled\"}}
  outcome: clear (none ran) | succeeded | failed | cancelled | ended (how is unknown) | timeout

GitHub Actions outputs (written to $GITHUB_OUTPUT when GITHUB_ACTIONS=true):
  registry    the registry waited on
  gc_outcome  the record's outcome: clear, succeeded, failed, cancelled, ended or timeout
  waited_ms   how long it waited

Exit codes:
  0  no GC is running (also when one ended failed or cancelled: the registry is writable)
  1  failed: API error (auth, network, server), with the request id
  2  usage error or bad input; nothing was requested
  3  deadline exceeded: a GC still runs after --timeout";

/// Wait until no DigitalOcean Container Registry garbage collection runs.
#[derive(Parser, Debug)]
#[command(name = "do-gc-wait", version, after_help = AFTER_HELP)]
pub struct Cli {
    /// Registry name; found automatically when the account has exactly one
    #[arg(long, value_name = "NAME")]
    pub registry: Option<String>,

    /// Give up (exit 3) when a GC still runs after this long
    #[arg(long, value_name = "DURATION", default_value = "30m", value_parser = parse_duration)]
    pub timeout: Duration,

    /// First pause between looks; it grows by half each time up to --max-interval
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = parse_duration)]
    pub interval: Duration,

    /// Longest pause between looks
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = parse_duration)]
    pub max_interval: Duration,

    /// Cancel a GC that has been active for longer than this (off by default)
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub cancel_after: Option<Duration>,

    #[command(flatten)]
    pub api: ApiArgs,

    #[command(flatten)]
    pub io: IoArgs,
}
