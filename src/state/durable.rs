//! Durable session counters in redb, with group commit.
//!
//! One committer thread owns all writes. `admit` calls from every thread
//! queue up; the committer takes everything queued, checks and counts each
//! call in order inside one write transaction, commits it durably (one
//! fsync for the whole batch), and only then answers. So an allow the
//! engine returns is always counted on disk: a crash may lose calls that
//! were never answered (over-counting nothing), and can never let a cap be
//! exceeded after a restart.
//!
//! The store heals: a failed commit (a full disk, an I/O error) leaves
//! redb refusing every later transaction, so the committer drops the
//! database and reopens it (at most every [`REOPEN_EVERY`]) until a commit
//! succeeds; meanwhile calls are denied and [`SessionStore::condition`]
//! says why. A caller waits for the committer at most
//! [`DurableOptions::answer_within`]; the queue holds at most
//! [`QUEUE_CAPACITY`] jobs.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;
use redb::{Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition};

use super::clock::{Clock, SystemClock};
use super::condition::{Condition, Health};
use super::handoff::{Handoff, Unanswered};
use super::session::{
    Admission, Bucket, CallOutcome, Cap, Counter, OutcomeTotals, SessionKey, SessionLimits, SessionStore,
    Tally, admit, apply_outcome, check,
};

const COUNTERS: TableDefinition<&str, u64> = TableDefinition::new("counters");
/// Rate-limit buckets per agent and rule: (millionths of a call left, ms updated).
const BUCKETS: TableDefinition<&str, (u64, u64)> = TableDefinition::new("buckets");
/// Live sessions, by the prefix of their counters' keys: (ms last used, tools counted).
const SESSIONS: TableDefinition<&str, (u64, u64)> = TableDefinition::new("sessions");

/// The most admissions committed in one transaction.
const MAX_BATCH: usize = 4096;
/// The most jobs waiting for the committer; a caller finding the queue full
/// is answered at once ([`Admission::TimedOut`]).
pub const QUEUE_CAPACITY: usize = 65_536;
/// How often a failed database is reopened.
pub const REOPEN_EVERY: Duration = Duration::from_millis(250);
/// The most expired sessions one sweep drops (the rest wait for the next).
const SWEEP_BATCH: usize = 10_000;

/// How a [`DurableSessions`] store behaves.
#[derive(Clone, Debug)]
pub struct DurableOptions {
    /// Where "now" comes from (buckets refill, sessions expire by it).
    pub clock: Arc<dyn Clock>,
    /// How many sessions, for how long.
    pub limits: SessionLimits,
    /// How long a caller waits for its commit before the call is denied.
    pub answer_within: Duration,
}

impl Default for DurableOptions {
    fn default() -> Self {
        DurableOptions {
            clock: Arc::new(SystemClock),
            limits: SessionLimits::default(),
            answer_within: Duration::from_secs(1),
        }
    }
}

/// One job for the committer: an admission to check and count, or an
/// outcome to record.
enum Job {
    /// Check every cap and, with a tool, count the call (without one, only check).
    Admit {
        tool: Option<String>,
        caps: Vec<Cap>,
        reply: mpsc::SyncSender<Admission>,
    },
    Outcome {
        outcome: CallOutcome,
        reply: mpsc::SyncSender<Option<OutcomeTotals>>,
    },
}

/// A job queued for the committer, with the session it is for.
struct Queued {
    session: String,
    agent: String,
    job: Job,
}

/// What the committer and the readers share.
struct Shared {
    path: PathBuf,
    /// The open database; `None` after a failure, until it is reopened.
    db: ArcSwapOption<Database>,
    /// Failures and the commit under way.
    health: Health,
}

/// Session counters in a redb database file.
pub struct DurableSessions {
    shared: Arc<Shared>,
    /// The committer and its queue (dropped: everything queued is
    /// answered, then the database closes).
    handoff: Handoff<Queued>,
    answer_within: Duration,
    clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for DurableSessions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DurableSessions").field("path", &self.shared.path).finish_non_exhaustive()
    }
}

/// The prefix of every counter key of one session: length-prefixed parts,
/// so that no session or agent name can be crafted to collide with another's.
fn session_prefix(session: &str, agent: &str) -> String {
    format!("{}:{session}|{}:{agent}|", session.len(), agent.len())
}

/// The key of one counter: the session's prefix, the kind, the
/// length-prefixed name.
fn counter_key(prefix: &str, counter: Counter<'_>) -> String {
    let (kind, name) = match counter {
        Counter::Total => ("t", ""),
        Counter::Tool(tool) => ("o", tool),
        Counter::Cap(cap) => ("c", cap),
        Counter::ConsecutiveErrors => ("e", ""),
        Counter::CostMicros => ("$", ""),
    };
    format!("{prefix}{kind}|{}:{name}", name.len())
}

/// The first key after every key starting with `prefix` (which ends in `|`).
fn prefix_end(prefix: &str) -> String {
    let mut end = prefix.trim_end_matches('|').to_owned();
    end.push('}');
    end
}

/// Opens the database at `path`, creating the tables.
fn open_database(path: &Path) -> Result<Database, redb::Error> {
    let db = Database::create(path)?;
    // Create the tables up front, so readers never meet a missing one.
    let txn = db.begin_write()?;
    txn.open_table(COUNTERS)?;
    txn.open_table(BUCKETS)?;
    txn.open_table(SESSIONS)?;
    txn.commit()?;
    Ok(db)
}

impl DurableSessions {
    /// Opens (or creates) the database at `path` and starts the committer,
    /// with the default options.
    pub fn open(path: &Path) -> Result<DurableSessions, redb::Error> {
        DurableSessions::open_with(path, DurableOptions::default())
    }

    /// Opens (or creates) the database at `path` and starts the committer.
    pub fn open_with(path: &Path, options: DurableOptions) -> Result<DurableSessions, redb::Error> {
        let db = open_database(path)?;
        let live = count_sessions(&db)?;
        let shared = Arc::new(Shared {
            path: path.to_owned(),
            db: ArcSwapOption::from_pointee(db),
            health: Health::default(),
        });
        let committer = Committer {
            shared: Arc::clone(&shared),
            clock: Arc::clone(&options.clock),
            limits: options.limits,
            live,
            swept_ms: 0,
            swept_all_ms: 0,
            reopen_after: None,
        };
        let handoff =
            Handoff::start("toolgate-state", QUEUE_CAPACITY, options.answer_within, move |receiver| {
                committer.run(&receiver)
            })
            .map_err(redb::Error::Io)?;
        Ok(DurableSessions { shared, handoff, answer_within: options.answer_within, clock: options.clock })
    }
}

fn count_sessions(db: &Database) -> Result<usize, redb::Error> {
    let txn = db.begin_read()?;
    let len = txn.open_table(SESSIONS)?.len()?;
    Ok(usize::try_from(len).unwrap_or(usize::MAX))
}

/// The committer thread's own state.
struct Committer {
    shared: Arc<Shared>,
    clock: Arc<dyn Clock>,
    limits: SessionLimits,
    /// Live sessions in the database (recounted on every reopen).
    live: usize,
    /// When expired sessions were last dropped.
    swept_ms: u64,
    /// When a new session at the bound last forced a sweep.
    swept_all_ms: u64,
    /// After a failure: not before this instant is the database reopened.
    reopen_after: Option<Instant>,
}

impl Committer {
    fn run(mut self, receiver: &mpsc::Receiver<Queued>) {
        while let Ok(first) = receiver.recv() {
            let mut batch = vec![first];
            batch.extend(receiver.try_iter().take(MAX_BATCH - 1));
            let Some(db) = self.database() else {
                for queued in &batch {
                    Answer::Failed.send(&queued.job);
                }
                continue;
            };
            let now = self.clock.now_ms();
            self.shared.health.begin(now);
            let committed = self.commit_batch(&db, &batch, now);
            self.shared.health.end();
            match committed {
                Ok(answers) => {
                    self.shared.health.heal();
                    for (queued, answer) in batch.iter().zip(answers) {
                        answer.send(&queued.job);
                    }
                }
                Err(error) => {
                    tracing::error!(%error, "session state commit failed; denying the batch and reopening the database");
                    self.shared.health.fail(&error, now);
                    // redb refuses every transaction after an I/O error until reopened.
                    self.shared.db.store(None);
                    drop(db);
                    self.reopen_after = Some(Instant::now());
                    for queued in &batch {
                        Answer::Failed.send(&queued.job);
                    }
                }
            }
        }
    }

    /// The open database, reopening it after a failure (at most every
    /// [`REOPEN_EVERY`]); `None` while it cannot be opened.
    fn database(&mut self) -> Option<Arc<Database>> {
        if let Some(db) = self.shared.db.load_full() {
            return Some(db);
        }
        if self.reopen_after.is_some_and(|after| Instant::now() < after) {
            return None;
        }
        let reopened = open_database(&self.shared.path).and_then(|db| Ok((count_sessions(&db)?, db)));
        match reopened {
            Ok((live, db)) => {
                tracing::info!(path = %self.shared.path.display(), "session state reopened");
                self.live = live;
                self.reopen_after = None;
                let db = Arc::new(db);
                self.shared.db.store(Some(Arc::clone(&db)));
                Some(db)
            }
            Err(error) => {
                self.shared.health.fail(format!("cannot reopen: {error}"), self.clock.now_ms());
                self.reopen_after = Some(Instant::now() + REOPEN_EVERY);
                None
            }
        }
    }

    fn commit_batch(
        &mut self,
        db: &Database,
        batch: &[Queued],
        now: u64,
    ) -> Result<Vec<Answer>, redb::Error> {
        let txn = db.begin_write()?;
        let mut answers = Vec::with_capacity(batch.len());
        {
            let mut tables = Tables {
                counters: txn.open_table(COUNTERS)?,
                buckets: txn.open_table(BUCKETS)?,
                sessions: txn.open_table(SESSIONS)?,
            };
            if now.saturating_sub(self.swept_ms) >= self.limits.sweep_every_ms() {
                self.sweep(&mut tables, now)?;
            }
            for queued in batch {
                answers.push(self.run_job(&mut tables, queued, now)?);
            }
        }
        txn.commit()?;
        Ok(answers)
    }

    fn run_job(&mut self, tables: &mut Tables<'_>, queued: &Queued, now: u64) -> Result<Answer, redb::Error> {
        let prefix = session_prefix(&queued.session, &queued.agent);
        let Some(tools) = self.open_session(tables, &prefix, now)? else {
            return Ok(Answer::SessionLimit);
        };
        let clock = self.clock.as_ref();
        let mut tally = RedbTally { tables, prefix: &prefix, agent: &queued.agent, tools };
        let answer = match &queued.job {
            Job::Admit { tool: Some(tool), caps, .. } => {
                Answer::Admission(admit(&mut tally, tool, caps, clock)?)
            }
            Job::Admit { tool: None, caps, .. } => Answer::Admission(check(&mut tally, caps, clock)?),
            Job::Outcome { outcome, .. } => Answer::Totals(apply_outcome(&mut tally, *outcome)?),
        };
        let tools = tally.tools;
        tables.sessions.insert(prefix.as_str(), (now, tools))?;
        Ok(answer)
    }

    /// The number of tools a session counts, after making sure it is live:
    /// an expired one starts again, a new one takes a place if one is left
    /// (`None` if not).
    fn open_session(
        &mut self,
        tables: &mut Tables<'_>,
        prefix: &str,
        now: u64,
    ) -> Result<Option<u64>, redb::Error> {
        let stored = tables.sessions.get(prefix)?.map(|v| v.value());
        match stored {
            Some((last_used, tools)) if !self.limits.expired(last_used, now) => Ok(Some(tools)),
            Some(_) => {
                drop_counters(tables, prefix)?;
                Ok(Some(0))
            }
            None => {
                if self.live >= self.limits.max_sessions && now.saturating_sub(self.swept_all_ms) >= 1_000 {
                    self.swept_all_ms = now;
                    self.sweep(tables, now)?;
                }
                if self.live >= self.limits.max_sessions {
                    return Ok(None);
                }
                self.live += 1;
                Ok(Some(0))
            }
        }
    }

    /// Drops sessions idle for too long, with their counters.
    fn sweep(&mut self, tables: &mut Tables<'_>, now: u64) -> Result<(), redb::Error> {
        self.swept_ms = now;
        let mut expired = Vec::new();
        for entry in tables.sessions.iter()? {
            let (key, value) = entry?;
            if self.limits.expired(value.value().0, now) {
                expired.push(key.value().to_owned());
                if expired.len() == SWEEP_BATCH {
                    break;
                }
            }
        }
        for prefix in &expired {
            tables.sessions.remove(prefix.as_str())?;
            drop_counters(tables, prefix)?;
        }
        self.live = self.live.saturating_sub(expired.len());
        Ok(())
    }
}

/// Removes every counter of the session with `prefix`.
fn drop_counters(tables: &mut Tables<'_>, prefix: &str) -> Result<(), redb::Error> {
    let end = prefix_end(prefix);
    tables.counters.retain_in(prefix..end.as_str(), |_, _| false)?;
    Ok(())
}

/// What the committer answers, sent only after the commit.
enum Answer {
    Admission(Admission),
    Totals(OutcomeTotals),
    SessionLimit,
    Failed,
}

impl Answer {
    fn send(self, job: &Job) {
        match (job, self) {
            (Job::Admit { reply, .. }, Answer::Admission(admission)) => {
                let _ = reply.send(admission);
            }
            (Job::Outcome { reply, .. }, Answer::Totals(totals)) => {
                let _ = reply.send(Some(totals));
            }
            (Job::Admit { reply, .. }, Answer::SessionLimit) => {
                let _ = reply.send(Admission::SessionLimit);
            }
            (Job::Admit { reply, .. }, _) => {
                let _ = reply.send(Admission::Unavailable);
            }
            (Job::Outcome { reply, .. }, _) => {
                let _ = reply.send(None);
            }
        }
    }
}

/// The tables of the committer's write transaction.
struct Tables<'txn> {
    counters: redb::Table<'txn, &'static str, u64>,
    buckets: redb::Table<'txn, &'static str, (u64, u64)>,
    sessions: redb::Table<'txn, &'static str, (u64, u64)>,
}

/// One session's counters inside the committer's write transaction.
struct RedbTally<'t, 'txn> {
    tables: &'t mut Tables<'txn>,
    prefix: &'t str,
    agent: &'t str,
    /// How many tools the session counts.
    tools: u64,
}

impl RedbTally<'_, '_> {
    fn bucket_key(&self, counter: &str) -> String {
        format!("{}:{}|{counter}", self.agent.len(), self.agent)
    }
}

impl Tally for RedbTally<'_, '_> {
    type Error = redb::Error;

    fn get(&mut self, counter: Counter<'_>) -> Result<u64, redb::Error> {
        let key = counter_key(self.prefix, counter);
        Ok(self.tables.counters.get(key.as_str())?.map_or(0, |v| v.value()))
    }

    fn set(&mut self, counter: Counter<'_>, value: u64) -> Result<(), redb::Error> {
        let key = counter_key(self.prefix, counter);
        let new = self.tables.counters.insert(key.as_str(), value)?.is_none();
        if new && matches!(counter, Counter::Tool(_)) {
            self.tools += 1;
        }
        Ok(())
    }

    fn bucket(&mut self, counter: &str) -> Result<Option<Bucket>, redb::Error> {
        let key = self.bucket_key(counter);
        Ok(self.tables.buckets.get(key.as_str())?.map(|v| {
            let (tokens, updated_ms) = v.value();
            Bucket { tokens, updated_ms }
        }))
    }

    fn set_bucket(&mut self, counter: &str, bucket: Bucket) -> Result<(), redb::Error> {
        let key = self.bucket_key(counter);
        self.tables.buckets.insert(key.as_str(), (bucket.tokens, bucket.updated_ms))?;
        Ok(())
    }

    fn counts_tool(&mut self, tool: &str) -> Result<bool, redb::Error> {
        let key = counter_key(self.prefix, Counter::Tool(tool));
        Ok(self.tables.counters.get(key.as_str())?.is_some())
    }

    fn tools(&mut self) -> Result<usize, redb::Error> {
        Ok(usize::try_from(self.tools).unwrap_or(usize::MAX))
    }
}

impl DurableSessions {
    /// Has the committer check (and, with a tool, count) a call; waits for
    /// the commit.
    fn admission(&self, key: SessionKey<'_>, tool: Option<&str>, caps: &[Cap]) -> Admission {
        let job = |reply| Job::Admit { tool: tool.map(str::to_owned), caps: caps.to_vec(), reply };
        self.ask(key, job).unwrap_or_else(Unanswered::admission)
    }

    fn ask<T>(
        &self,
        key: SessionKey<'_>,
        job: impl FnOnce(mpsc::SyncSender<T>) -> Job,
    ) -> Result<T, Unanswered> {
        let (session, agent) = (key.session.to_owned(), key.agent.to_owned());
        self.handoff.ask(|reply| Queued { session, agent, job: job(reply) })
    }
}

impl SessionStore for DurableSessions {
    fn count(&self, key: SessionKey<'_>, counter: Counter<'_>) -> Option<u64> {
        let db = self.shared.db.load_full()?;
        let read = || -> Result<u64, redb::Error> {
            let txn = db.begin_read()?;
            let table = txn.open_table(COUNTERS)?;
            let key = counter_key(&session_prefix(key.session, key.agent), counter);
            Ok(table.get(key.as_str())?.map_or(0, |v| v.value()))
        };
        read().ok()
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
        self.shared.health.get(self.clock.now_ms(), self.answer_within, "a commit")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_survive_reopening() {
        let dir = std::env::temp_dir().join(format!("toolgate-durable-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("state.redb");
        let key = SessionKey { agent: "a", session: "s" };
        let caps = [Cap::count("a.t.max", 3)];
        {
            let store = DurableSessions::open(&path).expect("open");
            for _ in 0..3 {
                assert_eq!(store.admit(key, "t", &caps), Admission::Admitted);
            }
        }
        let store = DurableSessions::open(&path).expect("reopen");
        assert_eq!(store.count(key, Counter::Cap("a.t.max")), Some(3));
        assert_eq!(store.count(key, Counter::Total), Some(3));
        assert_eq!(store.admit(key, "t", &caps), Admission::Refused(0));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
