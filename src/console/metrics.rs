//! The Prometheus endpoint: the service's counters in the Prometheus text
//! format (version 0.0.4), encoded by `prometheus-client` from what the
//! service counts with relaxed atomics — nothing on the decision path
//! takes a lock for it.
//!
//! Served on a listener of its own (`serve --metrics ADDR`), answering
//! `GET /metrics` only; it needs no sign-in, so keep it on loopback or
//! behind the scraper's network.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;

use crate::service::Service;
use crate::service::metrics::BUCKETS;

/// The most scrapers connected at once.
pub const MAX_CONNECTIONS: usize = 16;

/// The content type of the Prometheus text format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The histogram's first bucket: latencies below 2^7 ns (128 ns).
const FIRST_SHOWN: usize = 7;
/// Its last bounded bucket: below 2^34 ns (17 s); longer ones count in `+Inf`.
const LAST_SHOWN: usize = 34;
const _: () = assert!(LAST_SHOWN + 1 < BUCKETS);

/// The upper bound of bucket `i`, in seconds.
fn bound(i: usize) -> f64 {
    (1u64 << i) as f64 / 1e9
}

/// The metrics of `service`, read at each scrape.
#[derive(Debug)]
struct ServiceCollector(Arc<Service>);

type Labels = Vec<(&'static str, String)>;

fn counter(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    value: u64,
) -> Result<(), std::fmt::Error> {
    let metric = ConstCounter::new(value);
    metric.encode(encoder.encode_descriptor(name, help, None, metric.metric_type())?)
}

fn gauge(encoder: &mut DescriptorEncoder, name: &str, help: &str, value: i64) -> Result<(), std::fmt::Error> {
    let metric = ConstGauge::new(value);
    metric.encode(encoder.encode_descriptor(name, help, None, metric.metric_type())?)
}

impl Collector for ServiceCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let service = &self.0;
        let metrics = service.metrics();
        let relaxed = std::sync::atomic::Ordering::Relaxed;

        let mut family = encoder.encode_descriptor(
            "toolgate_decisions",
            "Decisions by agent and outcome (agents no policy knows share agent=\"(unknown)\")",
            None,
            MetricType::Counter,
        )?;
        for (agent, counts) in metrics.by_agent() {
            for (outcome, count) in counts {
                let labels: Labels = vec![("agent", agent.clone()), ("outcome", outcome.as_str().to_owned())];
                ConstCounter::new(count).encode(family.encode_family(&labels)?)?;
            }
        }

        // Bucket i counts latencies below 2^i ns; the encoder makes the
        // counts cumulative. Shown: up to 128 ns, then doubling to 17 s.
        let latency = metrics.latency();
        let total: u64 = latency.counts.iter().sum();
        let mut buckets = Vec::with_capacity(FIRST_SHOWN.abs_diff(LAST_SHOWN) + 2);
        buckets.push((bound(FIRST_SHOWN), latency.counts[..=FIRST_SHOWN].iter().sum()));
        for i in FIRST_SHOWN + 1..=LAST_SHOWN {
            buckets.push((bound(i), latency.counts[i]));
        }
        buckets.push((f64::INFINITY, latency.counts[LAST_SHOWN + 1..].iter().sum()));
        let histogram = encoder.encode_descriptor(
            "toolgate_decision_duration_seconds",
            "Time to decide a request, from parsed line to answer (before the audit trail confirms)",
            None,
            MetricType::Histogram,
        )?;
        let mut histogram = histogram;
        histogram.encode_histogram::<prometheus_client::encoding::NoLabelSet>(
            latency.sum_ns as f64 / 1e9,
            total,
            &buckets,
            None,
        )?;

        counter(
            &mut encoder,
            "toolgate_request_errors",
            "Request lines answered with an error (each a deny)",
            metrics.errors(),
        )?;
        let approvals = &metrics.approvals;
        counter(
            &mut encoder,
            "toolgate_approvals_opened",
            "Approvals opened for gated calls",
            approvals.opened.load(relaxed),
        )?;
        counter(
            &mut encoder,
            "toolgate_approvals_granted",
            "Approvals granted",
            approvals.granted.load(relaxed),
        )?;
        counter(
            &mut encoder,
            "toolgate_approvals_rejected",
            "Approvals rejected",
            approvals.rejected.load(relaxed),
        )?;
        let state = service.state();
        counter(
            &mut encoder,
            "toolgate_approvals_expired",
            "Approvals that expired waiting for a decision",
            state.approvals.expired_count(),
        )?;
        gauge(
            &mut encoder,
            "toolgate_approvals_pending",
            "Approvals waiting for a decision now",
            i64::try_from(state.approvals.pending_count()).unwrap_or(i64::MAX),
        )?;
        counter(
            &mut encoder,
            "toolgate_kills",
            "Kills put in force (by operators, and by limits sessions tripped)",
            metrics.kills.load(relaxed),
        )?;
        gauge(
            &mut encoder,
            "toolgate_kills_in_force",
            "Kills in force now",
            i64::try_from(state.kills.list().len()).unwrap_or(i64::MAX),
        )?;
        let status = service.status();
        let number = |path: &str| status.pointer(path).and_then(serde_json::Value::as_u64).unwrap_or(0);
        counter(
            &mut encoder,
            "toolgate_reloads",
            "Policy reloads that succeeded",
            number("/reload/reloads"),
        )?;
        counter(
            &mut encoder,
            "toolgate_reload_errors",
            "Policy reloads refused for errors",
            number("/reload/failures"),
        )?;
        gauge(
            &mut encoder,
            "toolgate_state_store_up",
            "1 while the state store works; 0 while it is degraded (calls that need it are denied)",
            i64::from(state.condition().is_ok()),
        )?;
        if let Some(redis) = &state.redis {
            let offset = ConstGauge::new(redis.clock.offset_ms() as f64 / 1000.0);
            offset.encode(encoder.encode_descriptor(
                "toolgate_redis_clock_offset_seconds",
                "How far Redis's clock is ahead of this replica's (behind: negative); the replica tells Redis's time",
                None,
                offset.metric_type(),
            )?)?;
        }
        if let Some(audit) = service.audit() {
            let condition = audit.condition(crate::state::DEFAULT_DECISION_TIMEOUT);
            gauge(
                &mut encoder,
                "toolgate_audit_trail_up",
                "1 while the audit trail is written; 0 while it is not (answers are denied)",
                i64::from(condition.is_ok()),
            )?;
            counter(&mut encoder, "toolgate_audit_records", "Records in the audit trail", audit.head().0)?;
        }
        let (open, accepted, refused) = metrics.connections();
        gauge(
            &mut encoder,
            "toolgate_connections_open",
            "Decision and admin connections open now",
            i64::try_from(open).unwrap_or(i64::MAX),
        )?;
        counter(&mut encoder, "toolgate_connections_accepted", "Connections accepted", accepted)?;
        counter(
            &mut encoder,
            "toolgate_connections_refused",
            "Connections refused at the connection cap",
            refused,
        )?;
        counter(
            &mut encoder,
            "toolgate_console_signins_refused",
            "Console sign-ins refused (wrong name or password, or throttled)",
            metrics.signins_refused.load(relaxed),
        )?;
        let notifications = &metrics.notifications;
        counter(
            &mut encoder,
            "toolgate_notifications_sent",
            "Approval notifications delivered",
            notifications.sent.load(relaxed),
        )?;
        counter(
            &mut encoder,
            "toolgate_notifications_failed",
            "Approval notifications given up after every try, or refused by the receiver",
            notifications.failed.load(relaxed),
        )?;
        counter(
            &mut encoder,
            "toolgate_notifications_dropped",
            "Approval notifications dropped: a webhook's queue was full",
            notifications.dropped.load(relaxed),
        )?;
        gauge(
            &mut encoder,
            "toolgate_uptime_seconds",
            "Seconds since the server started",
            number("/uptime_s") as i64,
        )?;
        Ok(())
    }
}

/// The metrics of `service` as Prometheus text.
pub fn render(service: &Arc<Service>) -> Result<String, std::fmt::Error> {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(ServiceCollector(Arc::clone(service))));
    let mut text = String::new();
    prometheus_client::encoding::prometheus_text::encode(&mut text, &registry)?;
    Ok(text)
}

async fn scrape(State(service): State<Arc<Service>>) -> Response {
    match render(&service) {
        Ok(text) => ([(header::CONTENT_TYPE, CONTENT_TYPE)], text).into_response(),
        Err(_) => (StatusCode::INTERNAL_SERVER_ERROR, "the metrics could not be encoded").into_response(),
    }
}

/// The metrics listener's routes: `GET /metrics`, nothing else.
pub fn router(service: Arc<Service>) -> Router {
    Router::new()
        .route("/metrics", get(scrape))
        .fallback(|| async { (StatusCode::NOT_FOUND, "only /metrics is served here\n") })
        .layer(axum::extract::DefaultBodyLimit::max(1024))
        .layer(axum::middleware::from_fn(|request, next| super::http::request_timeout(&[], request, next)))
        .with_state(service)
}

/// Serves the metrics on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    service: Arc<Service>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = super::http::guarded(router(service), listener.local_addr()?, &[]);
    super::http::serve(listener, app, MAX_CONNECTIONS, shutdown).await
}
