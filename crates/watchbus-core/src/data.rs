//! Event payloads: any JSON value, kept as compact JSON text.
//!
//! Payloads are parsed once when published and stored as the exact compact
//! text that every envelope and frame embeds, so no subscriber re-encodes
//! them. Numbers keep the publisher's digits (no float round trip).

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;

/// A JSON value as compact text (no whitespace outside strings, so no line
/// breaks: an envelope is always one line).
#[derive(Clone, PartialEq, Eq)]
pub struct Data(Arc<str>);

impl Data {
    /// The JSON `null`, the payload of an event published without data.
    pub fn null() -> Self {
        Self(Arc::from("null"))
    }

    /// Validates `json` as one JSON value and compacts it.
    ///
    /// # Errors
    /// The parser's error when `json` is not exactly one JSON value.
    pub fn from_json(json: &str) -> Result<Self, serde_json::Error> {
        // Validation without building a tree; the text itself is kept.
        let raw: &serde_json::value::RawValue = serde_json::from_str(json)?;
        Ok(Self(Arc::from(&*compact(raw.get()))))
    }

    /// A JSON string holding `text`, the payload of a text publish.
    pub fn text(text: &str) -> Self {
        let mut out = String::with_capacity(text.len() + 2);
        push_json_string(&mut out, text);
        Self(Arc::from(out))
    }

    /// The compact JSON text.
    pub fn as_json(&self) -> &str {
        &self.0
    }

    /// The payload as `format=raw` shows it: the text of a JSON string,
    /// other JSON as it is.
    pub fn raw_text(&self) -> Cow<'_, str> {
        if self.0.starts_with('"') {
            if let Ok(text) = serde_json::from_str::<String>(&self.0) {
                return Cow::Owned(text);
            }
        }
        Cow::Borrowed(&self.0)
    }
}

impl fmt::Debug for Data {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Appends `text` as a JSON string literal.
pub(crate) fn push_json_string(out: &mut String, text: &str) {
    // serde_json's escaping; writing into a String cannot fail.
    if let Ok(quoted) = serde_json::to_string(text) {
        out.push_str(&quoted);
    }
}

/// Drops the whitespace outside strings from valid JSON text. Works on
/// bytes: a byte of a multi-byte UTF-8 character is never ASCII, so every
/// cut falls on a character boundary.
fn compact(json: &str) -> Cow<'_, str> {
    let bytes = json.as_bytes();
    // Most payloads are already compact: two vectorised scans say so.
    if memchr::memchr3(b' ', b'\n', b'\r', bytes).is_none()
        && memchr::memchr(b'\t', bytes).is_none()
    {
        return Cow::Borrowed(json);
    }
    let mut out = String::with_capacity(json.len());
    let (mut in_string, mut escaped) = (false, false);
    let mut kept_from = 0;
    for (at, &byte) in bytes.iter().enumerate() {
        if in_string {
            if escaped {
                escaped = false;
            } else if byte == b'\\' {
                escaped = true;
            } else if byte == b'"' {
                in_string = false;
            }
        } else if byte == b'"' {
            in_string = true;
        } else if is_json_space(byte) {
            out.push_str(json.get(kept_from..at).unwrap_or_default());
            kept_from = at + 1;
        }
    }
    out.push_str(json.get(kept_from..).unwrap_or_default());
    Cow::Owned(out)
}

/// JSON's insignificant whitespace (RFC 8259 §2).
fn is_json_space(byte: u8) -> bool {
    matches!(byte, b' ' | b'\t' | b'\n' | b'\r')
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn compacts_outside_strings_only() {
        let data =
            Data::from_json(" {\n \"a b\" : [1, 2.50e3 ,\"x\\\" y\\n\"],\r\n\t\"c\":null } ");
        assert_eq!(
            data.map(|d| d.as_json().to_owned()).ok().as_deref(),
            Some(r#"{"a b":[1,2.50e3,"x\" y\n"],"c":null}"#)
        );
    }

    #[test]
    fn each_kind_of_whitespace_alone_is_dropped() {
        for space in [" ", "\t", "\n", "\r"] {
            let data = Data::from_json(&format!("[1,{space}2]"));
            assert_eq!(
                data.map(|d| d.as_json().to_owned()).ok().as_deref(),
                Some("[1,2]"),
                "{space:?}"
            );
        }
    }

    #[test]
    fn keeps_big_numbers_exactly() {
        let data = Data::from_json("123456789012345678901234567890.000000000000000000001");
        assert_eq!(
            data.ok().map(|d| d.as_json().to_owned()).as_deref(),
            Some("123456789012345678901234567890.000000000000000000001")
        );
    }

    #[test]
    fn rejects_non_json_and_trailing_garbage() {
        for bad in ["", "{", "nul", "1 2", "{\"a\":1} x", "'x'"] {
            assert!(Data::from_json(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn text_is_a_json_string_and_raw_text_gives_it_back() {
        let data = Data::text("line1\r\nline \"2\"\n");
        assert_eq!(data.as_json(), r#""line1\r\nline \"2\"\n""#);
        assert_eq!(data.raw_text(), "line1\r\nline \"2\"\n");
        assert_eq!(
            Data::from_json("[1]")
                .ok()
                .map(|d| d.raw_text().into_owned())
                .as_deref(),
            Some("[1]")
        );
    }

    fn json_value() -> impl Strategy<Value = serde_json::Value> {
        let leaf = prop_oneof![
            Just(serde_json::Value::Null),
            any::<bool>().prop_map(serde_json::Value::Bool),
            any::<i64>().prop_map(serde_json::Value::from),
            "[ a-z\"\\\\\n\t\u{e9}]{0,8}".prop_map(serde_json::Value::String),
        ];
        leaf.prop_recursive(3, 24, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(serde_json::Value::Array),
                prop::collection::btree_map("[a-z \"]{0,4}", inner, 0..4)
                    .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #[test]
        fn compaction_preserves_the_value_and_removes_line_breaks(value in json_value()) {
            let pretty = serde_json::to_string_pretty(&value).unwrap_or_default();
            let data = Data::from_json(&pretty);
            prop_assert!(data.is_ok());
            let data = data.unwrap_or_else(|_| Data::null());
            prop_assert!(!data.as_json().contains('\n'));
            let back: serde_json::Value = serde_json::from_str(data.as_json()).unwrap_or_default();
            prop_assert_eq!(back, value);
        }
    }
}
