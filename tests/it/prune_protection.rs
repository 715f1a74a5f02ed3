//! What App Platform still needs is never deleted: every rule that decides it, pinned through
//! the real binary (what each deployment phase protects, how many superseded deployments stay
//! protected for a rollback, the spec alone, `--protect-app`, which checks an app but never
//! narrows protection to it, protection records from the input, deployments that start while
//! the registry is read).

use std::collections::BTreeSet;

use do_sim::{Fault, FaultKind, Sim};
use serde_json::{json, Value};

use crate::support::images::*;
use crate::support::{
    call, digest_in as digest_of, fully_readable, mutating_requests, prune, registry_reader, sim, world, Run, Tool,
    DEPLOY, PRUNE,
};

fn world(tags: &[&str]) -> Sim {
    let manifests: Vec<Value> = tags.iter().map(|t| json!({"tags": [t], "size_bytes": 1024})).collect();
    let api = vec![json!({"tags": ["a1"], "size_bytes": 1024}), json!({"tags": ["a2"], "size_bytes": 1024})];
    world::registry("basic", vec![("web", manifests), ("api", api)]).start()
}

fn spec(name: &str, repository: &str, image: Value) -> Value {
    let mut image = image;
    image["registry_type"] = json!("DOCR");
    image["repository"] = json!(repository);
    json!({"name": name, "services": [{"name": "svc", "image": image}]})
}

/// Adds an app (with an ACTIVE deployment of its spec unless `active` is false); returns its id.
fn add_app_as(sim: &Sim, spec: Value, active: bool) -> String {
    sim.add_app(spec, active)
}

/// A deployment as the API lists it, with `done` of 2 steps succeeded.
fn deployment(id: &str, phase: &str, tag: &str, steps: (i64, i64)) -> Value {
    json!({"id": id, "phase": phase, "spec": spec("shop", "web", json!({"tag": tag})),
           "progress": {"success_steps": steps.0, "total_steps": steps.1, "steps": []}})
}

/// The app's deployment list answers with `deployments`, newest first.
fn list_deployments(sim: &Sim, app: &str, deployments: Vec<Value>) {
    let body = json!({"deployments": deployments, "meta": {"total": 1}});
    sim.add_fault(Fault {
        method: Some("GET".into()),
        path: format!("/v2/apps/{app}/deployments"),
        kind: FaultKind::Body { status: 200, body },
        times: 1,
    });
}

fn plan(sim: &Sim, args: &[&str]) -> Run {
    let run =
        Tool::against(PRUNE, sim).args(["--keep-last", "0", "--allow-empty", "--repository", "web"]).args(args).run();
    run.assert_code(0);
    run
}

/// Tag -> why it is kept, for the web repository.
fn kept(run: &Run) -> Vec<(String, String)> {
    let record = run.record("prune");
    record["repositories"][0]["kept"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| (k["tags"][0].as_str().unwrap_or("").to_string(), k["reason"].as_str().unwrap().to_string()))
        .collect()
}

fn kept_tags(run: &Run) -> BTreeSet<String> {
    kept(run).into_iter().map(|(tag, _)| tag).collect()
}

#[test]
fn each_deployment_phase_protects_what_it_runs() {
    let sim = world(&["v1", "v2", "v3", "v4", "v5", "v6", "v7", "v8"]);
    let app = add_app_as(&sim, spec("shop", "web", json!({"tag": "v8"})), false);
    list_deployments(
        &sim,
        &app,
        vec![
            deployment("pending1", "PENDING_BUILD", "v7", (0, 2)),
            deployment("building", "BUILDING", "v6", (0, 2)),
            deployment("deploying", "DEPLOYING", "v5", (1, 2)),
            deployment("active11", "ACTIVE", "v4", (2, 2)),
            deployment("error111", "ERROR", "v3", (1, 2)),
            deployment("canceled", "CANCELED", "v2", (0, 2)),
        ],
    );
    let run = plan(&sim, &["--keep-rollback", "2"]);
    let reasons: Vec<(String, String)> = kept(&run);
    let reason = |tag: &str| reasons.iter().find(|(t, _)| t == tag).map(|(_, r)| r.clone()).unwrap_or_default();
    assert_eq!(reason("v7"), "pending build deployment pending1 of app shop");
    assert_eq!(reason("v6"), "building deployment building of app shop");
    assert_eq!(reason("v5"), "deploying deployment deployin of app shop");
    assert_eq!(reason("v4"), "active deployment active11 of app shop");
    assert_eq!(reason("v8"), "in the spec of app shop");
    assert_eq!(
        kept_tags(&run),
        set(&["v4", "v5", "v6", "v7", "v8"]),
        "a failed or canceled deployment protects nothing"
    );
}

#[test]
fn superseded_deployments_stay_protected_up_to_keep_rollback_of_those_that_were_active() {
    // Newest first: one superseded before it finished, then ones that ran to the end; one with
    // no steps at all and one without progress, which cannot be told to have been ACTIVE.
    let history = || {
        vec![
            deployment("active11", "ACTIVE", "v9", (2, 2)),
            deployment("halfway1", "SUPERSEDED", "v8", (1, 2)),
            deployment("nosteps1", "SUPERSEDED", "v7", (0, 0)),
            json!({"id": "noprogre", "phase": "SUPERSEDED", "spec": spec("shop", "web", json!({"tag": "v6"}))}),
            deployment("ranthru1", "SUPERSEDED", "v5", (2, 2)),
            deployment("ranthru2", "SUPERSEDED", "v4", (3, 3)),
            deployment("ranthru3", "SUPERSEDED", "v3", (2, 2)),
        ]
    };
    let cases: [(&str, &[&str]); 4] = [
        ("0", &["v9"]),
        ("1", &["v9", "v8", "v7", "v6", "v5"]),
        ("2", &["v9", "v8", "v7", "v6", "v5", "v4"]),
        ("3", &["v9", "v8", "v7", "v6", "v5", "v4", "v3"]),
    ];
    for (keep_rollback, protected) in cases {
        let sim = world(&["v1", "v2", "v3", "v4", "v5", "v6", "v7", "v8", "v9"]);
        let app = add_app_as(&sim, spec("shop", "web", json!({"tag": "v9"})), false);
        list_deployments(&sim, &app, history());
        let run = plan(&sim, &["--keep-rollback", keep_rollback]);
        assert_eq!(kept_tags(&run), set(protected), "--keep-rollback {keep_rollback}");
        for (tag, reason) in kept(&run).iter().filter(|(tag, _)| tag != "v9") {
            assert!(
                reason.starts_with("rollback target") && reason.ends_with("of app shop (--keep-rollback)"),
                "{tag}: {reason}"
            );
        }
    }
}

#[test]
fn keep_rollback_counts_distinct_images_so_redeploys_never_push_the_real_rollback_target_out() {
    // v1.1.0, then v1.2.0 deployed three times (config changes): the one image the app can
    // roll back to is v1.1.0.
    let history = || {
        vec![
            deployment("active12", "ACTIVE", "v1.2.0", (2, 2)),
            deployment("redeplo2", "SUPERSEDED", "v1.2.0", (2, 2)),
            deployment("redeplo1", "SUPERSEDED", "v1.2.0", (2, 2)),
            deployment("first120", "SUPERSEDED", "v1.2.0", (2, 2)),
            deployment("older110", "SUPERSEDED", "v1.1.0", (2, 2)),
            deployment("older100", "SUPERSEDED", "v1.0.0", (2, 2)),
            deployment("older090", "SUPERSEDED", "v0.9.0", (2, 2)),
        ]
    };
    let cases: [(&str, &[&str]); 3] = [
        ("1", &["v1.2.0", "v1.1.0"]),
        ("2", &["v1.2.0", "v1.1.0", "v1.0.0"]),
        ("3", &["v1.2.0", "v1.1.0", "v1.0.0", "v0.9.0"]),
    ];
    for (keep_rollback, protected) in cases {
        let sim = world(&["v0.9.0", "v1.0.0", "v1.1.0", "v1.2.0"]);
        let app = add_app_as(&sim, spec("shop", "web", json!({"tag": "v1.2.0"})), false);
        list_deployments(&sim, &app, history());
        let run = plan(&sim, &["--keep-rollback", keep_rollback]);
        assert_eq!(kept_tags(&run), set(protected), "--keep-rollback {keep_rollback}");
    }
}

#[test]
fn the_spec_alone_protects_by_tag_and_by_digest_and_only_in_its_registry() {
    let sim = world(&["v1", "v2", "v3", "v4"]);
    let digest = sim.snapshot()["registries"][0]["repositories"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "web")
        .unwrap()["manifests"][1]["digest"]
        .as_str()
        .unwrap()
        .to_string();
    let by_tag = add_app_as(&sim, spec("shop", "web", json!({"tag": "v1"})), false);
    let by_digest = add_app_as(&sim, spec("blog", "web", json!({"digest": digest})), false);
    let elsewhere = add_app_as(&sim, spec("other", "web", json!({"tag": "v3", "registry": "another-registry"})), false);
    let hub = add_app_as(
        &sim,
        json!({"name": "hub", "services": [{"name": "svc", "image": {"registry_type": "DOCKER_HUB", "registry": "library", "repository": "web", "tag": "v4"}}]}),
        false,
    );
    for app in [&by_tag, &by_digest, &elsewhere, &hub] {
        list_deployments(&sim, app, vec![]);
    }
    let run = plan(&sim, &["--keep-rollback", "2"]);
    let kept: BTreeSet<(String, String)> = kept(&run).into_iter().collect();
    let expected = [("v1", "in the spec of app shop"), ("v2", "in the spec of app blog")];
    assert_eq!(kept, expected.iter().map(|(t, r)| (t.to_string(), r.to_string())).collect());
}

#[test]
fn protect_app_checks_the_app_and_never_narrows_protection() {
    let sim = world(&["v1", "v2", "v3"]);
    let shop = add_app_as(&sim, spec("shop", "web", json!({"tag": "v3"})), true);
    add_app_as(&sim, spec("backend", "web", json!({"tag": "v1"})), true);
    add_app_as(
        &sim,
        json!({"name": "static", "static_sites": [{"name": "site", "github": {"repo": "x/y", "branch": "main"}}]}),
        true,
    );
    add_app_as(&sim, spec("elsewhere", "web", json!({"tag": "v2", "registry": "another-registry"})), true);
    // By name and by id: the other app's image stays all the same.
    for named in ["shop", shop.as_str()] {
        let run = Tool::against(PRUNE, &sim)
            .args([
                "--protect-app",
                named,
                "--keep-last",
                "0",
                "--allow-empty",
                "--repository",
                "web",
                "--execute",
                "--gc",
                "off",
            ])
            .run();
        run.assert_code(0);
        assert_eq!(kept_tags(&run), set(&["v1", "v3"]), "--protect-app {named}");
    }
    let left: BTreeSet<String> = sim.snapshot()["registries"][0]["repositories"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["name"] == "web")
        .flat_map(|r| {
            r["manifests"]
                .as_array()
                .unwrap()
                .iter()
                .map(|m| m["tags"][0].as_str().unwrap().to_string())
                .collect::<Vec<_>>()
        })
        .collect();
    assert_eq!(left, set(&["v1", "v3"]), "backend's running image was not deleted");

    let before = mutating_requests(&sim).len();
    for (named, expected) in [
        ("nosuchapp", "--protect-app \"nosuchapp\": no such app; the account has: shop, backend, static, elsewhere"),
        ("static", "--protect-app \"static\": the app runs no image of registry reg"),
        ("elsewhere", "--protect-app \"elsewhere\": the app runs no image of registry reg"),
    ] {
        let run = Tool::against(PRUNE, &sim).args(["--protect-app", named, "--keep-last", "0", "--execute"]).run();
        run.assert_code(2);
        assert!(run.stderr.contains(expected), "{named}: {}", run.stderr);
    }
    assert_eq!(mutating_requests(&sim).len(), before, "nothing deleted");
}

#[test]
fn an_app_that_left_the_registry_still_protects_its_rollback_targets() {
    let sim = world(&["v1", "v2", "v3"]);
    let app = add_app_as(
        &sim,
        json!({"name": "moved", "services": [{"name": "svc", "image": {"registry_type": "GHCR", "registry": "org", "repository": "web", "tag": "v9"}}]}),
        false,
    );
    list_deployments(
        &sim,
        &app,
        vec![
            json!({"id": "ghcr0001", "phase": "ACTIVE", "spec": {"name": "moved", "services": [{"name": "svc", "image": {"registry_type": "GHCR", "registry": "org", "repository": "web", "tag": "v9"}}]}}),
            deployment("docr0001", "SUPERSEDED", "v2", (2, 2)),
        ],
    );
    let run = plan(&sim, &["--keep-rollback", "1"]);
    assert_eq!(kept_tags(&run), set(&["v2"]));
}

#[test]
fn deployed_digests_are_kept_active_pending_and_rollback_targets() {
    let sim = deployed_history();
    let run = prune(&sim).args(["--keep-last", "0", "--keep-rollback", "1"]).run();
    run.assert_code(0);
    assert!(kept_reason(&run, "v3.0.0").starts_with("active deployment"), "{}", kept_reason(&run, "v3.0.0"));
    assert!(kept_reason(&run, "v2.0.0").contains("rollback target"), "{}", kept_reason(&run, "v2.0.0"));
    assert_eq!(
        deleted_tags(&run),
        set(&["v1.0.0", "v1.1.0", "v1.2.0"]),
        "v1.2.0 (tag-pinned, two deployments back) is beyond --keep-rollback 1"
    );

    // Two rollback targets: the first deployment's spec used the tag v1.2.0, resolved to its digest.
    let run = prune(&sim).args(["--keep-last", "0", "--keep-rollback", "2"]).run();
    assert!(kept_reason(&run, "v1.2.0").contains("rollback target"), "{}", run.stdout);
    assert_eq!(deleted_tags(&run), set(&["v1.0.0", "v1.1.0"]));

    // A deployment in progress protects its image too.
    sim.state().apps[0].next_outcome = do_sim::Outcome::Hang;
    Tool::against(DEPLOY, &sim)
        .args(["--app", "example-app", "--repository", "web", "--tag", "v1.0.0", "--no-wait"])
        .run()
        .assert_code(0);
    let run = prune(&sim).args(["--keep-last", "0", "--keep-rollback", "2"]).run();
    let reason = kept_reason(&run, "v1.0.0");
    assert!(
        ["pending build", "building", "pending deploy", "deploying"].iter().any(|phase| reason.starts_with(phase)),
        "{reason}"
    );
    assert_eq!(deleted_tags(&run), set(&["v1.1.0"]));
}

#[test]
fn an_unreadable_app_aborts_with_nothing_deleted() {
    let sim = sim(20);
    let app_id = sim.state().apps[0].id.clone();
    sim.add_fault(Fault {
        method: None,
        path: format!("/v2/apps/{app_id}/deployments"),
        kind: FaultKind::Status { status: 500, retry_after: None },
        times: 1000,
    });
    let run = prune(&sim).args(["--keep-last", "0", "--execute"]).env("DO_RELEASE_RETRY_MAX_TIME", "200ms").run();
    run.assert_code(1);
    assert!(
        run.stderr.contains("cannot read the deployments of app example-app; nothing was deleted"),
        "{}",
        run.stderr
    );
    assert!(mutating_requests(&sim).is_empty());
    assert!(run.stdout.is_empty(), "no prune record claims anything");
}

#[test]
fn digests_named_on_the_input_are_protected() {
    let sim = seeded("basic", &[("web", five())], vec![]);
    let digest =
        sim.snapshot()["registries"][0]["repositories"][0]["manifests"][0]["digest"].as_str().unwrap().to_string();
    let image =
        format!(r#"{{"kind":"image","v":1,"data":{{"registry":"reg","repository":"web","digest":"{digest}"}}}}"#);
    let tag = r#"{"kind":"tag","v":1,"data":{"tag":"v2","version":"2.0.0","commit":"abc"}}"#;
    let run = prune(&sim).args(["--keep-last", "0"]).stdin(format!("{image}\n{tag}\n")).run();
    run.assert_code(0);
    assert_eq!(kept_reason(&run, "v1"), "named by the image record");
    assert_eq!(kept_reason(&run, "v2"), "tag v2 named by the tag record");
    assert_eq!(deleted_tags(&run), set(&["v3", "v4"]), "v5 is the newest");
    assert!(run.stdout.starts_with(&image), "the input passes through first");
}

#[test]
fn the_apps_own_deployments_protect_when_its_deployment_list_lacks_them() {
    let sim = web(releases(3));
    let app = sim.add_app(do_sim::default_app_spec("shop", "web", "v1"), true);
    // The spec moves on to v3, but the app's ACTIVE deployment still runs v1: the list is empty.
    let mut state = sim.state();
    let found = state.apps.iter_mut().find(|a| a.id == app).unwrap();
    found.spec["services"][0]["image"]["tag"] = json!("v3");
    drop(state);
    sim.add_fault(Fault {
        method: Some("GET".into()),
        path: format!("/v2/apps/{app}/deployments"),
        kind: FaultKind::Body { status: 200, body: json!({"deployments": [], "meta": {"total": 0}}) },
        times: 10,
    });
    let run = prune(&sim).args(["--keep-last", "0", "--allow-empty"]).run();
    run.assert_code(0);
    let kept: Vec<String> = run.record("prune")["repositories"][0]["kept"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| format!("{} {}", k["tags"][0].as_str().unwrap_or(""), k["reason"].as_str().unwrap()))
        .collect();
    assert!(kept.iter().any(|k| k.starts_with("v1 deployment ") && k.ends_with("of app shop")), "{kept:?}");
    assert!(kept.iter().any(|k| k.starts_with("v3 in the spec of app shop")), "{kept:?}");
}

#[test]
fn a_repository_scoped_run_still_protects_the_whole_registry() {
    let (sim, pinned) = deployed_untagged_in_api();
    let refused =
        prune(&sim).args(["--repository", "web", "--keep-last", "1", "--execute", "--gc-type", UNTAGGED_GC]).run();
    refused.assert_code(2);
    assert!(refused.stderr.contains("of api must stay") && refused.stderr.contains("backend"), "{}", refused.stderr);
    assert!(mutating_requests(&sim).is_empty());
    let run = prune(&sim).args(["--repository", "web", "--keep-last", "1", "--execute", "--gc", "wait"]).run();
    run.assert_code(0);
    assert!(
        sim.requests().iter().all(|r| r.method != "DELETE" || r.url.contains("/repositories/web/")),
        "only web is pruned"
    );
    fully_readable(&registry_reader(&sim, "reg"), "api", &pinned).unwrap();
}

#[test]
fn a_deployment_that_starts_while_the_registry_is_read_is_kept() {
    let sim = repositories(
        vec![("web", vec![image(&["v1"], 1), image(&["v2"], 1), image(&["v3"], 1), image(&["v4"], 1)])],
        json!({}),
    );
    let app = add_app(&sim, app_on("shop", "web", json!({"tag": "v4"})));
    let v1 = digest_of(&sim, "web", "v1");
    let tool = prune(&sim).args(["--keep-last", "1", "--keep-rollback", "0", "--execute", "--gc", "off"]);
    let deployments = format!("/v2/apps/{app}/deployments");
    // Someone deploys v1 by digest while do-prune reads manifests (it read the apps just before).
    let run = changed_while_reading_manifests(
        &sim,
        "web",
        tool,
        |r| r.url.starts_with(&deployments),
        || {
            let spec = app_on("shop", "web", json!({"digest": v1}));
            let (status, _) = call(&sim, "PUT", &format!("/v2/apps/{app}"), Some(json!({ "spec": spec })), Some("tok"));
            assert_eq!(status, 200);
        },
    );
    run.assert_code(0);
    assert!(present(&sim, "web").contains(&v1), "the image being deployed was not deleted");
    let record = run.record("prune");
    let rechecked = record["kept_at_recheck"].as_array().unwrap();
    assert_eq!(rechecked.len(), 1, "{record}");
    assert_eq!(rechecked[0]["digest"], v1.as_str());
    assert!(rechecked[0]["reason"].as_str().unwrap().contains("deployment"), "{rechecked:?}");
    assert!(run.stderr.contains("kept at the re-check before deleting"), "{}", run.stderr);
}

#[test]
fn every_form_of_protection_record_is_understood_and_a_bad_one_stops_everything() {
    let sim = repositories(vec![("web", (1..=7).map(|i| image(&[&format!("v{i}")], 1)).collect())], json!({}));
    let d = |tag: &str| digest_of(&sim, "web", tag);
    let upper = d("v2").to_uppercase().replace("SHA256", "sha256");
    let records = [
        format!(r#"{{"kind":"image","v":1,"data":{{"registry":"reg","repository":"reg/web","digest":"{}"}}}}"#, d("v1")),
        format!(r#"{{"kind":"image","v":1,"data":{{"registry":"reg","repository":"web","digest":"  {upper} "}}}}"#),
        format!(r#"{{"kind":"image","v":1,"data":{{"registry":"reg","repository":"registry.digitalocean.com/reg/web","digest":"{}","image":"registry.digitalocean.com/reg/web:v4"}}}}"#, d("v3")),
        r#"{"kind":"deploy","v":1,"data":{"app_id":"a","phase":"ACTIVE","changed":true,"image":"web:v5","components":[{"image_after":"docker_hub:library/nginx:1"}]}}"#.to_string(),
    ];
    let run = prune(&sim).args(["--keep-last", "0"]).stdin(records.join("\n")).run();
    run.assert_code(0);
    let kept: BTreeSet<String> = run.record("prune")["repositories"][0]["kept"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["tags"][0].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        kept,
        ["v1", "v2", "v3", "v4", "v5", "v7"].iter().map(|s| s.to_string()).collect(),
        "v7 is the newest; only v6 goes"
    );

    let bad =
        r#"{"kind":"deploy","v":1,"data":{"app_id":"a","phase":"ACTIVE","changed":true,"image":"web@sha256:nothex"}}"#;
    let sim = repositories(vec![("web", vec![image(&["v1"], 1), image(&["v2"], 1)])], json!({}));
    let run = prune(&sim).args(["--keep-last", "0", "--execute"]).stdin(format!("{}\n{bad}\n", records[0])).run();
    run.assert_code(2);
    assert!(
        run.stderr.contains("input line 2: deploy record") && run.stderr.contains("invalid digest"),
        "{}",
        run.stderr
    );
    assert!(sim.requests().is_empty(), "exit 2 before any request");
}

#[test]
fn a_protection_record_protects_in_its_own_repository_and_registry_only() {
    // web and api both have an "old" image; a newer one keeps each repository non-empty.
    let both = || vec![image(&["old"], 1), image(&["new"], 1)];
    let sim = repositories(vec![("web", both()), ("api", both())], json!({}));
    let records = [
        // api's old, deployed: protects api:old, not web:old.
        r#"{"kind":"deploy","v":1,"data":{"app_id":"a","phase":"ACTIVE","changed":true,"image":"api:old"}}"#
            .to_string(),
        // web's old digest, but in another registry: protects nothing here.
        format!(
            r#"{{"kind":"image","v":1,"data":{{"registry":"other-registry","repository":"web","digest":"{}"}}}}"#,
            digest_of(&sim, "web", "old")
        ),
    ];
    // Unless --registry says this registry is meant, a record of another one is a mistake: exit 2.
    let run = prune(&sim).args(["--keep-last", "1", "--execute"]).stdin(records.join("\n")).run();
    run.assert_code(2);
    assert!(
        run.stderr.contains("input line 2: the record names web@… in registry other-registry, not reg")
            && run.stderr.contains("pass --registry reg"),
        "{}",
        run.stderr
    );
    assert!(mutating_requests(&sim).is_empty(), "nothing was deleted");
    let run = prune(&sim).args(["--keep-last", "1", "--registry", "reg"]).stdin(records.join("\n")).run();
    run.assert_code(0);
    assert!(run.stderr.contains("it protects nothing here"), "{}", run.stderr);
    let record = run.record("prune");
    let repository =
        |name: &str| record["repositories"].as_array().unwrap().iter().find(|r| r["name"] == name).unwrap().clone();
    let deleted_tags = |name: &str| -> Vec<String> {
        repository(name)["deleted"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|d| d["all_tags"].as_array().unwrap().clone())
            .map(|t| t.as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(deleted_tags("web"), ["old"], "web:old is named by no record of this registry's web");
    assert!(deleted_tags("api").is_empty(), "api:old is deployed");
    let api_old = repository("api")["kept"].as_array().unwrap().iter().find(|k| k["tags"][0] == "old").unwrap().clone();
    assert_eq!(api_old["reason"], "deployed by the deploy record");

    // A host with a port is not a repository, and its port is never read as a tag.
    let bad =
        r#"{"kind":"deploy","v":1,"data":{"app_id":"a","phase":"ACTIVE","changed":true,"image":"localhost:5000/web"}}"#;
    let run = prune(&sim).args(["--keep-last", "1"]).stdin(bad).run();
    run.assert_code(2);
    assert!(run.stderr.contains("invalid repository name \"localhost:5000/web\""), "{}", run.stderr);
}

#[test]
fn untagged_garbage_a_deployment_starts_using_while_the_registry_is_read_is_kept() {
    let sim = repositories(vec![("web", vec![image(&[], 1), image(&[], 1), image(&["v1"], 1)])], json!({}));
    let untagged = untagged_in(&sim, "web");
    assert_eq!(untagged.len(), 2);
    let app = add_app(&sim, app_on("shop", "web", json!({"tag": "v1"})));
    let tool = prune(&sim).args(["--keep-last", "1", "--execute", "--gc", "off"]);
    let deployments = format!("/v2/apps/{app}/deployments");
    // Someone deploys one of the untagged manifests by digest while do-prune reads manifests.
    let run = changed_while_reading_manifests(
        &sim,
        "web",
        tool,
        |r| r.url.starts_with(&deployments),
        || {
            let spec = app_on("shop", "web", json!({"digest": untagged[0]}));
            let (status, _) = call(&sim, "PUT", &format!("/v2/apps/{app}"), Some(json!({ "spec": spec })), Some("tok"));
            assert_eq!(status, 200);
        },
    );
    run.assert_code(0);
    let left = present(&sim, "web");
    assert!(left.contains(&untagged[0]), "the untagged image being deployed was not deleted");
    assert!(!left.contains(&untagged[1]), "the other untagged manifest is garbage still");
    let record = run.record("prune");
    let rechecked = record["kept_at_recheck"].as_array().unwrap();
    assert_eq!(rechecked.len(), 1, "{record}");
    assert_eq!(rechecked[0]["digest"], untagged[0].as_str());
    assert_eq!(rechecked[0]["tags"], json!([]));
    assert!(rechecked[0]["reason"].as_str().unwrap().contains("deployment"), "{rechecked:?}");
    let deleted: Vec<&str> = record["repositories"][0]["deleted"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["digest"].as_str().unwrap())
        .collect();
    assert_eq!(deleted, [untagged[1].as_str()], "the record lists what was deleted, and only that");
}

#[test]
fn an_untagged_manifest_an_app_runs_is_listed_among_the_kept_with_why() {
    let sim = repositories(vec![("web", vec![image(&[], 1), image(&[], 1), image(&["v1"], 1)])], json!({}));
    let untagged = untagged_in(&sim, "web");
    add_app(&sim, app_on("shop", "web", json!({"digest": untagged[0]})));
    let run = prune(&sim).args(["--keep-last", "1"]).run();
    run.assert_code(0);
    let plan = &run.record("prune")["repositories"][0];
    let kept: Vec<&Value> =
        plan["kept"].as_array().unwrap().iter().filter(|k| k["digest"] == untagged[0].as_str()).collect();
    assert_eq!(kept.len(), 1, "{plan}");
    assert_eq!(kept[0]["tags"], json!([]));
    assert!(kept[0]["reason"].as_str().unwrap().contains("deployment"), "{}", kept[0]);
    let deleted: Vec<&str> =
        plan["deleted"].as_array().unwrap().iter().map(|d| d["digest"].as_str().unwrap()).collect();
    assert_eq!(deleted, [untagged[1].as_str()]);
}
