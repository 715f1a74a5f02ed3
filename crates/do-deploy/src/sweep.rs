//! Previews that clean up after themselves. `--sweep-previews` deletes every preview of the spec
//! that is not kept (`--keep`, `--keep-file`: the open pull requests) or was deployed within
//! `--older-than`, each through the same guard as `--delete-preview` (named as that preview of
//! this spec, carrying exactly its mark, checked on a fresh read). `--max-previews` refuses a new
//! preview beyond that many of the spec, or with `--evict-oldest` deletes the oldest first. The
//! decisions are pure; the record lists every app with its fate and why.

use std::collections::BTreeSet;
use std::time::Duration;

use do_core::progress::Progress;
use do_core::types::App;
use do_core::{Client, Exit, Failure};
use serde::Serialize;

use crate::specfile;

/// What a sweep keeps.
#[derive(Clone, Debug, Default)]
pub struct Rules {
    /// The previews to keep (--keep, --keep-file); None: no list given.
    pub keep: Option<BTreeSet<String>>,
    /// Keep those deployed within this long.
    pub older_than: Option<Duration>,
    /// Now, in Unix seconds.
    pub now: i64,
}

/// What a sweep knows of an app.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Facts {
    pub id: String,
    pub name: String,
    /// The preview mark every component carries, if it is a preview made by do-deploy.
    pub mark: Option<String>,
    /// When it was last deployed (or made), in Unix seconds.
    pub deployed_at: Option<i64>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fate {
    Delete,
    Keep,
    /// Not a preview of this spec: never touched.
    NotOurs,
}

/// What a sweep of `base`'s previews does with an app, and why: pure.
pub fn decide(base: &str, app: &Facts, rules: &Rules) -> (Fate, String) {
    let Some(preview) = &app.mark else {
        let why = if app.name == base { "the spec's own app" } else { "not a preview: no DO_RELEASE_PREVIEW mark" };
        return (Fate::NotOurs, why.into());
    };
    if specfile::preview_app_name(base, preview) != app.name {
        return (Fate::NotOurs, format!("marked {preview}, but not named as a preview of {base}"));
    }
    if rules.keep.as_ref().is_some_and(|keep| keep.contains(preview)) {
        return (Fate::Keep, format!("{preview} is kept"));
    }
    if let Some(older_than) = rules.older_than {
        let Some(at) = app.deployed_at else { return (Fate::Keep, "when it was deployed is unknown".into()) };
        let age = rules.now.saturating_sub(at);
        if age < older_than.as_secs() as i64 {
            return (Fate::Keep, format!("deployed within --older-than {}", do_core::duration::human(older_than)));
        }
    }
    let why = match (&rules.keep, rules.older_than) {
        (Some(_), Some(_)) => "not kept, and deployed before --older-than",
        (Some(_), None) => "not kept",
        _ => "deployed before --older-than",
    };
    (Fate::Delete, why.into())
}

/// The previews to delete so a new one fits within `max`: the oldest first (one whose time is
/// unknown counts as newest, so it is the last to go). `previews` are the spec's others.
pub fn evictions(previews: &[Facts], max: usize) -> Vec<&Facts> {
    let excess = (previews.len() + 1).saturating_sub(max);
    let mut oldest_first: Vec<&Facts> = previews.iter().collect();
    oldest_first.sort_by_key(|p| (p.deployed_at.is_none(), p.deployed_at, p.name.clone()));
    oldest_first.into_iter().take(excess).collect()
}

/// What a sweep knows of `app`.
pub fn facts(app: &App) -> Facts {
    let at = app.last_deployment_created_at.as_deref().or(app.created_at.as_deref());
    Facts {
        id: app.id.clone(),
        name: app.name().to_string(),
        mark: specfile::preview_marker(&app.spec).map(str::to_string),
        deployed_at: at.and_then(do_core::duration::parse_timestamp).map(|t| t.as_second()),
    }
}

/// The `preview-sweep` record, v1.
#[derive(Debug, Serialize)]
pub struct SweepRecord {
    /// The spec's name: its previews are SPECNAME-PREVIEW.
    pub spec: String,
    pub dry_run: bool,
    pub apps: Vec<SweptApp>,
    pub deleted: usize,
}

#[derive(Debug, Serialize)]
pub struct SweptApp {
    pub app_name: String,
    pub app_id: String,
    pub preview: Option<String>,
    /// `deleted`, `would_delete`, `kept`, `not_ours`, `absent` (gone already) or `failed`.
    pub fate: String,
    pub reason: String,
}

/// Sweeps `base`'s previews under `rules`; deletes only with `execute`. The record, and the
/// outcome (a failed delete is exit 1 after the record).
pub fn sweep(
    client: &Client,
    progress: &Progress,
    base: &str,
    rules: &Rules,
    execute: bool,
) -> anyhow::Result<(SweepRecord, anyhow::Result<Exit>)> {
    let apps: Vec<App> = client.get_all("/v2/apps", "apps")?;
    let mut record = SweepRecord { spec: base.to_string(), dry_run: !execute, apps: Vec::new(), deleted: 0 };
    let mut failed = Vec::new();
    for app in &apps {
        let facts = facts(app);
        let (fate, reason) = decide(base, &facts, rules);
        let mut swept = SweptApp {
            app_name: facts.name.clone(),
            app_id: app.id.clone(),
            preview: facts.mark.clone(),
            fate: if fate == Fate::Keep { "kept" } else { "not_ours" }.into(),
            reason,
        };
        if fate == Fate::Delete {
            let preview = facts.mark.as_deref().unwrap_or_default();
            swept.fate = delete_one(client, progress, (base, preview), &app.id, execute, &mut failed);
            record.deleted += usize::from(swept.fate == "deleted");
        }
        if fate != Fate::NotOurs {
            progress.info(&format!("{}: {} ({})", swept.app_name, swept.fate.replace('_', " "), swept.reason));
        }
        record.apps.push(swept);
    }
    let outcome = match failed.first() {
        Some(name) => {
            Err(anyhow::anyhow!("{} preview(s) could not be deleted, first {name}; rerun to retry", failed.len()))
        }
        None => Ok(Exit::Done),
    };
    if !execute {
        progress.info("dry run: nothing was deleted; add --execute to delete");
    }
    Ok((record, outcome))
}

/// One preview (its app listed as `id`) deleted under --delete-preview's guard: its fate.
fn delete_one(
    client: &Client,
    progress: &Progress,
    (base, preview): (&str, &str),
    id: &str,
    execute: bool,
    failed: &mut Vec<String>,
) -> String {
    match crate::preview::delete_listed(client, progress, (base, preview), Some(id.to_string()), !execute) {
        Ok((one, Ok(_))) if one.outcome == "dry_run" => "would_delete".into(),
        Ok((one, Ok(_))) => one.outcome,
        Ok((_, Err(error))) | Err(error) => {
            progress.warn(&format!("preview {preview}: {error:#}"));
            failed.push(format!("{preview}: {error:#}"));
            "failed".into()
        }
    }
}

/// What --max-previews asks for the preview `name` of `base`.
pub struct Room<'a> {
    pub base: &'a str,
    pub name: &'a str,
    pub max: usize,
    /// --evict-oldest: delete the oldest to make room, instead of refusing.
    pub evict: bool,
}

/// With --max-previews: room for the new preview `room.name` among the spec's others in `apps`
/// (the account's, listed once by the caller). Beyond the limit it is refused (exit 2, naming
/// the oldest), unless --evict-oldest deletes them first (in a dry run, says it would).
pub fn make_room(client: &Client, progress: &Progress, apps: &[App], room: &Room, dry_run: bool) -> anyhow::Result<()> {
    let Room { base, name, max, evict } = *room;
    debug_assert!(!apps.iter().any(|app| app.name() == name), "room is made for a new preview only");
    let others: Vec<Facts> = apps
        .iter()
        .map(facts)
        .filter(|f| f.mark.as_deref().is_some_and(|mark| specfile::preview_app_name(base, mark) == f.name))
        .collect();
    let going = evictions(&others, max);
    if going.is_empty() {
        return Ok(());
    }
    let names: Vec<&str> = going.iter().map(|f| f.name.as_str()).collect();
    if !evict {
        return Err(Failure::usage(format!(
            "{} previews of {base} run already, and --max-previews is {max}: delete one first (the oldest: {}), or pass --evict-oldest; nothing was changed",
            others.len(),
            names.join(", ")
        )));
    }
    for facts in going {
        let preview = facts.mark.as_deref().unwrap_or_default();
        if dry_run {
            progress.info(&format!("dry run: --evict-oldest would delete preview {}", facts.name));
            continue;
        }
        progress.info(&format!("--evict-oldest: deleting preview {} to stay within {max}", facts.name));
        let (_, outcome) =
            crate::preview::delete_listed(client, progress, (base, preview), Some(facts.id.clone()), false)?;
        outcome?;
    }
    Ok(())
}

#[cfg(test)]
#[path = "sweep_tests.rs"]
mod tests;
