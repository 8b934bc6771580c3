//! Finding the primary through Redis Sentinel, every step within the
//! round-trip deadline: a sentinel that takes the connection and never
//! answers costs one deadline, then the next sentinel is asked. (A client
//! that waited on it without a deadline would leave the replica unable to
//! connect at all, although the other sentinels answer.)

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use redis::{
    ConnectionAddr, ErrorKind, IntoConnectionInfo, RedisConnectionInfo, RedisResult, TlsCertificates,
};

use super::address::SentinelAddress;

/// The sentinels, in the order given, and how to reach the primary they name.
pub(super) struct Sentinels {
    sentinels: Vec<redis::Client>,
    service: String,
    /// The nodes' database, user and password.
    node: RedisConnectionInfo,
    /// Over TLS, the certificates to check the nodes with (`None`: the
    /// system's); `None` in plain text.
    tls: Option<Option<TlsCertificates>>,
    /// The sentinel that answered last: asked first next time.
    answered: AtomicUsize,
}

/// A client of `host:port`, over TLS (checked against `certificates`, or
/// the system's CAs) when `tls` is given.
fn client(
    host: String,
    port: u16,
    redis: RedisConnectionInfo,
    tls: Option<&Option<TlsCertificates>>,
) -> RedisResult<redis::Client> {
    let addr = match tls {
        Some(_) => ConnectionAddr::TcpTls { host, port, insecure: false, tls_params: None },
        None => ConnectionAddr::Tcp(host, port),
    };
    // No `CLIENT SETINFO` at connect (see `direct_target` in link.rs).
    let info = addr.into_connection_info()?.set_redis_settings(redis.set_skip_set_lib_name());
    match tls {
        Some(Some(certificates)) => redis::Client::build_with_tls(info, certificates.clone()),
        _ => redis::Client::open(info),
    }
}

/// Gives `connection` the deadline `timeout` for reads and writes.
fn within(connection: &redis::Connection, timeout: Option<Duration>) -> RedisResult<()> {
    connection.set_read_timeout(timeout)?;
    connection.set_write_timeout(timeout)
}

impl Sentinels {
    /// The sentinels of `address`; `certificates` are for TLS (both the
    /// sentinels and the nodes), `node_password` and `sentinel_password`
    /// what each asks for.
    pub(super) fn new(
        address: SentinelAddress,
        certificates: Option<TlsCertificates>,
        node_password: Option<String>,
        sentinel_password: Option<String>,
    ) -> RedisResult<Sentinels> {
        let tls = address.tls.then_some(certificates);
        let mut asking = RedisConnectionInfo::default();
        if let Some(password) = sentinel_password {
            asking = asking.set_password(password);
        }
        let sentinels = address
            .sentinels
            .into_iter()
            .map(|(host, port)| client(host, port, asking.clone(), tls.as_ref()))
            .collect::<RedisResult<_>>()?;
        let mut node = RedisConnectionInfo::default().set_db(address.db);
        if let Some(user) = address.user {
            node = node.set_username(user);
        }
        if let Some(password) = node_password.or(address.password) {
            node = node.set_password(password);
        }
        Ok(Sentinels { sentinels, service: address.service, node, tls, answered: AtomicUsize::new(0) })
    }

    /// A connection to the primary the first sentinel to answer names (and
    /// which says it is the primary), each step within `timeout`, starting
    /// with the sentinel that answered last; the connection has no read or
    /// write deadline of its own.
    pub(super) fn connect_primary(&self, timeout: Duration) -> RedisResult<redis::Connection> {
        let mut failure = None;
        let first = self.answered.load(Ordering::Relaxed);
        for index in (0..self.sentinels.len()).map(|i| (first + i) % self.sentinels.len()) {
            match self.primary_named_by(&self.sentinels[index], timeout) {
                Ok(connection) => {
                    self.answered.store(index, Ordering::Relaxed);
                    return Ok(connection);
                }
                Err(error) => failure = Some(error),
            }
        }
        Err(failure.unwrap_or_else(|| (ErrorKind::InvalidClientConfig, "no sentinels").into()))
    }

    fn primary_named_by(
        &self,
        sentinel: &redis::Client,
        timeout: Duration,
    ) -> RedisResult<redis::Connection> {
        let mut asking = sentinel.get_connection_with_timeout(timeout)?;
        within(&asking, Some(timeout))?;
        let named: Option<(String, u16)> =
            redis::cmd("SENTINEL").arg("GET-MASTER-ADDR-BY-NAME").arg(&self.service).query(&mut asking)?;
        let Some((host, port)) = named else {
            return Err(redis::RedisError::from((
                ErrorKind::InvalidClientConfig,
                "the sentinel knows no primary of this name",
                self.service.clone(),
            )));
        };
        let primary = client(host, port, self.node.clone(), self.tls.as_ref())?;
        let mut connection = primary.get_connection_with_timeout(timeout)?;
        within(&connection, Some(timeout))?;
        // The sentinel may not know yet that its primary was demoted.
        let role: Vec<redis::Value> = redis::cmd("ROLE").query(&mut connection)?;
        if !matches!(role.first(), Some(redis::Value::BulkString(role)) if role == b"master") {
            return Err(redis::RedisError::from((
                ErrorKind::Server(redis::ServerErrorKind::ReadOnly),
                "the node the sentinel named is not the primary",
            )));
        }
        within(&connection, None)?;
        Ok(connection)
    }
}
