//! Project automation for do-release (`cargo xtask`), as a library so tests run the same code.

pub mod bench;
pub mod canary;
pub mod cli;
pub mod config;
pub mod demo;
pub mod dist;
pub mod docs;
pub mod release;
