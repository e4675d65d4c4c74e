//! Wire frames for Server-Sent Events and WebSocket.
//!
//! An SSE event is `id:`, an optional `event:`, one `data:` line per line of
//! the text, and a blank line. Text is split at CR, LF and CRLF alike, as
//! browsers split it, so they rebuild it exactly; a trailing line break
//! gives a trailing empty `data:` line.

use bytes::Bytes;

use crate::id::EventId;
use crate::key::EventType;

/// The comment sent when nothing else was sent for a keep-alive interval.
pub const SSE_KEEP_ALIVE: &[u8] = b": keep-alive\n\n";

/// Splits text into lines at CRLF, CR or LF, the way an SSE parser does.
/// Always yields at least one line; text ending in a break yields a final
/// empty line.
pub fn split_lines(text: &str) -> impl Iterator<Item = &str> {
    let mut rest = Some(text);
    std::iter::from_fn(move || {
        let current = rest?;
        match current.find(['\r', '\n']) {
            Some(at) => {
                let line = current.get(..at).unwrap_or_default();
                let after = if current.get(at..at + 2) == Some("\r\n") {
                    at + 2
                } else {
                    at + 1
                };
                rest = Some(current.get(after..).unwrap_or_default());
                Some(line)
            }
            None => {
                rest = None;
                Some(current)
            }
        }
    })
}

fn push_data_lines(out: &mut Vec<u8>, text: &str) {
    for line in split_lines(text) {
        if line.is_empty() {
            out.extend_from_slice(b"data:\n");
        } else {
            out.extend_from_slice(b"data: ");
            out.extend_from_slice(line.as_bytes());
            out.push(b'\n');
        }
    }
}

/// One SSE event frame.
pub fn sse_event(id: &EventId, event_type: Option<&EventType>, data: &str) -> Bytes {
    let mut out = Vec::with_capacity(data.len() + 48);
    out.extend_from_slice(format!("id: {id}\n").as_bytes());
    if let Some(event_type) = event_type {
        out.extend_from_slice(b"event: ");
        out.extend_from_slice(event_type.as_str().as_bytes());
        out.push(b'\n');
    }
    push_data_lines(&mut out, data);
    out.push(b'\n');
    Bytes::from(out)
}

/// A keep-alive comment that also moves the client's last event id to
/// `position` (a bookmark: a browser stores the id and fires no event).
pub fn sse_bookmark(position: &EventId) -> Bytes {
    Bytes::from(format!(": keep-alive\nid: {position}\n\n"))
}

/// The first frame of a stream that starts live: a bookmark of the point
/// it starts from, so a client that loses the connection before its first
/// event resumes from there instead of starting live again.
pub fn sse_opening(position: &EventId) -> Bytes {
    Bytes::from(format!(": live\nid: {position}\n\n"))
}

/// A bookmark that browsers dispatch as an event, for `bookmarks=event`:
/// after the comment `: {comment}`, `id: <position>`, `event: bookmark`
/// and `data: {"bookmark":"<position>"}`. Firefox and WebKit keep as their
/// last event id only the id of an event they dispatch, so an id-only
/// bookmark is lost on them; a named event reaches no `onmessage` handler, only a listener
/// for `bookmark`.
pub fn sse_bookmark_event(comment: &str, position: &EventId) -> Bytes {
    Bytes::from(format!(
        ": {comment}\nid: {position}\nevent: bookmark\ndata: {}\n\n",
        ws_bookmark(position)
    ))
}

/// The `event: gone` frame of `on_gone=event`. It carries `id: <position>`,
/// the point the stream goes on from, so a browser that reconnects later
/// resumes from there instead of being told about the same gap again.
pub fn sse_gone(position: &EventId, message: &str) -> Bytes {
    let mut out = Vec::with_capacity(message.len() + 80);
    out.extend_from_slice(format!("id: {position}\nevent: gone\n").as_bytes());
    push_data_lines(&mut out, &gone_json(message));
    out.push(b'\n');
    Bytes::from(out)
}

/// The last frame of an SSE stream whose token expired, with
/// `on_expiry=event`: the `: token expired` comment, then an
/// `event: token_expired` a page can listen for. It carries `id:
/// <position>` when there is a bookmark to give; either way the event's
/// last event id (a browser's `lastEventId`) is where a stream opened
/// with a new token resumes from, missing nothing.
pub fn sse_token_expired(position: Option<&EventId>, message: &str) -> Bytes {
    let mut out = Vec::with_capacity(message.len() + 120);
    out.extend_from_slice(b": token expired\n");
    if let Some(position) = position {
        out.extend_from_slice(format!("id: {position}\n").as_bytes());
    }
    out.extend_from_slice(b"event: token_expired\n");
    let data = serde_json::json!({"code": "token_expired", "message": message}).to_string();
    push_data_lines(&mut out, &data);
    out.push(b'\n');
    Bytes::from(out)
}

/// `{"code":"gone","message":...}`
pub fn gone_json(message: &str) -> String {
    serde_json::json!({"code": "gone", "message": message}).to_string()
}

/// The WebSocket notice of `on_gone=event`:
/// `{"gone":{"code":"gone","message":...,"position":"<id>"}}`, the position
/// being the point the stream goes on from.
pub fn ws_gone(position: &EventId, message: &str) -> String {
    serde_json::json!({"gone": {"code": "gone", "message": message, "position": position.to_string()}})
        .to_string()
}

/// The WebSocket text frame of a bookmark: `{"bookmark":"<id>"}`.
pub fn ws_bookmark(position: &EventId) -> String {
    format!("{{\"bookmark\":\"{position}\"}}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn lines(text: &str) -> Vec<&str> {
        split_lines(text).collect()
    }

    #[test]
    fn splits_cr_lf_and_crlf_alike() {
        assert_eq!(lines("a\nb\rc\r\nd"), ["a", "b", "c", "d"]);
        assert_eq!(lines("a\r\n"), ["a", ""]);
        assert_eq!(lines("\n\n"), ["", "", ""]);
        assert_eq!(lines("\r\r\n"), ["", "", ""]);
        assert_eq!(lines(""), [""]);
        assert_eq!(lines("plain"), ["plain"]);
    }

    #[test]
    fn frames_multi_line_text_one_data_line_each() {
        let frame = sse_event(
            &EventId::new(3, 9),
            EventType::new("chat.msg").ok().as_ref(),
            "hello\r\n world\n",
        );
        assert_eq!(
            &frame[..],
            b"id: 3-9\nevent: chat.msg\ndata: hello\ndata:  world\ndata:\n\n"
        );
    }

    #[test]
    fn empty_text_is_one_empty_data_line() {
        assert_eq!(
            &sse_event(&EventId::new(1, 1), None, "")[..],
            b"id: 1-1\ndata:\n\n"
        );
    }

    #[test]
    fn bookmark_and_gone_frames() {
        assert_eq!(
            &sse_bookmark(&EventId::new(1, 5))[..],
            b": keep-alive\nid: 1-5\n\n"
        );
        assert_eq!(
            &sse_opening(&EventId::new(1, 0))[..],
            b": live\nid: 1-0\n\n"
        );
        assert_eq!(
            &sse_bookmark_event("keep-alive", &EventId::new(1, 5))[..],
            b": keep-alive\nid: 1-5\nevent: bookmark\ndata: {\"bookmark\":\"1-5\"}\n\n"
        );
        assert_eq!(
            &sse_bookmark_event("live", &EventId::new(1, 0))[..],
            b": live\nid: 1-0\nevent: bookmark\ndata: {\"bookmark\":\"1-0\"}\n\n"
        );
        assert_eq!(
            &sse_gone(&EventId::new(1, 5), "events after 1-2 were evicted")[..],
            b"id: 1-5\nevent: gone\ndata: {\"code\":\"gone\",\"message\":\"events after 1-2 were evicted\"}\n\n".as_slice()
        );
        assert_eq!(
            &sse_token_expired(Some(&EventId::new(1, 7)), "expired")[..],
            b": token expired\nid: 1-7\nevent: token_expired\ndata: {\"code\":\"token_expired\",\"message\":\"expired\"}\n\n".as_slice()
        );
        assert_eq!(
            &sse_token_expired(None, "expired")[..],
            b": token expired\nevent: token_expired\ndata: {\"code\":\"token_expired\",\"message\":\"expired\"}\n\n".as_slice()
        );
        assert_eq!(ws_bookmark(&EventId::new(2, 0)), r#"{"bookmark":"2-0"}"#);
        assert_eq!(
            ws_gone(&EventId::new(2, 3), "gone"),
            r#"{"gone":{"code":"gone","message":"gone","position":"2-3"}}"#
        );
    }

    /// What a browser's EventSource rebuilds from the `data:` lines.
    fn browser_data(frame: &[u8]) -> String {
        let text = std::str::from_utf8(frame).unwrap();
        let mut data = String::new();
        for line in text.split('\n') {
            if let Some(value) = line.strip_prefix("data:") {
                data.push_str(value.strip_prefix(' ').unwrap_or(value));
                data.push('\n');
            }
        }
        data.pop();
        data
    }

    proptest! {
        #[test]
        fn a_browser_rebuilds_the_text_up_to_line_break_style(text in "[a-c \r\n]{0,24}") {
            let frame = sse_event(&EventId::new(1, 1), None, &text);
            let normalised = text.replace("\r\n", "\n").replace('\r', "\n");
            prop_assert_eq!(browser_data(&frame), normalised);
            // Exactly one blank line, at the end: the frame is one event.
            let body = std::str::from_utf8(&frame).unwrap();
            prop_assert!(body.ends_with("\n\n"));
            prop_assert!(!body.trim_end_matches('\n').contains("\n\n"));
            prop_assert!(!body.contains('\r'));
        }
    }
}
