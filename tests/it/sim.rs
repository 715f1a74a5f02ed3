//! The simulator answers as DigitalOcean's spec says: envelopes, status codes, error bodies,
//! pagination, read-only mode during GC and storage that follows pushes, deletes and GC.

use std::time::Duration;

use serde_json::{json, Value};

use crate::support::{call, sim};

fn api(sim: &do_sim::Sim, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    call(sim, method, path, body, Some(&sim.token()))
}

#[test]
fn a_missing_or_wrong_token_is_401_with_digitaloceans_error_body() {
    let sim = sim(50);
    for token in [None, Some("nope")] {
        let (status, body) = call(&sim, "GET", "/v2/registries", None, token);
        assert_eq!(status, 401);
        assert_eq!(body["id"], "unauthorized");
        assert!(body["message"].as_str().is_some_and(|m| !m.is_empty()));
        assert!(body["request_id"].is_string());
    }
}

#[test]
fn gc_start_is_201_a_second_start_is_refused_and_cancel_works() {
    let sim = sim(100);
    let (status, body) = api(
        &sim,
        "POST",
        "/v2/registry/example-registry/garbage-collection",
        Some(json!({"type": "untagged manifests and unreferenced blobs"})),
    );
    assert_eq!(status, 201);
    let gc = &body["garbage_collection"];
    assert_eq!(gc["status"], "requested");
    assert_eq!(gc["registry_name"], "example-registry");
    for field in ["uuid", "created_at", "updated_at", "blobs_deleted", "freed_bytes"] {
        assert!(!gc[field].is_null(), "{field} missing in {gc}");
    }
    let (second, error) = api(&sim, "POST", "/v2/registries/example-registry/garbage-collection", None);
    assert_eq!(second, 409);
    assert_eq!(error["id"], "conflict");
    let (active, body) = api(&sim, "GET", "/v2/registries/example-registry/garbage-collection", None);
    assert_eq!(active, 200);
    let uuid = body["garbage_collection"]["uuid"].as_str().unwrap().to_string();
    let (cancel, body) = api(
        &sim,
        "PUT",
        &format!("/v2/registries/example-registry/garbage-collection/{uuid}"),
        Some(json!({"cancel": true})),
    );
    assert_eq!(cancel, 200);
    assert_eq!(body["garbage_collection"]["status"], "cancelling");
    crate::support::wait_until("the cancel to complete", || !crate::support::gc_running(&sim, "example-registry"));
    let (none, _) = api(&sim, "GET", "/v2/registries/example-registry/garbage-collection", None);
    assert_eq!(none, 404, "no GC is active after the cancel completes");
    let (listed, body) = api(&sim, "GET", "/v2/registries/example-registry/garbage-collections", None);
    assert_eq!(listed, 200);
    assert_eq!(body["garbage_collections"][0]["status"], "cancelled");
    assert!(body.get("meta").is_none(), "the spec declares only the list for this operation");
}

#[test]
fn the_registry_is_read_only_while_gc_runs_and_storage_follows_push_delete_and_gc() {
    let sim = sim(40);
    let usage = |sim: &do_sim::Sim| {
        api(sim, "GET", "/v2/registries/example-registry", None).1["registry"]["storage_usage_bytes"].as_u64().unwrap()
    };
    let before = usage(&sim);
    sim.push("example-registry", "web", "v2.0.0", 10_000_000).unwrap();
    assert_eq!(usage(&sim), before + 10_000_000);
    // Re-pushing a tag leaves the old manifest untagged; it still counts.
    sim.push("example-registry", "web", "v2.0.0", 5_000_000).unwrap();
    assert_eq!(usage(&sim), before + 15_000_000);
    let (_, digests) = api(&sim, "GET", "/v2/registries/example-registry/repositories/web/digests", None);
    let untagged: Vec<&Value> =
        digests["manifests"].as_array().unwrap().iter().filter(|m| m["tags"] == json!([])).collect();
    assert_eq!(untagged.len(), 1);
    // Deleting a tag keeps the manifest; deleting a manifest is 204 and frees nothing until GC.
    let (status, _) = api(&sim, "DELETE", "/v2/registries/example-registry/repositories/web/tags/v1.0.0", None);
    assert_eq!(status, 204);
    let v1_1 = digests["manifests"].as_array().unwrap().iter().find(|m| m["tags"] == json!(["v1.1.0"])).unwrap()
        ["digest"]
        .as_str()
        .unwrap()
        .to_string();
    let (status, _) =
        api(&sim, "DELETE", &format!("/v2/registries/example-registry/repositories/web/digests/{v1_1}"), None);
    assert_eq!(status, 204);
    assert_eq!(usage(&sim), before + 15_000_000);
    let (status, _) = api(
        &sim,
        "POST",
        "/v2/registry/example-registry/garbage-collection",
        Some(json!({"type": "untagged manifests and unreferenced blobs"})),
    );
    assert_eq!(status, 201);
    let refused = sim.push("example-registry", "web", "v3", 1).unwrap_err();
    assert_eq!(refused.status, 409);
    assert!(refused.message.contains("read-only"));
    crate::support::wait_until("the GC to end", || !crate::support::gc_running(&sim, "example-registry"));
    let (_, list) = api(&sim, "GET", "/v2/registries/example-registry/garbage-collections", None);
    let gc = &list["garbage_collections"][0];
    assert_eq!(gc["status"], "succeeded");
    // Freed: v1.1.0 (42 MiB), the untagged v1.0.0 (40 MiB) and the first v2.0.0 push (10 MB).
    assert_eq!(gc["freed_bytes"].as_u64().unwrap(), 42 * 1024 * 1024 + 40 * 1024 * 1024 + 10_000_000);
    assert_eq!(usage(&sim), before + 15_000_000 - gc["freed_bytes"].as_u64().unwrap());
    sim.push("example-registry", "web", "v3", 1).unwrap();
}

#[test]
fn listings_have_meta_links_and_refuse_oversized_pages() {
    let sim = sim(50);
    let (status, body) = api(&sim, "GET", "/v2/registries/example-registry/repositories/web/tags?per_page=1", None);
    assert_eq!(status, 200);
    assert_eq!(body["meta"]["total"], 4);
    assert_eq!(body["tags"].as_array().unwrap().len(), 1);
    let next = body["links"]["pages"]["next"].as_str().unwrap();
    assert!(next.starts_with(sim.url()) && next.ends_with("tags?page=2&per_page=1"), "{next}");
    assert!(body["links"]["pages"].get("prev").is_none(), "page 1 has no prev");
    let (_, last) = api(&sim, "GET", "/v2/registries/example-registry/repositories/web/tags?page=4&per_page=1", None);
    assert!(last["links"]["pages"].get("next").is_none());
    assert!(last["links"]["pages"]["prev"].is_string());
    let (_, whole) = api(&sim, "GET", "/v2/registries/example-registry/repositories/web/tags", None);
    assert!(whole.get("links").is_none(), "links are left out when everything fits");
    let (status, error) = api(&sim, "GET", "/v2/registries/example-registry/repositories/web/tags?per_page=201", None);
    assert_eq!((status, error["id"].as_str()), (400, Some("bad_request")));
    let tag = &whole["tags"][0];
    for field in
        ["registry_name", "repository", "tag", "manifest_digest", "compressed_size_bytes", "size_bytes", "updated_at"]
    {
        assert!(!tag[field].is_null(), "{field} missing in {tag}");
    }
}

#[test]
fn rate_limit_headers_and_429_with_retry_after() {
    let sim = sim(50);
    sim.state().rate_limit = do_sim::RateLimit { per_hour: 100, per_minute: 3, window_scale: 1.0 };
    let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).proxy(None).build().into();
    let mut seen = Vec::new();
    for _ in 0..4 {
        let response = agent
            .get(format!("{}/v2/account", sim.url()))
            .header("authorization", format!("Bearer {}", sim.token()))
            .call()
            .unwrap();
        let header = |name: &str| response.headers().get(name).map(|v| v.to_str().unwrap().to_string());
        seen.push((
            response.status().as_u16(),
            header("ratelimit-remaining"),
            header("retry-after"),
            header("ratelimit-limit"),
        ));
    }
    assert_eq!(seen[0], (200, Some("99".into()), None, Some("100".into())));
    assert_eq!(seen[2].0, 200);
    assert_eq!(seen[3].0, 429);
    assert!(seen[3].2.as_deref().is_some_and(|s| s.parse::<u64>().unwrap() >= 1), "{seen:?}");
}

#[test]
fn deployments_step_through_the_phases_and_spec_updates_create_one() {
    let sim = sim(80);
    let (_, apps) = api(&sim, "GET", "/v2/apps", None);
    let app = &apps["apps"][0];
    let app_id = app["id"].as_str().unwrap().to_string();
    assert_eq!(app["active_deployment"]["phase"], "ACTIVE");
    let mut spec = app["spec"].clone();
    spec["services"][0]["image"] = json!({"registry_type": "DOCR", "repository": "web", "tag": "v1.1.0"});
    let (status, updated) = api(&sim, "PUT", &format!("/v2/apps/{app_id}"), Some(json!({"spec": spec})));
    assert_eq!(status, 200);
    let pending = updated["app"]["pending_deployment"]["id"].as_str().unwrap().to_string();
    let mut phases = Vec::new();
    for _ in 0..40 {
        let (_, body) = api(&sim, "GET", &format!("/v2/apps/{app_id}/deployments/{pending}"), None);
        let phase = body["deployment"]["phase"].as_str().unwrap().to_string();
        if phases.last() != Some(&phase) {
            phases.push(phase.clone());
        }
        if phase == "ACTIVE" {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(phases, ["PENDING_BUILD", "BUILDING", "PENDING_DEPLOY", "DEPLOYING", "ACTIVE"]);
    let (_, list) = api(&sim, "GET", &format!("/v2/apps/{app_id}/deployments"), None);
    assert_eq!(list["deployments"][0]["id"], pending.as_str(), "newest first");
    assert_eq!(list["deployments"][1]["phase"], "SUPERSEDED", "the old active deployment is superseded");
    // Create deployment is 200 and needs a body; tag with digest is refused.
    let (status, _) = api(&sim, "POST", &format!("/v2/apps/{app_id}/deployments"), None);
    assert_eq!(status, 422);
    let (status, created) = api(&sim, "POST", &format!("/v2/apps/{app_id}/deployments"), Some(json!({})));
    assert_eq!(status, 200);
    assert_eq!(created["deployment"]["phase"], "PENDING_BUILD");
    spec["services"][0]["image"]["digest"] = json!(format!("sha256:{}", "a".repeat(64)));
    let (status, error) = api(&sim, "PUT", &format!("/v2/apps/{app_id}"), Some(json!({"spec": spec})));
    assert_eq!((status, error["id"].as_str()), (400, Some("bad_request")));
}

#[test]
fn apps_are_proposed_created_with_unique_names_and_deleted() {
    let sim = sim(40);
    let spec = do_sim::default_app_spec("new-shop", "web", "v1.1.0");
    // Propose: every problem, one per line, in the live API's wording; the name's availability.
    let bad = json!({"spec": {"name": "New_Shop", "region": "mars", "services": [{"name": "web", "image": {"registry_type": "DOCR", "repository": "web", "tag": "v1", "digest": "sha256:a"}}]}});
    let (status, error) = api(&sim, "POST", "/v2/apps/propose", Some(bad.clone()));
    assert_eq!(status, 400);
    let lines: Vec<&str> = error["message"].as_str().unwrap().lines().collect();
    assert_eq!(lines.len(), 3, "{lines:?}");
    assert!(lines.iter().all(|l| l.starts_with("error validating app spec field \"")), "{lines:?}");
    let (status, proposal) = api(&sim, "POST", "/v2/apps/propose", Some(json!({"spec": spec})));
    assert_eq!((status, proposal["app_name_available"].as_bool()), (200, Some(true)));
    assert_eq!(proposal["spec"]["services"][0]["instance_count"], 1, "answered as it would be kept");
    let (_, taken) = api(&sim, "POST", "/v2/apps/propose", Some(json!({"spec": {"name": "example-app"}})));
    assert_eq!(
        (taken["app_name_available"].as_bool(), taken["app_name_suggestion"].as_str()),
        (Some(false), Some("example-app-2"))
    );
    let (status, _) = api(&sim, "POST", "/v2/apps", Some(bad));
    assert_eq!(status, 400, "a bad spec creates nothing");

    // Create: a pending deployment, no live URL until it is ACTIVE; the name is taken after.
    let (status, created) = api(&sim, "POST", "/v2/apps", Some(json!({"spec": spec})));
    assert_eq!(status, 200);
    let id = created["app"]["id"].as_str().unwrap().to_string();
    assert!(created["app"]["pending_deployment"]["id"].is_string());
    assert!(created["app"].get("live_url").is_none(), "{created}");
    assert_eq!(created["app"]["spec"]["region"], "fra", "filled in");
    let (status, _) = api(&sim, "POST", "/v2/apps", Some(json!({"spec": spec})));
    assert_eq!(status, 409);
    let mut renamed = spec.clone();
    renamed["name"] = json!("example-app");
    let (status, _) = api(&sim, "PUT", &format!("/v2/apps/{id}"), Some(json!({"spec": renamed})));
    assert_eq!(status, 409, "an update cannot take another app's name");
    let until = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let app = loop {
        let (_, app) = api(&sim, "GET", &format!("/v2/apps/{id}"), None);
        if app["app"]["active_deployment"]["phase"] == "ACTIVE" || std::time::Instant::now() > until {
            break app;
        }
        assert!(app["app"].get("live_url").is_none(), "no URL before ACTIVE: {app}");
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    assert_eq!(app["app"]["active_deployment"]["phase"], "ACTIVE");
    assert!(app["app"]["live_url"].as_str().is_some_and(|u| u.ends_with("/_sim/live/new-shop")), "{app}");

    // Delete: 200 with the id; gone after, the other app untouched.
    let (status, deleted) = api(&sim, "DELETE", &format!("/v2/apps/{id}"), None);
    assert_eq!((status, deleted["id"].as_str()), (200, Some(id.as_str())));
    assert_eq!(api(&sim, "GET", &format!("/v2/apps/{id}"), None).0, 404);
    assert_eq!(api(&sim, "DELETE", &format!("/v2/apps/{id}"), None).0, 404);
    let (_, apps) = api(&sim, "GET", "/v2/apps", None);
    assert_eq!(apps["apps"].as_array().unwrap().len(), 1);
}

#[test]
fn a_scripted_build_error_ends_in_error_with_a_reason() {
    let sim = sim(30);
    let app_id = sim.state().apps[0].id.clone();
    sim.state().apps[0].next_outcome = do_sim::Outcome::BuildError;
    let (_, created) = api(&sim, "POST", &format!("/v2/apps/{app_id}/deployments"), Some(json!({"force_build": true})));
    let id = created["deployment"]["id"].as_str().unwrap().to_string();
    let path = format!("/v2/apps/{app_id}/deployments/{id}");
    crate::support::wait_until("the deployment to end in ERROR", || {
        crate::support::deployment_phase(&sim, &id) == "ERROR"
    });
    let (_, body) = api(&sim, "GET", &path, None);
    let deployment = &body["deployment"];
    assert_eq!(deployment["phase"], "ERROR");
    assert_eq!(deployment["progress"]["error_steps"], 1);
    assert_eq!(deployment["progress"]["steps"][0]["reason"]["code"], "BuildJobFailed");
}

#[test]
fn health_follows_the_live_scenario_and_the_platform_rolls_back_on_its_own_when_told() {
    let sim = sim(20);
    let app = crate::support::first_app_id(&sim);
    let health = || api(&sim, "GET", &format!("/v2/apps/{app}/health"), None);
    let (status, body) = health();
    assert_eq!(status, 200);
    let web = &body["app_health"]["components"][0];
    assert_eq!(
        (web["name"].as_str(), web["state"].as_str(), web["replicas_ready"].as_i64()),
        (Some("web"), Some("HEALTHY"), Some(1))
    );
    // The control API takes every scenario and outcome by name.
    let control = |body: Value| call(&sim, "POST", &format!("/_sim/apps/{app}/next-deployment"), Some(body), None).0;
    assert_eq!(control(json!({"outcome": "auto_rollback", "live": {"scenario": "flapping", "period_ms": 100}})), 204);
    assert_eq!(control(json!({"live": {"scenario": "failing_between", "from_ms": 1, "to_ms": 2}})), 204);
    assert_eq!(control(json!({"live": {"scenario": "failing_sometimes"}})), 400);
    assert_eq!(sim.state().apps[0].next_live, do_sim::Live::FailingBetween { from_ms: 1, to_ms: 2 });
    sim.state().apps[0].next_outcome = do_sim::Outcome::Success;
    // A release that turns bad right after ACTIVE: unhealthy, and its live URL fails.
    sim.state().apps[0].next_live = do_sim::Live::FailingAfter { ms: 0 };
    let (_, created) = api(&sim, "POST", &format!("/v2/apps/{app}/deployments"), Some(json!({})));
    let id = created["deployment"]["id"].as_str().unwrap().to_string();
    crate::support::wait_until("the deployment is ACTIVE", || crate::support::deployment_phase(&sim, &id) == "ACTIVE");
    let (_, body) = health();
    let web = &body["app_health"]["components"][0];
    assert_eq!((web["state"].as_str(), web["replicas_ready"].as_i64()), (Some("UNHEALTHY"), Some(0)), "{body}");
    // A deployment that fails with the platform's own rollback: a newer deployment clones the
    // one ACTIVE before and says so in its cause.
    let (_, app_before) = api(&sim, "GET", &format!("/v2/apps/{app}"), None);
    let was_active = app_before["app"]["active_deployment"]["id"].as_str().unwrap().to_string();
    sim.state().apps[0].next_outcome = do_sim::Outcome::AutoRollback;
    let (_, created) = api(&sim, "POST", &format!("/v2/apps/{app}/deployments"), Some(json!({})));
    let failed = created["deployment"]["id"].as_str().unwrap().to_string();
    crate::support::wait_until("the deployment fails", || crate::support::deployment_phase(&sim, &failed) == "ERROR");
    let (_, listed) = api(&sim, "GET", &format!("/v2/apps/{app}/deployments"), None);
    let newest = &listed["deployments"][0];
    assert_eq!(newest["cloned_from"], was_active.as_str(), "{listed}");
    assert!(newest["cause"].as_str().unwrap().starts_with("AUTO_ROLLBACK"), "{newest}");
    let rollback = newest["id"].as_str().unwrap().to_string();
    crate::support::wait_until("the rollback is ACTIVE", || {
        crate::support::deployment_phase(&sim, &rollback) == "ACTIVE"
    });
}

/// Sends `GET /v2/account` on `stream` and reads the whole answer: its status line and whether
/// the server said it keeps the connection.
fn get_account(stream: &mut std::net::TcpStream, token: &str, close: bool) -> (String, bool) {
    use std::io::{BufRead, Read, Write};
    let connection = if close { "close" } else { "keep-alive" };
    write!(
        stream,
        "GET /v2/account HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\nConnection: {connection}\r\n\r\n"
    )
    .unwrap();
    let mut reader = std::io::BufReader::new(stream.try_clone().unwrap());
    let mut status = String::new();
    reader.read_line(&mut status).unwrap();
    let (mut length, mut kept) = (0usize, false);
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        let lower = line.trim().to_ascii_lowercase();
        if lower.is_empty() {
            break;
        }
        if let Some(value) = lower.strip_prefix("content-length:") {
            length = value.trim().parse().unwrap();
        }
        kept |= lower == "connection: keep-alive";
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body).unwrap();
    (status.trim().to_string(), kept)
}

#[test]
fn connections_stay_open_for_the_next_request_and_idle_ones_hold_up_no_new_one() {
    let sim = sim(50);
    let address = sim.url().trim_start_matches("http://").to_string();
    let connect = || {
        let stream = std::net::TcpStream::connect(&address).unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        stream
    };
    // Two requests on one connection: one connection accepted.
    let mut first = connect();
    assert_eq!(get_account(&mut first, &sim.token(), false), ("HTTP/1.1 200 OK".to_string(), true));
    assert_eq!(get_account(&mut first, &sim.token(), false), ("HTTP/1.1 200 OK".to_string(), true));
    assert_eq!(sim.connections_accepted(), 1);
    // More idle kept-alive connections than tiny_http's pool had threads: a new connection is
    // still answered (there, it waited for one of them to close).
    let idle: Vec<std::net::TcpStream> = (0..16)
        .map(|_| {
            let mut stream = connect();
            get_account(&mut stream, &sim.token(), false);
            stream
        })
        .collect();
    let mut late = connect();
    let (status, kept) = get_account(&mut late, &sim.token(), true);
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert!(!kept, "a client that asks to close is told so");
    assert_eq!(sim.connections_accepted(), 18);
    drop(idle);
}

#[test]
fn a_slow_answer_holds_up_no_other_request() {
    let sim = sim(50);
    sim.add_fault(do_sim::Fault {
        method: Some("GET".into()),
        path: "/_sim/logs/".into(),
        kind: do_sim::FaultKind::Latency { ms: 3000 },
        times: 1,
    });
    let url = format!("{}/_sim/logs/app/deployment/web/DEPLOY", sim.url());
    let slow = std::thread::spawn(move || {
        ureq::get(&url).call().map(|r| r.status().as_u16()).unwrap_or_else(|e| match e {
            ureq::Error::StatusCode(status) => status,
            other => panic!("{other}"),
        })
    });
    crate::support::wait_until("the slow request to take its fault", || sim.state().faults.is_empty());
    let (status, _) = api(&sim, "GET", "/v2/account", None);
    assert_eq!(status, 200);
    assert!(!slow.is_finished(), "the account was answered while the slow request still waited");
    assert_eq!(slow.join().unwrap(), 404);
}
