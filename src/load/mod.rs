//! Loading: policy file bytes → [`PolicyFile`] ASTs, with every problem reported.
//!
//! This stage does no I/O: callers hand it [`PolicySource`]s (see
//! [`crate::files`] for reading them from disk).

mod decode;
mod policy;

pub use decode::suggest;

use crate::ast::PolicyFile;
use crate::diagnostic::{Code, Diagnostic, Diagnostics};
use crate::source::{Location, SourceFile, SourceMap, Span};

/// One policy file as read: its name for diagnostics and its raw bytes.
#[derive(Clone, Debug)]
pub struct PolicySource {
    /// The name shown in diagnostics (usually the path as given).
    pub name: String,
    /// Its bytes, not yet known to be UTF-8.
    pub bytes: Vec<u8>,
}

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
        let root = match crate::yaml::parse(&input.bytes, id) {
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
        let policy::FileDecls { agents, catalogs, lint_ignore } = policy::decode_file(&mut decoder, &root);
        files.push(PolicyFile { source: id, agents, catalogs, lint_ignore });
    }
    Loaded { sources, files, diagnostics }
}

/// Reads the files a policy refers to (tool catalogs, Rego modules): the
/// compiler's only window on the file system, supplied by the caller.
pub trait FileReader {
    /// The bytes of `file` as written in the policy `policy` (the policy's
    /// source name), or what went wrong.
    fn read(&self, policy: &str, file: &str) -> Result<Vec<u8>, String>;

    /// Every Rego module (`*.rego`) beside the policy `policy`, by name.
    fn rego_modules(&self, policy: &str) -> Result<Vec<(String, Vec<u8>)>, String>;
}

/// A reader for callers that compile from memory: every file is an error.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoFiles;

impl FileReader for NoFiles {
    fn read(&self, _policy: &str, _file: &str) -> Result<Vec<u8>, String> {
        Err(String::from("this compiler was given no way to read files"))
    }

    fn rego_modules(&self, _policy: &str) -> Result<Vec<(String, Vec<u8>)>, String> {
        Err(String::from("this compiler was given no way to read files"))
    }
}
