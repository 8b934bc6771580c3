//! State on Redis, shared by every replica that names the same server.
//!
//! Session counters ([`RedisSessions`]): every admission, check, outcome
//! and counter read is one run of one Lua script (`sessions.lua`), atomic
//! on the server. One committer thread per replica takes everything
//! queued and sends it as one pipeline (group commit, as the redb store
//! does): concurrent calls cost one round trip together, not one each.
//! An answer is given only after Redis has run its script, so an allow is
//! always counted; a call the committer cannot get answered in time is
//! denied (it may still have been counted: over-counting, never under).
//!
//! Keys carry the agent as a hash tag (`{ns}:{agent}:…`): one call's keys —
//! its session, its agent's live sessions and rate buckets — live on one
//! cluster slot. Sessions expire after the idle time (the script checks,
//! and `PEXPIRE` collects them); rate buckets expire once they would be
//! full again. `max_sessions` bounds each agent's live sessions (a bound
//! over all agents would need a key on every slot).
//!
//! Time: by default the script reads Redis's clock (`TIME`), so replicas
//! with skewed clocks refill buckets and expire sessions alike; tests give
//! a clock of their own.
//!
//! When Redis cannot be reached, every call that needs state is denied
//! (`Admission::Unavailable`), [`SessionStore::condition`] says why, and
//! the committer reconnects (at most every [`RECONNECT_EVERY`]) until
//! Redis answers again; no restart is needed.

pub mod address;
pub mod approvals;
pub mod clock;
pub mod kills;
pub mod link;
pub mod pool;
mod sentinel;

use std::sync::Arc;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use super::clock::{Clock, SystemClock};
use super::condition::{Condition, Health};
use super::handoff::{Handoff, Unanswered};
pub use clock::RedisClock;
pub use link::{Link, RedisSettings};

use super::session::{
    Admission, CallOutcome, Cap, Counter, MAX_TOOLS_PER_SESSION, OutcomeTotals, SessionKey, SessionLimits,
    SessionStore,
};

/// The admission script.
const SCRIPT: &str = include_str!("sessions.lua");
/// The most calls sent in one pipeline.
const MAX_BATCH: usize = 1024;
/// The most calls waiting for the committer; a caller finding the queue
/// full is denied at once.
pub const QUEUE_CAPACITY: usize = 65_536;
/// How often a lost connection is tried again.
pub const RECONNECT_EVERY: Duration = Duration::from_millis(250);

/// How a Redis session store behaves.
#[derive(Clone, Debug, Default)]
pub struct RedisOptions {
    /// Where "now" comes from: `None` for Redis's own clock (`TIME`).
    pub clock: Option<Arc<dyn Clock>>,
    /// How many sessions, for how long.
    pub limits: SessionLimits,
}

/// What a replica on Redis tells its operator: where its Redis is
/// (without the password), the namespace, and how far Redis's clock is
/// from its own.
#[derive(Debug)]
pub struct Shared {
    /// The address, its password hidden.
    pub address: String,
    /// The namespace of every key.
    pub namespace: String,
    /// Redis's clock as this replica tells it.
    pub clock: Arc<RedisClock>,
    /// Connections to it (the approvals' own), for other parts of the
    /// replica that keep state there too (the console's sessions and
    /// sign-in throttle).
    pub pool: Arc<pool::Pool>,
}

impl Shared {
    /// `{"address": …, "namespace": …, "clock_offset_ms": …}`.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "address": self.address,
            "namespace": self.namespace,
            "clock_offset_ms": self.clock.offset_ms(),
        })
    }
}

/// Why a Redis store cannot be opened.
#[derive(Debug)]
pub struct RedisError(pub String);

impl std::fmt::Display for RedisError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// What the committer runs for a caller.
enum Job {
    /// Check every cap and, with a tool, count the call.
    Admit { tool: Option<String>, caps: Vec<Cap>, reply: mpsc::SyncSender<Admission> },
    /// Record an outcome.
    Outcome { outcome: CallOutcome, reply: mpsc::SyncSender<Option<OutcomeTotals>> },
    /// Read one counter (a hash field).
    Count { field: String, reply: mpsc::SyncSender<Option<u64>> },
}

/// A job with the keys of its session.
struct Queued {
    keys: Keys,
    job: Job,
}

/// The keys of one session's script run.
struct Keys {
    /// `{ns}:{agent}`: the start of every key of the agent.
    agent: String,
    /// The session's hash.
    session: String,
}

impl Keys {
    /// The agent's live sessions.
    fn live(&self) -> String {
        format!("{}:live", self.agent)
    }

    /// The agent's bucket of the rate limit `counter`.
    fn bucket(&self, counter: &str) -> String {
        format!("{}:b:{counter}", self.agent)
    }
}

/// Session counters on Redis.
pub struct RedisSessions {
    namespace: String,
    /// The committer and its queue (dropped: everything queued is answered).
    handoff: Handoff<Queued>,
    health: Arc<Health>,
    answer_within: Duration,
}

impl std::fmt::Debug for RedisSessions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisSessions").field("namespace", &self.namespace).finish_non_exhaustive()
    }
}

/// The hash tag of an agent's keys: its name, or the digest of a name with
/// braces (which would end the tag early).
fn tag(agent: &str) -> String {
    if agent.contains(['{', '}']) {
        crate::hash::sha256_text(sha2::Digest::new_with_prefix(agent.as_bytes()))
    } else {
        agent.to_owned()
    }
}

impl RedisSessions {
    /// Connects through `link` (an unreachable server is an error here;
    /// later, a lost connection is retried) and starts the committer. A
    /// call waits at most the link's timeout for its answer.
    pub fn open(link: &Link, options: RedisOptions) -> Result<RedisSessions, RedisError> {
        let mut connection = Connection::new(link.clone());
        connection.get().map_err(|e| RedisError(format!("Redis does not answer: {e}")))?;
        let health = Arc::new(Health::default());
        let committer = Committer {
            connection,
            health: Arc::clone(&health),
            clock: options.clock,
            limits: options.limits,
        };
        let handoff = Handoff::start("toolgate-redis", QUEUE_CAPACITY, link.timeout(), move |receiver| {
            committer.run(&receiver)
        })
        .map_err(|e| RedisError(format!("cannot start the Redis committer: {e}")))?;
        Ok(RedisSessions {
            namespace: link.namespace().to_owned(),
            handoff,
            health,
            answer_within: link.timeout(),
        })
    }

    fn keys(&self, key: SessionKey<'_>) -> Keys {
        let agent = format!("{}:{{{}}}", self.namespace, tag(key.agent));
        let session = format!("{agent}:s:{}:{}", key.session.len(), key.session);
        Keys { agent, session }
    }

    fn ask<T>(
        &self,
        key: SessionKey<'_>,
        job: impl FnOnce(mpsc::SyncSender<T>) -> Job,
    ) -> Result<T, Unanswered> {
        let keys = self.keys(key);
        self.handoff.ask(|reply| Queued { keys, job: job(reply) })
    }

    fn admission(&self, key: SessionKey<'_>, tool: Option<&str>, caps: &[Cap]) -> Admission {
        let job = |reply| Job::Admit { tool: tool.map(str::to_owned), caps: caps.to_vec(), reply };
        self.ask(key, job).unwrap_or_else(Unanswered::admission)
    }
}

impl SessionStore for RedisSessions {
    fn count(&self, key: SessionKey<'_>, counter: Counter<'_>) -> Option<u64> {
        let field = match counter {
            Counter::Total => String::from("t"),
            Counter::Tool(tool) => format!("o:{tool}"),
            Counter::Cap(cap) => format!("c:{cap}"),
            Counter::ConsecutiveErrors => String::from("e"),
            Counter::CostMicros => String::from("$"),
        };
        self.ask(key, |reply| Job::Count { field, reply }).ok().flatten()
    }

    fn admit(&self, key: SessionKey<'_>, tool: &str, caps: &[Cap]) -> Admission {
        self.admission(key, Some(tool), caps)
    }

    fn check(&self, key: SessionKey<'_>, caps: &[Cap]) -> Admission {
        self.admission(key, None, caps)
    }

    fn record_outcome(&self, key: SessionKey<'_>, outcome: CallOutcome) -> Option<OutcomeTotals> {
        self.ask(key, |reply| Job::Outcome { outcome, reply }).ok().flatten()
    }

    fn may_block(&self) -> bool {
        true
    }

    fn condition(&self) -> Condition {
        self.health.get(SystemClock.now_ms(), self.answer_within, "a Redis round trip")
    }
}

/// The committer's connection, made again after a failure.
struct Connection {
    link: Link,
    open: Option<(redis::Connection, String)>,
    retry_after: Option<Instant>,
}

impl Connection {
    fn new(link: Link) -> Connection {
        Connection { link, open: None, retry_after: None }
    }

    /// The open connection and the script's SHA-1, connecting (and loading
    /// the script) if needed; not more often than [`RECONNECT_EVERY`].
    fn get(&mut self) -> Result<&mut (redis::Connection, String), String> {
        if self.open.is_none() {
            if self.retry_after.is_some_and(|after| Instant::now() < after) {
                return Err(String::from("Redis is unreachable (retrying)"));
            }
            let connected = (|| -> redis::RedisResult<(redis::Connection, String)> {
                let mut connection = self.link.connect()?;
                let sha: String = redis::cmd("SCRIPT").arg("LOAD").arg(SCRIPT).query(&mut connection)?;
                Ok((connection, sha))
            })();
            match connected {
                Ok(open) => {
                    self.retry_after = None;
                    self.open = Some(open);
                }
                Err(error) => {
                    self.retry_after = Some(Instant::now() + RECONNECT_EVERY);
                    return Err(error.to_string());
                }
            }
        }
        self.open.as_mut().ok_or_else(|| String::from("no connection"))
    }

    /// Drops the connection after a failure: the next batch reconnects.
    fn lose(&mut self) {
        self.open = None;
        self.retry_after = Some(Instant::now() + RECONNECT_EVERY);
    }
}

/// The committer thread's own state.
struct Committer {
    connection: Connection,
    health: Arc<Health>,
    clock: Option<Arc<dyn Clock>>,
    limits: SessionLimits,
}

/// What one script run answered.
type Reply = Result<Vec<i64>, ()>;

impl Committer {
    fn run(mut self, receiver: &mpsc::Receiver<Queued>) {
        while let Ok(first) = receiver.recv() {
            let mut batch = vec![first];
            batch.extend(receiver.try_iter().take(MAX_BATCH - 1));
            let now = SystemClock.now_ms();
            self.health.begin(now);
            let replies = self.send(&batch);
            self.health.end();
            match replies {
                Ok(replies) => {
                    self.health.heal();
                    for (queued, reply) in batch.into_iter().zip(replies) {
                        answer(queued.job, reply);
                    }
                }
                Err(error) => {
                    tracing::error!(%error, "Redis did not answer; denying the calls that need state");
                    self.health.fail(&error, now);
                    for queued in batch {
                        answer(queued.job, Err(()));
                    }
                }
            }
        }
    }

    /// Sends the batch as one pipeline; once more on a new connection if
    /// Redis had lost the script (a restart or a failover empties its
    /// script cache) or has become a replica: a call answered `NOSCRIPT`
    /// or `READONLY` did not run.
    fn send(&mut self, batch: &[Queued]) -> Result<Vec<Reply>, String> {
        for attempt in 0..2 {
            let now = self.clock.as_ref().map_or(0, |clock| clock.now_ms());
            let limits = self.limits;
            let (connection, sha) = self.connection.get()?;
            let mut pipe = redis::pipe();
            pipe.ignore_errors();
            for queued in batch {
                script_call(&mut pipe, sha, queued, now, &limits);
            }
            let results: Vec<redis::RedisResult<Vec<i64>>> = match pipe.query(connection) {
                Ok(results) => results,
                Err(error) => {
                    self.connection.lose();
                    return Err(error.to_string());
                }
            };
            let refused = |kind| results.iter().any(|r| r.as_ref().is_err_and(|e| e.kind() == kind));
            let lost_script = refused(redis::ErrorKind::Server(redis::ServerErrorKind::NoScript));
            // A primary demoted by a failover refuses writes: connect again
            // (through Sentinel, to the new primary); the calls did not run.
            let demoted = refused(redis::ErrorKind::Server(redis::ServerErrorKind::ReadOnly));
            if (lost_script || demoted) && attempt == 0 {
                self.connection.lose();
                self.connection.retry_after = None;
                continue;
            }
            if demoted {
                self.connection.lose();
                return Err(String::from("Redis is a read-only replica (READONLY): connecting again"));
            }
            return Ok(results
                .into_iter()
                .map(|result| {
                    result
                        .map_err(|error| tracing::error!(%error, "the state script failed; denying the call"))
                })
                .collect());
        }
        Err(String::from("Redis lost the state script twice"))
    }
}

/// Adds one script run to the pipeline.
fn script_call(pipe: &mut redis::Pipeline, sha: &str, queued: &Queued, now: u64, limits: &SessionLimits) {
    let keys = &queued.keys;
    let rate_caps: Vec<&Cap> = match &queued.job {
        Job::Admit { caps, .. } => caps.iter().filter(|cap| cap.window_ms.is_some()).collect(),
        _ => Vec::new(),
    };
    let command = pipe.cmd("EVALSHA").arg(sha).arg(2 + rate_caps.len()).arg(&keys.session).arg(keys.live());
    for cap in &rate_caps {
        command.arg(keys.bucket(&cap.counter));
    }
    command
        .arg(now)
        .arg(match &queued.job {
            Job::Admit { tool: Some(_), .. } => "admit",
            Job::Admit { tool: None, .. } => "check",
            Job::Outcome { .. } => "outcome",
            Job::Count { .. } => "count",
        })
        .arg(limits.idle_ms())
        .arg(limits.max_sessions)
        .arg(MAX_TOOLS_PER_SESSION);
    match &queued.job {
        Job::Admit { tool, caps, .. } => {
            command.arg(tool.as_deref().unwrap_or("")).arg(0).arg(caps.len());
            for cap in caps {
                command.arg(&*cap.counter).arg(cap.limit).arg(cap.window_ms.unwrap_or(0));
            }
        }
        Job::Outcome { outcome, .. } => {
            command.arg(if outcome.error { "1" } else { "0" }).arg(outcome.cost_micros).arg(0);
        }
        Job::Count { field, .. } => {
            command.arg(field).arg(0).arg(0);
        }
    }
}

/// Gives a job's caller what the script answered.
fn answer(job: Job, reply: Reply) {
    let number = |values: &[i64], at: usize| values.get(at).and_then(|v| u64::try_from(*v).ok());
    match job {
        Job::Admit { reply: sender, .. } => {
            let admission = match reply.as_deref() {
                Ok([0]) => Admission::Admitted,
                Ok([1, index]) => match usize::try_from(*index).ok().and_then(|i| i.checked_sub(1)) {
                    Some(index) => Admission::Refused(index),
                    None => Admission::Unavailable,
                },
                Ok([2]) => Admission::SessionLimit,
                _ => Admission::Unavailable,
            };
            let _ = sender.send(admission);
        }
        Job::Outcome { reply: sender, .. } => {
            let totals = match reply.as_deref() {
                Ok(values @ [3, _, _]) => {
                    number(values, 1).zip(number(values, 2)).map(|(consecutive_errors, cost_micros)| {
                        OutcomeTotals { consecutive_errors, cost_micros }
                    })
                }
                _ => None,
            };
            let _ = sender.send(totals);
        }
        Job::Count { reply: sender, .. } => {
            let value = match reply.as_deref() {
                Ok(values @ [4, _]) => number(values, 1),
                _ => None,
            };
            let _ = sender.send(value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_agent_with_braces_cannot_move_its_keys_to_another_tag() {
        assert_eq!(tag("bot"), "bot");
        let odd = tag("a}b{c");
        assert!(odd.starts_with("sha256:") && !odd.contains(['{', '}']), "{odd}");
    }
}
