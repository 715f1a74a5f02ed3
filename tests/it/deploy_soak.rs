//! After the deployment went green: the soak keeps watching the release (its URL and the app's
//! health) and a breach fails it and rolls back, one blip does not, someone else's newer
//! deployment ends it without a rollback; App Platform's own rollback is told as a failed release
//! and never repeated; an app pinned by a rollback is explained, and nothing changes.

use do_sim::{Live, Outcome, Sim};
use serde_json::json;

use crate::support::{call, deploy, first_app_id, mutating_requests, sim, wait_until, Run, Tool, DEPLOY};

/// The next deployment succeeds and then serves as `live` says.
fn next_release(sim: &Sim, outcome: Outcome, live: Live) {
    let mut state = sim.state();
    state.apps[0].next_outcome = outcome;
    state.apps[0].next_live = live;
}

/// A release of v1.1.0 soaked for `soak`, a look every 100 ms.
fn soaked(sim: &Sim, soak: &str, extra: &[&str]) -> Tool {
    Tool::against(DEPLOY, sim)
        .args(["--app", "example-app", "--interval", "100ms", "--max-interval", "200ms"])
        .args(["--repository", "web", "--tag", "v1.1.0", "--check-path", "/", "--check-timeout", "2s"])
        .args(["--soak", soak])
        .args(extra)
}

fn posts(sim: &Sim, fragment: &str) -> usize {
    sim.requests().iter().filter(|r| r.method == "POST" && r.url.contains(fragment)).count()
}

/// The version the app serves now, as its live URL says.
fn serving(sim: &Sim) -> String {
    let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).proxy(None).build().into();
    let response = agent.get(format!("{}/_sim/live/example-app/", sim.url())).call().unwrap();
    response.headers().get("x-app-version").unwrap().to_str().unwrap().to_string()
}

#[test]
fn a_release_that_breaks_after_it_went_green_fails_the_soak_and_is_rolled_back() {
    let sim = sim(30);
    next_release(&sim, Outcome::Success, Live::FailingAfter { ms: 400 });
    let run = soaked(&sim, "20s", &["--rollback-on-failure"]).run();
    run.assert_code(4);
    let record = run.record("deploy");
    assert_eq!(record["outcome"], "soak_failed", "{record}");
    assert_eq!(record["failure"]["step"], "soak");
    let soak = &record["soak"];
    assert_eq!((soak["ended"].as_str(), soak["failures"].as_u64()), (Some("breached"), Some(3)), "{soak}");
    assert!(soak["elapsed_ms"].as_u64().unwrap() < 20_000, "the breach ended the soak: {soak}");
    assert_eq!(soak["seconds"], 20, "the soak asked for");
    let failed = soak["breach"]["failed"].as_str().unwrap();
    assert!(failed.contains("status 500") || failed.contains("UNHEALTHY"), "{failed}");
    assert_eq!(record["rollback"]["phase"], "ACTIVE", "{record}");
    assert_eq!(serving(&sim), "v1.2.0", "the version before runs again");
    assert!(run.stderr.contains("broke during the soak"), "{}", run.stderr);
}

#[test]
fn one_blip_within_the_soak_is_not_a_breach() {
    let sim = sim(30);
    next_release(&sim, Outcome::Success, Live::FailingBetween { from_ms: 200, to_ms: 450 });
    let run = soaked(&sim, "1500ms", &["--soak-failures", "6", "--rollback-on-failure"]).run();
    run.assert_code(0);
    let record = run.record("deploy");
    let soak = &record["soak"];
    assert_eq!((record["outcome"].as_str(), soak["ended"].as_str()), (Some("active"), Some("passed")), "{record}");
    assert!(soak["failures"].as_u64().unwrap() >= 1, "the blip was seen: {soak}");
    assert!(soak["checks"].as_u64().unwrap() > soak["failures"].as_u64().unwrap(), "{soak}");
    assert_eq!(posts(&sim, "/rollback"), 0, "nothing rolled back");
    assert_eq!(serving(&sim), "v1.1.0");
}

#[test]
fn a_newer_deployment_during_the_soak_ends_it_superseded_with_nothing_rolled_back() {
    let sim = sim(30);
    let app = first_app_id(&sim);
    let run = std::thread::spawn({
        let tool = soaked(&sim, "20s", &["--rollback-on-failure"]);
        move || tool.run()
    });
    wait_until("the soak looks at the app's health", || sim.requests().iter().any(|r| r.url.ends_with("/health")));
    let (status, _) = call(&sim, "POST", &format!("/v2/apps/{app}/deployments"), Some(json!({})), Some(&sim.token()));
    assert_eq!(status, 200);
    let run: Run = run.join().unwrap();
    run.assert_code(1);
    let record = run.record("deploy");
    assert_eq!(
        (record["outcome"].as_str(), record["soak"]["ended"].as_str()),
        (Some("superseded"), Some("superseded"))
    );
    assert_eq!(record["superseded_by"]["cause"], "manual", "{record}");
    assert_eq!(posts(&sim, "/rollback"), 0, "never rolled back over it");
}

#[test]
fn app_platforms_own_rollback_during_the_soak_is_a_failed_release_not_someone_elses_work() {
    let sim = sim(30);
    let run = std::thread::spawn({
        let tool = soaked(&sim, "20s", &["--rollback-on-failure"]);
        move || tool.run()
    });
    wait_until("the soak looks at the app's health", || sim.requests().iter().any(|r| r.url.ends_with("/health")));
    // App Platform rolls the app back on its own to the deployment ACTIVE before ours.
    {
        let mut state = sim.state();
        let before = state.apps[0].deployments.len() - 2;
        let to = state.apps[0].deployments[before].id.clone();
        state.create_deployment_of(0, &do_sim::auto_rollback_cause(&to), Some(before), std::time::Instant::now());
    }
    let run: Run = run.join().unwrap();
    run.assert_code(4);
    let record = run.record("deploy");
    assert_eq!(
        (record["outcome"].as_str(), record["soak"]["ended"].as_str()),
        (Some("platform_rollback"), Some("platform_rollback"))
    );
    assert_eq!(record["rollback"]["by_platform"], true, "{record}");
    assert_eq!(posts(&sim, "/rollback"), 0, "never rolled back again");
}

#[test]
fn app_platforms_own_rollback_is_a_failed_release_and_is_not_rolled_back_again() {
    let sim = sim(30);
    next_release(&sim, Outcome::AutoRollback, Live::Healthy);
    let before = crate::support::first_app_id(&sim);
    let active_before = sim.snapshot()["apps"][0]["deployments"][0]["id"].as_str().unwrap().to_string();
    let run = deploy(&sim).args(["--repository", "web", "--tag", "v1.1.0", "--rollback-on-failure"]).run();
    run.assert_code(4);
    let record = run.record("deploy");
    assert_eq!(record["outcome"], "platform_rollback", "{record}");
    let rollback = &record["rollback"];
    assert_eq!(
        (rollback["by_platform"].as_bool(), rollback["to_deployment_id"].as_str()),
        (Some(true), Some(active_before.as_str()))
    );
    assert!(record["failure"]["reason"]
        .as_str()
        .unwrap()
        .starts_with(&format!("App Platform rolled back to deployment {active_before}")));
    assert_eq!(posts(&sim, &format!("/v2/apps/{before}/rollback")), 0, "no second rollback");
    assert!(run.stderr.contains("not rolling back again"), "{}", run.stderr);
}

#[test]
fn an_app_pinned_by_a_rollback_is_explained_and_nothing_changes() {
    let sim = sim(30);
    let app = first_app_id(&sim);
    let previous = sim.snapshot()["apps"][0]["deployments"][0]["id"].as_str().unwrap().to_string();
    let body = json!({"deployment_id": previous, "skip_pin": false});
    let (status, _) = call(&sim, "POST", &format!("/v2/apps/{app}/rollback"), Some(body), Some(&sim.token()));
    assert_eq!(status, 200);
    let before = mutating_requests(&sim).len();
    let run = deploy(&sim).args(["--repository", "web", "--tag", "v1.1.0"]).run();
    run.assert_code(2);
    assert!(run.stderr.contains("is pinned to deployment"), "{}", run.stderr);
    assert!(run.stderr.contains("rollback/commit") && run.stderr.contains("rollback/revert"), "{}", run.stderr);
    assert_eq!(mutating_requests(&sim).len(), before, "nothing was sent");
}

#[test]
fn soak_flags_are_checked_before_any_request() {
    let sim = sim(30);
    let cases: [(&[&str], &str); 4] = [
        (&["--soak", "40m"], "does not fit in --timeout"),
        (&["--soak-failures", "2"], "--soak"),
        (&["--soak", "1m", "--no-wait"], "cannot be used with"),
        (&["--soak", "1m", "--soak-failures", "0"], "0 is not in 1..=100"),
    ];
    for (args, message) in cases {
        let run = deploy(&sim).args(["--repository", "web", "--tag", "v1.1.0"]).args(args).run();
        run.assert_code(2);
        assert!(run.stderr.contains(message), "{args:?}: {message:?} not in {}", run.stderr);
    }
    assert!(sim.requests().is_empty(), "{:?}", sim.requests());
}
