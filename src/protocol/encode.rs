//! Encoding answers: one JSON object per line.

use serde::Serialize;
use serde_json::Value;

use super::{PROTOCOL_VERSION, WireError};
use crate::engine::{Decision, Reason};
use crate::state::approval::{Approval, ApprovalStatus};
use crate::state::kill::{Kill, KillScope};

/// An answer to one operation.
#[derive(Debug)]
pub enum Reply<'e> {
    /// A decision.
    Decision(Answer<'e>),
    /// The line could not be answered as asked; a deny.
    Error(WireError),
    /// `health`: up, serving `policy`; `ok` unless the state store or
    /// the audit trail is degraded.
    Health {
        /// The policy hash.
        policy: String,
        /// How the state store stands.
        state: crate::state::Condition,
        /// How the audit trail stands, if there is one.
        audit: Option<crate::state::Condition>,
    },
    /// `status`: the server's report.
    Status(Value),
    /// `reload`: whether the policy was recompiled and swapped in.
    Reload {
        /// Whether the new policy serves now.
        ok: bool,
        /// The policy serving after the attempt.
        policy: String,
        /// The errors of a failed attempt.
        errors: Option<Vec<String>>,
    },
    /// `outcome`: the session's totals after the report.
    Outcome {
        /// Errors in a row.
        consecutive_errors: u64,
        /// Total reported cost.
        cost: f64,
        /// Whether a limit tripped and killed the session.
        killed: bool,
    },
    /// `kill`: in force.
    Kill {
        /// What was killed.
        scope: KillScope,
        /// What the operator should check: a kill of an agent no policy
        /// in force names (a typo stops nothing).
        warning: Option<String>,
    },
    /// `revive`: lifted.
    Revive {
        /// What was revived.
        scope: KillScope,
        /// Whether it was killed.
        was_killed: bool,
    },
    /// `visible`: the tools, of those asked, the agent may ever call.
    Visible(Vec<String>),
    /// `scope`: a server's environment variables (`None`: not scoped).
    Scope(Option<Vec<String>>),
    /// `result`: what the agent may see of a tool result.
    Output {
        /// The result as the agent may see it.
        result: serde_json::Value,
        /// `passed`, `changed` or `withheld`.
        verdict: &'static str,
        /// What withheld it, if it was withheld.
        rule: Option<String>,
        /// Whether the session was killed.
        killed: bool,
        /// What the rules found (rule ids and counts).
        findings: Vec<crate::output::Finding>,
    },
    /// `drift`: how the live tools differ from the catalog (`None`: no
    /// catalog describes the server).
    Drift(Option<crate::compiler::catalog::Drift>),
    /// `kills`: every kill in force.
    Kills(Vec<(KillScope, Kill)>),
    /// `approvals`: the pending approvals, at `now` (seconds since the
    /// Unix epoch).
    Approvals {
        /// The approvals.
        approvals: Vec<Approval>,
        /// The time of the answer.
        now: u64,
    },
    /// `approve` or `reject`: the decided approval.
    ApprovalDecided {
        /// Granted (`approve`) or rejected.
        grant: bool,
        /// The approval as it now stands.
        approval: Approval,
    },
}

/// A decision with what the gateway needs besides: the policy that decided
/// and the approval it opened or used.
#[derive(Debug)]
pub struct Answer<'e> {
    /// The engine's decision.
    pub decision: Decision<'e>,
    /// The hash of the policy that decided.
    pub policy: &'e str,
    /// The approval this answer opened (for `require_approval`), or the one
    /// the request presented, with where it stands now.
    pub approval: Option<ApprovalRef>,
    /// The decision's id, for an `outcome` to cite (servers give one).
    pub decision_id: Option<DecisionId>,
    /// What an allowed call is made under (`output`: the output rules its
    /// result passes through, with the `result` operation).
    pub obligations: Option<Value>,
}

/// A decision's id: its sequence number and a keyed hash, as `<seq>.<tag>`
/// in hex (issued and checked by the service).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DecisionId {
    /// Its sequence number.
    pub seq: u64,
    /// Its keyed hash.
    pub tag: u64,
}

impl std::fmt::Display for DecisionId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:x}.{:016x}", self.seq, self.tag)
    }
}

impl DecisionId {
    /// Reads an id as [`DecisionId`]'s `Display` writes it.
    pub fn parse(text: &str) -> Option<DecisionId> {
        let (seq, tag) = text.split_once('.')?;
        let parse = |hex: &str| {
            (hex.len() <= 16 && !hex.is_empty()).then(|| u64::from_str_radix(hex, 16).ok()).flatten()
        };
        Some(DecisionId { seq: parse(seq)?, tag: parse(tag)? })
    }
}

/// An approval as an answer refers to it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ApprovalRef {
    /// The id to grant and to send back with the call.
    pub id: String,
    /// Where it stands.
    pub state: ApprovalStatus,
    /// Seconds since the Unix epoch after which it is void (for an
    /// approval this answer opened).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<u64>,
}

#[derive(Serialize)]
struct DecisionLine<'a> {
    id: &'a Value,
    decision: &'static str,
    rule: &'a str,
    #[serde(serialize_with = "display")]
    reason: &'a Reason<'a>,
    reason_code: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    approver: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    approval: Option<&'a ApprovalRef>,
    audit: &'static str,
    policy: &'a str,
    #[serde(skip_serializing_if = "Option::is_none", serialize_with = "display_id")]
    decision_id: Option<DecisionId>,
    #[serde(skip_serializing_if = "Option::is_none")]
    obligations: Option<&'a Value>,
}

fn display_id<S: serde::Serializer>(id: &Option<DecisionId>, serializer: S) -> Result<S::Ok, S::Error> {
    match id {
        Some(id) => serializer.collect_str(id),
        None => serializer.serialize_none(),
    }
}

fn display<S: serde::Serializer>(value: &&Reason<'_>, serializer: S) -> Result<S::Ok, S::Error> {
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

/// Appends the answer line for `reply` to the request `id` (with its newline).
pub fn write_reply(out: &mut Vec<u8>, id: &Value, reply: &Reply<'_>) {
    use serde_json::json;
    let value = match reply {
        Reply::Decision(answer) => return write_answer(out, id, answer),
        Reply::Error(error) => return write_error(out, id, error),
        Reply::Health { policy, state, audit } => {
            let ok = state.is_ok() && audit.as_ref().is_none_or(crate::state::Condition::is_ok);
            let mut health = json!({
                "id": id,
                "health": if ok { "ok" } else { "degraded" },
                "protocol": PROTOCOL_VERSION,
                "policy": policy,
                "state": state.to_json(),
            });
            if let (Some(audit), Some(object)) = (audit, health.as_object_mut()) {
                object.insert(String::from("audit"), audit.to_json());
            }
            health
        }
        Reply::Status(status) => json!({"id": id, "status": status}),
        Reply::Visible(tools) => json!({"id": id, "visible": tools}),
        Reply::Scope(env) => json!({"id": id, "scope": {"env": env}}),
        Reply::Output { result, verdict, rule, killed, findings } => {
            let mut output = json!({"verdict": verdict, "findings": findings, "result": result});
            if let Some(object) = output.as_object_mut() {
                if let Some(rule) = rule {
                    object.insert(String::from("rule"), json!(rule));
                }
                if *killed {
                    object.insert(String::from("killed"), json!(true));
                }
            }
            json!({"id": id, "output": output})
        }
        Reply::Drift(None) => json!({"id": id, "drift": {"catalogued": false}}),
        Reply::Drift(Some(drift)) => json!({"id": id, "drift": {
            "catalogued": true, "added": drift.added, "removed": drift.removed, "changed": drift.changed,
        }}),
        Reply::Reload { ok, policy, errors } => {
            let mut reload = json!({"ok": ok, "policy": policy});
            if let (Some(errors), Some(object)) = (errors, reload.as_object_mut()) {
                object.insert(String::from("errors"), json!(errors));
            }
            json!({"id": id, "reload": reload})
        }
        Reply::Outcome { consecutive_errors, cost, killed } => json!({"id": id, "outcome": {
            "recorded": true,
            "consecutive_errors": consecutive_errors,
            "cost": cost,
            "killed": killed,
        }}),
        Reply::Kill { scope, warning } => {
            let mut kill = json!({"ok": true, "scope": scope});
            if let Some(warning) = warning {
                kill["warning"] = Value::from(warning.as_str());
            }
            json!({"id": id, "kill": kill})
        }
        Reply::Revive { scope, was_killed } => {
            json!({"id": id, "revive": {"ok": true, "scope": scope, "was_killed": was_killed}})
        }
        Reply::Kills(kills) => {
            let kills: Vec<Value> =
                kills.iter().map(|(scope, kill)| json!({"scope": scope, "kill": kill})).collect();
            json!({"id": id, "kills": kills})
        }
        Reply::Approvals { approvals, now } => {
            let approvals: Vec<Value> = approvals
                .iter()
                .map(|approval| {
                    let mut shown = json!(approval);
                    if let Some(object) = shown.as_object_mut() {
                        object.insert("age_secs".into(), json!(now.saturating_sub(approval.opened_at)));
                        object.insert(
                            "expires_in_secs".into(),
                            json!(approval.expires_at.saturating_sub(*now)),
                        );
                    }
                    shown
                })
                .collect();
            json!({"id": id, "approvals": approvals})
        }
        Reply::ApprovalDecided { grant, approval } => {
            let op = if *grant { "approve" } else { "reject" };
            json!({"id": id, op: {"ok": true, "approval": approval}})
        }
    };
    write_json(out, &value);
}

/// Appends the answer line for a decision.
pub fn write_answer(out: &mut Vec<u8>, id: &Value, answer: &Answer<'_>) {
    let decision = &answer.decision;
    let line = DecisionLine {
        id,
        decision: decision.outcome.as_str(),
        rule: decision.rule,
        reason: &decision.reason,
        reason_code: decision.reason.code().as_str(),
        approver: decision.approver,
        approval: answer.approval.as_ref(),
        audit: decision.audit.as_str(),
        policy: answer.policy,
        decision_id: answer.decision_id,
        obligations: answer.obligations.as_ref(),
    };
    write_json(out, &line);
}

/// Appends the answer line for an error (with its newline) to `out`.
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
