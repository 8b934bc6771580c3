//! Serving a router on a listener, bounded: at most a given number of
//! connections at once (the rest wait in the kernel's backlog, holding no
//! descriptor of ours, so the decision and admin sockets keep theirs); the
//! request headers must arrive within [`HEADER_TIMEOUT`], including between
//! the requests of a kept-alive connection; and a request must be answered
//! within [`REQUEST_TIMEOUT`] (its body read, too) unless it is a stream.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{ConnectInfo, Request};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::sync::Semaphore;

/// How long a client has to send a request's headers (the first, or the
/// next on a kept-alive connection).
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a request may take, body included, unless it streams.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// The largest request head read.
const MAX_HEAD_BYTES: usize = 64 * 1024;

/// Ends a request that takes longer than [`REQUEST_TIMEOUT`] with `408`;
/// `streams` are the paths whose answers stream (the live tail).
pub async fn request_timeout(streams: &'static [&'static str], request: Request, next: Next) -> Response {
    if streams.contains(&request.uri().path()) {
        return next.run(request).await;
    }
    match tokio::time::timeout(REQUEST_TIMEOUT, next.run(request)).await {
        Ok(response) => response,
        Err(_) => (StatusCode::REQUEST_TIMEOUT, "the request took too long\n").into_response(),
    }
}

/// Serves `router` on `listener` with at most `max_connections` at once,
/// until `shutdown` resolves. Handlers see the peer as
/// `ConnectInfo<SocketAddr>`.
pub async fn serve<L>(
    mut listener: L,
    router: Router,
    max_connections: usize,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()>
where
    L: axum::serve::Listener<Addr = SocketAddr>,
{
    let slots = Arc::new(Semaphore::new(max_connections.max(1)));
    tokio::pin!(shutdown);
    loop {
        let slot = tokio::select! {
            slot = Arc::clone(&slots).acquire_owned() => slot,
            () = &mut shutdown => return Ok(()),
        };
        let Ok(slot) = slot else { return Ok(()) };
        let (io, peer) = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut shutdown => return Ok(()),
        };
        let app = router.clone().layer(axum::Extension(ConnectInfo(peer)));
        tokio::spawn(async move {
            let _slot = slot;
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .keep_alive(true)
                .max_buf_size(MAX_HEAD_BYTES);
            let connection = builder.serve_connection(TokioIo::new(io), TowerToHyperService::new(app));
            if let Err(error) = connection.await {
                tracing::debug!(%error, %peer, "HTTP connection ended with an error");
            }
        });
    }
}

/// The `Host` values a listener bound to `local` answers, if it must
/// check: on a loopback address, its loopback names and `extra` (the names
/// a reverse proxy forwards), so that a page of another site whose name
/// resolves to 127.0.0.1 (DNS rebinding) reaches nothing; elsewhere, any
/// (over TLS a rebound name fails the certificate check).
pub fn allowed_hosts(local: SocketAddr, extra: &[String]) -> Option<Arc<Vec<String>>> {
    if !local.ip().is_loopback() {
        return None;
    }
    let port = local.port();
    let mut hosts = vec![format!("localhost:{port}"), local.to_string()];
    if local.is_ipv4() {
        hosts.push(format!("127.0.0.1:{port}"));
    } else {
        hosts.push(format!("[::1]:{port}"));
    }
    hosts.extend(extra.iter().cloned());
    Some(Arc::new(hosts))
}

/// Answers `421` to a request whose `Host` is not one of `allowed`.
pub async fn check_host(allowed: Arc<Vec<String>>, request: Request, next: Next) -> Response {
    let host = request.headers().get(axum::http::header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("");
    if allowed.iter().any(|a| a.eq_ignore_ascii_case(host)) {
        return next.run(request).await;
    }
    (StatusCode::MISDIRECTED_REQUEST, "this server does not answer for that host name\n").into_response()
}

/// `router` with the host check for a listener bound to `local`.
pub fn guarded(router: Router, local: SocketAddr, extra: &[String]) -> Router {
    match allowed_hosts(local, extra) {
        Some(allowed) => router.layer(axum::middleware::from_fn(move |request, next| {
            check_host(Arc::clone(&allowed), request, next)
        })),
        None => router,
    }
}
