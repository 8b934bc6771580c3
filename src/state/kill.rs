//! The kill switch: an operator stops everything, an agent, or one session
//! of an agent, and every call in that scope is denied until revived.
//!
//! Kills are few and read on every decision, so the set is an immutable
//! snapshot behind `ArcSwap` (a lock-free read on the hot path); a kill or a
//! revival writes a new snapshot and, with a state directory, persists it
//! (write to a temporary file, fsync, rename) before it is acknowledged.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use arc_swap::ArcSwap;
use serde::{Deserialize, Serialize};

/// What a kill covers.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "scope")]
pub enum KillScope {
    /// Every agent and session.
    All,
    /// Every session of one agent.
    Agent {
        /// The agent.
        agent: String,
    },
    /// One session of one agent.
    Session {
        /// The agent.
        agent: String,
        /// The session id.
        session: String,
    },
}

/// Why and when a scope was killed, and by whom.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Kill {
    /// What the operator (or the trip) gave as the reason.
    pub reason: String,
    /// Who killed it: an operator's name or uid, or `toolgate` for a trip.
    pub by: String,
    /// When (RFC 3339).
    pub at: String,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct KillSet {
    kills: Vec<(KillScope, Kill)>,
}

impl KillSet {
    fn find(&self, agent: &str, session: Option<&str>) -> Option<&(KillScope, Kill)> {
        self.kills.iter().find(|(scope, _)| match scope {
            KillScope::All => true,
            KillScope::Agent { agent: a } => a == agent,
            KillScope::Session { agent: a, session: s } => a == agent && Some(s.as_str()) == session,
        })
    }
}

/// Where kills live. Read on every decision: [`KillStore::is_empty`] must
/// be cheap (one atomic load), and [`KillStore::check`] lock-free.
pub trait KillStore: Send + Sync {
    /// Whether anything is killed (the hot path's first test).
    fn is_empty(&self) -> bool;

    /// The kill that stops this call, if any (`all` first, then the agent,
    /// then the session, in the order they were set).
    fn check(&self, agent: &str, session: Option<&str>) -> Option<Arc<(KillScope, Kill)>>;

    /// Kills a scope (replacing an earlier kill of the same scope). Returns
    /// once the kill is in force and, if persistent, saved. If saving fails
    /// the kill is in force all the same, and the error says so.
    fn kill(&self, scope: KillScope, kill: Kill) -> std::io::Result<()>;

    /// Revives a scope; returns whether it was killed. A revival that
    /// cannot be saved does not take effect.
    fn revive(&self, scope: &KillScope) -> std::io::Result<bool>;

    /// Every kill in force.
    fn list(&self) -> Vec<(KillScope, Kill)>;

    /// Whether a change may wait on I/O (see [`super::SessionStore::may_block`]).
    fn may_block(&self) -> bool {
        false
    }

    /// Whether the kills in force are known to be current (what `health`
    /// reports): a shared store that cannot be read says so.
    fn condition(&self) -> super::Condition {
        super::Condition::Ok
    }
}

/// The kill switch: kills in memory, optionally saved to a file.
#[derive(Debug)]
pub struct KillSwitch {
    set: ArcSwap<KillSet>,
    /// Whether the set holds any kill: one relaxed load on every decision
    /// instead of a snapshot load. Set before a kill is stored, cleared
    /// after a revival that empties the set, so it never says "none" while
    /// a kill is in force.
    any: std::sync::atomic::AtomicBool,
    file: Option<PathBuf>,
    writes: std::sync::Mutex<()>,
}

impl KillSwitch {
    /// A kill switch kept in memory only.
    pub fn in_memory() -> KillSwitch {
        KillSwitch {
            set: ArcSwap::from_pointee(KillSet::default()),
            any: std::sync::atomic::AtomicBool::new(false),
            file: None,
            writes: std::sync::Mutex::new(()),
        }
    }

    /// A kill switch persisted in `file` (loaded if it exists).
    pub fn persistent(file: PathBuf) -> std::io::Result<KillSwitch> {
        let set: KillSet = super::atomic_file::read_json(&file)?.unwrap_or_default();
        let any = std::sync::atomic::AtomicBool::new(!set.kills.is_empty());
        Ok(KillSwitch {
            set: ArcSwap::from_pointee(set),
            any,
            file: Some(file),
            writes: std::sync::Mutex::new(()),
        })
    }

    /// Replaces every kill at once, in order (a shared store's snapshot,
    /// read again). Never says "none" while a kill of either set is in force.
    pub fn replace(&self, kills: Vec<(KillScope, Kill)>) {
        let _serial = self.writes.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let empty = kills.is_empty();
        if !empty {
            self.any.store(true, std::sync::atomic::Ordering::Release);
        }
        self.set.store(Arc::new(KillSet { kills }));
        if empty {
            self.any.store(false, std::sync::atomic::Ordering::Release);
        }
    }

    /// Applies a change. A kill takes effect in memory first and is then
    /// saved: if saving fails, it is in force all the same (and the error is
    /// reported). A revival is saved first and takes effect only once saved,
    /// so a failure leaves the scope killed. Either way, failing errs on the
    /// side of denying.
    fn update(&self, change: impl FnOnce(&mut KillSet), widens: bool) -> std::io::Result<()> {
        let _serial = self.writes.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut next = KillSet::clone(&self.set.load());
        change(&mut next);
        let next = Arc::new(next);
        if !widens {
            if !next.kills.is_empty() {
                self.any.store(true, std::sync::atomic::Ordering::Release);
            }
            self.set.store(Arc::clone(&next));
        }
        if let Some(file) = &self.file {
            persist(file, &next)?;
        }
        let empty = next.kills.is_empty();
        self.set.store(next);
        if empty {
            self.any.store(false, std::sync::atomic::Ordering::Release);
        }
        Ok(())
    }
}

impl KillStore for KillSwitch {
    fn is_empty(&self) -> bool {
        !self.any.load(std::sync::atomic::Ordering::Acquire)
    }

    fn check(&self, agent: &str, session: Option<&str>) -> Option<Arc<(KillScope, Kill)>> {
        let set = self.set.load();
        set.find(agent, session).map(|found| Arc::new(found.clone()))
    }

    fn kill(&self, scope: KillScope, kill: Kill) -> std::io::Result<()> {
        self.update(
            |set| {
                set.kills.retain(|(s, _)| *s != scope);
                set.kills.push((scope, kill));
            },
            false,
        )
    }

    fn revive(&self, scope: &KillScope) -> std::io::Result<bool> {
        let mut found = false;
        self.update(
            |set| {
                let before = set.kills.len();
                set.kills.retain(|(s, _)| s != scope);
                found = set.kills.len() != before;
            },
            true,
        )?;
        Ok(found)
    }

    fn list(&self) -> Vec<(KillScope, Kill)> {
        self.set.load().kills.clone()
    }

    fn may_block(&self) -> bool {
        self.file.is_some()
    }
}

/// Writes the set to `file` atomically and durably.
fn persist(file: &std::path::Path, set: &KillSet) -> std::io::Result<()> {
    let bytes = serde_json::to_vec_pretty(set).map_err(std::io::Error::other)?;
    super::atomic_file::replace(file, &bytes)
}

/// Counts kills by scope kind, for `status`.
pub fn summary(kills: &[(KillScope, Kill)]) -> BTreeMap<&'static str, usize> {
    let mut counts = BTreeMap::new();
    for (scope, _) in kills {
        let kind = match scope {
            KillScope::All => "all",
            KillScope::Agent { .. } => "agents",
            KillScope::Session { .. } => "sessions",
        };
        *counts.entry(kind).or_insert(0) += 1;
    }
    counts
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::KillStore;

    fn kill(reason: &str) -> Kill {
        Kill { reason: reason.into(), by: "test".into(), at: "2026-11-21T12:00:00Z".into() }
    }

    #[test]
    fn scopes_cover_what_they_name_and_survive_a_restart() {
        let dir = std::env::temp_dir().join(format!("toolgate-kill-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("dir");
        let file = dir.join("kills.json");
        let switch = KillSwitch::persistent(file.clone()).expect("open");
        assert!(switch.check("bot", Some("s1")).is_none());
        switch
            .kill(KillScope::Session { agent: "bot".into(), session: "s1".into() }, kill("runaway"))
            .expect("kill");
        assert!(switch.check("bot", Some("s1")).is_some());
        assert!(switch.check("bot", Some("s2")).is_none());
        assert!(switch.check("bot", None).is_none());
        switch.kill(KillScope::Agent { agent: "other".into() }, kill("compromised")).expect("kill");
        assert!(switch.check("other", None).is_some());
        let reopened = KillSwitch::persistent(file).expect("reopen");
        assert_eq!(reopened.list().len(), 2);
        assert!(reopened.revive(&KillScope::Agent { agent: "other".into() }).expect("revive"));
        assert!(!reopened.revive(&KillScope::Agent { agent: "other".into() }).expect("revive"));
        reopened.kill(KillScope::All, kill("incident")).expect("kill");
        assert_eq!(reopened.check("anyone", None).map(|k| k.0.clone()), Some(KillScope::All));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
