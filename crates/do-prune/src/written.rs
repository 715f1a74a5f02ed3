//! A plan as it is written (the record, `--plan-out`, the table on stderr) and as apply walks
//! it: its deletions in order, the untagged garbage described from the listing it was planned
//! from.
//!
//! A plan names its garbage by digest. Each garbage deletion's other fields (push time, size,
//! reason, the artifact it is) are the listing's and the plan's artifacts', taken as it is
//! written: held as full deletions, 80,000 garbage manifests were 13 MB beside a listing that
//! already says all of it.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};

use do_core::digest::Digest;
use do_core::types::Manifest;
use serde::ser::{Serialize, SerializeStruct, Serializer};

use crate::artifacts::{Artifact, Fate};
use crate::plan::RepositoryPlan;
use crate::policy::{self, Action, Deletion};

/// Why untagged garbage goes.
pub const GARBAGE: &str = "untagged, and nothing kept holds or refers to it";

/// The tags of an untagged deletion.
pub const NO_TAGS: &[String] = &[];

impl RepositoryPlan {
    /// How many deletions the plan makes: those held in full and the garbage.
    pub fn deletion_count(&self) -> usize {
        self.deleted.len() + self.garbage.len()
    }

    /// Every deletion's digest, action and tags, in order: those held in full, then the garbage.
    pub fn deletion_keys(&self) -> impl Iterator<Item = (&Digest, Action, &[String])> {
        let held = self.deleted.iter().map(|d| (&d.digest, d.action, d.tags.as_slice()));
        held.chain(self.garbage.iter().map(|digest| (digest, Action::Manifest, NO_TAGS)))
    }
}

/// One repository's plan with the listing it was made from.
#[derive(Clone, Copy)]
pub struct Described<'a> {
    pub plan: &'a RepositoryPlan,
    pub listing: &'a [Manifest],
}

impl<'a> Described<'a> {
    /// `plan` with its repository's listing in `listings` (none when it has none).
    pub fn of(plan: &'a RepositoryPlan, listings: &'a BTreeMap<String, Vec<Manifest>>) -> Described<'a> {
        Described { plan, listing: listings.get(&plan.name).map_or(&[], Vec::as_slice) }
    }

    /// Every deletion in full, in order: those held in full (tagged ones, a saved plan's
    /// entries), then the garbage, each described as it comes (never all at once).
    pub fn deletions(&self) -> impl Iterator<Item = Cow<'a, Deletion>> + 'a {
        let plan = self.plan;
        let listed: HashMap<&Digest, &Manifest> = match plan.garbage.is_empty() {
            true => HashMap::new(),
            false => self.listing.iter().map(|m| (&m.digest, m)).collect(),
        };
        let going: HashMap<&Digest, &Artifact> = plan
            .artifacts
            .iter()
            .filter(|a| matches!(a.fate, Fate::Deleted | Fate::Orphan))
            .map(|a| (&a.digest, a))
            .collect();
        let garbage = plan.garbage.iter().map(move |digest| {
            Cow::Owned(garbage_deletion(digest, listed.get(digest).copied(), going.get(digest).copied()))
        });
        plan.deleted.iter().map(Cow::Borrowed).chain(garbage)
    }
}

/// The deletion of an untagged manifest nothing keeps: an artifact's when it is one that goes,
/// else garbage. One the listing no longer shows is written with what the plan knows, its digest.
fn garbage_deletion(digest: &Digest, manifest: Option<&Manifest>, artifact: Option<&Artifact>) -> Deletion {
    let unlisted;
    let manifest = match manifest {
        Some(manifest) => manifest,
        None => {
            unlisted = Manifest { digest: digest.clone(), ..Manifest::default() };
            &unlisted
        }
    };
    match artifact {
        Some(artifact) => crate::plan::artifact_deletion(manifest, artifact),
        None => policy::deletion(manifest, Vec::new(), Action::Manifest, GARBAGE),
    }
}

/// Written as `RepositoryPlan`'s fields, in their order, with `deleted` in full.
impl Serialize for Described<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        struct Deleted<'a>(Described<'a>);
        impl Serialize for Deleted<'_> {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.collect_seq(self.0.deletions())
            }
        }
        let plan = self.plan;
        let mut fields = serializer.serialize_struct("RepositoryPlan", 6)?;
        fields.serialize_field("name", &plan.name)?;
        fields.serialize_field("kept", &plan.kept)?;
        fields.serialize_field("deleted", &Deleted(*self))?;
        fields.serialize_field("untagged_kept", &plan.untagged_kept)?;
        fields.serialize_field("blocked", &plan.blocked)?;
        fields.serialize_field("artifacts", &plan.artifacts)?;
        fields.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::artifacts::Kind;
    use crate::policy::ArtifactOf;

    fn digest(c: char) -> Digest {
        Digest::new(&format!("sha256:{}", c.to_string().repeat(64)))
    }

    fn listed(c: char, updated_at: &str, bytes: u64) -> Manifest {
        Manifest {
            digest: digest(c),
            updated_at: Some(updated_at.into()),
            compressed_size_bytes: Some(bytes).into(),
            ..Manifest::default()
        }
    }

    fn artifact(c: char, fate: Fate) -> Artifact {
        Artifact {
            digest: digest(c),
            tags: Vec::new(),
            kind: Kind::Attestation,
            subject: digest('0'),
            subject_tags: Vec::new(),
            fate,
            reason: format!("reason of {c}"),
        }
    }

    fn tagged(c: char) -> Deletion {
        Deletion {
            tags: vec!["v1".into()],
            ..policy::deletion(
                &listed(c, "2026-01-01T00:00:00Z", 5),
                vec!["v1".into()],
                Action::Manifest,
                "kept by no rule",
            )
        }
    }

    #[test]
    fn garbage_is_written_as_the_full_deletion_it_stands_for_after_those_held_in_full() {
        let listing = [listed('a', "2026-01-02T00:00:00Z", 7), listed('b', "2026-01-03T00:00:00Z", 9)];
        let plan = RepositoryPlan {
            name: "web".into(),
            deleted: vec![tagged('t')],
            garbage: vec![digest('a'), digest('b'), digest('c')],
            // b is an artifact that goes; a kept artifact of the same digest as garbage is not one.
            artifacts: vec![artifact('b', Fate::Orphan), artifact('a', Fate::Kept)],
            ..RepositoryPlan::default()
        };
        let written: Vec<Deletion> =
            Described { plan: &plan, listing: &listing }.deletions().map(Cow::into_owned).collect();
        let plain = policy::deletion(&listing[0], Vec::new(), Action::Manifest, GARBAGE);
        assert_eq!((plain.bytes, plain.updated_at.as_deref()), (7, Some("2026-01-02T00:00:00Z")));
        let of_b = Deletion {
            artifact: Some(Box::new(ArtifactOf { kind: Kind::Attestation, subject: digest('0') })),
            ..policy::deletion(&listing[1], Vec::new(), Action::Manifest, "reason of b")
        };
        // Not listed (it cannot happen, but a record must never leave out a deletion): its digest.
        let unlisted = Deletion { digest: digest('c'), bytes: 0, updated_at: None, ..plain.clone() };
        assert_eq!(written, [tagged('t'), plain, of_b, unlisted]);
    }

    #[test]
    fn a_plan_is_written_with_the_fields_a_saved_plan_is_read_with_in_their_order() {
        let listing = [listed('a', "2026-01-02T00:00:00Z", 7)];
        let plan = RepositoryPlan {
            name: "web".into(),
            deleted: vec![tagged('t')],
            garbage: vec![digest('a')],
            blocked: Some("why".into()),
            ..RepositoryPlan::default()
        };
        let text = serde_json::to_string(&Described { plan: &plan, listing: &listing }).unwrap();
        let keys = ["\"name\"", "\"kept\"", "\"deleted\"", "\"untagged_kept\"", "\"blocked\"", "\"artifacts\""];
        let at: Vec<usize> = keys.iter().map(|k| text.find(k).unwrap()).collect();
        assert!(at.windows(2).all(|w| w[0] < w[1]), "{text}");
        let read: RepositoryPlan = serde_json::from_str(&text).unwrap();
        let garbage = policy::deletion(&listing[0], Vec::new(), Action::Manifest, GARBAGE);
        assert_eq!(read, RepositoryPlan { deleted: vec![tagged('t'), garbage], garbage: Vec::new(), ..plan.clone() });
        // Nothing to describe: no listing needed.
        let held = RepositoryPlan { garbage: Vec::new(), ..plan };
        assert_eq!(Described { plan: &held, listing: &[] }.deletions().count(), 1);
    }

    #[test]
    fn the_count_and_keys_cover_the_garbage_after_those_held_in_full() {
        let plan = RepositoryPlan {
            deleted: vec![Deletion { action: Action::Tags, ..tagged('t') }],
            garbage: vec![digest('a'), digest('b')],
            ..RepositoryPlan::default()
        };
        assert_eq!(plan.deletion_count(), 3);
        let keys: Vec<(&Digest, Action, &[String])> = plan.deletion_keys().collect();
        let v1 = ["v1".to_string()];
        assert_eq!(
            keys,
            [
                (&digest('t'), Action::Tags, &v1[..]),
                (&digest('a'), Action::Manifest, NO_TAGS),
                (&digest('b'), Action::Manifest, NO_TAGS)
            ]
        );
    }
}
