//! The event: what a publisher sent, plus the id and time the store gave it.
//!
//! An [`Event`] is immutable and shared (`Arc<Event>`) between the log, the
//! hub and every subscriber. Its envelope and its SSE frames are built at
//! most once each, on first use, so a fan-out to 10,000 subscribers encodes
//! nothing 10,000 times, and an event no transport reads (an in-process
//! watcher's) is never encoded at all.

use std::fmt;
use std::sync::OnceLock;

use bytes::Bytes;

use crate::data::{Data, push_json_string};
use crate::encode;
use crate::id::EventId;
use crate::key::{EventType, Key, KeyPrefix};
use crate::time::Timestamp;

/// Where an event goes: one key, or every key with a prefix (a broadcast).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Target {
    /// An event for exactly this key.
    Key(Key),
    /// A broadcast to every key starting with this prefix.
    Prefix(KeyPrefix),
}

impl Target {
    /// The key or prefix text.
    pub fn as_str(&self) -> &str {
        match self {
            Self::Key(key) => key.as_str(),
            Self::Prefix(prefix) => prefix.as_str(),
        }
    }
}

/// A validated event that has not been stored yet: what a publisher sends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Draft {
    /// The key or prefix it is published to.
    pub target: Target,
    /// Its type, if it has one.
    pub event_type: Option<EventType>,
    /// Its payload.
    pub data: Data,
}

impl Draft {
    /// An untyped event for `key`.
    pub fn to_key(key: Key, data: Data) -> Self {
        Self {
            target: Target::Key(key),
            event_type: None,
            data,
        }
    }

    /// An untyped broadcast to every key starting with `prefix`.
    pub fn to_prefix(prefix: KeyPrefix, data: Data) -> Self {
        Self {
            target: Target::Prefix(prefix),
            event_type: None,
            data,
        }
    }

    /// The same event with a type.
    #[must_use]
    pub fn with_type(mut self, event_type: EventType) -> Self {
        self.event_type = Some(event_type);
        self
    }

    /// The size the event counts for in byte-bounded retention: its key,
    /// type and data, plus a fixed allowance for the rest of the envelope.
    /// Cheap: nothing is encoded to compute it, and every store counts the
    /// same.
    pub fn retained_bytes(&self) -> usize {
        const ENVELOPE_OVERHEAD: usize = 80;
        let event_type = self.event_type.as_ref().map_or(0, |t| t.as_str().len());
        ENVELOPE_OVERHEAD + self.target.as_str().len() + event_type + self.data.as_json().len()
    }

    /// Turns the draft into a stored event with the store's id and time.
    pub fn stored(self, id: EventId, time: Timestamp) -> Event {
        Event::new(id, time, self)
    }
}

/// A stored event. Once shared, its fields never change.
// `repr(C)`: the id and time, which every subscriber reads, stay next to the
// reference count, which every subscriber writes, in one cache line.
#[repr(C)]
pub struct Event {
    id: EventId,
    time: Timestamp,
    draft: Draft,
    /// Allocated by the first transport that encodes the event. A log holds
    /// many events no transport ever encodes: kept behind one pointer, the
    /// four encodings do not make every retained event 2.5 times larger.
    frames: OnceLock<Box<Frames>>,
}

/// An event's encodings, each built on first use.
#[derive(Default)]
struct Frames {
    /// `{"id","key"|"prefix","type"?,"time","data"}` on one line.
    envelope: OnceLock<Bytes>,
    sse_envelope: OnceLock<Bytes>,
    sse_raw: OnceLock<Bytes>,
    raw: OnceLock<Bytes>,
}

impl Event {
    /// An event with the given id and time.
    pub fn new(id: EventId, time: Timestamp, draft: Draft) -> Self {
        Self {
            id,
            time,
            draft,
            frames: OnceLock::new(),
        }
    }

    fn frames(&self) -> &Frames {
        self.frames.get_or_init(Box::default)
    }

    /// Gives the event its id and time, for a store that builds it before
    /// it knows its place in the log (to allocate outside its lock). An
    /// event that is shared (`Arc<Event>`) cannot be changed: this needs
    /// the only reference.
    pub fn stamp(&mut self, id: EventId, time: Timestamp) {
        self.id = id;
        self.time = time;
    }

    /// Its id, given by the store.
    pub fn id(&self) -> EventId {
        self.id
    }

    /// When the store accepted it.
    pub fn time(&self) -> Timestamp {
        self.time
    }

    /// Its key or broadcast prefix.
    pub fn target(&self) -> &Target {
        &self.draft.target
    }

    /// Its type, if any.
    pub fn event_type(&self) -> Option<&EventType> {
        self.draft.event_type.as_ref()
    }

    /// Its payload.
    pub fn data(&self) -> &Data {
        &self.draft.data
    }

    /// What the publisher sent, without id and time.
    pub fn draft(&self) -> &Draft {
        &self.draft
    }

    /// The JSON envelope, one line; built once, shared.
    pub fn envelope(&self) -> &Bytes {
        self.frames()
            .envelope
            .get_or_init(|| Bytes::from(build_envelope(self.id, self.time, &self.draft)))
    }

    /// The size this event counts for in byte-bounded retention; see
    /// [`Draft::retained_bytes`].
    pub fn retained_bytes(&self) -> usize {
        self.draft.retained_bytes()
    }

    /// The SSE frame carrying the envelope; built once, shared.
    pub fn sse_envelope_frame(&self) -> &Bytes {
        self.frames().sse_envelope.get_or_init(|| {
            encode::sse_event(
                &self.id,
                self.event_type(),
                std::str::from_utf8(self.envelope()).unwrap_or_default(),
            )
        })
    }

    /// The SSE frame carrying only the payload (`format=raw`); built once.
    pub fn sse_raw_frame(&self) -> &Bytes {
        self.frames().sse_raw.get_or_init(|| {
            encode::sse_event(&self.id, self.event_type(), &self.draft.data.raw_text())
        })
    }

    /// The payload as `format=raw` sends it over WebSocket; built once.
    pub fn raw_payload(&self) -> &Bytes {
        self.frames()
            .raw
            .get_or_init(|| Bytes::from(self.draft.data.raw_text().into_owned()))
    }
}

impl fmt::Debug for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Event")
            .field("id", &self.id)
            .field("target", &self.draft.target)
            .field("type", &self.draft.event_type)
            .field("time", &self.time)
            .field("data", &self.draft.data)
            .finish()
    }
}

fn build_envelope(id: EventId, time: Timestamp, draft: &Draft) -> String {
    let data = draft.data.as_json();
    let mut out = String::with_capacity(64 + draft.target.as_str().len() + data.len());
    out.push_str("{\"id\":\"");
    id.push_text(&mut out);
    out.push_str("\",");
    match &draft.target {
        Target::Key(key) => {
            out.push_str("\"key\":");
            push_json_string(&mut out, key.as_str());
        }
        Target::Prefix(prefix) => {
            out.push_str("\"prefix\":");
            push_json_string(&mut out, prefix.as_str());
        }
    }
    if let Some(event_type) = &draft.event_type {
        // Types are `[A-Za-z0-9._:/-]`: nothing to escape.
        out.push_str(",\"type\":\"");
        out.push_str(event_type.as_str());
        out.push('"');
    }
    out.push_str(",\"time\":\"");
    time.push_rfc3339(&mut out);
    out.push_str("\",\"data\":");
    out.push_str(data);
    out.push('}');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(k: &str) -> Key {
        Key::new(k).unwrap()
    }

    #[test]
    fn envelope_has_the_contract_fields_in_order_on_one_line() {
        let draft = Draft::to_key(key("users/\"1\""), Data::text("a\nb"))
            .with_type(EventType::new("user.created").unwrap());
        let event = draft.stored(EventId::new(7, 3), Timestamp(1_795_452_000_123));
        let envelope = std::str::from_utf8(event.envelope()).unwrap();
        assert_eq!(
            envelope,
            r#"{"id":"7-3","key":"users/\"1\"","type":"user.created","time":"2026-11-23T16:40:00.123Z","data":"a\nb"}"#
        );
        let parsed: serde_json::Value = serde_json::from_str(envelope).unwrap();
        assert_eq!(parsed["data"], "a\nb");
    }

    #[test]
    fn prefix_broadcast_envelope_names_the_prefix() {
        let draft = Draft::to_prefix(KeyPrefix::new("room/").unwrap(), Data::null());
        let event = draft.stored(EventId::new(1, 1), Timestamp(0));
        assert_eq!(
            std::str::from_utf8(event.envelope()).unwrap(),
            r#"{"id":"1-1","prefix":"room/","time":"1970-01-01T00:00:00.000Z","data":null}"#
        );
    }

    #[test]
    fn frames_are_built_once_and_shared() {
        let event =
            Draft::to_key(key("k"), Data::text("hi")).stored(EventId::new(1, 2), Timestamp(0));
        let first = event.sse_raw_frame().clone();
        assert_eq!(&first[..], b"id: 1-2\ndata: hi\n\n");
        assert_eq!(first.as_ptr(), event.sse_raw_frame().as_ptr());
        assert_eq!(&event.raw_payload()[..], b"hi");
    }
}
