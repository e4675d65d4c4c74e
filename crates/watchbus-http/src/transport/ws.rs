//! WebSocket: one text frame per event (the envelope, or the payload with
//! `format=raw`), `{"bookmark": "<id>"}` frames (the first one, for a
//! stream that starts live, names its start point), pings at the keep-alive
//! interval. A subscriber that lags out of retention is closed with code
//! 4410 and its position as the reason: resuming from there is `410`. A
//! stream opened with a scoped token is closed with code 4401 and the
//! reason `token expired` when the token expires.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::extract::WebSocketUpgrade;
use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket};
use futures_util::{SinkExt, StreamExt};
use watchbus::{Event, StreamEnd, Subscription};
use watchbus_core::encode;

use super::Expiry;
use crate::meters::OpenStream;
use crate::params::Format;

/// Close code of a subscriber that lagged out of retention.
pub const CLOSE_LAGGED: u16 = 4410;
/// Close code of a subscriber whose scoped token expired.
pub const CLOSE_TOKEN_EXPIRED: u16 = 4401;
const CLOSE_NORMAL: u16 = 1000;
const CLOSE_GOING_AWAY: u16 = 1001;
const CLOSE_ERROR: u16 = 1011;

const BATCH: usize = 256;

/// A subscriber's read buffer. Subscribers send next to nothing (pongs, a
/// close), and tungstenite zero-fills the whole buffer before each read, so
/// its default of 128 KiB was resident in every idle connection.
const READ_BUFFER: usize = 1024;

/// The largest message or frame a subscriber may send: it has nothing to
/// say but control frames, and anything larger would be buffered whole
/// (tungstenite's default is 64 MiB).
const MAX_INCOMING: usize = 64 * 1024;

/// The upgrade with the buffers and limits of a subscriber connection.
pub(crate) fn for_subscriber(upgrade: WebSocketUpgrade) -> WebSocketUpgrade {
    upgrade
        .read_buffer_size(READ_BUFFER)
        .max_message_size(MAX_INCOMING)
        .max_frame_size(MAX_INCOMING)
}

fn text(bytes: &bytes::Bytes) -> Option<Message> {
    Utf8Bytes::try_from(bytes.clone()).ok().map(Message::Text)
}

fn frame(event: &Event, format: Format) -> Option<Message> {
    match format {
        Format::Envelope => text(event.envelope()),
        Format::Raw => text(event.raw_payload()),
    }
}

fn close(code: u16, reason: String) -> Message {
    Message::Close(Some(CloseFrame {
        code,
        reason: reason.into(),
    }))
}

/// Why the server closes a stream.
enum Ending {
    Stream(StreamEnd),
    TokenExpired,
}

/// Streams `subscription` over `socket` until it ends, `expires` passes or
/// the client leaves, counted `_open` until then.
pub(crate) async fn serve(
    socket: WebSocket,
    mut subscription: Subscription,
    format: Format,
    keep_alive: Duration,
    expires: Option<SystemTime>,
    _open: OpenStream,
) {
    let (mut sink, mut incoming) = socket.split();
    let first = match subscription.gone() {
        Some(gone) => Some(encode::ws_gone(&subscription.position(), &gone.notice())),
        None => subscription
            .opening_bookmark()
            .map(|position| encode::ws_bookmark(&position)),
    };
    if let Some(first) = first {
        if sink.send(Message::Text(first.into())).await.is_err() {
            return;
        }
    }
    let mut ping = tokio::time::interval_at(tokio::time::Instant::now() + keep_alive, keep_alive);
    ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut batch: Vec<Arc<Event>> = Vec::new();
    let mut expiry = Expiry::at(expires);
    let ending = loop {
        tokio::select! {
            received = subscription.recv_batch(&mut batch, BATCH) => {
                if let Err(end) = received {
                    break Some(Ending::Stream(end));
                }
                for event in batch.drain(..) {
                    let Some(message) = frame(&event, format) else { continue };
                    if sink.feed(message).await.is_err() {
                        return;
                    }
                }
                if sink.flush().await.is_err() {
                    return;
                }
            }
            () = expiry.passed(), if expiry.is_armed() => break Some(Ending::TokenExpired),
            _ = ping.tick() => {
                if let Some(position) = subscription.bookmark() {
                    if sink.send(Message::Text(encode::ws_bookmark(&position).into())).await.is_err() {
                        return;
                    }
                }
                if sink.send(Message::Ping(bytes::Bytes::new())).await.is_err() {
                    return;
                }
            }
            message = incoming.next() => match message {
                None | Some(Err(_)) => break None,
                // Answered with a close, as RFC 6455 asks: the reply is
                // queued as the close is read, and goes out with a flush.
                Some(Ok(Message::Close(_))) => {
                    let _ = sink.flush().await;
                    break None;
                }
                // A ping's pong is written before anything more is read,
                // so a client that sends without reading is held back by
                // its own socket rather than making the server buffer
                // answers; if it takes nothing, the write timeout ends it.
                Some(Ok(_)) => {
                    if sink.flush().await.is_err() {
                        return;
                    }
                }
            }
        }
    };
    if let Some(end) = ending {
        let message = match end {
            Ending::Stream(StreamEnd::Lagged) => {
                close(CLOSE_LAGGED, subscription.position().to_string())
            }
            Ending::Stream(StreamEnd::Reset) => close(CLOSE_NORMAL, "reset".into()),
            Ending::Stream(StreamEnd::Shutdown) => close(CLOSE_GOING_AWAY, "shutting down".into()),
            Ending::Stream(_) => close(CLOSE_ERROR, "store unavailable".into()),
            Ending::TokenExpired => close(CLOSE_TOKEN_EXPIRED, "token expired".into()),
        };
        let _ = sink.send(message).await;
        let _ = sink.close().await;
    }
}
