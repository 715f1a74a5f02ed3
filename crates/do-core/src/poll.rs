//! Waiting for a remote state: a deadline, an interval that grows to a cap, and each change
//! of state reported once.

use std::time::{Duration, Instant};

use crate::progress::Progress;

/// What one look at the remote state found.
pub enum Check<T> {
    Done(T),
    /// Still going, in this state (shown to people once per change).
    Waiting(String),
}

pub struct Poller {
    /// The first pause between looks.
    pub interval: Duration,
    /// The pause grows by half each time up to this.
    pub max_interval: Duration,
    pub deadline: Instant,
}

/// How a wait ended.
pub struct Polled<T> {
    /// `None` when the deadline passed first.
    pub outcome: Option<T>,
    pub polls: u32,
    pub last_state: Option<String>,
    pub waited: Duration,
}

impl Poller {
    /// The pause before look number `poll` (1-based): `interval`, growing by half each time up to `max_interval`.
    pub fn pause_before(&self, poll: u32) -> Duration {
        let cap = self.max_interval.max(self.interval);
        let mut pause = self.interval;
        for _ in 1..poll {
            pause = pause.mul_f64(1.5).min(cap);
            if pause == cap {
                break;
            }
        }
        pause
    }

    pub fn run<T>(
        &self,
        progress: &Progress,
        mut check: impl FnMut() -> anyhow::Result<Check<T>>,
    ) -> anyhow::Result<Polled<T>> {
        let started = Instant::now();
        let mut polls = 0;
        let mut last_state = None;
        loop {
            polls += 1;
            let looked = match check() {
                // A request refused because the deadline passed ends the wait as the deadline does.
                Err(error) if crate::exit::exit_code_of(&error) == crate::Exit::Deadline => {
                    progress.finish();
                    return Ok(Polled { outcome: None, polls, last_state, waited: started.elapsed() });
                }
                other => other?,
            };
            match looked {
                Check::Done(value) => {
                    progress.finish();
                    return Ok(Polled { outcome: Some(value), polls, last_state, waited: started.elapsed() });
                }
                Check::Waiting(state) => {
                    progress.status(&state);
                    last_state = Some(state);
                }
            }
            let now = Instant::now();
            if now >= self.deadline {
                progress.finish();
                return Ok(Polled { outcome: None, polls, last_state, waited: started.elapsed() });
            }
            std::thread::sleep(self.pause_before(polls).min(self.deadline - now));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn quiet() -> Progress {
        Progress::new("test", true, false)
    }

    #[test]
    fn pauses_grow_by_half_to_the_cap() {
        let poller =
            Poller { interval: Duration::from_secs(2), max_interval: Duration::from_secs(5), deadline: Instant::now() };
        let pauses: Vec<u64> = (1..=5).map(|n| poller.pause_before(n).as_millis() as u64).collect();
        assert_eq!(pauses, [2000, 3000, 4500, 5000, 5000]);
    }

    #[test]
    fn stops_when_done_and_counts_polls() {
        let poller = Poller {
            interval: Duration::from_millis(1),
            max_interval: Duration::from_millis(2),
            deadline: Instant::now() + Duration::from_secs(10),
        };
        let mut remaining = 3;
        let polled = poller
            .run(&quiet(), || {
                remaining -= 1;
                Ok(if remaining == 0 { Check::Done("ok") } else { Check::Waiting(format!("{remaining} left")) })
            })
            .unwrap();
        assert_eq!((polled.outcome, polled.polls, polled.last_state.as_deref()), (Some("ok"), 3, Some("1 left")));
    }

    #[test]
    fn the_deadline_ends_the_wait_without_an_outcome() {
        let poller = Poller {
            interval: Duration::from_millis(5),
            max_interval: Duration::from_millis(5),
            deadline: Instant::now() + Duration::from_millis(30),
        };
        let polled = poller.run(&quiet(), || Ok(Check::<()>::Waiting("busy".into()))).unwrap();
        assert!(polled.outcome.is_none());
        assert!(polled.polls >= 2 && polled.waited >= Duration::from_millis(30));
    }
}
