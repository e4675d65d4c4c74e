//! The harness: a real server per test, a raw SSE client, a WebSocket
//! helper, and assertions that print what differed.

#[macro_use]
pub(crate) mod macros;
pub(crate) mod browser;
pub(crate) mod redis;
pub(crate) mod server;
pub(crate) mod sse;
pub(crate) mod ws;

use std::cmp::Ordering;
use std::time::Duration;

use serde_json::Value;

pub(crate) use server::{Published, StoreKind, TestServer};
pub(crate) use sse::{End, Frame, SseClient};

/// How long to wait for any one thing that should happen (a frame, a
/// response, a stats change). Generous: the suite runs on loaded machines.
pub(crate) const FRAME_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a server may take to print its listening line.
pub(crate) const STARTUP_TIMEOUT: Duration = Duration::from_secs(30);

/// Percent-encodes a query parameter value (everything but unreserved).
pub(crate) fn enc(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Asserts the contract's time form: RFC 3339 UTC, three fraction digits, `Z`.
pub(crate) fn assert_time_format(time: &str) {
    let b = time.as_bytes();
    let shape = "dddd-dd-ddTdd:dd:dd.dddZ".as_bytes();
    let ok = b.len() == shape.len()
        && b.iter().zip(shape).all(|(c, s)| match s {
            b'd' => c.is_ascii_digit(),
            other => c == other,
        });
    assert!(
        ok,
        "time {time:?} is not RFC 3339 UTC with three fraction digits and Z"
    );
    assert!(
        time::OffsetDateTime::parse(time, &time::format_description::well_known::Rfc3339).is_ok(),
        "time {time:?} does not parse as RFC 3339"
    );
}

/// Parses an event time.
pub(crate) fn parse_time(text: &str) -> time::OffsetDateTime {
    time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|e| panic!("time {text:?}: {e}"))
}

/// Formats a time the way the contract prints it.
pub(crate) fn format_time(t: time::OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.millisecond()
    )
}

/// Compares ids in "natural" order: runs of digits by number, other text
/// by bytes. Ids are opaque, but any sane increasing form (`7`, `E-7`,
/// Redis' `ms-seq`) orders correctly this way.
pub(crate) fn id_cmp(a: &str, b: &str) -> Ordering {
    fn runs(s: &str) -> Vec<(bool, &str)> {
        let mut out = Vec::new();
        let mut start = 0;
        let bytes = s.as_bytes();
        for i in 1..=bytes.len() {
            if i == bytes.len() || bytes[i].is_ascii_digit() != bytes[start].is_ascii_digit() {
                out.push((bytes[start].is_ascii_digit(), &s[start..i]));
                start = i;
            }
        }
        out
    }
    let (ra, rb) = (runs(a), runs(b));
    for ((da, ta), (db, tb)) in ra.iter().zip(rb.iter()) {
        let ord = if *da && *db {
            let (ta, tb) = (ta.trim_start_matches('0'), tb.trim_start_matches('0'));
            ta.len().cmp(&tb.len()).then_with(|| ta.cmp(tb))
        } else {
            ta.cmp(tb)
        };
        if ord != Ordering::Equal {
            return ord;
        }
    }
    ra.len().cmp(&rb.len())
}

/// Asserts the ids strictly increase.
pub(crate) fn assert_increasing(ids: &[String]) {
    for pair in ids.windows(2) {
        assert_eq!(
            id_cmp(&pair[0], &pair[1]),
            Ordering::Less,
            "ids must strictly increase: {:?} then {:?}",
            pair[0],
            pair[1]
        );
    }
}

/// An HTTP response taken apart for assertions.
#[derive(Debug)]
pub(crate) struct Answer {
    pub(crate) status: u16,
    pub(crate) content_type: Option<String>,
    pub(crate) headers: reqwest::header::HeaderMap,
    pub(crate) text: String,
}

impl Answer {
    pub(crate) async fn of(resp: reqwest::Response) -> Self {
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let content_type = headers
            .get("content-type")
            .map(|v| v.to_str().unwrap_or("<non-ascii>").to_owned());
        let text = resp
            .text()
            .await
            .unwrap_or_else(|e| format!("<body error: {e}>"));
        Self {
            status,
            content_type,
            headers,
            text,
        }
    }

    pub(crate) fn json(&self) -> Value {
        serde_json::from_str(&self.text)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {:?}", self.text))
    }
}

/// The exact `403` body that refuses a `request` ("WebSocket", "publish",
/// "reset") from a browser page of `origin`; `verb` is what
/// `--cors-origin` would let the page do.
pub(crate) fn origin_refusal(request: &str, origin: &str, verb: &str) -> Value {
    serde_json::json!({"error": {
        "code": "forbidden",
        "message": format!(
            "a {request} from the page origin {origin:?} is not allowed: \
             serve --cors-origin (HttpConfig::cors_origins) lists the origins that may {verb}"
        ),
    }})
}

/// Checks an error answer: status, JSON content type, and the envelope
/// `{"error":{"code":"snake_case","message":"non-empty"}}`. Returns the code.
pub(crate) fn check_error(answer: &Answer, status: u16) -> Result<String, String> {
    if answer.status != status {
        return Err(format!(
            "expected status {status}, got {} with body {:?}",
            answer.status, answer.text
        ));
    }
    let ct = answer.content_type.clone().unwrap_or_default();
    if !ct.to_ascii_lowercase().starts_with("application/json") {
        return Err(format!(
            "error content-type must be application/json, got {ct:?} (body {:?})",
            answer.text
        ));
    }
    let body: Value = serde_json::from_str(&answer.text)
        .map_err(|e| format!("error body is not JSON ({e}): {:?}", answer.text))?;
    if status == 401 {
        // RFC 9110: a 401 names the scheme it wants.
        let challenge = answer
            .headers
            .get("www-authenticate")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        if !challenge.starts_with("Bearer realm=\"watchbus\"") {
            return Err(format!(
                "a 401 needs WWW-Authenticate: Bearer, got {challenge:?}"
            ));
        }
    }
    check_error_value(&body)
}

/// Checks the error envelope shape of a parsed body.
pub(crate) fn check_error_value(body: &Value) -> Result<String, String> {
    let Some(obj) = body.as_object() else {
        return Err(format!("error body is not an object: {body}"));
    };
    if obj.len() != 1 || !obj.contains_key("error") {
        return Err(format!(
            "error body must be exactly {{\"error\": ...}}, got {body}"
        ));
    }
    let err = &body["error"];
    let code = err["code"]
        .as_str()
        .ok_or_else(|| format!("error.code is not a string: {body}"))?;
    let message = err["message"]
        .as_str()
        .ok_or_else(|| format!("error.message is not a string: {body}"))?;
    let snake = !code.is_empty()
        && code
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        && code.as_bytes()[0].is_ascii_lowercase();
    if !snake {
        return Err(format!("error.code {code:?} is not snake_case"));
    }
    if message.trim().is_empty() {
        return Err(format!("error.message is empty: {body}"));
    }
    Ok(code.to_owned())
}

/// Ids of frames (event frames must carry one).
pub(crate) fn frame_ids(frames: &[Frame]) -> Vec<String> {
    frames
        .iter()
        .map(|f| {
            f.id.clone()
                .unwrap_or_else(|| panic!("frame without id: {:?}", f.raw))
        })
        .collect()
}

/// Ids in a history page.
pub(crate) fn page_ids(page: &Value) -> Vec<String> {
    page["events"]
        .as_array()
        .unwrap_or_else(|| panic!("history page without events array: {page}"))
        .iter()
        .map(|e| {
            e["id"]
                .as_str()
                .unwrap_or_else(|| panic!("event without id: {e}"))
                .to_owned()
        })
        .collect()
}

/// A human-readable comparison of two id lists.
pub(crate) fn id_diff(got: &[String], want: &[String]) -> String {
    let first = got
        .iter()
        .zip(want)
        .position(|(g, w)| g != w)
        .unwrap_or(got.len().min(want.len()));
    let show = |v: &[String]| -> String {
        let from = first.saturating_sub(2);
        let to = (first + 3).min(v.len());
        let mut s = format!("[{} items] ", v.len());
        if from > 0 {
            s.push_str("..., ");
        }
        s.push_str(&v.get(from..to).unwrap_or_default().join(", "));
        if to < v.len() {
            s.push_str(", ...");
        }
        s
    };
    format!(
        "id lists differ at index {first}\n   got: {}\n  want: {}\n   got (head): {:?}\n  want (head): {:?}",
        show(got),
        show(want),
        got.iter().take(8).collect::<Vec<_>>(),
        want.iter().take(8).collect::<Vec<_>>()
    )
}

/// The envelope the contract promises for a published event:
/// `{"id", "key"|"prefix", "type"?, "time", "data"}`.
pub(crate) fn envelope(
    p: &Published,
    target: (&str, &str),
    event_type: Option<&str>,
    data: &Value,
) -> Value {
    let mut obj = serde_json::Map::new();
    obj.insert("id".to_owned(), Value::String(p.id.clone()));
    obj.insert(target.0.to_owned(), Value::String(target.1.to_owned()));
    if let Some(t) = event_type {
        obj.insert("type".to_owned(), Value::String(t.to_owned()));
    }
    obj.insert("time".to_owned(), Value::String(p.time.clone()));
    obj.insert("data".to_owned(), data.clone());
    Value::Object(obj)
}

/// Asserts two JSON values are equal, printing both.
pub(crate) fn assert_json_eq(got: &Value, want: &Value, what: &str) {
    assert!(got == want, "{what}:\n   got: {got}\n  want: {want}");
}
