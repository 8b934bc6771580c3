//! Decision ids: every answer names its decision, and an `outcome` must
//! cite an allow the server issued to that agent and session, once.
//!
//! An id is `<seq>.<tag>` (hex): a sequence number and a keyed hash
//! (SipHash, with keys drawn at start) over the sequence number, agent,
//! session and outcome. Verifying needs no table of issued ids; only the
//! ids already cited are kept (at most [`MAX_CITED`]), so that one
//! decision feeds one outcome. Ids do not outlive the process.

use std::collections::{HashSet, VecDeque};
use std::hash::BuildHasher;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::engine::Outcome;
use crate::protocol::DecisionId;

/// The most cited ids remembered; past that, the oldest are forgotten and
/// ids up to theirs are refused.
pub const MAX_CITED: usize = 1_000_000;

/// Why an outcome's decision id is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CiteError {
    /// Not an id this server issued for an allow to this agent and session.
    NotIssued,
    /// Already cited by an outcome (or too old to tell).
    AlreadyCited,
}

impl std::fmt::Display for CiteError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            CiteError::NotIssued => {
                "`decision_id` names no allow this server issued to this agent and session"
            }
            CiteError::AlreadyCited => "`decision_id` was already reported (an outcome is reported once)",
        })
    }
}

/// Issues and checks decision ids.
#[derive(Debug)]
pub struct DecisionIds {
    keys: std::hash::RandomState,
    next: AtomicU64,
    cited: Mutex<Cited>,
}

#[derive(Debug, Default)]
struct Cited {
    set: HashSet<u64>,
    order: VecDeque<u64>,
    /// Ids up to this sequence number are refused (forgotten).
    floor: Option<u64>,
}

impl Default for DecisionIds {
    fn default() -> Self {
        DecisionIds { keys: std::hash::RandomState::new(), next: AtomicU64::new(1), cited: Mutex::default() }
    }
}

impl DecisionIds {
    fn tag(&self, seq: u64, agent: &str, session: Option<&str>, outcome: Outcome) -> u64 {
        self.keys.hash_one((seq, agent, session, outcome.as_str()))
    }

    /// The id of a new decision.
    pub fn issue(&self, agent: &str, session: Option<&str>, outcome: Outcome) -> DecisionId {
        let seq = self.next.fetch_add(1, Ordering::Relaxed);
        DecisionId { seq, tag: self.tag(seq, agent, session, outcome) }
    }

    /// Checks that `text` names an allow issued to `agent` in `session` and
    /// not cited before; remembers it as cited.
    pub fn cite(&self, text: &str, agent: &str, session: &str) -> Result<(), CiteError> {
        let id = DecisionId::parse(text).ok_or(CiteError::NotIssued)?;
        if id.tag != self.tag(id.seq, agent, Some(session), Outcome::Allow) {
            return Err(CiteError::NotIssued);
        }
        let mut cited = self.cited.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if cited.floor.is_some_and(|floor| id.seq <= floor) || !cited.set.insert(id.seq) {
            return Err(CiteError::AlreadyCited);
        }
        cited.order.push_back(id.seq);
        if cited.order.len() > MAX_CITED
            && let Some(oldest) = cited.order.pop_front()
        {
            cited.set.remove(&oldest);
            cited.floor = Some(cited.floor.map_or(oldest, |floor| floor.max(oldest)));
        }
        Ok(())
    }

    /// Whether `text` is an allow this service issued to `agent` and
    /// `session` (cited or not).
    pub fn issued(&self, text: &str, agent: &str, session: Option<&str>) -> bool {
        DecisionId::parse(text).is_some_and(|id| id.tag == self.tag(id.seq, agent, session, Outcome::Allow))
    }

    /// Forgets that `text` was cited: its outcome was refused before it
    /// took effect, so the gateway may report it again.
    pub fn release(&self, text: &str) {
        if let Some(id) = DecisionId::parse(text) {
            let mut cited = self.cited.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            if cited.set.remove(&id.seq) {
                cited.order.retain(|seq| *seq != id.seq);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_outcome_cites_an_allow_to_its_agent_and_session_once() {
        let ids = DecisionIds::default();
        let allow = ids.issue("bot", Some("s"), Outcome::Allow).to_string();
        let deny = ids.issue("bot", Some("s"), Outcome::Deny).to_string();
        assert_eq!(ids.cite(&deny, "bot", "s"), Err(CiteError::NotIssued));
        assert_eq!(ids.cite(&allow, "other", "s"), Err(CiteError::NotIssued));
        assert_eq!(ids.cite(&allow, "bot", "t"), Err(CiteError::NotIssued));
        assert_eq!(ids.cite("1.0000000000000000", "bot", "s"), Err(CiteError::NotIssued));
        assert_eq!(ids.cite("nonsense", "bot", "s"), Err(CiteError::NotIssued));
        assert_eq!(ids.cite(&allow, "bot", "s"), Ok(()));
        assert_eq!(ids.cite(&allow, "bot", "s"), Err(CiteError::AlreadyCited));
        ids.release(&allow);
        assert_eq!(ids.cite(&allow, "bot", "s"), Ok(()), "a refused outcome may be reported again");
        let other = DecisionIds::default().issue("bot", Some("s"), Outcome::Allow).to_string();
        assert_eq!(ids.cite(&other, "bot", "s"), Err(CiteError::NotIssued), "another process's id");
    }
}
