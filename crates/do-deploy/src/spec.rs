//! Which components of an app spec run the image, and the spec with them pointed at the new
//! one. Pure functions over the raw spec, so every field we do not touch stays as it was,
//! encrypted secrets included.

use serde::Serialize;
use serde_json::{Map, Value};

/// Component kinds that run a container image.
pub const IMAGE_KINDS: [(&str, &str); 3] = [("services", "service"), ("workers", "worker"), ("jobs", "job")];
/// Every list of components in a spec.
pub const COMPONENT_LISTS: [&str; 5] = ["services", "workers", "jobs", "static_sites", "functions"];

/// How the new image is written into the spec.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Pin {
    /// `digest` set, `tag` removed, `deploy_on_push` turned off (the API refuses it with a digest).
    Digest,
    /// `tag` set, `digest` removed.
    Tag,
}

/// The image a component should run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Wanted {
    pub repository: String,
    pub tag: Option<String>,
    pub digest: String,
    pub pin: Pin,
}

impl Wanted {
    /// `REPO@DIGEST`, or `REPO:TAG` when pinned by tag, as the record names the image.
    pub fn shown(&self) -> String {
        match self.pin {
            Pin::Digest => format!("{}@{}", self.repository, self.digest),
            Pin::Tag => format!("{}:{}", self.repository, self.tag.as_deref().unwrap_or("latest")),
        }
    }
}

/// One changed component, as the record reports it.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct ComponentChange {
    pub name: String,
    pub kind: String,
    pub image_before: String,
    pub image_after: String,
    /// `deploy_on_push` was on and is now off (a digest pin cannot auto-deploy).
    pub deploy_on_push_disabled: bool,
}

/// A component's place in the spec.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ComponentRef {
    pub list: &'static str,
    pub kind: &'static str,
    pub index: usize,
    pub name: String,
}

/// App Platform's rule for app and component names: `^[a-z][a-z0-9-]{0,30}[a-z0-9]$`.
pub fn valid_app_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    (2..=32).contains(&bytes.len())
        && bytes[0].is_ascii_lowercase()
        && bytes.iter().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
        && bytes[bytes.len() - 1] != b'-'
}

/// The changes `pin` made to a file's spec, told against the live spec: each component's image
/// before is the live app's (`none` for a component the app does not have yet).
pub fn told_against_live(
    changes: Vec<ComponentChange>,
    components: &[ComponentRef],
    live: &Value,
) -> Vec<ComponentChange> {
    changes
        .into_iter()
        .zip(components)
        .map(|(mut change, reference)| {
            let live_component = live
                .get(reference.list)
                .and_then(Value::as_array)
                .and_then(|all| all.iter().find(|c| c.get("name").and_then(Value::as_str) == Some(&reference.name)));
            change.image_before = match live_component.and_then(|c| c.get("image")) {
                Some(image) => image_text(image),
                None if live_component.is_some() => "built from source".into(),
                None => "none".into(),
            };
            change
        })
        .collect()
}

/// What sending `new` would remove from the live spec: components (services, workers, jobs,
/// static sites, functions), databases and domains the live app has and `new` lacks, named
/// like `database db` or `domain shop.example.com`.
pub fn removals(live: &Value, new: &Value) -> Vec<String> {
    let named = |spec: &Value, list: &str, key: &str| -> Vec<String> {
        spec.get(list)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|item| item.get(key).and_then(Value::as_str).map(str::to_string))
            .collect()
    };
    let lists = [
        ("services", "service", "name"),
        ("workers", "worker", "name"),
        ("jobs", "job", "name"),
        ("static_sites", "static site", "name"),
        ("functions", "functions component", "name"),
        ("databases", "database", "name"),
        ("domains", "domain", "domain"),
    ];
    let mut gone = Vec::new();
    for (list, kind, key) in lists {
        let kept = named(new, list, key);
        gone.extend(
            named(live, list, key).into_iter().filter(|name| !kept.contains(name)).map(|name| format!("{kind} {name}")),
        );
    }
    // Variables, app-wide and of each component both specs have: a SECRET's value can never be
    // read back, so dropping one from the file loses it for good.
    gone.extend(removed_envs(live, new, "app-wide"));
    for (list, kind, _) in &lists[..5] {
        for live_component in live.get(*list).and_then(Value::as_array).into_iter().flatten() {
            let name = live_component.get("name").and_then(Value::as_str).unwrap_or_default();
            let same = |c: &&Value| c.get("name").and_then(Value::as_str) == Some(name);
            if let Some(new_component) = new.get(*list).and_then(Value::as_array).and_then(|l| l.iter().find(same)) {
                gone.extend(removed_envs(live_component, new_component, &format!("of {kind} {name}")));
            }
        }
    }
    gone
}

/// The variables of `live`'s `envs` that `new`'s lacks, named like `env LOG_LEVEL app-wide` or
/// `SECRET env DATABASE_URL of service web`.
fn removed_envs(live: &Value, new: &Value, whose: &str) -> Vec<String> {
    let keys = |spec: &Value| -> Vec<(String, bool)> {
        spec.get("envs")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|env| {
                let key = env.get("key").and_then(Value::as_str)?;
                Some((key.to_string(), env.get("type").and_then(Value::as_str) == Some("SECRET")))
            })
            .collect()
    };
    let kept: Vec<String> = keys(new).into_iter().map(|(key, _)| key).collect();
    keys(live)
        .into_iter()
        .filter(|(key, _)| !kept.contains(key))
        .map(|(key, secret)| format!("{}env {key} {whose}", if secret { "SECRET " } else { "" }))
        .collect()
}

/// Every image component in the spec, whatever its image.
pub fn image_components(spec: &Value) -> Vec<(ComponentRef, &Value)> {
    let mut found = Vec::new();
    for (list, kind) in IMAGE_KINDS {
        for (index, component) in spec.get(list).and_then(Value::as_array).into_iter().flatten().enumerate() {
            let name = component.get("name").and_then(Value::as_str).unwrap_or("").to_string();
            found.push((ComponentRef { list, kind, index, name }, component));
        }
    }
    found
}

/// Components whose image is the DOCR repository, restricted to `only` when given.
/// None matching is an error that names the components the app has.
pub fn matching_components(spec: &Value, repository: &str, only: &[String]) -> Result<Vec<ComponentRef>, String> {
    let all = image_components(spec);
    let runs_repository = |component: &Value| {
        let image = component.get("image");
        let text = |key: &str| image.and_then(|i| i.get(key)).and_then(Value::as_str);
        text("registry_type") == Some("DOCR") && text("repository") == Some(repository)
    };
    let matched: Vec<ComponentRef> = all
        .iter()
        .filter(|(_, component)| runs_repository(component))
        .filter(|(reference, _)| only.is_empty() || only.contains(&reference.name))
        .map(|(reference, _)| reference.clone())
        .collect();
    if let Some(missing) = only.iter().find(|name| !all.iter().any(|(reference, _)| &reference.name == *name)) {
        return Err(format!("the app has no component {missing:?}; it has: {}", describe(&all)));
    }
    if matched.is_empty() {
        let which = if only.is_empty() { String::new() } else { format!(" among {}", only.join(", ")) };
        return Err(format!(
            "no component{which} runs the DOCR repository {repository:?}; the app has: {}",
            describe(&all)
        ));
    }
    Ok(matched)
}

fn describe(all: &[(ComponentRef, &Value)]) -> String {
    if all.is_empty() {
        return "no service, worker or job".to_string();
    }
    all.iter()
        .map(|(reference, component)| {
            format!(
                "{} {} ({})",
                reference.kind,
                reference.name,
                component.get("image").map(image_text).unwrap_or_else(|| "built from source".into())
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// `repo:tag`, `repo@sha256:…`, with the registry type when it is not DOCR.
pub fn image_text(image: &Value) -> String {
    let text = |key: &str| image.get(key).and_then(Value::as_str).filter(|s| !s.is_empty());
    let repository = text("repository").unwrap_or("?");
    let prefix = match (text("registry_type"), text("registry")) {
        (Some("DOCR") | None, _) => String::new(),
        (Some(kind), Some(registry)) => format!("{}:{registry}/", kind.to_ascii_lowercase()),
        (Some(kind), None) => format!("{}:", kind.to_ascii_lowercase()),
    };
    match (text("digest"), text("tag")) {
        (Some(digest), _) => format!("{prefix}{repository}@{digest}"),
        (None, Some(tag)) => format!("{prefix}{repository}:{tag}"),
        (None, None) => format!("{prefix}{repository}:latest"),
    }
}

/// The image object `wanted` asks for, built on the component's current one so fields we do
/// not manage (registry, credentials) stay.
fn wanted_image(current: &Value, wanted: &Wanted) -> Value {
    let mut image: Map<String, Value> = current.as_object().cloned().unwrap_or_default();
    image.insert("registry_type".into(), Value::from("DOCR"));
    image.insert("repository".into(), Value::from(wanted.repository.clone()));
    match wanted.pin {
        Pin::Digest => {
            image.remove("tag");
            image.insert("digest".into(), Value::from(wanted.digest.clone()));
            if let Some(Value::Object(push)) = image.get_mut("deploy_on_push") {
                push.insert("enabled".into(), Value::Bool(false));
            }
        }
        Pin::Tag => {
            image.remove("digest");
            image.insert("tag".into(), Value::from(wanted.tag.clone().unwrap_or_else(|| "latest".into())));
        }
    }
    Value::Object(image)
}

/// Whether the component's image already is what `wanted` asks for.
pub fn runs(component: &Value, wanted: &Wanted) -> bool {
    let image = component.get("image");
    let text = |key: &str| image.and_then(|i| i.get(key)).and_then(Value::as_str).filter(|s| !s.is_empty());
    match wanted.pin {
        Pin::Digest => text("digest") == Some(wanted.digest.as_str()) && text("tag").is_none(),
        Pin::Tag => text("tag") == wanted.tag.as_deref() && text("digest").is_none(),
    }
}

/// Whether every component of `spec` that runs the repository (or the named ones) runs
/// `wanted`. Only the image fields are compared, so a spec the API normalised (dropping false,
/// empty and null values) or extended with fields it adds still counts as the same.
pub fn runs_everywhere(spec: &Value, repository: &str, only: &[String], wanted: &Wanted) -> bool {
    matching_components(spec, repository, only)
        .is_ok_and(|components| components.iter().all(|c| runs(&spec[c.list][c.index], wanted)))
}

/// A spec as proto3 JSON writes it (and App Platform answers it): false, empty strings, empty
/// lists and objects, and nulls left out at every depth. Specs are compared in this form.
pub fn normalized(value: &Value) -> Value {
    fn inner(value: &Value) -> Option<Value> {
        match value {
            Value::Null | Value::Bool(false) => None,
            Value::String(s) if s.is_empty() => None,
            Value::Array(items) => {
                let kept: Vec<Value> = items.iter().filter_map(inner).collect();
                (!kept.is_empty()).then_some(Value::Array(kept))
            }
            Value::Object(map) => {
                let kept: Map<String, Value> =
                    map.iter().filter_map(|(k, v)| inner(v).map(|v| (k.clone(), v))).collect();
                (!kept.is_empty()).then_some(Value::Object(kept))
            }
            other => Some(other.clone()),
        }
    }
    inner(value).unwrap_or_else(|| Value::Object(Map::new()))
}

/// The spec with the matched components pointed at `wanted`, and what changed.
pub fn pin(spec: &Value, components: &[ComponentRef], wanted: &Wanted) -> (Value, Vec<ComponentChange>) {
    let mut updated = spec.clone();
    let mut changes = Vec::new();
    for reference in components {
        let component = &mut updated[reference.list][reference.index];
        let before = component.get("image").cloned().unwrap_or(Value::Null);
        let after = wanted_image(&before, wanted);
        let push_was_on = before.pointer("/deploy_on_push/enabled").and_then(Value::as_bool) == Some(true);
        let push_is_on = after.pointer("/deploy_on_push/enabled").and_then(Value::as_bool) == Some(true);
        changes.push(ComponentChange {
            name: reference.name.clone(),
            kind: reference.kind.to_string(),
            image_before: image_text(&before),
            image_after: image_text(&after),
            deploy_on_push_disabled: push_was_on && !push_is_on,
        });
        component["image"] = after;
    }
    (updated, changes)
}

/// The semantic version a tag names (`v1.2.3`, `release-1.2.3`), if it names one.
pub fn version_in(tag: &str) -> Option<semver::Version> {
    semver::Version::parse(tag.trim_start_matches(|c: char| !c.is_ascii_digit())).ok()
}

/// The first change that would put a component on an older version than it runs: the change
/// and the running tag. `tags_of` gives the tags of a digest the component is pinned to.
pub fn downgrade<'c>(
    changes: &'c [ComponentChange],
    wanted_tag: &str,
    tags_of: impl Fn(&str) -> Vec<String>,
) -> Option<(&'c ComponentChange, String)> {
    let wanted = version_in(wanted_tag)?;
    changes.iter().find_map(|change| {
        let running: Vec<String> = match change.image_before.split_once('@') {
            Some((_, digest)) => tags_of(digest),
            None => change.image_before.rsplit_once(':').map(|(_, tag)| vec![tag.to_string()]).unwrap_or_default(),
        };
        let newest = running.iter().filter_map(|t| version_in(t).map(|v| (v, t))).max()?;
        (newest.0 > wanted).then(|| (change, newest.1.clone()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn spec() -> Value {
        json!({
            "name": "shop",
            "services": [
                {"name": "web", "image": {"registry_type": "DOCR", "repository": "web", "tag": "v1", "deploy_on_push": {"enabled": true}},
                 "envs": [{"key": "TOKEN", "type": "SECRET", "value": "EV[1:abc:def]"}]},
                {"name": "api", "image": {"registry_type": "DOCKER_HUB", "registry": "library", "repository": "web", "tag": "1"}}
            ],
            "workers": [{"name": "queue", "image": {"registry_type": "DOCR", "repository": "web", "digest": "sha256:old"}}],
            "jobs": [{"name": "migrate", "image": {"registry_type": "DOCR", "repository": "other", "tag": "v1"}}],
            "static_sites": [{"name": "docs"}]
        })
    }

    fn wanted(pin: Pin) -> Wanted {
        Wanted { repository: "web".into(), tag: Some("v2".into()), digest: "sha256:new".into(), pin }
    }

    #[test]
    fn specs_compare_in_normalised_form_and_by_image_fields() {
        let full = json!({"name": "shop", "maintenance": {}, "features": [], "services": [{"name": "web", "image": {"registry_type": "DOCR", "repository": "web", "digest": "sha256:new", "tag": "", "deploy_on_push": {"enabled": false}}, "instance_count": 1}]});
        let answered = json!({"name": "shop", "services": [{"name": "web", "image": {"registry_type": "DOCR", "repository": "web", "digest": "sha256:new"}, "instance_count": 1}]});
        assert_eq!(normalized(&full), normalized(&answered));
        let wanted = Wanted { repository: "web".into(), tag: None, digest: "sha256:new".into(), pin: Pin::Digest };
        assert!(runs_everywhere(&full, "web", &[], &wanted) && runs_everywhere(&answered, "web", &[], &wanted));
        let old = json!({"name": "shop", "services": [{"name": "web", "image": {"registry_type": "DOCR", "repository": "web", "digest": "sha256:old"}}]});
        assert!(!runs_everywhere(&old, "web", &[], &wanted));
        assert!(!runs_everywhere(&json!({}), "web", &[], &wanted), "no component at all runs nothing");
    }

    #[test]
    fn a_component_runs_the_wanted_image_only_when_pinned_exactly_so() {
        let with = |image: Value| json!({"name": "web", "image": image});
        let by_digest = wanted(Pin::Digest);
        assert!(runs(&with(json!({"repository": "web", "digest": "sha256:new"})), &by_digest));
        assert!(
            !runs(&with(json!({"repository": "web", "digest": "sha256:new", "tag": "v2"})), &by_digest),
            "a tag beside it"
        );
        assert!(!runs(&with(json!({"repository": "web", "digest": "sha256:old"})), &by_digest));
        let by_tag = wanted(Pin::Tag);
        assert!(runs(&with(json!({"repository": "web", "tag": "v2"})), &by_tag));
        assert!(
            !runs(&with(json!({"repository": "web", "tag": "v2", "digest": "sha256:new"})), &by_tag),
            "a digest beside it"
        );
        assert!(!runs(&with(json!({"repository": "web", "tag": "v1"})), &by_tag));
    }

    #[test]
    fn app_names_follow_app_platforms_rule() {
        for good in ["ab", "shop", "shop-pr-42", "a1", &format!("a{}", "b".repeat(31))] {
            assert!(valid_app_name(good), "{good:?}");
        }
        for bad in ["", "a", "Shop", "1shop", "shop-", "-shop", "sh_op", "sh op", &format!("a{}", "b".repeat(32))] {
            assert!(!valid_app_name(bad), "{bad:?}");
        }
    }

    #[test]
    fn changes_to_a_files_spec_are_told_against_the_live_one() {
        let file = json!({"services": [{"name": "web", "image": {"registry_type": "DOCR", "repository": "web", "tag": "latest"}},
                                       {"name": "api", "image": {"registry_type": "DOCR", "repository": "web", "tag": "latest"}},
                                       {"name": "new", "image": {"registry_type": "DOCR", "repository": "web", "tag": "latest"}}]});
        let live = json!({"services": [{"name": "api", "github": {"repo": "o/r"}}, {"name": "web", "image": {"registry_type": "DOCR", "repository": "web", "tag": "v1"}}]});
        let components = matching_components(&file, "web", &[]).unwrap();
        let (_, changes) = pin(&file, &components, &wanted(Pin::Digest));
        let told: Vec<String> = told_against_live(changes, &components, &live)
            .into_iter()
            .map(|c| format!("{} {}", c.name, c.image_before))
            .collect();
        assert_eq!(told, ["web web:v1", "api built from source", "new none"]);
    }

    #[test]
    fn removals_name_what_the_new_spec_drops() {
        let live = json!({"services": [{"name": "web"}, {"name": "api"}], "databases": [{"name": "db"}],
            "domains": [{"domain": "shop.example.com"}, {"domain": "www.example.com"}], "static_sites": [{"name": "docs"}],
            "workers": [{"name": "queue"}], "jobs": [{"name": "migrate"}], "functions": [{"name": "fn"}]});
        let new = json!({"services": [{"name": "web"}], "domains": [{"domain": "www.example.com"}], "workers": [{"name": "queue"}]});
        assert_eq!(
            removals(&live, &new),
            [
                "service api",
                "job migrate",
                "static site docs",
                "functions component fn",
                "database db",
                "domain shop.example.com"
            ]
        );
        assert_eq!(removals(&live, &live), Vec::<String>::new());
        assert_eq!(removals(&json!({}), &new), Vec::<String>::new(), "additions are not removals");
    }

    #[test]
    fn removals_name_the_variables_the_new_spec_drops_secrets_first_in_mind() {
        let env = |key: &str, secret: bool| {
            if secret {
                json!({"key": key, "type": "SECRET", "value": "EV[1:x]"})
            } else {
                json!({"key": key, "value": "v"})
            }
        };
        let live = json!({"envs": [env("REGION", false)],
            "services": [{"name": "web", "envs": [env("DATABASE_URL", true), env("LOG_LEVEL", false)]}, {"name": "old", "envs": [env("X", true)]}],
            "workers": [{"name": "queue", "envs": [env("TOKEN", true)]}],
            "jobs": [{"name": "migrate", "envs": [env("Y", false)]}],
            "static_sites": [{"name": "docs", "envs": [env("Z", false)]}],
            "functions": [{"name": "fn", "envs": [env("F", false)]}]});
        let new = json!({
            "services": [{"name": "web", "envs": [env("LOG_LEVEL", false)]}],
            "workers": [{"name": "queue"}],
            "jobs": [{"name": "migrate", "envs": [env("Y", true)]}],
            "static_sites": [{"name": "docs", "envs": []}],
            "functions": [{"name": "fn"}]});
        assert_eq!(
            removals(&live, &new),
            [
                "service old",
                "env REGION app-wide",
                "SECRET env DATABASE_URL of service web",
                "SECRET env TOKEN of worker queue",
                "env Z of static site docs",
                "env F of functions component fn",
            ],
            "a removed component is named once, not with each of its variables"
        );
    }

    #[test]
    fn only_docr_components_of_the_repository_match() {
        let names: Vec<String> =
            matching_components(&spec(), "web", &[]).unwrap().into_iter().map(|c| c.name).collect();
        assert_eq!(names, ["web", "queue"]);
        let only: Vec<String> =
            matching_components(&spec(), "web", &["queue".into()]).unwrap().into_iter().map(|c| c.name).collect();
        assert_eq!(only, ["queue"]);
    }

    #[test]
    fn no_match_names_the_components_the_app_has() {
        let error = matching_components(&spec(), "nothing", &[]).unwrap_err();
        assert!(error.contains("no component runs the DOCR repository \"nothing\""), "{error}");
        assert!(error.contains("service web (web:v1)") && error.contains("job migrate (other:v1)"), "{error}");
        assert!(error.contains("service api (docker_hub:library/web:1)"), "{error}");
        let error = matching_components(&spec(), "web", &["nope".into()]).unwrap_err();
        assert!(error.contains("the app has no component \"nope\""), "{error}");
        let error = matching_components(&spec(), "web", &["migrate".into()]).unwrap_err();
        assert!(error.contains("no component among migrate runs"), "{error}");
    }

    #[test]
    fn digest_pin_sets_digest_clears_tag_turns_off_deploy_on_push_and_keeps_the_rest() {
        let original = spec();
        let components = matching_components(&original, "web", &[]).unwrap();
        let (updated, changes) = pin(&original, &components, &wanted(Pin::Digest));
        assert_eq!(
            updated["services"][0]["image"],
            json!({"registry_type": "DOCR", "repository": "web", "digest": "sha256:new", "deploy_on_push": {"enabled": false}})
        );
        assert_eq!(updated["workers"][0]["image"]["digest"], "sha256:new");
        assert_eq!(updated["services"][0]["envs"], original["services"][0]["envs"], "secrets untouched");
        let mut rest = updated.clone();
        let mut before = original.clone();
        for value in [&mut rest, &mut before] {
            value["services"][0]["image"] = Value::Null;
            value["workers"][0]["image"] = Value::Null;
        }
        assert_eq!(rest, before, "nothing else changed");
        assert_eq!(changes[0].image_before, "web:v1");
        assert_eq!(changes[0].image_after, "web@sha256:new");
        assert!(changes[0].deploy_on_push_disabled);
        assert!(!changes[1].deploy_on_push_disabled);
    }

    #[test]
    fn tag_pin_sets_the_tag_and_clears_the_digest() {
        let original = spec();
        let components = matching_components(&original, "web", &["queue".into()]).unwrap();
        let (updated, changes) = pin(&original, &components, &wanted(Pin::Tag));
        assert_eq!(updated["workers"][0]["image"], json!({"registry_type": "DOCR", "repository": "web", "tag": "v2"}));
        assert_eq!(changes[0].image_after, "web:v2");
        assert!(runs(&updated["workers"][0], &wanted(Pin::Tag)));
        assert!(!runs(&updated["workers"][0], &wanted(Pin::Digest)));
    }

    #[test]
    fn a_downgrade_is_told_by_version_whether_the_running_image_is_pinned_by_tag_or_digest() {
        let change = |before: &str| ComponentChange {
            name: "web".into(),
            kind: "service".into(),
            image_before: before.into(),
            image_after: "web:v1.1.0".into(),
            deploy_on_push_disabled: false,
        };
        let none = |_: &str| Vec::new();
        let by_tag = [change("web:v1.2.0")];
        assert_eq!(downgrade(&by_tag, "v1.1.0", none).map(|(_, t)| t), Some("v1.2.0".to_string()));
        assert!(downgrade(&by_tag, "v1.2.0", none).is_none(), "the same version");
        assert!(downgrade(&by_tag, "v1.10.0", none).is_none(), "by version, not text");
        assert!(downgrade(&by_tag, "latest", none).is_none(), "no version to compare");
        let by_digest = [change("web@sha256:abc")];
        let tags = |digest: &str| if digest == "sha256:abc" { vec!["latest".into(), "v2.0.0".into()] } else { vec![] };
        assert_eq!(downgrade(&by_digest, "v1.9.9", tags).map(|(_, t)| t), Some("v2.0.0".to_string()));
        assert!(downgrade(&by_digest, "v2.0.1", tags).is_none());
    }
}
