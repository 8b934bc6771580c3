//! The audit sink: connections hand batches of records to one
//! writer thread and wait for them to be written before answering.
//!
//! Group commit: every batch queued while the writer was busy is written and
//! made durable together, with one `fsync` when `--audit-sync always`.

use std::sync::mpsc;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::oneshot;

use super::AuditWriter;
use crate::state::clock::Clock;
use crate::state::condition::{Condition, Health};

/// The most batches waiting for the writer: a connection finding the queue
/// full is answered at once (its requests denied) instead of queueing
/// without bound behind a stuck disk.
pub const QUEUE_CAPACITY: usize = 4096;

/// When records reach the disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sync {
    /// `fsync` before answering: an answered decision survives power loss.
    Always,
    /// Written to the operating system before answering (survives a crash
    /// of toolgate, not of the machine); `fsync` on rotation and shutdown.
    Os,
}

struct Submission {
    /// Records as JSON objects, serialised by the submitter.
    records: Vec<Vec<u8>>,
    done: oneshot::Sender<Result<(), String>>,
}

/// The writer thread: group commit of every batch queued.
struct WriterThread {
    writer: AuditWriter,
    sync: Sync,
    head: Arc<Mutex<(u64, String)>>,
    health: Arc<Health>,
    clock: Arc<dyn Clock>,
}

impl WriterThread {
    fn run(mut self, receiver: &mpsc::Receiver<Submission>) {
        while let Ok(first) = receiver.recv() {
            let mut batches = vec![first];
            batches.extend(receiver.try_iter());
            let started = self.clock.now_ms();
            self.health.begin(started);
            let mut seqs = Vec::with_capacity(batches.len());
            let written = self.write(&mut batches, &mut seqs);
            self.health.end();
            match &written {
                Ok(()) => self.health.heal(),
                Err(error) => {
                    self.writer.discard();
                    self.health.fail(error, started);
                    tracing::error!(%error, "audit trail write failed; the affected requests are denied");
                }
            }
            self.publish_head();
            let mut unanswered = Vec::new();
            for (batch, seqs) in batches.into_iter().zip(seqs) {
                if batch.done.send(written.clone()).is_err() && written.is_ok() {
                    unanswered.push(seqs);
                }
            }
            self.record_unanswered(&unanswered);
        }
        if let Err(error) = self.writer.sync() {
            tracing::error!(%error, "audit trail sync failed at shutdown");
        }
    }

    /// Appends every batch's records and makes them durable per [`Sync`];
    /// `seqs` gets each batch's first and last sequence number.
    fn write(&mut self, batches: &mut [Submission], seqs: &mut Vec<(u64, u64)>) -> Result<(), String> {
        for batch in batches.iter_mut() {
            let first = self.writer.head().0 + 1;
            for record in batch.records.drain(..) {
                self.writer.append_encoded(&record).map_err(|e| e.to_string())?;
            }
            seqs.push((first, self.writer.head().0));
        }
        self.make_durable().map_err(|e| e.to_string())
    }

    /// Hands what was appended to the disk per [`Sync`].
    fn make_durable(&mut self) -> std::io::Result<()> {
        if self.sync == Sync::Always { self.writer.sync() } else { self.writer.flush() }
    }

    /// Records that these records were written after their requests were
    /// answered with an error (the deadline passed while the disk was slow):
    /// the trail must not let them pass for answers that left.
    fn record_unanswered(&mut self, ranges: &[(u64, u64)]) {
        let ranges: Vec<_> = ranges.iter().filter(|(first, last)| first <= last).collect();
        if ranges.is_empty() {
            return;
        }
        let time = self.clock.rfc3339_micros();
        let fields = serde_json::json!({
            "records": ranges.iter().map(|(first, last)| [first, last]).collect::<Vec<_>>(),
            "why": "written after the deadline: their requests were answered decision_timeout",
        });
        let record = super::record::event(&time, "unanswered", fields);
        let written = self.writer.append(record).and_then(|()| self.make_durable());
        if let Err(error) = written {
            self.writer.discard();
            tracing::error!(%error, "cannot record unanswered requests in the audit trail");
        }
        self.publish_head();
    }

    fn publish_head(&self) {
        let (seq, hash) = self.writer.head();
        *self.head.lock().unwrap_or_else(PoisonError::into_inner) = (seq, hash.to_owned());
    }
}

/// Resolves once submitted records are written (or failed to be).
pub type Written = oneshot::Receiver<Result<(), String>>;

/// A handle to the writer thread.
pub struct AuditSink {
    sender: Mutex<Option<mpsc::SyncSender<Submission>>>,
    head: Arc<Mutex<(u64, String)>>,
    health: Arc<Health>,
    clock: Arc<dyn Clock>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl AuditSink {
    /// Starts the writer thread for an opened trail.
    pub fn start(writer: AuditWriter, sync: Sync, clock: Arc<dyn Clock>) -> AuditSink {
        let (sender, receiver) = mpsc::sync_channel::<Submission>(QUEUE_CAPACITY);
        let (seq, hash) = writer.head();
        let head = Arc::new(Mutex::new((seq, hash.to_owned())));
        let health = Arc::new(Health::default());
        let thread = WriterThread {
            writer,
            sync,
            head: Arc::clone(&head),
            health: Arc::clone(&health),
            clock: Arc::clone(&clock),
        };
        let thread = std::thread::spawn(move || thread.run(&receiver));
        AuditSink { sender: Mutex::new(Some(sender)), head, health, clock, thread: Mutex::new(Some(thread)) }
    }

    /// How the trail stands: degraded after a failed write until one
    /// succeeds, or while a write has been under way for `stuck_after`.
    pub fn condition(&self, stuck_after: Duration) -> Condition {
        self.health.get(self.clock.now_ms(), stuck_after, "a write")
    }

    /// Hands records, serialised by the caller ([`super::record::encode`]),
    /// to the writer, which only frames, seals and writes them; the
    /// receiver resolves once they are written and synced per [`Sync`]
    /// (`None`: nothing to write). An error means they may not be in the
    /// trail. A connection can go on deciding while its previous records
    /// are being synced.
    pub fn submit(&self, records: Vec<super::record::Encoded>) -> Result<Option<Written>, String> {
        if records.is_empty() {
            return Ok(None);
        }
        let (done, wait) = oneshot::channel();
        let sent = {
            let sender = self.sender.lock().unwrap_or_else(PoisonError::into_inner);
            sender.as_ref().map(|s| s.try_send(Submission { records, done }))
        };
        match sent {
            Some(Ok(())) => Ok(Some(wait)),
            Some(Err(mpsc::TrySendError::Full(_))) => {
                Err(format!("{QUEUE_CAPACITY} batches are waiting for the audit writer"))
            }
            _ => Err(String::from("the audit trail is closed")),
        }
    }

    /// The seq and hash of the last record written.
    pub fn head(&self) -> (u64, String) {
        self.head.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// Stops the writer after everything queued is written and synced.
    pub fn close(&self) {
        self.sender.lock().unwrap_or_else(PoisonError::into_inner).take();
        if let Some(thread) = self.thread.lock().unwrap_or_else(PoisonError::into_inner).take() {
            let _ = thread.join();
        }
    }
}
