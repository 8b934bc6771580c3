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
use std::sync::{Mutex, PoisonError};

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};

use crate::state::session::{
    Admission, Bucket, CallOutcome, Cap, Counter, OutcomeTotals, SessionKey, SessionStore,
};

const COUNTERS: TableDefinition<&str, u64> = TableDefinition::new("counters");
/// Rate-limit buckets per agent and rule: (millionths of a call left, ms updated).
const BUCKETS: TableDefinition<&str, (u64, u64)> = TableDefinition::new("buckets");

/// The most admissions committed in one transaction.
const MAX_BATCH: usize = 4096;

/// One change for the committer: an admission to check and count, or an
/// outcome to record.
enum Change {
    Admit { tool: String, caps: Vec<Cap>, reply: mpsc::SyncSender<Admission> },
    Outcome { outcome: CallOutcome, reply: mpsc::SyncSender<Option<OutcomeTotals>> },
}

struct Request {
    session: String,
    agent: String,
    change: Change,
}

/// Session counters in a redb database file.
pub struct DurableSessions {
    db: std::sync::Arc<Database>,
    queue: Mutex<Option<mpsc::Sender<Request>>>,
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
    /// Opens (or creates) the database at `path` and starts the committer.
    pub fn open(path: &Path) -> Result<DurableSessions, redb::Error> {
        let db = std::sync::Arc::new(Database::create(path)?);
        {
            // Create the table up front, so readers never meet a missing one.
            let txn = db.begin_write()?;
            txn.open_table(COUNTERS)?;
            txn.open_table(BUCKETS)?;
            txn.commit()?;
        }
        let (queue, receiver) = mpsc::channel::<Request>();
        let committer_db = std::sync::Arc::clone(&db);
        let committer = std::thread::Builder::new()
            .name("toolgate-state".into())
            .spawn(move || commit_loop(&committer_db, &receiver))
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

fn commit_loop(db: &Database, receiver: &mpsc::Receiver<Request>) {
    while let Ok(first) = receiver.recv() {
        let mut batch = vec![first];
        batch.extend(receiver.try_iter().take(MAX_BATCH - 1));
        match commit_batch(db, &batch) {
            Ok(answers) => {
                for (request, answer) in batch.iter().zip(answers) {
                    answer.send(&request.change);
                }
            }
            Err(error) => {
                tracing::error!(%error, "session state commit failed; denying the batch");
                for request in &batch {
                    Answer::Failed.send(&request.change);
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
    fn send(self, change: &Change) {
        match (change, self) {
            (Change::Admit { reply, .. }, Answer::Admission(admission)) => {
                let _ = reply.send(admission);
            }
            (Change::Outcome { reply, .. }, Answer::Totals(totals)) => {
                let _ = reply.send(Some(totals));
            }
            (Change::Admit { reply, .. }, _) => {
                let _ = reply.send(Admission::Unavailable);
            }
            (Change::Outcome { reply, .. }, _) => {
                let _ = reply.send(None);
            }
        }
    }
}

fn commit_batch(db: &Database, batch: &[Request]) -> Result<Vec<Answer>, redb::Error> {
    let txn = db.begin_write()?;
    let mut answers = Vec::with_capacity(batch.len());
    {
        let mut table = txn.open_table(COUNTERS)?;
        let mut buckets = txn.open_table(BUCKETS)?;
        let now = crate::state::session::now_ms();
        for request in batch {
            let key = |counter| counter_key(&request.session, &request.agent, counter);
            let read = |table: &redb::Table<&str, u64>, k: &str| -> Result<u64, redb::Error> {
                Ok(table.get(k)?.map_or(0, |v| v.value()))
            };
            match &request.change {
                Change::Admit { tool, caps, .. } => {
                    let mut refused = None;
                    let mut taken = Vec::new();
                    for (index, cap) in caps.iter().enumerate() {
                        let room = match cap.window_ms {
                            None => read(&table, &key(Counter::Cap(&cap.counter)))? < cap.limit,
                            Some(_) => {
                                let bucket_key =
                                    format!("{}:{}|{}", request.agent.len(), request.agent, cap.counter);
                                let stored = buckets.get(bucket_key.as_str())?.map(|v| {
                                    let (tokens, updated_ms) = v.value();
                                    Bucket { tokens, updated_ms }
                                });
                                let bucket = Bucket::refilled(stored, cap, now);
                                taken.push((bucket_key, bucket));
                                bucket.has_room()
                            }
                        };
                        if !room {
                            refused = Some(index);
                            break;
                        }
                    }
                    if let Some(index) = refused {
                        answers.push(Answer::Admission(Admission::Refused(index)));
                        continue;
                    }
                    for (bucket_key, bucket) in taken {
                        let taken = bucket.take();
                        buckets.insert(bucket_key.as_str(), (taken.tokens, taken.updated_ms))?;
                    }
                    let counters = [key(Counter::Total), key(Counter::Tool(tool))].into_iter().chain(
                        caps.iter()
                            .filter(|cap| cap.window_ms.is_none())
                            .map(|cap| key(Counter::Cap(&cap.counter))),
                    );
                    for counter in counters {
                        let count = read(&table, &counter)?;
                        table.insert(counter.as_str(), count.saturating_add(1))?;
                    }
                    answers.push(Answer::Admission(Admission::Admitted));
                }
                Change::Outcome { outcome, .. } => {
                    let (errors_key, cost_key) = (key(Counter::ConsecutiveErrors), key(Counter::CostMicros));
                    let errors = if outcome.error { read(&table, &errors_key)?.saturating_add(1) } else { 0 };
                    let cost = read(&table, &cost_key)?.saturating_add(outcome.cost_micros);
                    table.insert(errors_key.as_str(), errors)?;
                    table.insert(cost_key.as_str(), cost)?;
                    answers.push(Answer::Totals(OutcomeTotals {
                        consecutive_errors: errors,
                        cost_micros: cost,
                    }));
                }
            }
        }
    }
    txn.commit()?;
    Ok(answers)
}

impl DurableSessions {
    fn submit(&self, request: Request) -> bool {
        let queue = self.queue.lock().unwrap_or_else(PoisonError::into_inner);
        matches!(queue.as_ref().map(|q| q.send(request)), Some(Ok(())))
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
        let (reply, answer) = mpsc::sync_channel(1);
        let change = Change::Admit { tool: tool.to_owned(), caps: caps.to_vec(), reply };
        if !self.submit(Request { session: key.session.to_owned(), agent: key.agent.to_owned(), change }) {
            return Admission::Unavailable;
        }
        answer.recv().unwrap_or(Admission::Unavailable)
    }

    fn record_outcome(&self, key: SessionKey<'_>, outcome: CallOutcome) -> Option<OutcomeTotals> {
        let (reply, answer) = mpsc::sync_channel(1);
        let change = Change::Outcome { outcome, reply };
        if !self.submit(Request { session: key.session.to_owned(), agent: key.agent.to_owned(), change }) {
            return None;
        }
        answer.recv().ok().flatten()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_survive_reopening_and_caps_hold_under_concurrency() {
        let dir = std::env::temp_dir().join(format!("toolgate-durable-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("state.redb");
        {
            let store = std::sync::Arc::new(DurableSessions::open(&path).expect("open"));
            assert_eq!(crate::state::session::admitted_concurrently(store, 50, 100), 100);
        }
        let store = DurableSessions::open(&path).expect("reopen");
        let key = SessionKey { agent: "a", session: "s" };
        assert_eq!(store.count(key, Counter::Cap("a.t.max")), Some(100));
        assert_eq!(store.count(key, Counter::Total), Some(100));
        assert_eq!(store.admit(key, "t", &[Cap::count("a.t.max", 100)]), Admission::Refused(0));
        // Crafted names cannot reach another session's counters.
        let crafted = SessionKey { agent: "a", session: "s|1:a" };
        assert_eq!(store.count(crafted, Counter::Total), Some(0));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
