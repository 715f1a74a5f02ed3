//! Flags every tool shares, and turning them into a client, progress output and input.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::api::{Client, ClientConfig, RetryPolicy, Secret, API_URL_VARIABLE, DEFAULT_API_URL, TOKEN_VARIABLE};
use crate::contract::{Input, Source};
use crate::duration::parse_duration;
use crate::exit::Failure;
use crate::progress::Progress;

/// Flags for talking to the API. The token is never a flag value: it comes from
/// `DIGITALOCEAN_ACCESS_TOKEN` or from the file named by `--token-file`.
///
/// The variables that stand in for flags are read here, not by clap: clap counts a value from
/// the environment as given, and its usage line after a conflict then showed `--api-url` as if
/// the user had to pass it.
#[derive(clap::Args, Debug, Clone)]
pub struct ApiArgs {
    /// API base URL (default: $DIGITALOCEAN_API_URL, else https://api.digitalocean.com); plain
    /// http is allowed only to a loopback address (do-sim)
    #[arg(long, value_name = "URL", default_value_t = from_env(API_URL_VARIABLE, DEFAULT_API_URL), hide_default_value = true)]
    pub api_url: String,

    /// Read the API token from FILE instead of DIGITALOCEAN_ACCESS_TOKEN
    #[arg(long, value_name = "FILE")]
    pub token_file: Option<PathBuf>,

    /// Give up on one HTTP request after this long
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = parse_duration)]
    pub request_timeout: Duration,

    /// Stop retrying one request (429, 5xx, connection errors) after this long (default:
    /// $DO_RELEASE_RETRY_MAX_TIME, else 2m)
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub retry_max_time: Option<Duration>,

    /// First retry backoff; it doubles with each retry up to 30s, with jitter (default:
    /// $DO_RELEASE_RETRY_BASE_DELAY, else 500ms)
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub retry_base_delay: Option<Duration>,
}

/// The value of `variable` when set and not empty, else `default`.
fn from_env(variable: &str, default: &str) -> String {
    std::env::var(variable).ok().filter(|v| !v.is_empty()).unwrap_or_else(|| default.to_string())
}

/// A duration flag's value: the flag, else `variable` when set (a bad one is a usage error
/// naming it), else `default`.
fn duration_from(flag: Option<Duration>, variable: &str, default: Duration) -> anyhow::Result<Duration> {
    if let Some(value) = flag {
        return Ok(value);
    }
    match std::env::var(variable).ok().filter(|v| !v.is_empty()) {
        Some(text) => parse_duration(&text).map_err(|e| Failure::usage(format!("{variable}: {e}"))),
        None => Ok(default),
    }
}

/// The largest token file read: a token is under a hundred characters.
const MAX_TOKEN_FILE_BYTES: u64 = 4096;

impl ApiArgs {
    /// The token from `--token-file` or `DIGITALOCEAN_ACCESS_TOKEN`, checked to be one printable
    /// ASCII word. Errors never include it.
    pub fn token(&self, progress: &Progress) -> anyhow::Result<Secret> {
        if let Some(path) = &self.token_file {
            return read_token_file(path, progress);
        }
        match std::env::var_os(TOKEN_VARIABLE) {
            Some(token) if !token.is_empty() => {
                let token = token.into_string().map_err(|_| {
                    Failure::usage(format!("{TOKEN_VARIABLE} is not text; a token is one printable ASCII word"))
                })?;
                crate::api::check_token(&token, TOKEN_VARIABLE)
            }
            _ => Err(Failure::usage(format!(
                "no API token: set {TOKEN_VARIABLE} or pass --token-file FILE (a token with registry and app scopes)"
            ))),
        }
    }

    pub fn client(&self, progress: Arc<Progress>) -> anyhow::Result<Client> {
        crate::api::checked_base_url(&self.api_url)?;
        check_duration("--request-timeout", self.request_timeout, crate::api::is_loopback_url(&self.api_url))?;
        let retry_base_delay =
            duration_from(self.retry_base_delay, "DO_RELEASE_RETRY_BASE_DELAY", Duration::from_millis(500))?;
        let retry_max_time = duration_from(self.retry_max_time, "DO_RELEASE_RETRY_MAX_TIME", Duration::from_secs(120))?;
        // Retries back off exponentially and honour retry-after: only zero is unsafe here.
        check_duration("--retry-base-delay (DO_RELEASE_RETRY_BASE_DELAY)", retry_base_delay, true)?;
        let config = ClientConfig {
            api_url: self.api_url.clone(),
            token: self.token(&progress)?,
            retry: RetryPolicy { base_delay: retry_base_delay, max_elapsed: retry_max_time, ..RetryPolicy::default() },
            request_timeout: self.request_timeout,
            connect_timeout: self.request_timeout.min(Duration::from_secs(10)),
        };
        Client::new(config, progress)
    }
}

/// Where the JSON Lines input comes from, and how much to say on stderr.
#[derive(clap::Args, Debug, Clone)]
pub struct IoArgs {
    /// Read records from FILE instead of stdin
    #[arg(long, value_name = "FILE", conflicts_with = "no_input")]
    pub input: Option<PathBuf>,

    /// Ignore stdin: this tool starts the pipeline
    #[arg(long)]
    pub no_input: bool,

    /// Print only errors and warnings on stderr
    #[arg(short, long, conflicts_with = "verbose")]
    pub quiet: bool,

    /// Print every request (HTTP: method, path, status, time, request id; do-tag: each git command) on stderr; never the token
    #[arg(short, long)]
    pub verbose: bool,

    /// Act even when an input record says its step did not succeed (a gc-wait that timed out,
    /// a tag not pushed, a deployment not ACTIVE, a failed prune or preview delete)
    #[arg(long)]
    pub ignore_upstream_failure: bool,

    /// Print this tool's shell completions for SHELL (bash, zsh, fish, elvish, powershell) on
    /// stdout, and exit
    #[arg(long, value_name = "SHELL")]
    pub completions: Option<clap_complete::Shell>,
}

/// Prints the completions of the command `C` (named `tool`) for `shell` on stdout: what
/// `--completions SHELL` does, with no request and no input read.
pub fn print_completions<C: clap::CommandFactory>(
    shell: clap_complete::Shell,
    tool: &str,
) -> anyhow::Result<crate::Exit> {
    let mut command = C::command();
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut command, tool, &mut script);
    let mut stdout = std::io::stdout().lock();
    std::io::Write::write_all(&mut stdout, &script)
        .and_then(|()| std::io::Write::flush(&mut stdout))
        .map_err(|e| anyhow::Error::from(e).context("cannot write the completions to stdout"))?;
    Ok(crate::Exit::Done)
}

/// Reads the token file: a regular file (or a link to one), small, holding one printable ASCII
/// token. A file others can read is used, with a warning, as ssh warns about keys.
fn read_token_file(path: &std::path::Path, progress: &Progress) -> anyhow::Result<Secret> {
    use std::io::Read;
    let shown = path.display();
    let metadata =
        std::fs::metadata(path).map_err(|e| Failure::usage(format!("cannot read --token-file {shown}: {e}")))?;
    if !metadata.is_file() {
        return Err(Failure::usage(format!(
            "--token-file {shown} is not a regular file (a FIFO, a device or a directory); put the token in a file"
        )));
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = metadata.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            progress
                .warn(&format!("--token-file {shown} can be read by other users (mode {mode:o}); chmod 600 {shown}"));
        }
    }
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .and_then(|file| file.take(MAX_TOKEN_FILE_BYTES + 1).read_to_end(&mut bytes))
        .map_err(|e| Failure::usage(format!("cannot read --token-file {shown}: {e}")))?;
    if bytes.len() as u64 > MAX_TOKEN_FILE_BYTES {
        return Err(Failure::usage(format!(
            "--token-file {shown} is larger than {} KiB; it should hold one token",
            MAX_TOKEN_FILE_BYTES / 1024
        )));
    }
    let text = String::from_utf8(bytes)
        .map_err(|_| Failure::usage(format!("--token-file {shown} is not text; it should hold one token")))?;
    crate::api::check_token(&text, &format!("--token-file {shown}"))
}

/// A timeout, delay or polling interval must be above zero and sane: at least a second against
/// DigitalOcean (a shorter one burns the account's shared rate limit), a millisecond against a
/// loopback simulator, and at most a day.
pub fn check_duration(flag: &str, value: Duration, loopback: bool) -> anyhow::Result<()> {
    let least = if loopback { Duration::from_millis(1) } else { Duration::from_secs(1) };
    let most = Duration::from_secs(86_400);
    if value < least || value > most {
        return Err(Failure::usage(format!(
            "{flag} {} is out of range: give {} to 1d",
            crate::duration::human(value),
            if loopback { "1ms (against a loopback simulator)" } else { "1s" }
        )));
    }
    Ok(())
}

impl IoArgs {
    /// All input, read and checked; reading ends at `deadline`. An input record that says its
    /// step did not succeed stops the tool before it acts (exit 1): the input still goes on to
    /// stdout, so the pipeline's report says what happened, unless `--ignore-upstream-failure`.
    pub fn read_input(&self, deadline: std::time::Instant) -> anyhow::Result<Input> {
        let input = Input::read(&Source::choose(self.input.as_deref(), self.no_input), Some(deadline))?;
        match crate::upstream::failure(&input) {
            Some(why) if !self.ignore_upstream_failure => {
                let _ = crate::contract::Output::stdout().pass_through(&input);
                Err(anyhow::anyhow!(
                    "{why}; nothing was done (fix that step and rerun, or pass --ignore-upstream-failure)"
                ))
            }
            _ => Ok(input),
        }
    }

    pub fn progress(&self, tool: &'static str) -> Arc<Progress> {
        Arc::new(Progress::new(tool, self.quiet, self.verbose))
    }
}
