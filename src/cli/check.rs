//! `toolgate check`.

use std::io::Write;
use std::path::PathBuf;

use super::{Exit, Format, output};

pub fn run(paths: &[PathBuf], format: Format, deny_warnings: bool) -> Exit {
    let sources = match toolgate::compiler::files::read_policies(paths) {
        Ok(sources) => sources,
        Err(error) => {
            output::error(&error.to_string());
            return Exit::Usage;
        }
    };
    let file_count = sources.len();
    let checked = toolgate::compile(sources, &toolgate::DiskFiles);
    let diagnostics = checked.diagnostics.as_slice();
    output::diagnostics(diagnostics, &checked.sources, format);
    if format == Format::Human {
        let agents = checked.policy.as_ref().map_or(0, |p| p.agent_names().count());
        let files = output::plural(file_count, "file");
        let status = match checked.policy {
            Some(_) => format!("{} in {files}", output::plural(agents, "agent")),
            None => files,
        };
        let _ = writeln!(std::io::stderr(), "checked {status}: {}", output::summary(diagnostics));
    }
    let failed = checked.policy.is_none() || (deny_warnings && !diagnostics.is_empty());
    if failed { Exit::Invalid } else { Exit::Ok }
}
