//! How a replica reaches Redis: the address, its TLS certificates and
//! password, the namespace of its keys, the deadline of a round trip —
//! one [`Link`] shared by the session, kill and approval stores.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::address::{check_namespace, is_sentinel, parse_sentinel, redact};
use super::sentinel::Sentinels;
use super::{RECONNECT_EVERY, RedisError};

/// The namespace when none is given.
pub const DEFAULT_NAMESPACE: &str = "tg";
/// How long a starting replica waits for Redis, by default.
pub const DEFAULT_START_WAIT: Duration = Duration::from_secs(10);

/// Where the shared state is and how to reach it, as the operator gave it
/// (its `Debug` hides the URL's password).
#[derive(Clone)]
pub struct RedisSettings {
    /// `redis://[USER[:PASSWORD]@]HOST[:PORT][/DB]`, `rediss://…` (TLS),
    /// `redis+unix:///path.sock`, `unix:///path.sock`, or the primary the
    /// sentinels know as SERVICE,
    /// `redis+sentinel://[[USER]:PASSWORD@]HOST[:PORT][,HOST[:PORT]…]/SERVICE[/DB]`
    /// (`rediss+sentinel://…` reaches the sentinels and the nodes over TLS).
    pub url: String,
    /// The first part of every key: deployments sharing one Redis under
    /// different namespaces share nothing else.
    pub namespace: String,
    /// The PEM certificates a `rediss://` server's certificate (and, through
    /// `rediss+sentinel://`, the sentinels' and the nodes') must chain to,
    /// instead of the system's.
    pub ca: Option<PathBuf>,
    /// A PEM client certificate and its key, for a server that asks for
    /// one (`tls-auth-clients yes`).
    pub client_certificate: Option<(PathBuf, PathBuf)>,
    /// A file holding the password (its first line), so that it is not
    /// on the command line; takes the place of a password in the URL. It
    /// must be private (mode 0600 or stricter, owned by this user or root).
    pub password_file: Option<PathBuf>,
    /// A file holding the password the sentinels ask for (`requirepass` in
    /// `sentinel.conf`), private like the password file; only for an
    /// address through Sentinel.
    pub sentinel_password_file: Option<PathBuf>,
    /// How long a starting replica waits for Redis to answer before it
    /// gives up (Redis starting at the same time as the replicas).
    pub start_wait: Duration,
    /// How many of Redis's own replicas must have a redemption or a kill
    /// (`WAIT`) before it counts: a failover cannot lose it then.
    pub replicas: u32,
}

impl std::fmt::Debug for RedisSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisSettings")
            .field("url", &redact(&self.url))
            .field("namespace", &self.namespace)
            .field("ca", &self.ca)
            .field("client_certificate", &self.client_certificate)
            .field("password_file", &self.password_file)
            .field("sentinel_password_file", &self.sentinel_password_file)
            .field("start_wait", &self.start_wait)
            .field("replicas", &self.replicas)
            .finish()
    }
}

impl RedisSettings {
    /// The settings for `url`, with the defaults.
    pub fn new(url: &str) -> RedisSettings {
        RedisSettings {
            url: url.to_owned(),
            namespace: String::from(DEFAULT_NAMESPACE),
            ca: None,
            client_certificate: None,
            password_file: None,
            sentinel_password_file: None,
            start_wait: DEFAULT_START_WAIT,
            replicas: 0,
        }
    }
}

/// A client of the one Redis `settings` name.
fn direct_target(settings: &RedisSettings) -> Result<Target, RedisError> {
    let not_an_address = |e: redis::RedisError| RedisError(format!("not a Redis address: {e}"));
    if settings.sentinel_password_file.is_some() {
        return Err(RedisError(String::from(
            "a sentinels' password is for an address through Sentinel: `redis+sentinel://…` or `rediss+sentinel://…`",
        )));
    }
    let info =
        redis::IntoConnectionInfo::into_connection_info(settings.url.as_str()).map_err(not_an_address)?;
    // No `CLIENT SETINFO` at connect: the least-privilege user may not run
    // it, and every refusal would be an entry in Redis's `ACL LOG`.
    let mut redis = info.redis_settings().clone().set_skip_set_lib_name();
    if let Some(password) = password_from_file(settings.password_file.as_deref(), "Redis password file")? {
        redis = redis.set_password(password);
    }
    let info = info.set_redis_settings(redis);
    let tls = match info.addr() {
        redis::ConnectionAddr::TcpTls { insecure: true, .. } => {
            return Err(RedisError(String::from(
                "the address turns off certificate checks (`#insecure`), which toolgate does not do: give the server's CA with --redis-ca",
            )));
        }
        redis::ConnectionAddr::TcpTls { .. } => true,
        _ => false,
    };
    let client = match tls_certificates(settings, tls)? {
        None => redis::Client::open(info).map_err(not_an_address)?,
        Some(certificates) => redis::Client::build_with_tls(info, certificates)
            .map_err(|e| RedisError(format!("the TLS settings: {e}")))?,
    };
    Ok(Target::Direct(Box::new(client)))
}

/// The CA and client certificate `settings` give, read; an error when they
/// give any for an address without TLS.
fn tls_certificates(
    settings: &RedisSettings,
    tls: bool,
) -> Result<Option<redis::TlsCertificates>, RedisError> {
    if settings.ca.is_none() && settings.client_certificate.is_none() {
        return Ok(None);
    }
    if !tls {
        return Err(RedisError(String::from(
            "it is not a TLS address: a CA or client certificate needs `rediss://` (or `rediss+sentinel://`)",
        )));
    }
    let root_cert = match &settings.ca {
        Some(path) => Some(read(path, "Redis CA certificate file")?),
        None => None,
    };
    let client_tls = match &settings.client_certificate {
        Some((cert, key)) => Some(redis::ClientTlsConfig {
            client_cert: read(cert, "Redis client certificate")?,
            client_key: read_secret(key, "Redis client key")?,
        }),
        None => None,
    };
    Ok(Some(redis::TlsCertificates { client_tls, root_cert }))
}

/// The sentinels `settings` name, to ask for their primary.
fn sentinel_target(settings: &RedisSettings) -> Result<Target, RedisError> {
    let address =
        parse_sentinel(&settings.url).map_err(|e| RedisError(format!("not a Sentinel address: {e}")))?;
    let certificates = tls_certificates(settings, address.tls)?;
    let node_password = password_from_file(settings.password_file.as_deref(), "Redis password file")?;
    let sentinel_password =
        password_from_file(settings.sentinel_password_file.as_deref(), "sentinels' password file")?;
    let sentinels = Sentinels::new(address, certificates, node_password, sentinel_password)
        .map_err(|e| RedisError(format!("the Sentinel settings: {e}")))?;
    Ok(Target::Sentinel(Arc::new(sentinels)))
}

/// A connection to one Redis: the client every store of a replica uses.
#[derive(Clone)]
pub struct Link {
    target: Target,
    /// The URL without its password.
    shown: String,
    namespace: String,
    timeout: Duration,
    replicas: u32,
}

/// Where a link's connections go.
#[derive(Clone)]
enum Target {
    /// One Redis.
    Direct(Box<redis::Client>),
    /// The primary Redis Sentinel names, asked again for every new
    /// connection: after a failover, reconnecting finds the new primary.
    Sentinel(Arc<Sentinels>),
}

impl std::fmt::Debug for Link {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Link").field("url", &self.shown).field("namespace", &self.namespace).finish()
    }
}

fn read(path: &Path, what: &str) -> Result<Vec<u8>, RedisError> {
    std::fs::read(path).map_err(|e| RedisError(format!("cannot read the {what} `{}`: {e}", path.display())))
}

/// Reads a secret file (see [`read_secret`](super::super::private::read_secret)).
fn read_secret(path: &Path, what: &str) -> Result<Vec<u8>, RedisError> {
    super::super::private::read_secret(path, what).map_err(|e| match e.kind() {
        std::io::ErrorKind::PermissionDenied => RedisError(e.to_string()),
        _ => RedisError(format!("cannot read the {what} `{}`: {e}", path.display())),
    })
}

/// Whether TLS itself failed (a certificate not trusted, one the server
/// asked for and did not get): the handshake's error, not a lost
/// connection.
fn tls_refused(error: &redis::RedisError) -> bool {
    type Shared = Arc<dyn std::error::Error + Send + Sync>;
    // The crate keeps the I/O error behind an `Arc`.
    let source = std::error::Error::source(error);
    let io = source.and_then(|source| match source.downcast_ref::<Shared>() {
        Some(shared) => shared.downcast_ref::<std::io::Error>(),
        None => source.downcast_ref::<std::io::Error>(),
    });
    io.and_then(std::io::Error::get_ref).is_some_and(|inner| inner.is::<tokio_rustls::rustls::Error>())
}

/// The password in the file `path` (its first line), if a file is named.
fn password_from_file(path: Option<&Path>, what: &str) -> Result<Option<String>, RedisError> {
    let Some(path) = path else { return Ok(None) };
    let text = String::from_utf8(read_secret(path, what)?)
        .map_err(|_| RedisError(format!("the {what} `{}` is not UTF-8", path.display())))?;
    match text.lines().next() {
        Some(password) if !password.is_empty() => Ok(Some(password.to_owned())),
        _ => Err(RedisError(format!("the {what} `{}` is empty", path.display()))),
    }
}

impl Link {
    /// A client for `settings` whose every round trip must end within
    /// `timeout`. Nothing is connected yet; a bad address, namespace,
    /// certificate or password file is an error here.
    pub fn new(settings: &RedisSettings, timeout: Duration) -> Result<Link, RedisError> {
        check_namespace(&settings.namespace).map_err(RedisError)?;
        // Schemes are case-insensitive.
        let url = match settings.url.split_once("://") {
            Some((scheme, rest)) => format!("{}://{rest}", scheme.to_ascii_lowercase()),
            None => settings.url.clone(),
        };
        let settings = &RedisSettings { url, ..settings.clone() };
        let target = match is_sentinel(&settings.url) {
            true => sentinel_target(settings)?,
            false => direct_target(settings)?,
        };
        Ok(Link {
            target,
            shown: redact(&settings.url),
            namespace: settings.namespace.clone(),
            timeout,
            replicas: settings.replicas,
        })
    }

    /// A client for `url` under `namespace`, without TLS certificates or a
    /// password file.
    pub fn to(url: &str, namespace: &str, timeout: Duration) -> Result<Link, RedisError> {
        Link::new(&RedisSettings { namespace: namespace.to_owned(), ..RedisSettings::new(url) }, timeout)
    }

    /// The URL, without its password.
    pub fn shown(&self) -> &str {
        &self.shown
    }

    /// The namespace of every key.
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// The deadline of one round trip.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Waits (`WAIT`, for half the round-trip deadline, so that its answer
    /// comes within it) until the replicas the settings ask for have every
    /// write made on `connection`; `Err` says how many did. Without
    /// replicas asked for, at once.
    pub fn confirm(&self, connection: &mut redis::Connection) -> redis::RedisResult<Result<(), String>> {
        if self.replicas == 0 {
            return Ok(Ok(()));
        }
        let within = (u64::try_from(self.timeout.as_millis()).unwrap_or(u64::MAX) / 2).max(1);
        let acknowledged: u64 = redis::cmd("WAIT").arg(self.replicas).arg(within).query(connection)?;
        Ok(match acknowledged >= u64::from(self.replicas) {
            true => Ok(()),
            false => Err(format!(
                "only {acknowledged} of the {} Redis replicas asked for (--redis-replicas) have it after {within} ms",
                self.replicas
            )),
        })
    }

    /// A new connection whose reads and writes time out.
    pub fn connect(&self) -> redis::RedisResult<redis::Connection> {
        let connection = self.subscriber()?;
        connection.set_read_timeout(Some(self.timeout))?;
        connection.set_write_timeout(Some(self.timeout))?;
        Ok(connection)
    }

    /// A new connection for a subscription: reads do not time out here
    /// (the subscriber sets its own).
    pub fn subscriber(&self) -> redis::RedisResult<redis::Connection> {
        match &self.target {
            Target::Direct(client) => client.get_connection_with_timeout(self.timeout),
            Target::Sentinel(sentinels) => sentinels.connect_primary(self.timeout),
        }
    }

    /// Why this Redis could lose state on its own, if it could: a memory
    /// limit with a policy that evicts keys (counts, buckets, approvals and
    /// console sessions carry a TTL, so even `volatile-*` policies may drop
    /// them; `allkeys-*` may drop the kills too). Read from `INFO memory`; `None` when it cannot (or, with
    /// `INFO` refused, when this cannot be told).
    pub fn eviction_risk(&self) -> Option<String> {
        let mut connection = self.connect().ok()?;
        let info: String = redis::cmd("INFO").arg("memory").query(&mut connection).ok()?;
        let setting = |name: &str| {
            info.lines().find_map(|line| line.trim().strip_prefix(name)?.strip_prefix(':').map(str::to_owned))
        };
        let (limit, policy) = (setting("maxmemory")?, setting("maxmemory_policy")?);
        (policy != "noeviction" && limit != "0").then(|| {
            format!(
                "Redis evicts keys when it reaches its memory limit (maxmemory {limit}, maxmemory-policy {policy}): session counts, kills and approvals could vanish and caps start again; set maxmemory-policy noeviction"
            )
        })
    }

    /// Waits until Redis answers a `PING`, trying every
    /// [`RECONNECT_EVERY`] until `within` has passed: replicas and Redis may
    /// start together. A refusal that waiting cannot mend (a wrong
    /// password, a certificate the server rejects) ends the wait at once.
    pub fn wait_until_reachable(&self, within: Duration) -> Result<(), RedisError> {
        let deadline = Instant::now() + within;
        let mut told = false;
        loop {
            let error = match self.connect().and_then(|mut c| redis::cmd("PING").query::<String>(&mut c)) {
                Ok(_) => return Ok(()),
                Err(error) => error,
            };
            let lasting = matches!(
                error.kind(),
                redis::ErrorKind::AuthenticationFailed | redis::ErrorKind::InvalidClientConfig
            ) || matches!(error.code(), Some("WRONGPASS" | "NOAUTH" | "NOPERM"))
                || tls_refused(&error);
            let left = deadline.saturating_duration_since(Instant::now());
            if lasting || left.is_zero() {
                return Err(RedisError(format!("Redis does not answer: {error}")));
            }
            if !told {
                tracing::warn!(url = %self.shown, %error, "waiting for Redis");
                told = true;
            }
            std::thread::sleep(RECONNECT_EVERY.min(left));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_never_show_a_password() {
        let settings = RedisSettings::new("rediss://app:s3cret@host/0");
        assert!(!format!("{settings:?}").contains("s3cret"));
    }
}
