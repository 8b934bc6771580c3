//! The approvals an account may decide: the list, one approval with the
//! call's arguments (redacted as the policy says), and the decision with a
//! comment. Which approvals an account sees and may decide is the
//! service's rule: members of the approver the gate names, or operators.

use axum::extract::{Form, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse};
use serde::Deserialize;
use std::fmt::Write as _;

use super::{Answer, Refusal, Shared, SignedIn, html, refusal};
use crate::protocol::decode::MAX_COMMENT;
use crate::protocol::{Op, Reply};
use crate::state::approval::Approval;

/// The approve and reject forms.
#[derive(Deserialize)]
pub(super) struct Decision {
    csrf: String,
    #[serde(default)]
    comment: String,
}

/// The approvals `signed_in` may decide, and the time now.
async fn visible(console: &Shared, signed_in: &SignedIn) -> Result<(Vec<Approval>, u64), Refusal> {
    console
        .ask(&signed_in.role(), Op::Approvals, |reply| match reply {
            Reply::Approvals { approvals, now } => Ok((approvals, now)),
            Reply::Error(error) => Err(refusal(error)),
            _ => Err(Refusal::unexpected()),
        })
        .await
}

/// Who may decide an approval, for people: the approver and its members.
fn approver_text(console: &Shared, approval: &Approval) -> String {
    match approval.approver.as_deref() {
        None => String::from("an operator"),
        Some(name) => match console.service.engine().table().approver(name) {
            Some(approver) => format!("{name} ({})", approver.members()),
            None => format!("{name} (not declared by the policy in force)"),
        },
    }
}

fn call_title(approval: &Approval) -> String {
    format!(
        "<code>{}</code> for agent <code>{}</code>",
        html::escape(&approval.binding.tool),
        html::escape(&approval.binding.agent)
    )
}

/// The facts of an approval, as a description list.
fn facts(console: &Shared, approval: &Approval, now: u64) -> String {
    let mut out = String::from("<dl class=\"facts\">");
    let mut row = |term: &str, value: String| {
        let _ = write!(out, "<dt>{term}</dt><dd>{value}</dd>");
    };
    if let Some(description) = &approval.shown.description {
        row("Gate", html::escape(description));
    }
    row("Rule", format!("<code>{}</code>", html::escape(&approval.binding.gate)));
    row(
        "Session",
        approval
            .binding
            .session
            .as_deref()
            .map_or(String::from("none"), |s| format!("<code>{}</code>", html::escape(s))),
    );
    row("Who may decide", html::escape(&approver_text(console, approval)));
    if approval.quorum > 1 {
        let granted = match approval.grants.is_empty() {
            true => String::from("none yet"),
            false => approval.grants.join(", "),
        };
        row(
            "Approvals needed",
            html::escape(&format!("{} different people; granted by {granted}", approval.quorum)),
        );
    }
    row("Opened", format!("{} ago", html::span(now.saturating_sub(approval.opened_at))));
    row("Time left", html::span(approval.expires_at.saturating_sub(now)));
    out.push_str("</dl>");
    out
}

fn arguments(approval: &Approval) -> String {
    let args =
        html::reveal_invisible(&serde_json::to_string_pretty(&approval.shown.args).unwrap_or_default());
    format!(
        "<h3 id=\"args-{id}\">Arguments</h3><pre class=\"args\" aria-labelledby=\"args-{id}\">{}</pre>",
        html::escape(&args),
        id = html::escape(&approval.id),
    )
}

/// `GET /approvals`.
pub(super) async fn list(State(console): State<Shared>, headers: HeaderMap) -> Answer {
    let signed_in = console.viewer(&headers).await?;
    let (approvals, now) = visible(&console, &signed_in).await?;
    let mut body = String::new();
    if approvals.is_empty() {
        body.push_str("<p class=\"empty\">No approval is waiting for you.</p>");
    } else {
        let _ = write!(
            body,
            "<p>{} waiting for you, soonest to expire first.</p><ul class=\"approvals\">",
            approvals.len()
        );
        for approval in &approvals {
            let _ = write!(
                body,
                "<li class=\"approval\"><h2><a href=\"/approvals/{}\">{}</a></h2>{}{}</li>",
                html::url_encode(&approval.id),
                call_title(approval),
                facts(&console, approval, now),
                arguments(approval),
            );
        }
        body.push_str("</ul>");
    }
    Ok(Html(html::page("Approvals", Some(&signed_in.viewer()), &body)).into_response())
}

/// `GET /approvals/{id}`: only an approval the account may decide (any
/// other is "not found", whether or not it exists).
/// Whether `id` can be an approval id (`apr_` and 32 hex digits): any
/// other is "not found" at once, never looked up or recorded.
fn possible_id(id: &str) -> bool {
    id.strip_prefix("apr_").is_some_and(|hex| hex.len() == 32 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
}

fn not_found() -> Refusal {
    Refusal::new(
        StatusCode::NOT_FOUND,
        "No approval with this id is waiting for you: it may have been decided, or expired.",
    )
}

pub(super) async fn detail(
    State(console): State<Shared>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Answer {
    let signed_in = console.viewer(&headers).await?;
    if !possible_id(&id) {
        return Err(not_found());
    }
    let (approvals, now) = visible(&console, &signed_in).await?;
    let Some(approval) = approvals.iter().find(|a| a.id == id) else {
        return Err(not_found());
    };
    let csrf = html::escape(&signed_in.session.csrf);
    let action = html::url_encode(&approval.id);
    let body = format!(
        r#"<h2>{title}</h2>{facts}{args}
<form method="post" class="decide" action="/approvals/{action}/approve">
<input type="hidden" name="csrf" value="{csrf}">
<p><label for="comment">Comment (recorded in the audit trail)</label>
<textarea id="comment" name="comment" maxlength="{MAX_COMMENT}" rows="3"></textarea></p>
<p><button type="submit" class="approve">Approve</button>
<button type="submit" class="reject" formaction="/approvals/{action}/reject">Reject</button></p>
</form>
<p class="id">Approval <code>{id}</code></p>"#,
        title = call_title(approval),
        facts = facts(&console, approval, now),
        args = arguments(approval),
        id = html::escape(&approval.id),
    );
    Ok(Html(html::page("Approval", Some(&signed_in.viewer()), &body)).into_response())
}

/// `POST /approvals/{id}/approve`.
pub(super) async fn approve(
    State(console): State<Shared>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(form): Form<Decision>,
) -> Answer {
    decide(console, headers, id, form, true).await
}

/// `POST /approvals/{id}/reject`.
pub(super) async fn reject(
    State(console): State<Shared>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(form): Form<Decision>,
) -> Answer {
    decide(console, headers, id, form, false).await
}

async fn decide(console: Shared, headers: HeaderMap, id: String, form: Decision, grant: bool) -> Answer {
    let signed_in = console.changer(&headers, &form.csrf).await?;
    if !possible_id(&id) {
        return Err(not_found());
    }
    if form.comment.len() > MAX_COMMENT {
        return Err(Refusal::new(
            StatusCode::BAD_REQUEST,
            format!("A comment is at most {MAX_COMMENT} bytes."),
        ));
    }
    let comment = Some(form.comment.trim().to_owned()).filter(|c| !c.is_empty());
    let op = Op::DecideApproval { approval: id.clone(), by: None, grant, comment };
    let decided = console
        .ask(&signed_in.role(), op, |reply| match reply {
            Reply::ApprovalDecided { approval, .. } => Ok(approval),
            Reply::Error(error) => Err(refusal(error)),
            _ => Err(Refusal::unexpected()),
        })
        .await;
    let approval = decided?;
    let waiting = approval.state == crate::state::approval::ApprovalState::Pending;
    let verb = match (grant, waiting) {
        (true, false) => "Approved",
        (true, true) => "Granted, waiting for more",
        (false, _) => "Rejected",
    };
    let text = format!("{verb}: {} for agent {}.", approval.binding.tool, approval.binding.agent);
    let next = match (grant, waiting) {
        (true, false) => String::from("The gateway's next try of this call is allowed, once."),
        (true, true) => format!(
            "It needs {} different people: {} of them have granted it.",
            approval.quorum,
            approval.grants.len()
        ),
        (false, _) => String::from("The gateway's next try of this call is denied."),
    };
    let body = format!(
        "{}<p>{}</p><p><a href=\"/approvals\">Back to the approvals</a></p>",
        html::notice("ok", &text),
        html::escape(&next),
    );
    Ok(Html(html::page(verb, Some(&signed_in.viewer()), &body)).into_response())
}
