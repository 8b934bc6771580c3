//! Counters and a latency histogram, updated with relaxed atomics on the
//! decision path and read by the `status` operation.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use serde_json::{Value, json};

use crate::engine::Outcome;

/// Histogram buckets: bucket `i` counts latencies below `2^i` nanoseconds
/// (and at least `2^(i-1)`); the last bucket takes everything longer.
const BUCKETS: usize = 40;

/// Server-wide counters.
#[derive(Debug)]
pub struct Metrics {
    allow: AtomicU64,
    deny: AtomicU64,
    require_approval: AtomicU64,
    errors: AtomicU64,
    connections_accepted: AtomicU64,
    connections_open: AtomicU64,
    connections_refused: AtomicU64,
    latency: [AtomicU64; BUCKETS],
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            allow: AtomicU64::new(0),
            deny: AtomicU64::new(0),
            require_approval: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            connections_accepted: AtomicU64::new(0),
            connections_open: AtomicU64::new(0),
            connections_refused: AtomicU64::new(0),
            latency: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }
}

impl Metrics {
    /// Counts one decision and its latency.
    pub fn decision(&self, outcome: Outcome, elapsed: Duration) {
        let counter = match outcome {
            Outcome::Allow => &self.allow,
            Outcome::Deny => &self.deny,
            Outcome::RequireApproval => &self.require_approval,
        };
        counter.fetch_add(1, Relaxed);
        let nanos = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        let bucket = (u64::BITS - nanos.leading_zeros()) as usize;
        if let Some(slot) = self.latency.get(bucket.min(BUCKETS - 1)) {
            slot.fetch_add(1, Relaxed);
        }
    }

    /// Counts a request line answered with an error.
    pub fn error(&self) {
        self.errors.fetch_add(1, Relaxed);
    }

    /// Counts an accepted connection.
    pub fn opened(&self) {
        self.connections_accepted.fetch_add(1, Relaxed);
        self.connections_open.fetch_add(1, Relaxed);
    }

    /// Counts a closed connection.
    pub fn closed(&self) {
        self.connections_open.fetch_sub(1, Relaxed);
    }

    /// Counts a connection refused for the connection cap.
    pub fn refused(&self) {
        self.connections_refused.fetch_add(1, Relaxed);
    }

    /// The upper bound, in microseconds, of the bucket holding quantile `q`.
    fn quantile_micros(&self, counts: &[u64], q: f64) -> Option<f64> {
        let total: u64 = counts.iter().sum();
        if total == 0 {
            return None;
        }
        let target = ((total as f64) * q).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (bucket, count) in counts.iter().enumerate() {
            seen += count;
            if seen >= target {
                return Some((1u64 << bucket) as f64 / 1000.0);
            }
        }
        None
    }

    /// The counters as JSON for `status`.
    pub fn to_json(&self) -> Value {
        let counts: Vec<u64> = self.latency.iter().map(|c| c.load(Relaxed)).collect();
        json!({
            "decisions": {
                "allow": self.allow.load(Relaxed),
                "deny": self.deny.load(Relaxed),
                "require_approval": self.require_approval.load(Relaxed),
            },
            "errors": self.errors.load(Relaxed),
            "connections": {
                "open": self.connections_open.load(Relaxed),
                "accepted": self.connections_accepted.load(Relaxed),
                "refused": self.connections_refused.load(Relaxed),
            },
            "latency_us": {
                "p50": self.quantile_micros(&counts, 0.50),
                "p90": self.quantile_micros(&counts, 0.90),
                "p99": self.quantile_micros(&counts, 0.99),
                "p999": self.quantile_micros(&counts, 0.999),
                "buckets_ns_upper_bound": counts
                    .iter()
                    .enumerate()
                    .filter(|(_, c)| **c > 0)
                    .map(|(i, c)| json!([1u64 << i, c]))
                    .collect::<Vec<_>>(),
            },
        })
    }
}
