//! Verification after ACTIVE: a deployment that went green may still serve the old version, or
//! nothing. The release GETs a URL of the app until it answers as expected (a status, a body
//! pattern, header patterns such as a version header) or the check's time is up. Plain http only
//! to a loopback address, https otherwise; the API token is never sent.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use do_core::{validate, Failure};
use serde::Serialize;

/// What to ask and what to expect.
#[derive(Clone, Debug)]
pub struct CheckSpec {
    pub url: String,
    pub status: u16,
    pub body: Option<regex::Regex>,
    /// (header name, lowercase; pattern)
    pub headers: Vec<(String, regex::Regex)>,
    pub timeout: Duration,
    pub interval: Duration,
}

/// The `check` part of the deploy record.
#[derive(Clone, Debug, Default, Serialize)]
pub struct CheckReport {
    pub url: String,
    pub attempts: u32,
    /// The last status seen (none when no answer came).
    pub status: Option<u16>,
    pub duration_ms: u64,
    pub passed: bool,
    /// The headers that were checked, as last seen.
    pub headers: BTreeMap<String, Option<String>>,
    /// What the last answer broke, for people.
    pub reason: Option<String>,
    /// The first 2 KiB of the last body, when the check failed.
    pub body_excerpt: Option<String>,
}

const BODY_EXCERPT_BYTES: usize = 2048;
/// The least time worth giving one more look.
const MIN_ATTEMPT: Duration = Duration::from_millis(200);
const BODY_READ_BYTES: u64 = 1024 * 1024;

/// What the answer must carry besides its status.
#[derive(Clone, Debug, Default)]
pub struct Expectations {
    pub body: Option<regex::Regex>,
    /// (header name, lowercase; pattern)
    pub headers: Vec<(String, regex::Regex)>,
}

/// Checks the flags before any request: patterns compile, the URL may be asked over its scheme.
pub fn parse_expectations(body: Option<&str>, headers: &[String]) -> anyhow::Result<Expectations> {
    let compile = |flag: &str, pattern: &str| {
        regex::Regex::new(pattern).map_err(|e| {
            Failure::usage(format!(
                "{flag} {}: not a regular expression: {}",
                validate::shown(pattern),
                e.to_string().lines().last().unwrap_or("")
            ))
        })
    };
    let body = body.map(|pattern| compile("--expect-body", pattern)).transpose()?;
    let mut parsed = Vec::new();
    for header in headers {
        let (name, pattern) = header
            .split_once('=')
            .ok_or_else(|| Failure::usage(format!("--expect-header {}: give NAME=REGEX", validate::shown(header))))?;
        let name = name.trim().to_ascii_lowercase();
        if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
            return Err(Failure::usage(format!("--expect-header {}: not a header name", validate::shown(header))));
        }
        parsed.push((name, compile("--expect-header", pattern)?));
    }
    Ok(Expectations { body, headers: parsed })
}

/// A check URL must be https, or plain http to a loopback address.
pub fn check_url(url: &str) -> anyhow::Result<String> {
    let trimmed = url.trim();
    let uri: ureq::http::Uri =
        trimmed.parse().map_err(|_| Failure::usage(format!("check URL {}: not a URL", validate::shown(trimmed))))?;
    match (uri.scheme_str(), uri.host()) {
        (Some("https"), Some(_)) => Ok(trimmed.to_string()),
        (Some("http"), Some(_)) if do_core::api::is_loopback_url(trimmed) => Ok(trimmed.to_string()),
        (Some("http"), Some(host)) => Err(Failure::usage(format!(
            "check URL {}: plain http only to a loopback address; use https for {host}",
            validate::shown(trimmed)
        ))),
        _ => Err(Failure::usage(format!("check URL {}: give an https:// URL", validate::shown(trimmed)))),
    }
}

/// The agent a check asks with: no token, https unless the URL is a loopback one.
fn agent_for(url: &str) -> anyhow::Result<ureq::Agent> {
    let options = do_core::transport::AgentOptions {
        timeout: None,
        connect_timeout: None,
        answers: do_core::transport::Answers::Check { https_only: url.starts_with("https://") },
    };
    do_core::transport::agent(url, options)
}

/// One answer and whether it is what was expected.
struct Answer {
    verdict: Result<(), String>,
    status: Option<u16>,
    headers: BTreeMap<String, Option<String>>,
    body: Option<String>,
}

/// Asks the URL once, giving the answer at most `timeout`.
fn ask(agent: &ureq::Agent, spec: &CheckSpec, timeout: Duration) -> Answer {
    let request = agent.get(&spec.url).config().timeout_global(Some(timeout.min(Duration::from_secs(30)))).build();
    match request.call() {
        Ok(mut response) => {
            let status = response.status().as_u16();
            let headers: BTreeMap<String, Option<String>> = spec
                .headers
                .iter()
                .map(|(name, _)| {
                    (
                        name.clone(),
                        response.headers().get(name.as_str()).and_then(|v| v.to_str().ok()).map(str::to_string),
                    )
                })
                .collect();
            let bytes = response.body_mut().with_config().limit(BODY_READ_BYTES).read_to_vec().unwrap_or_default();
            let body = String::from_utf8_lossy(&bytes).into_owned();
            Answer { verdict: judge(spec, status, &headers, &body), status: Some(status), headers, body: Some(body) }
        }
        Err(error) => {
            Answer { verdict: Err(format!("no answer: {error}")), status: None, headers: BTreeMap::new(), body: None }
        }
    }
}

/// One look at the URL, as the soak makes them: what it broke, if anything (redacted).
pub fn once(spec: &CheckSpec, timeout: Duration) -> Result<(), String> {
    let agent = agent_for(&spec.url).map_err(|error| format!("{error:#}"))?;
    ask(&agent, spec, timeout).verdict.map_err(|reason| do_core::redact::redact(&reason))
}

/// GETs the URL until it answers as expected, the check's time is up, or `deadline` passes.
pub fn run(spec: &CheckSpec, deadline: Instant, progress: &do_core::progress::Progress) -> CheckReport {
    let started = Instant::now();
    let until = deadline.min(started + spec.timeout);
    let mut report = CheckReport { url: spec.url.clone(), ..CheckReport::default() };
    let agent = match agent_for(&spec.url) {
        Ok(agent) => agent,
        Err(error) => {
            report.reason = Some(format!("{error:#}"));
            return report;
        }
    };
    loop {
        report.attempts += 1;
        let left = until.saturating_duration_since(Instant::now()).max(Duration::from_millis(1));
        let answer = ask(&agent, spec, left);
        // The last answer that did come stays in the report.
        if answer.status.is_some() {
            report.status = answer.status;
            report.headers = answer.headers;
        }
        let (verdict, body) = (answer.verdict, answer.body);
        match verdict {
            Ok(()) => {
                report.passed = true;
                report.reason = None;
                report.body_excerpt = None;
                break;
            }
            Err(reason) => {
                progress.status(&format!("checking {}: {reason}", spec.url));
                report.reason = Some(do_core::redact::redact(&reason));
                if let Some(body) = body {
                    report.body_excerpt = Some(do_core::redact::redact(&excerpt(&body)));
                }
            }
        }
        // Another look only if it has time to get an answer.
        if Instant::now() + spec.interval + MIN_ATTEMPT > until {
            break;
        }
        std::thread::sleep(spec.interval);
    }
    progress.finish();
    report.duration_ms = started.elapsed().as_millis() as u64;
    report
}

/// Whether one answer is what was expected; otherwise what it broke.
fn judge(spec: &CheckSpec, status: u16, headers: &BTreeMap<String, Option<String>>, body: &str) -> Result<(), String> {
    if status != spec.status {
        return Err(format!("status {status}, expected {}", spec.status));
    }
    for (name, pattern) in &spec.headers {
        match headers.get(name).cloned().flatten() {
            Some(value) if pattern.is_match(&value) => {}
            Some(value) => {
                return Err(format!("header {name} is {value:?}, which does not match {}", pattern.as_str()))
            }
            None => return Err(format!("no header {name}, expected one matching {}", pattern.as_str())),
        }
    }
    if let Some(pattern) = &spec.body {
        if !pattern.is_match(body) {
            return Err(format!("the body does not match {}", pattern.as_str()));
        }
    }
    Ok(())
}

fn excerpt(body: &str) -> String {
    let mut end = body.len().min(BODY_EXCERPT_BYTES);
    while !body.is_char_boundary(end) {
        end -= 1;
    }
    body[..end].to_string()
}

/// Checks the release after ACTIVE, when asked: `--check-url`, or `--check-path` on the
/// app's live URL.
pub(crate) fn release(ctx: &crate::Ctx, app: &do_core::types::App) -> Option<CheckReport> {
    let spec = match spec_for(ctx, app)? {
        Ok(spec) => spec,
        Err(report) => return Some(report),
    };
    ctx.progress.info(&format!("checking {}", spec.url));
    Some(run(&spec, ctx.deadline, ctx.progress))
}

/// What the check asks and expects, when one is asked for; a report of why it cannot be made.
pub(crate) fn spec_for(ctx: &crate::Ctx, app: &do_core::types::App) -> Option<Result<CheckSpec, CheckReport>> {
    let url = match (&ctx.settings.check_url, &ctx.settings.check_path) {
        (Some(url), _) => url.clone(),
        (None, Some(path)) => {
            let live = app.live_url.clone().or_else(|| {
                let fresh: Option<do_core::types::App> =
                    ctx.client.get_object(&format!("/v2/apps/{}", do_core::api::segment(&app.id)), "app").ok();
                fresh.and_then(|a| a.live_url)
            });
            let Some(live) = live else {
                return Some(Err(CheckReport {
                    url: path.clone(),
                    reason: Some("the app has no live URL to check".into()),
                    ..CheckReport::default()
                }));
            };
            if let Err(error) = check_url(&live) {
                return Some(Err(CheckReport {
                    url: live,
                    reason: Some(format!("{error:#}")),
                    ..CheckReport::default()
                }));
            }
            format!("{}{path}", live.trim_end_matches('/'))
        }
        (None, None) => return None,
    };
    Some(Ok(CheckSpec {
        url,
        status: ctx.settings.expect_status,
        body: ctx.settings.expectations.body.clone(),
        headers: ctx.settings.expectations.headers.clone(),
        timeout: ctx.settings.check_timeout,
        interval: ctx.settings.interval.min(Duration::from_secs(2)),
    }))
}

/// Says on stderr how the check failed, and how the answer began.
pub(crate) fn tell_failure(progress: &do_core::progress::Progress, check: &CheckReport) {
    progress.warn(&format!(
        "the check of {} failed after {} attempts: {} (status {}, headers {:?})",
        check.url,
        check.attempts,
        check.reason.as_deref().unwrap_or("?"),
        check.status.map_or("none".to_string(), |s| s.to_string()),
        check.headers
    ));
    if let Some(body) = &check.body_excerpt {
        progress.info(&format!("the answer began: {}", body.trim_end()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(status: u16, body: Option<&str>, headers: &[&str]) -> CheckSpec {
        let headers: Vec<String> = headers.iter().map(|h| h.to_string()).collect();
        let Expectations { body, headers } = parse_expectations(body, &headers).unwrap();
        CheckSpec {
            url: "http://127.0.0.1:1/".into(),
            status,
            body,
            headers,
            timeout: Duration::from_secs(1),
            interval: Duration::from_millis(10),
        }
    }

    #[test]
    fn an_answer_passes_only_when_status_headers_and_body_all_match() {
        let check = spec(200, Some("v1\\.5"), &["X-App-Version=^v1\\.5\\.0$"]);
        let headers = |v: Option<&str>| BTreeMap::from([("x-app-version".to_string(), v.map(str::to_string))]);
        assert_eq!(judge(&check, 200, &headers(Some("v1.5.0")), "shop v1.5.0"), Ok(()));
        assert_eq!(judge(&check, 500, &headers(Some("v1.5.0")), "shop v1.5.0"), Err("status 500, expected 200".into()));
        assert!(judge(&check, 200, &headers(Some("v1.4.2")), "shop v1.5.0").unwrap_err().contains("is \"v1.4.2\""));
        assert!(judge(&check, 200, &headers(None), "shop v1.5.0").unwrap_err().contains("no header x-app-version"));
        assert!(judge(&check, 200, &headers(Some("v1.5.0")), "shop v1.4.2")
            .unwrap_err()
            .contains("body does not match"));
    }

    #[test]
    fn bad_expectations_are_usage_errors() {
        assert!(parse_expectations(Some("("), &[]).is_err());
        assert!(parse_expectations(None, &["novalue".into()]).is_err());
        assert!(parse_expectations(None, &["bad name=x".into()]).is_err());
        assert!(check_url("http://example.com/health").is_err());
        assert!(check_url("https://example.com/health").is_ok());
        assert!(check_url("http://127.0.0.1:8080/health").is_ok());
        assert_eq!(excerpt(&"é".repeat(2000)).len(), 2048);
    }
}
