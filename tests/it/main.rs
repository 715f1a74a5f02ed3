//! One integration-test binary: the real tool binaries against an in-process do-sim on
//! 127.0.0.1:0 (and, for do-tag, real git with bare remotes in temp dirs).

mod app_spec;
mod bench;
mod client;
mod contract;
mod deploy;
mod deploy_safety;
mod deploy_soak;
mod faults;
mod gc_wait;
mod hostile_input;
mod install;
mod login;
mod once;
mod openapi;
mod preview_cleanup;
mod progress;
mod prune;
mod prune_artifacts;
mod prune_closure;
mod prune_gc;
mod prune_properties;
mod prune_protection;
mod prune_reads;
mod prune_saved_plans;
mod readme;
mod registry;
mod release;
mod release_preflight;
mod run_bounds;
mod secrets;
mod sim;
mod support;
mod tag;
mod tidy;
mod tls;

/// The binaries of this build, for the xtask's benchmark.
pub fn bench_binaries() -> xtask::bench::BenchBinaries {
    xtask::bench::BenchBinaries {
        prune: support::PRUNE.into(),
        deploy: support::DEPLOY.into(),
        sim: support::DO_SIM.into(),
    }
}

/// The tool binaries of this build, for the xtask library.
pub fn release_binaries() -> xtask::release::Binaries {
    xtask::release::Binaries {
        gc_wait: support::GC_WAIT.into(),
        tag: support::DO_TAG.into(),
        deploy: support::DEPLOY.into(),
        prune: support::PRUNE.into(),
    }
}
