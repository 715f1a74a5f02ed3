//! The registry host: the OCI distribution API that `docker pull` and `docker push` speak, on
//! the simulator's own address. As on DOCR, `GET /v2/` answers 401 with a Bearer challenge whose
//! realm is the API's `/v2/registry/auth`; tokens come from there for credentials handed out by
//! `GET /v2/registries/{r}/docker-credentials` (read-only unless `read_write=true`; no write
//! tokens while a GC runs). Manifests are served by digest or tag with their media type and
//! `Docker-Content-Digest`; pushes (blob uploads, manifest PUTs) check what they reference.
//! Requests here go to their own log, apart from the API's.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::{json, Value};

use crate::content::{self, Document};
use crate::state::{now_rfc3339, FaultKind, Manifest, RegistryGrant, RegistryRequest, State};
use crate::wire::Shared;

/// Uploaded blobs up to this size keep their bytes, so configs can be read back.
const SMALL_BLOB_BYTES: usize = 1024 * 1024;

/// What the request paths of the registry host look like.
pub fn is_registry_path(path: &str) -> bool {
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    match segments.as_slice() {
        ["v2"] => true,
        ["v2", "registry", "auth"] => true,
        ["v2", first, rest @ ..] if !matches!(*first, "registries" | "registry" | "apps" | "account") => {
            rest.iter().any(|s| matches!(*s, "manifests" | "blobs" | "referrers"))
        }
        _ => false,
    }
}

/// A registry request as the server read it.
pub struct RegistryCall<'a> {
    pub method: &'a str,
    pub url: &'a str,
    pub path: &'a str,
    pub query: &'a [(String, String)],
    pub authorization: &'a str,
    pub accept: &'a str,
    pub content_type: &'a str,
    pub body: &'a [u8],
}

/// An answer: status, headers, body.
pub struct RegistryAnswer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

fn error(status: u16, code: &str, message: &str) -> RegistryAnswer {
    RegistryAnswer {
        status,
        headers: vec![("content-type".into(), "application/json; charset=utf-8".into())],
        body: json!({"errors": [{"code": code, "message": message}]}).to_string().into_bytes(),
    }
}

/// Handles one registry request; the fault, if any, was taken by the caller.
pub fn handle(shared: &Shared, call: &RegistryCall, fault: Option<&FaultKind>) -> RegistryAnswer {
    let now = Instant::now();
    let mut state = shared.lock();
    state.settle(now);
    let kind = authorization_kind(&state, call.authorization);
    let answer = match fault {
        Some(FaultKind::Status { status, .. }) => error(*status, "UNKNOWN", "injected fault"),
        Some(FaultKind::Echo { status }) => {
            error(*status, "DENIED", &format!("you sent Authorization: {}", call.authorization))
        }
        Some(FaultKind::Body { status, body }) => RegistryAnswer {
            status: *status,
            headers: vec![("content-type".into(), "application/json".into())],
            body: body.to_string().into_bytes(),
        },
        _ => {
            let realm_base = state.public_url.clone().unwrap_or_else(|| shared.base_url.clone());
            route(&mut state, &realm_base, call, now)
        }
    };
    let at_ms = now.duration_since(state.started).as_millis() as u64;
    state.registry_requests.push(RegistryRequest {
        at_ms,
        method: call.method.to_string(),
        url: call.url.to_string(),
        status: answer.status,
        authorization: kind.to_string(),
    });
    answer
}

fn authorization_kind(state: &State, authorization: &str) -> &'static str {
    if authorization.is_empty() {
        "none"
    } else if authorization.contains(state.token.as_str()) {
        "api-token"
    } else if authorization.starts_with("Basic ") {
        "basic"
    } else {
        "bearer"
    }
}

fn challenge(base_url: &str) -> RegistryAnswer {
    let mut answer = error(401, "UNAUTHORIZED", "authentication required");
    answer.headers.push((
        "www-authenticate".into(),
        format!("Bearer realm=\"{base_url}/v2/registry/auth\",service=\"registry.digitalocean.com\""),
    ));
    answer
}

/// The registry credentials in a Basic header, if they are ones the API handed out and still valid.
fn credential<'s>(state: &'s State, authorization: &str, now: Instant) -> Option<&'s crate::state::IssuedCredential> {
    let encoded = authorization.strip_prefix("Basic ")?;
    let decoded = base64::engine::general_purpose::STANDARD.decode(encoded.trim()).ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (user, password) = text.split_once(':')?;
    state.credentials.iter().find(|c| c.user == user && c.password == password && c.expires.is_none_or(|at| now < at))
}

fn route(state: &mut State, base_url: &str, call: &RegistryCall, now: Instant) -> RegistryAnswer {
    let segments: Vec<&str> = call.path.split('/').filter(|s| !s.is_empty()).collect();
    if segments == ["v2", "registry", "auth"] {
        return token(state, call, now);
    }
    let grant = call.authorization.strip_prefix("Bearer ").and_then(|token| state.registry_tokens.get(token)).cloned();
    if segments == ["v2"] {
        return match grant {
            Some(_) => RegistryAnswer { status: 200, headers: Vec::new(), body: b"{}".to_vec() },
            None => challenge(base_url),
        };
    }
    let Some(position) = segments.iter().position(|s| matches!(*s, "manifests" | "blobs" | "referrers")) else {
        return error(404, "NAME_UNKNOWN", "no such route");
    };
    let name = segments[1..position].iter().map(|s| crate::basics::percent_decode(s)).collect::<Vec<_>>().join("/");
    let rest: Vec<String> = segments[position..].iter().map(|s| crate::basics::percent_decode(s)).collect();
    let Some(grant) = grant else { return challenge(base_url) };
    let Some(&push) = grant.names.get(&name) else {
        return error(401, "UNAUTHORIZED", "the token is for another repository");
    };
    let writes = matches!(call.method, "PUT" | "POST" | "PATCH" | "DELETE");
    if writes && !push {
        return error(401, "UNAUTHORIZED", "the token does not allow pushes");
    }
    let Some((registry_name, repository)) = name.split_once('/') else {
        return error(404, "NAME_UNKNOWN", "no such repository");
    };
    let Some(registry) = state.registries.get_mut(registry_name) else {
        return error(404, "NAME_UNKNOWN", "no such registry");
    };
    if writes && registry.active_gc(now).is_some() {
        return error(401, "DENIED", "the registry is read-only while garbage collection runs");
    }
    let rest: Vec<&str> = rest.iter().map(String::as_str).collect();
    match (call.method, rest.as_slice()) {
        ("GET" | "HEAD", ["manifests", reference]) => {
            let Some(manifest) = registry.repositories.get(repository).and_then(|r| r.find(reference)) else {
                return error(404, "MANIFEST_UNKNOWN", "manifest unknown");
            };
            let accepted = call.accept.is_empty()
                || call
                    .accept
                    .split(',')
                    .map(|t| t.split(';').next().unwrap_or("").trim())
                    .any(|t| t == manifest.media_type || t == "*/*");
            if !accepted {
                return error(404, "MANIFEST_UNKNOWN", "manifest unknown in the accepted media types");
            }
            let body = if call.method == "HEAD" { Vec::new() } else { manifest.content.to_vec() };
            RegistryAnswer {
                status: 200,
                headers: vec![
                    ("content-type".into(), manifest.media_type.clone()),
                    ("docker-content-digest".into(), manifest.digest.clone()),
                ],
                body,
            }
        }
        ("GET", ["referrers", digest]) => {
            if !registry.referrers_api {
                return error(404, "NAME_UNKNOWN", "no such route");
            }
            let found = registry.repositories.get(repository).into_iter().flat_map(|r| r.manifests());
            let body = crate::artifacts::referrers_index(
                found
                    .filter(|m| m.subject.as_deref() == Some(*digest))
                    .map(|m| (m.digest.clone(), m.media_type.clone(), m.content.len() as u64)),
            );
            RegistryAnswer {
                status: 200,
                headers: vec![("content-type".into(), crate::content::OCI_INDEX.into())],
                body,
            }
        }
        ("HEAD", ["blobs", digest]) => match registry.blob_store.get(*digest) {
            Some(size) => RegistryAnswer {
                status: 200,
                headers: vec![
                    ("docker-content-digest".into(), digest.to_string()),
                    ("x-blob-size".into(), size.to_string()),
                ],
                body: Vec::new(),
            },
            None => error(404, "BLOB_UNKNOWN", "blob unknown"),
        },
        ("GET", ["blobs", digest]) => match registry.blob_bodies.get(*digest) {
            Some(bytes) => RegistryAnswer {
                status: 200,
                headers: vec![
                    ("content-type".into(), "application/octet-stream".into()),
                    ("docker-content-digest".into(), digest.to_string()),
                ],
                body: bytes.to_vec(),
            },
            // Layers are kept as sizes only: their bytes cannot be served.
            None => error(
                404,
                "BLOB_UNKNOWN",
                "blob unknown (the simulator keeps the bytes of configs and small uploads only)",
            ),
        },
        ("POST", ["blobs", "uploads"]) => {
            let id = format!("upload-{}", registry.uploads.len() + 1);
            registry.uploads.insert(id.clone(), repository.to_string());
            RegistryAnswer {
                status: 202,
                headers: vec![("location".into(), format!("/v2/{name}/blobs/uploads/{id}"))],
                body: Vec::new(),
            }
        }
        ("PUT", ["blobs", "uploads", id]) => {
            if registry.uploads.remove(*id).as_deref() != Some(repository) {
                return error(404, "BLOB_UPLOAD_UNKNOWN", "no such upload");
            }
            let wanted = call.query.iter().find(|(k, _)| k == "digest").map(|(_, v)| v.as_str()).unwrap_or("");
            let actual = content::sha256(call.body);
            if wanted != actual {
                return error(400, "DIGEST_INVALID", "the content does not match the digest");
            }
            registry.blob_store.insert(actual.clone(), call.body.len() as u64);
            if call.body.len() <= SMALL_BLOB_BYTES {
                registry.blob_bodies.insert(actual.clone(), std::sync::Arc::new(call.body.to_vec()));
            }
            RegistryAnswer {
                status: 201,
                headers: vec![
                    ("location".into(), format!("/v2/{name}/blobs/{actual}")),
                    ("docker-content-digest".into(), actual),
                ],
                body: Vec::new(),
            }
        }
        ("PUT", ["manifests", reference]) => {
            let Some(document) = Document::parse(call.content_type, call.body) else {
                return error(400, "MANIFEST_INVALID", "the body is not a manifest");
            };
            let existing = registry.repositories.get(repository);
            if let Some(missing) = document.children.iter().find(|c| existing.and_then(|r| r.find(c)).is_none()) {
                return error(
                    400,
                    "MANIFEST_BLOB_UNKNOWN",
                    &format!("the index holds {missing}, which is not in the repository"),
                );
            }
            if let Some((missing, _)) = document.blobs.iter().find(|(d, _)| !registry.blob_store.contains_key(d)) {
                return error(400, "BLOB_UNKNOWN", &format!("blob {missing} is not in the registry"));
            }
            let is_digest = reference.contains(':');
            if is_digest && *reference != document.digest {
                return error(400, "DIGEST_INVALID", "the manifest does not match the digest");
            }
            let digest = document.digest.clone();
            let tag = (!is_digest).then_some(*reference);
            let registry_name = registry_name.to_string();
            match state.store(&registry_name, repository, vec![document], tag, now) {
                Ok(_) => RegistryAnswer {
                    status: 201,
                    headers: vec![
                        ("location".into(), format!("/v2/{name}/manifests/{digest}")),
                        ("docker-content-digest".into(), digest),
                    ],
                    body: Vec::new(),
                },
                Err(refused) => error(refused.status, "DENIED", &refused.message),
            }
        }
        _ => error(405, "UNSUPPORTED", "the operation is unsupported"),
    }
}

/// The most `scope` parameters one token request may name.
pub const MAX_SCOPES: usize = 100;

/// The token service: Basic credentials from docker-credentials in, a Bearer token for the
/// requested scopes out (one `scope` parameter or several, as the token spec allows). Push is
/// granted only to read-write credentials and never during a GC.
fn token(state: &mut State, call: &RegistryCall, now: Instant) -> RegistryAnswer {
    let Some(issued) = credential(state, call.authorization, now).cloned() else {
        return error(401, "UNAUTHORIZED", "invalid registry credentials");
    };
    let scopes: Vec<&str> = call.query.iter().filter(|(k, _)| k == "scope").map(|(_, v)| v.as_str()).collect();
    if scopes.len() > MAX_SCOPES {
        return error(400, "UNSUPPORTED", &format!("at most {MAX_SCOPES} scopes in one token request"));
    }
    let mut names = BTreeMap::new();
    for scope in scopes.iter().copied().chain(scopes.is_empty().then_some("")) {
        let mut parts = scope.splitn(3, ':');
        let (Some("repository"), Some(name), Some(actions)) = (parts.next(), parts.next(), parts.next()) else {
            return error(400, "UNSUPPORTED", "scope must be repository:NAME:ACTIONS");
        };
        if name.split('/').next() != Some(issued.registry.as_str()) {
            return error(403, "DENIED", "the credentials are for another registry");
        }
        let push = actions.split(',').any(|a| a == "push");
        if push {
            if !issued.read_write {
                return error(403, "DENIED", "read-only credentials cannot push");
            }
            if state.registries.get(&issued.registry).is_some_and(|r| r.active_gc(now).is_some()) {
                return error(401, "DENIED", "no write tokens while garbage collection runs");
            }
        }
        names.insert(name.to_string(), push);
    }
    let token = format!("simreg-{}", state.next_id());
    state.registry_tokens.insert(token.clone(), RegistryGrant { names });
    RegistryAnswer {
        status: 200,
        headers: vec![("content-type".into(), "application/json".into())],
        body: json!({"token": token, "access_token": token, "expires_in": 300, "issued_at": now_rfc3339()})
            .to_string()
            .into_bytes(),
    }
}

/// Hands out registry credentials for `GET …/docker-credentials`.
pub fn issue_credentials(
    state: &mut State,
    registry: &str,
    read_write: bool,
    expiry: Option<Duration>,
    now: Instant,
) -> Value {
    let n = state.next_id();
    let user = format!("sim-{n}");
    let password = format!("sim-registry-password-{n}");
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    state.credentials.push(crate::state::IssuedCredential {
        user,
        password,
        registry: registry.to_string(),
        read_write,
        expires: expiry.filter(|e| !e.is_zero()).map(|e| now + e),
    });
    json!({"auths": {"registry.digitalocean.com": {"auth": auth}}})
}

/// A manifest as the snapshot shows it: what the listing shows and what it is.
pub fn snapshot_manifest(registry: &str, repository: &str, manifest: &Manifest) -> Value {
    let mut shown = crate::state::manifest_json(registry, repository, manifest);
    shown["media_type"] = json!(manifest.media_type);
    shown["children"] = json!(manifest.children);
    shown["subject"] = json!(manifest.subject);
    shown
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_paths_are_told_from_api_paths() {
        for path in ["/v2/", "/v2", "/v2/registry/auth", "/v2/reg/web/manifests/v1", "/v2/reg/team/web/blobs/uploads/"]
        {
            assert!(is_registry_path(path), "{path}");
        }
        for path in [
            "/v2/registries/reg/repositories/web/digests",
            "/v2/apps/x",
            "/v2/registry/reg/garbage-collection",
            "/v2/account",
        ] {
            assert!(!is_registry_path(path), "{path}");
        }
    }
}
