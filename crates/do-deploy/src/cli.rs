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

ACTIVE is success, once the check (if any) passes. ERROR and CANCELED end with exit 4, the failed
step, its reason and the tail of its BUILD or DEPLOY log. A deployment already in progress or
pending that runs the same image is followed instead of starting another, so two runs of one
image share one deployment. SUPERSEDED is not a failure: when the deployment that superseded
ours runs the same image it is followed to its end; when it runs another, the run stops (exit
1, outcome superseded, naming it) and never rolls back over it.

Checking the release: a deployment can go ACTIVE while the app serves the old version, or
nothing. With --check-path (on the app's live URL) or --check-url, the URL is asked until it
answers with --expect-status (200), its body matches --expect-body and each --expect-header
NAME=REGEX matches, or --check-timeout passes: then exit 4 with failure.step \"check\", the last
status, the headers checked and the start of the body. No token is sent; plain http only to a
loopback address.

The soak (--soak 20m): releases often break minutes after they went green. After ACTIVE and
the check, do-deploy keeps looking every --interval for that long: at the check's URL with its
expectations (when a check is asked) and at the app's health (each component's ready replicas
and state). --soak-failures (3) failed looks in a row are a breach, so one blip is not: exit 4
with failure.step \"soak\", rolled back with --rollback-on-failure. A newer deployment during the
soak (someone else's) ends it as superseded (exit 1), nothing rolled back. The record's soak
says how many looks, how many failed, and when and why a breach came.

With --rollback-on-failure a failed deployment, check or soak rolls back to the deployment that
was ACTIVE when the run began, only while it (or ours) is still the ACTIVE one and nothing newer
was made or runs; otherwise the record says why no rollback was made. When App Platform rolls
back on its own (a newer deployment whose cause says AUTO_ROLLBACK), the release failed (exit 4,
outcome platform_rollback, naming the deployment it returned to) and none is made here. An app
pinned by a manual rollback gets no new deployment until the rollback is committed or reverted:
exit 2, saying how, nothing changed.

Token scopes: app:read, app:update, registry:read; app:create with --create or --preview,
app:delete with --delete-preview and --sweep-previews, registry:delete with --delete-images.

The app spec in the repository (--spec FILE): the file, with ${NAME} expanded for each
--spec-env NAME (unset is exit 2; the token never; any other ${NAME} that is not App Platform's own,
${APP_URL} or one with a dot, is exit 2; $${NAME} is the literal text), becomes the app's spec. Components that run
the released repository are pinned to its digest; secrets the file leaves empty keep the live
app's (a secret the file gives counts as a change on every run: the live one is encrypted). The
spec is checked with App Platform's propose first: errors are listed per field (exit 2, nothing
changed). A dry run prints what would change, field by field, ignoring what the API fills in
(region, alerts, ingress, instance size and count). A spec that would remove a component, a
database, a domain or an env variable (a SECRET's value can never be read back) of the live app
is refused (exit 2, naming each) unless --allow-removal; previews may.
--create creates a missing app.

Preview apps (--spec FILE --preview pr-42): a separate app SPECNAME-pr-42 (at most 32
characters: longer names keep their start and a stable hash), created when missing, without
the spec's domains and alerts, each component marked with DO_RELEASE_PREVIEW=pr-42 and given
each --preview-env KEY=VALUE. An app of that name without the mark is never deployed to.
--delete-preview pr-42 deletes the app only if it carries the mark (else exit 2); an absent one
is exit 0. --sweep-previews deletes every preview of the spec not kept (--keep pr-1,pr-7 or
--keep-file, the open pull requests; or deployed within --older-than 7d), each under the same
guard, a dry run unless --execute; its preview-sweep record lists every app with its fate and why.
--delete-preview pr-42 --delete-images also deletes the pull request's image tags (pr-42-*) in
the repositories the spec runs, except a tag another app runs or ran (by tag, or the image by
digest); the manifests they leave untagged go with the next do-prune, under its keep closure.
--max-previews N refuses a new preview beyond N of the spec (exit 2, naming the oldest) unless
--evict-oldest deletes the oldest first.

Examples:
  do-deploy --app shop --image registry.digitalocean.com/my-reg/web:v1.4.0
  do-deploy --spec .do/app.yaml --spec-env GITHUB_SHA --repository web --tag v1.4.0 --dry-run
  do-deploy --spec .do/app.yaml --repository web --tag pr-42-1a2b3c4 --preview pr-42
  do-deploy --spec .do/app.yaml --delete-preview pr-42 --delete-images
  do-deploy --spec .do/app.yaml --sweep-previews --keep pr-1,pr-7 --execute
  do-deploy --app shop --repository web --tag v1.4.0 --rollback-on-failure \\
    --check-path /healthz --expect-header 'x-app-version=^v1\\.4\\.0$'
  do-deploy --app shop --repository web --tag v1.4.0 --check-path /healthz --soak 20m \
    --rollback-on-failure
  do-deploy --app shop --redeploy --force-rebuild
  do-tag --bump auto | ... push ... | do-deploy --app shop --dry-run

Output: the input records, then one record
  {\"kind\":\"deploy\",\"v\":1,\"data\":{\"app_id\",\"app_name\",\"deployment_id\",\"previous_deployment_id\",
   \"phase\",\"image\",\"components\",\"changed\",\"dry_run\",\"cause\",\"duration_ms\",\"live_url\",\"outcome\",
   \"failure\",\"superseded_by\",\"check\",\"rollback\",\"created\",\"preview\",\"spec_changes\",\"soak\"}}
  (--delete-preview: {\"kind\":\"preview-delete\",\"v\":1,\"data\":{\"app_name\",\"app_id\",\"preview\",
   \"deleted\",\"dry_run\",\"outcome\",\"images\"}})
  (--sweep-previews: {\"kind\":\"preview-sweep\",\"v\":1,\"data\":{\"spec\",\"dry_run\",\"apps\",\"deleted\"}})

GitHub Actions outputs (written to $GITHUB_OUTPUT when GITHUB_ACTIONS=true):
  app_id         the app's id
  deployment_id  the deployment made or followed (empty in a dry run)
  phase          its last phase (ACTIVE, ERROR, ...)
  digest         the image's digest (sha256:...)
  image          the image deployed, repository@digest
  changed        true when the app's spec changed
  app_name       the app's name (with --delete-preview: the preview's)
  live_url       the app's live URL (empty when it has none)
  soak_checks    with --soak: the looks made (0 without)
  soak_failures  with --soak: the looks that failed
  soak_seconds   with --soak: how long it watched
  deleted        with --delete-preview: true when the preview was deleted

Exit codes:
  0  the deployment is ACTIVE and the check passed (also: already running this image, or
     --no-wait/--dry-run)
  1  failed: API error, busy with --if-busy fail, or superseded by a deployment of another image
  2  usage error or bad input (unknown component, tag not in the registry); nothing was changed
  3  deadline exceeded: nothing is sent after it; a deployment under way is reported and keeps running
  4  the deployment ended ERROR or CANCELED (or App Platform rolled it back), or the check or the
     soak failed";

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
    /// The app, by name or id (with --spec, the app is the one the spec names)
    #[arg(long, value_name = "NAME_OR_ID", required_unless_present_any = ["spec", "completions"], conflicts_with = "spec")]
    pub app: Option<String>,

    /// The app spec in the repository (YAML or JSON, like .do/app.yaml): it becomes the app's
    /// spec, with the released repository's components pinned to the image
    #[arg(long, value_name = "FILE", conflicts_with = "redeploy")]
    pub spec: Option<std::path::PathBuf>,

    /// Expand ${NAME} in the spec from this environment variable (repeatable); App Platform's
    /// own (${APP_URL}, ${db.DATABASE_URL}) are left for it, any other is an error
    /// ($${NAME} for the literal text)
    #[arg(long, value_name = "NAME", requires = "spec")]
    pub spec_env: Vec<String>,

    /// With --spec: create the app when no app of the spec's name exists
    #[arg(long, requires = "spec")]
    pub create: bool,

    /// With --spec: let the spec remove components, databases, domains or env variables the
    /// live app has
    #[arg(long, requires = "spec")]
    pub allow_removal: bool,

    /// With --spec: deploy to the preview app SPECNAME-NAME (created when missing), without the
    /// spec's domains and alerts
    #[arg(long, value_name = "NAME", requires = "spec", conflicts_with = "delete_preview")]
    pub preview: Option<String>,

    /// With --preview: set a variable on every component of the preview (repeatable)
    #[arg(long, value_name = "KEY=VALUE", requires = "preview")]
    pub preview_env: Vec<String>,

    /// With --delete-preview: also delete the preview's image tags (NAME-*) in the repositories the
    /// spec runs, except a tag another app runs; their manifests go with the next do-prune
    #[arg(long, requires = "delete_preview")]
    pub delete_images: bool,

    /// With --preview: refuse a new preview beyond N previews of the spec (exit 2, naming the
    /// oldest), unless --evict-oldest
    #[arg(long, value_name = "N", requires = "preview", value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub max_previews: Option<u32>,

    /// With --max-previews: delete the oldest previews of the spec to make room
    #[arg(long, requires = "max_previews")]
    pub evict_oldest: bool,

    /// With --spec: delete every preview of the spec not kept (--keep, --keep-file) or deployed
    /// within --older-than; a dry run unless --execute
    #[arg(long, requires = "spec", conflicts_with_all = ["app", "create", "image", "repository", "tag", "digest", "redeploy", "preview", "delete_preview", "dry_run"])]
    pub sweep_previews: bool,

    /// With --sweep-previews: previews to keep (comma-separated or repeated: the open pull requests)
    #[arg(long, value_name = "NAME,…", value_delimiter = ',', requires = "sweep_previews")]
    pub keep: Vec<String>,

    /// With --sweep-previews: previews to keep, one name a line (empty: keep none)
    #[arg(long, value_name = "FILE", requires = "sweep_previews")]
    pub keep_file: Option<std::path::PathBuf>,

    /// With --sweep-previews: keep previews deployed within this long
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, requires = "sweep_previews")]
    pub older_than: Option<Duration>,

    /// With --sweep-previews: delete (without it, the sweep is a dry run)
    #[arg(long, requires = "sweep_previews")]
    pub execute: bool,

    /// With --spec: delete the preview app SPECNAME-NAME, if do-deploy made it
    #[arg(long, value_name = "NAME", requires = "spec", conflicts_with_all = ["app", "create", "image", "repository", "tag", "digest", "check_path", "check_url", "rollback_on_failure"])]
    pub delete_preview: Option<String>,

    /// The image: registry.digitalocean.com/REGISTRY/REPO[:TAG|@DIGEST]
    #[arg(long, value_name = "IMAGE", conflicts_with_all = ["tag", "digest"])]
    pub image: Option<String>,

    /// The registry (found automatically when the account has one)
    #[arg(long, value_name = "NAME")]
    pub registry: Option<String>,

    /// The DOCR repository the components run
    #[arg(long, visible_alias = "repo", value_name = "REPO")]
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

    /// Deploy an older version than the one running without the warning
    #[arg(long)]
    pub allow_downgrade: bool,

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

    /// On failure, roll back to the deployment ACTIVE when the run began, unless something newer
    /// was made since, and follow it (exit stays 4)
    #[arg(long)]
    pub rollback_on_failure: bool,

    /// Show which components (with --spec, which fields) would change from what to what; send
    /// nothing but reads (and, with --spec, App Platform's propose check)
    #[arg(long)]
    pub dry_run: bool,

    /// After ACTIVE, ask this path of the app's live URL until it answers as expected
    #[arg(long, value_name = "PATH", conflicts_with = "check_url")]
    pub check_path: Option<String>,

    /// After ACTIVE, ask this URL (https, or http to a loopback address) until it answers as expected
    #[arg(long, value_name = "URL")]
    pub check_url: Option<String>,

    /// The status the check expects
    #[arg(long, value_name = "CODE", default_value_t = 200, value_parser = clap::value_parser!(u16).range(100..=599))]
    pub expect_status: u16,

    /// A regular expression the check's body must match
    #[arg(long, value_name = "REGEX")]
    pub expect_body: Option<String>,

    /// A header the check's answer must carry, its value matching REGEX (repeatable)
    #[arg(long, value_name = "NAME=REGEX")]
    pub expect_header: Vec<String>,

    /// How long the check may take before it fails
    #[arg(long, value_name = "DURATION", default_value = "2m", value_parser = parse_duration)]
    pub check_timeout: Duration,

    /// After ACTIVE (and the check), keep watching this long: every --interval the check's URL
    /// (with its expectations) and the app's health; a breach is a failure (exit 4, rolled back
    /// with --rollback-on-failure)
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, conflicts_with_all = ["no_wait", "delete_preview"])]
    pub soak: Option<Duration>,

    /// With --soak: this many failed looks in a row are a breach (one blip is not)
    #[arg(long, value_name = "N", default_value_t = 3, requires = "soak", value_parser = clap::value_parser!(u32).range(1..=100))]
    pub soak_failures: u32,

    #[command(flatten)]
    pub api: ApiArgs,

    #[command(flatten)]
    pub io: IoArgs,
}
