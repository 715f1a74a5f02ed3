//! What sending a spec would change: the live spec and the one do-deploy would send, both in
//! the form App Platform answers with (proto3 JSON: no false, empty or null values), flattened
//! to one line per field. Fields App Platform fills in when a spec leaves them out are not
//! counted as changes, and secret values are never shown.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;
use serde_json::Value;

use crate::spec::{normalized, COMPONENT_LISTS};

/// Top-level fields App Platform fills in when the spec has none (the live API also adds
/// default `alerts` and `features`, which its published spec does not declare).
pub const FILLED_IN: [&str; 4] = ["region", "alerts", "ingress", "features"];
/// Component fields App Platform fills in when the component has none.
pub const FILLED_IN_COMPONENT: [&str; 2] = ["instance_count", "instance_size_slug"];
const SECRET_SHOWN: &str = "(secret)";

/// One changed field. `before` is null for a field added, `after` for one removed.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct SpecChange {
    pub path: String,
    pub before: Option<String>,
    pub after: Option<String>,
}

impl std::fmt::Display for SpecChange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (&self.before, &self.after) {
            (Some(before), Some(after)) => write!(f, "~ {}: {before} -> {after}", self.path),
            (None, Some(after)) => write!(f, "+ {}: {after}", self.path),
            (Some(before), None) => write!(f, "- {}: {before}", self.path),
            (None, None) => write!(f, "  {}", self.path),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Leaf {
    Plain(String),
    /// A SECRET variable's value: encrypted (`EV[…]`) as the API answers it, or as given.
    Secret(String),
}

impl Leaf {
    fn shown(&self) -> String {
        match self {
            Leaf::Plain(text) => text.clone(),
            Leaf::Secret(value) if value.starts_with("EV[") => SECRET_SHOWN.into(),
            Leaf::Secret(_) => "(secret, new value)".into(),
        }
    }
}

/// Every field that differs between the live spec and the one to be sent, in path order. A
/// secret given in the clear counts as changed: its encrypted live value cannot be compared.
pub fn changes(live: &Value, sent: &Value) -> Vec<SpecChange> {
    let (live, sent) = comparable(live, sent);
    let paths: BTreeSet<&String> = live.keys().chain(sent.keys()).collect();
    paths
        .into_iter()
        .filter_map(|path| {
            let (before, after) = (live.get(path), sent.get(path));
            (before != after).then(|| SpecChange {
                path: path.clone(),
                before: before.map(Leaf::shown),
                after: after.map(Leaf::shown),
            })
        })
        .collect()
}

/// Whether `deployed` (a deployment's or the app's spec, as the API answers it) is the spec
/// `sent`: the same in every field but secret values, which the API answers encrypted.
pub fn same_intent(deployed: &Value, sent: &Value) -> bool {
    let (deployed, sent) = comparable(deployed, sent);
    deployed.len() == sent.len()
        && deployed.iter().all(|(path, leaf)| match (leaf, sent.get(path)) {
            (Leaf::Secret(_), Some(Leaf::Secret(_))) => true,
            (leaf, other) => Some(leaf) == other,
        })
}

fn comparable(live: &Value, sent: &Value) -> (BTreeMap<String, Leaf>, BTreeMap<String, Leaf>) {
    let sent = normalized(sent);
    let mut live = normalized(live);
    if let (Some(live), Some(sent)) = (live.as_object_mut(), sent.as_object()) {
        live.retain(|key, _| !FILLED_IN.contains(&key.as_str()) || sent.contains_key(key));
        for list in COMPONENT_LISTS {
            let Some(components) = live.get_mut(list).and_then(Value::as_array_mut) else { continue };
            for component in components.iter_mut() {
                let name = component.get("name").cloned();
                let sent_component = sent
                    .get(list)
                    .and_then(Value::as_array)
                    .and_then(|all| all.iter().find(|c| c.get("name") == name.as_ref()));
                if let Some(component) = component.as_object_mut() {
                    component.retain(|key, _| {
                        !FILLED_IN_COMPONENT.contains(&key.as_str())
                            || sent_component.is_some_and(|c| c.get(key).is_some())
                    });
                }
            }
        }
    }
    let (mut flat_live, mut flat_sent) = (BTreeMap::new(), BTreeMap::new());
    flatten(&live, String::new(), false, &mut flat_live);
    flatten(&sent, String::new(), false, &mut flat_sent);
    (flat_live, flat_sent)
}

/// `services[web].envs[LOG_LEVEL].value` → leaf. List items are named by their `name`, `key`,
/// `domain` or `rule` when they have one (so reordering is no change), else by position.
fn flatten(value: &Value, path: String, secret: bool, out: &mut BTreeMap<String, Leaf>) {
    match value {
        Value::Object(map) => {
            for (key, inner) in map {
                let inner_path = if path.is_empty() { key.clone() } else { format!("{path}.{key}") };
                flatten(inner, inner_path, crate::specfile::is_secret(map, key), out);
            }
        }
        Value::Array(items) => {
            let mut seen = BTreeSet::new();
            for (index, item) in items.iter().enumerate() {
                let label = ["name", "key", "domain", "rule"]
                    .iter()
                    .find_map(|field| item.get(field).and_then(Value::as_str))
                    .map(str::to_string)
                    .filter(|label| seen.insert(label.clone()))
                    .unwrap_or_else(|| index.to_string());
                flatten(item, format!("{path}[{label}]"), false, out);
            }
        }
        Value::String(text) if secret => {
            out.insert(path, Leaf::Secret(text.clone()));
        }
        other => {
            out.insert(path, Leaf::Plain(other.to_string()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn fields_the_api_fills_in_and_proto3_omissions_are_not_changes() {
        let sent = json!({"name": "shop", "services": [{"name": "web", "http_port": 8080, "envs": [], "image": {"registry_type": "DOCR", "repository": "web", "digest": "sha256:a", "deploy_on_push": {"enabled": false}}}]});
        let live = json!({"name": "shop", "region": "fra", "alerts": [{"rule": "DEPLOYMENT_FAILED"}],
            "ingress": {"rules": [{"component": {"name": "web"}}]},
            "services": [{"name": "web", "http_port": 8080, "instance_count": 1, "instance_size_slug": "apps-s-1vcpu-0.5gb",
                          "image": {"registry_type": "DOCR", "repository": "web", "digest": "sha256:a"}}]});
        assert_eq!(changes(&live, &sent), []);
        assert!(same_intent(&live, &sent));
        let mut scaled = sent.clone();
        scaled["services"][0]["instance_count"] = json!(3);
        scaled["region"] = json!("ams");
        let found: Vec<String> = changes(&live, &scaled).iter().map(ToString::to_string).collect();
        assert_eq!(found, ["~ region: \"fra\" -> \"ams\"", "~ services[web].instance_count: 1 -> 3"]);
        assert!(!same_intent(&live, &scaled));
    }

    #[test]
    fn lists_are_compared_by_name_and_additions_and_removals_are_told() {
        let live = json!({"name": "shop", "envs": [{"key": "A", "value": "1"}, {"key": "B", "value": "2"}],
            "workers": [{"name": "queue", "run_command": "q"}]});
        let sent = json!({"name": "shop", "envs": [{"key": "B", "value": "2"}, {"key": "C", "value": "3"}]});
        let found: Vec<String> = changes(&live, &sent).iter().map(ToString::to_string).collect();
        assert_eq!(
            found,
            [
                "- envs[A].key: \"A\"",
                "- envs[A].value: \"1\"",
                "+ envs[C].key: \"C\"",
                "+ envs[C].value: \"3\"",
                "- workers[queue].name: \"queue\"",
                "- workers[queue].run_command: \"q\"",
            ]
        );
    }

    #[test]
    fn secrets_are_never_shown_and_only_a_new_value_is_a_change() {
        let live = json!({"name": "shop", "envs": [{"key": "P", "type": "SECRET", "value": "EV[1:abc]"}]});
        let kept = json!({"name": "shop", "envs": [{"key": "P", "type": "SECRET", "value": "EV[1:abc]"}]});
        assert_eq!(changes(&live, &kept), []);
        let given = json!({"name": "shop", "envs": [{"key": "P", "type": "SECRET", "value": "hunter22"}]});
        let found = changes(&live, &given);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].to_string(), "~ envs[P].value: (secret) -> (secret, new value)");
        assert!(!format!("{found:?}").contains("hunter22"));
        assert!(same_intent(&live, &given), "a deployment's encrypted secret is the one sent");
    }
}
