//! do-tag: the next semantic version from git tags, tagged and pushed safely and idempotently.

mod cli;
mod git;
pub mod notes;
pub mod version;

use anyhow::Context;
use clap::Parser;
use do_core::contract::Output;
use do_core::{Exit, Failure};
use serde::Serialize;

pub use cli::Cli;
use git::Git;
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

fn github_outputs(record: &TagRecord) -> anyhow::Result<()> {
    let Some(github) = do_core::github::GitHub::from_env() else { return Ok(()) };
    github.outputs(&[
        ("tag", record.tag.clone()),
        ("version", record.version.clone()),
        ("previous_tag", record.previous_tag.clone().unwrap_or_default()),
        ("created", record.created.to_string()),
        ("pushed", record.pushed.to_string()),
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
    do_core::cli::check_duration("--timeout", cli.timeout, false)?;
    let deadline = std::time::Instant::now() + cli.timeout;
    let input = cli.io.read_input(deadline)?;
    check_flags(&cli)?;
    let progress = cli.io.progress(TOOL);
    let git = Git::open(&cli.dir, deadline, progress.clone())?;
    if !git.is_work_tree()? {
        return Err(Failure::usage(format!("{} is not inside a git work tree; use -C DIR", cli.dir.display())));
    }
    if git.is_shallow()? {
        return Err(Failure::usage(
            "this is a shallow clone, so tags and history are incomplete: run `git fetch --unshallow --tags` \
             (in GitHub Actions, actions/checkout with fetch-depth: 0)",
        ));
    }
    let head = git.head()?.ok_or_else(|| Failure::usage("the repository has no commit to tag yet"))?;
    let branch = git.branch()?;
    match &branch {
        None if !cli.allow_detached => {
            return Err(Failure::usage("HEAD is detached; check out a branch, or pass --allow-detached"));
        }
        Some(name) if !cli.allow_branch.is_empty() && !cli.allow_branch.iter().any(|glob| glob_matches(glob, name)) => {
            return Err(Failure::usage(format!(
                "branch {name:?} is not allowed by --allow-branch {}; switch branches or widen the pattern",
                cli.allow_branch.join(", ")
            )));
        }
        None if !cli.allow_branch.is_empty() => {
            return Err(Failure::usage("HEAD is detached, so no branch matches --allow-branch"));
        }
        _ => {}
    }
    if !cli.allow_dirty {
        let changes = git.tracked_changes()?;
        if !changes.is_empty() {
            return Err(Failure::usage(format!(
                "{} tracked file{} changed ({}); commit or stash, or pass --allow-dirty",
                changes.len(),
                if changes.len() == 1 { "" } else { "s" },
                changes.iter().take(3).cloned().collect::<Vec<_>>().join(", ")
            )));
        }
    }
    let pushing = !cli.no_push;
    if pushing && !git.remote_exists(&cli.remote)? {
        return Err(Failure::usage(format!("no git remote named {:?}; pass --remote NAME or --no-push", cli.remote)));
    }

    let tags = git.version_tags(&cli.prefix, cli.all_tags)?;
    let previous = highest(&tags).cloned();
    let on_head: Vec<&VersionTag> = tags.iter().filter(|t| t.commit == head).collect();
    let plan = plan_version(&cli, &git, previous.as_ref(), &on_head)?;
    if let Some(ignored) = &plan.ignored_head_tag {
        progress.info(&format!(
            "HEAD carries {ignored}, lower than {}: ignored",
            previous.as_ref().map_or("?", |p| p.name.as_str())
        ));
    }
    let tag_name = format!("{}{}", cli.prefix, plan.version);
    if plan.nothing {
        return nothing_to_release(&cli, &git, &input, &plan, &tag_name, &head, branch.as_deref(), &progress);
    }
    let commits = git.commits_since(plan.previous_tag.as_deref(), &cli.paths)?;
    let github = match git.remote_url(&cli.remote)? {
        Some(url) => notes::github_url(&url),
        None => None,
    };
    let release_notes = notes::notes(&commits, github.as_deref());
    if let Some(file) = &cli.notes_file {
        std::fs::write(file, &release_notes)
            .with_context(|| format!("cannot write --notes-file {}", file.display()))?;
    }
    let changelog = match &cli.changelog {
        Some(file) if plan.created => {
            let existing = match std::fs::read_to_string(file) {
                Ok(text) => Some(text),
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => None,
                Err(error) => {
                    return Err(Failure::usage(format!("cannot read --changelog {}: {error}", file.display())))
                }
            };
            let date = jiff::Zoned::now().date().to_string();
            let section = notes::changelog_section(&plan.version.to_string(), &date, &release_notes);
            Some((file.clone(), notes::prepend(existing.as_deref(), &section)))
        }
        Some(file) => {
            progress.info(&format!("HEAD already carries its tag; {} is left as it is", file.display()));
            None
        }
        None => None,
    };
    if let Some((file, _)) = &changelog {
        if cli.commit_changelog && branch.is_none() {
            return Err(Failure::usage("--commit-changelog needs a branch to commit on; HEAD is detached"));
        }
        // Written only as a file of this repository: never through a link (a committed
        // CHANGELOG.md -> /elsewhere would write there), never outside.
        if std::fs::symlink_metadata(file).is_ok_and(|m| m.file_type().is_symlink()) {
            return Err(Failure::usage(format!(
                "--changelog {} is a symbolic link; nothing was written (give the file itself)",
                file.display()
            )));
        }
        let top = std::path::PathBuf::from(git.top_level()?);
        let parent = std::path::absolute(file)?.parent().map(std::path::Path::to_path_buf).unwrap_or_default();
        let inside = std::fs::canonicalize(&parent)
            .is_ok_and(|dir| dir.starts_with(std::fs::canonicalize(&top).unwrap_or(top.clone())));
        if !inside {
            return Err(Failure::usage(format!(
                "--changelog {} is outside the repository {}; nothing was written",
                file.display(),
                top.display()
            )));
        }
    }

    if plan.created {
        if let Some(commit) = git.local_tag_commit(&tag_name)? {
            return Err(Failure::usage(format!(
                "tag {tag_name} already exists locally on commit {}; delete it, or choose another version",
                short(&commit)
            )));
        }
    }
    let mut push_branch_first = false;
    let mut remote_has_tag = false;
    if pushing {
        let refs = git.remote_refs(&cli.remote, &tag_name, branch.as_deref())?;
        if let Some(remote_commit) = &refs.tag_commit {
            if plan.created || *remote_commit != head {
                return Err(Failure::usage(format!(
                    "tag {tag_name} already exists on {} (commit {}); someone else released it: fetch tags and rerun",
                    cli.remote,
                    short(remote_commit)
                )));
            }
            remote_has_tag = true;
        }
        if !cli.allow_unpushed {
            let mut on_remote = false;
            for (_, commit) in &refs.branches {
                if git.contains(commit, &head)? {
                    on_remote = true;
                    break;
                }
            }
            if !on_remote {
                match (&branch, cli.push_branch) {
                    (Some(_), true) => push_branch_first = true,
                    _ => {
                        let which = branch
                            .as_deref()
                            .map(|b| format!("{}/{b}", cli.remote))
                            .unwrap_or_else(|| format!("any branch of {}", cli.remote));
                        return Err(Failure::usage(format!(
                            "HEAD {} is not on {which}; push the branch first, pass --push-branch, or --allow-unpushed",
                            short(&head)
                        )));
                    }
                }
            }
        }
    }

    let mut output = Output::stdout();
    output.pass_through(&input)?;
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
        if let Some((file, _)) = &changelog {
            progress.info(&format!(
                "dry run: would add {tag_name} to {}{}",
                file.display(),
                if cli.commit_changelog { " and commit it" } else { "" }
            ));
        }
        progress.info(&format!(
            "dry run: would {} {tag_name} on {}{} ({})",
            if plan.created { "create" } else { "keep" },
            short(&head),
            if pushing && !remote_has_tag { format!(" and push it to {}", cli.remote) } else { String::new() },
            plan.why
        ));
        output.emit("tag", 1, &record)?;
        github_outputs(&record)?;
        return Ok(Exit::Done);
    }

    // Commit (the changelog), tag, then push the branch and the tag in one atomic push: a
    // failure anywhere leaves the remote as it was, and a rerun finds nothing half done.
    let mut committed_changelog = false;
    if let (Some((file, text)), true) = (&changelog, cli.commit_changelog) {
        std::fs::write(file, text).with_context(|| format!("cannot write --changelog {}", file.display()))?;
        let relative = std::path::absolute(file)?;
        let head = git.commit_file(&relative.display().to_string(), &format!("chore(release): {tag_name}"))?;
        progress.info(&format!("committed {} as {}", file.display(), short(&head)));
        record.commit = head;
        committed_changelog = true;
        push_branch_first = pushing;
    }
    if plan.created {
        let message = match &cli.message {
            Some(message) => message.clone(),
            None => format!("{tag_name}\n\n{release_notes}"),
        };
        if let Err(error) = git.create_tag(&tag_name, &message, cli.sign) {
            if committed_changelog {
                git.drop_last_commit().context("the tag could not be made, nor the changelog commit undone")?;
                progress.warn("the changelog commit was undone: its tag could not be made");
            }
            return Err(error);
        }
        progress.info(&format!("created {tag_name} on {} ({})", short(&record.commit), plan.why));
    } else {
        progress.info(&format!("HEAD already carries {tag_name}; keeping it"));
    }
    let mut refspecs = Vec::new();
    if push_branch_first {
        let branch = branch.as_deref().expect("a branch, checked above");
        refspecs.push(format!("HEAD:refs/heads/{branch}"));
    }
    if pushing && !remote_has_tag {
        refspecs.push(format!("refs/tags/{tag_name}"));
    }
    if !refspecs.is_empty() {
        progress.info(&format!("pushing {} to {}", refspecs.join(" and "), cli.remote));
        if let Err(error) = git.push_refs(&cli.remote, &refspecs) {
            // The changelog commit and its tag are undone, so a rerun makes them once, afresh.
            let undone = committed_changelog && git.delete_tag(&tag_name).and_then(|()| git.drop_last_commit()).is_ok();
            output.emit("tag", 1, &record)?;
            github_outputs(&record)?;
            let left = if undone {
                "nothing was pushed, and the changelog commit and the tag were undone; rerun do-tag"
            } else {
                "the tag stays local, rerun do-tag to push it"
            };
            return Err(error.context(format!("could not push {tag_name} to {}; {left}", cli.remote)));
        }
    }
    if pushing && !remote_has_tag {
        record.pushed = true;
        record.on_remote = true;
        progress.info(&format!("pushed {tag_name} to {}", cli.remote));
    } else if remote_has_tag {
        record.on_remote = true;
        progress.info(&format!("{} already has {tag_name}", cli.remote));
    }
    if let (Some((file, text)), false) = (&changelog, cli.commit_changelog) {
        std::fs::write(file, text).with_context(|| format!("cannot write --changelog {}", file.display()))?;
        progress.info(&format!("added {tag_name} to {} (not committed)", file.display()));
    }
    output.emit("tag", 1, &record)?;
    github_outputs(&record)?;
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
    github_outputs(&record)?;
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
        let wanted = cli.set_version.as_ref();
        if wanted.is_some_and(|wanted| *wanted != existing.version) {
            return Err(Failure::usage(format!(
                "HEAD already carries {}; pass --new-tag to tag it again with another version",
                existing.name
            )));
        }
        let below = previous_below(git, cli, &existing)?;
        return Ok(Plan {
            version: existing.version.clone(),
            previous_tag: below,
            created: false,
            bump: "none".into(),
            why: format!("HEAD already carries {}", existing.name),
            ignored_head_tag: None,
            nothing: false,
        });
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
            if commits.is_empty() {
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
            }
            bump_from_commits(&commits, Some(&previous.version), cli.major_zero_breaking, &previous.name)
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
