//! No credential leaves where it belongs: the API token and registry passwords reach no output,
//! record, plan, report, GitHub file or saved step, whether a server echoes them or a deployment
//! logs them, and the token never follows a link to another host.

use do_sim::{Fault, FaultKind, Outcome, Sim};

use crate::support::{sim, world, Run, Tool, DEPLOY, GC_WAIT, LOGIN, PRUNE};

/// A token whose every part is easy to find in a leak.
const MARKED: &str = "dop_v1_SECRET_0a1b2c3d4e5f_do_not_leak";

fn assert_no_secret(what: &str, text: &str) {
    assert!(!text.contains(MARKED) && !text.contains("0a1b2c3d4e5f"), "the token leaked into {what}:\n{text}");
}

fn marked_sim() -> Sim {
    world::default_world().token(MARKED).step_ms(30).start()
}

#[test]
fn the_token_appears_in_no_output_record_plan_report_or_github_file() {
    let sim = marked_sim();
    assert_eq!(sim.token(), MARKED);
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
        tool(GC_WAIT).env("DIGITALOCEAN_ACCESS_TOKEN", format!("{MARKED}x")).run(),
    ));
    runs.push(("gc-wait http".into(), tool(GC_WAIT).args(["--api-url", "http://example.com"]).run()));
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, MARKED).unwrap();
    runs.push((
        "gc-wait token file".into(),
        tool(GC_WAIT).without_token().args(["--token-file", token_file.to_str().unwrap()]).run(),
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
    let world_sim = world::demo().token(MARKED).step_ms(30).start();
    let scratch = tempfile::tempdir().unwrap();
    let repo = xtask::demo::app_repository(scratch.path()).unwrap();
    let config = xtask::config::Config { interval: "30ms".into(), ..xtask::demo::config() };
    let options = crate::support::release_options((world_sim.url(), MARKED), repo, scratch.path().join("out"), config);
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

/// A token shaped like a real one.
const SECRET: &str = "dop_v1_0f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a69788796a5b4c3d2e1f0";

fn secret_sim() -> Sim {
    world::default_world().token(SECRET).step_ms(30).start()
}

/// Every credential the simulator handed out or holds: the API token and registry passwords.
fn credentials(sim: &Sim) -> Vec<String> {
    let state = sim.state();
    let mut all = vec![SECRET.to_string()];
    all.extend(state.credentials.iter().map(|c| c.password.clone()));
    all.extend(state.registry_tokens.keys().cloned());
    all
}

fn assert_clean(sim: &Sim, what: &str, text: &str) {
    for secret in credentials(sim) {
        assert!(!text.contains(&secret), "a credential leaked into {what}:\n{text}");
    }
    assert!(!text.contains("0f1e2d3c4b5a6978"), "part of the token leaked into {what}:\n{text}");
}

fn echo(sim: &Sim, method: &str, path: &str, status: u16) {
    sim.add_fault(Fault {
        method: Some(method.into()),
        path: path.into(),
        kind: FaultKind::Echo { status },
        times: 1000,
    });
}

#[test]
fn credentials_a_server_echoes_reach_no_output_record_file_or_saved_step() {
    let sim = secret_sim();
    let dir = tempfile::tempdir().unwrap();
    let (outputs, summary, plan) =
        (dir.path().join("outputs"), dir.path().join("summary"), dir.path().join("plan.json"));
    let tool = |binary: &str| {
        Tool::against(binary, &sim)
            .args(["-v"])
            .env("GITHUB_ACTIONS", "true")
            .env("GITHUB_OUTPUT", &outputs)
            .env("GITHUB_STEP_SUMMARY", &summary)
            .env("DO_RELEASE_RETRY_MAX_TIME", "100ms")
    };
    let mut runs: Vec<(String, Run)> = Vec::new();
    for status in [401, 403, 404, 500] {
        sim.state().faults.clear();
        echo(&sim, "GET", "/v2/registries/example-registry/garbage-collection", status);
        runs.push((format!("gc-wait {status}"), tool(GC_WAIT).args(["--interval", "30ms"]).run()));
        sim.state().faults.clear();
        echo(&sim, "GET", "/v2/apps", status);
        runs.push((format!("deploy {status}"), tool(DEPLOY).args(["--app", "example-app", "--redeploy"]).run()));
        sim.state().faults.clear();
        // The registry host echoing the registry credentials it was sent.
        echo(&sim, "GET", "/v2/example-registry/web/manifests/", status);
        runs.push((
            format!("prune registry {status}"),
            tool(PRUNE).args(["--keep-last", "1", "--plan-out", plan.to_str().unwrap()]).run(),
        ));
        sim.state().faults.clear();
        echo(&sim, "GET", "/v2/registries/example-registry/docker-credentials", status);
        runs.push((
            format!("login {status}"),
            tool(LOGIN).args(["--docker-config", dir.path().join("docker").to_str().unwrap()]).run(),
        ));
    }
    // The spec's propose, create and a preview's delete, echoed back.
    let spec_file = dir.path().join("app.json");
    std::fs::write(&spec_file, do_sim::default_app_spec("example-app", "web", "v1.2.0").to_string()).unwrap();
    let spec_file = spec_file.display().to_string();
    for (method, path, args) in [
        ("POST", "/v2/apps/propose", vec!["--repository", "web", "--tag", "v1.1.0"]),
        ("POST", "/v2/apps$", vec!["--repository", "web", "--tag", "v1.1.0", "--preview", "pr-1"]),
    ] {
        sim.state().faults.clear();
        echo(&sim, method, path, 400);
        runs.push((
            format!("deploy --spec {method} {path}"),
            tool(DEPLOY).args(["--spec", &spec_file]).args(args).run(),
        ));
    }
    sim.state().faults.clear();
    let made =
        tool(DEPLOY).args(["--spec", &spec_file, "--repository", "web", "--tag", "v1.1.0", "--preview", "pr-9"]).run();
    made.assert_code(0);
    echo(&sim, "DELETE", "/v2/apps/", 500);
    runs.push((
        "deploy --delete-preview DELETE 500".into(),
        tool(DEPLOY).args(["--spec", &spec_file, "--delete-preview", "pr-9"]).run(),
    ));
    sim.state().faults.clear();
    sim.push("example-registry", "web", "v9", 1000).unwrap();
    echo(&sim, "DELETE", "/v2/registries/example-registry/repositories/web/", 500);
    runs.push((
        "prune delete 500".into(),
        tool(PRUNE).args(["--keep-last", "1", "--untagged-grace", "1ms", "--execute", "--gc", "off"]).run(),
    ));
    sim.state().faults.clear();
    // An app that prints its environment into the build log, which then fails.
    sim.state().extra_log_lines = vec![
        format!("[web] env: DIGITALOCEAN_ACCESS_TOKEN={SECRET}"),
        format!("[web] curl -H 'Authorization: Bearer {SECRET}'"),
    ];
    sim.state().apps[0].next_outcome = Outcome::BuildError;
    runs.push((
        "deploy log".into(),
        tool(DEPLOY)
            .args(["--app", "example-app", "--repository", "web", "--tag", "v1.1.0", "--interval", "30ms"])
            .run(),
    ));

    let codes: Vec<i32> = runs.iter().map(|(_, r)| r.code).collect();
    assert!(codes.iter().filter(|c| **c != 0).count() >= 17, "the error paths ran: {codes:?}");
    let echoed = runs
        .iter()
        .filter(|(_, r)| {
            r.stderr.contains("you sent Authorization: Bearer ***") || r.stdout.contains("Authorization: Bearer ***")
        })
        .count();
    assert!(echoed >= 12, "the echoes reached the output, masked: {echoed}");
    let delete = &runs.iter().find(|(name, _)| name.starts_with("deploy --delete-preview")).unwrap().1;
    assert_eq!(delete.code, 1, "{}", delete.stderr);
    assert!(delete.stderr.contains("Bearer ***") && delete.stdout.contains(r#""outcome":"failed""#), "{delete:?}");
    for (name, run) in runs.iter().filter(|(name, _)| name.starts_with("deploy --spec")) {
        assert_eq!(run.code, 2, "{name}: a refused spec is exit 2:\n{}", run.stderr);
        assert!(run.stderr.contains("Bearer ***"), "{name}: the refusal is shown, masked:\n{}", run.stderr);
    }
    assert!(
        runs.last().unwrap().1.stderr.contains("DIGITALOCEAN_ACCESS_TOKEN=***"),
        "{}",
        runs.last().unwrap().1.stderr
    );
    assert!(runs.last().unwrap().1.stdout.contains("DIGITALOCEAN_ACCESS_TOKEN=***"), "the log excerpt in the record");
    for (name, run) in &runs {
        assert_clean(&sim, &format!("{name} stdout"), &run.stdout);
        assert_clean(&sim, &format!("{name} stderr"), &run.stderr);
    }
    for file in [&outputs, &summary, &plan] {
        assert_clean(&sim, &file.display().to_string(), &std::fs::read_to_string(file).unwrap_or_default());
    }
}

#[test]
fn a_release_whose_deployment_logs_the_token_saves_no_credential() {
    let sim = world::demo().token(SECRET).step_ms(30).start();
    {
        let mut state = sim.state();
        state.extra_log_lines = vec![format!("[web] echo $DIGITALOCEAN_ACCESS_TOKEN: {SECRET}")];
        state.apps[0].next_outcome = Outcome::DeployError;
    }
    let scratch = tempfile::tempdir().unwrap();
    let repo = xtask::demo::app_repository(scratch.path()).unwrap();
    let config = xtask::config::Config { interval: "30ms".into(), rollback_on_failure: true, ..xtask::demo::config() };
    let options = crate::support::release_options((sim.url(), SECRET), repo, scratch.path().join("out"), config);
    let outcome = xtask::release::release(&options).unwrap();
    assert_eq!(outcome.exit, 4, "the deployment failed: {}", outcome.text);
    let mut saved = 0;
    for entry in std::fs::read_dir(outcome.out_dir.unwrap()).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_clean(&sim, &path.display().to_string(), &text);
        saved += usize::from(text.contains("$DIGITALOCEAN_ACCESS_TOKEN: ***"));
    }
    assert!(saved >= 1, "the log excerpt was saved, masked");
    for step in &outcome.steps {
        assert_clean(&sim, &step.name, &String::from_utf8_lossy(&step.stdout));
        assert_clean(&sim, &step.name, &step.stderr);
    }
}

#[test]
fn a_token_file_others_can_read_is_used_with_a_warning() {
    let sim = sim(30);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("token");
    std::fs::write(&path, format!("{}\n", sim.token())).unwrap();
    std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    let run = Tool::against(GC_WAIT, &sim)
        .env("DIGITALOCEAN_ACCESS_TOKEN", "")
        .args(["--no-input", "--token-file", path.to_str().unwrap()])
        .run();
    run.assert_code(0);
    assert!(run.stderr.contains("can be read by other users (mode 644); chmod 600"), "{}", run.stderr);
    std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let run = Tool::against(GC_WAIT, &sim)
        .env("DIGITALOCEAN_ACCESS_TOKEN", "")
        .args(["--no-input", "--token-file", path.to_str().unwrap()])
        .run();
    run.assert_code(0);
    assert!(!run.stderr.contains("can be read by other users"), "{}", run.stderr);
}
