//! The audit sink: connections hand batches of records to one
//! writer thread and wait for them to be written before answering.
//!
//! Group commit: every batch queued while the writer was busy is written and
//! made durable together, with one `fsync` when `--audit-sync always`.

use std::sync::mpsc;
use std::sync::{Arc, Mutex, PoisonError};

use serde_json::{Map, Value};
use tokio::sync::oneshot;

use super::AuditWriter;

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
    records: Vec<Map<String, Value>>,
    done: oneshot::Sender<Result<(), String>>,
}

/// A handle to the writer thread.
pub struct AuditSink {
    sender: Mutex<Option<mpsc::Sender<Submission>>>,
    head: Arc<Mutex<(u64, String)>>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl AuditSink {
    /// Starts the writer thread for an opened trail.
    pub fn start(mut writer: AuditWriter, sync: Sync) -> AuditSink {
        let (sender, receiver) = mpsc::channel::<Submission>();
        let (seq, hash) = writer.head();
        let head = Arc::new(Mutex::new((seq, hash.to_owned())));
        let shared_head = Arc::clone(&head);
        let thread = std::thread::spawn(move || {
            while let Ok(first) = receiver.recv() {
                let mut batches = vec![first];
                batches.extend(receiver.try_iter());
                let written = batches
                    .iter_mut()
                    .try_for_each(|b| b.records.drain(..).try_for_each(|r| writer.append(r)))
                    .and_then(|()| if sync == Sync::Always { writer.sync() } else { writer.flush() })
                    .map_err(|e| e.to_string());
                if let Err(error) = &written {
                    writer.discard();
                    tracing::error!(%error, "audit trail write failed; the affected requests are denied");
                }
                let (seq, hash) = writer.head();
                *shared_head.lock().unwrap_or_else(PoisonError::into_inner) = (seq, hash.to_owned());
                for batch in batches {
                    let _ = batch.done.send(written.clone());
                }
            }
            if let Err(error) = writer.sync() {
                tracing::error!(%error, "audit trail sync failed at shutdown");
            }
        });
        AuditSink { sender: Mutex::new(Some(sender)), head, thread: Mutex::new(Some(thread)) }
    }

    /// Writes records; resolves once they are written (and synced, per
    /// [`Sync`]). An error means they may not be in the trail.
    pub async fn write(&self, records: Vec<Map<String, Value>>) -> Result<(), String> {
        if records.is_empty() {
            return Ok(());
        }
        let (done, wait) = oneshot::channel();
        let sent = {
            let sender = self.sender.lock().unwrap_or_else(PoisonError::into_inner);
            sender.as_ref().map(|s| s.send(Submission { records, done }))
        };
        match sent {
            Some(Ok(())) => wait.await.unwrap_or_else(|_| Err(String::from("the audit writer stopped"))),
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
