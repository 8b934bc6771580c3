//! Who is signed in.
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
    fn secrets_compare_by_content() {
        assert!(same_secret("abc", "abc"));
        assert!(!same_secret("abc", "abd"));
        assert!(!same_secret("abc", "ab"));
    }
}
