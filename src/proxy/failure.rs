//! Timeouts and failure policies (`timeout`, `onFailure` of the decision's
//! obligations): a call that outlives its timeout is cancelled at the
//! server and answered here; a failed call's result tells the model, in
//! the shape of a structured failure, whether it may retry, after how
//! long, what to call instead, and what to tell the user.

use std::time::Duration;

use serde_json::{Map, Value, json};

use super::jsonrpc::{self, Envelope};
use super::{Purpose, Relay, lock};

/// The `_meta` member of a failed call's result.
pub const FAILURE_META: &str = "dev.toolgate/failure";

impl Relay {
    /// Cancels the server's request `proxy_id` after `ms` milliseconds if it
    /// has not been answered by then.
    pub(super) fn cancel_after(&self, proxy_id: u64, ms: u64) {
        let relay = self.me.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(ms)).await;
            if let Some(relay) = relay.upgrade() {
                relay.time_out(proxy_id, ms).await;
            }
        });
    }

    async fn time_out(&self, proxy_id: u64, ms: u64) {
        // Answered in time: nothing to do. Taken here: a late answer is dropped.
        let Some((client_id, purpose)) = lock(&self.upstream).take(&Value::from(proxy_id)) else { return };
        let Purpose::Call { tool, decision_id, started, obligations } = purpose else { return };
        tracing::warn!(tool, ms, "the call timed out; cancelled at the server");
        let reason = format!("toolgate: the call timed out after {ms} ms");
        let cancel = json!({"jsonrpc": "2.0", "method": "notifications/cancelled",
                            "params": {"requestId": proxy_id, "reason": reason}});
        self.send_upstream(&Envelope::from_value(&cancel)).await;
        let failures = self.count_failure(&tool, true);
        let name = self.client_name(&tool);
        let what = format!("The call to `{name}` timed out after {ms} ms and was cancelled.");
        let failure =
            failure(&what, "timeout", obligations.on_failure.as_ref(), failures, &self.caller.server);
        let mut result = json!({"resultType": "complete", "content": [], "isError": true});
        add_failure(&mut result, failure);
        let answer = Envelope::from_value(&jsonrpc::result(&client_id, result.clone()));
        if let Some(decision_id) = &decision_id {
            self.report(&tool, decision_id, &answer, started, 0).await;
        }
        self.answer_client(jsonrpc::result(&client_id, result)).await;
    }

    /// Counts a call's failure (or ends its tool's streak), and adds the
    /// failure policy to a failed call's `isError` result.
    pub(super) fn note_outcome(
        &self,
        tool: &str,
        failed: bool,
        on_failure: Option<&Value>,
        message: &mut Envelope,
    ) {
        let failures = self.count_failure(tool, failed);
        let Some(policy) = on_failure.filter(|_| failed) else { return };
        // A JSON-RPC error is the protocol's; only tool results carry the policy.
        let Some(mut result) =
            message.raw("result").and_then(|raw| serde_json::from_str::<Value>(raw.get()).ok())
        else {
            return;
        };
        if !result.is_object() {
            return;
        }
        let what = format!("The call to `{}` failed.", self.client_name(tool));
        add_failure(
            &mut result,
            failure(&what, "upstream_error", Some(policy), failures, &self.caller.server),
        );
        message.set_value("result", &result);
    }

    /// The failed calls of `tool` in a row, this one counted (0 after a
    /// success).
    fn count_failure(&self, tool: &str, failed: bool) -> u64 {
        let mut failures = lock(&self.failures);
        if !failed {
            failures.remove(tool);
            return 0;
        }
        let count = failures.entry(tool.to_owned()).or_default();
        *count += 1;
        *count
    }

    /// A tool's name as the client knows it (without the server prefix).
    fn client_name<'t>(&self, tool: &'t str) -> &'t str {
        self.caller
            .server
            .as_deref()
            .and_then(|server| tool.strip_prefix(server).and_then(|rest| rest.strip_prefix('/')))
            .unwrap_or(tool)
    }
}

/// The structured failure (the fields of seed 002's `ToolFailureResponse`)
/// and the text the model reads, for the `failures`-th failure in a row.
fn failure(
    what: &str,
    kind: &str,
    policy: Option<&Value>,
    failures: u64,
    server: &Option<String>,
) -> (String, Value) {
    let field = |name: &str| policy.and_then(|p| p.get(name));
    // Without a policy the model may retry; with one, `retries` in a row.
    let retries = field("retries").and_then(Value::as_u64);
    let can_retry = retries.is_none_or(|n| failures <= n);
    let retry_after = field("retryAfterMs").and_then(Value::as_u64);
    let fallback = field("fallback").and_then(Value::as_str);
    let available = field("fallbackAvailable").and_then(Value::as_bool) == Some(true) && fallback.is_some();
    // The fallback as the client names it, when it is on this server.
    let fallback = fallback.map(|name| {
        server.as_deref().and_then(|s| name.strip_prefix(s).and_then(|r| r.strip_prefix('/'))).unwrap_or(name)
    });
    let user_message = field("userMessage")
        .and_then(Value::as_str)
        .map_or_else(|| String::from("The tool is not available right now."), str::to_owned);
    let mut text = String::from(what);
    match (can_retry, retries, retry_after) {
        (true, Some(n), after) => {
            let left = n.saturating_sub(failures) + 1;
            text.push_str(&format!(" You may retry it ({left} of {n} retries left"));
            text.push_str(&after.map_or_else(|| String::from(")."), |ms| format!(", after {ms} ms).")));
        }
        (true, None, _) => text.push_str(" Retrying may succeed."),
        (false, _, _) => text.push_str(" Do not retry it: its retries are used up."),
    }
    if let (true, Some(name)) = (available, fallback) {
        text.push_str(&format!(" You may call `{name}` instead."));
    }
    text.push_str(&format!(" If nothing recovers, tell the user: {user_message}"));
    let mut meta = Map::new();
    meta.insert("status".into(), json!("error"));
    meta.insert("errorType".into(), json!(kind));
    meta.insert("canRetry".into(), json!(can_retry));
    if let Some(ms) = retry_after.filter(|_| can_retry) {
        meta.insert("retryAfterMs".into(), json!(ms));
    }
    meta.insert("fallbackAvailable".into(), json!(available));
    if let (true, Some(name)) = (available, fallback) {
        meta.insert("fallbackToolName".into(), json!(name));
    }
    meta.insert("userMessage".into(), json!(user_message));
    (text, Value::Object(meta))
}

/// Appends the failure's text to a result's content and its fields under
/// `_meta`.
fn add_failure(result: &mut Value, (text, meta): (String, Value)) {
    let Some(object) = result.as_object_mut() else { return };
    let content = object.entry("content").or_insert_with(|| json!([]));
    if let Some(items) = content.as_array_mut() {
        items.push(json!({"type": "text", "text": text}));
    }
    let slot = object.entry("_meta").or_insert_with(|| json!({}));
    if !slot.is_object() {
        *slot = json!({});
    }
    if let Some(slot) = slot.as_object_mut() {
        slot.insert(FAILURE_META.into(), meta);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_failure_says_whether_to_retry_and_what_to_call_instead() {
        let policy = json!({"retries": 2, "retryAfterMs": 500, "fallback": "srv/cached",
                            "fallbackAvailable": true, "userMessage": "Try again later."});
        let server = Some(String::from("srv"));
        let (text, meta) = failure("The call to `t` failed.", "upstream_error", Some(&policy), 1, &server);
        assert_eq!(meta["canRetry"], true);
        assert_eq!(meta["retryAfterMs"], 500);
        assert_eq!(meta["fallbackToolName"], "cached");
        assert!(
            text.contains("2 of 2 retries left, after 500 ms") && text.contains("`cached` instead"),
            "{text}"
        );
        let (text, meta) = failure("x", "timeout", Some(&policy), 3, &server);
        assert_eq!((meta["canRetry"].as_bool(), meta.get("retryAfterMs")), (Some(false), None));
        assert!(text.contains("Do not retry") && text.contains("Try again later."), "{text}");
        let unavailable = json!({"retries": 0, "fallback": "other", "fallbackAvailable": false});
        let (text, meta) = failure("x", "timeout", Some(&unavailable), 1, &None);
        assert_eq!((meta["fallbackAvailable"].as_bool(), meta.get("fallbackToolName")), (Some(false), None));
        assert!(!text.contains("other") && text.contains("Do not retry"), "{text}");
        let (_, meta) = failure("x", "timeout", None, 5, &None);
        assert_eq!(meta["canRetry"], true);
    }
}
