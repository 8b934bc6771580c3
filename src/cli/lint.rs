//! `toolgate lint`: everything `check` reports, plus the lint rules.

use std::io::Write;
use std::path::PathBuf;

use toolgate::diagnostic::Diagnostic;

use super::{Exit, Format, output};

pub fn run(paths: &[PathBuf], format: Format, exit_zero: bool) -> Exit {
    let sources = match toolgate::compiler::files::read_policies(paths) {
        Ok(sources) => sources,
        Err(error) => {
            output::error(&error.to_string());
            return Exit::Usage;
        }
    };
    let file_count = sources.len();
    let checked = toolgate::compile(sources, &toolgate::DiskFiles);
    let mut findings: Vec<Diagnostic> = checked.diagnostics.as_slice().to_vec();
    if let Some(policy) = &checked.policy {
        findings.extend(toolgate::authoring::lint::run(policy));
    }
    output::diagnostics(&findings, &checked.sources, format);
    if format == Format::Human {
        let files = output::plural(file_count, "file");
        let _ = writeln!(std::io::stderr(), "linted {files}: {}", output::summary(&findings));
    }
    if checked.policy.is_none() {
        Exit::Invalid
    } else if findings.is_empty() || exit_zero {
        Exit::Ok
    } else {
        Exit::Findings
    }
}

/// `--explain`: one rule's documentation, or (with no rule) the list.
pub fn explain(rule: &str) -> Exit {
    let mut out = std::io::stdout().lock();
    if rule.is_empty() {
        for rule in &toolgate::authoring::lint::RULES {
            let _ = writeln!(out, "{}  {:<22} {}", rule.code.as_str(), rule.code.name(), rule.code.summary());
        }
        return Exit::Ok;
    }
    match toolgate::authoring::lint::find(rule) {
        Some(rule) => {
            let _ = writeln!(out, "{}", rule.documentation());
            Exit::Ok
        }
        None => {
            output::error(&format!("no lint rule `{rule}`; `toolgate lint --explain` lists them"));
            Exit::Usage
        }
    }
}
