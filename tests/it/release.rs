//! The full release (`cargo xtask release`'s library), the demo, GitHub Actions output and
//! scripts/release.sh, against the simulator and temporary git repositories.

use std::path::{Path, PathBuf};
use std::process::Command;

use do_sim::{Fault, FaultKind, Outcome as DeployOutcome, Sim};
use serde_json::{json, Value};
use xtask::config::Config;
use xtask::release::{release, Options, Outcome};

use crate::support::{mutating_requests, sim, world, Tool, DEPLOY, DO_SIM, DO_TAG, GC_WAIT, LOGIN, PRUNE};

pub(crate) struct World {
    pub(crate) sim: Sim,
    pub(crate) scratch: tempfile::TempDir,
    pub(crate) repo: PathBuf,
}

impl World {
    /// The demo's world without the running GC, and its app repository.
    pub(crate) fn new() -> World {
        let sim =
            world::demo().steps(std::time::Duration::from_millis(60), std::time::Duration::from_millis(40)).start();
        let scratch = tempfile::tempdir().unwrap();
        let repo = xtask::demo::app_repository(scratch.path()).unwrap();
        World { sim, scratch, repo }
    }

    pub(crate) fn options(&self, execute: bool, config: Config) -> Options {
        let token = self.sim.token();
        let out = self.scratch.path().join("out");
        let mut options = crate::support::release_options((self.sim.url(), &token), self.repo.clone(), out, config);
        options.execute = execute;
        options.env.push(("DO_RELEASE_RETRY_BASE_DELAY".into(), "20ms".into()));
        options.env.push(("DO_RELEASE_RETRY_MAX_TIME".into(), "300ms".into()));
        options.env.push(("HOME".into(), self.scratch.path().display().to_string()));
        options
    }

    pub(crate) fn config(&self) -> Config {
        Config { interval: "30ms".into(), gc_timeout: "20s".into(), ..xtask::demo::config() }
    }

    pub(crate) fn run(&self, execute: bool, config: Config) -> Outcome {
        release(&self.options(execute, config)).unwrap()
    }

    pub(crate) fn remote_tags(&self) -> Vec<String> {
        let remote = self.scratch.path().join("app-origin.git");
        let output = Command::new("git").current_dir(&remote).args(["tag", "--list"]).output().unwrap();
        String::from_utf8_lossy(&output.stdout).lines().map(str::to_string).collect()
    }

    pub(crate) fn refs(&self) -> String {
        let mut all = String::new();
        for dir in [self.repo.clone(), self.scratch.path().join("app-origin.git")] {
            let output = Command::new("git")
                .current_dir(&dir)
                .args(["for-each-ref", "--format=%(refname) %(objectname)"])
                .output()
                .unwrap();
            all.push_str(&String::from_utf8_lossy(&output.stdout));
        }
        all
    }

    /// Manifests tagged `tag`, and every manifest's digest.
    pub(crate) fn manifests_tagged(&self, tag: &str) -> Vec<String> {
        let snapshot = self.sim.snapshot();
        snapshot["registries"][0]["repositories"][0]["manifests"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|m| m["tags"].as_array().unwrap().iter().any(|t| t == tag))
            .map(|m| m["digest"].as_str().unwrap().to_string())
            .collect()
    }

    /// Deployments of the app that run `digest` and reached ACTIVE.
    pub(crate) fn successful_deployments_of(&self, digest: &str) -> usize {
        let snapshot = self.sim.snapshot();
        snapshot["apps"][0]["deployments"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|d| d["spec"]["services"][0]["image"]["digest"] == digest)
            .filter(|d| d["phase"] == "ACTIVE" || d["phase"] == "SUPERSEDED")
            .count()
    }

    pub(crate) fn assert_released_once(&self, outcome: &Outcome) {
        assert_eq!(outcome.exit, 0, "{outcome:#?}");
        assert_eq!(self.remote_tags(), ["v1.4.2", "v1.5.0"], "exactly one new tag on the remote");
        let pushed = self.manifests_tagged("v1.5.0");
        assert_eq!(pushed.len(), 1, "one image");
        assert_eq!(self.successful_deployments_of(&pushed[0]), 1, "one successful deployment");
        let snapshot = self.sim.snapshot();
        let deployments = snapshot["apps"][0]["deployments"].as_array().unwrap();
        let active = deployments.iter().rev().find(|d| d["phase"] == "ACTIVE").unwrap();
        assert_eq!(active["spec"]["services"][0]["image"]["digest"], pushed[0].as_str(), "the app runs the new image");
    }
}

fn kinds(outcome: &Outcome) -> Vec<String> {
    outcome.records().iter().map(|r| r["kind"].as_str().unwrap().to_string()).collect()
}

#[test]
fn an_executed_release_runs_every_step_and_saves_their_outputs() {
    let world = World::new();
    let outcome = world.run(true, world.config());
    world.assert_released_once(&outcome);
    assert_eq!(kinds(&outcome), ["gc-wait", "tag", "image", "deploy", "prune"]);
    let image = outcome.last("image").unwrap();
    assert_eq!(image["image"], "registry.digitalocean.com/demo-registry/web:v1.5.0");
    assert_eq!(outcome.last("deploy").unwrap()["image"], format!("web@{}", image["digest"].as_str().unwrap()));
    assert_eq!(outcome.last("prune").unwrap()["dry_run"], false);
    let dir = outcome.out_dir.clone().unwrap();
    assert!(dir.ends_with("release-v1.5.0"), "{dir:?}");
    for file in [
        "1-preflight.log",
        "1-preflight.do-tag.jsonl",
        "3-gc-wait.jsonl",
        "4-tag.jsonl",
        "4-tag.log",
        "5-push.jsonl",
        "6-deploy.jsonl",
        "7-prune.jsonl",
        "7-prune.log",
        "report.jsonl",
    ] {
        assert!(dir.join(file).exists(), "{file} missing in {dir:?}");
    }
    assert_eq!(std::fs::read(dir.join("report.jsonl")).unwrap(), outcome.report);
    assert!(outcome.text.contains("released v1.5.0"), "{}", outcome.text);
}

#[test]
fn the_dry_run_changes_nothing_anywhere_and_explains_the_plan() {
    let world = World::new();
    world.sim.start_gc_with("demo-registry", &[("scanning manifests", 60_000)], "succeeded").unwrap();
    let refs = world.refs();
    let before = world.sim.snapshot();
    let outcome = world.run(false, world.config());
    assert_eq!(outcome.exit, 0, "{outcome:#?}");
    assert_eq!(world.refs(), refs, "no ref changed in either repository");
    assert!(mutating_requests(&world.sim).is_empty(), "{:?}", mutating_requests(&world.sim));
    let after = world.sim.snapshot();
    assert_eq!(after["registries"][0]["repositories"], before["registries"][0]["repositories"]);
    assert_eq!(after["apps"], before["apps"]);
    for expected in [
        "release plan (dry run",
        "[1/7] preflight  every check passed",
        "[2/7] build      registry.digitalocean.com/demo-registry/web:v1.5.0 from",
        "is scanning manifests: the release would wait",
        "[4/7] tag        v1.5.0 on ",
        "[5/7] push       registry.digitalocean.com/demo-registry/web:v1.5.0",
        "[6/7] deploy     demo-app service web: web:v1.4.2 -> web:v1.5.0",
        "[7/7] prune      ",
        " MiB",
    ] {
        assert!(outcome.text.contains(expected), "{expected:?} not in:\n{}", outcome.text);
    }
    assert!(outcome.out_dir.unwrap().ends_with("release-v1.5.0-dry-run"));
}

#[test]
fn a_failure_at_each_step_then_a_rerun_releases_exactly_once() {
    // gc-wait: a GC outlasts the wait.
    let world = World::new();
    world.sim.start_gc_with("demo-registry", &[("scanning manifests", 1_500)], "succeeded").unwrap();
    let failed = world.run(true, Config { gc_timeout: "200ms".into(), ..world.config() });
    assert_eq!((failed.exit, failed.steps.last().unwrap().name.as_str()), (3, "gc-wait"));
    crate::support::wait_until("the GC to end", || !crate::support::gc_running(&world.sim, "demo-registry"));
    world.assert_released_once(&world.run(true, world.config()));

    // tag: the remote refuses the tag push.
    let world = World::new();
    let hook = world.scratch.path().join("app-origin.git/hooks/pre-receive");
    std::fs::write(&hook, "#!/bin/sh\necho refused >&2\nexit 1\n").unwrap();
    make_executable(&hook);
    let failed = world.run(true, world.config());
    assert_eq!((failed.exit, failed.steps.last().unwrap().name.as_str()), (1, "tag"));
    std::fs::remove_file(&hook).unwrap();
    world.assert_released_once(&world.run(true, world.config()));

    // push: the push command fails.
    let world = World::new();
    let broken = Config {
        builder: "commands".into(),
        build: vec!["true".into()],
        push: vec![
            DO_SIM.into(),
            "push".into(),
            "--api-url".into(),
            "http://127.0.0.1:9".into(),
            "--repository".into(),
            "web".into(),
            "--tag".into(),
            "{tag}".into(),
        ],
        ..world.config()
    };
    let failed = world.run(true, broken);
    assert_eq!((failed.exit, failed.steps.last().unwrap().name.as_str()), (1, "push"));
    assert!(world.manifests_tagged("v1.5.0").is_empty());
    world.assert_released_once(&world.run(true, world.config()));

    // deploy: the deployment fails and is rolled back.
    let world = World::new();
    world.sim.state().apps[0].next_outcome = DeployOutcome::DeployError;
    let failed = world.run(true, world.config());
    assert_eq!((failed.exit, failed.steps.last().unwrap().name.as_str()), (4, "deploy"));
    let rerun = world.run(true, world.config());
    world.assert_released_once(&rerun);
    assert_eq!(rerun.last("tag").unwrap()["created"], false, "the rerun kept the tag");
    assert_eq!(rerun.last("image").unwrap()["pushed"], false, "the rerun kept the image");

    // prune: deletions fail.
    let world = World::new();
    world.sim.add_fault(Fault {
        method: Some("DELETE".into()),
        path: "/v2/registries/demo-registry".into(),
        kind: FaultKind::Status { status: 500, retry_after: None },
        times: 10_000,
    });
    let failed = world.run(true, world.config());
    assert_eq!((failed.exit, failed.steps.last().unwrap().name.as_str()), (1, "prune"));
    world.sim.state().faults.clear();
    let rerun = world.run(true, world.config());
    world.assert_released_once(&rerun);
    assert_eq!(rerun.last("deploy").unwrap()["changed"], false, "the rerun did not deploy again");
}

#[test]
fn a_push_refused_by_a_gc_that_started_meanwhile_waits_and_retries_once() {
    let world = World::new();
    let url = world.sim.url().to_string();
    // The remote's hook starts a GC when the tag arrives: the registry turns read-only after the
    // wait and before the push.
    let hook = world.scratch.path().join("app-origin.git/hooks/pre-receive");
    std::fs::write(&hook, format!("#!/bin/sh\n'{DO_SIM}' gc --api-url {url} --step 100ms > /dev/null\n")).unwrap();
    make_executable(&hook);
    let config = Config {
        builder: "commands".into(),
        build: vec!["true".into()],
        push: vec![
            DO_SIM.into(),
            "push".into(),
            "--api-url".into(),
            url,
            "--repository".into(),
            "web".into(),
            "--tag".into(),
            "{tag}".into(),
        ],
        ..world.config()
    };
    let outcome = world.run(true, config);
    world.assert_released_once(&outcome);
    let runs: Vec<(&str, &str, i32)> =
        outcome.steps.iter().map(|s| (s.name.as_str(), s.what.as_str(), s.code)).collect();
    let at = |run: (&str, &str, i32)| {
        runs.iter().position(|r| *r == run).unwrap_or_else(|| panic!("{run:?} not in {runs:?}"))
    };
    let refused = at(("push", "builder", 1));
    let waited = at(("push", "do-gc-wait", 0));
    let pushed = at(("push", "builder", 0));
    assert!(refused < waited && waited < pushed, "refused, waited for the GC, pushed once more: {runs:?}");
    assert_eq!(runs.iter().filter(|r| r.1 == "do-tag" && r.0 == "tag").count(), 1, "one tag step");
}

#[test]
fn the_demo_report_has_every_step() {
    let out = tempfile::tempdir().unwrap();
    let started = std::time::Instant::now();
    let outcome = xtask::demo::run(crate::release_binaries(), out.path(), false).unwrap();
    assert_eq!(outcome.exit, 0, "{outcome:#?}");
    assert_eq!(kinds(&outcome), ["gc-wait", "tag", "image", "deploy", "prune"]);
    let first_wait = &outcome.records()[0]["data"];
    assert_eq!(first_wait["outcome"], "succeeded", "the demo shows a GC being waited for");
    assert!(first_wait["waited_ms"].as_u64().unwrap() > 1000);
    assert_eq!(outcome.last("deploy").unwrap()["phase"], "ACTIVE");
    let prune = outcome.last("prune").unwrap();
    let deleted = prune["repositories"][0]["deleted"].as_array().unwrap();
    assert!(deleted.iter().filter(|d| d["all_tags"] != json!([])).count() >= 5);
    assert!(deleted.iter().any(|d| d["all_tags"] == json!([])), "the orphaned children of deleted indexes go too");
    assert_eq!(prune["index_children_listed"], true, "the demo's images are multi-platform indexes");
    assert_eq!(prune["gc"]["type"], "unreferenced blobs only");
    for expected in [
        "released v1.5.0",
        "waited for GC",
        "image          sha256:",
        "deployment",
        "ACTIVE",
        "pruned",
        "MiB freed",
        "GC started",
    ] {
        assert!(outcome.text.contains(expected), "{expected:?} not in:\n{}", outcome.text);
    }
    // The first record of each kind has the shape its sample pins.
    for kind in crate::contract::KINDS {
        let fresh = outcome.records().into_iter().find(|r| r["kind"] == kind).unwrap();
        let pinned: Value = serde_json::from_str(&crate::contract::sample(kind)).unwrap();
        assert_eq!(
            crate::contract::shape(&fresh),
            crate::contract::shape(&pinned),
            "the {kind} record's shape changed: update tests/samples/{kind}.jsonl, and bump v if a field changed meaning"
        );
    }
    eprintln!("demo took {:?}", started.elapsed());
}

#[test]
fn github_actions_outputs_summaries_and_annotations() {
    let sim = crate::support::sim(30);
    let dir = tempfile::tempdir().unwrap();
    let output = dir.path().join("output");
    let summary = dir.path().join("summary.md");
    let github = |tool: &str| {
        Tool::against(tool, &sim)
            .env("GITHUB_ACTIONS", "true")
            .env("GITHUB_OUTPUT", &output)
            .env("GITHUB_STEP_SUMMARY", &summary)
            .args(["--interval", "30ms"])
    };
    github(GC_WAIT).run().assert_code(0);
    let deploy = github(DEPLOY).args(["--app", "example-app", "--repository", "web", "--tag", "v1.1.0"]).run();
    deploy.assert_code(0);
    let digest = deploy.record("deploy")["image"].as_str().unwrap().split_once('@').unwrap().1.to_string();
    github(PRUNE).args(["--keep-last", "1", "--execute", "--gc", "off"]).run().assert_code(0);
    let outputs = std::fs::read_to_string(&output).unwrap();
    let lines: Vec<&str> = outputs.lines().collect();
    assert!(lines.contains(&"registry=example-registry") && lines.contains(&"gc_outcome=clear"), "{outputs}");
    assert!(lines.contains(&format!("digest={digest}").as_str()), "{outputs}");
    assert!(lines.contains(&"phase=ACTIVE"), "{outputs}");
    assert!(lines.iter().any(|l| l.starts_with("deployment_id=") && l.len() > 20), "{outputs}");
    assert!(lines.contains(&"deleted_count=1"), "{outputs}");
    assert!(lines.iter().any(|l| l.starts_with("freed_bytes=") && *l != "freed_bytes=0"), "{outputs}");
    let markdown = std::fs::read_to_string(&summary).unwrap();
    for expected in [
        "### do-gc-wait",
        "### do-deploy",
        "| service web | `web:v1.2.0` |",
        "### do-prune",
        "| web | 2 | 1 | 0 |",
        "About 40.0 MiB freed after GC",
    ] {
        assert!(markdown.contains(expected), "{expected:?} not in:\n{markdown}");
    }
    // A failure: an ::error:: annotation, and the log tail inside a group, all on stderr.
    sim.state().apps[0].next_outcome = DeployOutcome::BuildError;
    let failed = github(DEPLOY).args(["--app", "example-app", "--repository", "web", "--tag", "v1.2.0"]).run();
    failed.assert_code(4);
    assert!(failed.stderr.contains("::error title=do-deploy::deployment "), "{}", failed.stderr);
    assert!(
        failed.stderr.contains("::group::BUILD log of web") && failed.stderr.contains("::endgroup::"),
        "{}",
        failed.stderr
    );
    assert!(!failed.stdout.contains("::"), "stdout stays JSON Lines");

    let repo = tempfile::tempdir().unwrap();
    git(repo.path(), &["init", "-q", "-b", "main"]);
    git(repo.path(), &["commit", "-q", "--allow-empty", "-m", "feat: first"]);
    let tag_output = dir.path().join("tag-output");
    Tool::new(DO_TAG)
        .env("GITHUB_ACTIONS", "true")
        .env("GITHUB_OUTPUT", &tag_output)
        .env("GIT_COMMITTER_NAME", "t")
        .env("GIT_COMMITTER_EMAIL", "t@do-release.invalid")
        .args(["-C", repo.path().to_str().unwrap(), "--no-push"])
        .run()
        .assert_code(0);
    let outputs = std::fs::read_to_string(&tag_output).unwrap();
    assert_eq!(
        outputs,
        "tag=v0.1.0\nversion=0.1.0\nprevious_tag=\ncreated=true\npushed=false\nnothing_to_release=false\nnotes<<DO_RELEASE_EOF\n### Features\n\n- first ("
            .to_string()
            + &outputs[outputs.find("- first (").unwrap() + 9..]
    );
    assert!(outputs.ends_with(")\nDO_RELEASE_EOF\n"), "{outputs}");
}

/// The keys a tool wrote to `$GITHUB_OUTPUT` (`key=value`, or `key<<DELIMITER` lines up to the
/// delimiter).
fn output_keys(text: &str) -> std::collections::BTreeSet<String> {
    let mut keys = std::collections::BTreeSet::new();
    let mut lines = text.lines();
    while let Some(line) = lines.next() {
        if let Some((key, delimiter)) = line.split_once("<<") {
            keys.insert(key.to_string());
            lines.by_ref().find(|l| *l == delimiter);
        } else if let Some((key, _)) = line.split_once('=') {
            keys.insert(key.to_string());
        }
    }
    keys
}

/// The keys a `--help` lists under "GitHub Actions outputs".
fn help_keys(help: &str) -> std::collections::BTreeSet<String> {
    let key = regex::Regex::new(r"^  ([a-z_]+)  ").unwrap();
    help.lines()
        .skip_while(|l| !l.starts_with("GitHub Actions outputs"))
        .skip(1)
        .take_while(|l| !l.is_empty())
        .filter_map(|l| key.captures(l).map(|c| c[1].to_string()))
        .collect()
}

/// The keys README's outputs table lists for `tool`.
fn readme_keys(tool: &str) -> std::collections::BTreeSet<String> {
    let readme = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    let row =
        readme.lines().find(|l| l.starts_with(&format!("| {tool} | "))).unwrap_or_else(|| panic!("no {tool} row"));
    let key = regex::Regex::new(r"`([a-z_]+)`").unwrap();
    key.captures_iter(row).map(|c| c[1].to_string()).collect()
}

#[test]
fn every_github_output_a_tool_writes_is_named_in_its_help_and_in_the_readme() {
    let sim = sim(30);
    let dir = tempfile::tempdir().unwrap();
    let github = |tool: &str, name: &str| {
        let output = dir.path().join(name);
        let run = Tool::against(tool, &sim).env("GITHUB_ACTIONS", "true").env("GITHUB_OUTPUT", &output);
        (run, output)
    };
    let records = std::cell::RefCell::new(Vec::new());
    let written = |(tool, output): (Tool, PathBuf)| {
        let run = tool.run();
        run.assert_code(0);
        records.borrow_mut().extend(run.records());
        // A mode that has no outputs (--sweep-previews) writes no file.
        output_keys(&std::fs::read_to_string(output).unwrap_or_default())
    };
    let spec = dir.path().join("app.yaml");
    std::fs::write(&spec, "name: example-app\nservices:\n  - name: web\n    image:\n      registry_type: DOCR\n      repository: web\n      tag: v1.1.0\n").unwrap();
    let (deploy, deploy_out) = github(DEPLOY, "deploy");
    let (preview, preview_out) = github(DEPLOY, "preview");
    let mut deploy_keys = written((
        deploy.args(["--app", "example-app", "--repository", "web", "--tag", "v1.1.0", "--interval", "30ms"]),
        deploy_out,
    ));
    deploy_keys.extend(written((
        preview.args(["--spec", spec.to_str().unwrap(), "--delete-preview", "pr-1", "--dry-run"]),
        preview_out,
    )));
    let (sweep, sweep_out) = github(DEPLOY, "sweep");
    deploy_keys.extend(written((
        sweep.args(["--spec", spec.to_str().unwrap(), "--sweep-previews", "--keep", "pr-1"]),
        sweep_out,
    )));
    let (login, login_out) = github(LOGIN, "login");
    let login = login.args(["--docker-config", dir.path().join("docker").to_str().unwrap()]).env("HOME", dir.path());
    let repo = tempfile::tempdir().unwrap();
    git(repo.path(), &["init", "-q", "-b", "main"]);
    git(repo.path(), &["commit", "-q", "--allow-empty", "-m", "feat: first"]);
    let (tag, tag_out) = github(DO_TAG, "tag");
    let tag = tag.env("GIT_COMMITTER_NAME", "t").env("GIT_COMMITTER_EMAIL", "t@do-release.invalid").args([
        "-C",
        repo.path().to_str().unwrap(),
        "--no-push",
    ]);
    let each = [
        ("do-gc-wait", GC_WAIT, written(github(GC_WAIT, "gc-wait"))),
        ("do-tag", DO_TAG, written((tag, tag_out))),
        ("do-login", LOGIN, written((login, login_out))),
        ("do-deploy", DEPLOY, deploy_keys),
        ("do-prune", PRUNE, written((github(PRUNE, "prune").0.args(["--keep-last", "1"]), dir.path().join("prune")))),
    ];
    let summary = dir.path().join("summary.md");
    let dry_run = Tool::against(PRUNE, &sim).env("GITHUB_ACTIONS", "true").env("GITHUB_STEP_SUMMARY", &summary);
    dry_run.args(["--keep-last", "1"]).run().assert_code(0);
    let markdown = std::fs::read_to_string(&summary).unwrap();
    assert!(markdown.contains("The plan would free about ") && !markdown.contains(" freed after GC"), "{markdown}");
    for (name, binary, keys) in each {
        assert!(keys.len() >= 2, "{name} wrote {keys:?}");
        let help = Tool::new(binary).args(["--help"]).run().stdout;
        assert_eq!(help_keys(&help), keys, "{name} --help names other outputs than it writes:\n{help}");
        assert_eq!(readme_keys(name), keys, "README's row for {name} names other outputs than it writes");
        // The record's fields, as the help's Output line names them.
        for (kind, fields) in help_records(&help) {
            let record = records.borrow().iter().find(|r| r["kind"] == kind.as_str()).cloned();
            let record = record.unwrap_or_else(|| panic!("{name} wrote no {kind} record"));
            let written: std::collections::BTreeSet<String> =
                record["data"].as_object().unwrap().keys().cloned().collect();
            assert_eq!(fields, written, "{name} --help's Output names other fields than its {kind} record has");
        }
    }
}

/// Each record `--help`'s Output section shows, with the fields it names.
fn help_records(help: &str) -> Vec<(String, std::collections::BTreeSet<String>)> {
    let joined: String = help.lines().map(str::trim).collect();
    let record = regex::Regex::new(r#"\{"kind":"([a-z-]+)","v":\d+,"data":\{([^}]*)\}"#).unwrap();
    let field = regex::Regex::new(r#""([a-z_]+)""#).unwrap();
    record
        .captures_iter(&joined)
        .map(|c| (c[1].to_string(), field.captures_iter(&c[2]).map(|f| f[1].to_string()).collect()))
        .collect()
}

fn git(dir: &Path, args: &[&str]) {
    let status = Command::new("git")
        .current_dir(dir)
        .args(args)
        .env("GIT_AUTHOR_NAME", "t")
        .env("GIT_AUTHOR_EMAIL", "t@do-release.invalid")
        .env("GIT_COMMITTER_NAME", "t")
        .env("GIT_COMMITTER_EMAIL", "t@do-release.invalid")
        .status()
        .unwrap();
    assert!(status.success(), "git {args:?}");
}

#[test]
fn scripts_release_sh_runs_the_chain_against_the_simulator() {
    let world = World::new();
    let bin_dir = Path::new(GC_WAIT).parent().unwrap().to_path_buf();
    let push = world.scratch.path().join("push.sh");
    std::fs::write(&push, format!("#!/bin/sh\nexec '{DO_SIM}' push --api-url \"$DIGITALOCEAN_API_URL\" --repository web --tag \"$2\" >/dev/null\n")).unwrap();
    make_executable(&push);
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/release.sh");
    let report = world.scratch.path().join("report.jsonl");
    let mut command = Command::new("sh");
    command
        .arg(&script)
        .current_dir(&world.repo)
        .env("PATH", format!("{}:{}", bin_dir.display(), std::env::var("PATH").unwrap_or_default()))
        .env("DO_REPOSITORY", "web")
        .env("DO_APP", "demo-app")
        .env("DO_REGISTRY", "demo-registry")
        .env("DO_KEEP_LAST", "3")
        .env("DO_INTERVAL", "30ms")
        .env("RELEASE_BUILD_PUSH", &push)
        .env("RELEASE_REPORT", &report);
    for (key, value) in World::options(&world, true, world.config()).env {
        command.env(key, value);
    }
    let output = command.output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "release.sh failed:\n{stderr}");
    assert!(stderr.contains("release.sh: released v1.5.0"), "{stderr}");
    let records: Vec<Value> =
        std::fs::read_to_string(&report).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let kinds: Vec<&str> = records.iter().map(|r| r["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["gc-wait", "tag", "gc-wait", "deploy", "prune"]);
    assert_eq!(world.remote_tags(), ["v1.4.2", "v1.5.0"]);
    let pushed = world.manifests_tagged("v1.5.0");
    assert_eq!(world.successful_deployments_of(&pushed[0]), 1);

    // A failing step stops the chain: nothing after it acts.
    std::fs::write(&push, "#!/bin/sh\necho 'push failed' >&2\nexit 1\n").unwrap();
    let before = mutating_requests(&world.sim).len();
    let output = command.output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("release.sh: step push failed"), "{stderr}");
    assert_eq!(mutating_requests(&world.sim).len(), before, "no deploy or prune after the failed push");
}

pub(crate) fn make_executable(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

#[test]
fn completions_and_man_pages_are_generated_for_every_tool() {
    let out = tempfile::tempdir().unwrap();
    let written = xtask::docs::generate(out.path()).unwrap();
    let names = ["do-gc-wait", "do-tag", "do-deploy", "do-prune", "do-login", "do-sim", "cargo-xtask"];
    assert_eq!(
        written.len(),
        names.len() * 4,
        "bash, zsh, fish and a man page for each of the tools, do-sim and the xtask"
    );
    for tool in names {
        let bash = std::fs::read_to_string(out.path().join(format!("completions/{tool}.bash"))).unwrap();
        assert!(bash.contains("--help"), "{tool} bash completion");
        assert!(out.path().join(format!("completions/_{tool}")).exists());
        assert!(out.path().join(format!("completions/{tool}.fish")).exists());
        let man = std::fs::read_to_string(out.path().join(format!("man/{tool}.1"))).unwrap();
        assert!(man.contains(".TH") && man.contains(tool), "{tool} man page");
    }
    let deploy = std::fs::read_to_string(out.path().join("man/do-deploy.1")).unwrap();
    assert!(deploy.contains("rollback\\-on\\-failure"), "options are in the man page");
}

#[test]
fn every_flag_of_every_command_is_described_and_version_prints_the_version() {
    let missing = xtask::docs::undescribed();
    assert!(missing.is_empty(), "flags or subcommands without a description: {missing:#?}");
    for tool in [GC_WAIT, DO_TAG, DEPLOY, PRUNE, LOGIN, DO_SIM] {
        let output = Command::new(tool).arg("--version").output().unwrap();
        let text = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success() && text.trim().ends_with(env!("CARGO_PKG_VERSION")),
            "{tool} --version: {text:?}"
        );
    }
    let release = xtask::docs::usage_of("release");
    assert!(release.starts_with("Usage: cargo xtask release"), "{release}");
    let help = xtask::docs::help_of("release");
    for expected in ["Examples:", "Exit codes:", "DIGITALOCEAN_ACCESS_TOKEN", "1 preflight", "keep_last"] {
        assert!(help.contains(expected), "{expected:?} not in cargo xtask release --help:\n{help}");
    }
}

#[test]
fn the_docker_builder_logs_in_with_short_lived_credentials_in_a_temporary_docker_config() {
    let world = World::new();
    let marker = world.scratch.path().join("docker-config-seen");
    let fake_docker = world.scratch.path().join("docker");
    // Stands in for docker: checks the credentials the push is given, then pushes to the simulator.
    std::fs::write(
        &fake_docker,
        format!(
            "#!/bin/sh\nset -e\ncase \"$1\" in\n  build) exit 0 ;;\n  push)\n    grep -q '\"registry.digitalocean.com\"' \"$DOCKER_CONFIG/config.json\"\n    grep -q '\"auth\"' \"$DOCKER_CONFIG/config.json\"\n    stat -c %a \"$DOCKER_CONFIG/config.json\" > '{}'\n    echo \"$DOCKER_CONFIG\" >> '{}'\n    exec '{DO_SIM}' push --api-url \"$DIGITALOCEAN_API_URL\" --repository web --tag \"$3\" > /dev/null ;;\nesac\n",
            marker.display(),
            marker.display()
        ),
    )
    .unwrap();
    make_executable(&fake_docker);
    let docker = fake_docker.display().to_string();
    let config = Config {
        builder: "docker".into(),
        build: vec![docker.clone(), "build".into(), "--tag".into(), "{image}".into(), ".".into()],
        push: vec![docker, "push".into(), "{image}".into(), "{tag}".into()],
        ..world.config()
    };
    let outcome = world.run(true, config);
    world.assert_released_once(&outcome);
    let seen = std::fs::read_to_string(&marker).expect("the push saw a DOCKER_CONFIG with credentials");
    let mut lines = seen.lines();
    assert_eq!(lines.next(), Some("600"), "the credentials file is readable by its owner only");
    let docker_config = lines.next().unwrap();
    assert!(!Path::new(docker_config).exists(), "the temporary DOCKER_CONFIG is removed afterwards");
    let credentials = world
        .sim
        .requests()
        .into_iter()
        .filter(|r| r.url.contains("docker-credentials") && r.url.contains("read_write=true"))
        .collect::<Vec<_>>();
    assert_eq!(credentials.len(), 1);
    assert!(
        credentials[0].url.contains("read_write=true") && credentials[0].url.contains("expiry_seconds="),
        "{:?}",
        credentials[0].url
    );
    let auth = "c2ltLXVzZXI6ZG9ja2VyLXBhc3N3b3JkLWZvci1kZW1vLXJlZ2lzdHJ5";
    for step in &outcome.steps {
        assert!(
            !step.stderr.contains(auth) && !String::from_utf8_lossy(&step.stdout).contains(auth),
            "registry credentials printed"
        );
    }
}

/// The example release workflow, parsed.
fn release_workflow() -> (String, Value) {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/github-release.yml")).unwrap();
    let workflow: Value = do_deploy::specfile::parse_yaml(&text).unwrap();
    (text, workflow)
}

#[test]
fn the_example_workflow_tags_in_the_same_run_serialised_pinned_and_uses_each_tool_as_a_step() {
    let (text, workflow) = release_workflow();
    // A merge to main or a run by hand; the tag is made in the run (one pushed with GITHUB_TOKEN
    // would start no other workflow), and nothing runs on tags.
    assert_eq!(workflow["on"]["push"]["branches"][0], "main");
    assert!(workflow["on"]["push"].get("tags").is_none(), "{text}");
    assert_eq!(workflow["on"]["workflow_dispatch"]["inputs"]["bump"]["default"], "auto");
    assert_eq!(workflow["jobs"]["release"]["permissions"]["contents"], "write", "the tag is pushed");
    assert!(workflow["concurrency"]["group"].as_str().unwrap().contains("release"));
    assert_eq!(workflow["concurrency"]["cancel-in-progress"], false);
    let steps = workflow["jobs"]["release"]["steps"].as_array().unwrap();
    for step in steps.iter().filter(|s| s.get("uses").is_some()) {
        let uses = step["uses"].as_str().unwrap();
        let pin = uses.split_once('@').map(|(_, pin)| pin).unwrap_or("");
        assert!(pin.len() == 40 && pin.bytes().all(|b| b.is_ascii_hexdigit()), "{uses} is not pinned by commit");
    }
    let runs: String = steps.iter().filter_map(|s| s["run"].as_str()).collect::<Vec<_>>().join("\n");
    for tool in ["do-gc-wait", "do-tag", "do-deploy", "do-prune"] {
        assert!(runs.contains(tool), "{tool} is not a step");
    }
    // The checkout keeps no credential; git gets the push credential in the tag step only.
    assert_eq!(steps[0]["with"]["persist-credentials"], false);
    for step in steps {
        let tags = step["run"].as_str().is_some_and(|r| r.contains("do-tag"));
        assert_eq!(step["env"].get("GITHUB_TOKEN").is_some(), tags, "{step:?}");
    }
    // Every step after the tag's that builds, pushes or deploys stops when there is nothing to release.
    let tag_at = steps.iter().position(|s| s["id"] == "tag").unwrap();
    for step in &steps[tag_at + 1..] {
        let run = step["run"].as_str().unwrap_or("");
        if ["docker build", "docker push", "do-deploy", "do-login --registry"].iter().any(|w| run.contains(w)) {
            assert_eq!(step["if"], "steps.tag.outputs.nothing_to_release != 'true'", "{step:?}");
        }
    }
    assert!(!text.contains("GITHUB_REF_NAME"), "the tag is do-tag's output, not the ref that started the run");
    assert!(
        text.contains("steps.deploy.outputs.phase") && text.contains("steps.deploy.outputs.deployment_id"),
        "outputs are used between steps"
    );
    assert!(!text.contains("--tags"), "never pushes every tag");
    // The token only where the API is called; docker logs in with do-login and out always.
    assert!(workflow["env"].get("DIGITALOCEAN_ACCESS_TOKEN").is_none(), "the token is not workflow-wide");
    for step in steps {
        let run = step["run"].as_str().unwrap_or("");
        let calls_api = ["do-gc-wait", "do-deploy", "do-prune"].iter().any(|t| run.contains(t))
            || (run.contains("do-login") && !run.contains("--logout"));
        assert_eq!(step["env"].get("DIGITALOCEAN_ACCESS_TOKEN").is_some(), calls_api, "{step:?}");
    }
    assert!(runs.contains("do-login --registry") && !text.contains("docker login"), "docker logs in through do-login");
    // The pushed digest is signed and attested, in the registry, while docker is logged in.
    let position = |what: &str| {
        steps
            .iter()
            .position(|s| {
                s["run"].as_str().unwrap_or("").contains(what) || s["uses"].as_str().unwrap_or("").contains(what)
            })
            .unwrap_or_else(|| panic!("no step with {what}"))
    };
    assert!(position("docker push") < position("cosign sign --yes"), "signed after the push");
    assert!(
        position("cosign sign --yes") < position("attest-build-provenance")
            && position("attest-build-provenance") < position("--logout")
    );
    let attest = &steps[position("attest-build-provenance")];
    assert_eq!(attest["with"]["push-to-registry"], true);
    let permissions = &workflow["jobs"]["release"]["permissions"];
    assert_eq!(
        (permissions["id-token"].as_str(), permissions["attestations"].as_str()),
        (Some("write"), Some("write"))
    );
    let logout = steps.iter().find(|s| s["run"].as_str().is_some_and(|r| r.contains("--logout"))).unwrap();
    assert_eq!(logout["if"], "always()");
    let action = steps.iter().find(|s| s["uses"].as_str().is_some_and(|u| u.contains("/do-release@"))).unwrap();
    assert!(action.get("with").is_none_or(|w| w.get("version").is_none()), "the action's own tag is the version");
    // The job outlives every deadline it sets.
    let deadlines: u64 = runs
        .split("--timeout ")
        .skip(1)
        .map(|rest| rest.split_whitespace().next().unwrap().trim_end_matches('m').parse::<u64>().unwrap())
        .sum();
    let limit = workflow["jobs"]["release"]["timeout-minutes"].as_u64().unwrap();
    assert!(limit > deadlines, "timeout-minutes {limit} is not above the {deadlines} minutes of deadlines");
}

#[test]
fn the_example_workflow_restores_do_prunes_manifest_cache_before_the_prune() {
    let (text, workflow) = release_workflow();
    let steps = workflow["jobs"]["release"]["steps"].as_array().unwrap();
    let at = |pred: &dyn Fn(&Value) -> bool| steps.iter().position(pred).unwrap_or_else(|| panic!("{text}"));
    let cache = at(&|s: &Value| s["uses"].as_str().is_some_and(|u| u.starts_with("actions/cache@")));
    let prune = at(&|s: &Value| s["run"].as_str().is_some_and(|r| r.contains("do-prune")));
    assert!(cache < prune, "restored before the prune (and saved after the job)");
    // Where do-prune keeps it without --cache-dir on a runner, where XDG_CACHE_HOME is unset
    // (prune_reads::without_a_cache_dir_the_cache_lives_under_xdg_cache_home_else_home).
    assert_eq!(steps[cache]["with"]["path"], "~/.cache/do-release");
    assert!(steps[cache]["with"]["restore-keys"].as_str().is_some(), "a later run starts from the last cache");
}

#[test]
fn the_example_workflows_tag_step_tags_and_pushes_then_stops_the_run_when_nothing_changed() {
    let (_, workflow) = release_workflow();
    let steps = workflow["jobs"]["release"]["steps"].as_array().unwrap();
    let step = steps.iter().find(|s| s["id"] == "tag").unwrap();
    let script = step["run"].as_str().unwrap();
    let scratch = tempfile::tempdir().unwrap();
    let (remote, work) = (scratch.path().join("remote.git"), scratch.path().join("work"));
    git(scratch.path(), &["init", "-q", "--bare", "-b", "main", remote.to_str().unwrap()]);
    git(scratch.path(), &["clone", "-q", remote.to_str().unwrap(), work.to_str().unwrap()]);
    git(&work, &["commit", "-q", "--allow-empty", "-m", "feat: first"]);
    git(&work, &["push", "-q", "origin", "main"]);
    let bin_dir = Path::new(DO_TAG).parent().unwrap();
    let run_step = |output: &Path| {
        std::fs::write(work.join("release.jsonl"), "").unwrap();
        let ran = Command::new("bash")
            .args(["-eo", "pipefail", "-c", script])
            .current_dir(&work)
            .env("PATH", format!("{}:{}", bin_dir.display(), std::env::var("PATH").unwrap()))
            .env("BUMP", "auto")
            .env("GITHUB_TOKEN", "ghs_not_a_real_token")
            .env("GIT_COMMITTER_NAME", step["env"]["GIT_COMMITTER_NAME"].as_str().unwrap())
            .env("GIT_COMMITTER_EMAIL", step["env"]["GIT_COMMITTER_EMAIL"].as_str().unwrap())
            .env("GITHUB_ACTIONS", "true")
            .env("GITHUB_OUTPUT", output)
            .output()
            .unwrap();
        assert!(ran.status.success(), "{}", String::from_utf8_lossy(&ran.stderr));
        assert!(!String::from_utf8_lossy(&ran.stdout).contains("ghs_not"), "the credential is masked, never shown");
        std::fs::read_to_string(output).unwrap()
    };
    let outputs = run_step(&scratch.path().join("first"));
    assert!(outputs.contains("tag=v0.1.0\n") && outputs.contains("nothing_to_release=false\n"), "{outputs}");
    let remote_tags = Command::new("git").args(["tag"]).current_dir(&remote).output().unwrap().stdout;
    assert_eq!(String::from_utf8_lossy(&remote_tags), "v0.1.0\n", "pushed by the step");
    let records = std::fs::read_to_string(work.join("release.jsonl")).unwrap();
    assert!(records.contains("\"kind\":\"tag\""), "the tag record travels on: {records}");
    // A rerun on the tagged HEAD carries on with the same tag, and nothing new is tagged.
    let again = run_step(&scratch.path().join("again"));
    assert!(again.contains("tag=v0.1.0\n") && again.contains("nothing_to_release=false\n"), "{again}");
}

#[test]
fn a_release_soaks_its_deployment_when_do_release_toml_says_soak() {
    let world = World::new();
    let outcome = world.run(true, Config { soak: "600ms".into(), ..world.config() });
    assert_eq!(outcome.exit, 0, "{}", outcome.text);
    let report = String::from_utf8(outcome.report).unwrap();
    let deploy: Value =
        report.lines().map(|l| serde_json::from_str::<Value>(l).unwrap()).rfind(|r| r["kind"] == "deploy").unwrap();
    assert_eq!(deploy["data"]["soak"]["ended"], "passed", "{deploy}");
    assert!(deploy["data"]["soak"]["checks"].as_u64().unwrap() >= 1, "{deploy}");
    let refused = Config { soak: "40m".into(), deploy_timeout: "30m".into(), ..world.config() }.check().unwrap_err();
    assert!(format!("{refused:#}").contains("soak 40m does not fit in deploy_timeout 30m"), "{refused:#}");
}

#[test]
fn a_release_with_the_app_spec_in_the_repository_deploys_the_spec() {
    let world = World::new();
    let mut spec = world.sim.snapshot()["apps"][0]["spec"].clone();
    // The live app's variables stay (dropping one, a SECRET above all, needs --allow-removal).
    spec["services"][0]["envs"]
        .as_array_mut()
        .unwrap()
        .push(json!({"key": "GREETING", "value": "${GREETING}", "scope": "RUN_TIME"}));
    std::fs::create_dir_all(world.repo.join(".do")).unwrap();
    std::fs::write(world.repo.join(".do/app.json"), serde_json::to_string_pretty(&spec).unwrap()).unwrap();
    git(&world.repo, &["add", ".do"]);
    git(&world.repo, &["commit", "-q", "-m", "chore: the app spec in the repository"]);
    git(&world.repo, &["push", "-q", "origin", "HEAD"]);
    let with_spec = |app: &str| Config {
        spec: ".do/app.json".into(),
        spec_env: vec!["GREETING".into()],
        app: app.into(),
        ..world.config()
    };

    // A spec naming another app than `app` is refused by the preflight: nothing changes.
    let before = world.refs();
    let mut options = world.options(true, with_spec("other-app"));
    options.env.push(("GREETING".into(), "hello".into()));
    let refused = release(&options).unwrap();
    assert_eq!(refused.exit, 2, "{}", refused.text);
    assert!(refused.text.contains("names the app \"demo-app\""), "{}", refused.text);
    assert_eq!(world.refs(), before, "no tag");
    assert!(mutating_requests(&world.sim).is_empty());

    // Nor does the token ever go into the spec, whatever the variable is called.
    let mut options = world.options(true, with_spec(""));
    options.env.push(("GREETING".into(), world.sim.token()));
    let refused = release(&options).unwrap();
    assert_eq!(refused.exit, 2, "{}", refused.text);
    assert!(refused.text.contains("never goes into an app spec") && !refused.text.contains(&world.sim.token()));
    assert!(mutating_requests(&world.sim).is_empty());

    let mut options = world.options(true, with_spec(""));
    options.env.push(("GREETING".into(), "hello".into()));
    let outcome = release(&options).unwrap();
    world.assert_released_once(&outcome);
    let deploy = outcome.last("deploy").unwrap();
    let changed: Vec<&str> =
        deploy["spec_changes"].as_array().unwrap().iter().map(|c| c["path"].as_str().unwrap()).collect();
    assert!(changed.contains(&"services[web].envs[GREETING].value"), "{changed:?}");
    let live = world.sim.snapshot()["apps"][0]["spec"]["services"][0]["envs"].clone();
    let mut expected = spec["services"][0]["envs"].clone();
    expected.as_array_mut().unwrap().last_mut().unwrap()["value"] = json!("hello");
    assert_eq!(live, expected, "the spec, expanded, its other variables and the live secret kept");
}

#[test]
fn no_commit_in_the_paths_since_the_last_tag_ends_the_release_with_nothing_done() {
    let world = World::new();
    let before = world.refs();
    let config = Config { paths: vec!["services/api".into()], ..world.config() };
    let outcome = world.run(true, config);
    assert_eq!(outcome.exit, 0, "{}", outcome.text);
    assert!(outcome.text.contains("nothing to release since v1.4.2"), "{}", outcome.text);
    assert_eq!(world.refs(), before, "no tag, no push");
    assert_eq!(world.remote_tags(), ["v1.4.2"]);
    let ran: Vec<&str> = outcome.steps.iter().map(|s| s.name.as_str()).collect();
    assert!(!ran.contains(&"deploy") && !ran.contains(&"build") && !ran.contains(&"push"), "{ran:?}");
    assert!(mutating_sim_requests(&world).is_empty(), "nothing changed in the account");
}

fn mutating_sim_requests(world: &World) -> Vec<String> {
    crate::support::mutating_requests(&world.sim).into_iter().map(|r| format!("{} {}", r.method, r.url)).collect()
}

#[test]
fn every_tool_prints_its_own_completions_without_a_request_or_its_variables_in_the_way() {
    let sim = sim(30);
    for binary in [GC_WAIT, DO_TAG, DEPLOY, PRUNE, LOGIN] {
        let name = std::path::Path::new(binary).file_name().unwrap().to_str().unwrap().to_string();
        for (shell, expected) in [
            ("bash", format!("complete -F _{}", name.replace('-', "__"))),
            ("zsh", format!("#compdef {name}")),
            ("fish", format!("complete -c {name}")),
        ] {
            // The tools' variables set, as in CI, change nothing.
            let run = Tool::against(binary, &sim).args(["--completions", shell]).run();
            run.assert_code(0);
            let script = run.stdout.clone();
            assert!(script.contains(&expected), "{name} {shell}: {}", &script[..script.len().min(300)]);
            assert!(script.contains("timeout"), "{name} {shell}: the flags are in it");
        }
        let run = Tool::new(binary).args(["--completions", "tcsh"]).run();
        run.assert_code(2);
        assert!(run.stderr.contains("possible values: bash, elvish, fish, powershell, zsh"), "{}", run.stderr);
    }
    assert!(sim.requests().is_empty(), "no request");
}
