//! WebSocket: one text frame per event (the envelope, or the payload with
//! `format=raw`), `{"bookmark": "<id>"}` frames (the first one, for a
//! stream that starts live, names its start point), pings at the keep-alive
//! interval. A subscriber that lags out of retention is closed with code
//! 4410 and its position as the reason: resuming from there is `410`. A
//! stream opened with a scoped token is closed with code 4401 and the
//! reason `token expired` when the token expires. A client that answers no
//! ping for the write timeout is closed with code 4408: a frozen client
//! takes its socket's bytes into its kernel's buffer for a long time before
//! any write would wait. A client that breaks the protocol is closed with
//! the code RFC 6455 gives for its fault.

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
/// Close code of a subscriber that answered no ping for the write timeout.
pub const CLOSE_NO_PONG: u16 = 4408;
const CLOSE_NORMAL: u16 = 1000;
const CLOSE_GOING_AWAY: u16 = 1001;
const CLOSE_PROTOCOL_ERROR: u16 = 1002;
const CLOSE_INVALID_DATA: u16 = 1007;
const CLOSE_TOO_BIG: u16 = 1009;
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
    NoPong(Duration),
    /// The client broke the protocol: the close code and the reason.
    Fault(u16, String),
}

/// The close that answers a read error, if the client is still there to
/// read it: a frame that breaks RFC 6455 is `1002`, text that is not UTF-8
/// `1007` (§8.1), a message over [`MAX_INCOMING`] `1009`.
fn fault(err: axum::Error) -> Option<Ending> {
    let err = err.into_inner();
    let code = match err.downcast_ref::<tungstenite::Error>()? {
        tungstenite::Error::Protocol(_) => CLOSE_PROTOCOL_ERROR,
        tungstenite::Error::Utf8(_) => CLOSE_INVALID_DATA,
        tungstenite::Error::Capacity(_) => CLOSE_TOO_BIG,
        _ => return None,
    };
    Some(Ending::Fault(code, err.to_string()))
}

/// Streams `subscription` over `socket` until it ends, `expires` passes,
/// the client answers no ping for `answer_within` or leaves, counted
/// `_open` until then.
pub(crate) async fn serve(
    socket: WebSocket,
    mut subscription: Subscription,
    format: Format,
    keep_alive: Duration,
    answer_within: Duration,
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
    let mut ping = tokio::time::interval_at(crate::deadline::after(keep_alive), keep_alive);
    ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut batch: Vec<Arc<Event>> = Vec::new();
    let mut expiry = Expiry::at(expires);
    // Since when a ping has gone unanswered: anything the client sends
    // shows it is reading.
    let mut unanswered: Option<tokio::time::Instant> = None;
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
            now = ping.tick() => {
                if unanswered.is_some_and(|since| now - since >= answer_within) {
                    break Some(Ending::NoPong(answer_within));
                }
                unanswered.get_or_insert(now);
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
                None => break None,
                Some(Err(err)) => break fault(err),
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
                    unanswered = None;
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
            Ending::NoPong(after) => close(CLOSE_NO_PONG, format!("no pong within {after:?}")),
            Ending::Fault(code, mut reason) => {
                // A close frame's reason has room for 123 bytes.
                while reason.len() > 123 {
                    reason.pop();
                }
                close(code, reason)
            }
        };
        let _ = sink.send(message).await;
        let _ = sink.close().await;
    }
}
