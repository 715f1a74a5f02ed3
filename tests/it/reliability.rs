//! Ambiguous creates, interruption, hostile input and secrets.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use do_sim::{Fault, FaultKind, Outcome, Sim};
use serde_json::{json, Value};

use crate::support::{mutating_requests, sim, wait_until, Run, Tool, DEPLOY, DO_TAG, GC_WAIT, PRUNE};

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
    let seed: do_sim::Seed = serde_json::from_value(
        json!({"registries": [{"name": "reg", "repositories": [{"name": "web", "manifests": manifests}]}]}),
    )
    .unwrap();
    let sim = Sim::start("127.0.0.1:0", seed.into_state("tok", Default::default()).unwrap()).unwrap();
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

/// One hostile input: a tool, its flags, its stdin, extra environment, and a phrase of the error.
struct Hostile {
    binary: &'static str,
    args: Vec<String>,
    stdin: Vec<u8>,
    env: Vec<(&'static str, String)>,
    message: &'static str,
}

fn stdin_case(binary: &'static str, args: &[&str], stdin: impl Into<Vec<u8>>, message: &'static str) -> Hostile {
    Hostile {
        binary,
        args: args.iter().map(|a| a.to_string()).collect(),
        stdin: stdin.into(),
        env: Vec::new(),
        message,
    }
}

fn flags(binary: &'static str, args: &[&str], message: &'static str) -> Hostile {
    stdin_case(binary, args, Vec::new(), message)
}

fn hostile_cases(dir: &Path) -> Vec<Hostile> {
    let prune = &["--keep-last", "0", "--execute"][..];
    let deploy = &["--app", "example-app"][..];
    let deploy_web = &["--app", "example-app", "--repository", "web"][..];
    let digest = format!("sha256:{}", "a".repeat(64));
    let plan = |name: &str, body: Value| {
        let path = dir.join(name);
        std::fs::write(&path, body.to_string()).unwrap();
        path.display().to_string()
    };
    let plan_with = |repository: &str, digest: &str, tag: &str| {
        json!({"version": 2, "registry": "example-registry", "created_at": "x", "policy": {"keep_tags": [], "keep_last": 0, "keep_within_seconds": null, "allow_empty": false},
               "repositories": [{"name": repository, "kept": [], "untagged_kept": {"count": 0, "bytes": 0},
                 "deleted": [{"digest": digest, "tags": [tag], "all_tags": [tag], "updated_at": null, "bytes": 1, "action": "manifest"}]}]})
    };
    let not_json_plan = dir.join("not-json.plan");
    std::fs::write(&not_json_plan, "{ this is not a plan").unwrap();
    let overlong = "a".repeat(300);
    let overlong_tag = format!("--tag={}", "t".repeat(200));
    vec![
        // Malformed and truncated lines, encodings, nesting, size.
        stdin_case(PRUNE, prune, "not json\n", "line 1: not valid JSON"),
        stdin_case(PRUNE, prune, "{\"kind\":\"tag\",\"v\":1,\"data\":{\"tag\"", "line 1: not valid JSON"),
        stdin_case(PRUNE, prune, b"\xff\xfe\xfd\n".to_vec(), "line 1: not valid UTF-8"),
        stdin_case(PRUNE, prune, format!("{}1{}", "[".repeat(10_000), "]".repeat(10_000)), "not valid JSON"),
        stdin_case(PRUNE, prune, format!("{{\"kind\":\"x\",\"v\":1,\"data\":{{\"s\":\"{}\"}}}}", "a".repeat(2 << 20)), "longer than 1 MiB"),
        stdin_case(PRUNE, prune, "[]", "expected a JSON object"),
        stdin_case(PRUNE, prune, "\"kind\"", "expected a JSON object"),
        stdin_case(PRUNE, prune, "{\"v\":1,\"data\":{}}", "missing \"kind\""),
        stdin_case(PRUNE, prune, "{\"kind\":1,\"v\":1,\"data\":{}}", "\"kind\" must be a non-empty string"),
        stdin_case(PRUNE, prune, "{\"kind\":\"\",\"v\":1,\"data\":{}}", "\"kind\" must be a non-empty string"),
        stdin_case(PRUNE, prune, "{\"kind\":\"x\",\"data\":{}}", "missing \"v\""),
        stdin_case(PRUNE, prune, "{\"kind\":\"x\",\"v\":\"1\",\"data\":{}}", "must be a whole number"),
        stdin_case(PRUNE, prune, "{\"kind\":\"x\",\"v\":-1,\"data\":{}}", "must be a whole number"),
        stdin_case(PRUNE, prune, "{\"kind\":\"x\",\"v\":1.5,\"data\":{}}", "must be a whole number"),
        stdin_case(PRUNE, prune, "{\"kind\":\"x\",\"v\":1}", "missing \"data\""),
        stdin_case(PRUNE, prune, "{\"kind\":\"x\",\"v\":1,\"data\":[]}", "\"data\" of a \"x\" record must be an object"),
        stdin_case(PRUNE, prune, "{\"kind\":\"tag\",\"v\":2,\"data\":{}}", "\"tag\" record has v 2"),
        stdin_case(PRUNE, prune, "{\"kind\":\"image\",\"v\":99,\"data\":{}}", "\"image\" record has v 99"),
        stdin_case(PRUNE, prune, "{\"kind\":\"image\",\"v\":1,\"data\":{\"registry\":\"r\",\"repository\":\"web\"}}", "needs data.digest"),
        stdin_case(PRUNE, prune, "{\"kind\":\"image\",\"v\":1,\"data\":{\"registry\":\"r\",\"repository\":\"web\",\"digest\":5}}", "needs data.digest as a non-empty string"),
        stdin_case(PRUNE, prune, "{\"kind\":\"prune\",\"v\":2,\"data\":{\"registry\":\"r\",\"dry_run\":\"no\",\"requests\":1}}", "data.dry_run as true or false"),
        stdin_case(PRUNE, prune, "{\"kind\":\"deploy\",\"v\":1,\"data\":{\"app_id\":\"a\",\"phase\":\"ACTIVE\",\"changed\":1}}", "data.changed as true or false"),
        stdin_case(PRUNE, prune, "{\"kind\":\"gc-wait\",\"v\":1,\"data\":{\"registry\":\"\",\"outcome\":\"clear\"}}", "data.registry as a non-empty string"),
        stdin_case(PRUNE, prune, "{\"kind\":\"x\",\"v\":1,\"data\":{}}\n{\"kind\":\"x\",\"v\":1,\"data\":{}}\n{oops}\n", "line 3: not valid JSON"),
        stdin_case(PRUNE, prune, "{\"kind\":\"x\",\"v\":1,\"data\":{}}\u{0}", "not valid JSON"),
        stdin_case(PRUNE, prune, "\u{feff}{\"kind\":\"x\",\"v\":1,\"data\":{}}", "not valid JSON"),
        stdin_case(GC_WAIT, &[], "{\"kind\":\"image\",\"v\":1,\"data\":{\"registry\":\"r\"}}", "needs data.repository"),
        // Wrong names arriving in records.
        stdin_case(DEPLOY, deploy, format!("{{\"kind\":\"image\",\"v\":1,\"data\":{{\"registry\":\"example-registry\",\"repository\":\"../etc\",\"digest\":\"{digest}\"}}}}"), "invalid repository name \"../etc\""),
        stdin_case(DEPLOY, deploy, "{\"kind\":\"image\",\"v\":1,\"data\":{\"registry\":\"example-registry\",\"repository\":\"web\",\"digest\":\"sha256:../../x\"}}", "invalid digest"),
        stdin_case(DEPLOY, deploy, format!("{{\"kind\":\"image\",\"v\":1,\"data\":{{\"registry\":\"UPPER\",\"repository\":\"web\",\"digest\":\"{digest}\"}}}}"), "invalid registry name \"UPPER\""),
        stdin_case(DEPLOY, deploy_web, "{\"kind\":\"tag\",\"v\":1,\"data\":{\"tag\":\"v1 2\",\"version\":\"1\",\"commit\":\"c\"}}", "invalid image tag \"v1 2\""),
        stdin_case(DEPLOY, deploy_web, "{\"kind\":\"tag\",\"v\":1,\"data\":{\"tag\":\"v1?x=1\",\"version\":\"1\",\"commit\":\"c\"}}", "invalid image tag"),
        stdin_case(DEPLOY, deploy_web, "{\"kind\":\"tag\",\"v\":1,\"data\":{\"tag\":\"v1#frag\",\"version\":\"1\",\"commit\":\"c\"}}", "invalid image tag"),
        stdin_case(DEPLOY, deploy_web, "{\"kind\":\"tag\",\"v\":1,\"data\":{\"tag\":\"v1\\nx\",\"version\":\"1\",\"commit\":\"c\"}}", "invalid image tag \"v1\\nx\""),
        // Flags of do-gc-wait.
        flags(GC_WAIT, &["--registry", "../x"], "invalid registry name \"../x\""),
        flags(GC_WAIT, &["--registry", "a?b"], "invalid registry name"),
        flags(GC_WAIT, &["--registry", "a\nb"], "invalid registry name \"a\\nb\""),
        flags(GC_WAIT, &["--registry", &"r".repeat(64)], "invalid registry name"),
        flags(GC_WAIT, &["--registry", "reg%2F"], "invalid registry name"),
        flags(GC_WAIT, &["--timeout", "1x"], "cannot read duration \"1x\""),
        flags(GC_WAIT, &["--timeout=-5s"], "is negative"),
        flags(GC_WAIT, &["--interval", ""], "empty duration"),
        flags(GC_WAIT, &["--cancel-after", "2 months"], "give it in days"),
        flags(GC_WAIT, &["--api-url", "http://example.com"], "refusing to send the API token over plain http"),
        flags(GC_WAIT, &["--api-url", "ftp://example.com"], "invalid API URL"),
        flags(GC_WAIT, &["--api-url", "http://127.0.0.1:1/?x=1"], "invalid API URL"),
        flags(GC_WAIT, &["--token-file", "/nonexistent/token"], "cannot read --token-file /nonexistent/token"),
        Hostile { binary: GC_WAIT, args: vec![], stdin: vec![], env: vec![("DIGITALOCEAN_ACCESS_TOKEN", "abc\ndef".into())], message: "not printable ASCII" },
        // Flags of do-deploy.
        flags(DEPLOY, &["--app", "../etc", "--repository", "web", "--tag", "v1"], "invalid --app \"../etc\""),
        flags(DEPLOY, &["--app", "a b", "--repository", "web", "--tag", "v1"], "invalid --app"),
        flags(DEPLOY, &["--app", &overlong, "--repository", "web", "--tag", "v1"], "invalid --app"),
        flags(DEPLOY, &["--app", "shop", "--image", "registry.digitalocean.com/reg/../x:1"], "invalid repository name"),
        flags(DEPLOY, &["--app", "shop", "--image", "registry.digitalocean.com/reg/web:bad tag"], "invalid image tag"),
        flags(DEPLOY, &["--app", "shop", "--image", "registry.digitalocean.com/reg/web@sha256:zz"], "invalid digest"),
        flags(DEPLOY, &["--app", "shop", "--image", "docker.io/library/web:1"], "not a DOCR image"),
        flags(DEPLOY, &["--app", "shop", "--repository", "web#frag", "--tag", "v1"], "invalid repository name \"web#frag\""),
        flags(DEPLOY, &["--app", "shop", "--repository", "web%2F", "--tag", "v1"], "invalid repository name"),
        flags(DEPLOY, &["--app", "shop", "--repository", "we b", "--tag", "v1"], "invalid repository name \"we b\""),
        flags(DEPLOY, &["--app", "shop", "--repository", "web", "--tag", "../v1"], "invalid image tag \"../v1\""),
        flags(DEPLOY, &["--app", "shop", "--repository", "web", &overlong_tag], "invalid image tag"),
        flags(DEPLOY, &["--app", "shop", "--repository", "web", "--tag", "v1", "--component", "Web"], "invalid --component"),
        flags(DEPLOY, &["--app", "shop", "--repository", "web", "--tag", "v1", "--log-lines", "99999"], "--log-lines is at most 10000"),
        flags(DEPLOY, &["--app", "shop", "--repository", "web", "--tag", "v1", "--timeout", "soon"], "cannot read duration \"soon\""),
        flags(DEPLOY, &["--app", "shop", "--tag", "v1"], "--tag and --digest need --repository"),
        flags(DEPLOY, &["--app", "shop"], "no image to deploy"),
        // Flags of do-prune.
        flags(PRUNE, &["--keep-tag", "("], "not a valid regular expression"),
        flags(PRUNE, &["--keep-tag", "[a-"], "not a valid regular expression"),
        flags(PRUNE, &["--keep-within", "forever"], "cannot read duration \"forever\""),
        flags(PRUNE, &["--keep-within", "1y"], "give it in days"),
        flags(PRUNE, &["--repository", "a/../b"], "invalid repository name \"a/../b\""),
        flags(PRUNE, &["--repository", "web\u{7}"], "invalid repository name \"web\\u{7}\""),
        flags(PRUNE, &["--target-usage", "0"], "invalid value '0' for '--target-usage <PERCENT>'"),
        flags(PRUNE, &["--concurrency", "99"], "invalid value '99' for '--concurrency <N>'"),
        flags(PRUNE, &["--gc-type", "everything"], "invalid value 'everything' for '--gc-type <TYPE>'"),
        flags(PRUNE, &["--protect-app", "a/b"], "invalid --protect-app \"a/b\""),
        flags(PRUNE, &["--apply", &not_json_plan.display().to_string()], "not a do-prune plan"),
        flags(PRUNE, &["--apply", &plan("bad-digest.plan", plan_with("web", "sha256:x", "v1"))], "invalid digest \"sha256:x\""),
        flags(PRUNE, &["--apply", &plan("bad-tag.plan", plan_with("web", &digest, "v1\n"))], "invalid image tag \"v1\\n\""),
        flags(PRUNE, &["--apply", &plan("bad-repo.plan", plan_with("../web", &digest, "v1"))], "invalid repository name \"../web\""),
        // Flags of do-tag (it does not talk to the API; nothing may change in git either).
        flags(DO_TAG, &["--prefix", "v/../"], "invalid --prefix"),
        flags(DO_TAG, &["--pre", "rc 1"], "invalid --pre \"rc 1\""),
        flags(DO_TAG, &["--set-version", "1.2"], "invalid value '1.2' for '--set-version <X.Y.Z>'"),
        flags(DO_TAG, &["--remote=-x"], "invalid --remote \"-x\""),
        flags(DO_TAG, &["--allow-branch", "\u{7}"], "invalid --allow-branch"),
        flags(DO_TAG, &["--bump", "huge"], "invalid value 'huge' for '--bump <BUMP>'"),
    ]
}

#[test]
fn at_least_60_hostile_inputs_are_exit_2_with_a_clear_message_and_no_change() {
    let sim = sim(30);
    let dir = tempfile::tempdir().unwrap();
    let cases = hostile_cases(dir.path());
    assert!(cases.len() >= 60, "{} cases", cases.len());
    for (index, case) in cases.into_iter().enumerate() {
        let mut tool = Tool::against(case.binary, &sim).args(&case.args).stdin(case.stdin);
        if case.binary == DO_TAG {
            tool = tool.args(["-C", dir.path().to_str().unwrap()]);
        }
        for (key, value) in case.env {
            tool = tool.env(key, value);
        }
        let run = tool.run();
        assert_eq!(run.code, 2, "case {index} ({:?}): {run:#?}", case.args);
        assert!(
            run.stderr.contains(case.message),
            "case {index} ({:?}): {:?} not in\n{}",
            case.args,
            case.message,
            run.stderr
        );
        assert!(run.stdout.is_empty(), "case {index}: nothing on stdout");
        assert!(mutating_requests(&sim).is_empty(), "case {index} changed something: {:?}", mutating_requests(&sim));
    }
}

const SECRET: &str = "dop_v1_SECRET_0a1b2c3d4e5f_do_not_leak";

fn assert_no_secret(what: &str, text: &str) {
    assert!(!text.contains(SECRET) && !text.contains("0a1b2c3d4e5f"), "the token leaked into {what}:\n{text}");
}

fn secret_sim() -> Sim {
    let timing = do_sim::Timing { gc_step_ms: 30, deploy_phase_ms: 30 };
    let state = do_sim::Seed::default_world().into_state(SECRET, timing).unwrap();
    Sim::start("127.0.0.1:0", state).unwrap()
}

#[test]
fn the_token_appears_in_no_output_record_plan_report_or_github_file() {
    let sim = secret_sim();
    assert_eq!(sim.token(), SECRET);
    let dir = tempfile::tempdir().unwrap();
    let output = dir.path().join("github-output");
    let summary = dir.path().join("github-summary");
    let plan = dir.path().join("plan.json");
    let tool = |binary: &str| {
        Tool::against(binary, &sim)
            .args(["-v"])
            .env("GITHUB_ACTIONS", "true")
            .env("GITHUB_OUTPUT", &output)
            .env("GITHUB_STEP_SUMMARY", &summary)
            .env("DO_RELEASE_RETRY_MAX_TIME", "200ms")
    };
    let mut runs: Vec<(String, Run)> = vec![
        ("gc-wait".into(), tool(GC_WAIT).args(["--interval", "30ms"]).run()),
        (
            "deploy".into(),
            tool(DEPLOY)
                .args(["--app", "example-app", "--repository", "web", "--tag", "v1.1.0", "--interval", "30ms"])
                .run(),
        ),
        ("prune plan".into(), tool(PRUNE).args(["--keep-last", "0", "--plan-out", plan.to_str().unwrap()]).run()),
    ];
    runs.push((
        "prune".into(),
        tool(PRUNE).args(["--apply", plan.to_str().unwrap(), "--execute", "--gc", "wait", "--interval", "30ms"]).run(),
    ));
    // Error paths: failures mid-run, a wrong token, a refused URL, a deployment that fails.
    sim.add_fault(Fault {
        method: None,
        path: "/v2/registries/example-registry/garbage-collection".into(),
        kind: FaultKind::Status { status: 500, retry_after: None },
        times: 1000,
    });
    runs.push(("gc-wait 500".into(), tool(GC_WAIT).run()));
    sim.state().faults.clear();
    runs.push((
        "gc-wait wrong token".into(),
        tool(GC_WAIT).env("DIGITALOCEAN_ACCESS_TOKEN", format!("{SECRET}x")).run(),
    ));
    runs.push(("gc-wait http".into(), tool(GC_WAIT).args(["--api-url", "http://example.com"]).run()));
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, SECRET).unwrap();
    runs.push((
        "gc-wait token file".into(),
        tool(GC_WAIT).env_remove_token().args(["--token-file", token_file.to_str().unwrap()]).run(),
    ));
    sim.state().apps[0].next_outcome = Outcome::BuildError;
    runs.push((
        "deploy error".into(),
        tool(DEPLOY)
            .args([
                "--app",
                "example-app",
                "--repository",
                "web",
                "--tag",
                "v1.2.0",
                "--interval",
                "30ms",
                "--rollback-on-failure",
            ])
            .run(),
    ));
    runs.push(("deploy malformed".into(), {
        sim.add_fault(Fault { method: None, path: "/v2/apps".into(), kind: FaultKind::Malformed, times: 1 });
        tool(DEPLOY).args(["--app", "example-app", "--redeploy"]).run()
    }));
    let codes: Vec<i32> = runs.iter().map(|(_, run)| run.code).collect();
    assert_eq!(codes, [0, 0, 0, 0, 1, 1, 2, 0, 4, 1], "the scenarios ran as intended");
    for (name, run) in &runs {
        assert_no_secret(&format!("{name} stdout"), &run.stdout);
        assert_no_secret(&format!("{name} stderr"), &run.stderr);
    }
    for file in [&output, &summary, &plan] {
        assert_no_secret(&file.display().to_string(), &std::fs::read_to_string(file).unwrap());
    }
    assert!(runs[1].1.stderr.contains("GET /v2/apps"), "verbose output was on: {}", runs[1].1.stderr);

    // A whole release, with its output folder.
    let world_sim = {
        let mut state = xtask::demo::world().unwrap();
        state.registries.values_mut().for_each(|r| r.gcs.clear());
        state.token = SECRET.into();
        state.timing = do_sim::Timing { gc_step_ms: 30, deploy_phase_ms: 30 };
        Sim::start("127.0.0.1:0", state).unwrap()
    };
    let scratch = tempfile::tempdir().unwrap();
    let repo = xtask::demo::app_repository(scratch.path()).unwrap();
    let env = crate::support::release_env(world_sim.url(), SECRET);
    let options = xtask::release::Options {
        config: xtask::config::Config { poll_interval: "30ms".into(), ..xtask::demo::config() },
        repo_dir: repo,
        execute: true,
        binaries: crate::release_binaries(),
        out_root: scratch.path().join("out"),
        env,
        echo: false,
    };
    let outcome = xtask::release::release(&options).unwrap();
    assert_eq!(outcome.exit, 0);
    for step in &outcome.steps {
        assert_no_secret(&step.name, &String::from_utf8_lossy(&step.stdout));
        assert_no_secret(&step.name, &step.stderr);
    }
    for entry in std::fs::read_dir(outcome.out_dir.unwrap()).unwrap() {
        let path = entry.unwrap().path();
        assert_no_secret(&path.display().to_string(), &std::fs::read_to_string(&path).unwrap());
    }
}

#[test]
fn the_token_never_follows_a_link_to_another_host() {
    let sim = sim(30);
    // Pagination links that name another host are followed on our own base URL.
    for i in 0..250 {
        sim.push("example-registry", "web", &format!("t{i}"), 1).unwrap();
    }
    sim.state().link_base = Some("http://attacker.invalid:9".into());
    let run = Tool::against(PRUNE, &sim).args(["--keep-last", "300"]).run();
    run.assert_code(0);
    let pages: Vec<String> = sim.requests().into_iter().filter(|r| r.url.contains("/digests")).map(|r| r.url).collect();
    assert_eq!(
        pages,
        [
            "/v2/registries/example-registry/repositories/web/digests?per_page=200",
            "/v2/registries/example-registry/repositories/web/digests?page=2&per_page=200"
        ]
    );
    assert!(
        sim.requests().iter().all(|r| r.authorized),
        "every request, the second page included, reached the simulator"
    );
}

trait RemoveToken {
    fn env_remove_token(self) -> Self;
}

impl RemoveToken for Tool {
    fn env_remove_token(self) -> Tool {
        self.env("DIGITALOCEAN_ACCESS_TOKEN", "")
    }
}
