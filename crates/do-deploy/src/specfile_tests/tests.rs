use super::*;

fn env_of(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
    move |name| pairs.iter().find(|(k, _)| *k == name).map(|(_, v)| v.to_string())
}

#[test]
fn only_allowed_references_are_expanded_and_app_platforms_own_stay() {
    let mut spec = json!({"name": "shop", "envs": [
        {"key": "SHA", "value": "${GITHUB_SHA}"},
        {"key": "DB", "value": "${db.DATABASE_URL}"},
        {"key": "URL", "value": "${APP_URL}/x"},
        {"key": "SELF", "value": "${_self.PRIVATE_URL}"},
        {"key": "LITERAL", "value": "$${HOME} and $${APP_URL}"},
        {"key": "PASS", "type": "SECRET", "value": "${DB_PASSWORD}"}]});
    let env = env_of(&[
        ("GITHUB_SHA", "abc123"),
        ("HOME", "/root"),
        ("DB_PASSWORD", "hunter22"),
        ("APP_URL", "https://x"),
        ("db.DATABASE_URL", "y"),
    ]);
    let allowed = vec!["GITHUB_SHA".to_string(), "DB_PASSWORD".to_string()];
    let expansion = expand(&mut spec, &allowed, &env).unwrap();
    assert_eq!(spec["envs"][0]["value"], "abc123");
    assert_eq!(spec["envs"][1]["value"], "${db.DATABASE_URL}");
    assert_eq!(spec["envs"][2]["value"], "${APP_URL}/x");
    assert_eq!(spec["envs"][3]["value"], "${_self.PRIVATE_URL}");
    assert_eq!(spec["envs"][4]["value"], "${HOME} and ${APP_URL}", "$${{NAME}} is the literal text");
    assert_eq!(expansion.secret_values, ["hunter22"]);
}

#[test]
fn a_reference_nobody_would_set_is_an_error_naming_the_fix() {
    let env = env_of(&[("HOME", "/root"), ("LOG_LEVEL", "debug")]);
    for (value, named) in [("${HOME}", "${HOME}"), ("x-${LOG_LEVEL}-${NOT_SET}", "${LOG_LEVEL}, ${NOT_SET}")] {
        let mut spec = json!({"name": "shop", "envs": [{"key": "A", "value": value}]});
        let error = expand(&mut spec, &[], &env).unwrap_err();
        assert_eq!(do_core::exit::exit_code_of(&error), do_core::Exit::Usage);
        let text = error.to_string();
        assert!(text.contains(&format!("the spec refers to {named} which App Platform does not set")), "{text}");
        assert!(text.contains("--spec-env") && text.contains("$${NAME}"), "{text}");
    }
    let mut spec = json!({"name": "shop", "envs": [{"key": "T", "value": "${DIGITALOCEAN_ACCESS_TOKEN}"}]});
    let error = expand(&mut spec, &[], &env).unwrap_err().to_string();
    assert!(error.contains("the DigitalOcean token never goes into an app spec"), "{error}");
    assert!(!error.contains("--spec-env DIGITALOCEAN"), "no advice the tool would refuse: {error}");
}

#[test]
fn a_value_cannot_add_structure_and_an_unset_allowed_reference_is_an_error() {
    let mut spec = json!({"name": "shop", "services": [{"name": "web", "run_command": "echo ${X}"}]});
    let env = env_of(&[("X", "a\ninstance_count: 99")]);
    expand(&mut spec, &["X".to_string()], &env).unwrap();
    assert_eq!(spec["services"][0]["run_command"], "echo a\ninstance_count: 99");
    assert!(spec["services"][0].get("instance_count").is_none());
    let mut spec = json!({"name": "shop", "envs": [{"key": "A", "value": "${MISSING}-${GONE}"}]});
    let error = expand(&mut spec, &["MISSING".into(), "GONE".into()], &env_of(&[])).unwrap_err();
    assert!(
        format!("{error}").contains("${GONE}, ${MISSING} (allowed with --spec-env) but they are not set"),
        "{error}"
    );
    assert_eq!(do_core::exit::exit_code_of(&error), do_core::Exit::Usage);
}

#[test]
fn the_token_is_never_an_allowed_variable() {
    let env = env_of(&[("COPY", "dop_v1_secret"), ("FINE", "x")]);
    assert!(check_allowed(&["DIGITALOCEAN_ACCESS_TOKEN".into()], None, &env).is_err());
    assert!(check_allowed(&["DIGITALOCEAN_TOKEN".into()], None, &env).is_err());
    assert!(check_allowed(&["COPY".into()], Some("dop_v1_secret"), &env).is_err(), "the token under another name");
    assert!(check_allowed(&["FINE".into()], Some("dop_v1_secret"), &env).is_ok());
    assert!(check_allowed(&["NOT-A-NAME".into()], None, &env).is_err());
}

#[test]
fn preview_names_fit_32_characters_stably_and_distinctly() {
    assert_eq!(preview_app_name("shop", "pr-42"), "shop-pr-42");
    let long = preview_app_name("a-very-long-production-app-name", "pr-1234");
    let other = preview_app_name("a-very-long-production-app-name", "pr-1235");
    assert_eq!(long.len(), 32, "{long}");
    assert_eq!(long, preview_app_name("a-very-long-production-app-name", "pr-1234"), "stable");
    assert_ne!(long, other);
    assert!(long.starts_with("a-very-long-produ-") && long.ends_with("-pr-1234"), "the preview's name whole: {long}");
    assert!(crate::spec::valid_app_name(&long), "{long}");
    let exactly = preview_app_name("twenty-six-characters-long", "pr-42");
    assert_eq!(exactly, "twenty-six-characters-long-pr-42");
    assert_eq!(exactly.len(), 32);
    // The base's start is cut at a dash: the dash is dropped, so no name holds "--".
    let dash = preview_app_name("abcdefghijk-mnopqrstuvwxyz", "pr-123456789");
    assert!(dash.starts_with("abcdefghijk-") && !dash.contains("--") && dash.ends_with("-pr-123456789"), "{dash}");
    assert_eq!(dash.len(), 31, "{dash}");
    // Two specs sharing a long start get different names for the same preview.
    assert_ne!(
        preview_app_name("checkout-service-production", "pr-1"),
        preview_app_name("checkout-service-productionx", "pr-1")
    );
    // A preview name that leaves no room for the base: the whole, hashed.
    let huge = preview_app_name("shop", &"p".repeat(30));
    assert_eq!(huge.len(), 32, "{huge}");
    assert_ne!(huge, preview_app_name("shop", &"q".repeat(30)));
    assert!(check_preview_name("pr-42").is_ok());
    for bad in ["", "PR-42", "-x", "x-", "pr_42", &"x".repeat(33)] {
        assert!(check_preview_name(bad).is_err(), "{bad:?}");
    }
}

#[test]
fn a_hundred_thousand_pull_requests_of_a_long_spec_name_get_a_hundred_thousand_names() {
    let mut seen = std::collections::BTreeSet::new();
    for n in 1..=100_000 {
        let name = preview_app_name("checkout-service-production", &format!("pr-{n}"));
        assert!(name.len() <= MAX_APP_NAME && crate::spec::valid_app_name(&name), "{name}");
        assert!(seen.insert(name.clone()), "pr-{n} collides: {name}");
    }
}

#[test]
fn any_component_with_the_mark_carries_it_and_only_a_uniform_mark_names_a_preview() {
    let mark = |value: &str| json!({"key": PREVIEW_MARKER, "value": value});
    let one = json!({"services": [{"name": "a", "envs": [mark("pr-1")]}, {"name": "b"}]});
    assert!(carries_preview_mark(&one));
    assert_eq!(preview_marker(&one), None, "b is unmarked");
    let both = json!({"services": [{"name": "a", "envs": [mark("pr-1")]}], "workers": [{"name": "w", "envs": [mark("pr-1")]}]});
    assert_eq!(preview_marker(&both), Some("pr-1"));
    let mixed = json!({"services": [{"name": "a", "envs": [mark("pr-1")]}, {"name": "b", "envs": [mark("pr-2")]}]});
    assert_eq!(preview_marker(&mixed), None);
    assert!(!carries_preview_mark(&json!({"services": [{"name": "a", "envs": [{"key": "X", "value": "pr-1"}]}]})));
    assert!(!carries_preview_mark(&json!({})));
}

#[test]
fn a_preview_drops_domains_and_alerts_and_is_marked() {
    let spec = json!({"name": "shop", "domains": [{"domain": "shop.example.com"}], "alerts": [{"rule": "DEPLOYMENT_FAILED"}],
        "services": [{"name": "web", "alerts": [{"rule": "CPU_UTILIZATION"}],
                      "envs": [{"key": "MODE", "value": "production"}, {"key": "KEEP", "value": "1"}]}],
        "workers": [{"name": "queue"}], "jobs": [{"name": "migrate", "envs": "not a list"}]});
    let preview = for_preview(&spec, "pr-7", &[("MODE".into(), "preview".into())]);
    assert_eq!(preview["name"], "shop-pr-7");
    assert!(preview.get("domains").is_none() && preview.get("alerts").is_none());
    assert!(preview["services"][0].get("alerts").is_none());
    assert_eq!(preview_marker(&preview), Some("pr-7"));
    assert_eq!(
        preview["services"][0]["envs"][0],
        json!({"key": "KEEP", "value": "1"}),
        "the file's other variables stay"
    );
    assert_eq!(preview["jobs"][0]["envs"].as_array().unwrap().len(), 2, "a malformed list becomes the marks");
    for component in [&preview["services"][0], &preview["workers"][0]] {
        let modes: Vec<&Value> = component["envs"].as_array().unwrap().iter().filter(|e| e["key"] == "MODE").collect();
        assert_eq!(modes.len(), 1);
        assert_eq!(modes[0]["value"], "preview");
    }
    assert_eq!(preview_marker(&spec), None);
    let mut partly = preview.clone();
    partly["workers"][0]["envs"] = json!([]);
    assert_eq!(preview_marker(&partly), None, "one unmarked component");
    let mut other = preview.clone();
    other["workers"][0]["envs"][0]["value"] = json!("pr-8");
    assert_eq!(preview_marker(&other), None, "marks that disagree");
    assert_eq!(preview_marker(&json!({"name": "x"})), None, "no component");
    assert!(parse_preview_env("DO_RELEASE_PREVIEW=x", None).is_err());
    assert_eq!(parse_preview_env("A=b=c", None).unwrap(), ("A".into(), "b=c".into()));
    assert_eq!(parse_preview_env("LOG_LEVEL2=", None).unwrap(), ("LOG_LEVEL2".into(), String::new()));
    // The token, by a token variable's name or inside a value, is refused.
    for text in
        ["DIGITALOCEAN_ACCESS_TOKEN=x", "DIGITALOCEAN_TOKEN=x", "LEAK=Bearer dop_v1_secret", "LEAK=dop_v1_secret"]
    {
        let error = parse_preview_env(text, Some("dop_v1_secret")).unwrap_err();
        assert!(error.to_string().contains("never goes into an app spec"), "{text}: {error}");
        assert!(!error.to_string().contains("dop_v1_secret"), "{error}");
    }
    assert!(parse_preview_env("FINE=dop_v1_other", Some("dop_v1_secret")).is_ok());
    for bad in ["NOEQUALS", "=x", "1A=b", "A-B=c", "A B=c"] {
        assert!(parse_preview_env(bad, None).is_err(), "{bad:?}");
    }
}

#[test]
fn secrets_the_file_leaves_empty_keep_the_live_value() {
    let live = json!({"envs": [{"key": "K", "type": "SECRET", "value": "EV[1:live]"},
        {"key": "K2", "type": "SECRET", "value": "EV[1:k2]"}, {"key": "K3", "type": "SECRET", "value": "EV[1:k3]"}],
        "services": [{"name": "web", "envs": [{"key": "S", "type": "SECRET", "value": "EV[1:web]"}]}]});
    let mut new = json!({"envs": [{"key": "K", "type": "SECRET"}, {"key": "NEW", "type": "SECRET"},
                                  {"key": "K2"}, {"key": "K3", "type": "SECRET", "value": "given"}],
        "services": [{"name": "web", "envs": [{"key": "S", "type": "SECRET", "value": ""}, {"key": "P", "value": "plain"}]}]});
    keep_live_secrets(&mut new, &live);
    assert_eq!(new["envs"][0]["value"], "EV[1:live]");
    assert!(new["envs"][1].get("value").is_none(), "no live value to keep");
    assert!(new["envs"][2].get("value").is_none(), "not a secret in the file: not given one");
    assert_eq!(new["envs"][3]["value"], "given", "a secret the file gives wins");
    assert_eq!(new["services"][0]["envs"][0]["value"], "EV[1:web]");
    assert_eq!(new["services"][0]["envs"][1]["value"], "plain");
}

#[test]
fn a_spec_file_is_read_strictly() {
    let dir = tempfile::tempdir().unwrap();
    let read_text = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        read(&path).map_err(|e| format!("{e:#}"))
    };
    assert_eq!(
        read_text("a.yaml", "name: shop\non: yes\nenvs: [{key: A, value: off}, {key: B, value: true}]\n").unwrap(),
        json!({"name": "shop", "on": "yes", "envs": [{"key": "A", "value": "off"}, {"key": "B", "value": true}]}),
        "YAML 1.2: no yes/no booleans"
    );
    assert_eq!(read_text("a.json", r#"{"name": "shop"}"#).unwrap(), json!({"name": "shop"}));
    let duplicate = read_text("b.yaml", "name: shop\nname: other\n").unwrap_err();
    assert!(duplicate.contains("duplicate mapping key"), "{duplicate}");
    let mut bomb = String::from("a: &a [x, x, x, x, x, x, x, x, x, x]\n");
    for (name, previous) in ["b", "c", "d", "e", "f", "g"].iter().zip(["a", "b", "c", "d", "e", "f"]) {
        bomb.push_str(&format!("{name}: &{name} [{}]\n", vec![format!("*{previous}"); 10].join(", ")));
    }
    bomb.push_str("name: shop\n");
    assert!(read_text("bomb.yaml", &bomb).unwrap_err().contains("budget"), "aliases cannot blow up");
    for (text, why) in [
        ("- name: shop\n", "not a list"),
        ("name: \"\"\n", "has no name"),
        ("spec:\n  name: shop\n", "wraps the spec"),
        ("region: fra\n", "has no name"),
        ("name: [\n", "not valid YAML"),
    ] {
        let error = read_text("c.yaml", text).unwrap_err();
        assert!(error.contains(why), "{text:?}: {error}");
    }
    assert!(read_text("d.json", "name: shop").unwrap_err().contains("not valid JSON"));
    let exactly = format!("{{\"name\": \"shop\", \"pad\": \"{}\"}}", "x".repeat(MAX_SPEC_BYTES as usize - 27));
    assert_eq!(exactly.len() as u64, MAX_SPEC_BYTES);
    assert!(read_text("e.json", &exactly).is_ok(), "1 MiB is allowed");
    assert!(read_text("f.json", &format!("{exactly} ")).unwrap_err().contains("over 1 MiB"));
    assert!(format!("{:#}", read(dir.path()).unwrap_err()).contains("not a regular file"));
    let error = read(&dir.path().join("missing.yaml")).unwrap_err();
    assert_eq!(do_core::exit::exit_code_of(&error), do_core::Exit::Usage);
}

#[test]
fn a_bad_file_is_named_by_place_never_by_its_text() {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path
    };
    // A syntax error on the line that holds a literal secret.
    let yaml = write("a.yaml", "name: shop\nenvs:\n  - key: P\n    value: hunter22-secret: [\n");
    let error = format!("{:#}", read(&yaml).unwrap_err());
    assert!(error.contains("not valid YAML: line 4 column"), "{error}");
    assert!(!error.contains("hunter22") && !error.contains('\n'), "no line of the file: {error}");
    let json = write("a.json", "{\"name\": \"shop\", \"token\": \"hunter22-secret\" x}");
    let error = format!("{:#}", read(&json).unwrap_err());
    assert!(error.contains("not valid JSON: line 1 column"), "{error}");
    assert!(!error.contains("hunter22"), "{error}");
    let duplicate = write("d.yaml", "name: shop\npassword: hunter22-a\npassword: hunter22-b\n");
    let error = format!("{:#}", read(&duplicate).unwrap_err());
    assert!(error.contains("duplicate") && !error.contains("hunter22"), "{error}");
    // A link to the machine's own files, which report a size of 0.
    for target in ["/proc/self/environ", "/dev/zero", "/sys/kernel/hostname"] {
        let link = dir.path().join(format!("link-{}.yaml", target.replace('/', "-")));
        std::os::unix::fs::symlink(target, &link).unwrap();
        let error = read(&link).unwrap_err();
        assert_eq!(do_core::exit::exit_code_of(&error), do_core::Exit::Usage, "{target}");
        let text = format!("{error:#}");
        assert!(text.contains("a system file, not an app spec") || text.contains("cannot read"), "{target}: {text}");
    }
}

#[test]
fn loading_checks_the_allow_list_expands_and_wants_a_name_app_platform_takes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.yaml");
    std::fs::write(&path, "name: ${APP}\nservices: [{name: web, run_command: \"${MISSING}\"}]\n").unwrap();
    let env = env_of(&[("APP", "shop"), ("TOKEN_COPY", "dop_v1_secret")]);
    let allowed = ["APP".to_string(), "MISSING".to_string()];
    let (spec, _) = load(&path, &allowed, None, &env, true).unwrap();
    assert_eq!(spec, json!({"name": "shop"}), "only the name, expanded");
    assert!(format!("{:#}", load(&path, &allowed, None, &env, false).unwrap_err()).contains("${MISSING}"));
    let copy = ["TOKEN_COPY".to_string()];
    assert!(format!("{:#}", load(&path, &copy, Some("dop_v1_secret"), &env, true).unwrap_err())
        .contains("holds the DigitalOcean token"));
    // Not allowed: the name would reach App Platform as the text `${APP}`.
    let error = load(&path, &[], None, &env, true).unwrap_err();
    assert!(format!("{error:#}").contains("the spec refers to ${APP} which App Platform does not set"), "{error:#}");
    std::fs::write(&path, "name: Shop\n").unwrap();
    let error = load(&path, &[], None, &env, true).unwrap_err();
    assert!(format!("{error:#}").contains("--spec names the app \"Shop\""), "{error:#}");
}

#[test]
fn propose_errors_are_split_per_field() {
    let message = "error validating app spec field \"name\": too long\nerror validating app spec field \"services.image\": component \"web\": tag and digest";
    assert_eq!(
        field_errors(message),
        [
            ("name".to_string(), "too long".to_string()),
            ("services.image".to_string(), "component \"web\": tag and digest".to_string())
        ]
    );
    assert_eq!(field_errors("quota exceeded"), [("spec".to_string(), "quota exceeded".to_string())]);
}
