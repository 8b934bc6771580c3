//! Decoding request lines into typed operations: one decoder for every
//! operation, strict about fields (an unknown field is refused, with the
//! field the client probably meant).

use serde_json::{Map, Value};

use super::strict::{self, StrictMap, StrictValue};
use super::{CallReport, CallStatus, Op, OpKind, WireError, WireErrorCode};
use crate::compiler::catalog::Hints;
use crate::compiler::names::{self, Name};
use crate::engine::Request;
use crate::state::kill::KillScope;

/// A parsed line: the echoed id, the operation it names, and the decoded
/// operation or why there is none.
#[derive(Clone, Debug, PartialEq)]
pub struct ParsedLine {
    /// The request's `id`, echoed in the answer (`null` if absent).
    pub id: Value,
    /// The operation the line names, if it names a known one (`decide`
    /// when it names none): whether a client may ask for it is decided on
    /// this, before its fields.
    pub kind: Option<OpKind>,
    /// The operation, or why the line is not a valid one.
    pub op: Result<Op, WireError>,
}

/// A well-formed decide request, parsed in one pass (the common case).
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct DecideLine {
    #[serde(default)]
    id: StrictValue,
    #[serde(default)]
    op: Option<String>,
    agent: String,
    tool: String,
    #[serde(default)]
    args: Option<StrictMap>,
    #[serde(default)]
    session: Option<String>,
    #[serde(default)]
    principal: Option<StrictValue>,
    #[serde(default)]
    context: Option<StrictValue>,
    #[serde(default)]
    approval: Option<String>,
    #[serde(default)]
    annotations: Option<StrictMap>,
}

/// Parses one request line.
pub fn parse_line(line: &str) -> ParsedLine {
    // The typed parse accepts exactly the well-formed decide requests; any
    // other line goes the long way, which says precisely what is wrong.
    if let Ok(fast) = serde_json::from_str::<DecideLine>(line) {
        let objects =
            [&fast.principal, &fast.context].iter().all(|v| v.as_ref().is_none_or(|v| v.0.is_object()));
        if fast.op.as_deref().is_none_or(|op| op == "decide") && objects {
            let request = Request {
                agent: fast.agent,
                tool: fast.tool,
                args: fast.args.map(|a| a.0).unwrap_or_default(),
                session: fast.session,
                principal: fast.principal.map(|v| v.0),
                context: fast.context.map(|v| v.0),
                approval: fast.approval,
                annotations: fast.annotations.map(|a| Hints::from_annotations(Some(&a.0))),
            };
            let op = checked_names(&request).map(|()| Op::Decide(request));
            return ParsedLine { id: fast.id.0, kind: Some(OpKind::Decide), op };
        }
    }
    let mut object = match serde_json::from_str::<StrictValue>(line) {
        Ok(StrictValue(Value::Object(object))) => object,
        Ok(_) => return refused(Value::Null, None, invalid_request("request must be a JSON object")),
        Err(e) if e.to_string().starts_with(strict::DUPLICATE_KEY) => {
            let error =
                WireError::new(WireErrorCode::DuplicateKey, format!("{e}: a request may name each key once"));
            return refused(Value::Null, None, error);
        }
        Err(e) => {
            let error = WireError::new(WireErrorCode::InvalidJson, format!("invalid JSON: {e}"));
            return refused(Value::Null, None, error);
        }
    };
    let id = object.remove("id").unwrap_or(Value::Null);
    let kind = match object.get("op") {
        None | Some(Value::Null) => OpKind::Decide,
        Some(Value::String(name)) => match OpKind::named(name) {
            Some(kind) => kind,
            None => {
                let error = WireError::new(WireErrorCode::UnknownOp, format!("unknown op `{name}`"));
                return refused(id, None, error);
            }
        },
        Some(_) => return refused(id, None, invalid_field("`op` must be a string")),
    };
    object.remove("op");
    ParsedLine { id, kind: Some(kind), op: decode(kind, object) }
}

/// The decoded request of a `decide` line given as a JSON value (test
/// cases, the differential oracle).
pub fn request_from_json(value: &Value) -> Result<Request, WireError> {
    let Value::Object(object) = value else { return Err(invalid_request("request must be a JSON object")) };
    let mut object = object.clone();
    object.remove("id");
    match object.remove("op") {
        None | Some(Value::Null) => {}
        Some(Value::String(op)) if op == "decide" => {}
        Some(other) => return Err(invalid_request(format!("a request must decide, not `{other}`"))),
    }
    match decode(OpKind::Decide, object)? {
        Op::Decide(request) => Ok(request),
        _ => Err(invalid_request("a request must decide")),
    }
}

/// Refuses names with characters or a length names may not have.
fn checked_names(request: &Request) -> Result<(), WireError> {
    check_name(Name::Agent, &request.agent)?;
    check_name(Name::Tool, &request.tool)?;
    request.session.as_deref().map_or(Ok(()), |session| check_name(Name::Session, session))
}

fn check_name(what: Name, name: &str) -> Result<(), WireError> {
    match names::name_problem(what, name) {
        Some(problem) => Err(WireError::new(WireErrorCode::InvalidName, problem)),
        None => Ok(()),
    }
}

fn refused(id: Value, kind: Option<OpKind>, error: WireError) -> ParsedLine {
    ParsedLine { id, kind, op: Err(error) }
}

fn invalid_request(message: impl Into<String>) -> WireError {
    WireError::new(WireErrorCode::InvalidRequest, message)
}

fn missing_field(message: impl Into<String>) -> WireError {
    WireError::new(WireErrorCode::MissingField, message)
}

fn invalid_field(message: impl Into<String>) -> WireError {
    WireError::new(WireErrorCode::InvalidField, message)
}

/// The fields each operation may carry, besides `id` and `op`.
fn fields_of(kind: OpKind) -> &'static [&'static str] {
    match kind {
        OpKind::Decide => {
            &["agent", "tool", "args", "session", "principal", "context", "approval", "annotations"]
        }
        OpKind::Outcome => &[
            "decision_id",
            "agent",
            "session",
            "tool",
            "status",
            "cost",
            "latency_ms",
            "output_bytes",
            "output_sha256",
        ],
        OpKind::Kill => &["scope", "agent", "session", "reason", "by"],
        OpKind::Revive => &["scope", "agent", "session"],
        OpKind::Approve | OpKind::Reject => &["approval", "as", "comment"],
        OpKind::Visible => &["agent", "tools", "annotations"],
        OpKind::Drift => &["server", "tools"],
        OpKind::Result => &["kind", "decision_id", "agent", "session", "tool", "result", "outputSchema"],
        OpKind::Scope => &["server"],
        OpKind::Confirm => &["approval", "accept"],
        OpKind::Health | OpKind::Status | OpKind::Reload | OpKind::Kills | OpKind::Approvals => &[],
    }
}

fn decode(kind: OpKind, object: Map<String, Value>) -> Result<Op, WireError> {
    let op = decode_fields(kind, Fields::new(kind, object)?)?;
    match &op {
        Op::Decide(request) => checked_names(request)?,
        Op::Outcome(report) => {
            check_name(Name::Agent, &report.agent)?;
            check_name(Name::Session, &report.session)?;
            report.tool.as_deref().map_or(Ok(()), |tool| check_name(Name::Tool, tool))?;
        }
        Op::Kill { scope, .. } | Op::Revive { scope } => match scope {
            KillScope::All => {}
            KillScope::Agent { agent } => check_name(Name::Agent, agent)?,
            KillScope::Session { agent, session } => {
                check_name(Name::Agent, agent)?;
                check_name(Name::Session, session)?;
            }
        },
        _ => {}
    }
    Ok(op)
}

fn decode_fields(kind: OpKind, mut fields: Fields) -> Result<Op, WireError> {
    Ok(match kind {
        OpKind::Decide => Op::Decide(Request {
            agent: fields.required_string("agent")?,
            tool: fields.required_string("tool")?,
            args: fields.object("args")?.unwrap_or_default(),
            session: fields.string("session")?,
            principal: fields.object("principal")?.map(Value::Object),
            context: fields.object("context")?.map(Value::Object),
            approval: fields.string("approval")?,
            annotations: fields.object("annotations")?.map(|a| Hints::from_annotations(Some(&a))),
        }),
        OpKind::Outcome => Op::Outcome(CallReport {
            decision_id: fields.required_string("decision_id")?,
            agent: fields.required_string("agent")?,
            session: fields.required_string("session")?,
            tool: fields.string("tool")?,
            status: match fields.string("status")?.as_deref() {
                Some("ok") => CallStatus::Ok,
                Some("error") => CallStatus::Error,
                _ => return Err(invalid_field("`status` must be `ok` or `error`")),
            },
            cost: fields.amount("cost")?,
            latency_ms: fields.amount("latency_ms")?,
            output_bytes: fields.count("output_bytes")?,
            output_sha256: fields.string("output_sha256")?,
        }),
        OpKind::Health => Op::Health,
        OpKind::Status => Op::Status,
        OpKind::Reload => Op::Reload,
        OpKind::Kill => Op::Kill {
            scope: fields.scope()?,
            reason: fields.string("reason")?.ok_or_else(|| missing_field("`reason` is required: say why"))?,
            by: fields.string("by")?,
        },
        OpKind::Revive => Op::Revive { scope: fields.scope()? },
        OpKind::Kills => Op::Kills,
        OpKind::Approvals => Op::Approvals,
        OpKind::Approve | OpKind::Reject => Op::DecideApproval {
            approval: fields
                .string("approval")?
                .ok_or_else(|| missing_field("`approval` (the id) is required"))?,
            by: fields.string("as")?,
            grant: kind == OpKind::Approve,
            comment: fields.comment()?,
        },
        OpKind::Visible => Op::Visible {
            agent: fields.required_string("agent")?,
            tools: fields.strings("tools", MAX_VISIBLE)?,
            annotations: fields.annotations()?,
        },
        OpKind::Drift => {
            Op::Drift { server: fields.string("server")?, tools: fields.list("tools", MAX_VISIBLE)? }
        }
        OpKind::Result => Op::Result {
            kind: fields.string("kind")?,
            decision_id: fields.string("decision_id")?,
            agent: fields.required_string("agent")?,
            session: fields.string("session")?,
            tool: fields.string("tool")?,
            result: Value::Object(
                fields
                    .object("result")?
                    .ok_or_else(|| missing_field("`result` (the tool result) is required"))?,
            ),
            output_schema: fields.object("outputSchema")?.map(Value::Object),
        },
        OpKind::Scope => Op::Scope { server: fields.required_string("server")? },
        OpKind::Confirm => Op::Confirm {
            approval: fields.required_string("approval")?,
            accept: match fields.object.remove("accept") {
                Some(Value::Bool(accept)) => accept,
                None | Some(Value::Null) => return Err(missing_field("`accept` is required")),
                Some(_) => return Err(invalid_field("`accept` must be true or false")),
            },
        },
    })
}

/// The most tool names one `visible` may ask about, and tools one `drift`
/// may report.
pub const MAX_VISIBLE: usize = 10_000;

/// The longest comment an approver may give with a decision, in bytes.
pub const MAX_COMMENT: usize = 2_000;

/// A line's fields, checked against the operation's.
struct Fields {
    object: Map<String, Value>,
}

impl Fields {
    fn new(kind: OpKind, object: Map<String, Value>) -> Result<Fields, WireError> {
        let known = fields_of(kind);
        // An unknown field is most likely a typo (`arg` for `args`); ignoring
        // it would act on less than the client meant to send, so it is refused.
        if let Some(unknown) = object.keys().find(|k| !known.contains(&k.as_str())) {
            let hint = crate::diagnostic::suggest(unknown, known.iter().copied())
                .map_or_else(String::new, |best| format!("; did you mean `{best}`?"));
            return Err(invalid_request(format!("unknown field `{unknown}`{hint}")));
        }
        Ok(Fields { object })
    }

    fn string(&mut self, key: &str) -> Result<Option<String>, WireError> {
        match self.object.remove(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(_) => Err(invalid_field(format!("`{key}` must be a string"))),
        }
    }

    /// `comment` of `approve` and `reject`: at most [`MAX_COMMENT`] bytes.
    fn comment(&mut self) -> Result<Option<String>, WireError> {
        let comment = self.string("comment")?;
        match comment {
            Some(text) if text.len() > MAX_COMMENT => {
                Err(invalid_field(format!("`comment` is longer than {MAX_COMMENT} bytes")))
            }
            comment => Ok(comment),
        }
    }

    fn required_string(&mut self, key: &str) -> Result<String, WireError> {
        self.string(key)?.ok_or_else(|| missing_field(format!("`{key}` is required")))
    }

    fn object(&mut self, key: &str) -> Result<Option<Map<String, Value>>, WireError> {
        match self.object.remove(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Object(object)) => Ok(Some(object)),
            Some(_) => Err(invalid_field(format!("`{key}` must be an object"))),
        }
    }

    /// `annotations` of `visible`: an object of annotation objects by
    /// tool name (optional).
    fn annotations(&mut self) -> Result<std::collections::HashMap<String, Hints>, WireError> {
        let invalid = || invalid_field("`annotations` must be an object of annotation objects by tool name");
        let Some(by_tool) = self.object("annotations").map_err(|_| invalid())? else {
            return Ok(Default::default());
        };
        if by_tool.len() > MAX_VISIBLE {
            return Err(invalid());
        }
        by_tool
            .into_iter()
            .map(|(tool, annotations)| match annotations {
                Value::Object(annotations) => Ok((tool, Hints::from_annotations(Some(&annotations)))),
                _ => Err(invalid()),
            })
            .collect()
    }

    /// A list of at most `max` strings (required).
    fn strings(&mut self, key: &str, max: usize) -> Result<Vec<String>, WireError> {
        let invalid = || invalid_field(format!("`{key}` must be a list of at most {max} strings"));
        match self.object.remove(key) {
            None | Some(Value::Null) => Err(missing_field(format!("`{key}` is required"))),
            Some(Value::Array(items)) if items.len() <= max => items
                .into_iter()
                .map(|item| match item {
                    Value::String(s) => Ok(s),
                    _ => Err(invalid()),
                })
                .collect(),
            Some(_) => Err(invalid()),
        }
    }

    /// A list of at most `max` values (required).
    fn list(&mut self, key: &str, max: usize) -> Result<Vec<Value>, WireError> {
        match self.object.remove(key) {
            None | Some(Value::Null) => Err(missing_field(format!("`{key}` is required"))),
            Some(Value::Array(items)) if items.len() <= max => Ok(items),
            Some(_) => Err(invalid_field(format!("`{key}` must be a list of at most {max} values"))),
        }
    }

    /// A finite number, 0 or more.
    fn amount(&mut self, key: &str) -> Result<Option<f64>, WireError> {
        match self.object.remove(key) {
            None | Some(Value::Null) => Ok(None),
            Some(value) => value
                .as_f64()
                .filter(|n| n.is_finite() && *n >= 0.0)
                .map(Some)
                .ok_or_else(|| invalid_field(format!("`{key}` must be a number, 0 or more"))),
        }
    }

    /// A whole number, 0 or more.
    fn count(&mut self, key: &str) -> Result<Option<u64>, WireError> {
        match self.object.remove(key) {
            None | Some(Value::Null) => Ok(None),
            Some(value) => value
                .as_u64()
                .map(Some)
                .ok_or_else(|| invalid_field(format!("`{key}` must be a whole number, 0 or more"))),
        }
    }

    /// The scope a kill or revive names: `{"scope": "all"}`,
    /// `{"scope": "agent", "agent"}` or `{"scope": "session", "agent",
    /// "session"}`. A field the scope does not use is refused: a revive of
    /// `agent` with a `session` would revive more than was meant.
    fn scope(&mut self) -> Result<KillScope, WireError> {
        let scope = self.string("scope")?;
        let agent = self.string("agent")?;
        let session = self.string("session")?;
        let unused = |field: &str, scope: &str| {
            invalid_field(format!(
                "`{field}` does not belong to scope `{scope}`; leave it out, or use scope `session`"
            ))
        };
        match (scope.as_deref(), agent, session) {
            (Some("all"), None, None) => Ok(KillScope::All),
            (Some("agent"), Some(agent), None) => Ok(KillScope::Agent { agent }),
            (Some("session"), Some(agent), Some(session)) => Ok(KillScope::Session { agent, session }),
            (Some("all"), Some(_), _) => Err(unused("agent", "all")),
            (Some(scope @ ("all" | "agent")), _, Some(_)) => Err(unused("session", scope)),
            (Some("agent" | "session"), None, _) => Err(missing_field("`agent` is required for this scope")),
            (Some("session"), Some(_), None) => {
                Err(missing_field("`session` is required for scope `session`"))
            }
            (Some(other), _, _) => {
                Err(invalid_field(format!("unknown scope `{other}`; use `all`, `agent` or `session`")))
            }
            (None, _, _) => Err(missing_field("`scope` is required: `all`, `agent` or `session`")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_lines_get_errors_with_the_id() {
        let cases = [
            ("not json", Value::Null, WireErrorCode::InvalidJson),
            ("[1]", Value::Null, WireErrorCode::InvalidRequest),
            (r#"{"id": 7, "tool": "t"}"#, Value::from(7), WireErrorCode::MissingField),
            (r#"{"id": "x", "agent": "a", "tool": 3}"#, Value::from("x"), WireErrorCode::InvalidField),
            (r#"{"agent": "a", "tool": "t", "args": [1]}"#, Value::Null, WireErrorCode::InvalidField),
            (r#"{"agent": "a", "tool": "t", "session": 5}"#, Value::Null, WireErrorCode::InvalidField),
            (r#"{"agent": "a", "tool": "t", "principal": "me"}"#, Value::Null, WireErrorCode::InvalidField),
            (
                r#"{"id": 2, "agent": "a", "tool": "t", "arg": {"limit": 500}}"#,
                Value::from(2),
                WireErrorCode::InvalidRequest,
            ),
            (r#"{"id": 3, "op": "launch"}"#, Value::from(3), WireErrorCode::UnknownOp),
            (r#"{"op": "health", "agent": "a"}"#, Value::Null, WireErrorCode::InvalidRequest),
            (r#"{"op": "kill", "scope": "agent", "reason": "r"}"#, Value::Null, WireErrorCode::MissingField),
            (
                r#"{"op": "revive", "scope": "agent", "agent": "a", "session": "s"}"#,
                Value::Null,
                WireErrorCode::InvalidField,
            ),
            (r#"{"op": "revive", "scope": "all", "agent": "a"}"#, Value::Null, WireErrorCode::InvalidField),
            (
                r#"{"op": "outcome", "decision_id": "1.0", "agent": "a", "session": "s", "status": "fine"}"#,
                Value::Null,
                WireErrorCode::InvalidField,
            ),
            (
                r#"{"op": "outcome", "decision_id": "1.0", "agent": "a", "session": "s", "status": "ok", "cost": -1}"#,
                Value::Null,
                WireErrorCode::InvalidField,
            ),
        ];
        for (text, id, code) in cases {
            let line = parse_line(text);
            assert_eq!(line.id, id, "{text}");
            assert_eq!(line.op.expect_err(text).code, code, "{text}");
        }
    }

    #[test]
    fn every_operation_decodes() {
        let cases = [
            (r#"{"agent": "a", "tool": "t"}"#, OpKind::Decide),
            (
                r#"{"op": "outcome", "decision_id": "1.0", "agent": "a", "session": "s", "status": "error", "cost": 0.5, "output_bytes": 10}"#,
                OpKind::Outcome,
            ),
            (r#"{"op": "health"}"#, OpKind::Health),
            (r#"{"op": "status"}"#, OpKind::Status),
            (r#"{"op": "reload"}"#, OpKind::Reload),
            (
                r#"{"op": "kill", "scope": "session", "agent": "a", "session": "s", "reason": "r"}"#,
                OpKind::Kill,
            ),
            (r#"{"op": "revive", "scope": "all"}"#, OpKind::Revive),
            (r#"{"op": "kills"}"#, OpKind::Kills),
            (r#"{"op": "approvals"}"#, OpKind::Approvals),
            (r#"{"op": "approve", "approval": "apr_1", "as": "me"}"#, OpKind::Approve),
            (r#"{"op": "reject", "approval": "apr_1", "as": "me"}"#, OpKind::Reject),
        ];
        for (text, kind) in cases {
            let line = parse_line(text);
            assert_eq!(line.kind, Some(kind), "{text}");
            assert_eq!(line.op.map(|op| op.kind()), Ok(kind), "{text}");
        }
    }

    #[test]
    fn args_default_to_an_empty_object() {
        let line = parse_line(r#"{"agent": "a", "tool": "t"}"#);
        let Ok(Op::Decide(request)) = line.op else { panic!("decide") };
        assert!(request.args.is_empty());
    }
}
