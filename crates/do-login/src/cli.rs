use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use do_core::cli::{ApiArgs, IoArgs};
use do_core::duration::parse_duration;

const AFTER_HELP: &str = "\
Asks the API for registry credentials that expire (read-write unless --read-only) and
writes them into a docker config directory, merged with what is there, so `docker push` to
registry.digitalocean.com works until they expire. The API token itself is never written or
printed; the credential appears only in the config file, which is written with mode 0600.
A config that names a credential store (credsStore, or credHelpers for the registry host) is
refused: docker would ignore the entry. Use a directory of its own with DOCKER_CONFIG then.

Token scopes: registry:read (registry:update for read-write credentials).

Examples:
  do-login --registry my-registry                       # ~/.docker (or $DOCKER_CONFIG)
  do-login --docker-config \"$RUNNER_TEMP/docker\" --expiry 30m
  DOCKER_CONFIG=\"$RUNNER_TEMP/docker\" docker push registry.digitalocean.com/my-registry/web:v1
  do-login --logout --docker-config \"$RUNNER_TEMP/docker\"   # in an if: always() step
  do-login --print > config.json                        # the config JSON alone, for other clients

Output: the input records, then one record
  {\"kind\":\"login\",\"v\":1,\"data\":{\"registry\",\"host\",\"read_write\",\"expires_at\",\"config\",\"logged_out\"}}
  With --print, stdout is the docker config JSON alone and no input is read.

GitHub Actions outputs (written to $GITHUB_OUTPUT when GITHUB_ACTIONS=true):
  docker_config  the directory of the docker config written (for DOCKER_CONFIG)
  expires_at     when the credentials expire (RFC 3339)

Exit codes:
  0  logged in (or out)
  1  failed: API error (auth, network, server), or the config could not be written
  2  usage error or bad input (an unreadable config, a credential store in the way); nothing changed
  3  deadline exceeded (--timeout); nothing written";

/// Log docker in to DigitalOcean Container Registry with credentials that expire.
#[derive(Parser, Debug)]
#[command(name = "do-login", version, after_help = AFTER_HELP)]
pub struct Cli {
    /// Registry name; found automatically when the account has exactly one
    #[arg(long, value_name = "NAME")]
    pub registry: Option<String>,

    /// How long the credentials are valid (1m to 30d)
    #[arg(long, value_name = "DURATION", default_value = "15m", value_parser = parse_duration)]
    pub expiry: Duration,

    /// Credentials that can only pull
    #[arg(long)]
    pub read_only: bool,

    /// The docker config directory to merge into [default: $DOCKER_CONFIG, else ~/.docker]
    #[arg(long, value_name = "DIR", conflicts_with = "print")]
    pub docker_config: Option<PathBuf>,

    /// Print the docker config JSON on stdout instead of writing a file
    #[arg(long)]
    pub print: bool,

    /// Remove the registry host's entry from the docker config (no request is made)
    #[arg(long, conflicts_with_all = ["print", "expiry", "read_only"])]
    pub logout: bool,

    /// The registry host the entry is for, with --logout
    #[arg(long, value_name = "HOST", default_value = crate::REGISTRY_HOST, requires = "logout")]
    pub registry_host: String,

    /// Give up (exit 3) after this long
    #[arg(long, value_name = "DURATION", default_value = "2m", value_parser = parse_duration)]
    pub timeout: Duration,

    #[command(flatten)]
    pub api: ApiArgs,

    #[command(flatten)]
    pub io: IoArgs,
}
