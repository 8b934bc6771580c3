//! Session counters in memory, sharded by session id. State is lost when
//! the process exits.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use super::clock::{Clock, SystemClock};
use super::session::{
    Admission, Bucket, CallOutcome, Cap, Counter, OutcomeTotals, SessionKey, SessionStore, Tally, admit,
    apply_outcome, check,
};
use crate::hash::FastMap;

/// Counters in memory, sharded by session id.
pub struct MemorySessions {
    shards: Box<[Mutex<Shard>]>,
    hasher: ahash::RandomState,
    /// Rate-limit buckets per (agent, counter); locked after a shard, never before.
    buckets: Mutex<Buckets>,
    clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for MemorySessions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemorySessions").finish_non_exhaustive()
    }
}

type Shard = FastMap<Box<str>, FastMap<Box<str>, SessionCounts>>;

/// Rate-limit buckets, keyed by (agent, the rate limit's rule id).
type Buckets = HashMap<(Box<str>, Box<str>), Bucket>;

/// One agent's counters in one session.
#[derive(Default)]
struct SessionCounts {
    consecutive_errors: u64,
    cost_micros: u64,
    total: u64,
    tools: FastMap<Box<str>, u64>,
    caps: FastMap<Box<str>, u64>,
}

impl SessionCounts {
    fn get(&self, counter: Counter<'_>) -> u64 {
        match counter {
            Counter::Total => self.total,
            Counter::Tool(tool) => self.tools.get(tool).copied().unwrap_or(0),
            Counter::Cap(cap) => self.caps.get(cap).copied().unwrap_or(0),
            Counter::ConsecutiveErrors => self.consecutive_errors,
            Counter::CostMicros => self.cost_micros,
        }
    }

    /// Replaces a counter's value by `f` of it (0 if never counted).
    fn update(&mut self, counter: Counter<'_>, f: impl FnOnce(u64) -> u64) {
        fn named(map: &mut FastMap<Box<str>, u64>, name: &str, f: impl FnOnce(u64) -> u64) {
            // Look up first: the key is allocated only for a new counter.
            match map.get_mut(name) {
                Some(value) => *value = f(*value),
                None => {
                    map.insert(name.into(), f(0));
                }
            }
        }
        match counter {
            Counter::Total => self.total = f(self.total),
            Counter::Tool(tool) => named(&mut self.tools, tool, f),
            Counter::Cap(cap) => named(&mut self.caps, cap, f),
            Counter::ConsecutiveErrors => self.consecutive_errors = f(self.consecutive_errors),
            Counter::CostMicros => self.cost_micros = f(self.cost_micros),
        }
    }
}

const SHARDS: usize = 32;

impl Default for MemorySessions {
    fn default() -> Self {
        MemorySessions::with_clock(Arc::new(SystemClock))
    }
}

impl MemorySessions {
    /// An empty store on the system clock.
    pub fn new() -> Self {
        MemorySessions::default()
    }

    /// An empty store whose rate-limit buckets refill by `clock`.
    pub fn with_clock(clock: Arc<dyn Clock>) -> Self {
        MemorySessions {
            shards: (0..SHARDS).map(|_| Mutex::new(Shard::default())).collect(),
            hasher: ahash::RandomState::new(),
            buckets: Mutex::new(HashMap::new()),
            clock,
        }
    }

    fn shard(&self, session: &str) -> MutexGuard<'_, Shard> {
        let index = (self.hasher.hash_one(session) as usize) % self.shards.len();
        // A panic while holding a shard cannot leave counters half-written
        // (each update is a single store), so a poisoned lock is still usable.
        self.shards[index].lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs `f` on the tally of `key`, holding its shard's lock.
    fn with_tally<R>(&self, key: SessionKey<'_>, f: impl FnOnce(&mut MemoryTally<'_>) -> R) -> R {
        let mut shard = self.shard(key.session);
        let agents = match shard.get_mut(key.session) {
            Some(agents) => agents,
            None => shard.entry(key.session.into()).or_default(),
        };
        let counts = match agents.get_mut(key.agent) {
            Some(counts) => counts,
            None => agents.entry(key.agent.into()).or_default(),
        };
        let mut tally = MemoryTally { counts, agent: key.agent, buckets: &self.buckets, locked: None };
        f(&mut tally)
    }
}

/// A session's counters under its shard's lock. The global bucket lock is
/// taken only when a rate limit is read, not on every admission.
struct MemoryTally<'a> {
    counts: &'a mut SessionCounts,
    agent: &'a str,
    buckets: &'a Mutex<Buckets>,
    locked: Option<MutexGuard<'a, Buckets>>,
}

impl MemoryTally<'_> {
    fn buckets(&mut self) -> &mut Buckets {
        let buckets = self.buckets;
        self.locked.get_or_insert_with(|| buckets.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

impl Tally for MemoryTally<'_> {
    type Error = std::convert::Infallible;

    fn get(&mut self, counter: Counter<'_>) -> Result<u64, Self::Error> {
        Ok(self.counts.get(counter))
    }

    fn set(&mut self, counter: Counter<'_>, value: u64) -> Result<(), Self::Error> {
        self.counts.update(counter, |_| value);
        Ok(())
    }

    fn bump(&mut self, counter: Counter<'_>) -> Result<(), Self::Error> {
        self.counts.update(counter, |value| value.saturating_add(1));
        Ok(())
    }

    fn bucket(&mut self, counter: &str) -> Result<Option<Bucket>, Self::Error> {
        let key = (Box::from(self.agent), Box::from(counter));
        Ok(self.buckets().get(&key).copied())
    }

    fn set_bucket(&mut self, counter: &str, bucket: Bucket) -> Result<(), Self::Error> {
        let key = (Box::from(self.agent), Box::from(counter));
        self.buckets().insert(key, bucket);
        Ok(())
    }
}

impl SessionStore for MemorySessions {
    fn count(&self, key: SessionKey<'_>, counter: Counter<'_>) -> Option<u64> {
        let shard = self.shard(key.session);
        Some(shard.get(key.session).and_then(|agents| agents.get(key.agent)).map_or(0, |c| c.get(counter)))
    }

    fn record_outcome(&self, key: SessionKey<'_>, outcome: CallOutcome) -> Option<OutcomeTotals> {
        self.with_tally(key, |tally| apply_outcome(tally, outcome)).ok()
    }

    fn admit(&self, key: SessionKey<'_>, tool: &str, caps: &[Cap]) -> Admission {
        let clock = self.clock.as_ref();
        self.with_tally(key, |tally| admit(tally, tool, caps, clock)).unwrap_or(Admission::Unavailable)
    }

    fn check(&self, key: SessionKey<'_>, caps: &[Cap]) -> Admission {
        let clock = self.clock.as_ref();
        self.with_tally(key, |tally| check(tally, caps, clock)).unwrap_or(Admission::Unavailable)
    }
}
