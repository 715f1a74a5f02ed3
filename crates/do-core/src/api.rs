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

use crate::exit::Failure;
use crate::progress::Progress;

pub const DEFAULT_API_URL: &str = "https://api.digitalocean.com";
pub const TOKEN_VARIABLE: &str = "DIGITALOCEAN_ACCESS_TOKEN";
pub const API_URL_VARIABLE: &str = "DIGITALOCEAN_API_URL";
/// The largest page the API serves.
pub const PER_PAGE: u32 = 200;
const MAX_BODY_BYTES: u64 = 64 * 1024 * 1024;
const MAX_PAGES: usize = 100_000;

/// A value that must never be shown: its `Debug` and `Display` print `***`.
#[derive(Clone)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: String) -> Secret {
        Secret(value)
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

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
enum Retry {
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
    progress: Arc<Progress>,
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
            authorization: Secret(format!("Bearer {token}")),
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

    /// GET every page of a collection, following `links.pages.next` until it is absent.
    /// Works for page numbers and page tokens alike; asks for `per_page=200`.
    pub fn get_all<T: DeserializeOwned>(&self, path: &str, field: &str) -> anyhow::Result<Vec<T>> {
        let first = self.get_listing_page(&with_per_page(path), field)?;
        self.follow_pages(path, field, first)
    }

    /// The rest of a listing after `first`, one page after another.
    fn follow_pages<T: DeserializeOwned>(
        &self,
        path: &str,
        field: &str,
        first: ListingPage<T>,
    ) -> anyhow::Result<Vec<T>> {
        let mut visited = std::collections::HashSet::from([first.path.clone()]);
        let mut next = first.next;
        let mut items = first.items;
        while let Some(current) = next.take() {
            if visited.len() >= MAX_PAGES {
                anyhow::bail!("GET {path}: more than {MAX_PAGES} pages, the API keeps sending a next page");
            }
            if !visited.insert(current.clone()) {
                anyhow::bail!(
                    "GET {path}: the next-page link leads back to a page already read ({current}); the listing would never end"
                );
            }
            let page = self.get_listing_page(&current, field)?;
            items.extend(page.items);
            next = page.next;
        }
        Ok(items)
    }

    /// GET one page of a listing: its items, the total it states and the next page's path.
    pub fn get_listing_page<T: DeserializeOwned>(&self, path: &str, field: &str) -> anyhow::Result<ListingPage<T>> {
        let reply = self.send("GET", path, None, Retry::Idempotent)?;
        let mut page: Value = decode(&reply.body, "GET", path)?;
        let items = list_field::<T>(&mut page, field, path)?;
        let total = page.pointer("/meta/total").and_then(Value::as_u64);
        let next = match page.pointer("/links/pages/next").and_then(Value::as_str).filter(|s| !s.is_empty()) {
            Some(link) => Some(self.path_of_link(link)?),
            None => None,
        };
        Ok(ListingPage { path: path.to_string(), items, total, next })
    }

    /// Every listing in `paths`, each complete and in order, with at most `concurrency`
    /// requests at once over all of them: first pages, then, for each page-number listing whose
    /// first page gives the total, the other pages several at a time. A listing whose pages disagree
    /// (it changed while it was read) is read again one page after another, so the result is
    /// always what [`Client::get_all`] would give.
    pub fn get_all_concurrently<T: DeserializeOwned + Send>(
        &self,
        paths: &[String],
        field: &str,
        concurrency: usize,
    ) -> anyhow::Result<Vec<Vec<T>>> {
        let of = |index: usize| {
            move |error: anyhow::Error| error.context(FailedListing { index, path: paths[index].clone() })
        };
        let indexes: Vec<usize> = (0..paths.len()).collect();
        let firsts: Vec<ListingPage<T>> = crate::concurrent::try_map(&indexes, concurrency, |&n| {
            self.get_listing_page(&with_per_page(&paths[n]), field).map_err(of(n))
        })?;
        let rest: Vec<Option<Vec<String>>> = firsts.iter().map(remaining_pages).collect();
        let totals: Vec<Option<u64>> = firsts.iter().map(|first| first.total).collect();
        // The remaining pages, in rounds of at most `concurrency` per listing, so a first page
        // that promises more than there is costs one round, not every page it promised: a page
        // that disagrees with the first, or comes back empty, stops that listing's reading ahead.
        let mut read: Vec<Vec<ListingPage<T>>> = paths.iter().map(|_| Vec::new()).collect();
        let mut stopped = vec![false; paths.len()];
        loop {
            let jobs: Vec<(usize, &String)> = rest
                .iter()
                .enumerate()
                .filter(|(n, _)| !stopped[*n])
                .flat_map(|(n, pages)| {
                    pages.iter().flatten().skip(read[n].len()).take(concurrency.max(1)).map(move |p| (n, p))
                })
                .collect();
            if jobs.is_empty() {
                break;
            }
            let fetched = crate::concurrent::try_map(&jobs, concurrency, |&(n, path)| {
                self.get_listing_page::<T>(path, field).map_err(of(n))
            })?;
            for (&(n, _), page) in jobs.iter().zip(fetched) {
                if page.total != totals[n] || page.items.is_empty() {
                    stopped[n] = true;
                }
                read[n].push(page);
            }
        }
        let mut listings = Vec::with_capacity(paths.len());
        for (index, ((first, rest), more)) in firsts.into_iter().zip(&rest).zip(read).enumerate() {
            let path = &paths[index];
            let Some(planned) = rest else {
                listings.push(self.follow_pages(path, field, first).map_err(of(index))?);
                continue;
            };
            let total = first.total;
            let mut pages = vec![first];
            pages.extend(more);
            let consistent = pages.len() == planned.len() + 1
                && pages.iter().all(|p| p.total == total)
                && pages.last().is_some_and(|p| p.next.is_none())
                && Some(pages.iter().map(|p| p.items.len() as u64).sum::<u64>()) == total;
            if consistent {
                listings.push(pages.into_iter().flat_map(|p| p.items).collect());
            } else {
                self.progress.debug(&format!("GET {path}: the listing changed while it was read; reading it again"));
                listings.push(self.get_all(path, field).map_err(of(index))?);
            }
        }
        Ok(listings)
    }

    /// GET one page of a collection (`?page=1&per_page=N` in `path`): its `field` list, failing
    /// closed like [`Client::get_all`] when the list is missing.
    pub fn get_page<T: DeserializeOwned>(&self, path: &str, field: &str) -> anyhow::Result<Vec<T>> {
        let reply = self.send("GET", path, None, Retry::Idempotent)?;
        let mut page: Value = decode(&reply.body, "GET", path)?;
        list_field(&mut page, field, path)
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

    fn send(&self, method: &'static str, path: &str, body: Option<&Value>, retry: Retry) -> anyhow::Result<Reply> {
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
        let sender = crate::http::Sender {
            agent: &self.agent,
            retry: &self.retry,
            request_timeout: self.request_timeout,
            deadline: self.deadline(),
            progress: &self.progress,
            requests: &self.requests,
            before_attempt: &pace,
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

    /// A `links.pages.next` URL as a path on our own base URL: the token never follows a
    /// link to another host.
    fn path_of_link(&self, link: &str) -> anyhow::Result<String> {
        let uri: ureq::http::Uri =
            link.parse().with_context(|| format!("the API sent a next-page link that is not a URL: {link:?}"))?;
        let path_and_query = uri.path_and_query().map(|pq| pq.as_str()).unwrap_or("/");
        let base_path =
            self.base_url.split_once("://").and_then(|(_, rest)| rest.find('/').map(|i| &rest[i..])).unwrap_or("");
        Ok(path_and_query
            .strip_prefix(base_path)
            .filter(|_| !base_path.is_empty())
            .unwrap_or(path_and_query)
            .to_string())
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

fn decode<T: DeserializeOwned>(body: &[u8], method: &str, path: &str) -> anyhow::Result<T> {
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

/// The `field` list of a collection answer. A missing or null list is an error unless the
/// answer says the collection is empty (`meta.total` 0, as proto3 JSON leaves out empty lists):
/// an answer that lost its list must never read as "nothing there".
fn list_field<T: DeserializeOwned>(page: &mut Value, field: &str, path: &str) -> anyhow::Result<Vec<T>> {
    match page.get_mut(field).map(Value::take) {
        None | Some(Value::Null) => {
            let total = page.pointer("/meta/total").and_then(Value::as_u64);
            anyhow::ensure!(
                total == Some(0),
                "GET {path}: the answer has no {field} list (and does not say the list is empty); nothing was changed"
            );
            Ok(Vec::new())
        }
        Some(list) => serde_json::from_value::<Vec<T>>(list)
            .with_context(|| format!("GET {path}: the {field} list has an unexpected shape")),
    }
}

/// Which of the paths given to [`Client::get_all_concurrently`] failed (the error's context).
#[derive(Debug)]
pub struct FailedListing {
    pub index: usize,
    pub path: String,
}

impl std::fmt::Display for FailedListing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "cannot list {}", self.path)
    }
}

/// One page of a listing, as [`Client::get_listing_page`] read it.
pub struct ListingPage<T> {
    pub path: String,
    pub items: Vec<T>,
    /// `meta.total`: how many items the whole listing has, when the API says.
    pub total: Option<u64>,
    /// The next page's path (`links.pages.next`), if any.
    pub next: Option<String>,
}

/// The paths of pages 2 to the last of a page-number listing, known from its first page's
/// total and page size; `None` when they cannot be known (page tokens, no total, an odd link),
/// so the listing is followed page by page instead.
fn remaining_pages<T>(first: &ListingPage<T>) -> Option<Vec<String>> {
    let next = first.next.as_deref()?;
    let (base, query) = next.split_once('?')?;
    let pairs: Vec<(&str, &str)> = query.split('&').filter_map(|pair| pair.split_once('=')).collect();
    let value = |key: &str| pairs.iter().find(|(k, _)| *k == key).map(|(_, v)| *v);
    if value("page_token").is_some() || value("page")? != "2" {
        return None;
    }
    let per_page: u64 = value("per_page")?.parse().ok().filter(|n| *n > 0)?;
    let total = first.total?;
    if first.items.len() as u64 != per_page || total <= per_page {
        return None;
    }
    let last = total.div_ceil(per_page);
    if last > MAX_PAGES as u64 {
        return None;
    }
    let others: Vec<String> = pairs.iter().filter(|(k, _)| *k != "page").map(|(k, v)| format!("{k}={v}")).collect();
    Some(
        (2..=last)
            .map(|page| {
                let mut query = vec![format!("page={page}")];
                query.extend(others.iter().cloned());
                format!("{base}?{}", query.join("&"))
            })
            .collect(),
    )
}

fn with_per_page(path: &str) -> String {
    if path.contains("per_page=") {
        path.to_string()
    } else if path.contains('?') {
        format!("{path}&per_page={PER_PAGE}")
    } else {
        format!("{path}?per_page={PER_PAGE}")
    }
}

/// Checks the base URL: https anywhere, plain http only to a loopback address (the simulator),
/// since the token travels in every request.
pub fn checked_base_url(url: &str) -> anyhow::Result<String> {
    let trimmed = url.trim().trim_end_matches('/');
    let uri: ureq::http::Uri = trimmed
        .parse()
        .map_err(|_| Failure::usage(format!("invalid API URL {trimmed:?}: expected https://HOST[:PORT]")))?;
    let scheme = uri.scheme_str().unwrap_or("");
    if uri.host().is_none() || uri.query().is_some() {
        return Err(Failure::usage(format!("invalid API URL {trimmed:?}: expected https://HOST[:PORT]")));
    }
    match scheme {
        "https" => Ok(trimmed.to_string()),
        "http" if is_loopback_url(trimmed) => Ok(trimmed.to_string()),
        "http" => Err(Failure::usage(format!(
            "refusing to send the API token over plain http to {}: use https, or a loopback address for do-sim",
            uri.host().unwrap_or("")
        ))),
        _ => Err(Failure::usage(format!("invalid API URL {trimmed:?}: expected https://HOST[:PORT]"))),
    }
}

pub fn is_loopback_url(url: &str) -> bool {
    let Ok(uri) = url.parse::<ureq::http::Uri>() else { return false };
    let host = uri.host().unwrap_or("").trim_start_matches('[').trim_end_matches(']');
    host == "localhost" || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// A token must be one printable ASCII word: anything else (a space, a byte-order mark, a
/// non-ASCII character) would fail on every request, so it is a usage error, told without the
/// token itself. `what` names where it came from.
pub fn check_token(text: &str, what: &str) -> anyhow::Result<Secret> {
    if text.starts_with('\u{feff}') {
        return Err(Failure::usage(format!("{what} starts with a byte-order mark; save it without one")));
    }
    let token = text.trim_matches(|c: char| c == '\n' || c == '\r' || c == ' ' || c == '\t');
    if token.is_empty() {
        return Err(Failure::usage(format!("{what} is empty")));
    }
    if let Some((at, _)) = token.char_indices().find(|(_, c)| !c.is_ascii_graphic()) {
        return Err(Failure::usage(format!(
            "{what} has a character that is not printable ASCII at position {} (a space, a control or a non-ASCII character); a token is one word",
            at + 1
        )));
    }
    Ok(Secret::new(token.to_string()))
}

/// Percent-encodes one path segment: a repository `team/web` becomes `team%2Fweb`.
/// Unreserved characters and `:` (digests) stay as they are; `.` and `..` are encoded whole.
pub fn segment(raw: &str) -> String {
    if raw.is_empty() || raw.bytes().all(|b| b == b'.') {
        return raw.bytes().map(|b| format!("%{b:02X}")).collect();
    }
    let mut encoded = String::with_capacity(raw.len());
    for byte in raw.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~' | b':') {
            encoded.push(byte as char);
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    encoded
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_segments_are_percent_encoded() {
        assert_eq!(segment("team/web"), "team%2Fweb");
        assert_eq!(segment("sha256:abc"), "sha256:abc");
        assert_eq!(segment("a b?c#d%e"), "a%20b%3Fc%23d%25e");
        assert_eq!(segment(".."), "%2E%2E");
        assert_eq!(segment("v1.2.3"), "v1.2.3");
    }

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
    fn the_token_goes_only_over_https_or_to_loopback() {
        assert!(checked_base_url("https://api.digitalocean.com/").is_ok());
        assert!(checked_base_url("http://127.0.0.1:8080").is_ok());
        assert!(checked_base_url("http://localhost:1").is_ok());
        assert!(checked_base_url("http://[::1]:1").is_ok());
        let error = checked_base_url("http://api.example.com").unwrap_err().to_string();
        assert!(error.contains("refusing"), "{error}");
        assert!(checked_base_url("http://10.0.0.1").is_err());
        assert!(checked_base_url("ftp://x").is_err());
        assert!(checked_base_url("not a url").is_err());
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

    #[test]
    fn secrets_do_not_print() {
        assert_eq!(format!("{:?}", Secret::new("dop_v1_abc".into())), "***");
    }

    #[test]
    fn per_page_is_added_once() {
        assert_eq!(with_per_page("/v2/apps"), "/v2/apps?per_page=200");
        assert_eq!(with_per_page("/v2/x?page=2"), "/v2/x?page=2&per_page=200");
        assert_eq!(with_per_page("/v2/x?per_page=5"), "/v2/x?per_page=5");
    }
}
