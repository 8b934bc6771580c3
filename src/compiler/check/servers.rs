//! `servers`: the credential scope of each MCP server a proxy starts —
//! the environment variables it receives; every other one is withheld.

use std::collections::BTreeMap;

use crate::compiler::ast::{PolicyFile, ServerDecl};
use crate::diagnostic::{Code, Diagnostic, Diagnostics};

/// Each declared server's environment variables, by server name.
pub fn declared(files: &[PolicyFile], diagnostics: &mut Diagnostics) -> BTreeMap<String, Vec<String>> {
    let mut seen: BTreeMap<&str, &ServerDecl> = BTreeMap::new();
    let mut servers = BTreeMap::new();
    for decl in files.iter().flat_map(|f| &f.servers) {
        let name = &decl.name;
        if name.value.is_empty() || name.value.contains('/') {
            diagnostics.push(
                Diagnostic::new(
                    Code::InvalidName,
                    format!("`{}` is not a server name", name.value),
                    name.location,
                )
                .with_help(
                    "a server is the tool-name prefix before `/`, as `--server` names it, e.g. `github`",
                ),
            );
            continue;
        }
        if let Some(first) = seen.get(name.value.as_str()) {
            diagnostics.push(
                Diagnostic::new(
                    Code::InvalidValue,
                    format!("server `{}` is declared twice", name.value),
                    name.location,
                )
                .with_label("second declaration")
                .with_secondary(first.name.location, "first declaration")
                .with_help("declare each server once, with everything it may receive"),
            );
            continue;
        }
        seen.insert(&name.value, decl);
        let Some(env) = &decl.env else {
            diagnostics.push(
                Diagnostic::new(Code::MissingKey, format!("server `{}` says nothing about its `env`", name.value), name.location)
                    .with_help("list the environment variables it may receive (`env: [PATH, HOME]`); `env: []` gives it none"),
            );
            continue;
        };
        let mut names = Vec::new();
        for variable in env {
            if !valid_variable(&variable.value) {
                diagnostics.push(
                    Diagnostic::new(
                        Code::InvalidValue,
                        format!("`{}` is not an environment variable name", variable.value.escape_debug()),
                        variable.location,
                    )
                    .with_help("name a variable of the proxy's environment: ASCII letters, digits and `_`, not starting with a digit; its value is never written in a policy"),
                );
                continue;
            }
            if !names.contains(&variable.value) {
                names.push(variable.value.clone());
            }
        }
        names.sort();
        servers.insert(name.value.clone(), names);
    }
    servers
}

fn valid_variable(name: &str) -> bool {
    let mut bytes = name.bytes();
    bytes.next().is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
        && name.len() <= 256
}
