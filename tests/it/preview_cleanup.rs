//! Previews that clean up after themselves: a sweep deletes only this spec's marked previews
//! that are not kept (each under --delete-preview's guard), dry unless --execute; and
//! --max-previews refuses one preview too many, or evicts the oldest.

use std::path::{Path, PathBuf};

use do_sim::Sim;

use crate::support::{sim, Run, Tool, DEPLOY, FAST};

/// The default world's app as a spec file (JSON is YAML), named `name`.
fn spec_file(dir: &Path, name: &str) -> PathBuf {
    let path = dir.join(format!("{name}.json"));
    std::fs::write(&path, do_sim::default_app_spec(name, "web", "v1.1.0").to_string()).unwrap();
    path
}

fn with_spec(sim: &Sim, spec: &Path) -> Tool {
    Tool::against(DEPLOY, sim).args(FAST).args(["--spec", spec.to_str().unwrap()])
}

fn preview(sim: &Sim, spec: &Path, name: &str) -> Run {
    with_spec(sim, spec).args(["--repository", "web", "--tag", "v1.1.0", "--preview", name]).run()
}

fn app_names(sim: &Sim) -> Vec<String> {
    let mut names: Vec<String> = sim.snapshot()["apps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["spec"]["name"].as_str().unwrap().to_string())
        .collect();
    names.sort();
    names
}

/// Each app of the sweep's record with its fate.
fn fates(run: &Run) -> Vec<(String, String)> {
    let record = run.record("preview-sweep");
    let mut fates: Vec<(String, String)> = record["apps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| (a["app_name"].as_str().unwrap().to_string(), a["fate"].as_str().unwrap().to_string()))
        .collect();
    fates.sort();
    fates
}

fn deletes(sim: &Sim) -> usize {
    sim.requests().iter().filter(|r| r.method == "DELETE").count()
}

#[test]
fn a_sweep_deletes_only_this_specs_previews_not_kept_and_only_with_execute() {
    let sim = sim(20);
    let dir = tempfile::tempdir().unwrap();
    let shop = spec_file(dir.path(), "example-app");
    for name in ["pr-1", "pr-2", "pr-3"] {
        preview(&sim, &shop, name).assert_code(0);
    }
    let blog = spec_file(dir.path(), "blog");
    with_spec(&sim, &blog).args(["--repository", "web", "--tag", "v1.1.0", "--preview", "pr-2"]).run().assert_code(0);
    // Named like a preview of the spec, but never marked by do-deploy: never touched.
    sim.add_app(do_sim::default_app_spec("example-app-pr-9", "web", "v1.1.0"), true);
    let sweep = |extra: &[&str]| with_spec(&sim, &shop).args(["--sweep-previews", "--keep", "pr-1"]).args(extra).run();
    let dry = sweep(&[]);
    dry.assert_code(0);
    let expected: Vec<(String, String)> = [
        ("blog-pr-2", "not_ours"),
        ("example-app", "not_ours"),
        ("example-app-pr-1", "kept"),
        ("example-app-pr-2", "would_delete"),
        ("example-app-pr-3", "would_delete"),
        ("example-app-pr-9", "not_ours"),
    ]
    .map(|(name, fate)| (name.to_string(), fate.to_string()))
    .into();
    assert_eq!(fates(&dry), expected, "{}", dry.stdout);
    assert_eq!(dry.record("preview-sweep")["dry_run"], true);
    assert_eq!(deletes(&sim), 0, "a dry run deletes nothing");
    sim.state().requests.clear();
    let executed = sweep(&["--execute"]);
    executed.assert_code(0);
    let listings = sim.requests().iter().filter(|r| r.method == "GET" && r.url.contains("/v2/apps?")).count();
    assert_eq!(listings, 1, "the apps are listed once, not again for each deletion");
    assert_eq!(executed.record("preview-sweep")["deleted"], 2);
    assert_eq!(
        app_names(&sim),
        ["blog-pr-2", "example-app", "example-app-pr-1", "example-app-pr-9"],
        "another spec's preview, production, the kept one and the unmarked one stay"
    );
    // Everything was deployed just now: --older-than keeps it all.
    let recent = with_spec(&sim, &shop).args(["--sweep-previews", "--older-than", "7d", "--execute"]).run();
    recent.assert_code(0);
    assert_eq!(recent.record("preview-sweep")["deleted"], 0);
    assert!(fates(&recent).contains(&("example-app-pr-1".into(), "kept".into())));
    // An empty keep file keeps none.
    let empty = dir.path().join("open-prs.txt");
    std::fs::write(&empty, "# no pull request is open\n").unwrap();
    let none =
        with_spec(&sim, &shop).args(["--sweep-previews", "--keep-file", empty.to_str().unwrap(), "--execute"]).run();
    none.assert_code(0);
    assert_eq!(app_names(&sim), ["blog-pr-2", "example-app", "example-app-pr-9"]);
}

#[test]
fn one_preview_too_many_is_refused_naming_the_oldest_or_the_oldest_is_evicted() {
    let sim = sim(20);
    let dir = tempfile::tempdir().unwrap();
    let shop = spec_file(dir.path(), "example-app");
    for name in ["pr-1", "pr-2"] {
        preview(&sim, &shop, name).assert_code(0);
    }
    let third = |extra: &[&str]| {
        with_spec(&sim, &shop)
            .args(["--repository", "web", "--tag", "v1.1.0", "--preview", "pr-3", "--max-previews", "2"])
            .args(extra)
            .run()
    };
    let refused = third(&[]);
    refused.assert_code(2);
    assert!(
        refused.stderr.contains("2 previews of example-app run already, and --max-previews is 2: delete one first (the oldest: example-app-pr-1)"),
        "{}",
        refused.stderr
    );
    assert_eq!(app_names(&sim), ["example-app", "example-app-pr-1", "example-app-pr-2"], "nothing changed");
    // Updating a preview that exists is never refused.
    let again = with_spec(&sim, &shop)
        .args(["--repository", "web", "--tag", "v1.0.0", "--preview", "pr-2", "--max-previews", "2"])
        .run();
    again.assert_code(0);
    let dry = third(&["--evict-oldest", "--dry-run"]);
    dry.assert_code(0);
    assert!(dry.stderr.contains("dry run: --evict-oldest would delete preview example-app-pr-1"), "{}", dry.stderr);
    assert_eq!(app_names(&sim).len(), 3);
    third(&["--evict-oldest"]).assert_code(0);
    assert_eq!(app_names(&sim), ["example-app", "example-app-pr-2", "example-app-pr-3"]);
}

#[test]
fn sweep_flags_are_checked_before_any_request() {
    let sim = sim(20);
    let dir = tempfile::tempdir().unwrap();
    let shop = spec_file(dir.path(), "example-app");
    let cases: [(&[&str], &str); 4] = [
        (&["--sweep-previews"], "--sweep-previews needs what to keep"),
        (&["--sweep-previews", "--keep", "pr 1"], "pr 1"),
        (&["--sweep-previews", "--keep-file", "/proc/self/environ"], "a system file, not a list of previews"),
        (&["--keep", "pr-1"], "--sweep-previews"),
    ];
    for (args, message) in cases {
        let run = with_spec(&sim, &shop).args(args).run();
        run.assert_code(2);
        assert!(run.stderr.contains(message), "{args:?}: {message:?} not in {}", run.stderr);
        assert!(run.stdout.is_empty());
    }
    assert!(sim.requests().is_empty(), "{:?}", sim.requests());
}

/// The tags of `repository` in the world's registry.
fn tags_in(sim: &Sim, repository: &str) -> Vec<String> {
    let mut tags: Vec<String> = crate::support::manifests_in(sim, repository)
        .iter()
        .flat_map(|m| m["tags"].as_array().unwrap().iter().map(|t| t.as_str().unwrap().to_string()).collect::<Vec<_>>())
        .collect();
    tags.sort();
    tags
}

#[test]
fn deleting_a_preview_with_its_images_keeps_a_tag_another_app_runs() {
    let sim = sim(20);
    let dir = tempfile::tempdir().unwrap();
    let shop = spec_file(dir.path(), "example-app");
    for tag in ["pr-42-aaa", "pr-42-bbb", "pr-420-ccc"] {
        sim.push(do_sim::DEFAULT_REGISTRY, "web", tag, 1_000).unwrap();
    }
    with_spec(&sim, &shop)
        .args(["--repository", "web", "--tag", "pr-42-aaa", "--preview", "pr-42"])
        .run()
        .assert_code(0);
    // Another app runs an image the pull request pushed (a demo pinned to it, say).
    sim.add_app(do_sim::default_app_spec("demo", "web", "pr-42-bbb"), true);
    let delete = |extra: &[&str]| {
        with_spec(&sim, &shop).args(["--delete-preview", "pr-42", "--delete-images"]).args(extra).run()
    };
    let fates = |run: &Run| -> Vec<(String, String)> {
        let mut fates: Vec<(String, String)> = run.record("preview-delete")["images"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| (i["tag"].as_str().unwrap().to_string(), i["fate"].as_str().unwrap().to_string()))
            .collect();
        fates.sort();
        fates
    };
    let dry = delete(&["--dry-run"]);
    dry.assert_code(0);
    assert_eq!(
        fates(&dry),
        [("pr-42-aaa".to_string(), "would_delete".to_string()), ("pr-42-bbb".into(), "kept".into())]
    );
    assert_eq!(deletes(&sim), 0, "a dry run deletes nothing");
    let run = delete(&[]);
    run.assert_code(0);
    assert_eq!(run.record("preview-delete")["outcome"], "deleted");
    assert_eq!(fates(&run), [("pr-42-aaa".to_string(), "deleted".to_string()), ("pr-42-bbb".into(), "kept".into())]);
    let tags = tags_in(&sim, "web");
    assert!(!tags.contains(&"pr-42-aaa".to_string()), "{tags:?}");
    assert!(tags.contains(&"pr-42-bbb".to_string()) && tags.contains(&"pr-420-ccc".to_string()), "{tags:?}");
    let images = run.record("preview-delete")["images"].clone();
    let kept = images.as_array().unwrap().iter().find(|i| i["tag"] == "pr-42-bbb").unwrap();
    assert!(kept["reason"].as_str().unwrap().starts_with("an app runs or ran"), "{kept}");
}
