//! Who has failed to sign in too often: sign-in attempts by key (a name, or
//! an address), each counted as a failure when it is made until a sign-in
//! forgets them. After `free` in a row, each further one makes the key wait
//! twice as long as the last (1 s, 2 s, …, at most 15 minutes).
//!
//! On a replica whose state is on Redis, the attempts are counted in Redis
//! (on Redis's clock), so that a load balancer spreading one name's guesses
//! over N replicas does not give it N times the free failures. Redis that
//! cannot be asked refuses the sign-in rather than letting it go
//! unthrottled.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use super::on_redis::{RedisScript, Unavailable};
use crate::hash::FastMap;
use crate::state::redis::pool::Pool;

/// Failures in a row before a name must wait.
pub const FREE_FAILURES: u32 = 5;
/// Failures in a row before an address's sign-ins are slowed down (many
/// people may share one address behind a proxy).
pub const FREE_ADDRESS_FAILURES: u32 = 20;
/// The longest wait after failures.
const MAX_LOCKOUT: Duration = Duration::from_secs(15 * 60);
/// The most names and addresses remembered in memory.
const MAX_THROTTLED: usize = 10_000;
/// How long Redis remembers a key's failures after its last one: long
/// enough that the longest wait does not forget them, short enough that
/// strangers' names and addresses do not pile up in Redis.
const REMEMBERED: Duration = Duration::from_secs(3600);
/// The script that counts and reads failures in Redis.
const SCRIPT: &str = include_str!("throttle.lua");

/// Sign-in attempts by key, in memory or shared through Redis.
#[derive(Debug)]
pub struct Throttle {
    free: u32,
    kept: Kept,
}

#[derive(Debug)]
enum Kept {
    Memory(Mutex<FastMap<String, Failures>>),
    Redis(Arc<RedisScript>),
}

#[derive(Debug)]
struct Failures {
    count: u32,
    last: Instant,
    /// Whether a refusal in this wait was already reported.
    reported: bool,
}

/// How long a key must still wait.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Wait {
    /// The time left.
    pub left: Duration,
    /// Whether this is the first refusal of this wait (the one recorded;
    /// the others are only counted).
    pub first: bool,
}

impl Throttle {
    /// A throttle in memory that lets `free` failures in a row go unpunished.
    pub fn new(free: u32) -> Throttle {
        Throttle { free, kept: Kept::Memory(Mutex::default()) }
    }

    /// The same, counted in Redis through `pool`, shared by every replica
    /// on it.
    pub fn shared(free: u32, pool: Arc<Pool>) -> Throttle {
        Throttle { free, kept: Kept::Redis(Arc::new(RedisScript::new(pool, SCRIPT, "throttle"))) }
    }

    /// A sign-in attempt of `key`. While `key` must wait, an attempt that
    /// `refuses` is turned away unchecked and uncounted (the wait is
    /// returned); otherwise the attempt is counted at once as a failure —
    /// until [`Throttle::succeeded`] forgets it — and any wait is returned
    /// for the caller to sit out. Counting before the password is checked
    /// means a burst of attempts at once cannot all pass as "no failures
    /// yet".
    pub async fn attempt(&self, key: &str, refuses: bool) -> Result<Option<Wait>, Unavailable> {
        let redis = match &self.kept {
            Kept::Memory(failures) => return Ok(memory_attempt(failures, key, self.free, refuses)),
            Kept::Redis(redis) => redis,
        };
        let answer = self.run(redis, key, if refuses { "refuse" } else { "slow" }).await?;
        Ok(match answer.as_slice() {
            [1, left, first] => Some(Wait {
                left: Duration::from_millis(u64::try_from(*left).unwrap_or(0)),
                first: *first == 1,
            }),
            _ => None,
        })
    }

    /// Runs the script for `key` in `mode`.
    async fn run(&self, redis: &Arc<RedisScript>, key: &str, mode: &str) -> Result<Vec<i64>, Unavailable> {
        let args = [mode.to_owned(), self.free.to_string(), MAX_LOCKOUT.as_millis().to_string()];
        let args = args.into_iter().chain([REMEMBERED.as_millis().to_string()]).collect();
        redis.run(vec![redis.key("", key)], args).await
    }

    /// Forgets the failures of `key` (it signed in).
    pub async fn succeeded(&self, key: &str) {
        match &self.kept {
            Kept::Memory(failures) => {
                failures.lock().unwrap_or_else(PoisonError::into_inner).remove(key);
            }
            Kept::Redis(shared) => {
                if let Err(Unavailable(error)) = self.run(shared, key, "succeeded").await {
                    tracing::error!(%error, "a sign-in's earlier failures could not be forgotten in Redis");
                }
            }
        }
    }
}

fn memory_attempt(
    failures: &Mutex<FastMap<String, Failures>>,
    key: &str,
    free: u32,
    refuses: bool,
) -> Option<Wait> {
    let mut failures = failures.lock().unwrap_or_else(PoisonError::into_inner);
    let wait = failures.get_mut(key).and_then(|entry| {
        let left = lockout(entry.count, free)?.checked_sub(entry.last.elapsed())?;
        let first = !entry.reported;
        entry.reported = true;
        Some(Wait { left, first })
    });
    if wait.is_some() && refuses {
        return wait;
    }
    if failures.len() >= MAX_THROTTLED && !failures.contains_key(key) {
        // Forget those who would no longer wait, then the least suspect.
        failures.retain(|_, f| lockout(f.count, free).is_some_and(|l| f.last.elapsed() < l));
        if failures.len() >= MAX_THROTTLED
            && let Some(least) = failures.iter().min_by_key(|(_, f)| f.count).map(|(k, _)| k.clone())
        {
            failures.remove(&least);
        }
    }
    let entry = failures.entry(key.to_owned()).or_insert(Failures {
        count: 0,
        last: Instant::now(),
        reported: false,
    });
    entry.count = entry.count.saturating_add(1);
    entry.last = Instant::now();
    entry.reported = false;
    wait
}

/// The wait after `count` failures in a row, `free` of them unpunished.
fn lockout(count: u32, free: u32) -> Option<Duration> {
    let over = count.checked_sub(free)?;
    let seconds = 1u64.checked_shl(over).unwrap_or(u64::MAX);
    Some(Duration::from_secs(seconds).min(MAX_LOCKOUT))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn attempts_past_the_free_ones_make_the_name_wait_longer_each_time() {
        let throttle = Throttle::new(FREE_FAILURES);
        let attempt = |key: &'static str| {
            let throttle = &throttle;
            async move { throttle.attempt(key, true).await.expect("memory answers") }
        };
        for _ in 0..FREE_FAILURES {
            assert_eq!(attempt("alice").await, None, "free, and counted");
        }
        let first = attempt("alice").await.expect("waits");
        assert!(first.first && first.left <= Duration::from_secs(1));
        assert!(!attempt("alice").await.expect("waits").first, "reported once per wait");
        // An address is slowed, not refused: its attempt counts all the same.
        let slowed = Throttle::new(1);
        assert_eq!(slowed.attempt("10.0.0.1", false).await.expect("memory"), None);
        assert!(slowed.attempt("10.0.0.1", false).await.expect("memory").is_some());
        let longer = slowed.attempt("10.0.0.1", false).await.expect("memory").expect("waits");
        assert!(longer.left > Duration::from_secs(1), "counted while slowed: {longer:?}");
        assert_eq!(attempt("bob").await, None, "others are not affected");
        throttle.succeeded("alice").await;
        assert_eq!(attempt("alice").await, None);
        assert_eq!(lockout(100, FREE_FAILURES), Some(MAX_LOCKOUT));
    }
}
