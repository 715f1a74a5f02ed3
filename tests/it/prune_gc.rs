//! Garbage collection starts only when and as it is safe: never while one runs, always with an
//! explicit type, an untagged type only when nothing in the registry needs an untagged manifest
//! (decided again after the apps are read again), and a GC that cannot start still leaves the
//! record.

use do_sim::{Fault, FaultKind};
use serde_json::{json, Value};

use crate::support::images::*;
use crate::support::{call, digest_in as digest_of, manifests_in, mutating_requests, prune};

#[test]
fn gc_starts_with_an_explicit_safe_type_after_a_running_gc_ends() {
    let sim = seeded("basic", &[("web", five())], vec![]);
    let run = prune(&sim).args(["--keep-last", "3", "--execute"]).run();
    run.assert_code(0);
    let posts: Vec<_> = sim.requests().into_iter().filter(|r| r.method == "POST").collect();
    assert_eq!(posts.len(), 1);
    assert_eq!(posts[0].url, "/v2/registries/reg/garbage-collection", "the registries family, as godo does");
    assert_eq!(posts[0].status, 201);
    assert_eq!(
        serde_json::from_str::<Value>(posts[0].body.as_deref().unwrap()).unwrap(),
        json!({"type": "unreferenced blobs only"})
    );
    let gc = run.record("prune")["gc"].clone();
    assert_eq!(gc["type"], "unreferenced blobs only");
    assert_eq!(gc["already_running"], false);

    // A GC already running: the registry is read-only, so do-prune waits for it, deletes, and
    // starts its own.
    let sim = seeded("basic", &[("web", five())], vec![]);
    sim.start_gc_with("reg", &[("scanning manifests", 300)], "succeeded").unwrap();
    let run = prune(&sim).args(["--keep-last", "3", "--execute", "--gc", "wait"]).run();
    run.assert_code(0);
    assert!(
        run.stderr.contains("the registry is read-only until it ends, so waiting before deleting"),
        "{}",
        run.stderr
    );
    let log = sim.requests();
    let first_delete = log.iter().position(|r| r.method == "DELETE").unwrap();
    assert!(
        log[..first_delete].iter().filter(|r| r.url.ends_with("/garbage-collection")).count() >= 2,
        "it looked until the GC ended"
    );
    assert!(log.iter().all(|r| r.method != "DELETE" || r.status == 204), "no delete was refused as read-only");
    let gc = run.record("prune")["gc"].clone();
    assert_eq!((gc["already_running"].clone(), gc["status"].clone()), (json!(false), json!("succeeded")));
    assert_eq!(sim.snapshot()["registries"][0]["garbage_collections"].as_array().unwrap().len(), 2);
}

#[test]
fn a_needed_untagged_manifest_survives_the_gc_and_an_untagged_gc_type_is_refused() {
    let sim = seeded("basic", &[("web", vec![tagged(&["v1"], 10), tagged(&["v2"], 10)])], vec![]);
    let v1 = sim.snapshot()["registries"][0]["repositories"][0]["manifests"][0]["digest"].as_str().unwrap().to_string();
    // A deployment runs v1 by digest, then its tag moves away.
    add_app(
        &sim,
        json!({"name": "shop", "services": [{"name": "web", "image": {"registry_type": "DOCR", "repository": "web", "digest": v1}}]}),
    );
    sim.push("reg", "web", "v1", 1000).unwrap();
    let refused = prune(&sim)
        .args(["--keep-last", "1", "--execute", "--gc-type", "untagged manifests and unreferenced blobs"])
        .run();
    refused.assert_code(2);
    assert!(
        refused.stderr.contains("refusing --gc-type") && refused.stderr.contains("must stay"),
        "{}",
        refused.stderr
    );
    assert!(mutating_requests(&sim).is_empty(), "nothing was deleted");

    let run = prune(&sim).args(["--keep-last", "1", "--execute", "--gc", "wait"]).run();
    run.assert_code(0);
    assert_eq!(deleted_tags(&run), set(&["v2"]));
    assert_eq!(run.record("prune")["gc"]["type"], "unreferenced blobs only");
    let reader = crate::support::registry_reader(&sim, "reg");
    crate::support::fully_readable(&reader, "web", &v1).expect("the deployed untagged image survives GC");
}

#[test]
fn an_untagged_gc_type_is_refused_when_a_manifest_could_not_be_read() {
    let sim = web(vec![json!({"tags": [], "size_bytes": 1024}), json!({"tags": ["v1"], "size_bytes": 1024})]);
    let untagged = manifests_in(&sim, "web").iter().find(|m| m["tags"] == json!([])).unwrap()["digest"]
        .as_str()
        .unwrap()
        .to_string();
    sim.add_fault(Fault {
        method: Some("GET".into()),
        path: format!("/v2/reg/web/manifests/{untagged}"),
        kind: FaultKind::Status { status: 500, retry_after: None },
        times: 1000,
    });
    let run = prune(&sim)
        .args(["--keep-last", "1", "--execute", "--gc-type", "untagged manifests and unreferenced blobs"])
        .env("DO_RELEASE_RETRY_MAX_TIME", "200ms")
        .run();
    run.assert_code(2);
    assert!(run.stderr.contains("refusing --gc-type") && run.stderr.contains("could not be read"), "{}", run.stderr);
    assert!(mutating_requests(&sim).is_empty(), "nothing deleted, no GC");
}

#[test]
fn an_untagged_gc_type_is_decided_again_after_the_apps_are_read_again() {
    let sim = web(vec![
        json!({"tags": [], "size_bytes": 1024}),
        json!({"tags": ["v1"], "size_bytes": 1024}),
        json!({"tags": ["v2"], "size_bytes": 1024}),
    ]);
    let untagged = manifests_in(&sim, "web").iter().find(|m| m["tags"] == json!([])).unwrap()["digest"]
        .as_str()
        .unwrap()
        .to_string();
    // The look for a running GC right before deleting takes a while: meanwhile an app starts
    // running the untagged manifest, which the plan had found to be garbage.
    sim.add_fault(Fault {
        method: Some("GET".into()),
        path: "/v2/registries/reg/garbage-collection$".into(),
        kind: FaultKind::Latency { ms: 600 },
        times: 1,
    });
    let args = ["--keep-last", "1", "--execute", "--gc-type", "untagged manifests and unreferenced blobs"];
    let tool = prune(&sim).args(args);
    let run = std::thread::spawn(move || tool.run());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    // The fault is taken when the request arrives, before its latency: the window is open.
    while !sim.state().faults.is_empty() {
        assert!(std::time::Instant::now() < deadline, "no look for a running GC");
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    let mut spec = do_sim::default_app_spec("shop", "web", "v2");
    spec["services"][0]["image"] = json!({"registry_type": "DOCR", "repository": "web", "digest": untagged});
    sim.add_app(spec, true);
    let run = run.join().unwrap();
    run.assert_code(0);
    let record = run.record("prune");
    assert_eq!(record["gc"]["type"], "unreferenced blobs only", "{}", run.stderr);
    assert!(run.stderr.contains("not starting a GC of type"), "{}", run.stderr);
    assert!(manifests_in(&sim, "web").iter().any(|m| m["digest"] == untagged.as_str()), "the deployed manifest stays");
    let gcs = sim.snapshot()["registries"][0]["garbage_collections"].clone();
    assert_eq!(gcs[0]["type"], "unreferenced blobs only", "{gcs}");
}

#[test]
fn a_gc_start_answered_already_running_reports_the_running_one() {
    let sim = web(releases(2));
    // The start went through, but the answer says a GC is already running (another run's, or ours).
    sim.add_fault(Fault {
        method: Some("POST".into()),
        path: "/v2/registries/reg/garbage-collection".into(),
        kind: FaultKind::AnswerAfterApply {
            status: 409,
            body: r#"{"id":"conflict","message":"a garbage collection is already running"}"#.into(),
            content_type: Some("application/json".into()),
        },
        times: 1,
    });
    let run = prune(&sim).args(["--keep-last", "1", "--execute", "--gc", "start"]).run();
    run.assert_code(0);
    let gc = run.record("prune")["gc"].clone();
    let running = sim.snapshot()["registries"][0]["garbage_collections"].clone();
    assert_eq!(running.as_array().unwrap().len(), 1, "no second GC: {running}");
    assert_eq!((gc["already_running"].as_bool(), gc["uuid"].clone()), (Some(true), running[0]["uuid"].clone()), "{gc}");
    assert!(run.stderr.contains("is already running"), "{}", run.stderr);
}

#[test]
fn a_gc_that_cannot_start_leaves_the_record_and_the_outputs() {
    let sim = repositories(vec![("web", vec![image(&["v1"], 1), image(&["v2"], 1), image(&["v3"], 1)])], json!({}));
    sim.add_fault(Fault {
        method: Some("POST".into()),
        path: "/v2/registries/reg/garbage-collection".into(),
        kind: FaultKind::Status { status: 403, retry_after: None },
        times: 1,
    });
    let dir = tempfile::tempdir().unwrap();
    let outputs = dir.path().join("outputs");
    let run = prune(&sim)
        .args(["--keep-last", "1", "--execute"])
        .env("GITHUB_ACTIONS", "true")
        .env("GITHUB_OUTPUT", &outputs)
        .env("GITHUB_STEP_SUMMARY", dir.path().join("summary"))
        .run();
    run.assert_code(1);
    let record = run.record("prune");
    assert_eq!(deleted(&run).len(), 2);
    assert!(record["failed"].as_array().unwrap().is_empty());
    let error = record["gc"]["error"].as_str().unwrap();
    assert!(error.contains("403") && error.contains("could not start garbage collection"), "{error}");
    assert!(run.stderr.contains("the deletions are done, but garbage collection did not start"), "{}", run.stderr);
    let outputs = std::fs::read_to_string(outputs).unwrap();
    assert!(outputs.contains("deleted_count=2"), "{outputs}");
    assert!(
        sim.requests().iter().all(|r| !r.url.starts_with("/v2/registry/")),
        "never the deprecated family (412 with several registries)"
    );
}

#[test]
fn nothing_is_deleted_while_a_gc_runs() {
    let sim = repositories(vec![("web", vec![image(&["v1"], 1), image(&["v2"], 1)])], json!({}));
    sim.start_gc_with("reg", &[("waiting for write JWTs to expire", 60_000)], "succeeded").unwrap();
    // The simulator refuses a delete then, as the registry is read-only.
    let v1 = digest_of(&sim, "web", "v1");
    let (status, body) =
        call(&sim, "DELETE", &format!("/v2/registries/reg/repositories/web/digests/{v1}"), None, Some("tok"));
    assert_eq!(status, 409, "{body}");
    let run = prune(&sim).args(["--keep-last", "1", "--execute", "--timeout", "1s"]).run();
    run.assert_code(3);
    assert!(run.stderr.contains("nothing was deleted"), "{}", run.stderr);
    assert!(sim.requests().iter().filter(|r| r.method == "DELETE").count() == 1, "only the test's own refused delete");
    let record = run.record("prune");
    assert_eq!(record["failed"][0]["error"].as_str().unwrap().split(':').next(), Some("not attempted"));
}
