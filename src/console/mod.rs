//! The approvals console: a web page where the people a policy names as
//! approvers decide the approvals waiting for them, and operators kill and
//! revive, watch decisions go by and see the policy, state and trail in
//! force. Also the Prometheus endpoint (`metrics.rs`), on a listener of its
//! own.
//!
//! An edge, like the Unix-socket server: every change goes through the
//! service as an admin operation, under the signed-in account's identity,
//! so the same rules decide who may do what and the same records reach the
//! audit trail. Pages are rendered on the server; the assets are embedded
//! in the binary and nothing is fetched from elsewhere.
//!
//! Protections: sessions in HTTP-only, `SameSite=Strict` cookies; every
//! state change is a POST carrying the session's CSRF token, from this
//! origin; request bodies of at most [`MAX_BODY_BYTES`]; failed sign-ins
//! throttled by name and by address, and recorded; a strict
//! `Content-Security-Policy`.

pub mod accounts;
mod approvals;
mod html;
pub mod http;
pub mod metrics;
pub mod notify;
pub mod on_redis;
mod operations;
pub mod sessions;
mod signin;
pub mod throttle;
pub mod tls;

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use serde_json::Value;

use crate::protocol::{Op, ParsedLine, Reply, WireError};
use crate::service::{AuditBatch, Peer, Role, Service};
use accounts::{Account, AccountBook};
use sessions::{Session, Sessions};
use throttle::Throttle;

/// The largest request body read (a form with a comment fits many times).
pub const MAX_BODY_BYTES: usize = 16 * 1024;

/// The session cookie's name.
const COOKIE: &str = "toolgate_session";
/// Its name over TLS: a `__Host-` cookie is set only by this host, over
/// HTTPS, for the whole site, so a sibling domain cannot plant one.
const TLS_COOKIE: &str = "__Host-toolgate_session";

/// How many password checks run at once (each costs an Argon2 hash).
const HASHING_AT_ONCE: usize = 2;

/// The most console connections at once (each holds a descriptor).
pub const MAX_CONNECTIONS: usize = 128;

/// The most live tails streaming at once.
const MAX_TAILS: usize = 32;

/// The console's settings.
pub struct ConsoleConfig {
    /// The accounts that may sign in.
    pub accounts: AccountBook,
    /// TLS, if the console is served over it (cookies are then `Secure`).
    pub tls: Option<tokio_rustls::TlsAcceptor>,
    /// `Host` values answered besides the listener's own loopback names
    /// (the names a reverse proxy forwards).
    pub hosts: Vec<String>,
    /// The audit trail operators may have verified, with its keys.
    pub trail: Option<Trail>,
}

/// An audit trail and the keys its chain is sealed with.
#[derive(Clone)]
pub struct Trail {
    /// Its path.
    pub path: std::path::PathBuf,
    /// Its keys (none for a plain chain).
    pub keys: Vec<crate::audit::AuditKey>,
}

impl std::fmt::Debug for Trail {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Trail").field("path", &self.path).field("keys", &self.keys.len()).finish()
    }
}

impl std::fmt::Debug for ConsoleConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConsoleConfig")
            .field("accounts", &self.accounts)
            .field("tls", &self.tls.is_some())
            .field("hosts", &self.hosts)
            .field("trail", &self.trail.as_ref().map(|t| &t.path))
            .finish()
    }
}

/// The console behind its routes.
#[derive(Debug)]
struct Console {
    service: Arc<Service>,
    accounts: AccountBook,
    sessions: Sessions,
    /// Failed sign-ins by name: refused while they must wait.
    names: Throttle,
    /// Failed sign-ins by address: slowed down while they must wait.
    addresses: Throttle,
    hashing: tokio::sync::Semaphore,
    /// Live tails streaming now.
    tails: Arc<tokio::sync::Semaphore>,
    tls: bool,
    /// The trail to verify, and what its last verification found.
    trail: Option<Trail>,
    verified: std::sync::Mutex<Option<String>>,
}

type Shared = Arc<Console>;

/// The console's routes over `service`.
pub fn router(service: Arc<Service>, accounts: AccountBook, tls: bool, trail: Option<Trail>) -> Router {
    // On Redis, sessions and failed sign-ins are every replica's.
    let (sessions, names, addresses) = match &service.state().redis {
        Some(redis) => {
            let pool = Arc::clone(&redis.pool);
            (
                Sessions::shared(Arc::clone(&pool)),
                Throttle::shared(throttle::FREE_FAILURES, Arc::clone(&pool)),
                Throttle::shared(throttle::FREE_ADDRESS_FAILURES, pool),
            )
        }
        None => (
            Sessions::default(),
            Throttle::new(throttle::FREE_FAILURES),
            Throttle::new(throttle::FREE_ADDRESS_FAILURES),
        ),
    };
    let console = Arc::new(Console {
        service,
        accounts,
        sessions,
        names,
        addresses,
        hashing: tokio::sync::Semaphore::new(HASHING_AT_ONCE),
        tails: Arc::new(tokio::sync::Semaphore::new(MAX_TAILS)),
        tls,
        trail,
        verified: std::sync::Mutex::new(None),
    });
    Router::new()
        .route("/", get(|| async { Redirect::to("/approvals") }))
        .route("/login", get(signin::page).post(signin::sign_in))
        .route("/logout", post(signin::sign_out))
        .route("/approvals", get(approvals::list))
        .route("/approvals/{id}", get(approvals::detail))
        .route("/approvals/{id}/approve", post(approvals::approve))
        .route("/approvals/{id}/reject", post(approvals::reject))
        .route("/operations", get(operations::page))
        .route("/kill", post(operations::kill))
        .route("/revive", post(operations::revive))
        .route("/audit/verify", post(operations::verify))
        .route("/events", get(operations::events))
        .route("/assets/console.css", get(|| async { asset("text/css", include_str!("assets/console.css")) }))
        .route("/assets/tail.js", get(|| async { asset("text/javascript", include_str!("assets/tail.js")) }))
        .fallback(|| async { error_page(StatusCode::NOT_FOUND, "There is no such page.") })
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(axum::middleware::from_fn(|request, next| http::request_timeout(&["/events"], request, next)))
        .layer(axum::middleware::map_response(security_headers))
        .with_state(console)
}

/// Serves the console on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    service: Arc<Service>,
    config: ConsoleConfig,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = router(service, config.accounts, config.tls.is_some(), config.trail);
    let app = http::guarded(app, listener.local_addr()?, &config.hosts);
    match config.tls {
        Some(acceptor) => {
            let listener = tls::TlsListener::new(listener, acceptor)?;
            http::serve(listener, app, MAX_CONNECTIONS, shutdown).await
        }
        None => http::serve(listener, app, MAX_CONNECTIONS, shutdown).await,
    }
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    ([(header::CONTENT_TYPE, content_type), (header::CACHE_CONTROL, "max-age=300")], body).into_response()
}

/// What every answer carries: no framing, no sniffing, no referrer, no
/// script or style from elsewhere, and nothing cached of a signed-in page.
async fn security_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    let set = |headers: &mut HeaderMap, name, value: &'static str| {
        headers.entry(name).or_insert(HeaderValue::from_static(value));
    };
    set(
        headers,
        header::CONTENT_SECURITY_POLICY,
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    );
    set(headers, header::X_FRAME_OPTIONS, "DENY");
    set(headers, header::X_CONTENT_TYPE_OPTIONS, "nosniff");
    // `same-origin`, not `no-referrer`: under `no-referrer` a browser sends
    // `Origin: null` with the console's own forms, which the origin check refuses.
    set(headers, header::REFERRER_POLICY, "same-origin");
    set(headers, header::CACHE_CONTROL, "no-store");
    response
}

/// A page that says what went wrong, with `status`.
fn error_page(status: StatusCode, text: &str) -> Response {
    let body =
        format!("{}<p><a href=\"/approvals\">Back to the approvals</a></p>", html::notice("error", text));
    (status, Html(html::page(status.canonical_reason().unwrap_or("Error"), None, &body))).into_response()
}

/// Why a request is not answered as asked.
#[derive(Debug)]
enum Refusal {
    /// Nobody is signed in: to the sign-in page.
    SignIn,
    /// A page saying why, with its status.
    Page(StatusCode, String),
}

impl Refusal {
    fn new(status: StatusCode, text: impl Into<String>) -> Refusal {
        Refusal::Page(status, text.into())
    }

    fn unexpected() -> Refusal {
        Refusal::new(StatusCode::INTERNAL_SERVER_ERROR, "Unexpected answer from the service.")
    }
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        match self {
            Refusal::SignIn => Redirect::to("/login").into_response(),
            Refusal::Page(status, text) => error_page(status, &text),
        }
    }
}

/// What a handler answers: its page, or why not.
type Answer = Result<Response, Refusal>;

/// Someone signed in, as of this request.
struct SignedIn {
    session: Arc<Session>,
    account: Account,
}

impl SignedIn {
    fn role(&self) -> Role {
        Role::Admin(Peer { identity: self.account.identity(), operator: self.account.operator })
    }

    fn viewer(&self) -> html::Viewer<'_> {
        html::Viewer { name: &self.account.name, operator: self.account.operator, csrf: &self.session.csrf }
    }
}

impl Console {
    /// Who is signed in: a live session of an account that still exists
    /// as it was when it signed in. Sessions that cannot be read (Redis
    /// away) are a refusal, not a sign-in page.
    async fn signed_in(&self, headers: &HeaderMap) -> Result<Option<SignedIn>, Refusal> {
        let Some(token) = self.session_token(headers) else { return Ok(None) };
        self.signed_in_with(token).await.map_err(|on_redis::Unavailable(error)| {
            tracing::error!(%error, "the console's sessions cannot be read");
            Refusal::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "Sessions cannot be checked now; try again shortly.",
            )
        })
    }

    /// The session cookie's name.
    fn cookie_name(&self) -> &'static str {
        if self.tls { TLS_COOKIE } else { COOKIE }
    }

    /// The session cookie's token, if the request carries one.
    fn session_token<'h>(&self, headers: &'h HeaderMap) -> Option<&'h str> {
        let name = self.cookie_name();
        headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|value| value.to_str().ok())
            .flat_map(|cookies| cookies.split(';'))
            .find_map(|cookie| cookie.trim().strip_prefix(name)?.strip_prefix('='))
    }

    /// Who is signed in with the session `token`, as [`Console::signed_in`].
    async fn signed_in_with(&self, token: &str) -> Result<Option<SignedIn>, on_redis::Unavailable> {
        let Some(session) = self.sessions.find(token).await? else { return Ok(None) };
        let account = self.accounts.current().get(&session.account).cloned();
        match account {
            Some(account) if account.fingerprint() == session.fingerprint => {
                Ok(Some(SignedIn { session, account }))
            }
            _ => {
                // Refused either way: a changed account's session is never used again.
                if let Err(on_redis::Unavailable(error)) = self.sessions.end(token).await.map(drop) {
                    tracing::error!(%error, "the session of a changed account could not be ended");
                }
                Ok(None)
            }
        }
    }

    /// Who is signed in, for a page: else the answer is the sign-in page.
    async fn viewer(&self, headers: &HeaderMap) -> Result<SignedIn, Refusal> {
        self.signed_in(headers).await?.ok_or(Refusal::SignIn)
    }

    /// Who asks for a change: signed in, from this origin, with the
    /// session's CSRF token; else the answer is a refusal.
    async fn changer(&self, headers: &HeaderMap, csrf: &str) -> Result<SignedIn, Refusal> {
        same_origin(headers)?;
        let Some(signed_in) = self.signed_in(headers).await? else {
            return Err(Refusal::new(
                StatusCode::FORBIDDEN,
                "Sign in first: this session has ended or never began.",
            ));
        };
        if !sessions::same_secret(csrf, &signed_in.session.csrf) {
            return Err(Refusal::new(
                StatusCode::FORBIDDEN,
                "This form is stale or did not come from the console (its CSRF token does not match); reload the page and try again.",
            ));
        }
        Ok(signed_in)
    }

    /// The session cookie for `token` (empty and expired: signs out).
    fn cookie(&self, token: Option<&str>) -> String {
        let secure = if self.tls { "; Secure" } else { "" };
        match token {
            Some(token) => format!(
                "{}={token}; HttpOnly; SameSite=Strict; Path=/; Max-Age={}{secure}",
                self.cookie_name(),
                sessions::LIFETIME.as_secs()
            ),
            None => format!("{}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0{secure}", self.cookie_name()),
        }
    }

    /// Asks the service for `op` as `role`, the way an admin socket client
    /// would; records of a refusal are written before the answer is read.
    async fn ask<T>(&self, role: &Role, op: Op, read: impl FnOnce(Reply<'_>) -> T) -> T {
        let line = ParsedLine { id: Value::Null, kind: Some(op.kind()), op: Ok(op) };
        let engine = self.service.engine();
        let mut batch = AuditBatch::default();
        let reply = self.service.handle(&engine, &line, role, &mut batch).await;
        if !batch.is_empty()
            && let Err(error) = self.service.submit(&mut batch).confirmed().await
        {
            tracing::error!(%error, "a console refusal could not be recorded");
        }
        read(reply)
    }
}

/// Refuses a change whose browser says it comes from another site (the
/// `Origin` and `Sec-Fetch-Site` headers); the CSRF token is checked too.
fn same_origin(headers: &HeaderMap) -> Result<(), Refusal> {
    let cross_site =
        || Refusal::new(StatusCode::FORBIDDEN, "A change must come from the console's own pages.");
    if let Some(site) = headers.get("sec-fetch-site")
        && !matches!(site.to_str(), Ok("same-origin" | "none"))
    {
        return Err(cross_site());
    }
    if let Some(origin) = headers.get(header::ORIGIN) {
        let host = headers.get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("");
        let origin = origin.to_str().unwrap_or("");
        let same = origin.split_once("://").is_some_and(|(scheme, rest)| {
            matches!(scheme, "http" | "https") && rest == host && !host.is_empty()
        });
        if !same {
            return Err(cross_site());
        }
    }
    Ok(())
}

/// What a refused operation's error says, for a page.
fn refusal(error: WireError) -> Refusal {
    use crate::protocol::WireErrorCode;
    let status = match error.code {
        WireErrorCode::Forbidden | WireErrorCode::UnknownOp => StatusCode::FORBIDDEN,
        WireErrorCode::Unavailable | WireErrorCode::DecisionTimeout => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::BAD_REQUEST,
    };
    Refusal::Page(status, error.message)
}
