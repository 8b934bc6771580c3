//! Stage 5: the engine. Answers a [`Request`] with a [`Decision`].
//!
//! Order of evaluation (every step fails closed):
//!
//! 0. a kill of everything, the agent, or the session → deny;
//! 1. unknown agent → deny;
//! 2. a tool its server's catalog does not list, a `deniedTools` match, or
//!    no `allowedTools` match → deny;
//! 3. arguments that break the tool's `inputSchema` (`validateArgs`) → deny;
//! 4. a constraint fails (required field, `params`, `when`, `rego`) → deny;
//! 5. an amount ceiling is broken → deny; an approval gate applies →
//!    require approval, unless the request carries a granted approval for
//!    exactly this call;
//! 6. reported outcomes reached `maxConsecutiveErrors` or `maxCost` → deny;
//! 7. a cap or rate limit is reached → deny;
//! 8. otherwise allow. Caps count allowed calls only.
//!
//! The phases are in `decide.rs`; every way a decision ends is a
//! [`Decision`] constructor.

mod decide;
mod decision;
mod request;
pub mod table;

pub use decision::{Decision, Outcome, Reason, ReasonCode};
pub use request::Request;

use std::sync::Arc;

use crate::compiler::catalog::Hints;
use crate::compiler::checked::CheckedPolicySet;
use crate::state::State;
use crate::state::kill::{Kill, KillScope};
use crate::state::session::{CallOutcome, OutcomeTotals, SessionKey};
use table::{DecisionTable, ToolPlan};

/// What an allowed call runs under besides output rules (`timeout`,
/// `onFailure`).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CallConditions {
    /// How long the call may run, in milliseconds.
    pub timeout_ms: Option<u64>,
    /// What the model is told when it fails.
    pub on_failure: Option<crate::compiler::checked::FailurePolicy>,
}

/// The rule id of decisions about agents no policy names.
pub const UNKNOWN_AGENT_RULE: &str = "toolgate.unknownAgent";
/// The rule id of denials of capped agents' requests without a session.
pub const NO_SESSION_RULE: &str = "toolgate.noSession";
/// The rule id of denials of calls carrying an unusable approval.
pub const APPROVAL_RULE: &str = "toolgate.approval";
/// The rule id of denials by the kill switch.
pub const KILL_RULE: &str = "toolgate.killSwitch";
/// The rule of a denial because the tool drifted from its catalog (`onDrift: deny`).
pub const DRIFT_RULE: &str = "toolgate.toolDrift";
/// The rule id of denials because session state could not be read or written.
pub const STATE_RULE: &str = "toolgate.stateUnavailable";
/// The rule id of denials of a session the state store has no room for.
pub const SESSION_LIMIT_RULE: &str = "toolgate.sessionLimit";
/// The rule id of denials because state did not answer within the deadline.
pub const TIMEOUT_RULE: &str = "toolgate.decisionTimeout";
/// The rule id of denials caused by an inconsistent table.
pub const INTERNAL_RULE: &str = "toolgate.internal";
/// The rule id of denials of tool names that break the rules for names.
pub const INVALID_NAME_RULE: &str = "toolgate.invalidName";
/// The rule id of denials of tools their server's catalog does not list.
pub const UNKNOWN_TOOL_RULE: &str = "toolgate.unknownTool";

/// What recording an outcome did.
#[derive(Clone, Debug, PartialEq)]
pub struct OutcomeReport {
    /// The session's totals after it.
    pub totals: OutcomeTotals,
    /// Whether a limit tripped and the session was killed.
    pub killed: bool,
    /// The tripped limit's rule id and the kill's reason.
    pub trip: Option<(String, String)>,
}

/// Why an outcome could not be recorded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutcomeError {
    /// No policy for the agent.
    UnknownAgent,
    /// The session store could not be written.
    StateUnavailable,
}

/// A compiled policy set and the state its decisions read and write.
/// `Send + Sync`; share it behind an `Arc`.
pub struct Engine {
    table: Arc<DecisionTable>,
    state: State,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine").field("policy", &self.table.hash()).finish_non_exhaustive()
    }
}

impl Engine {
    /// An engine deciding `policy` on `state`.
    pub fn new(policy: CheckedPolicySet, state: State) -> Engine {
        Engine::with_table(Arc::new(DecisionTable::build(policy)), state)
    }

    /// An engine deciding an already built table on `state` (e.g. the
    /// table of another engine, on fresh state).
    pub fn with_table(table: Arc<DecisionTable>, state: State) -> Engine {
        Engine { table, state }
    }

    /// The state decisions read and write.
    pub fn state(&self) -> &State {
        &self.state
    }

    /// The `allowedTools` entry through which a call of `tool` by `agent`
    /// passes, if any (before constraints and gates): what a test exercised
    /// even when a gate decided.
    pub fn allow_rule(&self, request: &Request) -> Option<&str> {
        let table = self.table.agents.get(request.agent.as_str())?;
        match &*table.plan(&request.tool, request.annotations, &self.table.rules) {
            ToolPlan::Allowed { allow, .. } => Some(self.table.rule_id(*allow)),
            _ => None,
        }
    }

    /// Whether `agent` may ever call `tool`: its plan allows the tool,
    /// before arguments, gates, caps and kills. A proxy hides the tools for
    /// which this is false; every call is decided all the same. `hints`
    /// are the tool's annotations as its server lists them, if known.
    pub fn may_call(&self, agent: &str, tool: &str, hints: Option<Hints>) -> bool {
        let Some(table) = self.table.agents.get(agent) else { return false };
        if !table.exact.contains_key(tool)
            && (crate::compiler::names::name_problem(crate::compiler::names::Name::Tool, tool).is_some()
                || self.table.uncatalogued(tool))
        {
            return false;
        }
        matches!(&*table.plan(tool, hints, &self.table.rules), ToolPlan::Allowed { .. })
    }

    /// What one call of `tool` by `agent` costs by the policy: the largest
    /// `cost` of the constraints that apply to the tool; `None` if none
    /// declares one (or the agent may not call the tool).
    pub fn call_cost(&self, agent: &str, tool: &str) -> Option<f64> {
        let table = self.table.agents.get(agent)?;
        let plan = table.plan(tool, None, &self.table.rules);
        let ToolPlan::Allowed { constraints, .. } = &*plan else { return None };
        constraints.iter().filter_map(|&index| table.constraints.get(index as usize)?.cost).reduce(f64::max)
    }

    /// The output rules for a result of `tool` called by `agent`, with the
    /// scanner to apply them with: the agent's, with those of the
    /// constraints on the tool over them (the strictest of those);
    /// `None` when no output rule applies.
    pub fn output_rules(
        &self,
        agent: &str,
        tool: &str,
    ) -> Option<(Arc<crate::output::Scanner>, crate::output::OutputRules)> {
        let table = self.table.agents.get(agent)?;
        let output = table.output.as_ref()?;
        let plan = table.plan(tool, None, &self.table.rules);
        let ToolPlan::Allowed { constraints, .. } = &*plan else { return None };
        let on_tool = constraints
            .iter()
            .filter_map(|&index| table.constraints.get(index as usize)?.output.as_ref())
            .fold(None, |acc: Option<crate::output::OutputRules>, rules| {
                Some(acc.map_or_else(|| rules.clone(), |acc| acc.strictest(rules)))
            });
        let rules = match on_tool {
            Some(on_tool) => output.rules.clone().overridden_by(&on_tool),
            None => output.rules.clone(),
        };
        rules.applies().then(|| (output.scanner.clone(), rules))
    }

    /// Records a call's result with the circuit breakers of the tool's
    /// constraints; returns the rules of the circuits this failure opened.
    pub fn record_call_result(&self, agent: &str, tool: &str, failed: bool) -> Vec<String> {
        let Some(table) = self.table.agents.get(agent) else { return Vec::new() };
        if !table.breakers {
            return Vec::new();
        }
        let plan = table.plan(tool, None, &self.table.rules);
        let ToolPlan::Allowed { constraints, .. } = &*plan else { return Vec::new() };
        let now = self.state.clock.now_ms();
        constraints
            .iter()
            .filter_map(|&index| table.constraints.get(index as usize)?.circuit)
            .filter_map(|(breaker, rule)| {
                let rule = self.table.rule_id(rule);
                let opened = self.state.breakers.record(
                    agent,
                    rule,
                    failed,
                    breaker.failures,
                    breaker.cooldown_ms,
                    now,
                );
                opened.then(|| rule.to_owned())
            })
            .collect()
    }

    /// The agent's own output rules (no tool's over them), for text that
    /// reaches the model other than a tool result; `None` when none apply.
    pub fn agent_output_rules(
        &self,
        agent: &str,
    ) -> Option<(Arc<crate::output::Scanner>, crate::output::OutputRules)> {
        let output = self.table.agents.get(agent)?.output.as_ref()?;
        output.rules.applies().then(|| (output.scanner.clone(), output.rules.clone()))
    }

    /// The conditions an allowed call of `tool` by `agent` runs under: the
    /// shortest `timeout` of the constraints on the tool, and the first
    /// `onFailure` in list order.
    pub fn call_conditions(&self, agent: &str, tool: &str) -> CallConditions {
        let mut conditions = CallConditions::default();
        let Some(table) = self.table.agents.get(agent).filter(|t| t.conditions) else { return conditions };
        let plan = table.plan(tool, None, &self.table.rules);
        let ToolPlan::Allowed { constraints, .. } = &*plan else { return conditions };
        for constraint in constraints.iter().filter_map(|&index| table.constraints.get(index as usize)) {
            if let Some(ms) = constraint.timeout_ms {
                conditions.timeout_ms = Some(conditions.timeout_ms.map_or(ms, |known| known.min(ms)));
            }
            if conditions.on_failure.is_none() {
                conditions.on_failure.clone_from(&constraint.on_failure);
            }
        }
        conditions
    }

    /// `sha256:<hex>` of the policy sources.
    pub fn policy_hash(&self) -> &str {
        self.table.hash()
    }

    /// The compiled table.
    pub fn table(&self) -> &Arc<DecisionTable> {
        &self.table
    }

    /// Records a call's reported outcome for the agent's session. When the
    /// session's error streak reaches `maxConsecutiveErrors`, or its cost
    /// reaches `maxCost`, the session is killed (and the report says so).
    pub fn record_outcome(
        &self,
        agent: &str,
        session: &str,
        outcome: CallOutcome,
    ) -> Result<OutcomeReport, OutcomeError> {
        self.apply_outcome(agent, session, outcome, true)
    }

    /// Ends a session's error streak without judging its limits (for an
    /// operator reviving the session); its cost is unchanged.
    pub fn clear_error_streak(&self, agent: &str, session: &str) -> Result<OutcomeTotals, OutcomeError> {
        let ok = CallOutcome { error: false, cost_micros: 0 };
        self.apply_outcome(agent, session, ok, false).map(|report| report.totals)
    }

    fn apply_outcome(
        &self,
        agent: &str,
        session: &str,
        outcome: CallOutcome,
        judge: bool,
    ) -> Result<OutcomeReport, OutcomeError> {
        let table = self.table.agents.get(agent).ok_or(OutcomeError::UnknownAgent)?;
        let key = SessionKey { agent, session };
        let totals =
            self.state.sessions.record_outcome(key, outcome).ok_or(OutcomeError::StateUnavailable)?;
        let limits = table.limits;
        let cost = totals.cost_micros as f64 / 1e6;
        let tripped = match (limits.max_consecutive_errors, limits.max_cost) {
            _ if !judge => None,
            (Some(limit), _) if totals.consecutive_errors >= limit.max => Some((
                self.table.rule_id(limit.rule).to_owned(),
                format!(
                    "{} tool calls in a row failed (maxConsecutiveErrors is {})",
                    totals.consecutive_errors, limit.max
                ),
            )),
            (_, Some(ceiling)) if cost >= ceiling.max => Some((
                self.table.rule_id(ceiling.rule).to_owned(),
                format!("the session's cost reached {cost} (maxCost is {})", ceiling.max),
            )),
            _ => None,
        };
        let killed = match &tripped {
            Some((rule, reason)) => {
                let scope = KillScope::Session { agent: agent.to_owned(), session: session.to_owned() };
                let at = self.state.clock.rfc3339_seconds();
                let kill = Kill { reason: reason.clone(), by: format!("toolgate ({rule})"), at };
                // In force even if saving fails (the kill switch errs towards denying).
                if let Err(error) = self.state.kills.kill(scope, kill) {
                    tracing::error!(%error, "the automatic kill could not be saved; it is in force until restart");
                }
                true
            }
            None => false,
        };
        Ok(OutcomeReport { totals, killed, trip: tripped })
    }

    /// Decides one request. Never panics; any inconsistency denies.
    pub fn decide<'e>(&'e self, request: &'e Request) -> Decision<'e> {
        let table: &DecisionTable = &self.table;
        let agent = table.agents.get(request.agent.as_str());
        if !self.state.kills.is_empty()
            && let Some(kill) = self.state.kills.check(&request.agent, request.session.as_deref())
        {
            let killed = Decision::deny_outright(KILL_RULE, Reason::Killed(kill));
            return match agent {
                Some(agent) => killed.redacted_for(agent),
                None => killed,
            };
        }
        let Some(agent) = agent else {
            return Decision::deny_outright(UNKNOWN_AGENT_RULE, Reason::UnknownAgent(&request.agent));
        };
        if !self.state.drifted.is_empty() && self.state.drifted.contains(table.hash(), &request.tool) {
            return Decision::deny_outright(DRIFT_RULE, Reason::ToolDrift).redacted_for(agent);
        }
        decide::Decider { table, state: &self.state, agent, request }.decide()
    }
}
