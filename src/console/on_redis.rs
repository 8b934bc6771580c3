//! The console's own state on Redis (failed sign-ins, sign-in sessions),
//! when the replica's state is there: one script per kind, run off the
//! async threads, its keys under the console's hash tag and named by
//! SHA-256 digests — never by a token (which cannot be found from its
//! digest), and by a name or address only under a pseudonym (which can be,
//! by trying names or every address).

use std::sync::Arc;

use crate::state::redis::pool::Pool;

/// Redis did not answer (or answered what the script never does).
#[derive(Debug)]
pub struct Unavailable(pub String);

/// One script and the keys it keeps.
#[derive(Debug)]
pub(super) struct RedisScript {
    pool: Arc<Pool>,
    script: redis::Script,
    /// `{NAMESPACE:console}:KIND:`.
    prefix: String,
}

impl RedisScript {
    /// `source` run through `pool`, keeping its keys under `kind`.
    pub(super) fn new(pool: Arc<Pool>, source: &str, kind: &str) -> RedisScript {
        let prefix = format!("{{{}:console}}:{kind}:", pool.link().namespace());
        RedisScript { pool, script: redis::Script::new(source), prefix }
    }

    /// The key of `what` (a name, an address, a token): a digest of it.
    pub(super) fn key(&self, part: &str, what: &str) -> String {
        let digest = crate::hash::sha256_text(sha2::Digest::new_with_prefix(what));
        format!("{}{part}{digest}", self.prefix)
    }

    /// Runs the script with `keys` and `args`, off the async threads.
    pub(super) async fn run<T>(
        self: &Arc<Self>,
        keys: Vec<String>,
        args: Vec<String>,
    ) -> Result<T, Unavailable>
    where
        T: redis::FromRedisValue + Send + 'static,
    {
        self.invoke(keys, args, false).await.map(|(answer, _)| answer)
    }

    /// Runs the script, then waits for the Redis replicas the state was
    /// told to wait for (`--redis-replicas`) to have what it wrote; the
    /// second part says whether they did, and if not, why.
    pub(super) async fn run_confirmed<T>(
        self: &Arc<Self>,
        keys: Vec<String>,
        args: Vec<String>,
    ) -> Result<(T, Result<(), String>), Unavailable>
    where
        T: redis::FromRedisValue + Send + 'static,
    {
        self.invoke(keys, args, true).await
    }

    async fn invoke<T>(
        self: &Arc<Self>,
        keys: Vec<String>,
        args: Vec<String>,
        confirm: bool,
    ) -> Result<(T, Result<(), String>), Unavailable>
    where
        T: redis::FromRedisValue + Send + 'static,
    {
        let this = Arc::clone(self);
        let ran = tokio::task::spawn_blocking(move || {
            this.pool.with(|connection| {
                let mut call = this.script.prepare_invoke();
                for key in &keys {
                    call.key(key);
                }
                for arg in &args {
                    call.arg(arg);
                }
                let answer = call.invoke(connection)?;
                let confirmed = if confirm { this.pool.link().confirm(connection)? } else { Ok(()) };
                Ok((answer, confirmed))
            })
        })
        .await;
        match ran {
            Ok(Ok(answer)) => Ok(answer),
            Ok(Err(error)) => Err(Unavailable(format!("Redis: {error}"))),
            Err(error) => Err(Unavailable(error.to_string())),
        }
    }
}
