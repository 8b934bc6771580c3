//! Counters and a latency histogram, updated with relaxed atomics on the
//! decision path and read by the `status` operation and the console's
//! Prometheus endpoint.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use arc_swap::ArcSwap;
use serde_json::{Value, json};

use crate::engine::Outcome;
use crate::hash::FastMap;

/// Histogram buckets: bucket `i` counts latencies below `2^i` nanoseconds
/// (and at least `2^(i-1)`); the last bucket takes everything longer.
pub const BUCKETS: usize = 40;

/// The most agents counted under their own name: agents come from the
/// policy, but a policy may be replaced many times; past this many, the
/// others share one series (`OTHER_AGENTS`).
const MAX_AGENT_SERIES: usize = 10_000;

/// The series of the agents past the 10,000 that get one each.
pub const OTHER_AGENTS: &str = "(other)";

/// The series of the agents no policy knows: a client chooses their names,
/// so they never get a series of their own.
pub const UNKNOWN_AGENTS: &str = "(unknown)";

/// Decisions by outcome.
#[derive(Debug, Default)]
pub struct Outcomes {
    allow: AtomicU64,
    deny: AtomicU64,
    require_approval: AtomicU64,
}

impl Outcomes {
    fn count(&self, outcome: Outcome) {
        let counter = match outcome {
            Outcome::Allow => &self.allow,
            Outcome::Deny => &self.deny,
            Outcome::RequireApproval => &self.require_approval,
        };
        counter.fetch_add(1, Relaxed);
    }

    /// The counts, in the order of [`Outcome`]'s names: allow, deny, require_approval.
    pub fn counts(&self) -> [(Outcome, u64); 3] {
        [
            (Outcome::Allow, self.allow.load(Relaxed)),
            (Outcome::Deny, self.deny.load(Relaxed)),
            (Outcome::RequireApproval, self.require_approval.load(Relaxed)),
        ]
    }
}

/// What became of the approvals a service opened.
#[derive(Debug, Default)]
pub struct ApprovalCounts {
    /// Opened for a gated call.
    pub opened: AtomicU64,
    /// Granted by an approver (or the agent's user).
    pub granted: AtomicU64,
    /// Rejected.
    pub rejected: AtomicU64,
}

/// Approval notifications (webhooks) by what became of them.
#[derive(Debug, Default)]
pub struct Deliveries {
    /// Delivered (a 2xx answer).
    pub sent: AtomicU64,
    /// Given up after every try, or refused by the receiver.
    pub failed: AtomicU64,
    /// Dropped because a queue was full or the notifier fell behind.
    pub dropped: AtomicU64,
}

/// Server-wide counters.
#[derive(Debug)]
pub struct Metrics {
    outcomes: Outcomes,
    by_agent: ArcSwap<FastMap<Box<str>, Arc<Outcomes>>>,
    /// Serialises the (rare) addition of an agent's series.
    adding: Mutex<()>,
    unknown_agents: Arc<Outcomes>,
    other_agents: Arc<Outcomes>,
    errors: AtomicU64,
    connections_accepted: AtomicU64,
    connections_open: AtomicU64,
    connections_refused: AtomicU64,
    latency: [AtomicU64; BUCKETS],
    latency_sum_ns: AtomicU64,
    /// Approvals opened, granted, rejected.
    pub approvals: ApprovalCounts,
    /// Kills put in force (by an operator, or by a limit a session tripped).
    pub kills: AtomicU64,
    /// Sign-ins refused by the console.
    pub signins_refused: AtomicU64,
    /// Approval notifications.
    pub notifications: Deliveries,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            outcomes: Outcomes::default(),
            by_agent: ArcSwap::from_pointee(FastMap::default()),
            adding: Mutex::new(()),
            unknown_agents: Arc::default(),
            other_agents: Arc::default(),
            errors: AtomicU64::new(0),
            connections_accepted: AtomicU64::new(0),
            connections_open: AtomicU64::new(0),
            connections_refused: AtomicU64::new(0),
            latency: std::array::from_fn(|_| AtomicU64::new(0)),
            latency_sum_ns: AtomicU64::new(0),
            approvals: ApprovalCounts::default(),
            kills: AtomicU64::new(0),
            signins_refused: AtomicU64::new(0),
            notifications: Deliveries::default(),
        }
    }
}

/// The latency histogram as read at one moment.
#[derive(Clone, Debug)]
pub struct Latency {
    /// Per bucket `i`: how many decisions took less than `2^i` ns (and at
    /// least `2^(i-1)`); not cumulative.
    pub counts: [u64; BUCKETS],
    /// The sum of all latencies, in nanoseconds.
    pub sum_ns: u64,
}

impl Metrics {
    /// Counts one decision for `agent` (a name the policy knows, if
    /// `known`) and its latency.
    pub fn decision(&self, agent: &str, known: bool, outcome: Outcome, elapsed: Duration) {
        self.outcomes.count(outcome);
        if known {
            match self.by_agent.load().get(agent) {
                Some(series) => series.count(outcome),
                None => self.add_agent(agent).count(outcome),
            }
        } else {
            self.unknown_agents.count(outcome);
        }
        let nanos = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        self.latency_sum_ns.fetch_add(nanos, Relaxed);
        let bucket = (u64::BITS - nanos.leading_zeros()) as usize;
        if let Some(slot) = self.latency.get(bucket.min(BUCKETS - 1)) {
            slot.fetch_add(1, Relaxed);
        }
    }

    /// The series of an agent seen for the first time (or the shared one,
    /// past [`MAX_AGENT_SERIES`]).
    fn add_agent(&self, agent: &str) -> Arc<Outcomes> {
        let _adding = self.adding.lock().unwrap_or_else(PoisonError::into_inner);
        let current = self.by_agent.load();
        if let Some(series) = current.get(agent) {
            return Arc::clone(series);
        }
        if current.len() >= MAX_AGENT_SERIES {
            return Arc::clone(&self.other_agents);
        }
        let series = Arc::new(Outcomes::default());
        let mut next = FastMap::clone(&current);
        next.insert(agent.into(), Arc::clone(&series));
        self.by_agent.store(Arc::new(next));
        series
    }

    /// Decisions per agent, by name (with the shared series of unknown and
    /// other agents, when they counted anything), sorted by name.
    pub fn by_agent(&self) -> Vec<(String, [(Outcome, u64); 3])> {
        let mut agents: Vec<_> =
            self.by_agent.load().iter().map(|(name, series)| (name.to_string(), series.counts())).collect();
        for (name, series) in [(UNKNOWN_AGENTS, &self.unknown_agents), (OTHER_AGENTS, &self.other_agents)] {
            let counts = series.counts();
            if counts.iter().any(|(_, n)| *n > 0) {
                agents.push((name.to_owned(), counts));
            }
        }
        agents.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        agents
    }

    /// The latency histogram now.
    pub fn latency(&self) -> Latency {
        Latency {
            counts: std::array::from_fn(|i| self.latency[i].load(Relaxed)),
            sum_ns: self.latency_sum_ns.load(Relaxed),
        }
    }

    /// Request lines answered with an error.
    pub fn errors(&self) -> u64 {
        self.errors.load(Relaxed)
    }

    /// Connections: open now, accepted and refused since start.
    pub fn connections(&self) -> (u64, u64, u64) {
        (
            self.connections_open.load(Relaxed),
            self.connections_accepted.load(Relaxed),
            self.connections_refused.load(Relaxed),
        )
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
    fn quantile_micros(counts: &[u64], q: f64) -> Option<f64> {
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
        let counts = self.latency().counts;
        let [allow, deny, require_approval] = self.outcomes.counts().map(|(_, n)| n);
        let (open, accepted, refused) = self.connections();
        json!({
            "decisions": {
                "allow": allow,
                "deny": deny,
                "require_approval": require_approval,
            },
            "errors": self.errors(),
            "connections": {
                "open": open,
                "accepted": accepted,
                "refused": refused,
            },
            "latency_us": {
                "p50": Self::quantile_micros(&counts, 0.50),
                "p90": Self::quantile_micros(&counts, 0.90),
                "p99": Self::quantile_micros(&counts, 0.99),
                "p999": Self::quantile_micros(&counts, 0.999),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agents_get_a_series_each_and_unknown_names_share_one() {
        let metrics = Metrics::default();
        let ms = Duration::from_millis(1);
        metrics.decision("bot", true, Outcome::Allow, ms);
        metrics.decision("bot", true, Outcome::Deny, ms);
        metrics.decision("other", true, Outcome::Allow, ms);
        for name in ["x1", "x2", "x3"] {
            metrics.decision(name, false, Outcome::Deny, ms);
        }
        let agents = metrics.by_agent();
        let names: Vec<&str> = agents.iter().map(|(name, _)| name.as_str()).collect();
        assert_eq!(names, ["(unknown)", "bot", "other"]);
        assert_eq!(agents[0].1[1].1, 3, "three unknown agents' denials in one series");
        assert_eq!(agents[1].1.map(|(_, n)| n), [1, 1, 0]);
        let latency = metrics.latency();
        assert_eq!(latency.counts.iter().sum::<u64>(), 6);
        assert_eq!(latency.sum_ns, 6_000_000);
    }
}
