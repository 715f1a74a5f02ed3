use super::*;
use proptest::prelude::*;

const TAGS: [&str; 10] = ["latest", "v1", "v2", "v3", "v4", "v5", "release-1", "release-2", "main", "dev"];
const NOW: i64 = 1_800_000_000;

/// A repository: unique digests, no tag on two manifests, ages in days (some unreadable).
fn repository() -> impl Strategy<Value = Vec<Manifest>> {
    proptest::collection::vec(
        (proptest::collection::vec(0usize..TAGS.len(), 0..3), proptest::option::weighted(0.9, 0i64..60)),
        0..14,
    )
    .prop_map(|specs| {
        let mut used = std::collections::BTreeSet::new();
        specs
            .into_iter()
            .enumerate()
            .map(|(i, (tags, age))| Manifest {
                digest: format!("sha256:{i:064x}").into(),
                tags: tags.into_iter().filter(|t| used.insert(*t)).map(|t| TAGS[t].to_string()).collect(),
                updated_at: Some(match age {
                    Some(days) => jiff::Timestamp::from_second(NOW - days * 86_400).unwrap().to_string().into(),
                    None => "yesterday".into(),
                }),
                compressed_size_bytes: Some(100).into(),
                ..Manifest::default()
            })
            .collect()
    })
}

fn policy() -> impl Strategy<Value = Policy> {
    (0usize..4, proptest::option::of(0u64..40), any::<bool>(), any::<bool>()).prop_map(
        |(keep_last, days, release, allow_empty)| Policy {
            keep_tags: if release { vec!["release-.*".into()] } else { vec![] },
            keep_last,
            keep_within_seconds: days.map(|d| d * 86_400),
            allow_empty,
        },
    )
}

proptest! {
    #[test]
    fn plans_keep_what_they_must(
        manifests in repository(),
        policy in policy(),
        protected_picks in proptest::collection::vec(0usize..14, 0..4),
        protected_tag in proptest::option::of(0usize..TAGS.len()),
    ) {
        let mut protected = Protected::default();
        for pick in &protected_picks {
            if let Some(m) = manifests.get(*pick) {
                protected.digests.insert(m.digest.clone(), "deployed".into());
            }
        }
        if let Some(tag) = protected_tag {
            protected.tags.insert(TAGS[tag].to_string(), "named by the tag record".into());
        }
        let patterns = compile_keep_tags(&policy.keep_tags).unwrap();
        let plan = plan_tagged(&manifests.iter().collect::<Vec<_>>(), &policy, &patterns, &protected, NOW);
        let tagged: Vec<&Manifest> = manifests.iter().filter(|m| !m.tags.is_empty()).collect();

        // Every tagged manifest is decided once: kept, or deleted whole, or both kept and
        // stripped of some tags; untagged ones are not decided here.
        for manifest in &manifests {
            let kept = plan.kept.iter().filter(|k| k.digest == manifest.digest).count();
            let whole = plan.deleted.iter().filter(|d| d.digest == manifest.digest && d.action == Action::Manifest).count();
            let partial = plan.deleted.iter().filter(|d| d.digest == manifest.digest && d.action == Action::Tags).count();
            if manifest.tags.is_empty() {
                prop_assert_eq!((kept, whole, partial), (0, 0, 0));
            } else {
                prop_assert!(kept + whole == 1 && partial <= kept, "{:?}", manifest.digest);
            }
        }
        for deletion in &plan.deleted {
            // A protected digest loses nothing, not even a tag; `latest` and kept tags never go.
            prop_assert!(!protected.digests.contains_key(&deletion.digest));
            prop_assert!(deletion.tags.iter().all(|t| kept_tag_reason(t, &patterns).is_none() && !protected.tags.contains_key(t)));
            prop_assert!(deletion.tags.iter().all(|t| deletion.all_tags.contains(t)));
            // An unreadable time counts as newest: such a manifest is never deleted whole.
            prop_assert!(deletion.action == Action::Tags || epoch(manifests.iter().find(|m| m.digest == deletion.digest).unwrap()).is_some());
        }
        // Without --allow-empty a repository with tagged manifests keeps at least one whole.
        if !policy.allow_empty && !tagged.is_empty() {
            prop_assert!(plan.kept.iter().any(|k| tagged.iter().any(|m| m.digest == k.digest && m.tags[..] == k.tags[..])));
        }
        // The N most recent readable ones are kept.
        let mut readable: Vec<&&Manifest> = tagged.iter().filter(|m| epoch(m).is_some()).collect();
        readable.sort_by(|a, b| newest_first(a, b));
        for recent in readable.iter().take(policy.keep_last) {
            prop_assert!(!plan.deleted.iter().any(|d| d.digest == recent.digest && d.action == Action::Manifest));
        }
        // And every one pushed in the same second as the last of them.
        if let Some(last) = policy.keep_last.checked_sub(1).and_then(|i| readable.get(i)) {
            for tied in readable.iter().filter(|m| epoch(m) == epoch(last)) {
                prop_assert!(!plan.deleted.iter().any(|d| d.digest == tied.digest && d.action == Action::Manifest));
            }
        }
    }
}
