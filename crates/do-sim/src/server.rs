//! The HTTP side of the simulator: routing, auth, rate limits, pagination, fault injection
//! and the request log. Every API answer follows DigitalOcean's OpenAPI spec: envelopes,
//! field names and status codes (GC start 201, deletes 204, create deployment 200).

use std::time::Instant;

use serde_json::{json, Value};

use crate::apps_api::*;
use crate::basics::percent_decode;
use crate::control::*;
use crate::limits::*;
use crate::registry_api::*;
use crate::state::{FaultKind, LoggedRequest, SimError, State};
pub use crate::wire::*;

pub(crate) fn handle(shared: &Shared, mut request: Request) {
    let method = request.method().to_string();
    let url = request.url().to_string();
    let (path, query_text) = url.split_once('?').unwrap_or((url.as_str(), ""));
    let raw_body = request.take_body();
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
    let authorization = request.header("Authorization").unwrap_or_default().to_string();

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
        // Taken first: a guard in the `if let` itself would hold the state through the pause,
        // and every other request would wait it out too.
        let fault = take_fault(&mut shared.lock(), &method, &incoming.path);
        if let Some(FaultKind::Latency { ms }) = fault {
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
    request: Request,
    incoming: &Incoming,
    url: &str,
    raw_body: &[u8],
    authorization: &str,
) {
    let header = |name: &'static str| request.header(name).unwrap_or_default().to_string();
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
fn serve_log(shared: &Shared, request: Request, rest: &str, had_authorization: bool, url: &str) {
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
