//! Bad input changes nothing: every hostile flag, record, file or token is exit 2 with a message
//! that says what to do, before any request.

use std::path::Path;

use serde_json::{json, Value};

use crate::support::{job, mutating_requests, sim, Tool, DEPLOY, DO_TAG, GC_WAIT, LOGIN, PRUNE};

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
        (PRUNE, [&remote[..], &["--max-interval", "200ms"]].concat(), "--max-interval 200ms is out of range: give 1s"),
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
fn a_conflict_shows_a_usage_line_of_the_flags_given_and_no_other_as_required() {
    let cases: [(&str, &[&str], &str); 5] = [
        (DEPLOY, &["--image", "web:v1", "--tag", "v1"], "Usage: do-deploy --image <IMAGE>\n"),
        (DO_TAG, &["--set-version", "1.0.0", "--bump", "minor"], "Usage: do-tag --set-version <X.Y.Z>\n"),
        (LOGIN, &["--print", "--logout"], "Usage: do-login --print\n"),
        (GC_WAIT, &["--no-input", "--input", "f"], "Usage: do-gc-wait --no-input\n"),
        (PRUNE, &["--no-input", "--input", "f"], "Usage: do-prune --no-input\n"),
    ];
    for (binary, args, usage) in cases {
        // With the variables that stand in for flags set, as in CI.
        let run = Tool::new(binary).env("DIGITALOCEAN_API_URL", "http://127.0.0.1:9").args(args).run();
        run.assert_code(2);
        assert!(run.stderr.contains("cannot be used with"), "{args:?}: {}", run.stderr);
        assert!(run.stderr.contains(usage), "{args:?}: {usage:?} not in {}", run.stderr);
        assert!(!run.stderr.contains("--api-url") && !run.stderr.contains("--retry"), "{args:?}: {}", run.stderr);
    }
}
