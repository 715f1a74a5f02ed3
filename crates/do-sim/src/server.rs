//! The HTTP side of the simulator: routing, auth, rate limits, pagination, fault injection
//! and the request log. Every API answer follows DigitalOcean's OpenAPI spec: envelopes,
//! field names and status codes (GC start 201, deletes 204, create deployment 200).

use std::io::{Read, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};

use crate::state::{
    manifest_json, tier, Fault, FaultKind, LoggedRequest, Outcome, RateLimit, SimError, State, DEFAULT_GC_TYPE,
};

pub struct Shared {
    pub state: Mutex<State>,
    pub server: tiny_http::Server,
    pub stop: AtomicBool,
    pub base_url: String,
}

impl Shared {
    pub fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

pub fn serve(shared: &Shared) {
    while !shared.stop.load(Ordering::Relaxed) {
        match shared.server.recv_timeout(Duration::from_millis(50)) {
            Ok(Some(request)) => handle(shared, request),
            Ok(None) => {}
            Err(_) => break,
        }
    }
}

/// A latency fault: `ms` of waiting, cut short when the simulator stops (so a test may hang a
/// request for a minute to show a tool does not wait it out, and still end at once).
fn pause(shared: &Shared, ms: u64) {
    let until = std::time::Instant::now() + Duration::from_millis(ms);
    while !shared.stop.load(Ordering::Relaxed) {
        let left = until.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() {
            return;
        }
        std::thread::sleep(left.min(Duration::from_millis(20)));
    }
}

type Answer = Result<(u16, Option<Value>), SimError>;

struct Incoming {
    method: String,
    path: String,
    segments: Vec<String>,
    query: Vec<(String, String)>,
    body: Option<Value>,
    body_text: Option<String>,
}

impl Incoming {
    fn query(&self, key: &str) -> Option<&str> {
        self.query.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }
}

fn handle(shared: &Shared, mut request: tiny_http::Request) {
    let method = request.method().as_str().to_ascii_uppercase();
    let url = request.url().to_string();
    let (path, query_text) = url.split_once('?').unwrap_or((url.as_str(), ""));
    let mut raw_body = Vec::new();
    let _ = request.as_reader().take(8 * 1024 * 1024).read_to_end(&mut raw_body);
    let body_text = (!raw_body.is_empty()).then(|| String::from_utf8_lossy(&raw_body).into_owned());
    let body = body_text.as_deref().and_then(|text| serde_json::from_str(text).ok());
    let incoming = Incoming {
        method: method.clone(),
        path: path.to_string(),
        segments: path.split('/').filter(|s| !s.is_empty()).map(percent_decode).collect(),
        query: query_text
            .split('&')
            .filter(|pair| !pair.is_empty())
            .map(|pair| {
                let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
                (percent_decode(key), percent_decode(value))
            })
            .collect(),
        body,
        body_text,
    };
    let authorization = request
        .headers()
        .iter()
        .find(|h| h.field.equiv("Authorization"))
        .map(|h| h.value.as_str().to_string())
        .unwrap_or_default();

    let is_control = incoming.path.starts_with("/_sim/") || incoming.path == "/_sim";
    if !is_control {
        let latency = shared.lock().latency;
        if !latency.is_zero() {
            pause(shared, latency.as_millis() as u64);
        }
    }
    if crate::distribution::is_registry_path(&incoming.path) {
        serve_registry(shared, request, &incoming, &url, &raw_body, &authorization);
        return;
    }
    if let Some(rest) = incoming.path.strip_prefix("/_sim/live/") {
        let (status, headers, body) = crate::live::answer(&mut shared.lock(), rest, Instant::now());
        send(request, status, headers, body.as_bytes());
        return;
    }
    if let Some(rest) = incoming.path.strip_prefix("/_sim/logs/") {
        if let Some(FaultKind::Latency { ms }) = take_fault(&mut shared.lock(), &method, &incoming.path) {
            pause(shared, ms);
        }
        serve_log(shared, request, rest, !authorization.is_empty(), &url);
        return;
    }
    if is_control {
        let answer = control(shared, &incoming);
        respond(request, answer, Vec::new());
        return;
    }

    let now = Instant::now();
    let fault = take_fault(&mut shared.lock(), &method, &incoming.path);
    if let Some(FaultKind::Latency { ms }) = fault {
        pause(shared, ms);
    }
    let mut state = shared.lock();
    let authorized = authorization.strip_prefix("Bearer ").is_some_and(|token| token == state.token);
    let at_ms = now.duration_since(state.started).as_millis() as u64;
    let mut log = LoggedRequest {
        at_ms,
        method: method.clone(),
        url: url.clone(),
        status: 0,
        body: incoming.body_text.clone(),
        authorized,
    };

    if let Some(FaultKind::Body { status, body }) = &fault {
        log.status = *status;
        state.requests.push(log);
        drop(state);
        let headers = vec![("content-type".to_string(), "application/json; charset=utf-8".to_string())];
        send(request, *status, headers, body.to_string().as_bytes());
        return;
    }
    let early = match &fault {
        Some(FaultKind::Status { status, retry_after }) => Some((fault_error(*status), *retry_after)),
        Some(FaultKind::Echo { status }) => {
            let mut error = fault_error(*status);
            error.message = format!("{} (you sent Authorization: {authorization})", error.message);
            Some((error, None))
        }
        Some(FaultKind::Drop) | Some(FaultKind::Malformed) | Some(FaultKind::Truncated) => None,
        _ if !authorized => Some((SimError::new(401, "unauthorized", "Unable to authenticate you"), None)),
        _ => None,
    };
    if let Some((error, retry_after)) = early {
        log.status = error.status;
        state.requests.push(log);
        let headers = rate_headers(&state.rate_limit, &state.request_times, now);
        drop(state);
        let mut extra = headers;
        if let Some(seconds) = retry_after {
            extra.push(("retry-after".into(), seconds.to_string()));
        }
        respond(request, Err(error), extra);
        return;
    }
    if matches!(fault, Some(FaultKind::Drop)) {
        log.status = 0;
        state.requests.push(log);
        drop(state);
        break_connection(request, None);
        return;
    }
    if let Some(limited) = rate_limit(&mut state, now) {
        log.status = 429;
        state.requests.push(log);
        let headers = rate_headers(&state.rate_limit, &state.request_times, now);
        drop(state);
        let mut extra = headers;
        if let Some(seconds) = limited {
            extra.push(("retry-after".into(), seconds.to_string()));
        }
        respond(request, Err(SimError::new(429, "too_many_requests", "API rate limit exceeded.")), extra);
        return;
    }
    state.settle(now);
    let link_base =
        state.link_base.clone().or_else(|| state.public_url.clone()).unwrap_or_else(|| shared.base_url.clone());
    let mut answer = route(&mut state, &incoming, &link_base, now);
    if state.quirks.normalized_specs {
        if let Ok((_, Some(body))) = &mut answer {
            crate::state::normalize_specs(body);
        }
    }
    let headers = rate_headers(&state.rate_limit, &state.request_times, now);
    match fault {
        Some(FaultKind::Malformed) => {
            log.status = 200;
            state.requests.push(log);
            drop(state);
            send(request, 200, headers, b"{\"this is\": not json");
        }
        Some(FaultKind::AnswerAfterApply { status, body, content_type }) => {
            log.status = status;
            state.requests.push(log);
            drop(state);
            let headers = content_type.map(|t| vec![("content-type".to_string(), t)]).unwrap_or_default();
            send(request, status, headers, body.as_bytes());
        }
        Some(FaultKind::Truncated) | Some(FaultKind::DropAfterApply) => {
            log.status = 0;
            state.requests.push(log);
            drop(state);
            let partial = matches!(fault, Some(FaultKind::Truncated)).then(|| match &answer {
                Ok((_, Some(value))) => value.to_string(),
                _ => "{\"id\":\"server_error\"".to_string(),
            });
            break_connection(request, partial);
        }
        _ => {
            log.status = match &answer {
                Ok((status, _)) => *status,
                Err(error) => error.status,
            };
            state.requests.push(log);
            drop(state);
            respond(request, answer, headers);
        }
    }
}

/// A request to the registry host (the OCI distribution API): faults apply as on the API.
fn serve_registry(
    shared: &Shared,
    request: tiny_http::Request,
    incoming: &Incoming,
    url: &str,
    raw_body: &[u8],
    authorization: &str,
) {
    let header = |name: &'static str| {
        request.headers().iter().find(|h| h.field.equiv(name)).map(|h| h.value.as_str().to_string()).unwrap_or_default()
    };
    let (accept, content_type) = (header("Accept"), header("Content-Type"));
    let fault = take_fault(&mut shared.lock(), &incoming.method, &incoming.path);
    match &fault {
        Some(FaultKind::Latency { ms }) => pause(shared, *ms),
        Some(FaultKind::Drop) => return break_connection(request, None),
        _ => {}
    }
    let call = crate::distribution::RegistryCall {
        method: &incoming.method,
        url,
        path: &incoming.path,
        query: &incoming.query,
        authorization,
        accept: &accept,
        content_type: &content_type,
        body: raw_body,
    };
    let answer = crate::distribution::handle(shared, &call, fault.as_ref());
    match fault {
        Some(FaultKind::Malformed) => {
            send(request, 200, Vec::new(), b"{\"this is\": not json");
        }
        Some(FaultKind::Truncated | FaultKind::DropAfterApply) => {
            let partial =
                matches!(fault, Some(FaultKind::Truncated)).then(|| String::from_utf8_lossy(&answer.body).into_owned());
            break_connection(request, partial);
        }
        _ => {
            send(request, answer.status, answer.headers, &answer.body);
        }
    }
}

/// A historic log URL: pre-signed in real life, so it needs no token. `rest` is `APP/DEPLOYMENT/COMPONENT/TYPE`.
fn serve_log(shared: &Shared, request: tiny_http::Request, rest: &str, had_authorization: bool, url: &str) {
    let now = Instant::now();
    let mut state = shared.lock();
    state.log_downloads.push((url.to_string(), had_authorization));
    let parts: Vec<String> = rest.split('/').map(percent_decode).collect();
    let text = match parts.as_slice() {
        [app, deployment, component, log_type] => state
            .apps
            .iter()
            .find(|a| a.id == *app)
            .and_then(|a| a.deployments.iter().find(|d| d.id == *deployment))
            .and_then(|d| d.log(component, log_type, now)),
        _ => None,
    }
    .map(|text| state.extra_log_lines.iter().fold(text, |text, line| format!("{text}{line}\n")));
    drop(state);
    match text {
        Some(text) => send(request, 200, Vec::new(), text.as_bytes()),
        None => send(request, 404, Vec::new(), b"no such log\n"),
    }
}

fn fault_error(status: u16) -> SimError {
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

fn take_fault(state: &mut State, method: &str, path: &str) -> Option<FaultKind> {
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

/// Answers with something that is not a usable HTTP response: a head that does not parse
/// (`partial` None), or a chunked body cut off half way with a broken chunk.
fn break_connection(request: tiny_http::Request, partial: Option<String>) {
    let mut writer = request.into_writer();
    let bytes = match partial {
        None => b"BROKEN\r\n\r\n".to_vec(),
        Some(body) => {
            let half = &body.as_bytes()[..body.len() / 2];
            let mut out =
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
            out.extend_from_slice(format!("{:x}\r\n", half.len()).as_bytes());
            out.extend_from_slice(half);
            out.extend_from_slice(b"\r\nzz-broken\r\n\r\n");
            out
        }
    };
    let _ = writer.write_all(&bytes);
    let _ = writer.flush();
}

fn window(rate_limit: &RateLimit, seconds: f64) -> Duration {
    Duration::from_secs_f64((seconds * rate_limit.window_scale).max(0.001))
}

/// Counts the request against the sliding windows. `Some(retry_after)` when refused:
/// the burst limit gives a `retry-after`, the hourly limit does not.
fn rate_limit(state: &mut State, now: Instant) -> Option<Option<u64>> {
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

fn rate_headers(
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

/// Writes a whole response and asks the client to close the connection. tiny_http gives each
/// connection a pooled thread until the client closes it, and its pool can leave a new
/// connection waiting behind idle keep-alive ones (for as long as they stay idle): with one
/// request per connection, a thread is always free again within a request.
fn send(request: tiny_http::Request, status: u16, headers: Vec<(String, String)>, body: &[u8]) {
    let head_only = request.method() == &tiny_http::Method::Head;
    let reason = tiny_http::StatusCode(status).default_reason_phrase();
    let mut head = format!("HTTP/1.1 {status} {reason}\r\nConnection: close\r\nContent-Length: {}\r\n", body.len());
    for (name, value) in headers {
        if !name.eq_ignore_ascii_case("content-length") && !name.eq_ignore_ascii_case("connection") {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
    }
    head.push_str("\r\n");
    let mut writer = request.into_writer();
    let _ = writer.write_all(head.as_bytes());
    if !head_only {
        let _ = writer.write_all(body);
    }
    let _ = writer.flush();
}

fn respond(request: tiny_http::Request, answer: Answer, headers: Vec<(String, String)>) {
    let request_id =
        format!("sim-{:x}", SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0));
    let (status, body) = match answer {
        Ok((status, body)) => (status, body.map(|b| b.to_string()).unwrap_or_default()),
        Err(error) => {
            (error.status, json!({"id": error.id, "message": error.message, "request_id": request_id}).to_string())
        }
    };
    let mut headers = headers;
    headers.push(("x-request-id".into(), request_id));
    if !body.is_empty() {
        headers.push(("content-type".into(), "application/json; charset=utf-8".into()));
    }
    send(request, status, headers, body.as_bytes());
}

pub(crate) fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let hex = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let (Some(high), Some(low)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                out.push(high * 16 + low);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The page a page-number listing asks for: which items (`skip`, `take`) and the links.
struct PageWindow {
    skip: usize,
    take: usize,
    links: Value,
}

/// Page-number pagination: `page` from 1, `per_page` 1 to 200 (default 20).
fn page_window(total: usize, incoming: &Incoming, base_url: &str) -> Result<PageWindow, SimError> {
    let per_page = number_param(incoming, "per_page", 20)?;
    let page = number_param(incoming, "page", 1)?;
    if !(1..=200).contains(&per_page) || page < 1 {
        return Err(SimError::bad_request("per_page must be between 1 and 200 and page at least 1"));
    }
    let last = total.div_ceil(per_page).max(1);
    let link = |n: usize| format!("{base_url}{}?page={n}&per_page={per_page}", incoming.path);
    let mut pages = serde_json::Map::new();
    if page > 1 {
        pages.insert("first".into(), json!(link(1)));
        pages.insert("prev".into(), json!(link(page - 1)));
    }
    if page < last {
        pages.insert("next".into(), json!(link(page + 1)));
        pages.insert("last".into(), json!(link(last)));
    }
    Ok(PageWindow { skip: (page - 1).saturating_mul(per_page), take: per_page, links: json!({"pages": pages}) })
}

fn paginate(items: Vec<Value>, incoming: &Incoming, base_url: &str) -> Result<(Vec<Value>, Value, usize), SimError> {
    let total = items.len();
    let window = page_window(total, incoming, base_url)?;
    let slice = items.into_iter().skip(window.skip).take(window.take).collect();
    Ok((slice, window.links, total))
}

fn number_param(incoming: &Incoming, key: &str, default: usize) -> Result<usize, SimError> {
    match incoming.query(key) {
        None => Ok(default),
        Some(text) => text.parse().map_err(|_| SimError::bad_request(format!("{key} must be a positive integer"))),
    }
}

fn listing(key: &str, items: Vec<Value>, incoming: &Incoming, base_url: &str) -> Answer {
    let total = items.len();
    listing_page(key, total, items.into_iter(), |item| item, incoming, base_url)
}

/// One page of a listing of `total` items: only the page's items are turned into JSON, so a
/// page costs the same whatever the listing's length (skipping is a walk, not a copy).
fn listing_page<T>(
    key: &str,
    total: usize,
    items: impl Iterator<Item = T>,
    to_json: impl Fn(T) -> Value,
    incoming: &Incoming,
    base_url: &str,
) -> Answer {
    let window = page_window(total, incoming, base_url)?;
    let page: Vec<Value> = items.skip(window.skip).take(window.take).map(to_json).collect();
    let mut body = json!({ key: page, "meta": {"total": total} });
    if !window.links["pages"].as_object().is_some_and(|p| p.is_empty()) {
        body["links"] = window.links;
    }
    Ok((200, Some(body)))
}

fn ok(value: Value) -> Answer {
    Ok((200, Some(value)))
}

fn route(state: &mut State, incoming: &Incoming, base_url: &str, now: Instant) -> Answer {
    let segments: Vec<&str> = incoming.segments.iter().map(String::as_str).collect();
    let method = incoming.method.as_str();
    match (method, segments.as_slice()) {
        ("GET", ["v2", "account"]) => ok(json!({"account": {
            "droplet_limit": 25, "floating_ip_limit": 5, "email": "sammy@example.com", "name": "Sammy the Simulator",
            "uuid": "b6fr89dbf6d9156cace5f3c78dc9851d957381ef", "email_verified": true, "status": "active", "status_message": ""}})),
        ("GET", ["v2", "registries"]) => {
            let registries: Vec<Value> = state.registries.values().map(|r| registry_json(r, true)).collect();
            ok(json!({ "registries": registries }))
        }
        ("GET", ["v2", "registry"]) => match state.registries.len() {
            1 => ok(json!({"registry": registry_json(state.registries.values().next().expect("one registry"), true)})),
            0 => Err(SimError::not_found()),
            _ => Err(SimError::new(
                412,
                "precondition_failed",
                "this account has more than one registry; use /v2/registries",
            )),
        },
        ("GET", ["v2", "registries", "subscription"]) | ("GET", ["v2", "registry", "subscription"]) => {
            let registry = state.registries.values().next().ok_or_else(SimError::not_found)?;
            ok(json!({"subscription": subscription_json(registry)}))
        }
        (_, ["v2", "registries" | "registry", registry, rest @ ..]) => {
            registry_route(state, incoming, base_url, now, registry, rest)
        }
        (_, ["v2", "apps", rest @ ..]) => apps_route(state, incoming, base_url, now, rest),
        _ => Err(SimError::not_found()),
    }
}

fn registry_json(registry: &crate::state::Registry, with_subscription: bool) -> Value {
    let mut value = json!({
        "name": registry.name,
        "created_at": registry.created_at,
        "region": registry.region,
        "storage_usage_bytes": registry.storage_usage_bytes(),
        "storage_usage_bytes_updated_at": crate::state::now_rfc3339(),
    });
    if with_subscription {
        value["subscription"] = subscription_json(registry);
    }
    value
}

fn subscription_json(registry: &crate::state::Registry) -> Value {
    json!({"tier": tier(&registry.tier), "created_at": registry.created_at, "updated_at": registry.created_at})
}

fn registry_route(
    state: &mut State,
    incoming: &Incoming,
    base_url: &str,
    now: Instant,
    name: &str,
    rest: &[&str],
) -> Answer {
    let registry = state.registries.get_mut(name).ok_or_else(SimError::not_found)?;
    match (incoming.method.as_str(), rest) {
        ("GET", []) => ok(json!({"registry": registry_json(registry, false)})),
        ("GET", ["repositoriesV2"]) => {
            let items: Vec<Value> = registry
                .repositories
                .iter()
                .map(|(repo_name, repository)| {
                    json!({
                        "registry_name": registry.name,
                        "name": repo_name,
                        "tag_count": repository.tag_count(),
                        "manifest_count": repository.len(),
                        "latest_manifest": repository.newest().map(|m| manifest_json(&registry.name, repo_name, m)),
                    })
                })
                .collect();
            token_listing(items, incoming, base_url)
        }
        ("GET", ["repositories", repository, "tags"]) => {
            let repo = registry.repositories.get(*repository).ok_or_else(SimError::not_found)?;
            let name = registry.name.as_str();
            let tags = repo.manifests().rev().flat_map(|m| m.tags.iter().map(move |tag| (m, tag)));
            let to_json = |(m, tag): (&crate::state::Manifest, &String)| {
                json!({"registry_name": name, "repository": repository, "tag": tag, "manifest_digest": m.digest,
                       "compressed_size_bytes": m.compressed_size(), "size_bytes": m.size_bytes, "updated_at": m.updated_at})
            };
            listing_page("tags", repo.tag_count(), tags, to_json, incoming, base_url)
        }
        ("GET", ["repositories", repository, "digests"]) => {
            let repo = registry.repositories.get(*repository).ok_or_else(SimError::not_found)?;
            let name = registry.name.as_str();
            let to_json = |m: &crate::state::Manifest| manifest_json(name, repository, m);
            if registry.hide_index_children {
                let hidden = repo.index_children();
                let shown: Vec<_> = repo
                    .manifests()
                    .rev()
                    .filter(|m| !(m.tags.is_empty() && hidden.contains(m.digest.as_str())))
                    .collect();
                listing_page("manifests", shown.len(), shown.into_iter(), to_json, incoming, base_url)
            } else {
                listing_page("manifests", repo.len(), repo.manifests().rev(), to_json, incoming, base_url)
            }
        }
        ("DELETE", ["repositories", repository, "tags", tag]) => {
            registry.check_writable(now)?;
            let repo = registry.repositories.get_mut(*repository).ok_or_else(SimError::not_found)?;
            if !repo.untag(tag) {
                return Err(SimError::not_found());
            }
            Ok((204, None))
        }
        ("DELETE", ["repositories", repository, "digests", digest]) => {
            registry.check_writable(now)?;
            let repo = registry.repositories.get_mut(*repository).ok_or_else(SimError::not_found)?;
            repo.remove(digest).ok_or_else(SimError::not_found)?;
            Ok((204, None))
        }
        ("DELETE", ["repositories", repository]) => {
            registry.check_writable(now)?;
            registry.repositories.remove(*repository).ok_or_else(SimError::not_found)?;
            Ok((204, None))
        }
        ("GET", ["docker-credentials"]) => {
            // Registry credentials of their own, never the API token itself.
            let read_write = incoming.query("read_write") == Some("true");
            let expiry = match incoming.query("expiry_seconds") {
                None => None,
                Some(text) => Some(Duration::from_secs(
                    text.parse().map_err(|_| SimError::bad_request("expiry_seconds must be a whole number"))?,
                )),
            };
            let name = name.to_string();
            ok(crate::distribution::issue_credentials(state, &name, read_write, expiry, now))
        }
        ("GET", ["garbage-collection"]) => {
            let active = registry.active_gc(now).ok_or_else(SimError::not_found)?;
            ok(json!({"garbage_collection": active.to_json(name, now)}))
        }
        ("GET", ["garbage-collections"]) => {
            let items = registry.gcs.iter().rev().map(|gc| gc.to_json(name, now)).collect();
            // The spec declares only the list here: no meta, no links.
            let (page, _, _) = paginate(items, incoming, base_url)?;
            ok(json!({ "garbage_collections": page }))
        }
        ("POST", ["garbage-collection"]) => {
            let gc_type = match &incoming.body {
                None if incoming.body_text.is_some() => {
                    return Err(SimError::bad_request("the body is not valid JSON"))
                }
                None => DEFAULT_GC_TYPE.to_string(),
                Some(body) => match body.get("type") {
                    None | Some(Value::Null) => DEFAULT_GC_TYPE.to_string(),
                    Some(Value::String(t))
                        if [
                            "untagged manifests only",
                            "unreferenced blobs only",
                            "untagged manifests and unreferenced blobs",
                        ]
                        .contains(&t.as_str()) =>
                    {
                        t.clone()
                    }
                    Some(other) => {
                        return Err(SimError::bad_request(format!("invalid garbage collection type {other}")))
                    }
                },
            };
            let gc = state.start_gc(name, &gc_type, None, "succeeded", now)?;
            Ok((201, Some(json!({"garbage_collection": gc}))))
        }
        ("PUT", ["garbage-collection", uuid]) => {
            let cancel = incoming.body.as_ref().and_then(|b| b.get("cancel")).and_then(Value::as_bool);
            if cancel != Some(true) {
                return Err(SimError::bad_request("the body must be {\"cancel\": true}"));
            }
            let gc = registry.gcs.iter_mut().find(|gc| gc.uuid == *uuid).ok_or_else(SimError::not_found)?;
            if gc.is_active(now) && gc.cancel_requested.is_none() {
                gc.cancel_requested = Some(now);
                gc.updated_at = crate::state::now_rfc3339();
            }
            ok(json!({"garbage_collection": gc.to_json(name, now)}))
        }
        _ => Err(SimError::not_found()),
    }
}

/// Page-token pagination (repositoriesV2): the token is opaque; `page` is ignored when a token is given.
fn token_listing(items: Vec<Value>, incoming: &Incoming, base_url: &str) -> Answer {
    let per_page = number_param(incoming, "per_page", 20)?;
    if !(1..=200).contains(&per_page) {
        return Err(SimError::bad_request("per_page must be between 1 and 200"));
    }
    let offset = match incoming.query("page_token") {
        Some(token) => token
            .strip_prefix("off-")
            .and_then(|hex| usize::from_str_radix(hex, 16).ok())
            .filter(|offset| *offset <= items.len())
            .ok_or_else(|| SimError::bad_request("invalid page_token"))?,
        None => (number_param(incoming, "page", 1)?.max(1) - 1) * per_page,
    };
    let total = items.len();
    let last = total.div_ceil(per_page).max(1);
    let page_number = offset / per_page + 1;
    let mut body = json!({
        "repositories": items.into_iter().skip(offset).take(per_page).collect::<Vec<_>>(),
        "meta": {"total": total},
    });
    if offset + per_page < total {
        let path = &incoming.path;
        body["links"] = json!({"pages": {
            "next": format!("{base_url}{path}?page={}&page_token=off-{:x}&per_page={per_page}", page_number + 1, offset + per_page),
            "last": format!("{base_url}{path}?page={last}&per_page={per_page}"),
        }});
    }
    Ok((200, Some(body)))
}

/// The app's live URL: served by the simulator itself, answering per its ACTIVE deployment.
fn live_url(base_url: &str, app: &crate::state::App) -> String {
    format!("{base_url}/_sim/live/{}", app.spec.get("name").and_then(Value::as_str).unwrap_or("app"))
}

fn apps_route(state: &mut State, incoming: &Incoming, base_url: &str, now: Instant, rest: &[&str]) -> Answer {
    match (incoming.method.as_str(), rest) {
        ("GET", []) => {
            let apps = state.apps.iter().map(|app| app.to_json(now, &live_url(base_url, app))).collect();
            listing("apps", apps, incoming, base_url)
        }
        ("POST", []) => {
            let spec = spec_in_body(incoming)?;
            check_spec(&spec)?;
            check_name_free(state, &spec, None)?;
            let id = state.add_app(None, crate::appspec::as_stored(&spec), false, now);
            let index = state.apps.iter().position(|app| app.id == id).expect("just added");
            state.apps[index].created_at = crate::state::now_rfc3339();
            let deployment = state.create_deployment(index, "initial deployment", now);
            ok(json!({ "app": app_with_pending(state, index, deployment, now, base_url) }))
        }
        ("POST", ["propose"]) => {
            let spec = spec_in_body(incoming)?;
            check_spec(&spec)?;
            let app_id = incoming.body.as_ref().and_then(|b| b.get("app_id")).and_then(Value::as_str);
            if let Some(app_id) = app_id {
                if !state.apps.iter().any(|app| app.id == app_id) {
                    return Err(SimError::not_found());
                }
            }
            let available = check_name_free(state, &spec, app_id).is_ok();
            ok(crate::appspec::proposal(&spec, available))
        }
        (method, [app_id, rest @ ..]) => {
            let index = state.apps.iter().position(|app| app.id == *app_id).ok_or_else(SimError::not_found)?;
            match (method, rest) {
                ("GET", []) => {
                    ok(json!({"app": state.apps[index].to_json(now, &live_url(base_url, &state.apps[index]))}))
                }
                ("PUT", []) | ("POST", ["deployments"]) if state.apps[index].pinned.is_some() => Err(SimError::new(
                    409,
                    "conflict",
                    "app_pinned: the app is pinned to a rollback; commit or revert it first",
                )),
                ("DELETE", []) => {
                    let app = state.apps.remove(index);
                    ok(json!({ "id": app.id }))
                }
                ("PUT", []) => {
                    let spec = spec_in_body(incoming)?;
                    check_spec(&spec)?;
                    let id = state.apps[index].id.clone();
                    check_name_free(state, &spec, Some(&id))?;
                    state.apps[index].spec = crate::appspec::as_stored(&spec);
                    let deployment = state.create_deployment(index, "app spec updated", now);
                    ok(json!({ "app": app_with_pending(state, index, deployment, now, base_url) }))
                }
                ("GET", ["deployments"]) => {
                    let app = &state.apps[index];
                    let items = app.deployments.iter().rev().map(|d| d.to_json(now)).collect();
                    listing("deployments", items, incoming, base_url)
                }
                ("POST", ["deployments"]) => {
                    let Some(body) = incoming.body.as_ref().filter(|b| b.is_object()) else {
                        return Err(SimError::new(422, "unprocessable_entity", "Body parameter is required"));
                    };
                    let cause = if body.get("force_build").and_then(Value::as_bool) == Some(true) {
                        "manual (force rebuild)"
                    } else {
                        "manual"
                    };
                    ok(json!({"deployment": state.create_deployment(index, cause, now)}))
                }
                ("GET", ["deployments", deployment_id]) => {
                    let deployment = state.apps[index]
                        .deployments
                        .iter()
                        .find(|d| d.id == *deployment_id)
                        .ok_or_else(SimError::not_found)?;
                    ok(json!({"deployment": deployment.to_json(now)}))
                }
                ("GET", ["deployments", deployment_id, "components", component, "logs"]) => {
                    deployment_logs(state, incoming, base_url, now, index, deployment_id, Some(component))
                }
                ("GET", ["deployments", deployment_id, "logs"]) => {
                    deployment_logs(state, incoming, base_url, now, index, deployment_id, None)
                }
                ("POST", ["rollback", "validate"]) => {
                    let target = rollback_target(state, index, incoming)?;
                    match target {
                        Ok(_) => ok(json!({"valid": true, "warnings": []})),
                        Err((code, message)) => {
                            ok(json!({"valid": false, "error": {"code": code, "message": message, "components": []}}))
                        }
                    }
                }
                ("POST", ["rollback"]) => {
                    let target = rollback_target(state, index, incoming)?
                        .map_err(|(code, message)| SimError::new(400, "bad_request", format!("{code}: {message}")))?;
                    let skip_pin =
                        incoming.body.as_ref().and_then(|b| b.get("skip_pin")).and_then(Value::as_bool) == Some(true);
                    let deployment = state.create_deployment_of(index, "manual rollback", Some(target), now);
                    if !skip_pin {
                        state.apps[index].pinned = Some(deployment["id"].as_str().unwrap_or_default().to_string());
                    }
                    ok(json!({ "deployment": deployment }))
                }
                ("POST", ["rollback", "commit"]) => {
                    state.apps[index].pinned = None;
                    Ok((200, None))
                }
                ("POST", ["rollback", "revert"]) => {
                    if state.apps[index].pinned.take().is_none() {
                        return Err(SimError::new(400, "bad_request", "the app is not pinned by a rollback"));
                    }
                    ok(json!({"deployment": state.create_deployment(index, "rollback reverted", now)}))
                }
                ("POST", ["deployments", deployment_id, "cancel"]) => {
                    let deployment = state.apps[index]
                        .deployments
                        .iter_mut()
                        .find(|d| d.id == *deployment_id)
                        .ok_or_else(SimError::not_found)?;
                    if deployment.is_terminal(now) {
                        return Err(SimError::new(400, "bad_request", "the deployment has already ended"));
                    }
                    deployment.settled = Some(("CANCELED".into(), crate::state::now_rfc3339()));
                    ok(json!({"deployment": deployment.to_json(now)}))
                }
                _ => Err(SimError::not_found()),
            }
        }
        _ => Err(SimError::not_found()),
    }
}

fn deployment_logs(
    state: &State,
    incoming: &Incoming,
    base_url: &str,
    now: Instant,
    app_index: usize,
    deployment_id: &str,
    component: Option<&str>,
) -> Answer {
    let app = &state.apps[app_index];
    let deployment = app.deployments.iter().find(|d| d.id == deployment_id).ok_or_else(SimError::not_found)?;
    let log_type = incoming.query("type").ok_or_else(|| SimError::bad_request("type is required"))?;
    if !["UNSPECIFIED", "BUILD", "DEPLOY", "RUN", "RUN_RESTARTED", "AUTOSCALE_EVENT"].contains(&log_type) {
        return Err(SimError::bad_request(format!("invalid log type {log_type:?}")));
    }
    let components = match component {
        Some(name) if crate::state::component_names(&deployment.spec).iter().any(|c| c == name) => {
            vec![name.to_string()]
        }
        Some(_) => return Err(SimError::not_found()),
        None => crate::state::component_names(&deployment.spec),
    };
    let urls: Vec<String> = components
        .iter()
        .filter(|c| deployment.log(c, log_type, now).is_some())
        .map(|c| format!("{base_url}/_sim/logs/{}/{}/{c}/{log_type}?X-Sim-Signature=presigned", app.id, deployment.id))
        .collect();
    if urls.is_empty() {
        // What App Platform answers for a phase the deployment never reached.
        return Err(SimError::bad_request("the deployment has no logs of this type yet"));
    }
    ok(json!({"live_url": "", "historic_urls": urls}))
}

/// The deployment a rollback request names, if it can be rolled back to.
#[allow(clippy::type_complexity)]
fn rollback_target(
    state: &State,
    app_index: usize,
    incoming: &Incoming,
) -> Result<Result<usize, (&'static str, String)>, SimError> {
    let target_id = incoming
        .body
        .as_ref()
        .and_then(|b| b.get("deployment_id"))
        .and_then(Value::as_str)
        .ok_or_else(|| SimError::bad_request("deployment_id is required"))?;
    let app = &state.apps[app_index];
    if app.pinned.is_some() {
        return Ok(Err(("app_pinned", "the app is pinned to a rollback already".into())));
    }
    let Some(index) = app.deployments.iter().position(|d| d.id == target_id) else {
        return Err(SimError::not_found());
    };
    if !app.deployments[index].was_active {
        return Ok(Err(("incompatible_result", "the deployment never became active".into())));
    }
    Ok(Ok(index))
}

/// App names are unique: a 409 when an app other than `except` (an id) has the spec's name.
fn check_name_free(state: &State, spec: &Value, except: Option<&str>) -> Result<(), SimError> {
    let name = spec.get("name").and_then(Value::as_str);
    let taken = state
        .apps
        .iter()
        .any(|app| app.spec.get("name").and_then(Value::as_str) == name && Some(app.id.as_str()) != except);
    if taken {
        return Err(SimError::new(409, "conflict", format!("an app named {:?} already exists", name.unwrap_or(""))));
    }
    Ok(())
}

/// The app as create and update answer it: with the deployment they started as
/// `pending_deployment`, unless the live API's way (no such field) is asked for.
fn app_with_pending(state: &State, index: usize, deployment: Value, now: Instant, base_url: &str) -> Value {
    let app = &state.apps[index];
    let mut shown = app.to_json(now, &live_url(base_url, app));
    if !state.quirks.update_without_pending {
        shown["pending_deployment"] = deployment;
    }
    shown
}

/// `{"spec": {...}}` from the request body.
fn spec_in_body(incoming: &Incoming) -> Result<Value, SimError> {
    incoming
        .body
        .as_ref()
        .and_then(|b| b.get("spec"))
        .cloned()
        .ok_or_else(|| SimError::new(400, "bad_request", "the body must be {\"spec\": {...}}"))
}

/// The checks App Platform makes on a spec: every problem found, one per line.
fn check_spec(spec: &Value) -> Result<(), SimError> {
    let problems = crate::appspec::problems(spec);
    if problems.is_empty() {
        Ok(())
    } else {
        Err(SimError::new(400, "bad_request", problems.join("\n")))
    }
}

fn control(shared: &Shared, incoming: &Incoming) -> Answer {
    let now = Instant::now();
    let mut state = shared.lock();
    let segments: Vec<&str> = incoming.segments.iter().map(String::as_str).collect();
    let body = incoming.body.clone().unwrap_or(Value::Null);
    let first_registry = || state.registries.keys().next().cloned().unwrap_or_default();
    match (incoming.method.as_str(), &segments[1..]) {
        ("GET", ["state"]) => ok(crate::snapshot(&mut state, now)),
        ("GET", ["requests"]) => ok(json!({"requests": state.requests})),
        ("GET", ["registry-requests"]) => ok(json!({"requests": state.registry_requests})),
        ("DELETE", ["requests"]) => {
            state.requests.clear();
            Ok((204, None))
        }
        ("POST", ["faults"]) => {
            let faults: Vec<Fault> = match body {
                Value::Array(_) => serde_json::from_value(body),
                other => serde_json::from_value(other).map(|fault| vec![fault]),
            }
            .map_err(|e| SimError::bad_request(format!("invalid fault: {e}")))?;
            state.faults.extend(faults);
            Ok((204, None))
        }
        ("DELETE", ["faults"]) => {
            state.faults.clear();
            Ok((204, None))
        }
        ("PUT", ["latency"]) => {
            let ms = body.get("ms").and_then(Value::as_u64).ok_or_else(|| SimError::bad_request("give {\"ms\": N}"))?;
            state.latency = Duration::from_millis(ms);
            ok(json!({"latency_ms": ms}))
        }
        ("PUT", ["rate-limit"]) => {
            state.rate_limit =
                serde_json::from_value(body).map_err(|e| SimError::bad_request(format!("invalid rate limit: {e}")))?;
            state.request_times.clear();
            Ok((204, None))
        }
        ("POST", ["push"]) => {
            let registry =
                body.get("registry").and_then(Value::as_str).map(str::to_string).unwrap_or_else(first_registry);
            let repository = body
                .get("repository")
                .and_then(Value::as_str)
                .ok_or_else(|| SimError::bad_request("repository is required"))?;
            if let Some((kind, of)) = crate::artifacts::asked(&body)? {
                let push = crate::artifacts::ArtifactPush {
                    registry,
                    repository: repository.to_string(),
                    of,
                    kind,
                    fallback_tag: body.get("fallback_tag").and_then(Value::as_bool).unwrap_or(false),
                };
                let manifest = crate::artifacts::push(&mut state, &push, now)?;
                return Ok((201, Some(json!({"manifest": manifest}))));
            }
            let tag =
                body.get("tag").and_then(Value::as_str).ok_or_else(|| SimError::bad_request("tag is required"))?;
            let size = body.get("size_bytes").and_then(Value::as_u64).unwrap_or(20 * 1024 * 1024);
            let platforms: Vec<String> = body
                .get("platforms")
                .and_then(Value::as_array)
                .map(|list| list.iter().filter_map(Value::as_str).map(str::to_string).collect())
                .unwrap_or_default();
            let labels = body.get("labels").cloned().unwrap_or(Value::Null);
            if !(labels.is_null() || labels.as_object().is_some_and(|l| l.values().all(Value::is_string))) {
                return Err(SimError::bad_request("labels must be an object of strings"));
            }
            let manifest = if platforms.is_empty() {
                state.push(&registry, repository, tag, size, &labels, now)?
            } else {
                let push = crate::state::IndexPush {
                    registry,
                    repository: repository.to_string(),
                    tag: tag.to_string(),
                    platforms,
                    attestations: body.get("attestations").and_then(Value::as_bool).unwrap_or(true),
                    size_bytes: size,
                    labels,
                };
                state.push_index(&push, now)?
            };
            Ok((201, Some(json!({"manifest": manifest}))))
        }
        ("PUT", ["quirks"]) => {
            state.quirks =
                serde_json::from_value(body).map_err(|e| SimError::bad_request(format!("invalid quirks: {e}")))?;
            Ok((204, None))
        }
        ("PUT", ["registry-options"]) => {
            let registry =
                body.get("registry").and_then(Value::as_str).map(str::to_string).unwrap_or_else(first_registry);
            let registry = state.registry_mut(&registry)?;
            if let Some(on) = body.get("referrers_api").and_then(Value::as_bool) {
                registry.referrers_api = on;
            }
            if let Some(hide) = body.get("hide_index_children").and_then(Value::as_bool) {
                registry.hide_index_children = hide;
            }
            if let Some(keeps) = body.get("gc_keeps_index_children").and_then(Value::as_bool) {
                registry.gc_keeps_index_children = keeps;
            }
            Ok((204, None))
        }
        ("POST", ["gc"]) => {
            let registry =
                body.get("registry").and_then(Value::as_str).map(str::to_string).unwrap_or_else(first_registry);
            let gc_type = body.get("type").and_then(Value::as_str).unwrap_or(DEFAULT_GC_TYPE).to_string();
            let final_status = body.get("final_status").and_then(Value::as_str).unwrap_or("succeeded").to_string();
            let plan = body.get("plan").and_then(Value::as_array).map(|steps| {
                steps
                    .iter()
                    .map(|step| {
                        let status = step.get("status").and_then(Value::as_str).unwrap_or("requested").to_string();
                        (status, Duration::from_millis(step.get("ms").and_then(Value::as_u64).unwrap_or(0)))
                    })
                    .collect()
            });
            let gc = state.start_gc(&registry, &gc_type, plan, &final_status, now)?;
            Ok((201, Some(json!({"garbage_collection": gc}))))
        }
        ("POST", ["apps", app, "next-deployment"]) => {
            let index = state.app_index(app).ok_or_else(SimError::not_found)?;
            let outcome: Outcome = serde_json::from_value(body.get("outcome").cloned().unwrap_or(json!("success")))
                .map_err(|e| SimError::bad_request(format!("invalid outcome: {e}")))?;
            state.apps[index].next_outcome = outcome;
            state.apps[index].next_phase_duration =
                body.get("phase_ms").and_then(Value::as_u64).map(Duration::from_millis);
            if let Some(live) = body.get("live") {
                state.apps[index].next_live = serde_json::from_value(live.clone())
                    .map_err(|e| SimError::bad_request(format!("invalid live scenario: {e}")))?;
            }
            Ok((204, None))
        }
        _ => Err(SimError::not_found()),
    }
}
