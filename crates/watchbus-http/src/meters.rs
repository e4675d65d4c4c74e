//! What the API counts for `/metrics` beside the hub's own counters: the
//! requests it refused, by error code, and the streams it holds open, by
//! transport.
//!
//! A refusal is counted where it is answered: [`ApiError`]'s response
//! carries a [`Refusal`] mark, which the router's layer (or, for what
//! [`crate::serve_api`] answers without the router, the server) counts
//! once. So a refusal is counted the same whichever path answered it.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::extract::State;
use axum::response::Response;
use parking_lot::Mutex;

#[cfg(doc)]
use crate::ApiError;

/// The mark an error response carries: its stable error code.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Refusal(pub(crate) &'static str);

/// The API's counters. One per router: each router's `/metrics` shows its
/// own.
#[derive(Debug, Default)]
pub(crate) struct Meters {
    /// Refused requests by (code, status). Only refusals take the lock, and
    /// the codes are a fixed set, so the map stays small.
    refused: Mutex<BTreeMap<(&'static str, u16), u64>>,
    /// SSE streams.
    pub(crate) sse: Arc<Streams>,
    /// WebSocket streams.
    pub(crate) ws: Arc<Streams>,
}

impl Meters {
    /// Counts `response` if it is a refusal.
    pub(crate) fn count(&self, response: &Response) {
        if let Some(Refusal(code)) = response.extensions().get::<Refusal>() {
            *self
                .refused
                .lock()
                .entry((code, response.status().as_u16()))
                .or_default() += 1;
        }
    }

    /// Every (code, status) refused so far, with its count.
    pub(crate) fn refused(&self) -> Vec<((&'static str, u16), u64)> {
        self.refused.lock().iter().map(|(k, v)| (*k, *v)).collect()
    }
}

/// The router layer's half of [`Meters::count`].
pub(crate) async fn count_refusals(
    State(meters): State<Arc<Meters>>,
    response: Response,
) -> Response {
    meters.count(&response);
    response
}

/// The streams of one transport.
#[derive(Debug, Default)]
pub(crate) struct Streams {
    open: AtomicU64,
    opened: AtomicU64,
}

impl Streams {
    /// Counts a stream as opened, and as open until the returned guard is
    /// dropped.
    pub(crate) fn open(self: &Arc<Self>) -> OpenStream {
        self.opened.fetch_add(1, Ordering::Relaxed);
        self.open.fetch_add(1, Ordering::Relaxed);
        OpenStream(Arc::clone(self))
    }

    /// Streams open now.
    pub(crate) fn open_now(&self) -> u64 {
        self.open.load(Ordering::Relaxed)
    }

    /// Streams opened since the start.
    pub(crate) fn opened(&self) -> u64 {
        self.opened.load(Ordering::Relaxed)
    }
}

/// One open stream: counted open until dropped, however the stream ends.
#[derive(Debug)]
pub(crate) struct OpenStream(Arc<Streams>);

impl Drop for OpenStream {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use axum::http::StatusCode;
    use axum::response::IntoResponse as _;

    use super::*;
    use crate::ApiError;

    #[test]
    fn refusals_are_counted_by_code_and_status_and_other_responses_not() {
        let meters = Meters::default();
        meters.count(&ApiError::NotFound("/x".into()).into_response());
        meters.count(&ApiError::NotFound("/y".into()).into_response());
        meters.count(&ApiError::Unauthorized.into_response());
        meters.count(&StatusCode::NOT_FOUND.into_response());
        meters.count(&"fine".into_response());
        assert_eq!(
            meters.refused(),
            [(("not_found", 404), 2), (("unauthorized", 401), 1)]
        );
    }

    #[test]
    fn a_stream_is_open_until_its_guard_drops() {
        let streams = Arc::new(Streams::default());
        let first = streams.open();
        let second = streams.open();
        assert_eq!((streams.open_now(), streams.opened()), (2, 2));
        drop(first);
        assert_eq!((streams.open_now(), streams.opened()), (1, 2));
        drop(second);
        let _third = streams.open();
        assert_eq!((streams.open_now(), streams.opened()), (1, 3));
    }
}
