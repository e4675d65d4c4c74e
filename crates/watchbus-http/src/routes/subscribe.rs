//! `GET /v1/events` (SSE) and `GET /v1/ws` (WebSocket): parse, authorize,
//! subscribe (which resolves the resume point, so `400`/`410` come before
//! the stream starts), then hand the subscription to its transport.

use std::sync::Arc;

use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::{Request, State, WebSocketUpgrade};
use axum::http::request::Parts;
use axum::response::Response;
use watchbus::{SubscribeRequest, Subscription};

use crate::AppState;
use crate::auth::{Access, Role};
use crate::cors::{self, PageHeaders};
use crate::error::{ApiError, PageRequest};
use crate::params::{Bookmarks, Format, OnExpiry, SubscribeParams};
use crate::query::Query;
use crate::transport::{sse, ws};

/// A subscription the request may open, and how to deliver it: parsed and
/// authorized, not yet subscribed.
struct Prepared {
    request: SubscribeRequest,
    format: Format,
    on_expiry: OnExpiry,
    bookmarks: Bookmarks,
    /// A scoped token's stream ends when the token does.
    access: Access,
}

fn prepare(state: &AppState, parts: &Parts) -> Result<Prepared, ApiError> {
    let query = Query::parse(parts.uri.query())?;
    let access = state
        .config
        .tokens
        .authorize(Role::Subscribe, &parts.headers, &query)?;
    let params = SubscribeParams::parse(&query, &parts.headers, state.config.max_filters)?;
    access.check_filter(&params.filter)?;
    Ok(Prepared {
        request: SubscribeRequest {
            filter: params.filter,
            from: params.from,
            on_gone: params.on_gone,
        },
        format: params.format,
        on_expiry: params.on_expiry,
        bookmarks: params.bookmarks,
        access,
    })
}

/// Subscribes, which resolves the resume point: `410` comes from here.
async fn subscribe(state: &AppState, request: SubscribeRequest) -> Result<Subscription, ApiError> {
    Ok(state.hub.subscribe(request).await?)
}

/// Handles `GET /v1/events`.
pub(crate) async fn sse(
    State(state): State<AppState>,
    request: Request,
) -> Result<Response, ApiError> {
    let (parts, _body) = request.into_parts();
    let prepared = prepare(&state, &parts)?;
    let subscription = subscribe(&state, prepared.request).await?;
    Ok(sse::response(
        subscription,
        prepared.format,
        prepared.bookmarks,
        state.config.keep_alive,
        sse::Expires {
            at: prepared.access.expires(),
            notice: prepared.on_expiry,
        },
        state.meters.sse.open(),
    ))
}

/// Handles `GET /v1/ws`.
pub(crate) async fn ws(
    State(state): State<AppState>,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
    request: Request,
) -> Result<Response, ApiError> {
    let (parts, _body) = request.into_parts();
    let page = PageHeaders::of(&parts.headers);
    cors::check_page_origin(state.cors.as_deref(), page, PageRequest::WebSocket)?;
    // Statuses come before the upgrade, as for SSE.
    // A WebSocket's close code 4401 already tells an expiry, and its
    // bookmarks are frames a page sees: `on_expiry` and `bookmarks` change
    // nothing there.
    let Prepared {
        request,
        format,
        access,
        ..
    } = prepare(&state, &parts)?;
    // A request that cannot become a WebSocket never subscribes.
    let upgrade = match upgrade {
        Ok(upgrade) if websocket_key_is_valid(&parts.headers) => upgrade,
        Ok(_) | Err(WebSocketUpgradeRejection::WebSocketKeyHeaderMissing(_)) => {
            return Err(ApiError::MalformedRequest(
                "a WebSocket upgrade's Sec-WebSocket-Key must be the base64 of 16 bytes \
                 (RFC 6455 §4.1)"
                    .into(),
            ));
        }
        Err(_) => return Err(ApiError::UpgradeRequired),
    };
    let subscription = subscribe(&state, request).await?;
    let (keep_alive, write_timeout) = (state.config.keep_alive, state.config.write_timeout);
    let streams = Arc::clone(&state.meters.ws);
    Ok(ws::for_subscriber(upgrade).on_upgrade(move |socket| {
        ws::serve(
            socket,
            subscription,
            format,
            keep_alive,
            write_timeout,
            access.expires(),
            streams.open(),
        )
    }))
}

/// Whether the upgrade's `Sec-WebSocket-Key` is the base64 of 16 bytes, as
/// RFC 6455 §4.1 asks (§4.2.1: a server refuses another `400`).
fn websocket_key_is_valid(headers: &axum::http::HeaderMap) -> bool {
    use base64::Engine as _;
    headers
        .get(axum::http::header::SEC_WEBSOCKET_KEY)
        .and_then(|key| base64::engine::general_purpose::STANDARD.decode(key).ok())
        .is_some_and(|nonce| nonce.len() == 16)
}
