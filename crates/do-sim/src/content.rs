//! What the simulated registry stores: manifests as real JSON documents whose digest is the
//! SHA-256 of their bytes, as a registry serves them. Images are OCI image manifests (a config
//! and layers); multi-platform pushes are OCI indexes whose platform and attestation manifests
//! are untagged children, as `docker buildx build --push` makes them.

use std::sync::Arc;

use serde_json::{json, Value};

pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
const OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
const IN_TOTO_LAYER: &str = "application/vnd.in-toto+json";

pub fn sha256(bytes: &[u8]) -> String {
    let hash = ring::digest::digest(&ring::digest::SHA256, bytes);
    format!("sha256:{}", hash.as_ref().iter().map(|b| format!("{b:02x}")).collect::<String>())
}

/// A manifest document: its bytes, digest and what it references.
#[derive(Clone, Debug)]
pub struct Document {
    pub digest: String,
    pub media_type: String,
    pub content: Arc<Vec<u8>>,
    /// (digest, size) of the config and layers: what the API listing shows as blobs.
    pub blobs: Vec<(String, u64)>,
    /// The manifests an index holds.
    pub children: Vec<String>,
    pub subject: Option<String>,
    /// The bytes of the blobs the simulator keeps (configs): (digest, bytes).
    pub bodies: Vec<(String, Arc<Vec<u8>>)>,
}

impl Document {
    pub fn new(
        media_type: &str,
        value: Value,
        blobs: Vec<(String, u64)>,
        children: Vec<String>,
        subject: Option<String>,
    ) -> Document {
        let bytes = serde_json::to_vec(&value).expect("a JSON value serialises");
        Document {
            digest: sha256(&bytes),
            media_type: media_type.to_string(),
            content: Arc::new(bytes),
            blobs,
            children,
            subject,
            bodies: Vec::new(),
        }
    }

    pub fn size(&self) -> u64 {
        self.content.len() as u64
    }

    /// Reads a pushed manifest: its references, so the registry can check they exist and GC
    /// can follow them. `None` when the body is not a manifest.
    pub fn parse(media_type: &str, bytes: &[u8]) -> Option<Document> {
        let value: Value = serde_json::from_slice(bytes).ok()?;
        let object = value.as_object()?;
        let text = |v: &Value, key: &str| v.get(key).and_then(Value::as_str).map(str::to_string);
        let descriptor = |v: &Value| Some((text(v, "digest")?, v.get("size").and_then(Value::as_u64).unwrap_or(0)));
        let mut blobs = Vec::new();
        if let Some(config) = object.get("config") {
            blobs.push(descriptor(config)?);
        }
        for layer in object.get("layers").and_then(Value::as_array).into_iter().flatten() {
            blobs.push(descriptor(layer)?);
        }
        let mut children = Vec::new();
        for child in object.get("manifests").and_then(Value::as_array).into_iter().flatten() {
            children.push(text(child, "digest")?);
        }
        let subject = object.get("subject").and_then(|s| text(s, "digest"));
        let media_type =
            if media_type.is_empty() { text(&value, "mediaType").unwrap_or_default() } else { media_type.to_string() };
        Some(Document {
            digest: sha256(bytes),
            media_type,
            content: Arc::new(bytes.to_vec()),
            blobs,
            children,
            subject,
            bodies: Vec::new(),
        })
    }
}

/// An image manifest with one config and one layer, `size_bytes` in all. `label` makes every
/// build distinct (two builds of one tag have different digests, as real rebuilds do).
pub fn image(label: &str, size_bytes: u64) -> Document {
    image_labelled(label, size_bytes, &Value::Null)
}

/// An image whose config carries `labels` (an object of strings), as `docker build --label` writes them.
pub fn image_labelled(label: &str, size_bytes: u64, labels: &Value) -> Document {
    let config = if labels.as_object().is_some_and(|l| !l.is_empty()) {
        serde_json::to_string(
            &json!({"architecture": "amd64", "os": "linux", "config": {"Labels": labels}, "created_by": label}),
        )
        .expect("a JSON value serialises")
    } else {
        format!("{{\"architecture\":\"amd64\",\"os\":\"linux\",\"created_by\":{label:?}}}")
    };
    let config_digest = sha256(config.as_bytes());
    let layer_digest = sha256(format!("layer of {label}").as_bytes());
    let layer_bytes = size_bytes.saturating_sub(config.len() as u64);
    let mut document = image_of(&config_digest, config.len() as u64, &[(layer_digest, layer_bytes)], OCI_LAYER, None);
    document.bodies.push((config_digest, Arc::new(config.into_bytes())));
    document
}

fn image_of(
    config_digest: &str,
    config_size: u64,
    layers: &[(String, u64)],
    layer_type: &str,
    subject: Option<&Document>,
) -> Document {
    let mut value = json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": config_digest, "size": config_size},
        "layers": layers.iter().map(|(digest, size)| json!({"mediaType": layer_type, "digest": digest, "size": size})).collect::<Vec<_>>(),
    });
    if let Some(subject) = subject {
        value["subject"] = json!({"mediaType": subject.media_type, "digest": subject.digest, "size": subject.size()});
    }
    let mut blobs = vec![(config_digest.to_string(), config_size)];
    blobs.extend(layers.iter().cloned());
    Document::new(OCI_MANIFEST, value, blobs, Vec::new(), subject.map(|s| s.digest.clone()))
}

/// A referrer (a signature or SBOM) whose `subject` is `of`.
pub fn referrer(label: &str, of: &Document) -> Document {
    let config = "{}";
    let layer = sha256(format!("signature {label}").as_bytes());
    image_of(
        &sha256(config.as_bytes()),
        config.len() as u64,
        &[(layer, 512)],
        "application/vnd.dev.cosign.simplesigning.v1+json",
        Some(of),
    )
}

/// A multi-platform image as buildx pushes it: one image per platform, with an attestation
/// manifest for each when `attestations`; the index (to be tagged) comes last. Each platform's
/// image is `size_bytes`.
pub fn index(label: &str, platforms: &[String], attestations: bool, size_bytes: u64, labels: &Value) -> Vec<Document> {
    let mut documents = Vec::new();
    let mut entries = Vec::new();
    for platform in platforms {
        let mut parts = platform.split('/');
        let (os, architecture) = (parts.next().unwrap_or("linux"), parts.next().unwrap_or("amd64"));
        let image = image_labelled(&format!("{label} {platform}"), size_bytes, labels);
        entries.push(json!({"mediaType": OCI_MANIFEST, "digest": image.digest, "size": image.size(), "platform": {"os": os, "architecture": architecture}}));
        if attestations {
            let config = "{\"architecture\":\"unknown\",\"os\":\"unknown\"}";
            let statement = sha256(format!("provenance of {label} {platform}").as_bytes());
            let attestation =
                image_of(&sha256(config.as_bytes()), config.len() as u64, &[(statement, 1024)], IN_TOTO_LAYER, None);
            entries.push(json!({
                "mediaType": OCI_MANIFEST, "digest": attestation.digest, "size": attestation.size(),
                "platform": {"os": "unknown", "architecture": "unknown"},
                "annotations": {"vnd.docker.reference.type": "attestation-manifest", "vnd.docker.reference.digest": image.digest},
            }));
            documents.push(image);
            documents.push(attestation);
        } else {
            documents.push(image);
        }
    }
    let children = documents.iter().map(|d| d.digest.clone()).collect();
    documents.push(Document::new(
        OCI_INDEX,
        json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries}),
        Vec::new(),
        children,
        None,
    ));
    documents
}

/// An index holding `children` (already pushed), each as a linux/amd64 image: for tests that
/// need indexes sharing a child.
pub fn index_over(children: &[&Document]) -> Document {
    let entries: Vec<Value> = children
        .iter()
        .map(|c| json!({"mediaType": c.media_type, "digest": c.digest, "size": c.size(), "platform": {"os": "linux", "architecture": "amd64"}}))
        .collect();
    Document::new(
        OCI_INDEX,
        json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries}),
        Vec::new(),
        children.iter().map(|c| c.digest.clone()).collect(),
        None,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_are_the_hash_of_the_bytes_served() {
        let doc = image("web:v1 #1", 100);
        assert_eq!(doc.digest, sha256(&doc.content));
        assert_ne!(doc.digest, image("web:v1 #2", 100).digest, "every build is distinct");
        let parsed = Document::parse(OCI_MANIFEST, &doc.content).unwrap();
        assert_eq!((parsed.blobs.clone(), parsed.digest.clone()), (doc.blobs.clone(), doc.digest.clone()));
    }

    #[test]
    fn an_index_holds_platform_and_attestation_children() {
        let docs = index("web:v2 #3", &["linux/amd64".into(), "linux/arm64".into()], true, 10, &Value::Null);
        assert_eq!(docs.len(), 5);
        let index = docs.last().unwrap();
        assert_eq!(index.children, docs[..4].iter().map(|d| d.digest.clone()).collect::<Vec<_>>());
        let parsed = Document::parse(OCI_INDEX, &index.content).unwrap();
        assert_eq!(parsed.children, index.children);
        let signature = referrer("sig", index);
        assert_eq!(signature.subject.as_deref(), Some(index.digest.as_str()));
    }
}
