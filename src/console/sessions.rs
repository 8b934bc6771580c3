//! Who is signed in.
//!
//! A session is a random 256-bit token in an HTTP-only, `SameSite=Strict`
//! cookie; the server keeps only its SHA-256, with the account's
//! fingerprint (a changed account ends its sessions) and the session's own
//! CSRF token, which every form that changes something must carry back.
//! Sessions end after [`IDLE`] without a request, or [`LIFETIME`] after
//! sign-in, whichever comes first.
//!
//! On a replica whose state is on Redis, sessions are kept there
//! (`sessions.lua`, on Redis's clock), so that a browser signed in on one
//! replica is signed in on all of them and signing out ends it everywhere.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use super::on_redis::{RedisScript, Unavailable};
use crate::hash::FastMap;
use crate::state::redis::pool::Pool;

/// A session unused this long has ended.
pub const IDLE: Duration = Duration::from_secs(30 * 60);
/// A session this old has ended, used or not.
pub const LIFETIME: Duration = Duration::from_secs(12 * 3600);
/// The most sessions one account has at once; its oldest is ended to make room.
pub const MAX_PER_ACCOUNT: usize = 16;
/// The most sessions at once in memory (the accounts file bounds how many
/// accounts there are); the oldest is ended to make room.
const MAX_SESSIONS: usize = 10_000;
/// The script that keeps sessions in Redis.
const SCRIPT: &str = include_str!("sessions.lua");

/// 32 bytes from the operating system's random source, as hex.
pub fn random_token() -> Result<String, getrandom::Error> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes)?;
    let mut text = String::with_capacity(64);
    crate::hash::push_hex(&mut text, &bytes);
    Ok(text)
}

/// Whether two secrets are equal, in time that depends only on their length.
pub fn same_secret(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn token_key(token: &str) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(token.as_bytes()).into()
}

/// A signed-in session.
#[derive(Debug)]
pub struct Session {
    /// The account's name.
    pub account: String,
    /// The account's fingerprint when it signed in.
    pub fingerprint: String,
    /// The token forms carry back.
    pub csrf: String,
}

/// The signed-in sessions, in memory or shared through Redis.
#[derive(Debug)]
pub struct Sessions {
    kept: Kept,
}

#[derive(Debug)]
enum Kept {
    Memory(Mutex<FastMap<[u8; 32], Entry>>),
    Redis(Arc<RedisScript>),
}

/// A session in memory, with its times.
#[derive(Debug)]
struct Entry {
    session: Arc<Session>,
    started: Instant,
    last_seen: Instant,
}

impl Entry {
    fn live(&self, now: Instant) -> bool {
        now.duration_since(self.started) < LIFETIME && now.duration_since(self.last_seen) < IDLE
    }
}

/// A session ended on the Redis primary that its replicas do not have yet.
#[derive(Debug)]
pub struct Unconfirmed(pub String);

/// Why no session could be made.
#[derive(Debug)]
pub enum StartError {
    /// The operating system's random source failed.
    Random(getrandom::Error),
    /// Redis did not answer.
    Unavailable(Unavailable),
}

impl Default for Sessions {
    fn default() -> Sessions {
        Sessions { kept: Kept::Memory(Mutex::default()) }
    }
}

impl Sessions {
    /// Sessions kept in Redis through `pool`, shared by every replica on it.
    pub fn shared(pool: Arc<Pool>) -> Sessions {
        Sessions { kept: Kept::Redis(Arc::new(RedisScript::new(pool, SCRIPT, "sessions"))) }
    }

    /// Signs `account` in: the cookie's token and the session.
    pub async fn start(
        &self,
        account: &str,
        fingerprint: String,
    ) -> Result<(String, Arc<Session>), StartError> {
        let token = random_token().map_err(StartError::Random)?;
        let csrf = random_token().map_err(StartError::Random)?;
        let session = Arc::new(Session { account: account.to_owned(), fingerprint, csrf });
        match &self.kept {
            Kept::Memory(sessions) => memory_start(sessions, &token, &session),
            Kept::Redis(redis) => {
                let keys = vec![redis.key("s:", &token), redis.key("a:", account)];
                let mut args = times("start");
                args.extend([account.to_owned(), session.fingerprint.clone(), session.csrf.clone()]);
                args.push(MAX_PER_ACCOUNT.to_string());
                redis.run::<Vec<String>>(keys, args).await.map_err(StartError::Unavailable)?;
            }
        }
        Ok((token, session))
    }

    /// The live session of `token`, marked as used now.
    pub async fn find(&self, token: &str) -> Result<Option<Arc<Session>>, Unavailable> {
        let redis = match &self.kept {
            Kept::Memory(sessions) => return Ok(memory_find(sessions, token)),
            Kept::Redis(redis) => redis,
        };
        let found: Vec<String> = redis.run(vec![redis.key("s:", token)], times("find")).await?;
        Ok(match <[String; 3]>::try_from(found) {
            Ok([account, fingerprint, csrf]) => Some(Arc::new(Session { account, fingerprint, csrf })),
            Err(_) => None,
        })
    }

    /// Ends the session of `token`; on Redis, with `--redis-replicas`,
    /// once the replicas have that too — else it is ended on the primary
    /// only, and the answer says why (a failover now could bring it back).
    pub async fn end(&self, token: &str) -> Result<Option<Unconfirmed>, Unavailable> {
        match &self.kept {
            Kept::Memory(sessions) => {
                sessions.lock().unwrap_or_else(PoisonError::into_inner).remove(&token_key(token));
                Ok(None)
            }
            Kept::Redis(redis) => {
                let keys = vec![redis.key("s:", token)];
                let (_, confirmed) = redis.run_confirmed::<Vec<String>>(keys, times("end")).await?;
                Ok(confirmed.err().map(Unconfirmed))
            }
        }
    }
}

/// The script's first arguments: the mode, the idle time and the lifetime.
fn times(mode: &str) -> Vec<String> {
    vec![mode.to_owned(), IDLE.as_millis().to_string(), LIFETIME.as_millis().to_string()]
}

fn memory_start(sessions: &Mutex<FastMap<[u8; 32], Entry>>, token: &str, session: &Arc<Session>) {
    let now = Instant::now();
    let mut sessions = sessions.lock().unwrap_or_else(PoisonError::into_inner);
    // An account makes room among its own sessions: signing in many
    // times ends nobody else's.
    let own = |e: &Entry| e.session.account == session.account;
    if sessions.values().filter(|e| own(e)).count() >= MAX_PER_ACCOUNT {
        sessions.retain(|_, e| !own(e) || e.live(now));
    }
    if sessions.values().filter(|e| own(e)).count() >= MAX_PER_ACCOUNT
        && let Some(oldest) =
            sessions.iter().filter(|(_, e)| own(e)).min_by_key(|(_, e)| e.started).map(|(k, _)| *k)
    {
        sessions.remove(&oldest);
    }
    if sessions.len() >= MAX_SESSIONS {
        sessions.retain(|_, e| e.live(now));
    }
    if sessions.len() >= MAX_SESSIONS
        && let Some(oldest) = sessions.iter().min_by_key(|(_, e)| e.started).map(|(k, _)| *k)
    {
        sessions.remove(&oldest);
    }
    let entry = Entry { session: Arc::clone(session), started: now, last_seen: now };
    sessions.insert(token_key(token), entry);
}

fn memory_find(sessions: &Mutex<FastMap<[u8; 32], Entry>>, token: &str) -> Option<Arc<Session>> {
    let key = token_key(token);
    let now = Instant::now();
    let mut sessions = sessions.lock().unwrap_or_else(PoisonError::into_inner);
    let entry = sessions.get_mut(&key)?;
    if !entry.live(now) {
        sessions.remove(&key);
        return None;
    }
    entry.last_seen = now;
    Some(Arc::clone(&entry.session))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_session_is_found_by_its_token_only_and_ends() {
        let sessions = Sessions::default();
        let (token, session) = sessions.start("alice", String::from("f")).await.expect("random");
        let found = sessions.find(&token).await.expect("memory answers");
        assert_eq!(found.map(|s| s.account.clone()), Some(String::from("alice")));
        let by_csrf = sessions.find(&session.csrf).await.expect("memory answers");
        assert!(by_csrf.is_none(), "the CSRF token is not a session token");
        assert!(sessions.find("").await.expect("memory answers").is_none());
        assert!(sessions.end(&token).await.expect("memory answers").is_none(), "nothing to confirm");
        assert!(sessions.find(&token).await.expect("memory answers").is_none());
    }

    #[tokio::test]
    async fn an_account_signing_in_again_and_again_ends_only_its_own_oldest_sessions() {
        let sessions = Sessions::default();
        let (olivia, _) = sessions.start("olivia", String::from("f")).await.expect("random");
        let (first, _) = sessions.start("bob", String::from("f")).await.expect("random");
        for _ in 0..MAX_PER_ACCOUNT {
            sessions.start("bob", String::from("f")).await.expect("random");
        }
        assert!(
            sessions.find(&olivia).await.expect("memory").is_some(),
            "another account's session lives on"
        );
        assert!(sessions.find(&first).await.expect("memory").is_none(), "bob's oldest made room");
    }

    #[test]
    fn secrets_compare_by_content() {
        assert!(same_secret("abc", "abc"));
        assert!(!same_secret("abc", "abd"));
        assert!(!same_secret("abc", "ab"));
    }
}
