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

impl Relay {
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
            "params": {"message": calls::confirmation_text(&name, &args), "requestedSchema": {"type": "object", "properties": {}}},
        });
        self.answer_client(request).await;
        let now =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_secs();
        let wait = expires_at.map_or(USER_WAIT, |at| Duration::from_secs(at.saturating_sub(now)));
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
        let confirmed = self
            .gate
            .ask(&serde_json::json!({"id": 0, "op": "confirm", "approval": approval, "accept": accept}))
            .await;
        if let Some(error) = confirmed.get("error") {
            tracing::warn!(%error, "the user's answer could not be recorded");
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
        let answer = self.gate.ask(&self.caller.decide_line(&tool, &args)).await;
        match calls::judge(&answer, &name) {
            Verdict::Forward { decision_id } => {
                let purpose = Purpose::Call { tool, decision_id, started: Instant::now() };
                self.forward_request(id, message, purpose).await;
            }
            Verdict::Answer(result) | Verdict::AskUser { pending: result, .. } => {
                self.answer_client(jsonrpc::result(&id, result)).await;
            }
            Verdict::Hidden => self.answer_client(calls::unknown_tool(&id, &name)).await,
        }
    }
}
