//! Validation errors of the event model.

use thiserror::Error;

/// A key, prefix or event type that breaks its rules.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("invalid {what} {shown:?}: {reason}")]
pub struct InvalidName {
    /// `"key"`, `"prefix"` or `"type"`.
    pub what: &'static str,
    /// The offending text, cut to a readable length.
    pub shown: String,
    /// Why it was refused, as a phrase.
    pub reason: &'static str,
}

impl InvalidName {
    pub(crate) fn new(what: &'static str, text: &str, reason: &'static str) -> Self {
        const SHOW: usize = 64;
        let shown = match text.char_indices().nth(SHOW) {
            Some((cut, _)) => format!("{}…", text.get(..cut).unwrap_or_default()),
            None => text.to_owned(),
        };
        Self {
            what,
            shown,
            reason,
        }
    }
}

/// An event id that this server could never have issued.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("malformed event id {0:?}: expected the form EPOCH-SEQ, as the server sends in `id:`")]
pub struct MalformedId(pub String);

/// A timestamp that is not RFC 3339.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("invalid timestamp {0:?}: expected RFC 3339, such as 2026-11-22T17:00:00.123Z")]
pub struct InvalidTimestamp(pub String);
