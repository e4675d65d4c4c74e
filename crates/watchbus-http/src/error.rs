//! Every error the API answers, mapped to its status and stable code in one
//! place.
//!
//! The body is always `{"error": {"code": "<snake_case>", "message": "..."}}`
//! with `Content-Type: application/json`. Codes are part of the contract:
//! they are never renamed or reused.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use thiserror::Error;
use watchbus::{EventId, Gone, HubError};
use watchbus_core::{FilterError, InvalidName, InvalidTimestamp, MalformedId};

use crate::meters::Refusal;

/// Why a request was refused.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum ApiError {
    /// The body is not the JSON the endpoint takes.
    #[error("the body is not valid JSON: {0}")]
    InvalidJson(String),
    /// An item of an array body is valid JSON but not an event object.
    #[error("not an event: {0}")]
    NotAnEvent(String),
    /// The body, or a query value, is not UTF-8.
    #[error("{0} is not valid UTF-8")]
    NotUtf8(&'static str),
    /// A key, prefix or type breaks its rules.
    #[error("{0}")]
    InvalidName(#[from] InvalidName),
    /// An event names neither a key nor a prefix.
    #[error("an event needs a \"key\" or a \"prefix\"")]
    MissingTarget,
    /// An event names both a key and a prefix.
    #[error("an event has either a \"key\" or a \"prefix\", not both")]
    BothTargets,
    /// One event of an array is refused; the array is refused whole.
    #[error("event {at} of the array: {error}")]
    InBatch {
        /// The event's index in the array, from 0.
        at: usize,
        /// Why it is refused.
        error: Box<ApiError>,
    },
    /// An event's data fails the JSON Schema registered for its type.
    #[error("the data does not match the JSON Schema of event type {event_type:?}: {violation}")]
    SchemaMismatch {
        /// The event's type.
        event_type: String,
        /// Where the data fails it and how, without the data's values.
        violation: String,
    },
    /// An `Idempotency-Key` header that is not a key.
    #[error(
        "invalid Idempotency-Key {0:?}: an idempotency key is 1 to 255 visible ASCII characters (no spaces), such as a UUID"
    )]
    InvalidIdempotencyKey(String),
    /// An idempotency key already used for a different request within its
    /// window; nothing was stored.
    #[error("{0}")]
    IdempotencyKeyReused(String),
    /// An empty array of events.
    #[error("the array of events is empty")]
    EmptyBatch,
    /// More events in one array than allowed.
    #[error("an array holds at most {max} events, this one holds {given}")]
    BatchTooLarge {
        /// How many were sent.
        given: usize,
        /// The limit.
        max: usize,
    },
    /// A body over the configured limit.
    #[error("the body is larger than the limit of {max} bytes")]
    BodyTooLarge {
        /// The limit in bytes.
        max: usize,
    },
    /// The JSON form of publish needs `application/json`. Holds what came
    /// instead, as the message tells it: the media type quoted, `no
    /// Content-Type`, or one that cannot be read.
    #[error(
        "publish takes Content-Type application/json (or ?key= with any body); the request sent {0}"
    )]
    UnsupportedMediaType(String),
    /// The query string cannot be decoded.
    #[error("the query string is malformed: {0}")]
    InvalidQuery(String),
    /// A query parameter has a value the endpoint does not take.
    #[error("invalid {name} {value:?}: expected {expected}")]
    InvalidParameter {
        /// The parameter.
        name: &'static str,
        /// What was sent.
        value: String,
        /// What is taken, as a phrase.
        expected: &'static str,
    },
    /// An event id that is not of the server's form.
    #[error("{0}")]
    MalformedId(#[from] MalformedId),
    /// An event id of the server's form that it never issued.
    #[error("event id {0} was never issued by this server")]
    UnknownId(EventId),
    /// A `from_timestamp` that is not RFC 3339.
    #[error("{0}")]
    InvalidTimestamp(#[from] InvalidTimestamp),
    /// Too many keys, prefixes or types.
    #[error("{0}")]
    TooManyFilters(#[from] FilterError),
    /// No token, or a token of no role.
    #[error("a valid bearer token is required (Authorization: Bearer <token>, or ?access_token=)")]
    Unauthorized,
    /// A valid token of another role.
    #[error("this token does not grant the {0} role")]
    Forbidden(&'static str),
    /// A WebSocket, publish or reset from a browser page whose origin is
    /// neither the server's own nor allowed by CORS. Nothing was done.
    #[error(
        "a {request} from the page origin {origin:?} is not allowed: serve --cors-origin (HttpConfig::cors_origins) lists the origins that may {}",
        request.verb()
    )]
    OriginNotAllowed {
        /// The page's `Origin`, as sent.
        origin: String,
        /// What the page asked for.
        request: PageRequest,
    },
    /// A request whose `Host` names none of the hosts the server answers
    /// to ([`crate::AllowedHosts`]). Nothing was done.
    #[error(
        "this server does not answer to the host {0:?} (a page of a name made to resolve to it?): serve --allowed-host (HttpConfig::allowed_hosts) lists the names it may be reached by"
    )]
    HostNotAllowed(String),
    /// A scoped token that does not cover a key or prefix asked for.
    #[error("this token does not grant {role} on {what}")]
    NotGranted {
        /// The role asked for.
        role: &'static str,
        /// What it does not cover: `key "k"`, `prefix "p"` or `every key`.
        what: String,
    },
    /// A scoped token whose signature verified, refused for the reason
    /// given.
    #[error("the bearer token is refused: {0}")]
    TokenRefused(String),
    /// The events after the resume point are no longer retained.
    #[error("{0}")]
    Gone(Gone),
    /// No such endpoint.
    #[error("there is no endpoint at {0}")]
    NotFound(String),
    /// The endpoint does not take this method.
    #[error("{0} is not allowed here")]
    MethodNotAllowed(String),
    /// A WebSocket endpoint reached without an upgrade.
    #[error("this endpoint takes a WebSocket upgrade request")]
    UpgradeRequired,
    /// The store did not answer. Retrying is safe: nothing acknowledged is
    /// lost (a store that timed out after storing may store a retry twice).
    #[error("the store is unavailable; the request was not acknowledged, retry later")]
    StoreUnavailable,
    /// The server is shutting down.
    #[error("the server is shutting down")]
    ShuttingDown,
    /// The server holds its most subscribers; retrying later is safe.
    #[error("{0}")]
    TooManySubscribers(String),
    /// A request that is not valid HTTP/1.1: its head, framing or body.
    #[error("the request is not valid HTTP/1.1: {0}")]
    MalformedRequest(String),
    /// A request (head and body) that was begun but not finished in time.
    #[error("the request did not arrive whole within {} s", .after.as_secs())]
    RequestTimeout {
        /// The time a request may take.
        after: std::time::Duration,
    },
    /// A request head over the limit, in bytes or in header count.
    #[error("the request head is over the limit of {max_bytes} bytes or {max_headers} headers")]
    HeadTooLarge {
        /// The most bytes in a head.
        max_bytes: usize,
        /// The most headers in a head.
        max_headers: usize,
    },
}

/// What a browser page asked for, in an [`ApiError::OriginNotAllowed`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum PageRequest {
    /// A WebSocket handshake.
    WebSocket,
    /// A publish.
    Publish,
    /// An admin reset.
    Reset,
}

impl PageRequest {
    /// What `--cors-origin` lets a page do, for the refusal's message.
    fn verb(self) -> &'static str {
        match self {
            Self::WebSocket => "subscribe",
            Self::Publish => "publish",
            Self::Reset => "reset",
        }
    }
}

impl std::fmt::Display for PageRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::WebSocket => "WebSocket",
            Self::Publish => "publish",
            Self::Reset => "reset",
        })
    }
}

impl ApiError {
    /// The HTTP status and the stable error code.
    pub fn status_and_code(&self) -> (StatusCode, &'static str) {
        match self {
            Self::InvalidJson(_) | Self::NotAnEvent(_) => (StatusCode::BAD_REQUEST, "invalid_json"),
            Self::NotUtf8(_) => (StatusCode::BAD_REQUEST, "invalid_utf8"),
            Self::InvalidName(name) => match name.what {
                "prefix" => (StatusCode::BAD_REQUEST, "invalid_prefix"),
                "type" => (StatusCode::BAD_REQUEST, "invalid_type"),
                _ => (StatusCode::BAD_REQUEST, "invalid_key"),
            },
            Self::MissingTarget => (StatusCode::BAD_REQUEST, "missing_key"),
            Self::BothTargets => (StatusCode::BAD_REQUEST, "key_and_prefix"),
            Self::InBatch { error, .. } => error.status_and_code(),
            Self::SchemaMismatch { .. } => (StatusCode::UNPROCESSABLE_ENTITY, "schema_mismatch"),
            Self::EmptyBatch => (StatusCode::BAD_REQUEST, "empty_batch"),
            Self::InvalidIdempotencyKey(_) => (StatusCode::BAD_REQUEST, "invalid_idempotency_key"),
            Self::IdempotencyKeyReused(_) => {
                (StatusCode::UNPROCESSABLE_ENTITY, "idempotency_key_reused")
            }
            Self::BatchTooLarge { .. } => (StatusCode::PAYLOAD_TOO_LARGE, "batch_too_large"),
            Self::BodyTooLarge { .. } => (StatusCode::PAYLOAD_TOO_LARGE, "body_too_large"),
            Self::UnsupportedMediaType(_) => {
                (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type")
            }
            Self::InvalidQuery(_) => (StatusCode::BAD_REQUEST, "invalid_query"),
            Self::InvalidParameter { .. } => (StatusCode::BAD_REQUEST, "invalid_parameter"),
            Self::MalformedId(_) | Self::UnknownId(_) => (StatusCode::BAD_REQUEST, "invalid_id"),
            Self::InvalidTimestamp(_) => (StatusCode::BAD_REQUEST, "invalid_timestamp"),
            Self::TooManyFilters(_) => (StatusCode::BAD_REQUEST, "too_many_filters"),
            Self::Unauthorized | Self::TokenRefused(_) => {
                (StatusCode::UNAUTHORIZED, "unauthorized")
            }
            Self::Forbidden(_)
            | Self::NotGranted { .. }
            | Self::OriginNotAllowed { .. }
            | Self::HostNotAllowed(_) => (StatusCode::FORBIDDEN, "forbidden"),
            Self::Gone(_) => (StatusCode::GONE, "gone"),
            Self::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            Self::MethodNotAllowed(_) => (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed"),
            Self::UpgradeRequired => (StatusCode::UPGRADE_REQUIRED, "upgrade_required"),
            Self::StoreUnavailable => (StatusCode::SERVICE_UNAVAILABLE, "store_unavailable"),
            Self::ShuttingDown => (StatusCode::SERVICE_UNAVAILABLE, "shutting_down"),
            Self::TooManySubscribers(_) => {
                (StatusCode::SERVICE_UNAVAILABLE, "too_many_subscribers")
            }
            Self::MalformedRequest(_) => (StatusCode::BAD_REQUEST, "malformed_request"),
            Self::RequestTimeout { .. } => (StatusCode::REQUEST_TIMEOUT, "request_timeout"),
            Self::HeadTooLarge { .. } => (
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                "head_too_large",
            ),
        }
    }
}

impl From<HubError> for ApiError {
    fn from(err: HubError) -> Self {
        match err {
            HubError::Gone(gone) => Self::Gone(gone),
            HubError::UnknownId(id) => Self::UnknownId(id),
            HubError::Unavailable(source) => {
                if let Some(since_last) = STORE_WARNINGS.admit() {
                    tracing::warn!(error = %source, since_last, "store unavailable");
                }
                Self::StoreUnavailable
            }
            HubError::ShuttingDown => Self::ShuttingDown,
            reused @ HubError::KeyReused(_) => Self::IdempotencyKeyReused(reused.to_string()),
            full @ HubError::TooManySubscribers { .. } => {
                Self::TooManySubscribers(full.to_string())
            }
            // `HubError` is non-exhaustive; a variant added later is a server
            // fault until it is mapped here.
            other => {
                tracing::error!(error = %other, "unmapped hub error");
                Self::StoreUnavailable
            }
        }
    }
}

/// The JSON error body for `code` and `message`.
pub(crate) fn error_body(code: &str, message: &str) -> String {
    serde_json::json!({"error": {"code": code, "message": message}}).to_string()
}

/// The warnings about an unavailable store: a Redis that is down or full
/// refuses every request, and a line per request would bury the log. The
/// metrics count every refusal (`watchbus_requests_refused_total`).
static STORE_WARNINGS: Throttle = Throttle::new(10_000);

/// At most one log line per period; the next one says how many were held
/// back (`since_last`).
struct Throttle {
    period_ms: u64,
    /// When the next line may be written, in milliseconds since the first
    /// call in this process.
    next_ms: AtomicU64,
    held_back: AtomicU64,
}

impl Throttle {
    const fn new(period_ms: u64) -> Self {
        Self {
            period_ms,
            next_ms: AtomicU64::new(0),
            held_back: AtomicU64::new(0),
        }
    }

    /// `Some(n)` when a line is to be written now, `n` lines having been
    /// held back since the last; `None` when this one is held back.
    fn admit(&self) -> Option<u64> {
        static START: OnceLock<Instant> = OnceLock::new();
        let now = START.get_or_init(Instant::now).elapsed().as_millis();
        self.admit_at(u64::try_from(now).unwrap_or(u64::MAX))
    }

    fn admit_at(&self, now_ms: u64) -> Option<u64> {
        let next = self.next_ms.load(Ordering::Relaxed);
        let due = now_ms >= next
            && self
                .next_ms
                .compare_exchange(
                    next,
                    now_ms.saturating_add(self.period_ms),
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                )
                .is_ok();
        if due {
            Some(self.held_back.swap(0, Ordering::Relaxed))
        } else {
            self.held_back.fetch_add(1, Ordering::Relaxed);
            None
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = self.status_and_code();
        let mut response = (
            status,
            [(header::CONTENT_TYPE, "application/json")],
            error_body(code, &self.to_string()),
        )
            .into_response();
        response.extensions_mut().insert(Refusal(code));
        if status == StatusCode::SERVICE_UNAVAILABLE {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        // RFC 9110 asks every 401 to name its scheme; RFC 6750 adds the
        // error code for a token that was sent but refused.
        let challenge = match self {
            Self::Unauthorized => Some(r#"Bearer realm="watchbus""#),
            Self::TokenRefused(_) => Some(r#"Bearer realm="watchbus", error="invalid_token""#),
            _ => None,
        };
        if let Some(challenge) = challenge {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static(challenge),
            );
        }
        // A client refused for the server's own limits lets go of its
        // connection: near the file-descriptor limit, a refused client that
        // kept its connection open would hold a descriptor a later one
        // needs, even to be refused.
        if matches!(self, Self::TooManySubscribers(_) | Self::ShuttingDown) {
            response
                .headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        // RFC 9110 §15.5.22: a 426 names the protocol to upgrade to; RFC
        // 6455 §4.4: and the version this server speaks, for a client that
        // asked another.
        if matches!(self, Self::UpgradeRequired) {
            let headers = response.headers_mut();
            headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
            headers.insert(
                header::SEC_WEBSOCKET_VERSION,
                HeaderValue::from_static("13"),
            );
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A refusal for the server's own limits ends the connection; others
    /// keep it.
    #[test]
    fn refusals_for_the_servers_limits_close_the_connection() {
        let connection = |error: ApiError| {
            error
                .into_response()
                .headers()
                .get(header::CONNECTION)
                .cloned()
        };
        let close = Some(HeaderValue::from_static("close"));
        assert_eq!(connection(ApiError::ShuttingDown), close);
        assert_eq!(
            connection(ApiError::TooManySubscribers("full".into())),
            close
        );
        assert_eq!(connection(ApiError::StoreUnavailable), None);
        assert_eq!(connection(ApiError::Unauthorized), None);
    }

    #[test]
    fn a_throttle_writes_one_line_per_period_and_counts_the_rest() {
        let throttle = Throttle::new(10_000);
        assert_eq!(throttle.admit_at(5), Some(0));
        assert_eq!(throttle.admit_at(6), None);
        assert_eq!(throttle.admit_at(10_004), None);
        assert_eq!(throttle.admit_at(10_005), Some(2));
        assert_eq!(throttle.admit_at(10_006), None);
        // A quiet spell: the next line comes at once.
        assert_eq!(throttle.admit_at(60_000), Some(1));
        assert_eq!(throttle.admit_at(60_001), None);
    }
}
