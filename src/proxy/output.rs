//! Passing an allowed call's result through the output rules before the
//! model sees it (when the decision's `obligations.output` says they
//! apply). A result that cannot be checked is withheld.

use serde_json::{Value, json};

use super::Relay;
use super::jsonrpc::Envelope;

impl Relay {
    /// Replaces the `result` of `message` with what the gate's `result`
    /// operation lets the agent see; a JSON-RPC error passes as it is.
    pub(super) async fn govern_output(&self, tool: &str, decision_id: Option<&str>, message: &mut Envelope) {
        let Some(raw) = message.raw("result") else { return };
        let result: Value = match serde_json::from_str(raw.get()) {
            Ok(result @ Value::Object(_)) => result,
            _ => return self.withhold(message, "the tool result is not a JSON object").await,
        };
        let mut line = json!({
            "id": 0, "op": "result", "decision_id": decision_id.unwrap_or(""), "agent": self.caller.agent,
            "session": self.caller.session, "tool": tool, "result": result,
        });
        let schema = super::lock(&self.output_schemas).get(tool).cloned();
        if let (Some(schema), Some(object)) = (schema, line.as_object_mut()) {
            object.insert(String::from("outputSchema"), schema);
        }
        let answer = self.gate.ask(&line).await;
        match answer.pointer("/output/result") {
            Some(governed @ Value::Object(_)) => {
                if let Some(verdict) = answer.pointer("/output/verdict").and_then(Value::as_str)
                    && verdict != "passed"
                {
                    let rule = answer.pointer("/output/rule").and_then(Value::as_str);
                    tracing::info!(tool, verdict, ?rule, "output rules applied");
                }
                message.set_value("result", governed);
            }
            _ => {
                let why = answer.pointer("/error/message").and_then(Value::as_str).unwrap_or("no answer");
                self.withhold(message, why).await;
            }
        }
    }

    /// Withholds a result that could not be checked.
    async fn withhold(&self, message: &mut Envelope, why: &str) {
        tracing::error!(why, "a tool result could not be checked against the output rules; withheld");
        let text = format!(
            "toolgate withheld this tool result: it could not be checked against the output policy ({why})."
        );
        let result = json!({
            "resultType": "complete", "content": [{"type": "text", "text": text}], "isError": true,
            "_meta": {crate::output::OUTPUT_META: {"withheld": true}},
        });
        message.set_value("result", &result);
    }
}
