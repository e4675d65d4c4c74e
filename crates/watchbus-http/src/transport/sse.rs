//! Server-Sent Events: the subscription as a `text/event-stream` body.
//!
//! Each wake takes every event waiting in the subscriber's mailbox and
//! writes them as one chunk; each event's frame is built once and shared by
//! every subscriber. When nothing was sent for a keep-alive interval, a
//! comment is sent, carrying a bookmark id when the subscriber's position
//! moved past events that did not match it. A stream that starts live opens
//! with a bookmark of its start point (`: live` and `id:`), so a client
//! that loses it before the first event can still resume. With
//! `bookmarks=event`, bookmarks are `event: bookmark` frames with data, which
//! Firefox and WebKit keep too (they ignore an id-only frame). A stream opened
//! with a scoped token ends when the token expires, with the comment
//! `: token expired`, and with `on_expiry=event` an `event: token_expired`
//! whose last event id is the point to resume from.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::Body;
use axum::http::{HeaderValue, header};
use axum::response::Response;
use bytes::{Bytes, BytesMut};
use futures_util::{StreamExt as _, stream};
use tokio::time::{Instant, Sleep};
use watchbus::{Event, Subscription};
use watchbus_core::{Timestamp, encode};

use super::Expiry;
use crate::meters::OpenStream;
use crate::params::{Bookmarks, Format, OnExpiry};

/// The most events written in one chunk.
const BATCH: usize = 256;

/// A chunk of several events is copied together, so that it goes out in
/// one write; past this many bytes the rest of the batch waits for the next
/// chunk, which bounds what a client that reads slowly holds of its own.
const CHUNK_BYTES: usize = 256 * 1024;

struct SseStream {
    subscription: Subscription,
    format: Format,
    /// How bookmarks are framed.
    bookmarks: Bookmarks,
    keep_alive: Duration,
    /// A frame to send before anything else: the `on_gone=event` notice,
    /// or the opening bookmark of a stream that starts live.
    first: Option<Bytes>,
    batch: Vec<Arc<Event>>,
    last_sent: Instant,
    timer: std::pin::Pin<Box<Sleep>>,
    /// The timer set for [`Expires::at`].
    expiry: Expiry,
    /// When the token the stream was opened with expires, and what the
    /// stream says then.
    expires: Expires,
    /// The expiry was told: the stream ends.
    expired: bool,
    /// Counts the stream open for as long as its body lives.
    _open: OpenStream,
}

impl SseStream {
    fn frame<'a>(&self, event: &'a Event) -> &'a Bytes {
        match self.format {
            Format::Envelope => event.sse_envelope_frame(),
            Format::Raw => event.sse_raw_frame(),
        }
    }

    /// The next chunk of the batch: its events up to [`CHUNK_BYTES`] (at
    /// least one), which leave the batch.
    fn encode_batch(&mut self) -> Bytes {
        let (taken, bytes) = self.chunk_of_batch();
        let chunk = match self.batch.get(..taken).unwrap_or_default() {
            [one] => self.frame(one).clone(),
            many => {
                let mut out = BytesMut::with_capacity(bytes);
                for event in many {
                    out.extend_from_slice(self.frame(event));
                }
                out.freeze()
            }
        };
        self.batch.drain(..taken);
        chunk
    }

    /// How many of the batch's first events make the next chunk, and
    /// their bytes.
    fn chunk_of_batch(&self) -> (usize, usize) {
        let mut bytes = 0;
        for (taken, event) in self.batch.iter().enumerate() {
            let len = self.frame(event).len();
            if taken > 0 && bytes + len > CHUNK_BYTES {
                return (taken, bytes);
            }
            bytes += len;
        }
        (self.batch.len(), bytes)
    }

    /// The next chunk of the body, or `None` when the stream ends.
    async fn next_chunk(&mut self) -> Option<Bytes> {
        if self.expired {
            return None;
        }
        if let Some(first) = self.first.take() {
            self.last_sent = Instant::now();
            return Some(first);
        }
        if !self.batch.is_empty() {
            // The rest of a batch larger than one chunk.
            self.last_sent = Instant::now();
            return Some(self.encode_batch());
        }
        loop {
            tokio::select! {
                received = self.subscription.recv_batch(&mut self.batch, BATCH) => {
                    received.ok()?;
                    self.last_sent = Instant::now();
                    return Some(self.encode_batch());
                }
                () = self.expiry.passed(), if self.expiry.is_armed() => {
                    self.expired = true;
                    return Some(self.expiry_notice());
                }
                () = self.timer.as_mut() => {
                    let due = self.last_sent + self.keep_alive;
                    let now = Instant::now();
                    if due > now {
                        // Something was sent meanwhile: wait the rest.
                        self.timer.as_mut().reset(due);
                        continue;
                    }
                    self.last_sent = now;
                    self.timer.as_mut().reset(now + self.keep_alive);
                    return Some(match self.subscription.bookmark() {
                        Some(position) => match self.bookmarks {
                            Bookmarks::Id => encode::sse_bookmark(&position),
                            Bookmarks::Event => {
                                encode::sse_bookmark_event("keep-alive", &position)
                            }
                        },
                        None => Bytes::from_static(encode::SSE_KEEP_ALIVE),
                    });
                }
            }
        }
    }
}

impl SseStream {
    /// The last frame of a stream whose token expired: a comment, or with
    /// `on_expiry=event` an event that gives the point to resume from.
    fn expiry_notice(&mut self) -> Bytes {
        match self.expires.notice {
            OnExpiry::Close => Bytes::from_static(TOKEN_EXPIRED),
            OnExpiry::Event => {
                let at = self
                    .expires
                    .at
                    .and_then(|at| at.duration_since(UNIX_EPOCH).ok())
                    .map(|since| Timestamp(u64::try_from(since.as_millis()).unwrap_or(u64::MAX)))
                    .unwrap_or_default();
                let message = format!(
                    "the token expired at {at}: open a new stream with a new token \
                     and from= the last event id received"
                );
                encode::sse_token_expired(self.subscription.bookmark().as_ref(), &message)
            }
        }
    }
}

/// The last frame of a stream whose token expired.
const TOKEN_EXPIRED: &[u8] = b": token expired\n\n";

/// When a stream's token expires, and what it says then.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Expires {
    /// The token's `exp`; `None` for a token that does not expire.
    pub(crate) at: Option<SystemTime>,
    /// What the stream's last frame says then.
    pub(crate) notice: OnExpiry,
}

/// The `200` response streaming `subscription` until it ends or its token
/// expires, counted `open` until the body is dropped.
pub(crate) fn response(
    subscription: Subscription,
    format: Format,
    bookmarks: Bookmarks,
    keep_alive: Duration,
    expires: Expires,
    open: OpenStream,
) -> Response {
    let first = match subscription.gone() {
        Some(gone) => Some(encode::sse_gone(&subscription.position(), &gone.notice())),
        None => subscription
            .opening_bookmark()
            .map(|position| match bookmarks {
                Bookmarks::Id => encode::sse_opening(&position),
                Bookmarks::Event => encode::sse_bookmark_event("live", &position),
            }),
    };
    let state = SseStream {
        subscription,
        format,
        bookmarks,
        keep_alive,
        first,
        // Grows only for a subscriber that receives: idle ones stay small.
        batch: Vec::new(),
        last_sent: Instant::now(),
        timer: Box::pin(tokio::time::sleep(keep_alive)),
        expiry: Expiry::at(expires.at),
        expires,
        expired: false,
        _open: open,
    };
    // Fused: a layer around the router (a compression layer, say) may poll
    // the body again after its end, which an unfolded stream panics at.
    let body = stream::unfold(state, |mut state| async move {
        let chunk = state.next_chunk().await?;
        Some((Ok::<_, std::convert::Infallible>(chunk), state))
    })
    .fuse();
    let mut response = Response::new(Body::from_stream(body));
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
    response
}
