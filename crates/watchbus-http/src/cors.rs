//! Which browser origins may call the API (CORS), decided once from
//! [`crate::HttpConfig::cors_origins`].
//!
//! The router wears tower-http's CORS layer, built here. `serve_api`
//! answers publishes without the router, so it adds the same headers
//! itself ([`Origins::add_to`]); tests/server.rs checks that the two agree
//! byte for byte.

use std::time::Duration;

use axum::http::{HeaderName, HeaderValue, Method, header};
use axum::response::Response;
use tower_http::cors::{AllowOrigin, CorsLayer};

/// The origins a browser may call the API from.
#[derive(Debug, Clone)]
pub(crate) enum Origins {
    /// `*` was configured.
    Any,
    /// These, compared byte for byte with the request's `Origin`.
    List(Vec<HeaderValue>),
}

/// What the layer's `Vary` says: a response depends on these request
/// headers (tower-http's default).
const VARY: &str = "origin, access-control-request-method, access-control-request-headers";

impl Origins {
    /// The allowed origins, or `None` when none is configured (CORS off).
    /// A configured origin that is not a valid header value can never
    /// match, and is left out.
    pub(crate) fn of(configured: &[String]) -> Option<Self> {
        if configured.is_empty() {
            return None;
        }
        Some(if configured.iter().any(|o| o == "*") {
            Self::Any
        } else {
            Self::List(
                configured
                    .iter()
                    .filter_map(|o| HeaderValue::from_str(o).ok())
                    .collect(),
            )
        })
    }

    /// The router's CORS layer: these origins, `GET` and `POST`, the
    /// headers the API reads, preflights cached for an hour.
    pub(crate) fn layer(&self) -> CorsLayer {
        let allow = match self {
            Self::Any => AllowOrigin::any(),
            Self::List(origins) => AllowOrigin::list(origins.iter().cloned()),
        };
        CorsLayer::new()
            .allow_origin(allow)
            .allow_methods([Method::GET, Method::POST])
            .allow_headers([
                header::AUTHORIZATION,
                header::CONTENT_TYPE,
                HeaderName::from_static("last-event-id"),
            ])
            .max_age(Duration::from_secs(3600))
    }

    /// Adds to `response` what [`Self::layer`] adds to the response of a
    /// request that is not a preflight and came with this `Origin` (the
    /// first one): `Vary` always, `Access-Control-Allow-Origin` when the
    /// origin is allowed.
    pub(crate) fn add_to(&self, response: &mut Response, origin: Option<&[u8]>) {
        let headers = response.headers_mut();
        headers.append(header::VARY, HeaderValue::from_static(VARY));
        let allowed = match self {
            Self::Any => Some(HeaderValue::from_static("*")),
            Self::List(origins) => origin.and_then(|origin| {
                origins
                    .iter()
                    .find(|allowed| allowed.as_bytes() == origin)
                    .cloned()
            }),
        };
        if let Some(allowed) = allowed {
            headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, allowed);
        }
    }
}
