//! The simulator's answers and the tools' requests, checked against DigitalOcean's OpenAPI spec
//! (tests/spec/): every field the simulator sends is declared with the right type (and enum
//! value), required fields are there, status codes are the declared ones; every request the
//! tools send goes to a declared operation with declared query parameters and a body that fits
//! its schema.

use std::sync::OnceLock;

use serde_json::{json, Value};

use crate::support::{call, sim, Tool, DEPLOY, GC_WAIT, PRUNE};

fn spec() -> &'static Value {
    static SPEC: OnceLock<Value> = OnceLock::new();
    SPEC.get_or_init(|| {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/spec/digitalocean-openapi-registry-apps.yaml");
        do_deploy::specfile::parse_yaml(&std::fs::read_to_string(path).expect("the spec is in the repository"))
            .expect("the spec parses")
    })
}

fn resolve(schema: &Value) -> &Value {
    match schema.get("$ref").and_then(Value::as_str) {
        Some(reference) => {
            let pointer = reference.trim_start_matches('#');
            resolve(spec().pointer(pointer).unwrap_or_else(|| panic!("unresolved {reference}")))
        }
        None => schema,
    }
}

/// The operation and path template a concrete request path matches.
fn operation(method: &str, path: &str) -> Option<(String, &'static Value)> {
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let paths = spec()["paths"].as_object().unwrap();
    let mut best: Option<(String, &Value)> = None;
    for (template, item) in paths {
        let parts: Vec<&str> = template.trim_start_matches('/').split('/').collect();
        if parts.len() != segments.len() {
            continue;
        }
        let literal_matches =
            parts.iter().zip(&segments).all(|(part, segment)| part.starts_with('{') || part == segment);
        if !literal_matches {
            continue;
        }
        if let Some(op) = item.get(method.to_ascii_lowercase()) {
            // Prefer the template with more literal segments (`/v2/registries/subscription` over `{name}`).
            let literals = parts.iter().filter(|p| !p.starts_with('{')).count();
            let better =
                best.as_ref().is_none_or(|(t, _)| t.split('/').filter(|p| !p.starts_with('{')).count() < literals);
            if better {
                best = Some((template.clone(), op));
            }
        }
    }
    best
}

/// Problems with `value` against `schema`, each with its JSON path.
fn check(schema: &Value, value: &Value, at: &str, problems: &mut Vec<String>) {
    let schema = resolve(schema);
    if let Some(all) = schema.get("allOf").and_then(Value::as_array) {
        let mut merged = json!({"type": "object", "properties": {}, "required": []});
        for part in all {
            let part = resolve(part);
            if let Some(props) = part.get("properties").and_then(Value::as_object) {
                for (k, v) in props {
                    merged["properties"][k] = v.clone();
                }
            }
            if let Some(required) = part.get("required").and_then(Value::as_array) {
                merged["required"].as_array_mut().unwrap().extend(required.iter().cloned());
            }
        }
        return check(&merged, value, at, problems);
    }
    for key in ["oneOf", "anyOf"] {
        if let Some(options) = schema.get(key).and_then(Value::as_array).filter(|o| !o.is_empty()) {
            let fits = options.iter().any(|option| {
                let mut inner = Vec::new();
                check(option, value, at, &mut inner);
                inner.is_empty()
            });
            if !fits {
                problems.push(format!("{at}: fits none of the {key} schemas"));
            }
            return;
        }
    }
    let declared_type = schema.get("type").and_then(Value::as_str);
    let type_ok = match (declared_type, value) {
        (None, _) => true,
        (Some("string"), Value::String(_)) => true,
        (Some("integer"), Value::Number(n)) => n.is_i64() || n.is_u64(),
        (Some("number"), Value::Number(_)) => true,
        (Some("boolean"), Value::Bool(_)) => true,
        (Some("array"), Value::Array(_)) => true,
        (Some("object"), Value::Object(_)) => true,
        (_, Value::Null) => schema.get("nullable").and_then(Value::as_bool) == Some(true),
        _ => false,
    };
    if !type_ok {
        problems.push(format!("{at}: {value} is not of type {}", declared_type.unwrap_or("?")));
        return;
    }
    if let (Some(options), Value::String(text)) = (schema.get("enum").and_then(Value::as_array), value) {
        if !options.iter().any(|o| o == text) {
            problems.push(format!("{at}: {text:?} is not one of {options:?}"));
        }
    }
    if let (Some(items), Value::Array(array)) = (schema.get("items"), value) {
        for (index, item) in array.iter().enumerate() {
            check(items, item, &format!("{at}[{index}]"), problems);
        }
    }
    if let Value::Object(object) = value {
        let properties = schema.get("properties").and_then(Value::as_object);
        if let Some(properties) = properties {
            for (key, inner) in object {
                match properties.get(key) {
                    Some(property) => check(property, inner, &format!("{at}.{key}"), problems),
                    None if schema.get("additionalProperties").is_some() => {}
                    None => problems.push(format!("{at}.{key}: not declared by the spec")),
                }
            }
        }
        for required in schema.get("required").and_then(Value::as_array).into_iter().flatten() {
            let name = required.as_str().unwrap_or("");
            if !object.contains_key(name) {
                problems.push(format!("{at}.{name}: required but missing"));
            }
        }
    }
}

/// Checks one answer of the simulator against the operation's declared response.
fn check_response(method: &str, path: &str, status: u16, body: &Value) -> Vec<String> {
    let Some((template, op)) = operation(method, path) else {
        return vec![format!("{method} {path}: no such operation in the spec")];
    };
    let responses = &op["responses"];
    let response = match responses.get(status.to_string()) {
        Some(response) => resolve(response),
        None if status >= 400 => match responses.get("default") {
            Some(default) => resolve(default),
            None => return vec![format!("{method} {template}: status {status} is not declared")],
        },
        None => return vec![format!("{method} {template}: status {status} is not declared")],
    };
    let mut problems = Vec::new();
    match response.pointer("/content/application~1json/schema") {
        Some(schema) => check(schema, body, &format!("{method} {template} {status}"), &mut problems),
        None if body.is_null() => {}
        None => problems.push(format!("{method} {template} {status}: declares no body but got {body}")),
    }
    problems
}

/// Checks one request a tool sent: operation, query parameters, body.
pub fn check_request(method: &str, url: &str, body: Option<&str>) -> Vec<String> {
    let (path, query) = url.split_once('?').unwrap_or((url, ""));
    let Some((template, op)) = operation(method, path) else {
        return vec![format!("{method} {path}: no such operation in the spec")];
    };
    let mut problems = Vec::new();
    let declared: Vec<String> = op
        .get("parameters")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(resolve)
        .filter(|p| p["in"] == "query")
        .filter_map(|p| p["name"].as_str().map(str::to_string))
        .collect();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let name = pair.split('=').next().unwrap_or("");
        if !declared.iter().any(|d| d == name) {
            problems.push(format!("{method} {template}: query parameter {name:?} is not declared"));
        }
    }
    match (op.pointer("/requestBody/content/application~1json/schema"), body) {
        (Some(schema), Some(text)) => {
            let value: Value = serde_json::from_str(text).unwrap_or(Value::Null);
            check(schema, &value, &format!("{method} {template} request"), &mut problems);
        }
        (Some(_), None) if resolve(&op["requestBody"])["required"] == true => {
            problems.push(format!("{method} {template}: the body is required"));
        }
        (None, Some(text)) => problems.push(format!("{method} {template}: declares no body but the tool sent {text}")),
        _ => {}
    }
    problems
}

#[test]
fn every_simulator_answer_matches_the_spec_field_for_field() {
    let sim = sim(40);
    let mut problems = Vec::new();
    let mut checked = Vec::new();
    let mut expect = |method: &str, path: &str, body: Option<Value>, status: u16| -> Value {
        let (got, answer) = call(&sim, method, path, body, Some(&sim.token()));
        assert_eq!(got, status, "{method} {path}: {answer}");
        problems.extend(check_response(method, path.split('?').next().unwrap(), got, &answer));
        checked.push(format!("{method} {path} {got}"));
        answer
    };
    let r = "/v2/registries/example-registry";
    expect("GET", "/v2/account", None, 200);
    expect("GET", "/v2/registries", None, 200);
    expect("GET", "/v2/registry", None, 200);
    expect("GET", "/v2/registries/subscription", None, 200);
    expect("GET", r, None, 200);
    expect("GET", &format!("{r}/repositoriesV2?per_page=1"), None, 200);
    expect("GET", &format!("{r}/repositories/web/tags?per_page=2"), None, 200);
    let digests = expect("GET", &format!("{r}/repositories/web/digests?per_page=200"), None, 200);
    expect("GET", &format!("{r}/docker-credentials"), None, 200);
    expect("GET", &format!("{r}/garbage-collection"), None, 404);
    expect("DELETE", &format!("{r}/repositories/web/tags/v1.0.0"), None, 204);
    let digest = digests["manifests"][2]["digest"].as_str().unwrap().to_string();
    expect("DELETE", &format!("{r}/repositories/web/digests/{digest}"), None, 204);
    let gc = expect(
        "POST",
        "/v2/registry/example-registry/garbage-collection",
        Some(json!({"type": "untagged manifests and unreferenced blobs"})),
        201,
    );
    expect("GET", &format!("{r}/garbage-collection"), None, 200);
    expect("POST", &format!("{r}/garbage-collection"), None, 409);
    let uuid = gc["garbage_collection"]["uuid"].as_str().unwrap();
    expect("PUT", &format!("{r}/garbage-collection/{uuid}"), Some(json!({"cancel": true})), 200);
    crate::support::wait_until("the cancel to complete", || !crate::support::gc_running(&sim, "example-registry"));
    expect("POST", &format!("{r}/garbage-collection"), None, 201);
    expect("GET", &format!("{r}/garbage-collections"), None, 200);

    let apps = expect("GET", "/v2/apps", None, 200);
    let app = apps["apps"][0]["id"].as_str().unwrap().to_string();
    let a = format!("/v2/apps/{app}");
    let current = expect("GET", &a, None, 200);
    expect("GET", &format!("{a}/health"), None, 200);
    let previous = current["app"]["active_deployment"]["id"].as_str().unwrap().to_string();
    let mut spec = current["app"]["spec"].clone();
    spec["services"][0]["image"] = json!({"registry_type": "DOCR", "repository": "web", "tag": "v1.1.0"});
    let updated = expect("PUT", &a, Some(json!({"spec": spec})), 200);
    let pending = updated["app"]["pending_deployment"]["id"].as_str().unwrap().to_string();
    expect("GET", &format!("{a}/deployments/{pending}"), None, 200);
    expect("POST", &format!("{a}/deployments/{pending}/cancel"), None, 200);
    sim.state().apps[0].next_outcome = do_sim::Outcome::BuildError;
    let created = expect("POST", &format!("{a}/deployments"), Some(json!({"force_build": true})), 200);
    let failing = created["deployment"]["id"].as_str().unwrap().to_string();
    crate::support::wait_until("the deployment to end in ERROR", || {
        crate::support::deployment_phase(&sim, &failing) == "ERROR"
    });
    expect("GET", &format!("{a}/deployments?per_page=20"), None, 200);
    expect("GET", &format!("{a}/deployments/{failing}"), None, 200);
    expect("GET", &format!("{a}/deployments/{failing}/components/web/logs?type=BUILD"), None, 200);
    expect("GET", &format!("{a}/deployments/{failing}/logs?type=BUILD"), None, 200);
    expect("POST", &format!("{a}/rollback/validate"), Some(json!({"deployment_id": previous, "skip_pin": false})), 200);
    expect("POST", &format!("{a}/rollback"), Some(json!({"deployment_id": previous, "skip_pin": false})), 200);
    expect("PUT", &a, Some(json!({"spec": spec})), 409);
    expect("POST", &format!("{a}/rollback/commit"), None, 200);
    let new_spec = do_sim::default_app_spec("spec-shop", "web", "v1.1.0");
    expect("POST", "/v2/apps/propose", Some(json!({"spec": new_spec})), 200);
    expect("POST", "/v2/apps/propose", Some(json!({"spec": spec, "app_id": app})), 200);
    expect("POST", "/v2/apps/propose", Some(json!({"spec": {"name": "Not_A_Name"}})), 400);
    let created = expect("POST", "/v2/apps", Some(json!({"spec": new_spec})), 200);
    expect("POST", "/v2/apps", Some(json!({"spec": new_spec})), 409);
    let new_app = created["app"]["id"].as_str().unwrap().to_string();
    expect("DELETE", &format!("/v2/apps/{new_app}"), None, 200);
    expect("GET", &format!("/v2/apps/{new_app}"), None, 404);
    let (status, unauthorized) = {
        let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).proxy(None).build().into();
        let mut response = agent.get(format!("{}/v2/registries", sim.url())).call().unwrap();
        (
            response.status().as_u16(),
            serde_json::from_str::<Value>(&response.body_mut().read_to_string().unwrap()).unwrap(),
        )
    };
    problems.extend(check_response("GET", "/v2/registries", status, &unauthorized));
    assert!(checked.len() >= 30, "{checked:?}");
    assert!(problems.is_empty(), "the simulator strays from the spec:\n{}", problems.join("\n"));
}

#[test]
fn every_request_the_tools_send_matches_the_spec() {
    let sim = sim(30);
    let fast = ["--interval", "30ms"];
    sim.start_gc_with("example-registry", &[("scanning manifests", 100)], "succeeded").unwrap();
    Tool::against(GC_WAIT, &sim).args(fast).run().assert_code(0);
    sim.start_gc_with("example-registry", &[("scanning manifests", 10_000)], "succeeded").unwrap();
    Tool::against(GC_WAIT, &sim).args(fast).args(["--cancel-after", "1ms"]).run().assert_code(0);
    Tool::against(DEPLOY, &sim)
        .args(fast)
        .args(["--app", "example-app", "--repository", "web", "--tag", "v1.1.0"])
        .run()
        .assert_code(0);
    sim.state().apps[0].next_outcome = do_sim::Outcome::DeployError;
    Tool::against(DEPLOY, &sim)
        .args(fast)
        .args(["--app", "example-app", "--repository", "web", "--tag", "v1.0.0", "--rollback-on-failure"])
        .run()
        .assert_code(4);
    Tool::against(DEPLOY, &sim)
        .args(fast)
        .args(["--app", "example-app", "--redeploy", "--force-rebuild"])
        .run()
        .assert_code(0);
    sim.state().apps[0].next_outcome = do_sim::Outcome::Hang;
    Tool::against(DEPLOY, &sim)
        .args(fast)
        .args(["--app", "example-app", "--redeploy", "--no-wait"])
        .run()
        .assert_code(0);
    Tool::against(DEPLOY, &sim)
        .args(fast)
        .args(["--app", "example-app", "--redeploy", "--if-busy", "cancel"])
        .run()
        .assert_code(0);
    assert!(sim.requests().iter().any(|r| r.url.ends_with("/cancel")), "a deployment was cancelled");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("app.json");
    std::fs::write(&file, do_sim::default_app_spec("example-app", "web", "v1.2.0").to_string()).unwrap();
    let file = file.display().to_string();
    for args in [
        vec!["--spec", &file, "--repository", "web", "--tag", "v1.1.0"],
        vec!["--spec", &file, "--repository", "web", "--tag", "v1.1.0", "--preview", "pr-1", "--preview-env", "A=b"],
        vec!["--spec", &file, "--delete-preview", "pr-1"],
    ] {
        Tool::against(DEPLOY, &sim).args(fast).args(args).run().assert_code(0);
    }
    let spec_paths = ["/v2/apps/propose", "/v2/apps"];
    assert!(spec_paths.iter().all(|p| sim.requests().iter().any(|r| r.method == "POST" && r.url == *p)));
    sim.push("example-registry", "web", "scratch", 1000).unwrap();
    sim.push("example-registry", "web", "newest", 1000).unwrap();
    let prune = Tool::against(PRUNE, &sim)
        .args(fast)
        .args(["--keep-last", "1", "--keep-tag", "v1.2.0", "--execute", "--gc", "wait"])
        .run();
    prune.assert_code(0);
    let requests = sim.requests();
    let methods: std::collections::BTreeSet<&str> = requests.iter().map(|r| r.method.as_str()).collect();
    assert_eq!(methods, ["DELETE", "GET", "POST", "PUT"].into_iter().collect(), "every kind of request was made");
    let problems: Vec<String> =
        requests.iter().flat_map(|r| check_request(&r.method, &r.url, r.body.as_deref())).collect();
    assert!(problems.is_empty(), "the tools stray from the spec:\n{}", problems.join("\n"));
}

#[test]
fn the_checker_catches_what_strays() {
    assert!(!check_response(
        "GET",
        "/v2/registries/x/garbage-collection",
        200,
        &json!({"garbage_collection": {"uuid": "u", "status": "exploded"}})
    )
    .is_empty());
    assert!(!check_response(
        "GET",
        "/v2/registries/x/garbage-collection",
        200,
        &json!({"garbage_collection": {"uuid": 5}})
    )
    .is_empty());
    assert!(!check_response(
        "GET",
        "/v2/registries/x/garbage-collection",
        200,
        &json!({"garbage_collection": {"invented": true}})
    )
    .is_empty());
    assert!(
        !check_response("POST", "/v2/apps/x/deployments", 201, &json!({})).is_empty(),
        "create deployment is 200, not 201"
    );
    assert!(!check_request("GET", "/v2/apps?color=blue", None).is_empty());
    assert!(
        !check_request("POST", "/v2/registries/x/garbage-collection", Some("{\"type\":\"x\"}")).is_empty(),
        "the GC type is not one of the enum"
    );
    assert!(check_request(
        "POST",
        "/v2/registries/x/garbage-collection",
        Some("{\"type\":\"unreferenced blobs only\"}")
    )
    .is_empty());
    assert!(
        !check_request("POST", "/v2/apps/x/rollback/commit", Some("{}")).is_empty(),
        "this operation declares no body"
    );
    assert!(check_response(
        "GET",
        "/v2/registries/x/garbage-collection",
        404,
        &json!({"id": "not_found", "message": "m"})
    )
    .is_empty());
}

/// The fields under a schema, as do-deploy's `spec_keys.json` writes them: an object of fields,
/// `null` for a value not described further, `"*"` for free-form, `{"[]": …}` for a list.
fn field_tree(schema: &Value) -> Value {
    let schema = resolve(schema);
    let Some(object) = schema.as_object() else { return Value::Null };
    let mut fields = serde_json::Map::new();
    let mut free = false;
    for combined in ["allOf", "oneOf", "anyOf"] {
        for part in object.get(combined).and_then(Value::as_array).into_iter().flatten() {
            match field_tree(part) {
                Value::String(_) => free = true,
                Value::Object(more) => fields.extend(more),
                _ => {}
            }
        }
    }
    if object.get("type") == Some(&json!("array")) || object.contains_key("items") {
        let items = field_tree(object.get("items").unwrap_or(&Value::Null));
        return if items.is_null() { Value::Null } else { json!({"[]": items}) };
    }
    for (name, property) in object.get("properties").and_then(Value::as_object).into_iter().flatten() {
        fields.insert(name.clone(), field_tree(property));
    }
    if object.get("additionalProperties").is_some_and(|a| a != &json!(false)) {
        free = true;
    }
    match (free, fields.is_empty()) {
        (true, _) => json!("*"),
        (false, true) => Value::Null,
        (false, false) => Value::Object(fields),
    }
}

#[test]
fn do_deploys_known_spec_fields_are_the_published_specs() {
    let made = field_tree(&spec()["components"]["schemas"]["app_spec"]);
    let committed: Value = serde_json::from_str(include_str!("../../crates/do-deploy/src/spec_keys.json")).unwrap();
    assert_eq!(
        made, committed,
        "crates/do-deploy/src/spec_keys.json is not the reference spec's app_spec: write it again"
    );
    // And the check reads it: a typo is found, the published fields pass.
    let unknown = do_deploy::speckeys::unknown_keys(&json!({"name": "x", "servics": []}));
    assert_eq!(unknown.len(), 1);
}
