//! A plan saved with --plan-out and applied later with --apply deletes only what is still safe:
//! what became needed since (deployed, newest, held by a kept image) is skipped and said, a plan
//! for another registry or with inconsistent entries is refused before any request.

use do_sim::{Fault, FaultKind};
use serde_json::{json, Value};

use crate::support::images::*;
use crate::support::{
    digest_in, digest_in as digest_of, fully_readable, manifests_in, mutating_requests, prune, registry_reader,
};

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
fn an_image_deployed_after_the_plan_was_saved_survives_its_apply() {
    let sim = web(releases(3));
    let (_dir, plan) = saved_plan(&sim);
    // Between the plan and its apply, an app starts running v1.
    let v1 = digest_in(&sim, "web", "v1");
    sim.add_app(do_sim::default_app_spec("shop", "web", "v1"), true);
    let run = prune(&sim).args(["--apply", plan.to_str().unwrap(), "--execute", "--gc", "off"]).run();
    run.assert_code(0);
    assert_eq!(tags(&sim), ["v1", "v3"], "v2 went as planned; v1 is deployed now");
    let skipped = skipped(&run);
    assert!(
        skipped.iter().any(|(d, r)| *d == v1 && r.starts_with("now protected:") && r.contains("of app shop")),
        "{skipped:?}"
    );
}

#[test]
fn a_saved_plan_never_deletes_what_became_the_newest_tagged_manifest() {
    let sim = web(releases(3));
    let (_dir, plan) = saved_plan(&sim);
    // v3, the newest, is deleted by someone else: v2 is now the repository's newest.
    let v3 = digest_in(&sim, "web", "v3");
    sim.state()
        .registries
        .get_mut("reg")
        .unwrap()
        .repositories
        .get_mut("web")
        .unwrap()
        .edit(|m| m.retain(|m| m.digest != v3));
    let v2 = digest_in(&sim, "web", "v2");
    let run = prune(&sim).args(["--apply", plan.to_str().unwrap(), "--execute", "--gc", "off"]).run();
    run.assert_code(0);
    assert_eq!(tags(&sim), ["v2"], "v1 went; v2 stays as the newest");
    assert!(skipped(&run).iter().any(|(d, r)| *d == v2 && r.contains("newest tagged manifest")), "{:?}", skipped(&run));
}

#[test]
fn a_saved_untagged_deletion_that_is_needed_now_is_skipped() {
    let sim = web(vec![json!({"tags": [], "size_bytes": 1024}), json!({"tags": ["v1"], "size_bytes": 1024})]);
    let (_dir, plan) = saved_plan(&sim);
    let untagged = manifests_in(&sim, "web").iter().find(|m| m["tags"] == json!([])).unwrap()["digest"]
        .as_str()
        .unwrap()
        .to_string();
    // An app now runs the untagged manifest by digest.
    let mut spec = do_sim::default_app_spec("shop", "web", "v1");
    spec["services"][0]["image"] = json!({"registry_type": "DOCR", "repository": "web", "digest": untagged});
    sim.add_app(spec, true);
    let run = prune(&sim).args(["--apply", plan.to_str().unwrap(), "--execute", "--gc", "off"]).run();
    run.assert_code(0);
    assert!(manifests_in(&sim, "web").iter().any(|m| m["digest"] == untagged.as_str()), "kept");
    assert!(skipped(&run).iter().any(|(d, r)| *d == untagged && r.contains("now protected")), "{:?}", skipped(&run));
    assert!(!mutating_requests(&sim).iter().any(|r| r.url.contains(&untagged)));
}

#[test]
fn a_registry_other_than_the_saved_plans_is_refused() {
    let sim = web(releases(2));
    let (_dir, plan) = saved_plan(&sim);
    let run = prune(&sim).args(["--apply", plan.to_str().unwrap(), "--registry", "other", "--execute"]).run();
    run.assert_code(2);
    assert!(run.stderr.contains("--registry other differs from the saved plan's registry reg"), "{}", run.stderr);
    assert!(mutating_requests(&sim).is_empty());
}

#[test]
fn a_saved_plan_applied_where_a_read_now_fails_keeps_its_releases_and_lists_no_garbage_among_them() {
    let mut manifests = releases(3);
    manifests.insert(0, json!({"tags": [], "size_bytes": 1024}));
    manifests.insert(0, json!({"tags": [], "size_bytes": 1024}));
    let sim = web(manifests);
    let (_dir, plan) = saved_plan(&sim);
    let saved: Value = serde_json::from_str(&std::fs::read_to_string(&plan).unwrap()).unwrap();
    let untagged_planned =
        saved["repositories"][0]["deleted"].as_array().unwrap().iter().filter(|d| d["all_tags"] == json!([])).count();
    assert_eq!(untagged_planned, 2, "the plan deletes the garbage: {saved}");
    let v3 = digest_in(&sim, "web", "v3");
    sim.add_fault(Fault {
        method: Some("GET".into()),
        path: format!("/v2/reg/web/manifests/{v3}"),
        kind: FaultKind::Status { status: 500, retry_after: None },
        times: 1000,
    });
    let run = prune(&sim)
        .args(["--apply", plan.to_str().unwrap(), "--execute", "--gc", "off"])
        .env("DO_RELEASE_RETRY_MAX_TIME", "200ms")
        .run();
    run.assert_code(1);
    assert!(mutating_requests(&sim).is_empty(), "nothing deleted while what v3 needs is unknown");
    let web = &run.record("prune")["repositories"][0];
    let kept = web["kept"].as_array().unwrap();
    assert!(kept.iter().all(|k| k["tags"] != json!([])), "garbage is never listed as a kept image: {kept:?}");
    assert_eq!(kept.len(), 3, "{kept:?}");
}

#[test]
fn an_applied_plan_lists_its_tagged_deletions_before_the_untagged_ones() {
    let mut manifests = vec![json!({"tags": [], "size_bytes": 1024}), json!({"tags": [], "size_bytes": 1024})];
    manifests.extend((1..=3).flat_map(|i| {
        [json!({"tags": [format!("v{i}")], "size_bytes": 1024}), json!({"signature_of": format!("v{i}")})]
    }));
    let sim = web(manifests);
    let (_dir, plan) = saved_plan(&sim);
    let run = prune(&sim).args(["--apply", plan.to_str().unwrap(), "--execute", "--gc", "off"]).run();
    run.assert_code(0);
    let deleted = run.record("prune")["repositories"][0]["deleted"].as_array().unwrap().clone();
    let untagged: Vec<bool> = deleted.iter().map(|d| d["all_tags"] == json!([])).collect();
    assert_eq!(untagged.iter().filter(|u| **u).count(), 2, "{deleted:?}");
    assert_eq!(untagged.iter().filter(|u| !**u).count(), 4, "v1, v2 and their signatures: {deleted:?}");
    assert!(untagged.windows(2).all(|w| !w[0] || w[1]), "tagged deletions first, then untagged: {deleted:?}");
}

#[test]
fn a_saved_plan_applied_keeps_a_deployed_untagged_digest_through_gc() {
    let (sim, pinned) = deployed_untagged_in_api();
    let dir = tempfile::tempdir().unwrap();
    let plan = dir.path().join("plan.json");
    prune(&sim).args(["--keep-last", "1", "--plan-out", plan.to_str().unwrap()]).run().assert_code(0);
    let refused = prune(&sim).args(["--apply", plan.to_str().unwrap(), "--execute", "--gc-type", UNTAGGED_GC]).run();
    refused.assert_code(2);
    assert!(refused.stderr.contains("of api must stay"), "{}", refused.stderr);
    let run = prune(&sim).args(["--apply", plan.to_str().unwrap(), "--execute", "--gc", "wait"]).run();
    run.assert_code(0);
    assert_eq!(run.record("prune")["gc"]["type"], "unreferenced blobs only");
    assert!(present(&sim, "api").contains(&pinned));
    fully_readable(&registry_reader(&sim, "reg"), "api", &pinned).unwrap();
    assert_eq!(present(&sim, "web").len(), 1, "web was pruned to its newest");
}

#[test]
fn inconsistent_saved_plan_entries_are_refused_before_any_request() {
    let sim = repositories(
        vec![("web", vec![image(&["v1"], 1), image(&["v1.2.0"], 1), image(&["v2", "latest"], 1), image(&["v3"], 1)])],
        json!({}),
    );
    let dir = tempfile::tempdir().unwrap();
    let plan = dir.path().join("plan.json");
    prune(&sim)
        .args(["--keep-last", "1", "--keep-tag", "v1\\.2\\..*", "--plan-out", plan.to_str().unwrap()])
        .run()
        .assert_code(0);
    let saved: Value = serde_json::from_str(&std::fs::read_to_string(&plan).unwrap()).unwrap();
    let v1 = digest_of(&sim, "web", "v1");
    // The edits change v1's entry, a whole-manifest deletion.
    let at = saved["repositories"][0]["deleted"]
        .as_array()
        .unwrap()
        .iter()
        .position(|d| d["digest"] == v1.as_str())
        .unwrap();
    type Edit = Box<dyn Fn(&mut Value)>;
    let edits: Vec<(&str, Edit)> = vec![
        (
            "it deletes tag v1.2.0, which the manifest did not have",
            Box::new(move |p: &mut Value| p["repositories"][0]["deleted"][at]["tags"] = json!(["v1.2.0", "latest"])),
        ),
        (
            "deletes tag latest, which the plan's policy keeps",
            Box::new(move |p: &mut Value| {
                let entry = &mut p["repositories"][0]["deleted"][at];
                entry["tags"] = json!(["v1", "latest"]);
                entry["all_tags"] = json!(["v1", "latest"]);
            }),
        ),
        (
            "deletes tag v1.2.0, which the plan's policy keeps",
            Box::new(move |p: &mut Value| {
                let entry = &mut p["repositories"][0]["deleted"][at];
                entry["tags"] = json!(["v1.2.0"]);
                entry["all_tags"] = json!(["v1.2.0"]);
            }),
        ),
        (
            "not a do-prune plan",
            Box::new(move |p: &mut Value| p["repositories"][0]["deleted"][at]["action"] = json!("everything")),
        ),
        (
            "is listed twice",
            Box::new(move |p: &mut Value| {
                let entry = p["repositories"][0]["deleted"][at].clone();
                p["repositories"][0]["deleted"].as_array_mut().unwrap().push(entry);
            }),
        ),
        (
            "must list every tag the manifest had",
            Box::new(move |p: &mut Value| p["repositories"][0]["deleted"][at]["all_tags"] = json!(["v1", "hotfix"])),
        ),
        (
            "the plan also keeps it",
            Box::new(move |p: &mut Value| {
                let entry = p["repositories"][0]["deleted"][at].clone();
                p["repositories"][0]["kept"]
                    .as_array_mut()
                    .unwrap()
                    .push(json!({"digest": entry["digest"], "tags": entry["all_tags"], "reason": "x"}));
            }),
        ),
        (
            "must leave the manifest at least one tag",
            Box::new(move |p: &mut Value| p["repositories"][0]["deleted"][at]["action"] = json!("tags")),
        ),
    ];
    for (expected, edit) in edits {
        let mut bad = saved.clone();
        edit(&mut bad);
        let path = dir.path().join("bad.json");
        std::fs::write(&path, bad.to_string()).unwrap();
        let before = sim.requests().len();
        let run = prune(&sim).args(["--apply", path.to_str().unwrap(), "--execute"]).run();
        run.assert_code(2);
        assert!(run.stderr.contains(expected), "{expected:?} not in {}", run.stderr);
        assert_eq!(sim.requests().len(), before, "no request at all: {expected}");
    }
    assert_eq!(present(&sim, "web").len(), 4, "nothing deleted");
}

#[test]
fn a_saved_entry_deleted_by_someone_else_during_the_apply_is_kept_at_the_recheck_as_gone() {
    let sim = web(releases(3));
    let (_dir, plan) = saved_plan(&sim);
    let v1 = digest_in(&sim, "web", "v1");
    let tool = prune(&sim).args(["--apply", plan.to_str().unwrap(), "--execute", "--gc", "off"]);
    // Someone else deletes v1 while do-prune reads manifests (it read the apps just before):
    // the recheck lists it no more.
    let run = changed_while_reading_manifests(
        &sim,
        "web",
        tool,
        |r| r.url.starts_with("/v2/apps"),
        || {
            let mut state = sim.state();
            let web = state.registries.get_mut("reg").unwrap().repositories.get_mut("web").unwrap();
            web.edit(|manifests| manifests.retain(|m| m.digest != v1));
        },
    );
    run.assert_code(0);
    let record = run.record("prune");
    let rechecked = record["kept_at_recheck"].as_array().unwrap();
    assert_eq!(rechecked.len(), 1, "{record}");
    assert_eq!(rechecked[0]["digest"], v1.as_str());
    assert_eq!(rechecked[0]["reason"], "kept at the re-check before deleting: gone since the plan");
    assert_eq!(tags(&sim), ["v3"], "v2 went as planned");
}
