//! Durable session counters in redb, with group commit.
//!
//! One committer thread owns all writes. `admit` calls from every thread
//! queue up; the committer takes everything queued, checks and counts each
//! call in order inside one write transaction, commits it durably (one
//! fsync for the whole batch), and only then answers. So an allow the
//! engine returns is always counted on disk: a crash may lose calls that
//! were never answered (over-counting nothing), and can never let a cap be
//! exceeded after a restart.

use std::path::Path;
use std::sync::mpsc;
use std::sync::{Arc, Mutex, PoisonError};

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};

use super::clock::{Clock, SystemClock};
use super::session::{
    Admission, Bucket, CallOutcome, Cap, Counter, OutcomeTotals, SessionKey, SessionStore, Tally, admit,
    apply_outcome, check,
};

const COUNTERS: TableDefinition<&str, u64> = TableDefinition::new("counters");
/// Rate-limit buckets per agent and rule: (millionths of a call left, ms updated).
const BUCKETS: TableDefinition<&str, (u64, u64)> = TableDefinition::new("buckets");

/// The most admissions committed in one transaction.
const MAX_BATCH: usize = 4096;

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

/// Session counters in a redb database file.
pub struct DurableSessions {
    db: Arc<Database>,
    queue: Mutex<Option<mpsc::Sender<Queued>>>,
    committer: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl std::fmt::Debug for DurableSessions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DurableSessions").finish_non_exhaustive()
    }
}

/// The key of one counter: length-prefixed parts, so that no session, agent
/// or tool name can be crafted to collide with another's counter.
fn counter_key(session: &str, agent: &str, counter: Counter<'_>) -> String {
    let (kind, name) = match counter {
        Counter::Total => ("t", ""),
        Counter::Tool(tool) => ("o", tool),
        Counter::Cap(cap) => ("c", cap),
        Counter::ConsecutiveErrors => ("e", ""),
        Counter::CostMicros => ("$", ""),
    };
    format!("{}:{session}|{}:{agent}|{kind}|{}:{name}", session.len(), agent.len(), name.len())
}

impl DurableSessions {
    /// Opens (or creates) the database at `path` and starts the committer,
    /// on the system clock.
    pub fn open(path: &Path) -> Result<DurableSessions, redb::Error> {
        DurableSessions::open_with_clock(path, Arc::new(SystemClock))
    }

    /// As [`DurableSessions::open`], with rate-limit buckets refilling by `clock`.
    pub fn open_with_clock(path: &Path, clock: Arc<dyn Clock>) -> Result<DurableSessions, redb::Error> {
        let db = Arc::new(Database::create(path)?);
        {
            // Create the table up front, so readers never meet a missing one.
            let txn = db.begin_write()?;
            txn.open_table(COUNTERS)?;
            txn.open_table(BUCKETS)?;
            txn.commit()?;
        }
        let (queue, receiver) = mpsc::channel::<Queued>();
        let committer_db = Arc::clone(&db);
        let committer = std::thread::Builder::new()
            .name("toolgate-state".into())
            .spawn(move || commit_loop(&committer_db, &receiver, clock.as_ref()))
            .map_err(redb::Error::Io)?;
        Ok(DurableSessions { db, queue: Mutex::new(Some(queue)), committer: Mutex::new(Some(committer)) })
    }
}

impl Drop for DurableSessions {
    /// Answers everything queued, then closes the database.
    fn drop(&mut self) {
        self.queue.lock().unwrap_or_else(PoisonError::into_inner).take();
        if let Some(committer) = self.committer.lock().unwrap_or_else(PoisonError::into_inner).take() {
            let _ = committer.join();
        }
    }
}

fn commit_loop(db: &Database, receiver: &mpsc::Receiver<Queued>, clock: &dyn Clock) {
    while let Ok(first) = receiver.recv() {
        let mut batch = vec![first];
        batch.extend(receiver.try_iter().take(MAX_BATCH - 1));
        match commit_batch(db, &batch, clock) {
            Ok(answers) => {
                for (queued, answer) in batch.iter().zip(answers) {
                    answer.send(&queued.job);
                }
            }
            Err(error) => {
                tracing::error!(%error, "session state commit failed; denying the batch");
                for queued in &batch {
                    Answer::Failed.send(&queued.job);
                }
            }
        }
    }
}

/// What the committer answers, sent only after the commit.
enum Answer {
    Admission(Admission),
    Totals(OutcomeTotals),
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
            (Job::Admit { reply, .. }, _) => {
                let _ = reply.send(Admission::Unavailable);
            }
            (Job::Outcome { reply, .. }, _) => {
                let _ = reply.send(None);
            }
        }
    }
}

/// One session's counters inside the committer's write transaction.
struct RedbTally<'t, 'txn> {
    counters: &'t mut redb::Table<'txn, &'static str, u64>,
    buckets: &'t mut redb::Table<'txn, &'static str, (u64, u64)>,
    session: &'t str,
    agent: &'t str,
}

impl RedbTally<'_, '_> {
    fn bucket_key(&self, counter: &str) -> String {
        format!("{}:{}|{counter}", self.agent.len(), self.agent)
    }
}

impl Tally for RedbTally<'_, '_> {
    type Error = redb::Error;

    fn get(&mut self, counter: Counter<'_>) -> Result<u64, redb::Error> {
        let key = counter_key(self.session, self.agent, counter);
        Ok(self.counters.get(key.as_str())?.map_or(0, |v| v.value()))
    }

    fn set(&mut self, counter: Counter<'_>, value: u64) -> Result<(), redb::Error> {
        let key = counter_key(self.session, self.agent, counter);
        self.counters.insert(key.as_str(), value)?;
        Ok(())
    }

    fn bucket(&mut self, counter: &str) -> Result<Option<Bucket>, redb::Error> {
        let key = self.bucket_key(counter);
        Ok(self.buckets.get(key.as_str())?.map(|v| {
            let (tokens, updated_ms) = v.value();
            Bucket { tokens, updated_ms }
        }))
    }

    fn set_bucket(&mut self, counter: &str, bucket: Bucket) -> Result<(), redb::Error> {
        let key = self.bucket_key(counter);
        self.buckets.insert(key.as_str(), (bucket.tokens, bucket.updated_ms))?;
        Ok(())
    }
}

fn commit_batch(db: &Database, batch: &[Queued], clock: &dyn Clock) -> Result<Vec<Answer>, redb::Error> {
    let txn = db.begin_write()?;
    let mut answers = Vec::with_capacity(batch.len());
    {
        let mut counters = txn.open_table(COUNTERS)?;
        let mut buckets = txn.open_table(BUCKETS)?;
        for queued in batch {
            let mut tally = RedbTally {
                counters: &mut counters,
                buckets: &mut buckets,
                session: &queued.session,
                agent: &queued.agent,
            };
            answers.push(match &queued.job {
                Job::Admit { tool: Some(tool), caps, .. } => {
                    Answer::Admission(admit(&mut tally, tool, caps, clock)?)
                }
                Job::Admit { tool: None, caps, .. } => Answer::Admission(check(&mut tally, caps, clock)?),
                Job::Outcome { outcome, .. } => Answer::Totals(apply_outcome(&mut tally, *outcome)?),
            });
        }
    }
    txn.commit()?;
    Ok(answers)
}

impl DurableSessions {
    /// Has the committer check (and, with a tool, count) a call; waits for
    /// the commit.
    fn admission(&self, key: SessionKey<'_>, tool: Option<&str>, caps: &[Cap]) -> Admission {
        let (reply, answer) = mpsc::sync_channel(1);
        let job = Job::Admit { tool: tool.map(str::to_owned), caps: caps.to_vec(), reply };
        if !self.submit(Queued { session: key.session.to_owned(), agent: key.agent.to_owned(), job }) {
            return Admission::Unavailable;
        }
        answer.recv().unwrap_or(Admission::Unavailable)
    }

    fn submit(&self, queued: Queued) -> bool {
        let queue = self.queue.lock().unwrap_or_else(PoisonError::into_inner);
        matches!(queue.as_ref().map(|q| q.send(queued)), Some(Ok(())))
    }
}

impl SessionStore for DurableSessions {
    fn count(&self, key: SessionKey<'_>, counter: Counter<'_>) -> Option<u64> {
        let read = || -> Result<u64, redb::Error> {
            let txn = self.db.begin_read()?;
            let table = txn.open_table(COUNTERS)?;
            let count =
                table.get(counter_key(key.session, key.agent, counter).as_str())?.map_or(0, |v| v.value());
            Ok(count)
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
        let (reply, answer) = mpsc::sync_channel(1);
        let job = Job::Outcome { outcome, reply };
        if !self.submit(Queued { session: key.session.to_owned(), agent: key.agent.to_owned(), job }) {
            return None;
        }
        answer.recv().ok().flatten()
    }

    fn may_block(&self) -> bool {
        true
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
