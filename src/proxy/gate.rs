//! Where the proxy's decisions come from. The proxy speaks the decision
//! protocol's JSON lines to its gate and reads the answers as JSON, so
//! deciding in-process and deciding through a running `toolgate serve`
//! give the same answers in the same shape.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncWriteExt, BufReader};
use tokio::net::UnixStream;
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};

use crate::compiler::catalog::Hints;
use crate::protocol::{self, LineBuffer, ReadLine, read_line, write_error, write_reply};
use crate::service::{AuditBatch, Role, Service};

/// The longest answer read from a decision server.
const MAX_ANSWER: usize = 16 << 20;

/// The proxy's source of decisions.
pub enum Gate {
    /// A service in this process: its state, audit trail and admin socket
    /// are the proxy's own.
    InProcess(Arc<Service>),
    /// A running `toolgate serve`, on its decision socket: many proxies
    /// share its counters, approvals, kills and audit trail.
    Remote(Remote),
}

impl Gate {
    /// Decides in this process, on `service`.
    pub fn in_process(service: Arc<Service>) -> Gate {
        Gate::InProcess(service)
    }

    /// Decides through the decision socket at `path`; an answer that takes
    /// longer than `deadline` is a denial.
    pub fn remote(path: PathBuf, deadline: Duration) -> Gate {
        Gate::Remote(Remote {
            path,
            deadline,
            connection: tokio::sync::Mutex::new(None),
            next_id: AtomicU64::new(1),
        })
    }

    /// The answer to one request line of the decision protocol, as JSON.
    /// An answer always comes back: errors are answers (denials) too.
    pub async fn ask(&self, line: &Value) -> Value {
        match self {
            Gate::InProcess(service) => ask_service(service, line).await,
            Gate::Remote(remote) => remote.ask(line).await.unwrap_or_else(|message| {
                tracing::error!(socket = %remote.path.display(), %message, "no answer from the decision server; denying");
                json!({"decision": "deny", "error": {"code": "unavailable", "message": message}})
            }),
        }
    }

    /// Which of `tools` `agent` may ever call under the policy in force;
    /// none if that cannot be known.
    /// `annotations` are the tools' as their server lists them, by name.
    pub async fn visible(
        &self,
        agent: &str,
        tools: Vec<String>,
        annotations: &HashMap<String, Value>,
    ) -> HashSet<String> {
        match self {
            Gate::InProcess(service) => {
                let engine = service.engine();
                let hints = |tool: &str| {
                    let annotations = annotations.get(tool).and_then(Value::as_object);
                    annotations.map(|a| Hints::from_annotations(Some(a)))
                };
                tools.into_iter().filter(|tool| engine.may_call(agent, tool, hints(tool))).collect()
            }
            Gate::Remote(_) => {
                let line = json!({"id": 0, "op": "visible", "agent": agent, "tools": tools, "annotations": annotations});
                let answer = self.ask(&line).await;
                let visible = answer.get("visible").and_then(Value::as_array).into_iter().flatten();
                visible.filter_map(Value::as_str).map(str::to_owned).collect()
            }
        }
    }
}

async fn ask_service(service: &Service, line: &Value) -> Value {
    let text = line.to_string();
    let parsed = protocol::parse_line(&text);
    let engine = service.engine();
    let mut batch = AuditBatch::default();
    let reply = service.handle(&engine, &parsed, &Role::Decisions, &mut batch).await;
    let mut out = Vec::new();
    match service.submit(&mut batch).confirmed().await {
        Ok(()) => write_reply(&mut out, &parsed.id, &reply),
        Err(error) => write_error(&mut out, &parsed.id, &error.wire_error()),
    }
    serde_json::from_slice(&out).unwrap_or_else(|_| {
        json!({"decision": "deny", "error": {"code": "unavailable", "message": "the answer could not be read"}})
    })
}

/// A decision server's socket, connected on first use and again after a
/// failure.
pub struct Remote {
    path: PathBuf,
    deadline: Duration,
    connection: tokio::sync::Mutex<Option<Connection>>,
    next_id: AtomicU64,
}

struct Connection {
    reader: BufReader<OwnedReadHalf>,
    writer: OwnedWriteHalf,
    line: LineBuffer,
}

impl Remote {
    /// One request and its answer. A broken connection is opened again once
    /// (the server may have restarted). The connection is out of its slot
    /// while a request is on it, and goes back only once the answer, with
    /// the request's own id, is read: a request abandoned half-way, or not
    /// answered within the deadline, takes its connection with it, so a
    /// late answer can never be taken for the next request's.
    async fn ask(&self, line: &Value) -> Result<Value, String> {
        let mut connection = self.connection.lock().await;
        let mut tries = 0;
        loop {
            tries += 1;
            let id = self.next_id.fetch_add(1, Ordering::Relaxed);
            let mut request = line.clone();
            if let Some(object) = request.as_object_mut() {
                object.insert(String::from("id"), Value::from(id));
            }
            let mut text = request.to_string().into_bytes();
            text.push(b'\n');
            let mut open = match connection.take() {
                Some(open) => open,
                None => self.connect().await?,
            };
            match tokio::time::timeout(self.deadline, open.exchange(&text)).await {
                Ok(Ok(answer)) if answer.get("id") == Some(&Value::from(id)) => {
                    *connection = Some(open);
                    return Ok(answer);
                }
                Ok(Ok(answer)) => return Err(format!("an answer to another request: {answer}")),
                Ok(Err(error)) if tries == 2 => return Err(error),
                Ok(Err(_)) => {}
                Err(_) => return Err(format!("no answer within {} ms", self.deadline.as_millis())),
            }
        }
    }

    async fn connect(&self) -> Result<Connection, String> {
        let stream = UnixStream::connect(&self.path)
            .await
            .map_err(|error| format!("cannot connect to {}: {error}", self.path.display()))?;
        let (read, writer) = stream.into_split();
        Ok(Connection { reader: BufReader::new(read), writer, line: LineBuffer::default() })
    }
}

impl Connection {
    async fn exchange(&mut self, request: &[u8]) -> Result<Value, String> {
        self.writer.write_all(request).await.map_err(|e| format!("cannot send: {e}"))?;
        self.line.clear();
        match read_line(&mut self.reader, &mut self.line, MAX_ANSWER).await {
            Ok(ReadLine::Line) => {
                serde_json::from_slice(self.line.bytes()).map_err(|e| format!("the answer is not JSON: {e}"))
            }
            Ok(ReadLine::TooLong) => Err(String::from("the answer is too long")),
            Ok(ReadLine::Eof) => Err(String::from("the decision server closed the connection")),
            Err(error) => Err(format!("cannot read the answer: {error}")),
        }
    }
}
