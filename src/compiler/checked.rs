//! The checked policy set: the compiler's output and the intermediate
//! representation every later stage reads (the decision table, lint, diff,
//! the Rego export). Only the checker builds one, and only without errors.

use super::approvers::Approver;
use super::privacy::Privacy;
use std::collections::HashMap;
use std::sync::Arc;

use super::ast::{ArgValidation, AuditLevel};
use super::catalog::Catalogs;
use super::condition::Condition;
use super::params::ParamCheck;
use super::pattern::ToolPattern;
use super::rego_vm::RegoRule;
use crate::source::Location;

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

/// Every rule of a checked set, indexed by [`RuleId`]: numbered as the
/// checker compiles them.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Rules(Vec<RuleInfo>);

impl Rules {
    /// Adds a rule; returns its id.
    pub(in crate::compiler) fn add(&mut self, id: String, location: Location) -> RuleId {
        self.0.push(RuleInfo { id, location });
        RuleId(u32::try_from(self.0.len() - 1).unwrap_or(u32::MAX))
    }

    /// The rule's stable id (`toolgate.unknownRule` for an id of another set).
    pub fn id(&self, rule: RuleId) -> &str {
        self.0.get(rule.0 as usize).map_or("toolgate.unknownRule", |r| r.id.as_str())
    }

    /// Where the rule is written.
    pub fn location(&self, rule: RuleId) -> Option<Location> {
        self.0.get(rule.0 as usize).map(|r| r.location)
    }

    /// Every rule, in id order.
    pub fn iter(&self) -> impl Iterator<Item = &RuleInfo> {
        self.0.iter()
    }

    /// How many rules there are.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// A policy set with no errors: inheritance resolved, patterns and
/// conditions compiled. Built only by the checker ([`super::check::check`]).
#[derive(Debug)]
pub struct CheckedPolicySet {
    pub(crate) agents: Vec<CheckedAgent>,
    pub(crate) rules: Rules,
    pub(crate) catalogs: Catalogs,
    approvers: Vec<Approver>,
    /// `servers`: each declared server's environment variables.
    pub(crate) servers: std::collections::BTreeMap<String, Vec<String>>,
    hash: String,
}

impl CheckedPolicySet {
    /// A checked set; only the checker calls this, once it found no error.
    pub(in crate::compiler) fn new(
        agents: Vec<CheckedAgent>,
        rules: Rules,
        catalogs: Catalogs,
        approvers: Vec<Approver>,
        servers: std::collections::BTreeMap<String, Vec<String>>,
        hash: String,
    ) -> CheckedPolicySet {
        CheckedPolicySet { agents, rules, catalogs, approvers, servers, hash }
    }

    /// The environment variables a server receives, if the policy scopes it.
    pub fn server_env(&self, server: &str) -> Option<&[String]> {
        self.servers.get(server).map(Vec::as_slice)
    }

    /// The declared approver of this name.
    pub fn approver(&self, name: &str) -> Option<&Approver> {
        self.approvers.iter().find(|a| a.name == name)
    }

    /// Every declared approver.
    pub fn approvers(&self) -> &[Approver] {
        &self.approvers
    }

    /// Each gate's rule id with its `description`, for the gates that have one.
    pub fn gate_descriptions(&self) -> impl Iterator<Item = (&str, &str)> {
        let gates = self.agents.iter().flat_map(|a| &a.gates);
        gates.filter_map(|g| Some((self.rules.id(g.rule), g.description.as_deref()?)))
    }

    /// Each gate's rule id with its `approvals`, for the gates that need
    /// more than one.
    pub fn gate_quorums(&self) -> impl Iterator<Item = (&str, u32)> {
        let gates = self.agents.iter().flat_map(|a| &a.gates);
        gates.filter(|g| g.approvals > 1).map(|g| (self.rules.id(g.rule), g.approvals))
    }

    /// The names of all agents, in source order.
    pub fn agent_names(&self) -> impl Iterator<Item = &str> {
        self.agents.iter().map(|a| a.name.as_str())
    }

    /// Every rule, indexed by [`RuleId`].
    pub fn rules(&self) -> &Rules {
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
    /// `sensitiveArgs` and `auditFields` (own and inherited).
    pub privacy: Privacy,
    /// `validateArgs`, the strictest of the lineage.
    pub validation: Option<(ArgValidation, RuleId)>,
    /// The schema check of each catalog tool whose calls are validated.
    pub validators: HashMap<Box<str>, SchemaCheck>,
    /// `output`: the strictest of the lineage, with the scanner of its
    /// patterns; `None` when nothing in the lineage sets output rules.
    pub output: Option<AgentOutput>,
    /// Lint rules silenced for this agent (its own `lintIgnore` and its file's).
    pub lint_ignore: Vec<String>,
    pub default_deny: RuleId,
}

impl CheckedAgent {
    /// Every tool pattern the agent's lists, constraints and gates name.
    pub fn patterns(&self) -> impl Iterator<Item = &crate::compiler::pattern::ToolPattern> {
        let lists = self.allow.iter().chain(&self.deny).map(|r| &r.pattern);
        lists.chain(self.constraints.iter().map(|c| &c.tool)).chain(self.gates.iter().map(|g| &g.tool))
    }
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
    pub rego: Option<(Arc<RegoRule>, RuleId)>,
    /// `cost`: what one call costs (0 or more), counted towards
    /// `session.maxCost` when a reported outcome gives none.
    pub cost: Option<f64>,
    /// `output`: output rules for these tools, over the agent's.
    pub output: Option<crate::output::OutputRules>,
    /// `timeout`, in milliseconds.
    pub timeout_ms: Option<u64>,
    /// `onFailure`.
    pub on_failure: Option<FailurePolicy>,
    /// `circuitBreaker`, and its rule.
    pub circuit: Option<(Breaker, RuleId)>,
}

/// `circuitBreaker`: `failures` failed calls in a row open the circuit for
/// `cooldown_ms`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Breaker {
    /// Failed calls in a row that open the circuit.
    pub failures: u64,
    /// How long it stays open, in milliseconds.
    pub cooldown_ms: u64,
}

/// What the model is told when a call of a tool fails (`onFailure`).
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FailurePolicy {
    /// How many failed calls in a row the model may retry.
    pub retries: u64,
    /// How long to wait before a retry, in milliseconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_after_ms: Option<u64>,
    /// A tool to try instead, named as the policy names it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fallback: Option<String>,
    /// What to tell the user if nothing recovers.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_message: Option<String>,
}

/// An agent's output rules and the scanner of its built-in rules and
/// patterns (shared by agents with the same patterns).
#[derive(Clone, Debug)]
pub(crate) struct AgentOutput {
    pub rules: crate::output::OutputRules,
    pub scanner: Arc<crate::output::Scanner>,
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
    Rego(Arc<RegoRule>),
    Never,
}

/// `approvalGates.<tool>`.
#[derive(Clone, Debug)]
pub(crate) struct CheckedGate {
    pub tool: ToolPattern,
    pub rule: RuleId,
    pub trigger: GateTrigger,
    pub approver: Option<String>,
    /// `description`: what the gate is for, shown to its approvers.
    pub description: Option<String>,
    /// `approvals`: how many different people must grant its approvals.
    pub approvals: u32,
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
