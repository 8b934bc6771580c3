//! Session counters in memory, sharded by session id. State is lost when
//! the process exits.
//!
//! Sessions idle for the configured time are dropped by a sweep of each
//! shard (at most every [`SessionLimits::sweep_every_ms`]), and at most
//! [`SessionLimits::max_sessions`] live at once.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use super::clock::{Clock, SystemClock};
use super::session::{
    Admission, Bucket, CallOutcome, Cap, Counter, OutcomeTotals, SessionKey, SessionLimits, SessionStore,
    Tally, admit, apply_outcome, check,
};
use crate::hash::FastMap;

/// Counters in memory, sharded by session id.
pub struct MemorySessions {
    shards: Box<[Mutex<Shard>]>,
    hasher: ahash::RandomState,
    /// Rate-limit buckets per (agent, counter); locked after a shard, never before.
    buckets: Mutex<Buckets>,
    clock: Arc<dyn Clock>,
    limits: SessionLimits,
    /// `limits.idle` and how often a shard is swept, in milliseconds.
    idle_ms: u64,
    sweep_every_ms: u64,
    /// Live sessions, in every shard.
    live: AtomicUsize,
    /// When a new session at the bound last swept every shard.
    swept_all_ms: AtomicU64,
}

impl std::fmt::Debug for MemorySessions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemorySessions").finish_non_exhaustive()
    }
}

/// The sessions whose ids hash to one shard: session id → agent → counts.
#[derive(Default)]
struct Shard {
    sessions: FastMap<Box<str>, FastMap<Box<str>, SessionCounts>>,
    /// When expired sessions were last dropped.
    swept_ms: u64,
}

impl Shard {
    fn contains(&self, key: SessionKey<'_>) -> bool {
        self.sessions.get(key.session).is_some_and(|agents| agents.contains_key(key.agent))
    }

    /// Drops the sessions idle for too long; returns how many.
    fn sweep(&mut self, now_ms: u64, limits: &SessionLimits) -> usize {
        let mut dropped = 0;
        self.sessions.retain(|_, agents| {
            agents.retain(|_, counts| {
                let expired = limits.expired(counts.last_used_ms, now_ms);
                dropped += usize::from(expired);
                !expired
            });
            !agents.is_empty()
        });
        self.swept_ms = now_ms;
        dropped
    }
}

/// Rate-limit buckets, keyed by (agent, the rate limit's rule id).
type Buckets = HashMap<(Box<str>, Box<str>), Bucket>;

/// One agent's counters in one session.
#[derive(Default)]
struct SessionCounts {
    /// The last admission or outcome (ms since the Unix epoch).
    last_used_ms: u64,
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

    /// An empty store whose rate-limit buckets refill by `clock`, with the
    /// default [`SessionLimits`].
    pub fn with_clock(clock: Arc<dyn Clock>) -> Self {
        MemorySessions::with_limits(clock, SessionLimits::default())
    }

    /// An empty store on `clock` within `limits`.
    pub fn with_limits(clock: Arc<dyn Clock>, limits: SessionLimits) -> Self {
        MemorySessions {
            shards: (0..SHARDS).map(|_| Mutex::new(Shard::default())).collect(),
            hasher: ahash::RandomState::new(),
            buckets: Mutex::new(HashMap::new()),
            clock,
            idle_ms: limits.idle_ms(),
            sweep_every_ms: limits.sweep_every_ms(),
            limits,
            live: AtomicUsize::new(0),
            swept_all_ms: AtomicU64::new(0),
        }
    }

    /// How many sessions are live (expired ones count until swept).
    pub fn live(&self) -> usize {
        self.live.load(Ordering::Relaxed)
    }

    fn shard(&self, session: &str) -> MutexGuard<'_, Shard> {
        let index = (self.hasher.hash_one(session) as usize) % self.shards.len();
        // A panic while holding a shard cannot leave counters half-written
        // (each update is a single store), so a poisoned lock is still usable.
        self.shards[index].lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs `f` on the tally of `key`, holding its shard's lock: a new
    /// session is created if there is room for it (`None` if not), an
    /// expired one starts again.
    fn with_tally<R>(&self, key: SessionKey<'_>, f: impl FnOnce(&mut MemoryTally<'_>) -> R) -> Option<R> {
        let now = self.clock.coarse_now_ms();
        let mut shard = self.shard(key.session);
        self.sweep_if_due(&mut shard, now);
        // The common case first: a live session, found with one lookup each.
        if let Some(counts) = shard.sessions.get_mut(key.session).and_then(|agents| agents.get_mut(key.agent))
        {
            return Some(self.run(counts, key, now, f));
        }
        if !self.reserve() {
            // At the bound: expired sessions elsewhere may make room.
            drop(shard);
            self.sweep_all(now);
            shard = self.shard(key.session);
            if !shard.contains(key) && !self.reserve() {
                return None;
            }
        }
        let agents = shard.sessions.entry(key.session.into()).or_default();
        let counts = agents.entry(key.agent.into()).or_default();
        Some(self.run(counts, key, now, f))
    }

    /// Runs `f` on a session's counts, starting them again if the session
    /// has expired.
    fn run<R>(
        &self,
        counts: &mut SessionCounts,
        key: SessionKey<'_>,
        now: u64,
        f: impl FnOnce(&mut MemoryTally<'_>) -> R,
    ) -> R {
        if now.saturating_sub(counts.last_used_ms) >= self.idle_ms {
            *counts = SessionCounts::default();
        }
        counts.last_used_ms = now;
        let mut tally = MemoryTally { counts, agent: key.agent, buckets: &self.buckets, locked: None };
        f(&mut tally)
    }

    /// Takes a place for a new session, if one is left.
    fn reserve(&self) -> bool {
        let max = self.limits.max_sessions;
        self.live
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |live| (live < max).then_some(live + 1))
            .is_ok()
    }

    fn sweep_if_due(&self, shard: &mut Shard, now_ms: u64) {
        if now_ms.saturating_sub(shard.swept_ms) >= self.sweep_every_ms {
            let dropped = shard.sweep(now_ms, &self.limits);
            self.live.fetch_sub(dropped, Ordering::AcqRel);
        }
    }

    /// Sweeps every shard, at most once a second (a burst of new sessions
    /// at the bound would otherwise sweep on every call).
    fn sweep_all(&self, now_ms: u64) {
        let last = self.swept_all_ms.load(Ordering::Acquire);
        let due = now_ms.saturating_sub(last) >= 1_000 || last == 0;
        if !due
            || self.swept_all_ms.compare_exchange(last, now_ms, Ordering::AcqRel, Ordering::Acquire).is_err()
        {
            return;
        }
        for shard in &self.shards {
            let mut shard = shard.lock().unwrap_or_else(PoisonError::into_inner);
            let dropped = shard.sweep(now_ms, &self.limits);
            self.live.fetch_sub(dropped, Ordering::AcqRel);
        }
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

    fn counts_tool(&mut self, tool: &str) -> Result<bool, Self::Error> {
        Ok(self.counts.tools.contains_key(tool))
    }

    fn tools(&mut self) -> Result<usize, Self::Error> {
        Ok(self.counts.tools.len())
    }
}

impl SessionStore for MemorySessions {
    fn count(&self, key: SessionKey<'_>, counter: Counter<'_>) -> Option<u64> {
        // An expired session not yet swept still reads its counts: over-counting, never under.
        let shard = self.shard(key.session);
        let counts = shard.sessions.get(key.session).and_then(|agents| agents.get(key.agent));
        Some(counts.map_or(0, |c| c.get(counter)))
    }

    fn record_outcome(&self, key: SessionKey<'_>, outcome: CallOutcome) -> Option<OutcomeTotals> {
        self.with_tally(key, |tally| apply_outcome(tally, outcome))?.ok()
    }

    fn admit(&self, key: SessionKey<'_>, tool: &str, caps: &[Cap]) -> Admission {
        let clock = self.clock.as_ref();
        match self.with_tally(key, |tally| admit(tally, tool, caps, clock)) {
            Some(Ok(admission)) => admission,
            None => Admission::SessionLimit,
        }
    }

    fn check(&self, key: SessionKey<'_>, caps: &[Cap]) -> Admission {
        let clock = self.clock.as_ref();
        match self.with_tally(key, |tally| check(tally, caps, clock)) {
            Some(Ok(admission)) => admission,
            None => Admission::SessionLimit,
        }
    }
}
