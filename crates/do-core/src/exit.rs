//! Exit codes shared by every tool, and the one place that turns errors into them.

use std::fmt;
use std::io;

/// The documented exit codes of every tool.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Exit {
    /// Done, or nothing to do.
    #[default]
    Done = 0,
    /// An API error, git error, or the remote refused.
    Failed = 1,
    /// A usage error or bad input; nothing was changed.
    Usage = 2,
    /// The deadline (`--timeout`) passed.
    Deadline = 3,
    /// The remote operation ended in a failed state.
    RemoteFailed = 4,
}

/// The exit-code table every tool appends to its `--help`.
pub const EXIT_CODES_HELP: &str = "\
Exit codes:
  0  done (also: nothing to do)
  1  failed: API error, git error, remote refused
  2  usage error or bad input; nothing was changed
  3  deadline exceeded (--timeout)
  4  the remote operation ended in a failed state";

/// An error that carries the exit code it should end the process with.
/// Attach it with [`Failure::usage`] and friends; `main` finds it anywhere in the chain.
#[derive(Debug)]
pub struct Failure {
    pub exit: Exit,
    pub message: String,
}

impl Failure {
    pub fn usage(message: impl Into<String>) -> anyhow::Error {
        anyhow::Error::new(Failure { exit: Exit::Usage, message: message.into() })
    }
    pub fn deadline(message: impl Into<String>) -> anyhow::Error {
        anyhow::Error::new(Failure { exit: Exit::Deadline, message: message.into() })
    }
    /// The deadline passed while a request was under way: as context, it makes the error exit 3.
    pub fn deadline_reached() -> Failure {
        Failure { exit: Exit::Deadline, message: "the deadline (--timeout) passed".into() }
    }
    pub fn remote(message: impl Into<String>) -> anyhow::Error {
        anyhow::Error::new(Failure { exit: Exit::RemoteFailed, message: message.into() })
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Failure {}

/// The exit code for an error: the first [`Failure`] in its chain decides, otherwise 1.
pub fn exit_code_of(error: &anyhow::Error) -> Exit {
    // A Failure attached as context is found by downcasting the error itself.
    error
        .downcast_ref::<Failure>()
        .or_else(|| error.chain().find_map(|cause| cause.downcast_ref::<Failure>()))
        .map_or(Exit::Failed, |failure| failure.exit)
}

fn is_broken_pipe(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| {
        cause.downcast_ref::<io::Error>().is_some_and(|io_error| io_error.kind() == io::ErrorKind::BrokenPipe)
    })
}

/// Runs a tool's body and turns its result into a process exit code, printing an error
/// (redacted) on stderr prefixed with the tool's name. The exit code is the outcome of the work:
/// a stdout closed by the reader is said on stderr and never turns a failure into success.
pub fn run_main(tool: &str, body: impl FnOnce() -> anyhow::Result<Exit>) -> i32 {
    crate::malloc::hand_back_freed_memory();
    let outcome = body();
    if crate::contract::stdout_was_closed() {
        eprintln!(
            "{tool}: warning: stdout was closed before every record was written; the exit code still tells the outcome"
        );
    }
    match outcome {
        Ok(exit) => exit as i32,
        Err(error) => {
            let shown = crate::redact::redact(&format!("{error:#}"));
            if is_broken_pipe(&error) {
                eprintln!("{tool}: error: {shown} (the reader of stdout went away)");
            } else {
                eprintln!("{tool}: error: {shown}");
            }
            crate::github::error(tool, &shown);
            exit_code_of(&error) as i32
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use anyhow::Context;

    #[test]
    fn exit_code_comes_from_the_failure_anywhere_in_the_chain() {
        let error = Err::<(), _>(Failure::usage("bad flag")).context("while reading flags").unwrap_err();
        assert_eq!(exit_code_of(&error), Exit::Usage);
        assert_eq!(exit_code_of(&anyhow::anyhow!("plain")), Exit::Failed);
        assert_eq!(exit_code_of(&Failure::deadline("late")), Exit::Deadline);
        assert_eq!(exit_code_of(&Failure::remote("gc failed")), Exit::RemoteFailed);
        let cut_short = anyhow::anyhow!("GET /x timed out").context(Failure::deadline_reached());
        assert_eq!(exit_code_of(&cut_short), Exit::Deadline);
        assert_eq!(exit_code_of(&cut_short.context("while listing")), Exit::Deadline);
    }

    #[test]
    fn a_broken_pipe_never_turns_into_success() {
        let code = run_main("t", || Err(anyhow::Error::new(io::Error::from(io::ErrorKind::BrokenPipe))));
        assert_eq!(code, 1);
        assert_eq!(run_main("t", || Err(Failure::usage("x"))), 2);
        assert_eq!(run_main("t", || Ok(Exit::RemoteFailed)), 4);
    }
}
