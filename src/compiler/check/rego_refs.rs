//! `rego:` references: the Rego modules beside a policy file, parsed and
//! compiled once, and each referenced rule checked to exist.

use std::collections::HashMap;
use std::sync::Arc;

use crate::compiler::FileReader;
use crate::compiler::ast::Spanned;
use crate::compiler::rego_vm::{ModuleError, RegoRule};
use crate::diagnostic::Diagnostics;
use crate::diagnostic::{Code, Diagnostic};
use crate::source::SourceMap;

/// Rego modules (name, text), shared by every rule compiled from them.
type Sources = Arc<Vec<(String, String)>>;

/// The modules read so far, per policy file, and the rules compiled.
pub struct RegoModules<'a> {
    reader: &'a dyn FileReader,
    sources: &'a SourceMap,
    modules: HashMap<String, Result<Sources, String>>,
    rules: HashMap<(String, String), Arc<RegoRule>>,
}

impl<'a> RegoModules<'a> {
    pub fn new(reader: &'a dyn FileReader, sources: &'a SourceMap) -> Self {
        RegoModules { reader, sources, modules: HashMap::new(), rules: HashMap::new() }
    }

    /// Every module read (name, text), each once, sorted: they decide
    /// too, so the policy hash covers them.
    pub fn texts(&self) -> Vec<(String, String)> {
        let mut texts: Vec<(String, String)> =
            self.modules.values().flatten().flat_map(|modules| modules.iter().cloned()).collect();
        texts.sort();
        texts.dedup();
        texts
    }

    /// The rule a `rego:` value names, compiled; `None` after reporting why not.
    pub fn rule(
        &mut self,
        reference: &Spanned<String>,
        diagnostics: &mut Diagnostics,
    ) -> Option<Arc<RegoRule>> {
        let entry = reference.value.trim();
        let error = |code: Code, message: String, label: String, help: &str| {
            Diagnostic::new(code, message, reference.location).with_label(label).with_help(help.to_owned())
        };
        if !entry.starts_with("data.") || entry.len() <= 5 {
            diagnostics.push(error(
                Code::UnknownRegoRule,
                format!("`{entry}` is not a Rego rule reference"),
                String::from("expected `data.<package>.<rule>`"),
                "name the rule by its full path, e.g. `rego: data.refunds.within_policy`",
            ));
            return None;
        }
        let policy = self.sources.get(reference.location.source).map_or("", |f| f.name()).to_owned();
        let key = (policy.clone(), entry.to_owned());
        if let Some(rule) = self.rules.get(&key) {
            return Some(rule.clone());
        }
        let reader = self.reader;
        let modules = self
            .modules
            .entry(policy.clone())
            .or_insert_with(|| {
                let files = reader.rego_modules(&policy)?;
                let texts = files
                    .into_iter()
                    .map(|(name, bytes)| (name, String::from_utf8_lossy(&bytes).into_owned()));
                Ok(Arc::new(texts.collect()))
            })
            .clone();
        let modules = match modules {
            Ok(modules) if !modules.is_empty() => modules,
            Ok(_) => {
                diagnostics.push(error(
                    Code::UnknownRegoRule,
                    format!("no Rego module beside this policy defines `{entry}`"),
                    String::from("there is no `*.rego` file in the policy's directory"),
                    "put the module that defines the rule next to the policy file",
                ));
                return None;
            }
            Err(message) => {
                diagnostics.push(error(
                    Code::RegoModule,
                    String::from("cannot read the Rego modules beside this policy"),
                    message,
                    "check the permissions of the policy's directory",
                ));
                return None;
            }
        };
        let unbounded: Vec<String> = modules
            .iter()
            .flat_map(|(name, text)| {
                crate::compiler::rego_bounds::scan(text)
                    .into_iter()
                    .map(move |u| format!("{name}:{}:{}: {}", u.line, u.column, u.what))
            })
            .collect();
        if let Some(first) = unbounded.first() {
            let more = match unbounded.len() {
                1 => String::new(),
                n => format!(" (and {} more)", n - 1),
            };
            diagnostics.push(error(
                Code::RegoUnbounded,
                format!("the Rego modules for `{entry}` use what regorus cannot bound"),
                format!("{first}{more}"),
                "regorus checks its time limit only between steps, so one such call can take seconds and gigabytes; compute the value another way (a comprehension over the input, `concat`, a smaller literal)",
            ));
            return None;
        }
        match RegoRule::new(modules.clone(), entry) {
            Ok(rule) => {
                let rule = Arc::new(rule);
                self.rules.insert(key, rule.clone());
                Some(rule)
            }
            Err(ModuleError::Parse(message)) => {
                diagnostics.push(error(
                    Code::RegoModule,
                    format!("the Rego modules for `{entry}` do not parse"),
                    first_lines(&message),
                    "fix the module; `opa check` or `regorus parse` show the same error",
                ));
                None
            }
            Err(ModuleError::Rule(message)) => {
                let rules = rule_paths(&modules);
                let label = match crate::diagnostic::suggest(entry, rules.iter().map(String::as_str)) {
                    Some(best) => crate::diagnostic::did_you_mean(best),
                    None => first_lines(&message),
                };
                diagnostics.push(error(
                    Code::UnknownRegoRule,
                    format!("no Rego rule `{entry}`"),
                    label,
                    "check the package and rule name in the `.rego` files beside the policy",
                ));
                None
            }
        }
    }
}

/// regorus's messages start with a newline and carry a source excerpt; keep
/// the location and the error.
fn first_lines(message: &str) -> String {
    let lines: Vec<&str> = message.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
    let location = lines.iter().find(|l| l.starts_with("-->")).map(|l| l.trim_start_matches("--> "));
    let error = lines.iter().rev().find(|l| l.starts_with("error:")).copied().unwrap_or(message.trim());
    match location {
        Some(location) => format!("{location}: {error}"),
        None => error.to_owned(),
    }
}

/// `data.<package>.<rule>` for every rule head at the start of a line, for
/// suggestions (a scan, not a parse: it only has to find likely names).
fn rule_paths(modules: &[(String, String)]) -> Vec<String> {
    let mut paths = Vec::new();
    for (_, text) in modules {
        let mut package = None;
        for line in text.lines() {
            if let Some(name) = line.strip_prefix("package ") {
                package = Some(name.trim().to_owned());
                continue;
            }
            let head: String = line.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
            let is_rule = !head.is_empty()
                && !matches!(head.as_str(), "import" | "default")
                && line.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_');
            if let (true, Some(package)) = (is_rule, &package) {
                paths.push(format!("data.{package}.{head}"));
            }
            if let (Some(rest), Some(package)) = (line.strip_prefix("default "), &package) {
                let name: String =
                    rest.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
                paths.push(format!("data.{package}.{name}"));
            }
        }
    }
    paths.sort();
    paths.dedup();
    paths
}
