//! State: what decisions read and write besides the policy — session
//! counters and rate buckets ([`SessionStore`]), kills ([`KillStore`]),
//! approvals ([`ApprovalStore`]) and the time ([`Clock`]) — behind traits,
//! with in-memory and on-disk implementations.
//!
//! State lives beside the engine, not inside it: a reload swaps the policy
//! and keeps the same [`State`]. Nothing here knows about policies or
//! decisions.

pub mod approval;
pub mod approval_log;
pub mod atomic_file;
pub mod circuit;
pub mod clock;
pub mod condition;
pub mod conformance;
pub mod drift;
pub mod durable;
mod handoff;
pub mod kill;
pub mod ledger;
pub mod memory;
pub mod private;
pub mod redis;
pub mod session;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

pub use approval::{ApprovalLimits, ApprovalStore, DEFAULT_APPROVAL_TTL};
pub use clock::{Clock, ManualClock, SystemClock};
pub use condition::Condition;
pub use durable::{DurableOptions, DurableSessions};
pub use kill::{KillStore, KillSwitch};
pub use ledger::Ledger;
pub use memory::MemorySessions;
pub use session::{SessionLimits, SessionStore};

/// Everything a decision reads and writes besides the policy. Cheap to
/// clone: every part is shared.
#[derive(Clone)]
pub struct State {
    /// Session counters, caps and rate buckets, call outcomes.
    pub sessions: Arc<dyn SessionStore>,
    /// The kill switch.
    pub kills: Arc<dyn KillStore>,
    /// Approvals of gated calls.
    pub approvals: Arc<dyn ApprovalStore>,
    /// Where "now" comes from.
    pub clock: Arc<dyn Clock>,
    /// Tools that drifted from a catalog that denies drift.
    pub drifted: Arc<drift::DriftedTools>,
    /// Circuit breakers' failures and open circuits.
    pub breakers: Arc<circuit::Breakers>,
    /// The Redis this state is shared on, if it is.
    pub redis: Option<Arc<redis::Shared>>,
}

impl std::fmt::Debug for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("State").field("may_block", &self.may_block()).finish_non_exhaustive()
    }
}

impl State {
    /// Empty state in memory on the system clock, approvals valid for
    /// [`DEFAULT_APPROVAL_TTL`].
    pub fn in_memory() -> State {
        State::in_memory_with(Arc::new(SystemClock), DEFAULT_APPROVAL_TTL)
    }

    /// Empty state in memory on `clock`, within the default limits.
    pub fn in_memory_with(clock: Arc<dyn Clock>, approval_ttl: Duration) -> State {
        State::in_memory_within(clock, approval_ttl, SessionLimits::default(), ApprovalLimits::default())
    }

    /// Empty state in memory on `clock`, sessions and approvals within limits.
    pub fn in_memory_within(
        clock: Arc<dyn Clock>,
        approval_ttl: Duration,
        limits: SessionLimits,
        approvals: ApprovalLimits,
    ) -> State {
        State {
            sessions: Arc::new(MemorySessions::with_limits(Arc::clone(&clock), limits)),
            kills: Arc::new(KillSwitch::in_memory()),
            approvals: Arc::new(Ledger::with_clock(approval_ttl, Arc::clone(&clock)).within(approvals)),
            clock,
            drifted: Arc::default(),
            breakers: Arc::default(),
            redis: None,
        }
    }

    /// Opens the state `config` describes: shared on Redis, durable in its
    /// directory (created if missing), or in memory without either.
    pub fn open(config: &StateConfig) -> Result<State, OpenError> {
        let clock = Arc::clone(&config.clock);
        if let Some(settings) = &config.redis {
            return State::open_redis(settings, config);
        }
        let Some(dir) = &config.dir else {
            return Ok(State::in_memory_within(
                clock,
                config.approval_ttl,
                config.sessions,
                config.approvals,
            ));
        };
        let failed = |error: String| OpenError { place: dir.display().to_string(), error };
        private::directory(dir).map_err(|e| failed(e.to_string()))?;
        let at = |name: &str| dir.join(name);
        for name in [STATE_FILE, KILLS_FILE, APPROVALS_FILE, LEGACY_APPROVALS_FILE] {
            private::existing_file(&at(name)).map_err(|e| failed(e.to_string()))?;
        }
        // redb creates its file with the process's umask: create it first, private.
        private::open(&at(STATE_FILE), std::fs::OpenOptions::new().write(true).create(true))
            .map_err(|e| failed(e.to_string()))?;
        Ok(State {
            sessions: Arc::new(
                DurableSessions::open_with(
                    &at(STATE_FILE),
                    DurableOptions {
                        clock: Arc::clone(&clock),
                        limits: config.sessions,
                        answer_within: config.answer_within,
                    },
                )
                .map_err(|e| failed(e.to_string()))?,
            ),
            kills: Arc::new(KillSwitch::persistent(at(KILLS_FILE)).map_err(|e| failed(e.to_string()))?),
            approvals: Arc::new(
                open_ledger(dir, config.approval_ttl, Arc::clone(&clock))
                    .map_err(|e| failed(e.to_string()))?,
            ),
            clock,
            drifted: Arc::default(),
            breakers: Arc::default(),
            redis: None,
        })
    }

    /// State shared on a Redis (waiting for it as `settings` say):
    /// session counters and rate buckets on Redis's clock, kills mirrored in
    /// every replica's snapshot, approvals redeemed once across replicas.
    /// The state's clock is Redis's too (`config.clock` is not used), so
    /// that replicas agree when an approval expires.
    fn open_redis(settings: &redis::RedisSettings, config: &StateConfig) -> Result<State, OpenError> {
        let link = redis::Link::new(settings, config.answer_within);
        let failed = |error: redis::RedisError| OpenError {
            place: redis::address::redact(&settings.url),
            error: error.0,
        };
        let link = link.map_err(failed)?;
        link.wait_until_reachable(settings.start_wait).map_err(failed)?;
        if let Some(risk) = link.eviction_risk() {
            tracing::warn!(url = %link.shown(), "{risk}");
        }
        let options = redis::RedisOptions { clock: None, limits: config.sessions };
        let sessions = redis::RedisSessions::open(&link, options).map_err(failed)?;
        let kills = redis::kills::RedisKills::open(&link).map_err(failed)?;
        // One time for every replica: Redis's, as the kills' listener reads it.
        let redis_clock = kills.clock();
        let clock: Arc<dyn Clock> = Arc::clone(&redis_clock) as Arc<dyn Clock>;
        let approvals = redis::approvals::RedisApprovals::open(
            &link,
            config.approval_ttl,
            config.approvals,
            Arc::clone(&clock),
        )
        .map_err(failed)?;
        let pool = approvals.pool();
        Ok(State {
            sessions: Arc::new(sessions),
            kills: Arc::new(kills),
            approvals: Arc::new(approvals),
            clock,
            drifted: Arc::default(),
            breakers: Arc::default(),
            redis: Some(Arc::new(redis::Shared {
                address: link.shown().to_owned(),
                namespace: link.namespace().to_owned(),
                clock: redis_clock,
                pool,
            })),
        })
    }

    /// How the stores stand: the first one in trouble (sessions, kills,
    /// approvals), or ok.
    pub fn condition(&self) -> Condition {
        [self.sessions.condition(), self.kills.condition(), self.approvals.condition()]
            .into_iter()
            .find(|condition| !condition.is_ok())
            .unwrap_or(Condition::Ok)
    }

    /// Whether any store may wait on I/O (a disk commit): callers on an
    /// async runtime then decide where blocking stalls nothing else.
    pub fn may_block(&self) -> bool {
        self.sessions.may_block() || self.kills.may_block() || self.approvals.may_block()
    }
}

/// The session counters' database in a state directory.
pub const STATE_FILE: &str = "state.redb";
/// The kills in a state directory.
pub const KILLS_FILE: &str = "kills.json";
/// The approvals in a state directory: an append log of JSON lines.
pub const APPROVALS_FILE: &str = "approvals.log";
/// Where earlier versions kept the approvals, as one JSON array: read once
/// into the log, then removed.
pub const LEGACY_APPROVALS_FILE: &str = "approvals.json";

/// Opens the approvals' log in `dir`, taking in a legacy `approvals.json`.
fn open_ledger(dir: &std::path::Path, ttl: Duration, clock: Arc<dyn Clock>) -> std::io::Result<Ledger> {
    let ledger = Ledger::persistent(&dir.join(APPROVALS_FILE), ttl, clock)?;
    let legacy = dir.join(LEGACY_APPROVALS_FILE);
    if let Some(approvals) = atomic_file::read_json(&legacy)? {
        ledger.import(approvals)?;
        std::fs::remove_file(&legacy)?;
    }
    Ok(ledger)
}

/// Where state lives.
#[derive(Clone, Debug)]
pub struct StateConfig {
    /// The state directory; `None` keeps state in memory (lost on exit).
    pub dir: Option<PathBuf>,
    /// A Redis shared by replicas (one, or the primary Sentinel names);
    /// takes the place of `dir`.
    pub redis: Option<redis::RedisSettings>,
    /// How long an approval stays valid after it is opened.
    pub approval_ttl: Duration,
    /// How many sessions are kept, and for how long.
    pub sessions: SessionLimits,
    /// How many approvals may wait for an approver.
    pub approvals: ApprovalLimits,
    /// How long a decision waits for a store that may block (a disk
    /// commit) before it is denied.
    pub answer_within: Duration,
    /// Where "now" comes from.
    pub clock: Arc<dyn Clock>,
}

impl StateConfig {
    /// The defaults, with state where `--state` says: a Redis address
    /// ([`is_redis_url`]), a directory, or nowhere (memory).
    pub fn at(state: Option<&std::path::Path>) -> StateConfig {
        let text = state.map(|path| path.to_string_lossy().into_owned());
        match text {
            Some(url) if is_redis_url(&url) => {
                StateConfig { redis: Some(redis::RedisSettings::new(&url)), ..StateConfig::default() }
            }
            _ => StateConfig { dir: state.map(std::path::Path::to_path_buf), ..StateConfig::default() },
        }
    }
}

/// How long a decision waits for the state store or the audit trail, by default.
pub const DEFAULT_DECISION_TIMEOUT: Duration = Duration::from_millis(500);

impl Default for StateConfig {
    fn default() -> Self {
        StateConfig {
            dir: None,
            redis: None,
            approval_ttl: DEFAULT_APPROVAL_TTL,
            sessions: SessionLimits::default(),
            approvals: ApprovalLimits::default(),
            answer_within: DEFAULT_DECISION_TIMEOUT,
            clock: Arc::new(SystemClock),
        }
    }
}

/// The state could not be opened.
#[derive(Debug)]
pub struct OpenError {
    /// The directory, or the Redis address.
    pub place: String,
    /// What went wrong.
    pub error: String,
}

impl std::fmt::Display for OpenError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match is_redis_url(&self.place) {
            true => write!(f, "cannot open the shared state on `{}`: {}", self.place, self.error),
            false => write!(f, "cannot open the state directory `{}`: {}", self.place, self.error),
        }
    }
}

/// Whether `--state` names a Redis rather than a directory.
pub fn is_redis_url(text: &str) -> bool {
    // Schemes are case-insensitive: `REDIS://…` is no directory name.
    let sentinel = [redis::address::SENTINEL_SCHEME, redis::address::SENTINEL_TLS_SCHEME];
    ["redis://", "rediss://", "redis+unix://", "unix://"]
        .iter()
        .chain(&sentinel)
        .any(|scheme| text.get(..scheme.len()).is_some_and(|start| start.eq_ignore_ascii_case(scheme)))
}

impl std::error::Error for OpenError {}

#[cfg(test)]
mod tests {
    use super::is_redis_url;

    #[test]
    fn redis_addresses_are_told_from_directories_whatever_their_case() {
        for url in [
            "redis://h/0",
            "REDISS://h/0",
            "redis+unix:///r.sock",
            "unix:///r.sock",
            "Redis+Sentinel://s1/p",
            "REDISS+SENTINEL://s1/p",
        ] {
            assert!(is_redis_url(url), "{url}");
        }
        for directory in ["state", "/var/lib/toolgate", "redis", "./redis:/x", "rediss+sentinel:/s1"] {
            assert!(!is_redis_url(directory), "{directory}");
        }
    }
}
