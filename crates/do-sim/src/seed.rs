//! What the simulator starts with: the default world, or a JSON state file.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde::Deserialize;
use serde_json::{json, Value};

use crate::content;
use crate::state::{now_rfc3339, tier, Manifest, Outcome, RateLimit, Registry, State, Timing};

pub const DEFAULT_TOKEN: &str = "sim-token";
pub const DEFAULT_REGISTRY: &str = "example-registry";
pub const DEFAULT_REPOSITORY: &str = "web";
pub const DEFAULT_APP: &str = "example-app";

/// The state file format (`do-sim --state FILE`). Every field may be left out.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Seed {
    pub token: Option<String>,
    pub timing: Option<Timing>,
    pub rate_limit: Option<RateLimit>,
    /// Milliseconds added to every API and registry-host request.
    pub latency_ms: Option<u64>,
    pub registries: Vec<SeedRegistry>,
    pub apps: Vec<SeedApp>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeedRegistry {
    pub name: String,
    #[serde(default = "default_region")]
    pub region: String,
    /// `starter`, `basic` or `professional`.
    #[serde(default = "default_tier")]
    pub tier: String,
    #[serde(default)]
    pub repositories: Vec<SeedRepository>,
    /// A garbage collection already running when the simulator starts.
    #[serde(default)]
    pub running_gc: Option<SeedGc>,
    /// The API's digests listing leaves out untagged manifests an index holds.
    #[serde(default)]
    pub hide_index_children: bool,
    /// The registry host answers the OCI referrers API.
    #[serde(default)]
    pub referrers_api: bool,
    /// GC of an untagged type spares untagged manifests a tagged index holds (off: the worst
    /// case, as distribution 2.x behaves).
    #[serde(default)]
    pub gc_keeps_index_children: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeedGc {
    #[serde(rename = "type", default = "default_gc_type")]
    pub gc_type: String,
    /// Statuses and how long each lasts; the standard sequence when left out.
    #[serde(default)]
    pub plan: Option<Vec<SeedGcStep>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeedGcStep {
    pub status: String,
    pub ms: u64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeedRepository {
    pub name: String,
    #[serde(default)]
    pub manifests: Vec<SeedManifest>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeedManifest {
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default)]
    pub size_bytes: u64,
    /// RFC 3339; the order of the list decides recency when left out.
    #[serde(default)]
    pub updated_at: Option<String>,
    /// Push a multi-platform index (`["linux/amd64", "linux/arm64"]`) instead of one image:
    /// its platform manifests are untagged children, each of `size_bytes`.
    #[serde(default)]
    pub platforms: Vec<String>,
    /// With `platforms`: an attestation manifest per platform, as buildx adds by default.
    #[serde(default)]
    pub attestations: bool,
    /// An artifact of the image seeded earlier in this repository with this tag, as cosign
    /// pushes it (`tags` and `platforms` are then ignored): one of these four.
    #[serde(default)]
    pub signature_of: Option<String>,
    #[serde(default)]
    pub attestation_of: Option<String>,
    #[serde(default)]
    pub sbom_of: Option<String>,
    #[serde(default)]
    pub referrer_of: Option<String>,
    /// With `referrer_of`: also the referrers fallback index, tagged `sha256-<digest>`.
    #[serde(default)]
    pub fallback_tag: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeedApp {
    #[serde(default)]
    pub id: Option<String>,
    pub spec: Value,
    /// Start with an ACTIVE deployment of the spec (default true).
    #[serde(default = "yes")]
    pub active: bool,
    #[serde(default)]
    pub next_outcome: Outcome,
}

fn default_region() -> String {
    "fra1".into()
}
fn default_tier() -> String {
    "basic".into()
}
fn default_gc_type() -> String {
    crate::state::DEFAULT_GC_TYPE.into()
}
fn yes() -> bool {
    true
}

impl Seed {
    /// One registry `example-registry` (Basic tier) with a repository `web` of three tagged
    /// images, the newest also tagged `latest`, and one app `example-app` whose service `web`
    /// runs `web:v1.2.0` with an ACTIVE deployment.
    pub fn default_world() -> Seed {
        let manifest = |tags: &[&str], mib: u64| SeedManifest {
            tags: tags.iter().map(|t| t.to_string()).collect(),
            size_bytes: mib * 1024 * 1024,
            updated_at: None,
            platforms: Vec::new(),
            attestations: false,
            signature_of: None,
            attestation_of: None,
            sbom_of: None,
            referrer_of: None,
            fallback_tag: false,
        };
        Seed {
            registries: vec![SeedRegistry {
                name: DEFAULT_REGISTRY.into(),
                region: default_region(),
                tier: default_tier(),
                repositories: vec![SeedRepository {
                    name: DEFAULT_REPOSITORY.into(),
                    manifests: vec![
                        manifest(&["v1.0.0"], 40),
                        manifest(&["v1.1.0"], 42),
                        manifest(&["v1.2.0", "latest"], 45),
                    ],
                }],
                running_gc: None,
                hide_index_children: false,
                referrers_api: false,
                gc_keeps_index_children: false,
            }],
            apps: vec![SeedApp {
                id: None,
                spec: default_app_spec(DEFAULT_APP, DEFAULT_REPOSITORY, "v1.2.0"),
                active: true,
                next_outcome: Outcome::Success,
            }],
            ..Seed::default()
        }
    }

    pub fn into_state(self, default_token: &str, timing: Timing) -> anyhow::Result<State> {
        let now = Instant::now();
        let mut state =
            State::new(self.token.unwrap_or_else(|| default_token.to_string()), self.timing.unwrap_or(timing));
        if let Some(rate_limit) = self.rate_limit {
            state.rate_limit = rate_limit;
        }
        state.latency = Duration::from_millis(self.latency_ms.unwrap_or(0));
        for seed in self.registries {
            crate::basics::check_name(&seed.name)?;
            anyhow::ensure!(
                tier(&seed.tier).is_some(),
                "registry {}: tier must be starter, basic or professional",
                seed.name
            );
            let mut registry = Registry {
                name: seed.name.clone(),
                region: seed.region,
                tier: seed.tier,
                created_at: "2026-01-05T09:00:00Z".into(),
                repositories: BTreeMap::new(),
                blob_store: BTreeMap::new(),
                blob_bodies: BTreeMap::new(),
                gcs: Vec::new(),
                hide_index_children: seed.hide_index_children,
                referrers_api: seed.referrers_api,
                gc_keeps_index_children: seed.gc_keeps_index_children,
                uploads: BTreeMap::new(),
            };
            let count: usize = seed.repositories.iter().map(|r| r.manifests.len()).sum();
            let mut age = count as i64;
            for repository in seed.repositories {
                let mut manifests = Vec::new();
                for manifest in repository.manifests {
                    age -= 1;
                    let label = format!("{}/{} seed #{}", registry.name, repository.name, state.next_id());
                    let (documents, tags) = match seed_artifact(&manifest, &manifests, &label)? {
                        Some(artifact) => artifact,
                        None => (plain_documents(&manifest, &label), manifest.tags.clone()),
                    };
                    let updated_at = manifest.updated_at.unwrap_or_else(|| {
                        let at = jiff::Timestamp::now().as_second() - 3600 * 24 * (age + 1);
                        jiff::Timestamp::from_second(at).map(|t| t.to_string()).unwrap_or_else(|_| now_rfc3339())
                    });
                    let last = documents.len() - 1;
                    for (index, document) in documents.into_iter().enumerate() {
                        registry.blob_store.extend(document.blobs.iter().cloned());
                        registry.blob_bodies.extend(document.bodies.iter().cloned());
                        let tags = if index == last { tags.clone() } else { Vec::new() };
                        manifests.push(Manifest::from_document(document, tags, updated_at.clone(), state.next_id()));
                    }
                }
                registry.repositories.insert(repository.name, crate::state::Repository::from_manifests(manifests));
            }
            let name = registry.name.clone();
            state.registries.insert(name.clone(), registry);
            if let Some(gc) = seed.running_gc {
                let plan =
                    gc.plan.map(|steps| steps.into_iter().map(|s| (s.status, Duration::from_millis(s.ms))).collect());
                state.start_gc(&name, &gc.gc_type, plan, "succeeded", now).map_err(|e| anyhow::anyhow!(e.message))?;
            }
        }
        for seed in self.apps {
            let id = state.add_app(seed.id, seed.spec, seed.active, now);
            let app = state.apps.iter_mut().find(|app| app.id == id).expect("just added");
            app.next_outcome = seed.next_outcome;
        }
        Ok(state)
    }
}

/// One image, or a multi-platform index with its platform images first.
fn plain_documents(manifest: &SeedManifest, label: &str) -> Vec<content::Document> {
    if manifest.platforms.is_empty() {
        vec![content::image(label, manifest.size_bytes)]
    } else {
        content::index(label, &manifest.platforms, manifest.attestations, manifest.size_bytes, &Value::Null)
    }
}

/// The documents and tags of a seed entry that is an artifact of an image seeded before it.
fn seed_artifact(
    manifest: &SeedManifest,
    earlier: &[Manifest],
    label: &str,
) -> anyhow::Result<Option<(Vec<content::Document>, Vec<String>)>> {
    use crate::artifacts::{documents, ArtifactKind};
    let asked = [
        (&manifest.signature_of, ArtifactKind::Signature),
        (&manifest.attestation_of, ArtifactKind::Attestation),
        (&manifest.sbom_of, ArtifactKind::Sbom),
        (&manifest.referrer_of, ArtifactKind::Referrer),
    ];
    let mut given = asked.iter().filter_map(|(of, kind)| of.as_ref().map(|of| (*kind, of)));
    let Some((kind, of)) = given.next() else { return Ok(None) };
    anyhow::ensure!(given.next().is_none(), "a seed manifest is an artifact of one kind only");
    let subject = earlier.iter().find(|m| m.tags.contains(of) || m.digest == *of).ok_or_else(|| {
        anyhow::anyhow!("a seed artifact names {of:?}, which no earlier manifest of its repository has")
    })?;
    let referrers = earlier
        .iter()
        .filter(|m| m.subject.as_deref() == Some(subject.digest.as_str()))
        .map(|m| (m.digest.clone(), m.media_type.clone(), m.content.len() as u64))
        .collect();
    let described = (subject.digest.as_str(), subject.media_type.as_str(), subject.content.len() as u64);
    let (documents, tag) = documents(label, kind, described, manifest.fallback_tag, referrers);
    Ok(Some((documents, tag.into_iter().collect())))
}

/// An app spec with one service running a DOCR image by tag.
pub fn default_app_spec(name: &str, repository: &str, tag: &str) -> Value {
    json!({
        "name": name,
        "region": "fra",
        "services": [{
            "name": "web",
            "image": {"registry_type": "DOCR", "repository": repository, "tag": tag},
            "instance_count": 1,
            "instance_size_slug": "apps-s-1vcpu-0.5gb",
            "http_port": 8080,
            "envs": [
                {"key": "LOG_LEVEL", "value": "info", "scope": "RUN_TIME"},
                {"key": "DATABASE_URL", "value": "EV[1:c2ltdWxhdGVk:ZW5jcnlwdGVkLXNlY3JldA==]", "scope": "RUN_TIME", "type": "SECRET"}
            ]
        }]
    })
}
