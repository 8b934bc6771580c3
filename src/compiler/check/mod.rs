//! Stage 3: the checker. AST files → a [`CheckedPolicySet`].
//!
//! It joins the files into one set, resolves `extends`, compiles tool
//! patterns, parameter rules and conditions, and reports everything that is
//! wrong (errors) or suspicious (warnings). A [`CheckedPolicySet`] exists only
//! if there were no errors, and only this module can build one.

mod agent;
mod approvers;
mod catalog;
mod inherit;
mod output;
mod params;
mod privacy;
mod reach;
mod rego_refs;
mod servers;

use std::collections::HashMap;

use sha2::{Digest, Sha256};

use super::checked::*;
use super::files::FileReader;
use super::load::Loaded;
use crate::diagnostic::{Code, Diagnostic, Diagnostics};
use crate::source::SourceMap;

/// The result of checking: the sources, every diagnostic, and the checked
/// set when there was no error.
#[derive(Debug)]
pub struct CheckResult {
    /// The policy text, for rendering diagnostics.
    pub sources: SourceMap,
    /// Errors and warnings, in the order found.
    pub diagnostics: Diagnostics,
    /// The checked set, present only without errors.
    pub policy: Option<CheckedPolicySet>,
}

/// Checks a loaded policy set; `reader` reads the catalogs it names.
pub fn check(loaded: Loaded, reader: &dyn FileReader) -> CheckResult {
    let Loaded { sources, files, mut diagnostics } = loaded;
    let (catalogs, catalog_bytes) = catalog::load(&files, &sources, reader, &mut diagnostics);
    let mut rules = Rules::default();
    let decls = inherit::unique_agents(&files, &mut diagnostics);
    let approvers = approvers::declared(&files, &mut diagnostics);
    let servers = servers::declared(&files, &mut diagnostics);
    approvers::check_gates(&decls, &approvers, &mut diagnostics);
    let mut rego = rego_refs::RegoModules::new(reader, &sources);
    let own: Vec<agent::OwnRules> =
        decls.iter().map(|d| agent::compile(d, &catalogs, &mut rego, &mut rules, &mut diagnostics)).collect();
    let rego_texts = rego.texts();
    drop(rego);
    check_lint_names(&files, &mut diagnostics);
    let lineages = inherit::resolve(&decls, &mut diagnostics);
    let mut scanners = HashMap::new();
    let mut agents: Vec<CheckedAgent> = decls
        .iter()
        .zip(&lineages)
        .map(|(decl, lineage)| {
            agent::effective(decl, lineage, &own, &mut rules, &mut scanners, &mut diagnostics)
        })
        .collect();
    for (index, decl) in decls.iter().enumerate() {
        let heirs: Vec<&CheckedAgent> = agents
            .iter()
            .zip(&lineages)
            .filter(|(_, lineage)| lineage.contains(&index))
            .map(|(a, _)| a)
            .collect();
        privacy::check(decl, &heirs, &catalogs, &mut diagnostics);
    }
    for (agent, decl) in agents.iter_mut().zip(&decls) {
        let file = files.iter().find(|f| f.source == decl.name.location.source);
        let names = decl.lint_ignore.iter().chain(file.into_iter().flat_map(|f| &f.lint_ignore));
        agent.lint_ignore = names.map(|n| n.value.clone()).collect();
    }
    if !diagnostics.has_errors() {
        let mut compiled = HashMap::new();
        for agent in &mut agents {
            agent.validators = catalog::validators(agent, &catalogs, &rules, &mut compiled, &mut diagnostics);
        }
    }
    // Reachability is judged on a set without errors only: a broken entry
    // would make other rules look dead.
    if !diagnostics.has_errors() {
        for (agent, own) in agents.iter().zip(&own) {
            reach::warn(agent, own, &rules, &mut diagnostics);
        }
    }
    diagnostics.sort_by_location();
    let policy = (!diagnostics.has_errors()).then(|| {
        let hash = hash_sources(&sources, &catalog_bytes, &rego_texts);
        CheckedPolicySet::new(agents, rules, catalogs, approvers, servers, hash)
    });
    CheckResult { sources, diagnostics, policy }
}

/// Every `lintIgnore` entry must name a lint rule.
fn check_lint_names(files: &[crate::compiler::ast::PolicyFile], diagnostics: &mut Diagnostics) {
    let agent_lists = files.iter().flat_map(|f| f.agents.iter().map(|a| &a.lint_ignore));
    let lists = files.iter().map(|f| &f.lint_ignore).chain(agent_lists);
    for entry in lists.flatten() {
        if Code::lint_named(&entry.value).is_some() {
            continue;
        }
        let names = Code::ALL.iter().filter(|c| c.is_lint()).map(|c| c.name());
        let mut diagnostic = Diagnostic::new(
            Code::InvalidValue,
            format!("`{}` is not a lint rule", entry.value),
            entry.location,
        )
        .with_help("name a rule by its name or code; `toolgate lint --explain` lists them");
        diagnostic = diagnostic.with_suggestion(&entry.value, names);
        diagnostics.push(diagnostic);
    }
}

/// The policy hash: the policy files, the catalogs they name and the Rego
/// modules their `rego:` rules read — everything a decision depends on.
fn hash_sources(sources: &SourceMap, catalogs: &[Vec<u8>], rego: &[(String, String)]) -> String {
    let mut hasher = Sha256::new();
    // Contents only, in load order: `policies` and `./policies` are the
    // same policy, and so are the same files moved to another directory.
    for (_, file) in sources.iter() {
        hasher.update((file.text().len() as u64).to_le_bytes());
        hasher.update(file.text().as_bytes());
    }
    for bytes in catalogs {
        hasher.update((bytes.len() as u64).to_le_bytes());
        hasher.update(bytes);
    }
    for (path, text) in rego {
        // The module's file name, not its path: the hash does not depend on
        // how the policy path was written.
        let name =
            std::path::Path::new(path).file_name().map_or(path.as_str(), |n| n.to_str().unwrap_or(path));
        for part in [name.as_bytes(), text.as_bytes()] {
            hasher.update((part.len() as u64).to_le_bytes());
            hasher.update(part);
        }
    }
    crate::hash::sha256_text(hasher)
}
