//! Faults and rate limits as requests meet them: a fault taken once per use, the sliding
//! windows of the API's rate limits and their headers.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::state::{FaultKind, RateLimit, SimError, State};

pub(crate) fn fault_error(status: u16) -> SimError {
    let id = match status {
        400 => "bad_request",
        401 => "unauthorized",
        403 => "forbidden",
        404 => "not_found",
        409 => "conflict",
        422 => "unprocessable_entity",
        429 => "too_many_requests",
        _ if status >= 500 => "server_error",
        _ => "error",
    };
    let message = match status {
        403 => "You are not authorized to perform this operation",
        429 => "API rate limit exceeded.",
        _ if status >= 500 => "Server was unable to give you a response.",
        _ => "injected fault",
    };
    SimError::new(status, id, message)
}

pub(crate) fn take_fault(state: &mut State, method: &str, path: &str) -> Option<FaultKind> {
    let index = state.faults.iter().position(|fault| {
        let path_matches = match fault.path.strip_suffix('$') {
            Some(exact) => path == exact,
            None => path.starts_with(&fault.path),
        };
        fault.times > 0 && fault.method.as_deref().is_none_or(|m| m.eq_ignore_ascii_case(method)) && path_matches
    })?;
    let fault = &mut state.faults[index];
    fault.times -= 1;
    let kind = fault.kind.clone();
    if fault.times == 0 {
        state.faults.remove(index);
    }
    Some(kind)
}

pub(crate) fn window(rate_limit: &RateLimit, seconds: f64) -> Duration {
    Duration::from_secs_f64((seconds * rate_limit.window_scale).max(0.001))
}

/// Counts the request against the sliding windows. `Some(retry_after)` when refused:
/// the burst limit gives a `retry-after`, the hourly limit does not.
pub(crate) fn rate_limit(state: &mut State, now: Instant) -> Option<Option<u64>> {
    let hour = window(&state.rate_limit, 3600.0);
    let minute = window(&state.rate_limit, 60.0);
    while state.request_times.front().is_some_and(|t| now.duration_since(*t) >= hour) {
        state.request_times.pop_front();
    }
    if state.request_times.len() as u64 >= state.rate_limit.per_hour {
        return Some(None);
    }
    let in_minute: Vec<&Instant> = state.request_times.iter().filter(|t| now.duration_since(**t) < minute).collect();
    if in_minute.len() as u64 >= state.rate_limit.per_minute {
        let oldest = **in_minute.first().expect("the burst window is not empty");
        let wait = (oldest + minute).saturating_duration_since(now);
        return Some(Some(wait.as_secs_f64().ceil().max(1.0) as u64));
    }
    state.request_times.push_back(now);
    None
}

pub(crate) fn rate_headers(
    rate_limit: &RateLimit,
    times: &std::collections::VecDeque<Instant>,
    now: Instant,
) -> Vec<(String, String)> {
    let hour = window(rate_limit, 3600.0);
    let epoch = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0);
    let reset = match times.front() {
        Some(oldest) => epoch + (*oldest + hour).saturating_duration_since(now).as_secs_f64(),
        None => epoch,
    };
    vec![
        ("ratelimit-limit".into(), rate_limit.per_hour.to_string()),
        ("ratelimit-remaining".into(), rate_limit.per_hour.saturating_sub(times.len() as u64).to_string()),
        ("ratelimit-reset".into(), (reset.ceil() as u64).to_string()),
    ]
}
