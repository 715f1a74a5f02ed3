//! do-prune against seeded registries in the simulator.

use std::collections::BTreeSet;

use do_sim::{Fault, FaultKind, Sim};
use serde_json::{json, Value};

use crate::support::{mutating_requests, prune, sim, world, Run, Tool, DEPLOY, PRUNE};

/// A registry `reg` with the given repositories, each a list of (tags, MiB), oldest first
/// across the whole seed (the first manifest is the oldest), and the given apps.
/// A manifest to seed: its tags and its size in MiB.
type SeedManifest<'a> = (Vec<&'a str>, u64);

fn seeded(tier: &str, repositories: &[(&str, Vec<SeedManifest>)], apps: Vec<Value>) -> Sim {
    let repositories: Vec<(&str, Vec<Value>)> = repositories
        .iter()
        .map(|(name, manifests)| {
            (
                *name,
                manifests.iter().map(|(tags, mib)| json!({"tags": tags, "size_bytes": mib * 1024 * 1024})).collect(),
            )
        })
        .collect();
    world::registry(tier, repositories).apps(apps).step_ms(30).start()
}

fn tagged(tags: &[&'static str], mib: u64) -> (Vec<&'static str>, u64) {
    (tags.to_vec(), mib)
}

/// The tags of the manifests deleted whole, and of tag-only deletions, in the record.
fn deleted_tags(run: &Run) -> BTreeSet<String> {
    let record = run.record("prune");
    record["repositories"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|r| r["deleted"].as_array().unwrap().clone())
        .flat_map(|d| d["tags"].as_array().unwrap().iter().map(|t| t.as_str().unwrap().to_string()).collect::<Vec<_>>())
        .collect()
}

fn kept_reason(run: &Run, tag: &str) -> String {
    let record = run.record("prune");
    record["repositories"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|r| r["kept"].as_array().unwrap().clone())
        .find(|k| k["tags"].as_array().unwrap().iter().any(|t| t == tag))
        .unwrap_or_else(|| panic!("{tag} is not kept: {record}"))["reason"]
        .as_str()
        .unwrap()
        .to_string()
}

fn set(tags: &[&str]) -> BTreeSet<String> {
    tags.iter().map(|t| t.to_string()).collect()
}

fn remaining_tags(sim: &Sim) -> BTreeSet<String> {
    let snapshot = sim.snapshot();
    snapshot["registries"][0]["repositories"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|r| r["manifests"].as_array().unwrap().clone())
        .flat_map(|m| m["tags"].as_array().unwrap().iter().map(|t| t.as_str().unwrap().to_string()).collect::<Vec<_>>())
        .collect()
}

fn five() -> Vec<(Vec<&'static str>, u64)> {
    vec![
        tagged(&["v1"], 10),
        tagged(&["v2"], 10),
        tagged(&["v3"], 10),
        tagged(&["v4", "latest"], 10),
        tagged(&["v5"], 10),
    ]
}

#[test]
fn each_rule_alone_and_together() {
    let sim = seeded("basic", &[("web", five())], vec![]);
    // Manifests are 5..1 days old: v1 oldest, v5 newest.
    let run = prune(&sim).args(["--keep-last", "2"]).run();
    run.assert_code(0);
    assert_eq!(deleted_tags(&run), set(&["v1", "v2", "v3"]));
    assert_eq!(kept_reason(&run, "v5"), "one of the 2 most recent (--keep-last)");
    assert_eq!(kept_reason(&run, "latest"), "one of the 2 most recent (--keep-last)");

    let run = prune(&sim).args(["--keep-last", "0", "--keep-within", "3d12h"]).run();
    assert_eq!(deleted_tags(&run), set(&["v1", "v2"]));
    assert!(kept_reason(&run, "v3").contains("--keep-within"));

    let run = prune(&sim).args(["--keep-last", "0", "--keep-tag", "v[12]"]).run();
    assert_eq!(deleted_tags(&run), set(&["v3", "v4"]), "latest stays, v4 goes as a tag");
    assert_eq!(kept_reason(&run, "v1"), "tag v1 matches --keep-tag ^(?:v[12])$");
    assert_eq!(kept_reason(&run, "v5"), "the repository's newest tagged manifest (--allow-empty deletes it)");
    let run = prune(&sim).args(["--keep-last", "0", "--keep-tag", "v[12]", "--allow-empty"]).run();
    assert_eq!(deleted_tags(&run), set(&["v3", "v4", "v5"]), "--allow-empty lets the newest go too");

    let run = prune(&sim).args(["--keep-last", "1", "--keep-within", "2d12h", "--keep-tag", "v1"]).run();
    assert_eq!(deleted_tags(&run), set(&["v2", "v3"]));
    assert!(mutating_requests(&sim).is_empty(), "dry runs delete nothing");
    assert!(run.stderr.contains("dry run: nothing was deleted; add --execute to delete"), "{}", run.stderr);
}

#[test]
fn latest_is_kept_and_partial_tag_deletion_keeps_the_manifest() {
    let sim = seeded(
        "basic",
        &[("web", vec![tagged(&["release-1", "v9"], 10), tagged(&["v3", "latest"], 10), tagged(&["v4"], 10)])],
        vec![],
    );
    let run = prune(&sim).args(["--keep-last", "1", "--keep-tag", "release-.*", "--execute", "--gc", "off"]).run();
    run.assert_code(0);
    let deletes: Vec<String> = mutating_requests(&sim).into_iter().map(|r| r.url).collect();
    assert_eq!(deletes.len(), 2, "{deletes:?}");
    assert!(deletes.iter().all(|url| url.contains("/tags/")), "only tags are deleted: {deletes:?}");
    assert_eq!(remaining_tags(&sim), set(&["release-1", "latest", "v4"]));
    let manifests = sim.snapshot()["registries"][0]["repositories"][0]["manifests"].as_array().unwrap().len();
    assert_eq!(manifests, 3, "no manifest deleted");
}

/// The default world plus v2.0.0 and v3.0.0, deployed one after the other by do-deploy.
fn deployed_history() -> Sim {
    let sim = sim(20);
    sim.push(do_sim::DEFAULT_REGISTRY, "web", "v2.0.0", 1_000_000).unwrap();
    sim.push(do_sim::DEFAULT_REGISTRY, "web", "v3.0.0", 1_000_000).unwrap();
    for tag in ["v2.0.0", "v3.0.0"] {
        Tool::against(DEPLOY, &sim)
            .args(["--app", "example-app", "--repository", "web", "--tag", tag, "--interval", "20ms"])
            .run()
            .assert_code(0);
    }
    sim
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
fn a_stale_saved_plan_is_refused_entry_by_entry() {
    let sim = seeded("basic", &[("web", five())], vec![]);
    let dir = tempfile::tempdir().unwrap();
    let plan = dir.path().join("plan.json");
    let run = prune(&sim).args(["--keep-last", "1", "--plan-out", plan.to_str().unwrap()]).run();
    run.assert_code(0);
    assert_eq!(deleted_tags(&run), set(&["v1", "v2", "v3", "v4"]));
    // Since the plan: v2's manifest lost its tag, v3 was re-pushed (its tag moved), v1 was deleted.
    let snapshot = sim.snapshot();
    let digest_of = |tag: &str| {
        snapshot["registries"][0]["repositories"][0]["manifests"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["tags"].as_array().unwrap().iter().any(|t| t == tag))
            .unwrap()["digest"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let (v1, v2, v3) = (digest_of("v1"), digest_of("v2"), digest_of("v3"));
    let with_manifests = |change: &dyn Fn(&mut Vec<do_sim::state::Manifest>)| {
        sim.state().registries.get_mut("reg").unwrap().repositories.get_mut("web").unwrap().edit(change)
    };
    with_manifests(&|manifests| manifests.retain(|m| m.digest != v1));
    with_manifests(&|manifests| manifests.iter_mut().find(|m| m.digest == v2).unwrap().tags.push("hotfix".into()));
    sim.push("reg", "web", "v3", 1000).unwrap();
    let run = prune(&sim).args(["--apply", plan.to_str().unwrap(), "--execute", "--gc", "off"]).run();
    run.assert_code(0);
    let record = run.record("prune");
    let skipped: Vec<(String, String)> = record["skipped"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["digest"].as_str().unwrap().to_string(), s["reason"].as_str().unwrap().to_string()))
        .collect();
    assert!(skipped.contains(&(v1.clone(), "gone since the plan".to_string())), "{skipped:?}");
    assert!(skipped.iter().any(|(d, r)| *d == v2 && r.contains("changed since the plan")), "{skipped:?}");
    assert!(skipped.iter().any(|(d, r)| *d == v3 && r.contains("changed since the plan")), "{skipped:?}");
    assert_eq!(
        remaining_tags(&sim),
        set(&["v2", "hotfix", "v3", "latest", "v5"]),
        "only v4's tag went; v3 is the new push"
    );
}

#[test]
fn allow_empty_and_max_delete() {
    let sim = seeded("basic", &[("web", vec![tagged(&["v1"], 10), tagged(&["v2"], 10)])], vec![]);
    let run = prune(&sim).args(["--keep-last", "0"]).run();
    assert_eq!(deleted_tags(&run), set(&["v1"]));
    assert!(kept_reason(&run, "v2").contains("--allow-empty"));
    let run = prune(&sim).args(["--keep-last", "0", "--allow-empty"]).run();
    assert_eq!(deleted_tags(&run), set(&["v1", "v2"]));

    let run = prune(&sim).args(["--keep-last", "0", "--allow-empty", "--max-delete", "1", "--execute"]).run();
    run.assert_code(2);
    assert!(
        run.stderr.contains("the plan has 2 deletions, more than --max-delete 1; nothing was deleted"),
        "{}",
        run.stderr
    );
    assert!(mutating_requests(&sim).is_empty());
}

#[test]
fn target_usage_deletes_oldest_first_until_under_the_target() {
    // Starter: 500 MiB included. 8 images of 50 MiB = 400 MiB (80%); target 50% = 250 MiB.
    let images: Vec<_> = ["v1", "v2", "v3", "v4", "v5", "v6", "v7", "v8"].iter().map(|t| tagged(&[t], 50)).collect();
    let sim = seeded("starter", &[("web", images)], vec![]);
    let run = prune(&sim).args(["--keep-last", "2", "--target-usage", "50"]).run();
    run.assert_code(0);
    assert_eq!(deleted_tags(&run), set(&["v1", "v2", "v3"]), "150 MiB is enough, oldest first");
    assert_eq!(kept_reason(&run, "v4"), "not needed to reach --target-usage");
    let usage = run.record("prune")["usage"].clone();
    assert_eq!(usage["before_bytes"], 400 * 1024 * 1024);
    assert_eq!(usage["included_bytes"], 500 * 1024 * 1024);
    assert_eq!(usage["estimated_after_bytes"], 250 * 1024 * 1024);
    assert_eq!(usage["before_percent"], 80.0);
    assert_eq!(usage["estimated_after_percent"], 50.0);
}

#[test]
fn gc_starts_with_an_explicit_safe_type_after_a_running_gc_ends() {
    let sim = seeded("basic", &[("web", five())], vec![]);
    let run = prune(&sim).args(["--keep-last", "3", "--execute"]).run();
    run.assert_code(0);
    let posts: Vec<_> = sim.requests().into_iter().filter(|r| r.method == "POST").collect();
    assert_eq!(posts.len(), 1);
    assert_eq!(posts[0].url, "/v2/registries/reg/garbage-collection", "the registries family, as godo does");
    assert_eq!(posts[0].status, 201);
    assert_eq!(
        serde_json::from_str::<Value>(posts[0].body.as_deref().unwrap()).unwrap(),
        json!({"type": "unreferenced blobs only"})
    );
    let gc = run.record("prune")["gc"].clone();
    assert_eq!(gc["type"], "unreferenced blobs only");
    assert_eq!(gc["already_running"], false);

    // A GC already running: the registry is read-only, so do-prune waits for it, deletes, and
    // starts its own.
    let sim = seeded("basic", &[("web", five())], vec![]);
    sim.start_gc_with("reg", &[("scanning manifests", 300)], "succeeded").unwrap();
    let run = prune(&sim).args(["--keep-last", "3", "--execute", "--gc", "wait"]).run();
    run.assert_code(0);
    assert!(
        run.stderr.contains("the registry is read-only until it ends, so waiting before deleting"),
        "{}",
        run.stderr
    );
    let log = sim.requests();
    let first_delete = log.iter().position(|r| r.method == "DELETE").unwrap();
    assert!(
        log[..first_delete].iter().filter(|r| r.url.ends_with("/garbage-collection")).count() >= 2,
        "it looked until the GC ended"
    );
    assert!(log.iter().all(|r| r.method != "DELETE" || r.status == 204), "no delete was refused as read-only");
    let gc = run.record("prune")["gc"].clone();
    assert_eq!((gc["already_running"].clone(), gc["status"].clone()), (json!(false), json!("succeeded")));
    assert_eq!(sim.snapshot()["registries"][0]["garbage_collections"].as_array().unwrap().len(), 2);
}

#[test]
fn one_failed_delete_does_not_stop_the_others() {
    let sim = seeded("basic", &[("web", five())], vec![]);
    let snapshot = sim.snapshot();
    let v2 = snapshot["registries"][0]["repositories"][0]["manifests"][1]["digest"].as_str().unwrap().to_string();
    sim.add_fault(Fault {
        method: Some("DELETE".into()),
        path: format!("/v2/registries/reg/repositories/web/digests/{v2}"),
        kind: FaultKind::Status { status: 500, retry_after: None },
        times: 1000,
    });
    let run = prune(&sim)
        .args(["--keep-last", "2", "--execute", "--gc", "off"])
        .env("DO_RELEASE_RETRY_MAX_TIME", "200ms")
        .run();
    run.assert_code(1);
    let failed = run.record("prune")["failed"].clone();
    assert_eq!(failed.as_array().unwrap().len(), 1);
    assert_eq!(failed[0]["digest"], v2.as_str());
    assert!(failed[0]["error"].as_str().unwrap().contains("500"), "{failed}");
    assert_eq!(remaining_tags(&sim), set(&["v2", "v4", "latest", "v5"]), "v1 and v3 went, v2 failed");
    assert!(run.stderr.contains("1 of 3 deletions failed"), "{}", run.stderr);
}

#[test]
fn more_than_200_manifests_across_pages_and_a_repository_with_a_slash() {
    let many: Vec<_> = (0..450).map(|_| (vec![], 1)).chain([tagged(&["keep"], 1)]).collect();
    let mut old_tagged: Vec<(Vec<&str>, u64)> = vec![tagged(&["old-1"], 1), tagged(&["old-2"], 1)];
    old_tagged.push(tagged(&["new"], 1));
    let sim = seeded("professional", &[("team/web", old_tagged), ("bulk", many)], vec![]);
    sim.state().rate_limit = do_sim::RateLimit { per_hour: 100_000, per_minute: 100_000, window_scale: 1.0 };
    let run = prune(&sim).args(["--keep-last", "1", "--execute", "--gc", "off"]).run();
    run.assert_code(0);
    let record = run.record("prune");
    let bulk = record["repositories"].as_array().unwrap().iter().find(|r| r["name"] == "bulk").unwrap().clone();
    let untagged_deleted = bulk["deleted"].as_array().unwrap().iter().filter(|d| d["all_tags"] == json!([])).count();
    assert_eq!(untagged_deleted, 450, "old untagged manifests nothing needs are deleted by do-prune itself");
    let deletes: Vec<String> = mutating_requests(&sim).into_iter().map(|r| r.url).collect();
    assert_eq!(deletes.len(), 452);
    let team: Vec<&String> = deletes.iter().filter(|u| u.contains("team%2Fweb")).collect();
    assert_eq!(team.len(), 2);
    assert!(
        team.iter().all(|u| u.starts_with("/v2/registries/reg/repositories/team%2Fweb/digests/sha256:")),
        "{team:?}"
    );
    let pages = sim.requests().into_iter().filter(|r| r.url.contains("/repositories/bulk/digests?")).count();
    assert_eq!(pages, 6, "451 manifests at 200 per page, listed once to plan and once right before deleting");
    assert_eq!(remaining_tags(&sim), set(&["new", "keep"]));
    let reads = sim.registry_requests().into_iter().filter(|r| r.url.contains("/v2/reg/team/web/manifests/")).count();
    assert_eq!(reads, 1, "team/web's kept manifest, read by its full name");
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
fn a_needed_untagged_manifest_survives_the_gc_and_an_untagged_gc_type_is_refused() {
    let sim = seeded("basic", &[("web", vec![tagged(&["v1"], 10), tagged(&["v2"], 10)])], vec![]);
    let v1 = sim.snapshot()["registries"][0]["repositories"][0]["manifests"][0]["digest"].as_str().unwrap().to_string();
    // A deployment runs v1 by digest, then its tag moves away.
    add_app(
        &sim,
        json!({"name": "shop", "services": [{"name": "web", "image": {"registry_type": "DOCR", "repository": "web", "digest": v1}}]}),
    );
    sim.push("reg", "web", "v1", 1000).unwrap();
    let refused = prune(&sim)
        .args(["--keep-last", "1", "--execute", "--gc-type", "untagged manifests and unreferenced blobs"])
        .run();
    refused.assert_code(2);
    assert!(
        refused.stderr.contains("refusing --gc-type") && refused.stderr.contains("must stay"),
        "{}",
        refused.stderr
    );
    assert!(mutating_requests(&sim).is_empty(), "nothing was deleted");

    let run = prune(&sim).args(["--keep-last", "1", "--execute", "--gc", "wait"]).run();
    run.assert_code(0);
    assert_eq!(deleted_tags(&run), set(&["v2"]));
    assert_eq!(run.record("prune")["gc"]["type"], "unreferenced blobs only");
    let reader = crate::support::registry_reader(&sim, "reg");
    crate::support::fully_readable(&reader, "web", &v1).expect("the deployed untagged image survives GC");
}

/// Adds an app with an ACTIVE deployment of `spec` to a running simulator.
fn add_app(sim: &Sim, spec: Value) {
    sim.add_app(spec, true);
}

#[test]
fn bad_flags_and_plans_are_exit_2_before_any_request() {
    let sim = seeded("basic", &[("web", five())], vec![]);
    let dir = tempfile::tempdir().unwrap();
    let bad_plan = dir.path().join("bad.json");
    std::fs::write(&bad_plan, r#"{"version":2,"registry":"reg","created_at":"x","policy":{"keep_tags":[],"keep_last":0,"keep_within_seconds":null,"allow_empty":false},"repositories":[{"name":"../etc","kept":[],"deleted":[],"untagged_kept":{"count":0,"bytes":0}}]}"#).unwrap();
    let cases: Vec<(Vec<String>, &str)> = vec![
        (vec!["--keep-tag".into(), "(".into()], "not a valid regular expression"),
        (vec!["--keep-within".into(), "soon".into()], "invalid value 'soon' for '--keep-within"),
        (vec!["--target-usage".into(), "0".into()], "invalid value '0' for '--target-usage"),
        (vec!["--target-usage".into(), "150".into()], "invalid value '150' for '--target-usage"),
        (vec!["--repository".into(), "we b".into()], "invalid repository name \"we b\""),
        (vec!["--registry".into(), "Reg".into()], "invalid registry name \"Reg\""),
        (vec!["--gc-type".into(), "everything".into()], "invalid value 'everything' for '--gc-type"),
        (vec!["--concurrency".into(), "0".into()], "invalid value '0' for '--concurrency"),
        (vec!["--apply".into(), dir.path().join("missing.json").to_str().unwrap().into()], "cannot read --apply"),
        (vec!["--apply".into(), bad_plan.to_str().unwrap().into()], "invalid repository name \"../etc\""),
        (vec!["--protect-app".into(), "a/b".into()], "invalid --protect-app \"a/b\""),
    ];
    for (args, message) in cases {
        let run = prune(&sim).args(&args).run();
        run.assert_code(2);
        assert!(run.stderr.contains(message), "{args:?}: {message:?} not in {}", run.stderr);
        assert!(run.stdout.is_empty(), "{args:?}: no record");
    }
    assert!(sim.requests().is_empty(), "{:?}", sim.requests());
}

#[test]
fn help_shows_flags_exit_codes_and_examples() {
    let run = Tool::new(PRUNE).args(["--help"]).run();
    run.assert_code(0);
    for expected in [
        "--keep-last",
        "--keep-within",
        "--keep-tag",
        "--protect-app",
        "--execute",
        "--apply",
        "--target-usage",
        "Exit codes:",
        "Examples:",
    ] {
        assert!(run.stdout.contains(expected), "{expected:?} missing:\n{}", run.stdout);
    }
}

#[test]
fn listing_at_any_concurrency_plans_exactly_the_same_prune() {
    let manifests = |n: usize| -> Vec<Value> {
        (0..n).map(|i| json!({"tags": if i % 3 == 0 { json!([]) } else { json!([format!("v1.{i}.0")]) }, "size_bytes": 1000 + i})).collect()
    };
    let mut repositories: Vec<Value> =
        (0..9).map(|r| json!({"name": format!("svc-{r}"), "manifests": manifests(r * 61)})).collect();
    repositories.push(json!({"name": "big", "manifests": manifests(730)}));
    let sim = world::seeded(json!({
        "registries": [{"name": "reg", "tier": "professional", "repositories": repositories}],
        "apps": [{"spec": do_sim::default_app_spec("shop", "big", "v1.728.0")}],
    }))
    .start();
    let planned = |concurrency: &str| {
        let run = prune(&sim).args(["--keep-last", "5", "--untagged-grace", "0s", "--concurrency", concurrency]).run();
        run.assert_code(0);
        let mut record = run.record("prune");
        record["usage"]["reported_bytes"] = Value::Null;
        record
    };
    let sequential = planned("1");
    assert!(sequential["repositories"].as_array().unwrap().len() == 10);
    let deleted: usize =
        sequential["repositories"].as_array().unwrap().iter().map(|r| r["deleted"].as_array().unwrap().len()).sum();
    assert!(deleted > 500, "a plan worth comparing: {deleted} deletions");
    for concurrency in ["4", "16"] {
        assert_eq!(planned(concurrency), sequential, "--concurrency {concurrency}");
    }
}
