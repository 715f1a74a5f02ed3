use super::*;
use do_core::types::Blob;

const DAY: i64 = 86_400;
const NOW: i64 = 1_800_000_000;

fn manifest(digest: &str, tags: &[&str], days_old: i64) -> Manifest {
    Manifest {
        digest: digest.into(),
        tags: tags.iter().map(|t| t.to_string()).collect(),
        updated_at: Some(jiff::Timestamp::from_second(NOW - days_old * DAY).unwrap().to_string().into()),
        compressed_size_bytes: Some(100).into(),
        blobs: Box::new([Blob {
            digest: Some(format!("blob-{digest}").into()),
            compressed_size_bytes: Some(100).into(),
        }]),
        ..Manifest::default()
    }
}

fn plan(manifests: &[Manifest], policy: &Policy, protected: &Protected) -> TaggedPlan {
    let patterns = compile_keep_tags(&policy.keep_tags).unwrap();
    plan_tagged(&manifests.iter().collect::<Vec<_>>(), policy, &patterns, protected, NOW)
}

fn deleted(plan: &TaggedPlan) -> Vec<(String, Action)> {
    plan.deleted.iter().map(|d| (d.digest.to_string(), d.action)).collect()
}

fn pairs(expected: &[(&str, Action)]) -> Vec<(String, Action)> {
    expected.iter().map(|(digest, action)| (digest.to_string(), *action)).collect()
}

fn reason<'a>(plan: &'a TaggedPlan, digest: &str) -> &'a str {
    &plan.kept.iter().find(|k| k.digest == digest).unwrap_or_else(|| panic!("{digest} is not kept: {plan:?}")).reason
}

fn registry() -> Vec<Manifest> {
    vec![
        manifest("a", &["v1"], 40),
        manifest("b", &["v2"], 30),
        manifest("c", &["v3", "latest"], 20),
        manifest("d", &["v4"], 10),
        manifest("e", &["release-5", "v5"], 5),
        manifest("u", &[], 50),
    ]
}

#[test]
fn images_pushed_in_the_same_second_are_ordered_by_version_then_tag_then_digest() {
    // The order of recency (which image is the newest, which fills a --keep-last place first).
    let order = |manifests: &[Manifest]| {
        let mut sorted: Vec<&Manifest> = manifests.iter().collect();
        sorted.sort_by(|a, b| newest_first(a, b));
        sorted.iter().map(|m| m.digest.clone()).collect::<Vec<_>>()
    };
    // Semantic versions, not text: v2.0.10 is newer than v2.0.9 and v2.0.7 than v2.0.2.
    let same_second = [manifest("a", &["v2.0.2"], 1), manifest("b", &["v2.0.10"], 1), manifest("c", &["v2.0.9"], 1)];
    assert_eq!(order(&same_second), ["b", "c", "a"]);
    // A prefix other than v, and a tag that is not a version, which counts below any version.
    let mixed = [manifest("a", &["build-7"], 1), manifest("b", &["release-1.0.0"], 1)];
    assert_eq!(order(&mixed), ["b", "a"]);
    // No versions: the greatest tag; the same tags: the smallest digest.
    assert_eq!(order(&[manifest("a", &["alpha"], 1), manifest("b", &["beta"], 1)]), ["b", "a"]);
    assert_eq!(order(&[manifest("b", &["x"], 1), manifest("a", &["x"], 1)]), ["a", "b"]);
    // Time still comes first.
    assert_eq!(order(&[manifest("a", &["v9.0.0"], 2), manifest("b", &["v1.0.0"], 1)]), ["b", "a"]);
    // The highest version among several tags counts.
    assert_eq!(order(&[manifest("a", &["v3.0.0", "v1.0.0"], 1), manifest("b", &["v2.0.0"], 1)]), ["a", "b"]);
    // The newest-image rail follows that order among images pushed in one second.
    let p = plan(&same_second, &Policy::default(), &Protected::default());
    assert_eq!(reason(&p, "b"), "the repository's newest tagged manifest (--allow-empty deletes it)");
    assert_eq!(deleted(&p), pairs(&[("c", Action::Manifest), ("a", Action::Manifest)]));
}

#[test]
fn keep_last_keeps_the_most_recent_by_updated_at() {
    let p = plan(&registry(), &Policy { keep_last: 2, ..Policy::default() }, &Protected::default());
    assert_eq!(deleted(&p), pairs(&[("c", Action::Tags), ("b", Action::Manifest), ("a", Action::Manifest)]));
    assert_eq!(reason(&p, "c"), "tag latest");
    assert_eq!(reason(&p, "e"), "one of the 2 most recent (--keep-last)");
    assert_eq!(reason(&p, "d"), "one of the 2 most recent (--keep-last)");
    assert!(p.kept.iter().chain(p.kept.iter()).all(|k| k.digest != "u"), "untagged manifests are not decided here");
    assert_eq!(p.deleted[1].reason, "kept by no rule");
    assert_eq!(p.deleted[0].reason, "tags kept by no rule");
    assert_eq!(p.deleted[1].bytes, 100);
}

#[test]
fn keep_last_keeps_every_image_tied_on_time_at_its_boundary() {
    // b and a were pushed in the same second, c earlier: --keep-last 1 keeps b and a both.
    let mut tied = vec![manifest("b", &["v2"], 3), manifest("a", &["v1"], 3), manifest("c", &["v3"], 9)];
    let p = plan(&tied, &Policy { keep_last: 1, ..Policy::default() }, &Protected::default());
    assert_eq!(deleted(&p), pairs(&[("c", Action::Manifest)]));
    assert_eq!(reason(&p, "b"), "one of the 1 most recent (--keep-last)");
    assert_eq!(
        reason(&p, "a"),
        "pushed in the same second as the last of the 1 most recent (--keep-last): a tie is kept whole"
    );
    tied.reverse();
    let again = plan(&tied, &Policy { keep_last: 1, ..Policy::default() }, &Protected::default());
    assert_eq!(deleted(&again), deleted(&p), "the listing order does not matter");
    // A tie below the boundary changes nothing.
    let p = plan(
        &[manifest("n", &["v9"], 1), manifest("m", &["v8"], 1), manifest("o", &["v1"], 5), manifest("p", &["v0"], 5)],
        &Policy { keep_last: 1, ..Policy::default() },
        &Protected::default(),
    );
    assert_eq!(deleted(&p), pairs(&[("o", Action::Manifest), ("p", Action::Manifest)]), "{p:?}");
    assert!(reason(&p, "m").contains("a tie is kept whole"));
    let none = plan(
        &[manifest("n", &["v9"], 1), manifest("m", &["v8"], 1)],
        &Policy { keep_last: 0, allow_empty: true, ..Policy::default() },
        &Protected::default(),
    );
    assert_eq!(none.deleted.len(), 2, "--keep-last 0 has no boundary");
}

#[test]
fn keep_within_keeps_recent_updates_up_to_the_boundary() {
    let p = plan(
        &registry(),
        &Policy { keep_within_seconds: Some(10 * DAY as u64), ..Policy::default() },
        &Protected::default(),
    );
    assert_eq!(deleted(&p), pairs(&[("c", Action::Tags), ("b", Action::Manifest), ("a", Action::Manifest)]));
    assert_eq!(reason(&p, "d"), "updated within 10d (--keep-within)", "exactly 10 days old is within");
}

#[test]
fn keep_tag_matches_whole_tags_and_deletes_only_the_other_tags() {
    let p = plan(
        &registry(),
        &Policy { keep_tags: vec!["release-.*".into()], allow_empty: true, ..Policy::default() },
        &Protected::default(),
    );
    let partial = p.deleted.iter().find(|d| d.digest == "e").unwrap();
    assert_eq!((partial.action, partial.tags.clone()), (Action::Tags, vec!["v5".to_string()]));
    assert_eq!(partial.all_tags, ["release-5", "v5"]);
    let kept = p.kept.iter().find(|k| k.digest == "e").unwrap();
    assert_eq!(kept.tags, ["release-5"]);
    assert_eq!(kept.reason, "tag release-5 matches --keep-tag ^(?:release-.*)$");
    // Patterns are anchored: `v` does not match `v1`.
    let anchored = plan(
        &registry(),
        &Policy { keep_tags: vec!["v".into()], allow_empty: true, ..Policy::default() },
        &Protected::default(),
    );
    assert!(anchored.deleted.iter().any(|d| d.digest == "a" && d.action == Action::Manifest));
    let both = plan(
        &[manifest("m", &["x1", "y1", "z1"], 40), manifest("n", &["new"], 1)],
        &Policy { keep_tags: vec!["x.*".into(), "y.*".into()], ..Policy::default() },
        &Protected::default(),
    );
    assert_eq!(reason(&both, "m"), "tag x1 matches --keep-tag ^(?:x.*)$; tag y1 matches --keep-tag ^(?:y.*)$");
    assert_eq!(both.deleted[0].tags, ["z1"]);
}

#[test]
fn latest_is_always_kept_but_its_other_tags_may_go() {
    let p = plan(&registry(), &Policy { allow_empty: true, ..Policy::default() }, &Protected::default());
    let c = p.deleted.iter().find(|d| d.digest == "c").unwrap();
    assert_eq!((c.action, c.tags.clone()), (Action::Tags, vec!["v3".to_string()]));
    assert!(p.kept.iter().any(|k| k.digest == "c" && k.tags == ["latest"]));
    let only_latest = plan(
        &[manifest("l", &["latest"], 90)],
        &Policy { allow_empty: true, ..Policy::default() },
        &Protected::default(),
    );
    assert!(only_latest.deleted.is_empty(), "nothing to delete when latest is the only tag");
}

#[test]
fn protected_digests_and_tags_are_kept_whole() {
    let mut protected = Protected::default();
    protected.digests.insert("a".into(), "active deployment of shop".into());
    protected.tags.insert("v2".into(), "named by the tag record".into());
    let p = plan(&registry(), &Policy { allow_empty: true, ..Policy::default() }, &protected);
    assert_eq!(reason(&p, "a"), "active deployment of shop");
    assert_eq!(p.kept.iter().find(|k| k.digest == "a").unwrap().tags, ["v1"]);
    assert_eq!(reason(&p, "b"), "named by the tag record");
    assert!(!p.deleted.iter().any(|d| d.digest == "a" || d.digest == "b"));
}

#[test]
fn the_newest_tagged_manifest_stays_without_allow_empty() {
    let manifests = vec![manifest("a", &["v1"], 40), manifest("b", &["v2"], 30)];
    let p = plan(&manifests, &Policy::default(), &Protected::default());
    assert_eq!(deleted(&p), pairs(&[("a", Action::Manifest)]));
    assert_eq!(reason(&p, "b"), "the repository's newest tagged manifest (--allow-empty deletes it)");
    let p = plan(&manifests, &Policy { allow_empty: true, ..Policy::default() }, &Protected::default());
    assert_eq!(p.deleted.len(), 2);
    // Kept whole even when a --keep-tag keeps another manifest: two runs with different
    // patterns at once then both keep the same one, so the repository is never emptied.
    let with_pattern = vec![manifest("r", &["release-1"], 40), manifest("n", &["v9", "nightly"], 1)];
    let p = plan(
        &with_pattern,
        &Policy { keep_tags: vec!["release-.*".into()], ..Policy::default() },
        &Protected::default(),
    );
    assert!(p.deleted.is_empty(), "{p:?}");
    assert_eq!(p.kept.iter().find(|k| k.digest == "n").unwrap().tags, ["v9", "nightly"]);
}

#[test]
fn an_unreadable_time_counts_as_newest_and_is_kept() {
    let mut odd = vec![manifest("a", &["v1"], 400), manifest("b", &["v2"], 300), manifest("c", &["v3"], 200)];
    odd[0].updated_at = Some("2026-11-29 10:00".into());
    odd[1].updated_at = None;
    let p = plan(&odd, &Policy::default(), &Protected::default());
    assert_eq!(reason(&p, "a"), "its updated_at \"2026-11-29 10:00\" cannot be read, so it counts as newest");
    assert_eq!(reason(&p, "b"), "its updated_at (none) cannot be read, so it counts as newest");
    assert_eq!(deleted(&p), pairs(&[("c", Action::Manifest)]), "the rail does not also keep c: a and b are newer");
    assert_eq!(p.unreadable_times, [("a".into(), Some("2026-11-29 10:00".into())), ("b".into(), None)]);
    let p = plan(&odd, &Policy { keep_last: 1, ..Policy::default() }, &Protected::default());
    assert_eq!(reason(&p, "c"), "one of the 1 most recent (--keep-last)", "unreadable ones take no --keep-last place");
    let mut protected = Protected::default();
    protected.digests.insert("b".into(), "deployed".into());
    assert_eq!(reason(&plan(&odd, &Policy::default(), &protected), "b"), "deployed");
}

#[test]
fn sizes_and_times() {
    let mut m = manifest("a", &["v1"], 1);
    assert_eq!(bytes(&m), 100);
    m.compressed_size_bytes = None.into();
    m.size_bytes = Some(7).into();
    assert_eq!(bytes(&m), 7);
    m.size_bytes = None.into();
    m.blobs = Box::new([
        Blob { digest: None, compressed_size_bytes: Some(3).into() },
        Blob { digest: None, compressed_size_bytes: Some(4).into() },
    ]);
    assert_eq!(bytes(&m), 7);
    assert_eq!(epoch(&manifest("t", &[], 0)), Some(NOW));
}

#[test]
fn bad_patterns_are_reported() {
    let error = compile_keep_tags(&["(".into()]).unwrap_err();
    assert!(error.contains("not a valid regular expression"), "{error}");
}
