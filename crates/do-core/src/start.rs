//! The start every tool makes, in the order that keeps "nothing is asked before everything given
//! is checked": the deadline from `--timeout` and the input read within it (`begin`); then, after
//! the tool's own checks, `connect`: the API client bound to the deadline, and stdout passing the
//! input through before any record of the tool's own.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::cli::{ApiArgs, IoArgs};
use crate::contract::{Input, Output};
use crate::progress::Progress;
use crate::Client;

/// A run once begun: its deadline and its input.
pub struct Start {
    pub started: Instant,
    pub deadline: Instant,
    pub input: Input,
}

/// The deadline, and the input read within it.
pub fn begin(io: &IoArgs, timeout: Duration) -> anyhow::Result<Start> {
    let started = Instant::now();
    let deadline = started + timeout;
    let input = io.read_input(deadline)?;
    Ok(Start { started, deadline, input })
}

impl Start {
    /// The API client bound to the deadline, and stdout with the input passed through.
    pub fn connect(
        &self,
        api: &ApiArgs,
        progress: &Arc<Progress>,
    ) -> anyhow::Result<(Client, Output<std::io::Stdout>)> {
        let client = api.client(progress.clone())?;
        client.set_deadline(self.deadline);
        let mut output = Output::stdout();
        output.pass_through(&self.input)?;
        Ok((client, output))
    }
}

/// Checks each duration flag against its range (tighter against the real API than against a
/// loopback simulator).
pub fn check_durations(api: &ApiArgs, flags: &[(&str, Duration)]) -> anyhow::Result<()> {
    let loopback = crate::api::is_loopback_url(&api.api_url);
    for (flag, value) in flags {
        crate::cli::check_duration(flag, *value, loopback)?;
    }
    Ok(())
}
