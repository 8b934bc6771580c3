//! Stage 4: the decision table — a [`CheckedPolicySet`] laid out for lookup.
//!
//! Per agent, every tool name the policy mentions exactly gets a precomputed
//! `ToolPlan` in a hash map; other names go through compiled glob sets.
//! Lookup cost depends on the number of globs, not on the number of tools.

use std::borrow::Cow;

use globset::{GlobBuilder, GlobSet, GlobSetBuilder};

use crate::compiler::approvers::Approver;
use crate::compiler::ast::AuditLevel;
use crate::compiler::catalog::{Catalogs, Hints};
use crate::compiler::checked::{
    CheckedAgent, CheckedConstraint, CheckedGate, CheckedPolicySet, RuleId, Rules, SchemaCheck, ToolRule,
};
use crate::compiler::pattern::{HintTerms, PatternIndex, ToolPattern, satisfied};
use crate::compiler::privacy::Privacy;
use crate::hash::FastMap;
use crate::state::session::Cap;

/// An immutable, compiled policy set.
#[derive(Clone, Debug)]
pub struct DecisionTable {
    pub(crate) agents: FastMap<Box<str>, AgentTable>,
    pub(crate) rules: Rules,
    pub(crate) hash: Box<str>,
    /// The tool catalogs: a name under a catalog's server that the catalog
    /// does not list is refused.
    pub(crate) catalogs: Catalogs,
    /// Who may decide the approvals of gates naming them.
    approvers: Vec<Approver>,
    /// The gates' descriptions, by rule id, shown to approvers.
    gate_descriptions: std::collections::HashMap<Box<str>, Box<str>>,
    /// Gates needing more than one approval, by rule id.
    gate_quorums: std::collections::HashMap<Box<str>, u32>,
    /// Each scoped server's environment variables.
    servers: std::collections::BTreeMap<String, Vec<String>>,
}

/// One agent's part of the table.
#[derive(Clone, Debug)]
pub(crate) struct AgentTable {
    pub exact: FastMap<Box<str>, ToolPlan>,
    /// Every deny entry, matched without regard to ASCII case (see
    /// [`GlobIndex::deny_folded`]).
    pub deny_globs: GlobIndex,
    pub allow_globs: GlobIndex,
    pub constraint_globs: GlobIndex,
    pub gate_globs: GlobIndex,
    pub constraints: Vec<CheckedConstraint>,
    pub gates: Vec<CheckedGate>,
    pub audit: AuditLevel,
    /// `session.maxConsecutiveErrors` and `session.maxCost`, fed by outcomes.
    pub limits: OutcomeLimits,
    /// `sensitiveArgs` and `auditFields`.
    pub privacy: Privacy,
    pub default_deny: RuleId,
    /// The cap counters of `session.maxToolCalls`, shared by every plan.
    pub session_cap: Option<(Cap, RuleId)>,
    /// For an agent whose lists select tools by the annotations a call
    /// carries: every call is planned with them.
    pub annotated: Option<Box<Planner>>,
    /// The agent's output rules and their scanner.
    pub output: Option<crate::compiler::checked::AgentOutput>,
    /// Whether a constraint sets a `timeout` or an `onFailure`.
    pub conditions: bool,
    /// Whether a constraint has a `circuitBreaker`.
    pub breakers: bool,
}

/// The session limits that reported outcomes feed.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct OutcomeLimits {
    pub max_consecutive_errors: Option<crate::compiler::checked::Limit<u64>>,
    pub max_cost: Option<crate::compiler::checked::Limit<f64>>,
}

impl OutcomeLimits {
    pub fn any(&self) -> bool {
        self.max_consecutive_errors.is_some() || self.max_cost.is_some()
    }
}

/// What the policy says about one tool name before looking at arguments.
#[derive(Clone, Debug)]
pub(crate) enum ToolPlan {
    /// A deny entry matches.
    Denied(RuleId),
    /// No allow entry matches.
    NotAllowed,
    /// Allowed, subject to these constraints, gates and caps.
    Allowed {
        allow: RuleId,
        constraints: Box<[u32]>,
        gates: Box<[u32]>,
        caps: Box<[Cap]>,
        cap_rules: Box<[RuleId]>,
        /// `validateArgs`: the tool's compiled `inputSchema`.
        schema: Option<SchemaCheck>,
    },
}

/// Globs with, for each, the index of what it belongs to and, for an
/// annotated selector, the annotations a tool must have.
#[derive(Clone, Debug)]
pub(crate) struct GlobIndex {
    set: GlobSet,
    targets: Vec<(u32, Option<HintTerms>)>,
}

impl GlobIndex {
    fn build<'a>(patterns: impl Iterator<Item = (&'a ToolPattern, u32)>) -> GlobIndex {
        let mut builder = GlobSetBuilder::new();
        let mut targets = Vec::new();
        for (pattern, target) in patterns {
            if let ToolPattern::Glob { matcher, .. } = pattern {
                builder.add(matcher.glob().clone());
                targets.push((target, None));
            }
        }
        // Every glob was already compiled once, so building the set cannot
        // meet a syntax error; an empty set is the safe fallback regardless.
        let set = builder.build().unwrap_or_else(|_| GlobSet::empty());
        GlobIndex { set, targets }
    }

    /// Every deny entry (exact names too), matched without regard to ASCII
    /// case: a deny errs towards denying, so `db/drop_table` also denies
    /// `db/DROP_TABLE`, which a server that ignores case would run as the
    /// same tool.
    fn deny_folded(rules: &[ToolRule]) -> GlobIndex {
        let mut builder = GlobSetBuilder::new();
        let mut targets = Vec::new();
        for rule in rules {
            let (texts, terms): (Vec<String>, _) = match &rule.pattern {
                ToolPattern::Glob { text, .. } => (vec![text.to_string()], None),
                ToolPattern::Annotated { matcher, terms, .. } => {
                    (vec![matcher.glob().glob().to_owned()], Some(terms.clone()))
                }
                other => (other.names().iter().map(|name| globset::escape(name)).collect(), None),
            };
            for text in texts {
                let glob = GlobBuilder::new(&text)
                    .literal_separator(true)
                    .backslash_escape(true)
                    .case_insensitive(true)
                    .build();
                // Every pattern compiled once already; should one not,
                // the plans (which check denies exactly) still hold it.
                if let Ok(glob) = glob {
                    builder.add(glob);
                    targets.push((rule.rule.0, terms.clone()));
                }
            }
        }
        let set = builder.build().unwrap_or_else(|_| GlobSet::empty());
        GlobIndex { set, targets }
    }

    fn is_empty(&self) -> bool {
        self.targets.is_empty()
    }

    /// The first entry that matches a tool with these annotations
    /// (`None`: annotated selectors left out).
    fn first(&self, tool: &str, hints: Option<Hints>) -> Option<u32> {
        if self.is_empty() {
            return None;
        }
        self.set.matches(tool).into_iter().find_map(|i| self.target(i, hints))
    }

    fn all(&self, tool: &str) -> Vec<u32> {
        if self.is_empty() {
            return Vec::new();
        }
        let mut hits: Vec<u32> =
            self.set.matches(tool).into_iter().filter_map(|i| self.target(i, None)).collect();
        hits.sort_unstable();
        hits
    }

    fn target(&self, index: usize, hints: Option<Hints>) -> Option<u32> {
        match self.targets.get(index)? {
            (target, None) => Some(*target),
            (target, Some(terms)) => hints.filter(|&h| satisfied(terms, h)).map(|_| *target),
        }
    }
}

impl DecisionTable {
    /// Lays out a checked policy set for lookup.
    pub fn build(policy: CheckedPolicySet) -> DecisionTable {
        let hash = policy.hash().into();
        let gate_descriptions =
            policy.gate_descriptions().map(|(rule, text)| (rule.into(), text.into())).collect();
        let approvers = policy.approvers().to_vec();
        let gate_quorums = policy.gate_quorums().map(|(rule, n)| (rule.into(), n)).collect();
        let CheckedPolicySet { agents, rules, catalogs, servers, .. } = policy;
        let agents = agents
            .into_iter()
            .map(|agent| (agent.name.as_str().into(), AgentTable::build(agent, &rules, &catalogs)))
            .collect();
        DecisionTable { agents, rules, hash, catalogs, approvers, gate_descriptions, gate_quorums, servers }
    }

    /// Whether the policy names the agent `name`.
    pub fn knows_agent(&self, name: &str) -> bool {
        self.agents.contains_key(name)
    }

    /// The declared approver of this name.
    pub fn approver(&self, name: &str) -> Option<&Approver> {
        self.approvers.iter().find(|a| a.name == name)
    }

    /// Whether the policy's catalog for a server says `onDrift: deny`.
    pub fn denies_drift(&self, server: Option<&str>) -> bool {
        self.catalogs.denies_drift(server)
    }

    /// How a server's live tools differ from the policy's catalog for it;
    /// `None` when no catalog describes the server.
    pub fn drift(
        &self,
        server: Option<&str>,
        live: &[crate::compiler::catalog::CatalogTool],
    ) -> Option<crate::compiler::catalog::Drift> {
        self.catalogs.drift(server, live)
    }

    /// The environment variables a server receives (`servers.<name>.env`);
    /// `None` when the policy does not scope it.
    pub fn server_env(&self, server: &str) -> Option<&[String]> {
        self.servers.get(server).map(Vec::as_slice)
    }

    /// Every scoped server with its environment variables.
    pub fn servers(&self) -> &std::collections::BTreeMap<String, Vec<String>> {
        &self.servers
    }

    /// Every declared approver.
    pub fn approvers(&self) -> &[Approver] {
        &self.approvers
    }

    /// The `description` of the gate whose rule id is `rule`, if it has one.
    pub fn gate_description(&self, rule: &str) -> Option<&str> {
        self.gate_descriptions.get(rule).map(|text| &**text)
    }

    /// How many different people must grant the approvals of the gate with
    /// this rule id (its `approvals`; 1 by default).
    pub fn gate_quorum(&self, rule: &str) -> u32 {
        self.gate_quorums.get(rule).copied().unwrap_or(1)
    }

    /// Whether a catalog covers the tool's server but does not list it.
    pub(crate) fn uncatalogued(&self, tool: &str) -> bool {
        !self.catalogs.is_empty() && self.catalogs.covers(tool) && self.catalogs.get(tool).is_none()
    }

    /// The stable id of a rule.
    pub(crate) fn rule_id(&self, rule: RuleId) -> &str {
        self.rules.id(rule)
    }

    /// `sha256:<hex>` of the policy sources.
    pub fn hash(&self) -> &str {
        &self.hash
    }

    /// Every rule, indexed by rule id.
    pub fn rules(&self) -> &Rules {
        &self.rules
    }
}

impl AgentTable {
    fn build(agent: CheckedAgent, rules: &Rules, catalogs: &Catalogs) -> AgentTable {
        let id = |rule: RuleId| rules.id(rule);
        let session_cap =
            agent.session.max_tool_calls.map(|limit| (Cap::count(id(limit.rule), limit.max), limit.rule));
        let planner = Planner::new(&agent);
        let mut table = AgentTable {
            exact: FastMap::default(),
            deny_globs: GlobIndex::deny_folded(&agent.deny),
            allow_globs: index(&agent.allow),
            constraint_globs: GlobIndex::build(agent.constraints.iter().zip(0..).map(|(c, i)| (&c.tool, i))),
            gate_globs: GlobIndex::build(agent.gates.iter().zip(0..).map(|(g, i)| (&g.tool, i))),
            audit: agent.audit,
            privacy: agent.privacy.clone(),
            limits: OutcomeLimits {
                max_consecutive_errors: agent.session.max_consecutive_errors,
                max_cost: agent.session.max_cost,
            },
            default_deny: agent.default_deny,
            session_cap,
            constraints: Vec::new(),
            gates: Vec::new(),
            annotated: None,
            output: agent.output.clone(),
            conditions: agent.constraints.iter().any(|c| c.timeout_ms.is_some() || c.on_failure.is_some()),
            breakers: agent.constraints.iter().any(|c| c.circuit.is_some()),
        };
        // Every name the policy writes out, and every catalog tool the
        // agent's lists match, gets its plan now rather than per call.
        let named = agent.patterns().flat_map(|p| p.names().iter().map(|n| &**n));
        let listed = catalogs.tools().map(|t| t.name.as_str());
        let indexes = &planner.indexes;
        let listed = listed.filter(|name| indexes.allow.any(name) || indexes.deny.any(name));
        for name in named.chain(listed) {
            if !table.exact.contains_key(name) {
                let plan = planner.plan(name, None, &agent.constraints, &table.session_cap, rules);
                table.exact.insert(name.into(), plan);
            }
        }
        if planner.annotated() {
            table.annotated = Some(Box::new(planner));
        }
        table.constraints = agent.constraints;
        table.gates = agent.gates;
        table
    }

    /// The plan for a tool name; `hints` are the annotations the call
    /// carries (`None`: it carries none, and the MCP defaults apply).
    pub fn plan(&self, tool: &str, hints: Option<Hints>, rules: &Rules) -> Cow<'_, ToolPlan> {
        if let Some(planner) = &self.annotated {
            let hints = hints.unwrap_or_else(Hints::unannotated);
            return Cow::Owned(planner.plan(tool, Some(hints), &self.constraints, &self.session_cap, rules));
        }
        match self.exact.get(tool) {
            Some(plan) => Cow::Borrowed(plan),
            None => self.plan_by_globs(tool, rules),
        }
    }

    /// The plan for a tool name the exact map does not hold.
    pub fn plan_by_globs(&self, tool: &str, rules: &Rules) -> Cow<'_, ToolPlan> {
        // Exact names are all in the map, so only globs can match here.
        if let Some(rule) = self.deny_globs.first(tool, None) {
            return Cow::Owned(ToolPlan::Denied(RuleId(rule)));
        }
        let Some(allow) = self.allow_globs.first(tool, None) else {
            return Cow::Owned(ToolPlan::NotAllowed);
        };
        let constraints = self.constraint_globs.all(tool);
        let gates = self.gate_globs.all(tool);
        let (caps, cap_rules) = caps_of(
            constraints.iter().filter_map(|&i| self.constraints.get(i as usize)),
            &self.session_cap,
            rules,
        );
        Cow::Owned(ToolPlan::Allowed {
            allow: RuleId(allow),
            constraints: constraints.into(),
            gates: gates.into(),
            caps,
            cap_rules,
            schema: None,
        })
    }
}

fn index(rules: &[ToolRule]) -> GlobIndex {
    GlobIndex::build(rules.iter().map(|r| (&r.pattern, r.rule.0)))
}

/// Whether case can matter between a tool name and the deny entries.
fn any_upper(text: &str) -> bool {
    text.bytes().any(|b| b.is_ascii_uppercase())
}

/// An agent's lists indexed by tool name, for planning many names.
#[derive(Clone, Debug)]
struct Indexes {
    allow: PatternIndex,
    deny: PatternIndex,
    /// The deny entries without regard to case, and whether any of them
    /// has an upper-case letter.
    deny_folded: (GlobIndex, bool),
    constraints: PatternIndex,
    gates: PatternIndex,
}

impl Indexes {
    fn new(agent: &CheckedAgent) -> Indexes {
        Indexes {
            allow: PatternIndex::new(agent.allow.iter().map(|r| &r.pattern)),
            deny: PatternIndex::new(agent.deny.iter().map(|r| &r.pattern)),
            deny_folded: (
                GlobIndex::deny_folded(&agent.deny),
                agent.deny.iter().any(|r| any_upper(r.pattern.text())),
            ),
            constraints: PatternIndex::new(agent.constraints.iter().map(|c| &c.tool)),
            gates: PatternIndex::new(agent.gates.iter().map(|g| &g.tool)),
        }
    }
}

/// Plans tool names from an agent's lists: at build time for the names
/// the policy knows, and per call for an agent with annotated selectors.
#[derive(Clone, Debug)]
pub(crate) struct Planner {
    indexes: Indexes,
    allow: Box<[RuleId]>,
    deny: Box<[RuleId]>,
    validators: std::collections::HashMap<Box<str>, SchemaCheck>,
}

impl Planner {
    fn new(agent: &CheckedAgent) -> Planner {
        Planner {
            indexes: Indexes::new(agent),
            allow: agent.allow.iter().map(|r| r.rule).collect(),
            deny: agent.deny.iter().map(|r| r.rule).collect(),
            validators: agent.validators.clone(),
        }
    }

    /// Whether any list selects tools by their annotations.
    fn annotated(&self) -> bool {
        let i = &self.indexes;
        [&i.allow, &i.deny, &i.constraints, &i.gates].iter().any(|index| index.has_annotated())
    }

    /// The plan of one tool name with these annotations (`None`:
    /// annotated selectors left out): the first deny, else the first allow
    /// with every constraint and gate that applies, in list order.
    fn plan(
        &self,
        tool: &str,
        hints: Option<Hints>,
        constraints: &[CheckedConstraint],
        session_cap: &Option<(Cap, RuleId)>,
        rules: &Rules,
    ) -> ToolPlan {
        let indexes = &self.indexes;
        if let Some(deny) = indexes.deny.first_annotated(tool, hints).and_then(|i| self.deny.get(i as usize))
        {
            return ToolPlan::Denied(*deny);
        }
        // Only names or entries with capitals can differ by case alone.
        let (folded, upper_entries) = &indexes.deny_folded;
        if (*upper_entries || any_upper(tool))
            && let Some(rule) = folded.first(tool, hints)
        {
            return ToolPlan::Denied(RuleId(rule));
        }
        let Some(allow) = indexes.allow.first_annotated(tool, hints).and_then(|i| self.allow.get(i as usize))
        else {
            return ToolPlan::NotAllowed;
        };
        let matching = indexes.constraints.matching_annotated(tool, hints);
        let gates: Box<[u32]> = indexes.gates.matching_annotated(tool, hints).into();
        let (caps, cap_rules) =
            caps_of(matching.iter().filter_map(|&i| constraints.get(i as usize)), session_cap, rules);
        let schema = self.validators.get(tool).cloned();
        ToolPlan::Allowed { allow: *allow, constraints: matching.into(), gates, caps, cap_rules, schema }
    }
}

/// The caps a call must fit: each constraint's `maxPerSession`, then
/// `session.maxToolCalls`; with the rules that set them, in the same order.
fn caps_of<'a>(
    constraints: impl Iterator<Item = &'a CheckedConstraint>,
    session_cap: &Option<(Cap, RuleId)>,
    rules: &Rules,
) -> (Box<[Cap]>, Box<[RuleId]>) {
    let id = |rule: RuleId| -> Box<str> { rules.id(rule).into() };
    constraints
        .flat_map(|c| {
            let count = c.max_per_session.map(|limit| (Cap::count(id(limit.rule), limit.max), limit.rule));
            let rate = c.rate_limit.map(|(limit, window_ms)| {
                (Cap { counter: id(limit.rule), limit: limit.max, window_ms: Some(window_ms) }, limit.rule)
            });
            count.into_iter().chain(rate)
        })
        .chain(session_cap.clone())
        .unzip::<Cap, RuleId, Vec<Cap>, Vec<RuleId>>()
        .into_boxed()
}

trait IntoBoxed<A, B> {
    fn into_boxed(self) -> (Box<[A]>, Box<[B]>);
}

impl<A, B> IntoBoxed<A, B> for (Vec<A>, Vec<B>) {
    fn into_boxed(self) -> (Box<[A]>, Box<[B]>) {
        (self.0.into_boxed_slice(), self.1.into_boxed_slice())
    }
}
