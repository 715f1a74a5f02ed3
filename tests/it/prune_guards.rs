//! do-prune's guards, each pinned alone (issue 28): a saved plan applied after the world
//! changed, the grace period for recent untagged manifests, an untagged manifest whose time
//! cannot be read, the app's own deployments when the deployment list lacks them, a registry
//! that differs from a saved plan's, and an untagged GC type refused when a read failed.

use do_sim::{Fault, FaultKind, Sim};
use serde_json::{json, Value};

use crate::support::{digest_in, manifests_in, mutating_requests, prune, world, Run};

fn world(manifests: Vec<Value>) -> Sim {
    world::registry("professional", vec![("web", manifests)]).step_ms(30).unlimited().start()
}

fn releases(n: usize) -> Vec<Value> {
    (1..=n).map(|i| json!({"tags": [format!("v{i}")], "size_bytes": 1024})).collect()
}

/// A plan of `--keep-last 1` saved with `--plan-out`, in a directory that lives as long as the
/// first value does.
fn saved_plan(sim: &Sim) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let plan = dir.path().join("plan.json");
    prune(sim).args(["--keep-last", "1", "--plan-out", plan.to_str().unwrap()]).run().assert_code(0);
    (dir, plan)
}

fn tags(sim: &Sim) -> Vec<String> {
    let mut tags: Vec<String> = manifests_in(sim, "web")
        .iter()
        .flat_map(|m| m["tags"].as_array().unwrap().iter().map(|t| t.as_str().unwrap().to_string()).collect::<Vec<_>>())
        .collect();
    tags.sort();
    tags
}

fn skipped(run: &Run) -> Vec<(String, String)> {
    run.record("prune")["skipped"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["digest"].as_str().unwrap().to_string(), s["reason"].as_str().unwrap().to_string()))
        .collect()
}

#[test]
fn an_image_deployed_after_the_plan_was_saved_survives_its_apply() {
    let sim = world(releases(3));
    let (_dir, plan) = saved_plan(&sim);
    // Between the plan and its apply, an app starts running v1.
    let v1 = digest_in(&sim, "web", "v1");
    sim.add_app(do_sim::default_app_spec("shop", "web", "v1"), true);
    let run = prune(&sim).args(["--apply", plan.to_str().unwrap(), "--execute", "--gc", "off"]).run();
    run.assert_code(0);
    assert_eq!(tags(&sim), ["v1", "v3"], "v2 went as planned; v1 is deployed now");
    let skipped = skipped(&run);
    assert!(
        skipped.iter().any(|(d, r)| *d == v1 && r.starts_with("now protected:") && r.contains("of app shop")),
        "{skipped:?}"
    );
}

#[test]
fn a_saved_plan_never_deletes_what_became_the_newest_tagged_manifest() {
    let sim = world(releases(3));
    let (_dir, plan) = saved_plan(&sim);
    // v3, the newest, is deleted by someone else: v2 is now the repository's newest.
    let v3 = digest_in(&sim, "web", "v3");
    sim.state()
        .registries
        .get_mut("reg")
        .unwrap()
        .repositories
        .get_mut("web")
        .unwrap()
        .edit(|m| m.retain(|m| m.digest != v3));
    let v2 = digest_in(&sim, "web", "v2");
    let run = prune(&sim).args(["--apply", plan.to_str().unwrap(), "--execute", "--gc", "off"]).run();
    run.assert_code(0);
    assert_eq!(tags(&sim), ["v2"], "v1 went; v2 stays as the newest");
    assert!(skipped(&run).iter().any(|(d, r)| *d == v2 && r.contains("newest tagged manifest")), "{:?}", skipped(&run));
}

#[test]
fn a_saved_untagged_deletion_that_is_needed_now_is_skipped() {
    let sim = world(vec![json!({"tags": [], "size_bytes": 1024}), json!({"tags": ["v1"], "size_bytes": 1024})]);
    let (_dir, plan) = saved_plan(&sim);
    let untagged = manifests_in(&sim, "web").iter().find(|m| m["tags"] == json!([])).unwrap()["digest"]
        .as_str()
        .unwrap()
        .to_string();
    // An app now runs the untagged manifest by digest.
    let mut spec = do_sim::default_app_spec("shop", "web", "v1");
    spec["services"][0]["image"] = json!({"registry_type": "DOCR", "repository": "web", "digest": untagged});
    sim.add_app(spec, true);
    let run = prune(&sim).args(["--apply", plan.to_str().unwrap(), "--execute", "--gc", "off"]).run();
    run.assert_code(0);
    assert!(manifests_in(&sim, "web").iter().any(|m| m["digest"] == untagged.as_str()), "kept");
    assert!(skipped(&run).iter().any(|(d, r)| *d == untagged && r.contains("now protected")), "{:?}", skipped(&run));
    assert!(!mutating_requests(&sim).iter().any(|r| r.url.contains(&untagged)));
}

#[test]
fn a_registry_other_than_the_saved_plans_is_refused() {
    let sim = world(releases(2));
    let (_dir, plan) = saved_plan(&sim);
    let run = prune(&sim).args(["--apply", plan.to_str().unwrap(), "--registry", "other", "--execute"]).run();
    run.assert_code(2);
    assert!(run.stderr.contains("--registry other differs from the saved plan's registry reg"), "{}", run.stderr);
    assert!(mutating_requests(&sim).is_empty());
}

#[test]
fn untagged_manifests_within_the_grace_period_or_with_an_unreadable_time_stay() {
    let sim = world(vec![
        json!({"tags": [], "size_bytes": 1024, "updated_at": "yesterday-ish"}),
        json!({"tags": ["v1"], "size_bytes": 1024}),
    ]);
    // One pushed a minute ago, untagged (a push in progress).
    let pushed = do_sim::content::image("in flight", 512);
    let digest = pushed.digest.clone();
    sim.state().store("reg", "web", vec![pushed], None, std::time::Instant::now()).unwrap();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
    let a_minute_ago = do_core::duration::format_epoch(now - 60);
    sim.state().registries.get_mut("reg").unwrap().repositories.get_mut("web").unwrap().edit(|manifests| {
        manifests.iter_mut().find(|m| m.digest == digest).unwrap().updated_at = a_minute_ago.clone();
    });
    let run = prune(&sim).args(["--keep-last", "1"]).run();
    run.assert_code(0);
    let web = &run.record("prune")["repositories"][0];
    assert_eq!(web["untagged_kept"]["count"], 2, "{web}");
    assert!(web["deleted"].as_array().unwrap().is_empty(), "{web}");
    // Without the grace period, the recent one goes; the unreadable time still keeps the other.
    let run = prune(&sim).args(["--keep-last", "1", "--untagged-grace", "30s"]).run();
    let web = &run.record("prune")["repositories"][0];
    assert_eq!(
        (web["untagged_kept"]["count"].as_u64(), web["deleted"].as_array().unwrap().len()),
        (Some(1), 1),
        "{web}"
    );
}

#[test]
fn the_apps_own_deployments_protect_when_its_deployment_list_lacks_them() {
    let sim = world(releases(3));
    let app = sim.add_app(do_sim::default_app_spec("shop", "web", "v1"), true);
    // The spec moves on to v3, but the app's ACTIVE deployment still runs v1: the list is empty.
    let mut state = sim.state();
    let found = state.apps.iter_mut().find(|a| a.id == app).unwrap();
    found.spec["services"][0]["image"]["tag"] = json!("v3");
    drop(state);
    sim.add_fault(Fault {
        method: Some("GET".into()),
        path: format!("/v2/apps/{app}/deployments"),
        kind: FaultKind::Body { status: 200, body: json!({"deployments": [], "meta": {"total": 0}}) },
        times: 10,
    });
    let run = prune(&sim).args(["--keep-last", "0", "--allow-empty"]).run();
    run.assert_code(0);
    let kept: Vec<String> = run.record("prune")["repositories"][0]["kept"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| format!("{} {}", k["tags"][0].as_str().unwrap_or(""), k["reason"].as_str().unwrap()))
        .collect();
    assert!(kept.iter().any(|k| k.starts_with("v1 deployment ") && k.ends_with("of app shop")), "{kept:?}");
    assert!(kept.iter().any(|k| k.starts_with("v3 in the spec of app shop")), "{kept:?}");
}

#[test]
fn an_untagged_gc_type_is_refused_when_a_manifest_could_not_be_read() {
    let sim = world(vec![json!({"tags": [], "size_bytes": 1024}), json!({"tags": ["v1"], "size_bytes": 1024})]);
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
    let sim = world(vec![
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
fn deletions_stop_at_the_deadline_and_the_rest_are_never_sent() {
    let sim = world(releases(10));
    // Each deletion takes 600 ms: nine of them take 5.4 s, and planning takes a fraction of a
    // second, so the 3 s deadline falls between deletions.
    sim.add_fault(Fault {
        method: Some("DELETE".into()),
        path: "/v2/registries/reg/repositories/web/digests/".into(),
        kind: FaultKind::Latency { ms: 600 },
        times: 1000,
    });
    let run = prune(&sim)
        .args(["--keep-last", "1", "--execute", "--gc", "off", "--concurrency", "1", "--timeout", "3s"])
        .run();
    run.assert_code(3);
    let record = run.record("prune");
    let not_attempted: Vec<String> = record["failed"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["error"].as_str().unwrap_or("").starts_with("not attempted: the deadline"))
        .map(|f| f["digest"].as_str().unwrap().to_string())
        .collect();
    assert!(!not_attempted.is_empty(), "some deletions were left for after the deadline: {record}");
    let sent: Vec<String> =
        mutating_requests(&sim).into_iter().filter(|r| r.method == "DELETE").map(|r| r.url).collect();
    assert!(!sent.is_empty(), "some deletions were made before it");
    for digest in &not_attempted {
        assert!(!sent.iter().any(|url| url.ends_with(digest.as_str())), "{digest} was sent after all");
        assert!(manifests_in(&sim, "web").iter().any(|m| m["digest"] == digest.as_str()), "{digest} is still there");
    }
    assert!(run.stderr.contains("the deadline (--timeout) passed before every deletion was made"), "{}", run.stderr);
}

#[test]
fn a_gc_start_answered_already_running_reports_the_running_one() {
    let sim = world(releases(2));
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

/// A platform image of the kept index, also tagged long ago (`v0-amd64`): the policy would
/// delete it whole, the closure needs it.
fn index_with_an_old_tagged_child() -> (Sim, String) {
    let platforms = ["linux/amd64", "linux/arm64"];
    let sim = world(vec![json!({"tags": ["v2"], "size_bytes": 1024, "platforms": platforms})]);
    let v2 = digest_in(&sim, "web", "v2");
    let index = manifests_in(&sim, "web").into_iter().find(|m| m["digest"] == v2.as_str()).unwrap();
    let amd64 = index["children"][0].as_str().unwrap().to_string();
    sim.state().registries.get_mut("reg").unwrap().repositories.get_mut("web").unwrap().edit(|manifests| {
        let child = manifests.iter_mut().find(|m| m.digest == amd64).unwrap();
        child.tags = vec!["v0-amd64".into()];
        child.updated_at = "2020-01-01T00:00:00Z".into();
    });
    (sim, amd64)
}

#[test]
fn a_tagged_manifest_a_kept_index_holds_stays_whatever_the_policy_says() {
    let (sim, amd64) = index_with_an_old_tagged_child();
    let run = prune(&sim).args(["--keep-last", "1", "--execute", "--gc", "off"]).run();
    run.assert_code(0);
    assert!(manifests_in(&sim, "web").iter().any(|m| m["digest"] == amd64.as_str()), "the index stays whole");
    let record = run.record("prune");
    let kept = record["repositories"][0]["kept"].as_array().unwrap();
    let reason = kept.iter().find(|k| k["digest"] == amd64.as_str()).map(|k| k["reason"].clone());
    assert_eq!(
        reason,
        Some(json!(format!("the linux/amd64 image of index {}, which is kept", &digest_in(&sim, "web", "v2")[7..19])))
    );
    assert!(mutating_requests(&sim).is_empty(), "nothing to delete: {:?}", mutating_requests(&sim));
}

/// Four releases, each signed (a repository with artifacts), and reads of `v1` failing for good.
fn signed_with_an_unreadable_release() -> (Sim, String) {
    let manifests: Vec<Value> = (1..=4)
        .flat_map(|i| {
            [json!({"tags": [format!("v{i}")], "size_bytes": 1024}), json!({"signature_of": format!("v{i}")})]
        })
        .collect();
    let sim = world(manifests);
    let v1 = digest_in(&sim, "web", "v1");
    sim.add_fault(Fault {
        method: Some("GET".into()),
        path: format!("/v2/reg/web/manifests/{v1}"),
        kind: FaultKind::Status { status: 500, retry_after: None },
        times: 1000,
    });
    (sim, v1)
}

#[test]
fn a_release_whose_read_fails_where_artifacts_live_blocks_the_repository_and_is_kept_as_such() {
    let (sim, v1) = signed_with_an_unreadable_release();
    let run = prune(&sim)
        .args(["--keep-last", "2", "--execute", "--gc", "off"])
        .env("DO_RELEASE_RETRY_MAX_TIME", "200ms")
        .run();
    run.assert_code(1);
    assert!(mutating_requests(&sim).is_empty(), "nothing deleted: it may be a signature of a kept image");
    let web = &run.record("prune")["repositories"][0];
    assert!(web["blocked"].as_str().unwrap().contains("manifest read(s) failed"), "{web}");
    let kept: Vec<(String, String)> = web["kept"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| (k["digest"].as_str().unwrap().to_string(), k["reason"].as_str().unwrap().to_string()))
        .collect();
    let v2 = digest_in(&sim, "web", "v2");
    for release in [&v1, &v2] {
        let reason = kept.iter().find(|(d, _)| d == release).map(|(_, r)| r.as_str()).unwrap_or("not kept");
        assert!(reason.starts_with("nothing in this repository is deleted"), "{release}: {reason}");
    }
    let signatures: Vec<String> =
        web["artifacts"].as_array().unwrap().iter().map(|a| a["digest"].as_str().unwrap().to_string()).collect();
    assert_eq!(signatures.len(), 4);
    assert!(kept.iter().all(|(d, _)| !signatures.contains(d)), "artifacts are never among the kept images: {kept:?}");
    assert_eq!(kept.len(), 4, "the four releases, each once: {kept:?}");
}

#[test]
fn a_saved_plan_applied_where_a_read_now_fails_keeps_its_releases_and_lists_no_garbage_among_them() {
    let mut manifests = releases(3);
    manifests.insert(0, json!({"tags": [], "size_bytes": 1024}));
    manifests.insert(0, json!({"tags": [], "size_bytes": 1024}));
    let sim = world(manifests);
    let (_dir, plan) = saved_plan(&sim);
    let saved: Value = serde_json::from_str(&std::fs::read_to_string(&plan).unwrap()).unwrap();
    let untagged_planned =
        saved["repositories"][0]["deleted"].as_array().unwrap().iter().filter(|d| d["all_tags"] == json!([])).count();
    assert_eq!(untagged_planned, 2, "the plan deletes the garbage: {saved}");
    let v3 = digest_in(&sim, "web", "v3");
    sim.add_fault(Fault {
        method: Some("GET".into()),
        path: format!("/v2/reg/web/manifests/{v3}"),
        kind: FaultKind::Status { status: 500, retry_after: None },
        times: 1000,
    });
    let run = prune(&sim)
        .args(["--apply", plan.to_str().unwrap(), "--execute", "--gc", "off"])
        .env("DO_RELEASE_RETRY_MAX_TIME", "200ms")
        .run();
    run.assert_code(1);
    assert!(mutating_requests(&sim).is_empty(), "nothing deleted while what v3 needs is unknown");
    let web = &run.record("prune")["repositories"][0];
    let kept = web["kept"].as_array().unwrap();
    assert!(kept.iter().all(|k| k["tags"] != json!([])), "garbage is never listed as a kept image: {kept:?}");
    assert_eq!(kept.len(), 3, "{kept:?}");
}

#[test]
fn an_applied_plan_lists_its_tagged_deletions_before_the_untagged_ones() {
    let mut manifests = vec![json!({"tags": [], "size_bytes": 1024}), json!({"tags": [], "size_bytes": 1024})];
    manifests.extend((1..=3).flat_map(|i| {
        [json!({"tags": [format!("v{i}")], "size_bytes": 1024}), json!({"signature_of": format!("v{i}")})]
    }));
    let sim = world(manifests);
    let (_dir, plan) = saved_plan(&sim);
    let run = prune(&sim).args(["--apply", plan.to_str().unwrap(), "--execute", "--gc", "off"]).run();
    run.assert_code(0);
    let deleted = run.record("prune")["repositories"][0]["deleted"].as_array().unwrap().clone();
    let untagged: Vec<bool> = deleted.iter().map(|d| d["all_tags"] == json!([])).collect();
    assert_eq!(untagged.iter().filter(|u| **u).count(), 2, "{deleted:?}");
    assert_eq!(untagged.iter().filter(|u| !**u).count(), 4, "v1, v2 and their signatures: {deleted:?}");
    assert!(untagged.windows(2).all(|w| !w[0] || w[1]), "tagged deletions first, then untagged: {deleted:?}");
}
