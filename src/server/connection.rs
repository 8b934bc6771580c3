//! One client connection: read request lines, answer each in order.
//!
//! Lines are answered as they arrive; the answers are flushed whenever no
//! further request is already buffered, so a client that pipelines gets
//! batched writes and a client that waits gets its answer at once.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Instant;

use serde_json::{Value, json};
use tokio::io::{AsyncWriteExt, BufReader};
use tokio::net::UnixStream;
use tokio::sync::watch;

use super::{PROTOCOL_VERSION, Shared};
use crate::engine::Outcome;
use crate::protocol::{self, Command, Read, WireError, WireErrorCode, read_line};
use crate::service::reload;

/// Flush at least this often while a client keeps pipelining.
const FLUSH_BYTES: usize = 64 * 1024;

/// Commit audit records at least this often while a client keeps
/// pipelining, so records (which hold the arguments) cannot pile up.
const MAX_PENDING_RECORDS: usize = 64;

/// After shutdown starts, how long a connection waits for a request that is
/// already on its way.
const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_millis(250);

/// Tells an excess client why it is being closed, then closes.
pub async fn refuse(mut stream: UnixStream, why: &str) {
    let mut out = Vec::new();
    let error = WireError::new(WireErrorCode::Unavailable, why);
    protocol::write_error(&mut out, &Value::Null, &error);
    let _ = tokio::time::timeout(std::time::Duration::from_secs(1), stream.write_all(&out)).await;
}

/// Serves one connection until the client closes it, goes idle, sends
/// something unrecoverable, or the server shuts down.
/// Which socket a connection came in on, and so what it may ask.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// The decision socket: decisions, health, status, reload.
    Decisions,
    /// The admin socket, from an allowed peer: kills, health, status, reload.
    Admin {
        /// The peer's user id, as the kernel reports it.
        uid: u32,
    },
}

pub async fn serve(stream: UnixStream, shared: &Arc<Shared>, mut stopped: watch::Receiver<bool>, role: Role) {
    let (read, mut write) = stream.into_split();
    let mut reader = BufReader::with_capacity(64 * 1024, read);
    let mut line = protocol::LineBuffer::default();
    let mut out = Vec::with_capacity(4096);
    let mut batch = Batch::default();
    let max = shared.config.max_line_bytes;
    let mut stopping = false;
    loop {
        // `line` is cleared only after a complete line: a read cancelled by
        // the shutdown signal keeps what it had and resumes.
        stopping = stopping || *stopped.borrow();
        // Once the server stops, requests already sent are still answered:
        // the wait for the next line shrinks from the idle timeout to a grace.
        let read = if reader.buffer().contains(&b'\n') {
            // A pipelined line is already here: no timer, no shutdown wait.
            Ok(read_line(&mut reader, &mut line, max).await)
        } else {
            let wait = if stopping { SHUTDOWN_GRACE } else { shared.config.idle_timeout };
            tokio::select! {
                biased;
                read = tokio::time::timeout(wait, read_line(&mut reader, &mut line, max)) => read,
                _ = stopped.changed(), if !stopping => continue,
            }
        };
        match read {
            Err(_idle) => {
                if !stopping {
                    tracing::debug!("closing idle connection");
                }
                break;
            }
            Ok(Err(_) | Ok(Read::Eof)) => break,
            Ok(Ok(Read::Line)) if line.bytes().iter().all(u8::is_ascii_whitespace) => {}
            Ok(Ok(Read::Line)) => answer(shared, line.bytes(), &mut out, &mut batch, role).await,
            Ok(Ok(Read::TooLong)) => {
                let message = format!("request line is longer than {max} bytes; skipped to the next line");
                let error = WireError::new(WireErrorCode::LineTooLong, message);
                refuse_line(shared, &Value::Null, &error, &mut out, &mut batch);
            }
        }
        line.clear();
        let full = out.len() >= FLUSH_BYTES || batch.records.len() >= MAX_PENDING_RECORDS;
        if (reader.buffer().is_empty() || full) && !out.is_empty() {
            commit(shared, &mut out, &mut batch).await;
            // A client that does not read its answers is closed like one
            // that does not send: it must not hold a connection forever.
            let sent = tokio::time::timeout(shared.config.idle_timeout, write.write_all(&out)).await;
            if !matches!(sent, Ok(Ok(()))) {
                return;
            }
            out.clear();
        }
    }
    if !out.is_empty() {
        commit(shared, &mut out, &mut batch).await;
        let _ = tokio::time::timeout(shared.config.idle_timeout, write.write_all(&out)).await;
    }
    let _ = write.shutdown().await;
}

/// The answered lines not yet sent: their ids, and the audit records that
/// must be written before the answers leave.
#[derive(Default)]
struct Batch {
    ids: Vec<Value>,
    records: Vec<serde_json::Map<String, Value>>,
}

/// Writes the batch's audit records; if that fails, every answer of the
/// batch is replaced by an `unavailable` error (a deny): no answer leaves
/// without its record.
async fn commit(shared: &Shared, out: &mut Vec<u8>, batch: &mut Batch) {
    let records = std::mem::take(&mut batch.records);
    let ids = std::mem::take(&mut batch.ids);
    let Some(audit) = &shared.audit else { return };
    if let Err(reason) = audit.write(records).await {
        out.clear();
        let error = WireError::new(
            WireErrorCode::Unavailable,
            format!("the audit trail cannot be written ({reason}); denied"),
        );
        for id in &ids {
            protocol::write_error(out, id, &error);
        }
    }
}

/// Answers a line that cannot be decided with an error, and records it.
fn refuse_line(shared: &Shared, id: &Value, error: &WireError, out: &mut Vec<u8>, batch: &mut Batch) {
    shared.metrics.error();
    protocol::write_error(out, id, error);
    batch.ids.push(id.clone());
    if shared.audit.is_some() {
        batch.records.push(crate::audit::record::error_record(id, error.code.as_str(), &error.message));
    }
}

async fn answer(shared: &Arc<Shared>, line: &[u8], out: &mut Vec<u8>, batch: &mut Batch, role: Role) {
    let Ok(text) = std::str::from_utf8(line) else {
        let error = WireError::new(WireErrorCode::InvalidJson, "request line is not UTF-8");
        return refuse_line(shared, &Value::Null, &error, out, batch);
    };
    let parsed = protocol::parse_line(text);
    let id = parsed.id;
    let reply = match parsed.command {
        Ok(Command::Decide(_)) if role != Role::Decisions => {
            let error = WireError::new(
                WireErrorCode::UnknownOp,
                "the admin socket does not decide; use the decision socket",
            );
            return refuse_line(shared, &id, &error, out, batch);
        }
        Ok(Command::Decide(request)) => return decide(shared, &id, &request, out, batch),
        Err(error) => return refuse_line(shared, &id, &error, out, batch),
        Ok(Command::Other(op, fields)) => match op.as_str() {
            "health" => {
                json!({"id": id, "health": "ok", "protocol": PROTOCOL_VERSION, "policy": shared.engine.load().policy_hash()})
            }
            "status" => json!({"id": id, "status": status(shared)}),
            "reload" => match reload::reload(shared, reload::Trigger::Request).await {
                Ok(hash) => json!({"id": id, "reload": {"ok": true, "policy": hash}}),
                Err(error) => json!({"id": id, "reload": {
                    "ok": false,
                    "policy": shared.engine.load().policy_hash(),
                    "errors": error.lines(),
                }}),
            },
            "outcome" if role == Role::Decisions => {
                match crate::service::admin::outcome(shared, &fields).await {
                    Ok(answer) => json!({"id": id, "outcome": answer}),
                    Err(error) => return refuse_line(shared, &id, &error, out, batch),
                }
            }
            "kill" | "revive" | "kills" | "approvals" | "approve" | "reject"
                if matches!(role, Role::Admin { .. }) =>
            {
                let Role::Admin { uid } = role else { return };
                match crate::service::admin::answer(shared, &op, &fields, uid).await {
                    Ok(answer) => json!({"id": id, op.as_str(): answer}),
                    Err(error) => return refuse_line(shared, &id, &error, out, batch),
                }
            }
            other => {
                let ops = match role {
                    Role::Decisions => {
                        "decide, outcome, health, status, reload (kills are on the admin socket)"
                    }
                    Role::Admin { .. } => "kill, revive, kills, health, status, reload",
                };
                let error = WireError::new(
                    WireErrorCode::UnknownOp,
                    format!("unknown op `{other}`; the operations here are {ops}"),
                );
                return refuse_line(shared, &id, &error, out, batch);
            }
        },
    };
    protocol::write_json(out, &reply);
    batch.ids.push(id);
}

fn decide(
    shared: &Shared,
    id: &Value,
    request: &crate::engine::Request,
    out: &mut Vec<u8>,
    batch: &mut Batch,
) {
    // One load per request: the whole decision uses one policy, old or new.
    let engine = shared.engine.load();
    let start = Instant::now();
    // The engine does not panic by construction; if a dependency ever did,
    // the client still gets a deny, and the server keeps serving.
    let (answered, recorded) = (out.len(), batch.records.len());
    let mut run = || {
        std::panic::catch_unwind(AssertUnwindSafe(|| {
            let mut decision = engine.decide(request);
            let approval = match decision.outcome {
                Outcome::RequireApproval => open_approval(&engine, request, &mut decision),
                _ => None,
            };
            let reference =
                approval.as_ref().map(|a| protocol::ApprovalRef { id: &a.id, expires_at: a.expires_at });
            protocol::write_decision_with(out, id, &decision, engine.policy_hash(), reference);
            if shared.audit.is_some() {
                let latency_us = start.elapsed().as_secs_f64() * 1e6;
                batch
                    .records
                    .push(crate::audit::record::decision_record(id, request, &decision, &engine, latency_us));
            }
            decision.outcome
        }))
    };
    // A durable store answers after its group commit; blocking here would
    // stall every connection on this worker, so the worker hands them off.
    let decided = if shared.state.may_block() { tokio::task::block_in_place(run) } else { run() };
    match decided {
        Ok(outcome) => {
            batch.ids.push(id.clone());
            shared.metrics.decision(outcome, start.elapsed());
            if shared.config.log_decisions {
                tracing::info!(agent = %request.agent, tool = %request.tool, decision = outcome.as_str(), "decision");
            }
        }
        Err(_) => {
            // Whatever the panic left half-written is dropped: one answer per request.
            out.truncate(answered);
            batch.records.truncate(recorded);
            tracing::error!(agent = %request.agent, tool = %request.tool, "internal error while deciding; denied");
            let error = WireError::new(WireErrorCode::Unavailable, "internal error while deciding; denied");
            refuse_line(shared, id, &error, out, batch);
        }
    }
}

/// Opens the approval a `require_approval` answer refers to. If the ledger
/// cannot save it, the answer becomes a deny: an approval nobody can find
/// again must not be promised.
fn open_approval(
    engine: &crate::engine::Engine,
    request: &crate::engine::Request,
    decision: &mut crate::engine::Decision<'_>,
) -> Option<crate::state::approval::Approval> {
    let binding = request.binding(engine.policy_hash());
    match engine.state().approvals.open(binding, decision.approver.map(str::to_owned)) {
        Ok(approval) => Some(approval),
        Err(error) => {
            tracing::error!(%error, "cannot open an approval; denying");
            decision.outcome = Outcome::Deny;
            decision.reason = crate::engine::Reason::ApprovalInvalid(error);
            None
        }
    }
}

fn status(shared: &Shared) -> Value {
    let reload = shared.reload_status.lock().map(|s| s.to_json()).unwrap_or(Value::Null);
    json!({
        "protocol": PROTOCOL_VERSION,
        "policy": shared.engine.load().policy_hash(),
        "uptime_s": shared.started.elapsed().as_secs(),
        "reload": reload,
        "kills": crate::state::kill::summary(&shared.state.kills.list()),
        "audit": shared.audit.as_ref().map(|a| { let (seq, hash) = a.head(); json!({"seq": seq, "head": hash}) }),
        "metrics": shared.metrics.to_json(),
    })
}
