//! Publishes answered without the router, for [`crate::serve_api`].
//!
//! A publish is the request a hub serves most, and the router's share of it
//! (the `http` request and response types, routing, boxed services) costs
//! more than the publish itself: docs/BENCHMARKS.md, scenario (f). So a
//! plain `POST /v1/events` is answered here, straight from the parsed head
//! and the bytes in the read buffer, through the same checks and store as
//! the router's handler ([`crate::routes::publish`]).
//!
//! The answer is the router's, byte for byte, CORS headers included
//! (tests/server.rs compares them). To keep it so, only the plainest
//! requests come here: a target of exactly `/v1/events` plus a query of the
//! characters RFC 3986 allows unescaped, a body framed by one
//! `Content-Length` within the lean path's limit, and no header that asks
//! for anything else. Anything unusual goes the ordinary way. An
//! `Idempotency-Key` is not unusual: a publisher that retries sends one
//! with every publish, so it is read here too.

use std::ops::Range;

use axum::http::Version;
use axum::response::{IntoResponse as _, Response};

use super::request::{Field, Len, MAX_HEAD, RequestFraming};
use super::respond::Answer;
use crate::cors::{PageHeaders, check_page_origin};
use crate::hosts::check_host;
use crate::meters::Meters;
use crate::routes::publish::{
    IDEMPOTENCY_KEY, Receipts, accept, header_text, receipts_response, store,
};
use crate::{ApiError, AppState, PageRequest};

/// The path of a publish.
const PATH: &[u8] = b"/v1/events";

/// A publish's head, as positions in the read buffer that holds it and its
/// body.
#[derive(Debug)]
pub(super) struct Publish {
    pub(super) len: Len,
    pub(super) version: Version,
    /// The client asked to close the connection after the response.
    pub(super) close: bool,
    query: Option<Range<usize>>,
    content_type: Option<Range<usize>>,
    authorization: Option<Range<usize>>,
    origin: Option<Range<usize>>,
    host: Option<Range<usize>>,
    forwarded_host: Option<Range<usize>>,
    idempotency_key: Option<Range<usize>>,
}

impl Publish {
    /// The publish that `head`, `head_len` bytes at the start of `bytes`,
    /// asks for; `None` if it is anything but a plain one (see the module
    /// docs), to be classified the ordinary way.
    pub(super) fn of(
        head: &httparse::Request<'_, '_>,
        head_len: usize,
        bytes: &[u8],
    ) -> Option<Self> {
        let version = match head.version? {
            1 => Version::HTTP_11,
            0 => Version::HTTP_10,
            _ => return None,
        };
        if head.method? != "POST" || head_len > MAX_HEAD {
            return None;
        }
        let target = head.path?.as_bytes();
        let query = match target.strip_prefix(PATH)? {
            [] => None,
            [b'?', query @ ..] if query.iter().all(|&b| is_plain(b)) => Some(query),
            _ => return None,
        };
        let at = |part: &[u8]| {
            let start = (part.as_ptr() as usize).checked_sub(bytes.as_ptr() as usize)?;
            Some(start..start + part.len())
        };
        let mut framing = RequestFraming::default();
        let (mut content_type, mut authorization, mut idempotency_key) = (None, None, None);
        let (mut origin, mut host, mut forwarded_host) = (None, None, None);
        for field in head.headers.iter() {
            let name = field.name.as_bytes();
            match framing.note(name, field.value) {
                Field::Framing => continue,
                Field::Other => {}
                // Refused or handed to hyper the ordinary way.
                Field::ForHyper | Field::Ambiguous | Field::UnreadableBody => return None,
            }
            if name.eq_ignore_ascii_case(b"content-type") {
                // As the router sees it: the first one counts.
                content_type = content_type.or_else(|| at(field.value));
            } else if name.eq_ignore_ascii_case(b"authorization") {
                authorization = authorization.or_else(|| at(field.value));
            } else if name.eq_ignore_ascii_case(b"origin") {
                origin = origin.or_else(|| at(field.value));
            } else if name.eq_ignore_ascii_case(b"host") {
                host = host.or_else(|| at(field.value));
            } else if name.eq_ignore_ascii_case(b"x-forwarded-host") {
                forwarded_host = forwarded_host.or_else(|| at(field.value));
            } else if name.eq_ignore_ascii_case(IDEMPOTENCY_KEY.as_str().as_bytes()) {
                idempotency_key = idempotency_key.or_else(|| at(field.value));
            }
        }
        // Refused by the ordinary path, in the envelope.
        if !framing.names_its_host(version) || !framing.names_one_credential() {
            return None;
        }
        Some(Self {
            len: Len {
                head: head_len,
                body: framing.body()?,
            },
            version,
            close: framing.closes(version),
            query: match query {
                Some(query) => Some(at(query)?),
                None => None,
            },
            content_type,
            authorization,
            origin,
            host,
            forwarded_host,
            idempotency_key,
        })
    }
}

/// A byte a query may hold unescaped (RFC 3986: unreserved, sub-delims,
/// `:`, `@`, `/`, `?`) or a `%` that starts an escape. Each of them is one
/// that `http`'s `Uri` takes as it is, so the router would see the same
/// query.
fn is_plain(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:@/?%".contains(&byte)
}

#[cfg(any(test, fuzzing))]
impl Publish {
    /// The query, `Content-Type`, `Authorization`, `Origin`, `Host`,
    /// `X-Forwarded-Host` and `Idempotency-Key` this publish found in
    /// `bytes`, in that order.
    pub(super) fn parts<'a>(&self, bytes: &'a [u8]) -> [Option<&'a [u8]>; 7] {
        [
            &self.query,
            &self.content_type,
            &self.authorization,
            &self.origin,
            &self.host,
            &self.forwarded_host,
            &self.idempotency_key,
        ]
        .map(|range| part(bytes, range))
    }
}

/// The bytes at `range` of the read buffer, if the part is there.
fn part<'a>(bytes: &'a [u8], range: &Option<Range<usize>>) -> Option<&'a [u8]> {
    range.as_ref().and_then(|range| bytes.get(range.clone()))
}

/// The API whose publishes a server answers without the router.
pub(super) struct Publishes {
    state: AppState,
}

impl Publishes {
    pub(super) fn new(state: AppState) -> Self {
        Self { state }
    }

    /// Stores what `publish`, whose bytes are at the front of `bytes`,
    /// asks for, and gives the answer the router would give.
    pub(super) async fn answer(&self, publish: &Publish, bytes: &[u8]) -> Answer {
        let stored = self.store(publish, bytes).await;
        let Some(cors) = self.state.cors.as_deref() else {
            return match stored {
                // A replay's extra header is rare enough to build a response.
                Ok(receipts) if receipts.replayed => Answer::Routed(receipts_response(receipts)),
                Ok(receipts) => Answer::Json(receipts.body),
                Err(error) => Answer::Routed(self.refusal(error)),
            };
        };
        let mut response = match stored {
            Ok(receipts) => receipts_response(receipts),
            Err(error) => self.refusal(error),
        };
        cors.add_to(&mut response, part(bytes, &publish.origin));
        Answer::Routed(response)
    }

    /// The counters of the API, which count what this server refuses
    /// without the router as the router's layer counts what it refuses.
    pub(super) fn meters(&self) -> &Meters {
        &self.state.meters
    }

    /// The answer to a refused publish, counted.
    fn refusal(&self, error: ApiError) -> Response {
        let response = error.into_response();
        self.meters().count(&response);
        response
    }

    /// What the router's handler does, from the request's parts.
    async fn store(&self, publish: &Publish, bytes: &[u8]) -> Result<Receipts, ApiError> {
        check_host(
            self.state.config.allowed_hosts.as_ref(),
            part(bytes, &publish.host),
        )?;
        let page = PageHeaders {
            origin: part(bytes, &publish.origin),
            host: part(bytes, &publish.host),
            forwarded_host: part(bytes, &publish.forwarded_host),
        };
        check_page_origin(self.state.cors.as_deref(), page, PageRequest::Publish)?;
        let query = part(bytes, &publish.query).and_then(|query| std::str::from_utf8(query).ok());
        let content_type = part(bytes, &publish.content_type);
        let authorization = part(bytes, &publish.authorization).and_then(header_text);
        let idempotency_key = part(bytes, &publish.idempotency_key);
        let accepted = accept(
            &self.state.config,
            query,
            content_type,
            authorization,
            idempotency_key,
        )?;
        let body = bytes
            .get(publish.len.head..publish.len.total())
            .unwrap_or_default();
        let max = self.state.config.max_body;
        if body.len() > max {
            return Err(ApiError::BodyTooLarge { max });
        }
        store(&self.state.hub, &accepted, body).await
    }
}

#[cfg(test)]
mod tests {
    use super::super::request::MAX_BODY;
    use super::*;

    fn publish(bytes: &str) -> Option<Publish> {
        let mut headers = [httparse::EMPTY_HEADER; 16];
        let mut head = httparse::Request::new(&mut headers);
        let Ok(httparse::Status::Complete(len)) = head.parse(bytes.as_bytes()) else {
            panic!("not a whole head: {bytes:?}");
        };
        Publish::of(&head, len, bytes.as_bytes())
    }

    #[test]
    fn a_plain_publish_is_taken_with_its_parts() {
        let bytes = "POST /v1/events?key=a%2Fb&type=t HTTP/1.1\r\nContent-Type: application/json\r\n\
                     content-type: text/plain\r\nAuthorization: Bearer x\r\nOrigin: https://a\r\n\
                     Origin: https://b\r\nIdempotency-Key: \"k1\"\r\nidempotency-key: k2\r\n\
                     Host: hub:8080\r\nX-Forwarded-Host: app.example\r\n\
                     Content-Length: 2\r\n\r\n{}";
        let publish = publish(bytes).unwrap();
        assert_eq!(
            publish.parts(bytes.as_bytes()),
            [
                Some(&b"key=a%2Fb&type=t"[..]),
                Some(b"application/json"),
                Some(b"Bearer x"),
                Some(b"https://a"),
                Some(b"hub:8080"),
                Some(b"app.example"),
                Some(b"\"k1\""),
            ]
        );
        assert_eq!(publish.len.total(), bytes.len());
        assert_eq!(publish.version, Version::HTTP_11);
        assert!(!publish.close);
    }

    #[test]
    fn closing_follows_the_version_and_connection_tokens() {
        let close = |bytes| publish(bytes).unwrap().close;
        assert!(close(
            "POST /v1/events HTTP/1.1\r\nHost: x\r\nConnection: te, close\r\n\r\n"
        ));
        assert!(close("POST /v1/events HTTP/1.0\r\n\r\n"));
        assert!(!close(
            "POST /v1/events HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n"
        ));
        let publish = publish("POST /v1/events HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        assert_eq!((publish.query, publish.len.body), (None, 0));
    }

    #[test]
    fn anything_unusual_goes_the_ordinary_way() {
        let over_limit = format!(
            "POST /v1/events HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n",
            MAX_BODY + 1
        );
        for bytes in [
            over_limit.as_str(),
            "GET /v1/events?key=a HTTP/1.1\r\nHost: x\r\n\r\n",
            "PUT /v1/events?key=a HTTP/1.1\r\nHost: x\r\n\r\n",
            "POST /v1/events/ HTTP/1.1\r\nHost: x\r\n\r\n",
            "POST /v1/eventsx HTTP/1.1\r\nHost: x\r\n\r\n",
            "POST /bus/v1/events HTTP/1.1\r\nHost: x\r\n\r\n",
            "POST /v1/events?key=a#frag HTTP/1.1\r\nHost: x\r\n\r\n",
            "POST /v1/events?key={a} HTTP/1.1\r\nHost: x\r\n\r\n",
            "POST /v1/events?key=\"a\" HTTP/1.1\r\nHost: x\r\n\r\n",
            "POST /v1/events HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n",
            "POST /v1/events HTTP/1.1\r\nHost: x\r\nContent-Length: +2\r\n\r\n",
            "POST /v1/events HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n",
            "POST /v1/events HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n\r\n",
            "POST /v1/events HTTP/1.1\r\nHost: x\r\nUpgrade: h2c\r\n\r\n",
            // Refused by the ordinary path: RFC 9112 §3.2.
            "POST /v1/events HTTP/1.1\r\n\r\n",
            "POST /v1/events HTTP/1.1\r\nHost: a\r\nhost: b\r\n\r\n",
            "POST /v1/events HTTP/1.0\r\nHost: a\r\nHost: a\r\n\r\n",
        ] {
            assert!(publish(bytes).is_none(), "{bytes:?} should not be taken");
        }
        // Repeated equal lengths are one length, as the ordinary path has it.
        let repeated =
            "POST /v1/events HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\n";
        assert_eq!(publish(repeated).map(|p| p.len.body), Some(2));
    }

    #[test]
    fn header_text_is_what_the_router_would_read() {
        for value in [
            &b"Bearer x"[..],
            b"a\tb",
            b"",
            b"\x80",
            b"caf\xc3\xa9",
            b"\x7f",
        ] {
            let router = axum::http::HeaderValue::from_bytes(value)
                .ok()
                .and_then(|value| value.to_str().ok().map(str::to_owned));
            assert_eq!(header_text(value).map(str::to_owned), router, "{value:?}");
        }
    }
}
