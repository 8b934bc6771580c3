//! The integration suite: one binary, one module per area.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod audit;
mod book;
mod cli;
mod console;
mod diagnostics;
mod diff;
mod differential;
mod engine;
mod layers;
mod lint;
mod policies;
mod properties;
mod proxy;
mod redis_access;
mod rego;
mod regression;
mod replicas;
mod resilience;
mod schema;
mod server;
mod state;
mod util;
