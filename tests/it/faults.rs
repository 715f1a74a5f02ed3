//! The fault matrix: every API fault the simulator can inject, against each tool that talks to
//! the API. A cell asserts the outcome (retried and succeeded, or a clear failure with the right
//! exit code), that the fault fired (every injected answer used up; the rate limit reached),
//! that nothing destructive happened beyond what the record reports, and that the record agrees
//! with the simulator's final state. do-gc-wait's cells run with a GC that outlasts the fault,
//! so only a tool that read through it to the GC's end reports `succeeded`. RELIABILITY.md lists
//! every cell.

use std::collections::BTreeSet;

use do_sim::{Fault, FaultKind, RateLimit, Sim};
use serde_json::{json, Value};

use crate::support::{digests_in, mutating_requests, sim, Run, Tool, DEPLOY, GC_WAIT, PRUNE};

#[derive(Clone, Copy, Debug, PartialEq)]
enum Case {
    Burst429,
    Burst5xx,
    Dropped,
    Slow,
    Malformed,
    Truncated,
    Unauthorized,
    Forbidden,
    NotFound,
    RateLimitMidRun,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Under {
    GcWait,
    Deploy,
    Prune,
}

/// The route each tool's faults hit: the one it uses most.
fn route(under: Under, case: Case, sim: &Sim) -> (Option<&'static str>, String) {
    let app = sim.state().apps[0].id.clone();
    match (under, case) {
        (Under::GcWait, Case::NotFound) => (Some("GET"), "/v2/registries/example-registry".into()),
        (Under::GcWait, _) => (Some("GET"), "/v2/registries/example-registry/garbage-collection".into()),
        (Under::Deploy, Case::NotFound) => (Some("GET"), "/v2/apps".into()),
        (Under::Deploy, _) => (Some("GET"), format!("/v2/apps/{app}/deployments/")),
        (Under::Prune, Case::NotFound | Case::Malformed) => {
            (Some("GET"), "/v2/registries/example-registry/repositories/web/digests".into())
        }
        (Under::Prune, _) => (Some("DELETE"), "/v2/registries/example-registry/repositories/web/digests/".into()),
    }
}

fn inject(sim: &Sim, under: Under, case: Case) {
    let (method, path) = route(under, case, sim);
    let fault =
        |kind: FaultKind, times: u32| Fault { method: method.map(str::to_string), path: path.clone(), kind, times };
    match case {
        Case::Burst429 => sim.add_fault(fault(FaultKind::Status { status: 429, retry_after: Some(1) }, 2)),
        Case::Burst5xx => sim.add_fault(fault(FaultKind::Status { status: 503, retry_after: None }, 3)),
        Case::Dropped => sim.add_fault(fault(FaultKind::Drop, 2)),
        Case::Slow => sim.add_fault(fault(FaultKind::Latency { ms: 1500 }, 1)),
        Case::Malformed => sim.add_fault(fault(FaultKind::Malformed, 1)),
        Case::Truncated => sim.add_fault(fault(FaultKind::Truncated, 1)),
        Case::Unauthorized => sim.add_fault(fault(FaultKind::Status { status: 401, retry_after: None }, 1)),
        Case::Forbidden => sim.add_fault(fault(FaultKind::Status { status: 403, retry_after: None }, 1)),
        Case::NotFound => sim.add_fault(fault(FaultKind::Status { status: 404, retry_after: None }, 1)),
        // A burst limit of 3 requests per 1.2 s: every tool runs into it mid-run.
        Case::RateLimitMidRun => {
            sim.state().rate_limit = RateLimit { per_hour: 10_000, per_minute: 3, window_scale: 0.02 }
        }
    }
}

/// Exit code and a phrase of the message each cell must give.
fn expected(under: Under, case: Case) -> (i32, &'static str) {
    match (under, case) {
        (_, Case::Burst429 | Case::Burst5xx | Case::Dropped | Case::Slow | Case::Truncated | Case::RateLimitMidRun) => {
            (0, "")
        }
        (Under::Prune, Case::Unauthorized) => (1, "401 unauthorized"),
        (Under::Prune, Case::Forbidden) => (1, "lacks a scope"),
        (_, Case::Unauthorized) => (1, "check DIGITALOCEAN_ACCESS_TOKEN"),
        (_, Case::Forbidden) => (1, "403 forbidden"),
        (_, Case::Malformed) => (1, "not the expected JSON"),
        (Under::GcWait, Case::NotFound) => (2, "registry \"example-registry\" does not exist"),
        (Under::Deploy, Case::NotFound) => (1, "GET /v2/apps?per_page=200 answered 404"),
        (Under::Prune, Case::NotFound) => (2, "repository \"web\" is not in registry example-registry"),
    }
}

fn run(under: Under, sim: &Sim) -> Run {
    let tool = |binary: &str| Tool::against(binary, sim).args(["--request-timeout", "400ms"]);
    match under {
        Under::GcWait => tool(GC_WAIT).args(["--registry", "example-registry", "--interval", "30ms"]).run(),
        Under::Deploy => tool(DEPLOY)
            .args(["--app", "example-app", "--repository", "web", "--tag", "v1.1.0", "--interval", "30ms"])
            .run(),
        Under::Prune => tool(PRUNE).args(["--keep-last", "0", "--execute", "--gc", "off"]).run(),
    }
}

fn record(run: &Run, kind: &str) -> Option<Value> {
    run.records().into_iter().rev().find(|r| r["kind"] == kind).map(|r| r["data"].clone())
}

fn cell(under: Under, case: Case) {
    let sim = sim(30);
    let before = digests_in(&sim, do_sim::DEFAULT_REPOSITORY);
    if under == Under::GcWait {
        // A GC that runs for a while: gc-wait must keep reading it, through the fault, to the end.
        sim.start_gc_with("example-registry", &[("scanning manifests", 2500)], "succeeded").unwrap();
    }
    inject(&sim, under, case);
    let run = run(under, &sim);
    let (code, phrase) = expected(under, case);
    assert_eq!(run.code, code, "{under:?} under {case:?}:\n{run:#?}");
    assert!(run.stderr.contains(phrase), "{under:?} under {case:?}: {phrase:?} not in\n{}", run.stderr);
    // The fault fired: every injected answer was used up, and a limit was run into.
    let left = sim.state().faults.len();
    assert_eq!(left, 0, "{under:?} under {case:?}: the fault was not used up, so the cell proves nothing");
    if case == Case::RateLimitMidRun {
        assert!(sim.requests().iter().any(|r| r.status == 429), "{under:?}: the rate limit was never reached");
    }
    let mutating = mutating_requests(&sim);
    match under {
        Under::GcWait => {
            assert!(mutating.is_empty(), "gc-wait changes nothing");
            if code == 0 {
                // Only reading through the fault to the GC's end gives this.
                assert_eq!(record(&run, "gc-wait").unwrap()["outcome"], "succeeded", "{}", run.stderr);
            }
        }
        Under::Deploy => {
            let puts = mutating.iter().filter(|r| r.method == "PUT" && r.status == 200).count();
            assert!(puts <= 1, "at most one update applied: {mutating:?}");
            let snapshot = sim.snapshot();
            let deployments = snapshot["apps"][0]["deployments"].as_array().unwrap().clone();
            match record(&run, "deploy") {
                Some(deploy) => {
                    let id = deploy["deployment_id"].as_str().unwrap();
                    let deployment =
                        deployments.iter().find(|d| d["id"] == id).expect("the reported deployment exists");
                    if code == 0 {
                        assert_eq!(
                            (deploy["phase"].as_str(), deployment["phase"].as_str()),
                            (Some("ACTIVE"), Some("ACTIVE"))
                        );
                    }
                    assert_eq!(deployments.len(), 1 + puts, "every deployment made is the one reported");
                }
                None => assert!(mutating.is_empty() && deployments.len() == 1, "nothing changed without a record"),
            }
        }
        Under::Prune => {
            let after = digests_in(&sim, do_sim::DEFAULT_REPOSITORY);
            let gone: BTreeSet<String> = before.difference(&after).cloned().collect();
            match record(&run, "prune") {
                Some(prune) => {
                    let deleted: BTreeSet<String> = prune["repositories"][0]["deleted"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|d| d["digest"].as_str().unwrap().to_string())
                        .collect();
                    let failed: BTreeSet<String> = prune["failed"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|d| d["digest"].as_str().unwrap().to_string())
                        .collect();
                    assert_eq!(
                        gone,
                        deleted.difference(&failed).cloned().collect(),
                        "the record says exactly what is gone"
                    );
                    if code == 0 {
                        assert_eq!(gone.len(), 2, "v1.0.0 and v1.1.0");
                    }
                }
                None => assert!(gone.is_empty() && mutating.is_empty(), "nothing deleted without a record"),
            }
        }
    }
}

macro_rules! matrix {
    ($($tool:ident: $under:expr;)*) => {
        $(
            mod $tool {
                use super::*;
                #[test] fn burst_429_with_retry_after() { cell($under, Case::Burst429) }
                #[test] fn burst_5xx() { cell($under, Case::Burst5xx) }
                #[test] fn dropped_connection() { cell($under, Case::Dropped) }
                #[test] fn slower_than_the_timeout() { cell($under, Case::Slow) }
                #[test] fn malformed_json() { cell($under, Case::Malformed) }
                #[test] fn truncated_body() { cell($under, Case::Truncated) }
                #[test] fn unauthorized_401() { cell($under, Case::Unauthorized) }
                #[test] fn forbidden_403() { cell($under, Case::Forbidden) }
                #[test] fn not_found_404() { cell($under, Case::NotFound) }
                #[test] fn rate_limit_mid_run() { cell($under, Case::RateLimitMidRun) }
            }
        )*
    };
}

matrix! {
    gc_wait: Under::GcWait;
    deploy: Under::Deploy;
    prune: Under::Prune;
}

#[test]
fn a_pagination_link_that_cycles_ends_the_listing_with_an_error() {
    let sim = sim(30);
    let page = json!({"apps": [], "meta": {"total": 5}, "links": {"pages": {"next": format!("{}/v2/apps?page=1&per_page=200", sim.url())}}});
    sim.add_fault(Fault {
        method: Some("GET".into()),
        path: "/v2/apps".into(),
        kind: FaultKind::Body { status: 200, body: page },
        times: 1000,
    });
    let run = Tool::against(PRUNE, &sim).args(["--keep-last", "0", "--execute"]).run();
    run.assert_code(1);
    assert!(run.stderr.contains("leads back to a page already read"), "{}", run.stderr);
    let app_reads = sim.requests().iter().filter(|r| r.url.starts_with("/v2/apps")).count();
    assert_eq!(app_reads, 2, "the first page, and the one it pointed back to");
    assert!(mutating_requests(&sim).is_empty());
}

#[test]
fn an_api_that_does_not_answer_is_told_at_each_retry_and_points_at_the_api_url() {
    // A port nothing listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let url = format!("http://127.0.0.1:{port}");
    let run = Tool::new(GC_WAIT)
        .env("DIGITALOCEAN_API_URL", &url)
        .env("DIGITALOCEAN_ACCESS_TOKEN", "sim-token")
        .env("DO_RELEASE_RETRY_BASE_DELAY", "50ms")
        .env("DO_RELEASE_RETRY_MAX_TIME", "1s")
        .args(["--no-input"])
        .run();
    assert_eq!(run.code, 1, "{}", run.stderr);
    let retries = run.stderr.matches("retrying in").count();
    assert!(retries >= 2, "each retry is told, with its reason: {}", run.stderr);
    assert!(run.stderr.contains("after: GET /v2/registries failed: could not connect"), "{}", run.stderr);
    assert!(run.stderr.contains(&format!("DIGITALOCEAN_API_URL is set to {url}: check")), "{}", run.stderr);
}
