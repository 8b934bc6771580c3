//! Tools that changed since their catalog was reviewed, under a catalog
//! that says `onDrift: deny`: a proxy reports a server's listing, the
//! service records the changed tools here, and every decision asks here
//! first (one atomic load while nothing has drifted). Kept in memory, for
//! the policy they were found under: a reload (a catalog fetched and
//! reviewed again) starts afresh, and so does a restart, until the next
//! listing.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, PoisonError};

/// The drifted tools.
#[derive(Debug, Default)]
pub struct DriftedTools {
    any: AtomicBool,
    found: Mutex<Found>,
}

#[derive(Debug, Default)]
struct Found {
    /// The policy hash the tools were found under.
    policy: String,
    /// By server (as the catalog names it): the changed tools, by the names
    /// policies use.
    by_server: HashMap<Option<String>, HashSet<String>>,
}

impl DriftedTools {
    /// Whether no tool has drifted (the decision path's first question).
    pub fn is_empty(&self) -> bool {
        !self.any.load(Ordering::Acquire)
    }

    /// Whether `tool` has drifted, under `policy`.
    pub fn contains(&self, policy: &str, tool: &str) -> bool {
        let found = self.found.lock().unwrap_or_else(PoisonError::into_inner);
        found.policy == policy && found.by_server.values().any(|tools| tools.contains(tool))
    }

    /// What a server's latest complete listing showed, under `policy`:
    /// these tools drifted, and no other of that server's.
    pub fn replace(&self, policy: &str, server: Option<&str>, tools: HashSet<String>) {
        let mut found = self.found.lock().unwrap_or_else(PoisonError::into_inner);
        if found.policy != policy {
            *found = Found { policy: policy.to_owned(), by_server: HashMap::new() };
        }
        found.by_server.insert(server.map(str::to_owned), tools);
        let any = found.by_server.values().any(|tools| !tools.is_empty());
        self.any.store(any, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drift_is_per_server_and_per_policy() {
        let drifted = DriftedTools::default();
        assert!(drifted.is_empty());
        drifted.replace("p1", Some("fs"), HashSet::from([String::from("fs/write")]));
        assert!(!drifted.is_empty() && drifted.contains("p1", "fs/write"));
        assert!(!drifted.contains("p2", "fs/write"), "another policy: reviewed again");
        drifted.replace("p1", Some("gh"), HashSet::new());
        assert!(drifted.contains("p1", "fs/write"), "another server's listing leaves fs alone");
        drifted.replace("p1", Some("fs"), HashSet::new());
        assert!(drifted.is_empty(), "the server lists its catalog's tools again");
        drifted.replace("p1", Some("fs"), HashSet::from([String::from("fs/write")]));
        drifted.replace("p2", Some("gh"), HashSet::new());
        assert!(drifted.is_empty(), "a new policy starts afresh");
    }
}
