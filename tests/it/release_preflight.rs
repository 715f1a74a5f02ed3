//! `cargo xtask release` checks before anything irreversible: a build that cannot
//! run, a token or app that cannot work, an image tag built from another commit; a failing
//! build leaves no tag; docker credentials reach the push only; the xtask and a plain cargo
//! build share one build.

use std::path::Path;
use std::process::Command;

use do_sim::{Fault, FaultKind};
use serde_json::json;
use xtask::config::Config;
use xtask::release::Outcome;

use crate::release::{make_executable, World};
use crate::support::{call, mutating_requests};

/// Runs the release and checks that it changed nothing anywhere: no ref in either git
/// repository, no API write.
fn assert_refused_with_nothing_changed(world: &World, config: Config, code: i32, expected: &str) -> Outcome {
    let refs = world.refs();
    let outcome = world.run(true, config);
    assert_eq!(outcome.exit, code, "{outcome:#?}");
    assert!(outcome.text.contains(expected), "{expected:?} not in {:?}", outcome.text);
    assert_eq!(world.refs(), refs, "no tag, locally or on the remote");
    assert!(mutating_requests(&world.sim).is_empty(), "{:?}", mutating_requests(&world.sim));
    outcome
}

/// A stand-in `docker` in `dir`: `version` says `answer` (or fails with `daemon_error`).
fn fake_docker(dir: &Path, daemon_error: Option<&str>) -> String {
    let path = dir.join("docker");
    let version = match daemon_error {
        Some(error) => format!("echo '{error}' >&2; exit 1"),
        None => "echo 27.3.1".to_string(),
    };
    std::fs::write(&path, format!("#!/bin/sh\ncase \"$1\" in\n  version) {version} ;;\n  *) exit 0 ;;\nesac\n"))
        .unwrap();
    make_executable(&path);
    path.display().to_string()
}

fn docker_config(world: &World, docker: &str) -> Config {
    Config {
        builder: "docker".into(),
        build: vec![docker.into(), "build".into(), "--tag".into(), "{image}".into(), ".".into()],
        push: vec![docker.into(), "push".into(), "{image}".into()],
        ..world.config()
    }
}

#[test]
fn a_builder_that_cannot_run_stops_the_release_before_anything_changes() {
    // No Dockerfile: the dry run says so too.
    let world = World::new();
    std::fs::remove_file(world.repo.join("Dockerfile")).unwrap();
    Command::new("git")
        .current_dir(&world.repo)
        .args(["commit", "-qam", "chore: no Dockerfile"])
        .envs(world.options(true, world.config()).env)
        .status()
        .unwrap();
    Command::new("git").current_dir(&world.repo).args(["push", "-q", "origin", "main"]).status().unwrap();
    let docker = fake_docker(world.scratch.path(), None);
    let outcome = assert_refused_with_nothing_changed(&world, docker_config(&world, &docker), 2, "no Dockerfile at");
    assert_eq!(outcome.steps.last().unwrap().name, "preflight");
    let dry = world.run(false, docker_config(&world, &docker));
    assert_eq!(dry.exit, 2, "the dry run warns as the release would: {:?}", dry.text);

    // The daemon does not answer.
    let world = World::new();
    let docker =
        fake_docker(world.scratch.path(), Some("Cannot connect to the Docker daemon at unix:///var/run/docker.sock"));
    assert_refused_with_nothing_changed(
        &world,
        docker_config(&world, &docker),
        2,
        "the docker daemon does not answer (Cannot connect",
    );

    // docker is not installed; a commands builder whose program is missing.
    let world = World::new();
    let missing = Config {
        build: vec!["docker-that-is-not-installed".into(), "build".into(), ".".into()],
        ..docker_config(&world, "x")
    };
    assert_refused_with_nothing_changed(&world, missing, 2, "docker-that-is-not-installed is not on PATH");
    let commands = Config {
        builder: "commands".into(),
        build: vec!["./build.sh".into()],
        push: vec!["true".into()],
        ..world.config()
    };
    assert_refused_with_nothing_changed(&world, commands, 2, "the build command \"./build.sh\" is not found");
}

#[test]
fn a_failing_build_leaves_no_tag_anywhere_and_its_output_is_saved() {
    let world = World::new();
    let failing = Config {
        builder: "commands".into(),
        build: vec!["sh".into(), "-c".into(), "echo 'step 3/7: COPY failed: no such file' >&2; exit 1".into()],
        push: vec!["true".into()],
        ..world.config()
    };
    let outcome =
        assert_refused_with_nothing_changed(&world, failing, 1, "step 2 build failed, nothing was tagged or pushed");
    let build = outcome.step("build").unwrap();
    assert_eq!((build.what.as_str(), build.code), ("builder", 1));
    assert!(build.stderr.contains("COPY failed"), "{}", build.stderr);
    let saved = std::fs::read_to_string(outcome.out_dir.unwrap().join("2-build.builder.log")).unwrap();
    assert!(saved.contains("COPY failed"));
    // Fixed, the rerun releases once.
    world.assert_released_once(&world.run(true, world.config()));
}

#[test]
fn an_image_tag_built_from_another_commit_is_never_deployed() {
    let world = World::new();
    let push = |labels: serde_json::Value| {
        let body = json!({"registry": "demo-registry", "repository": "web", "tag": "v1.5.0", "platforms": ["linux/amd64"], "labels": labels});
        assert_eq!(call(&world.sim, "POST", "/_sim/push", Some(body), None).0, 201);
    };
    push(json!({"org.opencontainers.image.revision": "0123456789abcdef0123456789abcdef01234567"}));
    let outcome = assert_refused_with_nothing_changed(
        &world,
        world.config(),
        2,
        "web:v1.5.0 is already in the registry, built from commit 0123456789ab, not HEAD",
    );
    assert!(world.sim.snapshot()["apps"][0]["deployments"].as_array().unwrap().len() == 1, "nothing deployed");
    assert!(outcome.step("preflight").unwrap().stderr.contains("FAIL  image"));

    push(json!({}));
    assert_refused_with_nothing_changed(&world, world.config(), 2, "without a org.opencontainers.image.revision label");
}

#[test]
fn a_token_or_app_that_cannot_work_is_named_before_anything_changes() {
    let world = World::new();
    let mut options = world.options(true, world.config());
    options.env.retain(|(k, _)| k != "DIGITALOCEAN_ACCESS_TOKEN");
    options.env.push(("DIGITALOCEAN_ACCESS_TOKEN".into(), "not-the-token".into()));
    let outcome = xtask::release::release(&options).unwrap();
    assert_eq!(outcome.exit, 2);
    assert!(outcome.text.contains("the token was refused (401)"), "{}", outcome.text);

    world.sim.add_fault(Fault {
        method: Some("GET".into()),
        path: "/v2/apps".into(),
        kind: FaultKind::Status { status: 403, retry_after: None },
        times: 1,
    });
    assert_refused_with_nothing_changed(&world, world.config(), 2, "the token lacks the app:read scope");

    assert_refused_with_nothing_changed(
        &world,
        Config { app: "shop".into(), ..world.config() },
        2,
        "no app named \"shop\"; the account has: demo-app",
    );
    assert_refused_with_nothing_changed(
        &world,
        Config { repository: "api".into(), ..world.config() },
        2,
        "no component runs the DOCR repository \"api\"",
    );
    assert_refused_with_nothing_changed(
        &world,
        Config { registry: "elsewhere".into(), ..world.config() },
        2,
        "registry \"elsewhere\" does not exist in this account, which has: demo-registry",
    );
}

#[test]
fn docker_credentials_reach_the_push_and_not_the_build() {
    let world = World::new();
    let seen = world.scratch.path().join("seen");
    let docker = world.scratch.path().join("docker");
    let sim = crate::support::DO_SIM;
    std::fs::write(
        &docker,
        format!(
            "#!/bin/sh\ncase \"$1\" in\n  version) echo 27.3.1 ;;\n  build) echo \"build DOCKER_CONFIG=${{DOCKER_CONFIG:-unset}} $*\" >> '{seen}' ;;\n  push) echo \"push DOCKER_CONFIG=$DOCKER_CONFIG\" >> '{seen}'; grep -q '\"auth\"' \"$DOCKER_CONFIG/config.json\" && exec '{sim}' push --api-url \"$DIGITALOCEAN_API_URL\" --repository web --tag v1.5.0 > /dev/null ;;\nesac\n",
            seen = seen.display()
        ),
    )
    .unwrap();
    make_executable(&docker);
    let docker = docker.display().to_string();
    let config = Config { build: Config::default().build, ..docker_config(&world, &docker) };
    let config = Config {
        build: config.build.iter().map(|w| if w == "docker" { docker.clone() } else { w.clone() }).collect(),
        ..config
    };
    world.assert_released_once(&world.run(true, config));
    let seen = std::fs::read_to_string(&seen).unwrap();
    let build = seen.lines().find(|l| l.starts_with("build")).unwrap();
    assert!(build.contains("DOCKER_CONFIG=unset"), "the build uses the user's docker configuration: {build}");
    let head = String::from_utf8(
        Command::new("git").current_dir(&world.repo).args(["rev-parse", "HEAD"]).output().unwrap().stdout,
    )
    .unwrap();
    assert!(build.contains(&format!("--label org.opencontainers.image.revision={}", head.trim())), "{build}");
    let push = seen.lines().find(|l| l.starts_with("push")).unwrap();
    assert!(!push.contains("DOCKER_CONFIG=unset") && !push.ends_with('='), "{push}");
}

#[test]
fn cargo_xtask_and_a_plain_cargo_build_share_one_build() {
    let world = World::new();
    std::fs::write(
        world.repo.join("do-release.toml"),
        "registry = \"demo-registry\"\nrepository = \"web\"\napp = \"demo-app\"\nbuilder = \"simulator\"\n",
    )
    .unwrap();
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"));
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    // A user's shell: none of the variables cargo test set for this process.
    let command = |args: &[&str]| {
        let mut command = Command::new(&cargo);
        command.current_dir(workspace).args(args);
        for (name, _) in std::env::vars() {
            if xtask::release::is_cargo_run_variable(&name) || name == "CARGO" {
                command.env_remove(&name);
            }
        }
        command
            .env("DIGITALOCEAN_API_URL", world.sim.url())
            .env("DIGITALOCEAN_ACCESS_TOKEN", world.sim.token())
            .env("CI", "true");
        command
    };
    let release = || command(&["xtask", "release", "-C", world.repo.to_str().unwrap()]).output().unwrap();
    let first = release();
    let said = String::from_utf8_lossy(&first.stderr);
    assert!(first.status.success(), "{said}");
    // The alias is not --quiet: a cold build shows cargo's progress from its first second.
    assert!(said.contains("Running `target/debug/xtask release"), "{said}");
    for (what, output) in [
        ("cargo build --bins", command(&["build", "--bins"]).output().unwrap()),
        ("a second cargo xtask release", release()),
    ] {
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(output.status.success(), "{what}: {stderr}");
        assert!(!stderr.contains("Compiling"), "{what} compiled again:\n{stderr}");
    }
}
