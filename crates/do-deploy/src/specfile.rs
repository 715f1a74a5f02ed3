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
    read_user_file("--spec", path, "an app spec")
}

/// A file a flag names, as text: a regular file outside the system trees (after every link is
/// resolved), read up to 1 MiB whatever size it reports; `what` it should be, for the errors.
pub(crate) fn read_user_file(flag: &str, path: &Path, what: &str) -> anyhow::Result<String> {
    use std::io::Read;
    let shown = path.display();
    let cannot = |e: std::io::Error| Failure::usage(format!("cannot read {flag} {shown}: {e}"));
    let real = std::fs::canonicalize(path).map_err(cannot)?;
    if SYSTEM_TREES.iter().any(|tree| real.starts_with(tree)) {
        return Err(Failure::usage(format!(
            "{flag} {shown} resolves to {}, a system file, not {what}; nothing was read",
            real.display()
        )));
    }
    if !std::fs::metadata(&real).map_err(cannot)?.is_file() {
        return Err(Failure::usage(format!("{flag} {shown} is not a regular file")));
    }
    let mut bytes = Vec::new();
    std::fs::File::open(&real).map_err(cannot)?.take(MAX_SPEC_BYTES + 1).read_to_end(&mut bytes).map_err(cannot)?;
    if bytes.len() as u64 > MAX_SPEC_BYTES {
        return Err(Failure::usage(format!("{flag} {shown} is over 1 MiB; {what} is a few KB")));
    }
    String::from_utf8(bytes).map_err(|_| Failure::usage(format!("{flag} {shown} is not UTF-8 text")))
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
        spec = name_and_images(&spec);
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

/// What deleting a preview needs of a spec, and no variable it might ask for: its name, and
/// each component's name and image (for --delete-images).
fn name_and_images(spec: &Value) -> Value {
    let mut kept = json!({"name": spec["name"].clone()});
    for list in crate::spec::COMPONENT_LISTS {
        let Some(components) = spec.get(list).and_then(Value::as_array) else { continue };
        let images: Vec<Value> = components
            .iter()
            .filter_map(|c| {
                c.get("image")
                    .map(|image| json!({"name": c.get("name").cloned().unwrap_or(Value::Null), "image": image}))
            })
            .collect();
        if !images.is_empty() {
            kept[list] = Value::Array(images);
        }
    }
    kept
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
#[path = "specfile_tests/tests.rs"]
mod tests;
