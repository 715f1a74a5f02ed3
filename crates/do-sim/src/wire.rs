//! The simulator's HTTP plumbing: the shared state behind the server, a request as the
//! routes see it, and sending answers (or breaking the connection, for fault tests).

use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};

pub(crate) use crate::http1::Request;
use crate::state::{SimError, State};

pub struct Shared {
    pub state: Mutex<State>,
    pub stop: AtomicBool,
    pub base_url: String,
    /// TCP connections accepted so far (requests on a kept-alive connection do not count).
    pub connections: AtomicU64,
}

impl Shared {
    pub fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// A latency fault: `ms` of waiting, cut short when the simulator stops (so a test may hang a
/// request for a minute to show a tool does not wait it out, and still end at once).
pub(crate) fn pause(shared: &Shared, ms: u64) {
    let until = std::time::Instant::now() + Duration::from_millis(ms);
    while !shared.stop.load(Ordering::Relaxed) {
        let left = until.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() {
            return;
        }
        std::thread::sleep(left.min(Duration::from_millis(20)));
    }
}

pub(crate) type Answer = Result<(u16, Option<Value>), SimError>;

pub(crate) struct Incoming {
    pub(crate) method: String,
    pub(crate) path: String,
    pub(crate) segments: Vec<String>,
    pub(crate) query: Vec<(String, String)>,
    pub(crate) body: Option<Value>,
    pub(crate) body_text: Option<String>,
}

impl Incoming {
    pub(crate) fn query(&self, key: &str) -> Option<&str> {
        self.query.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }
}

/// Answers with something that is not a usable HTTP response: a head that does not parse
/// (`partial` None), or a chunked body cut off half way with a broken chunk.
pub(crate) fn break_connection(request: Request, partial: Option<String>) {
    let mut writer = request.into_writer(true);
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

/// Writes a whole response; the connection stays open for the next request unless the client
/// asked to close it.
pub(crate) fn send(request: Request, status: u16, headers: Vec<(String, String)>, body: &[u8]) {
    let head_only = request.method() == "HEAD";
    let reason = reason_phrase(status);
    let connection = if request.closes() { "close" } else { "keep-alive" };
    let mut head =
        format!("HTTP/1.1 {status} {reason}\r\nConnection: {connection}\r\nContent-Length: {}\r\n", body.len());
    for (name, value) in headers {
        if !name.eq_ignore_ascii_case("content-length") && !name.eq_ignore_ascii_case("connection") {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
    }
    head.push_str("\r\n");
    let close = request.closes();
    let mut writer = request.into_writer(close);
    let mut bytes = head.into_bytes();
    if !head_only {
        bytes.extend_from_slice(body);
    }
    if writer.write_all(&bytes).and_then(|()| writer.flush()).is_err() {
        let _ = writer.shutdown(std::net::Shutdown::Both);
    }
}

fn reason_phrase(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        204 => "No Content",
        301 => "Moved Permanently",
        302 => "Found",
        303 => "See Other",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        409 => "Conflict",
        412 => "Precondition Failed",
        413 => "Payload Too Large",
        422 => "Unprocessable Entity",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Status",
    }
}

pub(crate) fn respond(request: Request, answer: Answer, headers: Vec<(String, String)>) {
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

pub(crate) fn ok(value: Value) -> Answer {
    Ok((200, Some(value)))
}
