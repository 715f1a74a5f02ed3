//! Starting the deployment: one update per intent. A deployment already running the wanted
//! image is followed instead of starting another; the update's own deployment is told by its
//! `pending_deployment`, or else by its image among the deployments made after it (never by
//! comparing whole specs, which the API answers normalised); an update whose answer is lost or
//! unreadable is looked up before anything is said about it.

use std::collections::BTreeSet;
use std::time::Instant;

use do_core::api::{segment, ApiError, TransportError};
use do_core::types::{App, Deployment};
use do_core::{Exit, Failure};
use serde_json::{json, Value};

use crate::spec::{self, Wanted};
use crate::{Ctx, IfBusy};

/// PUTs `new_spec` and returns the deployment it started. The error, when there is one, says
/// what is known to have happened.
pub(crate) fn update_spec(ctx: &Ctx, app: &App, new_spec: Value, intent: &Intent) -> anyhow::Result<Deployment> {
    let recent = recent_deployments(ctx, app)?;
    // Another run (or a person) may have started this very update since the app was read.
    if let Some(same) = recent.iter().find(|d| !d.phase.is_terminal() && intent.is_in(&d.spec)) {
        ctx.progress.info(&format!("deployment {} ({}) already deploys this image; following it", same.id, same.phase));
        return Ok(same.clone());
    }
    let known: BTreeSet<String> = recent.into_iter().map(|d| d.id).collect();
    let path = format!("/v2/apps/{}", segment(&app.id));
    match ctx.client.put_once::<App>(&path, &json!({ "spec": new_spec }), "app") {
        Ok(updated) => match updated.pending_deployment {
            Some(pending) if !pending.id.is_empty() => Ok(pending),
            // The live API's answer can lack it (digitalocean/godo#601).
            _ => find_ours(ctx, app, &known, intent)?.ok_or_else(|| {
                anyhow::anyhow!("the spec was updated, but no deployment running the image can be found; check the app's deployments before retrying")
            }),
        },
        Err(error) if nothing_happened(&error) => Err(error.context("could not update the app spec; nothing was changed")),
        Err(error) => {
            ctx.progress.warn(&format!(
                "the spec update got no usable answer ({error:#}); looking at the app before saying anything"
            ));
            if let Some(ours) = find_ours(ctx, app, &known, intent)? {
                ctx.progress.info(&format!("the update was applied: deployment {} runs the image", ours.id));
                return Ok(ours);
            }
            let now: App = ctx.client.get_object(&path, "app")?;
            if intent.is_in(&now.spec) {
                Err(error.context(
                    "the spec update was applied (the app's spec runs the image), but no deployment running it can be found; check the app's deployments before retrying",
                ))
            } else {
                Err(error.context(
                    "the spec update did not reach the app: its spec still runs the old image and no deployment started, so nothing was changed; rerun do-deploy",
                ))
            }
        }
    }
}

/// The deployment the update made: the first made after it (not in `known`) whose
/// components run the wanted image. Deployments appear a moment after the update, so a few
/// looks, an interval apart, within the deadline.
fn find_ours(ctx: &Ctx, app: &App, known: &BTreeSet<String>, intent: &Intent) -> anyhow::Result<Option<Deployment>> {
    for look in 0..3 {
        if look > 0 {
            let pause = ctx.settings.interval.min(ctx.deadline.saturating_duration_since(Instant::now()));
            std::thread::sleep(pause);
        }
        let recent = recent_deployments(ctx, app)?;
        let ours = recent.into_iter().rev().find(|d| !known.contains(&d.id) && intent.is_in(&d.spec));
        if ours.is_some() {
            return Ok(ours);
        }
    }
    Ok(None)
}

/// What this run deploys, by which a deployment is told to be its own: every matched component
/// runs the wanted image (image fields only), and with --spec its spec is the one this run sends.
pub(crate) struct Intent<'a> {
    pub wanted: &'a Wanted,
    pub repository: &'a str,
    pub components: &'a [String],
    /// With --spec: the whole spec this run sends.
    pub spec: Option<&'a Value>,
}

impl Intent<'_> {
    pub(crate) fn is_in(&self, spec: &Value) -> bool {
        spec::runs_everywhere(spec, self.repository, self.components, self.wanted)
            && self.spec.is_none_or(|intended| crate::diff::same_intent(spec, intended))
    }
}

pub(crate) fn handle_busy(ctx: &Ctx, app: &App, busy: &Deployment) -> anyhow::Result<()> {
    match ctx.settings.if_busy {
        IfBusy::Fail => anyhow::bail!(
            "deployment {} is in progress ({}); rerun later or use --if-busy wait|cancel",
            busy.id,
            busy.phase
        ),
        IfBusy::Cancel => {
            ctx.progress.info(&format!("cancelling deployment {} in progress ({})", busy.id, busy.phase));
            let path = format!("/v2/apps/{}/deployments/{}/cancel", segment(&app.id), segment(&busy.id));
            match ctx.client.post_raw(&path, None) {
                Ok(_) => Ok(()),
                // It may have ended between our look and the cancel.
                Err(error) if do_core::api::has_status(&error, 400) => Ok(()),
                Err(error) => Err(error.context("could not cancel the deployment in progress")),
            }
        }
        IfBusy::Wait => {
            ctx.progress.info(&format!("waiting for deployment {} in progress ({}) to end first", busy.id, busy.phase));
            match crate::follow::follow(ctx, app, &busy.id).ended? {
                Some(_) => Ok(()),
                None => Err(Failure::deadline(format!(
                    "deployment {} was still in progress at the deadline; nothing was changed",
                    busy.id
                ))),
            }
        }
    }
}

/// Creates a deployment (a redeploy). After an ambiguous failure it looks whether the
/// deployment was created before doing anything else, so it is never created twice.
pub(crate) fn create_deployment(ctx: &Ctx, app: &App, path: &str, body: &Value) -> anyhow::Result<Deployment> {
    let known: BTreeSet<String> = recent_deployments(ctx, app)?.into_iter().map(|d| d.id).collect();
    match ctx.client.post_create::<Deployment>(path, Some(body), "deployment") {
        Ok(deployment) => Ok(deployment),
        Err(error) if do_core::api::is_ambiguous(&error) => {
            ctx.progress
                .warn(&format!("the create request had no clear answer ({error:#}); looking whether it happened"));
            find_created(ctx, app, &known, |_| true, "the create request")
        }
        Err(error) => Err(error),
    }
}

/// The newest page of the app's deployments (newest first), read right before a create so
/// that what the create made can be told apart afterwards.
pub(crate) fn recent_deployments(ctx: &Ctx, app: &App) -> anyhow::Result<Vec<Deployment>> {
    ctx.client.get_page(&format!("/v2/apps/{}/deployments?page=1&per_page=20", segment(&app.id)), "deployments")
}

/// The newest deployment that is not in `known` and that `ours` recognises: the one our
/// request created.
pub(crate) fn find_created(
    ctx: &Ctx,
    app: &App,
    known: &BTreeSet<String>,
    ours: impl Fn(&Deployment) -> bool,
    what: &str,
) -> anyhow::Result<Deployment> {
    let recent = recent_deployments(ctx, app)?;
    recent.into_iter().find(|d| !known.contains(&d.id) && ours(d)).ok_or_else(|| {
        anyhow::anyhow!(
            "{what} created no deployment that can be found; check the app in the control panel before retrying"
        )
    })
}

/// Whether a failed request certainly changed nothing: the API refused it (4xx), or it was never
/// sent (the deadline had passed). Anything else (no answer, a 5xx, an HTML page, a 204 where a
/// body was due) may have been applied.
fn nothing_happened(error: &anyhow::Error) -> bool {
    let refused = error.chain().any(|c| c.downcast_ref::<ApiError>().is_some_and(|a| (400..500).contains(&a.status)));
    let answered_or_tried = error.chain().any(|c| c.is::<ApiError>() || c.is::<TransportError>());
    refused
        || (!answered_or_tried
            && do_core::exit::exit_code_of(error) == Exit::Deadline
            && !error.chain().any(|c| c.is::<serde_json::Error>()))
}
