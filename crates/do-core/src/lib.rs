//! Shared core of do-release: the DigitalOcean API client, the JSON Lines contract,
//! exit codes, progress output on stderr, polling and the command-line pieces every tool
//! shares. Tools depend on this crate and never on each other.

pub mod address;
pub mod api;
pub mod cli;
pub mod concurrent;
pub mod contract;
pub mod digest;
pub mod duration;
pub mod exit;
pub mod github;
pub mod http;
pub mod malloc;
pub mod manifest;
pub mod manifest_cache;
pub mod near;
pub mod oci;
pub mod paging;
pub mod poll;
pub mod progress;
pub mod redact;
pub mod registry;
pub mod registry_auth;
pub mod secret;
pub mod short_text;
pub mod start;
pub mod transport;
pub mod types;
pub mod units;
pub mod upstream;
pub mod validate;

pub use api::{ApiError, Client};
pub use exit::{Exit, Failure};
