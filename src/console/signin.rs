//! Signing in and out. A failed sign-in is throttled by name and by
//! address (see [`super::throttle::Throttle`]) and recorded in the audit
//! trail; a sign-in that cannot be recorded is refused.

use std::net::SocketAddr;
use std::time::Duration;

use axum::extract::{ConnectInfo, Form, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use serde::Deserialize;
use serde_json::json;

use super::accounts::{self, MAX_PASSWORD_BYTES};
use super::{Answer, Refusal, Shared, html, same_origin};

/// The longest a sign-in from an address with many failures is delayed.
const ADDRESS_DELAY: Duration = Duration::from_secs(5);

/// How long a sign-in waits for a turn at password checking.
const HASHING_WAIT: Duration = Duration::from_secs(5);

/// The sign-in form.
#[derive(Deserialize)]
pub(super) struct SignIn {
    name: String,
    password: String,
}

/// A form that carries only its CSRF token.
#[derive(Deserialize)]
pub(super) struct Csrf {
    csrf: String,
}

fn form(status: StatusCode, problem: Option<&str>, name: &str) -> Response {
    let notice = problem.map(|p| html::notice("error", p)).unwrap_or_default();
    let body = format!(
        r#"{notice}<form method="post" action="/login" class="signin">
<p><label for="name">Name</label><input id="name" name="name" autocomplete="username" required value="{name}" autofocus></p>
<p><label for="password">Password</label><input id="password" name="password" type="password" autocomplete="current-password" required></p>
<p><button type="submit">Sign in</button></p>
</form>"#,
        name = html::escape(name),
    );
    (status, Html(html::page("Sign in", None, &body))).into_response()
}

/// `GET /login`.
pub(super) async fn page(State(console): State<Shared>, headers: HeaderMap) -> Answer {
    if matches!(console.signed_in(&headers).await, Ok(Some(_))) {
        return Ok(Redirect::to("/approvals").into_response());
    }
    Ok(form(StatusCode::OK, None, ""))
}

/// `POST /login`.
pub(super) async fn sign_in(
    State(console): State<Shared>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Form(SignIn { name, password }): Form<SignIn>,
) -> Answer {
    same_origin(&headers)?;
    let service = &console.service;
    let from = peer.ip().to_string();
    let count = || service.metrics().signins_refused.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    // A name no account can have is refused unchecked and unrecorded: the
    // trail and the log must not be a sink for whatever a stranger types.
    if !accounts::possible_name(&name) {
        count();
        return Ok(form(StatusCode::UNAUTHORIZED, Some("Wrong name or password."), ""));
    }
    let (name_key, address_key) = (format!("name:{name}"), format!("address:{from}"));
    let refuse = |why: &'static str| {
        count();
        let service = std::sync::Arc::clone(service);
        let name = name.clone();
        let from = from.clone();
        async move {
            tracing::warn!(?name, %from, why, "console sign-in refused");
            service
                .record_event("console_signin_refused", json!({"name": name, "from": from, "why": why}))
                .await;
        }
    };
    // A name that must wait is refused unchecked; the first refusal of each
    // wait is recorded, the others counted. Any other attempt counts as a
    // failure at once, until it signs in: attempts made all at once cannot
    // all pass as "no failures yet".
    let unavailable = |super::on_redis::Unavailable(error)| {
        tracing::error!(%error, "console sign-in refused: the sign-in throttle cannot be read");
        Refusal::new(StatusCode::SERVICE_UNAVAILABLE, "Sign-ins cannot be checked now; try again shortly.")
    };
    if let Some(wait) = console.names.attempt(&name_key, true).await.map_err(unavailable)? {
        if wait.first {
            refuse("throttled").await;
        } else {
            count();
        }
        let seconds = wait.left.as_secs().max(1);
        let text = format!("Too many failed sign-ins: try again in {}.", html::span(seconds));
        let mut response = form(StatusCode::TOO_MANY_REQUESTS, Some(&text), &name);
        if let Ok(value) = seconds.to_string().parse() {
            response.headers_mut().insert(header::RETRY_AFTER, value);
        }
        return Ok(response);
    }
    // An address that must wait is slowed down, not refused: behind a
    // proxy, everyone shares one address.
    if let Some(wait) = console.addresses.attempt(&address_key, false).await.map_err(unavailable)? {
        tokio::time::sleep(wait.left.min(ADDRESS_DELAY)).await;
    }
    let accounts = console.accounts.current();
    let account = accounts.get(&name).cloned();
    let verified = if password.len() > MAX_PASSWORD_BYTES {
        false
    } else {
        let Ok(Ok(_turn)) = tokio::time::timeout(HASHING_WAIT, console.hashing.acquire()).await else {
            return Err(Refusal::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "Too many sign-ins at once; try again shortly.",
            ));
        };
        let checked = account.clone();
        tokio::task::spawn_blocking(move || accounts::verify(checked.as_ref(), &password))
            .await
            .unwrap_or(false)
    };
    let Some(account) = account.filter(|_| verified) else {
        refuse("wrong name or password").await;
        return Ok(form(StatusCode::UNAUTHORIZED, Some("Wrong name or password."), &name));
    };
    // The session is made first (its token leaves only with the answer),
    // then recorded: a sign-in that cannot be recorded ends it unused, and
    // the trail never shows a sign-in that made no session.
    let (token, _) = console.sessions.start(&account.name, account.fingerprint()).await.map_err(|error| {
        tracing::error!(?error, "no console session can be made");
        let why = match error {
            super::sessions::StartError::Random(_) => "No session can be made: the random source failed.",
            super::sessions::StartError::Unavailable(_) => "No session can be made now; try again shortly.",
        };
        Refusal::new(StatusCode::SERVICE_UNAVAILABLE, why)
    })?;
    if let Err(error) = service
        .record_event_first("console_signin", json!({"by": account.identity().to_string(), "from": from}))
        .await
    {
        if let Err(super::on_redis::Unavailable(ended)) = console.sessions.end(&token).await.map(drop) {
            tracing::error!(error = %ended, "an unrecorded console session could not be ended");
        }
        return Err(Refusal::new(StatusCode::SERVICE_UNAVAILABLE, error.message));
    }
    console.names.succeeded(&name_key).await;
    console.addresses.succeeded(&address_key).await;
    tracing::info!(account = ?account.name, %from, "console sign-in");
    let mut response = Redirect::to("/approvals").into_response();
    if let Ok(cookie) = console.cookie(Some(&token)).parse() {
        response.headers_mut().insert(header::SET_COOKIE, cookie);
    }
    Ok(response)
}

/// `POST /logout`.
pub(super) async fn sign_out(
    State(console): State<Shared>,
    headers: HeaderMap,
    Form(Csrf { csrf }): Form<Csrf>,
) -> Answer {
    let signed_in = console.changer(&headers, &csrf).await?;
    let mut record = json!({"by": signed_in.account.identity().to_string()});
    if let Some(token) = console.session_token(&headers) {
        // A sign-out Redis did not take is no sign-out: say so, record nothing.
        let ended = console.sessions.end(token).await.map_err(|super::on_redis::Unavailable(error)| {
            tracing::error!(%error, "console sign-out failed: the session cannot be ended");
            Refusal::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "You are still signed in: the session cannot be ended now; try again shortly.",
            )
        })?;
        // Ended on the primary, not yet on the replicas asked for: the
        // operator is told, as for a kill (a failover could bring it back).
        if let Some(super::sessions::Unconfirmed(why)) = ended {
            tracing::warn!(by = %record["by"], %why, "console sign-out not confirmed by Redis's replicas");
            record["unconfirmed"] = json!(why);
        }
    }
    console.service.record_event("console_signout", record).await;
    let mut response = Redirect::to("/login").into_response();
    if let Ok(cookie) = console.cookie(None).parse() {
        response.headers_mut().insert(header::SET_COOKIE, cookie);
    }
    Ok(response)
}
