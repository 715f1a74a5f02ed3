//! What people see on stderr while the tools wait: one live status line on a terminal (the
//! xtask asks for it with `DO_RELEASE_PROGRESS=live` when its own stderr is one) whose elapsed
//! time moves every second, and in CI one line per new state with counters throttled.

use std::net::TcpListener;
use std::process::Command;

use crate::support::{sim, Tool, DO_SIM, GC_WAIT, PRUNE};

#[test]
fn a_live_status_line_is_redrawn_in_place_and_its_time_ticks_every_second() {
    let sim = sim(30);
    sim.start_gc_with("example-registry", &[("scanning manifests", 2_200)], "succeeded").unwrap();
    let run = Tool::against(GC_WAIT, &sim)
        .env("DO_RELEASE_PROGRESS", "live")
        .args(["--registry", "example-registry", "--interval", "3s", "--max-interval", "3s"])
        .run();
    run.assert_code(0);
    assert!(run.stderr.contains("\r\x1b[2Kdo-gc-wait: garbage collection"), "{:?}", run.stderr);
    // Two looks (the interval is 3 s), yet the line was redrawn with a moving time.
    for elapsed in ["(1.0s)", "(2.0s)"] {
        assert!(run.stderr.contains(&format!("is scanning manifests {elapsed}")), "{elapsed} not in {:?}", run.stderr);
    }
}

#[test]
fn in_ci_each_state_is_one_line_and_counters_are_throttled() {
    let sim = sim(30);
    for n in 0..40 {
        sim.push("example-registry", "web", &format!("old-{n}"), 1000).unwrap();
    }
    let run = Tool::against(PRUNE, &sim)
        .env("DO_RELEASE_PROGRESS", "plain")
        .args(["--keep-last", "1", "--execute", "--gc", "off"])
        .run();
    run.assert_code(0);
    assert!(!run.stderr.contains('\r'), "no live line in CI");
    let counters = run.stderr.lines().filter(|l| l.contains("deleting in web:")).count();
    assert!((1..=2).contains(&counters), "{counters} counter lines:\n{}", run.stderr);
    assert!(run.stderr.contains("web: delete "), "the plan names what goes: {}", run.stderr);
}

#[test]
fn a_busy_port_suggests_a_free_one() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = taken.local_addr().unwrap().to_string();
    let output = Command::new(DO_SIM).args(["--listen", &address]).output().unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("the address is in use; pass --listen 127.0.0.1:0"), "{stderr}");
}
