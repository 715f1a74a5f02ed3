//! `--delete-preview NAME`: deletes the preview app SPECNAME-NAME, and nothing else. The app
//! must carry do-deploy's preview mark for that very preview, checked on a fresh read right
//! before the delete; an app that is already gone is success, so a closed pull request's job
//! can run twice.

use do_core::api::segment;
use do_core::progress::Progress;
use do_core::types::App;
use do_core::{Client, Exit, Failure};
use serde::Serialize;

use crate::specfile::{self, PREVIEW_MARKER};

/// The `preview-delete` record, v1.
#[derive(Debug, Serialize)]
pub struct PreviewDeleteRecord {
    pub app_name: String,
    /// Null when no app of that name exists.
    pub app_id: Option<String>,
    pub preview: String,
    pub deleted: bool,
    pub dry_run: bool,
    /// `deleted`, `absent` (nothing to delete), `dry_run`, or `failed` (the delete was refused or
    /// got no answer, and the app is still there).
    pub outcome: String,
    /// With --delete-images: each of the preview's image tags and what became of it.
    pub images: Vec<crate::images::ImageTag>,
}

/// The record and the outcome. An outer error means nothing that changes anything was sent, so
/// there is no record; the inner one is the delete's failure, told after its record.
pub fn delete(
    client: &Client,
    progress: &Progress,
    base: &str,
    preview: &str,
    dry_run: bool,
) -> anyhow::Result<(PreviewDeleteRecord, anyhow::Result<Exit>)> {
    let listed = crate::create::app_named(client, &specfile::preview_app_name(base, preview))?;
    delete_listed(client, progress, (base, preview), listed.map(|app| app.id), dry_run)
}

/// As `delete`, for a preview whose app the caller listed already: `listed` is the id of the
/// app of the preview's name (None: there is none). The guard reads it again all the same.
pub fn delete_listed(
    client: &Client,
    progress: &Progress,
    (base, preview): (&str, &str),
    listed: Option<String>,
    dry_run: bool,
) -> anyhow::Result<(PreviewDeleteRecord, anyhow::Result<Exit>)> {
    let name = specfile::preview_app_name(base, preview);
    let mut record = PreviewDeleteRecord {
        app_name: name.clone(),
        app_id: None,
        preview: preview.to_string(),
        deleted: false,
        dry_run,
        outcome: "absent".into(),
        images: Vec::new(),
    };
    let Some(id) = listed else {
        progress.info(&format!("no app named {name}; nothing to delete"));
        return Ok((record, Ok(Exit::Done)));
    };
    let path = format!("/v2/apps/{}", segment(&id));
    record.app_id = Some(id);
    // Read again right before deleting: the mark is checked on what the delete will hit.
    let Some(app) = client.get_object_or_none::<App>(&path, "app")? else {
        progress.info(&format!("app {name} is gone already; nothing to delete"));
        return Ok((record, Ok(Exit::Done)));
    };
    if app.name() != name || specfile::preview_marker(&app.spec) != Some(preview) {
        return Err(Failure::usage(format!(
            "app {name} ({}) was not made by do-deploy --preview {preview} (its spec has no {PREVIEW_MARKER}={preview}); not deleting it",
            app.id
        )));
    }
    if dry_run {
        progress.info(&format!("dry run: would delete preview app {name} ({})", app.id));
        record.outcome = "dry_run".into();
        return Ok((record, Ok(Exit::Done)));
    }
    progress.info(&format!("deleting preview app {name} ({})", app.id));
    if let Err(error) = client.delete(&path) {
        // A retried delete whose first try went through answers 404.
        match client.get_object_or_none::<App>(&path, "app") {
            Ok(None) => {}
            _ => {
                record.outcome = "failed".into();
                return Ok((record, Err(error.context(format!("could not delete preview app {name}")))));
            }
        }
    }
    record.deleted = true;
    record.outcome = "deleted".into();
    progress.info(&format!("deleted preview app {name}"));
    Ok((record, Ok(Exit::Done)))
}
