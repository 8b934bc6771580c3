//! The wire protocol of `toolgate eval` and the decision and admin
//! sockets: one JSON object per line in, one per line out, in order.
//!
//! A line names an operation ([`Op`], `decide` by default) and its fields;
//! [`decode::parse_line`] turns it into a typed [`Op`] or a [`WireError`],
//! [`encode`] writes answers. Framing ([`frame::read_line`]) bounds every
//! line. Nothing here decides or keeps state.

pub mod decode;
pub mod encode;
pub mod frame;
pub mod strict;

pub use decode::{ParsedLine, parse_line};
pub use encode::{
    Answer, ApprovalRef, DecisionId, Reply, write_answer, write_error, write_json, write_reply,
};
pub use frame::{LineBuffer, ReadLine, read_line};

use crate::engine::Request;
use crate::state::kill::KillScope;

/// The protocol version reported by `health` and `status`.
pub const PROTOCOL_VERSION: u32 = 1;

/// A request line that could not be turned into an operation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WireError {
    /// A stable, machine-readable code.
    pub code: WireErrorCode,
    /// What is wrong.
    pub message: String,
}

impl WireError {
    /// An error with a code and message.
    pub fn new(code: WireErrorCode, message: impl Into<String>) -> Self {
        WireError { code, message: message.into() }
    }
}

/// The codes of [`WireError`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WireErrorCode {
    /// The line is not JSON.
    InvalidJson,
    /// The line is JSON but not an object, has an unknown field, or asks
    /// for something that cannot be done (e.g. approving a used approval).
    InvalidRequest,
    /// A required field is absent.
    MissingField,
    /// A key appears twice in one object, at any level.
    DuplicateKey,
    /// An agent, tool or session name with characters or a length names
    /// may not have.
    InvalidName,
    /// A field has the wrong type or value.
    InvalidField,
    /// `op` names no operation available here.
    UnknownOp,
    /// The line is longer than the limit.
    LineTooLong,
    /// The server could not answer (connection limit, state or audit
    /// trail unavailable, internal error).
    Unavailable,
    /// The audit trail (or the state store) did not answer within the
    /// server's `--decision-timeout`: a deny.
    DecisionTimeout,
    /// The peer may not do this (not a member of the approver the gate
    /// names, or not an operator).
    Forbidden,
}

impl WireErrorCode {
    /// The code as sent.
    pub fn as_str(self) -> &'static str {
        match self {
            WireErrorCode::InvalidJson => "invalid_json",
            WireErrorCode::InvalidRequest => "invalid_request",
            WireErrorCode::MissingField => "missing_field",
            WireErrorCode::DuplicateKey => "duplicate_key",
            WireErrorCode::InvalidName => "invalid_name",
            WireErrorCode::InvalidField => "invalid_field",
            WireErrorCode::UnknownOp => "unknown_op",
            WireErrorCode::LineTooLong => "line_too_long",
            WireErrorCode::Unavailable => "unavailable",
            WireErrorCode::DecisionTimeout => "decision_timeout",
            WireErrorCode::Forbidden => "forbidden",
        }
    }
}

/// Which operation a line names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum OpKind {
    /// Decide a tool call.
    Decide,
    /// Report a call's result.
    Outcome,
    /// Is the server up?
    Health,
    /// Policy, reloads, kills, audit head and metrics.
    Status,
    /// Recompile the policy now.
    Reload,
    /// Kill a scope.
    Kill,
    /// Revive a scope.
    Revive,
    /// List the kills.
    Kills,
    /// List the pending approvals.
    Approvals,
    /// Grant an approval.
    Approve,
    /// Reject an approval.
    Reject,
    /// Which of some tools an agent may ever call.
    Visible,
    /// How a server's live tools differ from their catalog.
    Drift,
    /// The agent's own user accepted or declined an approval.
    Confirm,
    /// A tool result, to pass through the output rules.
    Result,
    /// What a server a proxy starts may receive.
    Scope,
}

impl OpKind {
    /// Every operation.
    pub const ALL: [OpKind; 16] = [
        OpKind::Decide,
        OpKind::Outcome,
        OpKind::Health,
        OpKind::Status,
        OpKind::Reload,
        OpKind::Kill,
        OpKind::Revive,
        OpKind::Kills,
        OpKind::Approvals,
        OpKind::Approve,
        OpKind::Reject,
        OpKind::Visible,
        OpKind::Drift,
        OpKind::Confirm,
        OpKind::Result,
        OpKind::Scope,
    ];

    /// The name sent in `op`.
    pub fn as_str(self) -> &'static str {
        match self {
            OpKind::Decide => "decide",
            OpKind::Outcome => "outcome",
            OpKind::Health => "health",
            OpKind::Status => "status",
            OpKind::Reload => "reload",
            OpKind::Kill => "kill",
            OpKind::Revive => "revive",
            OpKind::Kills => "kills",
            OpKind::Approvals => "approvals",
            OpKind::Approve => "approve",
            OpKind::Reject => "reject",
            OpKind::Visible => "visible",
            OpKind::Drift => "drift",
            OpKind::Confirm => "confirm",
            OpKind::Result => "result",
            OpKind::Scope => "scope",
        }
    }

    /// The operation of this name.
    pub fn named(name: &str) -> Option<OpKind> {
        OpKind::ALL.into_iter().find(|kind| kind.as_str() == name)
    }
}

/// One operation, with its fields decoded.
#[derive(Clone, Debug, PartialEq)]
// One per request line, matched at once: boxing the request would cost an
// allocation per decision for nothing.
#[allow(clippy::large_enum_variant)]
pub enum Op {
    /// Decide a tool call.
    Decide(Request),
    /// A gateway reports a call's result.
    Outcome(CallReport),
    /// Is the server up?
    Health,
    /// Policy, reloads, kills, audit head and metrics.
    Status,
    /// Recompile the policy now.
    Reload,
    /// Kill a scope: its calls are denied until revived.
    Kill {
        /// What is killed.
        scope: KillScope,
        /// Why (shown in every denial).
        reason: String,
        /// Who, as they name themselves (recorded with their user id).
        by: Option<String>,
    },
    /// Revive a killed scope.
    Revive {
        /// What is revived.
        scope: KillScope,
    },
    /// List the kills in force.
    Kills,
    /// List the approvals waiting for a decision.
    Approvals,
    /// Grant or reject an approval.
    DecideApproval {
        /// The approval id.
        approval: String,
        /// The approver the decider acts as (`as`); optional, and if
        /// given, must be the gate's approver.
        by: Option<String>,
        /// Grant (`approve`) or reject (`reject`).
        grant: bool,
        /// Why, in the decider's words (recorded with the decision).
        comment: Option<String>,
    },
    /// Which of `tools` `agent` may ever call (a proxy hides the others
    /// from the tool lists it relays).
    Visible {
        /// The agent.
        agent: String,
        /// The tool names, server-qualified as the policy names them.
        tools: Vec<String>,
        /// The annotations of tools whose server lists them, by name:
        /// for `where` selectors on servers no catalog describes.
        annotations: std::collections::HashMap<String, crate::compiler::catalog::Hints>,
    },
    /// A server's whole live `tools/list`, to compare with its catalog (a
    /// proxy reports it; a difference is recorded).
    Drift {
        /// The server's name in the policy, if its catalog has one.
        server: Option<String>,
        /// The tools, as the server listed them.
        tools: Vec<serde_json::Value>,
    },
    /// The agent's own user answered an approval whose approver is `user`
    /// (a proxy asked them through the MCP client).
    Confirm {
        /// The approval id.
        approval: String,
        /// Whether the user accepted.
        accept: bool,
    },
    /// A tool result an allowed call returned: what the agent may see of
    /// it under the output rules.
    Result {
        /// What the result is: `None` or `tool` for a tool result,
        /// `resource`, `prompt` or `tools` (a tool list).
        kind: Option<String>,
        /// The decision that allowed the call (required for a tool result).
        decision_id: Option<String>,
        /// The agent.
        agent: String,
        /// The session, if any (an output rule that kills kills it).
        session: Option<String>,
        /// The tool, server-qualified as the policy names it (required
        /// for a tool result).
        tool: Option<String>,
        /// The MCP result (`CallToolResult`, `ReadResourceResult`,
        /// `GetPromptResult` or `ListToolsResult`).
        result: serde_json::Value,
        /// The tool's declared `outputSchema`, if known.
        output_schema: Option<serde_json::Value>,
    },
    /// The environment variables a server receives (`servers.<name>.env`).
    Scope {
        /// The server's name in the policy.
        server: String,
    },
}

impl Op {
    /// Which operation this is.
    pub fn kind(&self) -> OpKind {
        match self {
            Op::Decide(_) => OpKind::Decide,
            Op::Outcome(_) => OpKind::Outcome,
            Op::Health => OpKind::Health,
            Op::Status => OpKind::Status,
            Op::Reload => OpKind::Reload,
            Op::Kill { .. } => OpKind::Kill,
            Op::Revive { .. } => OpKind::Revive,
            Op::Kills => OpKind::Kills,
            Op::Approvals => OpKind::Approvals,
            Op::DecideApproval { grant: true, .. } => OpKind::Approve,
            Op::DecideApproval { grant: false, .. } => OpKind::Reject,
            Op::Visible { .. } => OpKind::Visible,
            Op::Drift { .. } => OpKind::Drift,
            Op::Confirm { .. } => OpKind::Confirm,
            Op::Result { .. } => OpKind::Result,
            Op::Scope { .. } => OpKind::Scope,
        }
    }
}

/// A call's result, as a gateway reports it (`outcome`).
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct CallReport {
    /// The id of the allow that let the call be made (from its answer).
    pub decision_id: String,
    /// The agent that made the call.
    pub agent: String,
    /// Its session.
    pub session: String,
    /// The tool, if given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tool: Option<String>,
    /// `ok` or `error`.
    pub status: CallStatus,
    /// What the call cost, in the policy's cost unit; if not given, the
    /// tool's `cost` in the policy, else 0.
    pub cost: Option<f64>,
    /// How long the call took, if given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latency_ms: Option<f64>,
    /// How many bytes the tool returned, if given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output_bytes: Option<u64>,
    /// A digest of what the tool returned, if given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output_sha256: Option<String>,
}

/// Whether a reported call succeeded.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CallStatus {
    /// It succeeded.
    Ok,
    /// It failed.
    Error,
}
