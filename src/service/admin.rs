//! The admin operations: kill, revive, and list kills. Only connections on
//! the admin socket from an allowed user reach here.

use serde_json::{Map, Value, json};

use crate::protocol::{WireError, WireErrorCode};
use crate::server::Shared;
use crate::state::kill::{Kill, KillScope};

fn invalid(message: impl Into<String>) -> WireError {
    WireError::new(WireErrorCode::InvalidField, message)
}

fn text<'a>(fields: &'a Map<String, Value>, key: &str) -> Result<Option<&'a str>, WireError> {
    match fields.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(invalid(format!("`{key}` must be a string"))),
    }
}

/// The scope a kill or revive names: `{"scope": "all"}`,
/// `{"scope": "agent", "agent"}` or `{"scope": "session", "agent", "session"}`.
fn scope(fields: &Map<String, Value>) -> Result<KillScope, WireError> {
    let agent = || {
        text(fields, "agent")?.map(str::to_owned).ok_or_else(|| invalid("`agent` is required for this scope"))
    };
    match text(fields, "scope")? {
        Some("all") => Ok(KillScope::All),
        Some("agent") => Ok(KillScope::Agent { agent: agent()? }),
        Some("session") => {
            let session = text(fields, "session")?
                .ok_or_else(|| invalid("`session` is required for scope `session`"))?;
            Ok(KillScope::Session { agent: agent()?, session: session.to_owned() })
        }
        Some(other) => Err(invalid(format!("unknown scope `{other}`; use `all`, `agent` or `session`"))),
        None => Err(invalid("`scope` is required: `all`, `agent` or `session`")),
    }
}

/// Answers one admin operation.
pub async fn answer(
    shared: &Shared,
    op: &str,
    fields: &Map<String, Value>,
    uid: u32,
) -> Result<Value, WireError> {
    let kills = std::sync::Arc::clone(&shared.state.kills);
    let failed = |e: std::io::Error| {
        WireError::new(WireErrorCode::Unavailable, format!("the kill switch cannot be saved: {e}"))
    };
    let answer = match op {
        "kill" => {
            let scope = scope(fields)?;
            let reason = text(fields, "reason")?.ok_or_else(|| invalid("`reason` is required: say why"))?;
            let by = match text(fields, "by")? {
                Some(name) => format!("{name} (uid {uid})"),
                None => format!("uid {uid}"),
            };
            let kill = Kill { reason: reason.to_owned(), by, at: shared.state.clock.rfc3339_seconds() };
            let (switch, saved_scope, saved_kill) =
                (std::sync::Arc::clone(&kills), scope.clone(), kill.clone());
            // Saving fsyncs: off the async threads.
            tokio::task::spawn_blocking(move || switch.kill(saved_scope, saved_kill))
                .await
                .map_err(|e| failed(std::io::Error::other(e)))?
                .map_err(failed)?;
            tracing::warn!(?scope, reason = %kill.reason, by = %kill.by, "killed");
            record(shared, json!({"kind": "kill", "scope": scope, "reason": kill.reason, "by": kill.by}))
                .await;
            json!({"ok": true, "scope": scope})
        }
        "revive" => {
            let scope = scope(fields)?;
            let (switch, saved_scope) = (std::sync::Arc::clone(&kills), scope.clone());
            let was_killed = tokio::task::spawn_blocking(move || switch.revive(&saved_scope))
                .await
                .map_err(|e| failed(std::io::Error::other(e)))?
                .map_err(failed)?;
            // A revived session gets a fresh error streak (its cost stays:
            // raising `maxCost` is how a session gets more budget).
            if let KillScope::Session { agent, session } = &scope {
                let engine = shared.engine.load_full();
                let (agent, session) = (agent.clone(), session.clone());
                let _ =
                    tokio::task::spawn_blocking(move || engine.clear_error_streak(&agent, &session)).await;
            }
            tracing::warn!(?scope, was_killed, uid, "revived");
            record(shared, json!({"kind": "revive", "scope": scope, "by": format!("uid {uid}"), "was_killed": was_killed})).await;
            json!({"ok": true, "scope": scope, "was_killed": was_killed})
        }
        "approvals" => json!(shared.state.approvals.pending()),
        "approve" | "reject" => {
            let id = text(fields, "approval")?
                .ok_or_else(|| invalid("`approval` (the id) is required"))?
                .to_owned();
            let by = text(fields, "as")?
                .ok_or_else(|| invalid("`as` (the approver's name) is required"))?
                .to_owned();
            let grant = op == "approve";
            let ledger = std::sync::Arc::clone(&shared.state.approvals);
            let (decided_id, decided_by) = (id.clone(), by.clone());
            let decided = tokio::task::spawn_blocking(move || ledger.decide(&decided_id, &decided_by, grant))
                .await
                .map_err(|e| failed(std::io::Error::other(e)))?
                .map_err(|e| WireError::new(WireErrorCode::InvalidRequest, e.to_string()))?;
            tracing::warn!(approval = %id, %by, uid, grant, "approval decided");
            record(shared, json!({"kind": "approval", "approval": id, "granted": grant, "by": format!("{by} (uid {uid})"), "binding": decided.binding})).await;
            json!({"ok": true, "approval": decided})
        }
        _ => json!(
            kills
                .list()
                .into_iter()
                .map(|(scope, kill)| json!({"scope": scope, "kill": kill}))
                .collect::<Vec<_>>()
        ),
    };
    Ok(answer)
}

async fn record(shared: &Shared, value: Value) {
    let Some(audit) = &shared.audit else { return };
    let Value::Object(mut record) = value else { return };
    record.insert(
        "time".into(),
        Value::from(humantime::format_rfc3339_micros(std::time::SystemTime::now()).to_string()),
    );
    if let Err(error) = audit.write(vec![record]).await {
        tracing::error!(%error, "cannot record the kill switch change in the audit trail");
    }
}

/// The `outcome` operation (decision socket): a gateway reports a call's
/// result. `{"op": "outcome", "agent", "session", "tool"?, "status": "ok" |
/// "error", "cost"?, "latency_ms"?, "output_bytes"?, "output_sha256"?}`.
pub async fn outcome(shared: &Shared, fields: &Map<String, Value>) -> Result<Value, WireError> {
    let agent = text(fields, "agent")?.ok_or_else(|| invalid("`agent` is required"))?.to_owned();
    let session = text(fields, "session")?.ok_or_else(|| invalid("`session` is required"))?.to_owned();
    let error = match text(fields, "status")? {
        Some("ok") => false,
        Some("error") => true,
        _ => return Err(invalid("`status` must be `ok` or `error`")),
    };
    let cost = match fields.get("cost") {
        None | Some(Value::Null) => 0.0,
        Some(value) => value
            .as_f64()
            .filter(|c| c.is_finite() && *c >= 0.0)
            .ok_or_else(|| invalid("`cost` must be a number, 0 or more"))?,
    };
    let outcome = crate::state::session::CallOutcome { error, cost_micros: (cost * 1e6).round() as u64 };
    let engine = shared.engine.load_full();
    let (report_agent, report_session) = (agent.clone(), session.clone());
    let report =
        tokio::task::spawn_blocking(move || engine.record_outcome(&report_agent, &report_session, outcome))
            .await
            .map_err(|e| WireError::new(WireErrorCode::Unavailable, format!("recording failed: {e}")))?
            .map_err(|e| match e {
                crate::engine::OutcomeError::UnknownAgent => {
                    invalid(format!("no policy for agent `{agent}`"))
                }
                crate::engine::OutcomeError::StateUnavailable => {
                    WireError::new(WireErrorCode::Unavailable, "session state is unavailable")
                }
            })?;
    let mut recorded = fields.clone();
    recorded.remove("op");
    recorded.insert("kind".into(), Value::from("outcome"));
    record(shared, Value::Object(recorded)).await;
    if let Some((rule, reason)) = &report.trip {
        tracing::warn!(%agent, %session, %rule, %reason, "limit tripped; session killed");
        record(shared, json!({"kind": "incident", "agent": agent, "session": session, "rule": rule, "reason": reason, "action": "kill"})).await;
    }
    Ok(json!({
        "recorded": true,
        "consecutive_errors": report.totals.consecutive_errors,
        "cost": report.totals.cost_micros as f64 / 1e6,
        "killed": report.killed,
    }))
}
