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
    Digest::sha256_of(bytes).to_string()
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
        let object: Members = serde_json::from_slice(body).map_err(|e| match e.classify() {
            // Every member is taken as whatever it is: only the whole can be of the wrong type.
            serde_json::error::Category::Data => format!("the manifest {digest} is not a JSON object ({e})"),
            _ => format!("the manifest {digest} is not JSON: {e}"),
        })?;
        let declared = content_type.map(|t| t.split(';').next().unwrap_or("").trim().to_ascii_lowercase());
        let media_type = match declared {
            Some(t) if !t.is_empty() && t != "application/json" && t != "application/octet-stream" => t,
            _ => object.own_media_type(),
        };
        let mut children = Vec::new();
        if let Some(manifests) = &object.manifests {
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
        let digest_in = |member: &Option<Value>| {
            member.as_ref().and_then(|m| m.get("digest")).and_then(Value::as_str).map(Digest::normalized)
        };
        let (subject, config) = (digest_in(&object.subject), digest_in(&object.config));
        Ok(ManifestInfo { digest: digest.clone(), media_type, children, subject, config, size: body.len() as u64 })
    }
}

/// The media type a manifest's bytes give themselves, as [`ManifestInfo::parse`] reads it
/// without a `Content-Type`: their `mediaType`, else an index when they list `manifests`, else
/// an image manifest. `None` when the bytes are not a JSON object.
pub fn own_media_type(body: &[u8]) -> Option<String> {
    serde_json::from_slice::<Members>(body).ok().map(|members| members.own_media_type())
}

/// The top-level members of a manifest that say what it is; the others (layers, annotations)
/// are skipped, not built. A member given twice counts at its last, as in any JSON object read.
#[derive(Default)]
struct Members {
    media_type: Option<Value>,
    manifests: Option<Value>,
    subject: Option<Value>,
    config: Option<Value>,
}

impl Members {
    fn own_media_type(&self) -> String {
        let named = self.media_type.as_ref().and_then(Value::as_str).map(str::to_string);
        named.unwrap_or_else(|| shape_media_type(self.manifests.is_some()).to_string())
    }
}

impl<'de> serde::Deserialize<'de> for Members {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Members, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = Members;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON object")
            }

            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Members, A::Error> {
                let mut members = Members::default();
                while let Some(key) = map.next_key::<String>()? {
                    let slot = match key.as_str() {
                        "mediaType" => &mut members.media_type,
                        "manifests" => &mut members.manifests,
                        "subject" => &mut members.subject,
                        "config" => &mut members.config,
                        _ => {
                            map.next_value::<serde::de::IgnoredAny>()?;
                            continue;
                        }
                    };
                    *slot = Some(map.next_value()?);
                }
                Ok(members)
            }
        }
        deserializer.deserialize_map(Visitor)
    }
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

/// A digest as the API and registry write it: trimmed, algorithm and hex in lowercase.
pub fn normalize_digest(text: &str) -> String {
    Digest::normalized(text).to_string()
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
        let error = |body: &[u8]| ManifestInfo::parse(&"d".into(), None, body).unwrap_err();
        assert!(error(b"[1]")
            .starts_with("the manifest d is not a JSON object (invalid type: sequence, expected a JSON object"));
        assert!(
            error(b"7").starts_with("the manifest d is not a JSON object (invalid type: integer `7`, expected a JSON")
        );
        assert!(error(b"{\"a\":").starts_with("the manifest d is not JSON: EOF"), "{}", error(b"{\"a\":"));
        assert!(error(b"not json").starts_with("the manifest d is not JSON: expected"), "{}", error(b"not json"));
        // A member given twice counts at its last; one of any type is taken as what it is.
        let twice = br#"{"mediaType":"a","config":7,"subject":"x","mediaType":"b"}"#;
        let info = ManifestInfo::parse(&"d".into(), None, twice).unwrap();
        assert_eq!((info.media_type.as_str(), info.config, info.subject), ("b", None, None));
        assert_eq!(own_media_type(twice).as_deref(), Some("b"));
        assert!(ManifestInfo::parse(&"d".into(), None, br#"{"manifests":null}"#).is_err(), "null is no list");
        assert_eq!(own_media_type(br#"{"manifests":null}"#).as_deref(), Some(OCI_INDEX));
        assert!(ManifestInfo::parse(&"d".into(), None, br#"{"manifests":[{"size":1}]}"#).is_err());
        // A specific Content-Type wins over the body; a generic one, or none, leaves it to the body.
        let typed = |content_type: &str| ManifestInfo::parse(&"d".into(), Some(content_type), image).unwrap();
        assert_eq!(typed(OCI_INDEX).media_type, OCI_INDEX);
        assert!(typed(OCI_INDEX).is_index() && !typed(" ").is_index());
        for generic in ["", " ; charset=utf-8", "application/json", "Application/Octet-Stream"] {
            assert_eq!(typed(generic).media_type, DOCKER_MANIFEST, "{generic:?}");
        }
        let config = br#"{"config":{"digest":" SHA256:CC ","size":2},"layers":[]}"#;
        assert_eq!(ManifestInfo::parse(&"d".into(), None, config).unwrap().config, Some("sha256:cc".into()));
    }

    #[test]
    fn only_the_two_list_types_are_indexes() {
        assert!(is_index_type(OCI_INDEX) && is_index_type(DOCKER_MANIFEST_LIST));
        assert!(!is_index_type(OCI_MANIFEST) && !is_index_type(DOCKER_MANIFEST) && !is_index_type(""));
    }
}
