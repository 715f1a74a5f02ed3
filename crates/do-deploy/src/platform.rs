//! What App Platform does on its own: its automatic rollback after a failed deployment (a newer
//! deployment whose cause says so), and the pin a manual rollback puts on the app, under which
//! it makes no new deployment until the rollback is committed or reverted.

use do_core::types::{App, Deployment};

/// Whether a deployment's cause says App Platform made it to roll back on its own
/// (`AUTO_ROLLBACK`, "automatic rollback", "auto-rollback"), not a person nor this tool.
pub fn is_auto_rollback(cause: Option<&str>) -> bool {
    let cause = cause.unwrap_or("").to_ascii_lowercase().replace(['_', '-'], " ");
    cause.contains("rollback") && (cause.contains("auto ") || cause.contains("automatic"))
}

/// The deployment App Platform rolled back with after `ours` failed: the newest made after it
/// whose cause says so, among `recent` (newest first).
pub fn auto_rollback_after<'a>(recent: &'a [Deployment], ours: &str) -> Option<&'a Deployment> {
    recent.iter().take_while(|d| d.id != ours).find(|d| is_auto_rollback(d.cause.as_deref()))
}

/// The refusal for an app pinned by a rollback, and what to do about it.
pub fn pinned_refusal(app: &App) -> Option<String> {
    let pinned = app.pinned_deployment.as_ref()?;
    let id = &app.id;
    Some(format!(
        "{} is pinned to deployment {} by a rollback, and App Platform makes no new deployment until the rollback is committed (POST /v2/apps/{id}/rollback/commit, or Commit in the control panel) or reverted (POST /v2/apps/{id}/rollback/revert); nothing was changed",
        app.name(),
        pinned.id
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deployment(id: &str, cause: &str) -> Deployment {
        serde_json::from_value(serde_json::json!({"id": id, "phase": "ACTIVE", "cause": cause})).unwrap()
    }

    #[test]
    fn an_automatic_rollback_is_told_by_its_cause_alone() {
        for cause in [
            "AUTO_ROLLBACK: App Platform rolled back automatically to deployment d1",
            "automatic rollback to deployment d1",
            "auto-rollback",
            "Auto Rollback after failed health checks",
        ] {
            assert!(is_auto_rollback(Some(cause)), "{cause}");
        }
        for cause in ["manual rollback", "MANUAL_ROLLBACK", "app spec updated", "auto deploy on push", ""] {
            assert!(!is_auto_rollback(Some(cause)), "{cause}");
        }
        assert!(!is_auto_rollback(None));
    }

    #[test]
    fn the_platforms_rollback_is_one_made_after_ours() {
        let recent = [
            deployment("d4", "app spec updated"),
            deployment("d3", "AUTO_ROLLBACK: to d1"),
            deployment("ours", "app spec updated"),
            deployment("d0", "AUTO_ROLLBACK: older"),
        ];
        assert_eq!(auto_rollback_after(&recent, "ours").map(|d| d.id.as_str()), Some("d3"));
        assert_eq!(auto_rollback_after(&recent[2..], "ours"), None, "one made before ours is not about ours");
        assert_eq!(auto_rollback_after(&recent[..1], "ours"), None);
    }

    #[test]
    fn a_pinned_app_is_refused_with_what_to_do() {
        let app: App = serde_json::from_value(serde_json::json!({
            "id": "a1", "spec": {"name": "shop"}, "pinned_deployment": {"id": "d7", "phase": "ACTIVE"}
        }))
        .unwrap();
        let refusal = pinned_refusal(&app).unwrap();
        assert!(refusal.starts_with("shop is pinned to deployment d7 by a rollback"), "{refusal}");
        assert!(refusal.contains("/v2/apps/a1/rollback/commit") && refusal.contains("/v2/apps/a1/rollback/revert"));
        let unpinned: App = serde_json::from_value(serde_json::json!({"id": "a1", "spec": {"name": "shop"}})).unwrap();
        assert_eq!(pinned_refusal(&unpinned), None);
    }
}
