//! do-gc-wait end to end against the simulator.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use do_sim::{Fault, FaultKind, DEFAULT_REGISTRY};
use serde_json::json;

use crate::support::{gc_wait, mutating_requests, sim, world, Tool, DO_SIM, GC_WAIT};

fn gc_requests(sim: &do_sim::Sim) -> usize {
    sim.requests().iter().filter(|r| r.url.ends_with("/garbage-collection")).count()
}

#[test]
fn no_gc_returns_at_once_with_one_clear_record() {
    let sim = sim(50);
    let run = gc_wait(&sim).args(["--registry", DEFAULT_REGISTRY]).run();
    run.assert_code(0);
    assert_eq!(run.records().len(), 1);
    let record = run.record("gc-wait");
    assert_eq!(record["registry"], DEFAULT_REGISTRY);
    assert_eq!(record["outcome"], "clear");
    assert_eq!(record["polls"], 1);
    assert!(record["gc"].is_null());
    assert_eq!(record["cancelled"], false);
    assert!(run.stderr.contains("no garbage collection running on example-registry"), "{}", run.stderr);
    assert_eq!(gc_requests(&sim), 1);
    assert!(mutating_requests(&sim).is_empty());
}

#[test]
fn a_running_gc_is_waited_for_through_its_statuses() {
    let sim = sim(150);
    sim.start_gc_with(
        DEFAULT_REGISTRY,
        &[("requested", 120), ("scanning manifests", 120), ("deleting unreferenced blobs", 120)],
        "succeeded",
    )
    .unwrap();
    let run = gc_wait(&sim).run();
    run.assert_code(0);
    let record = run.record("gc-wait");
    assert_eq!(record["outcome"], "succeeded");
    assert_eq!(record["gc"]["status"], "succeeded");
    assert!(record["waited_ms"].as_u64().unwrap() >= 250, "{record}");
    assert!(record["polls"].as_u64().unwrap() >= 3, "{record}");
    for status in ["is requested", "is scanning manifests", "is deleting unreferenced blobs"] {
        assert_eq!(run.stderr.matches(status).count(), 1, "{status:?} should be reported once:\n{}", run.stderr);
    }
    // The registry was found automatically: the account has one.
    assert!(sim.requests().iter().any(|r| r.url == "/v2/registries"));
}

#[test]
fn an_unknown_status_counts_as_still_running() {
    let sim = sim(50);
    sim.start_gc_with(DEFAULT_REGISTRY, &[("waiting for delete requests", 400)], "succeeded").unwrap();
    let run = gc_wait(&sim).args(["--registry", DEFAULT_REGISTRY]).run();
    run.assert_code(0);
    let record = run.record("gc-wait");
    assert_eq!(record["outcome"], "succeeded");
    assert!(record["waited_ms"].as_u64().unwrap() >= 350, "{record}");
    assert!(run.stderr.contains("is waiting for delete requests"), "{}", run.stderr);
}

#[test]
fn a_gc_that_fails_leaves_the_registry_writable_and_is_reported() {
    let sim = sim(50);
    sim.start_gc_with(DEFAULT_REGISTRY, &[("scanning manifests", 100)], "failed").unwrap();
    let run = gc_wait(&sim).run();
    run.assert_code(0);
    assert_eq!(run.record("gc-wait")["outcome"], "failed");
    assert!(run.stderr.contains("failed; example-registry is writable again"), "{}", run.stderr);
}

#[test]
fn the_deadline_is_exit_3_with_a_timeout_record() {
    let sim = sim(50);
    sim.start_gc_with(DEFAULT_REGISTRY, &[("scanning manifests", 60_000)], "succeeded").unwrap();
    let run = gc_wait(&sim).args(["--timeout", "300ms"]).run();
    run.assert_code(3);
    let record = run.record("gc-wait");
    assert_eq!(record["outcome"], "timeout");
    assert_eq!(record["gc"]["status"], "scanning manifests");
    assert!(run.stderr.contains("still running on example-registry after 300ms"), "{}", run.stderr);
    assert!(mutating_requests(&sim).is_empty(), "waiting must not cancel anything");
}

#[test]
fn a_wrong_token_fails_clearly_and_never_shows_the_token() {
    let sim = sim(50);
    let secret = "dop_v1_wrong_0123456789abcdef_DISTINCT";
    for verbose in [false, true] {
        let mut tool = gc_wait(&sim).env("DIGITALOCEAN_ACCESS_TOKEN", secret);
        if verbose {
            tool = tool.arg_verbose();
        }
        let run = tool.run();
        run.assert_code(1);
        assert!(run.stderr.contains("401 unauthorized"), "{}", run.stderr);
        assert!(run.stderr.contains("check DIGITALOCEAN_ACCESS_TOKEN"), "{}", run.stderr);
        assert!(run.stderr.contains("request id"), "{}", run.stderr);
        assert!(!run.stdout.contains(secret) && !run.stderr.contains(secret), "the token leaked:\n{run:#?}");
        assert!(!run.stdout.contains("DISTINCT") && !run.stderr.contains("DISTINCT"));
    }
    // The right token, verbose, is not shown either.
    let run = gc_wait(&sim).arg_verbose().run();
    run.assert_code(0);
    assert!(!run.stderr.contains(&sim.token()) && !run.stdout.contains(&sim.token()), "{}", run.stderr);
    assert!(run.stderr.contains("GET /v2/registries -> 200"), "verbose shows requests:\n{}", run.stderr);
}

#[test]
fn the_token_can_come_from_a_file() {
    let sim = sim(50);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("token");
    std::fs::write(&file, format!("{}\n", sim.token())).unwrap();
    let run = Tool::new(GC_WAIT)
        .env("DIGITALOCEAN_API_URL", sim.url())
        .args(["--token-file".as_ref(), file.as_os_str()])
        .run();
    run.assert_code(0);
    let missing = Tool::new(GC_WAIT).env("DIGITALOCEAN_API_URL", sim.url()).run();
    missing.assert_code(2);
    assert!(
        missing.stderr.contains("no API token: set DIGITALOCEAN_ACCESS_TOKEN or pass --token-file"),
        "{}",
        missing.stderr
    );
    assert!(sim.requests().len() == 2, "only the run with a token made requests");
}

#[test]
fn transient_5xx_429_and_dropped_connections_are_retried() {
    let sim = sim(50);
    let gc_path = "/v2/registries/example-registry/garbage-collection";
    sim.add_fault(Fault {
        method: Some("GET".into()),
        path: gc_path.into(),
        kind: FaultKind::Status { status: 503, retry_after: None },
        times: 2,
    });
    sim.add_fault(Fault { method: Some("GET".into()), path: gc_path.into(), kind: FaultKind::Drop, times: 1 });
    sim.add_fault(Fault {
        method: Some("GET".into()),
        path: gc_path.into(),
        kind: FaultKind::Status { status: 429, retry_after: Some(1) },
        times: 1,
    });
    let run = gc_wait(&sim).args(["--registry", DEFAULT_REGISTRY, "-v"]).run();
    run.assert_code(0);
    assert_eq!(run.record("gc-wait")["outcome"], "clear");
    let answers: Vec<(u16, u64)> =
        sim.requests().iter().filter(|r| r.url == gc_path).map(|r| (r.status, r.at_ms)).collect();
    let statuses: Vec<u16> = answers.iter().map(|(status, _)| *status).collect();
    assert_eq!(statuses, [503, 503, 0, 429, 404], "each fault once, then the answer");
    // The simulator's own clock: the retry came no sooner than the 429 asked.
    assert!(answers[4].1 >= answers[3].1 + 1000, "retry-after: 1 was honoured: {answers:?}");
    assert!(run.stderr.contains("retrying in 1.0s"), "{}", run.stderr);
}

#[test]
fn it_never_fails_open_on_a_persistent_server_error() {
    let sim = sim(50);
    let gc_path = "/v2/registries/example-registry/garbage-collection";
    sim.add_fault(Fault {
        method: None,
        path: gc_path.into(),
        kind: FaultKind::Status { status: 500, retry_after: None },
        times: 1000,
    });
    let run = gc_wait(&sim).args(["--registry", DEFAULT_REGISTRY]).env("DO_RELEASE_RETRY_MAX_TIME", "300ms").run();
    run.assert_code(1);
    assert!(
        run.stdout.lines().all(|line| !line.contains("\"gc-wait\"")),
        "no record claims the registry is clear:\n{}",
        run.stdout
    );
    assert!(run.stderr.contains("500 server_error"), "{}", run.stderr);
    assert!(run.stderr.contains("request id sim-"), "{}", run.stderr);
    assert!(run.stderr.contains("gave up after"), "{}", run.stderr);
}

#[test]
fn a_malformed_body_is_a_clear_failure() {
    let sim = sim(50);
    sim.add_fault(Fault {
        method: None,
        path: "/v2/registries/example-registry/garbage-collection".into(),
        kind: FaultKind::Malformed,
        times: 1,
    });
    sim.start_gc_with(DEFAULT_REGISTRY, &[("scanning manifests", 60_000)], "succeeded").unwrap();
    let run = gc_wait(&sim).args(["--registry", DEFAULT_REGISTRY]).run();
    run.assert_code(1);
    assert!(run.stderr.contains("not the expected JSON"), "{}", run.stderr);
}

#[test]
fn unknown_record_kinds_pass_through_byte_for_byte() {
    let sim = sim(50);
    let upstream = "{\"kind\":\"x-build\",  \"v\":3,\"data\":{\"b\":1,\"a\":\"\\u00e9\"}}\r\n{\"kind\":\"tag\",\"v\":1,\"data\":{\"tag\":\"v1.0.0\",\"version\":\"1.0.0\",\"commit\":\"abc\",\"extra\":[1, 2]}}";
    let run = gc_wait(&sim).stdin(upstream).run();
    run.assert_code(0);
    let expected = "{\"kind\":\"x-build\",  \"v\":3,\"data\":{\"b\":1,\"a\":\"\\u00e9\"}}\r\n{\"kind\":\"tag\",\"v\":1,\"data\":{\"tag\":\"v1.0.0\",\"version\":\"1.0.0\",\"commit\":\"abc\",\"extra\":[1, 2]}}\n";
    assert!(run.stdout.starts_with(expected), "upstream lines changed:\n{:?}", run.stdout);
    assert_eq!(run.records().len(), 3);
    assert_eq!(run.records()[2]["kind"], "gc-wait");
}

#[test]
fn malformed_input_is_exit_2_before_any_request() {
    let sim = sim(50);
    let cases: &[(&[u8], &str)] = &[
        (b"{\"kind\":\"x\",\"v\":1,\"data\":{}}\nnot json\n", "line 2: not valid JSON"),
        (b"{\"kind\":\"gc-wait\",\"v\":9,\"data\":{}}", "line 1: \"gc-wait\" record has v 9"),
        (b"{\"kind\":\"image\",\"v\":1,\"data\":{\"registry\":\"r\"}}", "needs data.repository"),
        (b"\xff\xfe\n", "not valid UTF-8"),
    ];
    for (input, message) in cases {
        let run = gc_wait(&sim).stdin(input.to_vec()).run();
        run.assert_code(2);
        assert!(run.stderr.contains(message), "{message:?} not in {}", run.stderr);
        assert!(run.stdout.is_empty());
    }
    let bad_flags: &[&[&str]] = &[
        &["--registry", "Bad_Name"],
        &["--timeout", "soon"],
        &["--interval", "-1s"],
        &["--cancel-after", "3 fortnights"],
    ];
    for args in bad_flags {
        let run = gc_wait(&sim).args(*args).run();
        run.assert_code(2);
    }
    assert!(sim.requests().is_empty(), "no request for bad input: {:?}", sim.requests());
}

#[test]
fn cancel_after_cancels_a_long_gc() {
    let sim = sim(60);
    sim.start_gc_with(DEFAULT_REGISTRY, &[("waiting for write JWTs to expire", 60_000)], "succeeded").unwrap();
    let run = gc_wait(&sim).args(["--cancel-after", "150ms", "--timeout", "20s"]).run();
    run.assert_code(0);
    let record = run.record("gc-wait");
    assert_eq!(record["cancelled"], true);
    assert_eq!(record["outcome"], "cancelled");
    let puts: Vec<_> = mutating_requests(&sim);
    assert_eq!(puts.len(), 1, "{puts:?}");
    assert_eq!(puts[0].method, "PUT");
    assert!(puts[0].url.starts_with("/v2/registries/example-registry/garbage-collection/"));
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(puts[0].body.as_deref().unwrap()).unwrap(),
        json!({"cancel": true})
    );
    assert_eq!(sim.snapshot()["registries"][0]["garbage_collections"][0]["status"], "cancelled");
    assert!(run.stderr.contains("cancelling garbage collection"), "{}", run.stderr);
}

#[test]
fn a_registry_must_be_named_when_there_are_several_and_must_exist() {
    let sim =
        world::seeded(json!({"registries": [{"name": "alpha"}, {"name": "beta", "tier": "professional"}]})).start();
    let run = gc_wait(&sim).run();
    run.assert_code(2);
    assert!(run.stderr.contains("2 registries (alpha, beta); choose one with --registry"), "{}", run.stderr);
    // A name that does not exist is bad input, exit 2, as in every tool.
    let missing = gc_wait(&sim).args(["--registry", "gamma"]).run();
    missing.assert_code(2);
    assert!(
        missing.stderr.contains("registry \"gamma\" does not exist in this account, which has: alpha, beta"),
        "{}",
        missing.stderr
    );
    gc_wait(&sim).args(["--registry", "beta"]).run().assert_code(0);
}

#[test]
fn the_token_is_never_sent_over_plain_http_to_another_host() {
    let run = Tool::new(GC_WAIT)
        .env("DIGITALOCEAN_ACCESS_TOKEN", "dop_v1_secret_value")
        .args(["--api-url", "http://api.example.com", "--registry", "r"])
        .run();
    run.assert_code(2);
    assert!(run.stderr.contains("refusing to send the API token over plain http to api.example.com"), "{}", run.stderr);
    assert!(!run.stderr.contains("dop_v1_secret_value"));
}

#[test]
fn help_shows_flags_exit_codes_and_an_example() {
    let run = Tool::new(GC_WAIT).args(["--help"]).run();
    run.assert_code(0);
    for expected in [
        "--registry",
        "--timeout",
        "--interval",
        "--cancel-after",
        "--token-file",
        "Exit codes:",
        "3  deadline exceeded",
        "Examples:",
        "do-gc-wait --registry my-registry",
    ] {
        assert!(run.stdout.contains(expected), "{expected:?} missing from --help:\n{}", run.stdout);
    }
}

/// Starts the do-sim binary with `args` and returns it with the URL it printed.
fn spawn_do_sim(args: &[&str]) -> (std::process::Child, String) {
    let mut server = Command::new(DO_SIM)
        .args(["--listen", "127.0.0.1:0"])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut url = String::new();
    BufReader::new(server.stdout.take().unwrap()).read_line(&mut url).unwrap();
    (server, url.trim().to_string())
}

#[test]
fn the_do_sim_binary_seeds_from_a_state_file() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state.json");
    std::fs::write(&state, r#"{"token": "file-token", "registries": [{"name": "from-file", "running_gc": {"plan": [{"status": "scanning manifests", "ms": 300}]}}]}"#).unwrap();
    let (mut server, url) = spawn_do_sim(&["--state", state.to_str().unwrap()]);
    let run = Tool::new(GC_WAIT)
        .env("DIGITALOCEAN_API_URL", &url)
        .env("DIGITALOCEAN_ACCESS_TOKEN", "file-token")
        .args(["--interval", "50ms"])
        .run();
    let _ = server.kill();
    let _ = server.wait();
    run.assert_code(0);
    let record = run.record("gc-wait");
    assert_eq!((record["registry"].as_str(), record["outcome"].as_str()), (Some("from-file"), Some("succeeded")));
    let bad = dir.path().join("bad.json");
    std::fs::write(&bad, r#"{"registries": [{"name": "x", "colour": "red"}]}"#).unwrap();
    let refused =
        Command::new(DO_SIM).args(["--listen", "127.0.0.1:0", "--state", bad.to_str().unwrap()]).output().unwrap();
    assert_eq!(refused.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("unknown field `colour`"));
}

#[test]
fn the_do_sim_binary_serves_a_working_api() {
    let (mut server, url) = spawn_do_sim(&["--gc-step", "100ms"]);
    assert!(url.starts_with("http://127.0.0.1:"), "{url}");
    let run = Tool::new(GC_WAIT)
        .env("DIGITALOCEAN_API_URL", &url)
        .env("DIGITALOCEAN_ACCESS_TOKEN", do_sim::DEFAULT_TOKEN)
        .args(["--registry", DEFAULT_REGISTRY, "--interval", "50ms"])
        .run();
    let _ = server.kill();
    let _ = server.wait();
    run.assert_code(0);
    assert_eq!(run.record("gc-wait")["outcome"], "clear");
}

#[test]
fn a_closed_stdout_ends_quietly() {
    let sim = sim(50);
    let mut child = Command::new(GC_WAIT)
        .args(["--registry", DEFAULT_REGISTRY])
        .env("DIGITALOCEAN_API_URL", sim.url())
        .env("DIGITALOCEAN_ACCESS_TOKEN", sim.token())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    assert!(!stderr.contains("error"), "{stderr}");
}

/// Runs do-gc-wait with stderr on a terminal (through `script`, from Debian's essential
/// bsdutils) and stdout in a file; returns what the terminal showed and the file.
fn on_a_terminal(sim: &do_sim::Sim, ci: bool) -> (String, String) {
    let dir = tempfile::tempdir().unwrap();
    let records = dir.path().join("records.jsonl");
    let inner =
        format!("'{GC_WAIT}' --registry {DEFAULT_REGISTRY} --interval 40ms --no-input > '{}'", records.display());
    let mut command = Command::new("script");
    command
        .args(["-qec", &inner, "/dev/null"])
        .env("DIGITALOCEAN_API_URL", sim.url())
        .env("DIGITALOCEAN_ACCESS_TOKEN", sim.token())
        .stdin(Stdio::null());
    if ci {
        command.env("CI", "true");
    } else {
        command.env_remove("CI");
    }
    let output = command.output().expect("script runs");
    assert!(output.status.success(), "{output:?}");
    (String::from_utf8_lossy(&output.stdout).into_owned(), std::fs::read_to_string(records).unwrap())
}

#[test]
fn on_a_terminal_the_wait_is_one_live_line_and_in_ci_one_line_per_change() {
    let sim = sim(50);
    sim.start_gc_with(DEFAULT_REGISTRY, &[("requested", 150), ("scanning manifests", 150)], "succeeded").unwrap();
    let (terminal, records) = on_a_terminal(&sim, false);
    assert!(
        terminal.contains("\r\x1b[2Kdo-gc-wait: garbage collection"),
        "a live line rewritten in place: {terminal:?}"
    );
    assert!(terminal.matches("\r\x1b[2K").count() >= 3, "it refreshes: {terminal:?}");
    assert_eq!(records.lines().count(), 1, "stdout kept only the record");

    sim.start_gc_with(DEFAULT_REGISTRY, &[("requested", 150), ("scanning manifests", 150)], "succeeded").unwrap();
    let (plain, _) = on_a_terminal(&sim, true);
    assert!(!plain.contains('\x1b'), "no escape codes in CI: {plain:?}");
    assert_eq!(plain.matches("is requested").count(), 1, "{plain:?}");
    assert_eq!(plain.matches("is scanning manifests").count(), 1, "{plain:?}");
}
