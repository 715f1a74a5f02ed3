//! do-tag: the next semantic version from git tags, tagged and pushed safely and idempotently.

mod checks;
mod cli;
mod git;
pub mod notes;
mod publish;
pub mod version;

use anyhow::Context;
use clap::Parser;
use do_core::contract::Output;
use do_core::{Exit, Failure};
use serde::Serialize;

use checks::{changelog, check_remote, check_repository};
pub use cli::Cli;
use git::Git;
use publish::{make, push, release_notes, tell_dry_run, Release};
use version::{bump_from_commits, highest, next_version, Bump, VersionTag};

const TOOL: &str = "do-tag";

/// The `tag` record, v1.
#[derive(Debug, Serialize)]
pub struct TagRecord {
    pub tag: String,
    pub version: String,
    pub previous_tag: Option<String>,
    pub commit: String,
    /// The remote the tag was (or would be) pushed to; null with --no-push.
    pub remote: Option<String>,
    pub created: bool,
    /// This run pushed the tag.
    pub pushed: bool,
    /// The remote has the tag now (pushed by this run or an earlier one); false with --no-push
    /// or a dry run.
    pub on_remote: bool,
    pub bump: String,
    pub why: String,
    pub dry_run: bool,
    /// The release notes (Markdown) from the commits since the previous tag.
    pub notes: String,
}

/// The step outputs; `nothing_to_release` when `--bump auto` found no commit to release, so a
/// workflow's later steps can stop.
fn github_outputs(record: &TagRecord, nothing_to_release: bool) -> anyhow::Result<()> {
    let Some(github) = do_core::github::GitHub::from_env() else { return Ok(()) };
    github.outputs(&[
        ("tag", record.tag.clone()),
        ("version", record.version.clone()),
        ("previous_tag", record.previous_tag.clone().unwrap_or_default()),
        ("created", record.created.to_string()),
        ("pushed", record.pushed.to_string()),
        ("nothing_to_release", nothing_to_release.to_string()),
    ])?;
    github.multiline_output("notes", &record.notes)?;
    github.summary(&format!(
        "### do-tag\n\n| tag | previous | commit | created | pushed | why |\n|---|---|---|---|---|---|\n| {} | {} | {} | {} | {} | {} |\n\n#### {} release notes\n\n{}",
        record.tag,
        record.previous_tag.as_deref().unwrap_or("none"),
        short(&record.commit),
        record.created,
        record.pushed,
        record.why,
        record.tag,
        record.notes
    ))?;
    Ok(())
}

pub fn main() -> i32 {
    do_core::exit::run_main(TOOL, || run(Cli::parse()))
}

pub fn run(cli: Cli) -> anyhow::Result<Exit> {
    if let Some(shell) = cli.io.completions {
        return do_core::cli::print_completions::<Cli>(shell, TOOL);
    }
    do_core::cli::check_duration("--timeout", cli.timeout, false)?;
    let do_core::start::Start { deadline, input, .. } = do_core::start::begin(&cli.io, cli.timeout)?;
    check_flags(&cli)?;
    let progress = cli.io.progress(TOOL);
    let git = Git::open(&cli.dir, deadline, progress.clone())?;
    let (head, branch) = check_repository(&cli, &git)?;
    let tags = git.version_tags(&cli.prefix, cli.all_tags)?;
    if tags.is_empty() && cli.set_version.is_none() {
        let names = git.tag_names()?;
        if let Some((longer, example)) = version::longer_prefix(&cli.prefix, names.iter().map(String::as_str)) {
            return Err(Failure::usage(format!(
                "no {}X.Y.Z tag, but {example} is one of {longer}X.Y.Z: did you mean --prefix {longer}? (--set-version X.Y.Z starts a new {} series; nothing was changed)",
                cli.prefix, cli.prefix
            )));
        }
    }
    let previous = highest(&tags).cloned();
    let on_head: Vec<&VersionTag> = tags.iter().filter(|t| t.commit == head).collect();
    let plan = plan_version(&cli, &git, previous.as_ref(), &on_head)?;
    if let Some(ignored) = &plan.ignored_head_tag {
        let highest = previous.as_ref().map_or("?", |p| p.name.as_str());
        progress.info(&format!("HEAD carries {ignored}, lower than {highest}: ignored"));
    }
    let tag_name = format!("{}{}", cli.prefix, plan.version);
    if plan.nothing {
        return nothing_to_release(&cli, &git, &input, &plan, &tag_name, &head, branch.as_deref(), &progress);
    }
    let release_notes = release_notes(&cli, &git, &plan)?;
    let changelog = changelog(&cli, &git, &plan, &release_notes, branch.as_deref(), &progress)?;
    let remote = check_remote(&cli, &git, &plan, &tag_name, &head, branch.as_deref())?;
    let mut output = Output::stdout();
    output.pass_through(&input)?;
    let pushing = !cli.no_push;
    let mut record = TagRecord {
        tag: tag_name.clone(),
        version: plan.version.to_string(),
        previous_tag: plan.previous_tag.clone(),
        commit: head.clone(),
        remote: pushing.then(|| cli.remote.clone()),
        created: plan.created,
        pushed: false,
        on_remote: false,
        bump: plan.bump.clone(),
        why: plan.why.clone(),
        dry_run: cli.dry_run,
        notes: release_notes.clone(),
    };
    if cli.dry_run {
        tell_dry_run(&cli, &plan, &tag_name, &head, changelog.as_ref(), &remote, &progress);
    } else {
        let release = Release {
            tag_name: &tag_name,
            notes: &release_notes,
            branch: branch.as_deref(),
            changelog: changelog.as_ref(),
        };
        let committed = make(&cli, &git, &plan, &release, &mut record, &progress)?;
        if let Err(error) = push(&cli, &git, &release, &remote, committed, &mut record, &progress) {
            output.emit("tag", 1, &record)?;
            github_outputs(&record, false)?;
            return Err(error);
        }
        if let (Some((file, text)), false) = (&changelog, cli.commit_changelog) {
            std::fs::write(file, text).with_context(|| format!("cannot write --changelog {}", file.display()))?;
            progress.info(&format!("added {tag_name} to {} (not committed)", file.display()));
        }
    }
    output.emit("tag", 1, &record)?;
    github_outputs(&record, false)?;
    Ok(Exit::Done)
}

struct Plan {
    version: semver::Version,
    previous_tag: Option<String>,
    created: bool,
    bump: String,
    why: String,
    /// A version tag on HEAD below the highest, not reused.
    ignored_head_tag: Option<String>,
    /// `--bump auto` found no commit since the previous tag (in `--path`): nothing to release.
    nothing: bool,
}

/// `--bump auto` with no commit since the previous tag: no tag, a record with bump `none` naming
/// the previous tag (so the rest of a pipeline finds the release as it was), exit 0.
#[allow(clippy::too_many_arguments)]
fn nothing_to_release(
    cli: &Cli,
    git: &Git,
    input: &do_core::contract::Input,
    plan: &Plan,
    tag_name: &str,
    head: &str,
    branch: Option<&str>,
    progress: &do_core::progress::Progress,
) -> anyhow::Result<Exit> {
    let pushing = !cli.no_push;
    let on_remote = pushing && git.remote_refs(&cli.remote, tag_name, branch)?.tag_commit.is_some();
    let mut output = Output::stdout();
    output.pass_through(input)?;
    let record = TagRecord {
        tag: tag_name.to_string(),
        version: plan.version.to_string(),
        previous_tag: plan.previous_tag.clone(),
        commit: head.to_string(),
        remote: pushing.then(|| cli.remote.clone()),
        created: false,
        pushed: false,
        on_remote,
        bump: plan.bump.clone(),
        why: plan.why.clone(),
        dry_run: cli.dry_run,
        notes: String::new(),
    };
    output.emit("tag", 1, &record)?;
    github_outputs(&record, true)?;
    progress.info(&format!("{}; no tag made (pass --bump patch or --set-version to release anyway)", plan.why));
    Ok(Exit::Done)
}

fn plan_version(cli: &Cli, git: &Git, previous: Option<&VersionTag>, on_head: &[&VersionTag]) -> anyhow::Result<Plan> {
    let head_tag = highest(&on_head.iter().map(|t| (*t).clone()).collect::<Vec<_>>()).cloned();
    // HEAD's tag is the release only when it is the highest: a lower one (v0.0.1-junk while
    // v2.0.0 exists) is ignored and the next version computed as usual.
    let (head_tag, ignored_head_tag) = match (head_tag, previous) {
        (Some(head), Some(highest_tag))
            if head.version.cmp_precedence(&highest_tag.version) == std::cmp::Ordering::Less =>
        {
            (None, Some(head.name))
        }
        (head, _) => (head, None),
    };
    if let Some(existing) = head_tag.filter(|_| !cli.new_tag) {
        return keep_head_tag(cli, git, &existing);
    }
    let previous_tag = previous.map(|t| t.name.clone());
    if let Some(version) = &cli.set_version {
        if let Some(previous) = previous.filter(|p| version.cmp_precedence(&p.version) != std::cmp::Ordering::Greater) {
            return Err(Failure::usage(format!(
                "--set-version {version} is not above the highest tag {}",
                previous.name
            )));
        }
        return Ok(Plan {
            version: version.clone(),
            previous_tag,
            created: true,
            bump: "set".into(),
            why: format!("--set-version {version}"),
            ignored_head_tag,
            nothing: false,
        });
    }
    let Some(previous) = previous else {
        let mut version = cli.initial.clone();
        if let Some(pre) = &cli.pre {
            version.pre = semver::Prerelease::new(&format!("{pre}.1"))
                .map_err(|e| Failure::usage(format!("invalid --pre {pre:?}: {e}")))?;
        }
        return Ok(Plan {
            version,
            previous_tag: None,
            created: true,
            bump: "initial".into(),
            why: format!("no {}X.Y.Z tag yet: --initial {}", cli.prefix, cli.initial),
            ignored_head_tag,
            nothing: false,
        });
    };
    let (bump, why) = match cli.bump {
        Bump::Auto => {
            let commits = git.commits_since(Some(&previous.name), &cli.paths)?;
            if commits.is_empty() && cli.new_tag {
                (Bump::Patch, format!("patch: --new-tag with no commit since {}", previous.name))
            } else if commits.is_empty() {
                let scope = if cli.paths.is_empty() { String::new() } else { format!(" in {}", cli.paths.join(", ")) };
                return Ok(Plan {
                    version: previous.version.clone(),
                    previous_tag: Some(previous.name.clone()),
                    created: false,
                    bump: "none".into(),
                    why: format!("nothing to release since {}: no commit{scope} since it", previous.name),
                    ignored_head_tag,
                    nothing: true,
                });
            } else {
                bump_from_commits(&commits, Some(&previous.version), cli.major_zero_breaking, &previous.name)
            }
        }
        explicit => (explicit, format!("{explicit}: --bump {explicit} from {}", previous.name)),
    };
    let version = next_version(&previous.version, bump, cli.pre.as_deref()).map_err(Failure::usage)?;
    let why = match &ignored_head_tag {
        Some(ignored) => format!("{why}; HEAD's lower tag {ignored} ignored"),
        None => why,
    };
    Ok(Plan { version, previous_tag, created: true, bump: bump.to_string(), why, ignored_head_tag, nothing: false })
}

/// HEAD already carries the highest version tag: it is the release (unless --set-version asks
/// for another, which needs --new-tag).
fn keep_head_tag(cli: &Cli, git: &Git, existing: &VersionTag) -> anyhow::Result<Plan> {
    let wanted = cli.set_version.as_ref();
    if wanted.is_some_and(|wanted| *wanted != existing.version) {
        return Err(Failure::usage(format!(
            "HEAD already carries {}; pass --new-tag to tag it again with another version",
            existing.name
        )));
    }
    let below = previous_below(git, cli, existing)?;
    Ok(Plan {
        version: existing.version.clone(),
        previous_tag: below,
        created: false,
        bump: "none".into(),
        why: format!("HEAD already carries {}", existing.name),
        ignored_head_tag: None,
        nothing: false,
    })
}

/// For an existing tag on HEAD, the highest version tag below it (the release before).
fn previous_below(git: &Git, cli: &Cli, existing: &VersionTag) -> anyhow::Result<Option<String>> {
    let tags = git.version_tags(&cli.prefix, cli.all_tags)?;
    let below: Vec<VersionTag> =
        tags.into_iter().filter(|t| t.version.cmp_precedence(&existing.version) == std::cmp::Ordering::Less).collect();
    Ok(highest(&below).map(|t| t.name.clone()))
}

fn check_flags(cli: &Cli) -> anyhow::Result<()> {
    let prefix_ok = cli.prefix.len() <= 64
        && cli.prefix.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'/'))
        && !cli.prefix.starts_with(['-', '/', '.'])
        && !cli.prefix.contains("..")
        && !cli.prefix.contains("//");
    if !prefix_ok {
        return Err(Failure::usage(format!(
            "invalid --prefix {}: use letters, digits and - _ . /, like v or app/v",
            do_core::validate::shown(&cli.prefix)
        )));
    }
    if let Some(pre) = &cli.pre {
        let ok = !pre.is_empty()
            && pre.len() <= 32
            && pre.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !pre.bytes().all(|b| b.is_ascii_digit());
        if !ok {
            return Err(Failure::usage(format!(
                "invalid --pre {}: use a name like rc, beta or alpha",
                do_core::validate::shown(pre)
            )));
        }
    }
    let remote_ok = !cli.remote.is_empty()
        && !cli.remote.starts_with('-')
        && !cli.remote.chars().any(|c| c.is_whitespace() || c.is_control());
    if !remote_ok {
        return Err(Failure::usage(format!("invalid --remote {}", do_core::validate::shown(&cli.remote))));
    }
    if cli.message.as_deref().is_some_and(|m| m.trim().is_empty()) {
        return Err(Failure::usage("--message is empty; give a message or leave the flag out"));
    }
    for glob in &cli.allow_branch {
        if glob.is_empty() || glob.chars().any(char::is_control) {
            return Err(Failure::usage(format!("invalid --allow-branch {}", do_core::validate::shown(glob))));
        }
    }
    Ok(())
}

/// A shell-style glob where `*` matches any run of characters (including `/`) and `?` one character.
pub fn glob_matches(glob: &str, text: &str) -> bool {
    let pattern = format!("^{}$", regex::escape(glob).replace(r"\*", ".*").replace(r"\?", "."));
    regex::Regex::new(&pattern).is_ok_and(|re| re.is_match(text))
}

fn short(commit: &str) -> &str {
    &commit[..commit.len().min(12)]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn branch_globs() {
        assert!(glob_matches("main", "main"));
        assert!(!glob_matches("main", "main2"));
        assert!(glob_matches("release/*", "release/1.2"));
        assert!(!glob_matches("release/*", "feature/x"));
        assert!(glob_matches("v?", "v1"));
        assert!(glob_matches("a.b", "a.b") && !glob_matches("a.b", "axb"));
    }
}
