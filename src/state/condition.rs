//! Whether a store (or the audit trail) is working: what `health` and
//! `status` report, so that an operator sees a failing disk before the
//! denials pile up.

use std::sync::{Mutex, PoisonError};

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
