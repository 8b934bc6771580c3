//! Passing an allowed call's result through the output rules before the
//! model sees it (when the decision's `obligations.output` says they
//! apply). A result that cannot be checked is withheld.

use serde_json::{Value, json};

use serde_json::value::RawValue;

use super::Relay;
use super::jsonrpc::{self, Envelope};

impl Relay {
    /// Replaces the `result` of `message` with what the gate's `result`
    /// operation lets the agent see; a JSON-RPC error's message is judged
    /// as the text of a result.
    pub(super) async fn govern_output(&self, tool: &str, decision_id: Option<&str>, message: &mut Envelope) {
        if message.has("error") {
            return self.govern_error(tool, decision_id, message).await;
        }
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
                let verdict = answer.pointer("/output/verdict").and_then(Value::as_str);
                // Passed as it is: the server's bytes go on.
                if !untouched(&answer) {
                    let rule = answer.pointer("/output/rule").and_then(Value::as_str);
                    tracing::info!(tool, ?verdict, ?rule, "output rules applied");
                    message.set_value("result", governed);
                }
            }
            _ => {
                let why = answer.pointer("/error/message").and_then(Value::as_str).unwrap_or("no answer");
                self.withhold(message, why).await;
            }
        }
    }

    /// Judges a JSON-RPC error's `message` (servers put what failed in it,
    /// connection strings included) as one text: redacted, or replaced by
    /// a sentence saying it was withheld; `data` is dropped once the rules
    /// changed anything.
    async fn govern_error(&self, tool: &str, decision_id: Option<&str>, message: &mut Envelope) {
        let Some(mut error) = message.get::<serde_json::Map<String, Value>>("error") else { return };
        let Some(text) = error.get("message").and_then(Value::as_str).map(str::to_owned) else { return };
        let line = json!({
            "id": 0, "op": "result", "decision_id": decision_id.unwrap_or(""), "agent": self.caller.agent,
            "session": self.caller.session, "tool": tool,
            "result": {"content": [{"type": "text", "text": text}]},
        });
        let answer = self.gate.ask(&line).await;
        if untouched(&answer) {
            return;
        }
        let judged = match answer.pointer("/output/verdict").and_then(Value::as_str) {
            Some("changed") | Some("passed") => {
                answer.pointer("/output/result/content/0/text").and_then(Value::as_str).map(str::to_owned)
            }
            _ => None,
        };
        let text = judged.unwrap_or_else(|| {
            String::from(
                "toolgate withheld this error message: the output policy does not let it reach the model",
            )
        });
        error.insert(String::from("message"), Value::String(text));
        error.remove("data");
        message.set_value("error", &error);
    }

    /// The tools of a list page the agent may see, their definitions
    /// through the agent's output rules: `None` when the rules pass them
    /// as they are (they go on byte for byte), none if they cannot be
    /// checked.
    pub(super) async fn govern_definitions(&self, tools: &[&RawValue]) -> Option<Vec<Value>> {
        let parsed: Vec<Value> =
            tools.iter().filter_map(|raw| serde_json::from_str(raw.get()).ok()).collect();
        let line = json!({"id": 0, "op": "result", "kind": "tools", "agent": self.caller.agent,
                          "session": self.caller.session, "result": {"tools": parsed}});
        let answer = self.gate.ask(&line).await;
        let passed = untouched(&answer);
        match answer.pointer("/output/result/tools").and_then(Value::as_array) {
            Some(_) if passed => None,
            Some(tools) => {
                if let Some(rule) = answer.pointer("/output/rule").and_then(Value::as_str) {
                    tracing::warn!(
                        rule,
                        "a tool definition the output rules withhold was left out of the list"
                    );
                }
                Some(tools.clone())
            }
            None => {
                let why = answer.pointer("/error/message").and_then(Value::as_str).unwrap_or("no answer");
                tracing::error!(
                    why,
                    "the tool definitions could not be checked against the output rules; none listed"
                );
                Some(Vec::new())
            }
        }
    }

    /// Replaces a `resources/read` or `prompts/get` result with what the
    /// agent's output rules let the model see; a result that cannot be
    /// checked becomes a JSON-RPC error.
    pub(super) async fn govern_content(&self, kind: &str, message: &mut Envelope) {
        let Some(raw) = message.raw("result") else { return };
        let result: Option<Value> = serde_json::from_str(raw.get()).ok().filter(Value::is_object);
        let answer = match &result {
            Some(result) => {
                let line = json!({"id": 0, "op": "result", "kind": kind, "agent": self.caller.agent,
                                  "session": self.caller.session, "result": result});
                self.gate.ask(&line).await
            }
            None => json!({"error": {"message": "the result is not a JSON object"}}),
        };
        let passed = untouched(&answer);
        match answer.pointer("/output/result") {
            // Passed as it is: the server's bytes go on.
            Some(Value::Object(_)) if passed => {}
            Some(governed @ Value::Object(_)) => message.set_value("result", governed),
            _ => {
                let why = answer.pointer("/error/message").and_then(Value::as_str).unwrap_or("no answer");
                tracing::error!(
                    why,
                    kind,
                    "a result could not be checked against the output rules; withheld"
                );
                let text = format!(
                    "toolgate withheld this {kind}: it could not be checked against the output policy ({why})"
                );
                let error = jsonrpc::error(None, jsonrpc::INTERNAL_ERROR, &text);
                if let Some(error) = error.get("error") {
                    message.remove("result");
                    message.set_value("error", error);
                }
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

/// Whether the rules passed a result as it is: nothing changed, nothing
/// found (a flagged finding adds `_meta`).
fn untouched(answer: &Value) -> bool {
    let passed = answer.pointer("/output/verdict").and_then(Value::as_str) == Some("passed");
    let found = answer.pointer("/output/findings").and_then(Value::as_array).is_some_and(|f| !f.is_empty());
    passed && !found
}
