//! Telling approvers that an approval waits for them: a webhook per
//! approver (a JSON POST, or a Slack-compatible message), with a link to
//! the approval's page in the console.
//!
//! The settings are a file of the server's (`serve --notify FILE`), not of
//! the policy: webhook addresses are secrets (a Slack webhook URL is a
//! credential), and policies are reviewed in the open.
//!
//! ```yaml
//! console: https://toolgate.example.com   # where approvers reach the console
//! webhooks:
//!   finance:
//!     url: https://hooks.slack.com/services/T000/B000/XXXX
//!     format: slack
//!   release:
//!     url: https://ops.example.com/hooks/toolgate   # format: json (the default)
//! default:                                        # approvals whose approver has none
//!   url: https://ops.example.com/hooks/toolgate
//! ```
//!
//! Delivery: each webhook has a worker thread and a bounded queue
//! ([`QUEUE`]); an approval that finds its queue full is dropped (logged and
//! counted), never waited for — the decision path does not wait on a
//! webhook. A delivery is tried up to [`ATTEMPTS`] times, waiting 1, 2, 4, 8
//! seconds between tries, unless the receiver answers a 4xx other than 408
//! and 429 (it will not accept it later either). Redirects are not
//! followed.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::time::Duration;

use serde::Deserialize;
use serde_json::{Value, json};

use crate::service::Service;
use crate::service::metrics::Deliveries;
use crate::state::approval::Approval;

/// Approvals waiting for one webhook's worker; more are dropped.
pub const QUEUE: usize = 256;
/// Tries per delivery.
pub const ATTEMPTS: u32 = 5;
/// How long one try may take.
const TIMEOUT: Duration = Duration::from_secs(10);
/// The first wait between tries; each next one is twice as long.
const FIRST_RETRY: Duration = Duration::from_secs(1);
/// The queue of the `default` webhook (not an approver's name: those are
/// identifiers).
const FALLBACK: &str = "(default)";
/// The most argument text put in a Slack message.
const SLACK_ARGS_CHARS: usize = 1_500;

/// What a webhook receives.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// `{"event": "approval_opened", "approval": {...}, "url": ...}`.
    #[default]
    Json,
    /// A Slack incoming-webhook message (`text` and `blocks`).
    Slack,
}

/// One webhook.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Webhook {
    /// Where to POST.
    pub url: String,
    /// What to send.
    #[serde(default)]
    pub format: Format,
}

/// The notification settings.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotifyConfig {
    /// The console's address as approvers reach it: links are
    /// `<console>/approvals/<id>`.
    pub console: String,
    /// A webhook per approver name.
    #[serde(default)]
    pub webhooks: BTreeMap<String, Webhook>,
    /// The webhook of approvals whose approver has none of its own (and of
    /// gates that name no approver).
    #[serde(default)]
    pub default: Option<Webhook>,
}

impl NotifyConfig {
    /// Reads the settings from `path` (a private file of the server's user).
    pub fn read(path: &Path) -> Result<NotifyConfig, String> {
        let shown = path.display();
        let file = crate::state::private::open(path, std::fs::OpenOptions::new().read(true))
            .map_err(|e| format!("cannot read the notification settings `{shown}`: {e}"))?;
        let mut text = String::new();
        file.take(1 << 20)
            .read_to_string(&mut text)
            .map_err(|e| format!("cannot read the notification settings `{shown}`: {e}"))?;
        NotifyConfig::parse(&text)
            .map_err(|e| format!("the notification settings `{shown}` are invalid: {e}"))
    }

    /// Parses the settings' text.
    pub fn parse(text: &str) -> Result<NotifyConfig, String> {
        let config: NotifyConfig = serde_saphyr::from_str(text).map_err(|e| e.to_string())?;
        let hooks = config.webhooks.iter().map(|(name, hook)| (format!("`webhooks.{name}`"), hook));
        for (place, hook) in hooks.chain(config.default.iter().map(|hook| (String::from("`default`"), hook)))
        {
            check_url(&hook.url).map_err(|e| format!("{place}: {e}"))?;
        }
        check_url(&config.console).map_err(|e| format!("`console`: {e}"))?;
        Ok(config)
    }

    /// The webhook of approvals for `approver`.
    fn webhook(&self, approver: Option<&str>) -> Option<(&str, &Webhook)> {
        match approver.and_then(|name| self.webhooks.get_key_value(name)) {
            Some((name, hook)) => Some((name.as_str(), hook)),
            None => self.default.as_ref().map(|hook| (FALLBACK, hook)),
        }
    }
}

fn check_url(url: &str) -> Result<(), String> {
    let rest = url.strip_prefix("https://").or_else(|| url.strip_prefix("http://"));
    match rest {
        Some(rest) if !rest.is_empty() && !rest.starts_with('/') && !url.chars().any(char::is_whitespace) => {
            Ok(())
        }
        _ => Err(format!("`{url}` is not an http:// or https:// address")),
    }
}

/// The link to an approval's page.
fn link(config: &NotifyConfig, approval: &Approval) -> String {
    format!("{}/approvals/{}", config.console.trim_end_matches('/'), approval.id)
}

/// The body a webhook of `format` receives for `approval`.
pub fn payload(config: &NotifyConfig, format: Format, approval: &Approval) -> Value {
    let url = link(config, approval);
    match format {
        Format::Json => json!({
            "event": "approval_opened",
            "approval": {
                "id": approval.id,
                "agent": approval.binding.agent,
                "session": approval.binding.session,
                "tool": approval.binding.tool,
                "approver": approval.approver,
                "gate": approval.binding.gate,
                "description": approval.shown.description,
                "args": approval.shown.args,
                "opened_at": approval.opened_at,
                "expires_at": approval.expires_at,
            },
            "url": url,
        }),
        Format::Slack => slack(approval, &url),
    }
}

/// Text for Slack's mrkdwn: `&`, `<` and `>` escaped, as Slack asks.
fn slack_escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

fn slack(approval: &Approval, url: &str) -> Value {
    let binding = &approval.binding;
    let mut args = serde_json::to_string_pretty(&approval.shown.args).unwrap_or_default();
    if args.chars().count() > SLACK_ARGS_CHARS {
        args = args.chars().take(SLACK_ARGS_CHARS).collect::<String>() + "\n…";
    }
    let approver = approval.approver.as_deref().unwrap_or("an operator");
    let summary = format!(
        "Approval needed from {}: `{}` for agent `{}`",
        slack_escape(approver),
        slack_escape(&binding.tool),
        slack_escape(&binding.agent)
    );
    let mut details = String::new();
    if let Some(description) = &approval.shown.description {
        details.push_str(&format!("{}\n", slack_escape(description)));
    }
    details.push_str(&format!("```{}```", slack_escape(&args).replace("```", "'''")));
    json!({
        "text": format!("{summary} — {url}"),
        "blocks": [
            {"type": "section", "text": {"type": "mrkdwn", "text": summary}},
            {"type": "section", "text": {"type": "mrkdwn", "text": details}},
            {"type": "actions", "elements": [
                {"type": "button", "text": {"type": "plain_text", "text": "Open in the console"}, "url": url}
            ]},
        ],
    })
}

/// One delivery for a worker.
struct Delivery {
    approval: String,
    body: Vec<u8>,
}

/// Starts a worker per webhook and the task that hands each opened
/// approval to its approver's webhook. Runs until the service stops.
pub fn start(service: &Arc<Service>, config: NotifyConfig) -> tokio::task::JoinHandle<()> {
    let config = Arc::new(config);
    let mut queues: BTreeMap<String, (SyncSender<Delivery>, Format)> = BTreeMap::new();
    let hooks = config.webhooks.iter().map(|(name, hook)| (name.clone(), hook.clone()));
    for (name, hook) in hooks.chain(config.default.clone().map(|hook| (String::from(FALLBACK), hook))) {
        let (sender, receiver) = sync_channel(QUEUE);
        let (worker_name, service) = (name.clone(), Arc::clone(service));
        let format = hook.format;
        let spawned = std::thread::Builder::new()
            .name(format!("notify-{name}"))
            .spawn(move || deliver(&worker_name, &hook.url, &receiver, &service.metrics().notifications));
        match spawned {
            Ok(_) => {
                queues.insert(name, (sender, format));
            }
            Err(error) => tracing::error!(%error, webhook = %name, "cannot start the webhook's worker"),
        }
    }
    let mut announcements = service.announcements();
    let service = Arc::clone(service);
    tokio::spawn(async move {
        let counts = &service.metrics().notifications;
        use tokio::sync::broadcast::error::RecvError;
        loop {
            let approval = match announcements.recv().await {
                Ok(approval) => approval,
                Err(RecvError::Lagged(missed)) => {
                    counts.dropped.fetch_add(missed, Relaxed);
                    tracing::error!(missed, "the notifier fell behind; these approvals were not notified");
                    continue;
                }
                Err(RecvError::Closed) => return,
            };
            // The agent's own user is asked through the MCP client.
            if approval.approver.as_deref() == Some(crate::compiler::approvers::USER_APPROVER) {
                continue;
            }
            let Some((name, _)) = config.webhook(approval.approver.as_deref()) else { continue };
            let Some((queue, format)) = queues.get(name) else { continue };
            let body = serde_json::to_vec(&payload(&config, *format, &approval)).unwrap_or_default();
            let delivery = Delivery { approval: approval.id.clone(), body };
            if let Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) = queue.try_send(delivery) {
                counts.dropped.fetch_add(1, Relaxed);
                tracing::error!(webhook = %name, approval = %approval.id, "the webhook's queue is full; not notified");
            }
        }
    })
}

/// A worker: posts each delivery, retrying as the module says.
fn deliver(name: &str, url: &str, queue: &Receiver<Delivery>, counts: &Deliveries) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(TIMEOUT))
        .max_redirects(0)
        .http_status_as_error(false)
        .user_agent(concat!("toolgate/", env!("CARGO_PKG_VERSION")))
        .build()
        .into();
    while let Ok(delivery) = queue.recv() {
        let mut wait = FIRST_RETRY;
        let mut outcome = String::new();
        let mut delivered = false;
        for attempt in 1..=ATTEMPTS {
            let sent = agent.post(url).header("content-type", "application/json").send(&delivery.body[..]);
            let retry = match sent {
                Ok(response) if response.status().is_success() => {
                    delivered = true;
                    break;
                }
                Ok(response) => {
                    let status = response.status().as_u16();
                    outcome = format!("answered {status}");
                    status >= 500 || status == 408 || status == 429
                }
                Err(error) => {
                    outcome = error.to_string();
                    true
                }
            };
            if !retry || attempt == ATTEMPTS {
                break;
            }
            tracing::warn!(webhook = %name, approval = %delivery.approval, attempt, %outcome, "webhook failed; retrying");
            std::thread::sleep(wait);
            wait *= 2;
        }
        if delivered {
            counts.sent.fetch_add(1, Relaxed);
        } else {
            counts.failed.fetch_add(1, Relaxed);
            tracing::error!(webhook = %name, approval = %delivery.approval, %outcome, "webhook not delivered");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_name_a_webhook_per_approver_and_refuse_what_is_not_a_url() {
        let config = NotifyConfig::parse(
            "console: http://127.0.0.1:8080/\nwebhooks:\n  finance: {url: 'https://hooks.example/x', format: slack}\ndefault: {url: 'http://ops.example/h'}\n",
        )
        .expect("parses");
        assert_eq!(
            config.webhook(Some("finance")).map(|(n, h)| (n, h.format)),
            Some(("finance", Format::Slack))
        );
        assert_eq!(config.webhook(Some("release")).map(|(n, _)| n), Some(FALLBACK));
        assert_eq!(config.webhook(None).map(|(n, _)| n), Some(FALLBACK));
        for bad in [
            "console: ftp://x\n",
            "console: http://x\nwebhooks:\n  a: {url: 'file:///etc/passwd'}\n",
            "console: http://x\nwebhooks:\n  a: {url: 'http://x', fromat: json}\n",
            "console: http://x\nwebhooks:\n  a: {url: 'http://x', format: xml}\n",
        ] {
            assert!(NotifyConfig::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_slack_message_escapes_what_slack_would_read_as_markup() {
        let config = NotifyConfig::parse("console: http://c\n").expect("parses");
        let binding = crate::state::approval::Binding {
            agent: String::from("<!channel>"),
            session: None,
            tool: String::from("pay"),
            args_digest: String::new(),
            principal_digest: String::new(),
            context_digest: String::new(),
            gate: String::from("bot.approvalGates.pay"),
            approver: Some(String::from("finance")),
            policy: String::new(),
        };
        let approval = Approval {
            id: String::from("apr_1"),
            binding,
            approver: Some(String::from("finance")),
            shown: crate::state::approval::Shown {
                args: json!({"note": "<http://evil|click>"}),
                description: None,
            },
            quorum: 1,
            grants: Vec::new(),
            opened_at: 0,
            expires_at: 0,
            state: crate::state::approval::ApprovalState::Pending,
        };
        let message = payload(&config, Format::Slack, &approval).to_string();
        assert!(!message.contains("<!channel>") && !message.contains("<http://evil"), "{message}");
        assert!(message.contains("http://c/approvals/apr_1"), "{message}");
        let plain = payload(&config, Format::Json, &approval);
        assert_eq!(plain["approval"]["agent"], "<!channel>", "JSON carries the values as they are");
    }
}
