//! The one place an HTTP agent is made: for the API, the registry host and log downloads alike.
//! Each gets the proxy from the environment (`HTTPS_PROXY`, `ALL_PROXY`, `NO_PROXY`; never for a
//! loopback address), the trusted roots (the built-in Mozilla roots, or exactly the PEM bundle
//! `SSL_CERT_FILE` names, as curl and OpenSSL read it), and do-release's user agent.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ureq::unversioned::resolver::{DefaultResolver, ResolvedSocketAddrs, Resolver};
use ureq::unversioned::transport::{DefaultConnector, NextTimeout};

use ureq::tls::{Certificate, PemItem, RootCerts, TlsConfig};

use crate::api::is_loopback_url;
use crate::exit::Failure;

/// The variable naming a PEM bundle of trusted roots (a company CA, a TLS-inspecting proxy's).
pub const CA_FILE_VARIABLE: &str = "SSL_CERT_FILE";

/// A bundle larger than this is not a CA bundle (Debian's whole bundle is about 200 KiB).
const MAX_CA_FILE_BYTES: u64 = 4 << 20;

/// Idle connections an agent keeps open for reuse: at least the largest `--concurrency`.
const MAX_IDLE_CONNECTIONS: usize = 64;

/// How an agent treats answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Answers {
    /// API and registry calls: every status and every redirect is the caller's to handle.
    Raw,
    /// A log download: redirects followed, a status of 400 or more is an error.
    Download,
    /// A health check of the app: statuses are the caller's, up to 5 redirects followed, and
    /// only https once the URL is https.
    Check { https_only: bool },
}

/// What an agent is for.
#[derive(Clone, Copy, Debug)]
pub struct AgentOptions {
    /// The whole request's time limit (a request may set its own).
    pub timeout: Option<Duration>,
    /// The connection's time limit.
    pub connect_timeout: Option<Duration>,
    pub answers: Answers,
}

/// An agent for requests to `url`'s host: the proxy for that host, the trusted roots, the user
/// agent, and `options`.
pub fn agent(url: &str, options: AgentOptions) -> anyhow::Result<ureq::Agent> {
    let proxy = if is_loopback_url(url) { None } else { ureq::Proxy::try_from_env() };
    let config = ureq::Agent::config_builder()
        .user_agent(format!("do-release/{}", env!("CARGO_PKG_VERSION")))
        .proxy(proxy)
        .tls_config(tls_config()?)
        .timeout_global(options.timeout)
        .timeout_connect(options.connect_timeout)
        // Connections are kept for the next request: one per request under way (up to the
        // largest --concurrency), not the three ureq keeps per host by default.
        .max_idle_connections(MAX_IDLE_CONNECTIONS)
        .max_idle_connections_per_host(MAX_IDLE_CONNECTIONS)
        // Each kept connection holds its buffers: ureq's 128 KiB each way, over 16 connections
        // to each host, was 8 MB for answers of a few KiB. Answers' heads still fit whole.
        .input_buffer_size(64 * 1024)
        .output_buffer_size(32 * 1024);
    let config = match options.answers {
        Answers::Raw => config.http_status_as_error(false).max_redirects(0).max_redirects_will_error(false),
        Answers::Download => config,
        Answers::Check { https_only } => config.http_status_as_error(false).https_only(https_only).max_redirects(5),
    };
    Ok(ureq::Agent::with_parts(config.build(), DefaultConnector::new(), RememberingResolver::default()))
}

/// How long a host's addresses are used without asking again.
const REMEMBER_ADDRESSES: Duration = Duration::from_secs(60);

/// ureq's resolver, asked once a minute per host instead of on every request: with a timeout it
/// starts a thread for each lookup, even for a request on a kept-alive connection, which made
/// a thread per manifest read.
#[derive(Debug, Default)]
struct RememberingResolver {
    inner: DefaultResolver,
    known: Mutex<HashMap<String, (Instant, ResolvedSocketAddrs)>>,
}

impl Resolver for RememberingResolver {
    fn resolve(
        &self,
        uri: &ureq::http::Uri,
        config: &ureq::config::Config,
        timeout: NextTimeout,
    ) -> Result<ResolvedSocketAddrs, ureq::Error> {
        let key = format!("{}://{}", uri.scheme_str().unwrap_or(""), uri.authority().map(|a| a.as_str()).unwrap_or(""));
        let now = Instant::now();
        let mut known = self.known.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((at, addresses)) = known.get(&key) {
            if now.duration_since(*at) < REMEMBER_ADDRESSES {
                return Ok(addresses.clone());
            }
        }
        drop(known);
        let addresses = self.inner.resolve(uri, config, timeout)?;
        known = self.known.lock().unwrap_or_else(|e| e.into_inner());
        known.insert(key, (now, addresses.clone()));
        Ok(addresses)
    }
}

/// The TLS settings: the roots of `SSL_CERT_FILE` when it is set, else the built-in ones.
fn tls_config() -> anyhow::Result<TlsConfig> {
    let path = std::env::var_os(CA_FILE_VARIABLE).filter(|p| !p.is_empty());
    let Some(path) = path else { return Ok(TlsConfig::default()) };
    let shown = std::path::Path::new(&path).display().to_string();
    let bundle = read_bundle(std::path::Path::new(&path)).map_err(|why| {
        Failure::usage(format!("{CA_FILE_VARIABLE} {shown:?}: {why}; give a PEM file of CA certificates, or unset it"))
    })?;
    let certificates = parse_bundle(&bundle).map_err(|why| {
        Failure::usage(format!("{CA_FILE_VARIABLE} {shown:?}: {why}; give a PEM file of CA certificates, or unset it"))
    })?;
    Ok(TlsConfig::builder().root_certs(RootCerts::Specific(Arc::new(certificates))).build())
}

fn read_bundle(path: &std::path::Path) -> Result<Vec<u8>, String> {
    let metadata = std::fs::metadata(path).map_err(|e| format!("cannot be read ({e})"))?;
    if !metadata.is_file() {
        return Err("is not a regular file".into());
    }
    if metadata.len() > MAX_CA_FILE_BYTES {
        return Err("is larger than 4 MiB".into());
    }
    std::fs::read(path).map_err(|e| format!("cannot be read ({e})"))
}

/// The certificates of a PEM bundle (other sections, such as keys, are skipped).
pub fn parse_bundle(bundle: &[u8]) -> Result<Vec<Certificate<'static>>, String> {
    let mut certificates = Vec::new();
    for item in ureq::tls::parse_pem(bundle) {
        match item.map_err(|e| format!("is not valid PEM ({e})"))? {
            PemItem::Certificate(certificate) => certificates.push(certificate),
            _ => continue,
        }
    }
    if certificates.is_empty() {
        return Err("holds no PEM certificate".into());
    }
    Ok(certificates)
}

/// A hint for a transport error about the server's certificate, if it is one.
pub fn certificate_hint(message: &str) -> Option<&'static str> {
    let lower = message.to_ascii_lowercase();
    (lower.contains("certificate") || lower.contains("unknownissuer")).then_some(
        "the server's certificate is not trusted; behind a TLS-inspecting proxy or with a private CA, set SSL_CERT_FILE to a PEM bundle that holds its CA",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bundle_without_certificates_is_refused_and_other_sections_are_skipped() {
        assert_eq!(parse_bundle(b"").unwrap_err(), "holds no PEM certificate");
        assert_eq!(parse_bundle(b"not pem at all\n").unwrap_err(), "holds no PEM certificate");
        let key_only = b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n";
        assert_eq!(parse_bundle(key_only).unwrap_err(), "holds no PEM certificate");
    }

    #[test]
    fn certificate_failures_get_the_hint_and_others_do_not() {
        assert!(certificate_hint("rustls: invalid peer certificate: UnknownIssuer").is_some());
        assert!(certificate_hint("could not connect").is_none());
    }
}
