//! The fields an app spec may have, from DigitalOcean's published OpenAPI spec (the tree in
//! `spec_keys.json`, which a test makes again from the reference spec so the two cannot drift),
//! and the check that refuses a key nobody would read: `servics:` for `services:` would otherwise
//! be dropped by App Platform without a word, and the file deployed as something else.
//!
//! Pure: a spec in, the unknown keys (with where they are and the nearest known key) out.

use serde_json::{Map, Value};

use crate::spec::COMPONENT_LISTS;

/// The published spec's fields: an object maps each key to what may stand below it (`null`: a
/// value not checked further; `"*"`: free-form, as labels are; `{"[]": …}`: a list of those).
const KNOWN: &str = include_str!("spec_keys.json");

/// Fields the live API takes that the published spec lacks (DigitalOcean's own clients send
/// them): app-wide `envs`, `alerts` and `features`, and each component's `alerts`.
const LIVE_ONLY_TOP: [&str; 3] = ["envs", "alerts", "features"];
const LIVE_ONLY_COMPONENT: [&str; 1] = ["alerts"];

/// A key the spec has that no field of its place is named.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unknown {
    /// Where it is, like `services[web]`; empty at the top.
    pub at: String,
    pub key: String,
    /// The known key of that place nearest to it, when one is near.
    pub nearest: Option<String>,
}

/// The tree of known fields, with the live-only ones added.
pub fn known() -> Value {
    let mut tree: Value = serde_json::from_str(KNOWN).expect("spec_keys.json is JSON");
    let top = tree.as_object_mut().expect("an object at the top");
    for key in LIVE_ONLY_TOP {
        top.entry(key).or_insert(Value::String("*".into()));
    }
    for list in COMPONENT_LISTS {
        if let Some(component) = top.get_mut(list).and_then(|l| l.get_mut("[]")).and_then(Value::as_object_mut) {
            for key in LIVE_ONLY_COMPONENT {
                component.entry(key).or_insert(Value::String("*".into()));
            }
        }
    }
    tree
}

/// Every key of `spec` that its place does not know, in the order met.
pub fn unknown_keys(spec: &Value) -> Vec<Unknown> {
    let mut found = Vec::new();
    walk(spec, &known(), "", &mut found);
    found
}

fn walk(value: &Value, tree: &Value, at: &str, found: &mut Vec<Unknown>) {
    match (value, tree) {
        (Value::Object(object), Value::Object(fields)) => {
            for (key, inner) in object {
                match fields.get(key) {
                    Some(below) => walk(inner, below, &join(at, key), found),
                    None => found.push(Unknown { at: at.to_string(), key: key.clone(), nearest: nearest(key, fields) }),
                }
            }
        }
        (Value::Array(items), Value::Object(fields)) => {
            if let Some(item_tree) = fields.get("[]") {
                for (index, item) in items.iter().enumerate() {
                    let label = ["name", "key", "domain"]
                        .iter()
                        .find_map(|field| item.get(field).and_then(Value::as_str))
                        .map(str::to_string)
                        .unwrap_or_else(|| index.to_string());
                    walk(item, item_tree, &format!("{at}[{label}]"), found);
                }
            }
        }
        // A value the tree does not describe further, or a free-form one.
        _ => {}
    }
}

fn join(at: &str, key: &str) -> String {
    if at.is_empty() {
        key.to_string()
    } else {
        format!("{at}.{key}")
    }
}

/// The known key nearest to `key` (`servics` finds `services`, `foo` finds nothing).
fn nearest(key: &str, fields: &Map<String, Value>) -> Option<String> {
    do_core::near::nearest(key, fields.keys().map(String::as_str).filter(|known| *known != "[]")).map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn typos_are_named_where_they_are_with_the_nearest_known_key() {
        let spec = json!({
            "name": "shop",
            "servics": [{"name": "web"}],
            "services": [{"name": "web", "http_prot": 8080, "image": {"registry_type": "DOCR", "repositroy": "web"},
                          "envs": [{"key": "A", "valeu": "x"}]}],
            "alerts": [{"rule": "DEPLOYMENT_FAILED"}],
            "features": ["buildpack-stack=ubuntu-22"],
            "envs": [{"key": "X", "value": "y"}],
            "whatever": 1,
        });
        let found = unknown_keys(&spec);
        let shown: Vec<(String, String, Option<String>)> =
            found.into_iter().map(|u| (u.at, u.key, u.nearest)).collect();
        assert_eq!(
            shown,
            [
                ("services[web].envs[A]".to_string(), "valeu".to_string(), Some("value".to_string())),
                ("services[web]".into(), "http_prot".into(), Some("http_port".into())),
                ("services[web].image".into(), "repositroy".into(), Some("repository".into())),
                ("".into(), "servics".into(), Some("services".into())),
                ("".into(), "whatever".into(), None),
            ]
        );
    }

    #[test]
    fn a_spec_of_known_fields_and_the_live_apis_own_passes() {
        let spec = json!({
            "name": "shop", "region": "fra",
            "services": [{"name": "web", "http_port": 8080, "instance_count": 2, "alerts": [{"rule": "CPU_UTILIZATION"}],
                          "image": {"registry_type": "DOCR", "repository": "web", "digest": "sha256:aa", "deploy_on_push": {"enabled": false}},
                          "routes": [{"path": "/"}], "health_check": {"http_path": "/healthz"}}],
            "workers": [{"name": "queue", "alerts": []}],
            "databases": [{"name": "db", "engine": "PG", "production": true}],
            "domains": [{"domain": "shop.example.com", "type": "PRIMARY"}],
            "ingress": {"rules": [{"match": {"path": {"prefix": "/"}}, "component": {"name": "web"}}]},
        });
        assert_eq!(unknown_keys(&spec), []);
    }

    #[test]
    fn the_nearest_known_key_of_its_place() {
        let fields: Map<String, Value> = [("services".to_string(), Value::Null)].into_iter().collect();
        assert_eq!(nearest("servics", &fields).as_deref(), Some("services"));
        assert_eq!(nearest("xyz", &fields), None);
        assert_eq!(nearest("ab", &[("ac".to_string(), Value::Null)].into_iter().collect()).as_deref(), Some("ac"));
        assert_eq!(
            nearest("xs", &[("[]".to_string(), Value::Null)].into_iter().collect()),
            None,
            "not the list marker"
        );
    }
}
