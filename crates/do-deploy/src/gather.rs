//! Gathering what a deploy works on: the app (by name or id), the image (a tag resolved to its
//! digest through the registry; a digest checked to be there), and whether the change would run
//! an older version than the one running.

use do_core::api::segment;
use do_core::types::{App, Manifest, Tag};
use do_core::Failure;

use crate::spec::{self, Pin, Wanted};
use crate::target::{Reference, Target};
use crate::Ctx;

pub(crate) fn looks_like_uuid(text: &str) -> bool {
    text.len() == 36
        && text
            .bytes()
            .enumerate()
            .all(|(i, b)| if [8, 13, 18, 23].contains(&i) { b == b'-' } else { b.is_ascii_hexdigit() })
}

pub(crate) fn find_app(ctx: &Ctx, name_or_id: &str) -> anyhow::Result<App> {
    if looks_like_uuid(name_or_id) {
        if let Some(app) = ctx.client.get_object_or_none::<App>(&format!("/v2/apps/{}", segment(name_or_id)), "app")? {
            return Ok(app);
        }
    }
    let apps: Vec<App> = ctx.client.get_all("/v2/apps", "apps")?;
    let names: Vec<&str> = apps.iter().map(App::name).collect();
    match apps.iter().find(|app| app.name() == name_or_id || app.id == name_or_id) {
        Some(app) => Ok(app.clone()),
        None => Err(Failure::usage(format!(
            "no app named {name_or_id:?}; the account has: {}",
            if names.is_empty() { "no apps".to_string() } else { names.join(", ") }
        ))),
    }
}

/// Warns when the change would run an older version than the one running (a quick start's
/// `--tag v1.1.0` over v1.2.0, say); a digest-pinned component's version comes from its tags.
pub(crate) fn warn_if_downgrade(
    ctx: &Ctx,
    target: Option<&Target>,
    changes: &[spec::ComponentChange],
    wanted: &Wanted,
) {
    let (Some(target), Some(tag)) = (target, wanted.tag.as_deref()) else { return };
    let tags_of = |digest: &str| -> Vec<String> {
        let Ok(registry) = registry(ctx, target) else { return Vec::new() };
        let path = format!("/v2/registries/{}/repositories/{}/tags", segment(&registry), segment(&target.repository));
        let tags: Vec<Tag> = ctx.client.get_all(&path, "tags").unwrap_or_default();
        tags.into_iter().filter(|t| t.manifest_digest.as_deref() == Some(digest)).map(|t| t.tag).collect()
    };
    if let Some((change, running)) = spec::downgrade(changes, tag, tags_of) {
        ctx.progress.warn(&format!(
            "{} {} runs {running}, newer than {tag}: this deploys an older version (pass --allow-downgrade if that is what you want)",
            change.kind, change.name
        ));
    }
}

pub(crate) fn registry(ctx: &Ctx, target: &Target) -> anyhow::Result<String> {
    if let Some(registry) = &target.registry {
        return Ok(registry.clone());
    }
    Ok(do_core::registry::find(ctx.client, None)?.name)
}

/// The digest to deploy: a tag is resolved through the registry; a digest must exist there.
pub(crate) fn resolve(ctx: &Ctx, target: &Target) -> anyhow::Result<Wanted> {
    let registry = registry(ctx, target)?;
    let base = format!("/v2/registries/{}/repositories/{}", segment(&registry), segment(&target.repository));
    let missing_repository = |error: anyhow::Error| {
        if do_core::api::has_status(&error, 404) {
            Failure::usage(format!("repository {:?} is not in registry {registry}", target.repository))
        } else {
            error
        }
    };
    match &target.reference {
        Reference::Tag(tag) => {
            let tags: Vec<Tag> = ctx.client.get_all(&format!("{base}/tags"), "tags").map_err(missing_repository)?;
            let found = tags.iter().find(|t| &t.tag == tag).and_then(|t| t.manifest_digest.clone());
            let Some(found) = found else {
                if ctx.settings.dry_run {
                    // A release's dry run plans the deployment before the image is pushed.
                    ctx.progress.info(&format!(
                        "dry run: {}:{tag} is not in {registry} yet; once pushed it is pinned by its digest",
                        target.repository
                    ));
                    let repository = target.repository.clone();
                    return Ok(Wanted { repository, tag: Some(tag.clone()), digest: String::new(), pin: Pin::Tag });
                }
                let near = do_core::near::nearest(tag, tags.iter().map(|t| t.tag.as_str()));
                let hint = near
                    .map_or("push it first".to_string(), |near| format!("did you mean {near}? (or push {tag} first)"));
                return Err(Failure::usage(format!("tag {tag} is not in {registry}/{}; {hint}", target.repository)));
            };
            ctx.progress.info(&format!("{}:{tag} is {found}", target.repository));
            Ok(Wanted {
                repository: target.repository.clone(),
                tag: Some(tag.clone()),
                digest: found,
                pin: ctx.settings.pin,
            })
        }
        Reference::Digest(digest) => {
            let manifests: Vec<Manifest> =
                ctx.client.get_all(&format!("{base}/digests"), "manifests").map_err(missing_repository)?;
            let manifest = manifests
                .iter()
                .find(|m| &m.digest == digest)
                .ok_or_else(|| Failure::usage(format!("digest {digest} is not in {registry}/{}", target.repository)))?;
            if ctx.settings.pin == Pin::Tag && manifest.tags.is_empty() {
                return Err(Failure::usage(format!("--pin tag, but {digest} has no tag; use --pin digest")));
            }
            let tag = manifest.tags.iter().find(|t| *t != "latest").or(manifest.tags.first()).cloned();
            Ok(Wanted { repository: target.repository.clone(), tag, digest: digest.clone(), pin: ctx.settings.pin })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn app_ids_are_told_from_names() {
        assert!(looks_like_uuid("4f6c71e2-1e90-4762-9fee-6cc4a0a9f2cf"));
        assert!(!looks_like_uuid("my-app"));
    }
}
