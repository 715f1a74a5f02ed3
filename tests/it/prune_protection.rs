//! Every rule that decides which images App Platform still needs, pinned by a test through the
//! real binary: what each deployment phase protects, how many superseded deployments stay
//! protected for a rollback, the spec alone, and `--protect-app`, which checks an app but never
//! narrows protection to it.

use std::collections::BTreeSet;

use do_sim::{Fault, FaultKind, Sim};
use serde_json::{json, Value};

use crate::support::{mutating_requests, world, Run, Tool, PRUNE};

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
fn add_app(sim: &Sim, spec: Value, active: bool) -> String {
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

fn set(tags: &[&str]) -> BTreeSet<String> {
    tags.iter().map(|t| t.to_string()).collect()
}

#[test]
fn each_deployment_phase_protects_what_it_runs() {
    let sim = world(&["v1", "v2", "v3", "v4", "v5", "v6", "v7", "v8"]);
    let app = add_app(&sim, spec("shop", "web", json!({"tag": "v8"})), false);
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
        let app = add_app(&sim, spec("shop", "web", json!({"tag": "v9"})), false);
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
        let app = add_app(&sim, spec("shop", "web", json!({"tag": "v1.2.0"})), false);
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
    let by_tag = add_app(&sim, spec("shop", "web", json!({"tag": "v1"})), false);
    let by_digest = add_app(&sim, spec("blog", "web", json!({"digest": digest})), false);
    let elsewhere = add_app(&sim, spec("other", "web", json!({"tag": "v3", "registry": "another-registry"})), false);
    let hub = add_app(
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
    let shop = add_app(&sim, spec("shop", "web", json!({"tag": "v3"})), true);
    add_app(&sim, spec("backend", "web", json!({"tag": "v1"})), true);
    add_app(
        &sim,
        json!({"name": "static", "static_sites": [{"name": "site", "github": {"repo": "x/y", "branch": "main"}}]}),
        true,
    );
    add_app(&sim, spec("elsewhere", "web", json!({"tag": "v2", "registry": "another-registry"})), true);
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
    let app = add_app(
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
