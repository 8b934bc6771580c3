//! Approvals on Redis: opened on one replica, decided from any, redeemed
//! exactly once on any.
//!
//! Every change — opening (with the per-agent and per-session bounds),
//! deciding (with the quorum of four-eyes gates), redeeming — is one run
//! of one Lua script (`approvals.lua`), atomic on the server: of two
//! replicas redeeming the same granted approval at once, one is allowed
//! and the other refused `approval_used`. Reads (`get`, `find`, `pending`)
//! read the hashes directly.
//!
//! An approval keeps the JSON it was opened with, unchanged; what changes
//! (state, who decided, the grants so far) are fields of its own, so the
//! script never re-encodes what an approver is shown. Every key starts
//! with `{ns:approvals}`: one cluster slot. An approval's key expires an
//! hour after the approval does. Time is the replica's clock, as for the
//! in-memory ledger.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use super::super::approval::{
    Approval, ApprovalError, ApprovalLimits, ApprovalState, ApprovalStatus, ApprovalStore, Binding, Shown,
    new_id, person,
};
use super::super::clock::{Clock, SystemClock};
use super::super::condition::{Condition, ConditionCell};
use super::pool::Pool;
use super::{Link, RedisError};

/// The approvals script.
const SCRIPT: &str = include_str!("approvals.lua");
/// Finds the open approval of a call in one round trip: its id, then its
/// hash's fields (KEYS[1]: the prefix; ARGV[1]: the call's digest).
const FIND: &str = "local id = redis.call('HGET', KEYS[1] .. ':open', ARGV[1]) \
    if not id then return {} end \
    local fields = redis.call('HGETALL', KEYS[1] .. ':a:' .. id) \
    table.insert(fields, 1, id) return fields";
/// How long a finished approval is kept after it expires.
const KEEP_FINISHED_SECS: u64 = 3600;

/// Approvals shared through Redis.
pub struct RedisApprovals {
    /// Connections: a call takes one (or connects), and gives it back
    /// when it worked, so that replicas' workers do not wait on each other.
    pool: Arc<Pool>,
    script: redis::Script,
    find_script: redis::Script,
    prefix: String,
    ttl: Duration,
    limits: ApprovalLimits,
    clock: Arc<dyn Clock>,
    /// Whether the last round trip worked.
    condition: ConditionCell,
}

impl std::fmt::Debug for RedisApprovals {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisApprovals").field("prefix", &self.prefix).finish_non_exhaustive()
    }
}

fn hex(digest: [u8; 32]) -> String {
    let mut text = String::with_capacity(64);
    crate::hash::push_hex(&mut text, &digest);
    text
}

fn storage(error: impl std::fmt::Display) -> ApprovalError {
    ApprovalError::Storage(format!("Redis: {error}"))
}

impl RedisApprovals {
    /// Approvals on the Redis and under the namespace of `link`, expiring
    /// after `ttl`, bounded by `limits`, timed by `clock`.
    pub fn open(
        link: &Link,
        ttl: Duration,
        limits: ApprovalLimits,
        clock: Arc<dyn Clock>,
    ) -> Result<RedisApprovals, RedisError> {
        let store = RedisApprovals {
            pool: Arc::new(Pool::new(link.clone())),
            script: redis::Script::new(SCRIPT),
            find_script: redis::Script::new(FIND),
            prefix: format!("{{{}:approvals}}", link.namespace()),
            ttl,
            limits,
            clock,
            condition: ConditionCell::default(),
        };
        store.with(|_| Ok(())).map_err(|e| RedisError(format!("Redis does not answer: {e}")))?;
        Ok(store)
    }

    /// The connections this store uses, for others on the same Redis (the
    /// console's sessions and throttle) to share.
    pub fn pool(&self) -> Arc<Pool> {
        Arc::clone(&self.pool)
    }

    /// Runs `f` on an idle connection, connecting if there is none; a
    /// connection that failed is dropped (the next call connects again).
    fn with<T>(
        &self,
        f: impl FnOnce(&mut redis::Connection) -> redis::RedisResult<T>,
    ) -> Result<T, ApprovalError> {
        let failed = |error: redis::RedisError| {
            self.condition.fail(format!("the approvals cannot be reached: {error}"), SystemClock.now_ms());
            storage(error)
        };
        let result = self.pool.with(f).map_err(failed)?;
        self.condition.heal();
        Ok(result)
    }

    /// Runs the script in `mode` with `args` (after the mode and now).
    fn run(&self, mode: &str, args: &[String]) -> Result<String, ApprovalError> {
        self.run_then(mode, args, |_, answer| Ok(answer))
    }

    /// Runs the script in `mode` with `args`, then `then` with its answer
    /// on the same connection.
    fn run_then<T>(
        &self,
        mode: &str,
        args: &[String],
        then: impl FnOnce(&mut redis::Connection, String) -> redis::RedisResult<T>,
    ) -> Result<T, ApprovalError> {
        let now = self.clock.now_secs();
        self.with(|connection| {
            let mut call = self.script.prepare_invoke();
            call.key(&self.prefix).arg(mode).arg(now);
            for arg in args {
                call.arg(arg);
            }
            let answer = call.invoke(connection)?;
            then(connection, answer)
        })
    }

    /// The approval with this id, as stored.
    fn load(&self, id: &str) -> Result<Option<Approval>, ApprovalError> {
        let key = format!("{}:a:{id}", self.prefix);
        let fields: HashMap<String, String> =
            self.with(|connection| redis::cmd("HGETALL").arg(&key).query(connection))?;
        Ok(assemble(&fields))
    }
}

/// An approval from its hash's fields.
fn assemble(fields: &HashMap<String, String>) -> Option<Approval> {
    let mut approval: Approval = serde_json::from_str(fields.get("json")?).ok()?;
    let by = fields.get("by").cloned().unwrap_or_default();
    approval.state = match fields.get("state").map(String::as_str) {
        Some("granted") => ApprovalState::Granted { by },
        Some("rejected") => ApprovalState::Rejected { by },
        Some("used") => ApprovalState::Used,
        _ => ApprovalState::Pending,
    };
    approval.grants = fields
        .get("grants")
        .map(|g| g.lines().filter(|l| !l.is_empty()).map(str::to_owned).collect())
        .unwrap_or_default();
    Some(approval)
}

impl ApprovalStore for RedisApprovals {
    fn open(&self, binding: Binding, shown: Shown, quorum: u32) -> Result<Approval, ApprovalError> {
        let id = new_id()?;
        let now = self.clock.now_secs();
        let approval = Approval::pending(id.clone(), binding, shown, quorum, now, self.ttl);
        let json = serde_json::to_string(&approval).map_err(storage)?;
        let args = [
            id,
            json,
            approval.expires_at.to_string(),
            approval.approver.clone().unwrap_or_default(),
            approval.quorum.to_string(),
            approval.binding.agent.clone(),
            approval.binding.session.clone().unwrap_or_default(),
            hex(approval.binding.digest()),
            self.limits.per_agent.to_string(),
            self.limits.per_session.to_string(),
            (self.ttl.as_secs().max(1) + KEEP_FINISHED_SECS).to_string(),
        ];
        match self.run("open", &args)?.as_str() {
            "ok" => Ok(approval),
            "too_many:agent" => Err(ApprovalError::TooMany("the agent")),
            "too_many:session" => Err(ApprovalError::TooMany("the session")),
            other => Err(storage(format!("unexpected answer `{other}`"))),
        }
    }

    fn decide(
        &self,
        id: &str,
        approver: Option<&str>,
        by: &str,
        grant: bool,
    ) -> Result<Approval, ApprovalError> {
        let args = [
            id.to_owned(),
            approver.unwrap_or("").to_owned(),
            by.to_owned(),
            person(by).to_owned(),
            if grant { "1" } else { "0" }.to_owned(),
        ];
        let answer = self.run("decide", &args)?;
        match answer.split(':').collect::<Vec<_>>().as_slice() {
            ["ok"] => self.load(id)?.ok_or(ApprovalError::Unknown),
            ["unknown"] => Err(ApprovalError::Unknown),
            ["used"] => Err(ApprovalError::Used),
            ["expired"] => Err(ApprovalError::Expired),
            ["decided", "granted"] => Err(ApprovalError::AlreadyDecided(ApprovalStatus::Granted)),
            ["decided", "rejected"] => Err(ApprovalError::AlreadyDecided(ApprovalStatus::Rejected)),
            ["wrong", expected @ ..] => Err(ApprovalError::WrongApprover { expected: expected.join(":") }),
            ["same", granted, quorum] => Err(ApprovalError::SamePerson {
                granted: granted.parse().unwrap_or(0),
                quorum: quorum.parse().unwrap_or(0),
            }),
            _ => Err(storage(format!("unexpected answer `{answer}`"))),
        }
    }

    fn get(&self, id: &str) -> Option<Approval> {
        self.load(id).ok().flatten()
    }

    fn redeem(&self, id: &str, call: &Binding) -> Result<(), ApprovalError> {
        // Used only once Redis's replicas have it: a failover must not make
        // it redeemable again. Unconfirmed, it is spent and denied.
        let (answer, confirmed) =
            self.run_then("redeem", &[id.to_owned(), hex(call.digest())], |connection, answer| {
                let confirmed = if answer == "ok" { self.pool.link().confirm(connection)? } else { Ok(()) };
                Ok((answer, confirmed))
            })?;
        if let Err(short) = confirmed {
            return Err(storage(format!("the approval is used, but {short}: the call is denied")));
        }
        match answer.as_str() {
            "ok" => Ok(()),
            "unknown" => Err(ApprovalError::Unknown),
            "used" => Err(ApprovalError::Used),
            "rejected" => Err(ApprovalError::Rejected),
            "expired" => Err(ApprovalError::Expired),
            "pending" => Err(ApprovalError::Pending),
            "mismatch" => {
                let stored = self.load(id)?.ok_or(ApprovalError::Unknown)?;
                Err(ApprovalError::Mismatch(stored.binding.mismatch(call).unwrap_or("arguments")))
            }
            other => Err(storage(format!("unexpected answer `{other}`"))),
        }
    }

    fn find(&self, call: &Binding) -> Option<(String, ApprovalStatus)> {
        let digest = hex(call.digest());
        let found: Vec<String> = self
            .with(|connection| self.find_script.key(&self.prefix).arg(&digest).invoke(connection))
            .ok()?;
        let (_id, rest) = found.split_first()?;
        let fields: HashMap<String, String> =
            rest.chunks_exact(2).map(|pair| (pair[0].clone(), pair[1].clone())).collect();
        let approval = assemble(&fields)?;
        match approval.status(self.clock.now_secs()) {
            status @ (ApprovalStatus::Pending | ApprovalStatus::Granted) if approval.binding == *call => {
                Some((approval.id, status))
            }
            _ => None,
        }
    }

    fn pending(&self) -> Vec<Approval> {
        let now = self.clock.now_secs();
        let pending = format!("{}:pending", self.prefix);
        let ids: Vec<String> = self
            .with(|connection| {
                redis::cmd("ZRANGEBYSCORE").arg(&pending).arg(format!("({now}")).arg("+inf").query(connection)
            })
            .unwrap_or_default();
        ids.iter()
            .filter_map(|id| self.get(id))
            .filter(|a| a.status(now) == ApprovalStatus::Pending)
            .collect()
    }

    fn pending_count(&self) -> usize {
        let now = self.clock.now_secs();
        let pending = format!("{}:pending", self.prefix);
        self.with(|connection| {
            redis::cmd("ZCOUNT").arg(&pending).arg(format!("({now}")).arg("+inf").query(connection)
        })
        .unwrap_or(0)
    }

    fn expired_count(&self) -> u64 {
        let _ = self.run("tidy", &[]);
        let expired = format!("{}:expired", self.prefix);
        self.with(|connection| redis::cmd("GET").arg(&expired).query::<Option<u64>>(connection))
            .ok()
            .flatten()
            .unwrap_or(0)
    }

    fn status(&self, id: &str) -> Option<ApprovalStatus> {
        self.get(id).map(|approval| approval.status(self.clock.now_secs()))
    }

    fn may_block(&self) -> bool {
        true
    }

    fn condition(&self) -> Condition {
        self.condition.get()
    }
}
