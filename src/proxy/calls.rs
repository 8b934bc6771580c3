//! `tools/call` through the gate: the decision request, and what the model
//! sees when a call is denied or waits for a human. The proxy holds no
//! approvals: the identical call asked again in the same session finds its
//! approval at the gate (pending, or granted and used once).

use serde_json::{Map, Value, json};

use super::jsonrpc;
use crate::compiler::approvers::USER_APPROVER;

/// The `_meta` key of a decision.
pub const DECISION_META: &str = "dev.toolgate/decision";
/// The `_meta` key of an approval.
pub const APPROVAL_META: &str = "dev.toolgate/approval";

/// Who calls, as every decision request names them.
#[derive(Clone, Debug)]
pub struct Caller {
    /// The agent's name in the policy.
    pub agent: String,
    /// The upstream server's name: tool `t` is decided as `NAME/t`.
    pub server: Option<String>,
    /// The toolgate session.
    pub session: String,
    /// Who the agent acts for (a JSON object), if given.
    pub principal: Option<Value>,
    /// Anything else known about the call (a JSON object), if given.
    pub context: Option<Value>,
}

impl Caller {
    /// The tool's name as the policy names it.
    pub fn qualified(&self, tool: &str) -> String {
        match &self.server {
            Some(server) => format!("{server}/{tool}"),
            None => tool.to_owned(),
        }
    }

    /// The decision protocol's `decide` line for a call; `annotations`
    /// are the tool's as the server last listed them.
    pub fn decide_line(&self, tool: &str, args: &Map<String, Value>, annotations: Option<&Value>) -> Value {
        let mut line = Map::new();
        line.insert("id".into(), json!(0));
        line.insert("op".into(), json!("decide"));
        line.insert("agent".into(), json!(self.agent));
        line.insert("tool".into(), json!(tool));
        line.insert("args".into(), Value::Object(args.clone()));
        line.insert("session".into(), json!(self.session));
        let optional = [
            ("principal", self.principal.as_ref()),
            ("context", self.context.as_ref()),
            ("annotations", annotations),
        ];
        for (key, value) in optional {
            if let Some(value) = value {
                line.insert(key.into(), value.clone());
            }
        }
        Value::Object(line)
    }

    /// The decision protocol's `outcome` line for a call that was made.
    pub fn outcome_line(
        &self,
        decision_id: &str,
        tool: &str,
        error: bool,
        latency_ms: f64,
        bytes: u64,
    ) -> Value {
        json!({
            "id": 0, "op": "outcome", "decision_id": decision_id, "agent": self.agent,
            "session": self.session, "tool": tool, "status": if error { "error" } else { "ok" },
            "latency_ms": latency_ms, "output_bytes": bytes,
        })
    }
}

/// What an allowed call is made under (the answer's `obligations`).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Obligations {
    /// The result must pass the output rules.
    pub output: bool,
    /// The call is cancelled after this many milliseconds.
    pub timeout_ms: Option<u64>,
    /// The failure policy (`onFailure`, with `fallbackAvailable`).
    pub on_failure: Option<Value>,
}

impl Obligations {
    /// The obligations of a decision answer.
    pub fn of(answer: &Value) -> Obligations {
        let obligations = answer.get("obligations");
        Obligations {
            output: obligations.and_then(|o| o.get("output")).is_some(),
            timeout_ms: obligations.and_then(|o| o.get("timeoutMs")).and_then(Value::as_u64),
            on_failure: obligations.and_then(|o| o.get("onFailure")).cloned(),
        }
    }
}

/// What becomes of a call.
#[derive(Debug)]
pub enum Verdict {
    /// Forward it upstream; report its outcome under this decision id.
    Forward {
        /// The allow's id, when the gate issued one.
        decision_id: Option<String>,
        /// What the call is made under.
        obligations: Obligations,
    },
    /// Answer the client with this `tools/call` result instead.
    Answer(Value),
    /// The agent may never call this tool: answer as a server does for a
    /// tool it does not have.
    Hidden,
    /// The gate asks the agent's own user (`approver: user`): ask them
    /// through the client if it can, else answer `pending`.
    AskUser {
        /// The approval to confirm.
        approval: String,
        /// When it expires (seconds since the epoch), if said.
        expires_at: Option<u64>,
        /// The answer when the user cannot be asked.
        pending: Value,
    },
}

/// Judges the gate's `answer` to the call of `name` (as the client named it).
pub fn judge(answer: &Value, name: &str) -> Verdict {
    let field = |name: &str| answer.get(name).and_then(Value::as_str);
    if let Some(error) = answer.get("error") {
        let code = error.get("code").and_then(Value::as_str).unwrap_or("unavailable");
        let message = error.get("message").and_then(Value::as_str).unwrap_or("no answer");
        let text = format!(
            "toolgate could not decide this call to `{name}` ({code}: {message}), so it was not made. Retrying later may succeed."
        );
        let meta = json!({DECISION_META: {"decision": "deny", "reason_code": code, "reason": message}});
        return Verdict::Answer(tool_error(text, meta));
    }
    let code = field("reason_code").unwrap_or("internal_error");
    let reason = field("reason").unwrap_or("no reason given");
    let decision_meta = json!({
        "decision": field("decision"), "rule": field("rule"), "reason_code": code, "reason": reason,
        "decision_id": field("decision_id"), "policy": field("policy"),
    });
    match field("decision") {
        Some("allow") => Verdict::Forward {
            decision_id: field("decision_id").map(str::to_owned),
            obligations: Obligations::of(answer),
        },
        Some("require_approval") => {
            let approval = answer.get("approval");
            let id = approval.and_then(|a| a.get("id")).and_then(Value::as_str);
            match id {
                Some(id) if field("approver") == Some(USER_APPROVER) => {
                    let expires_at = approval.and_then(|a| a.get("expires_at")).and_then(Value::as_u64);
                    let pending = unconfirmed(name, reason, expires_at, decision_meta);
                    Verdict::AskUser { approval: id.to_owned(), expires_at, pending }
                }
                _ => Verdict::Answer(pending(name, answer, reason, decision_meta)),
            }
        }
        // The decision is recorded; the client learns only that there is no
        // such tool (its name may exist, for other agents).
        Some("deny") if HIDDEN.contains(&code) => Verdict::Hidden,
        _ => {
            let rule = field("rule").unwrap_or("(none)");
            let text =
                format!("toolgate denied this call to `{name}`: {reason} (rule {rule}). {}", hint(code));
            Verdict::Answer(tool_error(text, json!({DECISION_META: decision_meta})))
        }
    }
}

/// The reason codes of a tool the agent may never call: the tools hidden
/// from its lists.
const HIDDEN: &[&str] = &["unknown_agent", "unknown_tool", "invalid_name", "tool_denied", "tool_not_allowed"];

/// The result of a call that waits for a human.
fn pending(name: &str, answer: &Value, reason: &str, decision_meta: Value) -> Value {
    let approval = answer.get("approval");
    let get = |key: &str| approval.and_then(|a| a.get(key));
    let id = get("id").and_then(Value::as_str).unwrap_or("(none)");
    let approver = answer.get("approver").and_then(Value::as_str);
    let expires_at = get("expires_at").and_then(Value::as_u64).map(rfc3339);
    let who = approver.map_or_else(|| String::from("an approver"), |a| format!("the approver `{a}`"));
    let until = expires_at.as_deref().map_or_else(String::new, |at| format!(" until {at}"));
    let text = format!(
        "This call to `{name}` needs a human approval: {reason}. Approval {id} is waiting for {who}{until}. \
         It was not made. Once it is approved, make exactly the same call again (same tool, same arguments) \
         and it will run once; until then the same call gets this answer."
    );
    let meta = json!({
        APPROVAL_META: {"id": id, "status": get("state"), "approver": approver, "expiresAt": expires_at},
        DECISION_META: decision_meta,
    });
    tool_error(text, meta)
}

/// The result of a call that waits for its user's confirmation, when they
/// cannot be asked or did not answer. The approval's id is not shown: only
/// the user's answer, through the proxy, may confirm it.
fn unconfirmed(name: &str, reason: &str, expires_at: Option<u64>, decision_meta: Value) -> Value {
    let text = format!(
        "This call to `{name}` needs the confirmation of the agent's user: {reason}. It was not made: \
         this client cannot ask its user, or they did not answer. Making the same call again asks again."
    );
    let meta = json!({
        APPROVAL_META: {"status": "pending", "approver": USER_APPROVER, "expiresAt": expires_at.map(rfc3339)},
        DECISION_META: decision_meta,
    });
    tool_error(text, meta)
}

/// What the user is asked: the call, exactly.
pub fn confirmation_text(name: &str, args: &Map<String, Value>) -> String {
    let shown = serde_json::to_string_pretty(args).unwrap_or_default();
    format!(
        "The agent wants to call the tool `{name}` with these arguments:\n{shown}\nAllow this call, once?"
    )
}

/// The result of a call the user declined.
pub fn declined(name: &str, approval: &str, action: &str) -> Value {
    let text = format!(
        "The user declined this call to `{name}` ({action}); it was not made. Do not make it again unless the user asks for it."
    );
    let meta = json!({
        APPROVAL_META: {"id": approval, "status": "rejected", "approver": USER_APPROVER},
        DECISION_META: {"decision": "deny", "reason_code": "approval_rejected", "reason": format!("the user answered `{action}`")},
    });
    tool_error(text, meta)
}

/// A `tools/call` result the model reads as a failed call. `resultType`
/// is required from 2026-07-28 on, and an extra member before.
fn tool_error(text: String, meta: Value) -> Value {
    json!({"resultType": "complete", "content": [{"type": "text", "text": text}], "isError": true, "_meta": meta})
}

/// Seconds since the epoch as an RFC 3339 time.
fn rfc3339(seconds: u64) -> String {
    let at = std::time::UNIX_EPOCH + std::time::Duration::from_secs(seconds);
    humantime::format_rfc3339_seconds(at).to_string()
}

/// What retrying can do, by reason code: the model's next step.
pub fn hint(code: &str) -> &'static str {
    match code {
        "tool_denied" | "tool_not_allowed" | "unknown_tool" | "unknown_agent" | "invalid_name" => {
            "This tool is not available to this agent; retrying will not help."
        }
        "schema_violation"
        | "missing_argument"
        | "invalid_argument"
        | "condition_false"
        | "rego_false"
        | "amount_above_ceiling"
        | "amount_unreadable" => {
            "The same call will be denied again; a call whose arguments satisfy the rule may be allowed."
        }
        "cap_reached" => "This session's limit is used up; retrying in this session will not help.",
        "rate_limited" => "The rate limit frees up as its window passes; retrying later may succeed.",
        "circuit_open" => {
            "Calls of this tool keep failing; retrying after the time the reason gives may succeed."
        }
        "error_streak" | "cost_ceiling" | "killed" => {
            "This agent or session is stopped; retrying will not help until an operator revives it."
        }
        "approval_rejected" => "An approver rejected this call; do not retry it unchanged.",
        "tool_drift" => {
            "This tool changed since its description was reviewed; retrying will not help until the policy's catalog is reviewed again."
        }
        _ => "toolgate could not decide safely, so the call was denied; retrying later may succeed.",
    }
}

/// The JSON-RPC error for a tool the agent may never call: the same error
/// an MCP server gives for a tool it does not have, so the tool's
/// existence is not revealed.
pub fn unknown_tool(id: &Value, name: &str) -> Value {
    jsonrpc::error(Some(id), jsonrpc::INVALID_PARAMS, &format!("Unknown tool: {name}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_answer_becomes_what_the_model_can_act_on() {
        let allow = json!({"decision": "allow", "reason_code": "approved", "decision_id": "d1"});
        assert!(
            matches!(judge(&allow, "pay"), Verdict::Forward { decision_id: Some(ref id), ref obligations } if id == "d1" && !obligations.output)
        );
        let hidden = json!({"decision": "deny", "reason_code": "tool_not_allowed", "reason": "no"});
        assert!(matches!(judge(&hidden, "pay"), Verdict::Hidden));
        let capped =
            json!({"decision": "deny", "reason_code": "cap_reached", "reason": "3 of 3", "rule": "r"});
        let Verdict::Answer(result) = judge(&capped, "pay") else { panic!("an answer") };
        assert_eq!(result["isError"], true);
        assert_eq!(result["_meta"][DECISION_META]["rule"], "r");
        let text = result["content"][0]["text"].as_str().unwrap_or_default();
        assert!(text.contains("3 of 3") && text.contains("will not help"), "{text}");
        let error = json!({"decision": "deny", "error": {"code": "unavailable", "message": "down"}});
        let Verdict::Answer(result) = judge(&error, "pay") else { panic!("an answer") };
        assert_eq!(result["_meta"][DECISION_META]["reason_code"], "unavailable");
    }
}
