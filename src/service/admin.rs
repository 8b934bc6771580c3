//! The operations besides deciding: the kill switch and approvals (admin
//! socket only) and call outcomes (decision socket).

use serde_json::json;

use super::{Role, Service};
use crate::engine::OutcomeError;
use crate::protocol::{CallReport, CallStatus, Reply, WireError, WireErrorCode};
use crate::state::approval::ApprovalError;
use crate::state::kill::{Kill, KillScope};
use crate::state::session::CallOutcome;

/// The name an admin is recorded under: their own name if they gave one,
/// always with the user id the kernel reported.
fn operator(by: Option<&str>, role: Role) -> String {
    let uid = match role {
        Role::Admin { uid } => uid.to_string(),
        _ => String::from("?"),
    };
    match by {
        Some(name) => format!("{name} (uid {uid})"),
        None => format!("uid {uid}"),
    }
}

fn unavailable(what: &str, error: impl std::fmt::Display) -> WireError {
    WireError::new(WireErrorCode::Unavailable, format!("{what}: {error}"))
}

impl Service {
    /// Runs a store operation that may block (an fsync) off the async threads.
    async fn blocking<T: Send + 'static>(
        &self,
        what: &'static str,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, WireError> {
        tokio::task::spawn_blocking(f).await.map_err(|e| unavailable(what, e))
    }

    /// `kill`: in force before the answer, and saved if the store persists.
    pub(super) async fn kill(
        &self,
        scope: &KillScope,
        reason: &str,
        by: Option<&str>,
        role: Role,
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
        tracing::warn!(?scope, reason = %kill.reason, by = %kill.by, "killed");
        Ok(Reply::Kill { scope: scope.clone() })
    }

    /// `revive`: a revived session also gets a fresh error streak (its cost
    /// stays: raising `maxCost` is how a session gets more budget).
    pub(super) async fn revive(&self, scope: &KillScope, role: Role) -> Result<Reply<'static>, WireError> {
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

    /// `approve` or `reject`, as `by` (recorded with the user id).
    pub(super) async fn decide_approval(
        &self,
        id: &str,
        by: &str,
        grant: bool,
        role: Role,
    ) -> Result<Reply<'static>, WireError> {
        let recorded_by = operator(Some(by), role);
        self.record_first("approval", json!({"approval": id, "granted": grant, "by": recorded_by})).await?;
        let approvals = self.state.approvals.clone();
        let (decided_id, decided_by) = (id.to_owned(), by.to_owned());
        let decided = self
            .blocking("the approvals cannot be saved", move || {
                approvals.decide(&decided_id, &decided_by, grant)
            })
            .await?;
        let approval = match decided {
            Ok(approval) => approval,
            Err(error) => {
                self.record("approval_refused", json!({"approval": id, "error": error.to_string()})).await;
                // A store that cannot save is the server's failure, not the
                // operator's request: retrying may succeed.
                let code = match error {
                    ApprovalError::Storage(_) => WireErrorCode::Unavailable,
                    _ => WireErrorCode::InvalidRequest,
                };
                return Err(WireError::new(code, error.to_string()));
            }
        };
        tracing::warn!(approval = %id, by = %recorded_by, grant, "approval decided");
        Ok(Reply::ApprovalDecided { grant, approval })
    }

    /// `outcome`: a gateway reports a call's result; a session whose error
    /// streak or cost reaches its limit is killed.
    pub(super) async fn outcome(&self, report: &CallReport) -> Result<Reply<'static>, WireError> {
        // Only the gateway that was allowed the call can report its outcome,
        // once: a client cannot pile errors onto another agent's session.
        self.ids
            .cite(&report.decision_id, &report.agent, &report.session)
            .map_err(|error| WireError::new(WireErrorCode::InvalidField, error.to_string()))?;
        let outcome = CallOutcome {
            error: report.status == CallStatus::Error,
            cost_micros: (report.cost * 1e6).round() as u64,
        };
        if let Err(error) = self.record_first("outcome", json!(report)).await {
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
        if let Some((rule, reason)) = &recorded.trip {
            let (agent, session) = (&report.agent, &report.session);
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
