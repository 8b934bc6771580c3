//! The approvals of a server: in memory, where every change is decided,
//! and with `--state`, saved change by change to an append log
//! ([`ApprovalLog`]) before the answer.
//!
//! Bounds: an agent may have at most [`ApprovalLimits::per_agent`]
//! approvals waiting, a session [`ApprovalLimits::per_session`]; a pending
//! approval stops
//! counting the moment it expires. The ledger keeps at most
//! [`MAX_APPROVALS`]: finished approvals are forgotten an hour after they
//! expire, or sooner, oldest first, to make room; open ones never are.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use super::approval::{
    Approval, ApprovalError, ApprovalLimits, ApprovalState, ApprovalStatus, ApprovalStore, Binding,
    MAX_APPROVALS, Shown, new_id, person,
};
use super::approval_log::{Appended, ApprovalLog};
use super::clock::{Clock, SystemClock};
use crate::hash::FastMap;

/// How long a finished approval is kept after it expires, so that a
/// re-asked call still learns where it stands.
const KEEP_FINISHED_SECS: u64 = 3600;

/// The approvals of a server.
#[derive(Debug)]
pub struct Ledger {
    book: Mutex<Book>,
    ttl: Duration,
    limits: ApprovalLimits,
    clock: Arc<dyn Clock>,
}

/// The approvals and their indexes, under the ledger's lock.
#[derive(Debug, Default)]
struct Book {
    approvals: FastMap<String, Approval>,
    /// Each approval's place in the indexes: its expiry, then the order it was set in.
    keys: FastMap<String, Key>,
    next: u64,
    /// Every approval, by expiry: finished ones are forgotten from the front.
    by_expiry: BTreeMap<Key, String>,
    /// Approvals counted as pending, by expiry: they stop counting when they expire.
    pending: BTreeMap<Key, String>,
    pending_per_agent: FastMap<String, usize>,
    pending_per_session: FastMap<(String, String), usize>,
    /// Approvals that expired while pending, since the ledger was opened.
    expired: u64,
    /// Open approvals (pending or granted), by the digest of their binding.
    open: FastMap<[u8; 32], String>,
    log: Option<ApprovalLog>,
}

/// An index key: expiry (seconds since the epoch), then a sequence number.
type Key = (u64, u64);

impl Book {
    /// Puts `approval` in place of whatever had its id (`None`: removes
    /// it), keeping every index right.
    fn set(&mut self, id: &str, approval: Option<Approval>, now: u64) {
        if let (Some(old), Some(key)) = (self.approvals.remove(id), self.keys.remove(id)) {
            self.by_expiry.remove(&key);
            if self.pending.remove(&key).is_some() {
                self.uncount(&old.binding);
            }
            let digest = old.binding.digest();
            if self.open.get(&digest).is_some_and(|open| open == id) {
                self.open.remove(&digest);
            }
        }
        let Some(approval) = approval else { return };
        self.index_open(&approval, now);
        self.next += 1;
        let key = (approval.expires_at, self.next);
        self.keys.insert(approval.id.clone(), key);
        self.by_expiry.insert(key, approval.id.clone());
        if approval.status(now) == ApprovalStatus::Pending {
            self.pending.insert(key, approval.id.clone());
            *self.pending_per_agent.entry(approval.binding.agent.clone()).or_default() += 1;
            if let Some(session) = &approval.binding.session {
                let key = (approval.binding.agent.clone(), session.clone());
                *self.pending_per_session.entry(key).or_default() += 1;
            }
        }
        self.approvals.insert(approval.id.clone(), approval);
    }

    /// Indexes an approval that is open now (pending, or granted and
    /// unused, and unexpired) by its call — unless another open approval of
    /// the same call is there and should win: a granted one always, a
    /// pending one over a pending one. (Loading a log or an import may set
    /// approvals in any order.)
    fn index_open(&mut self, approval: &Approval, now: u64) {
        let status = approval.status(now);
        if !matches!(status, ApprovalStatus::Pending | ApprovalStatus::Granted) {
            return;
        }
        let digest = approval.binding.digest();
        let other = self.open.get(&digest).filter(|other| **other != approval.id);
        let keep =
            other.and_then(|other| self.approvals.get(other)).is_some_and(|other| match other.status(now) {
                ApprovalStatus::Granted => true,
                ApprovalStatus::Pending => status == ApprovalStatus::Pending,
                _ => false,
            });
        if !keep {
            self.open.insert(digest, approval.id.clone());
        }
    }

    fn uncount(&mut self, binding: &Binding) {
        fn down<K: std::hash::Hash + Eq>(map: &mut FastMap<K, usize>, key: K) {
            if let Some(count) = map.get_mut(&key) {
                *count -= 1;
                if *count == 0 {
                    map.remove(&key);
                }
            }
        }
        down(&mut self.pending_per_agent, binding.agent.clone());
        if let Some(session) = &binding.session {
            down(&mut self.pending_per_session, (binding.agent.clone(), session.clone()));
        }
    }

    /// Stops counting the pending approvals that have expired, and forgets
    /// the approvals that expired more than an hour ago.
    fn tidy(&mut self, now: u64) {
        while let Some(entry) = self.pending.first_entry().filter(|e| e.key().0 <= now) {
            let id = entry.remove();
            self.expired += 1;
            if let Some(binding) = self.approvals.get(&id).map(|a| a.binding.clone()) {
                self.uncount(&binding);
            }
        }
        let horizon = now.saturating_sub(KEEP_FINISHED_SECS);
        while let Some(id) =
            self.by_expiry.first_key_value().filter(|(key, _)| key.0 <= horizon).map(|(_, id)| id.clone())
        {
            self.set(&id, None, now);
        }
    }

    /// Room for one more approval of `binding`'s call, or why not.
    fn room_for(&mut self, binding: &Binding, now: u64, limits: ApprovalLimits) -> Result<(), ApprovalError> {
        let agent = self.pending_per_agent.get(&binding.agent).copied().unwrap_or(0);
        if agent >= limits.per_agent {
            return Err(ApprovalError::TooMany("the agent"));
        }
        if let Some(session) = &binding.session {
            let key = (binding.agent.clone(), session.clone());
            if self.pending_per_session.get(&key).copied().unwrap_or(0) >= limits.per_session {
                return Err(ApprovalError::TooMany("the session"));
            }
        }
        // Forget finished approvals, oldest first, until one fits.
        while self.approvals.len() >= MAX_APPROVALS {
            match self.by_expiry.first_key_value().filter(|(key, _)| key.0 <= now).map(|(_, id)| id.clone()) {
                Some(id) => self.set(&id, None, now),
                None => return Err(ApprovalError::TooMany("the server")),
            }
        }
        Ok(())
    }

    /// Rewrites the log from memory (best effort: if it fails, the next
    /// change tries again, the log being poisoned).
    fn rewrite(&mut self) {
        let Some(log) = self.log.as_mut() else { return };
        let live: Vec<&Approval> = self.approvals.values().collect();
        if let Err(error) = log.rewrite(&live).and_then(|ticket| ticket.wait_durable()) {
            tracing::error!(%error, "the approvals cannot be rewritten; the next change tries again");
        }
    }

    /// Saves the approval with `id` as it now stands: appended to the log,
    /// or the whole ledger rewritten when the log needs it. `None` without
    /// a log.
    fn save(&mut self, id: &str) -> Option<std::io::Result<Appended>> {
        let log = self.log.as_mut()?;
        if log.needs_rewrite(self.approvals.len()) {
            let live: Vec<&Approval> = self.approvals.values().collect();
            return Some(log.rewrite(&live));
        }
        let approval = self.approvals.get(id)?;
        Some(log.append(approval))
    }
}

impl Ledger {
    /// A ledger kept in memory; approvals expire after `ttl`.
    pub fn in_memory(ttl: Duration) -> Ledger {
        Ledger::with_clock(ttl, Arc::new(SystemClock))
    }

    /// A ledger kept in memory, on `clock`, with the default limits.
    pub fn with_clock(ttl: Duration, clock: Arc<dyn Clock>) -> Ledger {
        Ledger { book: Mutex::new(Book::default()), ttl, limits: ApprovalLimits::default(), clock }
    }

    /// The same ledger within `limits`.
    pub fn within(self, limits: ApprovalLimits) -> Ledger {
        Ledger { limits, ..self }
    }

    /// A ledger saved in the log `file` (read if it exists), on `clock`.
    pub fn persistent(file: &Path, ttl: Duration, clock: Arc<dyn Clock>) -> std::io::Result<Ledger> {
        let (log, approvals) = ApprovalLog::open(file)?;
        let now = clock.now_secs();
        let mut book = Book::default();
        for approval in approvals {
            let id = approval.id.clone();
            book.set(&id, Some(approval), now);
        }
        book.tidy(now);
        book.log = Some(log);
        Ok(Ledger { book: Mutex::new(book), ttl, limits: ApprovalLimits::default(), clock })
    }

    /// Takes in approvals kept elsewhere (an earlier version's file), an
    /// approval already here winning, and saves the result.
    pub fn import(&self, approvals: Vec<Approval>) -> std::io::Result<()> {
        let mut book = self.lock();
        let now = self.clock.now_secs();
        for approval in approvals {
            if !book.approvals.contains_key(&approval.id) {
                let id = approval.id.clone();
                book.set(&id, Some(approval), now);
            }
        }
        book.tidy(now);
        let live: Vec<Approval> = book.approvals.values().cloned().collect();
        match book.log.as_mut() {
            Some(log) => log.rewrite(&live.iter().collect::<Vec<_>>())?.wait_durable(),
            None => Ok(()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Book> {
        self.book.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Makes a change: `change` returns its answer, the id of the approval
    /// it changed and what that id held before. The change is saved
    /// (waiting for the disk outside the lock, so that concurrent changes
    /// share one sync) before the answer; one that cannot be saved is
    /// undone.
    fn change<T>(
        &self,
        change: impl FnOnce(&mut Book, u64) -> Result<Changed<T>, ApprovalError>,
    ) -> Result<T, ApprovalError> {
        let (changed, after, ticket) = {
            let mut book = self.lock();
            let now = self.clock.now_secs();
            book.tidy(now);
            let changed = change(&mut book, now)?;
            let after = book.log.as_ref().and_then(|_| book.approvals.get(&changed.id).cloned());
            match book.save(&changed.id) {
                None => return Ok(changed.answer),
                Some(Ok(ticket)) => (changed, after, ticket),
                Some(Err(error)) => {
                    book.set(&changed.id, changed.before, now);
                    return Err(ApprovalError::Storage(error.to_string()));
                }
            }
        };
        match ticket.wait_durable() {
            Ok(()) => Ok(changed.answer),
            Err(error) => {
                let mut book = self.lock();
                // Undo, unless a later change already replaced it, and
                // rewrite the file from memory at once: the line may be on
                // disk after all, and must not come back after a crash.
                if book.approvals.get(&changed.id) == after.as_ref() {
                    book.set(&changed.id, changed.before, self.clock.now_secs());
                }
                book.rewrite();
                Err(ApprovalError::Storage(error.to_string()))
            }
        }
    }
}

/// What a change did: its answer, the approval it changed, and what that
/// approval was before (`None`: it is new).
struct Changed<T> {
    answer: T,
    id: String,
    before: Option<Approval>,
}

impl ApprovalStore for Ledger {
    fn open(&self, binding: Binding, shown: Shown, quorum: u32) -> Result<Approval, ApprovalError> {
        let id = new_id()?;
        self.change(|book, now| {
            book.room_for(&binding, now, self.limits)?;
            let approval = Approval::pending(id.clone(), binding, shown, quorum, now, self.ttl);
            book.set(&id, Some(approval.clone()), now);
            Ok(Changed { answer: approval, id, before: None })
        })
    }

    fn decide(
        &self,
        id: &str,
        approver: Option<&str>,
        by: &str,
        grant: bool,
    ) -> Result<Approval, ApprovalError> {
        self.change(|book, now| {
            let before = book.approvals.get(id).cloned().ok_or(ApprovalError::Unknown)?;
            if let Some(expected) = before.approver.as_ref().filter(|a| Some(a.as_str()) != approver) {
                return Err(ApprovalError::WrongApprover { expected: expected.clone() });
            }
            match before.status(now) {
                ApprovalStatus::Pending => {}
                ApprovalStatus::Expired => return Err(ApprovalError::Expired),
                ApprovalStatus::Used => return Err(ApprovalError::Used),
                status => return Err(ApprovalError::AlreadyDecided(status)),
            }
            let mut decided = before.clone();
            if grant && before.quorum > 1 {
                let granted = before.grants.len();
                if before.grants.iter().any(|earlier| person(earlier) == person(by)) {
                    return Err(ApprovalError::SamePerson { granted, quorum: before.quorum });
                }
                decided.grants.push(by.to_owned());
                if decided.grants.len() >= before.quorum as usize {
                    decided.state = ApprovalState::Granted { by: decided.grants.join(", ") };
                }
            } else {
                let by = by.to_owned();
                decided.state =
                    if grant { ApprovalState::Granted { by } } else { ApprovalState::Rejected { by } };
            }
            book.set(id, Some(decided.clone()), now);
            Ok(Changed { answer: decided, id: id.to_owned(), before: Some(before) })
        })
    }

    fn redeem(&self, id: &str, call: &Binding) -> Result<(), ApprovalError> {
        self.change(|book, now| {
            let before = book.approvals.get(id).cloned().ok_or(ApprovalError::Unknown)?;
            match before.status(now) {
                ApprovalStatus::Granted => {}
                ApprovalStatus::Pending => return Err(ApprovalError::Pending),
                ApprovalStatus::Rejected => return Err(ApprovalError::Rejected),
                ApprovalStatus::Expired => return Err(ApprovalError::Expired),
                ApprovalStatus::Used => return Err(ApprovalError::Used),
            }
            if let Some(what) = before.binding.mismatch(call) {
                return Err(ApprovalError::Mismatch(what));
            }
            book.set(id, Some(Approval { state: ApprovalState::Used, ..before.clone() }), now);
            Ok(Changed { answer: (), id: id.to_owned(), before: Some(before) })
        })
    }

    fn find(&self, call: &Binding) -> Option<(String, ApprovalStatus)> {
        let book = self.lock();
        let id = book.open.get(&call.digest())?;
        let approval = book.approvals.get(id)?;
        match approval.status(self.clock.now_secs()) {
            status @ (ApprovalStatus::Pending | ApprovalStatus::Granted) if approval.binding == *call => {
                Some((id.clone(), status))
            }
            _ => None,
        }
    }

    fn pending(&self) -> Vec<Approval> {
        let mut book = self.lock();
        book.tidy(self.clock.now_secs());
        // `pending` is ordered by expiry already.
        book.pending.values().filter_map(|id| book.approvals.get(id).cloned()).collect()
    }

    fn pending_count(&self) -> usize {
        let mut book = self.lock();
        book.tidy(self.clock.now_secs());
        book.pending.len()
    }

    fn expired_count(&self) -> u64 {
        let mut book = self.lock();
        book.tidy(self.clock.now_secs());
        book.expired
    }

    fn get(&self, id: &str) -> Option<Approval> {
        self.lock().approvals.get(id).cloned()
    }

    fn status(&self, id: &str) -> Option<ApprovalStatus> {
        self.lock().approvals.get(id).map(|approval| approval.status(self.clock.now_secs()))
    }

    fn may_block(&self) -> bool {
        self.lock().log.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::approval::Call;

    fn approval(id: &str, expires_at: u64, state: ApprovalState) -> Approval {
        let args = serde_json::Map::new();
        let call = Call {
            agent: "bot",
            session: Some("s"),
            tool: "pay",
            args: &args,
            principal: None,
            context: None,
        };
        let binding = Binding::new(call, "bot.approvalGates.pay", Some("user"), "sha256:p");
        Approval {
            id: id.into(),
            approver: binding.approver.clone(),
            binding,
            shown: Shown::default(),
            quorum: 1,
            grants: Vec::new(),
            opened_at: 0,
            expires_at,
            state,
        }
    }

    #[test]
    fn four_eyes_needs_two_different_people_and_one_rejection_ends_it() {
        let ledger = Ledger::in_memory(Duration::from_secs(60));
        let open = |session: &str| {
            let args = serde_json::Map::new();
            let call = crate::state::approval::Call {
                agent: "bot",
                session: Some(session),
                tool: "pay",
                args: &args,
                principal: None,
                context: None,
            };
            let binding = Binding::new(call, "bot.approvalGates.pay", Some("finance"), "sha256:p");
            ledger.open(binding, Shown::default(), 2).expect("opens").id
        };
        let id = open("s");
        let first = ledger.decide(&id, Some("finance"), "alice (uid 1000)", true).expect("first grant");
        assert_eq!((first.state, first.grants.len()), (ApprovalState::Pending, 1));
        let again = ledger.decide(&id, Some("finance"), "alice (console)", true);
        assert_eq!(
            again.map(|a| a.state),
            Err(ApprovalError::SamePerson { granted: 1, quorum: 2 }),
            "the same person in the console"
        );
        let second = ledger.decide(&id, Some("finance"), "bob (console)", true).expect("second grant");
        assert_eq!(second.status(0), ApprovalStatus::Granted);
        assert_eq!(
            second.state,
            ApprovalState::Granted { by: String::from("alice (uid 1000), bob (console)") }
        );

        let id = open("t");
        ledger.decide(&id, Some("finance"), "alice (uid 1000)", true).expect("first grant");
        let rejected = ledger.decide(&id, Some("finance"), "carol (console)", false).expect("rejected");
        assert_eq!(rejected.status(0), ApprovalStatus::Rejected);
    }

    #[test]
    fn a_call_finds_its_granted_approval_whatever_order_the_log_holds_them_in() {
        let now = 100;
        let expired = approval("apr_old", 50, ApprovalState::Pending);
        let granted = approval("apr_new", 200, ApprovalState::Granted { by: "user".into() });
        let pending = approval("apr_other", 200, ApprovalState::Pending);
        for order in [
            [&expired, &granted, &pending],
            [&granted, &expired, &pending],
            [&pending, &granted, &expired],
            [&granted, &pending, &expired],
        ] {
            let mut book = Book::default();
            for approval in order {
                book.set(&approval.id, Some(approval.clone()), now);
            }
            let id = book.open.get(&expired.binding.digest()).cloned();
            assert_eq!(id.as_deref(), Some("apr_new"), "{:?}", order.map(|a| &a.id));
        }
    }
}
