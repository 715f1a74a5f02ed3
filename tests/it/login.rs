//! do-login against the simulator: credentials that expire, merged into a docker config of
//! mode 0600, `--print`, `--logout`, and the refusals that leave a config untouched.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use serde_json::{json, Value};

use crate::support::{sim, Run, Tool, LOGIN};

fn login(sim: &do_sim::Sim, dir: &Path) -> Tool {
    Tool::against(LOGIN, sim).args(["--docker-config", dir.to_str().unwrap()]).env("HOME", dir)
}

fn config(dir: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(dir.join("config.json")).unwrap()).unwrap()
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// Nothing a run printed carries the API token or the registry credential.
fn assert_no_secret(sim: &do_sim::Sim, run: &Run) {
    let token = sim.token();
    let state = sim.state();
    for text in [&run.stdout, &run.stderr] {
        assert!(!text.contains(&token), "the token leaked: {text}");
        for credential in &state.credentials {
            assert!(!text.contains(&credential.password), "the registry password leaked: {text}");
        }
    }
}

#[test]
fn credentials_that_expire_are_merged_into_the_config_with_mode_0600() {
    let sim = sim(30);
    let dir = tempfile::tempdir().unwrap();
    let docker = dir.path().join("docker");
    std::fs::create_dir(&docker).unwrap();
    let theirs = json!({"auths": {"ghcr.io": {"auth": "dXNlcjpwYXNz"}}, "currentContext": "colima", "plugins": {"x": {"y": "z"}}});
    std::fs::write(docker.join("config.json"), theirs.to_string()).unwrap();
    std::fs::set_permissions(docker.join("config.json"), std::fs::Permissions::from_mode(0o644)).unwrap();
    let input = "{\"kind\":\"other\",\"v\":7,\"data\":{\"keep\":  \"as is\"}}\n";
    let run = login(&sim, &docker).args(["--expiry", "30m"]).stdin(input).run();
    run.assert_code(0);
    assert!(run.stdout.starts_with(input), "input passes through byte for byte: {}", run.stdout);
    let record = run.record("login");
    assert_eq!(record["registry"], "example-registry");
    assert_eq!(record["host"], "registry.digitalocean.com");
    assert_eq!(record["read_write"], true);
    assert_eq!(record["logged_out"], false);
    assert_eq!(record["config"], docker.join("config.json").to_str().unwrap());
    let expires = do_core::duration::parse_timestamp(record["expires_at"].as_str().unwrap()).unwrap();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
    let in_30m = expires.as_second() - now;
    assert!((1700..=1800).contains(&in_30m), "expires in 30 minutes: {in_30m} s");

    let written = config(&docker);
    assert_eq!(written["currentContext"], "colima", "the rest of the config is kept");
    assert_eq!(written["plugins"], theirs["plugins"]);
    assert_eq!(written["auths"]["ghcr.io"], theirs["auths"]["ghcr.io"], "other registries' logins are kept");
    assert_eq!(mode(&docker.join("config.json")), 0o600);
    let leftovers: Vec<_> = std::fs::read_dir(&docker).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(leftovers, ["config.json"], "no temporary file is left");

    // The entry is the credential the API issued: read-write, expiring in 30 minutes.
    let auth = written["auths"]["registry.digitalocean.com"]["auth"].as_str().unwrap().to_string();
    let state = sim.state();
    let issued = state.credentials.last().unwrap();
    let decoded = String::from_utf8(base64_decode(&auth)).unwrap();
    assert_eq!(decoded, format!("{}:{}", issued.user, issued.password));
    assert!(issued.read_write);
    let left = issued.expires.unwrap().saturating_duration_since(std::time::Instant::now()).as_secs();
    assert!((1700..=1800).contains(&left), "the simulator was asked for 30 minutes: {left} s");
    drop(state);
    let asked: Vec<String> = sim.requests().into_iter().map(|r| r.url).collect();
    assert!(
        asked.contains(
            &"/v2/registries/example-registry/docker-credentials?read_write=true&expiry_seconds=1800".to_string()
        ),
        "{asked:?}"
    );
    assert_no_secret(&sim, &run);
    assert!(!run.stdout.contains(&auth) && !run.stderr.contains(&auth));
}

fn base64_decode(text: &str) -> Vec<u8> {
    // A few lines rather than a dependency: standard alphabet with padding.
    let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut bits = 0u32;
    let mut count = 0;
    let mut out = Vec::new();
    for byte in text.bytes().filter(|b| *b != b'=') {
        bits = (bits << 6) | alphabet.iter().position(|a| *a == byte).unwrap() as u32;
        count += 6;
        if count >= 8 {
            count -= 8;
            out.push((bits >> count) as u8);
        }
    }
    out
}

#[test]
fn a_new_directory_is_made_private_and_the_default_is_docker_config_or_home() {
    let sim = sim(30);
    let dir = tempfile::tempdir().unwrap();
    let fresh = dir.path().join("a/b");
    login(&sim, &fresh).run().assert_code(0);
    assert_eq!(mode(&fresh), 0o700);
    assert_eq!(mode(&fresh.join("config.json")), 0o600);

    let elsewhere = dir.path().join("from-env");
    Tool::against(LOGIN, &sim).env("DOCKER_CONFIG", &elsewhere).env("HOME", dir.path()).run().assert_code(0);
    assert!(config(&elsewhere)["auths"]["registry.digitalocean.com"]["auth"].is_string());
    Tool::against(LOGIN, &sim)
        .env("DOCKER_CONFIG", "")
        .env("HOME", dir.path())
        .args(["--read-only"])
        .run()
        .assert_code(0);
    assert!(config(&dir.path().join(".docker"))["auths"]["registry.digitalocean.com"].is_object());
    assert!(!sim.state().credentials.last().unwrap().read_write, "--read-only asks for read-only credentials");
}

#[test]
fn print_writes_the_config_json_alone_and_no_file() {
    let sim = sim(30);
    let dir = tempfile::tempdir().unwrap();
    let run = Tool::against(LOGIN, &sim)
        .env("HOME", dir.path())
        .args(["--print"])
        .stdin("{\"kind\":\"x\",\"v\":1,\"data\":{}}\n")
        .run();
    run.assert_code(0);
    let printed: Value = serde_json::from_str(run.stdout.trim()).unwrap();
    assert_eq!(run.stdout.lines().count(), 1);
    assert!(printed["auths"]["registry.digitalocean.com"]["auth"].is_string());
    assert!(printed.get("kind").is_none(), "no record, no pass-through: stdout is the config");
    assert!(!dir.path().join(".docker").exists(), "nothing written");
    assert!(!run.stdout.contains(&sim.token()) && !run.stderr.contains(&sim.token()));
}

#[test]
fn logout_removes_only_its_entry_and_asks_nothing() {
    let sim = sim(30);
    let dir = tempfile::tempdir().unwrap();
    login(&sim, dir.path()).run().assert_code(0);
    let mut with_other = config(dir.path());
    with_other["auths"]["ghcr.io"] = json!({"auth": "b3RoZXI6eA=="});
    std::fs::write(dir.path().join("config.json"), with_other.to_string()).unwrap();
    sim.state().requests.clear();
    let run = Tool::new(LOGIN).args(["--logout", "--docker-config", dir.path().to_str().unwrap()]).run();
    run.assert_code(0);
    assert!(sim.requests().is_empty(), "logging out needs no token and makes no request");
    let after = config(dir.path());
    assert!(after["auths"].get("registry.digitalocean.com").is_none());
    assert_eq!(after["auths"]["ghcr.io"], with_other["auths"]["ghcr.io"]);
    assert_eq!(mode(&dir.path().join("config.json")), 0o600);
    assert_eq!(run.record("login")["logged_out"], true);
    // Again: nothing to remove is still done.
    Tool::new(LOGIN).args(["--logout", "--docker-config", dir.path().to_str().unwrap()]).run().assert_code(0);
}

#[test]
fn a_config_it_cannot_merge_into_is_refused_before_any_request() {
    let sim = sim(30);
    let cases = [
        ("{ not json", "is not a JSON object"),
        ("[1, 2]", "is not a JSON object"),
        (r#"{"credsStore": "desktop"}"#, "credential store \"desktop\""),
        (r#"{"credHelpers": {"registry.digitalocean.com": "doctl"}}"#, "credential helper \"doctl\""),
    ];
    for (content, message) in cases {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("config.json"), content).unwrap();
        sim.state().requests.clear();
        let run = login(&sim, dir.path()).run();
        run.assert_code(2);
        assert!(run.stderr.contains(message), "{content}: {}", run.stderr);
        assert_eq!(std::fs::read_to_string(dir.path().join("config.json")).unwrap(), content, "left as it was");
        assert!(sim.requests().is_empty(), "{content}: no credential was issued");
    }
    for bad in [&["--expiry", "0s"][..], &["--expiry", "31d"], &["--registry", "Bad_Name"], &["--print", "--logout"]] {
        let dir = tempfile::tempdir().unwrap();
        let run = login(&sim, dir.path()).args(bad).run();
        assert_eq!(run.code, 2, "{bad:?}: {run:?}");
        assert!(!dir.path().join("config.json").exists(), "{bad:?}");
    }
}

#[test]
fn the_login_record_has_the_shape_its_sample_pins() {
    let sim = sim(30);
    let dir = tempfile::tempdir().unwrap();
    let run = login(&sim, dir.path()).run();
    let fresh = run.records().into_iter().find(|r| r["kind"] == "login").unwrap();
    let pinned: Value = serde_json::from_str(&crate::contract::sample("login")).unwrap();
    assert_eq!(crate::contract::shape(&fresh), crate::contract::shape(&pinned));
}

#[test]
fn a_config_changed_while_the_api_answers_keeps_both_changes() {
    let sim = sim(30);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("config.json"), r#"{"auths": {}}"#).unwrap();
    sim.add_fault(do_sim::Fault {
        method: Some("GET".into()),
        path: "/v2/registries/example-registry/docker-credentials".into(),
        kind: do_sim::FaultKind::Latency { ms: 1500 },
        times: 1,
    });
    let path = dir.path().to_path_buf();
    let login = std::thread::spawn({
        let tool = login(&sim, &path);
        move || tool.run()
    });
    // `docker login` to another registry lands while do-login waits for its credentials.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while !sim.requests().iter().any(|r| r.url == "/v2/registries") {
        assert!(std::time::Instant::now() < deadline, "do-login never asked");
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    // The credentials request has arrived (its fault is taken) and hangs for 1.5 s.
    crate::support::wait_until("the credentials request", || sim.state().faults.is_empty());
    std::fs::write(dir.path().join("config.json"), r#"{"auths": {"ghcr.io": {"auth": "eDp5"}}}"#).unwrap();
    login.join().unwrap().assert_code(0);
    let after = config(dir.path());
    assert_eq!(after["auths"]["ghcr.io"]["auth"], "eDp5", "the other login survived");
    assert!(after["auths"]["registry.digitalocean.com"]["auth"].is_string());
}

#[test]
fn only_digitaloceans_registry_host_is_written_whatever_else_the_api_answers() {
    let sim = sim(30);
    let dir = tempfile::tempdir().unwrap();
    let mine = json!({"auths": {"ghcr.io": {"auth": "bWluZTptaW5l"}}});
    std::fs::write(dir.path().join("config.json"), mine.to_string()).unwrap();
    sim.add_fault(do_sim::Fault {
        method: Some("GET".into()),
        path: "/v2/registries/example-registry/docker-credentials".into(),
        kind: do_sim::FaultKind::Body {
            status: 200,
            body: json!({"auths": {"registry.digitalocean.com": {"auth": "ZG86ZG8="}, "ghcr.io": {"auth": "ZXZpbDpldmls"}, "index.docker.io": {"auth": "ZXZpbDpldmls"}}}),
        },
        times: 1,
    });
    let run = login(&sim, dir.path()).run();
    run.assert_code(0);
    let written = config(dir.path());
    assert_eq!(written["auths"]["ghcr.io"]["auth"], "bWluZTptaW5l", "the user's own ghcr.io login stays");
    assert!(written["auths"].get("index.docker.io").is_none(), "{written}");
    assert_eq!(written["auths"]["registry.digitalocean.com"]["auth"], "ZG86ZG8=");
    assert!(run.stderr.contains("also gave credentials for \"ghcr.io\""), "{}", run.stderr);
    assert_eq!(run.record("login")["host"], "registry.digitalocean.com");
}

#[test]
fn an_empty_credential_helper_is_dockers_own_file_and_a_shared_directory_is_warned_about() {
    let sim = sim(30);
    let dir = tempfile::tempdir().unwrap();
    let content = r#"{"credHelpers": {"registry.digitalocean.com": ""}}"#;
    std::fs::write(dir.path().join("config.json"), content).unwrap();
    let run = login(&sim, dir.path()).run();
    run.assert_code(0);
    assert!(config(dir.path())["auths"]["registry.digitalocean.com"]["auth"].is_string());
    assert!(!run.stderr.contains("can be written by other users"), "{}", run.stderr);
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let run = login(&sim, dir.path()).run();
    run.assert_code(0);
    assert!(run.stderr.contains("can be written by other users (mode 777)"), "{}", run.stderr);
    assert_no_secret(&sim, &run);
}
