//! The registry's repositories and their manifests, as the API lists them: every repository
//! (GC covers the registry), listed `--concurrency` requests at a time.

use std::collections::BTreeMap;

use do_core::api::{has_status, segment};
use do_core::digest::Digest;
use do_core::types::{Manifest, Repository};
use do_core::Failure;

use crate::Ctx;

/// Every repository of the registry with its manifests, listed `--concurrency` requests at
/// a time (repositories at once, and the pages of each once the first gives the total).
pub(crate) fn list_everything(ctx: &Ctx) -> anyhow::Result<BTreeMap<String, Vec<Manifest>>> {
    let repositories: Vec<Repository> =
        ctx.client.get_all(&format!("{}/repositoriesV2", ctx.registry_path), "repositories")?;
    let names: Vec<String> = repositories.into_iter().map(|r| r.name).collect();
    let paths: Vec<String> = names.iter().map(|name| digests_path(ctx, name)).collect();
    let listings = ctx
        .client
        .get_all_concurrently(&paths, "manifests", usize::from(ctx.settings.concurrency))
        .map_err(|error| missing_repository(ctx, error, &names))?;
    Ok(names.into_iter().zip(listings.into_iter().map(normalized)).collect())
}

/// A 404 on a listing names the repository: it is not (or no longer) in the registry.
pub(crate) fn missing_repository(ctx: &Ctx, error: anyhow::Error, names: &[String]) -> anyhow::Error {
    let failed = error.downcast_ref::<do_core::api::FailedListing>().and_then(|f| names.get(f.index));
    match failed {
        Some(name) if has_status(&error, 404) => {
            Failure::usage(format!("repository {name:?} is not in registry {}", ctx.registry))
        }
        _ => error,
    }
}

pub(crate) fn digests_path(ctx: &Ctx, name: &str) -> String {
    format!("{}/repositories/{}/digests", ctx.registry_path, segment(name))
}

pub(crate) fn list_repository(ctx: &Ctx, name: &str) -> anyhow::Result<Vec<Manifest>> {
    let paths = [digests_path(ctx, name)];
    let mut listings = ctx
        .client
        .get_all_concurrently(&paths, "manifests", usize::from(ctx.settings.concurrency))
        .map_err(|error| missing_repository(ctx, error, &[name.to_string()]))?;
    Ok(normalized(listings.pop().unwrap_or_default()))
}

/// The repositories to prune: --repository, the saved plan's, or all.
pub(crate) fn selected_repositories(
    ctx: &Ctx,
    listings: &BTreeMap<String, Vec<Manifest>>,
) -> anyhow::Result<Vec<String>> {
    let named: Vec<String> = match &ctx.settings.saved {
        Some(saved) => return Ok(saved.repositories.iter().map(|r| r.name.clone()).collect()),
        None if ctx.settings.repository.is_empty() => return Ok(listings.keys().cloned().collect()),
        None => ctx.settings.repository.clone(),
    };
    for name in &named {
        if !listings.contains_key(name) {
            return Err(Failure::usage(format!(
                "repository {name:?} is not in registry {} (it has: {})",
                ctx.registry,
                listings.keys().cloned().collect::<Vec<_>>().join(", ")
            )));
        }
    }
    Ok(named)
}

/// Digests as the registry host writes them, whatever case the listing used.
pub(crate) fn normalized(mut manifests: Vec<Manifest>) -> Vec<Manifest> {
    for manifest in &mut manifests {
        // A canonical digest is already held as its bytes; only one written oddly is made again.
        if manifest.digest.sha256().is_none() {
            manifest.digest = Digest::normalized(&manifest.digest.text());
        }
    }
    manifests
}
