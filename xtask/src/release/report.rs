//! What the release says: the dry-run plan and the summary at the end.

use std::time::Duration;

use serde_json::Value;

use super::*;

impl Runner<'_> {
    pub(super) fn dry_run_plan(&self) -> String {
        let plan = &self.plan;
        let mut text = String::from("release plan (dry run; nothing was changed; add --execute to release):\n");
        let gc = if plan.gc_busy {
            let gc = last_record(&self.stream, "gc-wait").unwrap_or_default();
            format!(
                "garbage collection {} is {}: the release would wait for it",
                gc["gc"]["uuid"].as_str().unwrap_or("?"),
                gc["gc"]["status"].as_str().unwrap_or("running")
            )
        } else {
            "no garbage collection running".to_string()
        };
        let build = match &plan.reuse {
            Some(digest) => format!("already in the registry from HEAD ({}), not built again", short_digest(digest)),
            None => format!(
                "{} from {} (label {REVISION_LABEL}={})",
                plan.image,
                self.options.repo_dir.display(),
                short(&plan.commit)
            ),
        };
        let mut rows = vec![
            ("build", build),
            ("gc-wait", format!("registry {}: {gc}", plan.registry)),
            ("tag", format!("{} on {}, pushed to {}", plan.tag, short(&plan.commit), self.config().remote)),
            (
                "push",
                if plan.reuse.is_some() {
                    "nothing to push".to_string()
                } else {
                    format!("{}, then pinned by digest", plan.image)
                },
            ),
        ];
        if let Some(deploy) = last_record(&self.stream, "deploy") {
            let changes: Vec<String> = deploy["components"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|c| {
                    format!(
                        "{} {}: {} -> {}",
                        c["kind"].as_str().unwrap_or(""),
                        c["name"].as_str().unwrap_or(""),
                        c["image_before"].as_str().unwrap_or(""),
                        c["image_after"].as_str().unwrap_or("")
                    )
                })
                .collect();
            rows.push(("deploy", format!("{} {}", deploy["app_name"].as_str().unwrap_or("?"), changes.join("; "))));
        }
        if let Some(prune) = last_record(&self.stream, "prune") {
            let (deleted, untagged) = prune_counts(&prune);
            rows.push((
                "prune",
                format!(
                    "{deleted} deletion(s), {untagged} of them untagged manifests; usage {} -> about {}",
                    bytes_text(&prune["usage"]["before_bytes"]),
                    bytes_text(&prune["usage"]["estimated_after_bytes"])
                ),
            ));
        }
        text.push_str(&format!("  [1/{}] preflight  every check passed\n", STEPS.len()));
        for (name, row) in rows {
            text.push_str(&format!("  [{}/{}] {name:<9}  {row}\n", step_number(name), STEPS.len()));
        }
        text
    }

    pub(super) fn summary(&self) -> String {
        let gc_waits: Vec<Value> = String::from_utf8_lossy(&self.stream)
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|r| r["kind"] == "gc-wait")
            .map(|r| r["data"].clone())
            .collect();
        let waited_ms: u64 = gc_waits.iter().filter_map(|g| g["waited_ms"].as_u64()).sum();
        let tag = last_record(&self.stream, "tag").unwrap_or_default();
        let image = last_record(&self.stream, "image").unwrap_or_default();
        let deploy = last_record(&self.stream, "deploy").unwrap_or_default();
        let prune = last_record(&self.stream, "prune").unwrap_or_default();
        let (deleted, _) = prune_counts(&prune);
        let freed = prune["usage"]["before_bytes"]
            .as_u64()
            .unwrap_or(0)
            .saturating_sub(prune["usage"]["estimated_after_bytes"].as_u64().unwrap_or(0));
        let gc = if prune["gc"].is_null() {
            "none".to_string()
        } else {
            format!(
                "{} ({}, {})",
                prune["gc"]["uuid"].as_str().unwrap_or("?"),
                prune["gc"]["type"].as_str().unwrap_or("type unknown"),
                prune["gc"]["status"].as_str().unwrap_or("?")
            )
        };
        let check = match deploy["check"].as_object() {
            Some(check) if check.get("passed") == Some(&Value::Bool(true)) => {
                let headers: Vec<String> = check
                    .get("headers")
                    .and_then(Value::as_object)
                    .into_iter()
                    .flatten()
                    .map(|(name, value)| format!("{name}: {}", value.as_str().unwrap_or("none")))
                    .collect();
                let seen = if headers.is_empty() { String::new() } else { format!(" ({})", headers.join(", ")) };
                format!(
                    "\n  check          {} answered {}{seen}",
                    check.get("url").and_then(Value::as_str).unwrap_or("?"),
                    check.get("status").unwrap_or(&Value::Null)
                )
            }
            _ => String::new(),
        };
        format!(
            "released {} ({}):\n  waited for GC  {}\n  image          {}\n  deployment     {} {}{check}\n  pruned         {deleted} deletion(s), about {} freed once GC ends\n  GC started     {gc}\n",
            tag["tag"].as_str().unwrap_or("?"),
            self.plan.why,
            do_core::duration::human(Duration::from_millis(waited_ms)),
            image["digest"].as_str().unwrap_or("?"),
            deploy["deployment_id"].as_str().unwrap_or("?"),
            deploy["phase"].as_str().unwrap_or("?"),
            do_core::units::bytes(freed),
        )
    }
}

/// Deletions, and how many of them are untagged manifests, across a prune record's repositories.
pub(super) fn prune_counts(prune: &Value) -> (usize, usize) {
    let repositories = prune["repositories"].as_array().map(Vec::as_slice).unwrap_or_default();
    let deletions: Vec<&Value> =
        repositories.iter().flat_map(|r| r["deleted"].as_array().into_iter().flatten()).collect();
    let untagged = deletions.iter().filter(|d| d["all_tags"].as_array().is_some_and(Vec::is_empty)).count();
    (deletions.len(), untagged)
}

pub(super) fn short(commit: &str) -> &str {
    commit.get(..12).unwrap_or(commit)
}

pub(super) fn short_digest(digest: &str) -> &str {
    digest.get(..19).unwrap_or(digest)
}

pub(super) fn bytes_text(value: &Value) -> String {
    value.as_u64().map(do_core::units::bytes).unwrap_or_else(|| "?".into())
}

/// Turns an API error into what to do: a refused token names the scope it needs.
pub(super) fn scope_hint(error: &anyhow::Error, scope: &str) -> String {
    if do_core::api::has_status(error, 401) {
        "the token was refused (401): check DIGITALOCEAN_ACCESS_TOKEN".to_string()
    } else if do_core::api::has_status(error, 403) {
        format!("the token lacks the {scope} scope (403): give it {scope}, or use a full-access token")
    } else {
        format!("{error:#}")
    }
}
