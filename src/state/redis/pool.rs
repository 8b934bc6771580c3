//! Idle connections to Redis kept for calls that come now and then from
//! many threads (approvals, the console's sign-in throttle): a call takes
//! one, or connects, and gives it back when it worked, so that callers do
//! not wait on each other.

use std::sync::{Mutex, PoisonError};

use super::link::Link;

/// The most idle connections kept.
const MAX_IDLE_CONNECTIONS: usize = 8;

/// Connections through one [`Link`], reused.
pub struct Pool {
    link: Link,
    idle: Mutex<Vec<redis::Connection>>,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool").field("link", &self.link).finish_non_exhaustive()
    }
}

impl Pool {
    /// No connection yet: the first call connects.
    pub fn new(link: Link) -> Pool {
        Pool { link, idle: Mutex::new(Vec::new()) }
    }

    /// The link the connections go through.
    pub fn link(&self) -> &Link {
        &self.link
    }

    /// Runs `f` on an idle connection, connecting if there is none; a
    /// connection that failed is dropped (the next call connects again).
    pub fn with<T>(
        &self,
        f: impl FnOnce(&mut redis::Connection) -> redis::RedisResult<T>,
    ) -> redis::RedisResult<T> {
        let idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner).pop();
        let mut connection = match idle {
            Some(connection) => connection,
            None => self.link.connect()?,
        };
        let result = f(&mut connection)?;
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        if idle.len() < MAX_IDLE_CONNECTIONS {
            idle.push(connection);
        }
        Ok(result)
    }
}
