//! With --spec: checking the spec with App Platform before anything changes, and creating the
//! app when it is missing. Names are unique on App Platform, so an app of the spec's name found
//! after a create failed, or refused as taken, is the one a lost answer or another run made,
//! and the run goes on with it as with any existing app.

use do_core::api::ApiError;
use do_core::types::App;
use do_core::{Client, Failure};
use serde_json::{json, Value};

use crate::spec::{self, ComponentChange, ComponentRef, Wanted};
use crate::{check_is_preview, diff, specfile, Ctx, DeployRecord, SpecPlan, NOT_CREATED_YET};

/// The app of exactly this name, if the account has one.
pub(crate) fn app_named(client: &Client, name: &str) -> anyhow::Result<Option<App>> {
    let apps: Vec<App> = client.get_all("/v2/apps", "apps")?;
    Ok(named(&apps, name).cloned())
}

/// The app of that name among `apps`.
fn named<'a>(apps: &'a [App], name: &str) -> Option<&'a App> {
    apps.iter().find(|app| app.name() == name)
}

/// The app a --spec run deploys to, or the record of a dry run that would create it.
pub(crate) enum SpecApp {
    Ready { app: Box<App>, created: bool, from_file: FromFile },
    DryRunCreate(Box<DeployRecord>),
}

/// The file's spec pinned to the image (live secrets kept), and what pinning changed in it.
pub(crate) struct FromFile {
    pub new_spec: Value,
    pub changes: Vec<ComponentChange>,
    pub components: Vec<ComponentRef>,
}

pub(crate) fn find_app_named(ctx: &Ctx, name: &str) -> anyhow::Result<Option<App>> {
    app_named(ctx.client, name)
}

/// The app the spec names, made when missing (with --create or --preview), and the spec to
/// send, passed by propose.
pub(crate) fn app_for_spec(ctx: &Ctx, plan: &SpecPlan, wanted: &Wanted, repository: &str) -> anyhow::Result<SpecApp> {
    let apps: Vec<App> = ctx.client.get_all("/v2/apps", "apps")?;
    let existing = named(&apps, plan.app_name()).cloned();
    if existing.is_none() && !plan.may_create {
        return Err(Failure::usage(format!(
            "no app named {:?}: pass --create to create it from the spec",
            plan.app_name()
        )));
    }
    let file = spec_to_send(ctx, plan, wanted, repository, existing.as_ref())?;
    propose(ctx, &file.new_spec, existing.as_ref().map(|app| app.id.as_str()))?;
    if let (None, Some(_), Some((max, evict))) = (&existing, &plan.preview, ctx.settings.max_previews) {
        let room = crate::sweep::Room { base: &plan.base_name, name: plan.app_name(), max, evict };
        crate::sweep::make_room(ctx.client, ctx.progress, &apps, &room, ctx.settings.dry_run)?;
    }
    let (app, created) = match existing {
        Some(app) => (app, false),
        None if ctx.settings.dry_run => {
            let record = dry_run_create(ctx, plan, &file.new_spec, file.changes, wanted);
            return Ok(SpecApp::DryRunCreate(Box::new(record)));
        }
        None => {
            let (app, made) = create_app(ctx, plan, &file.new_spec)?;
            if !made {
                check_is_preview(plan, &app)?;
            }
            (app, made)
        }
    };
    Ok(SpecApp::Ready { app: Box::new(app), created, from_file: file })
}

/// The file's spec for the app as `live` is (None: a new app): pinned to the image, with the
/// live secrets the file leaves empty, and refused when it would remove what the live app
/// has (unless allowed, or a preview), or when `live` is not this preview.
pub(crate) fn spec_to_send(
    ctx: &Ctx,
    plan: &SpecPlan,
    wanted: &Wanted,
    repository: &str,
    live: Option<&App>,
) -> anyhow::Result<FromFile> {
    let cli = ctx.settings;
    let components = spec::matching_components(&plan.spec, repository, &cli.component).map_err(Failure::usage)?;
    let (mut new_spec, changes) = spec::pin(&plan.spec, &components, wanted);
    if let Some(live) = live {
        check_is_preview(plan, live)?;
        specfile::keep_live_secrets(&mut new_spec, &live.spec);
        let gone = spec::removals(&live.spec, &new_spec);
        if !gone.is_empty() && plan.preview.is_none() && !cli.allow_removal {
            return Err(Failure::usage(format!(
                "the spec would remove {} from {}; nothing was changed: add them to the spec, or pass --allow-removal if that is what you want",
                gone.join(", "),
                plan.app_name()
            )));
        }
    }
    Ok(FromFile { new_spec, changes, components })
}

/// Asks App Platform whether it would take `spec` (for the app `app_id`, or a new one); a
/// refusal is exit 2 listing each field's error.
pub(crate) fn propose(ctx: &Ctx, spec: &Value, app_id: Option<&str>) -> anyhow::Result<()> {
    let mut body = json!({ "spec": spec });
    if let Some(app_id) = app_id {
        body["app_id"] = json!(app_id);
    }
    match ctx.client.post_read("/v2/apps/propose", &body) {
        Ok(answer) => {
            if app_id.is_none() && answer.get("app_name_available").and_then(Value::as_bool) == Some(false) {
                // Another run may be creating it right now: the create will tell.
                ctx.progress.warn(&format!(
                    "App Platform says the name {:?} is taken, though no app of that name can be seen",
                    spec.get("name").and_then(Value::as_str).unwrap_or("")
                ));
            }
            Ok(())
        }
        Err(error) => Err(refusal(error, "the spec does not pass App Platform's checks; nothing was changed")),
    }
}

/// Creates the app; the app and whether this run created it (false when an app of the name
/// turned up meanwhile, made by a lost answer's create or by another run).
pub(crate) fn create_app(ctx: &Ctx, plan: &SpecPlan, spec: &Value) -> anyhow::Result<(App, bool)> {
    let name = plan.app_name();
    ctx.progress.info(&format!("creating app {name}"));
    match ctx.client.post_create::<App>("/v2/apps", Some(&json!({ "spec": spec })), "app") {
        Ok(app) => {
            ctx.progress.info(&format!("created app {name} ({})", app.id));
            Ok((app, true))
        }
        Err(error) => {
            ctx.progress.warn(&format!("the create got no usable answer ({error:#}); looking for app {name}"));
            if let Some(app) = find_app_named(ctx, name)? {
                ctx.progress.info(&format!("app {name} exists now ({}); going on with it", app.id));
                return Ok((app, false));
            }
            if refused(&error) {
                return Err(refusal(error, "App Platform refused to create the app; nothing was changed"));
            }
            Err(error.context(format!(
                "creating app {name} got no answer and no app of that name exists: nothing was created; rerun do-deploy"
            )))
        }
    }
}

/// The record of a dry run that would create the app.
pub(crate) fn dry_run_create(
    ctx: &Ctx,
    plan: &SpecPlan,
    spec: &Value,
    mut changes: Vec<ComponentChange>,
    wanted: &Wanted,
) -> DeployRecord {
    let spec_changes = diff::changes(&json!({}), spec);
    ctx.progress.info(&format!(
        "dry run: would create app {} with {} field{}:",
        plan.app_name(),
        spec_changes.len(),
        if spec_changes.len() == 1 { "" } else { "s" }
    ));
    for change in &spec_changes {
        ctx.progress.info(&format!("  {change}"));
    }
    changes.iter_mut().for_each(|change| change.image_before = "none".into());
    DeployRecord {
        app_id: NOT_CREATED_YET.into(),
        app_name: plan.app_name().to_string(),
        deployment_id: None,
        previous_deployment_id: None,
        phase: "UNKNOWN".into(),
        image: Some(wanted.shown()),
        components: changes,
        changed: true,
        dry_run: true,
        cause: None,
        duration_ms: ctx.started.elapsed().as_millis() as u64,
        live_url: None,
        outcome: "dry_run".into(),
        failure: None,
        superseded_by: None,
        check: None,
        rollback: None,
        created: false,
        preview: plan.preview.clone(),
        spec_changes,
        soak: None,
    }
}

/// Whether the API answered the request with a refusal (4xx): nothing happened.
fn refused(error: &anyhow::Error) -> bool {
    error
        .chain()
        .any(|c| c.downcast_ref::<ApiError>().is_some_and(|a| (400..500).contains(&a.status) && a.status != 429))
}

/// A refusal of the spec as exit 2, one line per field; other errors as they are.
fn refusal(error: anyhow::Error, headline: &str) -> anyhow::Error {
    let api = error.chain().find_map(|c| c.downcast_ref::<ApiError>()).filter(|a| [400, 409, 422].contains(&a.status));
    let Some(api) = api else { return error };
    let lines: Vec<String> = specfile::field_errors(&api.message)
        .into_iter()
        .map(|(field, why)| format!("  {field}: {}", do_core::redact::redact(&why)))
        .collect();
    Failure::usage(format!("{headline}:\n{}", lines.join("\n")))
}
