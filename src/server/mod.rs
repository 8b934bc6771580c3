//! The decision server: the [`crate::service`] on Unix domain sockets,
//! with a connection cap, idle timeouts and a graceful drain. Like
//! `mini-redis`, [`run`] takes its listeners and a shutdown future from the
//! caller. This is framing and connection handling only: every line is
//! answered by the service.

pub mod connection;
pub mod peer;
pub mod socket;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::UnixListener;
use tokio::sync::{Semaphore, watch};

use crate::protocol::WireErrorCode;
use crate::service::Identity;
use crate::service::{Peer, Role, Service};

/// Who operates the server through the admin socket (kills, revivals,
/// reloads and approvals), by who the kernel says a peer is. Root is
/// always an operator. Other peers are admitted only as members of a
/// declared approver, for approvals.
#[derive(Clone, Debug, Default)]
pub struct AdminPeers {
    /// Operators' user ids.
    pub uids: Vec<u32>,
    /// Groups (primary or supplementary) whose members are operators.
    pub gids: Vec<u32>,
}

impl AdminPeers {
    /// Whether `who` is an operator.
    pub fn operator(&self, who: &Identity) -> bool {
        who.uid.is_some_and(|uid| uid == 0 || self.uids.contains(&uid))
            || who.groups.iter().any(|(gid, _)| gid.is_some_and(|gid| self.gids.contains(&gid)))
    }
}

/// The most admin connections served at once: with the descriptors the
/// server keeps free of decision connections, the kill switch always
/// accepts.
pub const MAX_ADMIN_CONNECTIONS: usize = 16;

/// Transport settings.
#[derive(Clone, Debug)]
pub struct Config {
    /// The most connections served at once; more are refused.
    pub max_connections: usize,
    /// A connection that sends no complete line for this long is closed.
    pub idle_timeout: Duration,
    /// The longest request line accepted.
    pub max_line_bytes: usize,
    /// How long shutdown waits for open connections to finish.
    pub drain_timeout: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            max_connections: 1024,
            idle_timeout: Duration::from_secs(30),
            max_line_bytes: 1 << 20,
            drain_timeout: Duration::from_secs(10),
        }
    }
}

/// Serves connections from `listener` (decisions) and `admin` until
/// `shutdown` completes, then stops accepting, lets open connections answer
/// what they have already received, and returns once they are closed (or
/// the drain timeout passes). Either listener may be absent: `toolgate
/// proxy` serves only an admin socket.
pub async fn run(
    listener: Option<UnixListener>,
    admin: Option<(UnixListener, AdminPeers)>,
    service: Arc<Service>,
    config: Config,
    shutdown: impl Future<Output = ()>,
) {
    let (admin_listener, admin_peers) = match admin {
        Some((listener, peers)) => (Some(listener), peers),
        None => (None, AdminPeers::default()),
    };
    let limit = Arc::new(Semaphore::new(config.max_connections));
    let admin_limit = Arc::new(Semaphore::new(MAX_ADMIN_CONNECTIONS));
    let settings = connection::Settings::from(&config);
    let (stop, stopped) = watch::channel(false);
    let mut connections = tokio::task::JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = accept(admin_listener.as_ref()) => {
                let stream = match accepted {
                    Ok(stream) => stream,
                    Err(error) => {
                        tracing::error!(%error, "admin accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let Ok(permit) = Arc::clone(&admin_limit).try_acquire_owned() else {
                    connections.spawn(connection::refuse(stream, WireErrorCode::Unavailable, "too many admin connections; try again later"));
                    continue;
                };
                let (service, operators, stopped) = (Arc::clone(&service), admin_peers.clone(), stopped.clone());
                connections.spawn(async move {
                    let _permit = permit;
                    let Ok(credentials) = stream.peer_cred() else {
                        return connection::refuse(stream, WireErrorCode::Forbidden, "the peer's credentials cannot be read").await;
                    };
                    let (uid, gid) = (credentials.uid(), credentials.gid());
                    // The user database may be remote (NSS): off the async threads.
                    let identity = tokio::task::spawn_blocking(move || peer::identify(uid, gid))
                        .await
                        .unwrap_or(Identity { uid: Some(uid), user: None, groups: vec![(Some(gid), None)] });
                    let operator = operators.operator(&identity);
                    if !operator && !service.is_approver(&identity) {
                        tracing::warn!(%identity, "admin connection refused: neither an operator nor an approver");
                        service.record_refused_peer(&identity).await;
                        return connection::refuse(stream, WireErrorCode::Forbidden, "this user may not use the admin socket").await;
                    }
                    let role = Role::Admin(Peer { identity, operator });
                    let (read, write) = stream.into_split();
                    let _ = connection::serve(read, write, &service, settings, role, Some(stopped)).await;
                });
            }
            accepted = accept(listener.as_ref()) => {
                let stream = match accepted {
                    Ok(stream) => stream,
                    Err(error) => {
                        // Out of file descriptors and the like: back off, keep serving.
                        tracing::error!(%error, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let Ok(permit) = Arc::clone(&limit).try_acquire_owned() else {
                    service.metrics().refused();
                    tracing::warn!(limit = config.max_connections, "connection refused: too many connections");
                    connections.spawn(connection::refuse(stream, WireErrorCode::Unavailable, "too many connections; try again later"));
                    continue;
                };
                let service = Arc::clone(&service);
                let stopped = stopped.clone();
                connections.spawn(async move {
                    service.metrics().opened();
                    let (read, write) = stream.into_split();
                    let _ = connection::serve(read, write, &service, settings, Role::Decisions, Some(stopped)).await;
                    // The slot first: once `status` counts a connection
                    // closed, its place is free for the next one.
                    drop(permit);
                    service.metrics().closed();
                });
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            () = &mut shutdown => break,
        }
    }
    drop(listener);
    drop(admin_listener);
    let _ = stop.send(true);
    let open = connections.len();
    tracing::info!(open, "shutting down: draining connections");
    let drained = tokio::time::timeout(config.drain_timeout, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!(left = connections.len(), "drain timeout: closing remaining connections");
        connections.shutdown().await;
    }
}

/// Accepts from a listener, or waits forever when there is none.
async fn accept(listener: Option<&UnixListener>) -> std::io::Result<tokio::net::UnixStream> {
    match listener {
        Some(listener) => listener.accept().await.map(|(stream, _)| stream),
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::{AdminPeers, Identity};

    #[test]
    fn operators_are_root_listed_users_and_members_of_listed_groups() {
        let who = |uid, groups: &[u32]| Identity {
            uid: Some(uid),
            user: None,
            groups: groups.iter().map(|g| (Some(*g), None)).collect(),
        };
        let peers = AdminPeers { uids: vec![1000], gids: vec![50] };
        assert!(peers.operator(&who(0, &[0])));
        assert!(peers.operator(&who(1000, &[1000])));
        assert!(peers.operator(&who(1001, &[1001, 50])), "a supplementary group");
        assert!(!peers.operator(&who(1001, &[1001])));
        assert!(!AdminPeers::default().operator(&who(1000, &[1000])));
    }
}
