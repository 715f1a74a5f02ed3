use std::time::Duration;

use clap::Parser;
use do_core::cli::{ApiArgs, IoArgs};
use do_core::duration::parse_duration;

use crate::spec::Pin;

const AFTER_HELP: &str = "\
Points every service, worker and job that runs the DOCR repository at the new image (pinned by
digest unless --pin tag), PUTs the spec back with everything else unchanged (encrypted secrets
included), and follows the deployment that this update created, not the newest in the list.

Waiting is adaptive: one look after --interval (2s) at first, the pause growing by half each
time up to --max-interval (10s), so the end is noticed within one interval and no more than one
request is made per interval.
ACTIVE is success; ERROR, CANCELED and SUPERSEDED end at once with exit 4, the failed step,
its reason and the tail of its BUILD or DEPLOY log.

Token scopes: app:read, app:update, registry:read.

Examples:
  do-deploy --app shop --image registry.digitalocean.com/my-reg/web:v1.4.0
  do-deploy --app shop --repository web --tag v1.4.0 --rollback-on-failure
  do-deploy --app shop --redeploy --force-rebuild
  do-tag --bump auto | ... push ... | do-deploy --app shop --dry-run

Output: the input records, then one record
  {\"kind\":\"deploy\",\"v\":1,\"data\":{\"app_id\",\"app_name\",\"deployment_id\",\"previous_deployment_id\",
   \"phase\",\"image\",\"components\",\"changed\",\"dry_run\",\"cause\",\"duration_ms\",\"live_url\",\"failure\",\"rollback\"}}

Exit codes:
  0  the deployment is ACTIVE (also: already running this image, or --no-wait/--dry-run)
  1  failed: API error, or busy with --if-busy fail
  2  usage error or bad input (unknown component, tag not in the registry); nothing was changed
  3  deadline exceeded: the deployment is left running and reported
  4  the deployment ended ERROR, CANCELED or SUPERSEDED";

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum IfBusy {
    /// Wait for the deployment in progress to end, then deploy
    Wait,
    /// Cancel the deployment in progress, then deploy
    Cancel,
    /// Stop with exit 1
    Fail,
}

/// Deploy a DOCR image to an App Platform app and follow the deployment to the end.
#[derive(Parser, Debug)]
#[command(name = "do-deploy", version, after_help = AFTER_HELP)]
pub struct Cli {
    /// The app, by name or id
    #[arg(long, value_name = "NAME_OR_ID")]
    pub app: String,

    /// The image: registry.digitalocean.com/REGISTRY/REPO[:TAG|@DIGEST]
    #[arg(long, value_name = "IMAGE", conflicts_with_all = ["tag", "digest"])]
    pub image: Option<String>,

    /// The registry (found automatically when the account has one)
    #[arg(long, value_name = "NAME")]
    pub registry: Option<String>,

    /// The DOCR repository the components run
    #[arg(long, value_name = "REPO")]
    pub repository: Option<String>,

    /// The tag to deploy (resolved to its digest)
    #[arg(long, value_name = "TAG")]
    pub tag: Option<String>,

    /// The digest to deploy
    #[arg(long, value_name = "sha256:…")]
    pub digest: Option<String>,

    /// Pin components by digest (safe to roll back) or by tag
    #[arg(long, value_enum, default_value_t = Pin::Digest)]
    pub pin: Pin,

    /// Only these components (repeatable); by default every one running the repository
    #[arg(long, value_name = "NAME")]
    pub component: Vec<String>,

    /// Create a deployment without changing the image
    #[arg(long, conflicts_with_all = ["image", "repository", "tag", "digest"])]
    pub redeploy: bool,

    /// With --redeploy: rebuild instead of reusing the last build
    #[arg(long, requires = "redeploy")]
    pub force_rebuild: bool,

    /// Deploy even when the app already runs this image
    #[arg(long)]
    pub force: bool,

    /// What to do when a deployment is already in progress
    #[arg(long, value_enum, default_value_t = IfBusy::Wait)]
    pub if_busy: IfBusy,

    /// Give up waiting (exit 3) after this long; the deployment keeps running
    #[arg(long, value_name = "DURATION", default_value = "30m", value_parser = parse_duration)]
    pub timeout: Duration,

    /// First pause between looks at the deployment
    #[arg(long, value_name = "DURATION", default_value = "2s", value_parser = parse_duration)]
    pub interval: Duration,

    /// Longest pause between looks
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = parse_duration)]
    pub max_interval: Duration,

    /// Return once the deployment is created
    #[arg(long)]
    pub no_wait: bool,

    /// Lines of the failed phase's log to show
    #[arg(long, value_name = "N", default_value_t = 50)]
    pub log_lines: usize,

    /// On failure, roll back to the previous ACTIVE deployment and follow it (exit stays 4)
    #[arg(long)]
    pub rollback_on_failure: bool,

    /// Show which components would change from what to what; send nothing but reads
    #[arg(long)]
    pub dry_run: bool,

    #[command(flatten)]
    pub api: ApiArgs,

    #[command(flatten)]
    pub io: IoArgs,
}
