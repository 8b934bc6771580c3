//! The running gateway core, transport-free: one [`Service`] takes typed
//! operations ([`Op`]) and gives typed replies ([`Reply`]). A decision goes
//! decide → open an approval when one is required → audit record →
//! metrics; the admin operations (kill, revive, approvals, approve,
//! reject), outcomes, reload and status go through it too.
//!
//! Transports — the Unix-socket server, `toolgate eval`, an MCP proxy —
//! only frame lines and hand them here. Nothing here reads a socket.

mod admin;
mod decide;
pub mod decision_ids;
pub mod metrics;
mod output;
pub mod reload;

use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use serde_json::{Value, json};

use crate::audit::AuditSink;
use crate::audit::record;
pub use crate::compiler::approvers::Identity;
use crate::engine::Engine;
use crate::protocol::{Op, OpKind, PROTOCOL_VERSION, ParsedLine, Reply, WireError, WireErrorCode};
use crate::state::{DEFAULT_DECISION_TIMEOUT, State};

/// Service settings.
#[derive(Clone, Debug)]
pub struct ServiceConfig {
    /// The policy paths, for reloads.
    pub policies: Vec<PathBuf>,
    /// Serve gateways: open an approval for each `require_approval` answer
    /// and give every answer a decision id for its `outcome`. `eval`, which
    /// has no admin socket to grant an approval and no `outcome` operation,
    /// does neither.
    pub serving: bool,
    /// Log every decision (off by default: it is the hot path).
    pub log_decisions: bool,
    /// How long an answer may wait for the audit trail before it is
    /// replaced by a `decision_timeout` error (the state store's wait is
    /// set where the state is opened).
    pub decision_timeout: Duration,
}

impl Default for ServiceConfig {
    fn default() -> Self {
        ServiceConfig {
            policies: Vec::new(),
            serving: false,
            log_decisions: false,
            decision_timeout: DEFAULT_DECISION_TIMEOUT,
        }
    }
}

/// One decision as the live tail shows it (what the console streams to
/// operators): who asked for what, and the answer, without arguments.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Decided {
    /// When (RFC 3339, microseconds).
    pub time: String,
    /// The agent.
    pub agent: String,
    /// The session, if the call named one.
    pub session: Option<String>,
    /// The tool.
    pub tool: String,
    /// The outcome (`allow`, `deny`, `require_approval`).
    pub outcome: &'static str,
    /// Why, for programs.
    pub reason_code: &'static str,
    /// The deciding rule's id.
    pub rule: String,
    /// The decision id, when the service issues them.
    pub decision_id: Option<String>,
}

/// How many decisions the live tail holds for a subscriber that lags; one
/// that falls further behind is told how many it missed.
const TAIL_CAPACITY: usize = 1024;

/// How many opened approvals wait for the notifier; past this, the oldest
/// announcements are dropped (and the notifier says so).
const ANNOUNCE_CAPACITY: usize = 1024;

/// Records handed to the audit trail, not yet confirmed written.
#[derive(Debug)]
pub struct Committing {
    written: Result<Option<crate::audit::sink::Written>, CommitError>,
    deadline: Duration,
    by: tokio::time::Instant,
}

impl Committing {
    /// Resolves once the records are written (and synced, per the trail's
    /// setting), or with why they may not be, at the latest at the deadline.
    pub async fn confirmed(self) -> Result<(), CommitError> {
        let Some(written) = self.written? else { return Ok(()) };
        match tokio::time::timeout_at(self.by, written).await {
            Ok(Ok(result)) => result.map_err(CommitError::Failed),
            Ok(Err(_stopped)) => Err(CommitError::Failed(String::from("the audit writer stopped"))),
            Err(_elapsed) => {
                tracing::error!(
                    deadline_ms = self.deadline.as_millis(),
                    "the audit trail did not confirm in time; denying"
                );
                Err(CommitError::TimedOut(self.deadline))
            }
        }
    }
}

/// Why a batch's records could not be committed: none of its answers may
/// leave as given.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CommitError {
    /// The trail could not be written.
    Failed(String),
    /// The trail did not confirm the write within the decision deadline.
    TimedOut(Duration),
}

impl std::fmt::Display for CommitError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CommitError::Failed(reason) => f.write_str(reason),
            CommitError::TimedOut(after) => write!(f, "no confirmation within {} ms", after.as_millis()),
        }
    }
}

impl CommitError {
    /// The error every answer of the batch becomes (a deny).
    pub fn wire_error(&self) -> WireError {
        match self {
            CommitError::Failed(reason) => WireError::new(
                WireErrorCode::Unavailable,
                format!("the audit trail cannot be written ({reason}); denied"),
            ),
            CommitError::TimedOut(after) => WireError::new(
                WireErrorCode::DecisionTimeout,
                format!("the audit trail did not confirm the record within {} ms; denied", after.as_millis()),
            ),
        }
    }
}

/// Who is asking, and so what they may ask for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Role {
    /// The decision socket: decisions, outcomes, health, status.
    Decisions,
    /// The admin socket, from a peer the server admitted.
    Admin(Peer),
    /// `toolgate eval`: decisions only.
    Eval,
}

/// Someone on the admin socket: who the kernel says they are, and whether
/// they operate the server or only decide approvals.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Peer {
    /// The user, as the kernel reported the peer, with the user database's
    /// names and groups.
    pub identity: Identity,
    /// An operator (root, the server's user, `--admin-uid`, `--admin-gid`):
    /// kills, revivals and reloads besides approvals. Others are admitted
    /// only as members of a declared approver, for approvals alone.
    pub operator: bool,
}

impl Role {
    /// Whether this role may ask for `kind`.
    pub fn permits(&self, kind: OpKind) -> bool {
        use OpKind::*;
        match self {
            // Reloading costs a compilation: an operator's call, not a client's.
            Role::Decisions => {
                matches!(
                    kind,
                    Decide | Outcome | Visible | Drift | Confirm | Result | Scope | Health | Status
                )
            }
            Role::Admin(peer) if peer.operator => {
                matches!(
                    kind,
                    Kill | Revive | Kills | Approvals | Approve | Reject | Health | Status | Reload
                )
            }
            Role::Admin(_) => matches!(kind, Approvals | Approve | Reject | Health | Status),
            Role::Eval => matches!(kind, Decide | Result),
        }
    }

    /// Why an operation is refused here (`what`), and what is offered instead.
    fn refusal(&self, what: &str) -> WireError {
        let offer = match self {
            Role::Decisions => {
                "the operations here are decide, outcome, visible, drift, confirm, health, status (kills, approvals and reload are on the admin socket)"
            }
            Role::Admin(peer) if peer.operator => {
                "the operations here are kill, revive, kills, approvals, approve, reject, health, status, reload (decisions are on the decision socket)"
            }
            Role::Admin(_) => {
                "an approver may use approvals, approve, reject, health and status (kills and reloads are for operators)"
            }
            Role::Eval => "`eval` answers only `decide` and `result`",
        };
        WireError::new(WireErrorCode::UnknownOp, format!("{what}; {offer}"))
    }
}

/// Audit records of answers not yet delivered: written by
/// [`Service::submit`] before the answers leave.
#[derive(Debug, Default)]
pub struct AuditBatch {
    records: Vec<record::Encoded>,
}

impl AuditBatch {
    /// How many records wait.
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// Whether none waits.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }
}

/// The gateway core. `Send + Sync`; share it behind an `Arc`.
pub struct Service {
    engine: ArcSwap<Engine>,
    state: State,
    /// Whether the state may block (asked once: the stores do not change).
    may_block: bool,
    config: ServiceConfig,
    audit: Option<AuditSink>,
    metrics: metrics::Metrics,
    /// Issues the ids of decisions; checks the ids outcomes cite.
    ids: decision_ids::DecisionIds,
    reloads: Mutex<reload::ReloadStatus>,
    reload_lock: tokio::sync::Mutex<()>,
    /// Held while an approval is decided, from the check that it is
    /// pending to the change: racing decisions are taken one at a time, so
    /// only the one that takes effect is recorded as the decision.
    deciding: tokio::sync::Mutex<()>,
    started: Instant,
    /// Every decision, for the subscribers of the live tail (none: no cost
    /// but an atomic load).
    tail: tokio::sync::broadcast::Sender<Arc<Decided>>,
    /// Every approval opened, for whoever notifies approvers.
    announcements: tokio::sync::broadcast::Sender<Arc<crate::state::approval::Approval>>,
}

impl std::fmt::Debug for Service {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Service").field("engine", &self.engine.load()).finish_non_exhaustive()
    }
}

impl Service {
    /// A service around a first, valid engine; `audit`, if given, receives
    /// the record of every answered line before the answer leaves, and of
    /// every operator action and outcome before it takes effect.
    pub fn new(engine: Engine, config: ServiceConfig, audit: Option<AuditSink>) -> Service {
        let state = engine.state().clone();
        let loaded_at = state.clock.now();
        Service {
            engine: ArcSwap::from_pointee(engine),
            may_block: state.may_block(),
            state,
            config,
            audit,
            metrics: metrics::Metrics::default(),
            ids: decision_ids::DecisionIds::default(),
            reloads: Mutex::new(reload::ReloadStatus::new(loaded_at)),
            reload_lock: tokio::sync::Mutex::new(()),
            deciding: tokio::sync::Mutex::new(()),
            started: Instant::now(),
            tail: tokio::sync::broadcast::Sender::new(TAIL_CAPACITY),
            announcements: tokio::sync::broadcast::Sender::new(ANNOUNCE_CAPACITY),
        }
    }

    /// The live tail: every decision from now on (a receiver that lags
    /// behind by more than the tail holds learns how many it missed).
    pub fn tail(&self) -> tokio::sync::broadcast::Receiver<Arc<Decided>> {
        self.tail.subscribe()
    }

    /// Every approval opened from now on, as it was opened.
    pub fn announcements(&self) -> tokio::sync::broadcast::Receiver<Arc<crate::state::approval::Approval>> {
        self.announcements.subscribe()
    }

    /// Tells the subscribers (the notifier) that `approval` was opened.
    fn announce(&self, approval: crate::state::approval::Approval) {
        if self.announcements.receiver_count() > 0 {
            let _ = self.announcements.send(Arc::new(approval));
        }
    }

    /// The policy paths the service (re)loads.
    pub fn policy_paths(&self) -> &[PathBuf] {
        &self.config.policies
    }

    /// Records an event of a transport (a console sign-in, say) in the audit
    /// trail before it takes effect: `Err` if it cannot be recorded, and
    /// the transport must then refuse what it was about to do.
    pub async fn record_event_first(&self, kind: &str, fields: Value) -> Result<(), WireError> {
        self.record_first(kind, fields).await
    }

    /// Records an event of a transport in the audit trail (a failure is logged).
    pub async fn record_event(&self, kind: &str, fields: Value) {
        self.record(kind, fields).await
    }

    /// The engine now serving. Load it once per request: the whole
    /// decision then uses one policy, old or new.
    pub fn engine(&self) -> arc_swap::Guard<Arc<Engine>> {
        self.engine.load()
    }

    /// The state every engine of this service decides on.
    pub fn state(&self) -> &State {
        &self.state
    }

    /// Whether `who` is a member of an approver the policy in force
    /// declares (and so may use the admin socket for approvals).
    pub fn is_approver(&self, who: &Identity) -> bool {
        self.engine().table().approvers().iter().any(|approver| approver.admits(who))
    }

    /// The counters behind `status`.
    pub fn metrics(&self) -> &metrics::Metrics {
        &self.metrics
    }

    /// The audit trail, if one is kept.
    pub fn audit(&self) -> Option<&AuditSink> {
        self.audit.as_ref()
    }

    /// Answers one parsed line from a client in `role`, deciding with
    /// `engine` (loaded once for the line). Records go into `batch`; the
    /// transport commits them before the answer leaves.
    pub async fn handle<'e>(
        &self,
        engine: &'e Engine,
        line: &'e ParsedLine,
        role: &Role,
        batch: &mut AuditBatch,
    ) -> Reply<'e> {
        let id = &line.id;
        if let Some(kind) = line.kind
            && !role.permits(kind)
        {
            return self.refuse(id, role.refusal(&format!("unknown op `{}`", kind.as_str())), batch);
        }
        let op = match &line.op {
            // The decoded operation is checked too: a transport may build a
            // line whose `kind` does not match its `op`.
            Ok(op) if !role.permits(op.kind()) => {
                return self.refuse(id, role.refusal(&format!("unknown op `{}`", op.kind().as_str())), batch);
            }
            Ok(op) => op,
            Err(error) if error.code == WireErrorCode::UnknownOp => {
                return self.refuse(id, role.refusal(&error.message), batch);
            }
            Err(error) => return self.refuse(id, error.clone(), batch),
        };
        let reply = match op {
            Op::Decide(request) => return self.decide_guarded(engine, id, request, batch).await,
            Op::Health => Ok(Reply::Health {
                policy: engine.policy_hash().to_owned(),
                state: self.state.condition(),
                audit: self.audit.as_ref().map(|a| a.condition(self.config.decision_timeout)),
            }),
            Op::Status => Ok(Reply::Status(self.status())),
            Op::Reload => Ok(match self.reload(reload::Trigger::Request).await {
                Ok(policy) => Reply::Reload { ok: true, policy, errors: None },
                Err(error) => Reply::Reload {
                    ok: false,
                    policy: self.engine().policy_hash().to_owned(),
                    errors: Some(error.lines()),
                },
            }),
            Op::Outcome(report) => self.outcome(report).await,
            Op::Kill { scope, reason, by } => self.kill(scope, reason, by.as_deref(), role).await,
            Op::Revive { scope } => self.revive(scope, role).await,
            Op::Kills => Ok(Reply::Kills(self.state.kills.list())),
            Op::Drift { server, tools } => self.drift(engine, server.as_deref(), tools).await,
            Op::Scope { server } => {
                Ok(Reply::Scope(engine.table().server_env(server).map(<[String]>::to_vec)))
            }
            Op::Result { kind, decision_id, agent, session, tool, result, output_schema } => {
                match kind.as_deref() {
                    None | Some("tool") => {
                        // `eval` issues no decision ids: there, a result needs none.
                        let cited = decision_id.as_deref().or((!self.config.serving).then_some(""));
                        let (Some(decision_id), Some(tool)) = (cited, tool) else {
                            let message = "a tool result needs its `decision_id` and `tool`";
                            return self.refuse(
                                id,
                                WireError::new(WireErrorCode::MissingField, message),
                                batch,
                            );
                        };
                        let call = output::Call { decision_id, agent, session: session.as_deref(), tool };
                        self.output(engine, call, result, output_schema.as_ref(), role).await
                    }
                    Some(kind) => self.content(engine, kind, agent, session.as_deref(), result).await,
                }
            }
            Op::Confirm { approval, accept } => self.confirm(approval, *accept).await,
            Op::Visible { agent, tools, annotations } => Ok(Reply::Visible(
                tools
                    .iter()
                    .filter(|tool| engine.may_call(agent, tool, annotations.get(tool.as_str()).copied()))
                    .cloned()
                    .collect(),
            )),
            Op::Approvals => Ok(self.approvals(engine, role)),
            Op::DecideApproval { approval, by, grant, comment } => {
                let decider = admin::Decider { named: by.as_deref(), comment: comment.as_deref() };
                self.decide_approval(approval, decider, *grant, role).await
            }
        };
        reply.unwrap_or_else(|error| self.refuse(id, error, batch))
    }

    /// Answers a line that cannot be answered as asked with an error (a
    /// deny), and records it.
    pub fn refuse(&self, id: &Value, error: WireError, batch: &mut AuditBatch) -> Reply<'static> {
        self.metrics.error();
        if self.audit.is_some() {
            let time = self.state.clock.rfc3339_micros();
            batch.records.push(record::encode(&record::error(
                &time,
                id,
                error.code.as_str(),
                &error.message,
            )));
        }
        Reply::Error(error)
    }

    /// Hands the batch's records to the audit trail without waiting for
    /// them: a transport goes on deciding, and lets the answers leave only
    /// once [`Committing::confirmed`] says the records are written. The
    /// deadline runs from now.
    pub fn submit(&self, batch: &mut AuditBatch) -> Committing {
        self.submit_records(std::mem::take(&mut batch.records))
    }

    /// Hands records to the audit trail; the deadline runs from now.
    /// Records written after it are followed in the trail by an
    /// `unanswered` record.
    pub(super) fn submit_records(&self, records: Vec<record::Encoded>) -> Committing {
        let deadline = self.config.decision_timeout;
        let written = match &self.audit {
            Some(audit) => audit.submit(records).map_err(CommitError::Failed),
            None => Ok(None),
        };
        Committing { written, deadline, by: tokio::time::Instant::now() + deadline }
    }
    /// Records a change before it is made: a change that cannot be recorded
    /// is refused (nothing in force that the trail does not show).
    async fn record_first(&self, kind: &str, fields: Value) -> Result<(), WireError> {
        if self.audit.is_none() {
            return Ok(());
        }
        let record = record::event(&self.state.clock.rfc3339_micros(), kind, fields);
        self.submit_records(vec![record::encode(&record)]).confirmed().await.map_err(|error| {
            tracing::error!(%error, kind, "cannot record in the audit trail; the change is refused");
            let message = format!("the change was not made: the audit trail cannot be written ({error})");
            WireError::new(WireErrorCode::Unavailable, message)
        })
    }

    /// Records an event (what followed a recorded change) in the audit
    /// trail; a failure is logged.
    async fn record(&self, kind: &str, fields: Value) {
        if self.audit.is_none() {
            return;
        }
        let record = record::event(&self.state.clock.rfc3339_micros(), kind, fields);
        if let Err(error) = self.submit_records(vec![record::encode(&record)]).confirmed().await {
            tracing::error!(%error, kind, "cannot record in the audit trail");
        }
    }

    /// `drift`: compares a server's live tools with the policy's catalog
    /// for it, and records a difference in the audit trail.
    async fn drift(
        &self,
        engine: &Engine,
        server: Option<&str>,
        tools: &[Value],
    ) -> Result<Reply<'static>, WireError> {
        let listed = serde_json::to_vec(&json!({ "tools": tools })).unwrap_or_default();
        let live = crate::compiler::catalog::parse(&listed, server)
            .map_err(|error| WireError::new(WireErrorCode::InvalidField, format!("`tools`: {}", error.0)))?;
        let drift = engine.table().drift(server, &live);
        if let Some(drift) = drift.as_ref().filter(|_| engine.table().denies_drift(server)) {
            let changed = drift.changed.iter().map(|changed| changed.name.clone()).collect();
            self.state.drifted.replace(engine.policy_hash(), server, changed);
        }
        if let Some(drift) = drift.as_ref().filter(|drift| !drift.is_empty()) {
            tracing::warn!(server, added = ?drift.added, removed = ?drift.removed, changed = drift.changed.len(), "the server's tools differ from its catalog");
            self.record(
                "tool_drift",
                json!({"server": server, "policy": engine.policy_hash(), "drift": drift}),
            )
            .await;
        }
        Ok(Reply::Drift(drift))
    }

    /// Records that the admin socket turned `who` away (neither an
    /// operator nor a member of a declared approver).
    pub async fn record_refused_peer(&self, who: &Identity) {
        self.record("admin_refused", json!({"by": who.to_string()})).await;
    }

    /// How the state stands, and on Redis, where it is.
    fn state_report(&self) -> Value {
        let mut report = self.state.condition().to_json();
        if let (Some(object), Some(redis)) = (report.as_object_mut(), &self.state.redis) {
            object.insert(String::from("redis"), redis.to_json());
        }
        report
    }

    /// The `status` report.
    pub fn status(&self) -> Value {
        let reload = self.reloads.lock().unwrap_or_else(PoisonError::into_inner).to_json();
        json!({
            "protocol": PROTOCOL_VERSION,
            "policy": self.engine().policy_hash(),
            "uptime_s": self.started.elapsed().as_secs(),
            "reload": reload,
            "kills": crate::state::kill::summary(&self.state.kills.list()),
            "approvals": {"pending": self.state.approvals.pending_count()},
            "state": self.state_report(),
            "audit": self.audit.as_ref().map(|a| {
                let (seq, hash) = a.head();
                let mut audit = a.condition(self.config.decision_timeout).to_json();
                if let Some(object) = audit.as_object_mut() {
                    object.insert(String::from("seq"), json!(seq));
                    object.insert(String::from("head"), json!(hash));
                }
                audit
            }),
            "metrics": self.metrics.to_json(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{Answer, OpKind, ParsedLine};
    use crate::state::approval::ApprovalStatus;

    fn service(policy: &str) -> Service {
        let source =
            crate::compiler::PolicySource { name: "p.yaml".into(), bytes: policy.as_bytes().to_vec() };
        let checked = crate::compiler::compile(vec![source], &crate::compiler::NoFiles);
        let engine = Engine::new(checked.policy.expect("compiles"), State::in_memory());
        Service::new(engine, ServiceConfig { serving: true, ..ServiceConfig::default() }, None)
    }

    fn ask(
        service: &Service,
        request: serde_json::Value,
    ) -> (String, String, Option<(String, ApprovalStatus)>) {
        let request = crate::protocol::decode::request_from_json(&request).expect("request");
        let engine = service.engine();
        let Answer { decision, approval, .. } =
            service.decide(&engine, &Value::Null, &request, &mut AuditBatch::default());
        let approval = approval.map(|a| (a.id, a.state));
        (decision.outcome.as_str().to_owned(), decision.reason.code().as_str().to_owned(), approval)
    }

    #[test]
    fn a_used_approval_is_reported_used_when_a_cap_then_refuses_the_call() {
        let service = service(
            "agentPolicies:\n  bot:\n    allowedTools: [pay]\n    constraints:\n      pay:\n        maxPerSession: 1\n    approvalGates:\n      pay:\n        required: true\n",
        );
        let pay = |amount: u64, approval: Option<&str>| serde_json::json!({"agent": "bot", "tool": "pay", "session": "s", "args": {"amount": amount}, "approval": approval});
        let mut ids = Vec::new();
        for amount in [1, 2] {
            let (outcome, _, approval) = ask(&service, pay(amount, None));
            assert_eq!(outcome, "require_approval");
            let (id, state) = approval.expect("an approval is opened");
            assert_eq!(state, ApprovalStatus::Pending);
            service.state().approvals.decide(&id, None, "anyone", true).expect("granted");
            ids.push(id);
        }
        let (outcome, code, approval) = ask(&service, pay(1, Some(&ids[0])));
        assert_eq!((outcome.as_str(), code.as_str()), ("allow", "approved"));
        assert_eq!(approval, Some((ids[0].clone(), ApprovalStatus::Used)));
        let (outcome, code, approval) = ask(&service, pay(2, Some(&ids[1])));
        assert_eq!((outcome.as_str(), code.as_str()), ("deny", "cap_reached"));
        assert_eq!(approval, Some((ids[1].clone(), ApprovalStatus::Used)));
    }

    #[test]
    fn a_call_asked_again_finds_its_approval_and_a_granted_one_goes_through_once() {
        let service = service(
            "agentPolicies:\n  bot:\n    allowedTools: [pay]\n    approvalGates:\n      pay:\n        required: true\n",
        );
        let pay = |session: &str, amount: u64| serde_json::json!({"agent": "bot", "tool": "pay", "session": session, "args": {"amount": amount}});
        let (outcome, _, first) = ask(&service, pay("s", 1));
        assert_eq!(outcome, "require_approval");
        let (id, _) = first.expect("an approval is opened");
        let (outcome, _, again) = ask(&service, pay("s", 1));
        assert_eq!(outcome, "require_approval");
        assert_eq!(again, Some((id.clone(), ApprovalStatus::Pending)), "the same approval, not a second one");
        for other in [pay("t", 1), pay("s", 2)] {
            let (_, _, opened) = ask(&service, other);
            assert_ne!(opened.map(|(other, _)| other), Some(id.clone()), "another session or arguments");
        }
        service.state().approvals.decide(&id, None, "anyone", true).expect("granted");
        let (outcome, code, used) = ask(&service, pay("s", 1));
        assert_eq!((outcome.as_str(), code.as_str()), ("allow", "approved"));
        assert_eq!(used, Some((id.clone(), ApprovalStatus::Used)));
        let (outcome, _, next) = ask(&service, pay("s", 1));
        assert_eq!(outcome, "require_approval");
        assert_ne!(next.map(|(next, _)| next), Some(id), "used once; the next call waits again");
    }

    #[test]
    fn without_a_session_a_call_must_name_its_approval() {
        let service = service(
            "agentPolicies:\n  bot:\n    allowedTools: [pay]\n    approvalGates:\n      pay:\n        required: true\n",
        );
        let pay = serde_json::json!({"agent": "bot", "tool": "pay", "args": {"amount": 1}});
        let (_, _, first) = ask(&service, pay.clone());
        let (id, _) = first.expect("an approval is opened");
        service.state().approvals.decide(&id, None, "anyone", true).expect("granted");
        let (outcome, _, second) = ask(&service, pay);
        assert_eq!(outcome, "require_approval", "not found without a session");
        assert_ne!(second.map(|(second, _)| second), Some(id));
    }

    #[test]
    fn an_operation_is_checked_against_the_role_whatever_kind_the_line_claims() {
        let service = service("agentPolicies:\n  bot:\n    allowedTools: [t]\n");
        let line = ParsedLine {
            id: Value::Null,
            kind: Some(OpKind::Decide),
            op: Ok(Op::DecideApproval {
                approval: "apr_1".into(),
                by: Some("me".into()),
                grant: true,
                comment: None,
            }),
        };
        let runtime = tokio::runtime::Builder::new_current_thread().build().expect("runtime");
        let engine = service.engine();
        for role in [Role::Decisions, Role::Eval] {
            let reply = runtime.block_on(service.handle(&engine, &line, &role, &mut AuditBatch::default()));
            assert!(matches!(&reply, Reply::Error(e) if e.code == WireErrorCode::UnknownOp), "{reply:?}");
        }
    }
}
