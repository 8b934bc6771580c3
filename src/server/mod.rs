//! The decision server: the [`crate::service`] on Unix domain sockets,
//! with a connection cap, idle timeouts and a graceful drain. Like
//! `mini-redis`, [`run`] takes its listeners and a shutdown future from the
//! caller. This is framing and connection handling only: every line is
//! answered by the service.

pub mod connection;
pub mod socket;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::UnixListener;
use tokio::sync::{Semaphore, watch};

use crate::service::{Role, Service};

/// Who may use the admin socket, by the credentials the kernel reports for
/// a connection (`SO_PEERCRED`). Root is always allowed.
#[derive(Clone, Debug, Default)]
pub struct AdminPeers {
    /// Allowed user ids.
    pub uids: Vec<u32>,
    /// Allowed primary group ids.
    pub gids: Vec<u32>,
}

impl AdminPeers {
    /// Whether a peer with these ids may use the admin socket.
    pub fn allows(&self, uid: u32, gid: u32) -> bool {
        uid == 0 || self.uids.contains(&uid) || self.gids.contains(&gid)
    }
}

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

/// Serves connections from `listener` until `shutdown` completes, then stops
/// accepting, lets open connections answer what they have already received,
/// and returns once they are closed (or the drain timeout passes).
pub async fn run(
    listener: UnixListener,
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
    let settings = connection::Settings::from(&config);
    let (stop, stopped) = watch::channel(false);
    let mut connections = tokio::task::JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = accept_admin(admin_listener.as_ref()) => {
                let stream = match accepted {
                    Ok(stream) => stream,
                    Err(error) => {
                        tracing::error!(%error, "admin accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let peer = stream.peer_cred().ok();
                let uid = peer.map(|c| c.uid());
                match uid.filter(|_| peer.is_some_and(|p| admin_peers.allows(p.uid(), p.gid()))) {
                    Some(uid) => {
                        let service = Arc::clone(&service);
                        let stopped = stopped.clone();
                        connections.spawn(async move {
                            let (read, write) = stream.into_split();
                            let _ = connection::serve(read, write, &service, settings, Role::Admin { uid }, Some(stopped)).await;
                        });
                    }
                    None => {
                        tracing::warn!(?uid, "admin connection refused: peer is not an allowed user");
                        connections.spawn(connection::refuse(stream, "this user may not use the admin socket"));
                    }
                }
            }
            accepted = listener.accept() => {
                let stream = match accepted {
                    Ok((stream, _)) => stream,
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
                    connections.spawn(connection::refuse(stream, "too many connections; try again later"));
                    continue;
                };
                let service = Arc::clone(&service);
                let stopped = stopped.clone();
                connections.spawn(async move {
                    service.metrics().opened();
                    let (read, write) = stream.into_split();
                    let _ = connection::serve(read, write, &service, settings, Role::Decisions, Some(stopped)).await;
                    service.metrics().closed();
                    drop(permit);
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

/// Accepts from the admin listener, or waits forever when there is none.
async fn accept_admin(listener: Option<&UnixListener>) -> std::io::Result<tokio::net::UnixStream> {
    match listener {
        Some(listener) => listener.accept().await.map(|(stream, _)| stream),
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::AdminPeers;

    #[test]
    fn admin_peers_are_root_listed_users_and_listed_groups() {
        let peers = AdminPeers { uids: vec![1000], gids: vec![50] };
        assert!(peers.allows(0, 0));
        assert!(peers.allows(1000, 1000));
        assert!(peers.allows(1001, 50));
        assert!(!peers.allows(1001, 1001));
        assert!(!AdminPeers::default().allows(1000, 1000));
    }
}
