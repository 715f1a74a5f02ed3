//! `cargo xtask demo`: the whole release, offline. A simulator seeded with a registry of old
//! images near its quota, an app, and a garbage collection already running; a temporary git
//! repository with a bare remote; the simulator's push as the build step.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use anyhow::Context;
use serde_json::json;

use crate::config::Config;
use crate::release::{release, Binaries, Options, Outcome};

/// The demo's git identity, and no global or system git configuration (a `tag.gpgSign` there
/// would make the demo's tag need a key).
const IDENTITY: [(&str, &str); 6] = [
    ("GIT_AUTHOR_NAME", "do-release demo"),
    ("GIT_AUTHOR_EMAIL", "demo@do-release.invalid"),
    ("GIT_COMMITTER_NAME", "do-release demo"),
    ("GIT_COMMITTER_EMAIL", "demo@do-release.invalid"),
    ("GIT_CONFIG_GLOBAL", "/dev/null"),
    ("GIT_CONFIG_NOSYSTEM", "1"),
];

/// The simulated world: a Starter registry at 88% of its 500 MiB holding multi-platform images
/// as buildx pushes them (an index with an amd64 and an arm64 image and their attestations), an
/// app on web:v1.4.2, and a garbage collection that runs for a few more seconds.
pub fn world() -> anyhow::Result<do_sim::State> {
    let versions = ["v1.0.0", "v1.0.1", "v1.1.0", "v1.1.1", "v1.2.0", "v1.2.1", "v1.3.0", "v1.3.1", "v1.4.0", "v1.4.1"];
    let image = |tags: &[&str]| json!({"tags": tags, "size_bytes": 19 * 1024 * 1024, "platforms": ["linux/amd64", "linux/arm64"], "attestations": true});
    let mut manifests: Vec<serde_json::Value> =
        vec![json!({"tags": [], "size_bytes": 20 * 1024 * 1024}), json!({"tags": [], "size_bytes": 20 * 1024 * 1024})];
    manifests.extend(versions.iter().map(|v| image(&[v])));
    manifests.push(image(&["v1.4.2", "latest"]));
    let seed: do_sim::Seed = serde_json::from_value(json!({
        "registries": [{
            "name": "demo-registry",
            "tier": "starter",
            "repositories": [{"name": "web", "manifests": manifests}],
            "running_gc": {"type": "unreferenced blobs only", "plan": [
                {"status": "waiting for write JWTs to expire", "ms": 1500},
                {"status": "scanning manifests", "ms": 1000},
                {"status": "deleting unreferenced blobs", "ms": 800}
            ]}
        }],
        "apps": [{"spec": do_sim::default_app_spec("demo-app", "web", "v1.4.2")}]
    }))?;
    seed.into_state(do_sim::DEFAULT_TOKEN, do_sim::Timing { gc_step_ms: 800, deploy_phase_ms: 700 })
}

fn git(dir: &Path, args: &[&str]) -> anyhow::Result<()> {
    let output = Command::new("git").current_dir(dir).args(args).envs(IDENTITY).output().context("cannot run git")?;
    anyhow::ensure!(output.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&output.stderr).trim());
    Ok(())
}

/// An app repository with a bare remote: v1.4.2 released, then a feature and a fix.
pub fn app_repository(root: &Path) -> anyhow::Result<std::path::PathBuf> {
    let work = root.join("app");
    let remote = root.join("app-origin.git");
    git(root, &["init", "-q", "--bare", "-b", "main", remote.to_str().context("path")?])?;
    git(root, &["init", "-q", "-b", "main", work.to_str().context("path")?])?;
    git(&work, &["remote", "add", "origin", remote.to_str().context("path")?])?;
    std::fs::write(work.join("Dockerfile"), "FROM scratch\n")?;
    git(&work, &["add", "Dockerfile"])?;
    git(&work, &["commit", "-q", "-m", "chore: initial"])?;
    git(&work, &["tag", "-a", "v1.4.2", "-m", "v1.4.2"])?;
    for (file, message) in [("dark.css", "feat: dark mode"), ("typo.txt", "fix: a typo on the home page")] {
        std::fs::write(work.join(file), message)?;
        git(&work, &["add", file])?;
        git(&work, &["commit", "-q", "-m", message])?;
    }
    git(&work, &["push", "-q", "origin", "main", "v1.4.2"])?;
    git(&work, &["branch", "-q", "--set-upstream-to=origin/main"])?;
    Ok(work)
}

/// The demo's configuration: what a do-release.toml would say.
pub fn config() -> Config {
    Config {
        registry: "demo-registry".into(),
        repository: "web".into(),
        app: "demo-app".into(),
        allow_branch: vec!["main".into()],
        builder: "simulator".into(),
        keep_last: 3,
        keep_within: String::new(),
        interval: "300ms".into(),
        check_path: "/".into(),
        check_version_header: "x-app-version".into(),
        ..Config::default()
    }
}

/// Runs the demo; `out_root` receives the step outputs.
pub fn run(binaries: Binaries, out_root: &Path, echo: bool) -> anyhow::Result<Outcome> {
    // Each demo starts from nothing: no step output of an earlier demo is left beside this one's.
    if out_root.exists() {
        std::fs::remove_dir_all(out_root).with_context(|| format!("cannot clear {}", out_root.display()))?;
    }
    let sim = do_sim::Sim::start("127.0.0.1:0", world()?)?;
    let scratch = tempfile::tempdir()?;
    let repo = app_repository(scratch.path())?;
    let mut env: Vec<(String, String)> = IDENTITY.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    env.push(("DIGITALOCEAN_API_URL".into(), sim.url().to_string()));
    env.push(("DIGITALOCEAN_ACCESS_TOKEN".into(), sim.token()));
    if echo {
        eprintln!("demo: simulator at {}; app repository {}", sim.url(), repo.display());
    }
    let options = Options {
        config: config(),
        repo_dir: repo,
        execute: true,
        binaries,
        out_root: out_root.to_path_buf(),
        env,
        echo,
    };
    let outcome = release(&options)?;
    // Let the simulator settle before it stops, so the report and its state agree.
    std::thread::sleep(Duration::from_millis(10));
    Ok(outcome)
}
