//! The operators' page: the kills in force (revive them) and a form to
//! kill; the policy in force and its last reload; the state store and the
//! audit trail; and the live tail of decisions (server-sent events,
//! filtered by agent, tool and outcome). Operators only: the service
//! refuses kills and revivals from anyone else, and the page and the
//! tail check it first.

use std::convert::Infallible;
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Form, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{Html, IntoResponse};
use serde::Deserialize;
use serde_json::Value;

use super::{Answer, Refusal, Shared, SignedIn, html, refusal};
use crate::protocol::{Op, Reply};
use crate::state::kill::{Kill, KillScope};

/// A form that carries only its CSRF token.
#[derive(Deserialize)]
pub(super) struct CsrfOnly {
    csrf: String,
}

/// The kill form.
#[derive(Deserialize)]
pub(super) struct KillForm {
    csrf: String,
    scope: String,
    #[serde(default)]
    agent: String,
    #[serde(default)]
    session: String,
    #[serde(default)]
    reason: String,
}

/// The revive form (one per kill in force).
#[derive(Deserialize)]
pub(super) struct ReviveForm {
    csrf: String,
    scope: String,
    #[serde(default)]
    agent: String,
    #[serde(default)]
    session: String,
}

/// Which decisions the tail shows (empty: all).
#[derive(Deserialize, Default)]
pub(super) struct TailFilter {
    #[serde(default)]
    agent: String,
    #[serde(default)]
    tool: String,
    #[serde(default)]
    outcome: String,
}

async fn operator(console: &Shared, headers: &HeaderMap) -> Result<SignedIn, Refusal> {
    let signed_in = console.viewer(headers).await?;
    if !signed_in.account.operator {
        return Err(Refusal::new(
            StatusCode::FORBIDDEN,
            "Operations are for operators; your account decides approvals.",
        ));
    }
    Ok(signed_in)
}

fn scope(kind: &str, agent: &str, session: &str) -> Result<KillScope, Refusal> {
    let missing =
        |what: &str| Refusal::new(StatusCode::BAD_REQUEST, format!("Give the {what} to kill or revive."));
    match kind {
        "all" => Ok(KillScope::All),
        "agent" if !agent.is_empty() => Ok(KillScope::Agent { agent: agent.to_owned() }),
        "session" if !agent.is_empty() && !session.is_empty() => {
            Ok(KillScope::Session { agent: agent.to_owned(), session: session.to_owned() })
        }
        "agent" => Err(missing("agent")),
        "session" => Err(missing("agent and the session")),
        _ => Err(Refusal::new(StatusCode::BAD_REQUEST, "The scope is `all`, `agent` or `session`.")),
    }
}

fn scope_text(scope: &KillScope) -> String {
    match scope {
        KillScope::All => String::from("everything"),
        KillScope::Agent { agent } => format!("agent <code>{}</code>", html::escape(agent)),
        KillScope::Session { agent, session } => {
            format!(
                "session <code>{}</code> of agent <code>{}</code>",
                html::escape(session),
                html::escape(agent)
            )
        }
    }
}

fn revive_form(csrf: &str, scope: &KillScope) -> String {
    let (kind, agent, session) = match scope {
        KillScope::All => ("all", "", ""),
        KillScope::Agent { agent } => ("agent", agent.as_str(), ""),
        KillScope::Session { agent, session } => ("session", agent.as_str(), session.as_str()),
    };
    format!(
        r#"<form method="post" action="/revive" class="inline"><input type="hidden" name="csrf" value="{}"><input type="hidden" name="scope" value="{kind}"><input type="hidden" name="agent" value="{}"><input type="hidden" name="session" value="{}"><button type="submit">Revive</button></form>"#,
        html::escape(csrf),
        html::escape(agent),
        html::escape(session),
    )
}

fn kills_section(csrf: &str, kills: &[(KillScope, Kill)]) -> String {
    let mut out = String::from("<section aria-labelledby=\"kills\"><h2 id=\"kills\">Kills in force</h2>");
    if kills.is_empty() {
        out.push_str("<p class=\"empty\">Nothing is killed.</p>");
    } else {
        out.push_str("<table><thead><tr><th scope=\"col\">What</th><th scope=\"col\">Why</th><th scope=\"col\">By</th><th scope=\"col\">Since</th><th scope=\"col\"><span class=\"sr\">Action</span></th></tr></thead><tbody>");
        for (scope, kill) in kills {
            let _ = write!(
                out,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                scope_text(scope),
                html::escape(&kill.reason),
                html::escape(&kill.by),
                html::escape(&kill.at),
                revive_form(csrf, scope),
            );
        }
        out.push_str("</tbody></table>");
    }
    let _ = write!(
        out,
        r#"<form method="post" action="/kill" class="kill">
<fieldset><legend>Kill</legend>
<p><label for="kill-scope">What</label><select id="kill-scope" name="scope"><option value="session">One session</option><option value="agent">Every session of an agent</option><option value="all">Everything</option></select></p>
<p><label for="kill-agent">Agent</label><input id="kill-agent" name="agent"></p>
<p><label for="kill-session">Session</label><input id="kill-session" name="session"></p>
<p><label for="kill-reason">Reason</label><input id="kill-reason" name="reason" required></p>
<input type="hidden" name="csrf" value="{}">
<p><button type="submit" class="danger">Kill</button></p>
</fieldset></form></section>"#,
        html::escape(csrf)
    );
    out
}

/// The status report's part at `path`, as text.
fn text(status: &Value, path: &str) -> String {
    match status.pointer(path) {
        None | Some(Value::Null) => String::from("—"),
        Some(Value::String(text)) => text.clone(),
        Some(other) => other.to_string(),
    }
}

fn condition(status: &Value, at: &str) -> String {
    let state = text(status, &format!("{at}/condition"));
    match status.pointer(&format!("{at}/error")) {
        Some(Value::String(error)) => format!("{} ({})", html::escape(&state), html::escape(error)),
        _ => html::escape(&state),
    }
}

fn status_section(console: &Shared, csrf: &str) -> String {
    let status = console.service.status();
    let files = console.service.policy_paths().iter().map(|p| html::escape(&p.display().to_string()));
    let files: Vec<String> = files.map(|f| format!("<code>{f}</code>")).collect();
    let errors = match status.pointer("/reload/last_error") {
        Some(Value::Array(lines)) if !lines.is_empty() => {
            let lines: Vec<String> = lines.iter().map(|l| html::escape(l.as_str().unwrap_or(""))).collect();
            format!("<pre class=\"errors\">{}</pre>", lines.join("\n"))
        }
        _ => String::from("none"),
    };
    let audit = if status.get("audit").is_some_and(|a| !a.is_null()) {
        let verified = console.verified.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
        let verify = match &console.trail {
            Some(_) => format!(
                r#"<dt>Chain</dt><dd>{} <form method="post" action="/audit/verify" class="inline"><input type="hidden" name="csrf" value="{}"><button type="submit">Verify the trail</button></form></dd>"#,
                html::escape(verified.as_deref().unwrap_or("not verified since the server started")),
                html::escape(csrf),
            ),
            None => String::new(),
        };
        format!(
            "<dt>Audit trail</dt><dd>{}</dd><dt>Records</dt><dd>{}</dd><dt>Head</dt><dd><code>{}</code></dd>{verify}",
            condition(&status, "/audit"),
            html::escape(&text(&status, "/audit/seq")),
            html::escape(&text(&status, "/audit/head")),
        )
    } else {
        String::from("<dt>Audit trail</dt><dd>none kept (start the server with <code>--audit</code>)</dd>")
    };
    format!(
        r#"<section aria-labelledby="status"><h2 id="status">In force</h2><dl class="facts">
<dt>Policy</dt><dd><code>{policy}</code></dd>
<dt>Files</dt><dd>{files}</dd>
<dt>Loaded</dt><dd>{loaded}</dd>
<dt>Reloads</dt><dd>{reloads} ({failures} failed; last attempt {last})</dd>
<dt>Last reload errors</dt><dd>{errors}</dd>
<dt>State store</dt><dd>{state}</dd>
{audit}
<dt>Approvals waiting</dt><dd>{pending}</dd>
</dl></section>"#,
        policy = html::escape(&text(&status, "/policy")),
        files = files.join(", "),
        loaded = html::escape(&text(&status, "/reload/loaded_at")),
        reloads = html::escape(&text(&status, "/reload/reloads")),
        failures = html::escape(&text(&status, "/reload/failures")),
        last = html::escape(&text(&status, "/reload/last_attempt")),
        state = condition(&status, "/state"),
        pending = html::escape(&text(&status, "/approvals/pending")),
    )
}

fn tail_section(filter: &TailFilter) -> String {
    let selected = |value: &str| if filter.outcome == value { " selected" } else { "" };
    format!(
        r#"<section aria-labelledby="tail"><h2 id="tail">Decisions as they happen</h2>
<form method="get" action="/operations" class="filter">
<p><label for="tail-agent">Agent</label><input id="tail-agent" name="agent" value="{agent}"></p>
<p><label for="tail-tool">Tool</label><input id="tail-tool" name="tool" value="{tool}"></p>
<p><label for="tail-outcome">Outcome</label><select id="tail-outcome" name="outcome"><option value="">any</option><option value="allow"{a}>allow</option><option value="deny"{d}>deny</option><option value="require_approval"{r}>require_approval</option></select></p>
<p><button type="submit">Filter</button></p>
</form>
<table id="decisions" data-agent="{agent}" data-tool="{tool}" data-outcome="{outcome}"><thead><tr><th scope="col">Time</th><th scope="col">Agent</th><th scope="col">Session</th><th scope="col">Tool</th><th scope="col">Outcome</th><th scope="col">Reason</th><th scope="col">Rule</th></tr></thead><tbody aria-live="polite"></tbody></table>
<noscript><p>The live table needs JavaScript; without it, <a href="/events?agent={agent_q}&amp;tool={tool_q}&amp;outcome={outcome_q}">the raw event stream</a> shows the same.</p></noscript>
<script src="/assets/tail.js"></script>
</section>"#,
        agent = html::escape(&filter.agent),
        tool = html::escape(&filter.tool),
        outcome = html::escape(&filter.outcome),
        agent_q = html::url_encode(&filter.agent),
        tool_q = html::url_encode(&filter.tool),
        outcome_q = html::url_encode(&filter.outcome),
        a = selected("allow"),
        d = selected("deny"),
        r = selected("require_approval"),
    )
}

/// `GET /operations`.
pub(super) async fn page(
    State(console): State<Shared>,
    headers: HeaderMap,
    Query(filter): Query<TailFilter>,
) -> Answer {
    let signed_in = operator(&console, &headers).await?;
    let kills = console
        .ask(&signed_in.role(), Op::Kills, |reply| match reply {
            Reply::Kills(kills) => Ok(kills),
            Reply::Error(error) => Err(refusal(error)),
            _ => Err(Refusal::unexpected()),
        })
        .await;
    let kills = kills?;
    let body = format!(
        "{}{}{}",
        kills_section(&signed_in.session.csrf, &kills),
        status_section(&console, &signed_in.session.csrf),
        tail_section(&filter)
    );
    Ok(Html(html::page("Operations", Some(&signed_in.viewer()), &body)).into_response())
}

async fn change(console: &Shared, signed_in: &SignedIn, op: Op, done: String) -> Answer {
    let warning = console
        .ask(&signed_in.role(), op, |reply| match reply {
            Reply::Kill { warning, .. } => Ok(warning),
            Reply::Revive { .. } => Ok(None),
            Reply::Error(error) => Err(refusal(error)),
            _ => Err(Refusal::unexpected()),
        })
        .await?;
    let warning =
        warning.map(|text| html::notice("warning", &format!("Warning: {text}."))).unwrap_or_default();
    let body = format!(
        "{}{warning}<p><a href=\"/operations\">Back to operations</a></p>",
        html::notice("ok", &done)
    );
    Ok(Html(html::page("Done", Some(&signed_in.viewer()), &body)).into_response())
}

/// `POST /kill`.
pub(super) async fn kill(
    State(console): State<Shared>,
    headers: HeaderMap,
    Form(form): Form<KillForm>,
) -> Answer {
    let signed_in = console.changer(&headers, &form.csrf).await?;
    let scope = scope(&form.scope, form.agent.trim(), form.session.trim())?;
    let reason = form.reason.trim();
    if reason.is_empty() {
        return Err(Refusal::new(StatusCode::BAD_REQUEST, "Say why: a kill needs a reason."));
    }
    let done = format!("Killed: {}.", html_free(&scope));
    let op = Op::Kill { scope, reason: reason.to_owned(), by: None };
    change(&console, &signed_in, op, done).await
}

/// `POST /revive`.
pub(super) async fn revive(
    State(console): State<Shared>,
    headers: HeaderMap,
    Form(form): Form<ReviveForm>,
) -> Answer {
    let signed_in = console.changer(&headers, &form.csrf).await?;
    let scope = scope(&form.scope, &form.agent, &form.session)?;
    let done = format!("Revived: {}.", html_free(&scope));
    change(&console, &signed_in, Op::Revive { scope }, done).await
}

/// A scope in plain words (for a notice, which escapes it).
fn html_free(scope: &KillScope) -> String {
    match scope {
        KillScope::All => String::from("everything"),
        KillScope::Agent { agent } => format!("agent {agent}"),
        KillScope::Session { agent, session } => format!("session {session} of agent {agent}"),
    }
}

/// `POST /audit/verify`: verifies the audit trail's chain from its first
/// record (rotated files, then the live file up to its last complete
/// line), with the server's keys, off the async threads; the result is
/// shown, kept for the Operations page, and recorded.
pub(super) async fn verify(
    State(console): State<Shared>,
    headers: HeaderMap,
    Form(form): Form<CsrfOnly>,
) -> Answer {
    let signed_in = console.changer(&headers, &form.csrf).await?;
    if !signed_in.account.operator {
        return Err(Refusal::new(StatusCode::FORBIDDEN, "Verifying the trail is for operators."));
    }
    let Some(trail) = console.trail.clone() else {
        return Err(Refusal::new(StatusCode::NOT_FOUND, "This server keeps no audit trail."));
    };
    let time = console.service.state().clock.rfc3339_seconds();
    let checked =
        tokio::task::spawn_blocking(move || crate::audit::verify_trail(&trail.path, trail.keys, true)).await;
    let (ok, text) = match checked {
        Ok(Ok(verified)) => (
            true,
            format!(
                "intact at {time}: {} records in {} file{}, the last {}",
                verified.records,
                verified.files,
                if verified.files == 1 { "" } else { "s" },
                verified.head
            ),
        ),
        Ok(Err(broken)) => (false, format!("BROKEN at {time}: {broken}")),
        Err(error) => (false, format!("could not be verified at {time}: {error}")),
    };
    *console.verified.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(text.clone());
    let by = signed_in.account.identity().to_string();
    console
        .service
        .record_event("audit_verified", serde_json::json!({"by": by, "ok": ok, "result": text}))
        .await;
    if !ok {
        tracing::error!(result = %text, "the audit trail failed verification");
    }
    let kind = if ok { "ok" } else { "error" };
    let body = format!(
        "{}<p><a href=\"/operations\">Back to operations</a></p>",
        html::notice(kind, &format!("The audit trail is {text}."))
    );
    Ok(Html(html::page("Audit trail", Some(&signed_in.viewer()), &body)).into_response())
}

/// How often a live tail checks that its session is still live and still
/// an operator's (signed out, expired, or the account changed: it ends).
const TAIL_RECHECK: Duration = Duration::from_secs(5);

/// `GET /events`: the live tail as server-sent events, one `decision`
/// event per decision that passes the filter (JSON: time, agent,
/// session, tool, outcome, reason_code, rule, decision_id); a `lagged`
/// event says how many were missed by a reader too slow to keep up. At
/// most 32 stream at once; each ends within seconds of its session.
pub(super) async fn events(
    State(console): State<Shared>,
    headers: HeaderMap,
    Query(filter): Query<TailFilter>,
) -> Answer {
    operator(&console, &headers).await?;
    let token = console.session_token(&headers).unwrap_or_default().to_owned();
    let Ok(slot) = Arc::clone(&console.tails).try_acquire_owned() else {
        return Err(Refusal::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "Too many live tails are open; close one.",
        ));
    };
    let receiver = console.service.tail();
    let recheck = tokio::time::interval_at(tokio::time::Instant::now() + TAIL_RECHECK, TAIL_RECHECK);
    let state = (receiver, filter, console, token, slot, recheck);
    let stream = futures_util::stream::unfold(
        state,
        |(mut receiver, filter, console, token, slot, mut recheck)| async move {
            use tokio::sync::broadcast::error::RecvError;
            loop {
                let received = tokio::select! {
                    _ = recheck.tick() => {
                        // Redis away ends the tail too: it cannot tell.
                        let signed_in = console.signed_in_with(&token).await;
                        let still = matches!(signed_in, Ok(Some(s)) if s.account.operator);
                        if !still {
                            return None;
                        }
                        continue;
                    }
                    received = receiver.recv() => received,
                };
                let event = match received {
                    Ok(decided) => {
                        let shown = (filter.agent.is_empty() || filter.agent == decided.agent)
                            && (filter.tool.is_empty() || filter.tool == decided.tool)
                            && (filter.outcome.is_empty() || filter.outcome == decided.outcome);
                        if !shown {
                            continue;
                        }
                        let data = serde_json::to_string(&*decided).unwrap_or_default();
                        Event::default().event("decision").data(data)
                    }
                    Err(RecvError::Lagged(missed)) => {
                        Event::default().event("lagged").data(missed.to_string())
                    }
                    Err(RecvError::Closed) => return None,
                };
                return Some((Ok::<_, Infallible>(event), (receiver, filter, console, token, slot, recheck)));
            }
        },
    );
    Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))).into_response())
}
