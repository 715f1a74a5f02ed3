//! Running the real binaries against an in-process simulator.

pub mod images;
pub mod tls;
pub mod world;

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use do_sim::Sim;
use serde_json::Value;

/// What a tool run left behind.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// The records on stdout, parsed.
    pub fn records(&self) -> Vec<Value> {
        self.stdout
            .lines()
            .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON: {line:?}: {e}")))
            .collect()
    }

    /// The data of the last record of `kind`.
    pub fn record(&self, kind: &str) -> Value {
        self.records()
            .into_iter()
            .rev()
            .find(|r| r["kind"] == kind)
            .unwrap_or_else(|| panic!("no {kind} record in {self:#?}"))["data"]
            .clone()
    }

    pub fn assert_code(&self, expected: i32) -> &Run {
        assert_eq!(self.code, expected, "unexpected exit code:\n{self:#?}");
        self
    }
}

/// A tool binary to run, with the environment pointing at a simulator.
pub struct Tool {
    command: Command,
    stdin: Vec<u8>,
    /// The run's own cache home: no run answers from another's manifest cache unless a test
    /// gives both the same `--cache-dir`.
    _cache_home: tempfile::TempDir,
}

impl Tool {
    pub fn new(binary: &str) -> Tool {
        let mut command = Command::new(binary);
        for variable in [
            "DIGITALOCEAN_ACCESS_TOKEN",
            "DIGITALOCEAN_API_URL",
            "GITHUB_ACTIONS",
            "GITHUB_OUTPUT",
            "GITHUB_STEP_SUMMARY",
        ] {
            command.env_remove(variable);
        }
        command.env("DO_RELEASE_RETRY_BASE_DELAY", "20ms").env("DO_RELEASE_RETRY_MAX_TIME", "20s");
        let cache_home = tempfile::tempdir().expect("a temporary directory");
        command.env("XDG_CACHE_HOME", cache_home.path());
        Tool { command, stdin: Vec::new(), _cache_home: cache_home }
    }

    pub fn against(binary: &str, sim: &Sim) -> Tool {
        let mut tool = Tool::new(binary);
        tool.command.env("DIGITALOCEAN_API_URL", sim.url()).env("DIGITALOCEAN_ACCESS_TOKEN", sim.token());
        tool
    }

    pub fn args<I, S>(mut self, args: I) -> Tool
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        self.command.args(args);
        self
    }

    pub fn env(mut self, key: &str, value: impl AsRef<std::ffi::OsStr>) -> Tool {
        self.command.env(key, value);
        self
    }

    pub fn env_remove(mut self, key: &str) -> Tool {
        self.command.env_remove(key);
        self
    }

    /// Runs with an empty token, as if none were set (a flag or file must give it).
    pub fn without_token(self) -> Tool {
        self.env("DIGITALOCEAN_ACCESS_TOKEN", "")
    }

    pub fn arg_verbose(self) -> Tool {
        self.args(["-v"])
    }

    pub fn stdin(mut self, bytes: impl Into<Vec<u8>>) -> Tool {
        self.stdin = bytes.into();
        self
    }

    /// Runs with stdout a pipe whose reader is already gone: every write finds it closed.
    pub fn run_with_closed_stdout(mut self) -> Run {
        let (reader, writer) = std::io::pipe().expect("a pipe");
        drop(reader);
        let output =
            self.command.stdin(Stdio::null()).stdout(writer).stderr(Stdio::piped()).output().expect("the tool runs");
        Run {
            code: output.status.code().unwrap_or(-1),
            stdout: String::new(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }

    /// Runs with a stdin that stays open and never ends (a pipeline whose writer hangs).
    pub fn run_with_open_stdin(mut self) -> Run {
        let mut child =
            self.command.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("starts");
        let held = child.stdin.take();
        let output = child.wait_with_output().expect("the tool runs");
        drop(held);
        Run {
            code: output.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }

    pub fn run(mut self) -> Run {
        let mut child = self
            .command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the tool binary starts");
        let mut stdin = child.stdin.take().expect("stdin is piped");
        let bytes = std::mem::take(&mut self.stdin);
        let writer = std::thread::spawn(move || {
            let _ = stdin.write_all(&bytes);
        });
        let output = child.wait_with_output().expect("the tool runs");
        writer.join().expect("stdin writer");
        Run {
            code: output.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }
}

pub const GC_WAIT: &str = env!("CARGO_BIN_EXE_do-gc-wait");
pub const DO_SIM: &str = env!("CARGO_BIN_EXE_do-sim");
pub const DO_TAG: &str = env!("CARGO_BIN_EXE_do-tag");
pub const DEPLOY: &str = env!("CARGO_BIN_EXE_do-deploy");
pub const PRUNE: &str = env!("CARGO_BIN_EXE_do-prune");
pub const LOGIN: &str = env!("CARGO_BIN_EXE_do-login");

/// The default simulated world with GC steps and deployment phases of `step_ms`.
pub fn sim(step_ms: u64) -> Sim {
    world::default_world().step_ms(step_ms).start()
}

/// The flags that make the polling tools poll fast.
pub const FAST: [&str; 4] = ["--interval", "30ms", "--max-interval", "60ms"];

/// do-prune against `sim`, polling fast; add the flags and `.run()` it, then `.record("prune")`.
pub fn prune(sim: &Sim) -> Tool {
    Tool::against(PRUNE, sim).args(["--interval", "30ms"])
}

/// do-deploy against `sim` for the default world's `example-app`, polling fast.
pub fn deploy(sim: &Sim) -> Tool {
    Tool::against(DEPLOY, sim).args(FAST).args(["--app", "example-app"])
}

/// do-gc-wait against `sim`, polling fast.
pub fn gc_wait(sim: &Sim) -> Tool {
    Tool::against(GC_WAIT, sim).args(["--interval", "40ms", "--max-interval", "80ms"])
}

/// The least flags that give `binary` a job in the default world (do-deploy needs an app and
/// something to do).
pub fn job(binary: &str) -> Vec<&'static str> {
    if binary == DEPLOY {
        vec!["--app", "example-app", "--redeploy"]
    } else {
        vec![]
    }
}

/// The id of the world's first app.
pub fn first_app_id(sim: &Sim) -> String {
    sim.state().apps[0].id.clone()
}

/// The digests of every manifest in `repository`.
pub fn digests_in(sim: &Sim, repository: &str) -> std::collections::BTreeSet<String> {
    manifests_in(sim, repository).iter().map(|m| m["digest"].as_str().unwrap().to_string()).collect()
}

/// Requests that would change something remotely.
pub fn mutating_requests(sim: &Sim) -> Vec<do_sim::LoggedRequest> {
    sim.requests().into_iter().filter(|r| r.is_mutating()).collect()
}

/// One raw API call to the simulator: the status and the JSON body (null when empty).
/// With `token` None no Authorization header is sent.
pub fn call(sim: &Sim, method: &str, path: &str, body: Option<Value>, token: Option<&str>) -> (u16, Value) {
    let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).proxy(None).build().into();
    let mut request = ureq::http::Request::builder().method(method).uri(format!("{}{path}", sim.url()));
    if let Some(token) = token {
        request = request.header("authorization", format!("Bearer {token}"));
    }
    let mut response = match body {
        Some(body) => agent.run(request.header("content-type", "application/json").body(body.to_string()).unwrap()),
        None => agent.run(request.body(()).unwrap()),
    }
    .unwrap();
    let status = response.status().as_u16();
    let text = response.body_mut().read_to_string().unwrap_or_default();
    let value = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{method} {path}: not JSON: {e}: {text}"))
    };
    (status, value)
}

/// A DigitalOcean API client for the simulator, for tests that read what a tool left behind.
pub fn api_client(sim: &Sim) -> do_core::Client {
    let config = do_core::api::ClientConfig {
        api_url: sim.url().to_string(),
        token: do_core::api::Secret::new(sim.token()),
        retry: do_core::api::RetryPolicy { max_attempts: 2, ..Default::default() },
        request_timeout: Duration::from_secs(10),
        connect_timeout: Duration::from_secs(5),
    };
    do_core::Client::new(config, std::sync::Arc::new(do_core::progress::Progress::new("test", true, false))).unwrap()
}

/// A reader of the simulator's registry host, with read-only credentials from its API.
pub fn registry_reader(sim: &Sim, registry: &str) -> do_core::oci::RegistryClient {
    let quiet = std::sync::Arc::new(do_core::progress::Progress::new("test", true, false));
    do_core::oci::RegistryClient::from_api(
        &api_client(sim),
        registry,
        sim.registry_url(),
        Duration::from_secs(600),
        false,
        quiet,
    )
    .unwrap()
}

/// Whether an image can still be pulled whole: the manifest and, for an index, every manifest it
/// holds, read through the registry host as docker would. The error names what is missing.
pub fn fully_readable(reader: &do_core::oci::RegistryClient, repository: &str, digest: &str) -> Result<(), String> {
    let info = reader.manifest(repository, digest).map_err(|e| format!("{repository}@{digest}: {e:#}"))?;
    for child in &info.children {
        fully_readable(reader, repository, &child.digest.text())?;
    }
    Ok(())
}

/// The manifests of `repository` in the simulator's first registry, as its snapshot shows them.
pub fn manifests_in(sim: &Sim, repository: &str) -> Vec<Value> {
    let snapshot = sim.snapshot();
    snapshot["registries"][0]["repositories"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == repository)
        .map(|r| r["manifests"].as_array().unwrap().clone())
        .unwrap_or_default()
}

/// The digest `tag` names in `repository` of the simulator's first registry.
pub fn digest_in(sim: &Sim, repository: &str, tag: &str) -> String {
    manifests_in(sim, repository)
        .iter()
        .find(|m| m["tags"].as_array().unwrap().iter().any(|t| t == tag))
        .unwrap_or_else(|| panic!("no manifest tagged {tag} in {repository}"))["digest"]
        .as_str()
        .unwrap()
        .to_string()
}

/// Whether a GC runs on `registry` (read from the simulator's state, so it costs no API request
/// and no rate-limit budget).
pub fn gc_running(sim: &Sim, registry: &str) -> bool {
    sim.state().registries.get(registry).is_some_and(|r| r.active_gc(std::time::Instant::now()).is_some())
}

/// The phase of deployment `id` of the simulator's first app, from its state.
pub fn deployment_phase(sim: &Sim, id: &str) -> String {
    let snapshot = sim.snapshot();
    let deployments = snapshot["apps"][0]["deployments"].as_array().cloned().unwrap_or_default();
    deployments.iter().find(|d| d["id"] == id).and_then(|d| d["phase"].as_str()).unwrap_or("").to_string()
}

/// Waits until `done` holds, asking every 5 ms, and fails the test naming `what` when ten
/// seconds pass first: tests wait on a condition, never for a fixed time.
pub fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !done() {
        assert!(std::time::Instant::now() < deadline, "waited 10 s for {what}");
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}

/// The environment a release in a temporary repository runs with: a git identity of its own
/// (nothing of the machine's), and the simulator at `api_url` with `token`.
pub fn release_env(api_url: &str, token: &str) -> Vec<(String, String)> {
    [
        ("GIT_AUTHOR_NAME", "t"),
        ("GIT_AUTHOR_EMAIL", "t@do-release.invalid"),
        ("GIT_COMMITTER_NAME", "t"),
        ("GIT_COMMITTER_EMAIL", "t@do-release.invalid"),
        ("GIT_CONFIG_NOSYSTEM", "1"),
        ("DIGITALOCEAN_API_URL", api_url),
        ("DIGITALOCEAN_ACCESS_TOKEN", token),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

/// An executed release of `repo` with `config`, against the simulator at `api_url` with
/// `token` (`release_env`), the tools of this build, its output under `out`.
pub fn release_options(
    (api_url, token): (&str, &str),
    repo: std::path::PathBuf,
    out: std::path::PathBuf,
    config: xtask::config::Config,
) -> xtask::release::Options {
    xtask::release::Options {
        config,
        repo_dir: repo,
        execute: true,
        binaries: crate::release_binaries(),
        out_root: out,
        env: release_env(api_url, token),
        echo: false,
    }
}
