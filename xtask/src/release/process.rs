//! Running the tools: each a process fed the previous one's output, its output saved under
//! the release's directory, bounded by a timeout.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use do_core::api::{ClientConfig, RetryPolicy, Secret};
use do_core::progress::Progress;
use do_core::Client;
use serde_json::Value;

use super::*;

impl Runner<'_> {
    /// Runs one tool with the stream so far on stdin; its stdout becomes the stream. Its
    /// stderr is passed through as it comes (the live status line included, on a terminal).
    pub(super) fn tool(&mut self, step: &str, what: &str, binary: &Path, args: &[String]) -> anyhow::Result<i32> {
        let mut command = Command::new(binary);
        command
            .args(args)
            .envs(self.options.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .env("DO_RELEASE_PROGRESS", if self.live { "live" } else { "plain" })
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = command.spawn().with_context(|| format!("cannot start {}", binary.display()))?;
        let mut stdin = child.stdin.take().expect("piped");
        let input = self.stream.clone();
        let writer = std::thread::spawn(move || {
            let _ = stdin.write_all(&input);
        });
        let mut stderr = child.stderr.take().expect("piped");
        let echo = self.options.echo;
        let reader = std::thread::spawn(move || {
            let mut collected = Vec::new();
            let mut buffer = [0u8; 4096];
            loop {
                match stderr.read(&mut buffer) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        if echo {
                            let mut out = std::io::stderr().lock();
                            let _ = out.write_all(&buffer[..n]);
                            let _ = out.flush();
                        }
                        collected.extend_from_slice(&buffer[..n]);
                    }
                }
            }
            settled_text(&String::from_utf8_lossy(&collected))
        });
        let mut stdout = Vec::new();
        child.stdout.take().expect("piped").read_to_end(&mut stdout)?;
        let status = child.wait()?;
        let _ = writer.join();
        let stderr = reader.join().unwrap_or_default();
        let code = status.code().unwrap_or(1);
        let file = self.file_name(step, what);
        std::fs::write(self.staging.path().join(format!("{file}.jsonl")), &stdout)?;
        std::fs::write(self.staging.path().join(format!("{file}.log")), do_core::redact::redact(&stderr))?;
        // Preflight's do-tag dry run reports the version; its record joins the stream only in a
        // dry run, where no real tag record will follow.
        if !stdout.is_empty() && step != "preflight" {
            self.stream = stdout.clone();
        }
        self.steps.push(StepRun { name: step.to_string(), what: what.to_string(), code, stdout, stderr });
        Ok(code)
    }

    /// `N-step` for the step's own tool, `N-step.what` for anything else it runs.
    pub(super) fn file_name(&self, step: &str, what: &str) -> String {
        let own = matches!(
            (step, what),
            ("gc-wait", "do-gc-wait") | ("tag", "do-tag") | ("deploy", "do-deploy") | ("prune", "do-prune")
        );
        let number = step_number(step);
        if own {
            format!("{number}-{step}")
        } else {
            format!("{number}-{step}.{what}")
        }
    }

    pub(super) fn client(&self) -> anyhow::Result<Client> {
        let token = self
            .env(do_core::api::TOKEN_VARIABLE)
            .filter(|t| !t.trim().is_empty())
            .context("no API token: set DIGITALOCEAN_ACCESS_TOKEN (scopes: registry read/update, app read/update)")?;
        do_core::api::check_token(token.trim(), "DIGITALOCEAN_ACCESS_TOKEN")?;
        let config = ClientConfig {
            api_url: self
                .env(do_core::api::API_URL_VARIABLE)
                .unwrap_or_else(|| do_core::api::DEFAULT_API_URL.to_string()),
            token: Secret::new(token.trim().to_string()),
            retry: RetryPolicy::default(),
            request_timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(10),
        };
        Client::new(config, Arc::new(Progress::new("release", true, false)))
    }

    /// Moves the step outputs to `release-<tag>/` (`release-<tag>-dry-run/` for a dry run).
    pub(super) fn keep_outputs(&self, tag: Option<&str>) -> anyhow::Result<PathBuf> {
        let name = match (tag, self.options.execute) {
            (Some(tag), true) => format!("release-{tag}"),
            (Some(tag), false) => format!("release-{tag}-dry-run"),
            (None, _) => "release-untagged".to_string(),
        };
        let target = self.options.out_root.join(name);
        std::fs::create_dir_all(&target)?;
        for entry in std::fs::read_dir(self.staging.path())? {
            let entry = entry?;
            std::fs::rename(entry.path(), target.join(entry.file_name()))?;
        }
        std::fs::write(target.join("report.jsonl"), &self.stream)?;
        Ok(target)
    }
}

pub(super) fn last_record(stream: &[u8], kind: &str) -> Option<Value> {
    String::from_utf8_lossy(stream)
        .lines()
        .rev()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .find(|record| record["kind"] == kind)
        .map(|record| record["data"].clone())
}

/// What a live status line leaves once it is done: each line as last drawn, escapes removed.
pub fn settled_text(raw: &str) -> String {
    let mut text = String::new();
    for line in raw.split('\n') {
        let last = line.rsplit('\r').find(|part| !part.replace("\x1b[2K", "").is_empty()).unwrap_or("");
        let clean = last.replace("\x1b[2K", "");
        if !clean.is_empty() {
            text.push_str(&clean);
            text.push('\n');
        }
    }
    text
}

/// A program as the OS would find it: a path (relative to `dir`) or a name on `path`.
pub(super) fn find_program(program: &str, dir: &Path, path: Option<&str>) -> Option<PathBuf> {
    if program.contains('/') {
        let candidate = dir.join(program);
        return candidate.is_file().then_some(candidate);
    }
    std::env::split_paths(path.unwrap_or_default()).map(|d| d.join(program)).find(|c| c.is_file())
}

/// Runs a command and gives up on it after `timeout`.
pub(super) fn output_within(mut command: Command, timeout: Duration) -> anyhow::Result<std::process::Output> {
    command.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = command.spawn()?;
    let started = Instant::now();
    loop {
        if child.try_wait()?.is_some() {
            return Ok(child.wait_with_output()?);
        }
        if started.elapsed() > timeout {
            let _ = child.kill();
            let _ = child.wait();
            anyhow::bail!("no answer within {}", do_core::duration::human(timeout));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}
