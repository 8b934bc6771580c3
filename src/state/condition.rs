//! Whether a store (or the audit trail) is working: what `health` and
//! `status` report, so that an operator sees a failing disk before the
//! denials pile up.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use serde_json::{Value, json};

/// How a store stands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Condition {
    /// The last write succeeded.
    Ok,
    /// The last write failed (or is stuck): calls that need the store are
    /// denied until it heals.
    Degraded {
        /// The error, as the store reported it.
        error: String,
        /// Since when (ms since the Unix epoch).
        since_ms: u64,
    },
}

impl Condition {
    /// Whether the store works.
    pub fn is_ok(&self) -> bool {
        matches!(self, Condition::Ok)
    }

    /// `{"condition": "ok"}` or `{"condition": "degraded", "error": …, "since_ms": …}`.
    pub fn to_json(&self) -> Value {
        match self {
            Condition::Ok => json!({"condition": "ok"}),
            Condition::Degraded { error, since_ms } => {
                json!({"condition": "degraded", "error": error, "since_ms": since_ms})
            }
        }
    }
}

/// A store's condition, shared between its writer and its readers.
#[derive(Debug, Default)]
pub struct ConditionCell {
    failed: Mutex<Option<(String, u64)>>,
}

impl ConditionCell {
    /// Records a failure at `now_ms` (keeping when the trouble began).
    pub fn fail(&self, error: impl std::fmt::Display, now_ms: u64) {
        let mut failed = self.failed.lock().unwrap_or_else(PoisonError::into_inner);
        let since = failed.as_ref().map_or(now_ms, |(_, since)| *since);
        *failed = Some((error.to_string(), since));
    }

    /// Records a success: the store has healed.
    pub fn heal(&self) {
        let mut failed = self.failed.lock().unwrap_or_else(PoisonError::into_inner);
        if failed.is_some() {
            tracing::info!("the store works again");
            *failed = None;
        }
    }

    /// The condition now.
    pub fn get(&self) -> Condition {
        match &*self.failed.lock().unwrap_or_else(PoisonError::into_inner) {
            None => Condition::Ok,
            Some((error, since_ms)) => Condition::Degraded { error: error.clone(), since_ms: *since_ms },
        }
    }
}

/// A store's condition together with the write under way, if any: a write
/// stuck for longer than the deadline degrades the store as a failure does.
#[derive(Debug, Default)]
pub struct Health {
    failures: ConditionCell,
    /// When the write under way began (ms since the epoch; 0: none).
    busy_since_ms: AtomicU64,
}

impl Health {
    /// A write begins at `now_ms`.
    pub fn begin(&self, now_ms: u64) {
        self.busy_since_ms.store(now_ms.max(1), Ordering::Release);
    }

    /// The write under way has ended.
    pub fn end(&self) {
        self.busy_since_ms.store(0, Ordering::Release);
    }

    /// Records a failure (see [`ConditionCell::fail`]).
    pub fn fail(&self, error: impl std::fmt::Display, now_ms: u64) {
        self.failures.fail(error, now_ms);
    }

    /// Records a success.
    pub fn heal(&self) {
        self.failures.heal();
    }

    /// The condition at `now_ms`: degraded after a failure until a success,
    /// or while `what` (a write, a commit) has been under way for `stuck_after`.
    pub fn get(&self, now_ms: u64, stuck_after: Duration, what: &str) -> Condition {
        let since = self.busy_since_ms.load(Ordering::Acquire);
        let stuck_ms = u64::try_from(stuck_after.as_millis()).unwrap_or(u64::MAX);
        match self.failures.get() {
            Condition::Ok if since != 0 && now_ms.saturating_sub(since) >= stuck_ms => Condition::Degraded {
                error: format!("{what} has not finished for {} ms", now_ms.saturating_sub(since)),
                since_ms: since,
            },
            condition => condition,
        }
    }
}
