//! The records of the audit trail: decisions, refused lines, reloads,
//! operator actions and reported outcomes. Each is a JSON object; the
//! writer adds `seq`, `prev` and `hash`. Times are given by the caller
//! (from the state's clock).

use crate::compiler::privacy::Source;
use serde::Serialize;
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

/// A record as the writer takes it: the JSON text of an object,
/// serialised on the caller's thread.
pub type Encoded = Vec<u8>;

/// Serialises a record.
pub fn encode(record: &Record) -> Encoded {
    // A map of strings to JSON values always serialises.
    serde_json::to_vec(record).unwrap_or_else(|_| b"{}".to_vec())
}

/// A decision record, serialised straight from the decision and the
/// request (no intermediate map: the trail is on the hot path).
#[derive(Serialize)]
struct DecisionRecord<'a> {
    time: &'a str,
    kind: &'static str,
    id: &'a Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    decision_id: Option<&'a str>,
    agent: &'a str,
    tool: &'a str,
    session: Option<&'a str>,
    decision: &'static str,
    rule: &'a str,
    reason: String,
    reason_code: &'static str,
    approver: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    approval: Option<ApprovalCited<'a>>,
    audit: &'static str,
    policy: &'a str,
    latency_us: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    args: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    principal: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    context: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    arg_names: Option<Vec<&'a str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    principal_keys: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    context_keys: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    fields: Option<Value>,
}

/// The approval a decision opened or used: it links the answer to the
/// approval's grant in the trail.
#[derive(Serialize)]
struct ApprovalCited<'a> {
    id: &'a str,
    state: &'a str,
}

/// What a decision record says besides the request and the decision.
#[derive(Clone, Copy, Debug)]
pub struct DecisionContext<'a> {
    /// When (RFC 3339).
    pub time: &'a str,
    /// The request line's `id`.
    pub id: &'a Value,
    /// The decision's id, for its `outcome`.
    pub decision_id: Option<&'a str>,
    /// The approval opened or used, as id and state.
    pub approval: Option<(&'a str, &'a str)>,
    /// The policy hash.
    pub policy: &'a str,
    /// How long deciding took.
    pub latency_us: f64,
}

/// The record of a decision (and of the approval it opened or used, as
/// id and state), with as much of the request as its audit
/// level asks for: `full` keeps arguments, principal and context;
/// `metadata` keeps the names of arguments and of principal and context
/// fields, and the values its `auditFields` name; `none` none of it.
/// Values the decision's `sensitiveArgs` name are recorded as `"[redacted]"`.
pub fn decision(context: DecisionContext<'_>, request: &Request, decision: &Decision<'_>) -> Encoded {
    let privacy = decision.privacy;
    let value = |source: Source| match source {
        Source::Args => Value::Object(request.args.clone()),
        Source::Principal => request.principal.clone().unwrap_or(Value::Null),
        Source::Context => request.context.clone().unwrap_or(Value::Null),
    };
    let keys = |object: &Option<Value>| match object {
        Some(Value::Object(map)) => map.keys().cloned().collect(),
        _ => Value::Null,
    };
    let mut record = DecisionRecord {
        time: context.time,
        kind: "decision",
        id: context.id,
        decision_id: context.decision_id,
        agent: &request.agent,
        tool: &request.tool,
        session: request.session.as_deref(),
        decision: decision.outcome.as_str(),
        rule: decision.rule,
        reason: decision.reason.to_string(),
        reason_code: decision.reason.code().as_str(),
        approver: decision.approver,
        approval: context.approval.map(|(id, state)| ApprovalCited { id, state }),
        audit: decision.audit.as_str(),
        policy: context.policy,
        latency_us: context.latency_us,
        args: None,
        principal: None,
        context: None,
        arg_names: None,
        principal_keys: None,
        context_keys: None,
        fields: None,
    };
    match decision.audit {
        AuditLevel::Full => {
            record.args = Some(privacy.redacted(Source::Args, &value(Source::Args)));
            record.principal = Some(privacy.redacted(Source::Principal, &value(Source::Principal)));
            record.context = Some(privacy.redacted(Source::Context, &value(Source::Context)));
        }
        AuditLevel::Metadata => {
            // Names, not values: `principal` and `context` are free-form (an
            // e-mail, an SSN, a prompt); `auditFields` asks for values.
            record.arg_names = Some(request.args.keys().map(String::as_str).collect());
            record.principal_keys = Some(keys(&request.principal));
            record.context_keys = Some(keys(&request.context));
            if !privacy.recorded.is_empty() {
                record.fields = Some(Value::Object(privacy.recorded_fields(value)));
            }
        }
        AuditLevel::None => {}
    }
    serde_json::to_vec(&record).unwrap_or_else(|_| b"{}".to_vec())
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
