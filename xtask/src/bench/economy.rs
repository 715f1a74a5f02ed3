//! Request economy: an executed prune of 2,000 manifests and more, every request counted
//! against its lower bound, with and without signatures.

use anyhow::Context;
use serde::Serialize;
use serde_json::{json, Value};

use super::*;

/// What a prune of issue 10's scenario costs, request by request, with the bound it must keep.
#[derive(Debug, Serialize)]
pub struct EconomyFigures {
    pub manifests: usize,
    /// Expired indexes, their children and unreferenced untagged manifests: what must go.
    pub expected_deletions: usize,
    pub deletions: usize,
    /// Manifests left in the registry: the kept indexes and their children.
    pub remaining: usize,
    pub expected_remaining: usize,
    /// Every index left holds all its children, and nothing else is left.
    pub kept_whole: bool,
    /// Listing pages: repositoriesV2 and digests, to plan and again right before deleting.
    pub listing_pages: usize,
    pub listing_page_bound: usize,
    /// App list and deployment pages, to plan and again right before deleting.
    pub app_reads: usize,
    /// GETs of manifests on the registry host.
    pub manifest_reads: usize,
    /// One read per kept image (and its artifacts) and per untagged manifest outside them.
    pub manifest_read_bound: usize,
    pub gc_calls: usize,
    /// The registry list and the registry credentials.
    pub other_api_requests: usize,
    /// The registry host's challenge and token requests.
    pub registry_auth_requests: usize,
    /// The one probe of the registry's referrers API (the simulator, like DOCR, has none).
    pub referrers_probes: usize,
    /// Every API request, and what the record says it made.
    pub api_requests: usize,
    pub recorded_requests: u64,
    /// Every request to the API and the registry host.
    pub total_requests: usize,
    /// The least a prune can make that reads what it deletes and re-checks before deleting.
    pub lower_bound: usize,
    /// A script that lists once and deletes each manifest, reading nothing and re-checking
    /// nothing (unsafe for indexes; what users glue together today).
    pub naive_requests: usize,
    pub wall_seconds: f64,
    /// Every image has a cosign signature and attestation.
    pub signed: bool,
}

/// Issue 10's acceptance scenario times `scale`: 500 tagged images pushed as indexes with 2
/// untagged children each (an image and its attestation), 500 untagged manifests nothing
/// references, 300 of the indexes expired (`--keep-last 200`); an executed prune.
pub fn prune_economy(binaries: &BenchBinaries, scale: usize) -> anyhow::Result<EconomyFigures> {
    prune_economy_of(binaries, scale, false)
}

/// The same scenario; with `signed`, every image also gets a cosign signature and attestation
/// (`sha256-<digest>.sig`, `.att`) pushed after it, as a signing team's CI does: they take no
/// `--keep-last` place, the kept images' are kept (and read), the expired images' deleted.
pub fn prune_economy_of(binaries: &BenchBinaries, scale: usize, signed: bool) -> anyhow::Result<EconomyFigures> {
    let (indexes, expired, unreferenced) = (500 * scale, 300 * scale, 500 * scale);
    let per_image = if signed { 2 } else { 0 };
    let mut manifests: Vec<Value> = (0..unreferenced).map(|_| json!({"tags": [], "size_bytes": 2048})).collect();
    for i in 0..indexes {
        let tag = format!("v1.{i}.0");
        manifests.push(json!({"tags": [tag], "size_bytes": 4096, "platforms": ["linux/amd64"], "attestations": true}));
        if signed {
            manifests.push(json!({"signature_of": tag}));
            manifests.push(json!({"attestation_of": tag}));
        }
    }
    let newest = format!("v1.{}.0", indexes - 1);
    let seed = json!({
        "registries": [{"name": "bench", "tier": "professional", "repositories": [{"name": "web", "manifests": manifests}]}],
        "apps": [{"spec": do_sim::default_app_spec("shop", "web", &newest)}],
        "rate_limit": {"per_hour": 1_000_000_000u64, "per_minute": 1_000_000_000u64, "window_scale": 1.0},
    });
    let sim = SimProcess::start(&binaries.sim, Some(&seed), &[])?;
    let keep = (indexes - expired).to_string();
    let run = run_tool(&binaries.prune, sim.url(), &["--keep-last", &keep, "--execute", "--gc", "start", "-q"])?;
    anyhow::ensure!(run.success, "do-prune failed: {}", run.stderr);
    let record: Value = serde_json::from_slice(&run.stdout).context("do-prune's record")?;
    let log = sim.requests("requests")?;
    let registry_log = sim.requests("registry-requests")?;
    let method = |r: &Value| r["method"].as_str().unwrap_or_default().to_string();
    let url = |r: &Value| r["url"].as_str().unwrap_or_default().to_string();
    let count = |test: &dyn Fn(&str, &str, u64) -> bool| {
        log.iter().filter(|r| test(&method(r), &url(r), r["status"].as_u64().unwrap_or(0))).count()
    };
    let manifest_reads = registry_log.iter().filter(|r| method(r) == "GET" && url(r).contains("/manifests/")).count();
    let referrers_probes = registry_log.iter().filter(|r| url(r).contains("/referrers/")).count();
    let snapshot = sim.control("state")?;
    let left = snapshot["registries"][0]["repositories"][0]["manifests"].as_array().cloned().unwrap_or_default();
    let remaining = left.len();
    // Whole: every manifest left is a tagged index or a child of one, and no index lost a child.
    let present: std::collections::BTreeSet<&str> = left.iter().filter_map(|m| m["digest"].as_str()).collect();
    let tagged: Vec<&Value> = left.iter().filter(|m| m["tags"].as_array().is_some_and(|t| !t.is_empty())).collect();
    let children: std::collections::BTreeSet<&str> =
        tagged.iter().flat_map(|m| m["children"].as_array().into_iter().flatten()).filter_map(Value::as_str).collect();
    let kept_whole = children.iter().all(|c| present.contains(c)) && tagged.len() + children.len() == remaining;
    let kept_images = indexes - expired;
    let total = unreferenced + indexes * (3 + per_image);
    let digest_pages = total.div_ceil(200);
    let expected_deletions = expired * (3 + per_image) + unreferenced;
    let listing_page_bound = 1 + 2 * digest_pages;
    // The kept images and their signatures and attestations, the children of the expired images
    // and every unreferenced untagged manifest; where the repository holds artifacts, the expired
    // images too (one could be an OCI referrer under an ordinary tag). An expired image's
    // artifacts go unread: their tags say what they are.
    let expired_reads = if signed { expired } else { 0 };
    let manifest_read_bound = kept_images * (1 + per_image) + expired_reads + expired * 2 + unreferenced;
    // Listing twice, apps twice, the reads, the deletions, GC check and start, registry list
    // and credentials, the registry host's challenge and token, the referrers API probe.
    let lower_bound = listing_page_bound + 4 + manifest_read_bound + expected_deletions + 2 + 2 + 2 + 1;
    Ok(EconomyFigures {
        manifests: total,
        expected_deletions,
        deletions: count(&|m, _, status| m == "DELETE" && status == 204),
        remaining,
        expected_remaining: kept_images * (3 + per_image),
        signed,
        kept_whole,
        listing_pages: count(&|m, u, _| m == "GET" && (u.contains("/repositoriesV2") || u.contains("/digests?"))),
        listing_page_bound,
        app_reads: count(&|m, u, _| m == "GET" && u.starts_with("/v2/apps")),
        manifest_reads,
        manifest_read_bound,
        gc_calls: count(&|_, u, _| u.contains("garbage-collection")),
        other_api_requests: count(&|_, u, _| u == "/v2/registries" || u.contains("docker-credentials")),
        registry_auth_requests: registry_log.len() - manifest_reads - referrers_probes,
        referrers_probes,
        api_requests: log.len(),
        recorded_requests: record["data"]["requests"].as_u64().unwrap_or(0),
        total_requests: log.len() + registry_log.len(),
        lower_bound,
        naive_requests: 1 + digest_pages + expected_deletions + 1,
        wall_seconds: run.wall_seconds,
    })
}

impl EconomyFigures {
    /// Each category within its bound, and nothing but the expected deletions.
    pub fn within_bounds(&self) -> bool {
        self.deletions == self.expected_deletions
            && self.remaining == self.expected_remaining
            && self.kept_whole
            && self.listing_pages <= self.listing_page_bound
            && self.app_reads <= 4
            && self.manifest_reads <= self.manifest_read_bound
            && self.gc_calls <= 2
            && self.other_api_requests <= 2
            && self.registry_auth_requests <= 2
            && self.referrers_probes <= 1
            && self.recorded_requests as usize == self.api_requests
    }

    pub fn rows(&self) -> Vec<Row> {
        let n = format!("{}{}", thousands(self.manifests), if self.signed { " signed" } else { "" });
        vec![
            row(
                format!("prune of {n} manifests: requests"),
                thousands(self.total_requests),
                format!(
                    "lower bound {}; naive list-and-delete {}",
                    thousands(self.lower_bound),
                    thousands(self.naive_requests)
                ),
                Some(self.within_bounds() && self.total_requests <= self.lower_bound),
            ),
            row(
                format!("prune of {n} manifests: deletions, left"),
                format!("{}, {}", thousands(self.deletions), thousands(self.remaining)),
                format!(
                    "exactly {}, {} (kept indexes, children, artifacts)",
                    thousands(self.expected_deletions),
                    thousands(self.expected_remaining)
                ),
                Some(
                    self.deletions == self.expected_deletions
                        && self.remaining == self.expected_remaining
                        && self.kept_whole,
                ),
            ),
            row(
                format!("prune of {n} manifests: reads, pages"),
                format!("{}, {}", thousands(self.manifest_reads), self.listing_pages),
                format!(
                    "at most {} (kept + untagged outside them), {}",
                    thousands(self.manifest_read_bound),
                    self.listing_page_bound
                ),
                Some(self.manifest_reads <= self.manifest_read_bound && self.listing_pages <= self.listing_page_bound),
            ),
            row(format!("prune of {n} manifests: wall time"), seconds(self.wall_seconds), "", None),
        ]
    }
}
