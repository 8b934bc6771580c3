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

use crate::session::{Admission, Cap, Counter, SessionKey, SessionStore};

const COUNTERS: TableDefinition<&str, u64> = TableDefinition::new("counters");

/// The most admissions committed in one transaction.
const MAX_BATCH: usize = 4096;

struct Request {
    session: String,
    agent: String,
    tool: String,
    caps: Vec<Cap>,
    reply: mpsc::SyncSender<Admission>,
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
        let answers = commit_batch(db, &batch).unwrap_or_else(|error| {
            tracing::error!(%error, "session state commit failed; denying the batch");
            vec![Admission::Unavailable; batch.len()]
        });
        for (request, answer) in batch.iter().zip(answers) {
            let _ = request.reply.send(answer);
        }
    }
}

fn commit_batch(db: &Database, batch: &[Request]) -> Result<Vec<Admission>, redb::Error> {
    let txn = db.begin_write()?;
    let mut answers = Vec::with_capacity(batch.len());
    {
        let mut table = txn.open_table(COUNTERS)?;
        for request in batch {
            let key = |counter| counter_key(&request.session, &request.agent, counter);
            let mut refused = None;
            for (index, cap) in request.caps.iter().enumerate() {
                let count = table.get(key(Counter::Cap(&cap.counter)).as_str())?.map_or(0, |v| v.value());
                if count >= cap.limit {
                    refused = Some(index);
                    break;
                }
            }
            if let Some(index) = refused {
                answers.push(Admission::Refused(index));
                continue;
            }
            let counters = std::iter::once(key(Counter::Total))
                .chain(std::iter::once(key(Counter::Tool(&request.tool))))
                .chain(request.caps.iter().map(|cap| key(Counter::Cap(&cap.counter))));
            for counter in counters {
                let count = table.get(counter.as_str())?.map_or(0, |v| v.value());
                table.insert(counter.as_str(), count.saturating_add(1))?;
            }
            answers.push(Admission::Admitted);
        }
    }
    txn.commit()?;
    Ok(answers)
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
        let request = Request {
            session: key.session.to_owned(),
            agent: key.agent.to_owned(),
            tool: tool.to_owned(),
            caps: caps.to_vec(),
            reply,
        };
        let sent =
            self.queue.lock().unwrap_or_else(PoisonError::into_inner).as_ref().map(|q| q.send(request));
        if !matches!(sent, Some(Ok(()))) {
            return Admission::Unavailable;
        }
        answer.recv().unwrap_or(Admission::Unavailable)
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
            let threads: Vec<_> = (0..8)
                .map(|_| {
                    let store = store.clone();
                    std::thread::spawn(move || {
                        let key = SessionKey { agent: "a", session: "s" };
                        let caps = [Cap { counter: "a.t.max".into(), limit: 100 }];
                        (0..50).filter(|_| store.admit(key, "t", &caps) == Admission::Admitted).count()
                    })
                })
                .collect();
            let admitted: usize = threads.into_iter().map(|t| t.join().expect("thread")).sum();
            assert_eq!(admitted, 100);
        }
        let store = DurableSessions::open(&path).expect("reopen");
        let key = SessionKey { agent: "a", session: "s" };
        assert_eq!(store.count(key, Counter::Cap("a.t.max")), Some(100));
        assert_eq!(store.count(key, Counter::Total), Some(100));
        assert_eq!(
            store.admit(key, "t", &[Cap { counter: "a.t.max".into(), limit: 100 }]),
            Admission::Refused(0)
        );
        // Crafted names cannot reach another session's counters.
        let crafted = SessionKey { agent: "a", session: "s|1:a" };
        assert_eq!(store.count(crafted, Counter::Total), Some(0));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
