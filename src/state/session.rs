//! Session counters behind a trait, so that a durable or shared store can
//! replace the in-memory one.
//!
//! A cap is checked and counted in one atomic step ([`SessionStore::admit`]);
//! conditions read counters through [`SessionStore::count`] without locking
//! the session across the whole decision.

use std::collections::HashMap;

use crate::hash::FastMap;
use std::sync::{Mutex, PoisonError};

/// Which session: counters are kept per agent within a session id.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SessionKey<'a> {
    /// The agent.
    pub agent: &'a str,
    /// The session id the gateway sent.
    pub session: &'a str,
}

/// One counter of a session.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Counter<'a> {
    /// Allowed calls, all tools.
    Total,
    /// Allowed calls of one tool.
    Tool(&'a str),
    /// Calls counted against a cap, named by the cap's rule id.
    Cap(&'a str),
    /// Reported errors since the last reported success.
    ConsecutiveErrors,
    /// Reported cost, in millionths of the policy's cost unit.
    CostMicros,
}

/// A call's result, as the gateway reports it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CallOutcome {
    /// Whether the tool call failed.
    pub error: bool,
    /// What the call cost, in millionths of the policy's cost unit.
    pub cost_micros: u64,
}

/// A session's totals after an outcome was recorded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OutcomeTotals {
    /// Errors since the last success.
    pub consecutive_errors: u64,
    /// Total reported cost, in millionths.
    pub cost_micros: u64,
}

/// A cap to check: the counter and its limit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cap {
    /// The counter's name (the id of the rule that sets the cap, so that
    /// counts survive a policy reload).
    pub counter: Box<str>,
    /// The most calls allowed.
    pub limit: u64,
    /// For a rate limit: the window in milliseconds. The cap then counts
    /// per agent, across sessions, as a token bucket holding `limit` calls
    /// and refilling `limit` per window; without a window it counts calls
    /// per session.
    pub window_ms: Option<u64>,
}

impl Cap {
    /// A per-session count cap.
    pub fn count(counter: impl Into<Box<str>>, limit: u64) -> Cap {
        Cap { counter: counter.into(), limit, window_ms: None }
    }
}

/// A token bucket, in millionths of a call.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Bucket {
    /// Millionths of a call left.
    pub tokens: u64,
    /// When `tokens` was last brought up to date (ms since the Unix epoch).
    pub updated_ms: u64,
}

impl Bucket {
    /// The bucket of a cap, refilled up to `now_ms`; a new bucket is full.
    pub fn refilled(stored: Option<Bucket>, cap: &Cap, now_ms: u64) -> Bucket {
        let capacity = cap.limit.saturating_mul(1_000_000);
        let Some(bucket) = stored else { return Bucket { tokens: capacity, updated_ms: now_ms } };
        let window = cap.window_ms.unwrap_or(1).max(1);
        let elapsed = now_ms.saturating_sub(bucket.updated_ms);
        let refill = u64::try_from(u128::from(elapsed) * u128::from(capacity) / u128::from(window))
            .unwrap_or(u64::MAX);
        Bucket {
            tokens: bucket.tokens.saturating_add(refill).min(capacity),
            updated_ms: now_ms.max(bucket.updated_ms),
        }
    }

    /// Whether one call fits.
    pub fn has_room(&self) -> bool {
        self.tokens >= 1_000_000
    }

    /// Takes one call.
    pub fn take(self) -> Bucket {
        Bucket { tokens: self.tokens.saturating_sub(1_000_000), ..self }
    }
}

/// Milliseconds since the Unix epoch (0 if the clock is before it).
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// The outcome of [`SessionStore::admit`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admission {
    /// Every cap had room; the call was counted.
    Admitted,
    /// The cap at this index is reached; nothing was counted.
    Refused(usize),
    /// The store could not check or count (a storage error); the call must
    /// be denied.
    Unavailable,
}

/// Where session counters live.
pub trait SessionStore: Send + Sync {
    /// The current value of a counter (0 if never counted), or `None` if
    /// the store cannot be read.
    fn count(&self, key: SessionKey<'_>, counter: Counter<'_>) -> Option<u64>;

    /// Checks every cap and, only if all have room, counts the call: the
    /// total, the tool, and each cap's counter, in one atomic step.
    fn admit(&self, key: SessionKey<'_>, tool: &str, caps: &[Cap]) -> Admission;

    /// Records a call's outcome atomically: an error extends the session's
    /// error streak, a success ends it; the cost is added. `None` if the
    /// store could not write.
    fn record_outcome(&self, key: SessionKey<'_>, outcome: CallOutcome) -> Option<OutcomeTotals>;

    /// Checks every cap without counting anything.
    fn check(&self, key: SessionKey<'_>, caps: &[Cap]) -> Admission {
        for (index, cap) in caps.iter().enumerate() {
            match self.count(key, Counter::Cap(&cap.counter)) {
                None => return Admission::Unavailable,
                Some(count) if count >= cap.limit => return Admission::Refused(index),
                Some(_) => {}
            }
        }
        Admission::Admitted
    }
}

/// Counters in memory, sharded by session id. State is lost when the
/// process exits.
pub struct MemorySessions {
    shards: Box<[Mutex<Shard>]>,
    hasher: ahash::RandomState,
    /// Rate-limit buckets per (agent, counter); locked after a shard, never before.
    buckets: Mutex<Buckets>,
}

type Shard = FastMap<Box<str>, FastMap<Box<str>, Counters>>;

/// Rate-limit buckets, keyed by (agent, the rate limit's rule id).
type Buckets = HashMap<(Box<str>, Box<str>), Bucket>;

#[derive(Default)]
struct Counters {
    consecutive_errors: u64,
    cost_micros: u64,
    total: u64,
    tools: FastMap<Box<str>, u64>,
    caps: FastMap<Box<str>, u64>,
}

impl Counters {
    fn get(&self, counter: Counter<'_>) -> u64 {
        match counter {
            Counter::Total => self.total,
            Counter::Tool(tool) => self.tools.get(tool).copied().unwrap_or(0),
            Counter::Cap(cap) => self.caps.get(cap).copied().unwrap_or(0),
            Counter::ConsecutiveErrors => self.consecutive_errors,
            Counter::CostMicros => self.cost_micros,
        }
    }
}

fn bump(map: &mut FastMap<Box<str>, u64>, key: &str) {
    match map.get_mut(key) {
        Some(n) => *n = n.saturating_add(1),
        None => {
            map.insert(key.into(), 1);
        }
    }
}

const SHARDS: usize = 32;

impl Default for MemorySessions {
    fn default() -> Self {
        MemorySessions {
            shards: (0..SHARDS).map(|_| Mutex::new(Shard::default())).collect(),
            hasher: ahash::RandomState::new(),
            buckets: Mutex::new(HashMap::new()),
        }
    }
}

impl MemorySessions {
    /// An empty store.
    pub fn new() -> Self {
        MemorySessions::default()
    }

    fn shard(&self, session: &str) -> std::sync::MutexGuard<'_, Shard> {
        let index = (self.hasher.hash_one(session) as usize) % self.shards.len();
        // A panic while holding a shard cannot leave counters half-written
        // (each update is a single add), so a poisoned lock is still usable.
        self.shards[index].lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl SessionStore for MemorySessions {
    fn count(&self, key: SessionKey<'_>, counter: Counter<'_>) -> Option<u64> {
        let shard = self.shard(key.session);
        Some(shard.get(key.session).and_then(|agents| agents.get(key.agent)).map_or(0, |c| c.get(counter)))
    }

    fn record_outcome(&self, key: SessionKey<'_>, outcome: CallOutcome) -> Option<OutcomeTotals> {
        let mut shard = self.shard(key.session);
        let counters = shard.entry(key.session.into()).or_default().entry(key.agent.into()).or_default();
        counters.consecutive_errors =
            if outcome.error { counters.consecutive_errors.saturating_add(1) } else { 0 };
        counters.cost_micros = counters.cost_micros.saturating_add(outcome.cost_micros);
        Some(OutcomeTotals {
            consecutive_errors: counters.consecutive_errors,
            cost_micros: counters.cost_micros,
        })
    }

    fn admit(&self, key: SessionKey<'_>, tool: &str, caps: &[Cap]) -> Admission {
        let mut shard = self.shard(key.session);
        let agents = match shard.get_mut(key.session) {
            Some(agents) => agents,
            None => shard.entry(key.session.into()).or_default(),
        };
        let counters = match agents.get_mut(key.agent) {
            Some(counters) => counters,
            None => agents.entry(key.agent.into()).or_default(),
        };
        // The bucket lock is global: take it (and read the clock) only for a
        // call under a rate limit, not on every admission.
        let rated = caps.iter().any(|cap| cap.window_ms.is_some());
        let mut buckets = rated.then(|| self.buckets.lock().unwrap_or_else(PoisonError::into_inner));
        let now = if rated { now_ms() } else { 0 };
        let mut taken = Vec::new();
        for (index, cap) in caps.iter().enumerate() {
            let room = match cap.window_ms {
                None => counters.get(Counter::Cap(&cap.counter)) < cap.limit,
                Some(_) => {
                    let Some(buckets) = buckets.as_ref() else { return Admission::Unavailable };
                    let stored = buckets.get(&(Box::from(key.agent), cap.counter.clone())).copied();
                    let bucket = Bucket::refilled(stored, cap, now);
                    taken.push((cap.counter.clone(), bucket));
                    bucket.has_room()
                }
            };
            if !room {
                return Admission::Refused(index);
            }
        }
        counters.total = counters.total.saturating_add(1);
        bump(&mut counters.tools, tool);
        for cap in caps.iter().filter(|c| c.window_ms.is_none()) {
            bump(&mut counters.caps, &cap.counter);
        }
        if let Some(buckets) = buckets.as_mut() {
            for (counter, bucket) in taken {
                buckets.insert((key.agent.into(), counter), bucket.take());
            }
        }
        Admission::Admitted
    }
}

/// How many of `8 × per_thread` concurrent admissions under one cap of
/// `limit` a store admits (the property every store must hold: exactly
/// `min(limit, attempts)`).
#[cfg(test)]
pub(crate) fn admitted_concurrently(
    store: std::sync::Arc<dyn SessionStore>,
    per_thread: usize,
    limit: u64,
) -> usize {
    let threads: Vec<_> = (0..8)
        .map(|_| {
            let store = std::sync::Arc::clone(&store);
            std::thread::spawn(move || {
                let key = SessionKey { agent: "a", session: "s" };
                let caps = [Cap::count("a.t.max", limit)];
                (0..per_thread).filter(|_| store.admit(key, "t", &caps) == Admission::Admitted).count()
            })
        })
        .collect();
    threads.into_iter().map(|t| t.join().unwrap_or(0)).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admit_counts_only_when_every_cap_has_room() {
        let store = MemorySessions::new();
        let key = SessionKey { agent: "a", session: "s" };
        let caps = [Cap::count("a.tool.max", 2), Cap::count("a.session.max", 10)];
        assert_eq!(store.admit(key, "t", &caps), Admission::Admitted);
        assert_eq!(store.admit(key, "t", &caps), Admission::Admitted);
        assert_eq!(store.admit(key, "t", &caps), Admission::Refused(0));
        assert_eq!(store.count(key, Counter::Total), Some(2));
        assert_eq!(store.count(key, Counter::Tool("t")), Some(2));
        assert_eq!(store.count(key, Counter::Cap("a.session.max")), Some(2));
        let other = SessionKey { agent: "a", session: "other" };
        assert_eq!(store.count(other, Counter::Total), Some(0));
    }

    #[test]
    fn concurrent_admits_never_exceed_the_cap() {
        assert_eq!(admitted_concurrently(std::sync::Arc::new(MemorySessions::new()), 1000, 500), 500);
    }
}
