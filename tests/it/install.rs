//! The GitHub Action's installer (`scripts/install.sh`, as `action.yml` runs it) against
//! archives made by `cargo xtask dist`'s packer and served from 127.0.0.1: the right checksum
//! installs, a wrong one or an unknown target installs nothing, and the action's metadata and
//! release workflow have the shape the installer relies on.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

const VERSION: &str = "9.8.7";
const TARGET: &str = "x86_64-unknown-linux-musl";

/// Small stand-ins for the tools: each prints its name.
fn fake_binaries(dir: &Path) -> PathBuf {
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    for tool in xtask::dist::TOOLS {
        std::fs::write(bin.join(tool), format!("#!/bin/sh\necho {tool} {VERSION}\n")).unwrap();
    }
    bin
}

/// Serves the files of `dir` on 127.0.0.1 until dropped; returns the base URL and a log of paths.
struct Server {
    url: String,
    requests: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    _thread: std::thread::JoinHandle<()>,
}

fn serve(dir: PathBuf) -> Server {
    let server = tiny_http::Server::http("127.0.0.1:0").unwrap();
    let url = format!("http://{}", server.server_addr().to_ip().unwrap());
    let requests = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let log = requests.clone();
    let thread = std::thread::spawn(move || {
        for request in server.incoming_requests() {
            let path = request.url().trim_start_matches('/').to_string();
            log.lock().unwrap().push(path.clone());
            let file = dir.join(&path);
            let _ = match std::fs::read(&file) {
                Ok(bytes) if !path.contains("..") => request.respond(tiny_http::Response::from_data(bytes)),
                _ => request.respond(tiny_http::Response::empty(404)),
            };
        }
    });
    Server { url, requests, _thread: thread }
}

/// A copy of the action: its install script and a checksums file for VERSION.
fn action_with_checksums(dir: &Path, lines: &str) -> PathBuf {
    let action = dir.join("action");
    std::fs::create_dir_all(action.join("scripts")).unwrap();
    std::fs::create_dir_all(action.join("dist/checksums")).unwrap();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/install.sh");
    std::fs::copy(script, action.join("scripts/install.sh")).unwrap();
    std::fs::write(action.join(format!("dist/checksums/v{VERSION}.sha256")), lines).unwrap();
    action
}

struct Installed {
    _home: tempfile::TempDir,
    code: i32,
    stderr: String,
    stdout: String,
    dest: PathBuf,
    github_path: String,
}

fn install(action: &Path, base: &str, env: &[(&str, &str)]) -> Installed {
    let home_dir = tempfile::tempdir().unwrap();
    let home = home_dir.path().to_path_buf();
    let dest = home.join("tools/bin");
    let github_path = home.join("github_path");
    let mut command = Command::new("bash");
    command
        .arg(action.join("scripts/install.sh"))
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap())
        .env("HOME", &home)
        .env("DO_RELEASE_VERSION", format!("v{VERSION}"))
        .env("DO_RELEASE_TARGET", TARGET)
        .env("DO_RELEASE_DOWNLOAD_URL", base)
        .env("DO_RELEASE_INSTALL_DIR", &dest)
        .env("GITHUB_PATH", &github_path);
    for (key, value) in env {
        command.env(key, value);
    }
    let output = command.output().unwrap();
    Installed {
        _home: home_dir,
        code: output.status.code().unwrap_or(-1),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        github_path: std::fs::read_to_string(&github_path).unwrap_or_default(),
        dest,
    }
}

fn installed_tools(dest: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dest)
        .map(|entries| entries.map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default();
    names.sort();
    names
}

#[test]
fn the_right_checksum_installs_and_anything_else_installs_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let served = dir.path().join("served");
    let archive = xtask::dist::pack(&fake_binaries(dir.path()), VERSION, TARGET, &served, 1_000_000).unwrap();
    let name = format!("do-release-{VERSION}-{TARGET}.tar.gz");
    assert_eq!(archive.path, served.join(&name));
    let sha_line = std::fs::read_to_string(&archive.checksum_file).unwrap();
    assert_eq!(sha_line, format!("{}  {name}\n", archive.sha256), "sha256sum's format");
    let check =
        Command::new("sha256sum").arg("--check").arg(&archive.checksum_file).current_dir(&served).output().unwrap();
    assert!(check.status.success(), "sha256sum agrees: {}", String::from_utf8_lossy(&check.stdout));
    let server = serve(served.clone());

    // Other targets' lines beside it, as the release commits them.
    let other = format!("{}  do-release-{VERSION}-aarch64-apple-darwin.tar.gz\n", "0".repeat(64));
    let action = action_with_checksums(dir.path(), &format!("{other}{sha_line}"));
    let ok = install(&action, &server.url, &[]);
    assert_eq!(ok.code, 0, "{}", ok.stderr);
    assert_eq!(installed_tools(&ok.dest), ["do-deploy", "do-gc-wait", "do-login", "do-prune", "do-sim", "do-tag"]);
    let ran = Command::new(ok.dest.join("do-deploy")).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&ran.stdout), format!("do-deploy {VERSION}\n"));
    assert_eq!(ok.github_path.trim(), ok.dest.to_str().unwrap(), "the tools are put on PATH");
    assert!(ok.stdout.contains("checked and installed"), "{}", ok.stdout);

    let some = install(&action, &server.url, &[("DO_RELEASE_TOOLS", "do-deploy,do-login")]);
    assert_eq!(some.code, 0, "{}", some.stderr);
    assert_eq!(installed_tools(&some.dest), ["do-deploy", "do-login"]);

    // A wrong checksum: the archive is downloaded, refused, and nothing is installed.
    let wrong = action_with_checksums(&dir.path().join("wrong"), &format!("{}  {name}\n", "ab".repeat(32)));
    let refused = install(&wrong, &server.url, &[]);
    assert_eq!(refused.code, 1);
    assert!(
        refused.stderr.contains("checksum mismatch") && refused.stderr.contains("nothing was installed"),
        "{}",
        refused.stderr
    );
    assert!(installed_tools(&refused.dest).is_empty() && refused.github_path.is_empty());

    let requests_before = server.requests.lock().unwrap().len();
    let cases = [
        (
            ("DO_RELEASE_TARGET", "riscv64gc-unknown-linux-gnu"),
            "no prebuilt do-release v9.8.7 for riscv64gc-unknown-linux-gnu",
        ),
        (("DO_RELEASE_VERSION", "1.0.0"), "no checksums for v1.0.0 in this action"),
        (("DO_RELEASE_VERSION", "main"), "no checksums for vmain"),
        (("DO_RELEASE_VERSION", ""), "no version given"),
        (("DO_RELEASE_VERSION", "1.0;rm -rf /"), "invalid version"),
        (("DO_RELEASE_TOOLS", "do-tag,curl"), "unknown tool \"curl\""),
        (("DO_RELEASE_DOWNLOAD_URL", "http://example.com/x"), "https only"),
        (("DO_RELEASE_DOWNLOAD_URL", "http://127.0.0.1:80@example.invalid/x"), "with no user info"),
        (("DO_RELEASE_DOWNLOAD_URL", "http://localhost@example.invalid/x"), "with no user info"),
        (("DO_RELEASE_DOWNLOAD_URL", "https://user:pass@example.invalid/x"), "with no user info"),
        (("DO_RELEASE_DOWNLOAD_URL", "http://127.0.0.1.example.invalid/x"), "https only"),
    ];
    for (env, message) in cases {
        let run = install(&action, &server.url, &[env]);
        assert_eq!(run.code, 1, "{env:?}: {}", run.stderr);
        assert!(run.stderr.contains(message), "{env:?}: {}", run.stderr);
        assert!(installed_tools(&run.dest).is_empty(), "{env:?} installed something");
    }
    assert_eq!(server.requests.lock().unwrap().len(), requests_before, "refused before any download");
}

#[test]
fn the_packer_holds_every_binary_to_the_size_budget() {
    let dir = tempfile::tempdir().unwrap();
    let bin = fake_binaries(dir.path());
    std::fs::write(bin.join("do-prune"), vec![b'x'; 2048]).unwrap();
    let error = xtask::dist::pack(&bin, VERSION, TARGET, &dir.path().join("out"), 1024).unwrap_err();
    assert!(error.to_string().contains("do-prune is 2048 bytes, over the budget of 1024"), "{error}");
    assert!(!dir.path().join("out").join(format!("do-release-{VERSION}-{TARGET}.tar.gz")).exists());
    assert!(xtask::dist::pack(&bin, VERSION, "../evil", &dir.path().join("out"), 1 << 20).is_err());
}

fn yaml(path: &str) -> Value {
    let text = std::fs::read_to_string(format!("{}/{path}", env!("CARGO_MANIFEST_DIR"))).unwrap();
    do_deploy::specfile::parse_yaml(&text).unwrap()
}

#[test]
fn an_action_pinned_by_commit_installs_the_release_it_belongs_to() {
    let dir = tempfile::tempdir().unwrap();
    let served = dir.path().join("served");
    let archive = xtask::dist::pack(&fake_binaries(dir.path()), VERSION, TARGET, &served, 1_000_000).unwrap();
    let action = action_with_checksums(dir.path(), &std::fs::read_to_string(&archive.checksum_file).unwrap());
    let server = serve(served);
    // Without dist/VERSION, a commit ref names no version.
    let commit = "0123456789abcdef0123456789abcdef01234567";
    let run = install(&action, &server.url, &[("DO_RELEASE_VERSION", commit)]);
    assert_eq!(run.code, 1);
    assert!(run.stderr.contains("no checksums for v0123456789"), "{}", run.stderr);
    // The release commits its version beside its checksums: a commit pin, or an empty ref, finds it.
    std::fs::write(action.join("dist/VERSION"), format!("{VERSION}\n")).unwrap();
    for version in [commit, ""] {
        let run = install(&action, &server.url, &[("DO_RELEASE_VERSION", version)]);
        assert_eq!(run.code, 0, "{version:?}: {}", run.stderr);
        assert_eq!(installed_tools(&run.dest).len(), 6);
        assert!(run.stdout.contains(&format!("v{VERSION}")), "{}", run.stdout);
    }
    // A version given on purpose wins over the file.
    let run = install(&action, &server.url, &[("DO_RELEASE_VERSION", "1.0.0")]);
    assert!(run.stderr.contains("no checksums for v1.0.0"), "{}", run.stderr);
}

#[test]
fn the_action_installs_its_own_tag_by_default_and_builds_from_source_on_request() {
    let action = yaml("action.yml");
    assert_eq!(action["runs"]["using"], "composite");
    assert_eq!(action["inputs"]["version"]["default"], "${{ github.action_ref }}");
    assert_eq!(action["inputs"]["tools"]["default"], "all");
    let steps = action["runs"]["steps"].as_array().unwrap();
    let run_of = |id: &str| steps.iter().find(|s| s["id"] == id).and_then(|s| s["run"].as_str()).unwrap().to_string();
    assert!(run_of("prebuilt").contains("scripts/install.sh"));
    assert!(run_of("source").contains("cargo install --locked"));
    for step in steps.iter().filter(|s| s.get("uses").is_some()) {
        let pin = step["uses"].as_str().unwrap().split_once('@').unwrap().1;
        assert!(pin.len() == 40 && pin.bytes().all(|b| b.is_ascii_hexdigit()), "{step:?} is not pinned by commit");
    }
    assert!(std::fs::metadata(concat!(env!("CARGO_MANIFEST_DIR"), "/dist/checksums/README.md")).is_ok());

    let release = yaml(".github/workflows/release.yml");
    let targets: Vec<&str> = release["jobs"]["build"]["strategy"]["matrix"]["include"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["target"].as_str().unwrap())
        .collect();
    assert_eq!(
        targets,
        ["x86_64-unknown-linux-musl", "aarch64-unknown-linux-musl", "aarch64-apple-darwin", "x86_64-apple-darwin"]
    );
    assert_eq!(release["permissions"]["contents"], "read", "write only where the release is published");
    assert_eq!(release["jobs"]["publish"]["permissions"]["contents"], "write");
    let ci = yaml(".github/workflows/ci.yml");
    assert!(ci["jobs"]["ci"]["steps"].as_array().unwrap().iter().any(|s| s["run"] == "bash .ci/run"));
}

#[test]
fn an_archive_whose_tool_is_a_link_installs_nothing_though_its_checksum_matches() {
    let dir = tempfile::tempdir().unwrap();
    let served = dir.path().join("served");
    std::fs::create_dir_all(&served).unwrap();
    let inner = format!("do-release-{VERSION}-{TARGET}");
    let staging = dir.path().join("staging");
    let bin = staging.join(&inner);
    std::fs::create_dir_all(&bin).unwrap();
    for tool in xtask::dist::TOOLS {
        std::fs::write(bin.join(tool), "#!/bin/sh\n").unwrap();
    }
    std::fs::remove_file(bin.join("do-deploy")).unwrap();
    std::os::unix::fs::symlink("/bin/sh", bin.join("do-deploy")).unwrap();
    let name = format!("{inner}.tar.gz");
    let packed = Command::new("tar").arg("-czf").arg(served.join(&name)).arg("-C").arg(&staging).arg(&inner).status();
    assert!(packed.unwrap().success());
    let sum = Command::new("sha256sum").arg(&name).current_dir(&served).output().unwrap();
    let action = action_with_checksums(dir.path(), &String::from_utf8(sum.stdout).unwrap());
    let server = serve(served);
    let run = install(&action, &server.url, &[]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(run.stderr.contains("has no do-deploy as a regular file; nothing was installed"), "{}", run.stderr);
    assert!(installed_tools(&run.dest).is_empty(), "not even the regular ones");
}
