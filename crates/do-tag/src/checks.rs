//! What a release needs of the repository and the remote, checked before anything is made:
//! a whole work tree on an allowed branch with no tracked change, a changelog file inside it,
//! a tag that exists nowhere else, HEAD on a branch of the remote.

use crate::git::Git;
use do_core::Failure;

use crate::*;

/// The repository as a release needs it: a work tree with its whole history, a commit, a
/// branch the flags allow, no tracked change, the remote. HEAD's commit and branch.
pub(crate) fn check_repository(cli: &Cli, git: &Git) -> anyhow::Result<(String, Option<String>)> {
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
    if !cli.no_push && !git.remote_exists(&cli.remote)? {
        return Err(Failure::usage(format!("no git remote named {:?}; pass --remote NAME or --no-push", cli.remote)));
    }
    Ok((head, branch))
}

/// With --changelog and a new tag: the file and its text with the new section on top; the file
/// must be a regular file of this repository.
pub(crate) fn changelog(
    cli: &Cli,
    git: &Git,
    plan: &Plan,
    release_notes: &str,
    branch: Option<&str>,
    progress: &do_core::progress::Progress,
) -> anyhow::Result<Option<(std::path::PathBuf, String)>> {
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
            let section = notes::changelog_section(&plan.version.to_string(), &date, release_notes);
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
    Ok(changelog)
}

/// What the remote has: whether the branch must be pushed with the tag, and whether the remote
/// already has the tag (on HEAD). A tag there on another commit, or HEAD on no branch of the
/// remote, is refused.
pub(crate) fn check_remote(
    cli: &Cli,
    git: &Git,
    plan: &Plan,
    tag_name: &str,
    head: &str,
    branch: Option<&str>,
) -> anyhow::Result<Remote> {
    let pushing = !cli.no_push;
    if plan.created {
        if let Some(commit) = git.local_tag_commit(tag_name)? {
            return Err(Failure::usage(format!(
                "tag {tag_name} already exists locally on commit {}; delete it, or choose another version",
                short(&commit)
            )));
        }
    }
    let mut push_branch_first = false;
    let mut remote_has_tag = false;
    if pushing {
        let refs = git.remote_refs(&cli.remote, tag_name, branch)?;
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
                if git.contains(commit, head)? {
                    on_remote = true;
                    break;
                }
            }
            if !on_remote {
                match (branch, cli.push_branch) {
                    (Some(_), true) => push_branch_first = true,
                    _ => {
                        let which = branch
                            .map(|b| format!("{}/{b}", cli.remote))
                            .unwrap_or_else(|| format!("any branch of {}", cli.remote));
                        return Err(Failure::usage(format!(
                            "HEAD {} is not on {which}; push the branch first, pass --push-branch, or --allow-unpushed",
                            short(head)
                        )));
                    }
                }
            }
        }
    }
    Ok(Remote { push_branch_first, remote_has_tag })
}

/// What the remote has, as far as the push goes.
pub(crate) struct Remote {
    pub push_branch_first: bool,
    pub remote_has_tag: bool,
}
