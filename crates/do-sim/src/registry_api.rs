//! The API's registry routes: registries, subscriptions, repositories and their manifests,
//! garbage collections, docker credentials.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::paging::*;
use crate::state::{manifest_json, tier, SimError, State, DEFAULT_GC_TYPE};
use crate::wire::*;

pub(crate) fn registry_json(registry: &crate::state::Registry, with_subscription: bool) -> Value {
    let mut value = json!({
        "name": registry.name,
        "created_at": registry.created_at,
        "region": registry.region,
        "storage_usage_bytes": registry.storage_usage_bytes(),
        "storage_usage_bytes_updated_at": crate::state::now_rfc3339(),
    });
    if with_subscription {
        value["subscription"] = subscription_json(registry);
    }
    value
}

pub(crate) fn subscription_json(registry: &crate::state::Registry) -> Value {
    json!({"tier": tier(&registry.tier), "created_at": registry.created_at, "updated_at": registry.created_at})
}

pub(crate) fn registry_route(
    state: &mut State,
    incoming: &Incoming,
    base_url: &str,
    now: Instant,
    name: &str,
    rest: &[&str],
) -> Answer {
    let registry = state.registries.get_mut(name).ok_or_else(SimError::not_found)?;
    match (incoming.method.as_str(), rest) {
        ("GET", []) => ok(json!({"registry": registry_json(registry, false)})),
        ("GET", ["repositoriesV2"]) => {
            let items: Vec<Value> = registry
                .repositories
                .iter()
                .map(|(repo_name, repository)| {
                    json!({
                        "registry_name": registry.name,
                        "name": repo_name,
                        "tag_count": repository.tag_count(),
                        "manifest_count": repository.len(),
                        "latest_manifest": repository.newest().map(|m| manifest_json(&registry.name, repo_name, m)),
                    })
                })
                .collect();
            token_listing(items, incoming, base_url)
        }
        ("GET", ["repositories", repository, "tags"]) => {
            let repo = registry.repositories.get(*repository).ok_or_else(SimError::not_found)?;
            let name = registry.name.as_str();
            let tags = repo.manifests().rev().flat_map(|m| m.tags.iter().map(move |tag| (m, tag)));
            let to_json = |(m, tag): (&crate::state::Manifest, &String)| {
                json!({"registry_name": name, "repository": repository, "tag": tag, "manifest_digest": m.digest,
                       "compressed_size_bytes": m.compressed_size(), "size_bytes": m.size_bytes, "updated_at": m.updated_at})
            };
            listing_page("tags", repo.tag_count(), tags, to_json, incoming, base_url)
        }
        ("GET", ["repositories", repository, "digests"]) => {
            let repo = registry.repositories.get(*repository).ok_or_else(SimError::not_found)?;
            let name = registry.name.as_str();
            let to_json = |m: &crate::state::Manifest| manifest_json(name, repository, m);
            if registry.hide_index_children {
                let hidden = repo.index_children();
                let shown: Vec<_> = repo
                    .manifests()
                    .rev()
                    .filter(|m| !(m.tags.is_empty() && hidden.contains(m.digest.as_str())))
                    .collect();
                listing_page("manifests", shown.len(), shown.into_iter(), to_json, incoming, base_url)
            } else {
                let page = |skip, take| repo.newest_first(skip, take).map(to_json).collect();
                windowed_page("manifests", repo.len(), page, incoming, base_url)
            }
        }
        ("DELETE", ["repositories", repository, "tags", tag]) => {
            registry.check_writable(now)?;
            let repo = registry.repositories.get_mut(*repository).ok_or_else(SimError::not_found)?;
            if !repo.untag(tag) {
                return Err(SimError::not_found());
            }
            Ok((204, None))
        }
        ("DELETE", ["repositories", repository, "digests", digest]) => {
            registry.check_writable(now)?;
            let repo = registry.repositories.get_mut(*repository).ok_or_else(SimError::not_found)?;
            repo.remove(digest).ok_or_else(SimError::not_found)?;
            Ok((204, None))
        }
        ("DELETE", ["repositories", repository]) => {
            registry.check_writable(now)?;
            registry.repositories.remove(*repository).ok_or_else(SimError::not_found)?;
            Ok((204, None))
        }
        ("GET", ["docker-credentials"]) => {
            // Registry credentials of their own, never the API token itself.
            let read_write = incoming.query("read_write") == Some("true");
            let expiry = match incoming.query("expiry_seconds") {
                None => None,
                Some(text) => Some(Duration::from_secs(
                    text.parse().map_err(|_| SimError::bad_request("expiry_seconds must be a whole number"))?,
                )),
            };
            let name = name.to_string();
            ok(crate::distribution::issue_credentials(state, &name, read_write, expiry, now))
        }
        ("GET", ["garbage-collection"]) => {
            let active = registry.active_gc(now).ok_or_else(SimError::not_found)?;
            ok(json!({"garbage_collection": active.to_json(name, now)}))
        }
        ("GET", ["garbage-collections"]) => {
            let items = registry.gcs.iter().rev().map(|gc| gc.to_json(name, now)).collect();
            // The spec declares only the list here: no meta, no links.
            let (page, _, _) = paginate(items, incoming, base_url)?;
            ok(json!({ "garbage_collections": page }))
        }
        ("POST", ["garbage-collection"]) => {
            let gc_type = match &incoming.body {
                None if incoming.body_text.is_some() => {
                    return Err(SimError::bad_request("the body is not valid JSON"))
                }
                None => DEFAULT_GC_TYPE.to_string(),
                Some(body) => match body.get("type") {
                    None | Some(Value::Null) => DEFAULT_GC_TYPE.to_string(),
                    Some(Value::String(t))
                        if [
                            "untagged manifests only",
                            "unreferenced blobs only",
                            "untagged manifests and unreferenced blobs",
                        ]
                        .contains(&t.as_str()) =>
                    {
                        t.clone()
                    }
                    Some(other) => {
                        return Err(SimError::bad_request(format!("invalid garbage collection type {other}")))
                    }
                },
            };
            let gc = state.start_gc(name, &gc_type, None, "succeeded", now)?;
            Ok((201, Some(json!({"garbage_collection": gc}))))
        }
        ("PUT", ["garbage-collection", uuid]) => {
            let cancel = incoming.body.as_ref().and_then(|b| b.get("cancel")).and_then(Value::as_bool);
            if cancel != Some(true) {
                return Err(SimError::bad_request("the body must be {\"cancel\": true}"));
            }
            let gc = registry.gcs.iter_mut().find(|gc| gc.uuid == *uuid).ok_or_else(SimError::not_found)?;
            if gc.is_active(now) && gc.cancel_requested.is_none() {
                gc.cancel_requested = Some(now);
                gc.updated_at = crate::state::now_rfc3339();
            }
            ok(json!({"garbage_collection": gc.to_json(name, now)}))
        }
        _ => Err(SimError::not_found()),
    }
}
