//! do-deploy follows only its own deployment and never rolls back over newer work, whatever
//! else happens to the app meanwhile (another image, a redeploy, a second run, an answer shaped
//! like the real API's, a lost answer, the deadline), and a release is checked after ACTIVE.
//! Each guard of the rollback is pinned alone.

use std::time::{Duration, Instant};

use do_sim::{Fault, FaultKind, Live, Outcome, Sim};
use serde_json::{json, Value};

use crate::support::{call, deploy, first_app_id as app_id, sim, Run, Tool};

fn next_deployment(sim: &Sim, outcome: Outcome, phase_ms: u64, live: Live) {
    let mut state = sim.state();
    state.apps[0].next_outcome = outcome;
    state.apps[0].next_phase_duration = Some(Duration::from_millis(phase_ms));
    state.apps[0].next_live = live;
}

fn requests(sim: &Sim, method: &str, fragment: &str) -> usize {
    sim.requests().iter().filter(|r| r.method == method && r.url.contains(fragment)).count()
}

/// Waits until the simulator has answered a request matching `method` and `fragment`.
fn wait_for(sim: &Sim, method: &str, fragment: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while requests(sim, method, fragment) == 0 {
        assert!(Instant::now() < deadline, "no {method} {fragment} came");
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn spawn(tool: Tool) -> std::thread::JoinHandle<Run> {
    std::thread::spawn(move || tool.run())
}

/// The app's spec with the web service pointed at `tag`.
fn spec_with(sim: &Sim, tag: &str) -> Value {
    let mut spec = sim.snapshot()["apps"][0]["spec"].clone();
    spec["services"][0]["image"] = json!({"registry_type": "DOCR", "repository": "web", "tag": tag});
    spec
}

fn deployments(sim: &Sim) -> Vec<Value> {
    sim.snapshot()["apps"][0]["deployments"].as_array().unwrap().clone()
}

#[test]
fn superseded_by_another_image_stops_without_rolling_back() {
    for rollback_flag in [true, false] {
        let sim = sim(30);
        next_deployment(&sim, Outcome::Success, 300, Live::Healthy);
        let mut tool = deploy(&sim).args(["--repository", "web", "--tag", "v1.0.0"]);
        if rollback_flag {
            tool = tool.args(["--rollback-on-failure"]);
        }
        let ours = spawn(tool);
        wait_for(&sim, "PUT", "/v2/apps/");
        // Someone deploys v1.1.0 while ours is still building.
        let (status, _) = call(
            &sim,
            "PUT",
            &format!("/v2/apps/{}", app_id(&sim)),
            Some(json!({"spec": spec_with(&sim, "v1.1.0")})),
            Some(&sim.token()),
        );
        assert_eq!(status, 200);
        let run = ours.join().unwrap();
        run.assert_code(1);
        let record = run.record("deploy");
        assert_eq!((record["outcome"].as_str(), record["phase"].as_str()), (Some("superseded"), Some("SUPERSEDED")));
        let newest = deployments(&sim).last().unwrap().clone();
        assert_eq!(record["superseded_by"]["deployment_id"], newest["id"]);
        assert_eq!(record["superseded_by"]["adopted"], false);
        assert_eq!(record["rollback"], Value::Null, "never rolled back over the newer deployment");
        assert!(
            run.stderr.contains(&format!("superseded by {}", newest["id"].as_str().unwrap()))
                && run.stderr.contains("nothing was rolled back"),
            "{}",
            run.stderr
        );
        assert_eq!(requests(&sim, "POST", "/rollback"), 0);
        // The newer deployment goes on to its end, untouched.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let newest = deployments(&sim).last().unwrap().clone();
            let shown = (newest["phase"].as_str(), newest["spec"]["services"][0]["image"]["tag"].as_str());
            if shown == (Some("ACTIVE"), Some("v1.1.0")) {
                break;
            }
            assert!(Instant::now() < deadline, "the newer deployment did not become ACTIVE: {shown:?}");
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

#[test]
fn superseded_by_a_redeploy_of_the_same_image_is_followed_to_its_end() {
    let sim = sim(30);
    next_deployment(&sim, Outcome::Success, 200, Live::Healthy);
    let ours = spawn(deploy(&sim).args(["--repository", "web", "--tag", "v1.0.0", "--rollback-on-failure"]));
    wait_for(&sim, "PUT", "/v2/apps/");
    // A redeploy from the control panel: the app's spec, which is now ours.
    let (status, _) =
        call(&sim, "POST", &format!("/v2/apps/{}/deployments", app_id(&sim)), Some(json!({})), Some(&sim.token()));
    assert_eq!(status, 200);
    let run = ours.join().unwrap();
    run.assert_code(0);
    let record = run.record("deploy");
    assert_eq!((record["outcome"].as_str(), record["phase"].as_str()), (Some("active"), Some("ACTIVE")));
    assert_eq!(record["superseded_by"]["adopted"], true);
    assert_eq!(record["deployment_id"], deployments(&sim).last().unwrap()["id"]);
}

#[test]
fn a_rollback_never_returns_over_newer_work() {
    let sim = sim(30);
    next_deployment(&sim, Outcome::DeployError, 80, Live::Healthy);
    // Fetching the failure's log takes a while: long enough for someone to deploy meanwhile.
    sim.add_fault(Fault {
        method: Some("GET".into()),
        path: "/_sim/logs/".into(),
        kind: FaultKind::Latency { ms: 4000 },
        times: 1,
    });
    let ours = spawn(deploy(&sim).args(["--repository", "web", "--tag", "v1.0.0", "--rollback-on-failure"]));
    // do-deploy is fetching the failure's log (the fault is taken) and will be for 4 s.
    crate::support::wait_until("do-deploy to fetch the failure's log", || sim.state().faults.is_empty());
    let (status, _) = call(
        &sim,
        "PUT",
        &format!("/v2/apps/{}", app_id(&sim)),
        Some(json!({"spec": spec_with(&sim, "v1.1.0")})),
        Some(&sim.token()),
    );
    assert_eq!(status, 200);
    let run = ours.join().unwrap();
    run.assert_code(4);
    let rollback = run.record("deploy")["rollback"].clone();
    let skipped = rollback["skipped"].as_str().unwrap_or_default();
    assert!(skipped.contains("a rollback would"), "{rollback}");
    assert_eq!(requests(&sim, "POST", "/rollback"), 0, "no rollback request at all");
    assert!(run.stderr.contains("no rollback:"), "{}", run.stderr);
}

#[test]
fn a_failed_deployment_rolls_back_when_nothing_newer_happened() {
    let sim = sim(30);
    let previous = deployments(&sim)[0]["id"].as_str().unwrap().to_string();
    next_deployment(&sim, Outcome::DeployError, 30, Live::Healthy);
    let run = deploy(&sim).args(["--repository", "web", "--tag", "v1.0.0", "--rollback-on-failure"]).run();
    run.assert_code(4);
    let rollback = run.record("deploy")["rollback"].clone();
    assert_eq!(
        (rollback["to_deployment_id"].as_str(), rollback["phase"].as_str()),
        (Some(previous.as_str()), Some("ACTIVE"))
    );
    assert_eq!(rollback["skipped"], Value::Null);
    assert!(run.stderr.contains("rolled back: deployment"), "{}", run.stderr);
    assert!(!run.stderr.contains("the rollback deployment"), "{}", run.stderr);
}

#[test]
fn a_rollback_refused_outright_is_told_and_not_looked_for() {
    let (_sim, run) = rollback_guarded_by(|sim, _| {
        sim.add_fault(Fault {
            method: Some("POST".into()),
            path: format!("/v2/apps/{}/rollback$", app_id(sim)),
            kind: FaultKind::Body {
                status: 422,
                body: json!({"id": "unprocessable_entity", "message": "the app cannot roll back now"}),
            },
            times: 1,
        });
    });
    run.assert_code(4);
    let rollback = run.record("deploy")["rollback"].clone();
    let error = rollback["error"].as_str().unwrap_or_default();
    assert!(error.contains("the app cannot roll back now"), "the API's refusal, not a search for it: {rollback}");
    assert_eq!(rollback["deployment_id"], Value::Null);
}

#[test]
fn a_rollback_that_itself_fails_is_said_to_have_failed() {
    let (_sim, run) = rollback_guarded_by(|sim, _| {
        // The rollback's own deployment ends in ERROR too.
        sim.state().apps[0].next_outcome = Outcome::DeployError;
    });
    run.assert_code(4);
    let rollback = run.record("deploy")["rollback"].clone();
    assert_eq!(rollback["phase"], "ERROR", "{rollback}");
    assert!(run.stderr.contains("the rollback deployment") && run.stderr.contains("ended ERROR"), "{}", run.stderr);
    assert!(!run.stderr.contains("rolled back: deployment"), "{}", run.stderr);
}

#[test]
fn two_runs_of_the_same_image_share_one_update_and_one_deployment() {
    // The second starts while the first's deployment runs: it follows that one.
    let sim = sim(30);
    next_deployment(&sim, Outcome::Success, 200, Live::Healthy);
    let first = spawn(deploy(&sim).args(["--repository", "web", "--tag", "v1.0.0"]));
    wait_for(&sim, "PUT", "/v2/apps/");
    let second = spawn(deploy(&sim).args(["--repository", "web", "--tag", "v1.0.0"]));
    let (first, second) = (first.join().unwrap(), second.join().unwrap());
    first.assert_code(0);
    second.assert_code(0);
    assert_eq!(first.record("deploy")["deployment_id"], second.record("deploy")["deployment_id"]);
    assert_eq!(requests(&sim, "PUT", "/v2/apps/"), 1, "one update between them");
    assert!(second.stderr.contains("already deploys this image; following it"), "{}", second.stderr);

    // Started at the same moment: both end following the same deployment, running the image.
    let sim = crate::support::sim(30);
    next_deployment(&sim, Outcome::Success, 150, Live::Healthy);
    let runs: Vec<_> = (0..2).map(|_| spawn(deploy(&sim).args(["--repository", "web", "--tag", "v1.0.0"]))).collect();
    let runs: Vec<Run> = runs.into_iter().map(|r| r.join().unwrap()).collect();
    for run in &runs {
        run.assert_code(0);
        assert_eq!(run.record("deploy")["phase"], "ACTIVE");
    }
    assert_eq!(
        runs[0].record("deploy")["deployment_id"],
        runs[1].record("deploy")["deployment_id"],
        "{}\n{}",
        runs[0].stderr,
        runs[1].stderr
    );
    assert!(requests(&sim, "POST", "/rollback") == 0);
}

#[test]
fn its_own_deployment_is_found_when_the_answer_lacks_it_and_specs_come_back_normalised() {
    let sim = sim(30);
    sim.state().quirks = do_sim::Quirks { update_without_pending: true, normalized_specs: true };
    let run = deploy(&sim).args(["--repository", "web", "--tag", "v1.0.0"]).run();
    run.assert_code(0);
    let record = run.record("deploy");
    assert_eq!(record["deployment_id"], deployments(&sim).last().unwrap()["id"]);
    assert_eq!(requests(&sim, "PUT", "/v2/apps/"), 1);
    // A rerun sees the image already running in the normalised answer.
    let again = deploy(&sim).args(["--repository", "web", "--tag", "v1.0.0"]).run();
    again.assert_code(0);
    assert_eq!(again.record("deploy")["outcome"], "unchanged");
    assert_eq!(requests(&sim, "PUT", "/v2/apps/"), 1);
}

#[test]
fn an_unreadable_answer_after_the_update_is_looked_up_before_anything_is_said() {
    for (status, body, content_type) in [
        (524, "<html><body>A timeout occurred</body></html>", Some("text/html")),
        (204, "", None),
        (200, "<html>maintenance</html>", Some("text/html")),
    ] {
        let sim = sim(30);
        sim.add_fault(Fault {
            method: Some("PUT".into()),
            path: format!("/v2/apps/{}$", app_id(&sim)),
            kind: FaultKind::AnswerAfterApply {
                status,
                body: body.into(),
                content_type: content_type.map(str::to_string),
            },
            times: 1,
        });
        let run = deploy(&sim).args(["--repository", "web", "--tag", "v1.0.0"]).run();
        run.assert_code(0);
        assert!(run.stderr.contains("the update was applied"), "{status}: {}", run.stderr);
        let record = run.record("deploy");
        assert_eq!(record["deployment_id"], deployments(&sim).last().unwrap()["id"], "{status}");
        assert_eq!(requests(&sim, "PUT", "/v2/apps/"), 1, "{status}: not sent twice");
    }
    // A 524 where the update did not happen: said as a fact, with the record.
    let sim = sim(30);
    sim.add_fault(Fault {
        method: Some("PUT".into()),
        path: format!("/v2/apps/{}$", app_id(&sim)),
        kind: FaultKind::Status { status: 524, retry_after: None },
        times: 1,
    });
    let run = deploy(&sim).args(["--repository", "web", "--tag", "v1.0.0"]).run();
    run.assert_code(1);
    assert!(
        run.stderr.contains("did not reach the app: its spec still runs the old image and no deployment started"),
        "{}",
        run.stderr
    );
    let record = run.record("deploy");
    assert_eq!(record["deployment_id"], Value::Null);
    assert_eq!(deployments(&sim).len(), 1, "nothing started");
}

#[test]
fn no_update_is_sent_after_the_deadline() {
    let sim = sim(30);
    // Resolving the tag takes longer than the whole run may.
    sim.add_fault(Fault {
        method: Some("GET".into()),
        path: "/v2/registries/example-registry/repositories/web/tags".into(),
        kind: FaultKind::Latency { ms: 60_000 },
        times: 1,
    });
    let run = deploy(&sim).args(["--repository", "web", "--tag", "v1.0.0", "--timeout", "1s"]).run();
    run.assert_code(3);
    assert_eq!(requests(&sim, "GET", "/tags"), 0, "the minute-long answer was not waited for");
    assert_eq!(requests(&sim, "PUT", "/"), 0, "no PUT in the request log");
    assert_eq!(deployments(&sim).len(), 1);
}

fn check_args(timeout: &str, extra: &[&str]) -> Vec<String> {
    let mut args: Vec<String> =
        ["--repository", "web", "--tag", "v1.1.0", "--check-path", "/healthz", "--check-timeout", timeout]
            .iter()
            .map(|s| s.to_string())
            .collect();
    args.extend(extra.iter().map(|s| s.to_string()));
    args
}

#[test]
fn the_release_is_checked_after_active() {
    // Healthy: the version header says v1.1.0.
    let sim = sim(30);
    let run = deploy(&sim)
        .args(check_args("3s", &["--expect-header", "x-app-version=^v1\\.1\\.0$", "--expect-body", "v1\\.1\\.0"]))
        .run();
    run.assert_code(0);
    let check = run.record("deploy")["check"].clone();
    assert_eq!(
        (check["passed"].as_bool(), check["status"].as_u64(), check["attempts"].as_u64()),
        (Some(true), Some(200), Some(1))
    );
    assert_eq!(check["url"], format!("{}/_sim/live/example-app/healthz", sim.url()));

    // A slow start: 500 for a while, then healthy.
    let sim = crate::support::sim(30);
    next_deployment(&sim, Outcome::Success, 30, Live::FailingFor { ms: 600 });
    let run = deploy(&sim).args(check_args("3s", &[])).run();
    run.assert_code(0);
    let check = run.record("deploy")["check"].clone();
    assert!(check["passed"] == true && check["attempts"].as_u64().unwrap() > 1, "{check}");
}

#[test]
fn a_check_that_keeps_failing_is_exit_4_and_rolls_back() {
    let sim = sim(30);
    let previous = deployments(&sim)[0]["id"].as_str().unwrap().to_string();
    next_deployment(&sim, Outcome::Success, 30, Live::Failing);
    let run = deploy(&sim).args(check_args("800ms", &["--rollback-on-failure"])).run();
    run.assert_code(4);
    let record = run.record("deploy");
    assert_eq!((record["outcome"].as_str(), record["failure"]["step"].as_str()), (Some("check_failed"), Some("check")));
    assert_eq!(record["check"]["status"], 500);
    assert!(record["check"]["body_excerpt"].as_str().unwrap().contains("upstream connect error"));
    assert!(run.stderr.contains("the check of") && run.stderr.contains("status 500"), "{}", run.stderr);
    assert_eq!(record["rollback"]["to_deployment_id"], previous.as_str());
    assert_eq!(record["rollback"]["phase"], "ACTIVE");
    // The rollback serves the previous version again.
    let agent: ureq::Agent = ureq::Agent::config_builder().proxy(None).build().into();
    let body =
        agent.get(format!("{}/_sim/live/example-app/", sim.url())).call().unwrap().body_mut().read_to_string().unwrap();
    assert_eq!(body, "example-app v1.2.0\n");
}

#[test]
fn a_wrong_version_is_caught_by_header_and_by_body() {
    for expectation in [["--expect-header", "x-app-version=^v1\\.1\\.0$"], ["--expect-body", "example-app v1\\.1\\.0"]]
    {
        let sim = sim(30);
        next_deployment(&sim, Outcome::Success, 30, Live::WrongVersion { version: "v1.2.0".into() });
        let run = deploy(&sim).args(check_args("500ms", &[])).args(expectation).run();
        run.assert_code(4);
        let check = run.record("deploy")["check"].clone();
        assert_eq!(check["passed"], false);
        let reason = check["reason"].as_str().unwrap();
        assert!(reason.contains("v1.2.0") || reason.contains("body does not match"), "{reason}");
        if expectation[0] == "--expect-header" {
            assert_eq!(check["headers"]["x-app-version"], "v1.2.0");
        }
    }
}

#[test]
fn check_flags_are_checked_before_any_request() {
    let sim = sim(30);
    for (args, expected) in [
        (vec!["--check-url", "http://example.com/health"], "plain http only to a loopback address"),
        (vec!["--check-path", "healthz"], "give a path like /healthz"),
        (vec!["--check-path", "/h", "--expect-body", "("], "not a regular expression"),
        (vec!["--expect-header", "x=y"], "need --check-path or --check-url"),
        (vec!["--check-path", "/h", "--expect-header", "novalue"], "give NAME=REGEX"),
    ] {
        let run = deploy(&sim).args(["--repository", "web", "--tag", "v1.1.0"]).args(&args).run();
        run.assert_code(2);
        assert!(run.stderr.contains(expected), "{args:?}: {}", run.stderr);
    }
    assert!(sim.requests().is_empty());
}

/// A failed deployment with --rollback-on-failure in which, right before the rollback's guard
/// reads the app again, `meddle` changes what the simulator answers; returns the run.
fn rollback_guarded_by(meddle: impl Fn(&Sim, &Value)) -> (Sim, Run) {
    // The window is a slow fetch of the failure's log; a run whose rollback came before the
    // change landed did not test the guard, so the scenario is made again (the assertions that
    // follow are about the run in which the change was seen).
    for _ in 0..5 {
        let sim = sim(30);
        next_deployment(&sim, Outcome::DeployError, 30, Live::Healthy);
        sim.add_fault(Fault {
            method: Some("GET".into()),
            path: "/_sim/logs/".into(),
            kind: FaultKind::Latency { ms: 1500 },
            times: 1,
        });
        let ours = spawn(deploy(&sim).args(["--repository", "web", "--tag", "v1.0.0", "--rollback-on-failure"]));
        wait_for(&sim, "GET", "/logs?type=");
        let (status, app) = call(&sim, "GET", &format!("/v2/apps/{}", app_id(&sim)), None, Some(&sim.token()));
        assert_eq!(status, 200);
        let before = sim.state().faults.len();
        meddle(&sim, &app);
        let added: Vec<(String, u32)> = {
            let state = sim.state();
            state.faults[before.min(state.faults.len())..].iter().map(|f| (f.path.clone(), f.times)).collect()
        };
        let run = ours.join().unwrap();
        let used = {
            let state = sim.state();
            added
                .iter()
                .all(|(path, times)| state.faults.iter().find(|f| &f.path == path).is_none_or(|f| f.times < *times))
        };
        if used {
            return (sim, run);
        }
    }
    panic!("in five tries, the change never landed before the rollback's guard read the app")
}

/// The next answers to the app's own read are `app`, changed by `change`.
fn answer_app_with(sim: &Sim, app: &Value, change: impl FnOnce(&mut Value)) {
    let mut body = app.clone();
    change(&mut body["app"]);
    sim.add_fault(Fault {
        method: Some("GET".into()),
        path: format!("/v2/apps/{}$", app_id(sim)),
        kind: FaultKind::Body { status: 200, body },
        times: 1000,
    });
}

fn skipped(run: &Run) -> String {
    run.assert_code(4);
    let rollback = run.record("deploy")["rollback"].clone();
    rollback["skipped"].as_str().unwrap_or_else(|| panic!("not skipped: {rollback}\n{}", run.stderr)).to_string()
}

#[test]
fn no_rollback_when_another_deployment_is_active_now() {
    let (sim, run) = rollback_guarded_by(|sim, app| {
        answer_app_with(sim, app, |app| app["active_deployment"]["id"] = json!("someone-elses-deployment"))
    });
    let why = skipped(&run);
    assert!(why.contains("deployment someone-elses-deployment is ACTIVE now"), "{why}");
    assert_eq!(requests(&sim, "POST", "/rollback"), 0, "not even validated");
}

#[test]
fn no_rollback_when_a_newer_deployment_is_still_in_progress() {
    let (sim, run) = rollback_guarded_by(|sim, app| {
        answer_app_with(sim, app, |app| {
            let mut newer = app["active_deployment"].clone();
            newer["id"] = json!("a-newer-one");
            newer["phase"] = json!("BUILDING");
            app["in_progress_deployment"] = newer;
        })
    });
    let why = skipped(&run);
    assert!(why.contains("deployment a-newer-one is BUILDING now: a rollback would supersede it"), "{why}");
    assert_eq!(requests(&sim, "POST", "/rollback"), 0);
}

#[test]
fn no_rollback_when_the_app_cannot_be_read_again() {
    let (sim, run) = rollback_guarded_by(|sim, _| {
        sim.add_fault(Fault {
            method: Some("GET".into()),
            path: format!("/v2/apps/{}$", app_id(sim)),
            kind: FaultKind::Status { status: 503, retry_after: None },
            times: 1000,
        });
    });
    let why = skipped(&run);
    assert!(why.contains("the app could not be read to make sure a rollback undoes nothing newer"), "{why}");
    assert_eq!(requests(&sim, "POST", "/rollback"), 0, "fails closed");
}

#[test]
fn no_rollback_when_nothing_was_active_when_the_run_began() {
    let sim = sim(30);
    // The app's only deployment is the one this run makes.
    sim.state().apps[0].deployments.clear();
    next_deployment(&sim, Outcome::DeployError, 30, Live::Healthy);
    let run = deploy(&sim).args(["--repository", "web", "--tag", "v1.0.0", "--rollback-on-failure"]).run();
    let why = skipped(&run);
    assert_eq!(why, "no deployment was ACTIVE when this run began");
    assert_eq!(requests(&sim, "POST", "/rollback"), 0);
}

#[test]
fn no_rollback_when_the_api_says_it_is_not_valid() {
    let (sim, run) = rollback_guarded_by(|sim, _| {
        sim.add_fault(Fault {
            method: Some("POST".into()),
            path: format!("/v2/apps/{}/rollback/validate", app_id(sim)),
            kind: FaultKind::Body { status: 200, body: json!({"valid": false, "error": {"message": "not today"}}) },
            times: 1,
        });
    });
    run.assert_code(4);
    let rollback = run.record("deploy")["rollback"].clone();
    assert_eq!(rollback["skipped"], Value::Null, "the guard passed");
    assert!(rollback["error"].as_str().unwrap_or_default().contains("is not valid: not today"), "{rollback}");
    let rollbacks = sim.requests().iter().filter(|r| r.method == "POST" && r.url.ends_with("/rollback")).count();
    assert_eq!(rollbacks, 0, "validated, refused, never sent");
}

#[test]
fn a_dry_run_of_the_image_already_running_says_unchanged() {
    let sim = sim(30);
    deploy(&sim).args(["--repository", "web", "--tag", "v1.0.0"]).run().assert_code(0);
    let dry = deploy(&sim).args(["--repository", "web", "--tag", "v1.0.0", "--dry-run"]).run();
    dry.assert_code(0);
    let record = dry.record("deploy");
    assert_eq!((record["outcome"].as_str(), record["changed"].as_bool()), (Some("unchanged"), Some(false)), "{record}");
    assert!(!dry.stderr.contains(" -> "), "no change is shown: {}", dry.stderr);

    // A deployment of v1.1.0 that failed leaves the app's spec naming it while v1.0.0 runs: the
    // dry run shows what runs before the arrow, never "X -> X".
    next_deployment(&sim, Outcome::DeployError, 30, Live::Healthy);
    deploy(&sim).args(["--repository", "web", "--tag", "v1.1.0"]).run().assert_code(4);
    let dry = deploy(&sim).args(["--repository", "web", "--tag", "v1.1.0", "--dry-run"]).run();
    dry.assert_code(0);
    let record = dry.record("deploy");
    let (v1_0, v1_1) =
        (crate::support::digest_in(&sim, "web", "v1.0.0"), crate::support::digest_in(&sim, "web", "v1.1.0"));
    assert_eq!(record["changed"], true, "{record}");
    assert_eq!(
        (record["components"][0]["image_before"].as_str(), record["components"][0]["image_after"].as_str()),
        (Some(format!("web@{v1_0}").as_str()), Some(format!("web@{v1_1}").as_str())),
        "{record}"
    );
    assert!(dry.stderr.contains(&format!("web@{v1_0} -> web@{v1_1}")), "{}", dry.stderr);
}
