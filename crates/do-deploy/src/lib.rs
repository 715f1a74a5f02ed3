//! do-deploy: point an App Platform app at a new image, follow the deployment to the end,
//! explain failures, roll back.

mod cli;
pub mod spec;
pub mod target;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;
use do_core::api::segment;
use do_core::contract::Output;
use do_core::poll::{Check, Poller};
use do_core::progress::Progress;
use do_core::types::{App, Deployment, Manifest, Phase, Tag};
use do_core::{validate, Client, Exit, Failure};
use serde::Serialize;
use serde_json::{json, Value};

pub use cli::{Cli, IfBusy};
use spec::{ComponentChange, Pin, Wanted};
use target::{ImageFlags, Reference, Target};

const TOOL: &str = "do-deploy";
const LOG_EXCERPT_LINES: usize = 10;

/// The `deploy` record, v1.
#[derive(Debug, Serialize)]
pub struct DeployRecord {
    pub app_id: String,
    pub app_name: String,
    /// The deployment followed; null for a dry run.
    pub deployment_id: Option<String>,
    /// The ACTIVE deployment before this run.
    pub previous_deployment_id: Option<String>,
    pub phase: String,
    /// `REPO@DIGEST` (or `REPO:TAG` with --pin tag); null for --redeploy.
    pub image: Option<String>,
    pub components: Vec<ComponentChange>,
    pub changed: bool,
    pub dry_run: bool,
    pub cause: Option<String>,
    pub duration_ms: u64,
    pub live_url: Option<String>,
    pub failure: Option<FailureReport>,
    pub rollback: Option<RollbackReport>,
}

#[derive(Debug, Serialize)]
pub struct FailureReport {
    pub step: Option<String>,
    pub reason: Option<String>,
    pub component: Option<String>,
    pub log_type: Option<String>,
    pub log_excerpt: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct RollbackReport {
    /// The deployment rolled back to.
    pub to_deployment_id: String,
    /// The rollback deployment, when one was created.
    pub deployment_id: Option<String>,
    pub phase: Option<String>,
    pub error: Option<String>,
}

pub fn main() -> i32 {
    do_core::exit::run_main(TOOL, || run(Cli::parse()))
}

pub fn run(cli: Cli) -> anyhow::Result<Exit> {
    let started = Instant::now();
    let deadline = started + cli.timeout;
    let input = cli.io.read_input(deadline)?;
    check_app_reference(&cli.app)?;
    let loopback = do_core::api::is_loopback_url(&cli.api.api_url);
    do_core::cli::check_duration("--timeout", cli.timeout, loopback)?;
    do_core::cli::check_duration("--interval", cli.interval, loopback)?;
    do_core::cli::check_duration("--max-interval", cli.max_interval, loopback)?;
    for component in &cli.component {
        if component.is_empty()
            || component.len() > 32
            || !component.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        {
            return Err(Failure::usage(format!("invalid --component {}", validate::shown(component))));
        }
    }
    if cli.log_lines > 10_000 {
        return Err(Failure::usage("--log-lines is at most 10000"));
    }
    let target = if cli.redeploy {
        None
    } else {
        let flags = ImageFlags {
            image: cli.image.as_deref(),
            registry: cli.registry.as_deref(),
            repository: cli.repository.as_deref(),
            tag: cli.tag.as_deref(),
            digest: cli.digest.as_deref(),
        };
        Some(target::choose(&flags, &input)?)
    };
    let progress = cli.io.progress(TOOL);
    let client = cli.api.client(progress.clone())?;
    client.set_deadline(deadline);
    let mut output = Output::stdout();
    output.pass_through(&input)?;

    let deployer =
        Deployer { cli: &cli, client: &client, progress: &progress, started, deadline, last_phase: Default::default() };
    let (record, exit) = deployer.deploy(target)?;
    output.emit("deploy", 1, &record)?;
    github_outputs(&record).context("cannot write the GitHub Actions output files")?;
    match exit {
        Exit::RemoteFailed => Err(Failure::remote(format!(
            "deployment {} ended {}{}",
            record.deployment_id.as_deref().unwrap_or("?"),
            record.phase,
            record.failure.as_ref().and_then(|f| f.reason.as_deref()).map(|r| format!(": {r}")).unwrap_or_default()
        ))),
        Exit::Deadline => Err(Failure::deadline(format!(
            "deployment {} is still {} after {} and keeps running; rerun do-deploy with the same image to follow it, or raise --timeout",
            record.deployment_id.as_deref().unwrap_or("?"),
            record.phase,
            do_core::duration::human(cli.timeout)
        ))),
        Exit::Failed => Err(anyhow::anyhow!(
            "{}; deployment {} may still be running: rerun do-deploy with the same image to follow it",
            record.failure.as_ref().and_then(|f| f.reason.as_deref()).unwrap_or("lost track of the deployment"),
            record.deployment_id.as_deref().unwrap_or("?")
        )),
        other => Ok(other),
    }
}

fn github_outputs(record: &DeployRecord) -> anyhow::Result<()> {
    let Some(github) = do_core::github::GitHub::from_env() else { return Ok(()) };
    let digest =
        record.image.as_deref().and_then(|image| image.split_once('@')).map(|(_, d)| d.to_string()).unwrap_or_default();
    github.outputs(&[
        ("app_id", record.app_id.clone()),
        ("deployment_id", record.deployment_id.clone().unwrap_or_default()),
        ("phase", record.phase.clone()),
        ("digest", digest),
        ("image", record.image.clone().unwrap_or_default()),
        ("changed", record.changed.to_string()),
    ])?;
    let mut summary = format!(
        "### do-deploy\n\n**{}**: deployment `{}` is **{}**{}\n\n| component | before | after |\n|---|---|---|\n",
        record.app_name,
        record.deployment_id.as_deref().unwrap_or("none"),
        record.phase,
        if record.dry_run { " (dry run)" } else { "" }
    );
    for change in &record.components {
        summary.push_str(&format!(
            "| {} {} | `{}` | `{}` |\n",
            change.kind, change.name, change.image_before, change.image_after
        ));
    }
    if let Some(failure) = &record.failure {
        summary.push_str(&format!(
            "\nFailed in step `{}`: {}\n",
            failure.step.as_deref().unwrap_or("?"),
            failure.reason.as_deref().unwrap_or("no reason given")
        ));
    }
    github.summary(&summary)?;
    Ok(())
}

fn check_app_reference(app: &str) -> anyhow::Result<()> {
    let ok = !app.is_empty() && app.len() <= 64 && app.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(Failure::usage(format!("invalid --app {}: give the app's name or id", validate::shown(app))))
    }
}

fn looks_like_uuid(text: &str) -> bool {
    text.len() == 36
        && text
            .bytes()
            .enumerate()
            .all(|(i, b)| if [8, 13, 18, 23].contains(&i) { b == b'-' } else { b.is_ascii_hexdigit() })
}

struct Deployer<'a> {
    cli: &'a Cli,
    client: &'a Client,
    progress: &'a Progress,
    started: Instant,
    deadline: Instant,
    /// The phase the followed deployment was last seen in.
    last_phase: std::sync::Mutex<Option<String>>,
}

impl Deployer<'_> {
    fn deploy(&self, target: Option<Target>) -> anyhow::Result<(DeployRecord, Exit)> {
        let cli = self.cli;
        let mut app = self.find_app(&cli.app)?;
        let app_path = format!("/v2/apps/{}", segment(&app.id));
        let wanted = target.as_ref().map(|target| self.resolve(target)).transpose()?;
        let repository = target.as_ref().map(|t| t.repository.as_str());
        if let Some(repository) = repository {
            spec::matching_components(&app.spec, repository, &cli.component).map_err(Failure::usage)?;
        }
        let mut record = DeployRecord {
            app_id: app.id.clone(),
            app_name: app.name().to_string(),
            deployment_id: None,
            previous_deployment_id: app.active_deployment.as_ref().map(|d| d.id.clone()),
            phase: String::new(),
            image: wanted.as_ref().map(|wanted| match wanted.pin {
                Pin::Digest => format!("{}@{}", wanted.repository, wanted.digest),
                Pin::Tag => format!("{}:{}", wanted.repository, wanted.tag.as_deref().unwrap_or("latest")),
            }),
            components: Vec::new(),
            changed: false,
            dry_run: cli.dry_run,
            cause: None,
            duration_ms: 0,
            live_url: app.live_url.clone(),
            failure: None,
            rollback: None,
        };

        // A deployment in progress that already runs the wanted image is ours from an earlier,
        // interrupted run: follow it instead of starting another.
        let mut adopted = None;
        if let Some(busy) = app.in_progress_deployment.clone() {
            let ours = match (&wanted, repository) {
                (Some(wanted), Some(repository)) => spec::matching_components(&busy.spec, repository, &cli.component)
                    .is_ok_and(|components| components.iter().all(|c| spec::runs(&busy.spec[c.list][c.index], wanted))),
                _ => false,
            };
            if ours {
                self.progress
                    .info(&format!("deployment {} in progress already deploys this image; following it", busy.id));
                adopted = Some(busy);
            } else if cli.dry_run {
                self.progress.info(&format!(
                    "dry run: deployment {} is in progress; --if-busy {:?} would apply",
                    busy.id, cli.if_busy
                ));
            } else {
                self.handle_busy(&app, &busy)?;
                app = self.client.get_object(&app_path, "app")?;
            }
        }

        let update = match (&wanted, repository, &adopted) {
            (Some(wanted), Some(repository), None) => {
                let components =
                    spec::matching_components(&app.spec, repository, &cli.component).map_err(Failure::usage)?;
                let (new_spec, changes) = spec::pin(&app.spec, &components, wanted);
                record.components = changes;
                let active_spec = app.active_deployment.as_ref().map(|d| &d.spec).unwrap_or(&app.spec);
                let already = app.in_progress_deployment.is_none()
                    && app.active_deployment.is_some()
                    && components.iter().all(|c| spec::runs(&active_spec[c.list][c.index], wanted))
                    && components.iter().all(|c| spec::runs(&app.spec[c.list][c.index], wanted));
                if already && !cli.force {
                    let active = app.active_deployment.as_ref().expect("checked above");
                    self.progress.info(&format!(
                        "{} already runs {} on every matched component; nothing to do",
                        app.name(),
                        record.image.as_deref().unwrap_or("")
                    ));
                    record.deployment_id = Some(active.id.clone());
                    record.phase = active.phase.to_string();
                    record.cause = active.cause.clone();
                    record.components.iter_mut().for_each(|c| c.image_before = c.image_after.clone());
                    return Ok((record, Exit::Done));
                }
                Some(new_spec)
            }
            _ => None,
        };
        record.changed = true;

        if cli.dry_run {
            for change in &record.components {
                self.progress.info(&format!(
                    "dry run: {} {}: {} -> {}{}",
                    change.kind,
                    change.name,
                    change.image_before,
                    change.image_after,
                    if change.deploy_on_push_disabled { " (deploy_on_push turned off)" } else { "" }
                ));
            }
            if wanted.is_none() {
                self.progress.info(&format!(
                    "dry run: would create a deployment of {}{}",
                    app.name(),
                    if cli.force_rebuild { " with a rebuild" } else { "" }
                ));
            }
            record.phase =
                app.active_deployment.as_ref().map(|d| d.phase.to_string()).unwrap_or_else(|| "UNKNOWN".into());
            return Ok((record, Exit::Done));
        }

        for change in &record.components {
            if change.deploy_on_push_disabled {
                self.progress.warn(&format!(
                    "{} {}: deploy_on_push turned off, since App Platform refuses it with a digest",
                    change.kind, change.name
                ));
            }
        }
        let deployment = match (adopted, update) {
            (Some(adopted), _) => adopted,
            (None, Some(new_spec)) => {
                let known = self.deployment_ids(&app)?;
                let ours = |d: &Deployment| d.spec == new_spec;
                match self.client.put_once::<App>(&app_path, &json!({ "spec": new_spec }), "app") {
                    Ok(updated) => match updated.pending_deployment {
                        Some(pending) if !pending.id.is_empty() => pending,
                        _ => self.find_created(&app, &known, ours, "the spec update")?,
                    },
                    Err(error) if do_core::api::is_ambiguous(&error) => {
                        // The update may have happened: a second PUT would start a second deployment.
                        self.progress.warn(&format!(
                            "the spec update had no clear answer ({error:#}); looking whether it happened"
                        ));
                        let now: App = self.client.get_object(&app_path, "app")?;
                        if now.spec != new_spec {
                            return Err(
                                error.context("could not update the app spec; it is unchanged, so rerun do-deploy")
                            );
                        }
                        self.find_created(&app, &known, ours, "the spec update")?
                    }
                    Err(error) => return Err(error.context("could not update the app spec")),
                }
            }
            (None, None) => self.create_deployment(
                &app,
                &format!("{app_path}/deployments"),
                &json!({"force_build": cli.force_rebuild}),
            )?,
        };
        record.deployment_id = Some(deployment.id.clone());
        record.cause = deployment.cause.clone();
        self.progress.info(&format!(
            "deployment {} of {} ({})",
            deployment.id,
            app.name(),
            record.image.as_deref().unwrap_or("redeploy")
        ));
        if cli.no_wait {
            record.phase = deployment.phase.to_string();
            record.duration_ms = self.started.elapsed().as_millis() as u64;
            return Ok((record, Exit::Done));
        }

        let followed = match self.follow(&app, &deployment.id) {
            Ok(followed) => followed,
            Err(error) => {
                // The deployment exists and may still run: report it rather than only the error.
                record.duration_ms = self.started.elapsed().as_millis() as u64;
                record.phase = "UNKNOWN".into();
                record.failure = Some(FailureReport {
                    step: None,
                    reason: Some(format!("lost track of the deployment: {error:#}")),
                    component: None,
                    log_type: None,
                    log_excerpt: Vec::new(),
                });
                return Ok((record, Exit::Failed));
            }
        };
        record.duration_ms = self.started.elapsed().as_millis() as u64;
        let Some(done) = followed else {
            record.phase =
                self.last_phase.lock().unwrap_or_else(|e| e.into_inner()).clone().unwrap_or_else(|| "UNKNOWN".into());
            return Ok((record, Exit::Deadline));
        };
        record.phase = done.phase.to_string();
        if done.phase == Phase::Active {
            self.progress.info(&format!(
                "deployment {} is ACTIVE after {}{}",
                done.id,
                do_core::duration::human(self.started.elapsed()),
                app.live_url.as_deref().map(|u| format!("; live at {u}")).unwrap_or_default()
            ));
            return Ok((record, Exit::Done));
        }
        let first_component = record.components.first().map(|c| c.name.clone());
        record.failure = Some(self.explain_failure(&app, &done, first_component.as_deref()));
        if cli.rollback_on_failure {
            record.rollback = Some(match record.previous_deployment_id.clone() {
                Some(previous) => self.roll_back(&app, &previous),
                None => {
                    self.progress.warn("no previous ACTIVE deployment to roll back to");
                    RollbackReport {
                        to_deployment_id: String::new(),
                        deployment_id: None,
                        phase: None,
                        error: Some("no previous ACTIVE deployment".into()),
                    }
                }
            });
        }
        Ok((record, Exit::RemoteFailed))
    }

    fn find_app(&self, name_or_id: &str) -> anyhow::Result<App> {
        if looks_like_uuid(name_or_id) {
            if let Some(app) =
                self.client.get_object_or_none::<App>(&format!("/v2/apps/{}", segment(name_or_id)), "app")?
            {
                return Ok(app);
            }
        }
        let apps: Vec<App> = self.client.get_all("/v2/apps", "apps")?;
        let names: Vec<&str> = apps.iter().map(App::name).collect();
        match apps.iter().find(|app| app.name() == name_or_id || app.id == name_or_id) {
            Some(app) => Ok(app.clone()),
            None => Err(Failure::usage(format!(
                "no app named {name_or_id:?}; the account has: {}",
                if names.is_empty() { "no apps".to_string() } else { names.join(", ") }
            ))),
        }
    }

    fn registry(&self, target: &Target) -> anyhow::Result<String> {
        if let Some(registry) = &target.registry {
            return Ok(registry.clone());
        }
        Ok(do_core::registry::find(self.client, None)?.name)
    }

    /// The digest to deploy: a tag is resolved through the registry; a digest must exist there.
    fn resolve(&self, target: &Target) -> anyhow::Result<Wanted> {
        let registry = self.registry(target)?;
        let base = format!("/v2/registries/{}/repositories/{}", segment(&registry), segment(&target.repository));
        let missing_repository = |error: anyhow::Error| {
            if do_core::api::has_status(&error, 404) {
                Failure::usage(format!("repository {:?} is not in registry {registry}", target.repository))
            } else {
                error
            }
        };
        match &target.reference {
            Reference::Tag(tag) => {
                let tags: Vec<Tag> =
                    self.client.get_all(&format!("{base}/tags"), "tags").map_err(missing_repository)?;
                let found = tags.iter().find(|t| &t.tag == tag).and_then(|t| t.manifest_digest.clone());
                let Some(found) = found else {
                    if self.cli.dry_run {
                        // A release's dry run plans the deployment before the image is pushed.
                        self.progress.info(&format!(
                            "dry run: {}:{tag} is not in {registry} yet; once pushed it is pinned by its digest",
                            target.repository
                        ));
                        let repository = target.repository.clone();
                        return Ok(Wanted { repository, tag: Some(tag.clone()), digest: String::new(), pin: Pin::Tag });
                    }
                    return Err(Failure::usage(format!(
                        "tag {tag} is not in {registry}/{}; push it first",
                        target.repository
                    )));
                };
                self.progress.info(&format!("{}:{tag} is {found}", target.repository));
                Ok(Wanted {
                    repository: target.repository.clone(),
                    tag: Some(tag.clone()),
                    digest: found,
                    pin: self.cli.pin,
                })
            }
            Reference::Digest(digest) => {
                let manifests: Vec<Manifest> =
                    self.client.get_all(&format!("{base}/digests"), "manifests").map_err(missing_repository)?;
                let manifest = manifests.iter().find(|m| &m.digest == digest).ok_or_else(|| {
                    Failure::usage(format!("digest {digest} is not in {registry}/{}", target.repository))
                })?;
                if self.cli.pin == Pin::Tag && manifest.tags.is_empty() {
                    return Err(Failure::usage(format!("--pin tag, but {digest} has no tag; use --pin digest")));
                }
                let tag = manifest.tags.iter().find(|t| *t != "latest").or(manifest.tags.first()).cloned();
                Ok(Wanted { repository: target.repository.clone(), tag, digest: digest.clone(), pin: self.cli.pin })
            }
        }
    }

    fn handle_busy(&self, app: &App, busy: &Deployment) -> anyhow::Result<()> {
        match self.cli.if_busy {
            IfBusy::Fail => anyhow::bail!(
                "deployment {} is in progress ({}); rerun later or use --if-busy wait|cancel",
                busy.id,
                busy.phase
            ),
            IfBusy::Cancel => {
                self.progress.info(&format!("cancelling deployment {} in progress ({})", busy.id, busy.phase));
                let path = format!("/v2/apps/{}/deployments/{}/cancel", segment(&app.id), segment(&busy.id));
                match self.client.post_raw(&path, None) {
                    Ok(_) => Ok(()),
                    // It may have ended between our look and the cancel.
                    Err(error) if do_core::api::has_status(&error, 400) => Ok(()),
                    Err(error) => Err(error.context("could not cancel the deployment in progress")),
                }
            }
            IfBusy::Wait => {
                self.progress
                    .info(&format!("waiting for deployment {} in progress ({}) to end first", busy.id, busy.phase));
                match self.follow(app, &busy.id)? {
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
    fn create_deployment(&self, app: &App, path: &str, body: &Value) -> anyhow::Result<Deployment> {
        let known = self.deployment_ids(app)?;
        match self.client.post_create::<Deployment>(path, Some(body), "deployment") {
            Ok(deployment) => Ok(deployment),
            Err(error) if do_core::api::is_ambiguous(&error) => {
                self.progress
                    .warn(&format!("the create request had no clear answer ({error:#}); looking whether it happened"));
                self.find_created(app, &known, |_| true, "the create request")
            }
            Err(error) => Err(error),
        }
    }

    /// The ids on the newest page of the app's deployments, taken right before a create so
    /// that what the create made can be told apart afterwards.
    fn deployment_ids(&self, app: &App) -> anyhow::Result<BTreeSet<String>> {
        let recent: Vec<Deployment> = self
            .client
            .get_object(&format!("/v2/apps/{}/deployments?page=1&per_page=20", segment(&app.id)), "deployments")?;
        Ok(recent.into_iter().map(|d| d.id).collect())
    }

    /// The newest deployment that is not in `known` and that `ours` recognises: the one our
    /// request created.
    fn find_created(
        &self,
        app: &App,
        known: &BTreeSet<String>,
        ours: impl Fn(&Deployment) -> bool,
        what: &str,
    ) -> anyhow::Result<Deployment> {
        let recent: Vec<Deployment> = self
            .client
            .get_object(&format!("/v2/apps/{}/deployments?page=1&per_page=20", segment(&app.id)), "deployments")?;
        recent.into_iter().find(|d| !known.contains(&d.id) && ours(d)).ok_or_else(|| {
            anyhow::anyhow!(
                "{what} created no deployment that can be found; check the app in the control panel before retrying"
            )
        })
    }

    fn deployment(&self, app: &App, id: &str) -> anyhow::Result<Deployment> {
        self.client.get_object(&format!("/v2/apps/{}/deployments/{}", segment(&app.id), segment(id)), "deployment")
    }

    /// Follows a deployment to a terminal phase; `None` at the deadline.
    /// Follows a deployment to a terminal phase; `None` at the deadline. The phase last seen
    /// stays in `last_phase` (no request is sent after the deadline to ask again).
    fn follow(&self, app: &App, id: &str) -> anyhow::Result<Option<Deployment>> {
        let poller =
            Poller { interval: self.cli.interval, max_interval: self.cli.max_interval, deadline: self.deadline };
        let polled = poller.run(self.progress, || {
            let deployment = self.deployment(app, id)?;
            *self.last_phase.lock().unwrap_or_else(|e| e.into_inner()) = Some(deployment.phase.to_string());
            if deployment.phase.is_terminal() {
                return Ok(Check::Done(deployment));
            }
            Ok(Check::Waiting(describe_progress(&deployment)))
        })?;
        Ok(polled.outcome)
    }

    fn explain_failure(&self, app: &App, deployment: &Deployment, fallback_component: Option<&str>) -> FailureReport {
        let failed = deployment
            .progress
            .as_ref()
            .and_then(|p| serde_json::to_value(p).ok())
            .and_then(|p| find_error_step(&p, None));
        let (step, reason, component, top) = match &failed {
            Some(found) => (found.step.clone(), found.reason.clone(), found.component.clone(), found.top.clone()),
            None => (None, None, None, None),
        };
        let component = component.or(fallback_component.map(str::to_string));
        let log_type = match (deployment.phase.clone(), top.as_deref()) {
            (Phase::Error, Some(top)) if top.contains("build") => Some("BUILD"),
            (Phase::Error, _) => Some("DEPLOY"),
            _ => None,
        };
        self.progress.warn(&format!(
            "deployment {} ended {}{}{}",
            deployment.id,
            deployment.phase,
            step.as_deref().map(|s| format!(" in step {s}")).unwrap_or_default(),
            reason.as_deref().map(|r| format!(": {r}")).unwrap_or_default()
        ));
        let mut log_excerpt = Vec::new();
        if let (Some(log_type), Some(component)) = (log_type, component.as_deref()) {
            match self.log_tail(app, deployment, component, log_type) {
                Ok(Some(lines)) => {
                    self.progress.info(&format!("last {} lines of the {log_type} log of {component}:", lines.len()));
                    do_core::github::group(&format!("{log_type} log of {component}"));
                    for line in &lines {
                        eprintln!("  {line}");
                    }
                    do_core::github::end_group();
                    log_excerpt = lines.iter().rev().take(LOG_EXCERPT_LINES).rev().cloned().collect();
                }
                Ok(None) => self.progress.info(&format!("no {log_type} log: the deployment never reached that phase")),
                Err(error) => self.progress.warn(&format!("could not fetch the {log_type} log: {error:#}")),
            }
        }
        FailureReport { step, reason, component, log_type: log_type.map(str::to_string), log_excerpt }
    }

    /// The last `--log-lines` lines of a phase's log. The historic URLs are downloaded without the token.
    fn log_tail(
        &self,
        app: &App,
        deployment: &Deployment,
        component: &str,
        log_type: &str,
    ) -> anyhow::Result<Option<Vec<String>>> {
        let path = format!(
            "/v2/apps/{}/deployments/{}/components/{}/logs?type={log_type}",
            segment(&app.id),
            segment(&deployment.id),
            segment(component)
        );
        let answer: Value = match self.client.get_object_or_none::<Value>(&path, "historic_urls") {
            Ok(Some(urls)) => urls,
            Ok(None) => return Ok(None),
            Err(error) if do_core::api::has_status(&error, 400) => return Ok(None),
            Err(error) => return Err(error),
        };
        let urls: Vec<String> =
            answer.as_array().into_iter().flatten().filter_map(Value::as_str).map(str::to_string).collect();
        let mut lines = Vec::new();
        for url in urls {
            let text = do_core::api::download_without_token(&url, Duration::from_secs(30), 32 * 1024 * 1024)?;
            // An app's log can print anything, its secrets included.
            lines.extend(text.lines().map(do_core::redact::redact));
        }
        let skip = lines.len().saturating_sub(self.cli.log_lines);
        Ok(Some(lines.split_off(skip)))
    }

    fn roll_back(&self, app: &App, to: &str) -> RollbackReport {
        let mut report =
            RollbackReport { to_deployment_id: to.to_string(), deployment_id: None, phase: None, error: None };
        let body = json!({"deployment_id": to, "skip_pin": true});
        let base = format!("/v2/apps/{}/rollback", segment(&app.id));
        let mut attempt = || -> anyhow::Result<Option<Deployment>> {
            let validation = self.client.post_raw(&format!("{base}/validate"), Some(&body))?;
            let verdict: Value = serde_json::from_slice(&validation.body).unwrap_or(Value::Null);
            if verdict.get("valid").and_then(Value::as_bool) != Some(true) {
                let why = verdict.pointer("/error/message").and_then(Value::as_str).unwrap_or("the API gave no reason");
                anyhow::bail!("rollback to {to} is not valid: {why}");
            }
            self.progress.info(&format!("rolling back to deployment {to}"));
            let known = self.deployment_ids(app)?;
            let rollback = match self.client.post_create::<Deployment>(&base, Some(&body), "deployment") {
                Ok(deployment) => deployment,
                Err(error) if do_core::api::is_ambiguous(&error) => {
                    let clones_target = |d: &Deployment| d.cloned_from.as_deref().is_none_or(|from| from == to);
                    self.find_created(app, &known, clones_target, "the rollback request")?
                }
                Err(error) => return Err(error),
            };
            report.deployment_id = Some(rollback.id.clone());
            self.follow(app, &rollback.id)
        };
        let outcome = attempt();
        match outcome {
            Ok(Some(done)) => {
                report.phase = Some(done.phase.to_string());
                if done.phase == Phase::Active {
                    self.progress.info(&format!("rolled back: deployment {} is ACTIVE", done.id));
                } else {
                    self.progress.warn(&format!("the rollback deployment {} ended {}", done.id, done.phase));
                }
            }
            Ok(None) => {
                report.phase = Some("TIMEOUT".into());
                self.progress.warn("the rollback was still running at the deadline");
            }
            Err(error) => {
                self.progress.warn(&format!("rollback failed: {error:#}"));
                report.error = Some(format!("{error:#}"));
            }
        }
        report
    }
}

struct ErrorStep {
    step: Option<String>,
    reason: Option<String>,
    component: Option<String>,
    top: Option<String>,
}

/// The deepest step with status ERROR, its reason, component and top-level step name.
fn find_error_step(progress: &Value, top: Option<&str>) -> Option<ErrorStep> {
    let steps = progress.get("steps").and_then(Value::as_array)?;
    for step in steps {
        if step.get("status").and_then(Value::as_str) != Some("ERROR") {
            continue;
        }
        let name = step.get("name").and_then(Value::as_str);
        let top_name = top.or(name);
        if let Some(deeper) = find_error_step(step, top_name) {
            return Some(deeper);
        }
        let text = |pointer: &str| step.pointer(pointer).and_then(Value::as_str).map(str::to_string);
        return Some(ErrorStep {
            step: name.map(str::to_string),
            reason: text("/reason/message").or_else(|| text("/reason/code")),
            component: text("/component_name"),
            top: top_name.map(str::to_string),
        });
    }
    None
}

/// `BUILDING 1/4 Building web`: the phase, the step count and what runs now.
fn describe_progress(deployment: &Deployment) -> String {
    let mut text = deployment.phase.to_string();
    if let Some(progress) = &deployment.progress {
        if let (Some(done), Some(total)) = (progress.success_steps, progress.total_steps) {
            text.push_str(&format!(" {done}/{total}"));
        }
        let running = progress
            .summary_steps
            .iter()
            .chain(progress.steps.iter())
            .find(|s| s.status == do_core::types::StepStatus::Running);
        if let Some(step) = running {
            let what = step.message_base.clone().or(step.name.clone()).unwrap_or_default().to_lowercase();
            for word in [what, step.component_name.clone().unwrap_or_default()] {
                if !word.is_empty() {
                    text.push(' ');
                    text.push_str(&word);
                }
            }
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_deepest_error_step_is_found_with_its_reason() {
        let progress = json!({"steps": [
            {"name": "build", "status": "SUCCESS"},
            {"name": "deploy", "status": "ERROR", "steps": [
                {"name": "deploy-web", "status": "ERROR", "component_name": "web", "reason": {"code": "HealthCheck", "message": "health checks failed"}}
            ]}
        ]});
        let found = find_error_step(&progress, None).unwrap();
        assert_eq!(found.step.as_deref(), Some("deploy-web"));
        assert_eq!(found.reason.as_deref(), Some("health checks failed"));
        assert_eq!(found.component.as_deref(), Some("web"));
        assert_eq!(found.top.as_deref(), Some("deploy"));
        assert!(find_error_step(&json!({"steps": []}), None).is_none());
    }

    #[test]
    fn app_ids_are_told_from_names() {
        assert!(looks_like_uuid("4f6c71e2-1e90-4762-9fee-6cc4a0a9f2cf"));
        assert!(!looks_like_uuid("my-app"));
        assert!(check_app_reference("my-app").is_ok());
        assert!(check_app_reference("my app").is_err());
        assert!(check_app_reference("../x").is_err());
    }
}
