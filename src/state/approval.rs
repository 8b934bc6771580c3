//! Human approvals for gated calls.
//!
//! A `require_approval` answer carries an approval id. The approval is
//! bound to the agent, the session, the tool, a digest of the exact
//! arguments and the policy that asked for it, and it expires. An approver
//! grants or rejects it once (on the admin socket, never the decision
//! socket); the gateway then asks again with the id and gets an allow
//! exactly once, and only for the same call.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

/// The most approvals kept at once (open, or finished within the last
/// hour): a client cannot make the ledger grow without bound. At the bound,
/// finished approvals are forgotten first; a new one is refused only when
/// this many are open.
pub const MAX_APPROVALS: usize = 100_000;
/// The most approvals one agent may have waiting for an approver, by default.
pub const MAX_PENDING_PER_AGENT: usize = 1_000;
/// The most approvals one session of an agent may have waiting, by default.
pub const MAX_PENDING_PER_SESSION: usize = 32;

/// How many approvals may wait for an approver at once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ApprovalLimits {
    /// For one agent.
    pub per_agent: usize,
    /// For one session of an agent.
    pub per_session: usize,
}

impl Default for ApprovalLimits {
    fn default() -> Self {
        ApprovalLimits { per_agent: MAX_PENDING_PER_AGENT, per_session: MAX_PENDING_PER_SESSION }
    }
}

/// How long an approval stays valid unless configured otherwise.
pub const DEFAULT_APPROVAL_TTL: Duration = Duration::from_secs(15 * 60);

/// What an approval allows: one call, exactly as it was asked for, through
/// the gate that asked. Everything the gate's decision depended on is
/// bound: who calls, which tool, the arguments, whom the agent acts for
/// and what the gateway said about the call, the gate and its approver,
/// and the policy.
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
    /// `sha256:<hex>` of `principal` in canonical form (`null` if absent).
    /// Approvals saved before it was bound lack it, and match no call.
    #[serde(default)]
    pub principal_digest: String,
    /// `sha256:<hex>` of `context` in canonical form (`null` if absent).
    #[serde(default)]
    pub context_digest: String,
    /// The rule id of the gate that required the approval.
    #[serde(default)]
    pub gate: String,
    /// Who that gate says must approve, if it names someone.
    #[serde(default)]
    pub approver: Option<String>,
    /// The policy hash the gate was decided under.
    pub policy: String,
}

/// A call as an approval is bound to it.
#[derive(Clone, Copy, Debug)]
pub struct Call<'a> {
    /// The agent.
    pub agent: &'a str,
    /// The session, if the call names one.
    pub session: Option<&'a str>,
    /// The tool.
    pub tool: &'a str,
    /// The arguments.
    pub args: &'a Map<String, Value>,
    /// Whom the agent acts for.
    pub principal: Option<&'a Value>,
    /// What the gateway says about the call.
    pub context: Option<&'a Value>,
}

impl Binding {
    /// The binding of `call` through the gate `gate` (its rule id), whose
    /// approver is `approver`, decided under `policy`.
    pub fn new(call: Call<'_>, gate: &str, approver: Option<&str>, policy: &str) -> Binding {
        let digest = |value: Option<&Value>| canonical_digest(value.unwrap_or(&Value::Null));
        Binding {
            agent: call.agent.to_owned(),
            session: call.session.map(str::to_owned),
            tool: call.tool.to_owned(),
            args_digest: args_digest(call.args),
            principal_digest: digest(call.principal),
            context_digest: digest(call.context),
            gate: gate.to_owned(),
            approver: approver.map(str::to_owned),
            policy: policy.to_owned(),
        }
    }

    /// A digest of every bound field: equal for exactly the same call
    /// through the same gate under the same policy.
    pub fn digest(&self) -> [u8; 32] {
        use sha2::Digest;
        let mut hasher = sha2::Sha256::new();
        // Each field is tagged present or absent, then length-prefixed: no
        // session text can stand for "no session".
        for field in [
            Some(self.agent.as_str()),
            self.session.as_deref(),
            Some(&self.tool),
            Some(&self.args_digest),
            Some(&self.principal_digest),
            Some(&self.context_digest),
            Some(&self.gate),
            self.approver.as_deref(),
            Some(&self.policy),
        ] {
            match field {
                None => hasher.update([0u8]),
                Some(text) => {
                    hasher.update([1u8]);
                    hasher.update((text.len() as u64).to_le_bytes());
                    hasher.update(text.as_bytes());
                }
            }
        }
        hasher.finalize().into()
    }

    /// What differs between this (approved) call and `call`, if anything.
    pub(super) fn mismatch(&self, call: &Binding) -> Option<&'static str> {
        let parts: [(&'static str, bool); 9] = [
            ("agent", self.agent == call.agent),
            ("session", self.session == call.session),
            ("tool", self.tool == call.tool),
            ("gate", self.gate == call.gate),
            ("approver", self.approver == call.approver),
            ("arguments", self.args_digest == call.args_digest),
            ("principal", self.principal_digest == call.principal_digest),
            ("context", self.context_digest == call.context_digest),
            ("policy", self.policy == call.policy),
        ];
        parts.into_iter().find(|(_, same)| !same).map(|(what, _)| what)
    }
}

/// Where an approval stands, as stored.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "state")]
pub enum ApprovalState {
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

/// Where an approval stands, as a caller sees it (with expiry applied):
/// what a re-asked call's answer reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ApprovalStatus {
    /// Waiting for an approver.
    Pending,
    /// Granted and not used.
    Granted,
    /// Rejected.
    Rejected,
    /// Expired before it was used.
    Expired,
    /// Used for its call.
    Used,
}

impl ApprovalStatus {
    /// `pending`, `granted`, `rejected`, `expired` or `used`.
    pub fn as_str(self) -> &'static str {
        match self {
            ApprovalStatus::Pending => "pending",
            ApprovalStatus::Granted => "granted",
            ApprovalStatus::Rejected => "rejected",
            ApprovalStatus::Expired => "expired",
            ApprovalStatus::Used => "used",
        }
    }
}

/// What an approver is shown of the call an approval is for.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shown {
    /// The arguments, with the agent's `sensitiveArgs` redacted.
    pub args: Value,
    /// The gate's `description`, if it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
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
    /// What the approver is shown of the call.
    #[serde(default)]
    pub shown: Shown,
    /// How many distinct people must grant it (the gate's `approvals`; 1
    /// unless the gate asks for more).
    #[serde(default = "one", skip_serializing_if = "is_one")]
    pub quorum: u32,
    /// Who has granted it so far, while more grants are needed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub grants: Vec<String>,
    /// Seconds since the Unix epoch when it was opened.
    #[serde(default)]
    pub opened_at: u64,
    /// Seconds since the Unix epoch after which it is void.
    pub expires_at: u64,
    /// Where it stands.
    #[serde(flatten)]
    pub state: ApprovalState,
}

fn one() -> u32 {
    1
}

fn is_one(n: &u32) -> bool {
    *n == 1
}

/// The person a recorded decider is, for telling grants apart: the name
/// before the parenthesis (`alice` of `alice (uid 1000)` and of `alice
/// (console)`: the same person on the admin socket and in the console), or
/// the whole text when there is no name (`uid 1001`).
pub fn person(by: &str) -> &str {
    by.split_once(" (").map_or(by, |(name, _)| name)
}

impl Approval {
    /// A pending approval with id `id` of the call `binding`, opened at
    /// `now` (seconds since the Unix epoch), valid for `ttl` (at least a
    /// second), granted once `quorum` different people have granted it.
    pub fn pending(
        id: String,
        binding: Binding,
        shown: Shown,
        quorum: u32,
        now: u64,
        ttl: Duration,
    ) -> Approval {
        Approval {
            id,
            approver: binding.approver.clone(),
            binding,
            shown,
            quorum: quorum.max(1),
            grants: Vec::new(),
            opened_at: now,
            expires_at: now.saturating_add(ttl.as_secs().max(1)),
            state: ApprovalState::Pending,
        }
    }

    /// Where it stands at `now` (seconds since the Unix epoch).
    pub fn status(&self, now: u64) -> ApprovalStatus {
        match self.state {
            ApprovalState::Used => ApprovalStatus::Used,
            ApprovalState::Rejected { .. } => ApprovalStatus::Rejected,
            _ if self.expires_at <= now => ApprovalStatus::Expired,
            ApprovalState::Pending => ApprovalStatus::Pending,
            ApprovalState::Granted { .. } => ApprovalStatus::Granted,
        }
    }
}

/// Why an approval could not be opened, granted, rejected or redeemed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ApprovalError {
    /// No approval has this id.
    Unknown,
    /// It expired.
    Expired,
    /// Redeemed while still waiting for an approver.
    Pending,
    /// Redeemed after it was rejected.
    Rejected,
    /// It was already used for its call.
    Used,
    /// Granted or rejected a second time.
    AlreadyDecided(ApprovalStatus),
    /// The same person granted it already; it needs another.
    SamePerson {
        /// How many grants it has.
        granted: usize,
        /// How many it needs.
        quorum: u32,
    },
    /// It was decided for another approver than the gate's.
    WrongApprover {
        /// Who must approve.
        expected: String,
    },
    /// The call differs from the approved one (another agent, session,
    /// tool, policy, or other arguments).
    Mismatch(&'static str),
    /// The approvals could not be read or saved.
    Storage(String),
    /// Too many approvals are open (for the session, the agent or the
    /// server); the call is denied until some are decided or expire.
    TooMany(&'static str),
    /// No unguessable id could be made (the operating system's random
    /// source failed).
    NoRandomness(String),
}

impl ApprovalError {
    /// Where the approval stands, when the error says: a re-asked call's
    /// answer reports it as data.
    pub fn status(&self) -> Option<ApprovalStatus> {
        match self {
            ApprovalError::Expired => Some(ApprovalStatus::Expired),
            ApprovalError::Pending => Some(ApprovalStatus::Pending),
            ApprovalError::Rejected => Some(ApprovalStatus::Rejected),
            ApprovalError::Used => Some(ApprovalStatus::Used),
            // A mismatch is found only on a granted, unexpired approval.
            ApprovalError::Mismatch(_) => Some(ApprovalStatus::Granted),
            ApprovalError::AlreadyDecided(status) => Some(*status),
            ApprovalError::SamePerson { .. } => Some(ApprovalStatus::Pending),
            ApprovalError::Unknown
            | ApprovalError::WrongApprover { .. }
            | ApprovalError::Storage(_)
            | ApprovalError::TooMany(_)
            | ApprovalError::NoRandomness(_) => None,
        }
    }
}

impl std::fmt::Display for ApprovalError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ApprovalError::Unknown => f.write_str("no such approval"),
            ApprovalError::Expired => f.write_str("the approval has expired"),
            ApprovalError::Pending => f.write_str("the approval is still pending"),
            ApprovalError::Rejected => f.write_str("the approval is rejected"),
            ApprovalError::AlreadyDecided(status) => write!(f, "the approval is already {}", status.as_str()),
            ApprovalError::Used => f.write_str("the approval was already used"),
            ApprovalError::SamePerson { granted, quorum } => write!(
                f,
                "you have granted this approval already; it needs {quorum} different people ({granted} so far)"
            ),
            ApprovalError::WrongApprover { expected } => {
                write!(f, "only `{expected}` may decide this approval")
            }
            ApprovalError::Mismatch(what) => write!(f, "the call differs from the approved one ({what})"),
            ApprovalError::Storage(error) => write!(f, "the approvals cannot be saved: {error}"),
            ApprovalError::TooMany(whose) => {
                write!(
                    f,
                    "{whose} has as many approvals waiting as it may; denied until some are decided or expire"
                )
            }
            ApprovalError::NoRandomness(error) => {
                write!(f, "no approval id can be made (the random source failed: {error})")
            }
        }
    }
}

/// Where approvals live.
pub trait ApprovalStore: Send + Sync {
    /// Opens a pending approval for a gated call (to be decided by the
    /// binding's approver, if it names one), showing approvers `shown`,
    /// granted once `quorum` different people have granted it; returns it.
    fn open(&self, binding: Binding, shown: Shown, quorum: u32) -> Result<Approval, ApprovalError>;

    /// Grants (`grant: true`) or rejects a pending approval, for the
    /// approver `approver` (which must be the gate's, when the gate names
    /// one), recording `by` as who did. A grant short of the quorum leaves
    /// it pending with `by` among its grants (the same [`person`] twice is
    /// refused); one rejection rejects it.
    fn decide(
        &self,
        id: &str,
        approver: Option<&str>,
        by: &str,
        grant: bool,
    ) -> Result<Approval, ApprovalError>;

    /// The approval with this id, as it is now.
    fn get(&self, id: &str) -> Option<Approval>;

    /// Uses a granted approval for exactly the call it was granted for.
    fn redeem(&self, id: &str, call: &Binding) -> Result<(), ApprovalError>;

    /// The open approval (pending, or granted and not yet used) for exactly
    /// this call, with where it stands: a call asked again finds its
    /// approval without naming it.
    fn find(&self, call: &Binding) -> Option<(String, ApprovalStatus)>;

    /// Approvals waiting for a decision, soonest expiry first.
    fn pending(&self) -> Vec<Approval>;

    /// How many approvals expired while waiting for a decision, since the
    /// store was opened.
    fn expired_count(&self) -> u64;

    /// How many approvals are waiting for a decision.
    fn pending_count(&self) -> usize {
        self.pending().len()
    }

    /// Where an approval stands now; `None` if no approval has this id.
    fn status(&self, id: &str) -> Option<ApprovalStatus>;

    /// Whether a call may wait on I/O (see [`super::SessionStore::may_block`]).
    fn may_block(&self) -> bool {
        false
    }

    /// Whether the store works (what `health` reports).
    fn condition(&self) -> super::Condition {
        super::Condition::Ok
    }
}

/// Feeds what is written to it into a SHA-256 hash.
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

impl Hashing {
    /// Hashes an object with its keys sorted, at every level.
    fn object(&mut self, map: &Map<String, Value>) {
        let mut entries: Vec<(&String, &Value)> = map.iter().collect();
        entries.sort_unstable_by(|a, b| a.0.cmp(b.0));
        self.0.update(b"{");
        for (i, (key, value)) in entries.into_iter().enumerate() {
            if i > 0 {
                self.0.update(b",");
            }
            // Writing a string or a number into a hash cannot fail.
            let _ = serde_json::to_writer(&mut *self, key);
            self.0.update(b":");
            self.value(value);
        }
        self.0.update(b"}");
    }

    fn value(&mut self, value: &Value) {
        match value {
            Value::Object(map) => self.object(map),
            Value::Array(items) => {
                self.0.update(b"[");
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        self.0.update(b",");
                    }
                    self.value(item);
                }
                self.0.update(b"]");
            }
            scalar => {
                let _ = serde_json::to_writer(&mut *self, scalar);
            }
        }
    }
}

/// `sha256:<hex>` of a JSON value serialised with object keys sorted at
/// every level, so that the same value in any key order digests alike. The
/// serialisation streams into the hash; nothing is cloned.
pub fn canonical_digest(value: &Value) -> String {
    let mut hashing = Hashing(Sha256::new());
    hashing.value(value);
    crate::hash::sha256_text(hashing.0)
}

/// `sha256:<hex>` of a call's arguments in canonical form (the digest of
/// the object they are).
pub fn args_digest(args: &Map<String, Value>) -> String {
    let mut hashing = Hashing(Sha256::new());
    hashing.object(args);
    crate::hash::sha256_text(hashing.0)
}

/// A new approval id: 128 bits from the operating system's random source,
/// as hex. Ids are bearer tokens only together with the admin socket; they
/// must be unguessable.
pub(super) fn new_id() -> Result<String, ApprovalError> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).map_err(|e| ApprovalError::NoRandomness(e.to_string()))?;
    let mut id = String::with_capacity(4 + 32);
    id.push_str("apr_");
    crate::hash::push_hex(&mut id, &bytes);
    Ok(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_session_text_stands_for_no_session_in_a_digest() {
        let args = Map::new();
        let call = |session| Call {
            agent: "bot",
            session,
            tool: "pay",
            args: &args,
            principal: None,
            context: None,
        };
        let none = Binding::new(call(None), "gate", None, "sha256:p");
        for session in ["\u{0}none", "", "none"] {
            let some = Binding::new(call(Some(session)), "gate", None, "sha256:p");
            assert_ne!(none.digest(), some.digest(), "{session:?}");
        }
        let gated = Binding::new(call(None), "gate", Some("\u{0}none"), "sha256:p");
        assert_ne!(none.digest(), gated.digest());
        assert_eq!(none.digest(), Binding::new(call(None), "gate", None, "sha256:p").digest());
    }
}
