//! The keep closure of one repository: everything a kept or protected manifest needs to stay
//! whole. That is the manifest itself, every manifest its index holds (recursively: platform
//! images, attestations, nested indexes), and every untagged manifest whose `subject` points
//! into the closure (signatures, SBOMs). Nothing in the closure is ever deleted; untagged
//! manifests outside it are garbage, deleted by do-prune itself, parents before children.
//!
//! Pure: what a manifest is comes from reads the caller makes. [`compute`] says which reads it
//! still needs (`pending`); the caller reads them and calls it again until nothing is pending.
//! A read that failed makes the closure unknowable, and the caller then deletes nothing in the
//! repository (fail closed).

use std::collections::{BTreeMap, BTreeSet};

use do_core::digest::Digest;
use do_core::oci::is_index_type;
use do_core::types::Manifest;

use crate::artifacts::Subjects;

pub use crate::known::{Read, ReadsByDigest};

/// The closure as far as the reads so far allow.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Closure {
    /// digest -> why it stays.
    pub kept: BTreeMap<Digest, String>,
    /// Untagged listed manifests nothing keeps, in deletion order: an index before what it holds.
    pub deletable: Vec<Digest>,
    /// Reads still needed before the closure is complete.
    pub pending: Vec<Digest>,
    /// Members whose referrers the registry's referrers API has not been asked yet (only when
    /// the API answers; then untagged manifests outside the closure need no read).
    pub unasked: Vec<Digest>,
    /// Reads that failed (digest, why): nothing may be deleted in this repository.
    pub failed: Vec<(Digest, String)>,
    /// Manifests an index in the closure holds that the API listing does not show.
    pub unlisted: BTreeSet<Digest>,
    /// Manifests in the closure the registry does not have (an image already broken).
    pub missing: BTreeSet<Digest>,
}

impl Closure {
    pub fn is_complete(&self) -> bool {
        self.pending.is_empty() && self.unasked.is_empty()
    }

    /// The untagged manifests of `listing` outside the closure, read or not (an estimate of the
    /// garbage before the reads are done).
    pub fn untagged_outside<'s, 'l: 's>(&'s self, listing: &'l [Manifest]) -> impl Iterator<Item = &'l Manifest> + 's {
        listing.iter().filter(|m| m.tags.is_empty() && !self.kept.contains_key(&m.digest))
    }
}

/// Computes the closure of `roots` (digest -> reason) over one repository's `listing` with the
/// `reads` made so far. `tag_artifacts` are the manifests whose tags name their subjects
/// (cosign's `sha256-<digest>.sig`), and those the referrers API named: they refer to those
/// subjects as a `subject` field would. `asked` is `Some` when the registry's referrers API
/// answers for this repository: the digests whose referrers it was asked. Then every member's
/// referrers come from the API, and an untagged manifest outside the closure is garbage
/// without a read; else each is read, since one may refer to something kept.
pub fn compute(
    listing: &[Manifest],
    roots: &BTreeMap<Digest, String>,
    reads: &ReadsByDigest,
    tag_artifacts: &BTreeMap<Digest, Subjects>,
    asked: Option<&BTreeSet<Digest>>,
) -> Closure {
    // Asked only of what an index holds and of referrers: made the first time it is asked.
    let listed = std::cell::LazyCell::new(|| listing.iter().map(|m| &m.digest).collect::<BTreeSet<&Digest>>());
    let referrers = referrers_of(listing, reads, tag_artifacts);
    let mut closure = Closure::default();
    // Digest -> whether it must be read to know what it holds: roots always, an index child when
    // its descriptor says index or says nothing.
    let mut queue: Vec<(Digest, bool)> = Vec::new();
    for (digest, reason) in roots {
        closure.kept.insert(digest.clone(), reason.clone());
        queue.push((digest.clone(), true));
    }
    // Sorted and made unique once, in `outside`: 80,000 garbage digests to read in an ordered set
    // took 5 MB, and as many again as they were copied out.
    let mut pending = Vec::new();
    while let Some((digest, must_read)) = queue.pop() {
        let short = short(&digest);
        match reads.get(&digest) {
            None if must_read => {
                pending.push(digest.clone());
            }
            None => {}
            Some(Read::Failed(why)) => closure.failed.push((digest.clone(), why.to_string())),
            Some(Read::Missing) if listed.contains(&digest) && roots.contains_key(&digest) => closure
                .failed
                .push((digest.clone(), "listed by the API, but the registry does not have it".to_string())),
            Some(Read::Missing) if !roots.contains_key(&digest) => {
                closure.missing.insert(digest.clone());
            }
            Some(Read::Missing) | Some(Read::Plain) => {}
            Some(Read::Info(info)) => {
                for child in &info.children {
                    if !listed.contains(&child.digest) {
                        closure.unlisted.insert(child.digest.clone());
                    }
                    if !closure.kept.contains_key(&child.digest) {
                        let what = match (&child.attestation_of, &child.platform) {
                            (Some(_), _) => "an attestation".to_string(),
                            (None, Some(platform)) => format!("the {platform} image"),
                            (None, None) => "a manifest".to_string(),
                        };
                        closure.kept.insert(child.digest.clone(), format!("{what} of index {short}, which is kept"));
                        let must_read = child.media_type.as_deref().is_none_or(is_index_type);
                        queue.push((child.digest.clone(), must_read));
                    }
                }
            }
        }
        for referrer in referrers.get(&digest).into_iter().flatten() {
            if !closure.kept.contains_key(*referrer) {
                if !listed.contains(*referrer) {
                    closure.unlisted.insert((*referrer).clone());
                }
                closure.kept.insert((*referrer).clone(), format!("refers to {short}, which is kept"));
                queue.push(((*referrer).clone(), true));
            }
        }
    }
    outside(&mut closure, listing, reads, asked, pending);
    closure.failed.sort();
    closure.failed.dedup();
    closure
}

/// The untagged manifests outside the closure: each must be read (one may refer to something
/// kept) unless the referrers API named every member's referrers; once every read is made and
/// none failed, the garbage, parents first. Only once the closure itself is known (`pending`
/// empty), so that no manifest it holds is read for nothing.
fn outside(
    closure: &mut Closure,
    listing: &[Manifest],
    reads: &ReadsByDigest,
    asked: Option<&BTreeSet<Digest>>,
    mut pending: Vec<Digest>,
) {
    let outside: Vec<&Manifest> = closure.untagged_outside(listing).collect();
    let expanded = pending.is_empty();
    pending.reserve(outside.len());
    if let Some(asked) = asked {
        closure.unasked = closure.kept.keys().filter(|d| !asked.contains(*d)).cloned().collect();
    }
    for manifest in &outside {
        match reads.get(&manifest.digest) {
            None if expanded && asked.is_none() => {
                pending.push(manifest.digest.clone());
            }
            None => {}
            Some(Read::Failed(why)) => closure.failed.push((manifest.digest.clone(), why.to_string())),
            Some(Read::Missing) | Some(Read::Plain) | Some(Read::Info(_)) => {}
        }
    }
    pending.sort_unstable();
    pending.dedup();
    closure.pending = pending;
    if closure.is_complete() && closure.failed.is_empty() {
        // Unread garbage (the referrers API made its read needless) has no known children, so
        // it comes in the first wave.
        let garbage: Vec<&Digest> = outside
            .iter()
            .filter(|m| match reads.get(&m.digest) {
                Some(Read::Plain) | Some(Read::Info(_)) => true,
                None => asked.is_some(),
                Some(Read::Missing) | Some(Read::Failed(_)) => false,
            })
            .map(|m| &m.digest)
            .collect();
        closure.deletable = parents_first(&garbage, reads);
    }
}

/// The referrers of each manifest: the listed manifests whose read shows it as `subject`, and
/// those whose tag (or the referrers API) names it.
fn referrers_of<'a>(
    listing: &'a [Manifest],
    reads: &'a ReadsByDigest,
    tag_artifacts: &'a BTreeMap<Digest, Subjects>,
) -> BTreeMap<&'a Digest, Vec<&'a Digest>> {
    let info = |digest: &Digest| match reads.get(digest) {
        Some(Read::Info(info)) => Some(info),
        _ => None,
    };
    // Referrers of a manifest: the listed manifests whose subject (or tag) names it.
    let mut referrers: BTreeMap<&Digest, Vec<&Digest>> = BTreeMap::new();
    for manifest in listing {
        if let Some(subject) = info(&manifest.digest).and_then(|i| i.subject.as_ref()) {
            referrers.entry(subject).or_default().push(&manifest.digest);
        }
    }
    // Known without a read: from its tag, or from the referrers API (which may name manifests
    // the listing does not show).
    for (artifact, subjects) in tag_artifacts {
        for (subject, _) in subjects {
            let known = referrers.entry(subject).or_default();
            if !known.contains(&artifact) {
                known.push(artifact);
            }
        }
    }
    referrers
}

/// Orders `digests` so that an index comes before every manifest it holds (deleting a child
/// first would leave, for a moment or after an interruption, an index that cannot be pulled).
pub fn parents_first(digests: &[&Digest], reads: &ReadsByDigest) -> Vec<Digest> {
    // Made at its size: 80,000 digests grown by doubling left copies behind.
    leveled(digests, reads).into_iter().map(|(_, digest)| digest.clone()).collect()
}

/// `digests` in waves: every index in a wave before the manifests it holds, which come in a later
/// wave. Deletions within a wave may run at once.
pub fn waves(digests: &[&Digest], reads: &ReadsByDigest) -> Vec<Vec<Digest>> {
    let leveled = leveled(digests, reads);
    let waves = leveled.chunk_by(|(a, _), (b, _)| a == b);
    waves.map(|wave| wave.iter().map(|(_, digest)| (*digest).clone()).collect()).collect()
}

/// Each of `digests` once, with how deep it is held (0: by none of them), by depth and then by
/// digest.
fn leveled<'a>(digests: &[&'a Digest], reads: &ReadsByDigest) -> Vec<(usize, &'a Digest)> {
    let mut set: Vec<&Digest> = digests.to_vec();
    set.sort_unstable();
    set.dedup();
    let mut parents: BTreeMap<&Digest, Vec<&Digest>> = BTreeMap::new();
    for digest in &set {
        if let Some(Read::Info(info)) = reads.get(digest) {
            for child in info.children.iter().filter(|c| set.binary_search(&&c.digest).is_ok()) {
                parents.entry(&child.digest).or_default().push(digest);
            }
        }
    }
    fn depth<'a>(
        d: &'a Digest,
        parents: &BTreeMap<&'a Digest, Vec<&'a Digest>>,
        seen: &mut BTreeSet<&'a Digest>,
    ) -> usize {
        // Most have no parent: they are answered without touching `seen`.
        let Some(of) = parents.get(d) else { return 0 };
        if !seen.insert(d) {
            return 0; // a cycle cannot happen with content-addressed manifests; stop if it does
        }
        let deepest = of.iter().map(|p| depth(p, parents, seen) + 1).max().unwrap_or(0);
        seen.remove(d);
        deepest
    }
    let mut leveled: Vec<(usize, &Digest)> =
        set.iter().map(|digest| (depth(digest, &parents, &mut BTreeSet::new()), *digest)).collect();
    // Stable: within a depth, the digests stay in order.
    leveled.sort_by_key(|(level, _)| *level);
    leveled
}

/// The first 12 hex digits of a digest, as people write it.
pub fn short(digest: &Digest) -> String {
    let text = digest.text();
    let hex = text.strip_prefix("sha256:").unwrap_or(&text);
    hex.chars().take(12).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use do_core::oci::{Descriptor, ManifestInfo, OCI_INDEX, OCI_MANIFEST};

    fn d(text: &str) -> Digest {
        Digest::new(text)
    }

    fn listed(digest: &str, tags: &[&str]) -> Manifest {
        Manifest { digest: digest.into(), tags: tags.iter().map(|t| t.to_string()).collect(), ..Manifest::default() }
    }

    fn image(digest: &str) -> Read {
        Read::from(ManifestInfo {
            digest: digest.into(),
            media_type: OCI_MANIFEST.into(),
            children: vec![],
            subject: None,
            config: None,
            size: 1,
        })
    }

    fn referrer(digest: &str, subject: &str) -> Read {
        Read::from(ManifestInfo {
            digest: digest.into(),
            media_type: OCI_MANIFEST.into(),
            children: vec![],
            subject: Some(subject.into()),
            config: None,
            size: 1,
        })
    }

    fn index(digest: &str, children: &[(&str, Option<&str>)]) -> Read {
        Read::from(ManifestInfo {
            digest: digest.into(),
            media_type: OCI_INDEX.into(),
            children: children
                .iter()
                .map(|(d, t)| Descriptor {
                    digest: (*d).into(),
                    media_type: t.map(str::to_string),
                    platform: Some("linux/amd64".into()),
                    attestation_of: None,
                })
                .collect(),
            subject: None,
            config: None,
            size: 1,
        })
    }

    fn roots(digests: &[&str]) -> BTreeMap<Digest, String> {
        digests.iter().map(|text| (d(text), format!("root {text}"))).collect()
    }

    fn reads(entries: Vec<(&str, Read)>) -> ReadsByDigest {
        entries.into_iter().map(|(text, r)| (d(text), r)).collect()
    }

    /// Runs compute, answering pending reads from `world`, as the driver does.
    fn settle(
        listing: &[Manifest],
        roots: &BTreeMap<Digest, String>,
        world: &ReadsByDigest,
    ) -> (Closure, Vec<Vec<Digest>>) {
        let mut known = ReadsByDigest::new();
        let mut rounds = Vec::new();
        loop {
            let closure = compute(listing, roots, &known, &BTreeMap::new(), None);
            if closure.is_complete() {
                return (closure, rounds);
            }
            assert!(closure.pending.iter().any(|d| !known.contains_key(d)), "a round that reads nothing new");
            assert!(rounds.len() < 100, "the closure never settles: its reads are not kept");
            for digest in &closure.pending {
                known.insert(digest.clone(), world.get(digest).cloned().unwrap_or(Read::Missing));
            }
            rounds.push(closure.pending);
        }
    }

    #[test]
    fn a_read_keeps_what_the_closure_asks_and_drops_the_rest_of_a_plain_image() {
        assert_eq!(image("a"), Read::Plain);
        // An index stays an index even when it holds nothing (it counts as an index read).
        let empty_index = index("i", &[]);
        assert!(matches!(&empty_index, Read::Info(info) if info.is_index() && info.children.is_empty()));
        assert!(matches!(referrer("s", "a"), Read::Info(info) if info.subject == Some(d("a"))));
        // An image manifest that holds manifests all the same keeps them.
        let Read::Info(mut odd) = index("o", &[("c", None)]) else { panic!("an index is kept") };
        odd.media_type = OCI_MANIFEST.into();
        assert!(matches!(Read::from(*odd), Read::Info(info) if info.children.len() == 1));
    }

    #[test]
    fn a_referrer_the_listing_does_not_show_is_kept_and_noted_unlisted() {
        let listing = vec![listed("k", &["v1"]), listed("sig", &[])];
        let edges: BTreeMap<Digest, Subjects> = [
            (d("sig"), vec![(d("k"), crate::artifacts::Kind::Referrer)]),
            (d("ghost"), vec![(d("k"), crate::artifacts::Kind::Referrer)]),
        ]
        .into();
        let known = reads(vec![("k", image("k")), ("sig", image("sig")), ("ghost", image("ghost"))]);
        let closure = compute(&listing, &roots(&["k"]), &known, &edges, None);
        assert!(closure.kept.contains_key(&d("ghost")) && closure.kept.contains_key(&d("sig")));
        assert_eq!(closure.unlisted, [d("ghost")].into(), "only what the listing lacks");
    }

    #[test]
    fn with_the_referrers_api_every_member_is_asked_and_the_garbage_is_not_read() {
        let listing =
            vec![listed("k", &["v2"]), listed("k1", &[]), listed("sig", &[]), listed("junk", &[]), listed("gone", &[])];
        let known = reads(vec![
            ("k", index("k", &[("k1", Some(OCI_MANIFEST))])),
            ("gone", Read::Missing),
            ("junk", Read::Failed("read earlier, failed".into())),
        ]);
        let edges: BTreeMap<Digest, Subjects> = [(d("sig"), vec![(d("k1"), crate::artifacts::Kind::Referrer)])].into();
        let asked: BTreeSet<Digest> = [d("k")].into();
        let first = compute(&listing, &roots(&["k"]), &known, &edges, Some(&asked));
        assert_eq!(first.unasked, ["k1", "sig"], "what joined the closure is asked next");
        assert_eq!(first.pending, ["sig"], "a member is read; no garbage is");
        assert_eq!(first.failed.len(), 1, "a read that failed still counts");
        assert!(first.deletable.is_empty(), "nothing is garbage before every member is asked");
        let asked: BTreeSet<Digest> = ["k", "k1", "sig"].map(d).into();
        let known = reads(vec![
            ("k", index("k", &[("k1", Some(OCI_MANIFEST))])),
            ("sig", referrer("sig", "k1")),
            ("gone", Read::Missing),
        ]);
        let done = compute(&listing, &roots(&["k"]), &known, &edges, Some(&asked));
        assert!(done.is_complete(), "{done:?}");
        assert_eq!(done.kept[&d("sig")], "refers to k1, which is kept");
        assert_eq!(done.deletable, ["junk"], "unread garbage goes; what the registry no longer has does not");
        let without = compute(&listing, &roots(&["k"]), &known, &edges, None);
        assert_eq!(without.pending, ["junk"], "without the API the garbage is read");
        assert!(without.unasked.is_empty());
    }

    #[test]
    fn a_kept_index_keeps_its_children_and_garbage_goes_parents_first() {
        let listing = vec![
            listed("k", &["v2"]),
            listed("k1", &[]),
            listed("k2", &[]),
            listed("old", &[]),
            listed("o1", &[]),
            listed("o2", &[]),
            listed("loose", &[]),
        ];
        let world = reads(vec![
            ("k", index("k", &[("k1", Some(OCI_MANIFEST)), ("k2", Some(OCI_MANIFEST))])),
            ("old", index("old", &[("o1", Some(OCI_MANIFEST)), ("o2", Some(OCI_MANIFEST))])),
            ("o1", image("o1")),
            ("o2", image("o2")),
            ("loose", image("loose")),
        ]);
        let (closure, rounds) = settle(&listing, &roots(&["k"]), &world);
        assert_eq!(rounds, vec![vec!["k".to_string()], vec!["loose".into(), "o1".into(), "o2".into(), "old".into()]]);
        assert_eq!(closure.kept.keys().collect::<Vec<_>>(), ["k", "k1", "k2"]);
        assert_eq!(closure.kept[&d("k1")], "the linux/amd64 image of index k, which is kept");
        assert_eq!(closure.deletable, ["loose", "old", "o1", "o2"], "the index before what it holds");
        assert!(closure.failed.is_empty() && closure.unlisted.is_empty() && closure.missing.is_empty());
    }

    #[test]
    fn leaf_children_are_not_read_but_index_children_and_unknown_ones_are() {
        let listing = vec![
            listed("top", &["v1"]),
            listed("nested", &[]),
            listed("leaf", &[]),
            listed("vague", &[]),
            listed("deep", &[]),
        ];
        let world = reads(vec![
            ("top", index("top", &[("nested", Some(OCI_INDEX)), ("leaf", Some(OCI_MANIFEST)), ("vague", None)])),
            ("nested", index("nested", &[("deep", Some(OCI_MANIFEST))])),
            ("vague", image("vague")),
        ]);
        let (closure, rounds) = settle(&listing, &roots(&["top"]), &world);
        assert_eq!(rounds, vec![vec!["top".to_string()], vec!["nested".into(), "vague".into()]]);
        assert_eq!(closure.kept.len(), 5, "{closure:?}");
        assert!(closure.deletable.is_empty());
    }

    #[test]
    fn referrers_of_kept_manifests_stay_and_so_do_referrers_of_those() {
        let listing = vec![
            listed("img", &["v1"]),
            listed("sig", &[]),
            listed("sig-of-sig", &[]),
            listed("stray-sig", &[]),
            listed("gone-img", &[]),
        ];
        let world = reads(vec![
            ("img", image("img")),
            ("sig", referrer("sig", "img")),
            ("sig-of-sig", referrer("sig-of-sig", "sig")),
            ("stray-sig", referrer("stray-sig", "gone-img")),
            ("gone-img", image("gone-img")),
        ]);
        let (closure, _) = settle(&listing, &roots(&["img"]), &world);
        assert_eq!(closure.kept[&d("sig")], "refers to img, which is kept");
        assert_eq!(closure.kept[&d("sig-of-sig")], "refers to sig, which is kept");
        assert_eq!(closure.deletable, ["gone-img", "stray-sig"]);
    }

    #[test]
    fn a_tagged_manifest_held_by_a_kept_index_is_in_the_closure() {
        // `docker manifest create web:v1 web:v1-amd64 web:v1-arm64`: children that are tagged.
        let listing = vec![listed("list", &["v1"]), listed("amd", &["v1-amd64"]), listed("arm", &["v1-arm64"])];
        let world = reads(vec![("list", index("list", &[("amd", Some(OCI_MANIFEST)), ("arm", Some(OCI_MANIFEST))]))]);
        let (closure, _) = settle(&listing, &roots(&["list"]), &world);
        assert!(closure.kept.contains_key(&d("amd")) && closure.kept.contains_key(&d("arm")));
    }

    #[test]
    fn a_failed_read_leaves_nothing_deletable() {
        let listing = vec![listed("k", &["v1"]), listed("junk", &[]), listed("odd", &[])];
        let world = reads(vec![("k", image("k")), ("junk", image("junk")), ("odd", Read::Failed("timed out".into()))]);
        let (closure, _) = settle(&listing, &roots(&["k"]), &world);
        assert_eq!(closure.failed, [(d("odd"), "timed out".to_string())]);
        assert!(closure.deletable.is_empty(), "junk stays too: the repository's closure is unknowable");
        let world = reads(vec![("k", Read::Failed("503".into())), ("junk", image("junk")), ("odd", image("odd"))]);
        let (closure, _) = settle(&listing, &roots(&["k"]), &world);
        assert_eq!(closure.failed.len(), 1);
        assert!(closure.deletable.is_empty());
    }

    #[test]
    fn missing_manifests() {
        // A listed root the registry does not have is an inconsistency: fail closed.
        let listing = vec![listed("k", &["v1"]), listed("junk", &[])];
        let world = reads(vec![("junk", image("junk"))]);
        let (closure, _) = settle(&listing, &roots(&["k"]), &world);
        assert_eq!(closure.failed[0].0, "k");
        assert!(closure.deletable.is_empty());
        // A protected digest that is not in the repository protects nothing and blocks nothing.
        let (closure, _) = settle(&listing, &roots(&["elsewhere"]), &world);
        assert!(closure.failed.is_empty() && closure.missing.is_empty(), "{closure:?}");
        assert_eq!(closure.deletable, ["junk"]);
        // An untagged manifest gone since the listing is not deleted again.
        let (closure, _) =
            settle(&[listed("k", &["v1"]), listed("gone", &[])], &roots(&["k"]), &reads(vec![("k", image("k"))]));
        assert!(closure.deletable.is_empty() && closure.failed.is_empty());
        // A nested index the registry lost: the kept image is already broken; say so.
        let world = reads(vec![("k", index("k", &[("lost", Some(OCI_INDEX))]))]);
        let (closure, _) = settle(&[listed("k", &["v1"])], &roots(&["k"]), &world);
        assert_eq!(closure.missing.iter().collect::<Vec<_>>(), ["lost"]);
        assert_eq!(closure.unlisted.iter().collect::<Vec<_>>(), ["lost"]);
    }

    #[test]
    fn children_the_listing_does_not_show_are_reported() {
        let listing = vec![listed("k", &["v1"])];
        let world = reads(vec![("k", index("k", &[("hidden", Some(OCI_MANIFEST))]))]);
        let (closure, _) = settle(&listing, &roots(&["k"]), &world);
        assert!(closure.unlisted.contains(&d("hidden")) && closure.kept.contains_key(&d("hidden")));
        assert!(closure.missing.is_empty(), "a leaf child is not read");
    }

    #[test]
    fn nested_garbage_goes_outermost_first() {
        let world = reads(vec![
            ("a", index("a", &[("b", Some(OCI_INDEX))])),
            ("b", index("b", &[("c", Some(OCI_MANIFEST))])),
            ("c", image("c")),
        ]);
        assert_eq!(parents_first(&[&d("c"), &d("b"), &d("a")], &world), ["a", "b", "c"]);
        assert_eq!(
            waves(&[&d("c"), &d("x"), &d("b"), &d("a")], &world),
            [vec!["a".to_string(), "x".into()], vec!["b".into()], vec!["c".into()]]
        );
        assert_eq!(short(&d("sha256:0123456789abcdef")), "0123456789ab");
        assert_eq!(short(&d(&format!("sha256:{}", "ab".repeat(32)))), "abababababab");
    }
}
