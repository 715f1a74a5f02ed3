//! do-sim: a local, stateful simulator of the DigitalOcean API parts do-release uses
//! (Container Registry, App Platform, Account). Tests start it in-process on 127.0.0.1:0;
//! people run it as `do-sim --listen ADDR`.

mod apps_api;
mod apps_model;
pub mod appspec;
pub mod artifacts;
mod basics;
mod cli;
mod client;
pub mod content;
mod control;
mod distribution;
mod faults;
mod handle;
mod http1;
mod limits;
mod live;
mod paging;
mod registry_api;
mod registry_model;
mod seed;
mod server;
mod snapshot;
pub mod state;
mod wire;

pub use apps_model::auto_rollback_cause;
pub use cli::{main, Cli, Command};
pub use client::{push_to, start_gc_at, PushRequest};
pub use handle::Sim;
pub use seed::{default_app_spec, Seed, DEFAULT_APP, DEFAULT_REGISTRY, DEFAULT_REPOSITORY, DEFAULT_TOKEN};
pub use state::{Fault, FaultKind, Live, LoggedRequest, Outcome, Quirks, RateLimit, SimError, State, Timing};
