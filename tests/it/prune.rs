//! do-prune's retention rules, limits and scale: what each rule keeps, alone and together, the
//! grace period, --max-delete and --target-usage, the deadline, listings over many pages, and a
//! repository that changes while it is pruned.

use std::time::{Duration, Instant};

use do_sim::{Fault, FaultKind};
use serde_json::{json, Value};

use crate::support::images::*;
use crate::support::{
    call, digest_in as digest_of, manifests_in, manifests_in as manifests, mutating_requests, prune, world, Tool, PRUNE,
};

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

#[test]
fn allow_empty_and_max_delete() {
    let sim = seeded("basic", &[("web", vec![tagged(&["v1"], 10), tagged(&["v2"], 10)])], vec![]);
    let run = prune(&sim).args(["--keep-last", "0"]).run();
    assert_eq!(deleted_tags(&run), set(&["v1"]));
    assert!(kept_reason(&run, "v2").contains("--allow-empty"));
    let run = prune(&sim).args(["--keep-last", "0", "--allow-empty"]).run();
    assert_eq!(deleted_tags(&run), set(&["v1", "v2"]));

    // A limit the plan reaches but does not pass lets it through.
    let run = prune(&sim).args(["--keep-last", "0", "--allow-empty", "--max-delete", "2"]).run();
    run.assert_code(0);
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
fn when_every_deletion_fails_no_garbage_collection_starts() {
    let sim = seeded("basic", &[("web", five())], vec![]);
    sim.add_fault(Fault {
        method: Some("DELETE".into()),
        path: "/v2/registries/reg/repositories/web/".into(),
        kind: FaultKind::Status { status: 500, retry_after: None },
        times: 1000,
    });
    let run = prune(&sim).args(["--keep-last", "2", "--execute"]).env("DO_RELEASE_RETRY_MAX_TIME", "200ms").run();
    run.assert_code(1);
    let record = run.record("prune");
    assert_eq!(record["failed"].as_array().unwrap().len(), 3, "{record}");
    assert_eq!(record["gc"], Value::Null, "{record}");
    assert!(!sim.requests().iter().any(|r| r.method == "POST" && r.url.contains("garbage-collection")));
    assert!(run.stderr.contains("nothing was deleted and nothing awaits a garbage collection"), "{}", run.stderr);
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

#[test]
fn untagged_manifests_within_the_grace_period_or_with_an_unreadable_time_stay() {
    let sim = web(vec![
        json!({"tags": [], "size_bytes": 1024, "updated_at": "yesterday-ish"}),
        json!({"tags": ["v1"], "size_bytes": 1024}),
    ]);
    // One pushed a minute ago, untagged (a push in progress).
    let pushed = do_sim::content::image("in flight", 512);
    let digest = pushed.digest.clone();
    sim.state().store("reg", "web", vec![pushed], None, std::time::Instant::now()).unwrap();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
    let a_minute_ago = do_core::duration::format_epoch(now - 60);
    sim.state().registries.get_mut("reg").unwrap().repositories.get_mut("web").unwrap().edit(|manifests| {
        manifests.iter_mut().find(|m| m.digest == digest).unwrap().updated_at = a_minute_ago.clone();
    });
    let run = prune(&sim).args(["--keep-last", "1"]).run();
    run.assert_code(0);
    let web = &run.record("prune")["repositories"][0];
    assert_eq!(web["untagged_kept"]["count"], 2, "{web}");
    assert!(web["deleted"].as_array().unwrap().is_empty(), "{web}");
    // Without the grace period, the recent one goes; the unreadable time still keeps the other.
    let run = prune(&sim).args(["--keep-last", "1", "--untagged-grace", "30s"]).run();
    let web = &run.record("prune")["repositories"][0];
    assert_eq!(
        (web["untagged_kept"]["count"].as_u64(), web["deleted"].as_array().unwrap().len()),
        (Some(1), 1),
        "{web}"
    );
}

#[test]
fn deletions_stop_at_the_deadline_and_the_rest_are_never_sent() {
    let sim = web(releases(10));
    // Each deletion takes 600 ms: nine of them take 5.4 s, and planning takes a fraction of a
    // second, so the 3 s deadline falls between deletions.
    sim.add_fault(Fault {
        method: Some("DELETE".into()),
        path: "/v2/registries/reg/repositories/web/digests/".into(),
        kind: FaultKind::Latency { ms: 600 },
        times: 1000,
    });
    let run = prune(&sim)
        .args(["--keep-last", "1", "--execute", "--gc", "off", "--concurrency", "1", "--timeout", "3s"])
        .run();
    run.assert_code(3);
    let record = run.record("prune");
    let not_attempted: Vec<String> = record["failed"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["error"].as_str().unwrap_or("").starts_with("not attempted: the deadline"))
        .map(|f| f["digest"].as_str().unwrap().to_string())
        .collect();
    assert!(!not_attempted.is_empty(), "some deletions were left for after the deadline: {record}");
    let sent: Vec<String> =
        mutating_requests(&sim).into_iter().filter(|r| r.method == "DELETE").map(|r| r.url).collect();
    assert!(!sent.is_empty(), "some deletions were made before it");
    for digest in &not_attempted {
        assert!(!sent.iter().any(|url| url.ends_with(digest.as_str())), "{digest} was sent after all");
        assert!(manifests_in(&sim, "web").iter().any(|m| m["digest"] == digest.as_str()), "{digest} is still there");
    }
    assert!(run.stderr.contains("the deadline (--timeout) passed before every deletion was made"), "{}", run.stderr);
}

#[test]
fn a_repository_that_changed_since_it_was_listed_is_planned_again() {
    let sim = repositories(vec![("web", vec![image(&["v1"], 1), image(&["v2"], 1), image(&["v3"], 1)])], json!({}));
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
fn a_list_answer_without_its_list_fails_closed() {
    for body in [json!({}), json!({"apps": null}), json!({"apps": null, "meta": {"total": 3}})] {
        let sim = repositories(vec![("web", vec![image(&["v1"], 1), image(&["v2"], 1)])], json!({}));
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
    let sim = repositories(vec![("web", vec![image(&["v1"], 1), image(&["v2"], 1)])], json!({}));
    sim.add_fault(Fault {
        method: Some("GET".into()),
        path: "/v2/apps".into(),
        kind: FaultKind::Body { status: 200, body: json!({"meta": {"total": 0}}) },
        times: 1,
    });
    prune(&sim).args(["--keep-last", "0", "--execute", "--gc", "off"]).run().assert_code(0);
    assert_eq!(present(&sim, "web").len(), 1);

    // A deployments page without its list.
    let sim = repositories(vec![("web", vec![image(&["v1"], 1), image(&["v2"], 1)])], json!({}));
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
    let sim = repositories(
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
    let sim = repositories(
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
fn the_plan_on_stderr_names_every_deletion_and_why_untagged_manifests_stay() {
    let sim = web((1..=20).map(|i| json!({"tags": [format!("v{i}")], "size_bytes": 1024})).collect());
    // One untagged manifest pushed a minute ago (a push in progress), and one an index holds.
    let pushed = do_sim::content::image("in flight", 512);
    let digest = pushed.digest.clone();
    sim.state().store("reg", "web", vec![pushed], None, std::time::Instant::now()).unwrap();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
    sim.state().registries.get_mut("reg").unwrap().repositories.get_mut("web").unwrap().edit(|manifests| {
        manifests.iter_mut().find(|m| m.digest == digest).unwrap().updated_at =
            do_core::duration::format_epoch(now - 60);
    });
    let run = prune(&sim).args(["--keep-last", "1"]).run();
    run.assert_code(0);
    let header = run.stderr.lines().find(|l| l.contains("repository")).unwrap();
    assert!(header.contains("would delete") && !header.contains(" deleted "), "{header}");
    let line =
        run.stderr.lines().find(|l| l.contains("web: would delete v")).unwrap_or_else(|| panic!("{}", run.stderr));
    for i in 1..=19 {
        assert!(line.contains(&format!("v{i},")) || line.contains(&format!("v{i}:")), "v{i} is not named: {line}");
    }
    assert!(!line.contains("more"), "no deletion is hidden: {line}");
    assert!(
        run.stderr.contains(
            "web: keep 1 untagged manifest(s), 512 B: 1 pushed within --untagged-grace (a push may be in progress)"
        ),
        "{}",
        run.stderr
    );
    // Executed, with GC started and not waited for: the registry is read-only meanwhile, said.
    let run = prune(&sim).args(["--keep-last", "1", "--execute", "--gc", "start"]).run();
    run.assert_code(0);
    let header = run.stderr.lines().find(|l| l.contains("repository")).unwrap();
    assert!(header.contains("deleted") && !header.contains("would"), "{header}");
    assert!(
        run.stderr.contains("the registry is read-only until the garbage collection ends (a push fails meanwhile); do-gc-wait waits for it"),
        "{}",
        run.stderr
    );
}
