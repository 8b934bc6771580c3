//! Stage 5: the engine. Answers a [`Request`] with a [`Decision`].
//!
//! Order of evaluation (every step fails closed):
//!
//! 0. a kill of everything, the agent, or the session → deny;
//! 1. unknown agent → deny;
//! 2. a `deniedTools` match → deny;
//! 3. no `allowedTools` match → deny;
//! 4. a constraint fails (required field, `params`, `when`, amount ceiling,
//!    cap) → deny;
//! 5. an approval gate applies → require approval;
//! 6. otherwise allow. Caps count allowed calls only.

mod decision;
mod request;
pub mod table;

pub use decision::{Decision, Outcome, Reason};
pub use request::Request;

use std::sync::Arc;

use crate::compiler::ast::AuditLevel;
use crate::compiler::checked::{CheckedPolicySet, GateTrigger, RuleId};
use crate::compiler::condition::{Scope, SessionView};
use crate::state::State;
use crate::state::approval::Binding;
use crate::state::kill::{Kill, KillScope};
use crate::state::session::{Admission, CallOutcome, Counter, OutcomeTotals, SessionKey, SessionStore};
use table::{AgentTable, DecisionTable, ToolPlan};

/// The rule id of decisions about agents no policy names.
pub const UNKNOWN_AGENT_RULE: &str = "toolgate.unknownAgent";
/// The rule id of denials of capped agents' requests without a session.
pub const NO_SESSION_RULE: &str = "toolgate.noSession";
/// The rule id of denials of calls carrying an unusable approval.
pub const APPROVAL_RULE: &str = "toolgate.approval";
/// The rule id of denials by the kill switch.
pub const KILL_RULE: &str = "toolgate.killSwitch";
/// The rule id of denials because session state could not be read or written.
pub const STATE_RULE: &str = "toolgate.stateUnavailable";
/// The rule id of denials caused by an inconsistent table.
pub const INTERNAL_RULE: &str = "toolgate.internal";
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
    pub fn allow_rule(&self, agent: &str, tool: &str) -> Option<&str> {
        let table = self.table.agents.get(agent)?;
        match &*table.plan(tool, &self.table.rules) {
            ToolPlan::Allowed { allow, .. } => Some(self.table.rule_id(*allow)),
            _ => None,
        }
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
        if !self.state.kills.is_empty()
            && let Some(kill) = self.state.kills.check(&request.agent, request.session.as_deref())
        {
            return Decision {
                outcome: Outcome::Deny,
                rule: KILL_RULE,
                reason: Reason::Killed(kill),
                approver: None,
                audit: AuditLevel::Full,
                sensitive_args: &[],
            };
        }
        let Some(agent) = self.table.agents.get(request.agent.as_str()) else {
            return Decision {
                outcome: Outcome::Deny,
                rule: UNKNOWN_AGENT_RULE,
                reason: Reason::UnknownAgent(&request.agent),
                approver: None,
                audit: AuditLevel::Full,
                sensitive_args: &[],
            };
        };
        let decider = Decider { engine: self, agent, request };
        decider.decide()
    }
}

struct Decider<'e> {
    engine: &'e Engine,
    agent: &'e AgentTable,
    request: &'e Request,
}

/// Session counters as conditions see them.
struct CounterView<'e> {
    store: &'e dyn SessionStore,
    key: Option<SessionKey<'e>>,
}

impl SessionView for CounterView<'_> {
    fn calls(&self) -> Option<u64> {
        self.key.and_then(|key| self.store.count(key, Counter::Total))
    }

    fn calls_of(&self, tool: &str) -> Option<u64> {
        self.key.and_then(|key| self.store.count(key, Counter::Tool(tool)))
    }
}

impl<'e> Decider<'e> {
    fn rule(&self, rule: RuleId) -> &'e str {
        self.engine.table.rule_id(rule)
    }

    fn answer(&self, outcome: Outcome, rule: RuleId, reason: Reason<'e>) -> Decision<'e> {
        Decision {
            outcome,
            rule: self.rule(rule),
            reason,
            approver: None,
            audit: self.agent.audit,
            sensitive_args: &self.agent.sensitive_args,
        }
    }

    fn deny(&self, rule: RuleId, reason: Reason<'e>) -> Decision<'e> {
        self.answer(Outcome::Deny, rule, reason)
    }

    fn internal(&self) -> Decision<'e> {
        Decision {
            outcome: Outcome::Deny,
            rule: INTERNAL_RULE,
            reason: Reason::Internal,
            approver: None,
            audit: AuditLevel::Full,
            sensitive_args: &[],
        }
    }

    /// The call as an approval is bound to it.
    fn binding(&self) -> Binding {
        self.request.binding(self.engine.table.hash())
    }

    /// `validateArgs`: the arguments must satisfy the tool's `inputSchema`.
    fn check_schema(&self, check: &crate::compiler::checked::SchemaCheck) -> Option<Decision<'e>> {
        // The validator takes a JSON value; arguments arrive as a map.
        let args = serde_json::Value::Object(self.request.args.clone());
        let error = check.validator.iter_errors(&args).next()?;
        let reason =
            Reason::SchemaViolation { path: error.instance_path().to_string(), message: error.to_string() };
        Some(self.deny(check.rule, reason))
    }

    fn state_unavailable(&self) -> Decision<'e> {
        Decision {
            outcome: Outcome::Deny,
            rule: STATE_RULE,
            reason: Reason::StateUnavailable,
            approver: None,
            audit: AuditLevel::Full,
            sensitive_args: &[],
        }
    }

    fn decide(&self) -> Decision<'e> {
        let request = self.request;
        let plan = match self.agent.exact.get(request.tool.as_str()) {
            Some(plan) => std::borrow::Cow::Borrowed(plan),
            None if self.engine.table.uncatalogued(&request.tool) => {
                return Decision {
                    outcome: Outcome::Deny,
                    rule: UNKNOWN_TOOL_RULE,
                    reason: Reason::UnknownTool,
                    approver: None,
                    audit: self.agent.audit,
                    sensitive_args: &self.agent.sensitive_args,
                };
            }
            None => self.agent.plan_by_globs(&request.tool, &self.engine.table.rules),
        };
        let (allow, constraints, gates, caps, cap_rules) = match &*plan {
            ToolPlan::Denied(rule) => {
                let pattern = self.engine.table.rules.get(rule.0 as usize).map_or("", |r| pattern_of(&r.id));
                return self.deny(*rule, Reason::Denied { pattern });
            }
            ToolPlan::NotAllowed => return self.deny(self.agent.default_deny, Reason::NotAllowed),
            ToolPlan::Allowed { allow, constraints, gates, caps, cap_rules, schema } => {
                if let Some(check) = schema
                    && let Some(denial) = self.check_schema(check)
                {
                    return denial;
                }
                (*allow, constraints, gates, caps, cap_rules)
            }
        };
        let key = request.session.as_deref().map(|session| SessionKey { agent: &request.agent, session });
        let view = CounterView { store: self.engine.state.sessions.as_ref(), key };
        let scope = Scope {
            agent: &request.agent,
            tool: &request.tool,
            args: &request.args,
            principal: request.principal.as_ref(),
            context: request.context.as_ref(),
            session: &view,
        };
        for &index in constraints.iter() {
            let Some(constraint) = self.agent.constraints.get(index as usize) else {
                return self.internal();
            };
            if let Some(denial) = self.check_constraint(constraint, &scope) {
                return denial;
            }
        }
        let mut gate_decision = None;
        let mut approved = None;
        for &index in gates.iter() {
            let Some(gate) = self.agent.gates.get(index as usize) else {
                return self.internal();
            };
            if let Some(ceiling) = &gate.ceiling {
                match request.args.get(&ceiling.field).and_then(serde_json::Value::as_f64) {
                    None => {
                        return self.deny(ceiling.rule, Reason::AmountUnreadable { field: &ceiling.field });
                    }
                    Some(amount) if amount > ceiling.max => {
                        return self.deny(
                            ceiling.rule,
                            Reason::AmountAboveCeiling { field: &ceiling.field, max: ceiling.max },
                        );
                    }
                    Some(_) => {}
                }
            }
            if gate_decision.is_some() || approved.is_some() {
                continue;
            }
            let reason = match &gate.trigger {
                GateTrigger::Always => Some(Reason::ApprovalRequired),
                GateTrigger::When(condition) => match condition.eval(&scope) {
                    Ok(true) => Some(Reason::ApprovalConditionHolds),
                    Ok(false) => None,
                    Err(error) => Some(Reason::ApprovalConditionFailed(error)),
                },
                GateTrigger::Rego(rule) => match rule.eval(&request.rego_input()) {
                    Ok(true) => Some(Reason::ApprovalRegoHolds { rule: &rule.entry }),
                    Ok(false) => None,
                    Err(error) => Some(Reason::ApprovalRegoFailed { rule: &rule.entry, error }),
                },
                GateTrigger::Never => None,
            };
            if let Some(reason) = reason {
                if let Some(id) = &request.approval {
                    // A granted approval for exactly this call satisfies the
                    // gate, once; anything else about it denies.
                    match self.engine.state.approvals.redeem(id, &self.binding()) {
                        Ok(()) => {
                            // Later gates' ceilings are still checked.
                            approved = Some(gate.rule);
                            continue;
                        }
                        Err(error) => {
                            return Decision {
                                outcome: Outcome::Deny,
                                rule: APPROVAL_RULE,
                                reason: Reason::ApprovalInvalid(error),
                                approver: gate.approver.as_deref(),
                                audit: self.agent.audit,
                                sensitive_args: &self.agent.sensitive_args,
                            };
                        }
                    }
                }
                let mut decision = self.answer(Outcome::RequireApproval, gate.rule, reason);
                decision.approver = gate.approver.as_deref();
                gate_decision = Some(decision);
            }
        }
        if let Some(denial) = self.check_outcome_limits(key) {
            return denial;
        }
        if !caps.is_empty() {
            // Rate limits count per agent; only per-session caps need a session.
            let per_agent_only = caps.iter().all(|cap| cap.window_ms.is_some());
            let key =
                key.or_else(|| per_agent_only.then_some(SessionKey { agent: &request.agent, session: "" }));
            let Some(key) = key else {
                return Decision {
                    outcome: Outcome::Deny,
                    rule: NO_SESSION_RULE,
                    reason: Reason::NoSession,
                    approver: None,
                    audit: self.agent.audit,
                    sensitive_args: &self.agent.sensitive_args,
                };
            };
            let admission = match gate_decision {
                Some(_) => self.engine.state.sessions.check(key, caps),
                None => self.engine.state.sessions.admit(key, &request.tool, caps),
            };
            match admission {
                Admission::Admitted => {}
                Admission::Refused(index) => {
                    let (Some(cap), Some(rule)) = (caps.get(index), cap_rules.get(index)) else {
                        return self.internal();
                    };
                    return self
                        .deny(*rule, Reason::CapReached { limit: cap.limit, window_ms: cap.window_ms });
                }
                Admission::Unavailable => return self.state_unavailable(),
            }
        } else if let (Some(key), None) = (key, &gate_decision) {
            // Counted for `session.calls*` in conditions; if counting fails
            // the call is denied all the same.
            if self.engine.state.sessions.admit(key, &request.tool, &[]) == Admission::Unavailable {
                return self.state_unavailable();
            }
        }
        gate_decision.unwrap_or_else(|| match approved {
            Some(gate) => self.answer(Outcome::Allow, gate, Reason::Approved),
            None => self.answer(Outcome::Allow, allow, Reason::Allowed),
        })
    }

    /// Denies once reported outcomes reached `maxConsecutiveErrors` or
    /// `maxCost` (normally the session is killed when they trip; this also
    /// covers a limit lowered by a reload).
    fn check_outcome_limits(&self, key: Option<SessionKey<'e>>) -> Option<Decision<'e>> {
        let limits = self.agent.limits;
        if !limits.any() {
            return None;
        }
        let Some(key) = key else {
            return Some(Decision {
                outcome: Outcome::Deny,
                rule: NO_SESSION_RULE,
                reason: Reason::NoSession,
                approver: None,
                audit: self.agent.audit,
                sensitive_args: &self.agent.sensitive_args,
            });
        };
        let store = self.engine.state.sessions.as_ref();
        if let Some(limit) = limits.max_consecutive_errors {
            match store.count(key, Counter::ConsecutiveErrors) {
                None => return Some(self.state_unavailable()),
                Some(streak) if streak >= limit.max => {
                    return Some(self.deny(limit.rule, Reason::ErrorStreak { limit: limit.max }));
                }
                Some(_) => {}
            }
        }
        if let Some(ceiling) = limits.max_cost {
            match store.count(key, Counter::CostMicros) {
                None => return Some(self.state_unavailable()),
                Some(micros) if micros as f64 / 1e6 >= ceiling.max => {
                    return Some(self.deny(ceiling.rule, Reason::CostCeiling { max: ceiling.max }));
                }
                Some(_) => {}
            }
        }
        None
    }

    fn check_constraint(
        &self,
        constraint: &'e crate::compiler::checked::CheckedConstraint,
        scope: &Scope<'_>,
    ) -> Option<Decision<'e>> {
        let args = &self.request.args;
        if let Some((fields, rule)) = &constraint.requires_fields
            && let Some(missing) = fields.iter().find(|f| !args.contains_key(f.as_str()))
        {
            return Some(self.deny(*rule, Reason::MissingField(missing)));
        }
        for param in &constraint.params {
            if let Some(value) = args.get(&param.name)
                && let Err((item, violation)) = param.check.validate(value)
            {
                return Some(self.deny(param.rule, Reason::Param { name: &param.name, item, violation }));
            }
        }
        if let Some((condition, rule)) = &constraint.when {
            match condition.eval(scope) {
                Ok(true) => {}
                Ok(false) => return Some(self.deny(*rule, Reason::ConditionFalse)),
                Err(error) => return Some(self.deny(*rule, Reason::ConditionFailed(error))),
            }
        }
        if let Some((rego, rule)) = &constraint.rego {
            match rego.eval(&self.request.rego_input()) {
                Ok(true) => {}
                Ok(false) => return Some(self.deny(*rule, Reason::RegoFalse { rule: &rego.entry })),
                Err(error) => return Some(self.deny(*rule, Reason::RegoFailed { rule: &rego.entry, error })),
            }
        }
        None
    }
}

/// The pattern part of a `<agent>.deniedTools.<pattern>` rule id.
fn pattern_of(rule_id: &str) -> &str {
    rule_id.split_once(".deniedTools.").map_or(rule_id, |(_, pattern)| pattern)
}
