//! Kills on Redis, in force on every replica.
//!
//! Redis holds the kills (a hash, with a version that every change
//! increments); each replica keeps them in its local [`KillSwitch`], so the
//! decision path still reads a lock-free snapshot and its "nothing is
//! killed" flag. A change is written to Redis and published; every replica
//! listens, and on each message — and at least every [`REREAD_EVERY`],
//! so a missed message (pub/sub delivers at most once) cannot leave a
//! replica allowing a killed session — reads the whole set again and
//! replaces its snapshot with any newer version.
//!
//! A kill a replica cannot read (another version's format, a bad write
//! by hand) is in force as a kill of what its field names, or of
//! everything: it is never dropped.
//!
//! A kill is in force on its own replica before it is written; if Redis
//! cannot be written, the error says so and the kill holds here only. A
//! revival is written first and takes effect only once written. While
//! Redis cannot be read, a replica keeps its last snapshot and its
//! condition says it is degraded.
//!
//! The listener also keeps the replica's [`RedisClock`] current: it reads
//! Redis's `TIME` with every read of the kills.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use super::super::condition::{Condition, ConditionCell};
use super::super::kill::{Kill, KillScope, KillStore, KillSwitch};
use super::{Link, RedisClock, RedisError};

/// How often a replica reads the kills again, messages or not.
pub const REREAD_EVERY: Duration = Duration::from_secs(1);

/// Reads the version and every kill, atomically.
const READ: &str = "return {redis.call('GET', KEYS[2]) or '0', redis.call('HGETALL', KEYS[1])}";
/// Sets a kill (ARGV: scope, value), bumps the version, tells the replicas.
const KILL: &str = "local v = redis.call('INCR', KEYS[2]) \
    redis.call('HSET', KEYS[1], ARGV[1], cjson.encode({order = v, kill = cjson.decode(ARGV[2])})) \
    redis.call('PUBLISH', KEYS[3], v) return v";
/// Removes a kill (ARGV: scope), bumps the version, tells the replicas.
const REVIVE: &str = "local found = redis.call('HDEL', KEYS[1], ARGV[1]) \
    local v = redis.call('INCR', KEYS[2]) redis.call('PUBLISH', KEYS[3], v) return {found, v}";

/// The keys of a namespace's kills (one cluster slot).
#[derive(Clone, Debug)]
struct Keys {
    set: String,
    version: String,
    channel: String,
}

/// What the replicas of a namespace share: the local snapshot and the
/// version it is at.
struct Local {
    switch: KillSwitch,
    version: Mutex<u64>,
    condition: ConditionCell,
}

impl Local {
    /// Takes `kills` at `version`, if newer than what is in force.
    fn offer(&self, version: u64, kills: Vec<(KillScope, Kill)>) {
        let mut current = self.version.lock().unwrap_or_else(PoisonError::into_inner);
        if version > *current {
            self.switch.replace(kills);
            *current = version;
        }
    }
}

/// Kills shared through Redis.
pub struct RedisKills {
    local: Arc<Local>,
    clock: Arc<RedisClock>,
    link: Link,
    writer: Mutex<Option<redis::Connection>>,
    keys: Keys,
    stop: Arc<AtomicBool>,
}

impl std::fmt::Debug for RedisKills {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisKills").field("keys", &self.keys).finish_non_exhaustive()
    }
}

/// Reads the version and every kill, in the order they were set.
fn read(
    connection: &mut redis::Connection,
    keys: &Keys,
) -> redis::RedisResult<(u64, Vec<(KillScope, Kill)>)> {
    let (version, fields): (String, Vec<(String, String)>) =
        redis::Script::new(READ).key(&keys.set).key(&keys.version).invoke(connection)?;
    let mut kills: Vec<(u64, KillScope, Kill)> = fields
        .iter()
        .map(|(field, value)| understood(field, value).unwrap_or_else(|| unreadable(keys, field)))
        .collect();
    kills.sort_by_key(|(order, _, _)| *order);
    Ok((version.parse().unwrap_or(0), kills.into_iter().map(|(_, scope, kill)| (scope, kill)).collect()))
}

/// A kill as stored: its scope (the field) and its order and details.
fn understood(field: &str, value: &str) -> Option<(u64, KillScope, Kill)> {
    let scope: KillScope = serde_json::from_str(field).ok()?;
    let value: serde_json::Value = serde_json::from_str(value).ok()?;
    let kill: Kill = serde_json::from_value(value.get("kill")?.clone()).ok()?;
    Some((value.get("order")?.as_u64()?, scope, kill))
}

/// What a kill this replica cannot read stands for: a kill of whatever
/// its field names, or of everything if that cannot be read either (a
/// kill in force must not be lost to a newer format or a bad write).
fn unreadable(keys: &Keys, field: &str) -> (u64, KillScope, Kill) {
    let scope = serde_json::from_str(field).unwrap_or(KillScope::All);
    let reason = format!(
        "a kill in Redis this replica cannot read; remove it (`HDEL {} {field}`) or upgrade this replica",
        keys.set
    );
    (0, scope, Kill { reason, by: String::from("toolgate"), at: String::new() })
}

impl RedisKills {
    /// Connects through `link`, reads the kills in force, and starts
    /// listening for changes.
    pub fn open(link: &Link) -> Result<RedisKills, RedisError> {
        let namespace = link.namespace();
        let keys = Keys {
            set: format!("{{{namespace}:kills}}:set"),
            version: format!("{{{namespace}:kills}}:version"),
            channel: format!("{namespace}:kills"),
        };
        let mut connection = link.connect().map_err(|e| RedisError(format!("Redis does not answer: {e}")))?;
        let (version, kills) =
            read(&mut connection, &keys).map_err(|e| RedisError(format!("cannot read the kills: {e}")))?;
        let clock = Arc::new(RedisClock::default());
        clock.sample(&mut connection).map_err(|e| RedisError(format!("cannot read Redis's clock: {e}")))?;
        let local = Arc::new(Local {
            switch: KillSwitch::in_memory(),
            version: Mutex::new(0),
            condition: ConditionCell::default(),
        });
        local.switch.replace(kills);
        *local.version.lock().unwrap_or_else(PoisonError::into_inner) = version;
        let stop = Arc::new(AtomicBool::new(false));
        let listener = Listener {
            link: link.clone(),
            keys: keys.clone(),
            local: Arc::clone(&local),
            clock: Arc::clone(&clock),
            stop: Arc::clone(&stop),
        };
        std::thread::Builder::new()
            .name("toolgate-kills".into())
            .spawn(move || listener.run())
            .map_err(|e| RedisError(format!("cannot start the kill listener: {e}")))?;
        Ok(RedisKills { local, clock, link: link.clone(), writer: Mutex::new(Some(connection)), keys, stop })
    }

    /// Redis's clock, kept current by this store's listener.
    pub fn clock(&self) -> Arc<RedisClock> {
        Arc::clone(&self.clock)
    }

    /// Runs `script` on the writer connection (connecting again if needed).
    fn write<T: redis::FromRedisValue>(&self, script: &str, args: &[String]) -> std::io::Result<T> {
        let mut writer = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
        if writer.is_none() {
            *writer = Some(self.link.connect().map_err(std::io::Error::other)?);
        }
        let Some(connection) = writer.as_mut() else { return Err(std::io::Error::other("no connection")) };
        let script = redis::Script::new(script);
        let mut call = script.prepare_invoke();
        call.key(&self.keys.set).key(&self.keys.version).key(&self.keys.channel);
        for arg in args {
            call.arg(arg);
        }
        call.invoke(connection).map_err(|error| {
            *writer = None;
            std::io::Error::other(format!("Redis: {error}"))
        })
    }
}

impl Drop for RedisKills {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
    }
}

impl KillStore for RedisKills {
    fn is_empty(&self) -> bool {
        self.local.switch.is_empty()
    }

    fn check(&self, agent: &str, session: Option<&str>) -> Option<Arc<(KillScope, Kill)>> {
        self.local.switch.check(agent, session)
    }

    fn kill(&self, scope: KillScope, kill: Kill) -> std::io::Result<()> {
        let field = serde_json::to_string(&scope).map_err(std::io::Error::other)?;
        let value = serde_json::to_string(&kill).map_err(std::io::Error::other)?;
        // In force here at once; then shared.
        let _ = self.local.switch.kill(scope, kill);
        let version: u64 = self.write(KILL, &[field, value])?;
        let mut current = self.local.version.lock().unwrap_or_else(PoisonError::into_inner);
        *current = (*current).max(version);
        Ok(())
    }

    fn revive(&self, scope: &KillScope) -> std::io::Result<bool> {
        let field = serde_json::to_string(scope).map_err(std::io::Error::other)?;
        let (found, version): (u64, u64) = self.write(REVIVE, &[field])?;
        let _ = self.local.switch.revive(scope);
        let mut current = self.local.version.lock().unwrap_or_else(PoisonError::into_inner);
        *current = (*current).max(version);
        Ok(found > 0)
    }

    fn list(&self) -> Vec<(KillScope, Kill)> {
        self.local.switch.list()
    }

    fn may_block(&self) -> bool {
        true
    }

    /// Degraded while the kills cannot be read: the snapshot in force may
    /// miss a kill made on another replica.
    fn condition(&self) -> Condition {
        self.local.condition.get()
    }
}

/// The thread that keeps a replica's snapshot current.
struct Listener {
    link: Link,
    keys: Keys,
    local: Arc<Local>,
    clock: Arc<RedisClock>,
    stop: Arc<AtomicBool>,
}

impl Listener {
    fn run(self) {
        while !self.stop.load(Ordering::Acquire) {
            if let Err(error) = self.listen() {
                let now = super::super::clock::SystemClock.now_ms();
                self.local.condition.fail(format!("the kills cannot be read from Redis: {error}"), now);
                std::thread::sleep(super::RECONNECT_EVERY);
            }
        }
    }

    /// Subscribes, then reads the set on every message and every
    /// [`REREAD_EVERY`]; returns on an error.
    fn listen(&self) -> redis::RedisResult<()> {
        let mut reader = self.link.connect()?;
        let mut subscriber = self.link.subscriber()?;
        let mut pubsub = subscriber.as_pubsub();
        pubsub.subscribe(&self.keys.channel)?;
        pubsub.set_read_timeout(Some(REREAD_EVERY))?;
        loop {
            if self.stop.load(Ordering::Acquire) {
                return Ok(());
            }
            let (version, kills) = read(&mut reader, &self.keys)?;
            self.local.offer(version, kills);
            self.clock.sample(&mut reader)?;
            self.local.condition.heal();
            match pubsub.get_message() {
                Ok(_) => {}
                Err(error) if error.is_timeout() => {}
                Err(error) => return Err(error),
            }
        }
    }
}

use super::super::clock::Clock as _;
