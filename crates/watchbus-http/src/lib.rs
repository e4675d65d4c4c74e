//! The watchbus HTTP API, version 1, as an axum [`Router`] to mount in your
//! own application or serve as it is.
//!
//! ```no_run
//! use std::time::Duration;
//! use watchbus::Hub;
//! use watchbus_http::{HttpConfig, router};
//!
//! # async fn run() -> std::io::Result<()> {
//! let hub = Hub::memory();
//! let app = axum::Router::new()
//!     .route("/", axum::routing::get(|| async { "my service" }))
//!     // The whole watchbus API under /bus: /bus/v1/events, /bus/v1/ws, ...
//!     .nest("/bus", router(hub.clone(), HttpConfig { keep_alive: Duration::from_secs(15), ..HttpConfig::default() }));
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
//! watchbus_http::serve(listener, app, async move {
//!     let _ = tokio::signal::ctrl_c().await;
//!     hub.shutdown(); // ends open streams, so `serve` can return
//! })
//! .await;
//! # Ok(())
//! # }
//! ```
//!
//! Endpoints: `POST /v1/events` (publish), `GET /v1/events` (SSE),
//! `GET /v1/ws` (WebSocket), `GET /v1/events/history`,
//! `POST /v1/admin/reset`, `GET /v1/stats`, `GET /metrics`, `GET /healthz`,
//! `GET /readyz`. Every error is `{"error": {"code", "message"}}`; the codes
//! are listed on [`ApiError`].
//!
//! [`serve`] keeps an idle SSE connection to a few KiB; `axum::serve` works
//! as well, at hyper's 24 KiB of buffers per connection. [`serve_api`]
//! serves the API alone, at the root, and answers publishes without the
//! router: the same answers for about a third less CPU each. Do not wrap the
//! router in a compression layer: it buffers SSE.

#![deny(missing_docs)]

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{DefaultBodyLimit, OriginalUri};
use axum::http::Method;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use watchbus::Hub;

mod auth;
mod cors;
mod deadline;
pub mod error;
#[cfg(fuzzing)]
#[doc(hidden)]
pub mod fuzzing;
mod hosts;
mod meters;
mod params;
mod query;
mod routes;
mod schema;
pub mod server;
pub mod transport;

pub use auth::{BadPublicKey, ScopedTokens, Tokens, WeakSecret};
pub use error::{ApiError, PageRequest};
pub use hosts::AllowedHosts;
pub use schema::{SchemaError, Schemas};
pub use server::{serve, serve_api};

/// The settings of the HTTP API.
#[derive(Debug, Clone)]
pub struct HttpConfig {
    /// How long a stream may stay silent before a keep-alive comment (SSE)
    /// or ping (WebSocket) is sent.
    pub keep_alive: Duration,
    /// How long a client may take none of the bytes written to it before
    /// it is disconnected. A subscriber that stops reading (a frozen
    /// process, a dead network path the kernel still thinks alive) has its
    /// stream ended after this, instead of holding its connection, its
    /// slot and its unsent events for ever; it resumes from its last event
    /// id. Applies where [`serve_api`] serves the connection ([`serve`],
    /// which takes a router and no settings, uses
    /// [`HttpConfig::DEFAULT_WRITE_TIMEOUT`]); a WebSocket subscriber that
    /// answers no ping for this long is closed (code 4408) wherever it is
    /// served.
    pub write_timeout: Duration,
    /// How long a connection may wait for its next request, or its first,
    /// before it is closed. A client that keeps a connection for later
    /// publishes opens a new one after this; a connection open for nothing
    /// does not hold its file descriptor for ever. Streams are not idle:
    /// this applies between requests only. Applies where [`serve_api`]
    /// serves the connection ([`serve`], which takes a router and no
    /// settings, uses [`HttpConfig::DEFAULT_IDLE_TIMEOUT`]).
    pub idle_timeout: Duration,
    /// The largest publish body, in bytes.
    pub max_body: usize,
    /// The most keys and prefixes (together), and the most types, in one
    /// subscription.
    pub max_filters: usize,
    /// The bearer token of each role.
    pub tokens: Tokens,
    /// Browser origins allowed by CORS (`*` for any); none disables CORS.
    /// A WebSocket, publish or reset from a page of another origin than
    /// these and the server's own is refused `403`.
    pub cors_origins: Vec<String>,
    /// The host names the server answers to, against DNS rebinding: a
    /// request whose `Host` is another is refused `403`. `None`, the
    /// default, answers to any.
    pub allowed_hosts: Option<AllowedHosts>,
    /// The JSON Schema of each event type that has one: a publish whose
    /// data fails its type's schema is refused `422`, and nothing of it is
    /// stored.
    pub schemas: Schemas,
}

impl HttpConfig {
    /// The default [`HttpConfig::write_timeout`]: long enough for a
    /// congested but live client, short enough that a dead one does not
    /// hold its events for long.
    pub const DEFAULT_WRITE_TIMEOUT: Duration = Duration::from_secs(30);

    /// The default [`HttpConfig::idle_timeout`]: longer than common
    /// clients keep an idle connection in their pools (90 s in Go's and
    /// reqwest's, 115 s in Firefox), so that the client closes it first,
    /// rather than sending a request on a connection the server is closing.
    pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(120);
}

impl Default for HttpConfig {
    /// The contract's defaults: 15 s keep-alive, 1 MiB bodies, 64 filters,
    /// every role open, no CORS, any host, no schemas; and a 30 s write
    /// timeout and a 120 s idle timeout.
    fn default() -> Self {
        Self {
            keep_alive: Duration::from_secs(15),
            write_timeout: Self::DEFAULT_WRITE_TIMEOUT,
            idle_timeout: Self::DEFAULT_IDLE_TIMEOUT,
            max_body: 1024 * 1024,
            max_filters: watchbus_core::DEFAULT_MAX_FILTERS,
            tokens: Tokens::default(),
            cors_origins: Vec::new(),
            allowed_hosts: None,
            schemas: Schemas::new(),
        }
    }
}

#[derive(Clone)]
pub(crate) struct AppState {
    pub(crate) hub: Hub,
    pub(crate) config: Arc<HttpConfig>,
    pub(crate) meters: Arc<meters::Meters>,
    /// The browser origins of `config.cors_origins`, when there are any.
    pub(crate) cors: Option<Arc<cors::Origins>>,
}

impl AppState {
    pub(crate) fn new(hub: Hub, config: HttpConfig) -> Self {
        Self {
            hub,
            cors: cors::Origins::of(&config.cors_origins).map(Arc::new),
            config: Arc::new(config),
            meters: Arc::default(),
        }
    }
}

/// The `404` of a path no route takes, named as the client sent it (under
/// `Router::nest` too).
async fn not_found(OriginalUri(uri): OriginalUri) -> impl IntoResponse {
    // `CONNECT host:port` and `OPTIONS *` have no path: name the target.
    ApiError::NotFound(match uri.path() {
        "" | "/" if uri.path_and_query().is_none() => uri.to_string(),
        path => path.to_owned(),
    })
}

async fn method_not_allowed(method: Method) -> impl IntoResponse {
    ApiError::MethodNotAllowed(method.to_string())
}

/// The whole API over `hub`. Mount it anywhere (`Router::nest`), or serve it
/// with `axum::serve`. Call [`Hub::shutdown`] when shutting down, so open
/// streams end and a graceful shutdown can finish.
pub fn router(hub: Hub, config: HttpConfig) -> Router {
    routes_over(AppState::new(hub, config))
}

/// The whole API over `state`.
pub(crate) fn routes_over(state: AppState) -> Router {
    let cors = state.cors.as_deref().map(cors::Origins::layer);
    let router = Router::new()
        .route(
            "/v1/events",
            post(routes::publish::publish).get(routes::subscribe::sse),
        )
        .route("/v1/ws", get(routes::subscribe::ws))
        .route("/v1/events/history", get(routes::history::history))
        .route("/v1/admin/reset", post(routes::admin::reset))
        .route("/v1/stats", get(routes::admin::stats))
        .route("/metrics", get(routes::admin::metrics))
        .route("/healthz", get(routes::admin::healthz))
        .route("/readyz", get(routes::admin::readyz))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        // The publish handler reads its body with its own limit and error.
        .layer(DefaultBodyLimit::disable())
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            hosts::refuse_other_hosts,
        ))
        // Every refusal, wherever in the router it was answered.
        .layer(axum::middleware::map_response_with_state(
            Arc::clone(&state.meters),
            meters::count_refusals,
        ))
        .with_state(state);
    match cors {
        Some(cors) => router.layer(cors),
        None => router,
    }
}

/// The README's examples, compiled as doctests so they stay true.
#[doc = include_str!("../../../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
