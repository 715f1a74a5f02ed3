//! What App Platform does to a spec it is given: the checks it makes (each failure reported as
//! `error validating app spec field "FIELD": WHY`, the live API's wording) and the fields it
//! fills in when the spec leaves them out, so a spec read back differs from the one sent.

use serde_json::{json, Map, Value};

const REGIONS: [&str; 10] = ["atl", "nyc", "sfo", "tor", "ams", "fra", "lon", "blr", "sgp", "syd"];
const COMPONENT_LISTS: [&str; 5] = ["services", "workers", "jobs", "static_sites", "functions"];
const DEFAULT_INSTANCE_SIZE: &str = "apps-s-1vcpu-0.5gb";

/// App and component names: `^[a-z][a-z0-9-]{0,30}[a-z0-9]$`. Written apart from do-deploy's
/// own check on purpose: the simulator stands for the server, and shares no code with clients.
pub fn valid_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    (2..=32).contains(&bytes.len())
        && bytes[0].is_ascii_lowercase()
        && bytes.iter().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
        && bytes[bytes.len() - 1] != b'-'
}

/// Every problem App Platform would refuse the spec for, in the live API's wording.
pub fn problems(spec: &Value) -> Vec<String> {
    let mut found = Vec::new();
    let mut problem =
        |field: &str, why: String| found.push(format!("error validating app spec field \"{field}\": {why}"));
    let Some(spec) = spec.as_object() else {
        problem("spec", "the spec must be an object".into());
        return found;
    };
    match spec.get("name").and_then(Value::as_str) {
        Some(name) if valid_name(name) => {}
        Some(name) => problem(
            "name",
            format!("{name:?} must be 2 to 32 lowercase letters, digits and dashes, starting with a letter"),
        ),
        None => problem("name", "the app needs a name".into()),
    }
    if let Some(region) = spec.get("region").and_then(Value::as_str) {
        if !REGIONS.contains(&region) {
            problem("region", format!("unknown region {region:?}"));
        }
    }
    check_envs(spec.get("envs"), "envs", &mut problem);
    let mut names = Vec::new();
    for list in COMPONENT_LISTS {
        for component in spec.get(list).and_then(Value::as_array).into_iter().flatten() {
            let name = component.get("name").and_then(Value::as_str).unwrap_or("");
            if !valid_name(name) {
                problem(
                    &format!("{list}.name"),
                    format!("component name {name:?} must be 2 to 32 lowercase letters, digits and dashes"),
                );
            } else if names.contains(&name) {
                problem(&format!("{list}.name"), format!("component name {name:?} is used twice"));
            }
            names.push(name);
            // Numbers by type and range, as the live API checks them.
            for (field, least, most) in [("http_port", 1, 65_535), ("instance_count", 1, 250)] {
                match component.get(field) {
                    None | Some(Value::Null) => {}
                    Some(value) => match value.as_i64() {
                        Some(n) if (least..=most).contains(&n) => {}
                        Some(n) => problem(
                            &format!("{list}.{field}"),
                            format!("component {name:?}: {field} {n} is out of range {least} to {most}"),
                        ),
                        None => problem(
                            &format!("{list}.{field}"),
                            format!("component {name:?}: {field} must be a whole number, not {value}"),
                        ),
                    },
                }
            }
            check_envs(component.get("envs"), &format!("{list}.envs"), &mut problem);
            let Some(image) = component.get("image") else { continue };
            let text = |key: &str| image.get(key).and_then(Value::as_str).filter(|v| !v.is_empty());
            match text("registry_type") {
                Some("DOCR" | "DOCKER_HUB" | "GHCR") => {}
                other => problem(
                    &format!("{list}.image.registry_type"),
                    format!("component {name:?}: unknown registry type {other:?}"),
                ),
            }
            if text("repository").is_none() {
                problem(
                    &format!("{list}.image.repository"),
                    format!("component {name:?}: the image needs a repository"),
                );
            }
            if text("tag").is_some() && text("digest").is_some() {
                problem(
                    &format!("{list}.image"),
                    format!("component {name:?}: image tag and digest are mutually exclusive"),
                );
            }
            let deploy_on_push = image.pointer("/deploy_on_push/enabled").and_then(Value::as_bool) == Some(true);
            if deploy_on_push && text("digest").is_some() {
                problem(
                    &format!("{list}.image.deploy_on_push"),
                    format!("component {name:?}: deploy_on_push cannot be used with an image digest"),
                );
            }
        }
    }
    for domain in spec.get("domains").and_then(Value::as_array).into_iter().flatten() {
        if domain.get("domain").and_then(Value::as_str).is_none_or(str::is_empty) {
            problem("domains.domain", "every domain needs a domain name".into());
        }
    }
    found
}

fn check_envs(envs: Option<&Value>, field: &str, problem: &mut impl FnMut(&str, String)) {
    for env in envs.and_then(Value::as_array).into_iter().flatten() {
        let key = env.get("key").and_then(Value::as_str).unwrap_or("");
        let valid_key = !key.is_empty()
            && !key.as_bytes()[0].is_ascii_digit()
            && key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
        if !valid_key {
            problem(&format!("{field}.key"), format!("invalid environment variable name {key:?}"));
        }
        if let Some(kind) = env.get("type").and_then(Value::as_str) {
            if !["GENERAL", "SECRET"].contains(&kind) {
                problem(&format!("{field}.type"), format!("{key}: unknown type {kind:?}"));
            }
        }
        if let Some(scope) = env.get("scope").and_then(Value::as_str) {
            if !["UNSET", "RUN_TIME", "BUILD_TIME", "RUN_AND_BUILD_TIME"].contains(&scope) {
                problem(&format!("{field}.scope"), format!("{key}: unknown scope {scope:?}"));
            }
        }
    }
}

/// The spec as App Platform keeps it: a region, instance count and size of each service and
/// worker, and ingress rules for the services' routes, where the spec
/// gives none; secret values encrypted.
pub fn as_stored(spec: &Value) -> Value {
    let mut stored = spec.clone();
    let Some(top) = stored.as_object_mut() else { return stored };
    top.entry("region").or_insert_with(|| json!("fra"));
    for list in ["services", "workers"] {
        for component in top.get_mut(list).and_then(Value::as_array_mut).into_iter().flatten() {
            if let Some(component) = component.as_object_mut() {
                component.entry("instance_count").or_insert_with(|| json!(1));
                component.entry("instance_size_slug").or_insert_with(|| json!(DEFAULT_INSTANCE_SIZE));
            }
        }
    }
    if !top.contains_key("ingress") {
        let rules: Vec<Value> = top
            .get("services")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .flat_map(|service| {
                let name = service.get("name").cloned().unwrap_or(Value::Null);
                service.get("routes").and_then(Value::as_array).cloned().unwrap_or_default().into_iter().map(
                    move |route| {
                        json!({"match": {"path": {"prefix": route.get("path").cloned().unwrap_or(json!("/"))}},
                               "component": {"name": name.clone()}})
                    },
                )
            })
            .collect();
        if !rules.is_empty() {
            top.insert("ingress".into(), json!({ "rules": rules }));
        }
    }
    encrypt_secrets(&mut stored);
    stored
}

/// Secret values come back as `EV[1:…]`; one already encrypted, or empty, is kept as sent.
fn encrypt_secrets(value: &mut Value) {
    match value {
        Value::Object(map) => {
            let secret = map.get("type").and_then(Value::as_str) == Some("SECRET") && map.contains_key("key");
            if secret {
                if let Some(Value::String(plain)) = map.get_mut("value") {
                    if !plain.is_empty() && !plain.starts_with("EV[") {
                        *plain =
                            format!("EV[1:{}]", crate::content::sha256(plain.as_bytes()).trim_start_matches("sha256:"));
                    }
                }
            }
            map.values_mut().for_each(encrypt_secrets);
        }
        Value::Array(items) => items.iter_mut().for_each(encrypt_secrets),
        _ => {}
    }
}

/// The propose answer for a spec that passed the checks.
pub fn proposal(spec: &Value, name_available: bool) -> Value {
    let mut answer = Map::new();
    answer.insert("app_name_available".into(), json!(name_available));
    if !name_available {
        let name = spec.get("name").and_then(Value::as_str).unwrap_or("app");
        let suggestion: String = format!("{}-2", &name[..name.len().min(30)]);
        answer.insert("app_name_suggestion".into(), json!(suggestion));
    }
    answer.insert("app_is_static".into(), json!(false));
    answer.insert("existing_static_apps".into(), json!("0"));
    answer.insert("spec".into(), as_stored(spec));
    answer.insert("app_cost".into(), json!(5));
    Value::Object(answer)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_problem_names_its_field() {
        let spec = json!({"name": "Shop", "region": "mars", "services": [
            {"name": "web", "image": {"registry_type": "DOCR", "repository": "web", "tag": "v1", "digest": "sha256:a"}},
            {"name": "web", "envs": [{"key": "1BAD"}]}]});
        let found = problems(&spec);
        assert!(found.iter().any(|p| p.starts_with("error validating app spec field \"name\"")), "{found:?}");
        assert!(found.iter().any(|p| p.contains("\"region\": unknown region")), "{found:?}");
        assert!(
            found.iter().any(|p| p.contains("\"services.image\"") && p.contains("mutually exclusive")),
            "{found:?}"
        );
        assert!(found.iter().any(|p| p.contains("used twice")), "{found:?}");
        assert!(found.iter().any(|p| p.contains("\"services.envs.key\"")), "{found:?}");
        assert!(problems(&json!({"name": "shop"})).is_empty());
        let numbers =
            json!({"name": "shop", "services": [{"name": "web", "http_port": "eighty", "instance_count": -3}]});
        let found = problems(&numbers);
        assert!(
            found
                .iter()
                .any(|p| p.contains("\"services.http_port\"") && p.contains("must be a whole number, not \"eighty\"")),
            "{found:?}"
        );
        assert!(
            found
                .iter()
                .any(|p| p.contains("\"services.instance_count\"") && p.contains("-3 is out of range 1 to 250")),
            "{found:?}"
        );
        let fine = json!({"name": "shop", "services": [{"name": "web", "http_port": 8080, "instance_count": 2}]});
        assert!(problems(&fine).is_empty());
    }

    #[test]
    fn stored_specs_gain_the_fields_app_platform_fills_in() {
        let spec = json!({"name": "shop", "services": [{"name": "web", "routes": [{"path": "/"}],
            "envs": [{"key": "PASSWORD", "type": "SECRET", "value": "hunter22"}]}]});
        let stored = as_stored(&spec);
        assert_eq!(stored["region"], "fra");
        assert_eq!(stored["services"][0]["instance_count"], 1);
        assert_eq!(stored["ingress"]["rules"][0]["component"]["name"], "web");
        let secret = stored["services"][0]["envs"][0]["value"].as_str().unwrap();
        assert!(secret.starts_with("EV[1:") && !secret.contains("hunter22"), "{secret}");
        assert_eq!(as_stored(&stored), stored, "storing twice changes nothing");
    }
}
