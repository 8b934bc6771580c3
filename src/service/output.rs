//! `result`: a tool result an allowed call returned, passed through the
//! agent's output rules. Findings are recorded (rule ids and counts, never
//! the text) before the answer leaves; a withheld result whose rule says
//! `kill` also kills the session (the agent, when the call named none).

use serde_json::{Value, json};

use super::{Role, Service};
use crate::engine::Engine;
use crate::output::content::{Carrier, apply_to};
use crate::output::{Verdict, apply};
use crate::protocol::{Reply, WireError};
use crate::state::kill::KillScope;

/// Results at least this large are scanned off the runtime's threads.
const SCAN_INLINE_BYTES: usize = 64 * 1024;

/// The call a result answers.
pub(super) struct Call<'a> {
    pub decision_id: &'a str,
    pub agent: &'a str,
    pub session: Option<&'a str>,
    pub tool: &'a str,
}

impl Service {
    /// Applies the output rules for the call's agent and tool to `result`.
    pub(super) async fn output(
        &self,
        engine: &Engine,
        call: Call<'_>,
        result: &Value,
        output_schema: Option<&Value>,
        role: &Role,
    ) -> Result<Reply<'static>, WireError> {
        let Call { decision_id, agent, session, tool } = call;
        // Only the gateway that was allowed the call can have its result
        // judged: no client can have another session's results recorded or
        // that session killed.
        if self.config.serving && !self.ids.issued(decision_id, agent, session) {
            let message = "`decision_id` names no allow this server gave to that agent and session";
            return Err(WireError::new(crate::protocol::WireErrorCode::InvalidField, message));
        }
        let Some((scanner, rules)) = engine.output_rules(agent, tool) else {
            return Ok(untouched(result));
        };
        let size = result.to_string().len();
        let applied = if size < SCAN_INLINE_BYTES {
            apply(result, &scanner, &rules, output_schema)
        } else {
            let (result, schema) = (result.clone(), output_schema.cloned());
            tokio::task::spawn_blocking(move || apply(&result, &scanner, &rules, schema.as_ref()))
                .await
                .map_err(|error| {
                    WireError::new(
                        crate::protocol::WireErrorCode::Unavailable,
                        format!("the result could not be scanned: {error}"),
                    )
                })?
        };
        let (verdict, rule, kill) = parts(&applied.verdict);
        if !applied.findings.is_empty() || verdict != "passed" {
            let record = json!({
                "decision_id": decision_id, "agent": agent, "session": session, "tool": tool,
                "verdict": verdict, "rule": rule, "findings": applied.findings,
            });
            // A result whose findings cannot be recorded is not shown.
            self.record_first("output", record).await?;
        }
        let mut killed = false;
        if kill {
            let scope = match session {
                Some(session) => KillScope::Session { agent: agent.to_owned(), session: session.to_owned() },
                None => KillScope::Agent { agent: agent.to_owned() },
            };
            let reason = format!(
                "output rule `{}` found what it looks for in a result of `{tool}`",
                rule.as_deref().unwrap_or("?")
            );
            tracing::warn!(%agent, ?session, %tool, ?rule, "output rule says kill");
            killed = self.kill(&scope, &reason, Some("toolgate output policy"), role).await.is_ok();
        }
        Ok(Reply::Output { result: applied.result, verdict, rule, killed, findings: applied.findings })
    }

    /// Applies the agent's own output rules to text that reaches the model
    /// other than as a tool result (`kind`: `resource`, `prompt`, `tools`).
    pub(super) async fn content(
        &self,
        engine: &Engine,
        kind: &str,
        agent: &str,
        session: Option<&str>,
        result: &Value,
    ) -> Result<Reply<'static>, WireError> {
        let Some(carrier) = Carrier::named(kind) else {
            let message = format!("`kind` `{kind}` is none of tool, resource, prompt, tools");
            return Err(WireError::new(crate::protocol::WireErrorCode::InvalidField, message));
        };
        let Some((scanner, rules)) = engine.agent_output_rules(agent) else {
            return Ok(untouched(result));
        };
        let applied = apply_to(carrier, result, &scanner, &rules);
        let (verdict, rule, _) = parts(&applied.verdict);
        if !applied.findings.is_empty() || verdict != "passed" {
            let record = json!({
                "content": kind, "agent": agent, "session": session, "verdict": verdict, "rule": rule,
                "findings": applied.findings,
            });
            self.record_first("output", record).await?;
        }
        Ok(Reply::Output { result: applied.result, verdict, rule, killed: false, findings: applied.findings })
    }
}

/// The answer for a result no output rule applies to: as it came.
fn untouched(result: &Value) -> Reply<'static> {
    Reply::Output {
        result: result.clone(),
        verdict: "passed",
        rule: None,
        killed: false,
        findings: Vec::new(),
    }
}

/// A verdict as the answer and the record name it: its word, the rule that
/// withheld the result, and whether that rule kills.
fn parts(verdict: &Verdict) -> (&'static str, Option<String>, bool) {
    match verdict {
        Verdict::Passed => ("passed", None, false),
        Verdict::Changed => ("changed", None, false),
        Verdict::Withheld { rule, kill } => ("withheld", Some(rule.clone()), *kill),
    }
}
