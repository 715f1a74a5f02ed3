//! Real git through xshell: every argument is passed as one argument, never through a shell.

use std::io::Read;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::Context;
use do_core::Failure;
use xshell::{cmd, Shell};

use crate::version::{parse_tag, Commit, VersionTag};

pub struct Git {
    shell: Shell,
    /// No git command runs past this: one that does is killed (exit 3).
    deadline: Instant,
    /// `-v`: each git command, its exit status and time, on stderr.
    progress: Option<std::sync::Arc<do_core::progress::Progress>>,
}

/// What `git ls-remote` said about a tag and a branch.
#[derive(Debug, Default)]
pub struct RemoteRefs {
    /// The commit the remote tag points at (peeled), if the remote has it.
    pub tag_commit: Option<String>,
    /// The commit of each remote branch asked about.
    pub branches: Vec<(String, String)>,
}

impl Git {
    pub fn open(
        dir: &Path,
        deadline: Instant,
        progress: std::sync::Arc<do_core::progress::Progress>,
    ) -> anyhow::Result<Git> {
        let shell = Shell::new()?;
        shell.change_dir(dir);
        // Never wait for a password prompt; keep git's messages stable to read.
        shell.set_var("GIT_TERMINAL_PROMPT", "0");
        shell.set_var("LC_ALL", "C");
        let progress = progress.verbose().then_some(progress);
        Ok(Git { shell, deadline, progress })
    }

    /// Runs git and returns stdout trimmed; a failure carries git's own message.
    fn run(&self, args: &[&str]) -> anyhow::Result<String> {
        let output = self.output(args)?;
        if !output.status.success() {
            let stderr = String::from_utf8_lossy(&output.stderr);
            anyhow::bail!("git {} failed: {}", args.first().copied().unwrap_or(""), stderr.trim());
        }
        Ok(String::from_utf8_lossy(&output.stdout).trim_end().to_string())
    }

    /// Like `run`, but `None` when git exits non-zero (a question whose answer is "no").
    fn ask(&self, args: &[&str]) -> anyhow::Result<Option<String>> {
        let output = self.output(args)?;
        Ok(output.status.success().then(|| String::from_utf8_lossy(&output.stdout).trim_end().to_string()))
    }

    /// Runs git to the end or to the deadline, whichever comes first; at the deadline git is
    /// killed and the error is exit 3.
    fn output(&self, args: &[&str]) -> anyhow::Result<std::process::Output> {
        let started = Instant::now();
        let output = self.output_unlogged(args);
        if let (Some(progress), Ok(output)) = (&self.progress, &output) {
            progress.debug(&format!(
                "git {} -> {} in {}ms",
                args.join(" "),
                output.status,
                started.elapsed().as_millis()
            ));
        }
        output
    }

    fn output_unlogged(&self, args: &[&str]) -> anyhow::Result<std::process::Output> {
        let mut command: std::process::Command = cmd!(self.shell, "git {args...}").quiet().into();
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .context("cannot run git; is it installed?")?;
        let (mut stdout, mut stderr) = (child.stdout.take().expect("piped"), child.stderr.take().expect("piped"));
        let out = std::thread::spawn(move || {
            let mut bytes = Vec::new();
            let _ = stdout.read_to_end(&mut bytes);
            bytes
        });
        let err = std::thread::spawn(move || {
            let mut bytes = Vec::new();
            let _ = stderr.read_to_end(&mut bytes);
            bytes
        });
        let status = loop {
            if let Some(status) = child.try_wait()? {
                break status;
            }
            if Instant::now() >= self.deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Err(Failure::deadline(format!(
                    "git {} did not finish within --timeout and was stopped",
                    args.first().copied().unwrap_or("")
                )));
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        Ok(std::process::Output {
            status,
            stdout: out.join().unwrap_or_default(),
            stderr: err.join().unwrap_or_default(),
        })
    }

    pub fn is_work_tree(&self) -> anyhow::Result<bool> {
        Ok(self.ask(&["rev-parse", "--is-inside-work-tree"])?.as_deref() == Some("true"))
    }

    pub fn is_shallow(&self) -> anyhow::Result<bool> {
        Ok(self.run(&["rev-parse", "--is-shallow-repository"])? == "true")
    }

    pub fn head(&self) -> anyhow::Result<Option<String>> {
        self.ask(&["rev-parse", "--verify", "-q", "HEAD^{commit}"])
    }

    /// The branch HEAD is on, or `None` when detached.
    pub fn branch(&self) -> anyhow::Result<Option<String>> {
        self.ask(&["symbolic-ref", "--short", "-q", "HEAD"])
    }

    /// Tracked files with changes, staged or not.
    pub fn tracked_changes(&self) -> anyhow::Result<Vec<String>> {
        let status = self.run(&["status", "--porcelain", "--untracked-files=no"])?;
        Ok(status.lines().map(|line| line.get(3..).unwrap_or(line).to_string()).collect())
    }

    /// Every tag named prefix + semver, reachable from HEAD unless `all`. One git call, however many tags.
    pub fn version_tags(&self, prefix: &str, all: bool) -> anyhow::Result<Vec<VersionTag>> {
        let format = "--format=%(refname:strip=2)%09%(objectname)%09%(*objectname)";
        let mut args = vec!["for-each-ref", format];
        if !all {
            args.extend(["--merged", "HEAD"]);
        }
        args.push("refs/tags/");
        let listing = self.run(&args)?;
        Ok(listing
            .lines()
            .filter_map(|line| {
                let mut fields = line.split('\t');
                let (name, object, peeled) = (fields.next()?, fields.next()?, fields.next().unwrap_or(""));
                let version = parse_tag(name, prefix)?;
                let commit = if peeled.is_empty() { object } else { peeled };
                Some(VersionTag { name: name.to_string(), version, commit: commit.to_string() })
            })
            .collect())
    }

    /// Every tag's name.
    pub fn tag_names(&self) -> anyhow::Result<Vec<String>> {
        Ok(self
            .run(&["for-each-ref", "--format=%(refname:strip=2)", "refs/tags/"])?
            .lines()
            .map(str::to_string)
            .collect())
    }

    pub fn local_tag_commit(&self, name: &str) -> anyhow::Result<Option<String>> {
        self.ask(&["rev-parse", "--verify", "-q", &format!("refs/tags/{name}^{{commit}}")])
    }

    /// Commits in `since..HEAD` (all of HEAD's history when `since` is None), newest first;
    /// with `paths`, only those touching them. One git call.
    pub fn commits_since(&self, since: Option<&str>, paths: &[String]) -> anyhow::Result<Vec<Commit>> {
        let range = since.map(|tag| format!("refs/tags/{tag}..HEAD")).unwrap_or_else(|| "HEAD".to_string());
        let mut args = vec!["log", "--format=%H%x1f%s%x1f%b%x1e", range.as_str()];
        if !paths.is_empty() {
            args.push("--");
            args.extend(paths.iter().map(String::as_str));
        }
        let log = self.run(&args)?;
        Ok(log
            .split('\x1e')
            .map(|entry| entry.trim_start_matches('\n'))
            .filter(|entry| !entry.is_empty())
            .map(|entry| {
                let mut fields = entry.splitn(3, '\x1f');
                let hash = fields.next().unwrap_or("").to_string();
                let subject = fields.next().unwrap_or("").to_string();
                Commit { hash, subject, body: fields.next().unwrap_or("").trim().to_string() }
            })
            .collect())
    }

    /// The URL of a remote, if it has one.
    pub fn remote_url(&self, remote: &str) -> anyhow::Result<Option<String>> {
        self.ask(&["remote", "get-url", remote])
    }

    /// Commits `file` alone with `message`; returns the new HEAD.
    pub fn commit_file(&self, file: &str, message: &str) -> anyhow::Result<String> {
        self.run(&["add", "--", file])?;
        self.run(&["commit", "-q", "-m", message, "--", file])?;
        self.run(&["rev-parse", "HEAD"])
    }

    /// The top level of the work tree.
    pub fn top_level(&self) -> anyhow::Result<String> {
        self.run(&["rev-parse", "--show-toplevel"])
    }

    pub fn remote_exists(&self, remote: &str) -> anyhow::Result<bool> {
        Ok(self.ask(&["remote", "get-url", remote])?.is_some())
    }

    /// One `ls-remote` for the tag and the branches (all heads when `branch` is None).
    pub fn remote_refs(&self, remote: &str, tag: &str, branch: Option<&str>) -> anyhow::Result<RemoteRefs> {
        let tag_ref = format!("refs/tags/{tag}");
        let peeled_ref = format!("refs/tags/{tag}^{{}}");
        let mut args = vec!["ls-remote", remote, tag_ref.as_str(), peeled_ref.as_str()];
        let branch_ref = branch.map(|b| format!("refs/heads/{b}"));
        match &branch_ref {
            Some(branch_ref) => args.push(branch_ref),
            None => args.push("refs/heads/*"),
        }
        let listing = self.run(&args).with_context(|| format!("cannot reach the remote {remote:?}"))?;
        let mut refs = RemoteRefs::default();
        let mut tag_object = None;
        for line in listing.lines() {
            let Some((sha, name)) = line.split_once('\t') else { continue };
            if name == peeled_ref {
                refs.tag_commit = Some(sha.to_string());
            } else if name == tag_ref {
                tag_object = Some(sha.to_string());
            } else if let Some(branch) = name.strip_prefix("refs/heads/") {
                refs.branches.push((branch.to_string(), sha.to_string()));
            }
        }
        refs.tag_commit = refs.tag_commit.or(tag_object);
        Ok(refs)
    }

    /// Whether `commit` is `ancestor` or has it in its history (false when `commit` is not known locally).
    pub fn contains(&self, commit: &str, ancestor: &str) -> anyhow::Result<bool> {
        if commit == ancestor {
            return Ok(true);
        }
        Ok(self.ask(&["merge-base", "--is-ancestor", ancestor, commit])?.is_some())
    }

    /// An annotated (or signed) tag on HEAD. The message goes through a file, not an argument:
    /// the notes of 3,000 commits are past the argument limit.
    pub fn create_tag(&self, name: &str, message: &str, sign: bool) -> anyhow::Result<()> {
        let kind = if sign { "-s" } else { "-a" };
        let file = MessageFile::write(message).context("cannot write the tag message to a temporary file")?;
        let path = file.path.display().to_string();
        // Verbatim: the notes' `### ` headings are not comments to strip.
        self.run(&["tag", kind, "--cleanup=verbatim", "-F", &path, name, "HEAD"]).map(|_| ())
    }

    /// Pushes `refspecs` at once: all of them land, or none (`--atomic`), so a changelog commit
    /// never reaches the remote without its tag.
    pub fn push_refs(&self, remote: &str, refspecs: &[String]) -> anyhow::Result<()> {
        let mut args = vec!["push", "--porcelain"];
        if refspecs.len() > 1 {
            args.push("--atomic");
        }
        args.push(remote);
        args.extend(refspecs.iter().map(String::as_str));
        self.run(&args).map(|_| ())
    }

    /// Deletes a local tag this run made.
    pub fn delete_tag(&self, name: &str) -> anyhow::Result<()> {
        self.run(&["tag", "-d", name]).map(|_| ())
    }

    /// Undoes the last commit, which this run made (a changelog whose tag could not be made).
    pub fn drop_last_commit(&self) -> anyhow::Result<()> {
        self.run(&["reset", "-q", "--hard", "HEAD~1"]).map(|_| ())
    }
}

/// A private temporary file holding a tag message, removed when dropped.
struct MessageFile {
    path: std::path::PathBuf,
}

impl MessageFile {
    fn write(message: &str) -> std::io::Result<MessageFile> {
        use std::io::Write;
        let unique = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos();
        let path = std::env::temp_dir().join(format!("do-tag-message-{}-{unique}", std::process::id()));
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let file = MessageFile { path };
        options.open(&file.path)?.write_all(message.as_bytes())?;
        Ok(file)
    }
}

impl Drop for MessageFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}
