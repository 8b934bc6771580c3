//! Session counters behind a trait, so that a durable or shared store can
//! replace the in-memory one.
//!
//! A cap is checked and counted in one atomic step ([`SessionStore::admit`]);
//! conditions read counters through [`SessionStore::count`] without locking
//! the session across the whole decision.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
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
    hasher: RandomState,
}

type Shard = HashMap<Box<str>, HashMap<Box<str>, Counters>>;

#[derive(Default)]
struct Counters {
    consecutive_errors: u64,
    cost_micros: u64,
    total: u64,
    tools: HashMap<Box<str>, u64>,
    caps: HashMap<Box<str>, u64>,
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

fn bump(map: &mut HashMap<Box<str>, u64>, key: &str) {
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
            shards: (0..SHARDS).map(|_| Mutex::new(Shard::new())).collect(),
            hasher: RandomState::new(),
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
        if let Some(index) = caps.iter().position(|cap| counters.get(Counter::Cap(&cap.counter)) >= cap.limit)
        {
            return Admission::Refused(index);
        }
        counters.total = counters.total.saturating_add(1);
        bump(&mut counters.tools, tool);
        for cap in caps {
            bump(&mut counters.caps, &cap.counter);
        }
        Admission::Admitted
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admit_counts_only_when_every_cap_has_room() {
        let store = MemorySessions::new();
        let key = SessionKey { agent: "a", session: "s" };
        let caps = [
            Cap { counter: "a.tool.max".into(), limit: 2 },
            Cap { counter: "a.session.max".into(), limit: 10 },
        ];
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
        let store = std::sync::Arc::new(MemorySessions::new());
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let store = store.clone();
                std::thread::spawn(move || {
                    let key = SessionKey { agent: "a", session: "s" };
                    let caps = [Cap { counter: "c".into(), limit: 500 }];
                    (0..1000).filter(|_| store.admit(key, "t", &caps) == Admission::Admitted).count()
                })
            })
            .collect();
        let admitted: usize = threads.into_iter().map(|t| t.join().expect("thread")).sum();
        assert_eq!(admitted, 500);
    }
}
