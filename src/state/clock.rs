//! Time, injected: every store and the engine read "now" from a [`Clock`],
//! so tests move time forward instead of sleeping, and a shared store can
//! use one clock for every replica.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Where "now" comes from.
pub trait Clock: Send + Sync + std::fmt::Debug {
    /// The current time.
    fn now(&self) -> SystemTime;

    /// Milliseconds since the Unix epoch (0 before it).
    fn now_ms(&self) -> u64 {
        since_epoch(self.now()).map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }

    /// Milliseconds since the Unix epoch, from a clock that may lag by a
    /// few milliseconds but is cheaper to read: for session expiry, read
    /// on every admission.
    fn coarse_now_ms(&self) -> u64 {
        self.now_ms()
    }

    /// Seconds since the Unix epoch (0 before it).
    fn now_secs(&self) -> u64 {
        since_epoch(self.now()).map_or(0, |d| d.as_secs())
    }

    /// The current time as RFC 3339, to the second (`2026-11-30T10:19:00Z`).
    fn rfc3339_seconds(&self) -> String {
        humantime::format_rfc3339_seconds(self.now()).to_string()
    }

    /// The current time as RFC 3339, to the microsecond.
    fn rfc3339_micros(&self) -> String {
        humantime::format_rfc3339_micros(self.now()).to_string()
    }
}

fn since_epoch(time: SystemTime) -> Option<Duration> {
    time.duration_since(UNIX_EPOCH).ok()
}

/// The operating system's clock.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }

    fn coarse_now_ms(&self) -> u64 {
        // The kernel's last tick (CLOCK_REALTIME_COARSE): no clock read.
        let now = rustix::time::clock_gettime(rustix::time::ClockId::RealtimeCoarse);
        let secs = u64::try_from(now.tv_sec).unwrap_or(0);
        let millis = u64::try_from(now.tv_nsec).unwrap_or(0) / 1_000_000;
        secs.saturating_mul(1000).saturating_add(millis)
    }
}

/// A clock that moves only when told to: for tests of expiry and refill.
#[derive(Debug)]
pub struct ManualClock {
    ms: AtomicU64,
}

impl ManualClock {
    /// A clock standing at `ms` milliseconds after the Unix epoch.
    pub fn at_ms(ms: u64) -> ManualClock {
        ManualClock { ms: AtomicU64::new(ms) }
    }

    /// Moves the clock forward.
    pub fn advance(&self, by: Duration) {
        let by = u64::try_from(by.as_millis()).unwrap_or(u64::MAX);
        self.ms.fetch_add(by, Ordering::SeqCst);
    }
}

impl Default for ManualClock {
    /// 2026-01-01T00:00:00Z.
    fn default() -> Self {
        ManualClock::at_ms(1_767_225_600_000)
    }
}

impl Clock for ManualClock {
    fn now(&self) -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(self.ms.load(Ordering::SeqCst))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_manual_clock_moves_only_when_told() {
        let clock = ManualClock::default();
        assert_eq!(clock.rfc3339_seconds(), "2026-01-01T00:00:00Z");
        clock.advance(Duration::from_millis(1500));
        assert_eq!(clock.now_ms(), 1_767_225_601_500);
        assert_eq!(clock.now_secs(), 1_767_225_601);
    }
}
