//! do-deploy against the simulator's App Platform.

use std::time::Duration;

use do_sim::{Fault, FaultKind, Outcome, Sim};
use serde_json::{json, Value};

use crate::support::{deploy, first_app_id as app_id, mutating_requests, sim, world, Run, Tool, DEPLOY, FAST};

fn app_spec(sim: &Sim) -> Value {
    sim.snapshot()["apps"][0]["spec"].clone()
}

fn next_deployment(sim: &Sim, outcome: Outcome, phase_ms: u64) {
    let mut state = sim.state();
    state.apps[0].next_outcome = outcome;
    state.apps[0].next_phase_duration = Some(Duration::from_millis(phase_ms));
}

fn puts(sim: &Sim) -> Vec<do_sim::LoggedRequest> {
    sim.requests().into_iter().filter(|r| r.method == "PUT").collect()
}

fn done(run: &Run) -> Value {
    run.assert_code(0);
    run.record("deploy")
}

#[test]
fn pins_by_digest_and_leaves_the_rest_of_the_spec_unchanged() {
    let sim = sim(40);
    let before = app_spec(&sim);
    let digest = crate::support::digest_in(&sim, "web", "v1.1.0");
    let record = done(&deploy(&sim).args(["--repository", "web", "--tag", "v1.1.0"]).run());
    assert_eq!(record["phase"], "ACTIVE");
    assert_eq!(record["changed"], true);
    assert_eq!(record["image"], format!("web@{digest}"));
    assert_eq!(
        record["components"],
        json!([{"name": "web", "kind": "service", "image_before": "web:v1.2.0", "image_after": format!("web@{digest}"), "deploy_on_push_disabled": false}])
    );
    let after = app_spec(&sim);
    assert_eq!(after["services"][0]["image"], json!({"registry_type": "DOCR", "repository": "web", "digest": digest}));
    let (mut rest_after, mut rest_before) = (after.clone(), before.clone());
    rest_after["services"][0]["image"] = Value::Null;
    rest_before["services"][0]["image"] = Value::Null;
    assert_eq!(rest_after, rest_before, "only the image changed");
    // The encrypted secret went back exactly as the API gave it.
    let put = &puts(&sim)[0];
    let body: Value = serde_json::from_str(put.body.as_deref().unwrap()).unwrap();
    assert_eq!(body["spec"]["services"][0]["envs"], before["services"][0]["envs"]);
    assert!(put.body.as_deref().unwrap().contains("EV[1:c2ltdWxhdGVk:ZW5jcnlwdGVkLXNlY3JldA==]"));
    // The deployment followed is the one the update created.
    let deployments = sim.snapshot()["apps"][0]["deployments"].clone();
    assert_eq!(record["deployment_id"], deployments[1]["id"]);
    assert_eq!(record["previous_deployment_id"], deployments[0]["id"]);
    assert_eq!(deployments[1]["phase"], "ACTIVE");
}

#[test]
fn pin_tag_writes_the_tag_and_no_digest() {
    let sim = sim(40);
    let record = done(
        &deploy(&sim).args(["--image", "registry.digitalocean.com/example-registry/web:v1.0.0", "--pin", "tag"]).run(),
    );
    assert_eq!(record["image"], "web:v1.0.0");
    assert_eq!(
        app_spec(&sim)["services"][0]["image"],
        json!({"registry_type": "DOCR", "repository": "web", "tag": "v1.0.0"})
    );
}

fn two_component_sim() -> Sim {
    world::seeded(json!({
        "registries": [{"name": "reg", "repositories": [
            {"name": "web", "manifests": [{"tags": ["v1"], "size_bytes": 10}, {"tags": ["v2"], "size_bytes": 10}]},
            {"name": "api", "manifests": [{"tags": ["v1"], "size_bytes": 10}]}
        ]}],
        "apps": [{"spec": {"name": "shop", "services": [
            {"name": "web", "image": {"registry_type": "DOCR", "repository": "web", "tag": "v1", "deploy_on_push": {"enabled": true}}},
            {"name": "api", "image": {"registry_type": "DOCR", "repository": "api", "tag": "v1"}}
        ], "workers": [{"name": "queue", "image": {"registry_type": "DOCR", "repository": "web", "tag": "v1"}}]}}]
    }))
    .step_ms(40)
    .start()
}

#[test]
fn every_component_running_the_repository_changes_unless_restricted() {
    let sim = two_component_sim();
    let shop = || Tool::against(DEPLOY, &sim).args(FAST).args(["--app", "shop", "--repository", "web", "--tag", "v2"]);
    let record = done(&shop().args(["--component", "queue"]).run());
    let names: Vec<&str> =
        record["components"].as_array().unwrap().iter().map(|c| c["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["queue"]);
    let spec = app_spec(&sim);
    assert_eq!(spec["services"][0]["image"]["tag"], "v1", "web was not selected");
    let record = done(&shop().run());
    let names: Vec<&str> =
        record["components"].as_array().unwrap().iter().map(|c| c["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["web", "queue"]);
    assert_eq!(record["components"][0]["deploy_on_push_disabled"], true);
    let spec = app_spec(&sim);
    assert_eq!(spec["services"][0]["image"]["deploy_on_push"], json!({"enabled": false}));
    assert_eq!(
        spec["services"][1]["image"],
        json!({"registry_type": "DOCR", "repository": "api", "tag": "v1"}),
        "api untouched"
    );

    let before = mutating_requests(&sim).len();
    let run = shop().args(["--component", "nope"]).run();
    run.assert_code(2);
    assert!(
        run.stderr.contains("the app has no component \"nope\"; it has: service web (web@sha256:"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("service api (api:v1)") && run.stderr.contains("worker queue"), "{}", run.stderr);
    let run = Tool::against(DEPLOY, &sim)
        .args(["--app", "shop", "--repository", "other", "--tag", "v1", "--registry", "reg"])
        .run();
    run.assert_code(2);
    assert_eq!(mutating_requests(&sim).len(), before, "refusals change nothing");
}

#[test]
fn already_running_the_image_is_a_no_op_unless_forced() {
    let sim = sim(30);
    done(&deploy(&sim).args(["--repository", "web", "--tag", "v1.1.0"]).run());
    let again = done(&deploy(&sim).args(["--repository", "web", "--tag", "v1.1.0"]).run());
    assert_eq!(again["changed"], false);
    assert_eq!(again["phase"], "ACTIVE");
    assert_eq!(puts(&sim).len(), 1, "no second update");
    let forced = done(&deploy(&sim).args(["--repository", "web", "--tag", "v1.1.0", "--force"]).run());
    assert_eq!(forced["changed"], true);
    assert_eq!(puts(&sim).len(), 2);
}

fn start_busy_deployment(sim: &Sim, outcome: Outcome, phase_ms: u64) -> String {
    next_deployment(sim, outcome, phase_ms);
    let mut state = sim.state();
    let created = state.create_deployment(0, "someone else", std::time::Instant::now());
    created["id"].as_str().unwrap().to_string()
}

#[test]
fn if_busy_wait_cancel_and_fail() {
    let sim = sim(30);
    let busy = start_busy_deployment(&sim, Outcome::Success, 60);
    let run = deploy(&sim).args(["--repository", "web", "--tag", "v1.0.0"]).run();
    let record = done(&run);
    assert!(run.stderr.contains(&format!("waiting for deployment {busy} in progress")), "{}", run.stderr);
    assert_ne!(record["deployment_id"], busy.as_str());
    let phases = sim.snapshot()["apps"][0]["deployments"].clone();
    assert_eq!(phases[1]["id"], busy.as_str());
    assert_eq!(phases[1]["phase"], "SUPERSEDED", "it finished ACTIVE before ours replaced it");

    let busy = start_busy_deployment(&sim, Outcome::Hang, 30);
    let record = done(&deploy(&sim).args(["--repository", "web", "--tag", "v1.1.0", "--if-busy", "cancel"]).run());
    assert_eq!(record["phase"], "ACTIVE");
    let cancelled = sim.requests().into_iter().filter(|r| r.url.ends_with(&format!("{busy}/cancel"))).count();
    assert_eq!(cancelled, 1);
    let deployments = sim.snapshot()["apps"][0]["deployments"].clone();
    let old = deployments.as_array().unwrap().iter().find(|d| d["id"] == busy.as_str()).unwrap().clone();
    assert_eq!(old["phase"], "CANCELED");

    let busy = start_busy_deployment(&sim, Outcome::Hang, 30);
    let before = puts(&sim).len();
    let run = deploy(&sim).args(["--repository", "web", "--tag", "v1.2.0", "--if-busy", "fail"]).run();
    run.assert_code(1);
    assert!(run.stderr.contains(&format!("deployment {busy} is in progress")), "{}", run.stderr);
    assert_eq!(puts(&sim).len(), before);
}

#[test]
fn a_build_error_shows_the_failed_step_and_the_log_tail() {
    let sim = sim(30);
    next_deployment(&sim, Outcome::BuildError, 30);
    let run = deploy(&sim).args(["--repository", "web", "--tag", "v1.0.0", "--log-lines", "7"]).run();
    run.assert_code(4);
    let record = run.record("deploy");
    assert_eq!(record["phase"], "ERROR");
    let failure = &record["failure"];
    assert_eq!(failure["step"], "build-web");
    assert_eq!(failure["reason"], "the build of web failed: exit status 1");
    assert_eq!(failure["log_type"], "BUILD");
    let excerpt: Vec<&str> = failure["log_excerpt"].as_array().unwrap().iter().map(|l| l.as_str().unwrap()).collect();
    assert_eq!(excerpt.len(), 7);
    assert_eq!(excerpt.last().copied(), Some("[web] [BUILD] build failed: exit status 1"));
    assert!(run.stderr.contains("last 7 lines of the BUILD log of web:"), "{}", run.stderr);
    assert!(run.stderr.contains("  [web] [BUILD] error: failed to solve"), "{}", run.stderr);
    assert!(!run.stderr.contains("step 50: working"), "only the tail is shown");
    assert!(run.stderr.contains("ended ERROR: the build of web failed"), "{}", run.stderr);
    let downloads = sim.state().log_downloads.clone();
    assert_eq!(downloads.len(), 1);
    assert!(!downloads[0].1, "historic log URLs are fetched without the token");
}

#[test]
fn a_deploy_error_fetches_the_deploy_log() {
    let sim = sim(30);
    next_deployment(&sim, Outcome::DeployError, 30);
    let run = deploy(&sim).args(["--repository", "web", "--tag", "v1.0.0"]).run();
    run.assert_code(4);
    let failure = run.record("deploy")["failure"].clone();
    assert_eq!(failure["log_type"], "DEPLOY");
    assert_eq!(failure["reason"], "web failed its health checks");
    assert!(run.stderr.contains("[web] [DEPLOY] health checks failed"), "{}", run.stderr);
}

#[test]
fn canceled_ends_at_once_with_exit_4_and_superseded_by_the_same_image_is_followed() {
    let canceled = sim(30);
    next_deployment(&canceled, Outcome::Canceled, 40);
    let run = deploy(&canceled).args(["--repository", "web", "--tag", "v1.0.0", "--timeout", "60s"]).run();
    run.assert_code(4);
    let record = run.record("deploy");
    assert_eq!((record["phase"].as_str(), record["outcome"].as_str()), (Some("CANCELED"), Some("failed")));
    // Exit 4 with the phase CANCELED, not 3: it ended when the deployment did, not at --timeout.
    assert!(run.stderr.contains("ended CANCELED"), "{}", run.stderr);

    // Superseded by a deployment of the same spec: that one is followed to its end.
    let superseded = sim(30);
    next_deployment(&superseded, Outcome::Superseded, 40);
    let run = deploy(&superseded).args(["--repository", "web", "--tag", "v1.0.0", "--timeout", "60s"]).run();
    run.assert_code(0);
    let record = run.record("deploy");
    assert_eq!((record["phase"].as_str(), record["outcome"].as_str()), (Some("ACTIVE"), Some("active")));
    assert_eq!(record["superseded_by"]["adopted"], true);
    assert_eq!(record["deployment_id"], record["superseded_by"]["deployment_id"]);
    assert!(run.stderr.contains("which deploys the same image; following it"), "{}", run.stderr);
}

#[test]
fn the_deadline_is_exit_3_and_the_deployment_keeps_running() {
    let sim = sim(30);
    next_deployment(&sim, Outcome::Hang, 30);
    let run = deploy(&sim).args(["--repository", "web", "--tag", "v1.0.0", "--timeout", "400ms"]).run();
    run.assert_code(3);
    let record = run.record("deploy");
    assert_eq!((record["phase"].as_str(), record["outcome"].as_str()), (Some("DEPLOYING"), Some("deadline")));
    let id = record["deployment_id"].as_str().unwrap();
    assert!(run.stderr.contains(&format!("deployment {id} is still DEPLOYING")), "{}", run.stderr);
    let deployments = sim.snapshot()["apps"][0]["deployments"].clone();
    assert_eq!(deployments[1]["phase"], "DEPLOYING", "not cancelled");
    assert!(sim.requests().iter().all(|r| !r.url.contains("/cancel")));
}

#[test]
fn rollback_on_failure_returns_to_the_previous_active_deployment() {
    let sim = sim(30);
    let original = app_spec(&sim);
    let previous = sim.snapshot()["apps"][0]["deployments"][0]["id"].as_str().unwrap().to_string();
    next_deployment(&sim, Outcome::DeployError, 30);
    let run = deploy(&sim).args(["--repository", "web", "--tag", "v1.0.0", "--rollback-on-failure"]).run();
    run.assert_code(4);
    let rollback = run.record("deploy")["rollback"].clone();
    assert_eq!(rollback["to_deployment_id"], previous.as_str());
    assert_eq!(rollback["phase"], "ACTIVE");
    let snapshot = sim.snapshot();
    let deployments = snapshot["apps"][0]["deployments"].as_array().unwrap();
    let rolled = deployments.iter().find(|d| d["id"] == rollback["deployment_id"]).unwrap();
    assert_eq!(rolled["cloned_from"], previous.as_str());
    assert_eq!(rolled["phase"], "ACTIVE");
    assert_eq!(rolled["spec"], original, "the app runs the previous spec again");
    let posts: Vec<Value> = sim
        .requests()
        .iter()
        .filter(|r| r.url.ends_with("/rollback"))
        .map(|r| serde_json::from_str(r.body.as_deref().unwrap()).unwrap())
        .collect();
    assert_eq!(posts, [json!({"deployment_id": previous, "skip_pin": true})]);
    assert!(snapshot["apps"][0]["pinned"].is_null(), "skip_pin leaves the app unpinned for the next release");
}

#[test]
fn dry_run_sends_no_put_or_post() {
    let sim = sim(30);
    let run = deploy(&sim).args(["--repository", "web", "--tag", "v1.0.0", "--dry-run"]).run();
    let record = done(&run);
    assert_eq!(record["dry_run"], true);
    assert!(record["deployment_id"].is_null());
    assert!(run.stderr.contains("dry run: service web: web:v1.2.0 -> web@sha256:"), "{}", run.stderr);
    assert!(mutating_requests(&sim).is_empty(), "{:?}", mutating_requests(&sim));
    let redeploy = done(&deploy(&sim).args(["--redeploy", "--dry-run"]).run());
    assert_eq!(redeploy["dry_run"], true);
    assert!(mutating_requests(&sim).is_empty());
}

#[test]
fn the_image_can_come_from_a_tag_record_or_an_image_record() {
    let sim = sim(30);
    let tag_record = r#"{"kind":"tag","v":1,"data":{"tag":"v1.0.0","version":"1.0.0","commit":"abc"}}"#;
    let run = deploy(&sim).args(["--repository", "web"]).stdin(tag_record).run();
    let record = done(&run);
    assert_eq!(record["image"], format!("web@{}", crate::support::digest_in(&sim, "web", "v1.0.0")));
    assert!(run.stdout.starts_with(tag_record), "upstream records pass through");

    let digest = crate::support::digest_in(&sim, "web", "v1.1.0");
    let image_record = format!(
        r#"{{"kind":"image","v":1,"data":{{"registry":"example-registry","repository":"web","tag":"v1.1.0","digest":"{digest}"}}}}"#
    );
    let record = done(&deploy(&sim).stdin(format!("{tag_record}\n{image_record}\n")).run());
    assert_eq!(record["image"], format!("web@{digest}"), "the image record wins over the tag record");
    let unknown = format!(
        r#"{{"kind":"image","v":1,"data":{{"registry":"example-registry","repository":"web","digest":"sha256:{}"}}}}"#,
        "0".repeat(64)
    );
    let run = deploy(&sim).stdin(unknown).run();
    run.assert_code(2);
    assert!(run.stderr.contains("is not in example-registry/web"), "{}", run.stderr);
}

#[test]
fn redeploy_creates_one_deployment_even_when_the_answer_is_lost() {
    let sim = sim(30);
    let id = app_id(&sim);
    sim.add_fault(Fault {
        method: Some("POST".into()),
        path: format!("/v2/apps/{id}/deployments"),
        kind: FaultKind::DropAfterApply,
        times: 1,
    });
    let run = deploy(&sim).args(["--redeploy", "--force-rebuild"]).run();
    let record = done(&run);
    assert!(record["image"].is_null());
    assert!(run.stderr.contains("looking whether it happened"), "{}", run.stderr);
    let posts: Vec<_> = sim.requests().into_iter().filter(|r| r.method == "POST").collect();
    assert_eq!(posts.len(), 1, "never sent twice");
    assert_eq!(posts[0].body.as_deref(), Some(r#"{"force_build":true}"#));
    let deployments = sim.snapshot()["apps"][0]["deployments"].as_array().unwrap().clone();
    assert_eq!(deployments.len(), 2, "exactly one new deployment");
    assert_eq!(record["deployment_id"], deployments[1]["id"]);
}

#[test]
fn a_rerun_after_an_interrupted_wait_follows_the_same_deployment() {
    let sim = sim(30);
    next_deployment(&sim, Outcome::Success, 400);
    let first = deploy(&sim).args(["--repository", "web", "--tag", "v1.0.0", "--no-wait"]).run();
    let first_id = done(&first)["deployment_id"].as_str().unwrap().to_string();
    let second = done(&deploy(&sim).args(["--repository", "web", "--tag", "v1.0.0"]).run());
    assert_eq!(second["deployment_id"], first_id.as_str());
    assert_eq!(second["phase"], "ACTIVE");
    assert_eq!(puts(&sim).len(), 1, "the rerun did not update the app again");
}

#[test]
fn the_end_is_noticed_within_one_interval_with_one_request_per_interval() {
    let sim = sim(30);
    next_deployment(&sim, Outcome::Success, 150);
    let run = Tool::against(DEPLOY, &sim)
        .args([
            "--app",
            "example-app",
            "--repository",
            "web",
            "--tag",
            "v1.0.0",
            "--interval",
            "100ms",
            "--max-interval",
            "100ms",
        ])
        .run();
    let record = done(&run);
    let id = record["deployment_id"].as_str().unwrap().to_string();
    let snapshot = sim.snapshot();
    let deployment =
        snapshot["apps"][0]["deployments"].as_array().unwrap().iter().find(|d| d["id"] == id.as_str()).unwrap().clone();
    let ended_ms = deployment["started_ms"].as_u64().unwrap() + 4 * deployment["phase_ms"].as_u64().unwrap();
    let looks: Vec<u64> =
        sim.requests().iter().filter(|r| r.url.ends_with(&format!("/deployments/{id}"))).map(|r| r.at_ms).collect();
    for pair in looks.windows(2) {
        assert!(pair[1] - pair[0] >= 95, "two looks closer than the interval: {looks:?}");
    }
    let last = *looks.last().unwrap();
    assert!(last >= ended_ms, "the last look saw the end: {looks:?}, ended at {ended_ms}");
    assert!(
        last - ended_ms <= 100 + 150,
        "noticed within one interval (plus scheduling slack): {looks:?}, ended at {ended_ms}"
    );
}

#[test]
fn bad_flags_are_exit_2_before_any_request() {
    let sim = sim(30);
    let cases: &[(&[&str], &str)] = &[
        (&["--image", "docker.io/library/nginx:1"], "not a DOCR image"),
        (&["--repository", "../web", "--tag", "v1"], "invalid repository name \"../web\""),
        (&["--repository", "web", "--tag", "v1?x"], "invalid image tag \"v1?x\""),
        (&["--repository", "web", "--digest", "sha256:nothex"], "invalid digest \"sha256:nothex\""),
        (&["--tag", "v1"], "--tag and --digest need --repository"),
        (&["--repository", "web", "--tag", "v1", "--component", "Bad Name"], "invalid --component \"Bad Name\""),
        (&["--repository", "web", "--tag", "v1", "--timeout", "forever"], "use a number with a unit"),
        (&["--redeploy", "--tag", "v1"], "'--redeploy' cannot be used with '--tag <TAG>'"),
        (&[], "no image to deploy"),
    ];
    for (args, message) in cases {
        let run = deploy(&sim).args(*args).run();
        run.assert_code(2);
        assert!(run.stderr.contains(message), "{args:?}: {message:?} not in {}", run.stderr);
        assert!(run.stdout.is_empty(), "{args:?}: no record");
    }
    assert!(sim.requests().is_empty(), "no request for any of them: {:?}", sim.requests());
    let run = Tool::against(DEPLOY, &sim).args(["--app", "bad app", "--repository", "web", "--tag", "v1"]).run();
    run.assert_code(2);
    assert!(sim.requests().is_empty(), "{:?}", sim.requests());
    let run = Tool::against(DEPLOY, &sim).args(["--app", "nope", "--repository", "web", "--tag", "v1.0.0"]).run();
    run.assert_code(2);
    assert!(run.stderr.contains("no app named \"nope\"; the account has: example-app"), "{}", run.stderr);
    // A tag the registry lacks, with the near one it has, or none near.
    let run = deploy(&sim).args(["--repository", "web", "--tag", "1.1.0"]).run();
    run.assert_code(2);
    let expected = "tag 1.1.0 is not in example-registry/web; did you mean v1.1.0? (or push 1.1.0 first)";
    assert!(run.stderr.contains(expected), "{}", run.stderr);
    let run = deploy(&sim).args(["--repository", "web", "--tag", "release-9"]).run();
    run.assert_code(2);
    assert!(run.stderr.contains("tag release-9 is not in example-registry/web; push it first"), "{}", run.stderr);
}

#[test]
fn help_shows_flags_exit_codes_and_examples() {
    let run = Tool::new(DEPLOY).args(["--help"]).run();
    run.assert_code(0);
    for expected in [
        "--app",
        "--pin",
        "--if-busy",
        "--rollback-on-failure",
        "--log-lines",
        "Exit codes:",
        "4  the deployment ended ERROR",
        "Examples:",
        "adaptive",
    ] {
        assert!(run.stdout.contains(expected), "{expected:?} missing:\n{}", run.stdout);
    }
}

#[test]
fn an_older_version_than_the_running_one_is_deployed_with_a_warning_unless_allowed() {
    // The app runs web:v1.2.0 by tag.
    let sim = sim(30);
    let run = deploy(&sim).args(["--repository", "web", "--tag", "v1.1.0"]).run();
    run.assert_code(0);
    assert!(
        run.stderr.contains("warning: service web runs v1.2.0, newer than v1.1.0: this deploys an older version (pass --allow-downgrade"),
        "{}",
        run.stderr
    );
    // Now pinned by the digest of v1.1.0: going back to v1.0.0 is told through the registry's tags.
    let run = deploy(&sim).args(["--repository", "web", "--tag", "v1.0.0", "--allow-downgrade"]).run();
    run.assert_code(0);
    assert!(!run.stderr.contains("older version"), "{}", run.stderr);
    let run = deploy(&sim).args(["--repository", "web", "--tag", "v1.1.0"]).run();
    assert!(!run.stderr.contains("older version"), "an upgrade: {}", run.stderr);
    let sim = crate::support::sim(30);
    deploy(&sim).args(["--repository", "web", "--tag", "v1.1.0", "--allow-downgrade"]).run().assert_code(0);
    let run = deploy(&sim).args(["--repository", "web", "--tag", "v1.0.0"]).run();
    assert!(run.stderr.contains("runs v1.1.0, newer than v1.0.0"), "by the digest's tags: {}", run.stderr);
}

/// Every option do-deploy's `--help` lists, with a value it accepts.
fn every_option(dir: &std::path::Path, sim: &Sim) -> Vec<Vec<String>> {
    let spec = dir.join("app.yaml");
    std::fs::write(&spec, serde_yaml_text(&do_sim::default_app_spec("example-app", "web", "v1.1.0"))).unwrap();
    let token = dir.join("token");
    std::fs::write(&token, sim.token()).unwrap();
    let input = dir.join("input.jsonl");
    std::fs::write(&input, "").unwrap();
    let help = Tool::new(DEPLOY).args(["--help"]).run().stdout;
    let value = |flag: &str| -> Option<String> {
        Some(match flag {
            "--app" => "example-app".into(),
            "--spec" => spec.display().to_string(),
            "--spec-env" => "LOG_LEVEL".into(),
            "--preview" | "--delete-preview" => "pr-1".into(),
            "--preview-env" => "A=b".into(),
            "--image" => "registry.digitalocean.com/example-registry/web:v1.1.0".into(),
            "--registry" => "example-registry".into(),
            "--repository" => "web".into(),
            "--tag" => "v1.1.0".into(),
            "--pin" => "digest".into(),
            "--digest" => format!("sha256:{}", "a".repeat(64)),
            "--component" => "web".into(),
            "--if-busy" => "wait".into(),
            "--timeout" | "--check-timeout" | "--request-timeout" => "2s".into(),
            "--interval" | "--retry-base-delay" => "10ms".into(),
            "--max-interval" | "--retry-max-time" => "50ms".into(),
            "--log-lines" => "5".into(),
            "--soak" => "1s".into(),
            "--soak-failures" => "2".into(),
            "--max-previews" => "3".into(),
            "--keep" => "pr-1".into(),
            "--keep-file" => input.display().to_string(),
            "--older-than" => "7d".into(),
            "--check-path" => "/".into(),
            "--check-url" => "http://127.0.0.1:9/".into(),
            "--expect-status" => "200".into(),
            "--expect-body" => "ok".into(),
            "--expect-header" => "x=y".into(),
            "--api-url" => sim.url().to_string(),
            "--token-file" => token.display().to_string(),
            "--input" => input.display().to_string(),
            "--completions" => "bash".into(),
            _ => return None,
        })
    };
    let mut options: Vec<Vec<String>> = Vec::new();
    for line in help.lines() {
        let Some(flag) = line.split_whitespace().find(|w| w.starts_with("--")) else { continue };
        let flag = flag.trim_end_matches(',').to_string();
        if !line.trim_start().starts_with('-') || ["--help", "--version"].contains(&flag.as_str()) {
            continue;
        }
        if options.iter().any(|o| o[0] == flag) {
            continue;
        }
        let takes_value = line.contains(&format!("{flag} <"));
        match (takes_value, value(&flag)) {
            (true, Some(v)) => options.push(vec![flag, v]),
            (true, None) => panic!("the test has no value for {flag}: add one"),
            (false, _) => options.push(vec![flag]),
        }
    }
    options
}

/// YAML is a superset of JSON.
fn serde_yaml_text(value: &Value) -> String {
    serde_json::to_string_pretty(value).unwrap()
}

#[test]
fn no_pair_of_options_makes_do_deploy_panic() {
    let sim = sim(5);
    let dir = tempfile::tempdir().unwrap();
    let options = every_option(dir.path(), &sim);
    assert!(options.len() >= 40, "{options:?}");
    let mut runs: Vec<Vec<String>> = options.to_vec();
    for (i, a) in options.iter().enumerate() {
        for b in &options[i + 1..] {
            runs.push(a.iter().chain(b).cloned().collect());
        }
    }
    let panics = std::sync::Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for chunk in runs.chunks(runs.len().div_ceil(4)) {
            let panics = &panics;
            let sim = &sim;
            scope.spawn(move || {
                for args in chunk {
                    // A dry run: nothing is deployed, and every combination that parses runs its checks.
                    let run = Tool::against(DEPLOY, sim)
                        .args(args)
                        .args(["--dry-run", "--no-input"])
                        .env("DO_RELEASE_RETRY_MAX_TIME", "50ms")
                        .run();
                    if run.code == 101 || run.stderr.contains("panicked") {
                        panics.lock().unwrap().push(format!("{args:?}: {}", run.stderr));
                    }
                }
            });
        }
    });
    let panics = panics.into_inner().unwrap();
    assert!(panics.is_empty(), "{} combinations panicked:\n{}", panics.len(), panics.join("\n"));
    // Propose is App Platform's check of a spec: a POST that changes nothing.
    let changed: Vec<String> = mutating_requests(&sim)
        .into_iter()
        .filter(|r| r.url != "/v2/apps/propose")
        .map(|r| format!("{} {}", r.method, r.url))
        .collect();
    assert!(changed.is_empty(), "dry runs change nothing: {changed:?}");
}

#[test]
fn repo_is_repository_and_every_tool_lists_its_exit_codes() {
    let sim = sim(30);
    let run = deploy(&sim).args(["--repo", "web", "--tag", "v1.1.0", "--dry-run"]).run();
    run.assert_code(0);
    assert_eq!(run.record("deploy")["outcome"], "dry_run");
    let prune = Tool::against(crate::support::PRUNE, &sim).args(["--repo", "web"]).run();
    prune.assert_code(0);
    assert_eq!(prune.record("prune")["repositories"][0]["name"], "web");
    for (binary, line) in [
        (crate::support::LOGIN, "3  deadline exceeded (--timeout)"),
        (crate::support::DO_SIM, "2  usage error"),
        (DEPLOY, "3  "),
        (crate::support::PRUNE, "3  deadline exceeded"),
        (crate::support::GC_WAIT, "3  "),
        (crate::support::DO_TAG, "3  "),
    ] {
        let help = Tool::new(binary).args(["--help"]).run();
        help.assert_code(0);
        assert!(
            help.stdout.contains("Exit codes:") && help.stdout.contains(line),
            "{binary}: {line:?}\n{}",
            help.stdout
        );
    }
}
