//! Loading: policy file bytes → [`PolicyFile`] ASTs, with every problem reported.
//!
//! This stage does no I/O: callers hand it [`PolicySource`]s (see
//! [`super::files`] for reading them from disk).

mod decode;
mod policy;

use super::ast::PolicyFile;
use super::files::PolicySource;
use crate::diagnostic::{Code, Diagnostic, Diagnostics};
use crate::source::{Location, SourceFile, SourceMap, Span};

/// The result of loading a policy set: its sources, the files that decoded,
/// and every diagnostic found.
#[derive(Debug)]
pub struct Loaded {
    /// Every file, for diagnostics.
    pub sources: SourceMap,
    /// The decoded files (also those with errors, as far as they decoded).
    pub files: Vec<PolicyFile>,
    /// What went wrong.
    pub diagnostics: Diagnostics,
}

/// Parses and decodes every source.
pub fn load(inputs: Vec<PolicySource>) -> Loaded {
    let mut sources = SourceMap::new();
    let mut files = Vec::with_capacity(inputs.len());
    let mut diagnostics = Diagnostics::new();
    for input in inputs {
        let text = String::from_utf8_lossy(&input.bytes).into_owned();
        let id = sources.add(SourceFile::new(input.name.clone(), input.name, text));
        let root = match crate::compiler::yaml::parse(&input.bytes, id) {
            Ok(Some(root)) => root,
            Ok(None) => {
                diagnostics.push(
                    Diagnostic::new(
                        Code::EmptyFile,
                        "policy file is empty",
                        Location::new(id, Span::default()),
                    )
                    .with_help("add an `agentPolicies:` mapping, or delete the file"),
                );
                continue;
            }
            Err(diagnostic) => {
                diagnostics.push(diagnostic);
                continue;
            }
        };
        let Some(file) = sources.get(id) else {
            continue;
        };
        let mut decoder = decode::Decoder::new(id, file.text(), &mut diagnostics);
        let policy::FileDecls { agents, catalogs, lint_ignore, approvers, servers } =
            policy::decode_file(&mut decoder, &root);
        files.push(PolicyFile { source: id, agents, catalogs, lint_ignore, approvers, servers });
    }
    Loaded { sources, files, diagnostics }
}
