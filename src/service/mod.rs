//! The running gateway core: admin operations, reload and metrics.

pub mod admin;
pub mod metrics;
pub mod reload;
