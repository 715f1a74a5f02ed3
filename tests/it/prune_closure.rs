//! What a kept image is made of stays: every child of a kept index, whatever a tag or the policy
//! says of it, and nothing is deleted in a repository where a manifest read cannot be trusted
//! (failed, hidden from the listing, or not matching its digest). The simulator's GC of an
//! untagged type deletes untagged manifests even when an index holds them (the worst case, as
//! distribution 2.x did), unless a test says otherwise.

use do_sim::{Fault, FaultKind};
use serde_json::json;

use crate::support::images::*;
use crate::support::{
    digest_in, digest_in as digest_of, fully_readable, manifests_in, manifests_in as manifests, mutating_requests,
    prune, registry_reader,
};

#[test]
fn multi_arch_indexes_keep_every_child_and_lose_their_orphans_parents_first() {
    let sim = repositories(
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
    let sim =
        repositories(vec![("web", vec![index(&["v1"], 10), index(&["v2"], 10)])], json!({"hide_index_children": true}));
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

#[test]
fn a_failed_manifest_read_stops_every_deletion_in_its_repository() {
    let sim = repositories(
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
    let sim = repositories(vec![("web", vec![image(&[], 1), image(&["v1"], 1), image(&["v2"], 1)])], json!({}));
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
    let sim = repositories(vec![("web", vec![index(&["v1"], 1), index(&["v2"], 1)])], json!({}));
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
fn a_tagged_manifest_a_kept_index_holds_stays_whatever_the_policy_says() {
    let (sim, amd64) = index_with_an_old_tagged_child();
    let run = prune(&sim).args(["--keep-last", "1", "--execute", "--gc", "off"]).run();
    run.assert_code(0);
    assert!(manifests_in(&sim, "web").iter().any(|m| m["digest"] == amd64.as_str()), "the index stays whole");
    let record = run.record("prune");
    let kept = record["repositories"][0]["kept"].as_array().unwrap();
    let reason = kept.iter().find(|k| k["digest"] == amd64.as_str()).map(|k| k["reason"].clone());
    assert_eq!(
        reason,
        Some(json!(format!("the linux/amd64 image of index {}, which is kept", &digest_in(&sim, "web", "v2")[7..19])))
    );
    assert!(mutating_requests(&sim).is_empty(), "nothing to delete: {:?}", mutating_requests(&sim));
}

#[test]
fn a_release_whose_read_fails_where_artifacts_live_blocks_the_repository_and_is_kept_as_such() {
    let (sim, v1) = signed_with_an_unreadable_release();
    let run = prune(&sim)
        .args(["--keep-last", "2", "--execute", "--gc", "off"])
        .env("DO_RELEASE_RETRY_MAX_TIME", "200ms")
        .run();
    run.assert_code(1);
    assert!(mutating_requests(&sim).is_empty(), "nothing deleted: it may be a signature of a kept image");
    let web = &run.record("prune")["repositories"][0];
    assert!(web["blocked"].as_str().unwrap().contains("manifest read(s) failed"), "{web}");
    let kept: Vec<(String, String)> = web["kept"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| (k["digest"].as_str().unwrap().to_string(), k["reason"].as_str().unwrap().to_string()))
        .collect();
    let v2 = digest_in(&sim, "web", "v2");
    for release in [&v1, &v2] {
        let reason = kept.iter().find(|(d, _)| d == release).map(|(_, r)| r.as_str()).unwrap_or("not kept");
        assert!(reason.starts_with("nothing in this repository is deleted"), "{release}: {reason}");
    }
    let signatures: Vec<String> =
        web["artifacts"].as_array().unwrap().iter().map(|a| a["digest"].as_str().unwrap().to_string()).collect();
    assert_eq!(signatures.len(), 4);
    assert!(kept.iter().all(|(d, _)| !signatures.contains(d)), "artifacts are never among the kept images: {kept:?}");
    assert_eq!(kept.len(), 4, "the four releases, each once: {kept:?}");
}
