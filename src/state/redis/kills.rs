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
//! A version always travels with the whole set it belongs to: a write
//! answers with the set as it left it, so a replica never takes a version
//! without its kills. Each set also has an epoch, a random name made by
//! the first write; a set with another epoch (Redis lost its data, or a
//! failover went to a replica without it) replaces the snapshot whatever
//! its version, and so does a set from another Redis server (its
//! `run_id`): after a failover to a replica that lagged, the versions may
//! go back, and the replicas follow what the new primary has.
//!
//! A kill is in force on its own replica before it is written; if Redis
//! cannot be written, the error says so, the kill holds here, and the
//! listener writes it once Redis answers again. A revival is written
//! first and takes effect only once written. While
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

/// Reads the epoch, the version and every kill, atomically.
const READ: &str = "return {redis.call('GET', KEYS[4]) or '', redis.call('GET', KEYS[2]) or '0', \
    redis.call('HGETALL', KEYS[1])}";
/// Sets a kill (ARGV: scope, value, an epoch for a set without one), bumps
/// the version, tells the replicas; answers as READ does.
const KILL: &str = "redis.call('SET', KEYS[4], ARGV[3], 'NX') local v = redis.call('INCR', KEYS[2]) \
    redis.call('HSET', KEYS[1], ARGV[1], cjson.encode({order = v, kill = cjson.decode(ARGV[2])})) \
    redis.call('PUBLISH', KEYS[3], v) \
    return {redis.call('GET', KEYS[4]), tostring(v), redis.call('HGETALL', KEYS[1])}";
/// Removes a kill (ARGV: scope, an epoch for a set without one), bumps the
/// version, tells the replicas; answers whether it was there, then as READ.
const REVIVE: &str = "redis.call('SET', KEYS[4], ARGV[2], 'NX') local found = redis.call('HDEL', KEYS[1], ARGV[1]) \
    local v = redis.call('INCR', KEYS[2]) redis.call('PUBLISH', KEYS[3], v) \
    return {found, redis.call('GET', KEYS[4]), tostring(v), redis.call('HGETALL', KEYS[1])}";

/// The set as Redis answered it: epoch, version, fields.
type Stored = (String, String, Vec<(String, String)>);

/// A set of kills at a version of an epoch, as one Redis server had it.
struct Snapshot {
    epoch: String,
    server: String,
    version: u64,
    kills: Vec<(KillScope, Kill)>,
}

/// The Redis server a connection reached: its `run_id`, new at every
/// start ('' if `INFO` is refused). A failover to a replica that lagged
/// can take the version back; a new server is followed whatever it says.
fn server_id(connection: &mut redis::Connection) -> String {
    let info: String = redis::cmd("INFO").arg("server").query(connection).unwrap_or_default();
    info.lines().find_map(|line| line.trim().strip_prefix("run_id:")).unwrap_or("").to_owned()
}

/// A connection and the server it reached.
struct Reached {
    connection: redis::Connection,
    server: String,
}

impl Reached {
    fn connect(link: &Link) -> redis::RedisResult<Reached> {
        let mut connection = link.connect()?;
        let server = server_id(&mut connection);
        Ok(Reached { connection, server })
    }
}

/// The keys of a namespace's kills (one cluster slot).
#[derive(Clone, Debug)]
struct Keys {
    set: String,
    version: String,
    channel: String,
    epoch: String,
}

/// A replica's view: the snapshot in force, the epoch, server and version
/// it is at, and the kills made here that Redis has not taken yet.
struct Local {
    switch: KillSwitch,
    at: Mutex<(String, String, u64)>,
    unshared: Mutex<Vec<(KillScope, Kill)>>,
    condition: ConditionCell,
}

impl Local {
    /// Takes `snapshot` if it is of another epoch or server, or newer than
    /// what is in force (and says whether it did); kills not yet shared
    /// stay in force either way.
    fn offer(&self, snapshot: Snapshot) -> bool {
        let mut at = self.at.lock().unwrap_or_else(PoisonError::into_inner);
        let newer = snapshot.epoch != at.0 || snapshot.server != at.1 || snapshot.version > at.2;
        if newer {
            let mut kills = snapshot.kills;
            for (scope, kill) in self.unshared.lock().unwrap_or_else(PoisonError::into_inner).iter() {
                if !kills.iter().any(|(s, _)| s == scope) {
                    kills.push((scope.clone(), kill.clone()));
                }
            }
            self.switch.replace(kills);
            *at = (snapshot.epoch, snapshot.server, snapshot.version);
        }
        newer
    }

    /// The kills made here that Redis has not taken yet.
    fn unshared(&self) -> Vec<(KillScope, Kill)> {
        self.unshared.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// `scope` is shared now (or revived): nothing to write later.
    fn shared(&self, scope: &KillScope) {
        self.unshared.lock().unwrap_or_else(PoisonError::into_inner).retain(|(s, _)| s != scope);
    }
}

/// Kills shared through Redis.
pub struct RedisKills {
    local: Arc<Local>,
    clock: Arc<RedisClock>,
    link: Link,
    writer: Mutex<Option<Reached>>,
    keys: Keys,
    stop: Arc<AtomicBool>,
}

impl std::fmt::Debug for RedisKills {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisKills").field("keys", &self.keys).finish_non_exhaustive()
    }
}

/// The snapshot of what Redis answered, its kills in the order they were set.
fn snapshot(keys: &Keys, server: &str, (epoch, version, fields): Stored) -> Snapshot {
    let mut kills: Vec<(u64, KillScope, Kill)> = fields
        .iter()
        .map(|(field, value)| understood(field, value).unwrap_or_else(|| unreadable(keys, field)))
        .collect();
    kills.sort_by_key(|(order, _, _)| *order);
    Snapshot {
        epoch,
        server: server.to_owned(),
        version: version.parse().unwrap_or(0),
        kills: kills.into_iter().map(|(_, scope, kill)| (scope, kill)).collect(),
    }
}

/// Reads the epoch, the version and every kill.
fn read(reached: &mut Reached, keys: &Keys) -> redis::RedisResult<Snapshot> {
    let stored: Stored = redis::Script::new(READ)
        .key(&keys.set)
        .key(&keys.version)
        .key(&keys.channel)
        .key(&keys.epoch)
        .invoke(&mut reached.connection)?;
    Ok(snapshot(keys, &reached.server, stored))
}

/// Runs a changing `script` with `args` (and an epoch for a set without
/// one) on `connection`.
fn change<T: redis::FromRedisValue>(
    connection: &mut redis::Connection,
    keys: &Keys,
    script: &str,
    args: &[String],
) -> redis::RedisResult<T> {
    let script = redis::Script::new(script);
    let mut call = script.prepare_invoke();
    call.key(&keys.set).key(&keys.version).key(&keys.channel).key(&keys.epoch);
    for arg in args {
        call.arg(arg);
    }
    call.arg(new_epoch());
    call.invoke(connection)
}

/// A random name for a set of kills that has none.
fn new_epoch() -> String {
    let mut bytes = [0u8; 8];
    // Without randomness, a fixed name: still another epoch than none.
    if getrandom::fill(&mut bytes).is_err() {
        return String::from("epoch");
    }
    let mut text = String::with_capacity(16);
    crate::hash::push_hex(&mut text, &bytes);
    text
}

/// Writes a kill on `connection`: the set as it left it.
fn share(reached: &mut Reached, keys: &Keys, scope: &KillScope, kill: &Kill) -> std::io::Result<Snapshot> {
    let field = serde_json::to_string(scope).map_err(std::io::Error::other)?;
    let value = serde_json::to_string(kill).map_err(std::io::Error::other)?;
    let stored: Stored = change(&mut reached.connection, keys, KILL, &[field, value])
        .map_err(|error| std::io::Error::other(format!("Redis: {error}")))?;
    Ok(snapshot(keys, &reached.server, stored))
}

/// Whether Redis's replicas the link asks for have what `reached` wrote.
fn confirmed(link: &Link, reached: &mut Reached) -> std::io::Result<Result<(), String>> {
    link.confirm(&mut reached.connection).map_err(|error| std::io::Error::other(format!("Redis: {error}")))
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
            epoch: format!("{{{namespace}:kills}}:epoch"),
        };
        let mut reached =
            Reached::connect(link).map_err(|e| RedisError(format!("Redis does not answer: {e}")))?;
        let read =
            read(&mut reached, &keys).map_err(|e| RedisError(format!("cannot read the kills: {e}")))?;
        let clock = Arc::new(RedisClock::default());
        clock
            .sample(&mut reached.connection)
            .map_err(|e| RedisError(format!("cannot read Redis's clock: {e}")))?;
        let local = Arc::new(Local {
            switch: KillSwitch::in_memory(),
            at: Mutex::new((read.epoch.clone(), read.server.clone(), read.version)),
            unshared: Mutex::new(Vec::new()),
            condition: ConditionCell::default(),
        });
        local.switch.replace(read.kills);
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
        Ok(RedisKills { local, clock, link: link.clone(), writer: Mutex::new(Some(reached)), keys, stop })
    }

    /// Redis's clock, kept current by this store's listener.
    pub fn clock(&self) -> Arc<RedisClock> {
        Arc::clone(&self.clock)
    }

    /// Runs `write` on the writer connection (connecting again if needed;
    /// a connection that failed is dropped).
    fn with_writer<T>(&self, write: impl FnOnce(&mut Reached) -> std::io::Result<T>) -> std::io::Result<T> {
        let mut writer = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
        if writer.is_none() {
            *writer = Some(Reached::connect(&self.link).map_err(std::io::Error::other)?);
        }
        let Some(connection) = writer.as_mut() else { return Err(std::io::Error::other("no connection")) };
        write(connection).inspect_err(|_| *writer = None)
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
        // In force here at once; then shared (or, if Redis cannot take it
        // now, kept here and written by the listener later).
        let _ = self.local.switch.kill(scope.clone(), kill.clone());
        let written = self.with_writer(|reached| {
            let snapshot = share(reached, &self.keys, &scope, &kill)?;
            Ok((snapshot, confirmed(&self.link, reached)?))
        });
        match written {
            Ok((snapshot, confirmed)) => {
                self.local.shared(&scope);
                let _ = self.local.offer(snapshot);
                confirmed.map_err(|short| {
                    std::io::Error::other(format!("in Redis, but {short}: a failover could lose it"))
                })
            }
            Err(error) => {
                self.local.unshared.lock().unwrap_or_else(PoisonError::into_inner).push((scope, kill));
                Err(error)
            }
        }
    }

    fn revive(&self, scope: &KillScope) -> std::io::Result<bool> {
        let field = serde_json::to_string(scope).map_err(std::io::Error::other)?;
        let (found, server, epoch, version, fields) = self.with_writer(|reached| {
            let (found, epoch, version, fields): (u64, String, String, Vec<(String, String)>) =
                change(&mut reached.connection, &self.keys, REVIVE, &[field])
                    .map_err(|error| std::io::Error::other(format!("Redis: {error}")))?;
            Ok((found, reached.server.clone(), epoch, version, fields))
        })?;
        let was_here = self.local.unshared().iter().any(|(s, _)| s == scope);
        self.local.shared(scope);
        // The answer is the set right after the revival; if a newer one is
        // in force already, it has the revival too, but may still hold the
        // kill made here that Redis never had.
        if !self.local.offer(snapshot(&self.keys, &server, (epoch, version, fields))) && was_here {
            let _ = self.local.switch.revive(scope);
        }
        Ok(found > 0 || was_here)
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
        let mut reader = Reached::connect(&self.link)?;
        let mut subscriber = self.link.subscriber()?;
        let mut pubsub = subscriber.as_pubsub();
        pubsub.subscribe(&self.keys.channel)?;
        pubsub.set_read_timeout(Some(REREAD_EVERY))?;
        loop {
            if self.stop.load(Ordering::Acquire) {
                return Ok(());
            }
            for (scope, kill) in self.local.unshared() {
                let snapshot = share(&mut reader, &self.keys, &scope, &kill).map_err(|e| {
                    redis::RedisError::from((redis::ErrorKind::Io, "cannot share a kill", e.to_string()))
                })?;
                tracing::info!(?scope, "a kill made while Redis was away is shared now");
                self.local.shared(&scope);
                let _ = self.local.offer(snapshot);
            }
            let _ = self.local.offer(read(&mut reader, &self.keys)?);
            self.clock.sample(&mut reader.connection)?;
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
