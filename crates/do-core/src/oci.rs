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
use serde_json::Value;

use crate::api::{header, is_loopback_url, segment, Headers, RetryPolicy, Secret};
use crate::digest::Digest;
use crate::exit::Failure;
pub use crate::manifest::{
    is_index_type, normalize_digest, sha256_digest, Descriptor, ManifestInfo, ACCEPTED_TYPES, DOCKER_MANIFEST,
    DOCKER_MANIFEST_LIST, OCI_INDEX, OCI_MANIFEST,
};
pub use crate::manifest_cache::ManifestCache;
use crate::progress::Progress;
pub use crate::registry_auth::credentials_for;
use crate::registry_auth::Challenge;
use crate::Client;

/// Where DigitalOcean's registry speaks the distribution API.
pub const DEFAULT_REGISTRY_URL: &str = "https://registry.digitalocean.com";
pub const REGISTRY_URL_VARIABLE: &str = "DIGITALOCEAN_REGISTRY_URL";

/// Manifests larger than this are refused (the distribution spec's recommended limit).
const MAX_MANIFEST_BYTES: u64 = 4 * 1024 * 1024;

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
    pub(crate) agent: ureq::Agent,
    pub(crate) url: String,
    pub(crate) registry: String,
    pub(crate) credentials: Secret,
    pub(crate) retry: RetryPolicy,
    pub(crate) request_timeout: Duration,
    pub(crate) deadline: Option<Instant>,
    pub(crate) progress: Arc<Progress>,
    pub(crate) challenge: Mutex<Option<Challenge>>,
    /// Bearer tokens by scope.
    pub(crate) tokens: Mutex<BTreeMap<String, Secret>>,
    requests: AtomicU64,
    /// Manifests kept between runs, read before the registry is asked.
    cache: Option<ManifestCache>,
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
            cache: None,
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

    /// Reads manifests by digest from `cache` first, and keeps those read from the registry there.
    pub fn with_cache(mut self, cache: Option<ManifestCache>) -> RegistryClient {
        self.cache = cache;
        self
    }

    pub fn cache(&self) -> Option<&ManifestCache> {
        self.cache.as_ref()
    }

    /// HTTP requests sent to the registry host, retries and token requests included.
    pub fn requests_made(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    /// GETs a manifest by digest (or tag) and checks that its body hashes to the digest.
    /// By digest, the cache answers first when there is one (it hashes what it holds).
    pub fn manifest(&self, repository: &str, reference: &str) -> anyhow::Result<ManifestInfo> {
        let by_digest = reference.contains(':');
        if let Some(cached) =
            self.cache.as_ref().filter(|_| by_digest).and_then(|c| c.get(&Digest::normalized(reference)))
        {
            return Ok(cached);
        }
        let path = self.manifest_path(repository, reference);
        let (status, headers, body) =
            self.authorized("GET", &path, repository, false, &[("accept", accept())], None)?;
        self.expect_success("GET", &path, status, &body, || format!("manifest {repository}@{reference}"))?;
        let digest = if by_digest {
            let actual = Digest::sha256_of(&body);
            let wanted = Digest::normalized(reference);
            anyhow::ensure!(
                wanted.sha256().is_some() && actual == wanted,
                "GET {path}: the body's digest is {actual}, not the {wanted} asked for; the registry answer cannot be trusted"
            );
            wanted
        } else {
            header(&headers, "docker-content-digest")
                .map(|d| Digest::normalized(&d))
                .unwrap_or_else(|| Digest::sha256_of(&body))
        };
        let info = ManifestInfo::parse(&digest, header(&headers, "content-type").as_deref(), &body)
            .map_err(|problem| anyhow::anyhow!("GET {path}: {problem}"))?;
        if let Some(cache) = self.cache.as_ref().filter(|_| by_digest) {
            cache.put(&info, &body);
        }
        Ok(info)
    }

    /// The OCI referrers API for `digest`: the digests of every manifest whose `subject` it is,
    /// or `None` when the registry has no such API (404, 405, 501, or an answer that is not an
    /// index). DOCR publishes none; registries that do answer spare reading every manifest.
    pub fn referrers(&self, repository: &str, digest: &Digest) -> anyhow::Result<Option<Vec<Digest>>> {
        let path = format!("/v2/{}/referrers/{}", self.name(repository), segment(&normalize_digest(&digest.text())));
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
            self.manifest(repository, &first.digest.text())?
        } else {
            top.clone()
        };
        let Some(config) = &image.config else { return Ok(Some((top.digest.to_string(), BTreeMap::new()))) };
        let bytes = self.blob(repository, &config.text())?;
        let value: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        let labels = value
            .pointer("/config/Labels")
            .and_then(Value::as_object)
            .map(|labels| labels.iter().filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string()))).collect())
            .unwrap_or_default();
        Ok(Some((top.digest.to_string(), labels)))
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

    /// The token scope for reading (or reading and pushing) `repository`.
    pub(crate) fn scope(&self, repository: &str, push: bool) -> String {
        format!("repository:{}:{}", self.name(repository), if push { "pull,push" } else { "pull" })
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
        let scope = self.scope(repository, push);
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

    pub(crate) fn send(
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
    pub(crate) fn send_to(
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
            unreachable_hint: None,
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
    static ACCEPT: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    ACCEPT.get_or_init(|| ACCEPTED_TYPES.join(", ")).clone()
}

/// The distribution error body `{"errors":[{"code","message"}]}` as `: CODE message`.
pub(crate) fn registry_error(body: &[u8]) -> String {
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

#[cfg(test)]
mod tests {
    use super::*;

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
