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
#[derive(clap::Args, Debug, Clone)]
pub struct ApiArgs {
    /// API base URL; plain http is allowed only to a loopback address (do-sim)
    #[arg(long, value_name = "URL", env = API_URL_VARIABLE, default_value = DEFAULT_API_URL)]
    pub api_url: String,

    /// Read the API token from FILE instead of DIGITALOCEAN_ACCESS_TOKEN
    #[arg(long, value_name = "FILE")]
    pub token_file: Option<PathBuf>,

    /// Give up on one HTTP request after this long
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = parse_duration)]
    pub request_timeout: Duration,

    /// Stop retrying one request (429, 5xx, connection errors) after this long
    #[arg(long, value_name = "DURATION", env = "DO_RELEASE_RETRY_MAX_TIME", default_value = "2m", value_parser = parse_duration)]
    pub retry_max_time: Duration,

    /// First retry backoff; it doubles with each retry up to 30s, with jitter
    #[arg(long, value_name = "DURATION", env = "DO_RELEASE_RETRY_BASE_DELAY", default_value = "500ms", value_parser = parse_duration)]
    pub retry_base_delay: Duration,
}

impl ApiArgs {
    /// The token from `--token-file` or `DIGITALOCEAN_ACCESS_TOKEN`. Errors never include it.
    pub fn token(&self) -> anyhow::Result<Secret> {
        if let Some(path) = &self.token_file {
            let text = std::fs::read_to_string(path)
                .map_err(|e| Failure::usage(format!("cannot read --token-file {}: {e}", path.display())))?;
            let token = text.trim().to_string();
            if token.is_empty() {
                return Err(Failure::usage(format!("--token-file {} is empty", path.display())));
            }
            return Ok(Secret::new(token));
        }
        match std::env::var(TOKEN_VARIABLE) {
            Ok(token) if !token.trim().is_empty() => Ok(Secret::new(token.trim().to_string())),
            _ => Err(Failure::usage(format!(
                "no API token: set {TOKEN_VARIABLE} or pass --token-file FILE (a token with registry and app scopes)"
            ))),
        }
    }

    pub fn client(&self, progress: Arc<Progress>) -> anyhow::Result<Client> {
        let config = ClientConfig {
            api_url: self.api_url.clone(),
            token: self.token()?,
            retry: RetryPolicy {
                base_delay: self.retry_base_delay,
                max_elapsed: self.retry_max_time,
                ..RetryPolicy::default()
            },
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

    /// Print every request (method, path, status, time, request id) on stderr; never the token
    #[arg(short, long)]
    pub verbose: bool,
}

impl IoArgs {
    pub fn read_input(&self) -> anyhow::Result<Input> {
        Input::read(&Source::choose(self.input.as_deref(), self.no_input))
    }

    pub fn progress(&self, tool: &'static str) -> Arc<Progress> {
        Arc::new(Progress::new(tool, self.quiet, self.verbose))
    }
}
