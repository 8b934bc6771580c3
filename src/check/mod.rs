//! Stage 3: the checker. AST files → a [`CheckedPolicySet`].
//!
//! It joins the files into one set, resolves `extends`, compiles tool
//! patterns, parameter rules and conditions, and reports everything that is
//! wrong (errors) or suspicious (warnings). A [`CheckedPolicySet`] exists only
//! if there were no errors, and only this module can build one.

mod agent;
mod catalog;
mod inherit;
mod params;
mod reach;
mod rego;

pub use params::{Direction, ParamCheck, Violation};

use std::collections::HashMap;
use std::sync::Arc;

use sha2::{Digest, Sha256};

use crate::ast::{ArgValidation, AuditLevel};
use crate::catalog::Catalogs;
use crate::condition::Condition;
use crate::diagnostic::Diagnostics;
use crate::load::FileReader;
use crate::load::Loaded;
use crate::pattern::ToolPattern;
use crate::source::{Location, SourceMap};

/// Identifies a rule of a checked policy set.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RuleId(pub(crate) u32);

/// What a rule is and where it was written.
#[derive(Clone, Debug, PartialEq)]
pub struct RuleInfo {
    /// The stable id, a path into the policy: `agent.constraints.tool.maxPerSession`.
    pub id: String,
    /// Where the rule is in the policy text.
    pub location: Location,
}

/// A policy set with no errors: inheritance resolved, patterns and
/// conditions compiled. Built only by [`check`].
#[derive(Debug)]
pub struct CheckedPolicySet {
    pub(crate) agents: Vec<CheckedAgent>,
    pub(crate) rules: Vec<RuleInfo>,
    pub(crate) catalogs: Catalogs,
    hash: String,
}

impl CheckedPolicySet {
    /// The names of all agents, in source order.
    pub fn agent_names(&self) -> impl Iterator<Item = &str> {
        self.agents.iter().map(|a| a.name.as_str())
    }

    /// Every rule, indexed by [`RuleId`].
    pub fn rules(&self) -> &[RuleInfo] {
        &self.rules
    }

    /// `sha256:<hex>` of the policy sources and the catalogs they name.
    pub fn hash(&self) -> &str {
        &self.hash
    }

    /// The tool catalogs the set was checked against.
    pub fn catalogs(&self) -> &Catalogs {
        &self.catalogs
    }

    /// The Rego modules that `rego:` references use (name, text), each once.
    pub fn rego_modules(&self) -> Vec<(String, String)> {
        let constraints =
            self.agents.iter().flat_map(|a| a.constraints.iter().filter_map(|c| c.rego.as_ref()));
        let gates = self.agents.iter().flat_map(|a| a.gates.iter()).filter_map(|g| match &g.trigger {
            GateTrigger::Rego(rule) => Some(rule),
            _ => None,
        });
        let mut modules: Vec<(String, String)> = constraints
            .map(|(rule, _)| rule)
            .chain(gates)
            .flat_map(|rule| rule.sources.iter().cloned())
            .collect();
        modules.sort();
        modules.dedup();
        modules
    }
}

/// A compiled `inputSchema` and the `validateArgs` rule that asked for it.
#[derive(Clone, Debug)]
pub(crate) struct SchemaCheck {
    pub validator: Arc<jsonschema::Validator>,
    pub mode: ArgValidation,
    pub rule: RuleId,
}

/// One agent's effective policy: its own rules plus everything inherited.
#[derive(Debug)]
pub(crate) struct CheckedAgent {
    pub name: String,
    pub allow: Vec<ToolRule>,
    pub deny: Vec<ToolRule>,
    pub constraints: Vec<CheckedConstraint>,
    pub gates: Vec<CheckedGate>,
    pub session: SessionLimits,
    pub audit: AuditLevel,
    /// Argument paths redacted in the audit trail (own and inherited).
    pub sensitive_args: Vec<Vec<String>>,
    /// `validateArgs`, the strictest of the lineage.
    pub validation: Option<(ArgValidation, RuleId)>,
    /// The schema check of each catalog tool whose calls are validated.
    pub validators: HashMap<Box<str>, SchemaCheck>,
    /// Lint rules silenced for this agent (its own `lintIgnore` and its file's).
    pub lint_ignore: Vec<String>,
    pub default_deny: RuleId,
}

/// An allow or deny entry.
#[derive(Clone, Debug)]
pub(crate) struct ToolRule {
    pub pattern: ToolPattern,
    pub rule: RuleId,
}

/// A numeric cap and the rule that set it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Limit<T> {
    pub max: T,
    pub rule: RuleId,
}

/// `constraints.<tool>`.
#[derive(Clone, Debug)]
pub(crate) struct CheckedConstraint {
    pub tool: ToolPattern,
    /// Where the constraint's tool key is written.
    pub location: Location,
    pub max_per_session: Option<Limit<u64>>,
    /// `rateLimit`: at most `max` calls per `window_ms`, per agent.
    pub rate_limit: Option<(Limit<u64>, u64)>,
    pub requires_fields: Option<(Vec<String>, RuleId)>,
    pub params: Vec<ParamRule>,
    pub when: Option<(Condition, RuleId)>,
    /// `validateArgs` for the tools this constraint covers.
    pub validation: Option<(ArgValidation, RuleId)>,
    /// `rego`: a Rego rule that must be true.
    pub rego: Option<(Arc<crate::rego::RegoRule>, RuleId)>,
}

/// `params.<arg>`.
#[derive(Clone, Debug)]
pub(crate) struct ParamRule {
    pub name: String,
    pub check: ParamCheck,
    pub rule: RuleId,
}

/// When a gate applies.
#[derive(Clone, Debug)]
pub(crate) enum GateTrigger {
    Always,
    When(Condition),
    /// `rego`: approval is required when the rule is true.
    Rego(Arc<crate::rego::RegoRule>),
    Never,
}

/// `approvalGates.<tool>`.
#[derive(Clone, Debug)]
pub(crate) struct CheckedGate {
    pub tool: ToolPattern,
    pub rule: RuleId,
    pub trigger: GateTrigger,
    pub approver: Option<String>,
    pub ceiling: Option<AmountCeiling>,
}

/// `maxAmount` with the argument it reads.
#[derive(Clone, Debug)]
pub(crate) struct AmountCeiling {
    pub max: f64,
    pub field: String,
    pub rule: RuleId,
}

/// `session`.
#[derive(Clone, Debug, Default)]
pub(crate) struct SessionLimits {
    pub max_tool_calls: Option<Limit<u64>>,
    pub max_cost: Option<Limit<f64>>,
    pub max_consecutive_errors: Option<Limit<u64>>,
}

/// The result of checking: the sources, every diagnostic, and the checked
/// set when there was no error.
#[derive(Debug)]
pub struct Checked {
    /// The policy text, for rendering diagnostics.
    pub sources: SourceMap,
    /// Errors and warnings, in the order found.
    pub diagnostics: Diagnostics,
    /// The checked set, present only without errors.
    pub policy: Option<CheckedPolicySet>,
}

/// Checks a loaded policy set; `reader` reads the catalogs it names.
pub fn check(loaded: Loaded, reader: &dyn FileReader) -> Checked {
    let Loaded { sources, files, mut diagnostics } = loaded;
    let (catalogs, catalog_bytes) = catalog::load(&files, &sources, reader, &mut diagnostics);
    let mut rules = agent::RuleTable::default();
    let decls = inherit::unique_agents(&files, &mut diagnostics);
    let mut rego = rego::RegoModules::new(reader, &sources);
    let own: Vec<agent::OwnRules> =
        decls.iter().map(|d| agent::compile(d, &catalogs, &mut rego, &mut rules, &mut diagnostics)).collect();
    drop(rego);
    check_lint_names(&files, &mut diagnostics);
    let lineages = inherit::resolve(&decls, &mut diagnostics);
    let mut agents: Vec<CheckedAgent> = decls
        .iter()
        .zip(&lineages)
        .map(|(decl, lineage)| agent::effective(decl, lineage, &own, &mut rules))
        .collect();
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
    let policy = (!diagnostics.has_errors()).then(|| CheckedPolicySet {
        agents,
        rules: rules.into_vec(),
        hash: hash_sources(&sources, &catalog_bytes),
        catalogs,
    });
    Checked { sources, diagnostics, policy }
}

/// Every `lintIgnore` entry must name a lint rule.
fn check_lint_names(files: &[crate::ast::PolicyFile], diagnostics: &mut Diagnostics) {
    let agent_lists = files.iter().flat_map(|f| f.agents.iter().map(|a| &a.lint_ignore));
    let lists = files.iter().map(|f| &f.lint_ignore).chain(agent_lists);
    for entry in lists.flatten() {
        if crate::lint::find(&entry.value).is_some() {
            continue;
        }
        let names = crate::lint::RULES.iter().map(|r| r.code.name());
        let mut diagnostic = crate::diagnostic::Diagnostic::new(
            crate::diagnostic::Code::InvalidValue,
            format!("`{}` is not a lint rule", entry.value),
            entry.location,
        )
        .with_help("name a rule by its name or code; `toolgate lint --explain` lists them");
        if let Some(best) = crate::load::suggest(&entry.value, names) {
            diagnostic = diagnostic.with_label(format!("did you mean `{best}`?"));
        }
        diagnostics.push(diagnostic);
    }
}

fn hash_sources(sources: &SourceMap, catalogs: &[Vec<u8>]) -> String {
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
    let digest = hasher.finalize();
    let mut out = String::with_capacity(7 + 64);
    out.push_str("sha256:");
    for byte in digest.iter() {
        out.push_str(&format!("{byte:02x}"));
    }
    out
}
