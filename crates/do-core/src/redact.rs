//! One redaction function for every string that comes from outside (API error bodies, registry
//! answers, deployment logs, git and docker output) before it reaches stderr, a record, GitHub
//! outputs, a step summary, a plan file or a saved step output. A server that echoes the
//! `Authorization` header, or an app that logs its environment, must not put a credential there.
//!
//! Two nets: the secrets this process holds (the API token, registry credentials and tokens) are
//! registered when they are read and replaced wherever they appear, in any form a server might
//! echo (plain, base64, after `Bearer`/`Basic`); and shapes that carry credentials whoever owns
//! them (`Bearer …`, `Basic …`, docker `auth` values, passwords, DigitalOcean tokens) are masked.

use std::sync::{Mutex, OnceLock};

use base64::Engine;
use regex::Regex;

pub const MASK: &str = "***";
/// Shorter strings are not registered: masking them everywhere would mangle ordinary text.
const SHORTEST_SECRET: usize = 6;

fn secrets() -> &'static Mutex<Vec<String>> {
    static SECRETS: OnceLock<Mutex<Vec<String>>> = OnceLock::new();
    SECRETS.get_or_init(|| Mutex::new(Vec::new()))
}

/// Remembers a secret this process holds, with its base64 form, so that [`redact`] masks both.
pub fn register(secret: &str) {
    let secret = secret.trim();
    if secret.len() < SHORTEST_SECRET {
        return;
    }
    let mut known = secrets().lock().unwrap_or_else(|e| e.into_inner());
    for form in [secret.to_string(), base64::engine::general_purpose::STANDARD.encode(secret)] {
        if !known.contains(&form) {
            known.push(form);
        }
    }
    // Longest first, so a secret containing another is masked whole.
    known.sort_by_key(|s| std::cmp::Reverse(s.len()));
}

/// Registers every credential of a docker config's `auths` (each `auth`, decoded, and its password).
pub fn register_docker_auths(auths: &serde_json::Value) {
    for entry in auths.as_object().into_iter().flat_map(|o| o.values()) {
        let Some(encoded) = entry.get("auth").and_then(serde_json::Value::as_str) else { continue };
        register(encoded);
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(encoded.trim())
            .ok()
            .and_then(|b| String::from_utf8(b).ok());
        if let Some(decoded) = decoded {
            register(&decoded);
            if let Some((_, password)) = decoded.split_once(':') {
                register(password);
            }
        }
    }
}

struct Shapes {
    scheme: Regex,
    json_field: Regex,
    url_userinfo: Regex,
    do_token: Regex,
}

fn shapes() -> &'static Shapes {
    static SHAPES: OnceLock<Shapes> = OnceLock::new();
    SHAPES.get_or_init(|| Shapes {
        // `Bearer xyz`, `Basic xyz` (an echoed Authorization header or WWW-Authenticate challenge
        // never carries a credential after the scheme but a realm, which stays readable).
        scheme: Regex::new(r#"(?i)\b(bearer|basic)(\s+)([A-Za-z0-9\-._~+/]{6,}=*)"#).expect("valid"),
        // "auth": "…", "password": "…", "token": "…" in JSON (docker configs, token answers).
        json_field: Regex::new(
            r#"(?i)("(?:auth|password|passwd|secret|token|access_token|identitytoken|registrytoken|refresh_token)"\s*:\s*")[^"]*(")"#,
        )
        .expect("valid"),
        url_userinfo: Regex::new(r#"(?i)\b([a-z][a-z0-9+.-]*://)[^/\s:@"']+:[^/\s@"']+@"#).expect("valid"),
        // DigitalOcean personal, OAuth and refresh tokens.
        do_token: Regex::new(r#"\bdo[opr]_v1_[A-Za-z0-9]{16,}"#).expect("valid"),
    })
}

/// `text` with every known secret and every credential-shaped value replaced by `***`.
pub fn redact(text: &str) -> String {
    let mut out = text.to_string();
    {
        let known = secrets().lock().unwrap_or_else(|e| e.into_inner());
        for secret in known.iter() {
            if out.contains(secret.as_str()) {
                out = out.replace(secret.as_str(), MASK);
            }
        }
    }
    let shapes = shapes();
    let out = shapes.scheme.replace_all(&out, |c: &regex::Captures| {
        if c[3].starts_with("realm=") || &c[3] == MASK {
            c[0].to_string()
        } else {
            format!("{}{}{MASK}", &c[1], &c[2])
        }
    });
    let out = shapes.json_field.replace_all(&out, format!("${{1}}{MASK}${{2}}").as_str());
    let out = shapes.url_userinfo.replace_all(&out, format!("${{1}}{MASK}@").as_str());
    shapes.do_token.replace_all(&out, MASK).into_owned()
}

/// Writes `value` as JSON (indented with `pretty`) to `out`, redacted as it passes (see
/// [`JsonRedactor`]): a large value is never held whole as text. Returns `out`.
pub fn write_json<W: std::io::Write>(out: W, value: &impl serde::Serialize, pretty: bool) -> std::io::Result<W> {
    // serde_json writes a few bytes at a time: gathered before the redactor looks at them.
    let mut gathered = std::io::BufWriter::with_capacity(REDACT_CHUNK, JsonRedactor::new(out));
    let written = match pretty {
        true => serde_json::to_writer_pretty(&mut gathered, value),
        false => serde_json::to_writer(&mut gathered, value),
    };
    written.map_err(std::io::Error::other)?;
    gathered.into_inner().map_err(std::io::IntoInnerError::into_error)?.finish()
}

/// A writer that redacts JSON as it passes, so that a large record is never held whole: bytes
/// are kept until a comma outside any string, and everything before it is redacted and written.
/// Each pattern [`redact`] masks lies within one string or one `"key": "value"` pair, so none
/// is ever cut in two.
pub struct JsonRedactor<W: std::io::Write> {
    out: W,
    pending: Vec<u8>,
    /// Just after the last comma outside a string in `pending` (0: none).
    cut: usize,
    in_string: bool,
    escaped: bool,
}

/// How much is gathered before it is redacted and written.
const REDACT_CHUNK: usize = 64 * 1024;

impl<W: std::io::Write> JsonRedactor<W> {
    pub fn new(out: W) -> JsonRedactor<W> {
        JsonRedactor { out, pending: Vec::with_capacity(REDACT_CHUNK * 2), cut: 0, in_string: false, escaped: false }
    }

    /// Redacts and writes what is left; returns the writer.
    pub fn finish(mut self) -> std::io::Result<W> {
        let all = self.pending.len();
        self.write_redacted(all)?;
        Ok(self.out)
    }

    fn write_redacted(&mut self, upto: usize) -> std::io::Result<()> {
        let text = String::from_utf8_lossy(&self.pending[..upto]);
        self.out.write_all(redact(&text).as_bytes())?;
        self.pending.drain(..upto);
        self.cut = 0;
        Ok(())
    }
}

impl<W: std::io::Write> std::io::Write for JsonRedactor<W> {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        let start = self.pending.len();
        self.pending.extend_from_slice(bytes);
        for (at, &byte) in bytes.iter().enumerate() {
            match (self.in_string, self.escaped, byte) {
                (true, true, _) => self.escaped = false,
                (true, false, b'\\') => self.escaped = true,
                (true, false, b'"') | (false, _, b'"') => self.in_string = !self.in_string,
                (false, _, b',') => self.cut = start + at + 1,
                _ => {}
            }
        }
        if self.pending.len() >= REDACT_CHUNK && self.cut > 0 {
            self.write_redacted(self.cut)?;
        }
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.out.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_redacted_as_it_is_written_is_the_record_redacted_whole() {
        register("streamed-secret-value");
        let entries: Vec<serde_json::Value> = (0..20_000)
            .map(|i| {
                serde_json::json!({
                    "n": i,
                    "text": format!("a \"quoted, \\ text\" with streamed-secret-value and Bearer abcdefgh{i}"),
                    "token": "keep-out",
                    "url": "https://user:hunter2@example.com/, more",
                })
            })
            .collect();
        let whole = redact(&serde_json::to_string(&entries).unwrap());
        let mut writer = JsonRedactor::new(Vec::new());
        serde_json::to_writer(&mut writer, &entries).unwrap();
        let streamed = String::from_utf8(writer.finish().unwrap()).unwrap();
        assert!(streamed.len() > 4 * REDACT_CHUNK, "written in many pieces");
        assert_eq!(streamed, whole);
        assert!(
            !streamed.contains("streamed-secret") && !streamed.contains("keep-out") && !streamed.contains("hunter2")
        );
    }

    #[test]
    fn json_written_indented_or_not_is_the_json_redacted_whole() {
        register("pretty-secret-value");
        let entries: Vec<serde_json::Value> = (0..5_000)
            .map(|i| serde_json::json!({"n": i, "text": format!("with pretty-secret-value, \"{i}\""), "password": "out"}))
            .collect();
        for pretty in [false, true] {
            let whole = match pretty {
                true => serde_json::to_string_pretty(&entries).unwrap(),
                false => serde_json::to_string(&entries).unwrap(),
            };
            let streamed = String::from_utf8(write_json(Vec::new(), &entries, pretty).unwrap()).unwrap();
            assert!(streamed.len() > 4 * REDACT_CHUNK, "written in many pieces");
            assert_eq!(streamed, redact(&whole), "pretty: {pretty}");
            assert!(!streamed.contains("pretty-secret") && !streamed.contains("\"out\""));
        }
    }

    #[test]
    fn registered_secrets_are_masked_in_every_form() {
        register("s3cr3t-api-token-value");
        let echoed = format!(
            "bad token s3cr3t-api-token-value; header Authorization: Bearer s3cr3t-api-token-value; b64 {}",
            base64::engine::general_purpose::STANDARD.encode("s3cr3t-api-token-value")
        );
        let shown = redact(&echoed);
        assert!(!shown.contains("s3cr3t"), "{shown}");
        assert_eq!(shown.matches(MASK).count(), 3, "{shown}");
        register("abc");
        assert_eq!(redact("abc def"), "abc def", "too short to be a secret worth masking everywhere");
    }

    #[test]
    fn credential_shapes_are_masked_whoever_owns_them() {
        let cases = [
            ("Authorization: Bearer eyJhbGciOi.x-y_z", "Authorization: Bearer ***"),
            ("authorization: basic dXNlcjpwYXNz", "authorization: basic ***"),
            (
                r#"{"auths":{"registry.digitalocean.com":{"auth":"dXNlcjpwYXNz"}}}"#,
                r#"{"auths":{"registry.digitalocean.com":{"auth":"***"}}}"#,
            ),
            (r#"{"token": "abc.def", "access_token":"x"}"#, r#"{"token": "***", "access_token":"***"}"#),
            ("https://user:hunter2@registry.example.com/v2/", "https://***@registry.example.com/v2/"),
            (&format!("token dop_v1_{}", "a1".repeat(32)), "token ***"),
        ];
        for (text, expected) in cases {
            assert_eq!(redact(text), expected, "{text}");
        }
    }

    #[test]
    fn ordinary_text_stays_readable() {
        for text in [
            r#"Bearer realm="https://api.digitalocean.com/v2/registry/auth",service="registry.digitalocean.com""#,
            "GET /v2/registries/reg/repositories/web/digests answered 404 not_found",
            "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
            "the basic plan, a bearer of news",
            "https://registry.digitalocean.com/v2/",
        ] {
            assert_eq!(redact(text), text);
        }
    }
}
