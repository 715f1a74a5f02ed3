//! do-core's client against the simulator: pagination in both styles, encoded path
//! segments, per_page=200, and links that point at another host.

use std::sync::Arc;
use std::time::Duration;

use do_core::api::{segment, ClientConfig, RetryPolicy, Secret};
use do_core::progress::Progress;
use do_core::types::{Manifest, Repository, Tag};
use do_core::Client;
use do_sim::Sim;
use serde_json::json;

fn client(sim: &Sim) -> Client {
    let config = ClientConfig {
        api_url: sim.url().to_string(),
        token: Secret::new(sim.token()),
        retry: RetryPolicy { base_delay: Duration::from_millis(10), ..RetryPolicy::default() },
        request_timeout: Duration::from_secs(10),
        connect_timeout: Duration::from_secs(5),
    };
    Client::new(config, Arc::new(Progress::new("test", true, false))).unwrap()
}

fn seeded(repositories: serde_json::Value) -> Sim {
    crate::support::world::seeded(json!({"registries": [{"name": "reg", "repositories": repositories}]}))
        .token("t")
        .start()
}

#[test]
fn page_number_pagination_follows_next_links_at_200_per_page() {
    let manifests: Vec<_> = (0..450).map(|i| json!({"tags": [format!("t{i}")], "size_bytes": 1000 + i})).collect();
    let sim = seeded(json!([{"name": "team/web", "manifests": manifests}]));
    let client = client(&sim);
    let path = format!("/v2/registries/reg/repositories/{}/digests", segment("team/web"));
    let all: Vec<Manifest> = client.get_all(&path, "manifests").unwrap();
    assert_eq!(all.len(), 450);
    let distinct: std::collections::BTreeSet<_> = all.iter().map(|m| m.digest.clone()).collect();
    assert_eq!(distinct.len(), 450, "no page repeated or skipped");
    let urls: Vec<String> = sim.requests().into_iter().map(|r| r.url).collect();
    assert_eq!(
        urls,
        [
            "/v2/registries/reg/repositories/team%2Fweb/digests?per_page=200",
            "/v2/registries/reg/repositories/team%2Fweb/digests?page=2&per_page=200",
            "/v2/registries/reg/repositories/team%2Fweb/digests?page=3&per_page=200",
        ],
        "the repository name with / arrives encoded as %2F"
    );
    let tags: Vec<Tag> =
        client.get_all(&format!("/v2/registries/reg/repositories/{}/tags", segment("team/web")), "tags").unwrap();
    assert_eq!(tags.len(), 450);
}

#[test]
fn page_token_pagination_follows_next_links_verbatim() {
    let repositories: Vec<_> = (0..205)
        .map(|i| json!({"name": format!("repo-{i:03}"), "manifests": [{"tags": ["v1"], "size_bytes": 10}]}))
        .collect();
    let sim = seeded(json!(repositories));
    let repositories: Vec<Repository> =
        client(&sim).get_all("/v2/registries/reg/repositoriesV2", "repositories").unwrap();
    assert_eq!(repositories.len(), 205);
    assert_eq!(repositories[204].name, "repo-204");
    let urls: Vec<String> = sim.requests().into_iter().map(|r| r.url).collect();
    assert_eq!(urls.len(), 2);
    assert!(urls[1].contains("page_token="), "{urls:?}");
}

#[test]
fn an_unknown_repository_is_a_typed_404() {
    let sim = seeded(json!([]));
    let error = client(&sim).get_all::<Tag>("/v2/registries/reg/repositories/nope/tags", "tags").unwrap_err();
    assert!(do_core::api::has_status(&error, 404));
    let api = error.downcast_ref::<do_core::ApiError>().unwrap();
    assert_eq!(api.id, "not_found");
    assert!(api.request_id.as_deref().is_some_and(|id| id.starts_with("sim-")));
}

#[test]
fn posts_that_create_are_not_repeated_after_an_ambiguous_failure() {
    let sim = seeded(json!([]));
    sim.add_fault(do_sim::Fault {
        method: Some("POST".into()),
        path: "/v2/registries/reg/garbage-collection".into(),
        kind: do_sim::FaultKind::DropAfterApply,
        times: 1,
    });
    let result = client(&sim).post_create::<serde_json::Value>(
        "/v2/registries/reg/garbage-collection",
        None,
        "garbage_collection",
    );
    let error = result.unwrap_err();
    assert!(error.downcast_ref::<do_core::api::TransportError>().is_some(), "{error:#}");
    let posts = sim.requests().into_iter().filter(|r| r.method == "POST").count();
    assert_eq!(posts, 1, "a create is sent once; the caller looks before trying again");
    assert_eq!(sim.snapshot()["registries"][0]["garbage_collections"].as_array().unwrap().len(), 1);
}

#[test]
fn a_truncated_body_on_a_get_is_retried() {
    let sim = seeded(json!([{"name": "web", "manifests": [{"tags": ["v1"], "size_bytes": 10}]}]));
    sim.add_fault(do_sim::Fault {
        method: None,
        path: "/v2/registries/reg/repositories/web/tags".into(),
        kind: do_sim::FaultKind::Truncated,
        times: 1,
    });
    let tags: Vec<Tag> = client(&sim).get_all("/v2/registries/reg/repositories/web/tags", "tags").unwrap();
    assert_eq!(tags.len(), 1);
    assert_eq!(sim.requests().len(), 2);
}

#[test]
fn a_slow_answer_past_the_request_timeout_is_retried() {
    let sim = seeded(json!([]));
    sim.add_fault(do_sim::Fault {
        method: None,
        path: "/v2/registries".into(),
        kind: do_sim::FaultKind::Latency { ms: 1500 },
        times: 1,
    });
    let mut config_client = client(&sim);
    config_client = {
        drop(config_client);
        let config = ClientConfig {
            api_url: sim.url().to_string(),
            token: Secret::new(sim.token()),
            retry: RetryPolicy { base_delay: Duration::from_millis(10), ..RetryPolicy::default() },
            request_timeout: Duration::from_millis(300),
            connect_timeout: Duration::from_millis(300),
        };
        Client::new(config, Arc::new(Progress::new("test", true, false))).unwrap()
    };
    let registries: Vec<do_core::types::Registry> = config_client.get_object("/v2/registries", "registries").unwrap();
    assert_eq!(registries.len(), 1);
    assert_eq!(config_client.requests_made(), 2);
}

/// Several repositories, one of them six pages long, another with an index and its children.
fn many_repositories() -> Sim {
    let long: Vec<_> = (0..1_050).map(|i| json!({"tags": [format!("v{i}")], "size_bytes": 100 + i})).collect();
    let mut repositories = vec![
        json!({"name": "long", "manifests": long}),
        json!({"name": "team/web", "manifests": [{"tags": ["v1"], "size_bytes": 10, "platforms": ["linux/amd64", "linux/arm64"], "attestations": true}]}),
        json!({"name": "empty-ish", "manifests": [{"tags": [], "size_bytes": 1}]}),
    ];
    repositories.extend((0..12).map(|r| {
        let manifests: Vec<_> =
            (0..(r * 37 % 230)).map(|i| json!({"tags": [format!("t{i}")], "size_bytes": 5})).collect();
        json!({"name": format!("repo-{r:02}"), "manifests": manifests})
    }));
    seeded(json!(repositories))
}

fn digests_paths(names: &[&str]) -> Vec<String> {
    names.iter().map(|name| format!("/v2/registries/reg/repositories/{}/digests", segment(name))).collect()
}

#[test]
fn a_concurrent_listing_gives_exactly_what_the_sequential_one_gives_for_the_same_requests() {
    let sim = many_repositories();
    let client = client(&sim);
    let repositories: Vec<Repository> = client.get_all("/v2/registries/reg/repositoriesV2", "repositories").unwrap();
    let names: Vec<&str> = repositories.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names.len(), 15);
    let paths = digests_paths(&names);
    sim.state().requests.clear();
    let sequential: Vec<Vec<serde_json::Value>> =
        paths.iter().map(|p| client.get_all(p, "manifests").unwrap()).collect();
    let sequential_requests: std::collections::BTreeSet<String> = sim.requests().into_iter().map(|r| r.url).collect();
    for concurrency in [1, 2, 4, 32] {
        sim.state().requests.clear();
        let concurrent: Vec<Vec<serde_json::Value>> =
            client.get_all_concurrently(&paths, "manifests", concurrency).unwrap();
        assert_eq!(concurrent, sequential, "concurrency {concurrency}");
        let urls: Vec<String> = sim.requests().into_iter().map(|r| r.url).collect();
        assert_eq!(urls.len(), sequential_requests.len(), "no page read twice at concurrency {concurrency}");
        assert_eq!(urls.into_iter().collect::<std::collections::BTreeSet<_>>(), sequential_requests);
    }
    assert_eq!(sequential[names.iter().position(|n| *n == "long").unwrap()].len(), 1_050);
}

#[test]
fn a_listing_that_changes_while_it_is_read_is_read_again_page_by_page() {
    let sim = many_repositories();
    let client = client(&sim);
    let paths = digests_paths(&["long"]);
    let truth: Vec<serde_json::Value> = client.get_all(&paths[0], "manifests").unwrap();
    // The first page claims 2,000 manifests (pages 7 to 10 come back empty), or 400 (pages 3 to
    // 6 would be missed): either way the totals disagree with the other pages'.
    // 19,000,000 would be 95,000 pages: one round of 4 finds out, not 95,000 requests.
    for claimed in [2000, 400, 19_000_000] {
        let (_, mut first) = crate::support::call(&sim, "GET", &format!("{}?per_page=200", paths[0]), None, Some("t"));
        first["meta"]["total"] = json!(claimed);
        first["links"]["pages"]["last"] =
            json!(format!("{}{}?page={}&per_page=200", sim.url(), paths[0], claimed / 200));
        sim.add_fault(do_sim::Fault {
            method: Some("GET".into()),
            path: paths[0].clone(),
            kind: do_sim::FaultKind::Body { status: 200, body: first },
            times: 1,
        });
        sim.state().requests.clear();
        let listed: Vec<Vec<serde_json::Value>> = client.get_all_concurrently(&paths, "manifests", 4).unwrap();
        assert!(listed == vec![truth.clone()], "claimed {claimed}: {} listed", listed[0].len());
        let urls: Vec<String> = sim.requests().into_iter().map(|r| r.url).collect();
        let promised = (claimed / 200).min(5) - 1;
        assert_eq!(urls.len(), 1 + promised + 6, "claimed {claimed}: one round read ahead, then all again: {urls:?}");
        assert_eq!(urls.iter().filter(|u| u.ends_with("digests?per_page=200")).count(), 2, "then all again: {urls:?}");
    }
}
