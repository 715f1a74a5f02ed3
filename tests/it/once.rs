//! Nothing is done twice: after an answer lost on the way back, or a run killed and run again,
//! the tools look before they act, so one rollback, one deployment, one GC and each deletion
//! happen once.

use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::time::Duration;

use do_sim::{Fault, FaultKind, Outcome, Sim};
use serde_json::{json, Value};

use crate::support::{sim, wait_until, world, Tool, DEPLOY, PRUNE};

#[test]
fn a_lost_answer_to_a_rollback_does_not_roll_back_twice() {
    let sim = sim(30);
    let app = sim.state().apps[0].id.clone();
    sim.state().apps[0].next_outcome = Outcome::DeployError;
    sim.add_fault(Fault {
        method: Some("POST".into()),
        path: format!("/v2/apps/{app}/rollback$"),
        kind: FaultKind::DropAfterApply,
        times: 1,
    });
    let run = Tool::against(DEPLOY, &sim)
        .args([
            "--app",
            "example-app",
            "--repository",
            "web",
            "--tag",
            "v1.0.0",
            "--interval",
            "30ms",
            "--rollback-on-failure",
        ])
        .run();
    run.assert_code(4);
    let rollback = run.record("deploy")["rollback"].clone();
    assert_eq!(rollback["phase"], "ACTIVE", "{rollback}");
    let posts: Vec<u16> = sim
        .requests()
        .into_iter()
        .filter(|r| r.method == "POST" && r.url.ends_with("/rollback"))
        .map(|r| r.status)
        .collect();
    assert_eq!(posts, [0], "one rollback request, whose answer was lost");
    let snapshot = sim.snapshot();
    let rollbacks: Vec<&Value> = snapshot["apps"][0]["deployments"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["cause"] == "manual rollback")
        .collect();
    assert_eq!(rollbacks.len(), 1, "one rollback deployment");
    assert_eq!(rollbacks[0]["id"], rollback["deployment_id"]);
}

#[test]
fn a_lost_answer_to_a_spec_update_does_not_deploy_twice() {
    let sim = sim(30);
    let app = sim.state().apps[0].id.clone();
    sim.add_fault(Fault {
        method: Some("PUT".into()),
        path: format!("/v2/apps/{app}$"),
        kind: FaultKind::DropAfterApply,
        times: 1,
    });
    let run = Tool::against(DEPLOY, &sim)
        .args(["--app", "example-app", "--repository", "web", "--tag", "v1.0.0", "--interval", "30ms"])
        .run();
    run.assert_code(0);
    assert!(run.stderr.contains("looking at the app before saying anything"), "{}", run.stderr);
    let puts: Vec<u16> = sim.requests().into_iter().filter(|r| r.method == "PUT").map(|r| r.status).collect();
    assert_eq!(puts, [0], "one update, whose answer was lost, not sent again");
    let snapshot = sim.snapshot();
    let deployments = snapshot["apps"][0]["deployments"].as_array().unwrap();
    assert_eq!(deployments.len(), 2);
    assert_eq!(run.record("deploy")["deployment_id"], deployments[1]["id"]);
}

#[test]
fn a_lost_answer_to_a_gc_start_does_not_start_another() {
    let sim = sim(30);
    sim.add_fault(Fault {
        method: Some("POST".into()),
        path: "/v2/registries/example-registry/garbage-collection$".into(),
        kind: FaultKind::DropAfterApply,
        times: 1,
    });
    let run = Tool::against(PRUNE, &sim).args(["--keep-last", "0", "--execute"]).run();
    run.assert_code(0);
    let posts: Vec<u16> = sim.requests().into_iter().filter(|r| r.method == "POST").map(|r| r.status).collect();
    assert_eq!(posts, [0], "one GC start, whose answer was lost");
    let snapshot = sim.snapshot();
    let gcs = snapshot["registries"][0]["garbage_collections"].as_array().unwrap();
    assert_eq!(gcs.len(), 1);
    assert_eq!(run.record("prune")["gc"]["uuid"], gcs[0]["uuid"]);
}

fn spawn(binary: &str, sim: &Sim, args: &[&str]) -> std::process::Child {
    Command::new(binary)
        .args(args)
        .env("DIGITALOCEAN_API_URL", sim.url())
        .env("DIGITALOCEAN_ACCESS_TOKEN", sim.token())
        .env("DO_RELEASE_RETRY_BASE_DELAY", "20ms")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

#[test]
fn a_prune_killed_midway_and_run_again_deletes_nothing_twice() {
    let manifests: Vec<Value> = (0..40).map(|i| json!({"tags": [format!("v{i}")], "size_bytes": 1000})).collect();
    let sim = world::registry("basic", vec![("web", manifests)]).start();
    sim.add_fault(Fault {
        method: Some("DELETE".into()),
        path: "/v2/".into(),
        kind: FaultKind::Latency { ms: 60 },
        times: 10_000,
    });
    let mut first = spawn(PRUNE, &sim, &["--keep-last", "2", "--execute", "--gc", "off", "--concurrency", "2"]);
    wait_until("some deletions happened", || sim.requests().iter().filter(|r| r.method == "DELETE").count() >= 8);
    first.kill().unwrap();
    first.wait().unwrap();
    let deleted_before = sim.requests().iter().filter(|r| r.method == "DELETE" && r.status == 204).count();
    assert!(deleted_before < 38, "the first run was interrupted ({deleted_before} deleted)");
    sim.state().faults.clear();
    let rerun = Tool::against(PRUNE, &sim).args(["--keep-last", "2", "--execute", "--gc", "off"]).run();
    rerun.assert_code(0);
    // Every DELETE sent, whatever its answer. The killed run's last requests may still be in
    // the simulator's latency when the rerun lists, so the rerun can ask again for one of them;
    // that second ask must find it gone (404). Nothing is deleted twice, and nothing else is
    // asked twice.
    let mut deletes: BTreeMap<String, Vec<u16>> = BTreeMap::new();
    for request in sim.requests().into_iter().filter(|r| r.method == "DELETE") {
        deletes.entry(request.url).or_default().push(request.status);
    }
    assert_eq!(deletes.len(), 38, "every expired manifest deleted");
    for (url, statuses) in &deletes {
        assert_eq!(statuses.iter().filter(|s| **s == 204).count(), 1, "{url}: {statuses:?}");
        assert!(statuses.len() == 1 || statuses == &[204, 404], "{url} asked again for more than a race: {statuses:?}");
    }
    let asked_again = deletes.values().filter(|s| s.len() > 1).count();
    assert!(asked_again <= 2, "at most the killed run's requests in flight (--concurrency 2): {asked_again}");
    let remaining = sim.snapshot()["registries"][0]["repositories"][0]["manifests"].as_array().unwrap().len();
    assert_eq!(remaining, 2);
}

#[test]
fn a_deployment_wait_killed_and_rerun_follows_the_same_deployment() {
    let sim = sim(30);
    sim.state().apps[0].next_phase_duration = Some(Duration::from_millis(300));
    let args = ["--app", "example-app", "--repository", "web", "--tag", "v1.0.0", "--interval", "30ms"];
    let mut first = spawn(DEPLOY, &sim, &args);
    wait_until("the deployment exists", || sim.snapshot()["apps"][0]["deployments"].as_array().unwrap().len() == 2);
    first.kill().unwrap();
    first.wait().unwrap();
    let id = sim.snapshot()["apps"][0]["deployments"][1]["id"].as_str().unwrap().to_string();
    let rerun = Tool::against(DEPLOY, &sim).args(args).run();
    rerun.assert_code(0);
    assert_eq!(rerun.record("deploy")["deployment_id"], id.as_str());
    assert_eq!(rerun.record("deploy")["phase"], "ACTIVE");
    assert_eq!(sim.requests().iter().filter(|r| r.method == "PUT").count(), 1);
    assert_eq!(sim.snapshot()["apps"][0]["deployments"].as_array().unwrap().len(), 2);
}
