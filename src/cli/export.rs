//! `toolgate export --format rego`: the compiled policy as a Rego v1 module.

use std::io::Write;
use std::path::PathBuf;

use super::{Exit, output};

/// Export formats.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum ExportFormat {
    /// A Rego v1 module (package `toolgate`, query `data.toolgate.decision`).
    #[default]
    Rego,
}

pub fn run(paths: &[PathBuf], format: ExportFormat) -> Exit {
    let policy = match output::compile_or_report(paths) {
        Ok(policy) => policy,
        Err(exit) => return exit,
    };
    let text = match format {
        ExportFormat::Rego => toolgate::authoring::export::rego(&policy),
    };
    let _ = std::io::stdout().write_all(text.as_bytes());
    Exit::Ok
}
