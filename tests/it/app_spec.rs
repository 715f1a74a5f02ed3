//! do-deploy --spec: the app spec kept in the repository, checked by propose, diffed in a dry
//! run, created when asked; and preview apps made, updated and deleted from it.

use std::path::{Path, PathBuf};

use do_sim::{Fault, FaultKind, Sim};
use serde_json::{json, Value};

use crate::support::{call, mutating_requests, sim, Run, Tool, DEPLOY, FAST, PRUNE};

/// The simulator's default app as a repository would keep it: no region, instance size or
/// count (App Platform fills those in), the secret left for the live app to keep.
const APP_YAML: &str = r#"# .do/app.yaml
name: example-app
services:
  - name: web
    http_port: 8080
    image:
      registry_type: DOCR
      repository: web
      tag: latest
    envs:
      - key: LOG_LEVEL
        value: debug
        scope: RUN_TIME
      - key: DATABASE_URL
        type: SECRET
        scope: RUN_TIME
"#;

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

fn deploy(sim: &Sim, spec: &Path) -> Tool {
    Tool::against(DEPLOY, sim).args(FAST).arg_path("--spec", spec)
}

trait SpecArg {
    fn arg_path(self, flag: &str, path: &Path) -> Tool;
}

impl SpecArg for Tool {
    fn arg_path(self, flag: &str, path: &Path) -> Tool {
        self.args([flag.to_string(), path.display().to_string()])
    }
}

fn app_named(sim: &Sim, name: &str) -> Option<Value> {
    sim.snapshot()["apps"].as_array().unwrap().iter().find(|app| app["spec"]["name"] == name).cloned()
}

fn env_value<'a>(envs: &'a Value, key: &str) -> Option<&'a Value> {
    envs.as_array()?.iter().find(|e| e["key"] == key).map(|e| &e["value"])
}

fn app_changes(sim: &Sim) -> Vec<String> {
    mutating_requests(sim)
        .into_iter()
        .filter(|r| !r.url.ends_with("/propose"))
        .map(|r| format!("{} {}", r.method, r.url))
        .collect()
}

fn assert_refused(run: &Run, sim: &Sim) {
    run.assert_code(2);
    assert_eq!(app_changes(sim), Vec::<String>::new(), "nothing was changed");
}

#[test]
fn the_spec_from_yaml_or_json_becomes_the_apps_spec_pinned_and_with_its_secret_kept() {
    for (name, text) in [
        ("app.yaml", APP_YAML.to_string()),
        ("app.json", {
            let value: Value = do_deploy::specfile::parse_yaml(APP_YAML).unwrap();
            serde_json::to_string_pretty(&value).unwrap()
        }),
    ] {
        let sim = sim(30);
        let dir = tempfile::tempdir().unwrap();
        let file = write(dir.path(), name, &text);
        let secret_before =
            env_value(&app_named(&sim, "example-app").unwrap()["spec"]["services"][0]["envs"], "DATABASE_URL").cloned();
        let run = deploy(&sim, &file).args(["--repository", "web", "--tag", "v1.1.0"]).run();
        run.assert_code(0);
        let record = run.record("deploy");
        assert_eq!(record["phase"], "ACTIVE", "{name}");
        assert_eq!(record["created"], false);
        let digest = crate::support::digest_in(&sim, "web", "v1.1.0");
        let spec = app_named(&sim, "example-app").unwrap()["spec"].clone();
        let web = &spec["services"][0];
        assert_eq!(web["image"], json!({"registry_type": "DOCR", "repository": "web", "digest": digest}), "{name}");
        assert_eq!(env_value(&web["envs"], "LOG_LEVEL"), Some(&json!("debug")), "the file's value");
        assert_eq!(env_value(&web["envs"], "DATABASE_URL").cloned(), secret_before, "the live secret kept");
        let paths: Vec<&str> =
            record["spec_changes"].as_array().unwrap().iter().map(|c| c["path"].as_str().unwrap()).collect();
        assert_eq!(
            paths,
            ["services[web].envs[LOG_LEVEL].value", "services[web].image.digest", "services[web].image.tag"],
            "{name}"
        );
        assert_eq!(record["components"][0]["image_before"], "web:v1.2.0");
        let propose = sim.requests().into_iter().filter(|r| r.url.ends_with("/propose")).count();
        assert_eq!(propose, 1, "checked once before the update");
    }
}

#[test]
fn only_the_released_repositorys_components_are_pinned() {
    let sim = sim(30);
    sim.push("example-registry", "jobs", "v9", 1000).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "{APP_YAML}workers:\n  - name: queue\n    image:\n      registry_type: DOCR\n      repository: jobs\n      tag: v9\n  - name: proxy\n    image:\n      registry_type: DOCKER_HUB\n      registry: library\n      repository: web\n      tag: \"1.27\"\n"
    );
    let file = write(dir.path(), "app.yaml", &text);
    deploy(&sim, &file).args(["--repository", "web", "--tag", "v1.1.0"]).run().assert_code(0);
    let spec = app_named(&sim, "example-app").unwrap()["spec"].clone();
    assert_eq!(spec["services"][0]["image"]["digest"], crate::support::digest_in(&sim, "web", "v1.1.0"));
    assert_eq!(spec["workers"][0]["image"], json!({"registry_type": "DOCR", "repository": "jobs", "tag": "v9"}));
    assert_eq!(
        spec["workers"][1]["image"]["tag"], "1.27",
        "another registry's repository of the same name is not ours"
    );
}

#[test]
fn a_spec_that_leaves_out_a_live_secret_is_refused_unless_removal_is_allowed() {
    let sim = sim(30);
    let dir = tempfile::tempdir().unwrap();
    // The file forgot DATABASE_URL, a SECRET set on the live app (its value cannot be read back).
    let without = APP_YAML.replace("      - key: DATABASE_URL\n        type: SECRET\n        scope: RUN_TIME\n", "");
    assert_ne!(without, APP_YAML);
    let file = write(dir.path(), "app.yaml", &without);
    for dry_run in [true, false] {
        let mut tool = deploy(&sim, &file).args(["--repository", "web", "--tag", "v1.1.0"]);
        if dry_run {
            tool = tool.args(["--dry-run"]);
        }
        let run = tool.run();
        assert_refused(&run, &sim);
        assert!(
            run.stderr.contains("the spec would remove SECRET env DATABASE_URL of service web from example-app")
                && run.stderr.contains("--allow-removal"),
            "{}",
            run.stderr
        );
    }
    let live = app_named(&sim, "example-app").unwrap()["spec"]["services"][0]["envs"].clone();
    assert!(env_value(&live, "DATABASE_URL").is_some(), "the secret is still there");
    deploy(&sim, &file).args(["--repository", "web", "--tag", "v1.1.0", "--allow-removal"]).run().assert_code(0);
    let live = app_named(&sim, "example-app").unwrap()["spec"]["services"][0]["envs"].clone();
    assert!(env_value(&live, "DATABASE_URL").is_none(), "removed on purpose: {live}");
}

#[test]
fn references_expand_only_from_the_allow_list_and_an_unset_one_changes_nothing() {
    let sim = sim(30);
    let dir = tempfile::tempdir().unwrap();
    let text = APP_YAML.replace("value: debug", "value: \"${LEVEL}\"").replace(
        "      - key: DATABASE_URL",
        "      - key: SELF\n        value: ${APP_URL}/x\n      - key: SHELL_HOME\n        value: $${HOME}\n      - key: DATABASE_URL",
    );
    let file = write(dir.path(), "app.yaml", &text);
    // Without the escape, ${HOME} is neither allowed nor App Platform's: it would ship as text.
    let forgot = write(dir.path(), "forgot.yaml", &text.replace("$${HOME}", "${HOME}"));
    let refused = deploy(&sim, &forgot)
        .args(["--repository", "web", "--tag", "v1.1.0", "--spec-env", "LEVEL"])
        .env("LEVEL", "warn")
        .env("HOME", "/home/runner")
        .run();
    assert_refused(&refused, &sim);
    assert!(
        refused.stderr.contains("the spec refers to ${HOME} which App Platform does not set")
            && refused.stderr.contains("pass --spec-env HOME to expand it, or write $${NAME} for the literal text"),
        "{}",
        refused.stderr
    );
    assert!(sim.requests().is_empty(), "refused before any request");
    let unset = deploy(&sim, &file)
        .args(["--repository", "web", "--tag", "v1.1.0", "--spec-env", "LEVEL"])
        .env_remove("LEVEL")
        .run();
    assert_refused(&unset, &sim);
    assert!(unset.stderr.contains("${LEVEL} (allowed with --spec-env) but it is not set"), "{}", unset.stderr);
    assert!(sim.requests().is_empty(), "refused before any request");

    let token = deploy(&sim, &file)
        .args(["--repository", "web", "--tag", "v1.1.0", "--spec-env", "DIGITALOCEAN_ACCESS_TOKEN"])
        .run();
    assert_refused(&token, &sim);
    assert!(token.stderr.contains("never goes into an app spec"), "{}", token.stderr);
    let copied = deploy(&sim, &file)
        .args(["--repository", "web", "--tag", "v1.1.0", "--spec-env", "LEVEL"])
        .env("LEVEL", sim.token())
        .run();
    assert_refused(&copied, &sim);
    assert!(!copied.stderr.contains(&sim.token()) && !copied.stdout.contains(&sim.token()));

    let run = deploy(&sim, &file)
        .args(["--repository", "web", "--tag", "v1.1.0", "--spec-env", "LEVEL"])
        .env("LEVEL", "warn")
        .env("HOME", "/home/runner")
        .run();
    run.assert_code(0);
    let envs = app_named(&sim, "example-app").unwrap()["spec"]["services"][0]["envs"].clone();
    assert_eq!(env_value(&envs, "LOG_LEVEL"), Some(&json!("warn")));
    assert_eq!(env_value(&envs, "SELF"), Some(&json!("${APP_URL}/x")), "App Platform's own variable");
    assert_eq!(env_value(&envs, "SHELL_HOME"), Some(&json!("${HOME}")), "the escape $${{HOME}} is the literal text");
}

#[test]
fn propose_errors_are_listed_per_field_and_nothing_changes() {
    let sim = sim(30);
    let dir = tempfile::tempdir().unwrap();
    let text = APP_YAML.replace("name: web", "name: Web_1").replace("services:", "region: mars\nservices:");
    let file = write(dir.path(), "app.yaml", &text);
    let run = deploy(&sim, &file).args(["--repository", "web", "--tag", "v1.1.0", "--component", "Web_1"]).run();
    // A component name App Platform refuses is refused here already.
    assert_refused(&run, &sim);
    // Renamed, web would go: allowed, so that propose is what refuses.
    let run = deploy(&sim, &file).args(["--repository", "web", "--tag", "v1.1.0", "--allow-removal"]).run();
    assert_refused(&run, &sim);
    assert!(run.stderr.contains("does not pass App Platform's checks; nothing was changed"), "{}", run.stderr);
    assert!(run.stderr.contains("  region: unknown region \"mars\""), "{}", run.stderr);
    assert!(run.stderr.contains("  services.name: component name \"Web_1\""), "{}", run.stderr);
    let before = app_named(&sim, "example-app").unwrap();
    assert_eq!(before["spec"]["services"][0]["image"]["tag"], "v1.2.0");
    assert!(run.stdout.lines().all(|l| !l.contains("\"kind\":\"deploy\"")), "no deploy record for a refused spec");
}

#[test]
fn the_dry_run_shows_a_readable_diff_and_sends_only_reads() {
    let sim = sim(30);
    let dir = tempfile::tempdir().unwrap();
    let text = APP_YAML.replace("    http_port: 8080\n", "    http_port: 8080\n    instance_count: 3\n");
    let file = write(dir.path(), "app.yaml", &text);
    let run = deploy(&sim, &file).args(["--repository", "web", "--tag", "v1.1.0", "--dry-run"]).run();
    run.assert_code(0);
    let digest = crate::support::digest_in(&sim, "web", "v1.1.0");
    for line in [
        "dry run: the spec would change 4 fields of example-app:".to_string(),
        "  ~ services[web].envs[LOG_LEVEL].value: \"info\" -> \"debug\"".to_string(),
        format!("  + services[web].image.digest: \"{digest}\""),
        "  - services[web].image.tag: \"v1.2.0\"".to_string(),
        "  ~ services[web].instance_count: 1 -> 3".to_string(),
    ] {
        assert!(run.stderr.contains(&line), "{line:?} not in:\n{}", run.stderr);
    }
    for quiet in ["region", "instance_size_slug", "DATABASE_URL", "EV["] {
        assert!(!run.stderr.contains(quiet), "{quiet} is not a change:\n{}", run.stderr);
    }
    assert_eq!(run.record("deploy")["outcome"], "dry_run");
    assert_eq!(run.record("deploy")["spec_changes"].as_array().unwrap().len(), 4);
    assert_eq!(app_changes(&sim), Vec::<String>::new());
    assert_eq!(app_named(&sim, "example-app").unwrap()["spec"]["services"][0]["image"]["tag"], "v1.2.0");

    // Once deployed, the same file is no change at all, fields App Platform filled in included.
    deploy(&sim, &file).args(["--repository", "web", "--tag", "v1.1.0"]).run().assert_code(0);
    let again = deploy(&sim, &file).args(["--repository", "web", "--tag", "v1.1.0"]).run();
    again.assert_code(0);
    assert_eq!(again.record("deploy")["outcome"], "unchanged", "{}", again.stderr);
    assert_eq!(again.record("deploy")["spec_changes"], json!([]));
}

#[test]
fn answers_shaped_like_the_live_apis_still_find_the_deployment_and_see_no_change_after() {
    // No pending_deployment in the update's answer, and specs answered without false, empty
    // and null values (proto3 JSON), on top of the fields App Platform fills in.
    let sim = sim(30);
    sim.state().quirks = do_sim::Quirks { update_without_pending: true, normalized_specs: true };
    let dir = tempfile::tempdir().unwrap();
    let text =
        APP_YAML.replace("    http_port: 8080\n", "    http_port: 8080\n    routes: []\n    run_command: \"\"\n");
    let file = write(dir.path(), "app.yaml", &text);
    let first = deploy(&sim, &file).args(["--repository", "web", "--tag", "v1.1.0"]).run();
    first.assert_code(0);
    let app = app_named(&sim, "example-app").unwrap();
    let newest = app["deployments"].as_array().unwrap().last().unwrap()["id"].clone();
    assert_eq!(first.record("deploy")["deployment_id"], newest, "its own deployment, found without pending_deployment");
    let again = deploy(&sim, &file).args(["--repository", "web", "--tag", "v1.1.0"]).run();
    again.assert_code(0);
    assert_eq!(again.record("deploy")["outcome"], "unchanged", "{}", again.stderr);

    // A create answered the same way: its own deployment is followed, none is added.
    let preview = deploy(&sim, &file).args(["--repository", "web", "--tag", "v1.1.0", "--preview", "pr-6"]).run();
    preview.assert_code(0);
    let app = app_named(&sim, "example-app-pr-6").unwrap();
    assert_eq!(app["deployments"].as_array().unwrap().len(), 1, "{}", preview.stderr);
    assert_eq!(preview.record("deploy")["deployment_id"], app["deployments"][0]["id"]);
    assert_eq!(preview.record("deploy")["phase"], "ACTIVE");
}

#[test]
fn removing_a_component_or_a_domain_needs_allow_removal() {
    let sim = sim(30);
    {
        let mut state = sim.state();
        let spec = &mut state.apps[0].spec;
        spec["domains"] = json!([{"domain": "shop.example.com", "type": "PRIMARY"}]);
        spec["workers"] =
            json!([{"name": "queue", "image": {"registry_type": "DOCR", "repository": "web", "tag": "v1.2.0"}}]);
    }
    let dir = tempfile::tempdir().unwrap();
    let file = write(dir.path(), "app.yaml", APP_YAML);
    for dry in [true, false] {
        let mut args = vec!["--repository", "web", "--tag", "v1.1.0"];
        if dry {
            args.push("--dry-run");
        }
        let run = deploy(&sim, &file).args(args).run();
        assert_refused(&run, &sim);
        assert!(
            run.stderr.contains("would remove worker queue, domain shop.example.com from example-app"),
            "{}",
            run.stderr
        );
    }
    let run = deploy(&sim, &file).args(["--repository", "web", "--tag", "v1.1.0", "--allow-removal"]).run();
    run.assert_code(0);
    let spec = app_named(&sim, "example-app").unwrap()["spec"].clone();
    assert!(spec.get("domains").is_none() && spec.get("workers").is_none(), "{spec}");
}

#[test]
fn what_changed_on_the_app_while_waiting_for_a_busy_deployment_is_neither_undone_nor_lost() {
    let run_while_busy = |change: &dyn Fn(&mut Value)| -> (Run, Value) {
        let sim = sim(30);
        {
            let mut state = sim.state();
            state.apps[0].next_phase_duration = Some(std::time::Duration::from_millis(150));
        }
        let id = sim.state().apps[0].id.clone();
        let (status, _) = crate::support::call(
            &sim,
            "POST",
            &format!("/v2/apps/{id}/deployments"),
            Some(json!({})),
            Some(&sim.token()),
        );
        assert_eq!(status, 200);
        let dir = tempfile::tempdir().unwrap();
        let file = write(dir.path(), "app.yaml", APP_YAML);
        let run = std::thread::scope(|scope| {
            let run = scope.spawn(|| deploy(&sim, &file).args(["--repository", "web", "--tag", "v1.1.0"]).run());
            // Once do-deploy is waiting for the deployment in progress, someone edits the app.
            let until = std::time::Instant::now() + std::time::Duration::from_secs(10);
            while !sim.requests().iter().any(|r| r.url.contains("/deployments/")) && std::time::Instant::now() < until {
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            change(&mut sim.state().apps[0].spec);
            run.join().unwrap()
        });
        (run, app_named(&sim, "example-app").unwrap()["spec"].clone())
    };
    let (run, spec) = run_while_busy(&|spec| {
        spec["services"][0]["envs"][1]["value"] = json!("EV[1:rotated-meanwhile]");
    });
    run.assert_code(0);
    assert!(run.stderr.contains("waiting for deployment"), "{}", run.stderr);
    assert_eq!(
        env_value(&spec["services"][0]["envs"], "DATABASE_URL"),
        Some(&json!("EV[1:rotated-meanwhile]")),
        "the rotation stays"
    );
    let (run, spec) = run_while_busy(&|spec| {
        spec["domains"] = json!([{"domain": "shop.example.com", "type": "PRIMARY"}]);
    });
    run.assert_code(2);
    assert!(run.stderr.contains("would remove domain shop.example.com"), "{}", run.stderr);
    assert_eq!(spec["domains"][0]["domain"], "shop.example.com", "the domain stays");
}

#[test]
fn a_missing_app_is_created_only_with_create() {
    let sim = sim(30);
    let dir = tempfile::tempdir().unwrap();
    let file = write(dir.path(), "app.yaml", &APP_YAML.replace("name: example-app", "name: new-shop"));
    let missing = deploy(&sim, &file).args(["--repository", "web", "--tag", "v1.1.0"]).run();
    assert_refused(&missing, &sim);
    assert!(missing.stderr.contains("pass --create"), "{}", missing.stderr);
    let dry = deploy(&sim, &file).args(["--repository", "web", "--tag", "v1.1.0", "--create", "--dry-run"]).run();
    dry.assert_code(0);
    assert!(dry.stderr.contains("dry run: would create app new-shop"), "{}", dry.stderr);
    assert_eq!(dry.record("deploy")["app_id"], "(not created yet)");
    assert!(app_named(&sim, "new-shop").is_none());

    let run = deploy(&sim, &file).args(["--repository", "web", "--tag", "v1.1.0", "--create"]).run();
    run.assert_code(0);
    let record = run.record("deploy");
    let app = app_named(&sim, "new-shop").expect("created");
    assert_eq!(record["created"], true);
    assert_eq!(record["app_id"], app["id"]);
    assert_eq!(record["components"][0]["image_before"], "none");
    assert!(
        record["spec_changes"].as_array().unwrap().iter().any(|c| c["path"] == "name" && c["before"].is_null()),
        "{record}"
    );
    assert_eq!(record["phase"], "ACTIVE");
    assert!(record["live_url"].as_str().is_some_and(|u| u.ends_with("/_sim/live/new-shop")), "{record}");
    assert_eq!(app["spec"]["services"][0]["image"]["digest"], crate::support::digest_in(&sim, "web", "v1.1.0"));
    assert_eq!(sim.snapshot()["apps"].as_array().unwrap().len(), 2);
}

#[test]
fn a_lost_create_answer_makes_one_app() {
    let sim = sim(30);
    sim.add_fault(Fault {
        method: Some("POST".into()),
        path: "/v2/apps$".into(),
        kind: FaultKind::DropAfterApply,
        times: 1,
    });
    let dir = tempfile::tempdir().unwrap();
    let file = write(dir.path(), "app.yaml", APP_YAML);
    let run = deploy(&sim, &file).args(["--repository", "web", "--tag", "v1.1.0", "--preview", "pr-3"]).run();
    run.assert_code(0);
    assert!(run.stderr.contains("looking for app example-app-pr-3"), "{}", run.stderr);
    let creates = sim.requests().into_iter().filter(|r| r.method == "POST" && r.url == "/v2/apps").count();
    assert_eq!(creates, 1, "never sent twice");
    let app = app_named(&sim, "example-app-pr-3").unwrap();
    assert_eq!(app["deployments"].as_array().unwrap().len(), 1, "the create's own deployment was followed");
    assert_eq!(run.record("deploy")["deployment_id"], app["deployments"][0]["id"]);
}

#[test]
fn a_create_refused_because_the_name_was_just_taken_goes_on_with_that_app() {
    // Another run created the preview between this run's listing and its create.
    let sim = sim(30);
    sim.add_fault(Fault {
        method: Some("POST".into()),
        path: "/v2/apps$".into(),
        kind: FaultKind::AnswerAfterApply {
            status: 409,
            body: r#"{"id":"conflict","message":"an app named \"example-app-pr-4\" already exists"}"#.into(),
            content_type: Some("application/json".into()),
        },
        times: 1,
    });
    let dir = tempfile::tempdir().unwrap();
    let file = write(dir.path(), "app.yaml", APP_YAML);
    let run = deploy(&sim, &file).args(["--repository", "web", "--tag", "v1.1.0", "--preview", "pr-4"]).run();
    run.assert_code(0);
    assert!(run.stderr.contains("app example-app-pr-4 exists now"), "{}", run.stderr);
    let record = run.record("deploy");
    let app = app_named(&sim, "example-app-pr-4").unwrap();
    assert_eq!((record["created"].as_bool(), record["phase"].as_str()), (Some(false), Some("ACTIVE")));
    assert_eq!(app["deployments"].as_array().unwrap().len(), 1, "the other run's deployment was followed, not doubled");
    assert_eq!(record["deployment_id"], app["deployments"][0]["id"]);

    // A refusal with no app of the name behind it is the refusal, nothing else.
    let sim = crate::support::sim(30);
    sim.add_fault(Fault {
        method: Some("POST".into()),
        path: "/v2/apps$".into(),
        kind: FaultKind::Status { status: 422, retry_after: None },
        times: 1,
    });
    let run = deploy(&sim, &file).args(["--repository", "web", "--tag", "v1.1.0", "--preview", "pr-4"]).run();
    run.assert_code(2);
    assert!(run.stderr.contains("App Platform refused to create the app; nothing was changed"), "{}", run.stderr);
    assert!(app_named(&sim, "example-app-pr-4").is_none());
}

#[test]
fn a_spec_linked_to_the_environment_or_broken_on_a_secret_line_shows_no_text_of_it() {
    let sim = sim(30);
    let dir = tempfile::tempdir().unwrap();
    let link = dir.path().join("app.yaml");
    std::os::unix::fs::symlink("/proc/self/environ", &link).unwrap();
    let run =
        deploy(&sim, &link).args(["--repository", "web", "--tag", "v1.1.0"]).env("CI_SECRET", "ci-secret-8181").run();
    assert_refused(&run, &sim);
    assert!(run.stderr.contains("a system file, not an app spec"), "{}", run.stderr);
    assert!(!run.stderr.contains("ci-secret-8181") && !run.stdout.contains("ci-secret-8181"));
    let broken = write(dir.path(), "broken.yaml", &APP_YAML.replace("value: debug", "value: pass-9191: ["));
    let run = deploy(&sim, &broken).args(["--repository", "web", "--tag", "v1.1.0"]).run();
    assert_refused(&run, &sim);
    assert!(
        run.stderr.contains("is not valid YAML: line 12 column 25: mapping values are not allowed"),
        "{}",
        run.stderr
    );
    assert!(!run.stderr.contains("pass-9191"), "{}", run.stderr);
    assert!(sim.requests().is_empty(), "refused before any request");
}

#[test]
fn credentials_in_any_spec_field_are_shown_as_secret_everywhere() {
    let sim = sim(30);
    let dir = tempfile::tempdir().unwrap();
    // A private Docker Hub image with registry credentials (one from --spec-env), and log
    // destinations with an API key, a token and a password, beside the released service.
    let destinations = "    log_destinations:
      - name: dd
        datadog:
          api_key: dd-key-literal-4242
      - name: lt
        logtail:
          token: logtail-token-5151
      - name: os
        open_search:
          endpoint: https://search.example.com
          basic_auth:
            user: admin
            password: os-password-6262
";
    let worker = "workers:
  - name: sidecar
    image:
      registry_type: DOCKER_HUB
      registry: acme
      repository: sidecar
      tag: \"1.0\"
      registry_credentials: \"acme:${HUB_TOKEN}\"
";
    let text = APP_YAML.replacen("    envs:\n", &format!("{destinations}    envs:\n"), 1) + worker;
    let file = write(dir.path(), "app.yaml", &text);
    let secrets = ["dd-key-literal-4242", "logtail-token-5151", "os-password-6262", "hub-token-7373"];
    for dry_run in [true, false] {
        let summary = dir.path().join(format!("summary-{dry_run}"));
        let mut tool = deploy(&sim, &file)
            .args(["--repository", "web", "--tag", "v1.1.0", "--spec-env", "HUB_TOKEN"])
            .env("HUB_TOKEN", "hub-token-7373")
            .env("GITHUB_ACTIONS", "true")
            .env("GITHUB_STEP_SUMMARY", &summary)
            .env("GITHUB_OUTPUT", dir.path().join("outputs"));
        if dry_run {
            tool = tool.args(["--dry-run"]);
        }
        let run = tool.run();
        run.assert_code(0);
        let summarised = std::fs::read_to_string(&summary).unwrap_or_default();
        for secret in secrets {
            for (what, text) in [("stdout", &run.stdout), ("stderr", &run.stderr), ("summary", &summarised)] {
                assert!(!text.contains(secret), "{secret} in {what} (dry run {dry_run}):\n{text}");
            }
        }
        if dry_run {
            for field in
                ["workers[sidecar].image.registry_credentials", "services[web].log_destinations[dd].datadog.api_key"]
            {
                assert!(run.stderr.contains(&format!("+ {field}: (secret, new value)")), "{}", run.stderr);
            }
        }
    }
    let live = app_named(&sim, "example-app").unwrap()["spec"].clone();
    assert_eq!(live["workers"][0]["image"]["registry_credentials"], "acme:hub-token-7373", "sent as given");
}

#[test]
fn production_never_carries_the_preview_mark_so_delete_preview_cannot_reach_it() {
    let sim = sim(30);
    let dir = tempfile::tempdir().unwrap();
    // A spec that gives production the mark itself: refused before any request.
    let marked = APP_YAML.replace(
        "      - key: LOG_LEVEL\n",
        "      - key: DO_RELEASE_PREVIEW\n        value: pr-1\n      - key: LOG_LEVEL\n",
    );
    let file = write(dir.path(), "marked.yaml", &marked);
    let run = deploy(&sim, &file).args(["--repository", "web", "--tag", "v1.1.0"]).run();
    assert_refused(&run, &sim);
    assert!(run.stderr.contains("which only do-deploy --preview sets"), "{}", run.stderr);
    assert!(sim.requests().is_empty(), "refused before any request");
    // A preview app, then a production deploy of a spec named like it: refused.
    let file = write(dir.path(), "app.yaml", APP_YAML);
    deploy(&sim, &file).args(["--repository", "web", "--tag", "v1.1.0", "--preview", "pr-1"]).run().assert_code(0);
    let named_like = write(dir.path(), "named.yaml", &APP_YAML.replace("name: example-app", "name: example-app-pr-1"));
    let changes_before = app_changes(&sim);
    let run = deploy(&sim, &named_like).args(["--repository", "web", "--tag", "v1.1.0"]).run();
    run.assert_code(2);
    assert!(run.stderr.contains("is a preview app"), "{}", run.stderr);
    assert_eq!(app_changes(&sim), changes_before, "nothing changed");
}

#[test]
fn a_typo_in_the_spec_is_named_with_the_key_it_meant() {
    let sim = sim(30);
    let dir = tempfile::tempdir().unwrap();
    let typo = APP_YAML.replace("services:", "servics:").replace("http_port:", "http_prot:");
    let file = write(dir.path(), "app.yaml", &typo);
    let run = deploy(&sim, &file).args(["--repository", "web", "--tag", "v1.1.0"]).run();
    assert_refused(&run, &sim);
    assert!(run.stderr.contains("\"servics\" at the top; did you mean services?"), "{}", run.stderr);
    assert!(sim.requests().is_empty(), "refused before any request");
    let nested = write(dir.path(), "nested.yaml", &APP_YAML.replace("http_port:", "http_prot:"));
    let run = deploy(&sim, &nested).args(["--repository", "web", "--tag", "v1.1.0"]).run();
    assert_refused(&run, &sim);
    assert!(run.stderr.contains("\"http_prot\" in services[web]; did you mean http_port?"), "{}", run.stderr);
}

#[test]
fn the_token_never_reaches_a_preview_through_preview_env() {
    let sim = sim(30);
    let dir = tempfile::tempdir().unwrap();
    let file = write(dir.path(), "app.yaml", APP_YAML);
    for pair in [format!("LEAK={}", sim.token()), "DIGITALOCEAN_ACCESS_TOKEN=x".to_string()] {
        let run = deploy(&sim, &file)
            .args(["--repository", "web", "--tag", "v1.1.0", "--preview", "pr-1", "--preview-env", &pair])
            .run();
        assert_refused(&run, &sim);
        assert!(run.stderr.contains("the DigitalOcean token never goes into an app spec"), "{}", run.stderr);
        assert!(!run.stderr.contains(&sim.token()) && !run.stdout.contains(&sim.token()));
    }
    assert!(app_named(&sim, "example-app-pr-1").is_none(), "no preview was made");
    assert!(sim.requests().is_empty(), "refused before any request");
}

#[test]
fn a_preview_is_created_then_updated_in_place_and_its_url_is_an_output() {
    let sim = sim(30);
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "{APP_YAML}domains:\n  - domain: shop.example.com\n    type: PRIMARY\nalerts:\n  - rule: DEPLOYMENT_FAILED\n"
    );
    let file = write(dir.path(), "app.yaml", &text);
    let outputs = dir.path().join("github-output");
    let summary = dir.path().join("github-summary");
    let first = deploy(&sim, &file)
        .args(["--repository", "web", "--tag", "v1.1.0", "--preview", "pr-42", "--preview-env", "LOG_LEVEL=trace"])
        .env("GITHUB_ACTIONS", "true")
        .env("GITHUB_OUTPUT", &outputs)
        .env("GITHUB_STEP_SUMMARY", &summary)
        .run();
    first.assert_code(0);
    let record = first.record("deploy");
    let preview = app_named(&sim, "example-app-pr-42").expect("the preview app");
    assert_eq!((record["created"].as_bool(), record["preview"].as_str()), (Some(true), Some("pr-42")));
    let live_url = record["live_url"].as_str().unwrap().to_string();
    assert!(live_url.ends_with("/_sim/live/example-app-pr-42"), "{live_url}");
    let written = std::fs::read_to_string(&outputs).unwrap();
    assert!(written.contains(&live_url) && written.contains("example-app-pr-42"), "{written}");
    let summarised = std::fs::read_to_string(&summary).unwrap();
    assert!(summarised.contains(&format!("Live at {live_url}")), "{summarised}");
    assert!(
        summarised.contains("| `services[web].envs[DO_RELEASE_PREVIEW].value` | (none) | `\"pr-42\"` |"),
        "{summarised}"
    );
    let spec = &preview["spec"];
    assert!(spec.get("domains").is_none(), "the production domain stays with production");
    assert!(spec.get("alerts").is_none(), "the file's alerts were dropped");
    let web_envs = &spec["services"][0]["envs"];
    assert_eq!(env_value(web_envs, "DO_RELEASE_PREVIEW"), Some(&json!("pr-42")));
    assert_eq!(env_value(web_envs, "LOG_LEVEL"), Some(&json!("trace")));
    let production = app_named(&sim, "example-app").unwrap();
    assert_eq!(production["spec"]["services"][0]["image"]["tag"], "v1.2.0", "production untouched");

    sim.push("example-registry", "web", "pr-42-b0b", 1000).unwrap();
    let second = deploy(&sim, &file).args(["--repository", "web", "--tag", "pr-42-b0b", "--preview", "pr-42"]).run();
    second.assert_code(0);
    let updated = app_named(&sim, "example-app-pr-42").unwrap();
    assert_eq!(updated["id"], preview["id"], "the same app");
    assert_eq!(second.record("deploy")["created"], false);
    assert_eq!(updated["deployments"].as_array().unwrap().len(), 2, "a new deployment");
    assert_eq!(updated["spec"]["services"][0]["image"]["digest"], crate::support::digest_in(&sim, "web", "pr-42-b0b"));
    assert_eq!(sim.snapshot()["apps"].as_array().unwrap().len(), 2);
}

#[test]
fn long_preview_names_are_shortened_stably() {
    let sim = sim(30);
    let dir = tempfile::tempdir().unwrap();
    let file =
        write(dir.path(), "app.yaml", &APP_YAML.replace("name: example-app", "name: a-rather-long-storefront-app"));
    for _ in 0..2 {
        deploy(&sim, &file)
            .args(["--repository", "web", "--tag", "v1.1.0", "--preview", "pr-1234", "--create"])
            .run()
            .assert_code(0);
    }
    let names: Vec<String> = sim.snapshot()["apps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["spec"]["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(names.len(), 2, "{names:?}");
    let preview = &names[1];
    assert!(preview.len() <= 32 && !preview.contains("--"), "{preview}");
    assert!(preview.starts_with("a-rather-long-sto") && preview.ends_with("-pr-1234"), "{preview}");
    let deleted = deploy(&sim, &file).args(["--delete-preview", "pr-1234"]).run();
    deleted.assert_code(0);
    assert_eq!(deleted.record("preview-delete")["app_name"], preview.as_str());
}

#[test]
fn two_runs_of_one_preview_at_once_make_one_app() {
    let sim = sim(60);
    let dir = tempfile::tempdir().unwrap();
    let file = write(dir.path(), "app.yaml", APP_YAML);
    let runs: Vec<Run> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..2)
            .map(|_| {
                scope.spawn(|| {
                    deploy(&sim, &file).args(["--repository", "web", "--tag", "v1.1.0", "--preview", "pr-9"]).run()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for run in &runs {
        run.assert_code(0);
    }
    let previews: Vec<Value> = sim.snapshot()["apps"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["spec"]["name"] == "example-app-pr-9")
        .cloned()
        .collect();
    assert_eq!(previews.len(), 1, "one app");
    assert_eq!(runs[0].record("deploy")["app_id"], previews[0]["id"]);
    assert_eq!(runs[1].record("deploy")["app_id"], previews[0]["id"]);
    assert!(runs.iter().all(|r| r.record("deploy")["phase"] == "ACTIVE"));
}

#[test]
fn only_a_marked_preview_is_deleted() {
    let sim = sim(30);
    let dir = tempfile::tempdir().unwrap();
    let file = write(dir.path(), "app.yaml", APP_YAML);
    deploy(&sim, &file).args(["--repository", "web", "--tag", "v1.1.0", "--preview", "pr-5"]).run().assert_code(0);
    let dry = deploy(&sim, &file).args(["--delete-preview", "pr-5", "--dry-run"]).run();
    dry.assert_code(0);
    assert_eq!(dry.record("preview-delete")["outcome"], "dry_run");
    assert!(app_named(&sim, "example-app-pr-5").is_some());
    let run = deploy(&sim, &file).args(["--delete-preview", "pr-5"]).run();
    run.assert_code(0);
    let record = run.record("preview-delete");
    assert_eq!((record["deleted"].as_bool(), record["outcome"].as_str()), (Some(true), Some("deleted")));
    assert!(app_named(&sim, "example-app-pr-5").is_none());
    assert!(app_named(&sim, "example-app").is_some(), "production stays");
    let again = deploy(&sim, &file).args(["--delete-preview", "pr-5"]).run();
    again.assert_code(0);
    assert_eq!(again.record("preview-delete")["outcome"], "absent");

    // An app that merely has a preview's name, or another preview's mark, is not ours to delete.
    let mut spec = do_sim::default_app_spec("example-app-pr-7", "web", "v1.2.0");
    sim.add_app(spec.clone(), true);
    spec["name"] = json!("example-app-pr-8");
    spec["services"][0]["envs"] = json!([{"key": "DO_RELEASE_PREVIEW", "value": "pr-7"}]);
    sim.add_app(spec, true);
    for preview in ["pr-7", "pr-8"] {
        let refused = deploy(&sim, &file).args(["--delete-preview", preview]).run();
        refused.assert_code(2);
        assert!(refused.stderr.contains("not deleting it"), "{}", refused.stderr);
    }
    assert!(app_named(&sim, "example-app-pr-7").is_some() && app_named(&sim, "example-app-pr-8").is_some());
    // Nor is it a preview to deploy to.
    let overwrite = deploy(&sim, &file).args(["--repository", "web", "--tag", "v1.1.0", "--preview", "pr-7"]).run();
    overwrite.assert_code(2);
    assert!(overwrite.stderr.contains("is not the preview pr-7 made by do-deploy"), "{}", overwrite.stderr);
    assert_eq!(app_named(&sim, "example-app-pr-7").unwrap()["spec"]["services"][0]["image"]["tag"], "v1.2.0");
    assert!(!mutating_requests(&sim)
        .iter()
        .any(|r| r.method == "DELETE" && !r.url.contains(record["app_id"].as_str().unwrap())));
}

#[test]
fn a_delete_whose_answer_is_lost_or_that_another_run_won_still_ends_deleted() {
    for kind in [
        FaultKind::DropAfterApply,
        // Another run's delete went first: ours is answered 404.
        FaultKind::AnswerAfterApply {
            status: 404,
            body: r#"{"id":"not_found","message":"The resource you were accessing could not be found."}"#.into(),
            content_type: Some("application/json".into()),
        },
        // Deleted, but answered with an error that is not retried: the fresh read tells.
        FaultKind::AnswerAfterApply {
            status: 409,
            body: r#"{"id":"conflict","message":"try again"}"#.into(),
            content_type: Some("application/json".into()),
        },
    ] {
        let sim = sim(30);
        let dir = tempfile::tempdir().unwrap();
        let file = write(dir.path(), "app.yaml", APP_YAML);
        deploy(&sim, &file).args(["--repository", "web", "--tag", "v1.1.0", "--preview", "pr-2"]).run().assert_code(0);
        let id = app_named(&sim, "example-app-pr-2").unwrap()["id"].as_str().unwrap().to_string();
        sim.add_fault(Fault {
            method: Some("DELETE".into()),
            path: format!("/v2/apps/{id}"),
            kind: kind.clone(),
            times: 1,
        });
        let run = deploy(&sim, &file).args(["--delete-preview", "pr-2"]).run();
        run.assert_code(0);
        assert_eq!(run.record("preview-delete")["outcome"], "deleted", "{kind:?}");
        assert!(app_named(&sim, "example-app-pr-2").is_none());
        assert!(app_named(&sim, "example-app").is_some(), "nothing else went");
    }
    // A delete refused with the app still there is a failure, not a success.
    let sim = sim(30);
    let dir = tempfile::tempdir().unwrap();
    let file = write(dir.path(), "app.yaml", APP_YAML);
    deploy(&sim, &file).args(["--repository", "web", "--tag", "v1.1.0", "--preview", "pr-2"]).run().assert_code(0);
    sim.add_fault(Fault {
        method: Some("DELETE".into()),
        path: "/v2/apps/".into(),
        kind: FaultKind::Status { status: 403, retry_after: None },
        times: 1,
    });
    let run = deploy(&sim, &file).args(["--delete-preview", "pr-2"]).run();
    run.assert_code(1);
    assert!(run.stderr.contains("could not delete preview app example-app-pr-2"), "{}", run.stderr);
    assert_eq!(
        (run.record("preview-delete")["outcome"].as_str(), run.record("preview-delete")["deleted"].as_bool()),
        (Some("failed"), Some(false))
    );
    assert!(app_named(&sim, "example-app-pr-2").is_some());
}

#[test]
fn a_preview_renamed_or_gone_by_the_fresh_read_is_not_deleted() {
    // Found by name, then renamed before the read right before the delete: refused.
    let sim = sim(30);
    let dir = tempfile::tempdir().unwrap();
    let file = write(dir.path(), "app.yaml", APP_YAML);
    deploy(&sim, &file).args(["--repository", "web", "--tag", "v1.1.0", "--preview", "pr-3"]).run().assert_code(0);
    let id = app_named(&sim, "example-app-pr-3").unwrap()["id"].as_str().unwrap().to_string();
    let (_, mut app) = call(&sim, "GET", &format!("/v2/apps/{id}"), None, Some(&sim.token()));
    app["app"]["spec"]["name"] = json!("production-now");
    sim.add_fault(Fault {
        method: Some("GET".into()),
        path: format!("/v2/apps/{id}$"),
        kind: FaultKind::Body { status: 200, body: app },
        times: 1,
    });
    let run = deploy(&sim, &file).args(["--delete-preview", "pr-3"]).run();
    run.assert_code(2);
    assert!(run.stderr.contains("was not made by do-deploy --preview pr-3"), "{}", run.stderr);
    assert!(!mutating_requests(&sim).iter().any(|r| r.method == "DELETE"), "no delete");
    // Gone between the lookup and the fresh read: nothing to delete, done.
    sim.add_fault(Fault {
        method: Some("GET".into()),
        path: format!("/v2/apps/{id}$"),
        kind: FaultKind::Status { status: 404, retry_after: None },
        times: 1,
    });
    let run = deploy(&sim, &file).args(["--delete-preview", "pr-3"]).run();
    run.assert_code(0);
    assert_eq!(run.record("preview-delete")["outcome"], "absent");
    assert!(!mutating_requests(&sim).iter().any(|r| r.method == "DELETE"), "no delete");
    assert!(app_named(&sim, "example-app-pr-3").is_some(), "the simulator still has it: nothing was sent");
}

#[test]
fn prune_keeps_the_image_a_preview_runs() {
    let sim = sim(30);
    let dir = tempfile::tempdir().unwrap();
    let file = write(dir.path(), "app.yaml", APP_YAML);
    sim.push("example-registry", "web", "pr-11-c0ffee", 1000).unwrap();
    let preview_digest = crate::support::digest_in(&sim, "web", "pr-11-c0ffee");
    deploy(&sim, &file)
        .args(["--repository", "web", "--tag", "pr-11-c0ffee", "--preview", "pr-11"])
        .run()
        .assert_code(0);
    // Newer pushes leave the preview's tag outside --keep-last 1: only the preview app keeps it.
    for tag in ["v2.0.0", "v2.1.0", "v2.2.0"] {
        sim.push("example-registry", "web", tag, 1000).unwrap();
    }
    let run = Tool::against(PRUNE, &sim).args(["--interval", "30ms", "--keep-last", "1", "--execute"]).run();
    run.assert_code(0);
    let snapshot = sim.snapshot();
    let kept: Vec<&str> = snapshot["registries"][0]["repositories"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|r| r["manifests"].as_array().unwrap())
        .filter_map(|m| m["digest"].as_str())
        .collect();
    assert!(kept.contains(&preview_digest.as_str()), "the preview's image was pruned:\n{}", run.stderr);
    let prune = run.record("prune");
    let repository = &prune["repositories"][0];
    // v1.0.0 (seeded days ago, run by no app) goes; the v2 pushes may share a second, and
    // images tied on time at the --keep-last boundary are all kept.
    assert!(repository["deleted"].to_string().contains("v1.0.0"), "prune did delete what no app runs: {prune}");
    let kept = repository["kept"].as_array().unwrap().iter().find(|k| k["digest"] == preview_digest.as_str()).unwrap();
    assert!(kept["reason"].as_str().unwrap().ends_with("of app example-app-pr-11"), "{kept}");
}

#[test]
fn the_preview_workflow_deploys_comments_once_and_deletes_with_least_permissions() {
    let root = env!("CARGO_MANIFEST_DIR");
    let text = std::fs::read_to_string(format!("{root}/scripts/github-preview.yml")).unwrap();
    let workflow: Value = do_deploy::specfile::parse_yaml(&text).unwrap();
    let types: Vec<&str> =
        workflow["on"]["pull_request"]["types"].as_array().unwrap().iter().map(|t| t.as_str().unwrap()).collect();
    for wanted in ["opened", "synchronize", "closed"] {
        assert!(types.contains(&wanted), "{types:?}");
    }
    assert!(text.contains("on:\n  pull_request:"), "pull_request, never pull_request_target: forks get no token");
    assert_eq!(workflow["permissions"], json!({}), "nothing by default");
    let jobs = workflow["jobs"].as_object().unwrap();
    let writers: Vec<String> = jobs
        .iter()
        .flat_map(|(name, job)| {
            let scopes = job["permissions"].as_object().unwrap().iter();
            scopes.filter(|(_, level)| *level == "write").map(move |(scope, _)| format!("{name}: {scope}"))
        })
        .collect();
    assert_eq!(writers, ["comment: pull-requests"], "one job writes, to the conversation only");
    assert_eq!(jobs["comment"]["permissions"], json!({"pull-requests": "write"}));
    assert!(jobs["comment"].get("environment").is_none() && !text.contains("persist-credentials: true"));
    assert_eq!(text.matches("persist-credentials: false").count(), 3, "no checkout keeps the job token");
    for name in ["deploy", "delete", "sweep"] {
        let reads = if name == "sweep" {
            json!({"contents": "read", "pull-requests": "read"})
        } else {
            json!({"contents": "read"})
        };
        assert_eq!(jobs[name]["permissions"], reads, "{name}");
        assert_eq!(
            jobs[name]["environment"], "preview",
            "{name}: the token that deletes apps is behind an environment"
        );
        let condition = jobs[name]["if"].as_str().unwrap();
        assert!(
            name == "sweep" || condition.contains("head.repo.full_name == github.repository"),
            "{name}: no preview for forks"
        );
    }
    // The sweep runs on a schedule and keeps exactly the open pull requests' previews.
    assert!(jobs["sweep"]["if"].as_str().unwrap().contains("github.event_name == 'schedule'"));
    assert!(workflow["on"]["schedule"][0]["cron"].is_string());
    let sweep_runs: Vec<&str> =
        jobs["sweep"]["steps"].as_array().unwrap().iter().filter_map(|s| s["run"].as_str()).collect();
    assert!(sweep_runs[0].starts_with("gh pr list --state open") && sweep_runs[0].ends_with("> open-previews.txt"));
    assert!(sweep_runs[1].contains("--sweep-previews --keep-file open-previews.txt --execute"), "{}", sweep_runs[1]);
    assert!(jobs["deploy"]["if"].as_str().unwrap().contains("!= 'closed'"));
    assert!(jobs["delete"]["if"].as_str().unwrap().contains("== 'closed'"));
    assert!(jobs["comment"].get("env").unwrap().get("DIGITALOCEAN_ACCESS_TOKEN").is_none());

    // Steps: pinned actions; the token only where the API is called; values reach scripts
    // through the environment, never spliced into them.
    let mut commands = Vec::new();
    for (name, job) in jobs {
        for step in job["steps"].as_array().unwrap() {
            if let Some(uses) = step["uses"].as_str() {
                let pin = uses.split_once('@').map(|(_, pin)| pin).unwrap_or("");
                assert!(
                    pin.len() == 40 && pin.bytes().all(|b| b.is_ascii_hexdigit()),
                    "{uses} is not pinned by commit"
                );
            }
            let run = step["run"].as_str().unwrap_or("");
            assert!(!run.contains("${{"), "{name}: an expression spliced into a script: {run}");
            let calls_api = ["do-gc-wait", "do-deploy"].iter().any(|t| run.contains(t))
                || (run.contains("do-login") && !run.contains("--logout"));
            assert_eq!(
                step.get("env").and_then(|e| e.get("DIGITALOCEAN_ACCESS_TOKEN")).is_some(),
                calls_api,
                "{name}: {step}"
            );
            commands.extend(run.replace("\\\n", " ").lines().map(str::to_string));
        }
    }
    let logout = jobs["deploy"]["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["run"].as_str().is_some_and(|r| r.contains("--logout")))
        .unwrap();
    assert_eq!(logout["if"], "always()");
    let all = commands.join("\n");
    assert!(all.contains("TAG=pr-$PR_NUMBER-${HEAD_SHA:0:12}"), "images are tagged pr-<n>-<sha>");
    assert!(jobs["deploy"]["outputs"]["live_url"].as_str().unwrap().contains("steps.deploy.outputs.live_url"));
    // One comment, found by its marker and updated.
    assert!(
        all.contains("marker=\"<!-- do-release preview -->\"")
            && all.contains("--method PATCH")
            && all.contains("startswith")
    );

    // Every do-deploy command in it parses, with the workflow's variables filled in.
    let values = [
        ("$SPEC", ".do/app.yaml"),
        ("$REGISTRY", "my-registry"),
        ("$REPOSITORY", "web"),
        ("$TAG", "pr-42-0123456789ab"),
        ("$PREVIEW", "pr-42"),
        ("$HEAD_SHA", "0123456789abcdef"),
    ];
    let mut parsed = 0;
    for command in commands.iter().filter(|c| c.trim_start().starts_with("do-deploy")) {
        let mut filled = command.split('>').next().unwrap().to_string();
        for (variable, value) in values {
            filled = filled.replace(variable, value);
        }
        let words: Vec<String> = filled.split_whitespace().map(|w| w.trim_matches('"').to_string()).collect();
        use clap::Parser;
        do_deploy::Cli::try_parse_from(&words).unwrap_or_else(|e| panic!("`{command}` does not parse: {e}"));
        parsed += 1;
    }
    assert_eq!(parsed, 3, "the deploy, the delete and the sweep");
    assert!(all.contains("--preview \"$PREVIEW\"") && all.contains("--delete-preview \"$PREVIEW\""));
    let deadlines: u64 = commands
        .iter()
        .filter(|c| !c.contains("--delete-preview"))
        .flat_map(|c| {
            c.split("--timeout ")
                .skip(1)
                .map(|rest| rest.split_whitespace().next().unwrap().trim_end_matches('m').parse::<u64>().unwrap())
        })
        .sum();
    assert!(jobs["deploy"]["timeout-minutes"].as_u64().unwrap() > deadlines, "{deadlines} minutes of deadlines");
}

#[test]
fn the_workflow_examples_pass_actionlint_which_catches_a_broken_one() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let actionlint = |files: &[PathBuf]| {
        std::process::Command::new("actionlint")
            .args(files)
            .current_dir(root)
            .output()
            .unwrap_or_else(|e| panic!("this test needs actionlint (.ci/run installs it from PyPI): {e}"))
    };
    let examples = [root.join("scripts/github-preview.yml"), root.join("scripts/github-release.yml")];
    let passed = actionlint(&examples);
    assert!(passed.status.success(), "{}", String::from_utf8_lossy(&passed.stdout));
    // The same preview workflow with a job asking for a permission that does not exist, and an
    // output of a step that does not exist: the linter must say so.
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(&examples[0]).unwrap();
    let broken = text
        .replace("pull-requests: write", "pull-requests: writ")
        .replace("steps.deploy.outputs.live_url", "steps.deplo.outputs.live_url");
    let file = write(dir.path(), "broken.yml", &broken);
    let failed = actionlint(&[file]);
    let said = String::from_utf8_lossy(&failed.stdout);
    assert!(!failed.status.success(), "{said}");
    assert!(said.contains("writ") && said.contains("deplo"), "{said}");
}

mod properties {
    //! The rule "unchanged" and "this deployment is ours" rest on: whatever spec do-deploy
    //! sends, the spec App Platform answers with (fields filled in, secrets encrypted, and
    //! proto3's omissions of false, empty and null values) is the same intent, and differs
    //! only in the secrets given in the clear.

    use proptest::prelude::*;
    use serde_json::{json, Value};

    /// A variable of the given key: plain or secret, empty, plain text, a reference App
    /// Platform resolves, or an encrypted value kept from the live app.
    fn env(key: &'static str) -> impl Strategy<Value = Value> {
        (0..4usize, any::<bool>()).prop_map(move |(shape, secret)| {
            let value = ["", "x", "${APP_URL}", "EV[1:kept]"][shape];
            match secret {
                true => json!({"key": key, "type": "SECRET", "scope": "RUN_TIME", "value": value}),
                false => json!({"key": key, "value": value}),
            }
        })
    }

    fn envs() -> impl Strategy<Value = Vec<Value>> {
        (prop::option::of(env("A")), prop::option::of(env("B")), prop::option::of(env("LOG_LEVEL")))
            .prop_map(|(a, b, c)| [a, b, c].into_iter().flatten().collect())
    }

    fn service(name: &'static str) -> impl Strategy<Value = Value> {
        (prop::option::of(1..4u64), prop::collection::vec(prop::sample::select(vec!["/", "/api"]), 0..3), envs(), any::<bool>())
            .prop_map(move |(count, routes, envs, size)| {
                let mut service = json!({"name": name, "http_port": 8080, "run_command": "",
                    "image": {"registry_type": "DOCR", "repository": "web", "digest": "sha256:a", "deploy_on_push": {"enabled": false}}});
                if let Some(count) = count {
                    service["instance_count"] = json!(count);
                }
                if size {
                    service["instance_size_slug"] = json!("apps-s-1vcpu-1gb");
                }
                let mut seen = std::collections::BTreeSet::new();
                service["routes"] = routes.into_iter().filter(|r| seen.insert(*r)).map(|path| json!({"path": path})).collect();
                service["envs"] = json!(envs);
                service
            })
    }

    fn spec() -> impl Strategy<Value = Value> {
        (
            service("web"),
            prop::option::of(service("api")),
            prop::option::of(prop::sample::select(vec!["fra", "ams"])),
            any::<bool>(),
        )
            .prop_map(|(web, api, region, edge)| {
                let mut spec = json!({"name": "shop", "services": [web], "disable_edge_cache": edge});
                if let Some(api) = api {
                    spec["services"].as_array_mut().unwrap().push(api);
                }
                if let Some(region) = region {
                    spec["region"] = json!(region);
                }
                spec
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]
        #[test]
        fn what_app_platform_answers_is_the_spec_sent(sent in spec()) {
            let stored = do_sim::appspec::as_stored(&sent);
            let normalised = do_sim::state::normalized(&stored).unwrap();
            for answered in [&stored, &normalised] {
                prop_assert!(do_deploy::diff::same_intent(answered, &sent), "{answered}\nvs\n{sent}");
                let changed = do_deploy::diff::changes(answered, &sent);
                let clear_secrets: Vec<String> = sent["services"].as_array().unwrap().iter().flat_map(|service| {
                    service["envs"].as_array().unwrap().iter()
                        .filter(|env| env["type"] == "SECRET" && env["value"].as_str().is_some_and(|v| !v.is_empty() && !v.starts_with("EV[")))
                        .map(|env| format!("services[{}].envs[{}].value", service["name"].as_str().unwrap(), env["key"].as_str().unwrap()))
                        .collect::<Vec<_>>()
                }).collect();
                let mut clear_secrets = clear_secrets;
                clear_secrets.sort();
                let paths: Vec<String> = changed.iter().map(|c| c.path.clone()).collect();
                prop_assert_eq!(paths, clear_secrets, "only secrets given in the clear differ");
            }
        }
    }
}
