//! do-prune never breaks a kept or deployed image: one test per way it once did (issue 10's
//! findings), each against the simulator with answers and races a real registry can produce.
//! The simulator's GC of an untagged type deletes untagged manifests even when an index holds
//! them (the worst case, as distribution 2.x did), unless a test says otherwise.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use do_sim::{Fault, FaultKind, Sim};
use serde_json::{json, Value};

use crate::support::{
    call, digest_in as digest_of, fully_readable, manifests_in as manifests, mutating_requests, prune, registry_reader,
    world, Run,
};

const UNTAGGED_GC: &str = "untagged manifests and unreferenced blobs";

/// A manifest to seed: plain (`platforms` empty) or a buildx-style index with attestations.
fn image(tags: &[&str], mib: u64) -> Value {
    json!({"tags": tags, "size_bytes": mib * 1024 * 1024})
}

fn index(tags: &[&str], mib: u64) -> Value {
    json!({"tags": tags, "size_bytes": mib * 1024 * 1024, "platforms": ["linux/amd64", "linux/arm64"], "attestations": true})
}

/// A registry `reg` with these repositories (manifests oldest first across the whole seed).
fn world(repositories: Vec<(&str, Vec<Value>)>, registry_options: Value) -> Sim {
    world::registry("professional", repositories).registry_options(registry_options).step_ms(30).unlimited().start()
}

fn children_of(sim: &Sim, repository: &str, digest: &str) -> Vec<String> {
    manifests(sim, repository)
        .into_iter()
        .find(|m| m["digest"] == digest)
        .map(|m| m["children"].as_array().unwrap().iter().map(|c| c.as_str().unwrap().to_string()).collect())
        .unwrap_or_default()
}

fn present(sim: &Sim, repository: &str) -> BTreeSet<String> {
    manifests(sim, repository).into_iter().map(|m| m["digest"].as_str().unwrap().to_string()).collect()
}

/// Adds an app with an ACTIVE deployment of `spec`; returns its id.
fn add_app(sim: &Sim, spec: Value) -> String {
    sim.add_app(spec, true)
}

fn app_on(name: &str, repository: &str, image: Value) -> Value {
    let mut image = image;
    image["registry_type"] = json!("DOCR");
    image["repository"] = json!(repository);
    json!({"name": name, "services": [{"name": "web", "image": image}]})
}

/// Starts a GC in the simulator as someone else would and waits until it has ended.
fn run_gc(sim: &Sim, gc_type: &str) {
    let (status, _) = call(
        sim,
        "POST",
        "/_sim/gc",
        Some(json!({"type": gc_type, "plan": [{"status": "scanning manifests", "ms": 20}]})),
        None,
    );
    assert_eq!(status, 201);
    let deadline = Instant::now() + Duration::from_secs(10);
    while sim.snapshot()["registries"][0]["read_only"] == true {
        assert!(Instant::now() < deadline, "the GC did not end");
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn deleted(run: &Run) -> Vec<Value> {
    run.record("prune")["repositories"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|r| r["deleted"].as_array().unwrap().clone())
        .collect()
}

#[test]
fn multi_arch_indexes_keep_every_child_and_lose_their_orphans_parents_first() {
    let sim = world(
        vec![(
            "web",
            vec![image(&[], 5), index(&["v1"], 10), index(&["v2"], 10), index(&["v3"], 10), index(&["v4"], 10)],
        )],
        json!({}),
    );
    let kept: Vec<String> = ["v3", "v4"].iter().map(|t| digest_of(&sim, "web", t)).collect();
    let gone: Vec<String> = ["v1", "v2"].iter().map(|t| digest_of(&sim, "web", t)).collect();
    let orphans: Vec<Vec<String>> = gone.iter().map(|index| children_of(&sim, "web", index)).collect();

    // An untagged GC would delete what the kept indexes hold: refused, nothing deleted.
    let refused = prune(&sim).args(["--keep-last", "2", "--execute", "--gc-type", UNTAGGED_GC]).run();
    refused.assert_code(2);
    assert!(refused.stderr.contains("untagged manifest(s) of web must stay"), "{}", refused.stderr);
    assert!(mutating_requests(&sim).is_empty());

    let run = prune(&sim).args(["--keep-last", "2", "--execute", "--gc", "wait"]).run();
    run.assert_code(0);
    let record = run.record("prune");
    assert_eq!(record["index_children_listed"], true);
    assert_eq!(record["gc"]["type"], "unreferenced blobs only");
    assert_eq!(record["repositories"][0]["untagged_kept"]["count"], 8, "4 children of each kept index");
    let children: u64 = manifests(&sim, "web")
        .iter()
        .filter(|m| {
            m["tags"] == json!([])
                && kept.iter().any(|k| children_of(&sim, "web", k).contains(&m["digest"].as_str().unwrap().to_string()))
        })
        .map(|m| m["compressed_size_bytes"].as_u64().or(m["size_bytes"].as_u64()).unwrap())
        .sum();
    assert!(children > 0);
    assert_eq!(record["repositories"][0]["untagged_kept"]["bytes"], children, "their sizes, summed");
    let reader = registry_reader(&sim, "reg");
    for digest in &kept {
        fully_readable(&reader, "web", digest).unwrap();
    }
    let left = present(&sim, "web");
    assert_eq!(left.len(), 10, "two indexes and their eight children: the loose manifest and the orphans went");
    // Each deleted index went before what it held.
    let log = sim.requests();
    let at = |digest: &str| {
        log.iter()
            .position(|r| r.method == "DELETE" && r.url.ends_with(digest))
            .unwrap_or_else(|| panic!("{digest} not deleted"))
    };
    for (index, children) in gone.iter().zip(&orphans) {
        assert_eq!(children.len(), 4);
        for child in children {
            assert!(at(index) < at(child), "{index} was deleted after {child}, which it held");
        }
    }
    assert_eq!(log.iter().filter(|r| r.method == "DELETE").count(), 11);

    // What an untagged GC would have done (the worst case the simulator models).
    run_gc(&sim, UNTAGGED_GC);
    assert!(
        fully_readable(&reader, "web", &kept[0]).is_err(),
        "the worst-case GC breaks indexes: this is why the type is refused"
    );
}

#[test]
fn a_listing_that_hides_index_children_is_reported_and_keeps_gc_safe() {
    let sim = world(vec![("web", vec![index(&["v1"], 10), index(&["v2"], 10)])], json!({"hide_index_children": true}));
    let refused = prune(&sim).args(["--keep-last", "1", "--execute", "--gc-type", UNTAGGED_GC]).run();
    refused.assert_code(2);
    assert!(refused.stderr.contains("does not show the manifests an index of web holds"), "{}", refused.stderr);
    let run = prune(&sim).args(["--keep-last", "1", "--execute", "--gc", "wait"]).run();
    run.assert_code(0);
    assert_eq!(run.record("prune")["index_children_listed"], false);
    assert!(
        run.stderr.contains("the API listing does not show 4 manifest(s) that kept indexes hold"),
        "{}",
        run.stderr
    );
    assert_eq!(run.record("prune")["gc"]["type"], "unreferenced blobs only");
    fully_readable(&registry_reader(&sim, "reg"), "web", &digest_of(&sim, "web", "v2")).unwrap();
}

/// `api` runs an image pinned by a digest whose tag has since moved: an untagged manifest.
fn deployed_untagged_in_api() -> (Sim, String) {
    let sim = world(
        vec![
            ("api", vec![image(&["v1"], 10)]),
            ("web", vec![image(&["w1"], 10), image(&["w2"], 10), image(&["w3"], 10)]),
        ],
        json!({}),
    );
    let pinned = digest_of(&sim, "api", "v1");
    add_app(&sim, app_on("backend", "api", json!({"digest": pinned})));
    sim.push("reg", "api", "v1", 1000).unwrap();
    // Make the pinned one old, so no grace period keeps it.
    sim.state().registries.get_mut("reg").unwrap().repositories.get_mut("api").unwrap().edit(|manifests| {
        for manifest in manifests {
            if manifest.digest == pinned {
                manifest.updated_at = "2026-01-01T00:00:00Z".into();
            }
        }
    });
    (sim, pinned)
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
fn inconsistent_saved_plan_entries_are_refused_before_any_request() {
    let sim = world(
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
fn a_deployment_that_starts_while_the_registry_is_read_is_kept() {
    let sim = world(
        vec![("web", vec![image(&["v1"], 1), image(&["v2"], 1), image(&["v3"], 1), image(&["v4"], 1)])],
        json!({}),
    );
    let app = add_app(&sim, app_on("shop", "web", json!({"tag": "v4"})));
    let v1 = digest_of(&sim, "web", "v1");
    // The first manifest read takes a while: the apps were read just before it.
    sim.add_fault(Fault {
        method: Some("GET".into()),
        path: "/v2/reg/web/manifests/".into(),
        kind: FaultKind::Latency { ms: 1500 },
        times: 1,
    });
    let child = std::thread::spawn({
        let tool = prune(&sim).args(["--keep-last", "1", "--keep-rollback", "0", "--execute", "--gc", "off"]);
        move || tool.run()
    });
    let deadline = Instant::now() + Duration::from_secs(10);
    while !sim.requests().iter().any(|r| r.url.starts_with(&format!("/v2/apps/{app}/deployments"))) {
        assert!(Instant::now() < deadline, "do-prune never read the apps");
        std::thread::sleep(Duration::from_millis(5));
    }
    // Someone deploys v1 by digest while do-prune reads manifests.
    let (status, _) = call(
        &sim,
        "PUT",
        &format!("/v2/apps/{app}"),
        Some(json!({"spec": app_on("shop", "web", json!({"digest": v1}))})),
        Some("tok"),
    );
    assert_eq!(status, 200);
    let run = child.join().unwrap();
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
fn a_repository_that_changed_since_it_was_listed_is_planned_again() {
    let sim = world(vec![("web", vec![image(&["v1"], 1), image(&["v2"], 1), image(&["v3"], 1)])], json!({}));
    let v2 = digest_of(&sim, "web", "v2");
    // The look for a running GC right before deleting takes a while.
    sim.add_fault(Fault {
        method: Some("GET".into()),
        path: "/v2/registries/reg/garbage-collection$".into(),
        kind: FaultKind::Latency { ms: 800 },
        times: 1,
    });
    let child = std::thread::spawn({
        let tool = prune(&sim).args(["--keep-last", "1", "--execute", "--gc", "off"]);
        move || tool.run()
    });
    let deadline = Instant::now() + Duration::from_secs(10);
    while sim.registry_requests().iter().all(|r| !r.url.contains("/manifests/")) {
        assert!(Instant::now() < deadline, "do-prune never read a manifest");
        std::thread::sleep(Duration::from_millis(5));
    }
    // A release tags v2 again as a hotfix while do-prune plans.
    sim.state().registries.get_mut("reg").unwrap().repositories.get_mut("web").unwrap().edit(|manifests| {
        for manifest in manifests {
            if manifest.digest == v2 {
                manifest.tags.push("hotfix".into());
            }
        }
    });
    let run = child.join().unwrap();
    run.assert_code(0);
    assert!(run.stderr.contains("web changed since it was listed; planning it again"), "{}", run.stderr);
    assert!(present(&sim, "web").contains(&v2), "a manifest whose tags changed is not deleted on the old plan");
}

#[test]
fn every_form_of_protection_record_is_understood_and_a_bad_one_stops_everything() {
    let sim = world(vec![("web", (1..=7).map(|i| image(&[&format!("v{i}")], 1)).collect())], json!({}));
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
    let sim = world(vec![("web", vec![image(&["v1"], 1), image(&["v2"], 1)])], json!({}));
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
fn a_list_answer_without_its_list_fails_closed() {
    for body in [json!({}), json!({"apps": null}), json!({"apps": null, "meta": {"total": 3}})] {
        let sim = world(vec![("web", vec![image(&["v1"], 1), image(&["v2"], 1)])], json!({}));
        sim.add_fault(Fault {
            method: Some("GET".into()),
            path: "/v2/apps".into(),
            kind: FaultKind::Body { status: 200, body: body.clone() },
            times: 1,
        });
        let run = prune(&sim).args(["--keep-last", "0", "--execute"]).run();
        run.assert_code(1);
        assert!(
            run.stderr.contains("has no apps list") && run.stderr.contains("nothing was deleted"),
            "{body}: {}",
            run.stderr
        );
        assert!(mutating_requests(&sim).is_empty(), "{body}");
    }
    // The API leaves an empty list out and says so: an account without apps.
    let sim = world(vec![("web", vec![image(&["v1"], 1), image(&["v2"], 1)])], json!({}));
    sim.add_fault(Fault {
        method: Some("GET".into()),
        path: "/v2/apps".into(),
        kind: FaultKind::Body { status: 200, body: json!({"meta": {"total": 0}}) },
        times: 1,
    });
    prune(&sim).args(["--keep-last", "0", "--execute", "--gc", "off"]).run().assert_code(0);
    assert_eq!(present(&sim, "web").len(), 1);

    // A deployments page without its list.
    let sim = world(vec![("web", vec![image(&["v1"], 1), image(&["v2"], 1)])], json!({}));
    let app = add_app(&sim, app_on("shop", "web", json!({"tag": "v1"})));
    sim.add_fault(Fault {
        method: Some("GET".into()),
        path: format!("/v2/apps/{app}/deployments"),
        kind: FaultKind::Body { status: 200, body: json!({"links": {}}) },
        times: 1,
    });
    let run = prune(&sim).args(["--keep-last", "0", "--execute"]).run();
    run.assert_code(1);
    assert!(run.stderr.contains("cannot read the deployments of app shop"), "{}", run.stderr);
    assert!(mutating_requests(&sim).is_empty());
}

#[test]
fn target_usage_counts_what_the_listing_holds_so_a_second_run_deletes_nothing_more() {
    // Starter: 500 MiB included. 8 images of 50 MiB (80%); target 50%.
    let sim =
        world::registry("starter", vec![("web", (1..=8).map(|i| image(&[&format!("v{i}")], 50)).collect())]).start();
    let first = prune(&sim).args(["--keep-last", "2", "--target-usage", "50", "--execute", "--gc", "off"]).run();
    first.assert_code(0);
    assert_eq!(deleted(&first).len(), 3, "150 MiB, oldest first");
    let usage = first.record("prune")["usage"].clone();
    assert_eq!(
        (usage["before_bytes"].clone(), usage["estimated_after_bytes"].clone()),
        (json!(400 * 1024 * 1024), json!(250 * 1024 * 1024))
    );
    // No GC ran, so the registry still reports 400 MiB; the listing says 250.
    let second = prune(&sim).args(["--keep-last", "2", "--target-usage", "50", "--execute", "--gc", "off"]).run();
    second.assert_code(0);
    assert_eq!(second.record("prune")["usage"]["reported_bytes"], 400 * 1024 * 1024);
    assert!(deleted(&second).is_empty(), "already at the target: {}", second.stdout);

    // The registry object without a subscription (the by-name answer has none): the
    // subscription endpoint gives the included storage.
    let registries = json!({"registries": [{"name": "reg", "region": "fra1", "storage_usage_bytes": 1}]});
    sim.add_fault(Fault {
        method: Some("GET".into()),
        path: "/v2/registries$".into(),
        kind: FaultKind::Body { status: 200, body: registries.clone() },
        times: 1,
    });
    let run = prune(&sim).args(["--keep-last", "1", "--target-usage", "40"]).run();
    run.assert_code(0);
    assert_eq!(run.record("prune")["usage"]["included_bytes"], 524_288_000);
    // Neither gives it: --target-usage cannot work.
    sim.add_fault(Fault {
        method: Some("GET".into()),
        path: "/v2/registries$".into(),
        kind: FaultKind::Body { status: 200, body: registries },
        times: 1,
    });
    sim.add_fault(Fault {
        method: Some("GET".into()),
        path: "/v2/registries/subscription".into(),
        kind: FaultKind::Status { status: 404, retry_after: None },
        times: 1,
    });
    let before = mutating_requests(&sim).len();
    let run = prune(&sim).args(["--keep-last", "1", "--target-usage", "40", "--execute"]).run();
    run.assert_code(2);
    assert!(run.stderr.contains("--target-usage needs the subscription's included storage"), "{}", run.stderr);
    assert_eq!(mutating_requests(&sim).len(), before);
}

#[test]
fn a_manifest_whose_time_cannot_be_read_counts_as_newest() {
    let sim = world(
        vec![(
            "web",
            vec![
                image(&["old"], 1),
                image(&["no-zone"], 1),
                image(&["empty"], 1),
                image(&["number"], 1),
                image(&["fresh"], 1),
            ],
        )],
        json!({}),
    );
    {
        let mut state = sim.state();
        let web = state.registries.get_mut("reg").unwrap().repositories.get_mut("web").unwrap();
        web.edit(|manifests| {
            for manifest in manifests {
                match manifest.tags[0].as_str() {
                    "no-zone" => manifest.updated_at = "2026-11-29 10:00".into(),
                    "empty" => manifest.updated_at = String::new(),
                    _ => {}
                }
            }
        });
    }
    // The API answering a number where a timestamp belongs.
    let mut listing: Value =
        call(&sim, "GET", "/v2/registries/reg/repositories/web/digests?per_page=200", None, Some("tok")).1;
    for manifest in listing["manifests"].as_array_mut().unwrap() {
        if manifest["tags"][0] == "number" {
            manifest["updated_at"] = json!(1_700_000_000);
        }
        if manifest["tags"][0] == "old" {
            manifest["updated_at"] = json!("2020-01-01T00:00:00Z");
        }
    }
    sim.add_fault(Fault {
        method: Some("GET".into()),
        path: "/v2/registries/reg/repositories/web/digests".into(),
        kind: FaultKind::Body { status: 200, body: listing },
        times: 2,
    });
    let run = prune(&sim).args(["--keep-last", "0", "--keep-within", "30d", "--execute", "--gc", "off"]).run();
    run.assert_code(0);
    let gone: Vec<String> = deleted(&run).iter().map(|d| d["tags"][0].as_str().unwrap().to_string()).collect();
    assert_eq!(gone, ["old"]);
    for odd in ["\"2026-11-29 10:00\"", "\"\"", "\"1700000000\""] {
        assert!(
            run.stderr.contains("cannot be read, so it counts as newest") && run.stderr.contains(odd),
            "{odd}: {}",
            run.stderr
        );
    }
}

#[test]
fn two_prunes_at_once_with_different_keep_tags_leave_the_newest_tagged_manifest() {
    let sim = world(
        vec![("web", vec![image(&["release-1"], 1), image(&["v1"], 1), image(&["v2"], 1), image(&["v3"], 1)])],
        json!({}),
    );
    let newest = digest_of(&sim, "web", "v3");
    // Slow deletions, so that both runs plan before either deletes.
    sim.add_fault(Fault {
        method: Some("DELETE".into()),
        path: "/v2/registries/reg/".into(),
        kind: FaultKind::Latency { ms: 300 },
        times: 100,
    });
    let spawn = |pattern: &str| {
        let tool = prune(&sim).args([
            "--keep-last",
            "0",
            "--keep-tag",
            pattern,
            "--execute",
            "--gc",
            "off",
            "--concurrency",
            "1",
        ]);
        std::thread::spawn(move || tool.run())
    };
    let (keep_releases, keep_versions) = (spawn("release-.*"), spawn("v.*"));
    keep_releases.join().unwrap().assert_code(0);
    keep_versions.join().unwrap().assert_code(0);
    let left: Vec<Value> = manifests(&sim, "web").into_iter().filter(|m| m["tags"] != json!([])).collect();
    assert_eq!(left.len(), 1, "{left:?}");
    assert_eq!(left[0]["digest"], newest.as_str(), "both kept the newest");
}

#[test]
fn a_gc_that_cannot_start_leaves_the_record_and_the_outputs() {
    let sim = world(vec![("web", vec![image(&["v1"], 1), image(&["v2"], 1), image(&["v3"], 1)])], json!({}));
    sim.add_fault(Fault {
        method: Some("POST".into()),
        path: "/v2/registries/reg/garbage-collection".into(),
        kind: FaultKind::Status { status: 403, retry_after: None },
        times: 1,
    });
    let dir = tempfile::tempdir().unwrap();
    let outputs = dir.path().join("outputs");
    let run = prune(&sim)
        .args(["--keep-last", "1", "--execute"])
        .env("GITHUB_ACTIONS", "true")
        .env("GITHUB_OUTPUT", &outputs)
        .env("GITHUB_STEP_SUMMARY", dir.path().join("summary"))
        .run();
    run.assert_code(1);
    let record = run.record("prune");
    assert_eq!(deleted(&run).len(), 2);
    assert!(record["failed"].as_array().unwrap().is_empty());
    let error = record["gc"]["error"].as_str().unwrap();
    assert!(error.contains("403") && error.contains("could not start garbage collection"), "{error}");
    assert!(run.stderr.contains("the deletions are done, but garbage collection did not start"), "{}", run.stderr);
    let outputs = std::fs::read_to_string(outputs).unwrap();
    assert!(outputs.contains("deleted_count=2"), "{outputs}");
    assert!(
        sim.requests().iter().all(|r| !r.url.starts_with("/v2/registry/")),
        "never the deprecated family (412 with several registries)"
    );
}

#[test]
fn nothing_is_deleted_while_a_gc_runs() {
    let sim = world(vec![("web", vec![image(&["v1"], 1), image(&["v2"], 1)])], json!({}));
    sim.start_gc_with("reg", &[("waiting for write JWTs to expire", 60_000)], "succeeded").unwrap();
    // The simulator refuses a delete then, as the registry is read-only.
    let v1 = digest_of(&sim, "web", "v1");
    let (status, body) =
        call(&sim, "DELETE", &format!("/v2/registries/reg/repositories/web/digests/{v1}"), None, Some("tok"));
    assert_eq!(status, 409, "{body}");
    let run = prune(&sim).args(["--keep-last", "1", "--execute", "--timeout", "1s"]).run();
    run.assert_code(3);
    assert!(run.stderr.contains("nothing was deleted"), "{}", run.stderr);
    assert!(sim.requests().iter().filter(|r| r.method == "DELETE").count() == 1, "only the test's own refused delete");
    let record = run.record("prune");
    assert_eq!(record["failed"][0]["error"].as_str().unwrap().split(':').next(), Some("not attempted"));
}

#[test]
fn a_failed_manifest_read_stops_every_deletion_in_its_repository() {
    let sim = world(
        vec![
            ("api", vec![image(&["a1"], 1), image(&["a2"], 1)]),
            ("web", vec![image(&[], 1), image(&["v1"], 1), image(&["v2"], 1)]),
        ],
        json!({}),
    );
    sim.add_fault(Fault {
        method: Some("GET".into()),
        path: "/v2/reg/web/manifests/".into(),
        kind: FaultKind::Status { status: 500, retry_after: None },
        times: 1000,
    });
    let run = prune(&sim)
        .args(["--keep-last", "1", "--execute", "--gc", "off"])
        .env("DO_RELEASE_RETRY_MAX_TIME", "300ms")
        .run();
    run.assert_code(1);
    assert!(run.stderr.contains("nothing was deleted in web"), "{}", run.stderr);
    let record = run.record("prune");
    let web = record["repositories"].as_array().unwrap().iter().find(|r| r["name"] == "web").unwrap().clone();
    assert!(web["blocked"].as_str().unwrap().contains("manifest read(s) failed"), "{web}");
    assert_eq!(web["deleted"], json!([]));
    assert_eq!(present(&sim, "web").len(), 3, "nothing in web deleted");
    assert_eq!(present(&sim, "api").len(), 1, "api is pruned");
}

#[test]
fn a_registry_answer_that_does_not_match_its_digest_is_not_trusted() {
    let sim = world(vec![("web", vec![image(&[], 1), image(&["v1"], 1), image(&["v2"], 1)])], json!({}));
    sim.add_fault(Fault {
        method: Some("GET".into()),
        path: "/v2/reg/web/manifests/".into(),
        kind: FaultKind::Body { status: 200, body: json!({"schemaVersion": 2, "manifests": []}) },
        times: 1000,
    });
    let run = prune(&sim).args(["--keep-last", "1", "--execute", "--gc", "off"]).run();
    run.assert_code(1);
    let blocked = run.record("prune")["repositories"][0]["blocked"].as_str().unwrap().to_string();
    assert!(blocked.contains("cannot be trusted"), "{blocked}");
    assert_eq!(present(&sim, "web").len(), 3);
}

#[test]
fn registry_reads_use_their_own_short_lived_credentials_never_the_api_token() {
    let sim = world(vec![("web", vec![index(&["v1"], 1), index(&["v2"], 1)])], json!({}));
    prune(&sim).args(["--keep-last", "1", "--execute", "--gc", "off"]).run().assert_code(0);
    let registry = sim.registry_requests();
    assert!(!registry.is_empty());
    assert!(registry.iter().all(|r| r.authorization != "api-token"), "{registry:?}");
    let credentials: Vec<String> =
        sim.requests().into_iter().filter(|r| r.url.contains("docker-credentials")).map(|r| r.url).collect();
    assert_eq!(credentials.len(), 1);
    assert!(credentials[0].contains("expiry_seconds=900") && !credentials[0].contains("read_write"), "{credentials:?}");
    let pings = registry.iter().filter(|r| r.url == "/v2/").count();
    let tokens = registry.iter().filter(|r| r.url.starts_with("/v2/registry/auth")).count();
    assert_eq!((pings, tokens), (1, 1), "one challenge and one token for the repository");
}

#[test]
fn two_thousand_manifests_cost_the_listing_the_reads_and_1400_deletions() {
    let figures = xtask::bench::prune_economy(&crate::bench_binaries(), 1).unwrap();
    assert_eq!(figures.manifests, 2000);
    assert_eq!(figures.deletions, 1400, "{figures:#?}");
    assert_eq!((figures.remaining, figures.expected_remaining), (600, 600), "{figures:#?}");
    assert_eq!(figures.manifest_reads, figures.manifest_read_bound, "{figures:#?}");
    assert_eq!(figures.manifest_read_bound, 1300);
    assert_eq!((figures.listing_pages, figures.app_reads, figures.gc_calls), (21, 4, 2), "{figures:#?}");
    assert_eq!(
        (figures.other_api_requests, figures.registry_auth_requests, figures.referrers_probes),
        (2, 2, 1),
        "{figures:#?}"
    );
    assert_eq!(
        figures.api_requests,
        figures.listing_pages + figures.app_reads + figures.deletions + figures.gc_calls + figures.other_api_requests,
        "nothing else was asked"
    );
    assert_eq!(figures.recorded_requests as usize, figures.api_requests, "the record counts every request");
    assert_eq!(figures.total_requests, figures.lower_bound, "{figures:#?}");
    assert!(figures.within_bounds());
}

#[test]
fn a_protection_record_protects_in_its_own_repository_and_registry_only() {
    // web and api both have an "old" image; a newer one keeps each repository non-empty.
    let both = || vec![image(&["old"], 1), image(&["new"], 1)];
    let sim = world(vec![("web", both()), ("api", both())], json!({}));
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
