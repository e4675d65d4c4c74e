//! Which browser origins may call the API (CORS), decided once from
//! [`crate::HttpConfig::cors_origins`].
//!
//! The router wears tower-http's CORS layer, built here. `serve_api`
//! answers publishes without the router, so it adds the same headers
//! itself ([`Origins::add_to`]); tests/server.rs checks that the two agree
//! byte for byte.
//!
//! CORS keeps a page from reading what it may not, not from sending it.
//! Browsers apply none to WebSockets: a page of any origin may open one,
//! and its script reads what comes. And a page may send a cross-origin
//! `POST` with a text body without asking first: CORS hides the answer,
//! but the publish or reset is done. So the WebSocket, publish and reset
//! routes check the `Origin` themselves ([`check_page_origin`]), by the
//! same list: a page that could not read an SSE stream can neither open a
//! WebSocket nor publish nor reset.

use std::time::Duration;

use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, header};
use axum::response::Response;
use tower_http::cors::{AllowOrigin, CorsLayer};

use crate::error::{ApiError, PageRequest};
use crate::routes::publish::{IDEMPOTENCY_KEY, IDEMPOTENT_REPLAYED, header_text};

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
    /// headers the API reads, `Idempotent-Replayed` readable by the page,
    /// preflights cached for an hour.
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
                IDEMPOTENCY_KEY,
            ])
            .expose_headers([IDEMPOTENT_REPLAYED])
            .max_age(Duration::from_secs(3600))
    }

    /// Adds to `response` what [`Self::layer`] adds to the response of a
    /// request that is not a preflight and came with this `Origin` (the
    /// first one): `Vary` and `Access-Control-Expose-Headers` always,
    /// `Access-Control-Allow-Origin` when the origin is allowed.
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
        headers.insert(
            header::ACCESS_CONTROL_EXPOSE_HEADERS,
            HeaderValue::from(IDEMPOTENT_REPLAYED),
        );
    }

    /// Whether a page of `origin` is allowed.
    fn allows(&self, origin: &[u8]) -> bool {
        match self {
            Self::Any => true,
            Self::List(origins) => origins.iter().any(|allowed| allowed.as_bytes() == origin),
        }
    }
}

/// The request headers that tell whose page sent a request: its `Origin`,
/// and the host it was sent to. Each is the first such header, as sent.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct PageHeaders<'a> {
    /// `Origin`: absent when the client is not a browser page.
    pub(crate) origin: Option<&'a [u8]>,
    /// `Host`.
    pub(crate) host: Option<&'a [u8]>,
    /// `X-Forwarded-Host`, set by a proxy in front.
    pub(crate) forwarded_host: Option<&'a [u8]>,
}

impl<'a> PageHeaders<'a> {
    /// The page headers among `headers`.
    pub(crate) fn of(headers: &'a HeaderMap) -> Self {
        let get = |name| headers.get(name).map(HeaderValue::as_bytes);
        Self {
            origin: get(header::ORIGIN),
            host: get(header::HOST),
            forwarded_host: get(FORWARDED_HOST),
        }
    }

    /// Whether the page's origin (`scheme://host[:port]`) names the host
    /// the request was sent to: `X-Forwarded-Host`'s first host when a
    /// proxy set it, else `Host`.
    fn is_own(&self, origin: &str) -> bool {
        let Some((_scheme, authority)) = origin.split_once("://") else {
            // `null`, an opaque origin, is no host's.
            return false;
        };
        let forwarded = self
            .forwarded_host
            .and_then(header_text)
            // A chain of proxies appends; the first is the client's.
            .and_then(|hosts| hosts.split(',').next());
        forwarded
            .or_else(|| self.host.and_then(header_text))
            .is_some_and(|host| host.trim().eq_ignore_ascii_case(authority))
    }
}

/// The header a proxy names the host the client asked for in.
const FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

/// Refuses `request` from a browser page whose origin is neither the
/// server's own nor allowed by `cors`, before anything is done.
///
/// A request without `Origin` is not from a browser page and passes. The
/// server's own origin is the one whose host and port are the request's
/// `X-Forwarded-Host` (set by a proxy in front) or else its `Host`: a
/// page served beside the API needs no configuration, as with SSE.
///
/// CORS alone does not keep other pages out of these: browsers apply none
/// to a WebSocket, and send a cross-origin `POST` whose body is text
/// without asking first (a "simple" request); CORS only hides the answer,
/// after the event was stored or the hub reset.
pub(crate) fn check_page_origin(
    cors: Option<&Origins>,
    page: PageHeaders<'_>,
    request: PageRequest,
) -> Result<(), ApiError> {
    let Some(origin) = page.origin else {
        return Ok(());
    };
    let allowed = cors.is_some_and(|cors| cors.allows(origin));
    if allowed || header_text(origin).is_some_and(|origin| page.is_own(origin)) {
        return Ok(());
    }
    Err(ApiError::OriginNotAllowed {
        origin: String::from_utf8_lossy(origin).into_owned(),
        request,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for (name, value) in pairs {
            headers.append(*name, HeaderValue::from_str(value).expect("header value"));
        }
        headers
    }

    fn refused(cors: &[&str], pairs: &[(&'static str, &str)]) -> Option<String> {
        refused_as(PageRequest::WebSocket, cors, pairs)
    }

    fn refused_as(
        request: PageRequest,
        cors: &[&str],
        pairs: &[(&'static str, &str)],
    ) -> Option<String> {
        let configured: Vec<String> = cors.iter().map(|&o| o.to_owned()).collect();
        let cors = Origins::of(&configured);
        let headers = headers(pairs);
        check_page_origin(cors.as_ref(), PageHeaders::of(&headers), request)
            .err()
            .map(|err| err.to_string())
    }

    #[test]
    fn a_publish_or_reset_is_refused_saying_which() {
        let evil = [("host", "hub:8080"), ("origin", "https://evil.example")];
        assert_eq!(
            refused_as(PageRequest::Publish, &["https://app.example"], &evil).as_deref(),
            Some(
                "a publish from the page origin \"https://evil.example\" is not allowed: \
                 serve --cors-origin (HttpConfig::cors_origins) lists the origins that may publish"
            )
        );
        assert_eq!(
            refused_as(PageRequest::Reset, &[], &evil).as_deref(),
            Some(
                "a reset from the page origin \"https://evil.example\" is not allowed: \
                 serve --cors-origin (HttpConfig::cors_origins) lists the origins that may reset"
            )
        );
        let own = [("host", "hub:8080"), ("origin", "http://hub:8080")];
        for request in [PageRequest::Publish, PageRequest::Reset] {
            assert_eq!(refused_as(request, &[], &own), None);
            assert_eq!(refused_as(request, &["*"], &evil), None);
            assert_eq!(refused_as(request, &[], &[("host", "hub:8080")]), None);
        }
    }

    #[test]
    fn an_origin_that_is_not_text_is_no_hosts() {
        let mut headers = headers(&[("host", "hub")]);
        headers.insert(
            header::ORIGIN,
            HeaderValue::from_bytes(b"http://h\xc3\xbcb").expect("header value"),
        );
        let err = check_page_origin(None, PageHeaders::of(&headers), PageRequest::Publish)
            .expect_err("refused");
        assert_eq!(
            err.to_string(),
            "a publish from the page origin \"http://h\u{fc}b\" is not allowed: \
             serve --cors-origin (HttpConfig::cors_origins) lists the origins that may publish"
        );
    }

    #[test]
    fn a_socket_from_the_servers_own_origin_or_no_page_passes() {
        assert_eq!(refused(&[], &[("host", "hub:8080")]), None);
        assert_eq!(
            refused(&[], &[("host", "Hub:8080"), ("origin", "http://hub:8080")]),
            None
        );
        assert_eq!(
            refused(&[], &[("host", "hub"), ("origin", "https://hub")]),
            None
        );
        // Behind a proxy that names the host the browser asked for.
        assert_eq!(
            refused(
                &[],
                &[
                    ("host", "127.0.0.1:8080"),
                    ("x-forwarded-host", "app.example, proxy.internal"),
                    ("origin", "https://app.example"),
                ]
            ),
            None
        );
    }

    #[test]
    fn a_socket_from_an_allowed_origin_passes() {
        let page = [("host", "hub:8080"), ("origin", "https://app.example")];
        assert_eq!(refused(&["https://app.example"], &page), None);
        assert_eq!(refused(&["*"], &page), None);
        assert_eq!(
            refused(&["*"], &[("host", "hub"), ("origin", "null")]),
            None
        );
    }

    #[test]
    fn a_socket_from_another_origin_is_refused_naming_it() {
        for (cors, pairs) in [
            (
                &[][..],
                &[("host", "hub:8080"), ("origin", "https://evil.example")][..],
            ),
            (
                &["https://app.example"],
                &[("host", "hub:8080"), ("origin", "https://evil.example")],
            ),
            // Another port is another origin.
            (&[], &[("host", "hub:8080"), ("origin", "http://hub:8081")]),
            // With no `Host`, no origin is the server's own.
            (&[], &[("origin", "http://hub:8080")]),
            // An opaque origin, unless listed or `*`.
            (
                &["https://app.example"],
                &[("host", "hub"), ("origin", "null")],
            ),
            // The proxy's host, when it names another.
            (
                &[],
                &[
                    ("host", "evil.example"),
                    ("x-forwarded-host", "hub"),
                    ("origin", "https://evil.example"),
                ],
            ),
        ] {
            let (_, origin) = pairs
                .iter()
                .find(|(name, _)| *name == "origin")
                .expect("an origin");
            let message = format!(
                "a WebSocket from the page origin \"{origin}\" is not allowed: \
                 serve --cors-origin (HttpConfig::cors_origins) lists the origins that may subscribe"
            );
            assert_eq!(refused(cors, pairs), Some(message), "{pairs:?}");
        }
    }
}
