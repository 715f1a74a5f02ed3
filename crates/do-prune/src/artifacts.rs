//! Artifacts: manifests that are about another image rather than releases of their own.
//!
//! cosign pushes a signature as `sha256-<digest of the image>.sig`, an attestation as `.att`,
//! an SBOM as `.sbom`; cosign 3 and GitHub's build-provenance action push an OCI 1.1 manifest
//! whose `subject` is the image, plus (on registries without the referrers API, DOCR among
//! them) an index tagged `sha256-<digest>` that lists those referrers. None of these is a
//! release: they never take a `--keep-last` place, never count as a repository's newest image,
//! and live and die with their subject. An artifact whose subject cannot be determined is kept.
//!
//! Pure: which manifests are artifacts (from tags, and from `subject` fields the caller read)
//! and what becomes of each one, given the keep closure. No requests.

use std::collections::{BTreeMap, BTreeSet};

use do_core::types::Manifest;
use serde::{Deserialize, Serialize};

use crate::closure::{short, Read};

/// What an artifact is to its subject.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    Signature,
    Attestation,
    Sbom,
    /// An OCI 1.1 referrer, a referrers fallback index, or a tag-scheme suffix we do not know.
    Referrer,
}

impl Kind {
    pub fn noun(self) -> &'static str {
        match self {
            Kind::Signature => "signature",
            Kind::Attestation => "attestation",
            Kind::Sbom => "sbom",
            Kind::Referrer => "referrer",
        }
    }
}

/// The subject and kind a tag of the cosign scheme names: `sha256-<64 hex>` with an optional
/// `.suffix`. Any other tag names none.
pub fn from_tag(tag: &str) -> Option<(String, Kind)> {
    let rest = tag.strip_prefix("sha256-")?;
    let (hex, suffix) = match rest.split_once('.') {
        Some((hex, suffix)) => (hex, Some(suffix)),
        None => (rest, None),
    };
    if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
        return None;
    }
    let kind = match suffix {
        Some("sig") => Kind::Signature,
        Some("att") => Kind::Attestation,
        Some("sbom") => Kind::Sbom,
        _ => Kind::Referrer,
    };
    Some((format!("sha256:{hex}"), kind))
}

/// An artifact's subjects (usually one) with what it is to each.
pub type Subjects = Vec<(String, Kind)>;

/// The artifacts a listing's tags reveal: manifests every tag of which is of the cosign scheme.
/// A manifest with any other tag is a release, whatever else it carries.
pub fn by_tags(listing: &[Manifest]) -> BTreeMap<String, Subjects> {
    listing
        .iter()
        .filter(|m| !m.tags.is_empty())
        .filter_map(|m| {
            let subjects: Option<Subjects> = m.tags.iter().map(|t| from_tag(t)).collect();
            Some((m.digest.clone(), subjects?))
        })
        .collect()
}

/// Adds the artifacts the reads reveal: a listed manifest read with an OCI `subject`, tagged or
/// not (a tag-scheme artifact keeps the subject its tag names).
pub fn with_subjects(
    mut artifacts: BTreeMap<String, Subjects>,
    listing: &[Manifest],
    reads: &BTreeMap<String, Read>,
) -> BTreeMap<String, Subjects> {
    for manifest in listing {
        if let Some(Read::Info(info)) = reads.get(&manifest.digest) {
            if let Some(subject) = &info.subject {
                let subjects = artifacts.entry(manifest.digest.clone()).or_default();
                if !subjects.iter().any(|(s, _)| s == subject) {
                    subjects.push((subject.clone(), Kind::Referrer));
                }
            }
        }
    }
    artifacts
}

/// What becomes of an artifact.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum Fate {
    /// Kept: its subject is kept (or it is protected itself, or --keep-artifacts).
    Kept,
    /// Deleted with its subject.
    Deleted,
    /// Deleted: its subject is nowhere in the registry.
    Orphan,
    /// Kept: what its subject is cannot be determined.
    Unknown,
}

/// One artifact of the plan, as the record lists it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Artifact {
    pub digest: String,
    pub tags: Vec<String>,
    pub kind: Kind,
    pub subject: String,
    /// The subject's tags, when it is listed here with tags.
    pub subject_tags: Vec<String>,
    pub fate: Fate,
    pub reason: String,
}

/// What the decision needs besides the artifacts themselves.
pub struct World<'a> {
    pub listing: &'a [Manifest],
    /// The keep closure: digest -> why it stays.
    pub kept: &'a BTreeMap<String, String>,
    /// Reads made in this repository (subjects that are not listed are read to see if they exist).
    pub reads: &'a BTreeMap<String, Read>,
    /// The other repository of the registry that lists a digest, if one does.
    pub elsewhere: &'a dyn Fn(&str) -> Option<String>,
    /// `--keep-artifacts`: artifacts of deleted images stay.
    pub keep_artifacts: bool,
}

/// The decision over a repository's artifacts.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Decision {
    pub artifacts: Vec<Artifact>,
    /// Subjects that are not listed and must be read to know whether they exist.
    pub pending: Vec<String>,
    /// Artifacts that stay but are outside the closure: roots to add (digest -> reason), so
    /// that what they hold stays too.
    pub new_roots: BTreeMap<String, String>,
}

/// Decides every artifact of `artifacts` against the closure. An artifact in the closure stays;
/// one whose every subject is listed here and not kept goes with it; one whose every subject is
/// nowhere is an orphan and goes; anything else (a subject in another repository, one that
/// exists unlisted, one that could not be read) stays, reported.
pub fn decide(artifacts: &BTreeMap<String, Subjects>, world: &World) -> Decision {
    let listed: BTreeMap<&str, &Manifest> = world.listing.iter().map(|m| (m.digest.as_str(), m)).collect();
    let mut decision = Decision::default();
    let mut pending = BTreeSet::new();
    for (digest, subjects) in artifacts {
        let Some(manifest) = listed.get(digest.as_str()) else { continue };
        let Some((subject, kind)) = subjects.first().cloned() else { continue };
        let subject_tags = listed.get(subject.as_str()).map(|m| m.tags.clone()).unwrap_or_default();
        let of = |subject: &str| describe(subject, listed.get(subject).map(|m| m.tags.as_slice()).unwrap_or(&[]));
        let (fate, reason) = match subjects.iter().find(|(s, _)| world.kept.contains_key(s)) {
            Some((s, k)) => (Fate::Kept, format!("{} of {}, which is kept", k.noun(), of(s))),
            None => {
                let verdicts: Vec<Verdict> =
                    subjects.iter().map(|(s, _)| verdict(s, listed.contains_key(s.as_str()), world)).collect();
                if let Some(Verdict::Read(subject)) = verdicts.iter().find(|v| matches!(v, Verdict::Read(_))) {
                    pending.insert(subject.clone());
                    continue;
                }
                let unknown = verdicts.iter().find_map(|v| match v {
                    Verdict::Unknown(why) => Some(why.clone()),
                    _ => None,
                });
                let going = verdicts.contains(&Verdict::Going);
                match (unknown, world.kept.get(digest)) {
                    (Some(why), _) => {
                        (Fate::Unknown, format!("{} of {}: {why}, so it is kept", kind.noun(), short(&subject)))
                    }
                    (None, Some(why)) => (Fate::Kept, why.clone()),
                    (None, None) if going && world.keep_artifacts => (
                        Fate::Kept,
                        format!("{} of {}, which is deleted; kept by --keep-artifacts", kind.noun(), of(&subject)),
                    ),
                    (None, None) if going => {
                        (Fate::Deleted, format!("{} of {}, which is deleted", kind.noun(), of(&subject)))
                    }
                    (None, None) => {
                        (Fate::Orphan, format!("orphan {}: its image {} is gone", kind.noun(), short(&subject)))
                    }
                }
            }
        };
        if matches!(fate, Fate::Kept | Fate::Unknown) && !world.kept.contains_key(digest) {
            decision.new_roots.insert(digest.clone(), reason.clone());
        }
        decision.artifacts.push(Artifact {
            digest: digest.clone(),
            tags: manifest.tags.clone(),
            kind,
            subject,
            subject_tags,
            fate,
            reason,
        });
    }
    decision.pending = pending.into_iter().collect();
    decision
}

/// What one subject says about its artifact.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Verdict {
    /// Listed here and not kept: it is deleted.
    Going,
    /// Nowhere in the registry.
    Gone,
    /// Must be read before anything is decided.
    Read(String),
    /// Cannot be determined, with why.
    Unknown(String),
}

fn verdict(subject: &str, listed_here: bool, world: &World) -> Verdict {
    if listed_here {
        return Verdict::Going;
    }
    if let Some(repository) = (world.elsewhere)(subject) {
        return Verdict::Unknown(format!("its subject is in repository {repository}, not here"));
    }
    match world.reads.get(subject) {
        None => Verdict::Read(subject.to_string()),
        Some(Read::Missing) => Verdict::Gone,
        Some(Read::Info(_)) => Verdict::Unknown("its subject is in the registry but not in the listing".into()),
        Some(Read::Failed(why)) => Verdict::Unknown(format!("its subject could not be read ({why})")),
    }
}

/// An image as people name it: its tags, or its short digest.
pub fn describe(digest: &str, tags: &[String]) -> String {
    if tags.is_empty() {
        short(digest).to_string()
    } else {
        tags.join(" ")
    }
}
