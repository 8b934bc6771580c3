//! Asking the agent's own user (`approver: user`): the proxy's question to
//! the client (an elicitation), the user's answer recorded at the gate,
//! then the call made or refused — in a task of its own, while the relay
//! reads on (the answer arrives on the same stream).

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use serde_json::{Map, Value};
use tokio::sync::oneshot;

use super::calls::{self, Verdict};
use super::jsonrpc::{self, Envelope};
use super::state_seal;
use super::{Purpose, Relay, lock};

/// A call waiting for the agent's own user.
pub(super) struct UserCall {
    /// The proxy id of the question to the user.
    pub(super) question: u64,
    /// Resolves if the client cancels the call.
    pub(super) cancelled: oneshot::Receiver<()>,
    pub(super) id: Value,
    pub(super) message: Envelope,
    pub(super) name: String,
    pub(super) tool: String,
    pub(super) args: Map<String, Value>,
    pub(super) approval: String,
    pub(super) expires_at: Option<u64>,
    pub(super) pending: Value,
}

/// How long the proxy waits for the user when the approval says nothing.
const USER_WAIT: Duration = Duration::from_secs(900);

/// The key of the proxy's question among a call's `inputRequests`.
const CONFIRM_KEY: &str = "dev.toolgate/confirm";
/// Where a 2026-07-28 request says its protocol version and the client's
/// capabilities.
const VERSION_META: &str = "io.modelcontextprotocol/protocolVersion";
const CAPABILITIES_META: &str = "io.modelcontextprotocol/clientCapabilities";

/// The question to the user, as an elicitation's parameters.
fn question_params(name: &str, args: &Map<String, Value>) -> Value {
    serde_json::json!({"message": calls::confirmation_text(name, args), "requestedSchema": {"type": "object", "properties": {}}})
}

impl Relay {
    /// For a 2026-07-28 request from a client that can ask its user: the
    /// `input_required` result that asks them, through the client, with a
    /// sealed `requestState`; `None` for the older protocol.
    pub(super) fn input_required(
        &self,
        params: Option<&Envelope>,
        name: &str,
        tool: &str,
        args: &Map<String, Value>,
        approval: &str,
        expires_at: Option<u64>,
    ) -> Option<Value> {
        let meta = params?.get::<Value>("_meta")?;
        let modern = meta.get(VERSION_META).and_then(Value::as_str).is_some_and(|v| v >= "2026-07-28");
        let elicits =
            meta.get(CAPABILITIES_META).and_then(|c| c.get("elicitation")).is_some_and(Value::is_object);
        if !modern || !elicits {
            return None;
        }
        let expires_at = expires_at.unwrap_or_else(|| now_secs() + USER_WAIT.as_secs());
        let state = self.sealer.as_ref()?.seal(approval, expires_at, tool, args);
        Some(serde_json::json!({
            "resultType": "input_required",
            "inputRequests": {CONFIRM_KEY: {"method": "elicitation/create", "params": question_params(name, args)}},
            "requestState": state,
        }))
    }

    /// A call retried with the user's answer to the proxy's question: the
    /// proxy's part (its `requestState` and answer) is taken out of the
    /// message, and the answer recorded at the gate; a declined call's
    /// result is returned. A state that is not this proxy's, not for this
    /// call, or expired records nothing: the call is decided as it is.
    pub(super) async fn answered(
        &self,
        mut message: Envelope,
        params: Option<&Envelope>,
        name: &str,
        tool: &str,
        args: &Map<String, Value>,
    ) -> (Envelope, Option<Value>) {
        let Some(params) = params else { return (message, None) };
        let Some(state) = params.get::<String>("requestState").filter(|s| s.starts_with(state_seal::PREFIX))
        else {
            return (message, None);
        };
        let mut responses = params.get::<Map<String, Value>>("inputResponses").unwrap_or_default();
        let action = responses
            .remove(CONFIRM_KEY)
            .and_then(|r| r.get("action").and_then(Value::as_str).map(str::to_owned));
        let mut stripped = Envelope::parse(params.to_bytes().as_slice()).unwrap_or_default();
        stripped.remove("requestState");
        if responses.is_empty() {
            stripped.remove("inputResponses");
        } else {
            stripped.set_value("inputResponses", &responses);
        }
        if let Some(raw) = stripped.to_raw() {
            message.set("params", raw);
        }
        let approval = self.sealer.as_ref().and_then(|sealer| sealer.open(&state, now_secs(), tool, args));
        let (Some(approval), Some(action)) = (approval, action) else { return (message, None) };
        let accept = action == "accept";
        if !self.record_answer(&approval, accept).await {
            return (message, None);
        }
        (message, (!accept).then(|| calls::declined(name, &approval, &action)))
    }

    /// Records the user's answer at the gate; false (logged) if it could
    /// not be, and the approval then stays pending.
    async fn record_answer(&self, approval: &str, accept: bool) -> bool {
        let line = serde_json::json!({"id": 0, "op": "confirm", "approval": approval, "accept": accept});
        let confirmed = self.gate.ask(&line).await;
        if let Some(error) = confirmed.get("error") {
            tracing::warn!(%error, "the user's answer could not be recorded");
            return false;
        }
        true
    }

    /// Remembers what the client said it can do, from its `initialize`.
    pub(super) fn note_capabilities(&self, message: &Envelope) {
        let capabilities = message.get::<Value>("params").and_then(|p| p.get("capabilities").cloned());
        let elicits = capabilities.is_some_and(|c| c.get("elicitation").is_some_and(Value::is_object));
        self.elicitation.store(elicits, Ordering::Relaxed);
    }

    /// A cancelled call that waits for the user: its task is told (it
    /// withdraws the question); false if the cancellation names no such call.
    pub(super) async fn stop_asking(&self, message: &Envelope) -> bool {
        let params = message.get::<Value>("params");
        let Some(id) = params.as_ref().and_then(|p| p.get("requestId")) else { return false };
        let Some((_, cancel)) = lock(&self.asking).remove(&id.to_string()) else { return false };
        let _ = cancel.send(());
        true
    }

    /// Withdraws a question the user has not answered.
    async fn withdraw(&self, question: u64, reason: &str) {
        lock(&self.questions).remove(&question);
        let withdrawn = serde_json::json!({"jsonrpc": "2.0", "method": "notifications/cancelled",
            "params": {"requestId": question, "reason": reason}});
        self.answer_client(withdrawn).await;
    }

    /// Asks the agent's own user to accept a call (an elicitation), records
    /// their answer at the gate, and then makes the call or says why not. A
    /// call cancelled before the user answers is neither made nor answered;
    /// one cancelled after they accepted is not made, and its approval,
    /// granted, stays for the same call.
    pub(super) async fn ask_user(&self, call: UserCall) {
        let UserCall {
            question,
            mut cancelled,
            id,
            message,
            name,
            tool,
            args,
            approval,
            expires_at,
            pending,
        } = call;
        let (waiter, answer) = oneshot::channel();
        lock(&self.questions).insert(question, waiter);
        let request = serde_json::json!({
            "jsonrpc": "2.0", "id": question, "method": "elicitation/create",
            "params": question_params(&name, &args),
        });
        self.answer_client(request).await;
        let wait = expires_at.map_or(USER_WAIT, |at| Duration::from_secs(at.saturating_sub(now_secs())));
        let reply = tokio::select! {
            reply = tokio::time::timeout(wait, answer) => reply,
            _ = &mut cancelled => return self.withdraw(question, "the tool call was cancelled").await,
        };
        let action = match reply {
            Ok(Ok(reply)) => reply
                .get::<Value>("result")
                .and_then(|r| r.get("action").and_then(Value::as_str).map(str::to_owned)),
            Ok(Err(_)) => None,
            Err(_) => {
                self.withdraw(question, "the approval expired").await;
                None
            }
        };
        let Some(action) = action else {
            // No answer from the user: the approval stays pending, and the
            // same call asks again.
            return self.answer_client(jsonrpc::result(&id, pending)).await;
        };
        if cancelled.try_recv().is_ok() {
            return;
        }
        let accept = action == "accept";
        if !self.record_answer(&approval, accept).await {
            return self.answer_client(jsonrpc::result(&id, pending)).await;
        }
        if !accept {
            return self
                .answer_client(jsonrpc::result(&id, calls::declined(&name, &approval, &action)))
                .await;
        }
        if cancelled.try_recv().is_ok() {
            return;
        }
        // Granted: the same call now finds its approval and goes through once.
        let answer = self.gate.ask(&self.decide_line(&tool, &args)).await;
        match calls::judge(&answer, &name) {
            Verdict::Forward { decision_id, obligations } => {
                let purpose = Purpose::Call { tool, decision_id, started: Instant::now(), obligations };
                self.forward_request(id, message, purpose).await;
            }
            Verdict::Answer(result) | Verdict::AskUser { pending: result, .. } => {
                self.answer_client(jsonrpc::result(&id, result)).await;
            }
            Verdict::Hidden => self.answer_client(calls::unknown_tool(&id, &name)).await,
        }
    }
}

/// Seconds since the Unix epoch.
fn now_secs() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_secs()
}
