//! Deciding one request for a known agent, in the documented order: plan,
//! schema, constraints, gates and approvals, outcome limits, admission.
//! Each phase passes or ends the decision with its final [`Decision`].

use std::borrow::Cow;

use super::decision::{Decision, Outcome, Reason};
use super::table::{AgentTable, DecisionTable, ToolPlan};
use super::{APPROVAL_RULE, INVALID_NAME_RULE, NO_SESSION_RULE, Request, UNKNOWN_TOOL_RULE};
use crate::compiler::checked::{CheckedConstraint, CheckedGate, GateTrigger, RuleId, SchemaCheck};
use crate::compiler::condition::{Scope, SessionView};
use crate::compiler::names::{self, Name};
use crate::state::State;
use crate::state::approval::{ApprovalStatus, Binding};
use crate::state::session::{Admission, Cap, Counter, SessionKey, SessionStore};

/// A phase's result: go on with `T`, or stop with a decision.
type Phase<'e, T> = Result<T, Decision<'e>>;

/// One request being decided under one agent's policy.
pub(super) struct Decider<'e> {
    pub table: &'e DecisionTable,
    pub state: &'e State,
    pub agent: &'e AgentTable,
    pub request: &'e Request,
}

/// What the gates made of the call.
enum Gated<'e> {
    /// No gate applies.
    Open,
    /// A gate applies: the call waits for a human.
    Pending(Decision<'e>),
    /// A gate applied and a granted approval for this call (this id)
    /// satisfied it.
    Approved(RuleId, String),
    /// A ceiling was broken, or the request's approval cannot be used.
    Denied(Decision<'e>),
}

/// The value of a phase that passed; returns the decision of one that did not.
macro_rules! pass {
    ($phase:expr) => {
        match $phase {
            Ok(value) => value,
            Err(decision) => return decision,
        }
    };
}

impl<'e> Decider<'e> {
    pub fn decide(&self) -> Decision<'e> {
        let plan = match self.plan() {
            Ok(plan) => plan,
            Err(reason @ Reason::InvalidName(_)) => {
                return Decision::under(self.agent, Outcome::Deny, INVALID_NAME_RULE, reason);
            }
            Err(reason) => return Decision::under(self.agent, Outcome::Deny, UNKNOWN_TOOL_RULE, reason),
        };
        let ToolPlan::Allowed { allow, constraints, gates, caps, cap_rules, schema } = &*plan else {
            return self.denied_plan(&plan);
        };
        if let Some(check) = schema {
            pass!(self.schema(check));
        }
        let key = self.session_key();
        let view = CounterView { store: self.state.sessions.as_ref(), key };
        let scope = Scope {
            agent: &self.request.agent,
            tool: &self.request.tool,
            args: &self.request.args,
            principal: self.request.principal.as_ref(),
            context: self.request.context.as_ref(),
            session: &view,
        };
        for &index in constraints.iter() {
            let Some(constraint) = self.agent.constraints.get(index as usize) else {
                return self.internal();
            };
            pass!(self.constraint(constraint, &scope));
        }
        let gated = if gates.is_empty() { Gated::Open } else { self.gates(gates, &scope) };
        if let Gated::Denied(decision) = gated {
            return decision;
        }
        pass!(self.outcome_limits(key));
        pass!(self.admit(key, caps, cap_rules, &gated));
        match gated {
            Gated::Pending(decision) | Gated::Denied(decision) => decision,
            Gated::Approved(gate, approval) => {
                self.answer(Outcome::Allow, gate, Reason::Approved { approval })
            }
            Gated::Open => self.answer(Outcome::Allow, *allow, Reason::Allowed),
        }
    }

    /// A decision under this agent's policy.
    fn answer(&self, outcome: Outcome, rule: RuleId, reason: Reason<'e>) -> Decision<'e> {
        Decision::under(self.agent, outcome, self.table.rule_id(rule), reason)
    }

    fn deny(&self, rule: RuleId, reason: Reason<'e>) -> Decision<'e> {
        self.answer(Outcome::Deny, rule, reason)
    }

    fn session_key(&self) -> Option<SessionKey<'e>> {
        let request = self.request;
        request.session.as_deref().map(|session| SessionKey { agent: &request.agent, session })
    }

    /// The tool's plan: precomputed for names the policy or a catalog
    /// writes out (valid by construction), by glob for the rest; none for a
    /// name that breaks the rules for names or a tool its server's catalog
    /// does not list.
    fn plan(&self) -> Result<Cow<'e, ToolPlan>, Reason<'e>> {
        let tool = self.request.tool.as_str();
        let table = self.table;
        if let Some(plan) = self.agent.exact.get(tool) {
            if self.agent.annotated.is_none() {
                return Ok(Cow::Borrowed(plan));
            }
        } else {
            if let Some(problem) = names::name_problem(Name::Tool, tool) {
                return Err(Reason::InvalidName(problem));
            }
            if table.uncatalogued(tool) {
                return Err(Reason::UnknownTool);
            }
        }
        Ok(match self.agent.annotated {
            Some(_) => self.agent.plan(tool, self.request.annotations, &table.rules),
            None => self.agent.plan_by_globs(tool, &table.rules),
        })
    }

    /// The denial of a plan that does not allow the tool.
    fn denied_plan(&self, plan: &ToolPlan) -> Decision<'e> {
        match plan {
            ToolPlan::Denied(rule) => {
                let id = self.table.rule_id(*rule);
                let pattern = id.split_once(".deniedTools.").map_or(id, |(_, pattern)| pattern);
                self.deny(*rule, Reason::Denied { pattern })
            }
            _ => self.deny(self.agent.default_deny, Reason::NotAllowed),
        }
    }

    /// `validateArgs`: the arguments must satisfy the tool's `inputSchema`.
    fn schema(&self, check: &SchemaCheck) -> Phase<'e, ()> {
        // The validator takes a JSON value; arguments arrive as a map.
        let args = serde_json::Value::Object(self.request.args.clone());
        match check.validator.iter_errors(&args).next() {
            None => Ok(()),
            Some(error) => {
                let reason = Reason::SchemaViolation {
                    path: error.instance_path().to_string(),
                    message: error.to_string(),
                };
                Err(self.deny(check.rule, reason))
            }
        }
    }

    /// One constraint: required fields, `params`, `when`, `rego`.
    fn constraint(&self, constraint: &'e CheckedConstraint, scope: &Scope<'_>) -> Phase<'e, ()> {
        if let Some((breaker, rule)) = &constraint.circuit {
            let now = self.state.clock.now_ms();
            if let Some(until) =
                self.state.breakers.open_until(&self.request.agent, self.table.rule_id(*rule), now)
            {
                let seconds = (until - now).div_ceil(1000);
                return Err(self.deny(*rule, Reason::CircuitOpen { failures: breaker.failures, seconds }));
            }
        }
        let args = &self.request.args;
        if let Some((fields, rule)) = &constraint.requires_fields
            && let Some(missing) = fields.iter().find(|f| !args.contains_key(f.as_str()))
        {
            return Err(self.deny(*rule, Reason::MissingField(missing)));
        }
        for param in &constraint.params {
            if let Some(value) = args.get(&param.name)
                && let Err((at, violation)) = param.check.validate(value)
            {
                return Err(self.deny(param.rule, Reason::Param { name: &param.name, at, violation }));
            }
        }
        if let Some((condition, rule)) = &constraint.when {
            match condition.eval(scope) {
                Ok(true) => {}
                Ok(false) => return Err(self.deny(*rule, Reason::ConditionFalse)),
                Err(error) => return Err(self.deny(*rule, Reason::ConditionFailed(error))),
            }
        }
        if let Some((rego, rule)) = &constraint.rego {
            match rego.eval(&self.request.rego_input()) {
                Ok(true) => {}
                Ok(false) => return Err(self.deny(*rule, Reason::RegoFalse { rule: &rego.entry })),
                Err(error) => return Err(self.deny(*rule, Reason::RegoFailed { rule: &rego.entry, error })),
            }
        }
        Ok(())
    }

    /// Approval gates, in list order: every gate's amount ceiling is
    /// checked; the first gate that applies decides, unless the request
    /// carries a granted approval for exactly this call.
    fn gates(&self, gates: &[u32], scope: &Scope<'_>) -> Gated<'e> {
        let mut gated = Gated::Open;
        for &index in gates {
            let Some(gate) = self.agent.gates.get(index as usize) else {
                return Gated::Denied(self.internal());
            };
            if let Err(denial) = self.ceiling(gate) {
                return Gated::Denied(denial);
            }
            if !matches!(gated, Gated::Open) {
                continue;
            }
            let Some(reason) = self.trigger(gate, scope) else { continue };
            gated = match &self.request.approval {
                None => match self.granted(gate) {
                    Some(approval) => Gated::Approved(gate.rule, approval),
                    None => Gated::Pending(
                        self.answer(Outcome::RequireApproval, gate.rule, reason).with_approver(gate),
                    ),
                },
                // A granted approval for exactly this call satisfies the
                // gate, once; anything else about it denies. Later gates'
                // ceilings are still checked.
                Some(id) => match self.state.approvals.redeem(id, &self.binding(gate)) {
                    Ok(()) => Gated::Approved(gate.rule, id.clone()),
                    Err(error) => {
                        let denial = Reason::ApprovalInvalid(error);
                        return Gated::Denied(
                            Decision::under(self.agent, Outcome::Deny, APPROVAL_RULE, denial)
                                .with_approver(gate),
                        );
                    }
                },
            };
        }
        gated
    }

    /// A granted approval for exactly this call, found without the request
    /// naming it, and used: a call of a session asked again after its
    /// approval was granted goes through once. (A call without a session
    /// must name its approval.)
    fn granted(&self, gate: &CheckedGate) -> Option<String> {
        self.request.session.as_ref()?;
        let binding = self.binding(gate);
        match self.state.approvals.find(&binding)? {
            (id, ApprovalStatus::Granted) => self.state.approvals.redeem(&id, &binding).is_ok().then_some(id),
            _ => None,
        }
    }

    /// The call as an approval through `gate` is bound to it.
    fn binding(&self, gate: &CheckedGate) -> Binding {
        let rule = self.table.rule_id(gate.rule);
        Binding::new(self.request.call(), rule, gate.approver.as_deref(), self.table.hash())
    }

    /// A gate's `maxAmount`: the amount must be readable and within it.
    fn ceiling(&self, gate: &'e CheckedGate) -> Phase<'e, ()> {
        let Some(ceiling) = &gate.ceiling else { return Ok(()) };
        match self.request.args.get(&ceiling.field).and_then(serde_json::Value::as_f64) {
            None => Err(self.deny(ceiling.rule, Reason::AmountUnreadable { field: &ceiling.field })),
            Some(amount) if amount > ceiling.max => Err(self
                .deny(ceiling.rule, Reason::AmountAboveCeiling { field: &ceiling.field, max: ceiling.max })),
            Some(_) => Ok(()),
        }
    }

    /// Why a gate applies, if it does. A condition or rule that cannot be
    /// evaluated applies the gate (to be safe).
    fn trigger(&self, gate: &'e CheckedGate, scope: &Scope<'_>) -> Option<Reason<'e>> {
        match &gate.trigger {
            GateTrigger::Always => Some(Reason::ApprovalRequired),
            GateTrigger::When(condition) => match condition.eval(scope) {
                Ok(true) => Some(Reason::ApprovalConditionHolds),
                Ok(false) => None,
                Err(error) => Some(Reason::ApprovalConditionFailed(error)),
            },
            GateTrigger::Rego(rule) => match rule.eval(&self.request.rego_input()) {
                Ok(true) => Some(Reason::ApprovalRegoHolds { rule: &rule.entry }),
                Ok(false) => None,
                Err(error) => Some(Reason::ApprovalRegoFailed { rule: &rule.entry, error }),
            },
            GateTrigger::Never => None,
        }
    }

    /// Denies once reported outcomes reached `maxConsecutiveErrors` or
    /// `maxCost` (normally the session is killed when they trip; this also
    /// covers a limit lowered by a reload).
    fn outcome_limits(&self, key: Option<SessionKey<'e>>) -> Phase<'e, ()> {
        let limits = self.agent.limits;
        if !limits.any() {
            return Ok(());
        }
        let key = key.ok_or_else(|| self.no_session())?;
        let store = self.state.sessions.as_ref();
        if let Some(limit) = limits.max_consecutive_errors {
            let streak =
                store.count(key, Counter::ConsecutiveErrors).ok_or_else(|| self.state_unavailable())?;
            if streak >= limit.max {
                return Err(self.deny(limit.rule, Reason::ErrorStreak { limit: limit.max }));
            }
        }
        if let Some(ceiling) = limits.max_cost {
            let micros = store.count(key, Counter::CostMicros).ok_or_else(|| self.state_unavailable())?;
            if micros as f64 / 1e6 >= ceiling.max {
                return Err(self.deny(ceiling.rule, Reason::CostCeiling { max: ceiling.max }));
            }
        }
        Ok(())
    }

    /// Caps and rate limits: an allowed call is checked and counted in one
    /// step; a gated call is only checked (it is counted when approved). A
    /// call under no cap is still counted for `session.calls*`.
    fn admit(
        &self,
        key: Option<SessionKey<'e>>,
        caps: &[Cap],
        cap_rules: &[RuleId],
        gated: &Gated<'e>,
    ) -> Phase<'e, ()> {
        let sessions = self.state.sessions.as_ref();
        let pending = matches!(gated, Gated::Pending(_));
        if caps.is_empty() {
            // If counting fails the call is denied all the same.
            return match key {
                Some(key) if !pending => match sessions.admit(key, &self.request.tool, &[]) {
                    Admission::Admitted | Admission::Refused(_) => Ok(()),
                    failed => Err(self.store_failed(failed)),
                },
                _ => Ok(()),
            };
        }
        // Rate limits count per agent; only per-session caps need a session.
        let per_agent_only = caps.iter().all(|cap| cap.window_ms.is_some());
        let agent_wide = per_agent_only.then_some(SessionKey { agent: &self.request.agent, session: "" });
        let key = key.or(agent_wide).ok_or_else(|| self.no_session())?;
        let admission =
            if pending { sessions.check(key, caps) } else { sessions.admit(key, &self.request.tool, caps) };
        match admission {
            Admission::Admitted => Ok(()),
            Admission::Refused(index) => {
                let (cap, rule) = caps.get(index).zip(cap_rules.get(index)).ok_or_else(|| self.internal())?;
                Err(self.deny(*rule, Reason::CapReached { limit: cap.limit, window_ms: cap.window_ms }))
            }
            failed => Err(self.store_failed(failed)),
        }
    }

    /// Denied because the store could not admit the call.
    fn store_failed(&self, admission: Admission) -> Decision<'e> {
        let decision = match admission {
            Admission::SessionLimit => Decision::session_limit(),
            Admission::TimedOut => Decision::timed_out(),
            _ => Decision::state_unavailable(),
        };
        decision.redacted_for(self.agent)
    }

    /// Denied because session state could not be read or written.
    fn state_unavailable(&self) -> Decision<'e> {
        Decision::state_unavailable().redacted_for(self.agent)
    }

    /// Denied because the compiled table is inconsistent.
    fn internal(&self) -> Decision<'e> {
        Decision::internal().redacted_for(self.agent)
    }

    fn no_session(&self) -> Decision<'e> {
        Decision::under(self.agent, Outcome::Deny, NO_SESSION_RULE, Reason::NoSession)
    }
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
