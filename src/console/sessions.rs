//! Who is signed in, and who has failed to sign in too often.
//!
//! A session is a random 256-bit token in an HTTP-only, `SameSite=Strict`
//! cookie; the server keeps only its SHA-256, with the account's
//! fingerprint (a changed account ends its sessions) and the session's own
//! CSRF token, which every form that changes something must carry back.
//! Sessions end after [`IDLE`] without a request, or [`LIFETIME`] after
//! sign-in, whichever comes first.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use crate::hash::FastMap;

/// A session unused this long has ended.
pub const IDLE: Duration = Duration::from_secs(30 * 60);
/// A session this old has ended, used or not.
pub const LIFETIME: Duration = Duration::from_secs(12 * 3600);
/// The most sessions one account has at once; its oldest is ended to make room.
pub const MAX_PER_ACCOUNT: usize = 16;
/// The most sessions at once (the accounts file bounds how many accounts
/// there are); the oldest is ended to make room.
const MAX_SESSIONS: usize = 10_000;

/// Failures in a row before a name must wait.
pub const FREE_FAILURES: u32 = 5;
/// Failures in a row before an address's sign-ins are slowed down (many
/// people may share one address behind a proxy).
pub const FREE_ADDRESS_FAILURES: u32 = 20;
/// The longest wait after failures.
const MAX_LOCKOUT: Duration = Duration::from_secs(15 * 60);
/// The most names and addresses remembered by the throttle.
const MAX_THROTTLED: usize = 10_000;

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
    started: Instant,
    last_seen: Mutex<Instant>,
}

/// The signed-in sessions.
#[derive(Debug, Default)]
pub struct Sessions {
    by_token: Mutex<FastMap<[u8; 32], Arc<Session>>>,
}

impl Sessions {
    /// Signs `account` in: the cookie's token and the session.
    pub fn start(
        &self,
        account: &str,
        fingerprint: String,
    ) -> Result<(String, Arc<Session>), getrandom::Error> {
        let token = random_token()?;
        let now = Instant::now();
        let session = Arc::new(Session {
            account: account.to_owned(),
            fingerprint,
            csrf: random_token()?,
            started: now,
            last_seen: Mutex::new(now),
        });
        let mut sessions = self.by_token.lock().unwrap_or_else(PoisonError::into_inner);
        // An account makes room among its own sessions: signing in many
        // times ends nobody else's.
        let own = |s: &Session| s.account == account;
        if sessions.values().filter(|s| own(s)).count() >= MAX_PER_ACCOUNT {
            sessions.retain(|_, s| !own(s) || s.live(now));
        }
        if sessions.values().filter(|s| own(s)).count() >= MAX_PER_ACCOUNT
            && let Some(oldest) =
                sessions.iter().filter(|(_, s)| own(s)).min_by_key(|(_, s)| s.started).map(|(k, _)| *k)
        {
            sessions.remove(&oldest);
        }
        if sessions.len() >= MAX_SESSIONS {
            sessions.retain(|_, s| s.live(now));
        }
        if sessions.len() >= MAX_SESSIONS
            && let Some(oldest) = sessions.iter().min_by_key(|(_, s)| s.started).map(|(k, _)| *k)
        {
            sessions.remove(&oldest);
        }
        sessions.insert(token_key(&token), Arc::clone(&session));
        Ok((token, session))
    }

    /// The live session of `token`, marked as used now.
    pub fn find(&self, token: &str) -> Option<Arc<Session>> {
        let key = token_key(token);
        let now = Instant::now();
        let mut sessions = self.by_token.lock().unwrap_or_else(PoisonError::into_inner);
        let session = sessions.get(&key)?;
        if !session.live(now) {
            sessions.remove(&key);
            return None;
        }
        *session.last_seen.lock().unwrap_or_else(PoisonError::into_inner) = now;
        Some(Arc::clone(session))
    }

    /// Ends the session of `token`.
    pub fn end(&self, token: &str) {
        self.by_token.lock().unwrap_or_else(PoisonError::into_inner).remove(&token_key(token));
    }
}

impl Session {
    fn live(&self, now: Instant) -> bool {
        let last_seen = *self.last_seen.lock().unwrap_or_else(PoisonError::into_inner);
        now.duration_since(self.started) < LIFETIME && now.duration_since(last_seen) < IDLE
    }
}

/// Failed sign-ins by key (a name, or an address): after `free` in a row,
/// each further one makes the key wait twice as long as the last (1 s,
/// 2 s, …, at most 15 minutes).
#[derive(Debug)]
pub struct Throttle {
    free: u32,
    failures: Mutex<FastMap<String, Failures>>,
}

#[derive(Debug)]
struct Failures {
    count: u32,
    last: Instant,
    /// Whether a refusal in this wait was already reported.
    reported: bool,
}

/// How long a key must still wait.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Wait {
    /// The time left.
    pub left: Duration,
    /// Whether this is the first refusal of this wait (the one recorded;
    /// the others are only counted).
    pub first: bool,
}

impl Throttle {
    /// A throttle that lets `free` failures in a row go unpunished.
    pub fn new(free: u32) -> Throttle {
        Throttle { free, failures: Mutex::default() }
    }

    /// How long `key` must still wait before a sign-in is checked.
    pub fn wait(&self, key: &str) -> Option<Wait> {
        let mut failures = self.failures.lock().unwrap_or_else(PoisonError::into_inner);
        let entry = failures.get_mut(key)?;
        let left = lockout(entry.count, self.free)?.checked_sub(entry.last.elapsed())?;
        let first = !entry.reported;
        entry.reported = true;
        Some(Wait { left, first })
    }

    /// Counts a failure for `key`.
    pub fn failed(&self, key: &str) {
        let mut failures = self.failures.lock().unwrap_or_else(PoisonError::into_inner);
        if failures.len() >= MAX_THROTTLED && !failures.contains_key(key) {
            // Forget those who would no longer wait, then the least suspect.
            let free = self.free;
            failures.retain(|_, f| lockout(f.count, free).is_some_and(|l| f.last.elapsed() < l));
            if failures.len() >= MAX_THROTTLED
                && let Some(least) = failures.iter().min_by_key(|(_, f)| f.count).map(|(k, _)| k.clone())
            {
                failures.remove(&least);
            }
        }
        let entry = failures.entry(key.to_owned()).or_insert(Failures {
            count: 0,
            last: Instant::now(),
            reported: false,
        });
        entry.count = entry.count.saturating_add(1);
        entry.last = Instant::now();
        entry.reported = false;
    }

    /// Forgets the failures of `key` (it signed in).
    pub fn succeeded(&self, key: &str) {
        self.failures.lock().unwrap_or_else(PoisonError::into_inner).remove(key);
    }
}

/// The wait after `count` failures in a row, `free` of them unpunished.
fn lockout(count: u32, free: u32) -> Option<Duration> {
    let over = count.checked_sub(free)?;
    let seconds = 1u64.checked_shl(over).unwrap_or(u64::MAX);
    Some(Duration::from_secs(seconds).min(MAX_LOCKOUT))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_is_found_by_its_token_only_and_ends() {
        let sessions = Sessions::default();
        let (token, session) = sessions.start("alice", String::from("f")).expect("random");
        assert_eq!(sessions.find(&token).map(|s| s.account.clone()), Some(String::from("alice")));
        assert!(sessions.find(&session.csrf).is_none(), "the CSRF token is not a session token");
        assert!(sessions.find("").is_none());
        sessions.end(&token);
        assert!(sessions.find(&token).is_none());
    }

    #[test]
    fn an_account_signing_in_again_and_again_ends_only_its_own_oldest_sessions() {
        let sessions = Sessions::default();
        let (olivia, _) = sessions.start("olivia", String::from("f")).expect("random");
        let (first, _) = sessions.start("bob", String::from("f")).expect("random");
        for _ in 0..MAX_PER_ACCOUNT {
            sessions.start("bob", String::from("f")).expect("random");
        }
        assert!(sessions.find(&olivia).is_some(), "another account's session lives on");
        assert!(sessions.find(&first).is_none(), "bob's oldest made room");
    }

    #[test]
    fn failures_past_the_free_ones_make_the_name_wait_longer_each_time() {
        let throttle = Throttle::new(FREE_FAILURES);
        for _ in 0..FREE_FAILURES {
            assert_eq!(throttle.wait("alice"), None);
            throttle.failed("alice");
        }
        let first = throttle.wait("alice").expect("waits");
        assert!(first.first && first.left <= Duration::from_secs(1));
        assert!(!throttle.wait("alice").expect("waits").first, "reported once per wait");
        throttle.failed("alice");
        let second = throttle.wait("alice").expect("waits");
        assert!(second.first && second.left > Duration::from_secs(1));
        assert_eq!(throttle.wait("bob"), None, "others are not affected");
        throttle.succeeded("alice");
        assert_eq!(throttle.wait("alice"), None);
        assert_eq!(lockout(100, FREE_FAILURES), Some(MAX_LOCKOUT));
    }

    #[test]
    fn secrets_compare_by_content() {
        assert!(same_secret("abc", "abc"));
        assert!(!same_secret("abc", "abd"));
        assert!(!same_secret("abc", "ab"));
    }
}
