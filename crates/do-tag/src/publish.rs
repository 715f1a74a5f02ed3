//! Making the release: the notes, the changelog commit, the tag, and one atomic push of the
//! branch and the tag (or, in a dry run, what would be done).

use crate::git::Git;
use anyhow::Context;

use crate::checks::Remote;
use crate::*;

/// The release notes of the commits since the previous tag, written to --notes-file if asked.
pub(crate) fn release_notes(cli: &Cli, git: &Git, plan: &Plan) -> anyhow::Result<String> {
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
    Ok(release_notes)
}

/// What is made and pushed.
pub(crate) struct Release<'a> {
    pub tag_name: &'a str,
    pub notes: &'a str,
    pub branch: Option<&'a str>,
    pub changelog: Option<&'a (std::path::PathBuf, String)>,
}

/// Says what a dry run would do.
pub(crate) fn tell_dry_run(
    cli: &Cli,
    plan: &Plan,
    tag_name: &str,
    head: &str,
    changelog: Option<&(std::path::PathBuf, String)>,
    remote: &Remote,
    progress: &do_core::progress::Progress,
) {
    let pushing = !cli.no_push;
    if let Some((file, _)) = changelog {
        let commit = if cli.commit_changelog { " and commit it" } else { "" };
        progress.info(&format!("dry run: would add {tag_name} to {}{commit}", file.display()));
    }
    let push =
        if pushing && !remote.remote_has_tag { format!(" and push it to {}", cli.remote) } else { String::new() };
    progress.info(&format!(
        "dry run: would {} {tag_name} on {}{push} ({})",
        if plan.created { "create" } else { "keep" },
        short(head),
        plan.why
    ));
}

/// Commits the changelog (with --commit-changelog) and makes the tag; whether a changelog
/// commit was made. A tag that cannot be made undoes the commit.
pub(crate) fn make(
    cli: &Cli,
    git: &Git,
    plan: &Plan,
    release: &Release,
    record: &mut TagRecord,
    progress: &do_core::progress::Progress,
) -> anyhow::Result<bool> {
    let tag_name = release.tag_name;
    let mut committed_changelog = false;
    if let (Some((file, text)), true) = (release.changelog, cli.commit_changelog) {
        std::fs::write(file, text).with_context(|| format!("cannot write --changelog {}", file.display()))?;
        let relative = std::path::absolute(file)?;
        let head = git.commit_file(&relative.display().to_string(), &format!("chore(release): {tag_name}"))?;
        progress.info(&format!("committed {} as {}", file.display(), short(&head)));
        record.commit = head;
        committed_changelog = true;
    }
    if !plan.created {
        progress.info(&format!("HEAD already carries {tag_name}; keeping it"));
        return Ok(committed_changelog);
    }
    let message = match &cli.message {
        Some(message) => message.clone(),
        None => format!("{tag_name}\n\n{}", release.notes),
    };
    if let Err(error) = git.create_tag(tag_name, &message, cli.sign) {
        if committed_changelog {
            git.drop_last_commit().context("the tag could not be made, nor the changelog commit undone")?;
            progress.warn("the changelog commit was undone: its tag could not be made");
        }
        return Err(error);
    }
    progress.info(&format!("created {tag_name} on {} ({})", short(&record.commit), plan.why));
    Ok(committed_changelog)
}

/// Pushes the branch (when the remote lacks HEAD, or a changelog commit was made) and the tag in
/// one atomic push: a failure leaves the remote as it was, and undoes the changelog commit and
/// the tag, so a rerun makes them once, afresh. The error says what is left.
pub(crate) fn push(
    cli: &Cli,
    git: &Git,
    release: &Release,
    remote: &Remote,
    committed_changelog: bool,
    record: &mut TagRecord,
    progress: &do_core::progress::Progress,
) -> anyhow::Result<()> {
    let (tag_name, pushing) = (release.tag_name, !cli.no_push);
    let mut refspecs = Vec::new();
    if remote.push_branch_first || (committed_changelog && pushing) {
        let branch = release.branch.expect("a branch, checked above");
        refspecs.push(format!("HEAD:refs/heads/{branch}"));
    }
    if pushing && !remote.remote_has_tag {
        refspecs.push(format!("refs/tags/{tag_name}"));
    }
    if !refspecs.is_empty() {
        progress.info(&format!("pushing {} to {}", refspecs.join(" and "), cli.remote));
        if let Err(error) = git.push_refs(&cli.remote, &refspecs) {
            let undone = committed_changelog && git.delete_tag(tag_name).and_then(|()| git.drop_last_commit()).is_ok();
            let left = if undone {
                "nothing was pushed, and the changelog commit and the tag were undone; rerun do-tag"
            } else {
                "the tag stays local, rerun do-tag to push it"
            };
            return Err(error.context(format!("could not push {tag_name} to {}; {left}", cli.remote)));
        }
    }
    if pushing && !remote.remote_has_tag {
        record.pushed = true;
        record.on_remote = true;
        progress.info(&format!("pushed {tag_name} to {}", cli.remote));
    } else if remote.remote_has_tag {
        record.on_remote = true;
        progress.info(&format!("{} already has {tag_name}", cli.remote));
    }
    Ok(())
}
