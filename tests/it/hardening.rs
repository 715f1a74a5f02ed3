//! The shared core under hostile servers and inputs (issue 12), each through the real binaries:
//! credentials echoed by a server, a reader that closes stdout, a run that must end at its
//! deadline, input that never ends or never stops, polling settings that would burn the rate
//! limit, tokens that cannot work, pagination that cycles, records that say a thing twice.

use do_sim::{Fault, FaultKind, Outcome, Sim};
use serde_json::json;

use crate::support::{mutating_requests, sim, Run, Tool, DEPLOY, DO_TAG, GC_WAIT, LOGIN, PRUNE};

const SECRET: &str = "dop_v1_0f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a69788796a5b4c3d2e1f0";

fn secret_sim() -> Sim {
    let timing = do_sim::Timing { gc_step_ms: 30, deploy_phase_ms: 30 };
    let state = do_sim::Seed::default_world().into_state(SECRET, timing).unwrap();
    Sim::start("127.0.0.1:0", state).unwrap()
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

/// What a binary needs besides input to do its job.
fn job(binary: &str) -> Vec<&'static str> {
    if binary == DEPLOY {
        vec!["--app", "example-app", "--redeploy"]
    } else {
        vec![]
    }
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
    let mut state = xtask::demo::world().unwrap();
    state.registries.values_mut().for_each(|r| r.gcs.clear());
    state.token = SECRET.into();
    state.timing = do_sim::Timing { gc_step_ms: 30, deploy_phase_ms: 30 };
    state.extra_log_lines = vec![format!("[web] echo $DIGITALOCEAN_ACCESS_TOKEN: {SECRET}")];
    state.apps[0].next_outcome = Outcome::DeployError;
    let sim = Sim::start("127.0.0.1:0", state).unwrap();
    let scratch = tempfile::tempdir().unwrap();
    let repo = xtask::demo::app_repository(scratch.path()).unwrap();
    let env = crate::support::release_env(sim.url(), SECRET);
    let options = xtask::release::Options {
        config: xtask::config::Config {
            poll_interval: "30ms".into(),
            rollback_on_failure: true,
            ..xtask::demo::config()
        },
        repo_dir: repo,
        execute: true,
        binaries: crate::release_binaries(),
        out_root: scratch.path().join("out"),
        env,
        echo: false,
    };
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
fn a_closed_stdout_never_turns_a_failure_into_success() {
    let sim = sim(30);
    sim.push("example-registry", "web", "v2.0.0", 1000).unwrap();
    sim.add_fault(Fault {
        method: Some("DELETE".into()),
        path: "/v2/registries/".into(),
        kind: FaultKind::Status { status: 500, retry_after: None },
        times: 1000,
    });
    let run = Tool::against(PRUNE, &sim)
        .args(["--keep-last", "1", "--execute", "--gc", "off"])
        .env("DO_RELEASE_RETRY_MAX_TIME", "100ms")
        .run_with_closed_stdout();
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(run.stderr.contains("stdout was closed") && run.stderr.contains("deletions failed"), "{}", run.stderr);

    sim.state().apps[0].next_outcome = Outcome::BuildError;
    let run = Tool::against(DEPLOY, &sim)
        .args(["--app", "example-app", "--repository", "web", "--tag", "v1.1.0", "--interval", "30ms"])
        .run_with_closed_stdout();
    assert_eq!(run.code, 4, "{}", run.stderr);
    // A success stays a success.
    let run = Tool::against(GC_WAIT, &sim).run_with_closed_stdout();
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stderr.contains("stdout was closed"), "{}", run.stderr);
}

#[test]
fn the_timeout_bounds_the_whole_run_and_nothing_changes_after_it() {
    let sim = sim(30);
    for tag in ["v3", "v4", "v5"] {
        sim.push("example-registry", "web", tag, 1000).unwrap();
    }
    let before = sim.snapshot()["registries"].clone();
    // Two API answers take 700 ms each; the third would take a minute. A run that did not stop
    // at its deadline would wait that minute out, then delete.
    sim.add_fault(Fault { method: None, path: "/v2/".into(), kind: FaultKind::Latency { ms: 700 }, times: 2 });
    sim.add_fault(Fault { method: None, path: "/v2/".into(), kind: FaultKind::Latency { ms: 60_000 }, times: 1000 });
    let run = Tool::against(PRUNE, &sim)
        .args(["--keep-last", "0", "--execute", "--timeout", "2s", "--untagged-grace", "1ms"])
        .run();
    run.assert_code(3);
    assert!(run.stderr.contains("--timeout"), "{}", run.stderr);
    let log = sim.requests();
    assert!(log.len() <= 2, "no answer after the hung one was waited for: {log:?}");
    assert!(log.iter().all(|r| r.method == "GET"), "nothing was changed: {:?}", mutating_requests(&sim));
    assert_eq!(sim.snapshot()["registries"], before, "the registry is as it was");

    // do-gc-wait and do-deploy stop at their deadline too, with the record due.
    sim.state().faults.clear();
    sim.start_gc_with("example-registry", &[("scanning manifests", 60_000)], "succeeded").unwrap();
    sim.add_fault(Fault { method: None, path: "/v2/".into(), kind: FaultKind::Latency { ms: 400 }, times: 1000 });
    // The GC runs a minute: only the deadline ends this run before it.
    let run = Tool::against(GC_WAIT, &sim).args(["--timeout", "1500ms", "--interval", "300ms"]).run();
    run.assert_code(3);
    assert_eq!(run.record("gc-wait")["outcome"], "timeout");
}

#[test]
fn input_that_never_ends_is_bounded_by_the_timeout() {
    let sim = sim(30);
    // Input that never ends: only the deadline ends this run.
    let run = Tool::against(GC_WAIT, &sim).args(["--timeout", "1500ms"]).run_with_open_stdin();
    run.assert_code(3);
    assert!(run.stderr.contains("stdin did not end within --timeout; close it, or pass --no-input"), "{}", run.stderr);
    assert!(sim.requests().is_empty(), "nothing was asked before the input was read");

    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("fifo");
    assert!(std::process::Command::new("mkfifo").arg(&fifo).status().unwrap().success());
    for binary in [GC_WAIT, DEPLOY, PRUNE, DO_TAG, LOGIN] {
        let run = Tool::against(binary, &sim)
            .args(job(binary))
            .args(["--timeout", "1s", "--input", fifo.to_str().unwrap()])
            .run();
        run.assert_code(3);
        assert!(run.stderr.contains("did not end within --timeout"), "{binary}: {}", run.stderr);
    }
    let run = Tool::against(GC_WAIT, &sim).args(["--no-input", "--token-file", fifo.to_str().unwrap()]).run();
    run.assert_code(2);
    assert!(run.stderr.contains("is not a regular file"), "{}", run.stderr);
}

#[test]
fn oversized_input_and_token_files_are_usage_errors_naming_the_limit() {
    let sim = sim(30);
    let record = "{\"kind\":\"x-note\",\"v\":1,\"data\":{\"n\":\"0123456789012345678901234567890123456789\"}}\n";
    let big = record.repeat((17 << 20) / record.len());
    let run = Tool::against(PRUNE, &sim).stdin(big).run();
    run.assert_code(2);
    assert!(run.stderr.contains("larger than 16 MiB"), "{}", run.stderr);
    let many = record.repeat(10_001);
    let run = Tool::against(PRUNE, &sim).stdin(many).run();
    run.assert_code(2);
    assert!(run.stderr.contains("line 10001: more than 10000 records"), "{}", run.stderr);

    let dir = tempfile::tempdir().unwrap();
    let file = |name: &str, bytes: &[u8]| {
        let path = dir.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        #[cfg(unix)]
        std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
        path
    };
    let cases: Vec<(std::path::PathBuf, &str)> = vec![
        ("/dev/zero".into(), "is not a regular file"),
        (dir.path().to_path_buf(), "is not a regular file"),
        (file("big", &[b'a'; 5000]), "larger than 4 KiB"),
        (file("bom", "\u{feff}sim-token".as_bytes()), "byte-order mark"),
        (file("accent", "sim-tökén".as_bytes()), "not printable ASCII at position 6"),
        (file("two", b"sim-token other"), "not printable ASCII at position 10"),
        (file("binary", &[0xff, 0xfe, 0x00]), "is not text"),
        (file("empty", b"\n"), "is empty"),
    ];
    for (path, expected) in cases {
        let run = Tool::against(GC_WAIT, &sim)
            .env("DIGITALOCEAN_ACCESS_TOKEN", "")
            .args(["--no-input", "--token-file", path.to_str().unwrap()])
            .run();
        run.assert_code(2);
        assert!(run.stderr.contains(expected), "{}: {}", path.display(), run.stderr);
    }
    assert!(sim.requests().is_empty());
}

#[test]
fn a_token_that_cannot_work_is_refused_at_once() {
    let sim = sim(30);
    for (token, expected) in [
        ("sim-tökén", "not printable ASCII"),
        ("\u{feff}sim-token", "byte-order mark"),
        ("sim token", "not printable ASCII at position 4"),
    ] {
        let run = Tool::against(GC_WAIT, &sim).env("DIGITALOCEAN_ACCESS_TOKEN", token).args(["--no-input"]).run();
        run.assert_code(2);
        assert!(run.stderr.contains(expected), "{token:?}: {}", run.stderr);
        assert!(!run.stderr.contains("tökén") && !run.stderr.contains("sim token"), "the token is not shown");
    }
    assert!(sim.requests().is_empty(), "refused before any request, so never retried");
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

#[test]
fn polling_and_request_settings_outside_their_bounds_are_usage_errors() {
    let sim = sim(30);
    let remote = ["--api-url", "https://api.invalid"];
    let cases: Vec<(&str, Vec<&str>, &str)> = vec![
        (
            GC_WAIT,
            vec!["--interval", "0s"],
            "--interval 0ms is out of range: give 1ms (against a loopback simulator) to 1d",
        ),
        (DEPLOY, vec!["--app", "example-app", "--redeploy", "--interval", "0s"], "--interval 0ms is out of range"),
        (PRUNE, vec!["--interval", "0s"], "--interval 0ms is out of range"),
        (GC_WAIT, [&remote[..], &["--interval", "500ms"]].concat(), "--interval 500ms is out of range: give 1s to 1d"),
        (
            DEPLOY,
            [&remote[..], &["--app", "a", "--redeploy", "--max-interval", "200ms"]].concat(),
            "--max-interval 200ms is out of range: give 1s",
        ),
        (GC_WAIT, vec!["--request-timeout", "0s"], "--request-timeout 0ms is out of range"),
        (GC_WAIT, vec!["--timeout", "0s"], "--timeout 0ms is out of range"),
        (DO_TAG, vec!["--timeout", "0s"], "--timeout 0ms is out of range: give 1s to 1d"),
        (GC_WAIT, vec!["--interval", "2d"], "--interval 2d is out of range"),
    ];
    for (binary, args, expected) in cases {
        let run = Tool::against(binary, &sim).args(["--no-input"]).args(&args).run();
        run.assert_code(2);
        assert!(run.stderr.contains(expected), "{args:?}: {}", run.stderr);
    }
    assert!(sim.requests().is_empty());
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
fn a_record_with_a_key_twice_is_a_usage_error_naming_the_line() {
    let sim = sim(30);
    let input = "{\"kind\":\"x\",\"v\":1,\"data\":{}}\n{\"kind\":\"image\",\"v\":1,\"data\":{\"registry\":\"example-registry\",\"repository\":\"web\",\"digest\":\"sha256:aa\",\"repository\":\"api\"}}\n";
    for binary in [GC_WAIT, DEPLOY, PRUNE, DO_TAG, LOGIN] {
        let run = Tool::against(binary, &sim).args(job(binary)).stdin(input).run();
        run.assert_code(2);
        assert!(run.stderr.contains("stdin: line 2: the key \"repository\" appears twice"), "{}", run.stderr);
    }
    assert!(sim.requests().is_empty());
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

#[test]
fn every_tool_prints_its_own_completions_without_a_request_or_its_variables_in_the_way() {
    let sim = sim(30);
    for binary in [GC_WAIT, DO_TAG, DEPLOY, PRUNE, LOGIN] {
        let name = std::path::Path::new(binary).file_name().unwrap().to_str().unwrap().to_string();
        for (shell, expected) in [
            ("bash", format!("complete -F _{}", name.replace('-', "__"))),
            ("zsh", format!("#compdef {name}")),
            ("fish", format!("complete -c {name}")),
        ] {
            // The tools' variables set, as in CI, change nothing.
            let run = Tool::against(binary, &sim).args(["--completions", shell]).run();
            run.assert_code(0);
            let script = run.stdout.clone();
            assert!(script.contains(&expected), "{name} {shell}: {}", &script[..script.len().min(300)]);
            assert!(script.contains("timeout"), "{name} {shell}: the flags are in it");
        }
        let run = Tool::new(binary).args(["--completions", "tcsh"]).run();
        run.assert_code(2);
        assert!(run.stderr.contains("possible values: bash, elvish, fish, powershell, zsh"), "{}", run.stderr);
    }
    assert!(sim.requests().is_empty(), "no request");
}
