//! What reading the registry host costs, and that no saving changes a plan: manifests kept
//! between runs by digest (a second run over an unchanged registry reads none, a planted entry
//! is never trusted), one token request for many repositories, and connections kept alive.

use serde_json::{json, Value};

use crate::support::images::*;
use crate::support::{digest_in, prune, Run};
use do_sim::Sim;

/// Two repositories of multi-platform indexes (with attestations) and loose untagged images.
fn registry() -> Sim {
    repositories(
        vec![
            ("web", vec![image(&[], 1), index(&["v1"], 2), index(&["v2"], 2), image(&[], 1), index(&["v3"], 2)]),
            ("worker", vec![index(&["w1"], 2), image(&[], 1), index(&["w2"], 2)]),
        ],
        json!({}),
    )
}

fn dry_run(sim: &Sim, cache: Option<&std::path::Path>, concurrency: u16) -> Run {
    let mut args = vec!["--keep-last".to_string(), "1".into(), "--concurrency".into(), concurrency.to_string()];
    match cache {
        Some(dir) => args.extend(["--cache-dir".to_string(), dir.display().to_string()]),
        None => args.push("--no-cache".into()),
    }
    let run = prune(sim).args(args).run();
    run.assert_code(0);
    run
}

/// Manifest GETs on the registry host so far.
fn manifest_reads(sim: &Sim) -> Vec<String> {
    sim.registry_requests()
        .into_iter()
        .filter(|r| r.method == "GET" && r.url.contains("/manifests/"))
        .map(|r| r.url)
        .collect()
}

/// The plan of a record: what is kept, deleted and why, per repository.
fn plan(run: &Run) -> Value {
    run.record("prune")["repositories"].clone()
}

#[test]
fn a_second_run_over_an_unchanged_registry_reads_no_manifest_and_after_a_push_only_the_new_ones() {
    let sim = registry();
    let cache = tempfile::tempdir().unwrap();
    let first = dry_run(&sim, Some(cache.path()), 4);
    let read_first = manifest_reads(&sim).len();
    assert!(read_first > 10, "the untagged manifests and the kept indexes were read: {read_first}");
    assert_eq!(first.record("prune")["cache"], json!({"hits": 0, "added": read_first, "discarded": 0}));

    let second = dry_run(&sim, Some(cache.path()), 4);
    assert_eq!(manifest_reads(&sim).len(), read_first, "no manifest read twice");
    assert_eq!(second.record("prune")["cache"], json!({"hits": read_first, "added": 0, "discarded": 0}));
    assert_eq!(plan(&second), plan(&first));

    // After a push, v4 is the one kept: its index is read, and v3's platform images, no longer
    // held by a kept index, are read for the first time. Nothing read before is read again.
    sim.push_index("reg", "web", "v4", &["linux/amd64", "linux/arm64"], true, 1024).unwrap();
    let third = dry_run(&sim, Some(cache.path()), 4);
    let all = manifest_reads(&sim);
    let distinct: std::collections::BTreeSet<&String> = all.iter().collect();
    assert_eq!(distinct.len(), all.len(), "no manifest read twice over three runs: {all:#?}");
    let new = &all[read_first..];
    let v4 = digest_in(&sim, "web", "v4");
    assert!(new.iter().any(|url| url.ends_with(&format!("/web/manifests/{v4}"))), "{new:#?}");
    assert_eq!(third.record("prune")["cache"]["added"], new.len());
    let hits = third.record("prune")["cache"]["hits"].as_u64().unwrap();
    assert!(hits > 0 && hits <= read_first as u64, "what was read before came from the cache: {hits}");
}

#[test]
fn plans_are_the_same_with_and_without_the_cache_and_at_every_concurrency() {
    let sim = registry();
    let baseline = plan(&dry_run(&sim, None, 1));
    for concurrency in [1, 2, 4, 8, 32] {
        let cache = tempfile::tempdir().unwrap();
        assert_eq!(plan(&dry_run(&sim, None, concurrency)), baseline, "no cache, --concurrency {concurrency}");
        assert_eq!(plan(&dry_run(&sim, Some(cache.path()), concurrency)), baseline, "cold, {concurrency}");
        let warm = dry_run(&sim, Some(cache.path()), concurrency);
        assert!(warm.record("prune")["cache"]["hits"].as_u64().unwrap() > 0);
        assert_eq!(plan(&warm), baseline, "warm, --concurrency {concurrency}");
    }
}

#[test]
fn a_planted_cache_entry_is_discarded_and_the_manifest_read_again() {
    let sim = registry();
    let cache = tempfile::tempdir().unwrap();
    let honest = dry_run(&sim, Some(cache.path()), 4);
    // Planted: the kept index v3 "is" a plain image that holds nothing. Trusted, it would leave
    // its platform images and attestations unprotected.
    let v3 = digest_in(&sim, "web", "v3");
    let lie = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","layers":[]}"#;
    let pack = cache.path().join("manifests.pack");
    let mut bytes = std::fs::read(&pack).unwrap();
    bytes.extend_from_slice(format!("{v3} {}\n", lie.len()).as_bytes());
    bytes.extend_from_slice(lie);
    bytes.push(b'\n');
    std::fs::write(&pack, bytes).unwrap();

    let before = manifest_reads(&sim).len();
    let run = dry_run(&sim, Some(cache.path()), 4);
    assert_eq!(plan(&run), plan(&honest), "the plan is the honest one");
    assert_eq!(run.record("prune")["cache"]["discarded"], 1);
    let again = manifest_reads(&sim).split_off(before);
    assert_eq!(again, [format!("/v2/reg/web/manifests/{v3}")], "v3 read from the registry again, nothing else");
    assert!(!std::fs::read_to_string(&pack).unwrap().contains("\"layers\":[]}"), "the lie is gone from the pack");
}

#[test]
fn a_cache_dir_that_cannot_be_made_is_refused_before_any_request_and_no_cache_keeps_none() {
    let sim = registry();
    let file = tempfile::NamedTempFile::new().unwrap();
    let path = file.path().to_str().unwrap();
    let refused = prune(&sim).args(["--keep-last", "1", "--cache-dir", path]).run();
    refused.assert_code(2);
    assert!(refused.stderr.contains("--cache-dir") && refused.stderr.contains("--no-cache"), "{}", refused.stderr);
    assert!(sim.requests().is_empty(), "nothing sent");
    let conflicting = prune(&sim).args(["--no-cache", "--cache-dir", path]).run();
    conflicting.assert_code(2);
    assert_eq!(dry_run(&sim, None, 4).record("prune")["cache"], Value::Null);
}

#[test]
fn without_a_cache_dir_the_cache_lives_under_xdg_cache_home_else_home() {
    let sim = registry();
    let (xdg, home) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let run = |tool: crate::support::Tool| tool.args(["--keep-last", "1"]).env("HOME", home.path()).run();
    run(prune(&sim).env("XDG_CACHE_HOME", xdg.path())).assert_code(0);
    assert!(xdg.path().join("do-release/manifests.pack").is_file());
    run(prune(&sim).env_remove("XDG_CACHE_HOME")).assert_code(0);
    assert!(home.path().join(".cache/do-release/manifests.pack").is_file(), "as the example workflow keeps it");
}

#[test]
fn one_token_request_covers_many_repositories_and_reads_share_few_connections() {
    let names: Vec<String> = (0..30).map(|i| format!("svc-{i:02}")).collect();
    let sim = repositories(
        names.iter().map(|name| (name.as_str(), vec![index(&["v1"], 1), image(&[], 1), index(&["v2"], 1)])).collect(),
        json!({}),
    );
    let run = dry_run(&sim, None, 4);
    let tokens = sim.registry_requests().into_iter().filter(|r| r.url.starts_with("/v2/registry/auth")).count();
    assert_eq!(tokens, 2, "30 repositories, at most 25 in one token request");
    assert!(run.record("prune")["repositories"].as_array().unwrap().len() == 30);
    let reads = manifest_reads(&sim).len() as u64;
    assert!(reads >= 30 * 5, "hundreds of reads: {reads}");
    // API and registry host are one address here: a handful of connections for hundreds of requests.
    let connections = sim.connections_accepted();
    assert!(connections <= 16, "{connections} connections for {reads} reads");
}
