//! Human approvals for gated calls.
//!
//! A `require_approval` answer from the server carries an approval id. The
//! approval is bound to the agent, the session, the tool, a digest of the
//! exact arguments and the policy that asked for it, and it expires. An
//! approver grants or rejects it once (on the admin socket, never the
//! decision socket); the gateway then asks again with the id and gets an
//! allow exactly once, and only for the same call.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

/// The most approvals kept at once (pending, granted, or finished within the
/// last hour): a client cannot make the ledger grow without bound.
pub const MAX_APPROVALS: usize = 100_000;

/// What an approval allows: one call, exactly as it was asked for.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Binding {
    /// The agent.
    pub agent: String,
    /// The session, if the call named one.
    pub session: Option<String>,
    /// The tool.
    pub tool: String,
    /// `sha256:<hex>` of the arguments in canonical form.
    pub args_digest: String,
    /// The policy hash the gate was decided under.
    pub policy: String,
}

/// Where an approval stands.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "state")]
pub enum State {
    /// Waiting for an approver.
    Pending,
    /// Granted, not used yet.
    Granted {
        /// Who granted it.
        by: String,
    },
    /// Rejected.
    Rejected {
        /// Who rejected it.
        by: String,
    },
    /// Granted and used for its call.
    Used,
}

/// One approval.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Approval {
    /// The id the gateway and the approver use.
    pub id: String,
    /// The call it is for.
    pub binding: Binding,
    /// Who must approve (from the gate's `approver`), if the gate names one.
    pub approver: Option<String>,
    /// Seconds since the Unix epoch after which it is void.
    pub expires_at: u64,
    /// Where it stands.
    #[serde(flatten)]
    pub state: State,
}

/// Why an approval could not be granted, rejected or redeemed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ApprovalError {
    /// No approval has this id.
    Unknown,
    /// It expired.
    Expired,
    /// It was already granted or rejected (for grant and reject), or is
    /// not granted (for redeem: still pending, or rejected).
    WrongState(&'static str),
    /// It was already used for its call.
    Used,
    /// Someone other than the named approver tried to decide it.
    WrongApprover {
        /// Who must approve.
        expected: String,
    },
    /// The call differs from the approved one (another agent, session,
    /// tool, policy, or other arguments).
    Mismatch(&'static str),
    /// The ledger could not be saved.
    Storage(String),
    /// Too many approvals are open; the call is denied until some finish.
    TooMany,
}

impl std::fmt::Display for ApprovalError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ApprovalError::Unknown => f.write_str("no such approval"),
            ApprovalError::Expired => f.write_str("the approval has expired"),
            ApprovalError::WrongState(state) => write!(f, "the approval is {state}"),
            ApprovalError::Used => f.write_str("the approval was already used"),
            ApprovalError::WrongApprover { expected } => {
                write!(f, "only `{expected}` may decide this approval")
            }
            ApprovalError::Mismatch(what) => write!(f, "the call differs from the approved one ({what})"),
            ApprovalError::Storage(error) => write!(f, "the approvals cannot be saved: {error}"),
            ApprovalError::TooMany => {
                write!(f, "more than {MAX_APPROVALS} approvals are open; denied until some finish")
            }
        }
    }
}

/// `sha256:<hex>` of the arguments, serialised with object keys sorted at
/// every level, so that the same arguments in any key order digest alike.
/// The serialisation streams into the hash; nothing is cloned.
pub fn args_digest(args: &Map<String, Value>) -> String {
    /// Feeds what is written to it into the hash.
    struct Hashing(Sha256);
    impl std::io::Write for Hashing {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.update(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    fn object(map: &Map<String, Value>, out: &mut Hashing) {
        let mut entries: Vec<(&String, &Value)> = map.iter().collect();
        entries.sort_unstable_by(|a, b| a.0.cmp(b.0));
        out.0.update(b"{");
        for (i, (key, value)) in entries.into_iter().enumerate() {
            if i > 0 {
                out.0.update(b",");
            }
            // Writing a string or a number into a hash cannot fail.
            let _ = serde_json::to_writer(&mut *out, key);
            out.0.update(b":");
            canonical(value, out);
        }
        out.0.update(b"}");
    }
    fn canonical(value: &Value, out: &mut Hashing) {
        match value {
            Value::Object(map) => object(map, out),
            Value::Array(items) => {
                out.0.update(b"[");
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.0.update(b",");
                    }
                    canonical(item, out);
                }
                out.0.update(b"]");
            }
            scalar => {
                let _ = serde_json::to_writer(&mut *out, scalar);
            }
        }
    }
    let mut hashing = Hashing(Sha256::new());
    object(args, &mut hashing);
    crate::hash::sha256_text(hashing.0)
}

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

fn new_id() -> String {
    // 128 bits from the OS's random source (via the standard library's
    // randomly keyed hasher, seeded once per process and mixed with a counter
    // and the time), formatted as hex. Ids are bearer tokens only together
    // with the admin socket; they need to be unguessable, not secret.
    use std::hash::{BuildHasher, RandomState};
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    let a = RandomState::new().hash_one((n, nanos));
    let b = RandomState::new().hash_one((nanos, n, a));
    format!("apr_{a:016x}{b:016x}")
}

/// The approvals of a server: in memory, optionally saved to a file.
#[derive(Debug)]
pub struct Ledger {
    approvals: Mutex<HashMap<String, Approval>>,
    /// When finished approvals are next forgotten (seconds since the epoch).
    next_prune: std::sync::atomic::AtomicU64,
    file: Option<PathBuf>,
    ttl: Duration,
}

impl Ledger {
    /// A ledger kept in memory; approvals expire after `ttl`.
    pub fn in_memory(ttl: Duration) -> Ledger {
        Ledger { approvals: Mutex::new(HashMap::new()), next_prune: 0.into(), file: None, ttl }
    }

    /// A ledger saved in `file` (loaded if it exists).
    pub fn persistent(file: PathBuf, ttl: Duration) -> std::io::Result<Ledger> {
        let approvals: Vec<Approval> = crate::state::atomic_file::read_json(&file)?.unwrap_or_default();
        let approvals = approvals.into_iter().map(|a| (a.id.clone(), a)).collect();
        Ok(Ledger { approvals: Mutex::new(approvals), next_prune: 0.into(), file: Some(file), ttl })
    }

    /// Opens a pending approval for a gated call; returns it.
    pub fn open(&self, binding: Binding, approver: Option<String>) -> Result<Approval, ApprovalError> {
        let approval = Approval {
            id: new_id(),
            binding,
            approver,
            expires_at: now() + self.ttl.as_secs().max(1),
            state: State::Pending,
        };
        self.change(|approvals| {
            if approvals.len() >= MAX_APPROVALS {
                return Err(ApprovalError::TooMany);
            }
            approvals.insert(approval.id.clone(), approval.clone());
            Ok(())
        })?;
        Ok(approval)
    }

    /// Grants (`grant: true`) or rejects a pending approval as `by`.
    pub fn decide(&self, id: &str, by: &str, grant: bool) -> Result<Approval, ApprovalError> {
        self.change(|approvals| {
            let approval = approvals.get_mut(id).ok_or(ApprovalError::Unknown)?;
            if let Some(expected) = approval.approver.as_ref().filter(|a| a.as_str() != by) {
                return Err(ApprovalError::WrongApprover { expected: expected.clone() });
            }
            match approval.state {
                State::Pending if approval.expires_at <= now() => Err(ApprovalError::Expired),
                State::Pending => {
                    approval.state = if grant {
                        State::Granted { by: by.to_owned() }
                    } else {
                        State::Rejected { by: by.to_owned() }
                    };
                    Ok(approval.clone())
                }
                State::Used => Err(ApprovalError::Used),
                State::Granted { .. } => Err(ApprovalError::WrongState("already granted")),
                State::Rejected { .. } => Err(ApprovalError::WrongState("already rejected")),
            }
        })
    }

    /// Uses a granted approval for exactly the call it was granted for.
    pub fn redeem(&self, id: &str, call: &Binding) -> Result<(), ApprovalError> {
        self.change(|approvals| {
            let approval = approvals.get_mut(id).ok_or(ApprovalError::Unknown)?;
            match approval.state {
                State::Used => return Err(ApprovalError::Used),
                State::Pending => return Err(ApprovalError::WrongState("still pending")),
                State::Rejected { .. } => return Err(ApprovalError::WrongState("rejected")),
                State::Granted { .. } => {}
            }
            if approval.expires_at <= now() {
                return Err(ApprovalError::Expired);
            }
            let bound = &approval.binding;
            let mismatch = if bound.agent != call.agent {
                Some("agent")
            } else if bound.session != call.session {
                Some("session")
            } else if bound.tool != call.tool {
                Some("tool")
            } else if bound.args_digest != call.args_digest {
                Some("arguments")
            } else if bound.policy != call.policy {
                Some("policy")
            } else {
                None
            };
            if let Some(what) = mismatch {
                return Err(ApprovalError::Mismatch(what));
            }
            approval.state = State::Used;
            Ok(())
        })
    }

    /// Approvals waiting for a decision, oldest expiry first.
    pub fn pending(&self) -> Vec<Approval> {
        let approvals = self.approvals.lock().unwrap_or_else(PoisonError::into_inner);
        let now = now();
        let mut pending: Vec<Approval> =
            approvals.values().filter(|a| a.state == State::Pending && a.expires_at > now).cloned().collect();
        pending.sort_by_key(|a| a.expires_at);
        pending
    }

    /// Applies a change and, for a persistent ledger, saves the result
    /// before answering; a change that cannot be saved is undone. Finished
    /// approvals (used, rejected, expired) are forgotten an hour after expiry.
    fn change<T>(
        &self,
        f: impl FnOnce(&mut HashMap<String, Approval>) -> Result<T, ApprovalError>,
    ) -> Result<T, ApprovalError> {
        let mut approvals = self.approvals.lock().unwrap_or_else(PoisonError::into_inner);
        let before = self.file.as_ref().map(|_| approvals.clone());
        let result = f(&mut approvals)?;
        // Forgetting scans every approval: at most once a minute, not on
        // every change (which made opening approvals quadratic).
        let now = now();
        if now >= self.next_prune.load(std::sync::atomic::Ordering::Relaxed) {
            let horizon = now.saturating_sub(3600);
            approvals.retain(|_, a| a.expires_at > horizon);
            self.next_prune.store(now + 60, std::sync::atomic::Ordering::Relaxed);
        }
        if let (Some(file), Some(before)) = (&self.file, before) {
            let list: Vec<&Approval> = approvals.values().collect();
            if let Err(error) = save(file, &list) {
                *approvals = before;
                return Err(ApprovalError::Storage(error.to_string()));
            }
        }
        Ok(result)
    }
}

fn save(file: &std::path::Path, approvals: &[&Approval]) -> std::io::Result<()> {
    let bytes = serde_json::to_vec(approvals).map_err(std::io::Error::other)?;
    crate::state::atomic_file::replace(file, &bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn binding(args: Value) -> Binding {
        Binding {
            agent: "bot".into(),
            session: Some("s".into()),
            tool: "pay".into(),
            args_digest: args_digest(args.as_object().expect("object")),
            policy: "sha256:p".into(),
        }
    }

    #[test]
    fn an_approval_allows_its_call_once_and_nothing_else() {
        let ledger = Ledger::in_memory(Duration::from_secs(60));
        let call = binding(json!({"amount": 10, "to": {"iban": "X", "name": "Y"}}));
        let approval = ledger.open(call.clone(), Some("finance".into())).expect("open");
        assert_eq!(ledger.redeem(&approval.id, &call), Err(ApprovalError::WrongState("still pending")));
        assert!(matches!(
            ledger.decide(&approval.id, "mallory", true),
            Err(ApprovalError::WrongApprover { .. })
        ));
        ledger.decide(&approval.id, "finance", true).expect("grant");
        // The same arguments in another key order are the same call.
        let reordered = binding(json!({"to": {"name": "Y", "iban": "X"}, "amount": 10}));
        assert_eq!(reordered.args_digest, call.args_digest);
        let swapped = binding(json!({"amount": 10000, "to": {"iban": "X", "name": "Y"}}));
        assert_eq!(ledger.redeem(&approval.id, &swapped), Err(ApprovalError::Mismatch("arguments")));
        ledger.redeem(&approval.id, &reordered).expect("redeem");
        assert_eq!(ledger.redeem(&approval.id, &call), Err(ApprovalError::Used));
        assert_eq!(ledger.redeem("apr_nope", &call), Err(ApprovalError::Unknown));
        let rejected = ledger.open(call.clone(), None).expect("open");
        ledger.decide(&rejected.id, "anyone", false).expect("reject");
        assert_eq!(ledger.redeem(&rejected.id, &call), Err(ApprovalError::WrongState("rejected")));
        assert!(ledger.decide(&rejected.id, "anyone", true).is_err());
    }
}
