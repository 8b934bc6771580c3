//! Decisions: the engine's answers, with typed reasons.

use std::fmt;

use super::table::AgentTable;
use crate::compiler::ast::AuditLevel;
use crate::compiler::checked::CheckedGate;
use crate::compiler::condition::EvalError;
use crate::compiler::params::{Steps, Violation, write_steps};
use crate::compiler::privacy::{NO_PRIVACY, Privacy};

/// The three answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// Make the call.
    Allow,
    /// Do not make the call.
    Deny,
    /// Ask a human first.
    RequireApproval,
}

impl Outcome {
    /// `allow`, `deny` or `require_approval`.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Allow => "allow",
            Outcome::Deny => "deny",
            Outcome::RequireApproval => "require_approval",
        }
    }
}

/// The engine's answer to a [`Request`](super::Request), borrowing from the engine.
#[derive(Clone, Debug, PartialEq)]
pub struct Decision<'e> {
    /// Allow, deny, or require approval.
    pub outcome: Outcome,
    /// The stable id of the deciding rule.
    pub rule: &'e str,
    /// Why, in terms a person understands.
    pub reason: Reason<'e>,
    /// Who must approve, for [`Outcome::RequireApproval`].
    pub approver: Option<&'e str>,
    /// How much of this call the audit trail must record.
    pub audit: AuditLevel,
    /// What of the call may be recorded or shown (`sensitiveArgs` and
    /// `auditFields` of the agent's policy).
    pub privacy: &'e Privacy,
}

impl<'e> Decision<'e> {
    /// A decision under an agent's policy: recorded as its audit level
    /// says, with its sensitive arguments redacted.
    pub(crate) fn under(
        agent: &'e AgentTable,
        outcome: Outcome,
        rule: &'e str,
        reason: Reason<'e>,
    ) -> Decision<'e> {
        Decision { outcome, rule, reason, approver: None, audit: agent.audit, privacy: &agent.privacy }
    }

    /// A denial no agent's policy shaped (an unknown agent, the kill
    /// switch, unavailable state, an inconsistent table): recorded in full
    /// (for a known agent, still with its sensitive arguments redacted: see
    /// `redacted_for`).
    pub fn deny_outright(rule: &'e str, reason: Reason<'e>) -> Decision<'e> {
        Decision {
            outcome: Outcome::Deny,
            rule,
            reason,
            approver: None,
            audit: AuditLevel::Full,
            privacy: &NO_PRIVACY,
        }
    }

    /// Denied because session state could not be read or written.
    pub fn state_unavailable() -> Decision<'e> {
        Decision::deny_outright(super::STATE_RULE, Reason::StateUnavailable)
    }

    /// Denied because the store holds as many sessions as it may.
    pub fn session_limit() -> Decision<'e> {
        Decision::deny_outright(super::SESSION_LIMIT_RULE, Reason::SessionLimit)
    }

    /// Denied because the state store did not answer in time.
    pub fn timed_out() -> Decision<'e> {
        Decision::deny_outright(super::TIMEOUT_RULE, Reason::DecisionTimeout)
    }

    /// Denied because the compiled table is inconsistent.
    pub fn internal() -> Decision<'e> {
        Decision::deny_outright(super::INTERNAL_RULE, Reason::Internal)
    }

    /// The same decision, recorded with `agent`'s sensitive arguments redacted.
    pub(crate) fn redacted_for(self, agent: &'e AgentTable) -> Decision<'e> {
        Decision { privacy: &agent.privacy, ..self }
    }

    /// The same decision, naming the approver the gate requires.
    pub(crate) fn with_approver(self, gate: &'e CheckedGate) -> Decision<'e> {
        Decision { approver: gate.approver.as_deref(), ..self }
    }
}

/// Why a decision came out as it did.
#[derive(Clone, Debug, PartialEq)]
pub enum Reason<'e> {
    /// No policy for this agent.
    UnknownAgent(&'e str),
    /// A `deniedTools` entry matches.
    Denied {
        /// The matching entry.
        pattern: &'e str,
    },
    /// No `allowedTools` entry matches.
    NotAllowed,
    /// A field listed in `requiresFields` is absent.
    MissingField(&'e str),
    /// An argument breaks its `params` rules.
    Param {
        /// The argument.
        name: &'e str,
        /// The steps to the offending part of the value (`files[2].path`);
        /// empty for the value itself.
        at: Steps<'e>,
        /// The broken rule.
        violation: Violation<'e>,
    },
    /// A `when` condition is false.
    ConditionFalse,
    /// A `when` condition could not be evaluated; the constraint fails.
    ConditionFailed(EvalError),
    /// A per-tool or per-session cap, or a rate limit, is reached.
    CapReached {
        /// The cap.
        limit: u64,
        /// The window of a rate limit, in milliseconds.
        window_ms: Option<u64>,
    },
    /// The agent has caps but the request names no session.
    NoSession,
    /// The gate's amount argument is above `maxAmount`.
    AmountAboveCeiling {
        /// The argument.
        field: &'e str,
        /// The ceiling.
        max: f64,
    },
    /// The gate's amount argument is missing or not a number.
    AmountUnreadable {
        /// The argument.
        field: &'e str,
    },
    /// An approval gate with `required: true`.
    ApprovalRequired,
    /// An approval gate whose `when` holds.
    ApprovalConditionHolds,
    /// An approval gate whose `when` could not be evaluated: gated to be safe.
    ApprovalConditionFailed(EvalError),
    /// Allowed: every rule passed.
    Allowed,
    /// The compiled table is inconsistent; denied to be safe.
    Internal,
    /// Session state could not be read or written; denied to be safe.
    StateUnavailable,
    /// The store holds as many sessions as it may (or the session counts
    /// as many tools as a session may): a new one is denied.
    SessionLimit,
    /// The state store did not answer within the decision deadline.
    DecisionTimeout,
    /// The session's error streak reached `maxConsecutiveErrors`.
    ErrorStreak {
        /// The limit.
        limit: u64,
    },
    /// The session's reported cost reached `maxCost`.
    CostCeiling {
        /// The ceiling.
        max: f64,
    },
    /// The tool's circuit breaker is open: its calls failed `failures`
    /// times in a row, and it stays open for `seconds` more.
    CircuitOpen {
        /// The failures in a row that opened it.
        failures: u64,
        /// Seconds until a call may try again (rounded up).
        seconds: u64,
    },
    /// The tool changed since its catalog was reviewed, and the catalog
    /// denies drifted tools (`onDrift: deny`).
    ToolDrift,
    /// A granted approval satisfied the gate.
    Approved {
        /// The approval used.
        approval: String,
    },
    /// The request carried an approval that cannot be used for it.
    ApprovalInvalid(crate::state::approval::ApprovalError),
    /// An operator (or a tripped limit) killed this call's scope.
    Killed(std::sync::Arc<(crate::state::kill::KillScope, crate::state::kill::Kill)>),
    /// A constraint's `rego` rule is not true.
    RegoFalse {
        /// The rule, `data.<package>.<rule>`.
        rule: &'e str,
    },
    /// A constraint's `rego` rule could not be evaluated; the constraint fails.
    RegoFailed {
        /// The rule.
        rule: &'e str,
        /// What went wrong.
        error: String,
    },
    /// An approval gate's `rego` rule is true.
    ApprovalRegoHolds {
        /// The rule.
        rule: &'e str,
    },
    /// An approval gate's `rego` rule could not be evaluated: gated to be safe.
    ApprovalRegoFailed {
        /// The rule.
        rule: &'e str,
        /// What went wrong.
        error: String,
    },
    /// A catalog describes the tool's server but does not list the tool.
    UnknownTool,
    /// The tool name breaks the rules for names (invisible or look-alike
    /// characters, surrounding whitespace, too long).
    InvalidName(String),
    /// The arguments break the tool's `inputSchema` (`validateArgs`).
    SchemaViolation {
        /// Where in the arguments, as a JSON pointer (empty: the whole object).
        path: String,
        /// What is wrong.
        message: String,
    },
}

macro_rules! reason_codes {
    ($( $(#[doc = $doc:literal])* $variant:ident = $code:literal, )*) => {
        /// The kind of a [`Reason`], as a stable snake_case code: what a
        /// gateway, a proxy or an exported policy matches on (the reason's
        /// text is for people and may change).
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum ReasonCode {
            $( $(#[doc = $doc])* $variant, )*
        }

        impl ReasonCode {
            /// Every code, in table order.
            pub const ALL: &'static [ReasonCode] = &[$(ReasonCode::$variant),*];

            /// The code as sent, e.g. `cap_reached`.
            pub fn as_str(self) -> &'static str {
                match self { $(ReasonCode::$variant => $code,)* }
            }

            /// What the code means (its row's doc comment).
            pub fn meaning(self) -> &'static str {
                match self { $(ReasonCode::$variant => concat!($($doc),*).trim_ascii(),)* }
            }
        }
    };
}

reason_codes! {
    /// Allowed: every rule passed.
    Allowed = "allowed",
    /// Allowed by a granted approval for exactly this call (now used).
    Approved = "approved",
    /// No policy names the agent.
    UnknownAgent = "unknown_agent",
    /// A catalog describes the tool's server but does not list the tool.
    UnknownTool = "unknown_tool",
    /// The tool name has characters or a length names may not have.
    InvalidName = "invalid_name",
    /// A `deniedTools` entry matches the tool.
    ToolDenied = "tool_denied",
    /// No `allowedTools` entry matches the tool.
    ToolNotAllowed = "tool_not_allowed",
    /// The arguments break the tool's `inputSchema` (`validateArgs`).
    SchemaViolation = "schema_violation",
    /// An argument listed in `requiresFields` is absent.
    MissingArgument = "missing_argument",
    /// An argument breaks its `params` rules.
    InvalidArgument = "invalid_argument",
    /// A constraint's `when` condition is false.
    ConditionFalse = "condition_false",
    /// A constraint's `when` condition could not be evaluated.
    ConditionError = "condition_error",
    /// A constraint's `rego` rule is not true.
    RegoFalse = "rego_false",
    /// A constraint's `rego` rule could not be evaluated, or is not a boolean.
    RegoError = "rego_error",
    /// A gate's amount argument is above its `maxAmount`.
    AmountAboveCeiling = "amount_above_ceiling",
    /// A gate's amount argument is missing or not a number.
    AmountUnreadable = "amount_unreadable",
    /// An approval gate with `required: true` applies.
    ApprovalRequired = "approval_required",
    /// An approval gate's `when` condition holds.
    ApprovalCondition = "approval_condition",
    /// An approval gate's `when` condition could not be evaluated: gated to be safe.
    ApprovalConditionError = "approval_condition_error",
    /// An approval gate's `rego` rule is true.
    ApprovalRego = "approval_rego",
    /// An approval gate's `rego` rule could not be evaluated: gated to be safe.
    ApprovalRegoError = "approval_rego_error",
    /// The presented approval does not exist.
    ApprovalUnknown = "approval_unknown",
    /// The presented approval is still waiting for an approver.
    ApprovalPending = "approval_pending",
    /// The presented approval was rejected.
    ApprovalRejected = "approval_rejected",
    /// The presented approval expired.
    ApprovalExpired = "approval_expired",
    /// The presented approval was already used.
    ApprovalUsed = "approval_used",
    /// The presented approval was granted for another call (agent, session, tool, arguments or policy).
    ApprovalMismatch = "approval_mismatch",
    /// No approval could be opened or used (too many open, storage or randomness failed).
    ApprovalUnavailable = "approval_unavailable",
    /// The agent has per-session limits but the request names no session.
    SessionRequired = "session_required",
    /// A `maxPerSession` or `session.maxToolCalls` cap is reached.
    CapReached = "cap_reached",
    /// A `rateLimit` is reached for the agent.
    RateLimited = "rate_limited",
    /// The session's error streak reached `maxConsecutiveErrors`.
    ErrorStreak = "error_streak",
    /// The session's reported cost reached `maxCost`.
    CostCeiling = "cost_ceiling",
    /// The tool's `circuitBreaker` is open: its calls failed that many times in a row, and the cooldown has not passed.
    CircuitOpen = "circuit_open",
    /// The kill switch stops the call's agent, session or everything.
    Killed = "killed",
    /// The tool's live description (schema or annotations) differs from its catalog, which says `onDrift: deny`.
    ToolDrift = "tool_drift",
    /// Session state could not be read or written: denied to be safe.
    StateUnavailable = "state_unavailable",
    /// The server holds `--max-sessions` live sessions (or this session counts 64 tools): a new one is denied until idle ones expire.
    SessionLimit = "session_limit",
    /// The state store or the audit trail did not answer within `--decision-timeout`: denied to be safe.
    DecisionTimeout = "decision_timeout",
    /// The compiled table is inconsistent: denied to be safe.
    InternalError = "internal_error",
}

impl Reason<'_> {
    /// The reason's kind, as a stable code.
    pub fn code(&self) -> ReasonCode {
        use crate::state::approval::ApprovalError as E;
        match self {
            Reason::UnknownAgent(_) => ReasonCode::UnknownAgent,
            Reason::Denied { .. } => ReasonCode::ToolDenied,
            Reason::NotAllowed => ReasonCode::ToolNotAllowed,
            Reason::MissingField(_) => ReasonCode::MissingArgument,
            Reason::Param { .. } => ReasonCode::InvalidArgument,
            Reason::ConditionFalse => ReasonCode::ConditionFalse,
            Reason::ConditionFailed(_) => ReasonCode::ConditionError,
            Reason::CapReached { window_ms: None, .. } => ReasonCode::CapReached,
            Reason::CapReached { window_ms: Some(_), .. } => ReasonCode::RateLimited,
            Reason::NoSession => ReasonCode::SessionRequired,
            Reason::AmountAboveCeiling { .. } => ReasonCode::AmountAboveCeiling,
            Reason::AmountUnreadable { .. } => ReasonCode::AmountUnreadable,
            Reason::ApprovalRequired => ReasonCode::ApprovalRequired,
            Reason::ApprovalConditionHolds => ReasonCode::ApprovalCondition,
            Reason::ApprovalConditionFailed(_) => ReasonCode::ApprovalConditionError,
            Reason::Allowed => ReasonCode::Allowed,
            Reason::Internal => ReasonCode::InternalError,
            Reason::StateUnavailable => ReasonCode::StateUnavailable,
            Reason::SessionLimit => ReasonCode::SessionLimit,
            Reason::DecisionTimeout => ReasonCode::DecisionTimeout,
            Reason::ErrorStreak { .. } => ReasonCode::ErrorStreak,
            Reason::CircuitOpen { .. } => ReasonCode::CircuitOpen,
            Reason::CostCeiling { .. } => ReasonCode::CostCeiling,
            Reason::Approved { .. } => ReasonCode::Approved,
            Reason::ToolDrift => ReasonCode::ToolDrift,
            Reason::ApprovalInvalid(error) => match error {
                E::Unknown => ReasonCode::ApprovalUnknown,
                E::Expired => ReasonCode::ApprovalExpired,
                E::Pending | E::SamePerson { .. } => ReasonCode::ApprovalPending,
                E::Rejected => ReasonCode::ApprovalRejected,
                E::Used => ReasonCode::ApprovalUsed,
                E::Mismatch(_) => ReasonCode::ApprovalMismatch,
                E::AlreadyDecided(_)
                | E::WrongApprover { .. }
                | E::Storage(_)
                | E::TooMany(_)
                | E::NoRandomness(_) => ReasonCode::ApprovalUnavailable,
            },
            Reason::Killed(_) => ReasonCode::Killed,
            Reason::RegoFalse { .. } => ReasonCode::RegoFalse,
            Reason::RegoFailed { .. } => ReasonCode::RegoError,
            Reason::ApprovalRegoHolds { .. } => ReasonCode::ApprovalRego,
            Reason::ApprovalRegoFailed { .. } => ReasonCode::ApprovalRegoError,
            Reason::UnknownTool => ReasonCode::UnknownTool,
            Reason::InvalidName(_) => ReasonCode::InvalidName,
            Reason::SchemaViolation { .. } => ReasonCode::SchemaViolation,
        }
    }
}

impl fmt::Display for Reason<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::UnknownAgent(agent) => write!(f, "no policy for agent `{agent}`"),
            Reason::Denied { pattern } => {
                write!(f, "tool is denied by `deniedTools` entry `{pattern}`")
            }
            Reason::NotAllowed => f.write_str("tool is not in `allowedTools`"),
            Reason::MissingField(field) => write!(f, "required argument `{field}` is missing"),
            Reason::Param { name, at, violation } => {
                f.write_str("argument `")?;
                write_steps(f, name, at)?;
                write!(f, "` {violation}")
            }
            Reason::ConditionFalse => f.write_str("`when` condition is false"),
            Reason::ConditionFailed(e) => {
                write!(f, "`when` condition could not be evaluated ({}); failing closed", e.describe())
            }
            Reason::CapReached { limit, window_ms: None } => {
                write!(f, "limit of {limit} calls per session reached")
            }
            Reason::CapReached { limit, window_ms: Some(window) } => {
                write!(
                    f,
                    "rate limit of {limit} calls per {} reached for this agent",
                    describe_window(*window)
                )
            }
            Reason::NoSession => {
                f.write_str("request names no session, but this agent has per-session limits")
            }
            Reason::AmountAboveCeiling { field, max } => {
                write!(f, "argument `{field}` is above the approval ceiling {max}")
            }
            Reason::AmountUnreadable { field } => {
                write!(
                    f,
                    "argument `{field}` is missing or not a number; the approval ceiling cannot be checked"
                )
            }
            Reason::ApprovalRequired => f.write_str("calls of this tool require approval"),
            Reason::ApprovalConditionHolds => f.write_str("approval gate condition holds"),
            Reason::ApprovalConditionFailed(e) => {
                write!(
                    f,
                    "approval gate condition could not be evaluated ({}); requiring approval",
                    e.describe()
                )
            }
            Reason::Allowed => f.write_str("allowed by policy"),
            Reason::UnknownTool => f.write_str("the tool is not in its server's catalog"),
            Reason::InvalidName(problem) => write!(f, "{problem}"),
            Reason::RegoFalse { rule } => write!(f, "Rego rule `{rule}` is not true"),
            Reason::RegoFailed { rule, error } => {
                write!(f, "Rego rule `{rule}` could not be evaluated ({error}); failing closed")
            }
            Reason::ApprovalRegoHolds { rule } => write!(f, "Rego rule `{rule}` requires approval"),
            Reason::ApprovalRegoFailed { rule, error } => {
                write!(f, "Rego rule `{rule}` could not be evaluated ({error}); requiring approval")
            }
            Reason::SchemaViolation { path, message } if path.is_empty() => {
                write!(f, "arguments break the tool's inputSchema: {message}")
            }
            Reason::SchemaViolation { path, message } => {
                write!(f, "argument `{path}` breaks the tool's inputSchema: {message}")
            }
            Reason::Internal => f.write_str("internal error while deciding; failing closed"),
            Reason::StateUnavailable => f.write_str("session state is unavailable; failing closed"),
            Reason::SessionLimit => f.write_str(
                "the server holds as many sessions as it may (or this session counts as many tools as a session may); failing closed",
            ),
            Reason::DecisionTimeout => {
                f.write_str("session state did not answer within the decision deadline; failing closed")
            }
            Reason::Approved { .. } => f.write_str("allowed by a granted approval"),
            Reason::ToolDrift => f.write_str(
                "the tool changed since its catalog was reviewed (its schema or annotations differ), and its catalog says onDrift: deny",
            ),
            Reason::ApprovalInvalid(error) => write!(f, "approval refused: {error}"),
            Reason::ErrorStreak { limit } => write!(f, "{limit} tool calls in a row failed in this session"),
            Reason::CostCeiling { max } => write!(f, "this session's cost reached its ceiling of {max}"),
            Reason::CircuitOpen { failures, seconds } => write!(
                f,
                "calls of this tool failed {failures} times in a row: its circuit is open for {seconds} s more"
            ),
            Reason::Killed(kill) => {
                let (scope, kill) = &**kill;
                let scope = match scope {
                    crate::state::kill::KillScope::All => String::from("everything is"),
                    crate::state::kill::KillScope::Agent { agent } => format!("agent `{agent}` is"),
                    crate::state::kill::KillScope::Session { agent, session } => {
                        format!("session `{session}` of agent `{agent}` is")
                    }
                };
                write!(f, "{scope} killed by {} at {}: {}", kill.by, kill.at, kill.reason)
            }
        }
    }
}

fn describe_window(window_ms: u64) -> String {
    match window_ms {
        1_000 => String::from("second"),
        60_000 => String::from("minute"),
        3_600_000 => String::from("hour"),
        ms => format!("{ms} ms"),
    }
}
