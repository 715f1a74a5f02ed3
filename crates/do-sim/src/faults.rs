//! What tests inject and read back: faults, rate limits, and the logs of requests to the API
//! and to the registry host.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// One API request as the simulator saw it (control requests are not logged).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct LoggedRequest {
    /// Milliseconds since the simulator started.
    pub at_ms: u64,
    pub method: String,
    /// The raw request target, percent-encoding preserved.
    pub url: String,
    pub status: u16,
    pub body: Option<String>,
    /// Whether the request carried the right token.
    pub authorized: bool,
}

impl LoggedRequest {
    pub fn is_mutating(&self) -> bool {
        self.method != "GET" && self.method != "HEAD"
    }
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum FaultKind {
    /// Answer with this status and DigitalOcean's error body.
    Status {
        status: u16,
        #[serde(default)]
        retry_after: Option<u64>,
    },
    /// Break the connection without a usable response.
    #[default]
    Drop,
    /// Answer 200 with a body that is not JSON.
    Malformed,
    /// Start a 200 answer and cut it off half way through the body.
    Truncated,
    /// Wait this long, then answer normally.
    Latency { ms: u64 },
    /// Do what was asked, then break the connection: the client cannot tell it happened.
    DropAfterApply,
    /// Answer with this status and an error whose message repeats the request's Authorization
    /// header, as a careless proxy or server does.
    Echo { status: u16 },
    /// Do what was asked, then answer with this status and raw body instead (an edge proxy's
    /// HTML 524 after the origin acted, a 204 where a body is expected).
    AnswerAfterApply {
        status: u16,
        #[serde(default)]
        body: String,
        #[serde(default)]
        content_type: Option<String>,
    },
    /// Answer with this status and JSON body instead (an answer shaped unlike the spec's).
    Body {
        #[serde(default = "ok_status")]
        status: u16,
        body: Value,
    },
}

fn ok_status() -> u16 {
    200
}

/// A fault for the next `times` requests whose method matches and whose path starts with `path`
/// (or, when `path` ends with `$`, is exactly the rest).
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
pub struct Fault {
    #[serde(default)]
    pub method: Option<String>,
    pub path: String,
    #[serde(flatten)]
    pub kind: FaultKind,
    #[serde(default = "one")]
    pub times: u32,
}

fn one() -> u32 {
    1
}

/// Rate limits: `per_hour` over a sliding `hour`, and the burst limit `per_minute` over a
/// sliding `minute`. Both windows shrink with `window_scale` so tests can reach the limits.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default)]
pub struct RateLimit {
    pub per_hour: u64,
    pub per_minute: u64,
    pub window_scale: f64,
}

impl Default for RateLimit {
    fn default() -> RateLimit {
        RateLimit { per_hour: 5000, per_minute: 250, window_scale: 1.0 }
    }
}

/// One request to the registry host.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct RegistryRequest {
    pub at_ms: u64,
    pub method: String,
    pub url: String,
    pub status: u16,
    /// `none`, `basic`, `bearer`, or `api-token` when the DigitalOcean API token came along
    /// (which must never happen).
    pub authorization: String,
}
