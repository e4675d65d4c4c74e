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

/// A subscription the request may open, and how to deliver it.
struct Opened {
    subscription: Subscription,
    format: Format,
    on_expiry: OnExpiry,
    bookmarks: Bookmarks,
    /// A scoped token's stream ends when the token does.
    access: Access,
}

async fn open(state: &AppState, parts: &Parts) -> Result<Opened, ApiError> {
    let query = Query::parse(parts.uri.query())?;
    let access = state
        .config
        .tokens
        .authorize(Role::Subscribe, &parts.headers, &query)?;
    let params = SubscribeParams::parse(&query, &parts.headers, state.config.max_filters)?;
    access.check_filter(&params.filter)?;
    let request = SubscribeRequest {
        filter: params.filter,
        from: params.from,
        on_gone: params.on_gone,
    };
    Ok(Opened {
        subscription: state.hub.subscribe(request).await?,
        format: params.format,
        on_expiry: params.on_expiry,
        bookmarks: params.bookmarks,
        access,
    })
}

/// Handles `GET /v1/events`.
pub(crate) async fn sse(
    State(state): State<AppState>,
    request: Request,
) -> Result<Response, ApiError> {
    let (parts, _body) = request.into_parts();
    let opened = open(&state, &parts).await?;
    Ok(sse::response(
        opened.subscription,
        opened.format,
        opened.bookmarks,
        state.config.keep_alive,
        sse::Expires {
            at: opened.access.expires(),
            notice: opened.on_expiry,
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
    let Opened {
        subscription,
        format,
        access,
        ..
    } = open(&state, &parts).await?;
    let upgrade = upgrade.map_err(|_| ApiError::UpgradeRequired)?;
    let keep_alive = state.config.keep_alive;
    let streams = Arc::clone(&state.meters.ws);
    Ok(ws::for_subscriber(upgrade).on_upgrade(move |socket| {
        ws::serve(
            socket,
            subscription,
            format,
            keep_alive,
            access.expires(),
            streams.open(),
        )
    }))
}
