//! The app spec kept in the repository (`.do/app.yaml`): read as YAML or JSON, `${VAR}`
//! references expanded from an allow-list only, and turned into a preview app's spec. Pure
//! functions, checked before any request.

use std::collections::BTreeSet;
use std::path::Path;

use do_core::{validate, Failure};
use regex::Regex;
use serde_json::{json, Value};

/// The variable, on every component, that marks an app as a preview made by do-deploy; its
/// value is the preview's name. `--delete-preview` deletes nothing that lacks it.
pub const PREVIEW_MARKER: &str = "DO_RELEASE_PREVIEW";
/// App Platform's limit on app names.
pub const MAX_APP_NAME: usize = 32;
const MAX_SPEC_BYTES: u64 = 1 << 20;
/// Variables whose value is a DigitalOcean token: never written into a spec.
const TOKEN_VARIABLES: [&str; 2] = [do_core::api::TOKEN_VARIABLE, "DIGITALOCEAN_TOKEN"];
/// App Platform fills these in itself; a reference to one is not a mistake.
const APP_WIDE_VARIABLES: [&str; 3] = ["APP_URL", "APP_DOMAIN", "APP_ID"];

fn reference() -> &'static Regex {
    static REFERENCE: std::sync::OnceLock<Regex> = std::sync::OnceLock::new();
    // `$${NAME}` is the escape for the literal text `${NAME}`.
    REFERENCE.get_or_init(|| Regex::new(r"(\$?)\$\{([^}]*)\}").expect("a valid pattern"))
}

/// Where a spec file never lives: files there are the machine's, not the repository's (a
/// committed `.do/app.yaml -> /proc/self/environ` would read the CI environment).
const SYSTEM_TREES: [&str; 3] = ["/proc", "/sys", "/dev"];

/// The spec file's text: a regular file outside the system trees (after every link is
/// resolved), read up to 1 MiB whatever size it reports (files under /proc report 0).
fn read_capped(path: &Path) -> anyhow::Result<String> {
    use std::io::Read;
    let shown = path.display();
    let cannot = |e: std::io::Error| Failure::usage(format!("cannot read --spec {shown}: {e}"));
    let real = std::fs::canonicalize(path).map_err(cannot)?;
    if SYSTEM_TREES.iter().any(|tree| real.starts_with(tree)) {
        return Err(Failure::usage(format!(
            "--spec {shown} resolves to {}, a system file, not an app spec; nothing was read",
            real.display()
        )));
    }
    if !std::fs::metadata(&real).map_err(cannot)?.is_file() {
        return Err(Failure::usage(format!("--spec {shown} is not a regular file")));
    }
    let mut bytes = Vec::new();
    std::fs::File::open(&real).map_err(cannot)?.take(MAX_SPEC_BYTES + 1).read_to_end(&mut bytes).map_err(cannot)?;
    if bytes.len() as u64 > MAX_SPEC_BYTES {
        return Err(Failure::usage(format!("--spec {shown} is over 1 MiB; an app spec is a few KB")));
    }
    String::from_utf8(bytes).map_err(|_| Failure::usage(format!("--spec {shown} is not UTF-8 text")))
}

/// A YAML error as its place and kind, never the file's text (which may hold a secret): the
/// parser's own message without its snippet, and any quoted text in it elided.
fn yaml_problem(error: &serde_saphyr::Error) -> String {
    static QUOTED: std::sync::OnceLock<Regex> = std::sync::OnceLock::new();
    let quoted = QUOTED.get_or_init(|| Regex::new(r#""[^"]*"|'[^']*'|`[^`]*`"#).expect("a valid pattern"));
    let message = error.without_snippet().to_string();
    let first = message.trim_start_matches("error: ").lines().next().unwrap_or("");
    // The place once, in front: the parser may also end its message with it.
    let what = first.split(" at line ").next().unwrap_or(first);
    let what = quoted.replace_all(what, "\"…\"");
    match error.location() {
        Some(at) => format!("line {} column {}: {what}", at.line(), at.column()),
        None => what.into_owned(),
    }
}

/// Reads the spec file: JSON when it is named `*.json`, else YAML (which JSON also is).
pub fn read(path: &Path) -> anyhow::Result<Value> {
    let shown = path.display();
    let text = read_capped(path)?;
    let is_json = path.extension().is_some_and(|e| e.eq_ignore_ascii_case("json"));
    let spec: Value = if is_json {
        serde_json::from_str(&text).map_err(|e| {
            Failure::usage(format!("--spec {shown} is not valid JSON: line {} column {}", e.line(), e.column()))
        })?
    } else {
        parse_yaml(&text)
            .map_err(|e| Failure::usage(format!("--spec {shown} is not valid YAML: {}", yaml_problem(&e))))?
    };
    let Some(object) = spec.as_object() else {
        return Err(Failure::usage(format!(
            "--spec {shown} must be an app spec (a mapping with a name), not {}",
            kind_of(&spec)
        )));
    };
    if object.contains_key("spec") && !object.contains_key("name") {
        return Err(Failure::usage(format!(
            "--spec {shown} wraps the spec in `spec:`; give the spec itself (what `doctl apps spec get` prints)"
        )));
    }
    match object.get("name").and_then(Value::as_str) {
        Some(name) if !name.is_empty() => Ok(spec),
        _ => Err(Failure::usage(format!("--spec {shown} has no name: App Platform names the app by spec.name"))),
    }
}

/// The spec file as do-deploy deploys it: the `--spec-env` names checked (never the token), the
/// file read, `${NAME}` expanded, and its name one App Platform takes. With `name_only`, only the
/// name is kept and expanded (all that deleting a preview needs).
pub fn load(
    path: &Path,
    allowed: &[String],
    token: Option<&str>,
    env: &dyn Fn(&str) -> Option<String>,
    name_only: bool,
) -> anyhow::Result<(Value, Expansion)> {
    check_allowed(allowed, token, env)?;
    let mut spec = read(path)?;
    check_known_keys(path, &spec)?;
    if name_only {
        spec = json!({"name": spec["name"].clone()});
    }
    let expansion = expand(&mut spec, allowed, env)?;
    let name = spec.get("name").and_then(Value::as_str).unwrap_or("");
    if !crate::spec::valid_app_name(name) {
        return Err(Failure::usage(format!(
            "--spec names the app {}: App Platform wants 2 to 32 lowercase letters, digits and dashes, starting with a letter",
            validate::shown(name)
        )));
    }
    Ok((spec, expansion))
}

/// Refuses a spec with a key no field of its place is named (exit 2), naming each with where it
/// is and the nearest known key: App Platform would drop it without a word.
fn check_known_keys(path: &Path, spec: &Value) -> anyhow::Result<()> {
    let unknown = crate::speckeys::unknown_keys(spec);
    if unknown.is_empty() {
        return Ok(());
    }
    let lines: Vec<String> = unknown
        .iter()
        .map(|u| {
            let at = if u.at.is_empty() { "at the top".to_string() } else { format!("in {}", u.at) };
            let hint = u.nearest.as_ref().map(|n| format!("; did you mean {n}?")).unwrap_or_default();
            format!("  {} {at}{hint}", validate::shown(&u.key))
        })
        .collect();
    Err(Failure::usage(format!(
        "--spec {} has {} key{} App Platform's app spec does not have (it would drop them without a word):\n{}",
        path.display(),
        unknown.len(),
        if unknown.len() == 1 { "" } else { "s" },
        lines.join("\n")
    )))
}

/// YAML as YAML 1.2 and GitHub read it: `yes`, `no`, `on` and `off` are strings,
/// not booleans (so an env `value: off` stays "off"), a key given twice is an error, and
/// aliases cannot expand without bound.
pub fn parse_yaml(text: &str) -> Result<Value, serde_saphyr::Error> {
    serde_saphyr::from_str_with_options(text, serde_saphyr::options! { strict_booleans: true })
}

fn kind_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "nothing",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a mapping",
    }
}

/// An environment variable's name: letters, digits and `_`, not starting with a digit.
fn is_variable_name(name: &str) -> bool {
    !name.is_empty()
        && !name.as_bytes()[0].is_ascii_digit()
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// Checks the `--spec-env` names: variable names, none of them a token's.
pub fn check_allowed(
    names: &[String],
    token: Option<&str>,
    env: &dyn Fn(&str) -> Option<String>,
) -> anyhow::Result<()> {
    for name in names {
        if !is_variable_name(name) {
            return Err(Failure::usage(format!(
                "invalid --spec-env {}: give a variable name like IMAGE_TAG",
                validate::shown(name)
            )));
        }
        let holds_token = token.is_some_and(|token| env(name).is_some_and(|value| value.contains(token)));
        if TOKEN_VARIABLES.contains(&name.as_str()) || holds_token {
            return Err(Failure::usage(format!(
                "--spec-env {name}: that variable holds the DigitalOcean token, which never goes into an app spec"
            )));
        }
    }
    Ok(())
}

/// What expanding the spec's references did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Expansion {
    /// Values of SECRET variables and credential fields, given in the file or expanded into it:
    /// they must never be shown.
    pub secret_values: Vec<String>,
}

/// Whether App Platform resolves `${NAME}` itself: its app-wide variables, and bindable ones
/// with a dot (`${_self.PRIVATE_URL}`, `${db.DATABASE_URL}`, `${web.PUBLIC_URL}`).
fn app_platforms(name: &str) -> bool {
    name.contains('.') || APP_WIDE_VARIABLES.contains(&name)
}

/// Replaces each `${NAME}` in the spec's string values whose NAME is in `allowed` with the
/// variable's value; an allowed one that is unset is an error naming every such variable.
/// App Platform's own references stay as written (it resolves them), `$${NAME}` becomes the
/// literal `${NAME}`, and any other reference is an error: deployed as written, it would reach
/// the app as the text `${NAME}` (a forgotten `--spec-env`). Values are substituted into parsed
/// strings, so a value cannot add structure to the spec.
pub fn expand(spec: &mut Value, allowed: &[String], env: &dyn Fn(&str) -> Option<String>) -> anyhow::Result<Expansion> {
    let mut expansion = Expansion::default();
    let mut unset = BTreeSet::new();
    let mut unknown = BTreeSet::new();
    walk_strings(spec, false, &mut |text, secret| {
        if !text.contains("${") {
            if secret && !text.is_empty() && !text.starts_with("EV[") {
                expansion.secret_values.push(text.clone());
            }
            return;
        }
        let mut substituted = false;
        let replaced = reference().replace_all(text, |captures: &regex::Captures| {
            let name = &captures[2];
            if !captures[1].is_empty() {
                substituted = true;
                return format!("${{{name}}}");
            }
            if !allowed.iter().any(|a| a == name) {
                if !app_platforms(name) {
                    unknown.insert(name.to_string());
                }
                return captures[0].to_string();
            }
            substituted = true;
            env(name).unwrap_or_else(|| {
                unset.insert(name.to_string());
                String::new()
            })
        });
        if secret && !replaced.is_empty() {
            expansion.secret_values.push(replaced.to_string());
        }
        if substituted {
            *text = replaced.into_owned();
        }
    });
    if let Some(token) = unknown.iter().find(|n| TOKEN_VARIABLES.contains(&n.as_str())) {
        return Err(Failure::usage(format!(
            "the spec refers to ${{{token}}}: the DigitalOcean token never goes into an app spec; remove the reference"
        )));
    }
    if !unknown.is_empty() {
        let shown: Vec<String> = unknown.iter().map(|n| format!("${{{n}}}")).collect();
        return Err(Failure::usage(format!(
            "the spec refers to {} which App Platform does not set and --spec-env does not allow, so the app would get the text as written; pass {} to expand it, or write $${{NAME}} for the literal text",
            shown.join(", "),
            unknown.iter().map(|n| format!("--spec-env {n}")).collect::<Vec<_>>().join(" "),
        )));
    }
    if !unset.is_empty() {
        let names: Vec<String> = unset.into_iter().collect();
        return Err(Failure::usage(format!(
            "the spec refers to {} (allowed with --spec-env) but {} not set; set {} or drop the reference",
            names.iter().map(|n| format!("${{{n}}}")).collect::<Vec<_>>().join(", "),
            if names.len() == 1 { "it is" } else { "they are" },
            if names.len() == 1 { "it" } else { "them" },
        )));
    }
    Ok(expansion)
}

/// Spec fields that hold a credential wherever they appear, as the App Platform spec has them:
/// a private image's `registry_credentials` (`user:token`), log destinations' Datadog
/// `api_key`, Logtail `token` and OpenSearch `basic_auth.password`.
const CREDENTIAL_FIELDS: [&str; 4] = ["registry_credentials", "api_key", "token", "password"];

/// Whether `map[key]` holds a secret: a SECRET variable's value, or a credential field. The
/// one rule the expansion (which registers secrets for redaction) and the diff (which never
/// shows them) share.
pub fn is_secret(map: &serde_json::Map<String, Value>, key: &str) -> bool {
    let secret_env =
        key == "value" && map.get("type").and_then(Value::as_str) == Some("SECRET") && map.contains_key("key");
    secret_env || CREDENTIAL_FIELDS.contains(&key)
}

/// Calls `visit` on every string value (not keys), saying whether it holds a secret.
fn walk_strings(value: &mut Value, secret: bool, visit: &mut dyn FnMut(&mut String, bool)) {
    match value {
        Value::String(text) => visit(text, secret),
        Value::Array(items) => items.iter_mut().for_each(|item| walk_strings(item, false, visit)),
        Value::Object(map) => {
            let secrets: Vec<bool> = map.keys().map(|key| is_secret(map, key)).collect();
            for ((_, inner), secret) in map.iter_mut().zip(secrets) {
                walk_strings(inner, secret, visit);
            }
        }
        _ => {}
    }
}

/// Checks a `--preview` name: lowercase letters, digits and dashes, like `pr-42`.
pub fn check_preview_name(name: &str) -> anyhow::Result<()> {
    let bytes = name.as_bytes();
    let valid = (1..=MAX_APP_NAME).contains(&bytes.len())
        && bytes.iter().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
        && bytes[0] != b'-'
        && bytes[bytes.len() - 1] != b'-';
    if valid {
        Ok(())
    } else {
        Err(Failure::usage(format!(
            "invalid preview name {}: use lowercase letters, digits and dashes, like pr-42",
            validate::shown(name)
        )))
    }
}

/// The preview app's name: `BASE-PREVIEW`, or, past App Platform's 32 characters, the start of
/// BASE, 6 hex characters of a hash of BASE, and PREVIEW whole (`checkout-service-p-1a2b3c-pr-1703`
/// cut to fit): the same inputs always give the same name, and two previews of one spec never
/// share one, since their own names differ. A preview name too long to leave room for that
/// gets the start of the whole and 12 hex characters of its hash.
pub fn preview_app_name(base: &str, preview: &str) -> String {
    let full = format!("{base}-{preview}");
    if full.len() <= MAX_APP_NAME {
        return full;
    }
    let hex = |text: &str, bytes: usize| -> String {
        let hash = ring::digest::digest(&ring::digest::SHA256, text.as_bytes());
        hash.as_ref()[..bytes].iter().map(|b| format!("{b:02x}")).collect()
    };
    let base_room = MAX_APP_NAME.checked_sub(preview.len() + 1 + 6 + 1).filter(|room| *room > 0);
    match base_room {
        Some(room) => {
            let start = base[..room.min(base.len())].trim_end_matches('-');
            format!("{start}-{}-{preview}", hex(base, 3))
        }
        None => {
            let suffix = hex(&full, 6);
            format!("{}-{suffix}", full[..MAX_APP_NAME - suffix.len() - 1].trim_end_matches('-'))
        }
    }
}

/// Checks `--preview-env KEY=VALUE` and splits it. The token never goes into a preview, whose
/// pull request's code could read it: not under a token variable's name, not as a value.
pub fn parse_preview_env(text: &str, token: Option<&str>) -> anyhow::Result<(String, String)> {
    let bad = || Failure::usage(format!("invalid --preview-env {}: give KEY=VALUE", validate::shown(text)));
    let (key, value) = text.split_once('=').ok_or_else(bad)?;
    if !is_variable_name(key) {
        return Err(bad());
    }
    if TOKEN_VARIABLES.contains(&key) || token.is_some_and(|token| !token.is_empty() && value.contains(token)) {
        return Err(Failure::usage(format!(
            "--preview-env {key}: the DigitalOcean token never goes into an app spec (a preview's code could read it)"
        )));
    }
    if key == PREVIEW_MARKER {
        return Err(Failure::usage(format!("--preview-env {PREVIEW_MARKER} is set by do-deploy itself")));
    }
    Ok((key.to_string(), value.to_string()))
}

/// The spec of the preview app `preview`: renamed, without domains and alerts (they belong to
/// the production app), and every component marked with [`PREVIEW_MARKER`] and given the extra
/// variables. (Component variables, not app-wide ones: App Platform's published spec declares
/// `envs` only on components.)
pub fn for_preview(spec: &Value, preview: &str, extra_envs: &[(String, String)]) -> Value {
    let mut spec = spec.clone();
    let base = spec.get("name").and_then(Value::as_str).unwrap_or("app").to_string();
    let Some(top) = spec.as_object_mut() else { return spec };
    top.insert("name".into(), json!(preview_app_name(&base, preview)));
    top.remove("domains");
    top.remove("alerts");
    for list in crate::spec::COMPONENT_LISTS {
        for component in top.get_mut(list).and_then(Value::as_array_mut).into_iter().flatten() {
            let Some(component) = component.as_object_mut() else { continue };
            component.remove("alerts");
            let envs = component.entry("envs").or_insert_with(|| json!([]));
            if !envs.is_array() {
                *envs = json!([]);
            }
            let envs = envs.as_array_mut().expect("made a list above");
            let mut set = |key: &str, value: &str, scope: &str| {
                envs.retain(|env| env.get("key").and_then(Value::as_str) != Some(key));
                envs.push(json!({"key": key, "value": value, "scope": scope, "type": "GENERAL"}));
            };
            set(PREVIEW_MARKER, preview, "RUN_TIME");
            for (key, value) in extra_envs {
                set(key, value, "RUN_AND_BUILD_TIME");
            }
        }
    }
    spec
}

/// The preview name an app's spec is marked with: every component (and at least one) carries
/// the same [`PREVIEW_MARKER`]. Anything else is not a preview made by do-deploy.
pub fn preview_marker(spec: &Value) -> Option<&str> {
    preview_marks(spec).next().flatten().filter(|first| preview_marks(spec).all(|mark| mark == Some(*first)))
}

/// Whether any component carries [`PREVIEW_MARKER`] at all: only do-deploy --preview sets it,
/// and only on a preview app (else `--delete-preview` could one day delete that app).
pub fn carries_preview_mark(spec: &Value) -> bool {
    preview_marks(spec).any(|mark| mark.is_some())
}

/// Each component's mark (None where it has none).
fn preview_marks(spec: &Value) -> impl Iterator<Item = Option<&str>> {
    crate::spec::COMPONENT_LISTS.iter().flat_map(|list| {
        spec.get(*list).and_then(Value::as_array).into_iter().flatten().map(|component| {
            component
                .get("envs")
                .and_then(Value::as_array)
                .and_then(|envs| envs.iter().find(|env| env.get("key").and_then(Value::as_str) == Some(PREVIEW_MARKER)))
                .and_then(|env| env.get("value"))
                .and_then(Value::as_str)
        })
    })
}

/// Gives each SECRET variable the file leaves without a value the live app's (encrypted)
/// value, so secrets set in the control panel survive a deploy from the file.
pub fn keep_live_secrets(new: &mut Value, live: &Value) {
    fn carry(envs: Option<&mut Value>, live_envs: Option<&Value>) {
        let (Some(Value::Array(envs)), Some(Value::Array(live_envs))) = (envs, live_envs) else { return };
        for env in envs.iter_mut() {
            let secret = env.get("type").and_then(Value::as_str) == Some("SECRET");
            let empty = env.get("value").and_then(Value::as_str).is_none_or(str::is_empty);
            if !(secret && empty) {
                continue;
            }
            let key = env.get("key").cloned();
            let live_value = live_envs
                .iter()
                .find(|l| l.get("key") == key.as_ref() && l.get("type").and_then(Value::as_str) == Some("SECRET"))
                .and_then(|l| l.get("value"))
                .filter(|v| v.as_str().is_some_and(|s| !s.is_empty()));
            if let (Some(value), Some(env)) = (live_value, env.as_object_mut()) {
                env.insert("value".into(), value.clone());
            }
        }
    }
    carry(new.get_mut("envs"), live.get("envs"));
    for list in crate::spec::COMPONENT_LISTS {
        let Some(components) = new.get_mut(list).and_then(Value::as_array_mut) else { continue };
        for component in components {
            let name = component.get("name").cloned();
            let live_component = live
                .get(list)
                .and_then(Value::as_array)
                .and_then(|all| all.iter().find(|c| c.get("name") == name.as_ref()));
            carry(component.get_mut("envs"), live_component.and_then(|c| c.get("envs")));
        }
    }
}

/// The field errors in a propose (or create) refusal: App Platform words each one
/// `error validating app spec field "FIELD": WHY`; anything else is one error about the spec.
pub fn field_errors(message: &str) -> Vec<(String, String)> {
    static FIELD: std::sync::OnceLock<Regex> = std::sync::OnceLock::new();
    let field = FIELD
        .get_or_init(|| Regex::new(r#"(?i)error validating app spec field "([^"]*)":\s*"#).expect("a valid pattern"));
    let starts: Vec<(usize, usize, String)> = field
        .captures_iter(message)
        .map(|c| {
            let whole = c.get(0).expect("group 0");
            (whole.start(), whole.end(), c[1].to_string())
        })
        .collect();
    if starts.is_empty() {
        return vec![("spec".into(), message.trim().to_string())];
    }
    starts
        .iter()
        .enumerate()
        .map(|(i, (_, end, name))| {
            let until = starts.get(i + 1).map_or(message.len(), |next| next.0);
            let why = message[*end..until].trim().trim_end_matches([';', ',']).trim();
            (name.clone(), why.to_string())
        })
        .collect()
}

#[cfg(test)]
mod tests {
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
        assert!(
            long.starts_with("a-very-long-produ-") && long.ends_with("-pr-1234"),
            "the preview's name whole: {long}"
        );
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
            let modes: Vec<&Value> =
                component["envs"].as_array().unwrap().iter().filter(|e| e["key"] == "MODE").collect();
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
            assert!(
                text.contains("a system file, not an app spec") || text.contains("cannot read"),
                "{target}: {text}"
            );
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
        assert!(
            format!("{error:#}").contains("the spec refers to ${APP} which App Platform does not set"),
            "{error:#}"
        );
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
}
