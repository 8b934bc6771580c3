//! Where the proxy's decisions come from. The proxy speaks the decision
//! protocol's JSON lines to its gate and reads the answers as JSON, so
//! deciding in-process and deciding through a running `toolgate serve`
//! give the same answers in the same shape.

use std::sync::Arc;

use serde_json::{Value, json};

use crate::protocol::{self, write_error, write_reply};
use crate::service::{AuditBatch, Role, Service};

/// The proxy's source of decisions.
pub struct Gate {
    service: Arc<Service>,
}

impl Gate {
    /// Decides in this process, on `service` (its state, audit trail and
    /// admin socket are the proxy's own).
    pub fn in_process(service: Arc<Service>) -> Gate {
        Gate { service }
    }

    /// The answer to one request line of the decision protocol, as JSON.
    /// An answer always comes back: errors are answers (denials) too.
    pub async fn ask(&self, line: &Value) -> Value {
        let text = line.to_string();
        let parsed = protocol::parse_line(&text);
        let engine = self.service.engine();
        let mut batch = AuditBatch::default();
        let reply = self.service.handle(&engine, &parsed, &Role::Decisions, &mut batch).await;
        let mut out = Vec::new();
        match self.service.submit(&mut batch).confirmed().await {
            Ok(()) => write_reply(&mut out, &parsed.id, &reply),
            Err(error) => write_error(&mut out, &parsed.id, &error.wire_error()),
        }
        serde_json::from_slice(&out).unwrap_or_else(|_| {
            json!({"decision": "deny", "error": {"code": "unavailable", "message": "the answer could not be read"}})
        })
    }

    /// Whether `agent` may ever call `tool` under the policy in force.
    pub fn may_call(&self, agent: &str, tool: &str) -> bool {
        self.service.engine().may_call(agent, tool)
    }
}
