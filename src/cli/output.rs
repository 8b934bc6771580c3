//! Printing diagnostics and errors.

use std::io::{IsTerminal, Write};

use toolgate::diagnostic::render::{self, Color};
use toolgate::diagnostic::{Code, Diagnostic, Severity, sarif};
use toolgate::source::SourceMap;

use super::{Exit, Format};

/// Colour for stderr: only on a terminal, and never with `NO_COLOR` set.
pub fn stderr_color() -> Color {
    let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
    if !no_color && std::io::stderr().is_terminal() { Color::Always } else { Color::Never }
}

/// Prints diagnostics in the chosen format: human to stderr, JSON to stdout.
pub fn diagnostics(diagnostics: &[Diagnostic], sources: &SourceMap, format: Format) {
    match format {
        Format::Human => {
            let text = render::human(diagnostics, sources, stderr_color());
            let _ = std::io::stderr().write_all(text.as_bytes());
        }
        Format::Json => {
            let json = render::json(diagnostics, sources);
            let mut out = std::io::stdout().lock();
            let _ = serde_json::to_writer_pretty(&mut out, &json);
            let _ = writeln!(out);
        }
        Format::Sarif => {
            let log = sarif::sarif(diagnostics, sources, env!("CARGO_PKG_VERSION"), &describe);
            let mut out = std::io::stdout().lock();
            let _ = serde_json::to_writer_pretty(&mut out, &log);
            let _ = writeln!(out);
        }
        Format::Github => {
            let _ = std::io::stdout().write_all(sarif::github_annotations(diagnostics, sources).as_bytes());
        }
    }
}

/// A code's full documentation: a lint rule's own, or the code's summary.
fn describe(code: Code) -> String {
    match toolgate::authoring::lint::find(code.as_str()) {
        Some(rule) => rule.documentation(),
        None => format!(
            "{} See the chapter 'Diagnostics' of the toolgate book for an example and the fix.",
            code.summary()
        ),
    }
}

/// `N errors, M warnings`.
pub fn summary(diagnostics: &[Diagnostic]) -> String {
    let errors = diagnostics.iter().filter(|d| d.severity() == Severity::Error).count();
    let warnings = diagnostics.len() - errors;
    format!("{}, {}", plural(errors, "error"), plural(warnings, "warning"))
}

/// `1 file`, `2 files`.
pub fn plural(n: usize, word: &str) -> String {
    format!("{n} {word}{}", if n == 1 { "" } else { "s" })
}

/// Prints an error that is not about policy content (usage, I/O).
pub fn error(message: &str) {
    let _ = writeln!(std::io::stderr(), "error: {message}");
}

/// Reads and compiles a policy set for a command that needs a valid one;
/// on failure prints why and returns the exit code.
pub fn compile_or_report(paths: &[std::path::PathBuf]) -> Result<toolgate::compiler::CheckedPolicySet, Exit> {
    let sources = toolgate::compiler::files::read_policies(paths).map_err(|e| {
        error(&e.to_string());
        Exit::Usage
    })?;
    let checked = toolgate::compile(sources, &toolgate::DiskFiles);
    checked.policy.ok_or_else(|| {
        diagnostics(checked.diagnostics.as_slice(), &checked.sources, Format::Human);
        error(&format!("policy does not compile ({})", summary(checked.diagnostics.as_slice())));
        Exit::Invalid
    })
}
