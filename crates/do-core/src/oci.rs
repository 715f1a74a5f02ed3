//! Reading (and, for the canary and tests, writing) manifests on the registry host itself,
//! through the OCI distribution API. The DigitalOcean API lists digests, tags and sizes, but
//! not what a manifest is: whether it is an image index, which manifests the index holds, and
//! which manifest a referrer (a signature, an SBOM) points at. Those decide what a prune may
//! delete, so they are read here.
//!
//! Same rules as the API client: https, or plain http to a loopback address; the registry
//! credentials (short-lived, read-only unless asked otherwise, from the API's docker-credentials)
//! are kept as [`Secret`]s and never shown; reads are retried on transport errors, 429 and 5xx;
//! a manifest's body must hash to the digest it was asked by. The API token never goes here.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use base64::Engine;
use serde_json::Value;

use crate::api::{header, is_loopback_url, segment, Headers, RetryPolicy, Secret};
use crate::exit::Failure;
use crate::progress::Progress;
use crate::Client;

/// Where DigitalOcean's registry speaks the distribution API.
pub const DEFAULT_REGISTRY_URL: &str = "https://registry.digitalocean.com";
pub const REGISTRY_URL_VARIABLE: &str = "DIGITALOCEAN_REGISTRY_URL";

pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// The manifest types asked for, in the `Accept` header of every manifest request.
pub const ACCEPTED_TYPES: [&str; 4] = [OCI_INDEX, DOCKER_MANIFEST_LIST, OCI_MANIFEST, DOCKER_MANIFEST];
/// Manifests larger than this are refused (the distribution spec's recommended limit).
const MAX_MANIFEST_BYTES: u64 = 4 * 1024 * 1024;
/// buildx marks attestation manifests in an index with these annotations.
const REFERENCE_TYPE: &str = "vnd.docker.reference.type";
const REFERENCE_DIGEST: &str = "vnd.docker.reference.digest";

/// Whether a media type is an index (its body lists other manifests).
pub fn is_index_type(media_type: &str) -> bool {
    media_type == OCI_INDEX || media_type == DOCKER_MANIFEST_LIST
}

/// `sha256:` and the lowercase hex SHA-256 of `bytes`: a manifest's or blob's digest.
pub fn sha256_digest(bytes: &[u8]) -> String {
    let hash = ring::digest::digest(&ring::digest::SHA256, bytes);
    let hex: String = hash.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256:{hex}")
}

/// One manifest an index holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Descriptor {
    pub digest: String,
    pub media_type: Option<String>,
    /// `os/architecture[/variant]`, when the index says.
    pub platform: Option<String>,
    /// For a buildx attestation manifest: the platform manifest it describes.
    pub attestation_of: Option<String>,
}

/// What a manifest is, as far as keeping or deleting goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ManifestInfo {
    pub digest: String,
    pub media_type: String,
    /// The manifests an index holds (empty for an image manifest).
    pub children: Vec<Descriptor>,
    /// The manifest this one refers to (OCI 1.1 `subject`: signatures, SBOMs, attestations).
    pub subject: Option<String>,
    /// An image manifest's config blob.
    pub config: Option<String>,
    pub size: u64,
}

impl ManifestInfo {
    pub fn is_index(&self) -> bool {
        is_index_type(&self.media_type)
    }

    /// Reads a manifest body. The media type comes from `Content-Type` unless that is generic,
    /// then from the body's `mediaType`, then from its shape (`manifests` makes an index).
    pub fn parse(digest: &str, content_type: Option<&str>, body: &[u8]) -> Result<ManifestInfo, String> {
        let value: Value =
            serde_json::from_slice(body).map_err(|e| format!("the manifest {digest} is not JSON: {e}"))?;
        let Value::Object(object) = &value else {
            return Err(format!("the manifest {digest} is not a JSON object"));
        };
        let declared = content_type.map(|t| t.split(';').next().unwrap_or("").trim().to_ascii_lowercase());
        let from_body = object.get("mediaType").and_then(Value::as_str).map(str::to_string);
        let media_type = match declared {
            Some(t) if !t.is_empty() && t != "application/json" && t != "application/octet-stream" => t,
            _ => from_body
                .unwrap_or_else(|| if object.contains_key("manifests") { OCI_INDEX } else { OCI_MANIFEST }.to_string()),
        };
        let mut children = Vec::new();
        if let Some(manifests) = object.get("manifests") {
            let list =
                manifests.as_array().ok_or_else(|| format!("the index {digest} has a malformed manifests list"))?;
            for entry in list {
                let child = entry
                    .get("digest")
                    .and_then(Value::as_str)
                    .filter(|d| d.contains(':'))
                    .ok_or_else(|| format!("the index {digest} lists a manifest without a digest"))?;
                let annotations = entry.get("annotations");
                let annotation = |key: &str| annotations.and_then(|a| a.get(key)).and_then(Value::as_str);
                let platform = entry.get("platform").and_then(|p| {
                    let part = |key: &str| p.get(key).and_then(Value::as_str).filter(|s| !s.is_empty());
                    let mut text = format!("{}/{}", part("os")?, part("architecture")?);
                    if let Some(variant) = part("variant") {
                        text.push('/');
                        text.push_str(variant);
                    }
                    Some(text)
                });
                let attestation_of = (annotation(REFERENCE_TYPE) == Some("attestation-manifest"))
                    .then(|| annotation(REFERENCE_DIGEST).map(normalize_digest))
                    .flatten();
                children.push(Descriptor {
                    digest: normalize_digest(child),
                    media_type: entry.get("mediaType").and_then(Value::as_str).map(str::to_string),
                    platform,
                    attestation_of,
                });
            }
        }
        let subject = object.get("subject").and_then(|s| s.get("digest")).and_then(Value::as_str).map(normalize_digest);
        let config = object.get("config").and_then(|c| c.get("digest")).and_then(Value::as_str).map(normalize_digest);
        Ok(ManifestInfo { digest: digest.to_string(), media_type, children, subject, config, size: body.len() as u64 })
    }
}

/// A digest as the API and registry write it: trimmed, algorithm and hex in lowercase.
pub fn normalize_digest(text: &str) -> String {
    text.trim().to_ascii_lowercase()
}

/// The registry's answer to a request for something it does not have.
#[derive(Debug, Clone)]
pub struct NotInRegistry {
    pub what: String,
}

impl fmt::Display for NotInRegistry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} is not in the registry (404)", self.what)
    }
}

impl std::error::Error for NotInRegistry {}

/// How the registry wants to be authenticated, learnt from its answer to `GET /v2/`.
#[derive(Clone, Debug)]
enum Challenge {
    /// It answered 200: no credentials needed.
    Open,
    Basic,
    Bearer {
        realm: String,
        service: Option<String>,
    },
}

/// Settings a [`RegistryClient`] is built from.
#[derive(Clone, Debug)]
pub struct RegistryConfig {
    /// `https://registry.digitalocean.com`, or a loopback address (the simulator, a test registry).
    pub url: String,
    /// The DOCR registry: the first path component of every repository name on the host.
    pub registry: String,
    /// `user:password`, from the API's docker-credentials.
    pub credentials: Secret,
    pub retry: RetryPolicy,
    pub request_timeout: Duration,
    pub deadline: Option<Instant>,
}

pub struct RegistryClient {
    agent: ureq::Agent,
    url: String,
    registry: String,
    credentials: Secret,
    retry: RetryPolicy,
    request_timeout: Duration,
    deadline: Option<Instant>,
    progress: Arc<Progress>,
    challenge: Mutex<Option<Challenge>>,
    /// Bearer tokens by scope.
    tokens: Mutex<BTreeMap<String, Secret>>,
    requests: AtomicU64,
}

/// The registry URL the tools use: `--registry-url`/`DIGITALOCEAN_REGISTRY_URL` when given;
/// otherwise the API's own address when the API is a loopback simulator (it serves both), and
/// DigitalOcean's registry host for anything else.
pub fn registry_url_for(api_url: &str, given: Option<&str>) -> anyhow::Result<String> {
    match given.map(str::trim).filter(|s| !s.is_empty()) {
        Some(url) => crate::api::checked_base_url(url)
            .map_err(|e| Failure::usage(format!("--registry-url: {}", e.to_string().replace("API ", "")))),
        None if is_loopback_url(api_url) => Ok(api_url.trim_end_matches('/').to_string()),
        None => Ok(DEFAULT_REGISTRY_URL.to_string()),
    }
}

impl RegistryClient {
    pub fn new(config: RegistryConfig, progress: Arc<Progress>) -> anyhow::Result<RegistryClient> {
        let url = crate::api::checked_base_url(&config.url)?;
        crate::redact::register(config.credentials.expose());
        if let Some((_, password)) = config.credentials.expose().split_once(':') {
            crate::redact::register(password);
        }
        let agent = crate::transport::agent(
            &url,
            crate::transport::AgentOptions {
                timeout: Some(config.request_timeout),
                connect_timeout: Some(config.request_timeout.min(Duration::from_secs(10))),
                answers: crate::transport::Answers::Raw,
            },
        )?;
        Ok(RegistryClient {
            agent,
            url,
            registry: config.registry,
            credentials: config.credentials,
            retry: config.retry,
            request_timeout: config.request_timeout,
            deadline: config.deadline,
            progress,
            challenge: Mutex::new(None),
            tokens: Mutex::new(BTreeMap::new()),
            requests: AtomicU64::new(0),
        })
    }

    /// Asks the API for short-lived registry credentials (read-only unless `read_write`) and
    /// builds a client for `url` with them.
    pub fn from_api(
        api: &Client,
        registry: &str,
        url: &str,
        expiry: Duration,
        read_write: bool,
        progress: Arc<Progress>,
    ) -> anyhow::Result<RegistryClient> {
        let mut path = format!(
            "/v2/registries/{}/docker-credentials?expiry_seconds={}",
            segment(registry),
            expiry.as_secs().max(1)
        );
        if read_write {
            path.push_str("&read_write=true");
        }
        let auths: Value =
            api.get_object(&path, "auths").context("cannot get registry credentials to read manifests")?;
        let credentials = credentials_for(&auths, url)?;
        let config = RegistryConfig {
            url: url.to_string(),
            registry: registry.to_string(),
            credentials,
            retry: api.retry_policy(),
            request_timeout: api.request_timeout(),
            deadline: api.deadline(),
        };
        RegistryClient::new(config, progress)
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// HTTP requests sent to the registry host, retries and token requests included.
    pub fn requests_made(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    /// GETs a manifest by digest (or tag) and checks that its body hashes to the digest.
    pub fn manifest(&self, repository: &str, reference: &str) -> anyhow::Result<ManifestInfo> {
        let path = self.manifest_path(repository, reference);
        let (status, headers, body) =
            self.authorized("GET", &path, repository, false, &[("accept", accept())], None)?;
        self.expect_success("GET", &path, status, &body, || format!("manifest {repository}@{reference}"))?;
        let digest = if reference.contains(':') {
            let actual = sha256_digest(&body);
            let wanted = normalize_digest(reference);
            anyhow::ensure!(
                wanted.starts_with("sha256:") && actual == wanted,
                "GET {path}: the body's digest is {actual}, not the {wanted} asked for; the registry answer cannot be trusted"
            );
            wanted
        } else {
            header(&headers, "docker-content-digest")
                .map(|d| normalize_digest(&d))
                .unwrap_or_else(|| sha256_digest(&body))
        };
        ManifestInfo::parse(&digest, header(&headers, "content-type").as_deref(), &body)
            .map_err(|problem| anyhow::anyhow!("GET {path}: {problem}"))
    }

    /// The OCI referrers API for `digest`: the digests of every manifest whose `subject` it is,
    /// or `None` when the registry has no such API (404, 405, 501, or an answer that is not an
    /// index). DOCR publishes none; registries that do answer spare reading every manifest.
    pub fn referrers(&self, repository: &str, digest: &str) -> anyhow::Result<Option<Vec<String>>> {
        let path = format!("/v2/{}/referrers/{}", self.name(repository), segment(&normalize_digest(digest)));
        let (status, headers, body) =
            self.authorized("GET", &path, repository, false, &[("accept", OCI_INDEX.to_string())], None)?;
        if matches!(status, 400 | 404 | 405 | 501) {
            return Ok(None);
        }
        self.expect_success("GET", &path, status, &body, || format!("the referrers of {repository}@{digest}"))?;
        match ManifestInfo::parse(digest, header(&headers, "content-type").as_deref(), &body) {
            Ok(info) if info.is_index() => Ok(Some(info.children.into_iter().map(|c| c.digest).collect())),
            _ => Ok(None),
        }
    }

    /// GETs a small blob (an image config) by digest and checks that it hashes to the digest. A
    /// redirect (registries serve blobs from storage elsewhere) is followed once, without
    /// credentials.
    pub fn blob(&self, repository: &str, digest: &str) -> anyhow::Result<Vec<u8>> {
        let wanted = normalize_digest(digest);
        let path = format!("/v2/{}/blobs/{}", self.name(repository), segment(&wanted));
        let (status, headers, mut body) = self.authorized("GET", &path, repository, false, &[], None)?;
        if matches!(status, 301 | 302 | 303 | 307 | 308) {
            let location = header(&headers, "location")
                .with_context(|| format!("GET {path} answered {status} without a location"))?;
            let target = if location.starts_with('/') { format!("{}{location}", self.url) } else { location };
            anyhow::ensure!(
                target.starts_with("https://") || is_loopback_url(&target),
                "GET {path} redirected to plain http on another host; not followed"
            );
            let (status, _, redirected) = self.send_to("GET", &target, &[], None)?;
            self.expect_success("GET", &path, status, &redirected, || format!("blob {repository}@{wanted}"))?;
            body = redirected;
        } else {
            self.expect_success("GET", &path, status, &body, || format!("blob {repository}@{wanted}"))?;
        }
        let actual = sha256_digest(&body);
        anyhow::ensure!(
            actual == wanted,
            "GET {path}: the body's digest is {actual}, not the {wanted} asked for; the registry answer cannot be trusted"
        );
        Ok(body)
    }

    /// The labels of the image `reference` names (for an index, of its first platform image),
    /// with the digest `reference` resolves to; `None` when the registry has no such manifest.
    pub fn image_labels(
        &self,
        repository: &str,
        reference: &str,
    ) -> anyhow::Result<Option<(String, BTreeMap<String, String>)>> {
        let top = match self.manifest(repository, reference) {
            Ok(top) => top,
            Err(error) if error.downcast_ref::<NotInRegistry>().is_some() => return Ok(None),
            Err(error) => return Err(error),
        };
        let image = if top.is_index() {
            let first = top
                .children
                .iter()
                .find(|c| {
                    c.attestation_of.is_none() && c.platform.as_deref().is_some_and(|p| !p.starts_with("unknown/"))
                })
                .or_else(|| top.children.iter().find(|c| c.attestation_of.is_none()))
                .with_context(|| format!("the index {} holds no image", top.digest))?;
            self.manifest(repository, &first.digest)?
        } else {
            top.clone()
        };
        let Some(config) = &image.config else { return Ok(Some((top.digest, BTreeMap::new()))) };
        let bytes = self.blob(repository, config)?;
        let value: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        let labels = value
            .pointer("/config/Labels")
            .and_then(Value::as_object)
            .map(|labels| labels.iter().filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string()))).collect())
            .unwrap_or_default();
        Ok(Some((top.digest, labels)))
    }

    /// HEADs a manifest: its media type and digest, or `None` when the registry has no such manifest.
    pub fn manifest_exists(&self, repository: &str, reference: &str) -> anyhow::Result<Option<(String, String)>> {
        let path = self.manifest_path(repository, reference);
        let (status, headers, body) =
            self.authorized("HEAD", &path, repository, false, &[("accept", accept())], None)?;
        if status == 404 {
            return Ok(None);
        }
        self.expect_success("HEAD", &path, status, &body, || format!("manifest {repository}@{reference}"))?;
        let media_type = header(&headers, "content-type").unwrap_or_default();
        let digest = header(&headers, "docker-content-digest").map(|d| normalize_digest(&d)).unwrap_or_default();
        Ok(Some((media_type, digest)))
    }

    /// Uploads a blob in one request (unless the registry has it) and returns its digest.
    pub fn push_blob(&self, repository: &str, bytes: &[u8]) -> anyhow::Result<String> {
        let digest = sha256_digest(bytes);
        let name = self.name(repository);
        let blob_path = format!("/v2/{name}/blobs/{digest}");
        let (status, _, _) = self.authorized("HEAD", &blob_path, repository, true, &[], None)?;
        if status == 200 {
            return Ok(digest);
        }
        let start = format!("/v2/{name}/blobs/uploads/");
        let (status, headers, body) = self.authorized("POST", &start, repository, true, &[], Some(&[]))?;
        self.expect_success("POST", &start, status, &body, || format!("an upload to {repository}"))?;
        let location = header(&headers, "location").context("the registry started an upload without a Location")?;
        let upload = self.same_host_path(&location)?;
        let separator = if upload.contains('?') { '&' } else { '?' };
        let put = format!("{upload}{separator}digest={digest}");
        let (status, _, body) = self.authorized(
            "PUT",
            &put,
            repository,
            true,
            &[("content-type", "application/octet-stream".to_string())],
            Some(bytes),
        )?;
        self.expect_success("PUT", &put, status, &body, || format!("blob {digest}"))?;
        Ok(digest)
    }

    /// Puts a manifest under `reference` (a tag, or its own digest) and returns its digest.
    pub fn push_manifest(
        &self,
        repository: &str,
        reference: &str,
        media_type: &str,
        bytes: &[u8],
    ) -> anyhow::Result<String> {
        let path = self.manifest_path(repository, reference);
        let (status, _, body) =
            self.authorized("PUT", &path, repository, true, &[("content-type", media_type.to_string())], Some(bytes))?;
        self.expect_success("PUT", &path, status, &body, || format!("manifest {repository}:{reference}"))?;
        Ok(sha256_digest(bytes))
    }

    fn name(&self, repository: &str) -> String {
        let parts: Vec<String> =
            std::iter::once(self.registry.as_str()).chain(repository.split('/')).map(segment).collect();
        parts.join("/")
    }

    fn manifest_path(&self, repository: &str, reference: &str) -> String {
        format!("/v2/{}/manifests/{}", self.name(repository), segment(reference))
    }

    fn expect_success(
        &self,
        method: &str,
        path: &str,
        status: u16,
        body: &[u8],
        what: impl Fn() -> String,
    ) -> anyhow::Result<()> {
        match status {
            200..=299 => Ok(()),
            404 => Err(anyhow::Error::new(NotInRegistry { what: what() })
                .context(format!("{method} {path} answered 404{}", registry_error(body)))),
            401 | 403 => anyhow::bail!(
                "{method} {path} answered {status}{}; the registry credentials from the API were refused (the token needs registry:read and registry:update to get them)",
                registry_error(body)
            ),
            _ => anyhow::bail!("{method} {path} answered {status}{}", registry_error(body)),
        }
    }

    /// Sends a request with the credentials the registry asked for; a 401 with a cached token
    /// fetches a fresh token once.
    fn authorized(
        &self,
        method: &'static str,
        path: &str,
        repository: &str,
        push: bool,
        headers: &[(&str, String)],
        body: Option<&[u8]>,
    ) -> anyhow::Result<(u16, Headers, Vec<u8>)> {
        let scope = format!("repository:{}:{}", self.name(repository), if push { "pull,push" } else { "pull" });
        for attempt in 0..2 {
            let authorization = self.authorization(&scope, attempt > 0)?;
            let mut all: Vec<(&str, String)> = headers.to_vec();
            if let Some(value) = &authorization {
                all.push(("authorization", value.expose().to_string()));
            }
            let answer = self.send(method, path, &all, body)?;
            if answer.0 == 401 && attempt == 0 && authorization.is_some() {
                continue;
            }
            return Ok(answer);
        }
        unreachable!("the loop returns on its second pass")
    }

    fn authorization(&self, scope: &str, fresh: bool) -> anyhow::Result<Option<Secret>> {
        let challenge = self.challenge()?;
        match challenge {
            Challenge::Open => Ok(None),
            Challenge::Basic => Ok(Some(Secret::new(format!("Basic {}", self.basic())))),
            Challenge::Bearer { realm, service } => {
                let mut tokens = self.tokens.lock().unwrap_or_else(|e| e.into_inner());
                if fresh {
                    tokens.remove(scope);
                }
                if let Some(token) = tokens.get(scope) {
                    return Ok(Some(Secret::new(format!("Bearer {}", token.expose()))));
                }
                let token = self.fetch_token(&realm, service.as_deref(), scope)?;
                let value = Secret::new(format!("Bearer {}", token.expose()));
                tokens.insert(scope.to_string(), token);
                Ok(Some(value))
            }
        }
    }

    fn basic(&self) -> String {
        base64::engine::general_purpose::STANDARD.encode(self.credentials.expose())
    }

    /// `GET /v2/`: 200 means open, 401 names the scheme (and, for Bearer, where tokens come from).
    fn challenge(&self) -> anyhow::Result<Challenge> {
        // Held while asking, so that reads started at once ask once.
        let mut known = self.challenge.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(known) = known.clone() {
            return Ok(known);
        }
        let (status, headers, body) = self.send("GET", "/v2/", &[], None)?;
        let challenge = match status {
            200..=299 => Challenge::Open,
            401 => {
                let text = header(&headers, "www-authenticate").unwrap_or_default();
                parse_challenge(&text).with_context(|| {
                    format!("the registry at {} answered 401 with a challenge this tool cannot answer", self.url)
                })?
            }
            _ => anyhow::bail!(
                "GET {}/v2/ answered {status}{}: is {} a container registry?",
                self.url,
                registry_error(&body),
                self.url
            ),
        };
        *known = Some(challenge.clone());
        Ok(challenge)
    }

    /// Gets a Bearer token for `scope` from the realm, with the registry credentials.
    fn fetch_token(&self, realm: &str, service: Option<&str>, scope: &str) -> anyhow::Result<Secret> {
        let realm_url = crate::api::checked_base_url(realm.split('?').next().unwrap_or(realm))
            .map_err(|_| anyhow::anyhow!("the registry's token realm {realm:?} is neither https nor loopback; refusing to send credentials there"))?;
        let mut query = vec![format!("scope={}", query_value(scope))];
        if let Some(service) = service {
            query.push(format!("service={}", query_value(service)));
        }
        let separator = if realm.contains('?') { '&' } else { '?' };
        let url = format!(
            "{}{}{separator}{}",
            realm_url,
            realm.split_once('?').map(|(_, q)| format!("?{q}")).unwrap_or_default(),
            query.join("&")
        );
        let authorization = format!("Basic {}", self.basic());
        let (status, _, body) = self.send_to("GET", &url, &[("authorization", authorization)], None)?;
        if status == 401 || status == 403 {
            anyhow::bail!(
                "the registry's token service refused the credentials ({status}{}); during a garbage collection no write tokens are issued",
                registry_error(&body)
            );
        }
        anyhow::ensure!(
            (200..300).contains(&status),
            "the registry's token service answered {status}{}",
            registry_error(&body)
        );
        let value: Value =
            serde_json::from_slice(&body).context("the registry's token service sent a body that is not JSON")?;
        let token = value
            .get("token")
            .or_else(|| value.get("access_token"))
            .and_then(Value::as_str)
            .filter(|t| !t.is_empty())
            .context("the registry's token service sent no token")?;
        crate::redact::register(token);
        Ok(Secret::new(token.to_string()))
    }

    /// A `Location` from the registry as a path on its own host: credentials never follow a
    /// location elsewhere.
    fn same_host_path(&self, location: &str) -> anyhow::Result<String> {
        if location.starts_with('/') {
            return Ok(location.to_string());
        }
        let rest = location.strip_prefix(&self.url).filter(|rest| rest.starts_with('/')).with_context(|| {
            format!(
                "the registry sent an upload location on another host: {}",
                location.split('?').next().unwrap_or("")
            )
        })?;
        Ok(rest.to_string())
    }

    fn send(
        &self,
        method: &'static str,
        path: &str,
        headers: &[(&str, String)],
        body: Option<&[u8]>,
    ) -> anyhow::Result<(u16, Headers, Vec<u8>)> {
        self.send_to(method, &format!("{}{path}", self.url), headers, body)
    }

    /// One request with retries on transport errors, 429 and 5xx (registry writes are
    /// content-addressed, so repeating them is harmless).
    fn send_to(
        &self,
        method: &'static str,
        url: &str,
        headers: &[(&str, String)],
        body: Option<&[u8]>,
    ) -> anyhow::Result<(u16, Headers, Vec<u8>)> {
        let shown = url.split('?').next().unwrap_or(url).to_string();
        let headers: Vec<(&str, &str)> = headers.iter().map(|(name, value)| (*name, value.as_str())).collect();
        let request = crate::http::Request {
            method,
            url,
            shown: &shown,
            headers: &headers,
            body,
            max_body: MAX_MANIFEST_BYTES,
            repeat: crate::http::Repeat::Safe,
        };
        let sender = crate::http::Sender {
            agent: &self.agent,
            retry: &self.retry,
            request_timeout: self.request_timeout,
            deadline: self.deadline,
            progress: &self.progress,
            requests: &self.requests,
            before_attempt: &|| {},
        };
        let answer = crate::http::send(&sender, &request, |answer| {
            if answer.status != 429 && answer.status < 500 {
                return crate::http::Judged::Done;
            }
            let wait = header(&answer.headers, "retry-after").and_then(|v| v.trim().parse::<u64>().ok());
            crate::http::Judged::Retry {
                error: anyhow::anyhow!("{method} {shown} answered {}{}", answer.status, registry_error(&answer.body)),
                wait: wait.map(Duration::from_secs),
            }
        })?;
        Ok((answer.status, answer.headers, answer.body))
    }
}

fn accept() -> String {
    ACCEPTED_TYPES.join(", ")
}

/// Percent-encodes a query value (`repository:reg/web:pull` keeps its `:`, `/` and `,`).
fn query_value(text: &str) -> String {
    text.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b':' | b'/' | b',') {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// The distribution error body `{"errors":[{"code","message"}]}` as `: CODE message`.
fn registry_error(body: &[u8]) -> String {
    let value: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let first = value.pointer("/errors/0");
    let text = |key: &str| first.and_then(|e| e.get(key)).and_then(Value::as_str).unwrap_or("");
    match (text("code"), text("message")) {
        ("", "") => String::new(),
        (code, message) => crate::redact::redact(
            &format!(" {code}: {}", message.chars().take(200).collect::<String>()).replace("  ", " "),
        ),
    }
}

/// Parses `Bearer realm="…",service="…"` or `Basic realm="…"`.
fn parse_challenge(text: &str) -> anyhow::Result<Challenge> {
    let (scheme, rest) = text.trim().split_once(' ').unwrap_or((text.trim(), ""));
    let mut parameters = BTreeMap::new();
    let mut rest = rest.trim();
    while !rest.is_empty() {
        let Some((key, after)) = rest.split_once('=') else { break };
        let key = key.trim().trim_start_matches(',').trim().to_ascii_lowercase();
        let after = after.trim_start();
        let (value, remaining) = if let Some(quoted) = after.strip_prefix('"') {
            let end = quoted.find('"').context("an unterminated quote in the registry's challenge")?;
            (&quoted[..end], &quoted[end + 1..])
        } else {
            let end = after.find(',').unwrap_or(after.len());
            (&after[..end], &after[end..])
        };
        parameters.insert(key, value.to_string());
        rest = remaining.trim_start().trim_start_matches(',').trim_start();
    }
    match scheme.to_ascii_lowercase().as_str() {
        "basic" => Ok(Challenge::Basic),
        "bearer" => Ok(Challenge::Bearer {
            realm: parameters
                .remove("realm")
                .filter(|r| !r.is_empty())
                .context("a Bearer challenge without a realm")?,
            service: parameters.remove("service"),
        }),
        other => anyhow::bail!("an authentication scheme {other:?} that is neither Basic nor Bearer"),
    }
}

/// The `user:password` for `url`'s host from a docker config's `auths`: the entry for that
/// host, or the only entry (the API names `registry.digitalocean.com` whatever host serves it).
pub fn credentials_for(auths: &Value, url: &str) -> anyhow::Result<Secret> {
    let entries = auths.as_object().filter(|o| !o.is_empty()).context("the API sent no registry credentials")?;
    let host = url.split_once("://").map(|(_, rest)| rest).unwrap_or(url).split('/').next().unwrap_or("");
    let entry = entries
        .get(host)
        .or_else(|| (entries.len() == 1).then(|| entries.values().next()).flatten())
        .with_context(|| format!("the API sent registry credentials for other hosts than {host}"))?;
    let encoded = entry.get("auth").and_then(Value::as_str).context("the registry credentials have no auth value")?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .filter(|text| text.contains(':'))
        .context("the registry credentials are not base64 user:password")?;
    Ok(Secret::new(decoded))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_are_sha256_of_the_bytes() {
        assert_eq!(sha256_digest(b""), "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
        assert_eq!(normalize_digest("  SHA256:ABCdef "), "sha256:abcdef");
    }

    #[test]
    fn an_index_lists_its_children_platforms_and_attestations() {
        let body = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[
            {"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:AA","size":1,"platform":{"os":"linux","architecture":"arm64","variant":"v8"}},
            {"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:bb","size":1,"platform":{"os":"unknown","architecture":"unknown"},
             "annotations":{"vnd.docker.reference.type":"attestation-manifest","vnd.docker.reference.digest":"sha256:aa"}}]}"#;
        let info = ManifestInfo::parse("sha256:ix", Some("application/vnd.oci.image.index.v1+json"), body).unwrap();
        assert!(info.is_index());
        assert_eq!(info.children.len(), 2);
        assert_eq!(info.children[0].digest, "sha256:aa");
        assert_eq!(info.children[0].platform.as_deref(), Some("linux/arm64/v8"));
        assert_eq!(info.children[1].attestation_of.as_deref(), Some("sha256:aa"));
        assert_eq!(info.children[0].attestation_of, None);
    }

    #[test]
    fn the_media_type_comes_from_the_header_then_the_body_then_the_shape() {
        let image =
            br#"{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.v2+json","layers":[]}"#;
        assert_eq!(ManifestInfo::parse("d", Some("application/json"), image).unwrap().media_type, DOCKER_MANIFEST);
        let shapeless = br#"{"manifests":[]}"#;
        assert!(ManifestInfo::parse("d", None, shapeless).unwrap().is_index());
        let referrer = br#"{"layers":[],"subject":{"digest":"sha256:CC","size":1}}"#;
        let info =
            ManifestInfo::parse("d", Some("application/vnd.oci.image.manifest.v1+json; charset=utf-8"), referrer)
                .unwrap();
        assert_eq!((info.media_type.as_str(), info.subject.as_deref()), (OCI_MANIFEST, Some("sha256:cc")));
        assert!(ManifestInfo::parse("d", None, b"[1]").is_err());
        assert!(ManifestInfo::parse("d", None, br#"{"manifests":[{"size":1}]}"#).is_err());
    }

    #[test]
    fn challenges_parse() {
        match parse_challenge(
            r#"Bearer realm="https://api.digitalocean.com/v2/registry/auth",service="registry.digitalocean.com""#,
        )
        .unwrap()
        {
            Challenge::Bearer { realm, service } => {
                assert_eq!(realm, "https://api.digitalocean.com/v2/registry/auth");
                assert_eq!(service.as_deref(), Some("registry.digitalocean.com"));
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(parse_challenge(r#"Basic realm="basic-realm""#).unwrap(), Challenge::Basic));
        assert!(parse_challenge("Bearer service=x").is_err());
        assert!(parse_challenge("Negotiate").is_err());
    }

    #[test]
    fn credentials_come_from_the_entry_for_the_host_or_the_only_one() {
        let auths = serde_json::json!({"registry.digitalocean.com": {"auth": "dXNlcjpwYXNz"}});
        assert_eq!(credentials_for(&auths, "http://127.0.0.1:9").unwrap().expose(), "user:pass");
        let two = serde_json::json!({"a": {"auth": "dXNlcjpwYXNz"}, "127.0.0.1:9": {"auth": "bWU6eW91"}});
        assert_eq!(credentials_for(&two, "http://127.0.0.1:9").unwrap().expose(), "me:you");
        assert!(credentials_for(&serde_json::json!({"x": {"auth": "!!"}}), "https://x").is_err());
        assert!(credentials_for(&serde_json::json!({}), "https://x").is_err());
    }

    #[test]
    fn the_registry_url_follows_the_api_unless_given() {
        assert_eq!(registry_url_for("https://api.digitalocean.com", None).unwrap(), DEFAULT_REGISTRY_URL);
        assert_eq!(registry_url_for("http://127.0.0.1:8080/", None).unwrap(), "http://127.0.0.1:8080");
        assert_eq!(
            registry_url_for("https://api.digitalocean.com", Some("http://127.0.0.1:5000")).unwrap(),
            "http://127.0.0.1:5000"
        );
        assert!(registry_url_for("https://api.digitalocean.com", Some("http://registry.example.com")).is_err());
    }
}
