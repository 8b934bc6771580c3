//! Circuit breakers (`constraints.<tool>.circuitBreaker`): per agent and
//! breaker, the failed calls in a row that outcomes reported and, once
//! they reach the threshold, until when the circuit is open — its calls
//! are denied at once instead of hammering a failing service. After the
//! cooldown the next call goes through: a success closes the circuit, a
//! failure opens it again. Kept in memory: a restart closes every circuit.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, PoisonError};

/// Every breaker's state.
#[derive(Debug, Default)]
pub struct Breakers {
    /// Whether any failure was ever recorded (the decision path's first question).
    any: AtomicBool,
    circuits: Mutex<HashMap<(String, String), Circuit>>,
}

#[derive(Debug, Default)]
struct Circuit {
    failures: u64,
    open_until_ms: Option<u64>,
}

impl Breakers {
    /// Until when (milliseconds since the epoch) `agent`'s breaker `rule`
    /// is open, if it is open at `now_ms`.
    pub fn open_until(&self, agent: &str, rule: &str, now_ms: u64) -> Option<u64> {
        if !self.any.load(Ordering::Acquire) {
            return None;
        }
        let circuits = self.circuits.lock().unwrap_or_else(PoisonError::into_inner);
        let circuit = circuits.get(&(agent.to_owned(), rule.to_owned()))?;
        circuit.open_until_ms.filter(|until| *until > now_ms)
    }

    /// Records a call's result; returns whether this failure opened the
    /// circuit (`threshold` failures in a row, open for `cooldown_ms`).
    pub fn record(
        &self,
        agent: &str,
        rule: &str,
        failed: bool,
        threshold: u64,
        cooldown_ms: u64,
        now_ms: u64,
    ) -> bool {
        if !failed && !self.any.load(Ordering::Acquire) {
            return false;
        }
        self.any.store(true, Ordering::Release);
        let mut circuits = self.circuits.lock().unwrap_or_else(PoisonError::into_inner);
        let circuit = circuits.entry((agent.to_owned(), rule.to_owned())).or_default();
        if !failed {
            *circuit = Circuit::default();
            return false;
        }
        circuit.failures += 1;
        if circuit.failures < threshold {
            return false;
        }
        circuit.open_until_ms = Some(now_ms.saturating_add(cooldown_ms));
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_circuit_opens_after_its_failures_and_half_opens_after_its_cooldown() {
        let breakers = Breakers::default();
        let fail = |now| breakers.record("bot", "r", true, 3, 1000, now);
        assert!(!fail(0) && !fail(1));
        assert_eq!(breakers.open_until("bot", "r", 2), None);
        assert!(fail(2), "the third failure in a row opens it");
        assert_eq!(breakers.open_until("bot", "r", 500), Some(1002));
        assert_eq!(breakers.open_until("other", "r", 500), None);
        assert_eq!(breakers.open_until("bot", "r", 1002), None, "after the cooldown a call may try");
        assert!(fail(1100), "a failure then opens it again at once");
        assert!(!breakers.record("bot", "r", false, 3, 1000, 2200), "a success closes it");
        assert!(!fail(2300));
        assert_eq!(breakers.open_until("bot", "r", 2300), None);
    }
}
