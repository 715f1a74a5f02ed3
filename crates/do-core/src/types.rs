//! Lenient response types for the API parts we use: every field optional or defaulted,
//! unknown fields ignored, string enums open with an `Unknown` fallback. App specs are kept
//! as raw JSON so a spec can be sent back with everything we did not touch unchanged.

use std::fmt;

use crate::short_text::ShortText;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;

use crate::digest::Digest;

/// A string enum that keeps values it does not know instead of failing.
macro_rules! open_enum {
    ($(#[$meta:meta])* $name:ident { $($variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Clone, Debug, PartialEq, Eq)]
        pub enum $name {
            $($variant,)+
            /// A value the spec does not list (yet).
            Unknown(String),
        }

        impl $name {
            pub fn as_str(&self) -> &str {
                match self {
                    $($name::$variant => $text,)+
                    $name::Unknown(other) => other,
                }
            }
        }

        impl From<&str> for $name {
            fn from(text: &str) -> $name {
                match text {
                    $($text => $name::$variant,)+
                    other => $name::Unknown(other.to_string()),
                }
            }
        }

        impl Default for $name {
            fn default() -> $name {
                $name::Unknown(String::new())
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(self.as_str())
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<$name, D::Error> {
                let text = Option::<String>::deserialize(deserializer)?.unwrap_or_default();
                Ok($name::from(text.as_str()))
            }
        }
    };
}

open_enum! {
    /// Garbage-collection status: lowercase phrases with spaces.
    GcStatus {
        Requested => "requested",
        WaitingForWriteJwtsToExpire => "waiting for write JWTs to expire",
        ScanningManifests => "scanning manifests",
        DeletingUnreferencedBlobs => "deleting unreferenced blobs",
        Cancelling => "cancelling",
        Succeeded => "succeeded",
        Failed => "failed",
        Cancelled => "cancelled",
    }
}

impl GcStatus {
    /// Only `succeeded`, `failed` and `cancelled` end a GC; anything else, including values
    /// outside the spec (`waiting for delete requests`), means it still runs.
    pub fn is_terminal(&self) -> bool {
        matches!(self, GcStatus::Succeeded | GcStatus::Failed | GcStatus::Cancelled)
    }
}

open_enum! {
    /// Garbage-collection type, as sent when starting one.
    GcType {
        UntaggedManifestsOnly => "untagged manifests only",
        UnreferencedBlobsOnly => "unreferenced blobs only",
        UntaggedManifestsAndUnreferencedBlobs => "untagged manifests and unreferenced blobs",
    }
}

open_enum! {
    /// App Platform deployment phase: SCREAMING_SNAKE, `CANCELED` with one L.
    Phase {
        PendingBuild => "PENDING_BUILD",
        Building => "BUILDING",
        PendingDeploy => "PENDING_DEPLOY",
        Deploying => "DEPLOYING",
        Active => "ACTIVE",
        Superseded => "SUPERSEDED",
        Error => "ERROR",
        Canceled => "CANCELED",
        UnknownPhase => "UNKNOWN",
    }
}

impl Phase {
    pub fn is_terminal(&self) -> bool {
        matches!(self, Phase::Active | Phase::Superseded | Phase::Error | Phase::Canceled)
    }
}

open_enum! {
    /// Status of a deployment progress step.
    StepStatus {
        Pending => "PENDING",
        Running => "RUNNING",
        Error => "ERROR",
        Success => "SUCCESS",
        UnknownStatus => "UNKNOWN",
    }
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(default)]
pub struct Registry {
    pub name: String,
    pub created_at: Option<String>,
    pub region: Option<String>,
    pub storage_usage_bytes: Option<u64>,
    pub storage_usage_bytes_updated_at: Option<String>,
    pub subscription: Option<Subscription>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(default)]
pub struct Subscription {
    pub tier: Option<Tier>,
    pub created_at: Option<String>,
    pub updated_at: Option<String>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(default)]
pub struct Tier {
    pub name: Option<String>,
    pub slug: Option<String>,
    pub included_repositories: Option<u64>,
    pub included_storage_bytes: Option<u64>,
    pub allow_storage_overage: Option<bool>,
    pub included_bandwidth_bytes: Option<u64>,
    pub monthly_price_in_cents: Option<u64>,
    pub storage_overage_price_in_cents: Option<u64>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(default)]
pub struct Repository {
    pub registry_name: Option<String>,
    pub name: String,
    pub tag_count: Option<u64>,
    pub manifest_count: Option<u64>,
    pub latest_manifest: Option<Manifest>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(default)]
pub struct Tag {
    pub registry_name: Option<String>,
    pub repository: Option<String>,
    pub tag: String,
    pub manifest_digest: Option<String>,
    pub compressed_size_bytes: Option<u64>,
    pub size_bytes: Option<u64>,
    pub updated_at: Option<String>,
}

/// A field that should be a string but may arrive as a number or something else: kept as
/// text, so one odd value never makes a whole listing unreadable.
fn lenient_text<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<ShortText>, D::Error> {
    Ok(match Value::deserialize(deserializer)? {
        Value::Null => None,
        Value::String(text) => Some(text.into()),
        other => Some(other.to_string().into()),
    })
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(default)]
/// A manifest as the digests listing gives it. Its `registry_name` and `repository` are the
/// ones the listing was asked for, so they are not kept (two strings each, over 100,000).
pub struct Manifest {
    pub digest: Digest,
    pub compressed_size_bytes: ByteCount,
    pub size_bytes: ByteCount,
    /// RFC 3339, but read leniently: a timestamp that cannot be read is a decision for the caller.
    /// Held in place (see [`ShortText`]).
    #[serde(deserialize_with = "lenient_text")]
    pub updated_at: Option<ShortText>,
    /// Boxed slices, held at their length as read (a list read from JSON grows to room for four
    /// where two came), 8 bytes less than a `Vec` each.
    pub tags: Box<[String]>,
    pub blobs: Box<[Blob]>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(default)]
pub struct Blob {
    pub digest: Option<Digest>,
    pub compressed_size_bytes: ByteCount,
}

/// A byte count the API may leave out, in 8 bytes where an `Option<u64>` takes 16: a listing
/// of 100,000 manifests holds four each. `u64::MAX`, more than any registry holds, stands for
/// "not given", and is read as that when the API sends it.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct ByteCount(u64);

impl ByteCount {
    pub const NONE: ByteCount = ByteCount(u64::MAX);

    pub fn get(self) -> Option<u64> {
        (self.0 != u64::MAX).then_some(self.0)
    }
}

impl Default for ByteCount {
    fn default() -> ByteCount {
        ByteCount::NONE
    }
}

impl From<Option<u64>> for ByteCount {
    fn from(count: Option<u64>) -> ByteCount {
        ByteCount(count.unwrap_or(u64::MAX))
    }
}

impl fmt::Debug for ByteCount {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        self.get().fmt(f)
    }
}

impl Serialize for ByteCount {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.get().serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for ByteCount {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<ByteCount, D::Error> {
        Option::<u64>::deserialize(deserializer).map(ByteCount::from)
    }
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(default)]
pub struct GarbageCollection {
    pub uuid: String,
    pub registry_name: Option<String>,
    pub status: GcStatus,
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    pub gc_type: Option<GcType>,
    pub created_at: Option<String>,
    pub updated_at: Option<String>,
    pub blobs_deleted: Option<u64>,
    pub freed_bytes: Option<u64>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(default)]
pub struct App {
    pub id: String,
    pub owner_uuid: Option<String>,
    /// Kept raw: a PUT must send back every field, encrypted secrets included, unchanged.
    pub spec: Value,
    pub default_ingress: Option<String>,
    pub live_url: Option<String>,
    pub created_at: Option<String>,
    pub updated_at: Option<String>,
    pub last_deployment_created_at: Option<String>,
    pub tier_slug: Option<String>,
    pub active_deployment: Option<Deployment>,
    pub in_progress_deployment: Option<Deployment>,
    pub pending_deployment: Option<Deployment>,
    pub pinned_deployment: Option<Deployment>,
}

impl App {
    pub fn name(&self) -> &str {
        self.spec.get("name").and_then(Value::as_str).unwrap_or("")
    }
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(default)]
pub struct Deployment {
    pub id: String,
    pub spec: Value,
    pub phase: Phase,
    pub phase_last_updated_at: Option<String>,
    pub progress: Option<Progress>,
    pub cause: Option<String>,
    pub cloned_from: Option<String>,
    pub created_at: Option<String>,
    pub updated_at: Option<String>,
    pub tier_slug: Option<String>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(default)]
pub struct Progress {
    pub pending_steps: Option<i64>,
    pub running_steps: Option<i64>,
    pub success_steps: Option<i64>,
    pub error_steps: Option<i64>,
    pub total_steps: Option<i64>,
    pub steps: Vec<Step>,
    pub summary_steps: Vec<Step>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(default)]
pub struct Step {
    pub name: Option<String>,
    pub status: StepStatus,
    pub component_name: Option<String>,
    pub message_base: Option<String>,
    pub started_at: Option<String>,
    pub ended_at: Option<String>,
    pub reason: Option<StepReason>,
    /// Typed only as `object` in the spec.
    pub steps: Vec<Value>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(default)]
pub struct StepReason {
    pub code: Option<String>,
    pub message: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_gc_status_is_kept_and_counts_as_running() {
        let gc: GarbageCollection =
            serde_json::from_str(r#"{"uuid":"u","status":"waiting for delete requests","extra":1}"#).unwrap();
        assert_eq!(gc.status, GcStatus::Unknown("waiting for delete requests".into()));
        assert!(!gc.status.is_terminal());
        assert_eq!(serde_json::to_value(&gc.status).unwrap(), "waiting for delete requests");
        for terminal in ["succeeded", "failed", "cancelled"] {
            assert!(GcStatus::from(terminal).is_terminal());
        }
        assert!(!GcStatus::from("scanning manifests").is_terminal());
    }

    #[test]
    fn deployments_parse_leniently() {
        let deployment: Deployment = serde_json::from_str(
            r#"{"id":"d","phase":"SOMETHING_NEW","progress":{"steps":[{"name":"build","status":"RUNNING","steps":[{"x":1}]}]}}"#,
        )
        .unwrap();
        assert_eq!(deployment.phase, Phase::Unknown("SOMETHING_NEW".into()));
        assert!(!deployment.phase.is_terminal());
        assert_eq!(deployment.progress.unwrap().steps[0].status, StepStatus::Running);
        let missing: Deployment = serde_json::from_str(r#"{"id":"d","phase":null}"#).unwrap();
        assert!(!missing.phase.is_terminal());
        assert!(Phase::from("CANCELED").is_terminal());
    }

    #[test]
    fn an_odd_updated_at_is_kept_as_text() {
        let manifests: Vec<Manifest> = serde_json::from_str(
            r#"[{"digest":"a","updated_at":1700000000},{"digest":"b","updated_at":null},{"digest":"c","updated_at":"2026-11-29 10:00"}]"#,
        )
        .unwrap();
        let times: Vec<Option<&str>> = manifests.iter().map(|m| m.updated_at.as_deref()).collect();
        assert_eq!(times, [Some("1700000000"), None, Some("2026-11-29 10:00")]);
    }

    #[test]
    fn byte_counts_beyond_32_bits_and_missing_fields_parse() {
        let manifest: Manifest = serde_json::from_str(r#"{"digest":"sha256:x","size_bytes":107374182400}"#).unwrap();
        assert_eq!(manifest.size_bytes.get(), Some(107_374_182_400));
        assert_eq!(manifest.compressed_size_bytes.get(), None);
        assert!(manifest.tags.is_empty());
    }

    #[test]
    fn a_byte_count_reads_and_writes_as_an_optional_number_in_8_bytes() {
        assert_eq!(std::mem::size_of::<ByteCount>(), 8);
        for (text, count) in
            [("0", Some(0)), ("1", Some(1)), ("18446744073709551614", Some(u64::MAX - 1)), ("null", None)]
        {
            let read: ByteCount = serde_json::from_str(text).unwrap();
            assert_eq!(read.get(), count, "{text}");
            assert_eq!(read, ByteCount::from(count));
            assert_eq!(serde_json::to_string(&read).unwrap(), text);
            assert_eq!(format!("{read:?}"), format!("{count:?}"));
        }
        // More than any registry holds: read as not given.
        assert_eq!(serde_json::from_str::<ByteCount>("18446744073709551615").unwrap().get(), None);
        assert_eq!(ByteCount::default(), ByteCount::NONE);
        assert_eq!(Blob::default().compressed_size_bytes.get(), None);
        let blob: Blob = serde_json::from_str(r#"{"digest":"sha256:b","compressed_size_bytes":3}"#).unwrap();
        assert_eq!(blob.compressed_size_bytes.get(), Some(3));
    }
}
