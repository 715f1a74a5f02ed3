//! The control client: what the `do-sim push` and `do-sim gc` commands (and the demo) send
//! to a running simulator's control API.

use std::time::Duration;

use serde_json::{json, Value};

/// An image to push through the control API.
#[derive(Clone, Debug, Default)]
pub struct PushRequest {
    pub registry: Option<String>,
    pub repository: String,
    pub tag: String,
    pub size_bytes: u64,
    /// Empty: one image; otherwise an index with an image per platform (and attestations).
    pub platforms: Vec<String>,
    pub labels: std::collections::BTreeMap<String, String>,
    /// An artifact instead of an image: (`signature_of`, `attestation_of`, `sbom_of` or
    /// `referrer_of`, the image's tag or digest).
    pub artifact: Option<(&'static str, String)>,
    /// With a referrer: also its fallback index tag.
    pub fallback_tag: bool,
}

/// Pushes through the control API of a simulator at `api_url`; prints the manifest.
pub fn push_to(api_url: &str, image: &PushRequest) -> anyhow::Result<()> {
    let mut body = json!({"repository": image.repository, "tag": image.tag, "size_bytes": image.size_bytes});
    if let Some((key, of)) = &image.artifact {
        body = json!({"repository": image.repository, *key: of, "fallback_tag": image.fallback_tag});
    }
    if let Some(registry) = &image.registry {
        body["registry"] = json!(registry);
    }
    if !image.platforms.is_empty() {
        body["platforms"] = json!(image.platforms);
    }
    if !image.labels.is_empty() {
        body["labels"] = json!(image.labels);
    }
    control_post(api_url, "push", &body)
}

/// Starts a GC through the control API of a simulator at `api_url`; prints it.
pub fn start_gc_at(api_url: &str, registry: Option<&str>, step: Duration) -> anyhow::Result<()> {
    let ms = step.as_millis() as u64;
    let plan: Vec<Value> = crate::state::GC_STATUSES.iter().map(|status| json!({"status": status, "ms": ms})).collect();
    let mut body = json!({"plan": plan});
    if let Some(registry) = registry {
        body["registry"] = json!(registry);
    }
    control_post(api_url, "gc", &body)
}

fn control_post(api_url: &str, route: &str, body: &Value) -> anyhow::Result<()> {
    let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).proxy(None).build().into();
    let mut response = agent
        .post(format!("{}/_sim/{route}", api_url.trim_end_matches('/')))
        .header("content-type", "application/json")
        .send(body.to_string())
        .map_err(|e| anyhow::anyhow!("cannot reach the simulator at {api_url}: {e}"))?;
    let status = response.status().as_u16();
    let text = response.body_mut().read_to_string().unwrap_or_default();
    if status != 201 {
        let message = serde_json::from_str::<Value>(&text)
            .ok()
            .and_then(|v| v["message"].as_str().map(str::to_string))
            .unwrap_or(text);
        anyhow::bail!("{route} refused ({status}): {message}");
    }
    println!("{text}");
    Ok(())
}
