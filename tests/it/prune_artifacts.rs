//! do-prune and what signing tools push beside an image: cosign's `sha256-<digest>.sig`, `.att`
//! and `.sbom` tags, OCI 1.1 referrers with and without the fallback index tag. Artifacts are
//! not releases: they live and die with their image.

use std::collections::BTreeSet;

use do_sim::artifacts::ArtifactKind;
use do_sim::Sim;
use serde_json::{json, Value};

use crate::support::{call, digest_in, digests_in as digests, manifests_in, mutating_requests, prune, world, Run};

const VERSIONS: [&str; 6] = ["v1.0.0", "v1.1.0", "v1.2.0", "v2.0.0", "v2.1.0", "v2.2.0"];

/// A registry `reg` seeded with `repositories` (each a list of seed manifests, oldest first)
/// and one app running `web:{running}` when given.
fn seeded(repositories: Vec<(&str, Vec<Value>)>, running: Option<&str>, options: Value) -> Sim {
    let apps: Vec<Value> =
        running.into_iter().map(|tag| json!({"spec": do_sim::default_app_spec("shop", "web", tag)})).collect();
    world::registry("professional", repositories).registry_options(options).apps(apps).step_ms(30).unlimited().start()
}

/// Every release signed and attested right after its push, as a careful team's CI does.
fn signed_releases() -> Vec<Value> {
    VERSIONS
        .iter()
        .flat_map(|v| {
            [json!({"tags": [v], "size_bytes": 1_048_576}), json!({"signature_of": v}), json!({"attestation_of": v})]
        })
        .collect()
}

fn tags(sim: &Sim, repository: &str) -> BTreeSet<String> {
    manifests_in(sim, repository)
        .iter()
        .flat_map(|m| m["tags"].as_array().unwrap().iter().map(|t| t.as_str().unwrap().to_string()).collect::<Vec<_>>())
        .collect()
}

/// cosign's tag for an artifact of `tag`'s image.
fn cosign_tag(sim: &Sim, tag: &str, suffix: &str) -> String {
    format!("{}{suffix}", digest_in(sim, "web", tag).replacen(':', "-", 1))
}

fn repository(run: &Run, name: &str) -> Value {
    run.record("prune")["repositories"].as_array().unwrap().iter().find(|r| r["name"] == name).unwrap().clone()
}

/// The record's artifacts of `name`: digest -> (kind, fate, reason).
fn artifacts(run: &Run, name: &str) -> Vec<(String, String, String, String)> {
    repository(run, name)["artifacts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            let text = |key: &str| a[key].as_str().unwrap().to_string();
            (text("digest"), text("kind"), text("fate"), text("reason"))
        })
        .collect()
}

#[test]
fn signed_releases_keep_their_slots_and_their_signatures_live_and_die_with_them() {
    let sim = seeded(vec![("web", signed_releases())], Some("v1.2.0"), json!({}));
    let kept = ["v1.2.0", "v2.1.0", "v2.2.0"];
    let mut expected: BTreeSet<String> = kept.iter().map(|t| t.to_string()).collect();
    for tag in kept {
        expected.insert(cosign_tag(&sim, tag, ".sig"));
        expected.insert(cosign_tag(&sim, tag, ".att"));
    }
    let v1_sig = digest_in(&sim, "web", &cosign_tag(&sim, "v1.0.0", ".sig"));

    let run = prune(&sim).args(["--keep-last", "2", "--execute", "--gc", "off"]).run();
    run.assert_code(0);
    assert_eq!(tags(&sim, "web"), expected, "the two newest releases, the running one, and their artifacts");
    let plan = repository(&run, "web");
    let kept_tags: BTreeSet<&str> = plan["kept"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|k| k["tags"].as_array().unwrap())
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(kept_tags, kept.into_iter().collect(), "no artifact counts among the kept images");
    let found = artifacts(&run, "web");
    assert_eq!(found.len(), 12, "every signature and attestation is listed: {found:?}");
    let of_newest = found.iter().find(|a| a.0 == digest_in(&sim, "web", &cosign_tag(&sim, "v2.2.0", ".sig"))).unwrap();
    assert_eq!((of_newest.1.as_str(), of_newest.2.as_str()), ("signature", "kept"));
    assert_eq!(of_newest.3, "signature of v2.2.0, which is kept");
    let of_deleted = found.iter().find(|a| a.0 == v1_sig).unwrap();
    assert_eq!((of_deleted.2.as_str(), of_deleted.3.as_str()), ("deleted", "signature of v1.0.0, which is deleted"));
    assert!(
        run.stderr.contains("keep v2.2.0: one of the 2 most recent (--keep-last), with 1 signature, 1 attestation"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("delete v2.0.0 (with 1 signature, 1 attestation)"), "{}", run.stderr);
    // The signatures go after their images' tags.
    let deletes: Vec<String> = mutating_requests(&sim).into_iter().map(|r| r.url).collect();
    let position = |digest: &str| deletes.iter().position(|u| u.ends_with(digest)).unwrap();
    assert!(position(&v1_sig) > position(&digest_in_record(&run, "v1.0.0")), "{deletes:?}");
}

/// The digest of a deleted release, from the record (it is gone from the registry).
fn digest_in_record(run: &Run, tag: &str) -> String {
    repository(run, "web")["deleted"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["all_tags"].as_array().unwrap().iter().any(|t| t == tag))
        .unwrap()["digest"]
        .as_str()
        .unwrap()
        .to_string()
}

#[test]
fn keep_artifacts_keeps_the_signatures_of_deleted_images() {
    let sim = seeded(vec![("web", signed_releases())], None, json!({}));
    let v1_sig = cosign_tag(&sim, "v1.0.0", ".sig");
    let run = prune(&sim).args(["--keep-last", "2", "--keep-artifacts", "--execute", "--gc", "off"]).run();
    run.assert_code(0);
    let left = tags(&sim, "web");
    assert!(left.contains(&v1_sig) && !left.contains("v1.0.0"), "{left:?}");
    assert_eq!(left.len(), 2 + 12, "two releases and every artifact");
    let kept = artifacts(&run, "web").into_iter().find(|a| a.0 == digest_in(&sim, "web", &v1_sig)).unwrap();
    assert_eq!(kept.3, "signature of v1.0.0, which is deleted; kept by --keep-artifacts");
}

#[test]
fn cosign_3_referrers_with_and_without_the_fallback_tag_follow_their_image() {
    let manifests = vec![
        json!({"tags": ["v1"], "size_bytes": 1024}),
        json!({"referrer_of": "v1", "fallback_tag": true}),
        json!({"tags": ["v2"], "size_bytes": 1024}),
        json!({"referrer_of": "v2"}),
        json!({"tags": ["v3"], "size_bytes": 1024}),
        json!({"referrer_of": "v3", "fallback_tag": true}),
    ];
    for referrers_api in [false, true] {
        let sim = seeded(vec![("web", manifests.clone())], None, json!({"referrers_api": referrers_api}));
        let v1 = digest_in(&sim, "web", "v1");
        let v1_fallback = cosign_tag(&sim, "v1", "");
        let v3_fallback = cosign_tag(&sim, "v3", "");
        let before = digests(&sim, "web");
        let run = prune(&sim).args(["--keep-last", "2", "--execute", "--gc", "off"]).run();
        run.assert_code(0);
        let left = tags(&sim, "web");
        assert!(left.contains(&v3_fallback) && !left.contains(&v1_fallback), "{left:?}");
        let gone: BTreeSet<String> = before.difference(&digests(&sim, "web")).cloned().collect();
        assert_eq!(gone.len(), 3, "v1, its referrer and its fallback index: {gone:?}");
        assert!(gone.contains(&v1));
        let remaining = manifests_in(&sim, "web");
        let referrers_left = remaining.iter().filter(|m| !m["subject"].is_null()).count();
        assert_eq!(referrers_left, 2, "v2's and v3's referrers stay");
        assert_eq!(run.record("prune")["referrers_api"], json!(referrers_api), "the record says which was used");
    }
}

#[test]
fn an_orphan_signature_goes_and_one_whose_image_is_elsewhere_stays() {
    let sim = seeded(
        vec![
            (
                "web",
                vec![
                    json!({"tags": ["v1"], "size_bytes": 1024}),
                    json!({"signature_of": "v1"}),
                    json!({"tags": ["v2"], "size_bytes": 1024}),
                ],
            ),
            ("api", vec![json!({"tags": ["a1"], "size_bytes": 1024})]),
        ],
        None,
        json!({}),
    );
    let v1 = digest_in(&sim, "web", "v1");
    let sig = cosign_tag(&sim, "v1", ".sig");
    // Another tool deleted v1 and left its signature behind.
    let (status, _) =
        call(&sim, "DELETE", &format!("/v2/registries/reg/repositories/web/digests/{v1}"), None, Some("tok"));
    assert_eq!(status, 204);
    // And a signature in api names web's v2: its image is in another repository.
    let v2 = digest_in(&sim, "web", "v2");
    let stray = format!("{}.sig", v2.replacen(':', "-", 1));
    sim.state()
        .store(
            "reg",
            "api",
            vec![do_sim::content::image("stray signature", 512)],
            Some(&stray),
            std::time::Instant::now(),
        )
        .unwrap();

    let dry = prune(&sim).args(["--keep-last", "1"]).run();
    dry.assert_code(0);
    let orphan = artifacts(&dry, "web").into_iter().next().unwrap();
    assert_eq!(
        (orphan.2.as_str(), orphan.3.clone()),
        ("orphan", format!("orphan signature: its image {} is gone", &v1[7..19]))
    );
    assert!(dry.stderr.contains(&format!("web: would delete {sig}: orphan signature")), "{}", dry.stderr);
    let elsewhere = artifacts(&dry, "api").into_iter().next().unwrap();
    assert_eq!(elsewhere.2, "unknown");
    assert!(elsewhere.3.contains("its subject is in repository web, not here"), "{elsewhere:?}");

    prune(&sim).args(["--keep-last", "1", "--execute", "--gc", "off"]).run().assert_code(0);
    assert!(!tags(&sim, "web").contains(&sig), "the orphan is deleted");
    assert!(tags(&sim, "api").contains(&stray), "the signature of an image elsewhere stays");
    assert!(tags(&sim, "api").contains("a1"), "and api's only release is not displaced by it");
}

#[test]
fn signatures_of_an_index_and_of_its_platform_image_stay_with_it() {
    let index = |tag: &str| json!({"tags": [tag], "size_bytes": 1024, "platforms": ["linux/amd64", "linux/arm64"]});
    let sim = seeded(
        vec![(
            "web",
            vec![index("v1"), json!({"signature_of": "v1"}), index("v2"), json!({"signature_of": "v2"}), index("v3")],
        )],
        None,
        json!({}),
    );
    // A referrer of v2's amd64 image (the child), pushed as cosign 3 would.
    let v2 = digest_in(&sim, "web", "v2");
    let child = manifests_in(&sim, "web").iter().find(|m| m["digest"] == v2.as_str()).unwrap()["children"][0]
        .as_str()
        .unwrap()
        .to_string();
    sim.push_artifact("reg", "web", &child, ArtifactKind::Referrer, false).unwrap();
    let v2_sig = cosign_tag(&sim, "v2", ".sig");
    let v1_sig = cosign_tag(&sim, "v1", ".sig");
    let run = prune(&sim).args(["--keep-last", "2", "--untagged-grace", "1ms", "--execute", "--gc", "off"]).run();
    run.assert_code(0);
    let left = tags(&sim, "web");
    assert!(left.contains(&v2_sig) && !left.contains(&v1_sig) && !left.contains("v1"), "{left:?}");
    assert!(left.contains("v2") && left.contains("v3"), "the signatures take no --keep-last place: {left:?}");
    let referrer_left = manifests_in(&sim, "web").iter().any(|m| m["subject"] == child.as_str());
    assert!(referrer_left, "the platform image's referrer stays with its kept index");
}

#[test]
fn an_artifact_whose_image_cannot_be_read_is_kept_and_reported() {
    let sim = seeded(
        vec![("web", vec![json!({"tags": ["v1"], "size_bytes": 1024}), json!({"tags": ["v2"], "size_bytes": 1024})])],
        None,
        json!({}),
    );
    // A signature of an image the listing does not show, whose read fails.
    let ghost = format!("sha256:{}", "9".repeat(64));
    let tag = format!("sha256-{}.sig", "9".repeat(64));
    sim.state()
        .store(
            "reg",
            "web",
            vec![do_sim::content::image("ghost signature", 512)],
            Some(&tag),
            std::time::Instant::now(),
        )
        .unwrap();
    sim.add_fault(do_sim::Fault {
        method: Some("GET".into()),
        path: format!("/v2/reg/web/manifests/{ghost}"),
        kind: do_sim::FaultKind::Status { status: 500, retry_after: None },
        times: 1000,
    });
    let run = prune(&sim)
        .args(["--keep-last", "1", "--execute", "--gc", "off"])
        .env("DO_RELEASE_RETRY_MAX_TIME", "200ms")
        .run();
    let found = artifacts(&run, "web");
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].2, "unknown", "{found:?}");
    assert!(found[0].3.contains("its subject could not be read"), "{found:?}");
    assert!(tags(&sim, "web").contains(&tag), "kept, never deleted");
    assert!(!tags(&sim, "web").contains("v1"), "the rest of the plan goes on");
}

#[test]
fn a_protection_record_naming_a_repository_the_registry_lacks_is_exit_2_with_nothing_deleted() {
    let sim = seeded(vec![("web", signed_releases())], None, json!({}));
    let record = format!(
        r#"{{"kind":"image","v":1,"data":{{"registry":"reg","repository":"webb","digest":"{}"}}}}"#,
        digest_in(&sim, "web", "v1.0.0")
    );
    let run = prune(&sim).args(["--keep-last", "1", "--execute"]).stdin(record).run();
    run.assert_code(2);
    assert!(
        run.stderr.contains("input line 1: the record names repository \"webb\", which registry reg does not have"),
        "{}",
        run.stderr
    );
    assert!(mutating_requests(&sim).is_empty(), "nothing was deleted");
}

#[test]
fn a_signed_registry_costs_the_reads_of_kept_artifacts_only_and_loses_the_expired_ones() {
    // 2,000 manifests plus a signature and an attestation per image: 3,000.
    let figures = xtask::bench::prune_economy_of(&crate::bench_binaries(), 1, true).unwrap();
    assert_eq!(figures.manifests, 3000);
    assert_eq!(
        figures.deletions, 2000,
        "300 expired images with children and artifacts, 500 unreferenced: {figures:#?}"
    );
    assert_eq!((figures.remaining, figures.expected_remaining), (1000, 1000), "{figures:#?}");
    assert!(figures.kept_whole, "{figures:#?}");
    assert_eq!(figures.manifest_reads, figures.manifest_read_bound, "{figures:#?}");
    assert_eq!(
        figures.manifest_read_bound,
        200 + 400 + 300 + 600 + 500,
        "kept images and their artifacts, the expired images (the repository holds artifacts), children, untagged"
    );
    assert_eq!(figures.total_requests, figures.lower_bound, "{figures:#?}");
    assert!(figures.within_bounds());
}

/// Stores an OCI referrer of `of` in web under an ordinary tag, as `oras attach` followed by a
/// tag would leave it.
fn tagged_referrer(sim: &Sim, of: &str, tag: &str) {
    let manifest =
        manifests_in(sim, "web").into_iter().find(|m| m["tags"].as_array().unwrap().iter().any(|t| t == of)).unwrap();
    let digest = manifest["digest"].as_str().unwrap().to_string();
    let (documents, _) = do_sim::artifacts::documents(
        &format!("referrer of {of} tagged {tag}"),
        ArtifactKind::Referrer,
        (&digest, "application/vnd.oci.image.manifest.v1+json", 1000),
        false,
        Vec::new(),
    );
    sim.state().store("reg", "web", documents, Some(tag), std::time::Instant::now()).unwrap();
}

#[test]
fn a_referrer_under_an_ordinary_tag_is_an_artifact_not_a_release() {
    // The newest manifest is a referrer of v3 tagged "attached": it takes no --keep-last place.
    let releases = || {
        vec![
            json!({"tags": ["v1"], "size_bytes": 1024}),
            json!({"tags": ["v2"], "size_bytes": 1024}),
            json!({"tags": ["v3"], "size_bytes": 1024}),
        ]
    };
    let sim = seeded(vec![("web", releases())], None, json!({}));
    tagged_referrer(&sim, "v3", "attached");
    let run = prune(&sim).args(["--keep-last", "1", "--execute", "--gc", "off"]).run();
    run.assert_code(0);
    assert_eq!(tags(&sim, "web"), ["attached", "v3"].iter().map(|t| t.to_string()).collect(), "v3 keeps its place");
    let found = artifacts(&run, "web");
    assert_eq!((found.len(), found[0].2.as_str()), (1, "kept"), "{found:?}");

    // An old one beyond the places, of a kept image, in a repository that holds signatures: kept.
    let mut with_signature = releases();
    with_signature.push(json!({"signature_of": "v3"}));
    let sim = seeded(vec![("web", with_signature)], None, json!({}));
    tagged_referrer(&sim, "v3", "attached");
    // Make it the oldest manifest of the repository.
    {
        let mut state = sim.state();
        let repository = state.registries.get_mut("reg").unwrap().repositories.get_mut("web").unwrap();
        repository.edit(|manifests| {
            for manifest in manifests.iter_mut().filter(|m| m.tags.contains(&"attached".to_string())) {
                manifest.updated_at = "2020-01-01T00:00:00Z".into();
            }
        });
    }
    let run = prune(&sim).args(["--keep-last", "1", "--execute", "--gc", "off"]).run();
    run.assert_code(0);
    let left = tags(&sim, "web");
    assert!(left.contains("attached") && left.contains("v3") && !left.contains("v1"), "{left:?}");
}

/// A registry with the referrers API and one without, holding the same shape: buildx images
/// (an index, two platform images, attestations), cosign 3 referrers of an index and of a
/// platform image, and untagged garbage. Returns the simulator, the kept image's amd64 child
/// and that child's referrer.
fn buildx_world(referrers_api: bool) -> (Sim, String, String) {
    let mut manifests = Vec::new();
    for version in ["v1", "v2", "v3"] {
        let platforms = ["linux/amd64", "linux/arm64"];
        manifests.push(json!({"tags": [version], "size_bytes": 1024, "platforms": platforms, "attestations": true}));
        manifests.push(json!({"referrer_of": version}));
        // What a rebuild left behind, untagged: garbage.
        manifests.extend((0..4).map(|_| json!({"tags": [], "size_bytes": 512})));
    }
    let sim = seeded(vec![("web", manifests)], None, json!({"referrers_api": referrers_api}));
    let v3 = digest_in(&sim, "web", "v3");
    let index = manifests_in(&sim, "web").into_iter().find(|m| m["digest"] == v3.as_str()).unwrap();
    let amd64 = index["children"][0].as_str().unwrap().to_string();
    let pushed = sim.push_artifact("reg", "web", &amd64, ArtifactKind::Referrer, false).unwrap();
    let child_referrer = pushed["digest"].as_str().unwrap().to_string();
    // Pushed long ago: beyond any grace period, so only its subject can keep it.
    sim.state().registries.get_mut("reg").unwrap().repositories.get_mut("web").unwrap().edit(|manifests| {
        let manifest = manifests.iter_mut().find(|m| m.digest == child_referrer).unwrap();
        manifest.updated_at = "2020-01-01T00:00:00Z".into();
    });
    (sim, amd64, child_referrer)
}

#[test]
fn the_referrers_api_spares_reading_the_garbage_and_gives_the_same_plan() {
    let mut plans = Vec::new();
    let mut reads = Vec::new();
    let mut told = Vec::new();
    for referrers_api in [false, true] {
        let (sim, _, child_referrer) = buildx_world(referrers_api);
        let before = digests(&sim, "web");
        let run = prune(&sim).args(["--keep-last", "1", "--untagged-grace", "1ms", "--execute", "--gc", "off"]).run();
        run.assert_code(0);
        assert_eq!(run.record("prune")["referrers_api"], json!(referrers_api));
        let after = digests(&sim, "web");
        assert!(after.contains(&child_referrer), "the referrer of the kept image's amd64 image stays");
        assert!(after.contains(&digest_in(&sim, "web", "v3")));
        plans.push(before.difference(&after).count());
        let mut fates: Vec<(String, String)> =
            artifacts(&run, "web").into_iter().map(|(_, kind, fate, _)| (kind, fate)).collect();
        fates.sort();
        told.push(fates);
        let manifest_reads = sim
            .registry_requests()
            .iter()
            .filter(|r| r.method == "GET" && r.url.starts_with("/v2/reg/web/manifests/"))
            .count();
        reads.push(manifest_reads);
    }
    assert_eq!(plans[0], plans[1], "the same deletions with the referrers API and without it");
    assert_eq!(told[0], told[1], "the same artifacts told, each with its fate");
    assert!(told[1].contains(&("referrer".to_string(), "deleted".to_string())), "{told:?}");
    assert!(plans[0] >= 2 * 4 + 2 * 3, "v1, v2 with their children and referrers and the garbage: {plans:?}");
    assert!(reads[1] < reads[0], "the referrers API saves manifest reads: {reads:?} (off, on)");
}

#[test]
fn a_referrers_call_that_fails_falls_back_to_reading_every_untagged_manifest() {
    let (sim, amd64, child_referrer) = buildx_world(true);
    sim.add_fault(do_sim::Fault {
        method: Some("GET".into()),
        path: format!("/v2/reg/web/referrers/{amd64}"),
        kind: do_sim::FaultKind::Status { status: 500, retry_after: None },
        times: 1000,
    });
    let run = prune(&sim)
        .args(["--keep-last", "1", "--untagged-grace", "1ms", "--execute", "--gc", "off"])
        .env("DO_RELEASE_RETRY_MAX_TIME", "200ms")
        .run();
    run.assert_code(0);
    assert!(digests(&sim, "web").contains(&child_referrer), "the referrer the failed call would have named stays");
    let garbage_reads = sim
        .registry_requests()
        .iter()
        .filter(|r| r.method == "GET" && r.url.starts_with("/v2/reg/web/manifests/"))
        .count();
    assert!(garbage_reads > 20, "the untagged manifests were read instead: {garbage_reads} reads");
}

#[test]
fn a_repository_without_artifacts_reads_none_of_the_releases_it_deletes() {
    let releases: Vec<Value> = VERSIONS.iter().map(|v| json!({"tags": [v], "size_bytes": 1024})).collect();
    let sim = seeded(vec![("web", releases)], None, json!({}));
    let run = prune(&sim).args(["--keep-last", "2"]).run();
    run.assert_code(0);
    let read: BTreeSet<String> = sim
        .registry_requests()
        .iter()
        .filter(|r| r.method == "GET" && r.url.starts_with("/v2/reg/web/manifests/"))
        .map(|r| r.url.rsplit('/').next().unwrap().to_string())
        .collect();
    let kept: BTreeSet<String> = ["v2.1.0", "v2.2.0"].iter().map(|t| digest_in(&sim, "web", t)).collect();
    assert_eq!(read, kept, "only the kept images are read (the closure's roots)");
}

#[test]
fn a_lone_referrer_under_an_ordinary_tag_is_read_and_stays_with_its_kept_image() {
    let releases: Vec<Value> = ["v1", "v2", "v3"].iter().map(|v| json!({"tags": [v], "size_bytes": 1024})).collect();
    let sim = seeded(vec![("web", releases)], None, json!({}));
    let pushed = sim.push_artifact("reg", "web", "v3", ArtifactKind::Referrer, false).unwrap();
    let referrer = pushed["digest"].as_str().unwrap().to_string();
    // Tagged like a release, and older than every one: only its read tells what it is.
    sim.state().registries.get_mut("reg").unwrap().repositories.get_mut("web").unwrap().edit(|manifests| {
        let manifest = manifests.iter_mut().find(|m| m.digest == referrer).unwrap();
        manifest.tags = vec!["v3-provenance".into()];
        manifest.updated_at = "2020-01-01T00:00:00Z".into();
    });
    let run = prune(&sim).args(["--keep-last", "1", "--execute", "--gc", "off"]).run();
    run.assert_code(0);
    let left = tags(&sim, "web");
    assert!(left.contains("v3-provenance") && left.contains("v3"), "the referrer of v3 stays with it: {left:?}");
    assert!(!left.contains("v1") && !left.contains("v2"), "{left:?}");
    let artifact = artifacts(&run, "web").into_iter().find(|a| a.0 == referrer).expect("listed as an artifact");
    assert_eq!((artifact.1.as_str(), artifact.2.as_str()), ("referrer", "kept"));
}

#[test]
fn a_kept_release_that_turns_out_to_be_a_referrer_is_planned_again_as_an_artifact() {
    // v1 stays by its `latest` tag, so nothing is deleted and nothing else is read: only the
    // kept manifest's own read can tell the newest "release" is v1's referrer.
    let sim = seeded(vec![("web", vec![json!({"tags": ["v1", "latest"], "size_bytes": 1024})])], None, json!({}));
    let pushed = sim.push_artifact("reg", "web", "v1", ArtifactKind::Referrer, false).unwrap();
    let referrer = pushed["digest"].as_str().unwrap().to_string();
    sim.state().registries.get_mut("reg").unwrap().repositories.get_mut("web").unwrap().edit(|manifests| {
        manifests.iter_mut().find(|m| m.digest == referrer).unwrap().tags = vec!["v1-provenance".into()];
    });
    let run = prune(&sim).args(["--keep-last", "1"]).run();
    run.assert_code(0);
    let web = repository(&run, "web");
    let kept: Vec<&str> = web["kept"].as_array().unwrap().iter().map(|k| k["digest"].as_str().unwrap()).collect();
    assert!(!kept.contains(&referrer.as_str()), "a referrer is not a kept release: {web}");
    let artifact = artifacts(&run, "web").into_iter().find(|a| a.0 == referrer).expect("listed as an artifact");
    assert_eq!((artifact.1.as_str(), artifact.2.as_str()), ("referrer", "kept"));
}
