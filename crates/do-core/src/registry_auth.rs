//! Credentials on the registry host: the Basic credentials the API hands out, the Bearer
//! challenge and its token realm (https or loopback only), tokens per scope, and the
//! credentials of a Docker config file for a registry URL.

use std::collections::BTreeMap;

use anyhow::Context;
use base64::Engine;
use serde_json::Value;

use crate::api::{header, Secret};
use crate::oci::{registry_error, RegistryClient};

impl RegistryClient {
    pub(crate) fn authorization(&self, scope: &str, fresh: bool) -> anyhow::Result<Option<Secret>> {
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
                let token = self.fetch_token(&realm, service.as_deref(), &[scope])?;
                let value = Secret::new(format!("Bearer {}", token.expose()));
                tokens.insert(scope.to_string(), token);
                Ok(Some(value))
            }
        }
    }

    /// Gets Bearer tokens for reading (or with `push`, writing) all of `repositories` before
    /// they are used: one token request names up to [`SCOPES_PER_TOKEN`] repositories, instead
    /// of one request per repository on each repository's first read. A token service that
    /// grants fewer scopes than asked costs nothing but time: a read it does not cover is
    /// answered 401 and asks for a token of its own, as without this.
    pub fn authorize(&self, repositories: &[String], push: bool) -> anyhow::Result<()> {
        let Challenge::Bearer { realm, service } = self.challenge()? else { return Ok(()) };
        let mut tokens = self.tokens.lock().unwrap_or_else(|e| e.into_inner());
        let mut wanted: Vec<String> =
            repositories.iter().map(|r| self.scope(r, push)).filter(|s| !tokens.contains_key(s)).collect();
        wanted.sort();
        wanted.dedup();
        for batch in wanted.chunks(SCOPES_PER_TOKEN) {
            let scopes: Vec<&str> = batch.iter().map(String::as_str).collect();
            let token = self.fetch_token(&realm, service.as_deref(), &scopes)?;
            for scope in batch {
                tokens.insert(scope.clone(), Secret::new(token.expose().to_string()));
            }
        }
        Ok(())
    }

    pub(crate) fn basic(&self) -> String {
        base64::engine::general_purpose::STANDARD.encode(self.credentials.expose())
    }

    /// `GET /v2/`: 200 means open, 401 names the scheme (and, for Bearer, where tokens come from).
    pub(crate) fn challenge(&self) -> anyhow::Result<Challenge> {
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

    /// Gets a Bearer token for `scopes` from the realm, with the registry credentials.
    pub(crate) fn fetch_token(&self, realm: &str, service: Option<&str>, scopes: &[&str]) -> anyhow::Result<Secret> {
        let realm_url = crate::api::checked_base_url(realm.split('?').next().unwrap_or(realm))
            .map_err(|_| anyhow::anyhow!("the registry's token realm {realm:?} is neither https nor loopback; refusing to send credentials there"))?;
        let mut query: Vec<String> = scopes.iter().map(|scope| format!("scope={}", query_value(scope))).collect();
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
}

/// The most repositories one token request names (the URL stays a few KiB long).
pub const SCOPES_PER_TOKEN: usize = 25;

/// How the registry wants to be authenticated, learnt from its answer to `GET /v2/`.
#[derive(Clone, Debug)]
pub(crate) enum Challenge {
    /// It answered 200: no credentials needed.
    Open,
    Basic,
    Bearer {
        realm: String,
        service: Option<String>,
    },
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
}
