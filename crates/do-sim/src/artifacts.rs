//! What signing tools push next to an image, as they push it: cosign's tag-scheme manifests
//! (`sha256-<hex>.sig`, `.att`, `.sbom`), and OCI 1.1 referrers (an untagged manifest whose
//! `subject` is the image, as cosign 3 and GitHub's build-provenance action push them) with or
//! without the referrers fallback index tagged `sha256-<hex>`, for registries that have no
//! referrers API (DOCR publishes none).

use std::time::Instant;

use serde::Deserialize;
use serde_json::{json, Value};

use crate::content::{self, Document, OCI_INDEX, OCI_MANIFEST};
use crate::state::{SimError, State};

/// What to push about an image.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ArtifactKind {
    Signature,
    Attestation,
    Sbom,
    Referrer,
}

impl ArtifactKind {
    fn suffix(self) -> &'static str {
        match self {
            ArtifactKind::Signature => ".sig",
            ArtifactKind::Attestation => ".att",
            ArtifactKind::Sbom => ".sbom",
            ArtifactKind::Referrer => "",
        }
    }

    fn layer_type(self) -> &'static str {
        match self {
            ArtifactKind::Signature => "application/vnd.dev.cosign.simplesigning.v1+json",
            ArtifactKind::Attestation => "application/vnd.dsse.envelope.v1+json",
            ArtifactKind::Sbom => "text/spdx+json",
            ArtifactKind::Referrer => "application/vnd.dev.sigstore.bundle.v0.3+json",
        }
    }
}

/// An artifact push: `kind` of the image `of` (a tag or a digest) in `repository`; a referrer
/// also gets the fallback index when `fallback_tag`.
#[derive(Clone, Debug)]
pub struct ArtifactPush {
    pub registry: String,
    pub repository: String,
    pub of: String,
    pub kind: ArtifactKind,
    pub fallback_tag: bool,
}

/// The artifact a push body or seed entry asks for: exactly one of `signature_of`,
/// `attestation_of`, `sbom_of`, `referrer_of` (a tag or digest of the image), or none.
pub fn asked(body: &Value) -> Result<Option<(ArtifactKind, String)>, SimError> {
    let kinds = [
        ("signature_of", ArtifactKind::Signature),
        ("attestation_of", ArtifactKind::Attestation),
        ("sbom_of", ArtifactKind::Sbom),
        ("referrer_of", ArtifactKind::Referrer),
    ];
    let given: Vec<(ArtifactKind, String)> = kinds
        .iter()
        .filter_map(|(key, kind)| body.get(*key).and_then(Value::as_str).map(|of| (*kind, of.to_string())))
        .collect();
    match given.len() {
        0 => Ok(None),
        1 => Ok(given.into_iter().next()),
        _ => Err(SimError::bad_request("give one of signature_of, attestation_of, sbom_of, referrer_of")),
    }
}

/// The cosign tag that names `digest`: `sha256-<hex>` and the kind's suffix.
pub fn scheme_tag(digest: &str, kind: ArtifactKind) -> String {
    format!("{}{}", digest.replacen(':', "-", 1), kind.suffix())
}

/// The subject of an artifact as its descriptor names it: digest, media type, size.
pub type Subject<'a> = (&'a str, &'a str, u64);

/// What to store for an artifact of `subject`, in order, and the tag of the last document.
/// `earlier` are the subject's referrers already in the repository (digest, media type, size),
/// which a fallback index lists beside the new one.
pub fn documents(
    label: &str,
    kind: ArtifactKind,
    subject: Subject,
    fallback_tag: bool,
    earlier: Vec<(String, String, u64)>,
) -> (Vec<Document>, Option<String>) {
    let tag = scheme_tag(subject.0, kind);
    if kind != ArtifactKind::Referrer {
        return (vec![artifact(label, kind, None)], Some(tag));
    }
    let document = artifact(label, kind, Some(subject));
    if !fallback_tag {
        return (vec![document], None);
    }
    let mut entries = earlier;
    entries.push((document.digest.clone(), document.media_type.clone(), document.size()));
    let children = entries.iter().map(|(digest, _, _)| digest.clone()).collect();
    let body: Vec<Value> = entries.iter().map(|(d, t, s)| json!({"mediaType": t, "digest": d, "size": s})).collect();
    let index = Document::new(
        OCI_INDEX,
        json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": body}),
        Vec::new(),
        children,
        None,
    );
    (vec![document, index], Some(tag))
}

/// Pushes the artifact; returns the pushed manifest as the API lists it (for a referrer with
/// its fallback, the index).
pub fn push(state: &mut State, push: &ArtifactPush, now: Instant) -> Result<Value, SimError> {
    let (subject, media_type, size, earlier) = {
        let registry = state.registries.get(&push.registry).ok_or_else(SimError::not_found)?;
        let repository = registry.repositories.get(&push.repository);
        let found = repository.and_then(|r| r.find(&push.of)).ok_or_else(|| {
            SimError::new(
                404,
                "not_found",
                format!("{}:{} is not in registry {}", push.repository, push.of, push.registry),
            )
        })?;
        let earlier: Vec<(String, String, u64)> = repository
            .into_iter()
            .flat_map(|r| r.manifests())
            .filter(|m| m.subject.as_deref() == Some(found.digest.as_str()))
            .map(|m| (m.digest.clone(), m.media_type.clone(), m.content.len() as u64))
            .collect();
        (found.digest.clone(), found.media_type.clone(), found.content.len() as u64, earlier)
    };
    let label =
        format!("{} of {}/{}@{subject} #{}", push.kind.suffix(), push.registry, push.repository, state.next_id());
    let (documents, tag) = documents(&label, push.kind, (&subject, &media_type, size), push.fallback_tag, earlier);
    state.store(&push.registry, &push.repository, documents, tag.as_deref(), now)
}

/// An artifact manifest: a config and one layer of the kind's media type; with `subject`
/// (digest, media type, size), an OCI 1.1 referrer of it.
fn artifact(label: &str, kind: ArtifactKind, subject: Option<(&str, &str, u64)>) -> Document {
    let config = "{}";
    let layer = content::sha256(label.as_bytes());
    let mut value = json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": content::sha256(config.as_bytes()), "size": config.len()},
        "layers": [{"mediaType": kind.layer_type(), "digest": layer, "size": 512}],
    });
    if let Some((digest, media_type, size)) = subject {
        value["artifactType"] = json!(kind.layer_type());
        value["subject"] = json!({"mediaType": media_type, "digest": digest, "size": size});
    }
    let blobs = vec![(content::sha256(config.as_bytes()), config.len() as u64), (layer, 512)];
    Document::new(OCI_MANIFEST, value, blobs, Vec::new(), subject.map(|(digest, _, _)| digest.to_string()))
}

/// The referrers API's answer for `digest`: an index of every manifest whose subject it is.
pub fn referrers_index(manifests: impl Iterator<Item = (String, String, u64)>) -> Vec<u8> {
    let entries: Vec<Value> = manifests
        .map(|(digest, media_type, size)| json!({"mediaType": media_type, "digest": digest, "size": size}))
        .collect();
    serde_json::to_vec(&json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries}))
        .expect("a JSON value serialises")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_follow_cosign() {
        let digest = format!("sha256:{}", "ab".repeat(32));
        assert_eq!(scheme_tag(&digest, ArtifactKind::Signature), format!("sha256-{}.sig", "ab".repeat(32)));
        assert_eq!(scheme_tag(&digest, ArtifactKind::Referrer), format!("sha256-{}", "ab".repeat(32)));
        let referrer = artifact("x", ArtifactKind::Referrer, Some((&digest, OCI_MANIFEST, 10)));
        assert_eq!(referrer.subject.as_deref(), Some(digest.as_str()));
        let parsed = Document::parse(OCI_MANIFEST, &referrer.content).unwrap();
        assert_eq!(parsed.subject, referrer.subject, "the subject is in the bytes the registry serves");
        assert!(artifact("x", ArtifactKind::Signature, None).subject.is_none());
    }
}
