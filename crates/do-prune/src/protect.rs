//! What must not be deleted: digests named on the input, and every image App Platform runs,
//! is about to run, or may roll back to. Reading fails closed: an app that cannot be read
//! stops the prune before anything is deleted.

use std::collections::BTreeMap;

use anyhow::Context;
use do_core::api::segment;
use do_core::contract::Input;
use do_core::types::{App, Deployment, Manifest, Phase};
use do_core::{Client, Failure};
use serde_json::Value;

use crate::policy::Protected;

/// An image reference found in an app spec, not yet resolved to a digest when it is a tag.
#[derive(Clone, Debug)]
pub struct SpecImage {
    pub repository: String,
    pub tag: Option<String>,
    pub digest: Option<String>,
    pub reason: String,
}

/// Digests and tags named by `image`, `deploy` and `tag` records.
pub fn from_input(input: &Input, protected: &mut Protected) {
    for record in input.all("image") {
        if let (Some(repository), Some(digest)) = (record.str("repository"), record.str("digest")) {
            protected.digests.insert((repository.into(), digest.into()), "named by the image record".into());
        }
    }
    for record in input.all("deploy") {
        let mut references: Vec<&str> = record.str("image").into_iter().collect();
        if let Some(Value::Array(components)) = record.data.get("components") {
            references.extend(components.iter().filter_map(|c| c.get("image_after").and_then(Value::as_str)));
        }
        for reference in references {
            if let Some((repository, digest)) = reference.split_once('@') {
                protected.digests.insert((repository.into(), digest.into()), "deployed by the deploy record".into());
            }
        }
    }
    for record in input.all("tag") {
        if let Some(tag) = record.str("tag") {
            protected.tags.insert((None, tag.into()), format!("tag {tag} named by the tag record"));
        }
    }
}

/// The DOCR images of an app spec.
fn spec_images(spec: &Value, reason: &str) -> Vec<SpecImage> {
    let mut images = Vec::new();
    for list in ["services", "workers", "jobs"] {
        for component in spec.get(list).and_then(Value::as_array).into_iter().flatten() {
            let Some(image) = component.get("image") else { continue };
            let text = |key: &str| image.get(key).and_then(Value::as_str).filter(|s| !s.is_empty()).map(str::to_string);
            if text("registry_type").as_deref() != Some("DOCR") {
                continue;
            }
            let Some(repository) = text("repository") else { continue };
            let digest = text("digest");
            let tag = if digest.is_some() { None } else { Some(text("tag").unwrap_or_else(|| "latest".into())) };
            images.push(SpecImage { repository, tag, digest, reason: reason.to_string() });
        }
    }
    images
}

fn uses_docr(app: &App) -> bool {
    !spec_images(&app.spec, "").is_empty()
}

/// Every image the chosen apps need. `selected` empty means every app with a DOCR component.
pub fn from_apps(client: &Client, selected: &[String], keep_rollback: usize) -> anyhow::Result<Vec<SpecImage>> {
    let apps: Vec<App> = client
        .get_all("/v2/apps", "apps")
        .context("cannot list the apps to protect their images; nothing was deleted")?;
    let chosen: Vec<&App> = if selected.is_empty() {
        apps.iter().filter(|app| uses_docr(app)).collect()
    } else {
        let mut chosen = Vec::new();
        for wanted in selected {
            let app = apps.iter().find(|app| app.id == *wanted || app.name() == wanted).ok_or_else(|| {
                Failure::usage(format!(
                    "--protect-app {wanted:?}: no such app; the account has: {}",
                    apps.iter().map(App::name).collect::<Vec<_>>().join(", ")
                ))
            })?;
            chosen.push(app);
        }
        chosen
    };
    let mut images = Vec::new();
    for app in chosen {
        let name = app.name();
        let path = format!("/v2/apps/{}/deployments?page=1&per_page=200", segment(&app.id));
        let deployments: Vec<Deployment> = client
            .get_object(&path, "deployments")
            .with_context(|| format!("cannot read the deployments of app {name}; nothing was deleted"))?;
        let mut rollback_targets = 0;
        for deployment in &deployments {
            let short = &deployment.id[..deployment.id.len().min(8)];
            let reason = match &deployment.phase {
                phase if !phase.is_terminal() => {
                    format!("{} deployment {short} of app {name}", phase.as_str().to_lowercase().replace('_', " "))
                }
                Phase::Active => format!("active deployment {short} of app {name}"),
                Phase::Superseded if rollback_targets < keep_rollback => {
                    if ran_to_the_end(deployment) {
                        rollback_targets += 1;
                    }
                    format!("rollback target {short} of app {name} (--keep-rollback)")
                }
                _ => continue,
            };
            images.extend(spec_images(&deployment.spec, &reason));
        }
        for deployment in
            [&app.active_deployment, &app.in_progress_deployment, &app.pending_deployment].into_iter().flatten()
        {
            images.extend(spec_images(
                &deployment.spec,
                &format!("deployment {} of app {name}", &deployment.id[..deployment.id.len().min(8)]),
            ));
        }
        // Last, so that a more specific reason wins: what the next deployment would run.
        images.extend(spec_images(&app.spec, &format!("in the spec of app {name}")));
    }
    Ok(images)
}

/// Whether a SUPERSEDED deployment had finished every step (so it was ACTIVE before it was replaced).
fn ran_to_the_end(deployment: &Deployment) -> bool {
    deployment
        .progress
        .as_ref()
        .is_some_and(|p| p.total_steps.is_some_and(|t| t > 0) && p.success_steps == p.total_steps)
}

/// Resolves the spec images of one repository against its manifests and adds them to `protected`.
pub fn resolve(images: &[SpecImage], repository: &str, manifests: &[Manifest], protected: &mut Protected) {
    let by_tag: BTreeMap<&str, &str> =
        manifests.iter().flat_map(|m| m.tags.iter().map(move |t| (t.as_str(), m.digest.as_str()))).collect();
    for image in images.iter().filter(|i| i.repository == repository) {
        let digest = match (&image.digest, &image.tag) {
            (Some(digest), _) => Some(digest.as_str()),
            (None, Some(tag)) => by_tag.get(tag.as_str()).copied(),
            (None, None) => None,
        };
        if let Some(digest) = digest {
            protected
                .digests
                .entry((repository.to_string(), digest.to_string()))
                .or_insert_with(|| image.reason.clone());
        }
    }
}
