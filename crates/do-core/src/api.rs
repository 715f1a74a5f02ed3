//! The DigitalOcean API client: one ureq agent per process, the token kept out of every
//! output, retries with capped exponential backoff for idempotent requests, rate-limit
//! pacing, both pagination styles, and a typed error carrying DigitalOcean's error body.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use serde::de::DeserializeOwned;
use serde_json::Value;

pub use crate::address::{checked_base_url, is_loopback_url, segment};
pub use crate::paging::{FailedListing, ListingPage};
use crate::progress::Progress;
pub use crate::secret::{check_token, Secret};

pub const DEFAULT_API_URL: &str = "https://api.digitalocean.com";
pub const TOKEN_VARIABLE: &str = "DIGITALOCEAN_ACCESS_TOKEN";
pub const API_URL_VARIABLE: &str = "DIGITALOCEAN_API_URL";
/// The largest page the API serves.
pub const PER_PAGE: u32 = 200;
const MAX_BODY_BYTES: u64 = 64 * 1024 * 1024;
pub(crate) const MAX_PAGES: usize = 100_000;

/// DigitalOcean's error body `{id, message, request_id}` with the status and the request it answered.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub method: &'static str,
    pub path: String,
    pub status: u16,
    pub id: String,
    pub message: String,
    pub request_id: Option<String>,
}

impl ApiError {
    fn hint(&self) -> &'static str {
        match self.status {
            401 => "; check DIGITALOCEAN_ACCESS_TOKEN or --token-file",
            403 => "; the token lacks a scope this needs (see the tool's --help for the scopes)",
            429 => "; the API rate limit stayed exhausted, try again later",
            _ => "",
        }
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} answered {}", self.method, self.path, self.status)?;
        if !self.id.is_empty() {
            write!(f, " {}", self.id)?;
        }
        if !self.message.is_empty() {
            write!(f, ": {}", self.message.trim_end_matches('.'))?;
        }
        if let Some(request_id) = &self.request_id {
            write!(f, " (request id {request_id})")?;
        }
        f.write_str(self.hint())
    }
}

impl std::error::Error for ApiError {}

/// A request that got no usable answer: the connection failed, timed out or the body was cut.
#[derive(Debug, Clone)]
pub struct TransportError {
    pub method: &'static str,
    pub path: String,
    pub message: String,
}

impl fmt::Display for TransportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} failed: {}", self.method, self.path, self.message)
    }
}

impl std::error::Error for TransportError {}

/// Whether a failed request may have been carried out by the server: no answer came back, or a
/// 5xx did (the server may have acted before failing).
pub fn is_ambiguous(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| {
        cause.downcast_ref::<TransportError>().is_some()
            || cause.downcast_ref::<ApiError>().is_some_and(|api| api.status >= 500)
    })
}

/// Whether an error is the API's answer with this status.
pub fn has_status(error: &anyhow::Error, status: u16) -> bool {
    error.chain().any(|cause| cause.downcast_ref::<ApiError>().is_some_and(|api| api.status == status))
}

/// How long and how often idempotent requests are retried.
#[derive(Clone, Debug)]
pub struct RetryPolicy {
    /// The first backoff; each retry doubles it up to `max_delay`.
    pub base_delay: Duration,
    pub max_delay: Duration,
    /// No retry starts after this much time was spent on one request.
    pub max_elapsed: Duration,
    pub max_attempts: u32,
}

impl Default for RetryPolicy {
    fn default() -> RetryPolicy {
        RetryPolicy {
            base_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(30),
            max_elapsed: Duration::from_secs(120),
            max_attempts: 8,
        }
    }
}

impl RetryPolicy {
    /// The backoff before retry number `retry` (0-based): exponential, capped, with jitter
    /// between half and all of it. `unit` is a random number in [0, 1).
    pub fn backoff(&self, retry: u32, unit: f64) -> Duration {
        let exponential = self.base_delay.saturating_mul(2u32.saturating_pow(retry.min(20)));
        let capped = exponential.min(self.max_delay);
        capped.mul_f64(0.5 + 0.5 * unit.clamp(0.0, 1.0))
    }
}

/// Settings a client is built from; tools fill it from [`crate::cli::ApiArgs`].
#[derive(Clone, Debug)]
pub struct ClientConfig {
    pub api_url: String,
    pub token: Secret,
    pub retry: RetryPolicy,
    pub request_timeout: Duration,
    pub connect_timeout: Duration,
}

#[derive(Default)]
struct RateLimitState {
    limit: Option<u64>,
    remaining: Option<u64>,
    reset_epoch: Option<u64>,
}

/// What a request may be retried on.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Retry {
    /// GET, PUT, DELETE: transport errors, 429 and 5xx.
    Idempotent,
    /// A POST that creates something: only a 429, which the API refused before acting.
    CreateOnce,
}

/// A successful answer: the status and the body.
pub struct Reply {
    pub status: u16,
    pub body: Vec<u8>,
}

pub struct Client {
    agent: ureq::Agent,
    base_url: String,
    authorization: Secret,
    retry: RetryPolicy,
    request_timeout: Duration,
    pub(crate) progress: Arc<Progress>,
    rate_limit: Mutex<RateLimitState>,
    deadline: Mutex<Option<Instant>>,
    requests: AtomicU64,
}

impl Client {
    pub fn new(config: ClientConfig, progress: Arc<Progress>) -> anyhow::Result<Client> {
        let base_url = checked_base_url(&config.api_url)?;
        let token = check_token(config.token.expose(), "the API token")?;
        crate::redact::register(token.expose());
        let token = token.expose();
        let agent = crate::transport::agent(
            &base_url,
            crate::transport::AgentOptions {
                timeout: Some(config.request_timeout),
                connect_timeout: Some(config.connect_timeout),
                answers: crate::transport::Answers::Raw,
            },
        )?;
        Ok(Client {
            agent,
            base_url,
            authorization: Secret::new(format!("Bearer {token}")),
            retry: config.retry,
            request_timeout: config.request_timeout,
            progress,
            rate_limit: Mutex::new(RateLimitState::default()),
            deadline: Mutex::new(None),
            requests: AtomicU64::new(0),
        })
    }

    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// No retry waits past this instant.
    pub fn set_deadline(&self, deadline: Instant) {
        *self.deadline.lock().unwrap_or_else(|e| e.into_inner()) = Some(deadline);
    }

    pub fn deadline(&self) -> Option<Instant> {
        *self.deadline.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn retry_policy(&self) -> RetryPolicy {
        self.retry.clone()
    }

    pub fn request_timeout(&self) -> Duration {
        self.request_timeout
    }

    /// How many HTTP requests this client has sent, retries included.
    pub fn requests_made(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    /// GET a single object from its envelope (`{"registry": {...}}` with `field` = `registry`).
    pub fn get_object<T: DeserializeOwned>(&self, path: &str, field: &str) -> anyhow::Result<T> {
        let reply = self.send("GET", path, None, Retry::Idempotent)?;
        decode_field(&reply.body, field, "GET", path)
    }

    /// Like [`Client::get_object`], but a 404 is `None`.
    pub fn get_object_or_none<T: DeserializeOwned>(&self, path: &str, field: &str) -> anyhow::Result<Option<T>> {
        match self.get_object(path, field) {
            Ok(value) => Ok(Some(value)),
            Err(error) if has_status(&error, 404) => Ok(None),
            Err(error) => Err(error),
        }
    }

    /// PUT a JSON body and decode the `field` of the answer. Retried like a GET.
    pub fn put<T: DeserializeOwned>(&self, path: &str, body: &Value, field: &str) -> anyhow::Result<T> {
        let reply = self.send("PUT", path, Some(body), Retry::Idempotent)?;
        decode_field(&reply.body, field, "PUT", path)
    }

    /// PUT that makes something happen (an app spec update starts a deployment): retried only
    /// after a 429, so an ambiguous failure can be checked before trying again.
    pub fn put_once<T: DeserializeOwned>(&self, path: &str, body: &Value, field: &str) -> anyhow::Result<T> {
        let reply = self.send("PUT", path, Some(body), Retry::CreateOnce)?;
        decode_field(&reply.body, field, "PUT", path)
    }

    /// DELETE; 204 and 200 are success.
    pub fn delete(&self, path: &str) -> anyhow::Result<()> {
        self.send("DELETE", path, None, Retry::Idempotent).map(|_| ())
    }

    /// POST that creates something. It is retried only after a 429; any other failure is
    /// returned so the caller can look whether the create happened before trying again.
    pub fn post_create<T: DeserializeOwned>(&self, path: &str, body: Option<&Value>, field: &str) -> anyhow::Result<T> {
        let reply = self.send("POST", path, body, Retry::CreateOnce)?;
        decode_field(&reply.body, field, "POST", path)
    }

    /// POST that changes nothing (an app spec proposal): retried like a GET; the whole answer.
    pub fn post_read(&self, path: &str, body: &Value) -> anyhow::Result<Value> {
        let reply = self.send("POST", path, Some(body), Retry::Idempotent)?;
        decode(&reply.body, "POST", path)
    }

    /// POST whose answer has no useful body, or whose body the caller reads itself.
    pub fn post_raw(&self, path: &str, body: Option<&Value>) -> anyhow::Result<Reply> {
        self.send("POST", path, body, Retry::CreateOnce)
    }

    pub(crate) fn send(
        &self,
        method: &'static str,
        path: &str,
        body: Option<&Value>,
        retry: Retry,
    ) -> anyhow::Result<Reply> {
        let url = format!("{}{}", self.base_url, path);
        let body_bytes = body.map(|value| serde_json::to_vec(value).expect("a JSON value serialises"));
        let mut headers = vec![("authorization", self.authorization.expose()), ("accept", "application/json")];
        if body_bytes.is_some() {
            headers.push(("content-type", "application/json"));
        }
        let repeat = match retry {
            Retry::Idempotent => crate::http::Repeat::Safe,
            Retry::CreateOnce => crate::http::Repeat::OnlyRefused,
        };
        let request = crate::http::Request {
            method,
            url: &url,
            shown: path,
            headers: &headers,
            body: body_bytes.as_deref(),
            max_body: MAX_BODY_BYTES,
            repeat,
        };
        let pace = || self.pace();
        let hint = std::env::var(API_URL_VARIABLE).ok().filter(|url| !url.trim().is_empty()).map(|url| {
            format!("{API_URL_VARIABLE} is set to {url}: check that the API (or do-sim) answers there, or unset it")
        });
        let sender = crate::http::Sender {
            agent: &self.agent,
            retry: &self.retry,
            request_timeout: self.request_timeout,
            deadline: self.deadline(),
            progress: &self.progress,
            requests: &self.requests,
            before_attempt: &pace,
            unreachable_hint: hint.as_deref(),
        };
        let answer = crate::http::send(&sender, &request, |answer| {
            self.note_rate_limit(&answer.headers);
            let status = answer.status;
            if (200..300).contains(&status) {
                return crate::http::Judged::Done;
            }
            let request_id = header(&answer.headers, "x-request-id");
            let api_error = api_error(method, path, status, &answer.body, request_id);
            match status == 429 || (retry == Retry::Idempotent && status >= 500) {
                false => crate::http::Judged::Fail(api_error.into()),
                true => crate::http::Judged::Retry {
                    error: api_error.into(),
                    wait: if status == 429 { self.wait_after_429(&answer.headers) } else { None },
                },
            }
        })?;
        Ok(Reply { status: answer.status, body: answer.body })
    }

    /// `retry-after` first; otherwise, when the hourly budget is spent, `ratelimit-reset`.
    fn wait_after_429(&self, headers: &Headers) -> Option<Duration> {
        if let Some(seconds) = header(headers, "retry-after").and_then(|v| v.trim().parse::<u64>().ok()) {
            return Some(Duration::from_secs(seconds));
        }
        let remaining = header(headers, "ratelimit-remaining").and_then(|v| v.trim().parse::<u64>().ok());
        let reset = header(headers, "ratelimit-reset").and_then(|v| v.trim().parse::<u64>().ok());
        match (remaining, reset) {
            (Some(0), Some(reset)) => Some(Duration::from_secs(reset.saturating_sub(epoch_seconds()).max(1))),
            _ => None,
        }
    }

    fn note_rate_limit(&self, headers: &Headers) {
        let number = |name| header(headers, name).and_then(|v| v.trim().parse::<u64>().ok());
        let mut state = self.rate_limit.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(limit) = number("ratelimit-limit") {
            state.limit = Some(limit);
        }
        state.remaining = number("ratelimit-remaining").or(state.remaining);
        state.reset_epoch = number("ratelimit-reset").or(state.reset_epoch);
    }

    /// When few requests are left in the hourly window, spread the rest over the time until
    /// the oldest counted request expires, instead of running into a 429.
    fn pace(&self) {
        let delay = {
            let state = self.rate_limit.lock().unwrap_or_else(|e| e.into_inner());
            pacing_delay(state.limit, state.remaining, state.reset_epoch, epoch_seconds())
        };
        if let Some(delay) = delay {
            self.progress.debug(&format!("rate limit nearly spent, waiting {}", crate::duration::human(delay)));
            std::thread::sleep(delay);
        }
    }
}

/// Downloads a pre-signed URL (App Platform's historic log URLs) with a fresh agent that has
/// no token: the URL carries its own authorisation. https, or plain http to a loopback address.
pub fn download_without_token(url: &str, timeout: Duration, max_bytes: u64) -> anyhow::Result<String> {
    let uri: ureq::http::Uri = url.parse().with_context(|| format!("not a URL: {url:?}"))?;
    let allowed = match uri.scheme_str() {
        Some("https") => true,
        Some("http") => is_loopback_url(url),
        _ => false,
    };
    anyhow::ensure!(
        allowed,
        "refusing to download {}: only https (or http to a loopback address)",
        uri.host().unwrap_or("")
    );
    let options = crate::transport::AgentOptions {
        timeout: Some(timeout),
        connect_timeout: None,
        answers: crate::transport::Answers::Download,
    };
    let agent = crate::transport::agent(url, options)?;
    let mut response = agent
        .get(url)
        .call()
        .map_err(|e| anyhow::anyhow!("downloading the log failed: {}", describe_transport_error(&e)))?;
    let bytes = response
        .body_mut()
        .with_config()
        .limit(max_bytes)
        .read_to_vec()
        .map_err(|e| anyhow::anyhow!("reading the log failed: {e}"))?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

pub(crate) type Headers = Vec<(String, String)>;

pub(crate) fn header(headers: &Headers, name: &str) -> Option<String> {
    headers.iter().find(|(key, _)| key == name).map(|(_, value)| value.clone())
}

fn epoch_seconds() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// The pause before the next request when the hourly budget runs low: below 5% of the limit
/// (at least 5 requests), the time to the reset spread over what is left, at most 10 seconds.
pub fn pacing_delay(
    limit: Option<u64>,
    remaining: Option<u64>,
    reset_epoch: Option<u64>,
    now_epoch: u64,
) -> Option<Duration> {
    let (limit, remaining, reset) = (limit?, remaining?, reset_epoch?);
    let low_water = (limit / 20).max(5);
    if remaining >= low_water || reset <= now_epoch {
        return None;
    }
    let seconds_left = (reset - now_epoch) as f64;
    let delay = Duration::from_secs_f64(seconds_left / (remaining + 1) as f64);
    Some(delay.min(Duration::from_secs(10)))
}

fn api_error(method: &'static str, path: &str, status: u16, body: &[u8], request_id: Option<String>) -> ApiError {
    let parsed: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let text = |key: &str| parsed.get(key).and_then(Value::as_str).map(str::to_string);
    let fallback_message = || {
        let snippet: String = String::from_utf8_lossy(body).chars().take(200).collect();
        snippet.trim().to_string()
    };
    let redacted = |text: String| crate::redact::redact(&text);
    ApiError {
        method,
        path: path.to_string(),
        status,
        id: text("id").map(redacted).unwrap_or_default(),
        message: redacted(text("message").unwrap_or_else(fallback_message)),
        request_id: text("request_id").or(request_id).map(redacted),
    }
}

pub(crate) fn describe_transport_error(error: &ureq::Error) -> String {
    match error {
        ureq::Error::Timeout(_) => "the request timed out".to_string(),
        ureq::Error::ConnectionFailed => "could not connect".to_string(),
        ureq::Error::Io(io) if io.kind() == std::io::ErrorKind::ConnectionRefused => {
            "could not connect: nothing answers at that address (connection refused)".to_string()
        }
        ureq::Error::HostNotFound => "host not found".to_string(),
        other => {
            let message = other.to_string();
            match crate::transport::certificate_hint(&message) {
                Some(hint) => format!("{message} ({hint})"),
                None => message,
            }
        }
    }
}

pub(crate) fn decode<T: DeserializeOwned>(body: &[u8], method: &str, path: &str) -> anyhow::Result<T> {
    serde_json::from_slice(body)
        .with_context(|| format!("{method} {path}: the API sent a body that is not the expected JSON"))
}

fn decode_field<T: DeserializeOwned>(body: &[u8], field: &str, method: &str, path: &str) -> anyhow::Result<T> {
    let mut value: Value = decode(body, method, path)?;
    let inner = value
        .get_mut(field)
        .map(Value::take)
        .with_context(|| format!("{method} {path}: the answer has no {field:?} field"))?;
    serde_json::from_value(inner)
        .with_context(|| format!("{method} {path}: the {field} in the answer has an unexpected shape"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_is_capped_and_jittered() {
        let policy = RetryPolicy {
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(1),
            ..RetryPolicy::default()
        };
        assert_eq!(policy.backoff(0, 1.0), Duration::from_millis(100));
        assert_eq!(policy.backoff(0, 0.0), Duration::from_millis(50));
        assert_eq!(policy.backoff(3, 1.0), Duration::from_millis(800));
        assert_eq!(policy.backoff(10, 1.0), Duration::from_secs(1));
        assert_eq!(policy.backoff(u32::MAX, 0.0), Duration::from_millis(500));
    }

    #[test]
    fn pacing_starts_only_when_the_budget_runs_low() {
        assert_eq!(pacing_delay(Some(5000), Some(4000), Some(1_000_100), 1_000_000), None);
        assert_eq!(pacing_delay(Some(5000), Some(9), Some(1_000_100), 1_000_000), Some(Duration::from_secs(10)));
        assert_eq!(pacing_delay(Some(100), Some(4), Some(1_000_010), 1_000_000), Some(Duration::from_secs(2)));
        assert_eq!(pacing_delay(Some(100), Some(4), Some(999_999), 1_000_000), None);
        assert_eq!(pacing_delay(None, Some(1), Some(1), 0), None);
    }

    #[test]
    fn api_errors_carry_digitalocean_error_bodies() {
        let body = br#"{"id":"unauthorized","message":"Unable to authenticate you.","request_id":"r-1"}"#;
        let error = api_error("GET", "/v2/account", 401, body, None);
        assert_eq!((error.status, error.id.as_str(), error.request_id.as_deref()), (401, "unauthorized", Some("r-1")));
        let shown = error.to_string();
        assert!(shown.contains("401 unauthorized: Unable to authenticate you (request id r-1)"), "{shown}");
        let html = api_error("GET", "/x", 502, b"<html>bad gateway</html>", Some("h-1".into()));
        assert_eq!(html.message, "<html>bad gateway</html>");
        assert_eq!(html.request_id.as_deref(), Some("h-1"));
    }
}
