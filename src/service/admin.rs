//! The operations besides deciding: the kill switch and approvals (admin
//! socket only) and call outcomes (decision socket).

use serde_json::json;

use super::{Peer, Role, Service};
use crate::engine::{Engine, OutcomeError};
use crate::protocol::{CallReport, CallStatus, Reply, WireError, WireErrorCode};
use crate::state::approval::Approval;
use crate::state::approval::{ApprovalError, ApprovalStatus};
use crate::state::kill::{Kill, KillScope};
use crate::state::session::CallOutcome;

/// The name an admin is recorded under: the name they gave, if any, with
/// who the kernel says they are (`oncall (alice, uid 1000)`).
fn operator(by: Option<&str>, role: &Role) -> String {
    let Role::Admin(peer) = role else {
        return by.unwrap_or("?").to_owned();
    };
    let who = &peer.identity;
    match (by, &who.user, who.uid) {
        (Some(name), Some(user), Some(uid)) => format!("{name} ({user}, uid {uid})"),
        (Some(name), None, Some(uid)) => format!("{name} (uid {uid})"),
        (Some(name), _, None) => format!("{name} ({who})"),
        (None, _, _) => who.to_string(),
    }
}

/// Who decides an approval, beyond who they are: the approver they say
/// they act as (`as`), and why they decide so.
#[derive(Clone, Copy, Debug, Default)]
pub struct Decider<'a> {
    /// The approver named with `as`, if any.
    pub named: Option<&'a str>,
    /// The decider's comment, if any.
    pub comment: Option<&'a str>,
}

fn forbidden(message: String) -> WireError {
    WireError::new(WireErrorCode::Forbidden, message)
}

fn unavailable(what: &str, error: impl std::fmt::Display) -> WireError {
    WireError::new(WireErrorCode::Unavailable, format!("{what}: {error}"))
}

impl Service {
    /// Runs a store operation off the async threads when the state may
    /// block (an fsync); in place when it is all in memory (a thread hop
    /// would cost more than the operation).
    async fn blocking<T: Send + 'static>(
        &self,
        what: &'static str,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, WireError> {
        if !self.may_block {
            return Ok(f());
        }
        tokio::task::spawn_blocking(f).await.map_err(|e| unavailable(what, e))
    }

    /// `kill`: in force before the answer, and saved if the store persists.
    pub(super) async fn kill(
        &self,
        scope: &KillScope,
        reason: &str,
        by: Option<&str>,
        role: &Role,
    ) -> Result<Reply<'static>, WireError> {
        let kill = Kill {
            reason: reason.to_owned(),
            by: operator(by, role),
            at: self.state.clock.rfc3339_seconds(),
        };
        self.record_first("kill", json!({"scope": scope, "reason": kill.reason, "by": kill.by})).await?;
        let (kills, saved_scope, saved_kill) = (self.state.kills.clone(), scope.clone(), kill.clone());
        let saved = self
            .blocking("the kill switch cannot be saved", move || kills.kill(saved_scope, saved_kill))
            .await?;
        if let Err(error) = saved {
            // In force all the same (a kill errs towards denying); say so.
            self.record("kill_not_saved", json!({"scope": scope, "error": error.to_string()})).await;
            return Err(unavailable("the kill is in force but cannot be saved", error));
        }
        self.metrics.kills.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        tracing::warn!(?scope, reason = %kill.reason, by = %kill.by, "killed");
        let agent = match scope {
            KillScope::All => None,
            KillScope::Agent { agent } | KillScope::Session { agent, .. } => Some(agent),
        };
        let warning = agent.filter(|agent| !self.engine.load().table().knows_agent(agent)).map(|agent| {
            format!(
                "the policy in force on this server names no agent `{agent}`: the kill stands (and holds if a later policy names it), but it stops nothing here now; check the name"
            )
        });
        Ok(Reply::Kill { scope: scope.clone(), warning })
    }

    fn count_decided(&self, grant: bool) {
        let counter = match grant {
            true => &self.metrics.approvals.granted,
            false => &self.metrics.approvals.rejected,
        };
        counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    /// `revive`: a revived session also gets a fresh error streak (its cost
    /// stays: raising `maxCost` is how a session gets more budget).
    pub(super) async fn revive(&self, scope: &KillScope, role: &Role) -> Result<Reply<'static>, WireError> {
        let by = operator(None, role);
        self.record_first("revive", json!({"scope": scope, "by": by})).await?;
        let (kills, saved_scope) = (self.state.kills.clone(), scope.clone());
        let revived =
            self.blocking("the kill switch cannot be saved", move || kills.revive(&saved_scope)).await?;
        let was_killed = match revived {
            Ok(was_killed) => was_killed,
            Err(error) => {
                self.record("revive_failed", json!({"scope": scope, "error": error.to_string()})).await;
                return Err(unavailable("the revival cannot be saved; the scope stays killed", error));
            }
        };
        if let KillScope::Session { agent, session } = scope {
            let engine = self.engine.load_full();
            let (agent, session) = (agent.clone(), session.clone());
            let _ = self.blocking("", move || engine.clear_error_streak(&agent, &session)).await;
        }
        tracing::warn!(?scope, was_killed, %by, "revived");
        Ok(Reply::Revive { scope: scope.clone(), was_killed })
    }

    /// Whether `peer` may decide `approval`: a member of the approver the
    /// gate names, as the policy in force declares it; for a gate that
    /// names no approver, an operator.
    fn may_decide(&self, engine: &Engine, peer: &Peer, approval: &Approval) -> Result<(), WireError> {
        let Some(name) = approval.approver.as_deref() else {
            return match peer.operator {
                true => Ok(()),
                false => Err(forbidden(format!(
                    "approval `{}` is for a gate that names no approver: only operators decide it",
                    approval.id
                ))),
            };
        };
        if name == crate::compiler::approvers::USER_APPROVER {
            return Err(forbidden(format!(
                "approval `{}` is for the agent's own user, who answers through the MCP client, not here",
                approval.id
            )));
        }
        let Some(approver) = engine.table().approver(name) else {
            return Err(forbidden(format!("approver `{name}` is not declared by the policy in force")));
        };
        if approver.admits(&peer.identity) {
            Ok(())
        } else {
            Err(forbidden(format!("{} is not approver `{name}` ({})", peer.identity, approver.members())))
        }
    }

    /// `approvals`: the pending approvals `role` may decide (all of them,
    /// for an operator), soonest expiry first.
    pub(super) fn approvals(&self, engine: &Engine, role: &Role) -> Reply<'static> {
        let Role::Admin(peer) = role else {
            return Reply::Approvals { approvals: Vec::new(), now: 0 };
        };
        let pending = self.state.approvals.pending();
        let visible = pending
            .into_iter()
            .filter(|a| peer.operator || self.may_decide(engine, peer, a).is_ok())
            .collect();
        Reply::Approvals { approvals: visible, now: self.state.clock.now_secs() }
    }

    /// `approve` or `reject`: only by a member of the gate's approver, as
    /// the kernel (or the console's sign-in) identifies the peer; `as`, if
    /// given, must name that approver. Recorded before it takes effect,
    /// with who decided and their comment.
    pub(super) async fn decide_approval(
        &self,
        id: &str,
        decider: Decider<'_>,
        grant: bool,
        role: &Role,
    ) -> Result<Reply<'static>, WireError> {
        let named = decider.named;
        let _deciding = self.deciding.lock().await;
        let Role::Admin(peer) = role else {
            return Err(forbidden(String::from("approvals are decided on the admin socket")));
        };
        let refused = |error: WireError| async move {
            self.record(
                "approval_refused",
                json!({"approval": id, "by": operator(None, role), "error": error.message}),
            )
            .await;
            Err(error)
        };
        let Some(approval) = self.state.approvals.get(id) else {
            return refused(WireError::new(WireErrorCode::InvalidRequest, format!("no approval `{id}`")))
                .await;
        };
        let approver = approval.approver.clone();
        if let (Some(named), Some(gate)) = (named, approver.as_deref())
            && named != gate
        {
            let message = format!("this approval is for approver `{gate}`, not `{named}`");
            return refused(WireError::new(WireErrorCode::InvalidRequest, message)).await;
        }
        if let Err(error) = self.may_decide(&self.engine.load_full(), peer, &approval) {
            return refused(error).await;
        }
        // Refused before anything is recorded as decided: an approval that
        // is no longer pending gets no `approval` record.
        let now = self.state.clock.now_secs();
        let recorded_by = operator(None, role);
        let me = crate::state::approval::person(&recorded_by);
        let not_pending = match approval.status(now) {
            // A second grant by the same person would not count: refused
            // before it is recorded as a decision.
            ApprovalStatus::Pending
                if grant && approval.grants.iter().any(|g| crate::state::approval::person(g) == me) =>
            {
                Some(ApprovalError::SamePerson { granted: approval.grants.len(), quorum: approval.quorum })
            }
            ApprovalStatus::Pending => None,
            ApprovalStatus::Expired => Some(ApprovalError::Expired),
            ApprovalStatus::Used => Some(ApprovalError::Used),
            status => Some(ApprovalError::AlreadyDecided(status)),
        };
        if let Some(error) = not_pending {
            return refused(WireError::new(WireErrorCode::InvalidRequest, error.to_string())).await;
        }
        let mut record = json!({"approval": id, "granted": grant, "by": recorded_by, "approver": approver});
        if approval.quorum > 1 {
            record["quorum"] = json!(approval.quorum);
        }
        if let Some(comment) = decider.comment {
            record["comment"] = json!(comment);
        }
        self.record_first("approval", record).await?;
        let approvals = self.state.approvals.clone();
        let (decided_id, decided_by) = (id.to_owned(), recorded_by.clone());
        let decided = self
            .blocking("the approvals cannot be saved", move || {
                approvals.decide(&decided_id, approver.as_deref(), &decided_by, grant)
            })
            .await?;
        let approval = match decided {
            Ok(approval) => approval,
            Err(error) => {
                let record = json!({"approval": id, "by": recorded_by, "error": error.to_string()});
                self.record("approval_refused", record).await;
                // A store that cannot save is the server's failure, not the
                // operator's request: retrying may succeed.
                let code = match error {
                    ApprovalError::Storage(_) => WireErrorCode::Unavailable,
                    _ => WireErrorCode::InvalidRequest,
                };
                return Err(WireError::new(code, error.to_string()));
            }
        };
        if approval.state == crate::state::approval::ApprovalState::Pending {
            tracing::warn!(approval = %id, by = %recorded_by, granted = approval.grants.len(), quorum = approval.quorum, "approval granted; more grants needed");
        } else {
            self.count_decided(grant);
            tracing::warn!(approval = %id, by = %recorded_by, grant, "approval decided");
        }
        Ok(Reply::ApprovalDecided { grant, approval })
    }

    /// `confirm`: the agent's own user accepted or declined an approval
    /// whose approver is `user` (a proxy asked them through the MCP client).
    /// Only such approvals: the others are for the people the policy names,
    /// on the admin socket.
    pub(super) async fn confirm(&self, id: &str, accept: bool) -> Result<Reply<'static>, WireError> {
        use crate::compiler::approvers::USER_APPROVER;
        let by = "the agent's user, through the MCP client";
        let _deciding = self.deciding.lock().await;
        let approval = self.state.approvals.get(id).filter(|a| a.approver.as_deref() == Some(USER_APPROVER));
        let Some(approval) = approval else {
            let message = format!("no approval `{id}` for the approver `{USER_APPROVER}`");
            return Err(WireError::new(WireErrorCode::InvalidRequest, message));
        };
        if approval.status(self.state.clock.now_secs()) != ApprovalStatus::Pending {
            let message = format!("approval `{id}` is not pending");
            return Err(WireError::new(WireErrorCode::InvalidRequest, message));
        }
        let record = json!({"approval": id, "granted": accept, "by": by, "approver": USER_APPROVER});
        self.record_first("approval", record).await?;
        let approvals = self.state.approvals.clone();
        let decided_id = id.to_owned();
        let decided = self
            .blocking("the approvals cannot be saved", move || {
                approvals.decide(&decided_id, Some(USER_APPROVER), by, accept)
            })
            .await?;
        match decided {
            Ok(approval) => {
                self.count_decided(accept);
                Ok(Reply::ApprovalDecided { grant: accept, approval })
            }
            Err(error) => {
                self.record(
                    "approval_refused",
                    json!({"approval": id, "by": by, "error": error.to_string()}),
                )
                .await;
                let code = match error {
                    ApprovalError::Storage(_) => WireErrorCode::Unavailable,
                    _ => WireErrorCode::InvalidRequest,
                };
                Err(WireError::new(code, error.to_string()))
            }
        }
    }

    /// `outcome`: a gateway reports a call's result; a session whose error
    /// streak or cost reaches its limit is killed.
    pub(super) async fn outcome(&self, report: &CallReport) -> Result<Reply<'static>, WireError> {
        // Only the gateway that was allowed the call can report its outcome,
        // once: a client cannot pile errors onto another agent's session.
        self.ids
            .cite(&report.decision_id, &report.agent, &report.session)
            .map_err(|error| WireError::new(WireErrorCode::InvalidField, error.to_string()))?;
        // A cost the gateway does not report is the one the policy declares
        // for the tool (`constraints.<tool>.cost`), if any.
        let cost = report.cost.unwrap_or_else(|| {
            let declared =
                report.tool.as_deref().and_then(|tool| self.engine().call_cost(&report.agent, tool));
            declared.unwrap_or(0.0)
        });
        let outcome = CallOutcome {
            error: report.status == CallStatus::Error,
            cost_micros: (cost * 1e6).round() as u64,
        };
        let mut record = json!(report);
        if let Some(object) = record.as_object_mut() {
            object.insert(String::from("cost"), json!(cost));
        }
        if let Err(error) = self.record_first("outcome", record).await {
            self.ids.release(&report.decision_id);
            return Err(error);
        }
        let engine = self.engine.load_full();
        let (agent, session) = (report.agent.clone(), report.session.clone());
        let recorded = self
            .blocking("recording failed", move || engine.record_outcome(&agent, &session, outcome))
            .await?
            .map_err(|e| match e {
                OutcomeError::UnknownAgent => WireError::new(
                    WireErrorCode::InvalidField,
                    format!("no policy for agent `{}`", report.agent),
                ),
                OutcomeError::StateUnavailable => {
                    WireError::new(WireErrorCode::Unavailable, "session state is unavailable")
                }
            })?;
        if let Some(tool) = &report.tool {
            let failed = report.status == CallStatus::Error;
            for rule in self.engine().record_call_result(&report.agent, tool, failed) {
                tracing::warn!(agent = %report.agent, %tool, %rule, "circuit opened");
                let incident =
                    json!({"agent": report.agent, "tool": tool, "rule": rule, "action": "circuit_open"});
                self.record("incident", incident).await;
            }
        }
        if let Some((rule, reason)) = &recorded.trip {
            let (agent, session) = (&report.agent, &report.session);
            self.metrics.kills.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            tracing::warn!(%agent, %session, %rule, %reason, "limit tripped; session killed");
            let incident =
                json!({"agent": agent, "session": session, "rule": rule, "reason": reason, "action": "kill"});
            self.record("incident", incident).await;
        }
        Ok(Reply::Outcome {
            consecutive_errors: recorded.totals.consecutive_errors,
            cost: recorded.totals.cost_micros as f64 / 1e6,
            killed: recorded.killed,
        })
    }
}
