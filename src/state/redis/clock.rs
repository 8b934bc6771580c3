//! Redis's clock, as a replica tells it: every replica on one Redis then
//! agrees on the time — when an approval expires, what the audit trail
//! records — whatever its own clock says.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, SystemTime};

use super::super::clock::{Clock, SystemClock};

/// A base clock (the system's) moved by the offset last measured against
/// Redis's `TIME`, halfway through the round trip: off by at most half a
/// round trip plus the drift since the last [`RedisClock::sample`].
#[derive(Debug)]
pub struct RedisClock {
    base: Arc<dyn Clock>,
    offset_ms: AtomicI64,
}

impl Default for RedisClock {
    fn default() -> Self {
        RedisClock::over(Arc::new(SystemClock))
    }
}

impl RedisClock {
    /// Redis's time told from `base` (tests give a skewed one).
    pub fn over(base: Arc<dyn Clock>) -> RedisClock {
        RedisClock { base, offset_ms: AtomicI64::new(0) }
    }

    /// Measures the offset again with one `TIME` on `connection`.
    pub fn sample(&self, connection: &mut redis::Connection) -> redis::RedisResult<()> {
        let before = self.base.now_ms();
        let (secs, micros): (u64, u64) = redis::cmd("TIME").query(connection)?;
        let after = self.base.now_ms();
        let redis_ms = secs.saturating_mul(1000).saturating_add(micros / 1000);
        let here = before.saturating_add(after.saturating_sub(before) / 2);
        let signed = |ms: u64| i64::try_from(ms).unwrap_or(i64::MAX);
        self.offset_ms.store(signed(redis_ms).saturating_sub(signed(here)), Ordering::Relaxed);
        Ok(())
    }

    /// How far Redis's clock is ahead of the base clock (behind: negative).
    pub fn offset_ms(&self) -> i64 {
        self.offset_ms.load(Ordering::Relaxed)
    }

    fn moved(&self, ms: u64) -> u64 {
        ms.saturating_add_signed(self.offset_ms())
    }
}

impl Clock for RedisClock {
    fn now(&self) -> SystemTime {
        let base = self.base.now();
        let offset = self.offset_ms();
        let by = Duration::from_millis(offset.unsigned_abs());
        let moved = if offset >= 0 { base.checked_add(by) } else { base.checked_sub(by) };
        moved.unwrap_or(base)
    }

    fn coarse_now_ms(&self) -> u64 {
        self.moved(self.base.coarse_now_ms())
    }
}
