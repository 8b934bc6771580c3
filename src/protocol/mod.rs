//! The wire protocol of `toolgate eval` and the decision socket: one JSON
//! object per line in, one per line out, in order.
//!
//! Request: `{"id": <any>, "agent": "...", "tool": "...", "args": {...},
//! "session": "...", "principal": {...}, "context": {...}}`; `args` defaults
//! to `{}`, `op` to `"decide"`. Response: `{"id", "decision", "rule",
//! "reason", "approver"?, "audit", "policy"}`. A line that cannot be decided
//! gets `{"id", "decision": "deny", "error": {"code", "message"}}`.
//!
//! Framing ([`read_line`]) bounds every line: a longer one is consumed up to
//! its newline and answered with `line_too_long`, so the stream stays in step.

use serde::Serialize;
use serde_json::{Map, Value};
use tokio::io::{AsyncBufRead, AsyncBufReadExt};

use crate::engine::{Decision, Request};

/// A request line that could not be turned into a request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WireError {
    /// A stable, machine-readable code.
    pub code: WireErrorCode,
    /// What is wrong.
    pub message: String,
}

/// The codes of [`WireError`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WireErrorCode {
    /// The line is not JSON.
    InvalidJson,
    /// The line is JSON but not an object.
    InvalidRequest,
    /// A required field is absent.
    MissingField,
    /// A field has the wrong type.
    InvalidField,
    /// `op` names no operation.
    UnknownOp,
    /// The line is longer than the limit.
    LineTooLong,
    /// The server could not decide (e.g. no policy loaded).
    Unavailable,
}

impl WireErrorCode {
    /// The code as sent.
    pub fn as_str(self) -> &'static str {
        match self {
            WireErrorCode::InvalidJson => "invalid_json",
            WireErrorCode::InvalidRequest => "invalid_request",
            WireErrorCode::MissingField => "missing_field",
            WireErrorCode::InvalidField => "invalid_field",
            WireErrorCode::UnknownOp => "unknown_op",
            WireErrorCode::LineTooLong => "line_too_long",
            WireErrorCode::Unavailable => "unavailable",
        }
    }
}

impl WireError {
    /// An error with a code and message.
    pub fn new(code: WireErrorCode, message: impl Into<String>) -> Self {
        WireError { code, message: message.into() }
    }
}

/// What a request line asks for.
#[derive(Clone, Debug, PartialEq)]
// One per request line, matched at once: boxing the request would cost an
// allocation per decision for nothing.
#[allow(clippy::large_enum_variant)]
pub enum Command {
    /// Decide a tool call.
    Decide(Request),
    /// Any other operation, by name, with the whole line's object.
    Other(String, Map<String, Value>),
}

/// A parsed line: the echoed id and the command or why there is none.
#[derive(Clone, Debug, PartialEq)]
pub struct Line {
    /// The request's `id`, echoed in the response (`null` if absent).
    pub id: Value,
    /// The command.
    pub command: Result<Command, WireError>,
}

/// A well-formed decide request, parsed in one pass (the common case).
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct DecideLine {
    #[serde(default)]
    id: Value,
    #[serde(default)]
    op: Option<String>,
    agent: String,
    tool: String,
    #[serde(default)]
    args: Option<Map<String, Value>>,
    #[serde(default)]
    session: Option<String>,
    #[serde(default)]
    principal: Option<Value>,
    #[serde(default)]
    context: Option<Value>,
    #[serde(default)]
    approval: Option<String>,
}

/// Parses one request line.
pub fn parse_line(line: &str) -> Line {
    // The typed parse accepts exactly the well-formed decide requests; any
    // other line goes the long way, which says precisely what is wrong.
    if let Ok(fast) = serde_json::from_str::<DecideLine>(line) {
        let objects =
            [&fast.principal, &fast.context].iter().all(|v| v.as_ref().is_none_or(Value::is_object));
        if fast.op.as_deref().is_none_or(|op| op == "decide") && objects {
            let request = Request {
                agent: fast.agent,
                tool: fast.tool,
                args: fast.args.unwrap_or_default(),
                session: fast.session,
                principal: fast.principal,
                context: fast.context,
                approval: fast.approval,
            };
            return Line { id: fast.id, command: Ok(Command::Decide(request)) };
        }
    }
    let mut object = match serde_json::from_str::<Value>(line) {
        Ok(Value::Object(object)) => object,
        Ok(_) => {
            return error_line(Value::Null, WireErrorCode::InvalidRequest, "request must be a JSON object");
        }
        Err(e) => {
            return error_line(Value::Null, WireErrorCode::InvalidJson, format!("invalid JSON: {e}"));
        }
    };
    let id = object.remove("id").unwrap_or(Value::Null);
    let op = match object.get("op") {
        None | Some(Value::Null) => String::from("decide"),
        Some(Value::String(op)) => op.clone(),
        Some(_) => return error_line(id, WireErrorCode::InvalidField, "`op` must be a string"),
    };
    let command =
        if op == "decide" { request(object).map(Command::Decide) } else { Ok(Command::Other(op, object)) };
    Line { id, command }
}

fn error_line(id: Value, code: WireErrorCode, message: impl Into<String>) -> Line {
    Line { id, command: Err(WireError::new(code, message)) }
}

/// The fields a decide request may carry.
const REQUEST_FIELDS: [&str; 8] =
    ["op", "agent", "tool", "args", "session", "principal", "context", "approval"];

fn request(mut object: Map<String, Value>) -> Result<Request, WireError> {
    // An unknown field is most likely a typo (`arg` for `args`); ignoring it
    // would decide on less than the gateway meant to send, so it is refused.
    if let Some(unknown) = object.keys().find(|k| !REQUEST_FIELDS.contains(&k.as_str())) {
        let hint = crate::diagnostic::suggest(unknown, REQUEST_FIELDS)
            .map_or_else(String::new, |best| format!("; did you mean `{best}`?"));
        return Err(WireError::new(
            WireErrorCode::InvalidRequest,
            format!("unknown field `{unknown}`{hint}"),
        ));
    }
    let agent = required_string(&mut object, "agent")?;
    let tool = required_string(&mut object, "tool")?;
    let args = match object.remove("args") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(args)) => args,
        Some(_) => {
            return Err(WireError::new(WireErrorCode::InvalidField, "`args` must be an object"));
        }
    };
    let session = match object.remove("session") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s),
        Some(_) => {
            return Err(WireError::new(WireErrorCode::InvalidField, "`session` must be a string"));
        }
    };
    let principal = optional_object(&mut object, "principal")?;
    let context = optional_object(&mut object, "context")?;
    let approval = match object.remove("approval") {
        None | Some(Value::Null) => None,
        Some(Value::String(id)) => Some(id),
        Some(_) => return Err(WireError::new(WireErrorCode::InvalidField, "`approval` must be a string")),
    };
    Ok(Request { agent, tool, args, session, principal, context, approval })
}

fn required_string(object: &mut Map<String, Value>, key: &str) -> Result<String, WireError> {
    match object.remove(key) {
        Some(Value::String(s)) => Ok(s),
        None | Some(Value::Null) => {
            Err(WireError::new(WireErrorCode::MissingField, format!("`{key}` is required")))
        }
        Some(_) => Err(WireError::new(WireErrorCode::InvalidField, format!("`{key}` must be a string"))),
    }
}

fn optional_object(object: &mut Map<String, Value>, key: &str) -> Result<Option<Value>, WireError> {
    match object.remove(key) {
        None | Some(Value::Null) => Ok(None),
        Some(value @ Value::Object(_)) => Ok(Some(value)),
        Some(_) => Err(WireError::new(WireErrorCode::InvalidField, format!("`{key}` must be an object"))),
    }
}

#[derive(Serialize)]
struct DecisionLine<'a> {
    id: &'a Value,
    decision: &'static str,
    rule: &'a str,
    #[serde(serialize_with = "display")]
    reason: &'a crate::engine::Reason<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    approver: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    approval: Option<ApprovalRef<'a>>,
    audit: &'static str,
    policy: &'a str,
}

/// The approval a `require_approval` answer opened.
#[derive(Serialize)]
pub struct ApprovalRef<'a> {
    /// The id to grant and to send back with the call.
    pub id: &'a str,
    /// Seconds since the Unix epoch after which it is void.
    pub expires_at: u64,
}

fn display<S: serde::Serializer>(
    value: &&crate::engine::Reason<'_>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    serializer.collect_str(value)
}

#[derive(Serialize)]
struct ErrorLine<'a> {
    id: &'a Value,
    decision: &'static str,
    error: ErrorBody<'a>,
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    code: &'static str,
    message: &'a str,
}

/// Appends the response line for a decision (with its newline) to `out`.
pub fn write_decision(out: &mut Vec<u8>, id: &Value, decision: &Decision<'_>, policy: &str) {
    write_decision_with(out, id, decision, policy, None);
}

/// Appends the response line for a decision that opened an approval.
pub fn write_decision_with(
    out: &mut Vec<u8>,
    id: &Value,
    decision: &Decision<'_>,
    policy: &str,
    approval: Option<ApprovalRef<'_>>,
) {
    let line = DecisionLine {
        id,
        decision: decision.outcome.as_str(),
        rule: decision.rule,
        reason: &decision.reason,
        approver: decision.approver,
        approval,
        audit: decision.audit.as_str(),
        policy,
    };
    write_json(out, &line);
}

/// Appends the response line for an error (with its newline) to `out`.
pub fn write_error(out: &mut Vec<u8>, id: &Value, error: &WireError) {
    let line = ErrorLine {
        id,
        decision: "deny",
        error: ErrorBody { code: error.code.as_str(), message: &error.message },
    };
    write_json(out, &line);
}

/// Appends any serialisable answer as one line (an error line if it cannot
/// be encoded, so every request still gets exactly one answer).
pub fn write_json(out: &mut Vec<u8>, value: &impl Serialize) {
    // Serializing these plain structs into memory cannot fail; should it
    // ever, the client still gets a deny rather than nothing.
    if serde_json::to_writer(&mut *out, value).is_err() {
        out.extend_from_slice(br#"{"id":null,"decision":"deny","error":{"code":"internal","message":"response encoding failed"}}"#);
    }
    out.push(b'\n');
}

/// The result of reading one request line.
pub enum Read {
    /// A complete line is in the buffer (without its newline).
    Line,
    /// The line was longer than the limit; it was consumed and dropped.
    TooLong,
    /// The input ended before any byte of a new line.
    Eof,
}

/// A request line being read. It keeps its state between reads, so a read
/// that is cancelled (by a timeout or a shutdown signal) resumes where it
/// stopped, also in the middle of skipping an over-long line.
#[derive(Debug, Default)]
pub struct LineBuffer {
    bytes: Vec<u8>,
    too_long: bool,
    started: bool,
}

impl LineBuffer {
    /// The line read, without its newline.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// Makes room for the next line.
    pub fn clear(&mut self) {
        self.bytes.clear();
        self.too_long = false;
        self.started = false;
    }
}

/// Reads one line of at most `max` bytes into `line`; a longer line is
/// consumed up to its newline, so the stream stays in step. A last line
/// without a newline counts as a line. Call [`LineBuffer::clear`] after
/// each complete line.
pub async fn read_line(
    input: &mut (impl AsyncBufRead + Unpin),
    line: &mut LineBuffer,
    max: usize,
) -> std::io::Result<Read> {
    loop {
        let available = input.fill_buf().await?;
        if available.is_empty() {
            // End of input ends the last line too, if there is one.
            return Ok(match (line.started, line.too_long) {
                (false, _) => Read::Eof,
                (true, true) => Read::TooLong,
                (true, false) => Read::Line,
            });
        }
        line.started = true;
        let (chunk, done) = match available.iter().position(|&b| b == b'\n') {
            Some(i) => (&available[..i], Some(i + 1)),
            None => (available, None),
        };
        if !line.too_long {
            if line.bytes.len() + chunk.len() > max {
                line.too_long = true;
                line.bytes.clear();
            } else {
                line.bytes.extend_from_slice(chunk);
            }
        }
        let consumed = done.unwrap_or(available.len());
        input.consume(consumed);
        if done.is_some() {
            return Ok(if line.too_long { Read::TooLong } else { Read::Line });
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
        ];
        for (text, id, code) in cases {
            let line = parse_line(text);
            assert_eq!(line.id, id, "{text}");
            assert_eq!(line.command.expect_err(text).code, code, "{text}");
        }
    }

    #[test]
    fn args_default_to_an_empty_object() {
        let line = parse_line(r#"{"agent": "a", "tool": "t"}"#);
        let Ok(Command::Decide(request)) = line.command else { panic!("decide") };
        assert!(request.args.is_empty());
    }
}
