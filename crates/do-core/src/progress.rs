//! Human progress on stderr, prefixed with the tool's name. On a terminal a long wait shows a
//! live status line that is rewritten in place and whose elapsed time ticks every second; in
//! CI (no terminal, or `CI` set) each new state is one plain line, and a counter (`3/9`) is
//! shown at most every few seconds. `DO_RELEASE_PROGRESS=live|plain` overrides the choice (the
//! xtask passes its own terminal on). Nothing here ever writes to stdout.

use std::io::{IsTerminal, Write};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Rewrite one status line in place (stderr is a terminal and `CI` is not set).
    Live,
    /// One line per change of status.
    Plain,
    /// Errors only (`-q`).
    Quiet,
}

/// The variable that overrides the live or plain choice.
pub const MODE_VARIABLE: &str = "DO_RELEASE_PROGRESS";

/// A counter's plain line is repeated at most this often.
const PLAIN_COUNTER_EVERY: Duration = Duration::from_secs(5);

pub struct Progress {
    tool: &'static str,
    mode: Mode,
    verbose: bool,
    state: Arc<Mutex<State>>,
}

#[derive(Default)]
struct State {
    last_status: Option<String>,
    /// The plain line last printed, digits removed, and when.
    last_plain: Option<(String, Instant)>,
    live_line_shown: bool,
    /// When the live line's wait began: its elapsed time counts from here.
    live_since: Option<Instant>,
    ticker_started: bool,
    /// The highest count shown of each counter.
    counters: std::collections::BTreeMap<String, usize>,
}

/// The status with its digits taken out: `deleting 3/9` and `deleting 4/9` are one state.
fn shape(status: &str) -> String {
    status.chars().filter(|c| !c.is_ascii_digit()).collect()
}

impl Progress {
    pub fn new(tool: &'static str, quiet: bool, verbose: bool) -> Progress {
        let forced = std::env::var(MODE_VARIABLE).ok();
        let mode = if quiet {
            Mode::Quiet
        } else {
            match forced.as_deref() {
                Some("live") => Mode::Live,
                Some("plain") => Mode::Plain,
                _ if std::io::stderr().is_terminal() && std::env::var_os("CI").is_none() => Mode::Live,
                _ => Mode::Plain,
            }
        };
        Progress { tool, mode, verbose, state: Arc::new(Mutex::new(State::default())) }
    }

    pub fn tool(&self) -> &'static str {
        self.tool
    }

    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// A counter of work done (`reading manifests: 40/120`), shown as a status. Several threads
    /// may count at once: a count below one already shown is not shown, so the counter never
    /// goes backwards. Returns whether it was taken.
    pub fn count(&self, what: &str, done: usize, total: usize) -> bool {
        let mut state = self.lock();
        let shown = state.counters.entry(what.to_string()).or_default();
        if done < *shown {
            return false;
        }
        *shown = done;
        self.show_status(&mut state, &format!("{what}: {done}/{}", total.max(done)));
        true
    }

    /// The state of a long wait. On a terminal it replaces the previous one, with the time
    /// since the wait began (ticking every second); in plain mode each new state is one line.
    pub fn status(&self, status: &str) {
        let mut state = self.lock();
        self.show_status(&mut state, status);
    }

    fn show_status(&self, state: &mut State, status: &str) {
        let status = &crate::redact::redact(status);
        let changed = state.last_status.as_deref() != Some(status);
        match self.mode {
            Mode::Quiet => {}
            Mode::Plain if changed => {
                let now = Instant::now();
                let due = match &state.last_plain {
                    Some((last, at)) => *last != shape(status) || now.duration_since(*at) >= PLAIN_COUNTER_EVERY,
                    None => true,
                };
                if due {
                    eprintln!("{}: {status}", self.tool);
                    state.last_plain = Some((shape(status), now));
                }
            }
            Mode::Plain => {}
            Mode::Live => {
                let since = *state.live_since.get_or_insert_with(Instant::now);
                draw(self.tool, status, since);
                state.live_line_shown = true;
                if !state.ticker_started {
                    state.ticker_started = true;
                    start_ticker(self.tool, Arc::downgrade(&self.state));
                }
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
        state.live_since = None;
        state.last_status = None;
    }

    fn line(&self, message: &str) {
        let message = crate::redact::redact(message);
        let mut state = self.lock();
        if state.live_line_shown {
            eprint!("\r\x1b[2K");
            state.live_line_shown = false;
            state.last_status = None;
            state.live_since = None;
        }
        eprintln!("{}: {message}", self.tool);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

fn draw(tool: &str, status: &str, since: Instant) {
    let elapsed = crate::duration::human(Duration::from_secs(since.elapsed().as_secs()));
    eprint!("\r\x1b[2K{tool}: {status} ({elapsed})");
    let _ = std::io::stderr().flush();
}

/// Redraws the live line every second while one is shown, so its elapsed time moves even when
/// nothing else does; ends with the `Progress`.
fn start_ticker(tool: &'static str, state: Weak<Mutex<State>>) {
    std::thread::spawn(move || loop {
        std::thread::sleep(Duration::from_secs(1));
        let Some(state) = state.upgrade() else { return };
        let state = state.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let (true, Some(status), Some(since)) = (state.live_line_shown, &state.last_status, state.live_since) {
            draw(tool, status, since);
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_counter_never_goes_backwards() {
        let progress = Progress { tool: "t", mode: Mode::Quiet, verbose: false, state: Default::default() };
        assert!(progress.count("reading", 5, 10));
        assert!(!progress.count("reading", 3, 10), "a lower count from a slower thread is not shown");
        assert!(progress.count("reading", 5, 12), "the same count with a larger total is");
        assert!(progress.count("deleting", 1, 4), "each counter on its own");
        assert!(progress.count("reading", 9, 12));
    }

    #[test]
    fn counters_are_one_state_and_statuses_are_not() {
        assert_eq!(shape("deleting in web: 3/9"), shape("deleting in web: 9/9"));
        assert_ne!(shape("scanning manifests"), shape("deleting unreferenced blobs"));
    }
}
