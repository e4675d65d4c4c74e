//! Reading Redis replies: script results, stream entries, control entries.
//!
//! Every entry of the log stream is one event, with the fields
//! `ms` (its time), `b` (its [`Event::retained_bytes`], for byte retention), `ep` (its
//! epoch), `ev` (the newest evicted seq when it was appended), `k` or `p`
//! (its key or broadcast prefix), `t` (its type, when it has one) and `d`
//! (its data, compact JSON). The entry id is `<seq>-0`.

use std::sync::Arc;

use ::redis::Value;
use watchbus_core::{Data, Draft, Event, EventId, EventType, Key, KeyPrefix, Target, Timestamp};

use super::RedisStoreError;

fn malformed(what: &'static str) -> RedisStoreError {
    RedisStoreError::Reply(what)
}

/// The elements of an array reply (`nil` is an empty array).
pub(super) fn array(value: Value) -> Result<Vec<Value>, RedisStoreError> {
    match value {
        Value::Array(items) | Value::Set(items) => Ok(items),
        Value::Nil => Ok(Vec::new()),
        _ => Err(malformed("expected an array")),
    }
}

/// The text of a string reply.
pub(super) fn text(value: &Value) -> Option<&str> {
    match value {
        Value::BulkString(bytes) => std::str::from_utf8(bytes).ok(),
        Value::SimpleString(text) => Some(text),
        _ => None,
    }
}

/// An integer reply, or a string holding one.
pub(super) fn int(value: &Value) -> Result<i64, RedisStoreError> {
    match value {
        Value::Int(n) => Ok(*n),
        other => text(other)
            .and_then(|t| t.parse().ok())
            .ok_or_else(|| malformed("expected an integer")),
    }
}

/// A non-negative integer reply.
pub(super) fn uint(value: &Value) -> Result<u64, RedisStoreError> {
    u64::try_from(int(value)?).map_err(|_| malformed("expected a non-negative integer"))
}

/// The `n`th element of a script's array reply, as an unsigned integer.
pub(super) fn uint_at(items: &[Value], n: usize) -> Result<u64, RedisStoreError> {
    items
        .get(n)
        .ok_or_else(|| malformed("script reply too short"))
        .and_then(uint)
}

/// The `n`th element, as a signed integer.
pub(super) fn int_at(items: &[Value], n: usize) -> Result<i64, RedisStoreError> {
    items
        .get(n)
        .ok_or_else(|| malformed("script reply too short"))
        .and_then(int)
}

/// The seq of a stream entry id `<seq>-<n>`.
fn seq_of(id: &str) -> Option<u64> {
    id.split('-').next().and_then(|seq| seq.parse().ok())
}

/// One log entry.
#[derive(Debug)]
pub(super) struct Entry {
    pub(super) seq: u64,
    pub(super) epoch: u64,
    /// The newest evicted seq when it was appended.
    pub(super) evicted_through: u64,
    /// The event, or `None` when the entry could not be read as one (never
    /// written by watchbus); it still takes its place in the order.
    pub(super) event: Option<Arc<Event>>,
}

/// The parts of an entry, borrowed from the reply.
#[derive(Default)]
struct Fields<'a> {
    ms: Option<u64>,
    epoch: Option<u64>,
    evicted_through: Option<u64>,
    key: Option<&'a str>,
    prefix: Option<&'a str>,
    event_type: Option<&'a str>,
    data: Option<&'a str>,
}

fn draft(fields: &Fields<'_>) -> Option<Draft> {
    let target = match (fields.key, fields.prefix) {
        (Some(key), None) => Target::Key(Key::new(key).ok()?),
        (None, Some(prefix)) => Target::Prefix(KeyPrefix::new(prefix).ok()?),
        _ => return None,
    };
    let event_type = match fields.event_type {
        Some(t) => Some(EventType::new(t).ok()?),
        None => None,
    };
    let data = Data::from_json(fields.data?).ok()?;
    Some(Draft {
        target,
        event_type,
        data,
    })
}

/// Parses `[id, [field, value, ...]]`.
pub(super) fn entry(value: &Value) -> Result<Entry, RedisStoreError> {
    let Value::Array(parts) = value else {
        return Err(malformed("stream entry is not an array"));
    };
    let [id, Value::Array(raw)] = parts.as_slice() else {
        return Err(malformed("stream entry has no fields"));
    };
    let seq = text(id)
        .and_then(seq_of)
        .ok_or_else(|| malformed("stream entry id"))?;
    let mut fields = Fields::default();
    for pair in raw.chunks_exact(2) {
        let [name, value] = pair else { continue };
        let (Some(name), Some(value)) = (text(name), text(value)) else {
            continue;
        };
        match name {
            "ms" => fields.ms = value.parse().ok(),
            "ep" => fields.epoch = value.parse().ok(),
            "ev" => fields.evicted_through = value.parse().ok(),
            "k" => fields.key = Some(value),
            "p" => fields.prefix = Some(value),
            "t" => fields.event_type = Some(value),
            "d" => fields.data = Some(value),
            _ => {}
        }
    }
    let epoch = fields.epoch.unwrap_or(0);
    let event = match (fields.ms, draft(&fields)) {
        (Some(ms), Some(draft)) if epoch > 0 => Some(Arc::new(Event::new(
            EventId::new(epoch, seq),
            Timestamp(ms),
            draft,
        ))),
        _ => None,
    };
    Ok(Entry {
        seq,
        epoch,
        evicted_through: fields.evicted_through.unwrap_or(0),
        event,
    })
}

/// Parses a list of stream entries.
pub(super) fn entries(value: Value) -> Result<Vec<Entry>, RedisStoreError> {
    array(value)?.iter().map(entry).collect()
}

/// One entry of the control stream: a reset, or a new epoch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Signal {
    /// The stream entry id, for the next read.
    pub(super) id: String,
    /// `reset` or `epoch`.
    pub(super) kind: String,
    pub(super) epoch: u64,
    /// The log's head when it was written.
    pub(super) head: u64,
    pub(super) generation: u64,
}

/// Parses a control stream entry.
pub(super) fn signal(value: &Value) -> Result<Signal, RedisStoreError> {
    let Value::Array(parts) = value else {
        return Err(malformed("control entry is not an array"));
    };
    let [id, Value::Array(raw)] = parts.as_slice() else {
        return Err(malformed("control entry has no fields"));
    };
    let id = text(id)
        .ok_or_else(|| malformed("control entry id"))?
        .to_owned();
    let mut signal = Signal {
        id,
        kind: String::new(),
        epoch: 0,
        head: 0,
        generation: 0,
    };
    for pair in raw.chunks_exact(2) {
        let [name, value] = pair else { continue };
        let (Some(name), Some(value)) = (text(name), text(value)) else {
            continue;
        };
        match name {
            "kind" => value.clone_into(&mut signal.kind),
            "epoch" => signal.epoch = value.parse().unwrap_or(0),
            "head" => signal.head = value.parse().unwrap_or(0),
            "generation" => signal.generation = value.parse().unwrap_or(0),
            _ => {}
        }
    }
    Ok(signal)
}

/// The entries of an `XREAD` reply, per stream name: RESP2 gives
/// `[[name, entries], ...]`, RESP3 a map.
pub(super) fn xread(value: Value) -> Result<Vec<(String, Vec<Value>)>, RedisStoreError> {
    let pairs: Vec<(Value, Value)> = match value {
        Value::Nil => return Ok(Vec::new()),
        Value::Map(pairs) => pairs,
        Value::Array(streams) => streams
            .into_iter()
            .map(|stream| match array(stream)?.as_mut_slice() {
                [name, entries] => Ok((std::mem::take(name), std::mem::take(entries))),
                _ => Err(malformed("XREAD stream is not [name, entries]")),
            })
            .collect::<Result<_, _>>()?,
        _ => return Err(malformed("XREAD reply")),
    };
    pairs
        .into_iter()
        .map(|(name, entries)| {
            let name = text(&name)
                .ok_or_else(|| malformed("XREAD stream name"))?
                .to_owned();
            Ok((name, array(entries)?))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(text: &str) -> Value {
        Value::BulkString(text.as_bytes().to_vec())
    }

    fn raw_entry(id: &str, fields: &[(&str, &str)]) -> Value {
        let fields = fields
            .iter()
            .flat_map(|(n, v)| [bulk(n), bulk(v)])
            .collect();
        Value::Array(vec![bulk(id), Value::Array(fields)])
    }

    #[test]
    fn an_entry_becomes_the_event_it_stored() {
        let value = raw_entry(
            "7-0",
            &[
                ("ms", "1000"),
                ("b", "90"),
                ("ep", "42"),
                ("ev", "3"),
                ("k", "orders/1"),
                ("t", "order.shipped"),
                ("d", r#"{"a":1}"#),
            ],
        );
        let entry = entry(&value).map_err(|e| e.to_string());
        let Ok(entry) = entry else {
            panic!("{entry:?}")
        };
        assert_eq!((entry.seq, entry.epoch, entry.evicted_through), (7, 42, 3));
        let event = entry.event.unwrap_or_else(|| panic!("no event"));
        assert_eq!(event.id(), EventId::new(42, 7));
        assert_eq!(event.time(), Timestamp(1000));
        assert_eq!(event.target().as_str(), "orders/1");
        assert_eq!(
            event.event_type().map(|t| t.as_str()),
            Some("order.shipped")
        );
        assert_eq!(event.data().as_json(), r#"{"a":1}"#);
    }

    #[test]
    fn a_broadcast_entry_keeps_its_prefix() {
        let value = raw_entry(
            "1-0",
            &[
                ("ms", "5"),
                ("b", "1"),
                ("ep", "9"),
                ("ev", "0"),
                ("p", "rooms/"),
                ("d", "null"),
            ],
        );
        let event = entry(&value)
            .ok()
            .and_then(|e| e.event)
            .unwrap_or_else(|| panic!("no event"));
        assert!(matches!(event.target(), Target::Prefix(p) if p.as_str() == "rooms/"));
        assert_eq!(event.event_type(), None);
    }

    #[test]
    fn a_foreign_entry_keeps_its_place_without_an_event() {
        let value = raw_entry("3-0", &[("hello", "world")]);
        let entry = entry(&value).ok().unwrap_or_else(|| panic!("not parsed"));
        assert_eq!(entry.seq, 3);
        assert!(entry.event.is_none());
    }

    #[test]
    fn control_entries_and_xread_replies_parse() {
        let ctl = raw_entry(
            "1700000000000-0",
            &[
                ("kind", "reset"),
                ("epoch", "5"),
                ("head", "10"),
                ("generation", "2"),
            ],
        );
        let reply = Value::Array(vec![Value::Array(vec![
            bulk("ns:ctl"),
            Value::Array(vec![ctl]),
        ])]);
        let streams = xread(reply).unwrap_or_default();
        assert_eq!(streams.len(), 1);
        let (name, items) = streams.into_iter().next().unwrap_or_default();
        assert_eq!(name, "ns:ctl");
        let parsed = items.first().map(signal).and_then(Result::ok);
        assert_eq!(
            parsed,
            Some(Signal {
                id: "1700000000000-0".into(),
                kind: "reset".into(),
                epoch: 5,
                head: 10,
                generation: 2
            })
        );
        assert!(xread(Value::Nil).map(|s| s.is_empty()).unwrap_or(false));
    }
}
