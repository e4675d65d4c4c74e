//! Admin and operations: reset, stats, metrics, health and readiness.

use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::registry::Registry;
use watchbus::Metrics;

use crate::AppState;
use crate::auth::Role;
use crate::cors::{PageHeaders, check_page_origin};
use crate::error::{ApiError, PageRequest};
use crate::meters::Meters;
use crate::query::Query;

fn authorize_admin(state: &AppState, request: &Request) -> Result<(), ApiError> {
    let query = Query::parse(request.uri().query())?;
    state
        .config
        .tokens
        .authorize(Role::Admin, request.headers(), &query)
        .map(drop)
}

/// Handles `POST /v1/admin/reset`.
pub(crate) async fn reset(
    State(state): State<AppState>,
    request: Request,
) -> Result<StatusCode, ApiError> {
    let page = PageHeaders::of(request.headers());
    check_page_origin(state.cors.as_deref(), page, PageRequest::Reset)?;
    authorize_admin(&state, &request)?;
    state.hub.reset().await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Handles `GET /v1/stats`.
pub(crate) async fn stats(
    State(state): State<AppState>,
    request: Request,
) -> Result<Response, ApiError> {
    authorize_admin(&state, &request)?;
    let stats = state.hub.stats().await?;
    let id = |id: Option<watchbus::EventId>| id.map(|id| id.to_string());
    let body = serde_json::json!({
        "subscribers": {"active": stats.subscribers_active, "total": stats.subscribers_total},
        "events": {
            "published": stats.log.published,
            "retained": stats.log.retained,
            "evicted": stats.log.evicted,
            "oldest_id": id(stats.log.oldest),
            "latest_id": id(stats.log.latest),
        },
    });
    Ok(axum::Json(body).into_response())
}

/// Handles `GET /metrics`: Prometheus text format. Counters never go down,
/// also across resets.
pub(crate) async fn metrics(
    State(state): State<AppState>,
    request: Request,
) -> Result<Response, ApiError> {
    authorize_admin(&state, &request)?;
    let m = state.hub.metrics();
    let mut registry = Registry::with_prefix("watchbus");
    registry.register(
        "publish_events",
        "Events stored through this server",
        ConstCounter::new(m.published_events),
    );
    registry.register(
        "publish_replays",
        "Publishes with an Idempotency-Key answered with an earlier publish's receipts, storing nothing",
        ConstCounter::new(m.replayed_publishes),
    );
    registry.register(
        "fanout_events",
        "Events the live feed handed to this server's hub",
        ConstCounter::new(m.dispatched_events),
    );
    registry.register(
        "fanout_deliveries",
        "Events delivered into subscriber mailboxes",
        ConstCounter::new(m.deliveries),
    );
    registry.register(
        "subscriber_opened",
        "Subscriptions opened",
        ConstCounter::new(m.subscriptions_opened),
    );
    registry.register(
        "subscriber_lagged",
        "Subscriptions ended because they fell out of retention",
        ConstCounter::new(m.subscriptions_lagged),
    );
    registry.register("admin_resets", "Admin resets", ConstCounter::new(m.resets));
    registry.register(
        "subscribers_active",
        "Open subscriptions",
        ConstGauge::new(gauge(m.subscriptions_active)),
    );
    register_store_meters(&mut registry, &state, &m).await;
    register_api_meters(&mut registry, &state.meters);
    let mut text = String::new();
    if encode(&mut text, &registry).is_err() {
        return Err(ApiError::StoreUnavailable);
    }
    // What prometheus-client writes: OpenMetrics text (`_total` samples of
    // a counter family, `# EOF`), which Prometheus reads by this name.
    let content_type =
        HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8");
    Ok(([(header::CONTENT_TYPE, content_type)], text).into_response())
}

/// A count as a Prometheus gauge's value.
fn gauge(count: u64) -> i64 {
    i64::try_from(count).unwrap_or(i64::MAX)
}

/// What the store holds. A scrape still answers when the store cannot: then
/// `store_up` is 0 and the log's gauges are left out, so an alert can tell
/// "the store is down" from "the log is empty".
async fn register_store_meters(registry: &mut Registry, state: &AppState, m: &Metrics) {
    let stats = state.hub.stats().await;
    registry.register(
        "store_up",
        "1 when the store answered this scrape, 0 when it could not be reached",
        ConstGauge::new(i64::from(stats.is_ok())),
    );
    if let Ok(stats) = stats {
        registry.register(
            "events_retained",
            "Events in the log now, which a resume can still be given",
            ConstGauge::new(gauge(stats.log.retained)),
        );
        if let Some(oldest) = stats.log.oldest_time {
            // Seconds since the epoch, as Prometheus keeps times:
            // `time() - watchbus_events_oldest_timestamp_seconds` is how far
            // back a resume reaches.
            let seconds = oldest.as_millis() as f64 / 1000.0;
            registry.register(
                "events_oldest_timestamp_seconds",
                "The time of the oldest retained event, in seconds since the Unix epoch: \
                 about how far back a resume can reach",
                ConstGauge::new(seconds),
            );
        }
    }
    // Only a store that keeps its idempotency keys in this process, with a
    // bound, has a table to watch.
    if let Some(keys) = m.key_table {
        registry.register(
            "idempotency_keys",
            "Idempotency keys remembered now, within their window",
            ConstGauge::new(gauge(keys.remembered)),
        );
        registry.register(
            "idempotency_keys_forgotten_early",
            "Idempotency keys forgotten before their window ended because the table was full: \
             a retry of one of them was stored again",
            ConstCounter::new(keys.forgotten_early),
        );
    }
}

/// The API's own counters: refusals by code and status, streams by
/// transport.
fn register_api_meters(registry: &mut Registry, meters: &Meters) {
    let refused = Family::<Vec<(&'static str, String)>, Counter>::default();
    for ((code, status), count) in meters.refused() {
        refused
            .get_or_create(&vec![
                ("code", code.to_owned()),
                ("status", status.to_string()),
            ])
            .inc_by(count);
    }
    registry.register(
        "requests_refused",
        "Requests answered with an error, by error code and HTTP status",
        refused,
    );
    let opened = Family::<Vec<(&'static str, &'static str)>, Counter>::default();
    let open = Family::<Vec<(&'static str, &'static str)>, Gauge>::default();
    for (transport, streams) in [("sse", &meters.sse), ("ws", &meters.ws)] {
        let labels = vec![("transport", transport)];
        opened.get_or_create(&labels).inc_by(streams.opened());
        open.get_or_create(&labels).set(gauge(streams.open_now()));
    }
    registry.register(
        "streams_opened",
        "Subscriber streams opened, by transport",
        opened,
    );
    registry.register(
        "streams_open",
        "Subscriber streams open now, by transport",
        open,
    );
}

/// Handles `GET /healthz`: the process serves.
pub(crate) async fn healthz() -> Response {
    axum::Json(serde_json::json!({"status": "ok"})).into_response()
}

/// Handles `GET /readyz`: the store is reachable.
pub(crate) async fn readyz(State(state): State<AppState>) -> Result<Response, ApiError> {
    state.hub.ready().await?;
    Ok(axum::Json(serde_json::json!({"status": "ready"})).into_response())
}
