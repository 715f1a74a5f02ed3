//! `--delete-preview NAME --delete-images`: the pull request's image tags (`NAME-*`, as the
//! example workflow tags them) in the repositories the spec's components run, deleted once the
//! preview is gone, except a tag another app runs (by that tag, or the image it names by digest)
//! or a deployment of another app ran. Only tags are deleted: the manifests they leave untagged
//! go with the next do-prune, under its keep closure, and their space with the next GC.

use std::collections::BTreeSet;

use do_core::api::segment;
use do_core::progress::Progress;
use do_core::types::{App, Deployment, Tag};
use do_core::Client;
use serde::Serialize;
use serde_json::Value;

/// One image tag of the preview, and what became of it.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct ImageTag {
    pub repository: String,
    pub tag: String,
    pub digest: Option<String>,
    /// `deleted`, `would_delete`, `kept` or `failed`.
    pub fate: String,
    pub reason: String,
}

/// What the account's apps run or ran: (repository, tag) pairs and digests.
#[derive(Debug, Default)]
pub struct InUse {
    pub tags: BTreeSet<(String, String)>,
    pub digests: BTreeSet<String>,
}

impl InUse {
    /// Adds the DOCR images a spec names.
    pub fn add_spec(&mut self, spec: &Value) {
        for image in component_images(spec) {
            let text = |key: &str| image.get(key).and_then(Value::as_str).filter(|s| !s.is_empty());
            let Some(repository) = text("repository") else { continue };
            if let Some(tag) = text("tag") {
                self.tags.insert((repository.to_string(), tag.to_string()));
            }
            if let Some(digest) = text("digest") {
                self.digests.insert(digest.to_string());
            }
        }
    }

    /// Why the tag must stay, if it must: pure.
    pub fn keeps(&self, repository: &str, tag: &Tag) -> Option<String> {
        if self.tags.contains(&(repository.to_string(), tag.tag.clone())) {
            return Some(format!("an app runs or ran {repository}:{}", tag.tag));
        }
        let digest = tag.manifest_digest.as_deref()?;
        self.digests.contains(digest).then(|| format!("an app runs or ran the image it names ({digest})"))
    }
}

/// The tags of the preview `preview` (`preview-…`) among `tags`: pure.
pub fn of_preview<'a>(tags: &'a [Tag], preview: &str) -> Vec<&'a Tag> {
    let prefix = format!("{preview}-");
    tags.iter().filter(|t| t.tag.starts_with(&prefix)).collect()
}

/// The DOCR repositories (with their registry when named) a spec's components run.
pub fn repositories(spec: &Value) -> BTreeSet<(Option<String>, String)> {
    let docr =
        component_images(spec).filter(|image| image.get("registry_type").and_then(Value::as_str) == Some("DOCR"));
    docr.filter_map(|image| {
        let text = |key: &str| image.get(key).and_then(Value::as_str).filter(|s| !s.is_empty()).map(str::to_string);
        Some((text("registry"), text("repository")?))
    })
    .collect()
}

/// The `image` of every component of a spec that has one.
fn component_images(spec: &Value) -> impl Iterator<Item = &Value> {
    crate::spec::COMPONENT_LISTS
        .iter()
        .flat_map(|list| spec.get(*list).and_then(Value::as_array).into_iter().flatten())
        .filter_map(|component| component.get("image"))
}

/// What every app of the account runs, and what its recent deployments ran; the preview being
/// deleted (`preview_app`, still there in a dry run) aside.
fn in_use(client: &Client, preview_app: &str, preview: &str) -> anyhow::Result<InUse> {
    let apps: Vec<App> = client.get_all("/v2/apps", "apps")?;
    let mut in_use = InUse::default();
    let is_the_preview =
        |app: &App| app.name() == preview_app && crate::specfile::preview_marker(&app.spec) == Some(preview);
    for app in apps.iter().filter(|app| !is_the_preview(app)) {
        in_use.add_spec(&app.spec);
        let path = format!("/v2/apps/{}/deployments?page=1&per_page=50", segment(&app.id));
        let deployments: Vec<Deployment> = client.get_page(&path, "deployments")?;
        deployments.iter().for_each(|d| in_use.add_spec(&d.spec));
    }
    Ok(in_use)
}

/// Deletes the preview's image tags in the spec's repositories (read after the preview app is
/// gone, so what it ran counts no more), keeping those another app needs.
pub fn delete_tags(
    client: &Client,
    progress: &Progress,
    spec: &Value,
    (preview_app, preview): (&str, &str),
    dry_run: bool,
) -> anyhow::Result<Vec<ImageTag>> {
    let in_use = in_use(client, preview_app, preview)?;
    let mut done = Vec::new();
    for (registry, repository) in repositories(spec) {
        let registry = match registry {
            Some(registry) => registry,
            None => do_core::registry::find(client, None)?.name,
        };
        let base = format!("/v2/registries/{}/repositories/{}", segment(&registry), segment(&repository));
        let tags: Vec<Tag> = match client.get_all(&format!("{base}/tags"), "tags") {
            Ok(tags) => tags,
            Err(error) if do_core::api::has_status(&error, 404) => continue,
            Err(error) => return Err(error),
        };
        for tag in of_preview(&tags, preview) {
            let mut image = ImageTag {
                repository: repository.clone(),
                tag: tag.tag.clone(),
                digest: tag.manifest_digest.clone(),
                fate: "kept".into(),
                reason: String::new(),
            };
            if let Some(why) = in_use.keeps(&repository, tag) {
                image.reason = why;
            } else if dry_run {
                (image.fate, image.reason) = ("would_delete".into(), "the preview's, and no app runs it".into());
            } else {
                let path = format!("{base}/tags/{}", segment(&tag.tag));
                (image.fate, image.reason) = match client.delete(&path) {
                    Ok(()) => ("deleted".into(), "the preview's, and no app runs it".into()),
                    Err(error) if do_core::api::has_status(&error, 404) => ("deleted".into(), "gone already".into()),
                    Err(error) => ("failed".into(), format!("{error:#}")),
                };
            }
            progress.info(&format!("{repository}:{}: {} ({})", image.tag, image.fate.replace('_', " "), image.reason));
            done.push(image);
        }
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn tag(name: &str, digest: &str) -> Tag {
        Tag { tag: name.into(), manifest_digest: Some(digest.into()), ..Tag::default() }
    }

    #[test]
    fn only_the_previews_own_tags_and_none_an_app_runs() {
        let tags = [
            tag("pr-42-aaa", "d1"),
            tag("pr-42-bbb", "d2"),
            tag("pr-420-ccc", "d3"),
            tag("v1.0.0", "d4"),
            tag("pr-42", "d5"),
        ];
        let names: Vec<&str> = of_preview(&tags, "pr-42").iter().map(|t| t.tag.as_str()).collect();
        assert_eq!(names, ["pr-42-aaa", "pr-42-bbb"], "not pr-420-…, not pr-42 itself");
        let mut in_use = InUse::default();
        in_use.add_spec(&json!({"services": [
            {"name": "a", "image": {"registry_type": "DOCR", "repository": "web", "tag": "pr-42-aaa"}},
            {"name": "b", "image": {"registry_type": "DOCR", "repository": "api", "digest": "d2"}},
        ], "workers": [{"name": "c", "image": {"registry_type": "DOCR", "repository": "web", "tag": ""}}]}));
        assert_eq!(in_use.keeps("web", &tags[0]).as_deref(), Some("an app runs or ran web:pr-42-aaa"));
        assert_eq!(in_use.keeps("api", &tags[0]), None, "the tag in another repository");
        assert_eq!(in_use.keeps("web", &tags[1]).as_deref(), Some("an app runs or ran the image it names (d2)"));
        assert_eq!(in_use.keeps("web", &tags[2]), None);
        assert_eq!(in_use.keeps("web", &Tag { tag: "x".into(), ..Tag::default() }), None);
    }

    #[test]
    fn the_repositories_are_the_docr_ones_the_spec_runs() {
        let spec = json!({"services": [
            {"name": "a", "image": {"registry_type": "DOCR", "repository": "web"}},
            {"name": "b", "image": {"registry_type": "DOCR", "registry": "other", "repository": "api"}},
            {"name": "c", "image": {"registry_type": "GHCR", "registry": "me", "repository": "tool"}},
            {"name": "d", "github": {"repo": "me/site"}},
        ], "jobs": [{"name": "e", "image": {"registry_type": "DOCR", "repository": "web"}}]});
        let found: Vec<(Option<String>, String)> = repositories(&spec).into_iter().collect();
        assert_eq!(found, [(None, "web".to_string()), (Some("other".into()), "api".into())]);
    }
}
