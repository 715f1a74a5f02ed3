//! One way to start a simulated world: what it holds (a JSON seed as `do-sim --state` reads
//! it, the simulator's default world, or the demo's), how fast it moves, who may call it, then
//! `start`. Every test starts its simulator here.

use std::time::Duration;

use do_sim::{Sim, Timing};
use serde_json::{json, Value};

pub struct World {
    source: Source,
    token: Option<String>,
    timing: Timing,
    unlimited: bool,
}

enum Source {
    Seed(Value),
    Default,
    Demo,
}

fn of(source: Source) -> World {
    World { source, token: None, timing: Timing::default(), unlimited: false }
}

/// The world of a JSON seed (`registries`, `apps`).
pub fn seeded(seed: Value) -> World {
    of(Source::Seed(seed))
}

/// One registry, `reg` of `tier`, holding `repositories` as (name, manifests); no apps.
pub fn registry(tier: &str, repositories: Vec<(&str, Vec<Value>)>) -> World {
    let repositories: Vec<Value> =
        repositories.into_iter().map(|(name, manifests)| json!({"name": name, "manifests": manifests})).collect();
    seeded(json!({"registries": [{"name": "reg", "tier": tier, "repositories": repositories}]}))
}

/// The simulator's default world: registry `example-registry`, app `example-app`.
pub fn default_world() -> World {
    of(Source::Default)
}

/// The demo's world (`cargo xtask demo`) without its running GC.
pub fn demo() -> World {
    of(Source::Demo)
}

impl World {
    /// Sets keys of the first registry of a seed (`referrers_api`, `hide_index_children`, ...).
    pub fn registry_options(mut self, options: Value) -> World {
        let Source::Seed(seed) = &mut self.source else { panic!("registry options need a seed") };
        for (key, value) in options.as_object().expect("options are an object") {
            seed["registries"][0][key] = value.clone();
        }
        self
    }

    /// Adds apps to a seed, each as the seed's `apps` entries are (`spec`, `active`, ...).
    pub fn apps(mut self, apps: Vec<Value>) -> World {
        let Source::Seed(seed) = &mut self.source else { panic!("apps need a seed") };
        seed["apps"] = Value::Array(apps);
        self
    }

    pub fn token(mut self, token: &str) -> World {
        self.token = Some(token.to_string());
        self
    }

    /// GC statuses last `gc` each, deployment phases `deploy`.
    pub fn steps(mut self, gc: Duration, deploy: Duration) -> World {
        self.timing = Timing { gc_step_ms: gc.as_millis() as u64, deploy_phase_ms: deploy.as_millis() as u64 };
        self
    }

    /// GC statuses and deployment phases both last `ms`.
    pub fn step_ms(self, ms: u64) -> World {
        self.steps(Duration::from_millis(ms), Duration::from_millis(ms))
    }

    /// Lifts the API's rate limit, for tests that make thousands of requests on purpose.
    pub fn unlimited(mut self) -> World {
        self.unlimited = true;
        self
    }

    pub fn start(self) -> Sim {
        let mut state = match self.source {
            Source::Seed(seed) => {
                let seed: do_sim::Seed = serde_json::from_value(seed).expect("a seed do-sim reads");
                seed.into_state(self.token.as_deref().unwrap_or("tok"), self.timing).expect("a valid seed")
            }
            Source::Default => do_sim::Seed::default_world()
                .into_state(self.token.as_deref().unwrap_or(do_sim::DEFAULT_TOKEN), self.timing)
                .expect("the default world"),
            Source::Demo => {
                let mut state = xtask::demo::world().expect("the demo's world");
                state.registries.values_mut().for_each(|r| r.gcs.clear());
                state.timing = self.timing;
                if let Some(token) = self.token {
                    state.token = token;
                }
                state
            }
        };
        if self.unlimited {
            state.rate_limit = do_sim::RateLimit { per_hour: 1_000_000, per_minute: 1_000_000, window_scale: 1.0 };
        }
        Sim::start("127.0.0.1:0", state).expect("the simulator starts")
    }
}
