//! Every run ends, and says truly how: at its deadline (nothing changes after it), when its
//! reader goes away (a failure stays a failure), and on input that never ends.

use do_sim::{Fault, FaultKind, Outcome};

use crate::support::{job, mutating_requests, sim, Tool, DEPLOY, DO_TAG, GC_WAIT, LOGIN, PRUNE};

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
