//! The soak: after a deployment went ACTIVE and its check passed, keep watching for a while,
//! since releases often break minutes later (real traffic, a cache expiry, a leak). Every
//! `--interval` one look: whether something newer now runs (someone else's deployment, or App
//! Platform's own rollback), the check's URL with its expectations, and the app's health
//! (`GET /v2/apps/{id}/health`: each component's ready replicas and state). `--soak-failures`
//! failed looks in a row are a breach; one blip is not. The tally is pure, and so is the verdict.

use std::time::{Duration, Instant};

use do_core::api::segment;
use do_core::types::{App, Deployment};
use do_core::Exit;
use serde::Serialize;
use serde_json::Value;

use crate::check::CheckSpec;
use crate::Ctx;

/// What --soak asks for.
#[derive(Clone, Copy, Debug)]
pub struct Soak {
    pub duration: Duration,
    /// Failed looks in a row that are a breach.
    pub failures: u32,
}

/// The looks so far: a value each look replaces.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Tally {
    pub checks: u32,
    pub failures: u32,
    pub in_a_row: u32,
}

/// What one look saw of the release.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Look {
    Passed,
    /// What failed, for people (`health: web UNHEALTHY, 0 of 1 replicas ready`).
    Failed(String),
    /// The app could not be read: counted, but neither a failure nor a pass.
    Unknown(String),
}

impl Tally {
    /// The tally after one more look, and whether it is a breach: `allowed` failed looks in a row.
    pub fn after(self, look: &Look, allowed: u32) -> (Tally, bool) {
        let mut next = Tally { checks: self.checks + 1, ..self };
        match look {
            Look::Passed => next.in_a_row = 0,
            Look::Failed(_) => {
                next.failures += 1;
                next.in_a_row += 1;
            }
            Look::Unknown(_) => {}
        }
        (next, next.in_a_row >= allowed)
    }
}

/// What a health answer says is wrong, if anything: a component UNHEALTHY or with fewer
/// replicas ready than desired. Components whose state is UNKNOWN and that report no replicas
/// say nothing either way.
pub fn unhealthy(health: &Value) -> Option<String> {
    let components = health.pointer("/app_health/components").and_then(Value::as_array)?;
    let problems: Vec<String> = components
        .iter()
        .filter_map(|c| {
            let name = c.get("name").and_then(Value::as_str).unwrap_or("?");
            let state = c.get("state").and_then(Value::as_str).unwrap_or("UNKNOWN");
            let desired = c.get("replicas_desired").and_then(Value::as_i64);
            let ready = c.get("replicas_ready").and_then(Value::as_i64);
            let short = matches!((desired, ready), (Some(d), Some(r)) if r < d);
            (state == "UNHEALTHY" || short).then(|| {
                let replicas = match (ready, desired) {
                    (Some(r), Some(d)) => format!(", {r} of {d} replicas ready"),
                    _ => String::new(),
                };
                format!("{name} {state}{replicas}")
            })
        })
        .collect();
    (!problems.is_empty()).then(|| format!("health: {}", problems.join("; ")))
}

/// A newer deployment than ours, if one now runs or is under way (ours is `ours`).
pub fn newer_than<'a>(fresh: &'a App, ours: &str) -> Option<&'a Deployment> {
    let active = fresh.active_deployment.as_ref().filter(|d| d.id != ours);
    let busy = [&fresh.in_progress_deployment, &fresh.pending_deployment]
        .into_iter()
        .flatten()
        .find(|d| d.id != ours && !d.phase.is_terminal());
    busy.or(active)
}

/// The `soak` part of the deploy record.
#[derive(Clone, Debug, Default, Serialize)]
pub struct SoakReport {
    /// The soak asked for, in seconds.
    pub seconds: u64,
    /// How long it watched.
    pub elapsed_ms: u64,
    pub checks: u32,
    pub failures: u32,
    /// `passed`, `breached`, `superseded`, `platform_rollback`, or `deadline`.
    pub ended: String,
    /// The look that made the breach: when, and what failed.
    pub breach: Option<Breach>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Breach {
    pub after_ms: u64,
    pub failed: String,
}

/// How the soak ended, for the run.
pub(crate) enum Ended {
    Passed,
    Breached(String),
    /// Someone else's deployment: nothing is rolled back.
    Superseded(Box<Deployment>),
    /// App Platform rolled back on its own.
    PlatformRollback(Box<Deployment>),
    Deadline,
}

/// Watches the release `ours` for the soak, or until something ends it.
pub(crate) fn watch(
    ctx: &Ctx,
    app: &App,
    ours: &Deployment,
    soak: Soak,
    check: Option<&CheckSpec>,
) -> (SoakReport, Ended) {
    let started = Instant::now();
    let until = (started + soak.duration).min(ctx.deadline);
    let mut report = SoakReport { seconds: soak.duration.as_secs(), ..SoakReport::default() };
    let mut tally = Tally::default();
    let mut told_at = started;
    ctx.progress.info(&format!(
        "soaking for {}: a look every {}, {} failed in a row is a breach",
        do_core::duration::human(soak.duration),
        do_core::duration::human(ctx.settings.interval),
        soak.failures
    ));
    let ended = loop {
        let now = Instant::now();
        if now >= until {
            break if until < started + soak.duration { Ended::Deadline } else { Ended::Passed };
        }
        std::thread::sleep(ctx.settings.interval.min(until - now));
        let look = match look(ctx, app, ours, check) {
            Seen::Newer(newer) if crate::platform::is_auto_rollback(newer.cause.as_deref()) => {
                break Ended::PlatformRollback(newer);
            }
            Seen::Newer(newer) => break Ended::Superseded(newer),
            Seen::Look(look) => look,
        };
        let (next, breached) = tally.after(&look, soak.failures);
        tally = next;
        if let Look::Failed(what) = &look {
            ctx.progress.warn(&format!("soak: {what} ({} in a row)", tally.in_a_row));
            if breached {
                report.breach = Some(Breach { after_ms: started.elapsed().as_millis() as u64, failed: what.clone() });
                break Ended::Breached(what.clone());
            }
        }
        told_at = tell(ctx, started, soak.duration, &tally, told_at);
    };
    ctx.progress.finish();
    report.elapsed_ms = started.elapsed().as_millis() as u64;
    report.checks = tally.checks;
    report.failures = tally.failures;
    report.ended = match &ended {
        Ended::Passed => "passed",
        Ended::Breached(_) => "breached",
        Ended::Superseded(_) => "superseded",
        Ended::PlatformRollback(_) => "platform_rollback",
        Ended::Deadline => "deadline",
    }
    .into();
    (report, ended)
}

/// The soak's progress: a live line on a terminal, a line a minute in CI.
fn tell(ctx: &Ctx, started: Instant, soak: Duration, tally: &Tally, told_at: Instant) -> Instant {
    let text = format!(
        "soaking: {} of {}, {} looks, {} failed",
        do_core::duration::human(started.elapsed()),
        do_core::duration::human(soak),
        tally.checks,
        tally.failures
    );
    match ctx.progress.mode() {
        do_core::progress::Mode::Live => {
            ctx.progress.status(&text);
            told_at
        }
        _ if told_at.elapsed() >= Duration::from_secs(60) => {
            ctx.progress.info(&text);
            Instant::now()
        }
        _ => told_at,
    }
}

enum Seen {
    Newer(Box<Deployment>),
    Look(Look),
}

/// One look: something newer, else the check's URL and the app's health.
fn look(ctx: &Ctx, app: &App, ours: &Deployment, check: Option<&CheckSpec>) -> Seen {
    let path = format!("/v2/apps/{}", segment(&app.id));
    let fresh: App = match ctx.client.get_object(&path, "app") {
        Ok(fresh) => fresh,
        Err(error) => return Seen::Look(Look::Unknown(format!("the app could not be read: {error:#}"))),
    };
    if let Some(newer) = newer_than(&fresh, &ours.id) {
        return Seen::Newer(Box::new(newer.clone()));
    }
    if let Some(check) = check {
        let timeout = ctx.settings.interval.max(Duration::from_secs(1));
        if let Err(reason) = crate::check::once(check, timeout) {
            return Seen::Look(Look::Failed(format!("{}: {reason}", check.url)));
        }
    }
    match ctx.client.get_object::<Value>(&format!("{path}/health"), "app_health") {
        Ok(health) => {
            Seen::Look(unhealthy(&serde_json::json!({ "app_health": health })).map_or(Look::Passed, Look::Failed))
        }
        Err(error) if do_core::exit::exit_code_of(&error) == Exit::Deadline => {
            Seen::Look(Look::Unknown("the deadline passed".into()))
        }
        Err(error) => Seen::Look(Look::Unknown(format!("the app's health could not be read: {error:#}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_breach_is_that_many_failed_looks_in_a_row_and_a_pass_starts_the_count_again() {
        let failed = Look::Failed("x".into());
        let (one, breached) = Tally::default().after(&failed, 3);
        assert_eq!((one, breached), (Tally { checks: 1, failures: 1, in_a_row: 1 }, false));
        let (two, breached) = one.after(&failed, 3);
        assert_eq!((two, breached), (Tally { checks: 2, failures: 2, in_a_row: 2 }, false));
        let (passed, breached) = two.after(&Look::Passed, 3);
        assert_eq!((passed, breached), (Tally { checks: 3, failures: 2, in_a_row: 0 }, false), "a blip");
        let (unknown, breached) = two.after(&Look::Unknown("api".into()), 3);
        assert_eq!((unknown, breached), (Tally { checks: 3, failures: 2, in_a_row: 2 }, false), "neither");
        let (three, breached) = two.after(&failed, 3);
        assert_eq!((three, breached), (Tally { checks: 3, failures: 3, in_a_row: 3 }, true));
        assert!(Tally::default().after(&failed, 1).1, "with 1, the first failure is a breach");
        assert!(!Tally::default().after(&Look::Passed, 1).1);
        assert!(!Tally { checks: 5, failures: 4, in_a_row: 4 }.after(&Look::Passed, 1).1);
    }

    #[test]
    fn health_is_wrong_when_a_component_is_unhealthy_or_short_of_replicas() {
        let health = |components: serde_json::Value| json!({"app_health": {"components": components}});
        let fine = health(json!([{"name": "web", "state": "HEALTHY", "replicas_desired": 2, "replicas_ready": 2}]));
        assert_eq!(unhealthy(&fine), None);
        let down = health(json!([
            {"name": "web", "state": "UNHEALTHY", "replicas_desired": 1, "replicas_ready": 0},
            {"name": "worker", "state": "HEALTHY", "replicas_desired": 1, "replicas_ready": 1},
        ]));
        assert_eq!(unhealthy(&down).as_deref(), Some("health: web UNHEALTHY, 0 of 1 replicas ready"));
        let short = health(json!([{"name": "web", "state": "HEALTHY", "replicas_desired": 3, "replicas_ready": 2}]));
        assert_eq!(unhealthy(&short).as_deref(), Some("health: web HEALTHY, 2 of 3 replicas ready"));
        let unknown = health(json!([{"name": "web", "state": "UNKNOWN"}, {"name": "job"}]));
        assert_eq!(unhealthy(&unknown), None, "nothing known is nothing wrong");
        let bare = health(json!([{"name": "web", "state": "UNHEALTHY"}]));
        assert_eq!(unhealthy(&bare).as_deref(), Some("health: web UNHEALTHY"));
        assert_eq!(unhealthy(&json!({})), None);
        let both = health(json!([
            {"name": "a", "state": "UNHEALTHY", "replicas_desired": 1, "replicas_ready": 1},
            {"name": "b", "state": "HEALTHY", "replicas_desired": 1, "replicas_ready": 0},
        ]));
        assert_eq!(
            unhealthy(&both).as_deref(),
            Some("health: a UNHEALTHY, 1 of 1 replicas ready; b HEALTHY, 0 of 1 replicas ready")
        );
    }

    fn app(value: serde_json::Value) -> App {
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn newer_work_is_another_active_deployment_or_one_under_way() {
        let deployment = |id: &str, phase: &str| json!({"id": id, "phase": phase});
        let quiet = app(json!({"id": "a", "spec": {}, "active_deployment": deployment("ours", "ACTIVE")}));
        assert!(newer_than(&quiet, "ours").is_none());
        let replaced = app(json!({"id": "a", "spec": {}, "active_deployment": deployment("d2", "ACTIVE")}));
        assert_eq!(newer_than(&replaced, "ours").map(|d| d.id.as_str()), Some("d2"));
        let busy = app(json!({"id": "a", "spec": {},
            "active_deployment": deployment("ours", "ACTIVE"),
            "in_progress_deployment": deployment("d3", "BUILDING")}));
        assert_eq!(newer_than(&busy, "ours").map(|d| d.id.as_str()), Some("d3"));
        let pending = app(json!({"id": "a", "spec": {},
            "active_deployment": deployment("ours", "ACTIVE"),
            "pending_deployment": deployment("d4", "PENDING_BUILD")}));
        assert_eq!(newer_than(&pending, "ours").map(|d| d.id.as_str()), Some("d4"));
        let ended = app(json!({"id": "a", "spec": {},
            "active_deployment": deployment("ours", "ACTIVE"),
            "in_progress_deployment": deployment("d5", "ERROR")}));
        assert!(newer_than(&ended, "ours").is_none(), "one that ended is not under way");
        let own = app(json!({"id": "a", "spec": {},
            "active_deployment": deployment("ours", "ACTIVE"),
            "in_progress_deployment": deployment("ours", "ACTIVE")}));
        assert!(newer_than(&own, "ours").is_none());
    }
}
