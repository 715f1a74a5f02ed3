//! Which addresses the tools talk to: https, or plain http to a loopback address (the
//! simulator); path segments percent-encoded so a name never becomes a path.

use crate::exit::Failure;

/// Checks the base URL: https anywhere, plain http only to a loopback address (the simulator),
/// since the token travels in every request.
pub fn checked_base_url(url: &str) -> anyhow::Result<String> {
    let trimmed = url.trim().trim_end_matches('/');
    let uri: ureq::http::Uri = trimmed
        .parse()
        .map_err(|_| Failure::usage(format!("invalid API URL {trimmed:?}: expected https://HOST[:PORT]")))?;
    let scheme = uri.scheme_str().unwrap_or("");
    if uri.host().is_none() || uri.query().is_some() {
        return Err(Failure::usage(format!("invalid API URL {trimmed:?}: expected https://HOST[:PORT]")));
    }
    match scheme {
        "https" => Ok(trimmed.to_string()),
        "http" if is_loopback_url(trimmed) => Ok(trimmed.to_string()),
        "http" => Err(Failure::usage(format!(
            "refusing to send the API token over plain http to {}: use https, or a loopback address for do-sim",
            uri.host().unwrap_or("")
        ))),
        _ => Err(Failure::usage(format!("invalid API URL {trimmed:?}: expected https://HOST[:PORT]"))),
    }
}

pub fn is_loopback_url(url: &str) -> bool {
    let Ok(uri) = url.parse::<ureq::http::Uri>() else { return false };
    let host = uri.host().unwrap_or("").trim_start_matches('[').trim_end_matches(']');
    host == "localhost" || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// Percent-encodes one path segment: a repository `team/web` becomes `team%2Fweb`.
/// Unreserved characters and `:` (digests) stay as they are; `.` and `..` are encoded whole.
pub fn segment(raw: &str) -> String {
    if raw.is_empty() || raw.bytes().all(|b| b == b'.') {
        return raw.bytes().map(|b| format!("%{b:02X}")).collect();
    }
    let mut encoded = String::with_capacity(raw.len());
    for byte in raw.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~' | b':') {
            encoded.push(byte as char);
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    encoded
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_segments_are_percent_encoded() {
        assert_eq!(segment("team/web"), "team%2Fweb");
        assert_eq!(segment("sha256:abc"), "sha256:abc");
        assert_eq!(segment("a b?c#d%e"), "a%20b%3Fc%23d%25e");
        assert_eq!(segment(".."), "%2E%2E");
        assert_eq!(segment("v1.2.3"), "v1.2.3");
    }

    #[test]
    fn the_token_goes_only_over_https_or_to_loopback() {
        assert!(checked_base_url("https://api.digitalocean.com/").is_ok());
        assert!(checked_base_url("http://127.0.0.1:8080").is_ok());
        assert!(checked_base_url("http://localhost:1").is_ok());
        assert!(checked_base_url("http://[::1]:1").is_ok());
        let error = checked_base_url("http://api.example.com").unwrap_err().to_string();
        assert!(error.contains("refusing"), "{error}");
        assert!(checked_base_url("http://10.0.0.1").is_err());
        assert!(checked_base_url("ftp://x").is_err());
        assert!(checked_base_url("not a url").is_err());
    }
}
