//! Images in a seeded registry and what a prune record says of them: seeds (plain images,
//! buildx-style indexes, releases), worlds of one or several repositories, the scenes several
//! prune tests share, and readers of the record and of the registry afterwards.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use do_sim::{Fault, FaultKind, Sim};
use serde_json::{json, Value};

use super::{
    call, digest_in, digest_in as digest_of, manifests_in, manifests_in as manifests, prune, sim, world, Run, Tool,
    DEPLOY,
};

/// A registry `reg` with the given repositories, each a list of (tags, MiB), oldest first
/// across the whole seed (the first manifest is the oldest), and the given apps.
/// A manifest to seed: its tags and its size in MiB.
pub type SeedManifest<'a> = (Vec<&'a str>, u64);

pub fn seeded(tier: &str, repositories: &[(&str, Vec<SeedManifest>)], apps: Vec<Value>) -> Sim {
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

pub fn tagged(tags: &[&'static str], mib: u64) -> (Vec<&'static str>, u64) {
    (tags.to_vec(), mib)
}

/// The tags of the manifests deleted whole, and of tag-only deletions, in the record.
pub fn deleted_tags(run: &Run) -> BTreeSet<String> {
    let record = run.record("prune");
    record["repositories"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|r| r["deleted"].as_array().unwrap().clone())
        .flat_map(|d| d["tags"].as_array().unwrap().iter().map(|t| t.as_str().unwrap().to_string()).collect::<Vec<_>>())
        .collect()
}

pub fn kept_reason(run: &Run, tag: &str) -> String {
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

pub fn set(tags: &[&str]) -> BTreeSet<String> {
    tags.iter().map(|t| t.to_string()).collect()
}

pub fn remaining_tags(sim: &Sim) -> BTreeSet<String> {
    let snapshot = sim.snapshot();
    snapshot["registries"][0]["repositories"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|r| r["manifests"].as_array().unwrap().clone())
        .flat_map(|m| m["tags"].as_array().unwrap().iter().map(|t| t.as_str().unwrap().to_string()).collect::<Vec<_>>())
        .collect()
}

pub fn five() -> Vec<(Vec<&'static str>, u64)> {
    vec![
        tagged(&["v1"], 10),
        tagged(&["v2"], 10),
        tagged(&["v3"], 10),
        tagged(&["v4", "latest"], 10),
        tagged(&["v5"], 10),
    ]
}

/// The default world plus v2.0.0 and v3.0.0, deployed one after the other by do-deploy.
pub fn deployed_history() -> Sim {
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

/// One repository, `web`, in registry `reg`.
pub fn web(manifests: Vec<Value>) -> Sim {
    world::registry("professional", vec![("web", manifests)]).step_ms(30).unlimited().start()
}

pub fn releases(n: usize) -> Vec<Value> {
    (1..=n).map(|i| json!({"tags": [format!("v{i}")], "size_bytes": 1024})).collect()
}

/// A plan of `--keep-last 1` saved with `--plan-out`, in a directory that lives as long as the
/// first value does.
pub fn saved_plan(sim: &Sim) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let plan = dir.path().join("plan.json");
    prune(sim).args(["--keep-last", "1", "--plan-out", plan.to_str().unwrap()]).run().assert_code(0);
    (dir, plan)
}

pub fn tags(sim: &Sim) -> Vec<String> {
    let mut tags: Vec<String> = manifests_in(sim, "web")
        .iter()
        .flat_map(|m| m["tags"].as_array().unwrap().iter().map(|t| t.as_str().unwrap().to_string()).collect::<Vec<_>>())
        .collect();
    tags.sort();
    tags
}

pub fn skipped(run: &Run) -> Vec<(String, String)> {
    run.record("prune")["skipped"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["digest"].as_str().unwrap().to_string(), s["reason"].as_str().unwrap().to_string()))
        .collect()
}

/// A platform image of the kept index, also tagged long ago (`v0-amd64`): the policy would
/// delete it whole, the closure needs it.
pub fn index_with_an_old_tagged_child() -> (Sim, String) {
    let platforms = ["linux/amd64", "linux/arm64"];
    let sim = web(vec![json!({"tags": ["v2"], "size_bytes": 1024, "platforms": platforms})]);
    let v2 = digest_in(&sim, "web", "v2");
    let index = manifests_in(&sim, "web").into_iter().find(|m| m["digest"] == v2.as_str()).unwrap();
    let amd64 = index["children"][0].as_str().unwrap().to_string();
    sim.state().registries.get_mut("reg").unwrap().repositories.get_mut("web").unwrap().edit(|manifests| {
        let child = manifests.iter_mut().find(|m| m.digest == amd64).unwrap();
        child.tags = vec!["v0-amd64".into()];
        child.updated_at = "2020-01-01T00:00:00Z".into();
    });
    (sim, amd64)
}

/// Four releases, each signed (a repository with artifacts), and reads of `v1` failing for good.
pub fn signed_with_an_unreadable_release() -> (Sim, String) {
    let manifests: Vec<Value> = (1..=4)
        .flat_map(|i| {
            [json!({"tags": [format!("v{i}")], "size_bytes": 1024}), json!({"signature_of": format!("v{i}")})]
        })
        .collect();
    let sim = web(manifests);
    let v1 = digest_in(&sim, "web", "v1");
    sim.add_fault(Fault {
        method: Some("GET".into()),
        path: format!("/v2/reg/web/manifests/{v1}"),
        kind: FaultKind::Status { status: 500, retry_after: None },
        times: 1000,
    });
    (sim, v1)
}

/// The untagged manifests of `repository`, by digest, oldest first.
pub fn untagged_in(sim: &Sim, repository: &str) -> Vec<String> {
    manifests(sim, repository)
        .into_iter()
        .filter(|m| m["tags"].as_array().unwrap().is_empty())
        .map(|m| m["digest"].as_str().unwrap().to_string())
        .collect()
}

/// Runs `tool` with its first manifest read of `repository` slowed by 1.5 s, and calls
/// `meanwhile` once a request of this run satisfies `read` (the last thing it reads before the
/// manifests, such as the apps): the world changes between the plan's reads and its deletions.
pub fn changed_while_reading_manifests(
    sim: &Sim,
    repository: &str,
    tool: Tool,
    read: impl Fn(&do_sim::LoggedRequest) -> bool,
    meanwhile: impl FnOnce(),
) -> Run {
    sim.add_fault(Fault {
        method: Some("GET".into()),
        path: format!("/v2/reg/{repository}/manifests/"),
        kind: FaultKind::Latency { ms: 1500 },
        times: 1,
    });
    let before = sim.requests().len();
    let child = std::thread::spawn(move || tool.run());
    let deadline = Instant::now() + Duration::from_secs(10);
    while !sim.requests()[before..].iter().any(&read) {
        assert!(Instant::now() < deadline, "the run never made the request awaited");
        std::thread::sleep(Duration::from_millis(5));
    }
    meanwhile();
    child.join().unwrap()
}

pub const UNTAGGED_GC: &str = "untagged manifests and unreferenced blobs";

/// A manifest to seed: plain (`platforms` empty) or a buildx-style index with attestations.
pub fn image(tags: &[&str], mib: u64) -> Value {
    json!({"tags": tags, "size_bytes": mib * 1024 * 1024})
}

pub fn index(tags: &[&str], mib: u64) -> Value {
    json!({"tags": tags, "size_bytes": mib * 1024 * 1024, "platforms": ["linux/amd64", "linux/arm64"], "attestations": true})
}

/// A registry `reg` with these repositories (manifests oldest first across the whole seed).
pub fn repositories(repositories: Vec<(&str, Vec<Value>)>, registry_options: Value) -> Sim {
    world::registry("professional", repositories).registry_options(registry_options).step_ms(30).unlimited().start()
}

pub fn children_of(sim: &Sim, repository: &str, digest: &str) -> Vec<String> {
    manifests(sim, repository)
        .into_iter()
        .find(|m| m["digest"] == digest)
        .map(|m| m["children"].as_array().unwrap().iter().map(|c| c.as_str().unwrap().to_string()).collect())
        .unwrap_or_default()
}

pub fn present(sim: &Sim, repository: &str) -> BTreeSet<String> {
    manifests(sim, repository).into_iter().map(|m| m["digest"].as_str().unwrap().to_string()).collect()
}

/// Adds an app with an ACTIVE deployment of `spec`; returns its id.
pub fn add_app(sim: &Sim, spec: Value) -> String {
    sim.add_app(spec, true)
}

pub fn app_on(name: &str, repository: &str, image: Value) -> Value {
    let mut image = image;
    image["registry_type"] = json!("DOCR");
    image["repository"] = json!(repository);
    json!({"name": name, "services": [{"name": "web", "image": image}]})
}

/// Starts a GC in the simulator as someone else would and waits until it has ended.
pub fn run_gc(sim: &Sim, gc_type: &str) {
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

pub fn deleted(run: &Run) -> Vec<Value> {
    run.record("prune")["repositories"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|r| r["deleted"].as_array().unwrap().clone())
        .collect()
}

/// `api` runs an image pinned by a digest whose tag has since moved: an untagged manifest.
pub fn deployed_untagged_in_api() -> (Sim, String) {
    let sim = repositories(
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
