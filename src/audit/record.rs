//! The records of the audit trail: decisions, refused lines, reloads.

use std::time::SystemTime;

use serde_json::{Map, Value, json};

use crate::compiler::ast::AuditLevel;
use crate::engine::{Decision, Request};

fn now() -> String {
    humantime::format_rfc3339_micros(SystemTime::now()).to_string()
}

fn object(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        _ => Map::new(),
    }
}

/// The record of a decision, with as much of the request as its audit
/// level asks for: `full` keeps arguments, principal and context;
/// `metadata` keeps the argument names and the principal; `none` neither.
/// Values the policy marks sensitive (`sensitiveArgs`) are recorded as
/// `"[redacted]"`.
pub fn decision_record(
    id: &Value,
    request: &Request,
    decision: &Decision<'_>,
    engine: &crate::engine::Engine,
    latency_us: f64,
) -> Map<String, Value> {
    let policy = engine.policy_hash();
    let mut record = object(json!({
        "time": now(),
        "kind": "decision",
        "id": id,
        "agent": request.agent,
        "tool": request.tool,
        "session": request.session,
        "decision": decision.outcome.as_str(),
        "rule": decision.rule,
        "reason": decision.reason.to_string(),
        "approver": decision.approver,
        "audit": decision.audit.as_str(),
        "policy": policy,
        "latency_us": latency_us,
    }));
    match decision.audit {
        AuditLevel::Full => {
            record.insert("args".into(), Value::Object(engine.redacted_args(&request.agent, &request.args)));
            record.insert("principal".into(), request.principal.clone().unwrap_or(Value::Null));
            record.insert("context".into(), request.context.clone().unwrap_or(Value::Null));
        }
        AuditLevel::Metadata => {
            record.insert("arg_names".into(), request.args.keys().cloned().collect());
            record.insert("principal".into(), request.principal.clone().unwrap_or(Value::Null));
        }
        AuditLevel::None => {}
    }
    record
}

/// The record of a request line refused with an error (never an allow).
pub fn error_record(id: &Value, code: &str, message: &str) -> Map<String, Value> {
    object(
        json!({"time": now(), "kind": "error", "id": id, "decision": "deny", "code": code, "message": message}),
    )
}

/// The record of a reload attempt.
pub fn reload_record(trigger: &str, ok: bool, policy: &str, errors: &[String]) -> Map<String, Value> {
    object(
        json!({"time": now(), "kind": "reload", "trigger": trigger, "ok": ok, "policy": policy, "errors": errors}),
    )
}
