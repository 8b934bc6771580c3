//! `toolgate proxy`: an MCP intermediary on stdio. An MCP client launches
//! the proxy in place of a server; the proxy launches the real server and
//! relays every message both ways, deciding each `tools/call` before it
//! reaches the server and hiding from `tools/list` the tools the agent may
//! never call.
//!
//! ```text
//!  client ──stdin──▶ from_client ──(decide tools/call)──▶ to_upstream ──▶ server stdin
//!  client ◀─stdout── to_client ◀──(filter tools/list, report outcomes)── from_upstream ◀── server stdout
//! ```
//!
//! Requests in both directions travel under ids the proxy issues
//! ([`jsonrpc::Routes`]), so ids never collide and cancellations find their
//! request. stdout carries only MCP messages; everything else goes to stderr.

mod ask;
pub mod calls;
pub mod catalog;
mod failure;
pub mod gate;
pub mod jsonrpc;
mod output;
pub mod state_seal;
pub mod stdio;
pub mod upstream;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::{Duration, Instant};

use serde_json::value::RawValue;
use serde_json::{Map, Value};
use tokio::io::{AsyncBufRead, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot, watch};

use crate::protocol::strict::StrictValue;
use crate::protocol::{LineBuffer, ReadLine, read_line};
use ask::UserCall;
use calls::{Caller, Obligations, Verdict};
use gate::Gate;
use jsonrpc::{Envelope, EnvelopeError, Message, RouteError, Routes};

/// The default longest message, in bytes, in either direction (results may
/// carry images and files).
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 16 << 20;

/// The most tools of one listing compared with a catalog, and the most
/// bytes they may take (a server cannot make the proxy hold more).
const MAX_LISTED: usize = crate::protocol::decode::MAX_VISIBLE;
const MAX_LISTED_BYTES: usize = 8 << 20;

/// Messages waiting to be written to one side before the other side's
/// reader waits too (the pipe's own backpressure, carried through).
const QUEUE: usize = 256;

/// What the proxy does with the answer to a request it forwarded upstream.
#[derive(Debug)]
enum Purpose {
    /// Pass it back as it is.
    Relay,
    /// Remove the tools the agent may never call (and compare the whole
    /// list, once its last page is in, with the server's catalog).
    List {
        /// The request asked for the first page (no cursor).
        first_page: bool,
    },
    /// Pass a resource's contents or a prompt's messages through the
    /// agent's output rules (`kind`: `resource`, `prompt`).
    Content { kind: &'static str },
    /// Report the call's outcome, pass the result through the output
    /// rules and the failure policy its obligations name, then pass it back.
    Call { tool: String, decision_id: Option<String>, started: Instant, obligations: Obligations },
}

/// How the relay ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Ended {
    /// The client closed its end: a normal stop.
    ClientClosed,
    /// The server closed its stdout (exited or crashed) first.
    UpstreamClosed,
}

/// The relay's shared state.
struct Relay {
    caller: Caller,
    gate: Gate,
    max_message: usize,
    next_id: AtomicU64,
    /// Client requests in flight upstream.
    upstream: Mutex<Routes<Purpose>>,
    /// The server's requests in flight to the client.
    client: Mutex<Routes<()>>,
    /// The proxy's own questions to the client (elicitations), by their
    /// proxy id: the answer goes to the waiting task.
    questions: Mutex<HashMap<u64, oneshot::Sender<Envelope>>>,
    /// The client declared that it can ask its user (`elicitation`).
    elicitation: AtomicBool,
    /// The policy hash of the last decision.
    policy: Mutex<Option<String>>,
    /// Seals the 2026-07-28 `requestState` of questions to the user (none
    /// if the system gave no randomness: the older way to ask is used).
    sealer: Option<state_seal::Sealer>,
    /// Calls waiting for the user, by the client's id (as JSON text): the
    /// question's proxy id, and how to tell its task the call was cancelled.
    asking: Mutex<HashMap<String, (u64, oneshot::Sender<()>)>>,
    /// This relay, for the tasks that ask the user while it reads on.
    me: Weak<Relay>,
    /// Failed calls in a row, by tool (`onFailure.retries` counts them).
    failures: Mutex<HashMap<String, u64>>,
    /// The pages of a `tools/list` so far (and their size in bytes), until
    /// its last page is in.
    listing: Mutex<Option<(Vec<Value>, usize)>>,
    /// Each tool's `annotations` as the server last listed them, by the
    /// name the policy gives it: what `where` selectors on a server no
    /// catalog describes read.
    annotations: Mutex<HashMap<String, Value>>,
    /// Each tool's `outputSchema` as last listed: what a result cut to its
    /// budget must still conform to.
    output_schemas: Mutex<HashMap<String, Value>>,
    to_client: mpsc::Sender<Vec<u8>>,
    to_upstream: mpsc::Sender<Vec<u8>>,
}

/// The relay's limits.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// The longest message relayed in either direction, in bytes.
    pub max_message: usize,
    /// After the client closes its end, how long the server's answers to
    /// requests already sent are still relayed (the server's stdin is
    /// closed at once, so a well-behaved server answers and exits).
    pub drain: Duration,
}

/// Relays between the client (`client_in`, `client_out`) and the server
/// (`server_in`, `server_out`) until either side closes. In-flight client
/// requests get an error if the server goes first.
pub async fn relay(
    caller: Caller,
    gate: Gate,
    limits: Limits,
    client_in: impl AsyncBufRead + Unpin,
    client_out: impl AsyncWrite + Unpin + Send + 'static,
    server_in: impl AsyncWrite + Unpin + Send + 'static,
    mut server_out: impl AsyncBufRead + Unpin,
) -> Ended {
    let (to_client, client_queue) = mpsc::channel(QUEUE);
    let (to_upstream, upstream_queue) = mpsc::channel(QUEUE);
    let (close_upstream, upstream_closed) = watch::channel(false);
    let client_writer = tokio::spawn(write_messages(client_queue, client_out, None));
    let upstream_writer = tokio::spawn(write_messages(upstream_queue, server_in, Some(upstream_closed)));
    let relay = Arc::new_cyclic(|me| Relay {
        caller,
        gate,
        max_message: limits.max_message,
        next_id: AtomicU64::new(1),
        upstream: Mutex::default(),
        client: Mutex::default(),
        questions: Mutex::default(),
        elicitation: AtomicBool::new(false),
        policy: Mutex::default(),
        sealer: state_seal::Sealer::new(),
        asking: Mutex::default(),
        me: me.clone(),
        listing: Mutex::default(),
        annotations: Mutex::default(),
        failures: Mutex::default(),
        output_schemas: Mutex::default(),
        to_client,
        to_upstream,
    });
    let ended = tokio::select! {
        () = relay.read_client(client_in) => Ended::ClientClosed,
        () = relay.read_upstream(&mut server_out) => Ended::UpstreamClosed,
    };
    match ended {
        Ended::ClientClosed => {
            let _ = close_upstream.send(true);
            // Answers still due are relayed; with none in flight there is
            // nothing to wait for.
            if !lock(&relay.upstream).is_empty() {
                let _ = tokio::time::timeout(limits.drain, relay.read_upstream(&mut server_out)).await;
            }
        }
        Ended::UpstreamClosed => {
            let orphans = lock(&relay.upstream).drain();
            for (id, _) in orphans {
                let message = "the MCP server exited before answering";
                relay.answer_client(jsonrpc::error(Some(&id), jsonrpc::INTERNAL_ERROR, message)).await;
            }
        }
    }
    // Dropping the senders ends the writers once their queues are written;
    // the server's stdin closes with its writer. A side that does not read
    // does not hold the proxy up past the drain time.
    drop(relay);
    for mut writer in [upstream_writer, client_writer] {
        if tokio::time::timeout(limits.drain, &mut writer).await.is_err() {
            writer.abort();
        }
    }
    ended
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Writes each message as one line, until the queue ends or `closed` says
/// so (then what is queued is written first).
async fn write_messages(
    mut queue: mpsc::Receiver<Vec<u8>>,
    mut out: impl AsyncWrite + Unpin,
    mut closed: Option<watch::Receiver<bool>>,
) {
    loop {
        let next = match closed.as_mut() {
            Some(closed) => tokio::select! {
                biased;
                line = queue.recv() => line,
                _ = closed.wait_for(|closed| *closed) => queue.try_recv().ok(),
            },
            None => queue.recv().await,
        };
        let Some(mut line) = next else { break };
        line.push(b'\n');
        if out.write_all(&line).await.is_err() {
            break;
        }
        if queue.is_empty() && out.flush().await.is_err() {
            break;
        }
    }
    let _ = out.shutdown().await;
}

impl Relay {
    /// Sends a message the proxy wrote to the client.
    async fn answer_client(&self, message: Value) {
        let _ = self.to_client.send(message.to_string().into_bytes()).await;
    }

    /// Sends a message the proxy wrote to the server.
    async fn answer_upstream(&self, message: Value) {
        let _ = self.to_upstream.send(message.to_string().into_bytes()).await;
    }

    /// Relays a message to the client.
    async fn send_client(&self, message: &Envelope) {
        let _ = self.to_client.send(message.to_bytes()).await;
    }

    /// Relays a message to the server.
    async fn send_upstream(&self, message: &Envelope) {
        let _ = self.to_upstream.send(message.to_bytes()).await;
    }

    fn issue_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// A decision under another policy than the last one (a reload): the
    /// tools the agent may call may have changed, so the client is told to
    /// list them again.
    async fn note_policy(&self, answer: &Value) {
        let Some(policy) = answer.get("policy").and_then(Value::as_str) else { return };
        let changed = {
            let mut last = lock(&self.policy);
            let changed = last.as_deref().is_some_and(|last| last != policy);
            if last.as_deref() != Some(policy) {
                *last = Some(policy.to_owned());
            }
            changed
        };
        if changed {
            self.answer_client(
                serde_json::json!({"jsonrpc": "2.0", "method": "notifications/tools/list_changed"}),
            )
            .await;
        }
    }

    /// Reads the client's messages until it closes stdin.
    async fn read_client(&self, mut input: impl AsyncBufRead + Unpin) {
        let mut line = LineBuffer::default();
        loop {
            line.clear();
            match read_line(&mut input, &mut line, self.max_message).await {
                Err(_) | Ok(ReadLine::Eof) => return,
                Ok(ReadLine::TooLong) => {
                    let message = format!("message longer than {} bytes; skipped", self.max_message);
                    self.answer_client(jsonrpc::error(None, jsonrpc::INVALID_REQUEST, &message)).await;
                }
                Ok(ReadLine::Line) if line.bytes().iter().all(u8::is_ascii_whitespace) => {}
                Ok(ReadLine::Line) => match Envelope::parse(line.bytes()) {
                    Ok(message) => self.client_message(message).await,
                    Err(EnvelopeError::NotJson(error)) => {
                        let message = format!("not JSON: {error}");
                        self.answer_client(jsonrpc::error(None, jsonrpc::PARSE_ERROR, &message)).await;
                    }
                    Err(EnvelopeError::NotAnObject(why)) => {
                        self.answer_client(jsonrpc::error(None, jsonrpc::INVALID_REQUEST, why)).await;
                    }
                },
            }
        }
    }

    async fn client_message(&self, mut message: Envelope) {
        match jsonrpc::classify(&message) {
            Message::Request { method, id } if method == "tools/call" => self.call(id, message).await,
            Message::Request { method, id } => {
                if method == "initialize" {
                    self.note_capabilities(&message);
                }
                let purpose = match method.as_str() {
                    "tools/list" => {
                        let cursor =
                            message.raw("params").and_then(|raw| Envelope::parse(raw.get().as_bytes()).ok());
                        Purpose::List { first_page: cursor.is_none_or(|params| !params.has("cursor")) }
                    }
                    "resources/read" => Purpose::Content { kind: "resource" },
                    "prompts/get" => Purpose::Content { kind: "prompt" },
                    _ => Purpose::Relay,
                };
                self.forward_request(id, message, purpose).await;
            }
            Message::Notification { method } if method == "notifications/cancelled" => {
                if self.stop_asking(&message).await {
                    return;
                }
                // The request is forgotten: a server does not answer a
                // cancelled request, and its id may be used again.
                let cancelled = remap_cancelled(&mut message, |id| lock(&self.upstream).forget(id));
                if cancelled {
                    self.send_upstream(&message).await;
                }
            }
            // Only notifications go through as notifications: a `tools/call`
            // without an id is not answered, but a server may still act on it.
            Message::Notification { method } if !method.starts_with("notifications/") => {
                tracing::warn!(%method, "the client sent a request without an id; dropped");
            }
            Message::Notification { .. } => self.send_upstream(&message).await,
            Message::Response { id } => {
                let question = id.as_u64().and_then(|id| lock(&self.questions).remove(&id));
                if let Some(waiter) = question {
                    let _ = waiter.send(message);
                    return;
                }
                let Some((server_id, ())) = lock(&self.client).take(&id) else {
                    tracing::warn!(%id, "the client answered a request that is not in flight; dropped");
                    return;
                };
                message.set_value("id", &server_id);
                self.send_upstream(&message).await;
            }
            Message::Invalid { id } => {
                let why = "not a JSON-RPC 2.0 request, notification or response";
                self.answer_client(jsonrpc::error(id.as_ref(), jsonrpc::INVALID_REQUEST, why)).await;
            }
        }
    }

    /// Forwards a client request under a proxy id.
    async fn forward_request(&self, id: Value, mut message: Envelope, purpose: Purpose) {
        let proxy_id = self.issue_id();
        let timeout = match &purpose {
            Purpose::Call { obligations: Obligations { timeout_ms: Some(ms), .. }, .. } => Some(*ms),
            _ => None,
        };
        let routed = lock(&self.upstream).insert(proxy_id, &id, purpose);
        if let Err(error) = routed {
            return self.refuse(&id, error).await;
        }
        message.set_value("id", &proxy_id);
        self.send_upstream(&message).await;
        if let Some(ms) = timeout {
            self.cancel_after(proxy_id, ms);
        }
    }

    async fn refuse(&self, id: &Value, error: RouteError) {
        self.answer_client(jsonrpc::error(Some(id), jsonrpc::INVALID_REQUEST, error.message())).await;
    }

    /// A `tools/call`: decided, then forwarded or answered here.
    async fn call(&self, id: Value, message: Envelope) {
        let params = message.raw("params").and_then(|raw| Envelope::parse(raw.get().as_bytes()).ok());
        let Some(name) = params.as_ref().and_then(|p| p.get::<String>("name")) else {
            let answer = jsonrpc::error(Some(&id), jsonrpc::INVALID_PARAMS, "tools/call needs a tool `name`");
            return self.answer_client(answer).await;
        };
        let name = name.as_str();
        // Arguments that cannot be read are refused, never decided as
        // absent, and so are arguments naming a key twice: either way the
        // server could act on other arguments than the policy saw.
        let arguments = params.as_ref().and_then(|p| p.raw("arguments"));
        let strict = |raw: &RawValue| serde_json::from_str::<StrictValue>(raw.get()).map(|v| v.0);
        let args = match arguments.map(strict) {
            None | Some(Ok(Value::Null)) => Map::new(),
            Some(Ok(Value::Object(args))) => args,
            Some(_) => {
                let answer = jsonrpc::error(
                    Some(&id),
                    jsonrpc::INVALID_PARAMS,
                    "tools/call `arguments` must be an object naming each key once, with numbers within ±1.8e308",
                );
                return self.answer_client(answer).await;
            }
        };
        let tool = self.caller.qualified(name);
        // A call retried with the user's answer to the proxy's question
        // (2026-07-28): the answer is recorded, and the call decided anew.
        let (message, declined) = self.answered(message, params.as_ref(), name, &tool, &args).await;
        if let Some(declined) = declined {
            return self.answer_client(jsonrpc::result(&id, declined)).await;
        }
        let answer = self.gate.ask(&self.decide_line(&tool, &args)).await;
        self.note_policy(&answer).await;
        match calls::judge(&answer, name) {
            Verdict::Forward { decision_id, obligations } => {
                let purpose = Purpose::Call { tool, decision_id, started: Instant::now(), obligations };
                self.forward_request(id, message, purpose).await;
            }
            Verdict::Answer(result) => self.answer_client(jsonrpc::result(&id, result)).await,
            Verdict::Hidden => self.answer_client(calls::unknown_tool(&id, name)).await,
            Verdict::AskUser { approval, expires_at, pending } => {
                if let Some(question) =
                    self.input_required(params.as_ref(), name, &tool, &args, &approval, expires_at)
                {
                    return self.answer_client(jsonrpc::result(&id, question)).await;
                }
                match self.me.upgrade().filter(|_| self.elicitation.load(Ordering::Relaxed)) {
                    // The user answers while the relay reads on (their answer
                    // arrives on the same stream).
                    Some(relay) => {
                        let key = id.to_string();
                        if lock(&self.asking).contains_key(&key) {
                            return self.refuse(&id, RouteError::DuplicateId).await;
                        }
                        let question = self.issue_id();
                        let (cancel, cancelled) = oneshot::channel();
                        lock(&self.asking).insert(key.clone(), (question, cancel));
                        let call = UserCall {
                            question,
                            cancelled,
                            id,
                            message,
                            name: name.to_owned(),
                            tool,
                            args,
                            approval,
                            expires_at,
                            pending,
                        };
                        tokio::spawn(async move {
                            relay.ask_user(call).await;
                            // Unless a new call took the id meanwhile.
                            let mut asking = lock(&relay.asking);
                            if asking.get(&key).is_some_and(|(asked, _)| *asked == question) {
                                asking.remove(&key);
                            }
                        });
                    }
                    None => self.answer_client(jsonrpc::result(&id, pending)).await,
                }
            }
        }
    }

    /// Reads the server's messages until it closes stdout.
    async fn read_upstream(&self, mut input: impl AsyncBufRead + Unpin) {
        let mut line = LineBuffer::default();
        loop {
            line.clear();
            match read_line(&mut input, &mut line, self.max_message).await {
                Err(_) | Ok(ReadLine::Eof) => return,
                Ok(ReadLine::TooLong) => {
                    tracing::warn!(
                        limit = self.max_message,
                        "the MCP server sent a message too long to relay; dropped"
                    );
                }
                Ok(ReadLine::Line) if line.bytes().iter().all(u8::is_ascii_whitespace) => {}
                Ok(ReadLine::Line) => match Envelope::parse(line.bytes()) {
                    Ok(message) => self.upstream_message(message, line.bytes().len()).await,
                    Err(error) => tracing::warn!(
                        ?error,
                        "the MCP server wrote a line that is not a JSON object; dropped"
                    ),
                },
            }
        }
    }

    async fn upstream_message(&self, mut message: Envelope, bytes: usize) {
        match jsonrpc::classify(&message) {
            Message::Response { id } => {
                let Some((client_id, purpose)) = lock(&self.upstream).take(&id) else {
                    tracing::warn!(%id, "the MCP server answered a request that is not in flight; dropped");
                    return;
                };
                match purpose {
                    Purpose::Relay => {}
                    Purpose::List { first_page } => self.filter_tools(&mut message, first_page).await,
                    Purpose::Content { kind } => self.govern_content(kind, &mut message).await,
                    Purpose::Call { tool, decision_id, started, obligations } => {
                        let failed = calls_failed(&message);
                        if let Some(decision_id) = &decision_id {
                            self.report(&tool, decision_id, &message, started, bytes).await;
                        }
                        if obligations.output {
                            self.govern_output(&tool, decision_id.as_deref(), &mut message).await;
                        }
                        self.note_outcome(&tool, failed, obligations.on_failure.as_ref(), &mut message);
                    }
                }
                message.set_value("id", &client_id);
                self.send_client(&message).await;
            }
            Message::Request { id, .. } => {
                let proxy_id = self.issue_id();
                let routed = lock(&self.client).insert(proxy_id, &id, ());
                if let Err(error) = routed {
                    let answer = jsonrpc::error(Some(&id), jsonrpc::INVALID_REQUEST, error.message());
                    return self.answer_upstream(answer).await;
                }
                message.set_value("id", &proxy_id);
                self.send_client(&message).await;
            }
            Message::Notification { method } if method == "notifications/cancelled" => {
                let cancelled = remap_cancelled(&mut message, |id| lock(&self.client).forget(id));
                if cancelled {
                    self.send_client(&message).await;
                }
            }
            Message::Notification { .. } => self.send_client(&message).await,
            Message::Invalid { .. } => {
                tracing::warn!("the MCP server sent a message that is not JSON-RPC 2.0; dropped");
            }
        }
    }

    /// Removes from a `tools/list` result the tools the agent may never
    /// call; the page's cursor stays, and a cacheable page becomes private.
    async fn filter_tools(&self, message: &mut Envelope, first_page: bool) {
        if message.has("error") {
            return;
        }
        // A list that cannot be read is not passed on: it could hold anything.
        let Some(mut result) =
            message.raw("result").and_then(|raw| Envelope::parse(raw.get().as_bytes()).ok())
        else {
            let error =
                jsonrpc::error(None, jsonrpc::INTERNAL_ERROR, "the MCP server's tool list cannot be read");
            *message = Envelope::from_value(&error);
            return;
        };
        let tools = result.get::<Vec<Box<RawValue>>>("tools").unwrap_or_default();
        if let Some(listing) = self.collect_listing(&tools, first_page, result.has("nextCursor")) {
            self.report_drift(listing).await;
        }
        let mut annotated = HashMap::new();
        let mut schemas = HashMap::new();
        let named: Vec<(Option<String>, &RawValue)> = tools
            .iter()
            .map(|tool| {
                let tool_fields = Envelope::parse(tool.get().as_bytes()).ok();
                let name = tool_fields.as_ref().and_then(|t| t.get::<String>("name"));
                let name = name.map(|name| self.caller.qualified(&name));
                let annotations =
                    tool_fields.as_ref().and_then(|t| t.get::<Map<String, Value>>("annotations"));
                if let (Some(name), Some(annotations)) = (&name, annotations) {
                    annotated.insert(name.clone(), Value::Object(annotations));
                }
                let schema = tool_fields.as_ref().and_then(|t| t.get::<Map<String, Value>>("outputSchema"));
                if let (Some(name), Some(schema)) = (&name, schema) {
                    schemas.insert(name.clone(), Value::Object(schema));
                }
                (name, &**tool)
            })
            .collect();
        let listed: Vec<&str> = named.iter().filter_map(|(name, _)| name.as_deref()).collect();
        note(&self.annotations, &listed, &annotated);
        note(&self.output_schemas, &listed, &schemas);
        let asked = named.iter().filter_map(|(name, _)| name.clone()).collect();
        let visible = self.gate.visible(&self.caller.agent, asked, &annotated).await;
        let kept: Vec<&RawValue> = named
            .into_iter()
            .filter(|(name, _)| name.as_ref().is_some_and(|name| visible.contains(name)))
            .map(|(_, tool)| tool)
            .collect();
        match self.govern_definitions(&kept).await {
            Some(governed) => result.set_value("tools", &governed),
            None => result.set_value("tools", &kept),
        }
        if result.has("ttlMs") || result.has("cacheScope") {
            result.set_value("cacheScope", &"private");
        }
        if let Some(raw) = result.to_raw() {
            message.set("result", raw);
        }
    }

    /// The decision protocol's `decide` line for a call, with the tool's
    /// annotations as last listed.
    fn decide_line(&self, tool: &str, args: &Map<String, Value>) -> Value {
        let annotations = lock(&self.annotations).get(tool).cloned();
        self.caller.decide_line(tool, args, annotations.as_ref())
    }

    /// Adds a page to the listing being collected; the whole listing once
    /// its last page is in.
    fn collect_listing(&self, page: &[Box<RawValue>], first_page: bool, more: bool) -> Option<Vec<Value>> {
        let mut listing = lock(&self.listing);
        if first_page {
            *listing = Some((Vec::new(), 0));
        }
        let (tools, bytes) = listing.as_mut()?;
        for tool in page {
            *bytes += tool.get().len();
            match serde_json::from_str(tool.get()) {
                Ok(tool) if tools.len() < MAX_LISTED && *bytes <= MAX_LISTED_BYTES => tools.push(tool),
                // Too many, too big, or a tool toolgate cannot read: no comparison.
                _ => {
                    *listing = None;
                    return None;
                }
            }
        }
        if more { None } else { listing.take().map(|(tools, _)| tools) }
    }

    /// Has the gate compare a server's whole listing with its catalog (it
    /// logs and records a difference).
    async fn report_drift(&self, tools: Vec<Value>) {
        let line = serde_json::json!({"id": 0, "op": "drift", "server": self.caller.server, "tools": tools});
        let answer = self.gate.ask(&line).await;
        if let Some(error) = answer.get("error") {
            tracing::warn!(%error, "the tool list could not be compared with its catalog");
        }
    }

    /// Reports a call's outcome to the gate before its result leaves, so
    /// that an error streak or a cost ceiling stops the very next call.
    async fn report(
        &self,
        tool: &str,
        decision_id: &str,
        message: &Envelope,
        started: Instant,
        bytes: usize,
    ) {
        let error = calls_failed(message);
        let latency_ms = started.elapsed().as_secs_f64() * 1e3;
        let line = self.caller.outcome_line(decision_id, tool, error, latency_ms, bytes as u64);
        let answer = self.gate.ask(&line).await;
        if let Some(error) = answer.get("error") {
            tracing::warn!(%error, tool, "the call's outcome could not be recorded");
        } else if answer.pointer("/outcome/killed").and_then(Value::as_bool) == Some(true) {
            tracing::warn!(tool, session = %self.caller.session, "the session was stopped by its outcome limits");
        }
    }
}

/// Whether an answer to a `tools/call` says it failed: a JSON-RPC error, or
/// a result with `isError: true`.
fn calls_failed(message: &Envelope) -> bool {
    let is_error = |result: &RawValue| {
        Envelope::parse(result.get().as_bytes()).ok().and_then(|r| r.get::<bool>("isError")) == Some(true)
    };
    message.has("error") || message.raw("result").is_some_and(is_error)
}

/// Remembers a member of the tools a page lists (`annotations`,
/// `outputSchema`), for the calls that follow; a tool listed without it
/// loses the one it had.
fn note(known: &Mutex<HashMap<String, Value>>, listed: &[&str], found: &HashMap<String, Value>) {
    let mut known = lock(known);
    for &name in listed {
        match found.get(name) {
            Some(value) if known.len() < MAX_LISTED || known.contains_key(name) => {
                known.insert(name.to_owned(), value.clone());
            }
            _ => {
                known.remove(name);
            }
        }
    }
}

/// Rewrites a `notifications/cancelled`'s `requestId` to the proxy id of the
/// request it names; false if that request is not in flight (it was
/// answered already, or never sent): the notification is then dropped.
fn remap_cancelled(message: &mut Envelope, proxy_id: impl Fn(&Value) -> Option<u64>) -> bool {
    let Some(mut params) = message.raw("params").and_then(|raw| Envelope::parse(raw.get().as_bytes()).ok())
    else {
        return false;
    };
    let Some(mapped) = params.get::<Value>("requestId").and_then(|id| proxy_id(&id)) else { return false };
    params.set_value("requestId", &mapped);
    match params.to_raw() {
        Some(raw) => {
            message.set("params", raw);
            true
        }
        None => false,
    }
}
