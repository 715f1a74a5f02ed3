//! One integration-test binary: the real tool binaries against an in-process do-sim on
//! 127.0.0.1:0 (and, for do-tag, real git with bare remotes in temp dirs).

mod client;
mod deploy;
mod gc_wait;
mod prune;
mod release;
mod sim;
mod support;
mod tag;
