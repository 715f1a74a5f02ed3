//! What a manifest is, read from its bytes: an image or an index (and what the index holds:
//! platform images, attestations), the manifest a referrer points at, its digest.

use serde_json::Value;

use crate::digest::Digest;

pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// The manifest types asked for, in the `Accept` header of every manifest request.
pub const ACCEPTED_TYPES: [&str; 4] = [OCI_INDEX, DOCKER_MANIFEST_LIST, OCI_MANIFEST, DOCKER_MANIFEST];

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
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut text = String::with_capacity(7 + 64);
    text.push_str("sha256:");
    for byte in hash.as_ref() {
        text.push(HEX[usize::from(byte >> 4)] as char);
        text.push(HEX[usize::from(byte & 15)] as char);
    }
    text
}

/// One manifest an index holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Descriptor {
    pub digest: Digest,
    pub media_type: Option<String>,
    /// `os/architecture[/variant]`, when the index says.
    pub platform: Option<String>,
    /// For a buildx attestation manifest: the platform manifest it describes.
    pub attestation_of: Option<Digest>,
}

/// What a manifest is, as far as keeping or deleting goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ManifestInfo {
    pub digest: Digest,
    pub media_type: String,
    /// The manifests an index holds (empty for an image manifest).
    pub children: Vec<Descriptor>,
    /// The manifest this one refers to (OCI 1.1 `subject`: signatures, SBOMs, attestations).
    pub subject: Option<Digest>,
    /// An image manifest's config blob.
    pub config: Option<Digest>,
    pub size: u64,
}

impl ManifestInfo {
    pub fn is_index(&self) -> bool {
        is_index_type(&self.media_type)
    }

    /// Reads a manifest body. The media type comes from `Content-Type` unless that is generic,
    /// then from the body's `mediaType`, then from its shape (`manifests` makes an index).
    pub fn parse(digest: &Digest, content_type: Option<&str>, body: &[u8]) -> Result<ManifestInfo, String> {
        let value: Value =
            serde_json::from_slice(body).map_err(|e| format!("the manifest {digest} is not JSON: {e}"))?;
        let Value::Object(object) = &value else {
            return Err(format!("the manifest {digest} is not a JSON object"));
        };
        let declared = content_type.map(|t| t.split(';').next().unwrap_or("").trim().to_ascii_lowercase());
        let from_body = object.get("mediaType").and_then(Value::as_str).map(str::to_string);
        let media_type = match declared {
            Some(t) if !t.is_empty() && t != "application/json" && t != "application/octet-stream" => t,
            _ => from_body.unwrap_or_else(|| shape_media_type(object.contains_key("manifests")).to_string()),
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
                    .then(|| annotation(REFERENCE_DIGEST).map(Digest::normalized))
                    .flatten();
                children.push(Descriptor {
                    digest: Digest::normalized(child),
                    media_type: entry.get("mediaType").and_then(Value::as_str).map(str::to_string),
                    platform,
                    attestation_of,
                });
            }
        }
        let subject =
            object.get("subject").and_then(|s| s.get("digest")).and_then(Value::as_str).map(Digest::normalized);
        let config = object.get("config").and_then(|c| c.get("digest")).and_then(Value::as_str).map(Digest::normalized);
        Ok(ManifestInfo { digest: digest.clone(), media_type, children, subject, config, size: body.len() as u64 })
    }
}

/// A digest as the API and registry write it: trimmed, algorithm and hex in lowercase.
/// The media type a manifest's bytes give themselves, as [`ManifestInfo::parse`] reads it
/// without a `Content-Type`: their `mediaType`, else an index when they list `manifests`, else
/// an image manifest. `None` when the bytes are not a JSON object of that shape. Reads only the
/// top level (everything else is skipped, not built).
pub fn own_media_type(body: &[u8]) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Top {
        #[serde(rename = "mediaType")]
        media_type: Option<Value>,
        manifests: Option<serde::de::IgnoredAny>,
    }
    let top: Top = serde_json::from_slice(body).ok()?;
    let from_body = top.media_type.as_ref().and_then(Value::as_str).map(str::to_string);
    Some(from_body.unwrap_or_else(|| shape_media_type(top.manifests.is_some()).to_string()))
}

/// The media type of a manifest that names none: an index when it lists `manifests`, else an
/// image manifest.
fn shape_media_type(lists_manifests: bool) -> &'static str {
    if lists_manifests {
        OCI_INDEX
    } else {
        OCI_MANIFEST
    }
}

pub fn normalize_digest(text: &str) -> String {
    text.trim().to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_own_media_type_is_what_parsing_without_a_content_type_finds() {
        for body in [
            &br#"{"mediaType":"application/vnd.docker.distribution.manifest.v2+json","layers":[]}"#[..],
            br#"{"schemaVersion":2,"manifests":[]}"#,
            br#"{"schemaVersion":2,"config":{"digest":"sha256:cc"}}"#,
            br#"{"mediaType":7,"manifests":[]}"#,
            br#"{"mediaType":null}"#,
        ] {
            let parsed = ManifestInfo::parse(&"sha256:x".into(), None, body).unwrap();
            assert_eq!(own_media_type(body), Some(parsed.media_type), "{}", String::from_utf8_lossy(body));
        }
        assert_eq!(own_media_type(b"[1]"), None);
        assert_eq!(own_media_type(b"not json"), None);
    }

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
        let info =
            ManifestInfo::parse(&"sha256:ix".into(), Some("application/vnd.oci.image.index.v1+json"), body).unwrap();
        assert!(info.is_index());
        assert_eq!(info.children.len(), 2);
        assert_eq!(info.children[0].digest, "sha256:aa");
        assert_eq!(info.children[0].platform.as_deref(), Some("linux/arm64/v8"));
        assert_eq!(info.children[1].attestation_of, Some("sha256:aa".into()));
        assert_eq!(info.children[0].attestation_of, None);
    }

    #[test]
    fn the_media_type_comes_from_the_header_then_the_body_then_the_shape() {
        let image =
            br#"{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.v2+json","layers":[]}"#;
        assert_eq!(
            ManifestInfo::parse(&"d".into(), Some("application/json"), image).unwrap().media_type,
            DOCKER_MANIFEST
        );
        let shapeless = br#"{"manifests":[]}"#;
        assert!(ManifestInfo::parse(&"d".into(), None, shapeless).unwrap().is_index());
        let referrer = br#"{"layers":[],"subject":{"digest":"sha256:CC","size":1}}"#;
        let info = ManifestInfo::parse(
            &"d".into(),
            Some("application/vnd.oci.image.manifest.v1+json; charset=utf-8"),
            referrer,
        )
        .unwrap();
        assert_eq!((info.media_type.as_str(), info.subject), (OCI_MANIFEST, Some("sha256:cc".into())));
        assert!(ManifestInfo::parse(&"d".into(), None, b"[1]").is_err());
        assert!(ManifestInfo::parse(&"d".into(), None, br#"{"manifests":[{"size":1}]}"#).is_err());
    }
}
