//! Session counters behind a trait, so that a durable or shared store can
//! replace the in-memory one.
//!
//! A cap is checked and counted in one atomic step ([`SessionStore::admit`]);
//! conditions read counters through [`SessionStore::count`] without locking
//! the session across the whole decision. What an admission checks and
//! counts is decided once, here ([`admit`], [`apply_outcome`]); a store only
//! provides the atomic section it runs in (a [`Tally`]).

use std::time::Duration;

use super::clock::Clock;

/// How long a session may go without an admission before its counters
/// are dropped (its caps start again), by default.
pub const DEFAULT_SESSION_IDLE: Duration = Duration::from_secs(24 * 60 * 60);
/// How many sessions a store holds at most, by default.
pub const DEFAULT_MAX_SESSIONS: usize = 100_000;
/// How many distinct tools one session counts (`session.calls("tool")`):
/// a call of one more tool is denied, so that one session cannot grow
/// without bound by calling ever new names its globs allow.
pub const MAX_TOOLS_PER_SESSION: usize = 64;

/// Bounds on what clients can make a session store hold: a session is an
/// agent's session id (and, for rate limits alone, the agent).
///
/// A session idle for `idle` is dropped; a new session beyond
/// `max_sessions` live ones is refused ([`Admission::SessionLimit`]), never
/// made room for by dropping a live one, so that nobody can reset another
/// session's caps by opening sessions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SessionLimits {
    /// How long a session lives after its last admission or outcome.
    pub idle: Duration,
    /// The most live sessions.
    pub max_sessions: usize,
}

impl Default for SessionLimits {
    fn default() -> Self {
        SessionLimits { idle: DEFAULT_SESSION_IDLE, max_sessions: DEFAULT_MAX_SESSIONS }
    }
}

impl SessionLimits {
    /// The idle time in milliseconds.
    pub fn idle_ms(&self) -> u64 {
        u64::try_from(self.idle.as_millis()).unwrap_or(u64::MAX).max(1)
    }

    /// Whether a session last used at `last_used_ms` has expired by `now_ms`.
    pub fn expired(&self, last_used_ms: u64, now_ms: u64) -> bool {
        now_ms.saturating_sub(last_used_ms) >= self.idle_ms()
    }

    /// How often a store looks for expired sessions: a tenth of the idle
    /// time, at most a minute.
    pub fn sweep_every_ms(&self) -> u64 {
        (self.idle_ms() / 10).clamp(1, 60_000)
    }
}

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

/// The outcome of [`SessionStore::admit`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admission {
    /// Every cap had room; the call was counted.
    Admitted,
    /// The cap at this index is reached; nothing was counted.
    Refused(usize),
    /// The session would be one more than the store may hold (a new
    /// session beyond [`SessionLimits::max_sessions`], or a tool beyond
    /// [`MAX_TOOLS_PER_SESSION`]); nothing was counted.
    SessionLimit,
    /// The store could not check or count (a storage error); the call must
    /// be denied.
    Unavailable,
    /// The store did not answer within the decision deadline; the call must
    /// be denied (it may still be counted: over-counting, never under).
    TimedOut,
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

    /// Checks every cap as [`SessionStore::admit`] would, without counting
    /// anything (for a call that waits for approval).
    fn check(&self, key: SessionKey<'_>, caps: &[Cap]) -> Admission;

    /// Whether a call may wait on I/O (a disk commit, a network round
    /// trip): callers on an async runtime then run it where blocking
    /// stalls nothing else.
    fn may_block(&self) -> bool {
        false
    }

    /// Whether the store works (what `health` reports).
    fn condition(&self) -> super::condition::Condition {
        super::condition::Condition::Ok
    }
}

/// One session's counters (and its agent's rate-limit buckets), open for
/// reading and writing inside a store's atomic section: a lock, a write
/// transaction. [`admit`] and [`apply_outcome`] run on it.
pub trait Tally {
    /// What reading or writing can fail with.
    type Error;

    /// A counter's value (0 if never counted).
    fn get(&mut self, counter: Counter<'_>) -> Result<u64, Self::Error>;

    /// Sets a counter.
    fn set(&mut self, counter: Counter<'_>, value: u64) -> Result<(), Self::Error>;

    /// The stored bucket of the agent's rate limit `counter`, if any.
    fn bucket(&mut self, counter: &str) -> Result<Option<Bucket>, Self::Error>;

    /// Stores the bucket of the agent's rate limit `counter`.
    fn set_bucket(&mut self, counter: &str, bucket: Bucket) -> Result<(), Self::Error>;

    /// Whether the session already counts calls of `tool`.
    fn counts_tool(&mut self, tool: &str) -> Result<bool, Self::Error>;

    /// How many tools the session counts calls of.
    fn tools(&mut self) -> Result<usize, Self::Error>;

    /// Adds one to a counter.
    fn bump(&mut self, counter: Counter<'_>) -> Result<(), Self::Error> {
        let value = self.get(counter)?;
        self.set(counter, value.saturating_add(1))
    }
}

/// The admission algorithm every store runs: checks every cap (a count cap
/// against its counter, a rate limit against its token bucket refilled to
/// now) and, only if all have room and the tool is one the session counts
/// or may start counting, counts the call: the total, the tool, each count
/// cap, and a token from each bucket. The clock is read only
/// for a call under a rate limit.
pub fn admit<T: Tally>(
    tally: &mut T,
    tool: &str,
    caps: &[Cap],
    clock: &dyn Clock,
) -> Result<Admission, T::Error> {
    let buckets = match room(tally, caps, clock)? {
        Ok(buckets) => buckets,
        Err(index) => return Ok(Admission::Refused(index)),
    };
    if !tally.counts_tool(tool)? && tally.tools()? >= MAX_TOOLS_PER_SESSION {
        return Ok(Admission::SessionLimit);
    }
    tally.bump(Counter::Total)?;
    tally.bump(Counter::Tool(tool))?;
    for cap in caps.iter().filter(|cap| cap.window_ms.is_none()) {
        tally.bump(Counter::Cap(&cap.counter))?;
    }
    for (counter, bucket) in buckets {
        tally.set_bucket(counter, bucket.take())?;
    }
    Ok(Admission::Admitted)
}

/// The check half of [`admit`]: whether every cap has room, counting
/// nothing.
pub fn check<T: Tally>(tally: &mut T, caps: &[Cap], clock: &dyn Clock) -> Result<Admission, T::Error> {
    Ok(match room(tally, caps, clock)? {
        Ok(_) => Admission::Admitted,
        Err(index) => Admission::Refused(index),
    })
}

/// Whether every cap has room: the refilled buckets of the rate limits if
/// so, the index of the first full cap if not.
#[allow(clippy::type_complexity)]
fn room<'c, T: Tally>(
    tally: &mut T,
    caps: &'c [Cap],
    clock: &dyn Clock,
) -> Result<Result<Vec<(&'c str, Bucket)>, usize>, T::Error> {
    let now = caps.iter().any(|cap| cap.window_ms.is_some()).then(|| clock.now_ms());
    let mut buckets = Vec::new();
    for (index, cap) in caps.iter().enumerate() {
        let room = match (cap.window_ms, now) {
            (Some(_), Some(now)) => {
                let bucket = Bucket::refilled(tally.bucket(&cap.counter)?, cap, now);
                buckets.push((&*cap.counter, bucket));
                bucket.has_room()
            }
            _ => tally.get(Counter::Cap(&cap.counter))? < cap.limit,
        };
        if !room {
            return Ok(Err(index));
        }
    }
    Ok(Ok(buckets))
}

/// Records a call's outcome: an error extends the session's error streak,
/// a success ends it; the cost is added. Returns the new totals.
pub fn apply_outcome<T: Tally>(tally: &mut T, outcome: CallOutcome) -> Result<OutcomeTotals, T::Error> {
    let errors = if outcome.error { tally.get(Counter::ConsecutiveErrors)?.saturating_add(1) } else { 0 };
    let cost = tally.get(Counter::CostMicros)?.saturating_add(outcome.cost_micros);
    tally.set(Counter::ConsecutiveErrors, errors)?;
    tally.set(Counter::CostMicros, cost)?;
    Ok(OutcomeTotals { consecutive_errors: errors, cost_micros: cost })
}
