//! The records of the audit trail: decisions, refused lines, reloads,
//! operator actions and reported outcomes. Each is a JSON object; the
//! writer adds `seq`, `prev` and `hash`. Times are given by the caller
//! (from the state's clock).

use crate::compiler::privacy::Source;
use serde_json::{Map, Value, json};

use crate::compiler::ast::AuditLevel;
use crate::engine::{Decision, Request};

/// A record as written.
pub type Record = Map<String, Value>;

fn object(value: Value) -> Record {
    match value {
        Value::Object(map) => map,
        _ => Map::new(),
    }
}

/// The record of a decision (and of the approval it opened or used, as
/// id and state), with as much of the request as its audit
/// level asks for: `full` keeps arguments, principal and context;
/// `metadata` keeps the names of arguments and of principal and context
/// fields, and the values its `auditFields` name; `none` none of it.
/// Values the decision's `sensitiveArgs` name are recorded as `"[redacted]"`.
pub fn decision(
    time: &str,
    id: &Value,
    request: &Request,
    decision: &Decision<'_>,
    approval: Option<(&str, &str)>,
    policy: &str,
    latency_us: f64,
) -> Record {
    let mut record = object(json!({
        "time": time,
        "kind": "decision",
        "id": id,
        "agent": request.agent,
        "tool": request.tool,
        "session": request.session,
        "decision": decision.outcome.as_str(),
        "rule": decision.rule,
        "reason": decision.reason.to_string(),
        "reason_code": decision.reason.code().as_str(),
        "approver": decision.approver,
        "audit": decision.audit.as_str(),
        "policy": policy,
        "latency_us": latency_us,
    }));
    // The approval this answer opened or used: it links the answer to the
    // approval's grant in the trail.
    if let Some((approval, state)) = approval {
        record.insert("approval".into(), json!({"id": approval, "state": state}));
    }
    let privacy = decision.privacy;
    let value = |source: Source| match source {
        Source::Args => Value::Object(request.args.clone()),
        Source::Principal => request.principal.clone().unwrap_or(Value::Null),
        Source::Context => request.context.clone().unwrap_or(Value::Null),
    };
    match decision.audit {
        AuditLevel::Full => {
            for source in [Source::Args, Source::Principal, Source::Context] {
                record.insert(source.as_str().into(), privacy.redacted(source, &value(source)));
            }
        }
        AuditLevel::Metadata => {
            // Names, not values: `principal` and `context` are free-form (an
            // e-mail, an SSN, a prompt); `auditFields` asks for values.
            record.insert("arg_names".into(), request.args.keys().cloned().collect());
            let keys = |object: &Option<Value>| match object {
                Some(Value::Object(map)) => map.keys().cloned().collect(),
                _ => Value::Null,
            };
            record.insert("principal_keys".into(), keys(&request.principal));
            record.insert("context_keys".into(), keys(&request.context));
            if !privacy.recorded.is_empty() {
                record.insert("fields".into(), Value::Object(privacy.recorded_fields(value)));
            }
        }
        AuditLevel::None => {}
    }
    record
}

/// The record of a request line refused with an error (never an allow).
pub fn error(time: &str, id: &Value, code: &str, message: &str) -> Record {
    object(
        json!({"time": time, "kind": "error", "id": id, "decision": "deny", "code": code, "message": message}),
    )
}

/// The record of a reload attempt.
pub fn reload(time: &str, trigger: &str, ok: bool, policy: &str, errors: &[String]) -> Record {
    object(
        json!({"time": time, "kind": "reload", "trigger": trigger, "ok": ok, "policy": policy, "errors": errors}),
    )
}

/// The record of something else that happened (`kind` and its fields):
/// operator actions, outcomes, incidents.
pub fn event(time: &str, kind: &str, fields: Value) -> Record {
    let mut record = object(json!({"time": time, "kind": kind}));
    record.extend(object(fields));
    record
}
