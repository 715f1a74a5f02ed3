//! What must not be deleted: images named on the input (`image`, `deploy` and `tag` records),
//! and every image App Platform runs, is about to run, or may roll back to.
//!
//! Input records are parsed strictly before any request: every form the tools themselves write
//! is understood (`web@sha256:…`, `web:v1`, a full `registry.digitalocean.com/reg/web:v1`, a
//! repository written with its registry, a digest in upper case or padded), and a record that
//! cannot be understood stops the run with exit 2. Reading the apps fails closed: an app or a
//! deployment list that cannot be read stops the prune before anything is deleted.

use std::collections::BTreeMap;

use anyhow::Context;
use do_core::api::segment;
use do_core::contract::{Input, Line};
use do_core::digest::Digest;
use do_core::oci::normalize_digest;
use do_core::types::{App, Deployment, Manifest, Phase};
use do_core::{validate, Client, Failure};
use serde_json::Value;

use crate::policy::Protected;

const DOCR_HOST: &str = "registry.digitalocean.com/";
/// How non-DOCR images appear in `deploy` records (`docker_hub:library/nginx:1`).
const OTHER_REGISTRY_KINDS: [&str; 2] = ["docker_hub:", "ghcr:"];

/// What a reference points at.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    Digest(String),
    Tag(String),
}

/// A reference from an input record, parsed before the registry is known.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reference {
    /// The repository path as written (host removed); it may start with the registry's name.
    pub path: String,
    /// The registry the record names, when it names one.
    pub registry: Option<String>,
    pub target: Target,
    pub reason: String,
    /// The input line it came from (0 when not from the input).
    pub line: usize,
}

impl Reference {
    /// Whether the reference is about `repository` of `registry`: the path is the repository,
    /// or the registry's name followed by it. Both readings are protected when both exist.
    pub fn matches(&self, registry: &str, repository: &str) -> bool {
        if self.registry.as_deref().is_some_and(|named| named != registry) {
            return false;
        }
        self.path == repository
            || self.path.strip_prefix(registry).and_then(|r| r.strip_prefix('/')) == Some(repository)
    }
}

/// What the input asks to protect.
#[derive(Clone, Debug, Default)]
pub struct InputProtection {
    pub references: Vec<Reference>,
    /// Image tags named by `tag` records, protected in every repository: (tag, reason).
    pub tags: Vec<(String, String)>,
}

/// The references of the input: digests and tags to protect. Any record of these kinds that
/// cannot be understood is a usage error naming its line.
pub fn from_input(input: &Input) -> anyhow::Result<InputProtection> {
    let mut references = Vec::new();
    let mut any_repository_tags = Vec::new();
    for line in &input.lines {
        let at = |problem: String| {
            Failure::usage(format!("input line {}: {} record: {problem}", line.number, line.record.kind))
        };
        let numbered = |found: Vec<Reference>| found.into_iter().map(|r| Reference { line: line.number, ..r });
        match line.record.kind.as_str() {
            "image" => references.extend(numbered(image_record(line).map_err(at)?)),
            "deploy" => references.extend(numbered(deploy_record(line).map_err(at)?)),
            "tag" => any_repository_tags.extend(tag_record(line).map_err(at)?),
            _ => {}
        }
    }
    Ok(InputProtection { references, tags: any_repository_tags })
}

fn text<'a>(line: &'a Line, field: &str) -> Result<Option<&'a str>, String> {
    match line.record.data.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(other) => Err(format!("{field} must be a string, not {other}")),
    }
}

fn image_record(line: &Line) -> Result<Vec<Reference>, String> {
    let registry = text(line, "registry")?.unwrap_or_default().trim();
    validate::registry_name(registry).map_err(|e| e.to_string())?;
    let repository = text(line, "repository")?.unwrap_or_default().trim();
    let path = repository.strip_prefix(DOCR_HOST).unwrap_or(repository);
    validate::repository_name(path).map_err(|e| e.to_string())?;
    let digest = digest(text(line, "digest")?.unwrap_or_default())?;
    let reason = "named by the image record".to_string();
    let mut references = vec![Reference {
        path: path.to_string(),
        registry: Some(registry.to_string()),
        target: Target::Digest(digest),
        reason: reason.clone(),
        line: 0,
    }];
    if let Some(image) = text(line, "image")? {
        let mut parsed = parse_reference(image, &reason)?;
        parsed.iter_mut().for_each(|r| r.registry = r.registry.clone().or(Some(registry.to_string())));
        references.extend(parsed);
    }
    Ok(references)
}

fn deploy_record(line: &Line) -> Result<Vec<Reference>, String> {
    let mut texts: Vec<&str> = text(line, "image")?.into_iter().collect();
    match line.record.data.get("components") {
        None | Some(Value::Null) => {}
        Some(Value::Array(components)) => {
            for component in components {
                match component.get("image_after") {
                    None | Some(Value::Null) => {}
                    Some(Value::String(image)) => texts.push(image),
                    Some(other) => return Err(format!("components[].image_after must be a string, not {other}")),
                }
            }
        }
        Some(other) => return Err(format!("components must be a list, not {other}")),
    }
    let mut references = Vec::new();
    for image in texts {
        if OTHER_REGISTRY_KINDS.iter().any(|kind| image.starts_with(kind)) {
            continue;
        }
        references.extend(parse_reference(image, "deployed by the deploy record")?);
    }
    Ok(references)
}

/// A `tag` record protects the image tags its git tag can stand for, in every repository.
fn tag_record(line: &Line) -> Result<Vec<(String, String)>, String> {
    let tag = text(line, "tag")?.unwrap_or_default().trim();
    let mut candidates = vec![tag];
    if let Some((_, last)) = tag.rsplit_once('/') {
        candidates.push(last);
    }
    if let Some(version) = text(line, "version")? {
        candidates.push(version.trim());
    }
    let valid: Vec<(String, String)> = candidates
        .into_iter()
        .filter(|c| validate::tag_name(c).is_ok())
        .map(|c| (c.to_string(), format!("tag {c} named by the tag record")))
        .collect();
    if valid.is_empty() {
        return Err(format!("{} is not an image tag and names none", validate::shown(tag)));
    }
    Ok(valid)
}

fn digest(text: &str) -> Result<String, String> {
    let normalized = normalize_digest(text);
    validate::digest(&normalized).map_err(|e| e.to_string())?;
    Ok(normalized)
}

/// Parses `[registry.digitalocean.com/]PATH[:TAG][@DIGEST]`; with both a tag and a digest,
/// both are protected.
pub fn parse_reference(text: &str, reason: &str) -> Result<Vec<Reference>, String> {
    let trimmed = text.trim();
    let rest = trimmed.strip_prefix(DOCR_HOST).unwrap_or(trimmed);
    let (path_and_tag, digest_text) = match rest.split_once('@') {
        Some((before, digest)) => (before, Some(digest)),
        None => (rest, None),
    };
    let (path, tag) = match path_and_tag.rfind(':') {
        Some(colon) if !path_and_tag[colon..].contains('/') => {
            (&path_and_tag[..colon], Some(&path_and_tag[colon + 1..]))
        }
        _ => (path_and_tag, None),
    };
    validate::repository_name(path).map_err(|e| format!("{}: {e}", validate::shown(text)))?;
    let reference =
        |target| Reference { path: path.to_string(), registry: None, target, reason: reason.to_string(), line: 0 };
    let mut references = Vec::new();
    if let Some(digest_text) = digest_text {
        references.push(reference(Target::Digest(
            digest(digest_text).map_err(|e| format!("{}: {e}", validate::shown(text)))?,
        )));
    }
    if let Some(tag) = tag {
        validate::tag_name(tag).map_err(|e| format!("{}: {e}", validate::shown(text)))?;
        references.push(reference(Target::Tag(tag.to_string())));
    }
    if references.is_empty() {
        references.push(reference(Target::Tag("latest".into())));
    }
    Ok(references)
}

/// Every input reference must protect something real: one naming another registry than the
/// one pruned is exit 2 unless `--registry` chose that registry on purpose (then it protects
/// nothing here, with a warning), and one naming a repository the registry does not have (a
/// typo such as `webb`) is exit 2, since the image it meant would otherwise go unprotected.
/// Returns the warnings.
pub fn check_references<'a>(
    references: &[Reference],
    registry: &str,
    registry_chosen: bool,
    repositories: impl Iterator<Item = &'a str> + Clone,
) -> anyhow::Result<Vec<String>> {
    let mut warnings = Vec::new();
    for reference in references {
        let at = format!("input line {}", reference.line);
        if let Some(other) = reference.registry.as_deref().filter(|r| *r != registry) {
            let problem = format!("{at}: the record names {}@… in registry {other}, not {registry}", reference.path);
            if registry_chosen {
                warnings.push(format!("{problem}; it protects nothing here"));
                continue;
            }
            return Err(Failure::usage(format!(
                "{problem}; nothing was deleted (pass --registry {registry} to prune it anyway)"
            )));
        }
        if !repositories.clone().any(|repository| reference.matches(registry, repository)) {
            return Err(Failure::usage(format!(
                "{at}: the record names repository {:?}, which registry {registry} does not have, so the image it protects is unknown; nothing was deleted (check the record; the registry has: {})",
                reference.path,
                repositories.clone().collect::<Vec<_>>().join(", ")
            )));
        }
    }
    Ok(warnings)
}

/// An image reference found in an app spec, not yet resolved to a digest when it is a tag.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SpecImage {
    /// The `registry` field, when the spec names one (empty for DOCR in the usual case).
    pub registry: Option<String>,
    pub repository: String,
    pub tag: Option<String>,
    pub digest: Option<String>,
    pub reason: String,
}

/// The DOCR images of an app spec.
pub fn spec_images(spec: &Value, reason: &str) -> Vec<SpecImage> {
    let mut images = Vec::new();
    for list in ["services", "workers", "jobs"] {
        for component in spec.get(list).and_then(Value::as_array).into_iter().flatten() {
            let Some(image) = component.get("image") else { continue };
            let text = |key: &str| image.get(key).and_then(Value::as_str).filter(|s| !s.is_empty()).map(str::to_string);
            if text("registry_type").as_deref() != Some("DOCR") {
                continue;
            }
            let Some(repository) = text("repository") else { continue };
            let digest = text("digest").map(|d| normalize_digest(&d));
            let tag = if digest.is_some() { None } else { Some(text("tag").unwrap_or_else(|| "latest".into())) };
            images.push(SpecImage { registry: text("registry"), repository, tag, digest, reason: reason.to_string() });
        }
    }
    images
}

impl SpecImage {
    /// Whether the image lives in `registry`: DOCR images name no registry, or name this one.
    pub fn in_registry(&self, registry: &str) -> bool {
        self.registry.as_deref().is_none_or(|named| named == registry)
    }
}

/// Every image of `registry` that any app of the account needs: protection never depends on
/// which apps are named. Each app named by `--protect-app` (name or id) must exist and use the
/// registry (in its spec or its deployments), else it is a usage error naming it.
pub fn from_apps(
    client: &Client,
    registry: &str,
    named: &[String],
    keep_rollback: usize,
) -> anyhow::Result<Vec<SpecImage>> {
    let apps: Vec<App> = client
        .get_all("/v2/apps", "apps")
        .context("cannot list the apps to protect their images; nothing was deleted")?;
    for wanted in named {
        if !apps.iter().any(|app| app.id == *wanted || app.name() == wanted) {
            return Err(Failure::usage(format!(
                "--protect-app {wanted:?}: no such app; the account has: {}",
                apps.iter().map(App::name).collect::<Vec<_>>().join(", ")
            )));
        }
    }
    let mut images = Vec::new();
    for app in &apps {
        let name = app.name();
        let path = format!("/v2/apps/{}/deployments?page=1&per_page=200", segment(&app.id));
        let deployments: Vec<Deployment> = client
            .get_page(&path, "deployments")
            .with_context(|| format!("cannot read the deployments of app {name}; nothing was deleted"))?;
        let needed = app_images(app, &deployments, keep_rollback);
        let is_named = named.iter().any(|wanted| app.id == *wanted || name == wanted);
        if is_named && !needed.iter().any(|image| image.in_registry(registry)) {
            return Err(Failure::usage(format!(
                "--protect-app {name:?}: the app runs no image of registry {registry}, so it needs nothing here; check the app or the registry"
            )));
        }
        images.extend(needed);
    }
    Ok(images)
}

/// The DOCR images one app needs, each with why: what its deployments in progress or pending
/// run, the active one, its spec, and the images of its last `keep_rollback` distinct images
/// per component that were ACTIVE before being superseded. A redeploy of an image already
/// counted (a config change, a restart) is no new rollback target, so it never pushes an older
/// image out; a superseded deployment that may never have been ACTIVE is protected while the
/// count is not reached, without counting.
pub fn app_images(app: &App, deployments: &[Deployment], keep_rollback: usize) -> Vec<SpecImage> {
    let name = app.name();
    let short = |id: &str| id[..id.len().min(8)].to_string();
    let mut images = Vec::new();
    // Per component: the images counted so far (what runs now first), and how many were rollback targets.
    let mut seen: BTreeMap<String, Vec<SpecImage>> = BTreeMap::new();
    let mut counted: BTreeMap<String, usize> = BTreeMap::new();
    let running = deployments.iter().filter(|d| !d.phase.is_terminal() || d.phase == Phase::Active);
    let current = [&app.active_deployment, &app.in_progress_deployment, &app.pending_deployment];
    for spec in running.map(|d| &d.spec).chain(current.into_iter().flatten().map(|d| &d.spec)) {
        for (component, image) in component_images(spec) {
            seen.entry(component).or_default().push(image);
        }
    }
    for deployment in deployments {
        let id = short(&deployment.id);
        let reason = match &deployment.phase {
            phase if !phase.is_terminal() => {
                format!("{} deployment {id} of app {name}", phase.as_str().to_lowercase().replace('_', " "))
            }
            Phase::Active => format!("active deployment {id} of app {name}"),
            Phase::Superseded => {
                let components = component_images(&deployment.spec);
                let wanted = components.iter().any(|(c, _)| counted.get(c).copied().unwrap_or(0) < keep_rollback);
                if !wanted {
                    continue;
                }
                if ran_to_the_end(deployment) {
                    for (component, image) in components {
                        let known = seen.entry(component.clone()).or_default();
                        if !known.iter().any(|k| same_image(k, &image)) {
                            known.push(image);
                            *counted.entry(component).or_default() += 1;
                        }
                    }
                }
                format!("rollback target {id} of app {name} (--keep-rollback)")
            }
            _ => continue,
        };
        images.extend(spec_images(&deployment.spec, &reason));
    }
    for deployment in current.into_iter().flatten() {
        images.extend(spec_images(&deployment.spec, &format!("deployment {} of app {name}", short(&deployment.id))));
    }
    // Last, so that a more specific reason wins: what the next deployment would run.
    images.extend(spec_images(&app.spec, &format!("in the spec of app {name}")));
    images
}

/// The DOCR image of each component of a spec: (component name, image).
fn component_images(spec: &Value) -> Vec<(String, SpecImage)> {
    let mut found = Vec::new();
    for list in ["services", "workers", "jobs"] {
        for component in spec.get(list).and_then(Value::as_array).into_iter().flatten() {
            let name = component.get("name").and_then(Value::as_str).unwrap_or_default();
            let one = serde_json::json!({ list: [component] });
            for image in spec_images(&one, "") {
                found.push((format!("{list}/{name}"), image));
            }
        }
    }
    found
}

/// Whether two spec images are the same image (registry, repository, tag or digest).
fn same_image(a: &SpecImage, b: &SpecImage) -> bool {
    (&a.registry, &a.repository, &a.tag, &a.digest) == (&b.registry, &b.repository, &b.tag, &b.digest)
}

/// Whether a SUPERSEDED deployment had finished every step (so it was ACTIVE before it was replaced).
fn ran_to_the_end(deployment: &Deployment) -> bool {
    deployment
        .progress
        .as_ref()
        .is_some_and(|p| p.total_steps.is_some_and(|t| t > 0) && p.success_steps == p.total_steps)
}

/// Everything that protects something in `repository` of `registry`: input references, tags
/// named by tag records, and app images, resolved against the repository's manifests.
pub fn resolve(
    references: &[Reference],
    any_repository_tags: &[(String, String)],
    images: &[SpecImage],
    registry: &str,
    repository: &str,
    manifests: &[Manifest],
) -> Protected {
    let by_tag: BTreeMap<&str, &Digest> =
        manifests.iter().flat_map(|m| m.tags.iter().map(move |t| (t.as_str(), &m.digest))).collect();
    let mut protected = Protected::default();
    let protect_tag = |protected: &mut Protected, tag: &str, reason: &str| {
        protected.tags.entry(tag.to_string()).or_insert_with(|| reason.to_string());
        if let Some(digest) = by_tag.get(tag) {
            protected.digests.entry((*digest).clone()).or_insert_with(|| reason.to_string());
        }
    };
    for image in images.iter().filter(|i| i.repository == repository && i.in_registry(registry)) {
        match (&image.digest, &image.tag) {
            (Some(digest), _) => {
                protected.digests.entry(Digest::new(digest)).or_insert_with(|| image.reason.clone());
            }
            (None, Some(tag)) => protect_tag(&mut protected, tag, &image.reason),
            (None, None) => {}
        }
    }
    for reference in references.iter().filter(|r| r.matches(registry, repository)) {
        match &reference.target {
            Target::Digest(digest) => {
                protected.digests.entry(Digest::new(digest)).or_insert_with(|| reference.reason.clone());
            }
            Target::Tag(tag) => protect_tag(&mut protected, tag, &reference.reason),
        }
    }
    for (tag, reason) in any_repository_tags {
        protect_tag(&mut protected, tag, reason);
    }
    protected
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(lines: &[&str]) -> Input {
        Input::parse(lines.join("\n").as_bytes()).unwrap()
    }

    const DIGEST: &str = "sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";

    #[test]
    fn every_form_the_tools_write_is_understood() {
        let upper = DIGEST.to_uppercase().replace("SHA256", "sha256");
        let lines = [
            format!(
                r#"{{"kind":"image","v":1,"data":{{"registry":"reg","repository":"reg/web","digest":"  {upper} "}}}}"#
            ),
            format!(
                r#"{{"kind":"image","v":1,"data":{{"registry":"reg","repository":"web","digest":"{DIGEST}","image":"registry.digitalocean.com/reg/web:v1.5.0"}}}}"#
            ),
            format!(
                r#"{{"kind":"deploy","v":1,"data":{{"app_id":"a","phase":"ACTIVE","changed":true,"image":"web:v0","components":[{{"image_after":"registry.digitalocean.com/reg/api@{DIGEST}"}},{{"image_after":"docker_hub:library/nginx:1"}}]}}}}"#
            ),
            r#"{"kind":"tag","v":1,"data":{"tag":"api/v2.0.0","version":"2.0.0","commit":"c"}}"#.to_string(),
        ];
        let InputProtection { references, tags } =
            from_input(&input(&lines.iter().map(String::as_str).collect::<Vec<_>>())).unwrap();
        let first = &references[0];
        assert_eq!((first.path.as_str(), &first.target), ("reg/web", &Target::Digest(DIGEST.into())));
        assert!(first.matches("reg", "web") && first.matches("reg", "reg/web") && !first.matches("other", "web"));
        assert!(references.iter().any(|r| r.target == Target::Tag("v1.5.0".into()) && r.matches("reg", "web")));
        assert!(references.iter().any(|r| r.target == Target::Tag("v0".into()) && r.path == "web"));
        assert!(references.iter().any(|r| r.target == Target::Digest(DIGEST.into()) && r.matches("reg", "api")));
        assert!(!references.iter().any(|r| r.path.contains("nginx")), "images of other registries are not ours");
        let names: Vec<&str> = tags.iter().map(|(t, _)| t.as_str()).collect();
        assert_eq!(names, ["v2.0.0", "2.0.0"], "api/v2.0.0 is no image tag; what it stands for is protected");
    }

    #[test]
    fn records_that_cannot_be_understood_are_usage_errors_naming_the_line() {
        let cases = [
            (
                r#"{"kind":"image","v":1,"data":{"registry":"reg","repository":"web","digest":"sha256:zz"}}"#,
                "invalid digest",
            ),
            (
                r#"{"kind":"image","v":1,"data":{"registry":"Reg","repository":"web","digest":"sha256:aa"}}"#,
                "invalid registry name",
            ),
            (
                r#"{"kind":"image","v":1,"data":{"registry":"reg","repository":"../x","digest":"sha256:aa"}}"#,
                "invalid repository name",
            ),
            (
                r#"{"kind":"deploy","v":1,"data":{"app_id":"a","phase":"ACTIVE","changed":true,"image":"web:bad tag!"}}"#,
                "invalid image tag",
            ),
            (
                r#"{"kind":"deploy","v":1,"data":{"app_id":"a","phase":"ACTIVE","changed":true,"components":"web"}}"#,
                "must be a list",
            ),
            (
                r#"{"kind":"deploy","v":1,"data":{"app_id":"a","phase":"ACTIVE","changed":true,"image":7}}"#,
                "must be a string",
            ),
            (r#"{"kind":"tag","v":1,"data":{"tag":"a b","version":"x y","commit":"c"}}"#, "is not an image tag"),
        ];
        for (line, expected) in cases {
            let error = from_input(&input(&["", line])).unwrap_err();
            assert_eq!(do_core::exit::exit_code_of(&error), do_core::Exit::Usage);
            let text = error.to_string();
            assert!(text.contains("input line 2") && text.contains(expected), "{line}: {text}");
        }
        let redeploy = r#"{"kind":"deploy","v":1,"data":{"app_id":"a","phase":"ACTIVE","changed":true,"image":null}}"#;
        assert!(from_input(&input(&[redeploy])).unwrap().references.is_empty(), "a redeploy names no image");
    }

    #[test]
    fn references_resolve_to_digests_and_tags_per_repository() {
        let manifests = vec![
            Manifest { digest: "sha256:1".into(), tags: vec!["v1".into()].into(), ..Manifest::default() },
            Manifest {
                digest: "sha256:2".into(),
                tags: vec!["v2".into(), "latest".into()].into(),
                ..Manifest::default()
            },
        ];
        let references = parse_reference("reg/web:v1", "deployed").unwrap();
        let images = spec_images(
            &serde_json::json!({"services": [
                {"image": {"registry_type": "DOCR", "repository": "web"}},
                {"image": {"registry_type": "DOCR", "registry": "other", "repository": "web", "digest": "sha256:9"}},
                {"image": {"registry_type": "DOCKER_HUB", "repository": "web", "tag": "v1"}}]}),
            "spec",
        );
        let tags = vec![("v7".to_string(), "tag v7 named by the tag record".to_string())];
        let protected = resolve(&references, &tags, &images, "reg", "web", &manifests);
        assert_eq!(protected.digests.get(&"sha256:1".into()).map(String::as_str), Some("deployed"));
        assert_eq!(protected.digests.get(&"sha256:2".into()).map(String::as_str), Some("spec"), "no tag means latest");
        assert!(!protected.digests.contains_key(&"sha256:9".into()), "an image in another registry");
        assert_eq!(protected.tags.get("v7").map(String::as_str), Some("tag v7 named by the tag record"));
        assert!(resolve(&references, &[], &[], "reg", "api", &manifests).digests.is_empty());
    }
}
