//! The decision path: the engine decides, an approval is opened when one
//! is required, the audit record is built, the metrics count it.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Instant;

use serde_json::Value;

use super::{AuditBatch, Decided, Service};
use crate::audit::record;
use crate::engine::{Decision, Engine, Outcome, Reason, Request};
use crate::protocol::{Answer, ApprovalRef, Reply, WireError, WireErrorCode};
use crate::state::approval::{ApprovalError, ApprovalStatus, Binding, Shown};

impl Service {
    /// Decides a request: the engine's decision, the approval it opens or
    /// uses, its audit record (into `batch`) and its metrics.
    pub fn decide<'e>(
        &self,
        engine: &'e Engine,
        id: &Value,
        request: &'e Request,
        batch: &mut AuditBatch,
    ) -> Answer<'e> {
        let start = Instant::now();
        let mut decision = engine.decide(request);
        let approval = self.approval(engine, request, &mut decision);
        let decision_id = self
            .config
            .serving
            .then(|| self.ids.issue(&request.agent, request.session.as_deref(), decision.outcome));
        let policy = engine.policy_hash();
        if self.audit.is_some() {
            let time = self.state.clock.rfc3339_micros();
            let decision_id = decision_id.map(|id| id.to_string());
            let context = record::DecisionContext {
                time: &time,
                id,
                decision_id: decision_id.as_deref(),
                approval: approval.as_ref().map(|a| (a.id.as_str(), a.state.as_str())),
                policy,
                latency_us: start.elapsed().as_secs_f64() * 1e6,
            };
            batch.records.push(record::decision(context, request, &decision));
        }
        let code = decision.reason.code();
        let known = code != crate::engine::ReasonCode::UnknownAgent;
        self.metrics.decision(&request.agent, known, decision.outcome, start.elapsed());
        if self.config.log_decisions {
            tracing::info!(
                agent = %request.agent,
                session = request.session.as_deref(),
                tool = %request.tool,
                decision = decision.outcome.as_str(),
                reason_code = code.as_str(),
                rule = decision.rule,
                decision_id = decision_id.map(|id| id.to_string()),
                "decision"
            );
        }
        if self.tail.receiver_count() > 0 {
            let _ = self.tail.send(Arc::new(Decided {
                time: self.state.clock.rfc3339_micros(),
                agent: request.agent.clone(),
                session: request.session.clone(),
                tool: request.tool.clone(),
                outcome: decision.outcome.as_str(),
                reason_code: code.as_str(),
                rule: decision.rule.to_owned(),
                decision_id: decision_id.map(|id| id.to_string()),
            }));
        }
        let obligations = (decision.outcome == crate::engine::Outcome::Allow)
            .then(|| obligations(engine, request))
            .flatten();
        Answer { decision, policy, approval, decision_id, obligations }
    }

    /// [`Service::decide`] for a transport on an async runtime: a store that
    /// may block decides where blocking stalls no other connection, and a
    /// panic (there should be none) becomes a deny for this request only.
    pub(super) async fn decide_guarded<'e>(
        &self,
        engine: &'e Engine,
        id: &Value,
        request: &'e Request,
        batch: &mut AuditBatch,
    ) -> Reply<'e> {
        let recorded = batch.records.len();
        let decided = {
            let mut run =
                || std::panic::catch_unwind(AssertUnwindSafe(|| self.decide(engine, id, request, batch)));
            let multi_thread = || {
                tokio::runtime::Handle::try_current()
                    .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread)
            };
            if self.may_block && multi_thread() { tokio::task::block_in_place(run) } else { run() }
        };
        match decided {
            Ok(answer) => Reply::Decision(answer),
            Err(_) => {
                // Whatever the panic left half-written is dropped: one answer per request.
                batch.records.truncate(recorded);
                tracing::error!(agent = %request.agent, tool = %request.tool, "internal error while deciding; denied");
                let error =
                    WireError::new(WireErrorCode::Unavailable, "internal error while deciding; denied");
                self.refuse(id, error, batch)
            }
        }
    }

    /// The approval an answer refers to: the one a `require_approval`
    /// opens (if the service opens approvals), or the one the request
    /// presented, with where it stands. If an approval cannot be opened,
    /// the answer becomes a deny: an approval nobody can find again must
    /// not be promised.
    fn approval(
        &self,
        engine: &Engine,
        request: &Request,
        decision: &mut Decision<'_>,
    ) -> Option<ApprovalRef> {
        let presented = |state: ApprovalStatus| {
            request.approval.as_ref().map(|id| ApprovalRef { id: id.clone(), state, expires_at: None })
        };
        match &decision.reason {
            _ if decision.outcome == Outcome::RequireApproval && self.config.serving => {
                // A `require_approval` decision's rule is the gate's.
                let binding =
                    Binding::new(request.call(), decision.rule, decision.approver, engine.policy_hash());
                // The same call asked again finds the approval it opened
                // (one approval a call, however often a model retries).
                if request.session.is_some()
                    && let Some((id, state)) = self.state.approvals.find(&binding)
                {
                    let expires_at = self.state.approvals.get(&id).map(|approval| approval.expires_at);
                    return Some(ApprovalRef { id, state, expires_at });
                }
                // Approvers see the call's arguments, as the audit trail
                // would keep them in full: sensitive ones redacted.
                let description = engine.table().gate_description(decision.rule).map(str::to_owned);
                let shown = Shown { args: decision.privacy.redacted_args(&request.args), description };
                let quorum = engine.table().gate_quorum(decision.rule);
                match self.state.approvals.open(binding, shown, quorum) {
                    Ok(approval) => {
                        self.metrics.approvals.opened.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let expires_at = Some(approval.expires_at);
                        let id = approval.id.clone();
                        self.announce(approval);
                        Some(ApprovalRef { id, state: ApprovalStatus::Pending, expires_at })
                    }
                    Err(error) => {
                        // A bound a client reached is its business, not the log's.
                        if matches!(error, ApprovalError::TooMany(_)) {
                            tracing::debug!(%error, "cannot open an approval; denying");
                        } else {
                            tracing::error!(%error, "cannot open an approval; denying");
                        }
                        decision.outcome = Outcome::Deny;
                        decision.reason = Reason::ApprovalInvalid(error);
                        None
                    }
                }
            }
            Reason::Approved { approval } => {
                Some(ApprovalRef { id: approval.clone(), state: ApprovalStatus::Used, expires_at: None })
            }
            Reason::ApprovalInvalid(error) => error.status().and_then(presented),
            // Decided before the approval was consulted, or after it was
            // used (a cap refused the call): say where it stands now.
            _ => {
                request.approval.as_deref().and_then(|id| self.state.approvals.status(id)).and_then(presented)
            }
        }
    }
}

/// What an allowed call is made under, as the answer's `obligations`: the
/// output rules of its result, its timeout, and its failure policy (with
/// whether the agent may call the fallback); `None` when nothing applies.
fn obligations(engine: &Engine, request: &Request) -> Option<Value> {
    let mut obligations = serde_json::Map::new();
    if let Some((_, rules)) = engine.output_rules(&request.agent, &request.tool) {
        obligations.insert(String::from("output"), rules.summary());
    }
    let conditions = engine.call_conditions(&request.agent, &request.tool);
    if let Some(ms) = conditions.timeout_ms {
        obligations.insert(String::from("timeoutMs"), Value::from(ms));
    }
    if let Some(failure) = conditions.on_failure {
        let available =
            failure.fallback.as_deref().is_some_and(|tool| engine.may_call(&request.agent, tool, None));
        let mut on_failure = serde_json::json!(failure);
        if let Some(object) = on_failure.as_object_mut() {
            object.insert(String::from("fallbackAvailable"), Value::from(available));
        }
        obligations.insert(String::from("onFailure"), on_failure);
    }
    (!obligations.is_empty()).then_some(Value::Object(obligations))
}
