//! A record that says its step did not succeed stops the next tool in a pipeline.
//!
//! `do-gc-wait --timeout 1s | do-tag` while a GC runs: the gc-wait record says `timeout` (and
//! do-gc-wait exits 3, which a pipeline without `pipefail` does not see). do-tag must not tag
//! and push because of it. Every tool reads its input through one start-up, which asks this
//! module; `--ignore-upstream-failure` goes on anyway. When the upstream tool wrote no record at
//! all (it failed before its first line), nothing here can tell: use `set -o pipefail`.

use serde_json::Value;

use crate::contract::{Input, Line};

/// Why a failed record failed, naming its line; `None` when the last record of every kind says
/// its step succeeded. Only the last of a kind counts, as tools read them: a rerun's report
/// holds the failed attempt and then the step that succeeded.
pub fn failure(input: &Input) -> Option<String> {
    let mut last: std::collections::BTreeMap<&str, &Line> = std::collections::BTreeMap::new();
    for line in &input.lines {
        last.insert(line.record.kind.as_str(), line);
    }
    let mut lines: Vec<&Line> = last.into_values().collect();
    lines.sort_by_key(|line| line.number);
    lines.into_iter().find_map(|line| why_failed(line).map(|why| format!("input line {}: {why}", line.number)))
}

fn why_failed(line: &Line) -> Option<String> {
    let record = &line.record;
    let text = |field: &str| record.data.get(field).and_then(Value::as_str).unwrap_or("");
    let flag = |field: &str| record.data.get(field).and_then(Value::as_bool);
    match record.kind.as_str() {
        "gc-wait" if !matches!(text("outcome"), "clear" | "succeeded") => {
            Some(format!("the gc-wait step ended {:?}, so the registry may still be read-only", text("outcome")))
        }
        // A remote was named but does not have the tag: not where CI and do-deploy look for it.
        // (`pushed` says only whether this run pushed it; a rerun finds it there already.)
        "tag"
            if flag("on_remote") == Some(false)
                && flag("dry_run") != Some(true)
                && !record.data.get("remote").is_none_or(Value::is_null) =>
        {
            Some(format!("tag {} is not on the remote (its push failed)", text("tag")))
        }
        // A dry run deploys nothing, and --no-wait (`created`) chose not to follow: neither failed.
        // ACTIVE is not enough: a release whose check or soak failed went ACTIVE too.
        "deploy" if !deploy_succeeded(text("outcome"), text("phase")) => Some(format!(
            "the deployment ended {} (outcome {:?}), not ACTIVE and passing",
            text("phase"),
            text("outcome")
        )),
        "prune" if record.data.get("failed").and_then(Value::as_array).is_some_and(|f| !f.is_empty()) => {
            Some("the prune step has failed deletions".to_string())
        }
        _ if text("outcome") == "failed" => Some(format!("the {} step failed", record.kind)),
        _ => None,
    }
}

/// Whether a deploy record says its step succeeded: ACTIVE with nothing failed after it (an
/// older record without an outcome: ACTIVE), or a dry run or --no-wait, which chose not to follow.
fn deploy_succeeded(outcome: &str, phase: &str) -> bool {
    match outcome {
        "dry_run" | "created" => true,
        "" | "active" | "unchanged" => phase == "ACTIVE",
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn first_failure(lines: &[&str]) -> Option<String> {
        failure(&Input::parse(lines.join("\n").as_bytes()).unwrap())
    }

    #[test]
    fn each_kind_of_failed_step_is_told_and_successes_pass() {
        let fine = [
            r#"{"kind":"gc-wait","v":1,"data":{"registry":"r","outcome":"clear"}}"#,
            r#"{"kind":"gc-wait","v":1,"data":{"registry":"r","outcome":"succeeded"}}"#,
            r#"{"kind":"tag","v":1,"data":{"tag":"v1","version":"1.0.0","commit":"c","remote":"origin","pushed":true,"on_remote":true}}"#,
            r#"{"kind":"tag","v":1,"data":{"tag":"v1","version":"1.0.0","commit":"c","remote":null,"pushed":false,"on_remote":false}}"#,
            r#"{"kind":"tag","v":1,"data":{"tag":"v1","version":"1.0.0","commit":"c","remote":"origin","pushed":false,"on_remote":false,"dry_run":true}}"#,
            r#"{"kind":"tag","v":1,"data":{"tag":"v1","version":"1.0.0","commit":"c","remote":"origin","pushed":false,"on_remote":true}}"#,
            r#"{"kind":"tag","v":1,"data":{"tag":"v1","version":"1.0.0","commit":"c","remote":"origin","pushed":false}}"#,
            r#"{"kind":"deploy","v":1,"data":{"app_id":"a","phase":"ACTIVE","changed":true,"outcome":"active"}}"#,
            r#"{"kind":"deploy","v":1,"data":{"app_id":"a","phase":"UNKNOWN","changed":true,"outcome":"dry_run"}}"#,
            r#"{"kind":"deploy","v":1,"data":{"app_id":"a","phase":"PENDING_BUILD","changed":true,"outcome":"created"}}"#,
            r#"{"kind":"deploy","v":1,"data":{"app_id":"a","phase":"ACTIVE","changed":false,"outcome":"unchanged"}}"#,
            r#"{"kind":"deploy","v":1,"data":{"app_id":"a","phase":"ACTIVE","changed":true}}"#,
            r#"{"kind":"prune","v":2,"data":{"registry":"r","dry_run":false,"requests":3,"failed":[]}}"#,
            r#"{"kind":"image","v":1,"data":{"registry":"r","repository":"web","digest":"sha256:aa"}}"#,
            r#"{"kind":"something-else","v":1,"data":{"outcome":"whatever"}}"#,
        ];
        assert_eq!(first_failure(&fine), None);
        let cases = [
            (r#"{"kind":"gc-wait","v":1,"data":{"registry":"r","outcome":"timeout"}}"#, "ended \"timeout\""),
            (r#"{"kind":"gc-wait","v":1,"data":{"registry":"r","outcome":"failed"}}"#, "ended \"failed\""),
            (
                r#"{"kind":"tag","v":1,"data":{"tag":"v1","version":"1.0.0","commit":"c","remote":"origin","pushed":false,"on_remote":false}}"#,
                "tag v1 is not on the remote",
            ),
            (
                r#"{"kind":"deploy","v":1,"data":{"app_id":"a","phase":"ERROR","changed":true,"outcome":"failed"}}"#,
                "ended ERROR (outcome \"failed\")",
            ),
            (
                r#"{"kind":"deploy","v":1,"data":{"app_id":"a","phase":"DEPLOYING","changed":true,"outcome":"deadline"}}"#,
                "ended DEPLOYING (outcome \"deadline\")",
            ),
            (
                r#"{"kind":"deploy","v":1,"data":{"app_id":"a","phase":"ACTIVE","changed":true,"outcome":"check_failed"}}"#,
                "ended ACTIVE (outcome \"check_failed\")",
            ),
            (
                r#"{"kind":"deploy","v":1,"data":{"app_id":"a","phase":"ACTIVE","changed":true,"outcome":"soak_failed"}}"#,
                "ended ACTIVE (outcome \"soak_failed\")",
            ),
            (
                r#"{"kind":"deploy","v":1,"data":{"app_id":"a","phase":"ACTIVE","changed":true,"outcome":"superseded"}}"#,
                "(outcome \"superseded\")",
            ),
            (
                r#"{"kind":"deploy","v":1,"data":{"app_id":"a","phase":"DEPLOYING","changed":true,"outcome":"active"}}"#,
                "ended DEPLOYING",
            ),
            (
                r#"{"kind":"deploy","v":1,"data":{"app_id":"a","phase":"ERROR","changed":true}}"#,
                "ended ERROR (outcome \"\")",
            ),
            (
                r#"{"kind":"prune","v":2,"data":{"registry":"r","dry_run":false,"requests":3,"failed":[{"digest":"x"}]}}"#,
                "failed deletions",
            ),
            (
                r#"{"kind":"preview-delete","v":1,"data":{"app_name":"a","deleted":false,"outcome":"failed"}}"#,
                "the preview-delete step failed",
            ),
        ];
        for (line, expected) in cases {
            let found = first_failure(&[fine[0], line]).unwrap_or_default();
            assert!(found.starts_with("input line 2: ") && found.contains(expected), "{line}: {found}");
        }
        // A rerun's report: the failed attempt, then the step that succeeded.
        let rerun = [cases[0].0, fine[1], cases[2].0, fine[2]];
        assert_eq!(first_failure(&rerun), None, "only the last record of a kind counts");
        assert!(first_failure(&[fine[2], cases[2].0]).unwrap().starts_with("input line 2: "));
    }
}
