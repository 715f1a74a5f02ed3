//! The one way a request is sent, to the API and to the registry host alike: one attempt's time
//! capped by the deadline, one retry loop (the only place in do-core that sleeps between
//! attempts), one backoff with jitter, one give-up message. What an answer means is the caller's
//! to judge; what may be repeated is said per request.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::api::{describe_transport_error, Headers, RetryPolicy, TransportError};
use crate::exit::Failure;
use crate::progress::Progress;

/// Which failures a request may be sent again after.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Repeat {
    /// A request that is safe to repeat (a read, a PUT or DELETE of a named thing, a
    /// content-addressed push): after no answer, a 429 or a 5xx.
    Safe,
    /// A request that creates something: only after an answer the caller judges a refusal made
    /// before acting (a 429). No answer at all is returned, for the caller to look first.
    OnlyRefused,
}

/// One request.
pub struct Request<'a> {
    pub method: &'static str,
    pub url: &'a str,
    /// How the request is named in messages (a path, no query, no credentials).
    pub shown: &'a str,
    pub headers: &'a [(&'a str, &'a str)],
    pub body: Option<&'a [u8]>,
    /// The largest body read from an answer.
    pub max_body: u64,
    pub repeat: Repeat,
}

/// An answer as it came.
pub struct Answer {
    pub status: u16,
    pub headers: Headers,
    pub body: Vec<u8>,
}

/// The caller's judgement of an answer.
pub enum Judged {
    /// The answer to return.
    Done,
    /// A failure the request may be sent again after (when `Repeat` and the time allow), after
    /// `wait` when the server said how long.
    Retry { error: anyhow::Error, wait: Option<Duration> },
    /// A failure to return at once.
    Fail(anyhow::Error),
}

/// What the sending takes from its client.
pub struct Sender<'a> {
    pub agent: &'a ureq::Agent,
    pub retry: &'a RetryPolicy,
    pub request_timeout: Duration,
    pub deadline: Option<Instant>,
    pub progress: &'a Progress,
    /// Counted once per attempt.
    pub requests: &'a AtomicU64,
    /// Run before each attempt (the API client's pacing when the rate limit runs low).
    pub before_attempt: &'a dyn Fn(),
    /// Said when the host could not be reached at all (where its address came from).
    pub unreachable_hint: Option<&'a str>,
}

/// Sends `request` until `judge` takes an answer, a failure may not be repeated, or the
/// attempts, the retry time or the deadline run out.
pub fn send(sender: &Sender, request: &Request, mut judge: impl FnMut(&Answer) -> Judged) -> anyhow::Result<Answer> {
    let (method, shown) = (request.method, request.shown);
    let started = Instant::now();
    let mut retries = 0u32;
    loop {
        (sender.before_attempt)();
        let timeout = attempt_time(sender, method, shown)?;
        sender.requests.fetch_add(1, Ordering::Relaxed);
        let attempt = Instant::now();
        let (error, wait) = match send_once(sender.agent, request, timeout) {
            Ok(answer) => {
                // Made only for --verbose: tens of thousands of reads would each pay for it.
                if sender.progress.verbose() {
                    let id = crate::api::header(&answer.headers, "x-request-id");
                    sender.progress.debug(&format!(
                        "{method} {shown} -> {} in {}ms{}",
                        answer.status,
                        attempt.elapsed().as_millis(),
                        id.map(|id| format!(" (request id {id})")).unwrap_or_default()
                    ));
                }
                match judge(&answer) {
                    Judged::Done => return Ok(answer),
                    Judged::Fail(error) => return Err(error),
                    Judged::Retry { error, wait } => (error, wait),
                }
            }
            Err(message) => {
                let error =
                    TransportError { method, path: shown.to_string(), message: crate::redact::redact(&message) };
                sender.progress.debug(&format!("{error} after {}ms", attempt.elapsed().as_millis()));
                if request.repeat != Repeat::Safe {
                    return Err(error.into());
                }
                (anyhow::Error::from(error), None)
            }
        };
        let delay = wait.unwrap_or_else(|| sender.retry.backoff(retries, jitter()));
        if sender.deadline.is_some_and(|deadline| Instant::now() >= deadline) {
            // The attempt was cut short by the deadline, or the deadline passed meanwhile.
            return Err(error.context(Failure::deadline_reached()));
        }
        if !may_retry(sender, started, retries, delay) {
            let unreachable = error.downcast_ref::<TransportError>().is_some();
            let error = match retries {
                0 => error,
                _ => error.context(format!("gave up after {} attempts", retries + 1)),
            };
            return Err(match (unreachable, sender.unreachable_hint) {
                (true, Some(hint)) => error.context(hint.to_string()),
                _ => error,
            });
        }
        // Said without --verbose: a host that is down is not silence for minutes.
        sender.progress.info(&format!("retrying in {} after: {error}", crate::duration::human(delay)));
        std::thread::sleep(delay);
        retries += 1;
    }
}

/// One attempt's time: the request timeout, cut to what is left before the deadline; an error
/// when nothing is left.
fn attempt_time(sender: &Sender, method: &str, shown: &str) -> anyhow::Result<Duration> {
    let Some(deadline) = sender.deadline else { return Ok(sender.request_timeout) };
    match deadline.checked_duration_since(Instant::now()).filter(|left| !left.is_zero()) {
        Some(left) => Ok(left.min(sender.request_timeout)),
        None => Err(Failure::deadline(format!("{method} {shown} was not sent: the deadline (--timeout) has passed"))),
    }
}

fn may_retry(sender: &Sender, started: Instant, retries: u32, delay: Duration) -> bool {
    let resume_at = Instant::now() + delay;
    retries + 1 < sender.retry.max_attempts
        && started.elapsed() + delay <= sender.retry.max_elapsed
        && sender.deadline.is_none_or(|deadline| resume_at < deadline)
}

fn send_once(agent: &ureq::Agent, request: &Request, timeout: Duration) -> Result<Answer, String> {
    let mut builder = ureq::http::Request::builder().method(request.method).uri(request.url);
    for (name, value) in request.headers {
        builder = builder.header(*name, *value);
    }
    let response = match request.body {
        Some(bytes) => {
            let built = builder.body(bytes.to_vec()).map_err(|e| e.to_string())?;
            agent.run(agent.configure_request(built).timeout_global(Some(timeout)).build())
        }
        None => {
            let built = builder.body(()).map_err(|e| e.to_string())?;
            agent.run(agent.configure_request(built).timeout_global(Some(timeout)).build())
        }
    };
    let mut response = response.map_err(|error| describe_transport_error(&error))?;
    let status = response.status().as_u16();
    let headers: Headers = response
        .headers()
        .iter()
        .filter_map(|(name, value)| Some((name.as_str().to_ascii_lowercase(), value.to_str().ok()?.to_string())))
        .collect();
    if request.method == "HEAD" {
        return Ok(Answer { status, headers, body: Vec::new() });
    }
    let body =
        response.body_mut().with_config().limit(request.max_body).read_to_vec().map_err(|error| {
            format!("the response body was cut off or too large: {}", describe_transport_error(&error))
        })?;
    Ok(Answer { status, headers, body })
}

/// A number in [0, 1) for spreading retries (xorshift64, seeded from the clock and the process
/// id): it only has to keep clients from retrying in step, not to be unpredictable.
pub fn jitter() -> f64 {
    static SEED: AtomicU64 = AtomicU64::new(0);
    let mut x = SEED.load(Ordering::Relaxed);
    if x == 0 {
        x = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(1)
            ^ u64::from(std::process::id()).rotate_left(32)
            | 1;
    }
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    SEED.store(x, Ordering::Relaxed);
    (x >> 11) as f64 / (1u64 << 53) as f64
}
