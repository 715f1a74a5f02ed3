use super::*;

const DAY: i64 = 86_400;

fn app(name: &str, mark: Option<&str>, days_ago: Option<i64>) -> Facts {
    Facts {
        id: format!("id-{name}"),
        name: name.into(),
        mark: mark.map(str::to_string),
        deployed_at: days_ago.map(|d| 100 * DAY - d * DAY),
    }
}

fn rules(keep: Option<&[&str]>, older_than_days: Option<u64>) -> Rules {
    Rules {
        keep: keep.map(|k| k.iter().map(|s| s.to_string()).collect()),
        older_than: older_than_days.map(|d| Duration::from_secs(d * DAY as u64)),
        now: 100 * DAY,
    }
}

#[test]
fn only_this_specs_marked_previews_can_go_and_the_kept_ones_stay() {
    let keep = rules(Some(&["pr-1", "pr-7"]), None);
    let fate = |facts: &Facts| decide("shop", facts, &keep);
    assert_eq!(fate(&app("shop-pr-1", Some("pr-1"), Some(3))).0, Fate::Keep);
    assert_eq!(fate(&app("shop-pr-2", Some("pr-2"), Some(3))), (Fate::Delete, "not kept".into()));
    assert_eq!(fate(&app("shop", None, Some(3))), (Fate::NotOurs, "the spec's own app".into()));
    assert_eq!(fate(&app("shop-pr-3", None, Some(3))).0, Fate::NotOurs, "named like one, unmarked");
    assert_eq!(fate(&app("blog-pr-2", Some("pr-2"), Some(3))).0, Fate::NotOurs, "another spec's preview");
    assert_eq!(fate(&app("shop-pr-9", Some("pr-2"), Some(3))).0, Fate::NotOurs, "a mark that does not match its name");
    assert_eq!(fate(&app("shop-pr-7", Some("pr-7"), None)).0, Fate::Keep);
}

#[test]
fn older_than_keeps_what_was_deployed_within_it_and_what_has_no_time() {
    let old = rules(None, Some(7));
    let fate = |facts: &Facts| decide("shop", facts, &old);
    assert_eq!(fate(&app("shop-pr-1", Some("pr-1"), Some(8))), (Fate::Delete, "deployed before --older-than".into()));
    assert_eq!(fate(&app("shop-pr-1", Some("pr-1"), Some(7))).0, Fate::Delete, "exactly that old goes");
    assert_eq!(fate(&app("shop-pr-1", Some("pr-1"), Some(6))).0, Fate::Keep);
    assert_eq!(fate(&app("shop-pr-1", Some("pr-1"), None)), (Fate::Keep, "when it was deployed is unknown".into()));
    // Both: kept by either.
    let both = rules(Some(&["pr-1"]), Some(7));
    assert_eq!(decide("shop", &app("shop-pr-1", Some("pr-1"), Some(30)), &both).0, Fate::Keep);
    assert_eq!(decide("shop", &app("shop-pr-2", Some("pr-2"), Some(3)), &both).0, Fate::Keep);
    assert_eq!(
        decide("shop", &app("shop-pr-2", Some("pr-2"), Some(30)), &both),
        (Fate::Delete, "not kept, and deployed before --older-than".into())
    );
    // An empty keep list keeps none.
    assert_eq!(decide("shop", &app("shop-pr-2", Some("pr-2"), Some(0)), &rules(Some(&[]), None)).0, Fate::Delete);
}

#[test]
fn room_for_a_new_preview_is_made_from_the_oldest() {
    let previews = [
        app("shop-pr-3", Some("pr-3"), Some(1)),
        app("shop-pr-1", Some("pr-1"), Some(9)),
        app("shop-pr-x", Some("pr-x"), None),
        app("shop-pr-2", Some("pr-2"), Some(5)),
    ];
    let names = |max: usize| evictions(&previews, max).into_iter().map(|f| f.name.as_str()).collect::<Vec<_>>();
    assert_eq!(names(5), Vec::<&str>::new(), "four and the new one fit in five");
    assert_eq!(names(4), ["shop-pr-1"]);
    assert_eq!(names(3), ["shop-pr-1", "shop-pr-2"]);
    assert_eq!(names(1), ["shop-pr-1", "shop-pr-2", "shop-pr-3", "shop-pr-x"], "the unknown time goes last");
    assert_eq!(names(0), ["shop-pr-1", "shop-pr-2", "shop-pr-3", "shop-pr-x"]);
    assert!(evictions(&[], 1).is_empty());
}

#[test]
fn facts_come_from_the_last_deployment_or_else_the_creation() {
    let app: App = serde_json::from_value(serde_json::json!({
        "id": "a1",
        "created_at": "2026-01-01T00:00:00Z",
        "last_deployment_created_at": "2026-01-02T00:00:00Z",
        "spec": crate::specfile::for_preview(&serde_json::json!({"name": "shop", "services": [{"name": "web"}]}), "pr-4", &[]),
    }))
    .unwrap();
    let facts = facts(&app);
    assert_eq!((facts.name.as_str(), facts.mark.as_deref()), ("shop-pr-4", Some("pr-4")));
    assert_eq!(facts.deployed_at, Some(1_767_312_000));
    let made: App = serde_json::from_value(
        serde_json::json!({"id": "a2", "created_at": "2026-01-01T00:00:00Z", "spec": {"name": "x"}}),
    )
    .unwrap();
    assert_eq!(super::facts(&made).deployed_at, Some(1_767_225_600));
}
