use std::path::PathBuf;

use clap::Parser;
use do_core::cli::IoArgs;

use crate::version::Bump;

const AFTER_HELP: &str = "\
The version is the highest tag PREFIX+semver reachable from HEAD (by semver precedence, not by
date or nearness), bumped. If HEAD already carries the highest version tag, that tag is the result and
it is pushed if the remote lacks it, so a rerun after a failed push completes the job; a lower
version tag on HEAD is ignored (and said so).

Release notes come from the commits since the previous tag (only those touching --path, when
given): breaking changes, features, fixes, performance, other, each with its short hash (a link
when the remote is on GitHub). They are the tag's message, the record's `notes`, the GitHub
`notes` output and step summary, and --notes-file; --changelog adds them to CHANGELOG.md.
Only that one tag is pushed (git push REMOTE refs/tags/TAG), never --tags.

Refused with exit 2 and nothing changed, unless overridden:
  tracked changes (--allow-dirty); detached HEAD (--allow-detached); a branch outside
  --allow-branch; a shallow clone; the tag existing locally or on the remote; HEAD not on its
  upstream branch (--push-branch pushes it first, --allow-unpushed skips the check)

Examples:
  do-tag                                   # feat: minor, fix: patch, feat!: major
  do-tag --bump patch                      # always a patch release
  do-tag --bump minor --pre rc             # v1.3.0-rc.1, then v1.3.0-rc.2
  do-tag --set-version 2.0.0 --message 'Release 2.0'
  do-tag --dry-run --no-push -C ../my-app --notes-file notes.md
  do-tag --prefix api/v --path api --bump auto   # one app of several in the repository
  do-tag --bump auto --changelog CHANGELOG.md --commit-changelog
  do-gc-wait --no-input | do-tag --bump auto --allow-branch main | ...

Output: the input records, then one record
  {\"kind\":\"tag\",\"v\":1,\"data\":{\"tag\",\"version\",\"previous_tag\",\"commit\",\"remote\",
   \"created\",\"pushed\",\"on_remote\",\"bump\",\"why\",\"dry_run\",\"notes\"}}

GitHub Actions outputs (written to $GITHUB_OUTPUT when GITHUB_ACTIONS=true):
  tag                 the tag (made, found on HEAD, or the previous one when nothing is released)
  version             its version, without the prefix
  previous_tag        the tag before it (empty when none)
  created             true when this run made the tag
  pushed              true when this run pushed it
  notes               the release notes (Markdown, several lines)
  nothing_to_release  true when --bump auto found no commit since the last tag: no release

Exit codes:
  0  done (also: HEAD already tagged and pushed)
  1  failed: a git error, or the remote refused the push (the local tag stays; rerun to push)
  2  usage error, bad input or a safety refusal; nothing was changed
  3  deadline exceeded: the input did not end, or a git command did not finish, within --timeout";

/// Compute the next semantic version from git tags, create an annotated tag and push only that tag.
#[derive(Parser, Debug)]
#[command(name = "do-tag", version, after_help = AFTER_HELP)]
pub struct Cli {
    /// Run in this repository
    #[arg(short = 'C', value_name = "DIR", default_value = ".")]
    pub dir: PathBuf,

    /// Tag prefix; tags that are not PREFIX+semver are ignored
    #[arg(long, value_name = "PREFIX", default_value = "v")]
    pub prefix: String,

    /// Consider every tag, not only those reachable from HEAD
    #[arg(long)]
    pub all_tags: bool,

    /// The version when there is no tag yet
    #[arg(long, value_name = "X.Y.Z", default_value = "0.1.0")]
    pub initial: semver::Version,

    /// Which part to bump; auto (the default, as in cargo xtask release and scripts/release.sh)
    /// reads conventional commits since the last tag: feat minor, feat! major, anything else
    /// patch; none since it (in --path): nothing to release, no tag, the record's bump is "none"
    #[arg(long, value_enum, default_value_t = Bump::Auto)]
    pub bump: Bump,

    /// Set the version instead of bumping (it must be above the highest tag)
    #[arg(long = "set-version", value_name = "X.Y.Z", conflicts_with_all = ["bump", "pre"])]
    pub set_version: Option<semver::Version>,

    /// Make or advance a pre-release with this name: -rc.1, then -rc.2
    #[arg(long, value_name = "NAME")]
    pub pre: Option<String>,

    /// Below 1.0.0, let a breaking change bump major (by default it bumps minor)
    #[arg(long)]
    pub major_zero_breaking: bool,

    /// Tag even with uncommitted changes to tracked files
    #[arg(long)]
    pub allow_dirty: bool,

    /// Tag a detached HEAD (as CI checkouts often are)
    #[arg(long)]
    pub allow_detached: bool,

    /// Only tag on a branch matching GLOB (repeatable; * matches any run of characters)
    #[arg(long, value_name = "GLOB")]
    pub allow_branch: Vec<String>,

    /// Push the current branch to the remote first if HEAD is not on it
    #[arg(long, conflicts_with = "allow_unpushed")]
    pub push_branch: bool,

    /// Skip the check that HEAD is on the remote branch
    #[arg(long)]
    pub allow_unpushed: bool,

    /// Create a new tag even if HEAD already carries a version tag (with auto and no commit since
    /// the last tag: a patch)
    #[arg(long)]
    pub new_tag: bool,

    /// Tag message (default: the release notes)
    #[arg(long, value_name = "TEXT")]
    pub message: Option<String>,

    /// Count only commits touching these paths, for the bump and the notes (repeatable; with
    /// --prefix, one app of several in the repository)
    #[arg(long = "path", value_name = "DIR")]
    pub paths: Vec<String>,

    /// Write the release notes (Markdown) to FILE, also in a dry run
    #[arg(long, value_name = "FILE")]
    pub notes_file: Option<PathBuf>,

    /// Add the release to this changelog (Keep a Changelog layout), above the releases in it
    #[arg(long, value_name = "FILE")]
    pub changelog: Option<PathBuf>,

    /// Commit the changelog and tag that commit (the branch is pushed with the tag)
    #[arg(long, requires = "changelog")]
    pub commit_changelog: bool,

    /// Create a signed tag (git tag -s)
    #[arg(long)]
    pub sign: bool,

    /// The remote to push the tag to
    #[arg(long, value_name = "NAME", default_value = "origin")]
    pub remote: String,

    /// Create the tag locally only
    #[arg(long)]
    pub no_push: bool,

    /// Compute and report everything; change no ref anywhere
    #[arg(long)]
    pub dry_run: bool,

    /// Give up (exit 3) when the input has not ended, or a git command (a push to a remote that
    /// does not answer) has not finished, after this long
    #[arg(long, value_name = "DURATION", default_value = "10m", value_parser = do_core::duration::parse_duration)]
    pub timeout: std::time::Duration,

    #[command(flatten)]
    pub io: IoArgs,
}
