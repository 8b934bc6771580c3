//! The queue in front of a store's committer thread: a caller hands over
//! a job with a reply channel and waits for the answer at most a
//! deadline; the committer answers once the job's batch is done (a redb
//! commit, a Redis pipeline). Dropping the handoff lets the committer
//! answer everything queued, then waits for it to stop.

use std::sync::mpsc;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use super::session::Admission;

/// Why a job got no answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Unanswered {
    /// Not within the deadline (or the queue was full).
    TimedOut,
    /// The committer has stopped.
    Gone,
}

impl Unanswered {
    /// What an admission without an answer is: denied either way.
    pub(super) fn admission(self) -> Admission {
        match self {
            Unanswered::TimedOut => Admission::TimedOut,
            Unanswered::Gone => Admission::Unavailable,
        }
    }
}

/// The queue of a committer thread, and the thread.
pub(super) struct Handoff<Q> {
    queue: Mutex<Option<mpsc::SyncSender<Q>>>,
    committer: Mutex<Option<std::thread::JoinHandle<()>>>,
    within: Duration,
}

impl<Q: Send + 'static> Handoff<Q> {
    /// Starts the thread `name` running `committer` on a queue of
    /// `capacity` jobs; callers wait at most `within`.
    pub(super) fn start(
        name: &str,
        capacity: usize,
        within: Duration,
        committer: impl FnOnce(mpsc::Receiver<Q>) + Send + 'static,
    ) -> std::io::Result<Handoff<Q>> {
        let (queue, receiver) = mpsc::sync_channel::<Q>(capacity);
        let committer =
            std::thread::Builder::new().name(name.to_owned()).spawn(move || committer(receiver))?;
        Ok(Handoff { queue: Mutex::new(Some(queue)), committer: Mutex::new(Some(committer)), within })
    }

    /// Queues the job `make` builds around a reply channel, and waits for
    /// its answer.
    pub(super) fn ask<T>(&self, make: impl FnOnce(mpsc::SyncSender<T>) -> Q) -> Result<T, Unanswered> {
        let (reply, answer) = mpsc::sync_channel(1);
        let sent = {
            let queue = self.queue.lock().unwrap_or_else(PoisonError::into_inner);
            queue.as_ref().map(|q| q.try_send(make(reply)))
        };
        match sent {
            Some(Ok(())) => {}
            Some(Err(mpsc::TrySendError::Full(_))) => return Err(Unanswered::TimedOut),
            _ => return Err(Unanswered::Gone),
        }
        answer.recv_timeout(self.within).map_err(|error| match error {
            mpsc::RecvTimeoutError::Timeout => Unanswered::TimedOut,
            mpsc::RecvTimeoutError::Disconnected => Unanswered::Gone,
        })
    }
}

impl<Q> Drop for Handoff<Q> {
    fn drop(&mut self) {
        self.queue.lock().unwrap_or_else(PoisonError::into_inner).take();
        if let Some(committer) = self.committer.lock().unwrap_or_else(PoisonError::into_inner).take() {
            let _ = committer.join();
        }
    }
}
