//! The registry reader against registries: the simulator's registry host (Bearer token
//! challenge, as DOCR) and a real one nobody here wrote, Debian's `docker-registry`
//! (distribution 2.8) on 127.0.0.1 with Basic authentication. A multi-platform index with an
//! attestation is pushed to it with plain HTTP PUTs and read back through the reader.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use do_core::api::{RetryPolicy, Secret};
use do_core::digest::Digest;
use do_core::oci::{sha256_digest, NotInRegistry, RegistryClient, RegistryConfig, OCI_INDEX, OCI_MANIFEST};
use serde_json::json;

use crate::support::{call, registry_reader, sim, world};

const BINARY: &str = "/usr/bin/docker-registry";
const USER: &str = "reader";
const PASSWORD: &str = "reader-test-password";
/// bcrypt of PASSWORD (distribution's htpasswd takes bcrypt only).
const HTPASSWD: &str = "reader:$2y$04$1KFW.As15j1UExqBr6LNrejaIUcFHHpk//hkUhZquNJngTprlxq4m\n";

/// A docker-registry process on a free loopback port; killed when dropped.
struct RealRegistry {
    child: Child,
    url: String,
    config: PathBuf,
    _dir: tempfile::TempDir,
}

impl Drop for RealRegistry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Installs Debian's docker-registry when it is missing and this is a root Debian machine (as
/// CI is); anywhere else the message says what to install.
fn ensure_installed() {
    if Path::new(BINARY).exists() {
        return;
    }
    let root = Command::new("id").arg("-u").output().is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0");
    if root && Path::new("/usr/bin/apt-get").exists() {
        for args in [&["update", "-qq"][..], &["install", "-y", "-qq", "docker-registry"][..]] {
            let status = Command::new("apt-get").args(args).env("DEBIAN_FRONTEND", "noninteractive").status();
            assert!(status.is_ok_and(|s| s.success()), "apt-get {args:?} failed");
        }
    }
    assert!(
        Path::new(BINARY).exists(),
        "this test needs Debian's docker-registry: apt-get install docker-registry (.ci/run installs it)"
    );
}

fn start_real_registry() -> RealRegistry {
    ensure_installed();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("htpasswd"), HTPASSWD).unwrap();
    let config = dir.path().join("config.yml");
    std::fs::write(
        &config,
        format!(
            "version: 0.1\nlog:\n  level: info\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:0\nauth:\n  htpasswd:\n    realm: basic-realm\n    path: {}\n",
            dir.path().join("data").display(),
            dir.path().join("htpasswd").display()
        ),
    )
    .unwrap();
    let mut child = Command::new(BINARY)
        .args(["serve", config.to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("docker-registry starts");
    let stderr = child.stderr.take().unwrap();
    let (found, listening) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut sent = false;
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let (false, Some(at)) = (sent, line.find("listening on ")) {
                let address: String = line[at + 13..].chars().take_while(|c| !c.is_whitespace() && *c != '"').collect();
                let _ = found.send(address);
                sent = true;
            }
        }
    });
    let address = listening.recv_timeout(Duration::from_secs(20)).expect("docker-registry says where it listens");
    RealRegistry { child, url: format!("http://{address}"), config, _dir: dir }
}

fn client(url: &str, password: &str) -> RegistryClient {
    let config = RegistryConfig {
        url: url.to_string(),
        registry: "reg".into(),
        credentials: Secret::new(format!("{USER}:{password}")),
        retry: RetryPolicy { max_attempts: 2, base_delay: Duration::from_millis(20), ..RetryPolicy::default() },
        request_timeout: Duration::from_secs(10),
        deadline: None,
    };
    RegistryClient::new(config, Arc::new(do_core::progress::Progress::new("test", true, false))).unwrap()
}

/// Pushes an image (a config and one layer) and returns its manifest's bytes and digest.
fn push_image(
    registry: &RegistryClient,
    repository: &str,
    name: &str,
    layer_type: &str,
    subject: Option<(&str, &str, usize)>,
) -> (String, usize) {
    let config = json!({
        "architecture": "amd64",
        "os": "linux",
        "config": {"Labels": {"org.opencontainers.image.revision": format!("revision of {name}")}},
        "rootfs": {"type": "layers", "diff_ids": []},
    })
    .to_string();
    let layer = format!("the layer of {name}").repeat(40);
    let config_digest = registry.push_blob(repository, config.as_bytes()).unwrap();
    let layer_digest = registry.push_blob(repository, layer.as_bytes()).unwrap();
    let mut manifest = json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": config.len()},
        "layers": [{"mediaType": layer_type, "digest": layer_digest, "size": layer.len()}],
    });
    if let Some((media_type, digest, size)) = subject {
        manifest["subject"] = json!({"mediaType": media_type, "digest": digest, "size": size});
    }
    let bytes = serde_json::to_vec(&manifest).unwrap();
    let digest = sha256_digest(&bytes);
    assert_eq!(registry.push_manifest(repository, &digest, OCI_MANIFEST, &bytes).unwrap(), digest);
    (digest, bytes.len())
}

/// A buildx-style multi-platform image: amd64 and arm64 images, an attestation for amd64, the
/// index tagged `tag`. Returns (index digest, [amd64, arm64, attestation]).
fn push_index(registry: &RegistryClient, repository: &str, tag: &str) -> (String, [String; 3]) {
    let (amd64, amd64_size) =
        push_image(registry, repository, &format!("{tag} amd64"), "application/vnd.oci.image.layer.v1.tar+gzip", None);
    let (arm64, arm64_size) =
        push_image(registry, repository, &format!("{tag} arm64"), "application/vnd.oci.image.layer.v1.tar+gzip", None);
    let (attestation, attestation_size) =
        push_image(registry, repository, &format!("{tag} provenance"), "application/vnd.in-toto+json", None);
    let index = json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [
            {"mediaType": OCI_MANIFEST, "digest": amd64, "size": amd64_size, "platform": {"os": "linux", "architecture": "amd64"}},
            {"mediaType": OCI_MANIFEST, "digest": arm64, "size": arm64_size, "platform": {"os": "linux", "architecture": "arm64", "variant": "v8"}},
            {"mediaType": OCI_MANIFEST, "digest": attestation, "size": attestation_size, "platform": {"os": "unknown", "architecture": "unknown"},
             "annotations": {"vnd.docker.reference.type": "attestation-manifest", "vnd.docker.reference.digest": amd64}},
        ],
    });
    let bytes = serde_json::to_vec(&index).unwrap();
    let digest = registry.push_manifest(repository, tag, OCI_INDEX, &bytes).unwrap();
    (digest, [amd64, arm64, attestation])
}

#[test]
fn the_reader_reads_a_multi_arch_index_from_a_real_registry() {
    let real = start_real_registry();
    let registry = client(&real.url, PASSWORD);
    let (index, [amd64, arm64, attestation]) = push_index(&registry, "web", "v1");

    let by_tag = registry.manifest("web", "v1").unwrap();
    assert_eq!(by_tag.digest, index, "the registry's Docker-Content-Digest");
    let info = registry.manifest("web", &index).unwrap();
    assert!(info.is_index());
    assert_eq!(info.media_type, OCI_INDEX);
    let children: Vec<(Digest, Option<&str>, Option<Digest>)> =
        info.children.iter().map(|c| (c.digest.clone(), c.platform.as_deref(), c.attestation_of.clone())).collect();
    assert_eq!(
        children,
        [
            (amd64.as_str().into(), Some("linux/amd64"), None),
            (arm64.as_str().into(), Some("linux/arm64/v8"), None),
            (attestation.as_str().into(), Some("unknown/unknown"), Some(amd64.as_str().into()))
        ]
    );
    for child in [&amd64, &arm64, &attestation] {
        let read = registry.manifest("web", child).unwrap();
        assert_eq!((read.media_type.as_str(), read.children.len()), (OCI_MANIFEST, 0));
        let head = registry.manifest_exists("web", child).unwrap();
        assert_eq!(head, Some((OCI_MANIFEST.to_string(), child.clone())));
    }
    // A referrer: a signature whose subject is the index.
    let (signature, _) = push_image(
        &registry,
        "web",
        "signature",
        "application/vnd.dev.cosign.simplesigning.v1+json",
        Some((OCI_INDEX, &index, 1)),
    );
    assert_eq!(registry.manifest("web", &signature).unwrap().subject, Some(index.as_str().into()));

    let missing = format!("sha256:{}", "0".repeat(64));
    let error = registry.manifest("web", &missing).unwrap_err();
    assert!(error.chain().any(|c| c.is::<NotInRegistry>()), "{error:#}");
    assert_eq!(registry.manifest_exists("web", &missing).unwrap(), None);
    let refused = client(&real.url, "not-the-password").manifest("web", &index).unwrap_err().to_string();
    assert!(refused.contains("401") && !refused.contains("not-the-password"), "{refused}");
}

/// Why do-prune never lets an untagged GC run while an index is kept: distribution's own GC
/// deletes the untagged manifests an index holds (distribution/distribution#3178, fixed only in v3).
#[test]
fn image_labels_are_read_through_the_index_from_a_real_registry_and_the_simulator() {
    let real = start_real_registry();
    let registry = client(&real.url, PASSWORD);
    let (index, _) = push_index(&registry, "web", "v1");
    let (digest, labels) = registry.image_labels("web", "v1").unwrap().expect("v1 is there");
    assert_eq!(digest, index);
    assert_eq!(
        labels["org.opencontainers.image.revision"], "revision of v1 amd64",
        "the first platform image's config"
    );
    assert!(registry.image_labels("web", "v404").unwrap().is_none(), "no such tag: none, not an error");

    // The simulator keeps configs' bytes, so the same reading works through its token challenge.
    let sim = sim(30);
    let body = json!({"repository": "web", "tag": "v9", "platforms": ["linux/amd64", "linux/arm64"],
                      "labels": {"org.opencontainers.image.revision": "abc123"}});
    assert_eq!(call(&sim, "POST", "/_sim/push", Some(body), None).0, 201);
    let reader = registry_reader(&sim, "example-registry");
    let (_, labels) = reader.image_labels("web", "v9").unwrap().unwrap();
    assert_eq!(labels.get("org.opencontainers.image.revision").map(String::as_str), Some("abc123"));
    let (_, unlabelled) = reader.image_labels("web", "v1.0.0").unwrap().unwrap();
    assert!(unlabelled.is_empty());
}

#[test]
fn a_real_registry_gc_of_untagged_manifests_breaks_an_index() {
    let real = start_real_registry();
    let registry = client(&real.url, PASSWORD);
    let (index, children) = push_index(&registry, "web", "v1");
    let output = Command::new(BINARY)
        .args(["garbage-collect", "--delete-untagged", real.config.to_str().unwrap()])
        .output()
        .expect("docker-registry garbage-collect runs");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert!(registry.manifest("web", &index).is_ok(), "the tagged index stays");
    let gone: Vec<&String> = children
        .iter()
        .filter(|c| registry.manifest("web", c).is_err_and(|e| e.chain().any(|c| c.is::<NotInRegistry>())))
        .collect();
    assert_eq!(gone.len(), 3, "every child went: the image can no longer be pulled");
}

#[test]
fn the_simulator_registry_speaks_the_same_protocol_behind_a_token_challenge() {
    let sim = sim(30);
    let (status, _) = call(&sim, "GET", "/v2/", None, None);
    assert_eq!(status, 401, "no credentials, no registry");
    // Read-only credentials from the API cannot push; read-write ones can, but not during a GC.
    let reader = registry_reader(&sim, "example-registry");
    let push = reader.push_blob("web", b"layer").unwrap_err().to_string();
    assert!(push.contains("refused"), "{push}");
    let auths = crate::support::api_client(&sim)
        .get_object::<serde_json::Value>("/v2/registries/example-registry/docker-credentials?read_write=true", "auths")
        .unwrap();
    let writer = RegistryClient::new(
        RegistryConfig {
            url: sim.registry_url().to_string(),
            registry: "example-registry".into(),
            credentials: do_core::oci::credentials_for(&auths, sim.registry_url()).unwrap(),
            retry: RetryPolicy { max_attempts: 1, ..RetryPolicy::default() },
            request_timeout: Duration::from_secs(5),
            deadline: None,
        },
        Arc::new(do_core::progress::Progress::new("test", true, false)),
    )
    .unwrap();
    let (index, children) = push_index(&writer, "web", "v9");
    let info = reader.manifest("web", "v9").unwrap();
    assert_eq!((info.digest.to_string(), info.children.len()), (index.clone(), 3));
    crate::support::fully_readable(&reader, "web", &index).unwrap();
    assert!(children.iter().all(|c| reader.manifest_exists("web", c).unwrap().is_some()));
    // An index that holds a manifest the repository does not have is refused, as by distribution.
    let dangling = serde_json::to_vec(&json!({"schemaVersion": 2, "mediaType": OCI_INDEX,
        "manifests": [{"mediaType": OCI_MANIFEST, "digest": format!("sha256:{}", "1".repeat(64)), "size": 1}]}))
    .unwrap();
    assert!(writer
        .push_manifest("web", "broken", OCI_INDEX, &dangling)
        .unwrap_err()
        .to_string()
        .contains("MANIFEST_BLOB_UNKNOWN"));
    // The registry is read-only while a GC runs: no write token, no push.
    sim.start_gc_with("example-registry", &[("scanning manifests", 5_000)], "succeeded").unwrap();
    let refused = writer.push_blob("web", b"a layer pushed during GC").unwrap_err().to_string();
    assert!(refused.contains("no write tokens are issued"), "{refused}");
    assert!(sim.registry_requests().iter().all(|r| r.authorization != "api-token"));
}

fn canary_options(sim: &do_sim::Sim, registry: &str) -> xtask::canary::Options {
    xtask::canary::Options {
        api_url: sim.url().to_string(),
        token: Secret::new(sim.token()),
        registry: registry.to_string(),
        registry_url: None,
        repository: "do-release-gc-canary".into(),
        timeout: Duration::from_secs(20),
        interval: Duration::from_millis(20),
        keep: false,
        quiet: true,
    }
}

fn scratch_registry(gc_keeps_index_children: bool, hide_index_children: bool) -> do_sim::Sim {
    world::seeded(json!({"registries": [{"name": "scratch", "tier": "professional",
        "gc_keeps_index_children": gc_keeps_index_children, "hide_index_children": hide_index_children}]}))
    .step_ms(20)
    .start()
}

#[test]
fn the_gc_canary_tells_a_registry_that_breaks_indexes_from_one_that_does_not() {
    let worst = scratch_registry(false, false);
    let report = xtask::canary::run(&canary_options(&worst, "scratch")).unwrap();
    assert!(!report.children_survived, "{report:?}");
    assert!(report.children.iter().all(|c| !c.survived));
    assert!(report.children_listed);
    assert_eq!((report.gc_type.as_str(), report.gc_status.as_str()), (xtask::canary::GC_TYPE, "succeeded"));
    assert!(report.verdict.contains("deletes the manifests a tagged index holds"), "{}", report.verdict);
    assert!(worst.snapshot()["registries"][0]["repositories"].as_array().unwrap().is_empty(), "the canary cleans up");

    let problems: Vec<String> = worst
        .requests()
        .iter()
        .flat_map(|r| crate::openapi::check_request(&r.method, &r.url, r.body.as_deref()))
        .collect();
    assert!(problems.is_empty(), "the canary strays from the spec:\n{}", problems.join("\n"));

    let kind = scratch_registry(true, true);
    let report = xtask::canary::run(&canary_options(&kind, "scratch")).unwrap();
    assert!(report.children_survived, "{report:?}");
    assert_eq!(report.children.len(), 3);
    assert!(!report.children_listed, "this registry's listing hides index children");
    assert!(report.verdict.contains("keeps the manifests a tagged index holds"), "{}", report.verdict);
}

#[test]
fn the_gc_canary_refuses_a_registry_with_other_repositories() {
    let sim = sim(20);
    let error = xtask::canary::run(&canary_options(&sim, "example-registry")).unwrap_err();
    assert_eq!(do_core::exit::exit_code_of(&error), do_core::Exit::Usage);
    assert!(error.to_string().contains("holds other repositories (web)"), "{error}");
    assert!(crate::support::mutating_requests(&sim).is_empty());
    assert!(sim.registry_requests().is_empty(), "nothing pushed");
}
