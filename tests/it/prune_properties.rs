//! The promise, as a property over random registries: after any do-prune mode, and after the
//! garbage collection it starts run in the simulator's worst case (untagged manifests go even
//! when an index holds them), every image do-prune kept and every image an app runs can still be
//! pulled whole (the manifest and every manifest it holds). The registries mix plain images,
//! buildx-style indexes with attestations, indexes that share a child, signatures (referrers),
//! tags that moved away, and apps pinned by tag, by an untagged digest, to an index's child, and
//! in other repositories than the one pruned.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use do_sim::content::{self, Document};
use do_sim::Sim;
use proptest::prelude::*;
use serde_json::json;

use crate::support::{self, fully_readable, registry_reader, world, Run};

const REPOSITORIES: [&str; 3] = ["web", "api", "team/jobs"];
const TAGS: [&str; 6] = ["v1", "v2", "v3", "v4", "latest", "stable"];

#[derive(Clone, Debug)]
enum Kind {
    Plain,
    /// buildx: one or two platforms, with or without attestations.
    Index {
        platforms: usize,
        attestations: bool,
    },
    /// An index sharing its child with the previous image of the repository.
    SharingIndex,
    /// A signature whose subject is the previous image of the repository.
    Signature,
}

#[derive(Clone, Debug)]
struct Image {
    repository: usize,
    kind: Kind,
    tag: Option<usize>,
    days_old: i64,
}

#[derive(Clone, Debug)]
enum Pin {
    /// The app names the image's tag.
    Tag(usize),
    /// The app names the image's digest (untagged if its tag moved on).
    Digest(usize),
    /// The app names the first manifest the image holds (a platform image of an index).
    Child(usize),
}

#[derive(Clone, Debug)]
enum Mode {
    Everything,
    OneRepository(usize),
    SavedPlan,
}

#[derive(Clone, Debug)]
struct Scenario {
    images: Vec<Image>,
    pins: Vec<Pin>,
    mode: Mode,
    keep_last: usize,
    ask_for_untagged_gc: bool,
}

fn kind() -> impl Strategy<Value = Kind> {
    prop_oneof![
        3 => Just(Kind::Plain),
        4 => (1usize..=2, any::<bool>()).prop_map(|(platforms, attestations)| Kind::Index { platforms, attestations }),
        1 => Just(Kind::SharingIndex),
        1 => Just(Kind::Signature),
    ]
}

fn scenario() -> impl Strategy<Value = Scenario> {
    let image = (0..REPOSITORIES.len(), kind(), proptest::option::weighted(0.7, 0..TAGS.len()), 2i64..60)
        .prop_map(|(repository, kind, tag, days_old)| Image { repository, kind, tag, days_old });
    let pin = prop_oneof![
        (0usize..12).prop_map(Pin::Tag),
        (0usize..12).prop_map(Pin::Digest),
        (0usize..12).prop_map(Pin::Child)
    ];
    let mode = prop_oneof![
        Just(Mode::Everything),
        (0..REPOSITORIES.len()).prop_map(Mode::OneRepository),
        Just(Mode::SavedPlan)
    ];
    (proptest::collection::vec(image, 1..12), proptest::collection::vec(pin, 0..3), mode, 0usize..3, any::<bool>())
        .prop_map(|(images, pins, mode, keep_last, ask_for_untagged_gc)| Scenario {
            images,
            pins,
            mode,
            keep_last,
            ask_for_untagged_gc,
        })
}

/// The digests each image was pushed as: its own, and what it holds.
struct Pushed {
    repository: &'static str,
    digest: String,
    children: Vec<String>,
}

fn build(scenario: &Scenario) -> (Sim, Vec<Pushed>) {
    let sim = world::registry("professional", Vec::new()).step_ms(15).start();
    let mut pushed: Vec<Pushed> = Vec::new();
    let mut last_in: BTreeMap<usize, Document> = BTreeMap::new();
    let now = Instant::now();
    let mut ages = Vec::new();
    for (n, image) in scenario.images.iter().enumerate() {
        let label = format!("image {n}");
        let previous = last_in.get(&image.repository).cloned();
        let documents = match (&image.kind, previous) {
            (Kind::Plain, _) => vec![content::image(&label, 1000)],
            (Kind::Index { platforms, attestations }, _) => {
                let platforms: Vec<String> =
                    ["linux/amd64", "linux/arm64"][..*platforms].iter().map(|p| p.to_string()).collect();
                content::index(&label, &platforms, *attestations, 1000, &serde_json::Value::Null)
            }
            (Kind::SharingIndex, Some(previous)) if previous.children.is_empty() => {
                vec![content::index_over(&[&previous])]
            }
            (Kind::Signature, Some(previous)) => vec![content::referrer(&label, &previous)],
            (_, _) => vec![content::image(&label, 1000)],
        };
        let main = documents.last().unwrap().clone();
        let repository = REPOSITORIES[image.repository];
        let tag = image.tag.map(|t| TAGS[t]);
        sim.state().store("reg", repository, documents, tag, now).unwrap();
        pushed.push(Pushed { repository, digest: main.digest.clone(), children: main.children.clone() });
        ages.push((repository, main.digest.clone(), main.children.clone(), image.days_old));
        last_in.insert(image.repository, main);
    }
    // Old enough for no grace period to matter; an image's children are as old as it.
    {
        let mut state = sim.state();
        let registry = state.registries.get_mut("reg").unwrap();
        for (repository, digest, children, days_old) in ages {
            let at = days_ago(days_old);
            registry.repositories.get_mut(repository).unwrap().edit(|manifests| {
                for manifest in manifests {
                    if manifest.digest == digest || children.contains(&manifest.digest) {
                        manifest.updated_at = at.clone();
                    }
                }
            });
        }
    }
    (sim, pushed)
}

/// An RFC 3339 time `days` ago, to the second.
fn days_ago(days: i64) -> String {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
    do_core::duration::format_epoch(now - days * 86_400)
}

/// Adds an app per pin; returns what each pin protects: (repository, digest).
fn pin(sim: &Sim, scenario: &Scenario, pushed: &[Pushed]) -> Vec<(&'static str, String)> {
    let mut protected = Vec::new();
    for (n, pin) in scenario.pins.iter().enumerate() {
        let (Pin::Tag(i) | Pin::Digest(i) | Pin::Child(i)) = pin;
        let target = &pushed[*i % pushed.len()];
        let mut image = match pin {
            Pin::Tag(_) => {
                let snapshot = sim.snapshot();
                let tags: Vec<String> = snapshot["registries"][0]["repositories"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .filter(|r| r["name"] == target.repository)
                    .flat_map(|r| r["manifests"].as_array().unwrap().clone())
                    .filter(|m| m["digest"] == target.digest.as_str())
                    .flat_map(|m| {
                        m["tags"]
                            .as_array()
                            .unwrap()
                            .iter()
                            .map(|t| t.as_str().unwrap().to_string())
                            .collect::<Vec<_>>()
                    })
                    .collect();
                let Some(tag) = tags.first() else { continue };
                protected.push((target.repository, target.digest.clone()));
                json!({"tag": tag})
            }
            Pin::Digest(_) => {
                protected.push((target.repository, target.digest.clone()));
                json!({"digest": target.digest})
            }
            Pin::Child(_) => {
                let Some(child) = target.children.first() else { continue };
                protected.push((target.repository, child.clone()));
                json!({"digest": child})
            }
        };
        image["registry_type"] = json!("DOCR");
        image["repository"] = json!(target.repository);
        let spec = json!({"name": format!("app-{n}"), "services": [{"name": "svc", "image": image}]});
        sim.add_app(spec, true);
    }
    protected
}

fn prune(sim: &Sim, args: &[String]) -> Run {
    support::prune(sim).args(["--keep-rollback", "1"]).args(args).run()
}

/// Runs the scenario; a string says what broke.
fn check(scenario: &Scenario) -> Result<(), String> {
    let (sim, pushed) = build(scenario);
    let protected = pin(&sim, scenario, &pushed);
    let mut args = vec![
        "--keep-last".to_string(),
        scenario.keep_last.to_string(),
        "--execute".into(),
        "--gc".into(),
        "wait".into(),
    ];
    if scenario.ask_for_untagged_gc {
        args.extend(["--gc-type".into(), "untagged manifests and unreferenced blobs".into()]);
    }
    let dir = tempfile::tempdir().unwrap();
    let run = match &scenario.mode {
        Mode::Everything => prune(&sim, &args),
        Mode::OneRepository(r) => {
            // One of the repositories the scenario filled, so that every case checks something.
            let mut present: Vec<&str> = pushed.iter().map(|p| p.repository).collect();
            present.sort();
            present.dedup();
            if let Some(repository) = present.get(*r % present.len().max(1)) {
                args.extend(["--repository".into(), repository.to_string()]);
            }
            prune(&sim, &args)
        }
        Mode::SavedPlan => {
            let plan = dir.path().join("plan.json");
            let planned = prune(
                &sim,
                &[
                    "--keep-last".into(),
                    scenario.keep_last.to_string(),
                    "--plan-out".into(),
                    plan.display().to_string(),
                ],
            );
            if planned.code != 0 {
                return Err(format!("the dry run failed: {}", planned.stderr));
            }
            args.splice(0..2, ["--apply".to_string(), plan.display().to_string()]);
            prune(&sim, &args)
        }
    };
    match run.code {
        0 => {}
        2 if scenario.ask_for_untagged_gc && run.stderr.contains("refusing --gc-type") => {
            if !crate::support::mutating_requests(&sim).is_empty() {
                return Err("refused, but something was deleted".into());
            }
        }
        code => return Err(format!("exit {code}: {}", run.stderr)),
    }
    // The GC do-prune started has ended (--gc wait); whatever it removed is gone now.
    let reader = registry_reader(&sim, "reg");
    for (repository, digest) in &protected {
        fully_readable(&reader, repository, digest).map_err(|e| format!("an app's image is broken: {e}"))?;
    }
    if run.code == 0 {
        for repository in run.record("prune")["repositories"].as_array().unwrap() {
            for kept in repository["kept"].as_array().unwrap() {
                let name = repository["name"].as_str().unwrap();
                fully_readable(&reader, name, kept["digest"].as_str().unwrap())
                    .map_err(|e| format!("a kept image is broken ({}): {e}", kept["reason"]))?;
            }
        }
    }
    // The GC's type, if one started, was safe for what is left.
    let snapshot = sim.snapshot();
    if snapshot["registries"][0]["read_only"] == true {
        return Err("a GC is still running after --gc wait".into());
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 40, max_shrink_iters: 50, ..ProptestConfig::default() })]

    #[test]
    fn every_kept_or_deployed_image_stays_whole_through_prune_and_the_worst_case_gc(scenario in scenario()) {
        if let Err(problem) = check(&scenario) {
            prop_assert!(false, "{problem}\n{scenario:#?}");
        }
    }
}

/// The property can fail: with the old default (an untagged GC after the prune), a kept index
/// loses its children in the simulator's worst case.
#[test]
fn the_property_catches_an_untagged_gc_after_a_prune() {
    let scenario = Scenario {
        images: vec![Image {
            repository: 0,
            kind: Kind::Index { platforms: 2, attestations: true },
            tag: Some(0),
            days_old: 10,
        }],
        pins: vec![Pin::Tag(0)],
        mode: Mode::Everything,
        keep_last: 1,
        ask_for_untagged_gc: false,
    };
    assert_eq!(check(&scenario), Ok(()));
    let (sim, pushed) = build(&scenario);
    let (status, _) = crate::support::call(
        &sim,
        "POST",
        "/_sim/gc",
        Some(
            json!({"type": "untagged manifests and unreferenced blobs", "plan": [{"status": "scanning manifests", "ms": 10}]}),
        ),
        None,
    );
    assert_eq!(status, 201);
    // Wait for the GC to end (the registry writable again), not for a guessed time.
    let deadline = Instant::now() + Duration::from_secs(10);
    while sim.snapshot()["registries"][0]["read_only"] == true {
        assert!(Instant::now() < deadline, "the GC never ended");
        std::thread::sleep(Duration::from_millis(5));
    }
    let reader = registry_reader(&sim, "reg");
    assert!(fully_readable(&reader, "web", &pushed[0].digest).is_err());
}
