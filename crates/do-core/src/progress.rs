//! Human progress on stderr, prefixed with the tool's name. On a terminal a long wait shows a
//! live status line that is rewritten in place; in CI (no terminal, or `CI` set) every change
//! of status is one plain line. Nothing here ever writes to stdout.

use std::io::{IsTerminal, Write};
use std::sync::Mutex;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Rewrite one status line in place (stderr is a terminal and `CI` is not set).
    Live,
    /// One line per change of status.
    Plain,
    /// Errors only (`-q`).
    Quiet,
}

pub struct Progress {
    tool: &'static str,
    mode: Mode,
    verbose: bool,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    last_status: Option<String>,
    live_line_shown: bool,
}

impl Progress {
    pub fn new(tool: &'static str, quiet: bool, verbose: bool) -> Progress {
        let mode = if quiet {
            Mode::Quiet
        } else if std::io::stderr().is_terminal() && std::env::var_os("CI").is_none() {
            Mode::Live
        } else {
            Mode::Plain
        };
        Progress { tool, mode, verbose, state: Mutex::new(State::default()) }
    }

    pub fn tool(&self) -> &'static str {
        self.tool
    }

    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// The state of a long wait. Shown once per change; on a terminal it replaces the previous one.
    /// `detail` (an elapsed time, say) refreshes the live line but never makes a new plain line.
    pub fn status(&self, status: &str, detail: &str) {
        let status = &crate::redact::redact(status);
        let mut state = self.lock();
        let changed = state.last_status.as_deref() != Some(status);
        match self.mode {
            Mode::Quiet => {}
            Mode::Plain if changed => {
                eprintln!("{}: {status}", self.tool);
            }
            Mode::Plain => {}
            Mode::Live => {
                let separator = if detail.is_empty() { "" } else { " " };
                eprint!("\r\x1b[2K{}: {status}{separator}{detail}", self.tool);
                let _ = std::io::stderr().flush();
                state.live_line_shown = true;
            }
        }
        if changed {
            state.last_status = Some(status.to_string());
        }
    }

    /// A line for people, shown unless `-q`.
    pub fn info(&self, message: &str) {
        if self.mode != Mode::Quiet {
            self.line(message);
        }
    }

    /// A warning, shown even with `-q`.
    pub fn warn(&self, message: &str) {
        self.line(&format!("warning: {message}"));
    }

    /// Detail shown only with `-v`.
    pub fn debug(&self, message: &str) {
        if self.verbose {
            self.line(message);
        }
    }

    pub fn verbose(&self) -> bool {
        self.verbose
    }

    /// Ends a live status line so that what follows starts on a fresh line.
    pub fn finish(&self) {
        let mut state = self.lock();
        if state.live_line_shown {
            eprintln!();
            state.live_line_shown = false;
        }
    }

    fn line(&self, message: &str) {
        let message = crate::redact::redact(message);
        let mut state = self.lock();
        if state.live_line_shown {
            eprint!("\r\x1b[2K");
            state.live_line_shown = false;
            state.last_status = None;
        }
        eprintln!("{}: {message}", self.tool);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}
