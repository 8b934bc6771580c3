//! `toolgate catalog`: a live MCP server's `tools/list`, every page, as a
//! catalog file — so policy authors start from the tools the server really
//! has, and review what changed when they fetch it again.

use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncWriteExt, BufReader};

use super::jsonrpc::{self, Envelope, Message};
use super::upstream::{SpawnError, Upstream};
use crate::protocol::{LineBuffer, ReadLine, read_line};

/// The most pages followed (a server whose cursor never ends is refused).
const MAX_PAGES: usize = 1000;
/// The longest message read from the server.
const MAX_MESSAGE: usize = 64 << 20;

/// Why no catalog could be fetched.
#[derive(Debug)]
pub enum CatalogError {
    /// The server could not be started.
    Spawn(SpawnError),
    /// The server exited, or closed its stdout, before answering.
    Closed(&'static str),
    /// The server did not answer in time.
    TimedOut(Duration),
    /// The server answered with an error, or with something that is not a
    /// tool list.
    Refused(String),
    /// Reading from or writing to the server failed.
    Io(std::io::Error),
}

impl std::fmt::Display for CatalogError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CatalogError::Spawn(error) => error.fmt(f),
            CatalogError::Closed(when) => write!(f, "the MCP server closed its output {when}"),
            CatalogError::TimedOut(after) => {
                write!(f, "the MCP server did not answer within {} s", after.as_secs())
            }
            CatalogError::Refused(what) => write!(f, "the MCP server {what}"),
            CatalogError::Io(error) => write!(f, "cannot talk to the MCP server: {error}"),
        }
    }
}

/// Starts `command`, does the MCP handshake, lists every page of its tools
/// and stops it; the catalog is `{"tools": [...]}`, each tool as the server
/// described it. The whole exchange must finish within `timeout`.
pub async fn fetch(command: &str, args: &[String], timeout: Duration) -> Result<Value, CatalogError> {
    let mut upstream = Upstream::spawn(command, args, None).map_err(CatalogError::Spawn)?;
    let (stdin, stdout) = upstream.pipes().ok_or(CatalogError::Closed("at start"))?;
    let mut client = Client { stdin, stdout: BufReader::new(stdout), line: LineBuffer::default(), next: 0 };
    let listed = tokio::time::timeout(timeout, client.list_tools()).await;
    drop(client);
    upstream.stop(Duration::from_secs(2)).await;
    let tools = listed.map_err(|_| CatalogError::TimedOut(timeout))??;
    Ok(json!({ "tools": tools }))
}

struct Client {
    stdin: tokio::process::ChildStdin,
    stdout: BufReader<tokio::process::ChildStdout>,
    line: LineBuffer,
    next: u64,
}

impl Client {
    async fn list_tools(&mut self) -> Result<Vec<Value>, CatalogError> {
        let info = json!({"name": "toolgate catalog", "version": env!("CARGO_PKG_VERSION")});
        let hello = json!({"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": info});
        self.request("initialize", hello).await?;
        self.send(&json!({"jsonrpc": "2.0", "method": "notifications/initialized"})).await?;
        let mut tools = Vec::new();
        let mut cursor: Option<String> = None;
        for _ in 0..MAX_PAGES {
            let params = match &cursor {
                Some(cursor) => json!({ "cursor": cursor }),
                None => json!({}),
            };
            let page = self.request("tools/list", params).await?;
            match page.get("tools") {
                Some(Value::Array(page)) => tools.extend(page.iter().cloned()),
                _ => {
                    return Err(CatalogError::Refused(String::from(
                        "answered tools/list without a `tools` list",
                    )));
                }
            }
            cursor = page.get("nextCursor").and_then(Value::as_str).map(str::to_owned);
            if cursor.is_none() {
                return Ok(tools);
            }
        }
        Err(CatalogError::Refused(format!("gave more than {MAX_PAGES} pages of tools")))
    }

    async fn send(&mut self, message: &Value) -> Result<(), CatalogError> {
        let mut line = message.to_string().into_bytes();
        line.push(b'\n');
        self.stdin.write_all(&line).await.map_err(|error| match error.kind() {
            std::io::ErrorKind::BrokenPipe => CatalogError::Closed("before answering"),
            _ => CatalogError::Io(error),
        })
    }

    /// Sends a request and waits for its answer's `result`, answering any
    /// request of the server's own that comes first (this client offers no
    /// capabilities) and skipping notifications.
    async fn request(&mut self, method: &str, params: Value) -> Result<Value, CatalogError> {
        self.next += 1;
        let id = self.next;
        self.send(&json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params})).await?;
        loop {
            self.line.clear();
            match read_line(&mut self.stdout, &mut self.line, MAX_MESSAGE).await.map_err(CatalogError::Io)? {
                ReadLine::Eof => return Err(CatalogError::Closed("before answering")),
                ReadLine::TooLong => {
                    return Err(CatalogError::Refused(format!("sent a message over {MAX_MESSAGE} bytes")));
                }
                ReadLine::Line => {}
            }
            let Ok(message) = Envelope::parse(self.line.bytes()) else { continue };
            match jsonrpc::classify(&message) {
                Message::Response { id: answered } if answered == json!(id) => {
                    if let Some(error) = message.get::<Value>("error") {
                        return Err(CatalogError::Refused(format!(
                            "answered {method} with an error: {error}"
                        )));
                    }
                    let Some(result) = message.raw("result") else {
                        return Err(CatalogError::Refused(format!("answered {method} without a result")));
                    };
                    return serde_json::from_str(result.get()).map_err(|error| {
                        CatalogError::Refused(format!(
                            "answered {method} with a result toolgate cannot read ({error})"
                        ))
                    });
                }
                Message::Request { id: asked, .. } => {
                    let refusal =
                        jsonrpc::error(Some(&asked), -32601, "toolgate catalog offers no capabilities");
                    self.send(&refusal).await?;
                }
                _ => {}
            }
        }
    }
}
