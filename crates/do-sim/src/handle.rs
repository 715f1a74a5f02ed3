//! The simulator as a test or the demo holds it: started on an address with a state, stopped
//! when dropped, its state at hand.

use serde_json::Value;
use std::sync::atomic::Ordering;
use std::sync::{Arc, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::seed::{Seed, DEFAULT_TOKEN};
use crate::state::*;
use crate::{artifacts, http1, server, snapshot, state};

/// A running simulator. Dropping it stops the server.
pub struct Sim {
    shared: Arc<server::Shared>,
    address: std::net::SocketAddr,
    acceptor: Option<JoinHandle<()>>,
    connections: Arc<http1::Connections>,
}

impl Sim {
    /// Starts serving `state` on `listen` (`127.0.0.1:0` picks a free port).
    pub fn start(listen: &str, state: State) -> anyhow::Result<Sim> {
        let listener =
            std::net::TcpListener::bind(listen).map_err(|e| anyhow::anyhow!("cannot listen on {listen}: {e}"))?;
        let address = listener.local_addr()?;
        let shared = Arc::new(server::Shared {
            state: std::sync::Mutex::new(state),
            stop: Default::default(),
            base_url: format!("http://{address}"),
            connections: Default::default(),
        });
        let connections = Arc::new(http1::Connections::default());
        let acceptor = {
            let (shared, connections) = (Arc::clone(&shared), Arc::clone(&connections));
            std::thread::spawn(move || http1::accept(shared, listener, connections))
        };
        Ok(Sim { shared, address, acceptor: Some(acceptor), connections })
    }

    /// The default world on a free loopback port, with phases and GC steps of `step`.
    pub fn start_default(step: Duration) -> anyhow::Result<Sim> {
        let timing = Timing { gc_step_ms: step.as_millis() as u64, deploy_phase_ms: step.as_millis() as u64 };
        Sim::start("127.0.0.1:0", Seed::default_world().into_state(DEFAULT_TOKEN, timing)?)
    }

    pub fn url(&self) -> &str {
        &self.shared.base_url
    }

    pub fn token(&self) -> String {
        self.state().token.clone()
    }

    /// Direct access to the state, for tests and benchmarks.
    pub fn state(&self) -> MutexGuard<'_, State> {
        self.shared.lock()
    }

    /// TCP connections accepted so far: clients that keep connections alive open few.
    pub fn connections_accepted(&self) -> u64 {
        self.shared.connections.load(Ordering::Relaxed)
    }

    pub fn requests(&self) -> Vec<LoggedRequest> {
        self.state().requests.clone()
    }

    pub fn add_fault(&self, fault: Fault) {
        self.state().faults.push(fault);
    }

    /// Pushes an image as `docker push` would (refused while a GC runs).
    pub fn push(&self, registry: &str, repository: &str, tag: &str, size_bytes: u64) -> Result<Value, SimError> {
        self.state().push(registry, repository, tag, size_bytes, &Value::Null, Instant::now())
    }

    /// Pushes a multi-platform image as buildx does: an index (tagged) holding an untagged image
    /// per platform and, with `attestations`, an attestation manifest for each.
    pub fn push_index(
        &self,
        registry: &str,
        repository: &str,
        tag: &str,
        platforms: &[&str],
        attestations: bool,
        size_bytes: u64,
    ) -> Result<Value, SimError> {
        let push = state::IndexPush {
            registry: registry.into(),
            repository: repository.into(),
            tag: tag.into(),
            platforms: platforms.iter().map(|p| p.to_string()).collect(),
            attestations,
            size_bytes,
            labels: Value::Null,
        };
        self.state().push_index(&push, Instant::now())
    }

    /// Pushes what cosign (or GitHub's attestation action) pushes about the image `of` (a tag or
    /// digest) of `repository`; a referrer gets the fallback index tag when `fallback_tag`.
    pub fn push_artifact(
        &self,
        registry: &str,
        repository: &str,
        of: &str,
        kind: artifacts::ArtifactKind,
        fallback_tag: bool,
    ) -> Result<Value, SimError> {
        let push = artifacts::ArtifactPush {
            registry: registry.into(),
            repository: repository.into(),
            of: of.into(),
            kind,
            fallback_tag,
        };
        artifacts::push(&mut self.state(), &push, Instant::now())
    }

    /// Adds an app running `spec`, with an ACTIVE deployment of it when `active`; returns its id.
    pub fn add_app(&self, spec: Value, active: bool) -> String {
        self.state().add_app(None, spec, active, Instant::now())
    }

    /// Where the simulated registry host serves the OCI distribution API: the simulator's own address.
    pub fn registry_url(&self) -> &str {
        &self.shared.base_url
    }

    /// Requests to the registry host, apart from the API's.
    pub fn registry_requests(&self) -> Vec<state::RegistryRequest> {
        self.state().registry_requests.clone()
    }

    /// Starts a GC whose statuses follow `plan` (status, milliseconds) and then `final_status`.
    pub fn start_gc_with(&self, registry: &str, plan: &[(&str, u64)], final_status: &str) -> Result<Value, SimError> {
        let plan = plan.iter().map(|(status, ms)| (status.to_string(), Duration::from_millis(*ms))).collect();
        self.state().start_gc(registry, state::DEFAULT_GC_TYPE, Some(plan), final_status, Instant::now())
    }

    /// A JSON view of everything the simulator holds (also `GET /_sim/state`).
    pub fn snapshot(&self) -> Value {
        snapshot::snapshot(&mut self.state(), Instant::now())
    }

    /// Blocks until the server stops (never, for `do-sim`).
    pub fn wait(mut self) {
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
    }
}

impl Drop for Sim {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        if let Some(acceptor) = self.acceptor.take() {
            http1::wake(self.address);
            let _ = acceptor.join();
        }
        self.connections.close_all();
    }
}
