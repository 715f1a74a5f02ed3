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

use std::collections::{BTreeMap, BTreeSet, HashMap};

use do_core::digest::Digest;
use do_core::types::Manifest;
use serde::{Deserialize, Serialize};

use crate::closure::{short, Read, ReadsByDigest};

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
pub fn from_tag(tag: &str) -> Option<(Digest, Kind)> {
    let rest = tag.strip_prefix("sha256-")?;
    let (hex, suffix) = match rest.split_once('.') {
        Some((hex, suffix)) => (hex, Some(suffix)),
        None => (rest, None),
    };
    // 64 lowercase hex digits: the rule a digest is read by.
    let subject = Digest::new(&format!("sha256:{hex}"));
    subject.sha256()?;
    let kind = match suffix {
        Some("sig") => Kind::Signature,
        Some("att") => Kind::Attestation,
        Some("sbom") => Kind::Sbom,
        _ => Kind::Referrer,
    };
    Some((subject, kind))
}

/// An artifact's subjects (usually one) with what it is to each.
pub type Subjects = Vec<(Digest, Kind)>;

/// The artifacts a listing's tags reveal: manifests every tag of which is of the cosign scheme.
/// A manifest with any other tag is a release, whatever else it carries.
pub fn by_tags(listing: &[Manifest]) -> BTreeMap<Digest, Subjects> {
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
    mut artifacts: BTreeMap<Digest, Subjects>,
    listing: &[Manifest],
    reads: &ReadsByDigest,
) -> BTreeMap<Digest, Subjects> {
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
    pub digest: Digest,
    pub tags: Vec<String>,
    pub kind: Kind,
    pub subject: Digest,
    /// The subject's tags, when it is listed here with tags.
    pub subject_tags: Vec<String>,
    pub fate: Fate,
    pub reason: String,
}

/// What the decision needs besides the artifacts themselves.
pub struct World<'a> {
    pub listing: &'a [Manifest],
    /// The keep closure: digest -> why it stays.
    pub kept: &'a BTreeMap<Digest, String>,
    /// Reads made in this repository (subjects that are not listed are read to see if they exist).
    pub reads: &'a ReadsByDigest,
    /// The other repository of the registry that lists a digest, if one does.
    pub elsewhere: &'a dyn Fn(&Digest) -> Option<String>,
    /// `--keep-artifacts`: artifacts of deleted images stay.
    pub keep_artifacts: bool,
}

/// The decision over a repository's artifacts.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Decision {
    pub artifacts: Vec<Artifact>,
    /// Subjects that are not listed and must be read to know whether they exist.
    pub pending: Vec<Digest>,
    /// Artifacts that stay but are outside the closure: roots to add (digest -> reason), so
    /// that what they hold stays too.
    pub new_roots: BTreeMap<Digest, String>,
}

/// Decides every artifact of `artifacts` against the closure. An artifact in the closure stays;
/// one whose every subject is listed here and not kept goes with it; one whose every subject is
/// nowhere is an orphan and goes; anything else (a subject in another repository, one that
/// exists unlisted, one that could not be read) stays, reported.
pub fn decide(artifacts: &BTreeMap<Digest, Subjects>, world: &World) -> Decision {
    let listed: HashMap<&Digest, &Manifest> = world.listing.iter().map(|m| (&m.digest, m)).collect();
    let mut decision = Decision::default();
    let mut pending = BTreeSet::new();
    for (digest, subjects) in artifacts {
        let Some(manifest) = listed.get(digest) else { continue };
        let Some((subject, kind)) = subjects.first().cloned() else { continue };
        let subject_tags = listed.get(&subject).map(|m| m.tags.to_vec()).unwrap_or_default();
        let of = |subject: &Digest| describe(subject, listed.get(subject).map(|m| &m.tags[..]).unwrap_or(&[]));
        let (fate, reason) = match subjects.iter().find(|(s, _)| world.kept.contains_key(s)) {
            Some((s, k)) => (Fate::Kept, format!("{} of {}, which is kept", k.noun(), of(s))),
            None => {
                let verdicts: Vec<Verdict> =
                    subjects.iter().map(|(s, _)| verdict(s, listed.contains_key(s), world)).collect();
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
            tags: manifest.tags.to_vec(),
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
    Read(Digest),
    /// Cannot be determined, with why.
    Unknown(String),
}

fn verdict(subject: &Digest, listed_here: bool, world: &World) -> Verdict {
    if listed_here {
        return Verdict::Going;
    }
    if let Some(repository) = (world.elsewhere)(subject) {
        return Verdict::Unknown(format!("its subject is in repository {repository}, not here"));
    }
    match world.reads.get(subject) {
        None => Verdict::Read(subject.clone()),
        Some(Read::Missing) => Verdict::Gone,
        Some(Read::Plain) | Some(Read::Info(_)) => {
            Verdict::Unknown("its subject is in the registry but not in the listing".into())
        }
        Some(Read::Failed(why)) => Verdict::Unknown(format!("its subject could not be read ({why})")),
    }
}

/// An image as people name it: its tags, or its short digest.
pub fn describe(digest: &Digest, tags: &[String]) -> String {
    if tags.is_empty() {
        short(digest)
    } else {
        tags.join(" ")
    }
}

/// The digest of `{}`, the empty config OCI 1.1 artifacts (cosign 3 bundles, GitHub's
/// attestations, any `artifactType` manifest) carry; no image has it.
pub const EMPTY_CONFIG: &str = "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a";

/// Whether the listing shows `manifest` carrying the empty config: an OCI 1.1 artifact, whatever
/// its tag says, to be read before it is judged.
pub fn looks_like_artifact(manifest: Option<&Manifest>) -> bool {
    manifest.is_some_and(|m| m.blobs.iter().any(|b| b.digest.as_ref().is_some_and(|d| *d == EMPTY_CONFIG)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use do_core::oci::{ManifestInfo, OCI_MANIFEST};

    fn dg(text: &str) -> Digest {
        Digest::new(text)
    }

    #[test]
    fn the_empty_config_of_oci_artifacts_marks_a_manifest_to_read() {
        assert_eq!(EMPTY_CONFIG, do_core::oci::sha256_digest(b"{}"));
        let blob =
            |digest: &str| do_core::types::Blob { digest: Some(digest.into()), compressed_size_bytes: Some(2).into() };
        let artifact = Manifest { blobs: Box::new([blob(EMPTY_CONFIG), blob("sha256:layer")]), ..Manifest::default() };
        let image = Manifest { blobs: Box::new([blob("sha256:config"), blob("sha256:layer")]), ..Manifest::default() };
        assert!(looks_like_artifact(Some(&artifact)));
        assert!(!looks_like_artifact(Some(&image)));
        assert!(!looks_like_artifact(None));
    }

    fn hex(c: char) -> String {
        c.to_string().repeat(64)
    }

    fn listed(digest: &str, tags: &[&str]) -> Manifest {
        Manifest { digest: digest.into(), tags: tags.iter().map(|t| t.to_string()).collect(), ..Manifest::default() }
    }

    fn info(digest: &str, subject: Option<&str>) -> Read {
        Read::from(ManifestInfo {
            digest: digest.into(),
            media_type: OCI_MANIFEST.into(),
            children: vec![],
            subject: subject.map(dg),
            config: None,
            size: 1,
        })
    }

    #[test]
    fn the_cosign_tag_scheme_names_subject_and_kind() {
        let a = hex('a');
        assert_eq!(from_tag(&format!("sha256-{a}.sig")), Some((dg(&format!("sha256:{a}")), Kind::Signature)));
        assert_eq!(from_tag(&format!("sha256-{a}.att")), Some((dg(&format!("sha256:{a}")), Kind::Attestation)));
        assert_eq!(from_tag(&format!("sha256-{a}.sbom")), Some((dg(&format!("sha256:{a}")), Kind::Sbom)));
        assert_eq!(
            from_tag(&format!("sha256-{a}")),
            Some((dg(&format!("sha256:{a}")), Kind::Referrer)),
            "fallback index"
        );
        assert_eq!(from_tag(&format!("sha256-{a}.other")), Some((dg(&format!("sha256:{a}")), Kind::Referrer)));
        let digits = "0123456789".repeat(7)[..64].to_string();
        assert!(from_tag(&format!("sha256-{digits}.sig")).is_some(), "digits are hex");
        for not in [
            format!("sha256-{}.sig", &a[..63]),
            format!("sha256-{a}0.sig"),
            format!("sha256-{}.sig", hex('A')),
            format!("sha256-{}.sig", hex('g')),
            format!("sha512-{a}.sig"),
            "v1.0.0".to_string(),
            "latest".to_string(),
        ] {
            assert_eq!(from_tag(&not), None, "{not}");
        }
        assert_eq!(
            [Kind::Signature, Kind::Attestation, Kind::Sbom, Kind::Referrer].map(Kind::noun),
            ["signature", "attestation", "sbom", "referrer"]
        );
    }

    #[test]
    fn a_manifest_is_an_artifact_by_its_tags_only_when_every_tag_is_of_the_scheme() {
        let sig = format!("sha256-{}.sig", hex('a'));
        let listing =
            vec![listed("s", &[&sig]), listed("mixed", &[&sig, "v1"]), listed("u", &[]), listed("r", &["v2"])];
        let found = by_tags(&listing);
        assert_eq!(found.keys().collect::<Vec<_>>(), ["s"]);
        assert_eq!(found[&dg("s")], vec![(dg(&format!("sha256:{}", hex('a'))), Kind::Signature)]);
        let reads: ReadsByDigest = [(dg("u"), info("u", Some("r"))), (dg("r"), info("r", None))].into_iter().collect();
        let all = with_subjects(found, &listing, &reads);
        assert_eq!(all.keys().collect::<Vec<_>>(), ["s", "u"], "a read subject makes an artifact, tagged or not");
        assert_eq!(all[&dg("u")], vec![(dg("r"), Kind::Referrer)]);
        // A subject its tag already names is not counted twice.
        let tagged_too: ReadsByDigest =
            [(dg("s"), info("s", Some(&format!("sha256:{}", hex('a')))))].into_iter().collect();
        assert_eq!(with_subjects(by_tags(&listing), &listing, &tagged_too)[&dg("s")].len(), 1);
    }

    /// Decides artifacts of `listing` with `kept` (digest -> reason), reads and elsewhere.
    fn decide_in(
        listing: &[Manifest],
        kept: &[(&str, &str)],
        reads: &[(&str, Read)],
        elsewhere: &[(&str, &str)],
        keep_artifacts: bool,
    ) -> Decision {
        let kept: BTreeMap<Digest, String> = kept.iter().map(|(k, r)| (dg(k), r.to_string())).collect();
        let reads: ReadsByDigest = reads.iter().map(|(k, r)| (dg(k), r.clone())).collect();
        let elsewhere: BTreeMap<Digest, String> = elsewhere.iter().map(|(k, r)| (dg(k), r.to_string())).collect();
        let find = |digest: &Digest| elsewhere.get(digest).cloned();
        let all = with_subjects(by_tags(listing), listing, &reads);
        decide(&all, &World { listing, kept: &kept, reads: &reads, elsewhere: &find, keep_artifacts })
    }

    fn fate(decision: &Decision, digest: &str) -> (Fate, String) {
        let a = decision.artifacts.iter().find(|a| a.digest == digest).unwrap();
        (a.fate.clone(), a.reason.clone())
    }

    #[test]
    fn each_artifact_follows_its_subject() {
        let (a, b, c) =
            (format!("sha256:{}", hex('a')), format!("sha256:{}", hex('b')), format!("sha256:{}", hex('c')));
        let tag = |d: &str, suffix: &str| format!("{}{suffix}", d.replacen(':', "-", 1));
        let listing = vec![
            listed(&a, &["v1"]),
            listed(&b, &["v2"]),
            listed("sig-a", &[&tag(&a, ".sig")]),
            listed("att-b", &[&tag(&b, ".att")]),
            listed("sig-c", &[&tag(&c, ".sig")]),
        ];
        let kept = [(a.as_str(), "newest"), ("sig-a", "refers to a")];
        // c is not listed: it must be read before anything is decided about sig-c.
        let first = decide_in(&listing, &kept, &[], &[], false);
        assert_eq!(first.pending, [dg(&c)]);
        assert!(first.artifacts.iter().all(|x| x.digest != "sig-c"));
        assert_eq!(fate(&first, "sig-a"), (Fate::Kept, "signature of v1, which is kept".into()));
        assert_eq!(fate(&first, "att-b"), (Fate::Deleted, "attestation of v2, which is deleted".into()));
        assert!(first.new_roots.is_empty(), "{first:?}");
        let gone = decide_in(&listing, &kept, &[(&c, Read::Missing)], &[], false);
        assert!(gone.pending.is_empty());
        assert_eq!(
            fate(&gone, "sig-c"),
            (Fate::Orphan, format!("orphan signature: its image {} is gone", &hex('c')[..12]))
        );
        let artifact = gone.artifacts.iter().find(|x| x.digest == "sig-a").unwrap();
        assert_eq!(
            (&artifact.subject, artifact.subject_tags.clone(), artifact.kind),
            (&dg(&a), vec!["v1".to_string()], Kind::Signature)
        );
        // --keep-artifacts keeps what goes with its image, as a new root; orphans still go.
        let keep = decide_in(&listing, &kept, &[(&c, Read::Missing)], &[], true);
        assert_eq!(fate(&keep, "att-b").0, Fate::Kept);
        assert_eq!(fate(&keep, "sig-c").0, Fate::Orphan);
        assert_eq!(keep.new_roots.keys().collect::<Vec<_>>(), ["att-b"]);
        // A subject elsewhere, unlisted but present, or unreadable: kept, reported, a new root.
        for (read, why) in [
            (info(&c, None), "its subject is in the registry but not in the listing"),
            (Read::Failed("503".into()), "its subject could not be read (503)"),
        ] {
            let d = decide_in(&listing, &kept, &[(&c, read)], &[], false);
            assert_eq!(
                fate(&d, "sig-c"),
                (Fate::Unknown, format!("signature of {}: {why}, so it is kept", &hex('c')[..12]))
            );
            assert!(d.new_roots.contains_key(&dg("sig-c")));
        }
        let d = decide_in(&listing, &kept, &[], &[(&c, "api")], false);
        assert_eq!(fate(&d, "sig-c").0, Fate::Unknown);
        assert!(fate(&d, "sig-c").1.contains("in repository api"), "{d:?}");
        assert!(d.pending.is_empty(), "a subject found elsewhere needs no read");
        // Protected itself (a root) while its subject goes: kept with the root's reason.
        let protected = decide_in(
            &listing,
            &[(a.as_str(), "newest"), ("sig-a", "refers to a"), ("att-b", "deployed")],
            &[(&c, Read::Missing)],
            &[],
            false,
        );
        assert_eq!(fate(&protected, "att-b"), (Fate::Kept, "deployed".into()));
        assert!(protected.new_roots.is_empty(), "already in the closure");
        // A root kept for an unknown subject stays unknown when decided again.
        let again = decide_in(
            &listing,
            &[(a.as_str(), "newest"), ("sig-a", "refers to a"), ("sig-c", "was unknown")],
            &[(&c, Read::Failed("x".into()))],
            &[],
            false,
        );
        assert_eq!(fate(&again, "sig-c").0, Fate::Unknown);
        assert!(again.new_roots.is_empty());
        assert_eq!(describe(&dg(&a), &[]), &hex('a')[..12]);
        assert_eq!(describe(&dg(&a), &["v1".into(), "latest".into()]), "v1 latest");
    }

    #[test]
    fn an_artifact_of_several_subjects_stays_while_any_stays() {
        let (a, b) = (format!("sha256:{}", hex('a')), format!("sha256:{}", hex('b')));
        let tag = |d: &str| format!("{}.sig", d.replacen(':', "-", 1));
        let listing = vec![listed(&a, &["v1"]), listed(&b, &["v2"]), listed("both", &[&tag(&a), &tag(&b)])];
        let d = decide_in(&listing, &[(b.as_str(), "newest")], &[], &[], false);
        assert_eq!(fate(&d, "both"), (Fate::Kept, "signature of v2, which is kept".into()));
        let d = decide_in(&listing, &[], &[], &[], false);
        assert_eq!(fate(&d, "both").0, Fate::Deleted);
    }
}

#[cfg(test)]
mod properties {
    use super::*;
    use crate::closure;
    use crate::policy::{compile_keep_tags, plan_tagged, Policy, Protected};
    use proptest::prelude::*;

    const NOW: i64 = 1_800_000_000;

    proptest! {
        /// Releases (some signed, some attested, some signatures orphaned) under any --keep-last:
        /// no artifact counts among the kept images, and every artifact of a kept image is kept.
        #[test]
        fn artifacts_of_kept_images_are_kept_and_never_counted(
            releases in proptest::collection::vec((any::<bool>(), any::<bool>(), any::<bool>()), 1..10),
            keep_last in 0usize..4,
        ) {
            let mut listing = Vec::new();
            let at = |n: usize| jiff::Timestamp::from_second(NOW - 86_400 * (100 - n as i64)).unwrap().to_string();
            for (n, (signed, attested, orphan)) in releases.iter().enumerate() {
                let digest = format!("sha256:{n:064x}");
                listing.push(Manifest { digest: Digest::new(&digest), tags: vec![format!("v{n}")].into(), updated_at: Some(at(n).into()), ..Manifest::default() });
                let subject = if *orphan { format!("sha256:{:064x}", 1000 + n) } else { digest.clone() };
                for (wanted, suffix) in [(*signed, ".sig"), (*attested, ".att")] {
                    if wanted {
                        // Artifacts are pushed after their image: newer than every release.
                        listing.push(Manifest { digest: Digest::new(&format!("{suffix}{n}")), tags: vec![format!("{}{suffix}", subject.replacen(':', "-", 1))].into(), updated_at: Some(at(n + 50).into()), ..Manifest::default() });
                    }
                }
            }
            let tagged = by_tags(&listing);
            let releases_only: Vec<&Manifest> = listing.iter().filter(|m| !tagged.contains_key(&m.digest)).collect();
            let policy = Policy { keep_last, ..Policy::default() };
            let plan = plan_tagged(&releases_only, &policy, &compile_keep_tags(&[]).unwrap(), &Protected::default(), NOW);
            prop_assert!(plan.kept.iter().all(|k| !tagged.contains_key(&k.digest)), "no artifact is a kept image");
            prop_assert_eq!(plan.kept.len(), keep_last.clamp(1, releases.len()), "the newest releases fill the places");
            let roots: BTreeMap<Digest, String> = plan.kept.iter().map(|k| (k.digest.clone(), k.reason.clone())).collect();
            let reads: ReadsByDigest = listing.iter().map(|m| (m.digest.clone(), Read::from(do_core::oci::ManifestInfo {
                digest: m.digest.clone(), media_type: do_core::oci::OCI_MANIFEST.into(), children: vec![], subject: None, config: None, size: 1,
            }))).chain((0..20).map(|n| (Digest::new(&format!("sha256:{:064x}", 1000 + n)), Read::Missing))).collect();
            let closure = closure::compute(&listing, &roots, &reads, &tagged, None);
            let nowhere = |_: &Digest| None;
            let decision = decide(&tagged, &World { listing: &listing, kept: &closure.kept, reads: &reads, elsewhere: &nowhere, keep_artifacts: false });
            prop_assert!(decision.pending.is_empty());
            for artifact in &decision.artifacts {
                let subject_kept = roots.contains_key(&artifact.subject);
                prop_assert_eq!(artifact.fate == Fate::Kept, subject_kept, "{:?}", artifact);
                let subject_listed = listing.iter().any(|m| m.digest == artifact.subject);
                prop_assert_eq!(artifact.fate == Fate::Orphan, !subject_listed, "{:?}", artifact);
            }
            prop_assert_eq!(decision.artifacts.len(), tagged.len(), "every artifact is decided");
        }
    }
}
