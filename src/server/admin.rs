//! The admin operations: kill, revive, and list kills. Only connections on
//! the admin socket from an allowed user reach here.

use serde_json::{Map, Value, json};

use super::Shared;
use crate::kill::{Kill, KillScope};
use crate::wire::{WireError, WireErrorCode};

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
    let kills = std::sync::Arc::clone(shared.engine.load().kills());
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
            let kill = Kill {
                reason: reason.to_owned(),
                by,
                at: humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
            };
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
            tracing::warn!(?scope, was_killed, uid, "revived");
            record(shared, json!({"kind": "revive", "scope": scope, "by": format!("uid {uid}"), "was_killed": was_killed})).await;
            json!({"ok": true, "scope": scope, "was_killed": was_killed})
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
