//! `cargo xtask gc-canary`: settles, on a real account, what DOCR's garbage collection does to
//! the untagged manifests an image index holds, which DigitalOcean documents nowhere. It pushes
//! a tiny synthetic multi-platform image (two platform images and an attestation, as buildx
//! makes them) to a scratch registry, notes whether the API's digests listing shows the
//! children, runs a GC of type "untagged manifests and unreferenced blobs", and reports whether
//! the children survived. The GC covers the whole registry, so it refuses any registry that
//! holds another repository.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use do_core::api::{segment, ClientConfig, RetryPolicy, Secret};
use do_core::oci::{sha256_digest, RegistryClient, OCI_INDEX, OCI_MANIFEST};
use do_core::progress::Progress;
use do_core::types::{GarbageCollection, Manifest, Repository};
use do_core::{Client, Failure};
use serde::Serialize;
use serde_json::json;

pub const GC_TYPE: &str = "untagged manifests and unreferenced blobs";

pub struct Options {
    pub api_url: String,
    pub token: Secret,
    pub registry: String,
    /// The registry host; `None` follows the API (the simulator serves both).
    pub registry_url: Option<String>,
    pub repository: String,
    pub timeout: Duration,
    pub interval: Duration,
    /// Leave the canary repository in place afterwards.
    pub keep: bool,
    pub quiet: bool,
}

#[derive(Debug, Serialize)]
pub struct CanaryReport {
    pub registry: String,
    pub repository: String,
    pub index: String,
    pub children: Vec<ChildReport>,
    /// Whether the API's digests listing shows the untagged manifests the index holds.
    pub children_listed: bool,
    pub gc_uuid: String,
    pub gc_type: String,
    pub gc_status: String,
    /// Every child is still in the registry after the GC.
    pub children_survived: bool,
    pub verdict: String,
}

#[derive(Debug, Serialize)]
pub struct ChildReport {
    pub digest: String,
    pub what: String,
    pub survived: bool,
}

pub fn run(options: &Options) -> anyhow::Result<CanaryReport> {
    let progress = Arc::new(Progress::new("gc-canary", options.quiet, false));
    let config = ClientConfig {
        api_url: options.api_url.clone(),
        token: options.token.clone(),
        retry: RetryPolicy::default(),
        request_timeout: Duration::from_secs(30),
        connect_timeout: Duration::from_secs(10),
    };
    let client = Client::new(config, progress.clone())?;
    let registry = &options.registry;
    do_core::validate::registry_name(registry)?;
    do_core::validate::repository_name(&options.repository)?;
    let registry_path = format!("/v2/registries/{}", segment(registry));
    do_core::registry::find(&client, Some(registry))?;
    let repositories: Vec<Repository> = client.get_all(&format!("{registry_path}/repositoriesV2"), "repositories")?;
    let others: Vec<&str> =
        repositories.iter().map(|r| r.name.as_str()).filter(|name| *name != options.repository).collect();
    if !others.is_empty() {
        return Err(Failure::usage(format!(
            "registry {registry} holds other repositories ({}); the canary's GC covers the whole registry and could remove what their images need: use a scratch registry",
            others.join(", ")
        )));
    }
    let gc_path = format!("{registry_path}/garbage-collection");
    if let Some(running) = client.get_object_or_none::<GarbageCollection>(&gc_path, "garbage_collection")? {
        return Err(Failure::usage(format!(
            "garbage collection {} is running on {registry}; try again after it ends",
            running.uuid
        )));
    }
    let registry_url = do_core::oci::registry_url_for(client.base_url(), options.registry_url.as_deref())?;
    let writer =
        RegistryClient::from_api(&client, registry, &registry_url, Duration::from_secs(900), true, progress.clone())?;
    progress.info(&format!("pushing a multi-platform canary image to {registry}/{}", options.repository));
    let (index, children) = push_canary(&writer, &options.repository)?;
    let listed: Vec<Manifest> = client
        .get_all(&format!("{registry_path}/repositories/{}/digests", segment(&options.repository)), "manifests")?;
    let children_listed = children.iter().all(|(digest, _)| listed.iter().any(|m| m.digest == *digest));

    progress.info(&format!("starting a garbage collection of type {GC_TYPE:?}; on DOCR this takes about 15 minutes"));
    let started: GarbageCollection =
        client.post_create(&gc_path, Some(&json!({"type": GC_TYPE})), "garbage_collection")?;
    let deadline = Instant::now() + options.timeout;
    let poller = do_core::poll::Poller {
        interval: options.interval,
        max_interval: options.interval.max(Duration::from_secs(30)),
        deadline,
    };
    let polled = poller.run(&progress, || {
        match client.get_object_or_none::<GarbageCollection>(&gc_path, "garbage_collection")? {
            Some(gc) if gc.uuid == started.uuid && !gc.status.is_terminal() => {
                Ok(do_core::poll::Check::Waiting(format!("garbage collection {} is {}", gc.uuid, gc.status)))
            }
            _ => Ok(do_core::poll::Check::Done(())),
        }
    })?;
    anyhow::ensure!(polled.outcome.is_some(), "the garbage collection {} did not end within the timeout", started.uuid);
    let recent: Vec<GarbageCollection> =
        client.get_object(&format!("{registry_path}/garbage-collections?page=1&per_page=20"), "garbage_collections")?;
    let status = recent
        .iter()
        .find(|gc| gc.uuid == started.uuid)
        .map(|gc| gc.status.to_string())
        .unwrap_or_else(|| "ended".into());

    let reader =
        RegistryClient::from_api(&client, registry, &registry_url, Duration::from_secs(600), false, progress.clone())?;
    anyhow::ensure!(
        reader.manifest_exists(&options.repository, &index)?.is_some(),
        "the tagged canary index itself is gone"
    );
    let mut reports = Vec::new();
    for (digest, what) in &children {
        let survived = reader.manifest_exists(&options.repository, digest)?.is_some();
        reports.push(ChildReport { digest: digest.clone(), what: what.clone(), survived });
    }
    let children_survived = reports.iter().all(|c| c.survived);
    let verdict = if children_survived {
        "this registry's untagged GC keeps the manifests a tagged index holds".to_string()
    } else {
        "this registry's untagged GC deletes the manifests a tagged index holds: never run an untagged GC while an index must stay".to_string()
    };
    if !options.keep {
        client
            .delete(&format!("{registry_path}/repositories/{}", segment(&options.repository)))
            .context("could not delete the canary repository; delete it by hand")?;
    }
    Ok(CanaryReport {
        registry: registry.clone(),
        repository: options.repository.clone(),
        index,
        children: reports,
        children_listed,
        gc_uuid: started.uuid,
        gc_type: GC_TYPE.into(),
        gc_status: status,
        children_survived,
        verdict,
    })
}

/// Pushes two tiny platform images, an attestation of the first, and the index tagged
/// `canary`; returns the index digest and the children (digest, what it is).
fn push_canary(writer: &RegistryClient, repository: &str) -> anyhow::Result<(String, Vec<(String, String)>)> {
    let stamp = do_core::duration::now_rfc3339();
    let mut children: Vec<(String, String)> = Vec::new();
    let mut entries = Vec::new();
    for (what, platform, layer_type) in [
        ("linux/amd64 image", Some(("linux", "amd64")), "application/vnd.oci.image.layer.v1.tar+gzip"),
        ("linux/arm64 image", Some(("linux", "arm64")), "application/vnd.oci.image.layer.v1.tar+gzip"),
        ("attestation", None, "application/vnd.in-toto+json"),
    ] {
        let config = format!(
            "{{\"architecture\":\"{}\",\"os\":\"linux\",\"created\":\"{stamp}\"}}",
            platform.map_or("unknown", |p| p.1)
        );
        let layer = format!("do-release gc canary: {what} at {stamp}\n");
        let config_digest = writer.push_blob(repository, config.as_bytes())?;
        let layer_digest = writer.push_blob(repository, layer.as_bytes())?;
        let manifest = serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": config.len()},
            "layers": [{"mediaType": layer_type, "digest": layer_digest, "size": layer.len()}],
        }))?;
        let digest = sha256_digest(&manifest);
        writer.push_manifest(repository, &digest, OCI_MANIFEST, &manifest)?;
        let mut entry = json!({"mediaType": OCI_MANIFEST, "digest": digest, "size": manifest.len()});
        match platform {
            Some((os, architecture)) => entry["platform"] = json!({"os": os, "architecture": architecture}),
            None => {
                entry["platform"] = json!({"os": "unknown", "architecture": "unknown"});
                entry["annotations"] = json!({"vnd.docker.reference.type": "attestation-manifest", "vnd.docker.reference.digest": children[0].0});
            }
        }
        entries.push(entry);
        children.push((digest, what.to_string()));
    }
    let index = serde_json::to_vec(&json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries}))?;
    let digest = writer.push_manifest(repository, "canary", OCI_INDEX, &index)?;
    Ok((digest, children))
}
