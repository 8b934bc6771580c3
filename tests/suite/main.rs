//! The integration suite: one binary, one module per area.

mod cli;
mod diagnostics;
mod engine;
mod policies;
mod properties;
mod regression;
mod util;
