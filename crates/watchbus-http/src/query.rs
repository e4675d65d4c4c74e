//! Strict decoding of query strings.
//!
//! `application/x-www-form-urlencoded` rules (`+` is a space), but a `%` not
//! followed by two hex digits, or bytes that do not decode to UTF-8, are an
//! error rather than something to guess at.

use std::borrow::Cow;

use crate::error::ApiError;

/// The decoded `name=value` pairs of a query string, in order. Parts that
/// need no decoding borrow from the query string.
#[derive(Debug, Default, Clone)]
pub(crate) struct Query<'a> {
    pairs: Vec<(Cow<'a, str>, Cow<'a, str>)>,
}

fn decode(part: &str) -> Result<Cow<'_, str>, ApiError> {
    let bytes = part.as_bytes();
    // Most names and values need no decoding (keys are plain paths).
    if !bytes.iter().any(|&byte| byte == b'%' || byte == b'+') {
        return Ok(Cow::Borrowed(part));
    }
    for (at, &byte) in bytes.iter().enumerate() {
        if byte == b'%' {
            let hex = bytes
                .get(at + 1..at + 3)
                .is_some_and(|pair| pair.iter().all(u8::is_ascii_hexdigit));
            if !hex {
                return Err(ApiError::InvalidQuery(format!(
                    "{:?} has a % not followed by two hex digits",
                    truncate(part)
                )));
            }
        }
    }
    let spaced = part.replace('+', " ");
    percent_encoding::percent_decode_str(&spaced)
        .decode_utf8()
        .map(|text| Cow::Owned(text.into_owned()))
        .map_err(|_| {
            ApiError::InvalidQuery(format!("{:?} does not decode to UTF-8", truncate(part)))
        })
}

fn truncate(text: &str) -> String {
    text.chars().take(64).collect()
}

impl<'a> Query<'a> {
    /// Parses a raw query string (without the `?`).
    pub(crate) fn parse(raw: Option<&'a str>) -> Result<Self, ApiError> {
        let mut pairs = Vec::new();
        for part in raw.unwrap_or_default().split('&').filter(|p| !p.is_empty()) {
            let (name, value) = part.split_once('=').unwrap_or((part, ""));
            pairs.push((decode(name)?, decode(value)?));
        }
        Ok(Self { pairs })
    }

    /// Every value of `name`, in order.
    pub(crate) fn all<'q, 'n>(
        &'q self,
        name: &'n str,
    ) -> impl Iterator<Item = &'q str> + use<'q, 'a, 'n> {
        self.pairs
            .iter()
            .filter(move |(n, _)| n == name)
            .map(|(_, v)| &**v)
    }

    /// The last non-empty value of `name`.
    pub(crate) fn last(&self, name: &str) -> Option<&str> {
        self.all(name).filter(|v| !v.is_empty()).last()
    }

    /// True when `name` appears at all.
    pub(crate) fn has(&self, name: &str) -> bool {
        self.all(name).next().is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_plus_percent_and_repeats() {
        let q = Query::parse(Some(
            "key=a%2Fb&key=c+d&from_timestamp=2026-11-22T18:00:00+01:00&x",
        ))
        .unwrap();
        assert_eq!(q.all("key").collect::<Vec<_>>(), ["a/b", "c d"]);
        assert_eq!(q.last("from_timestamp"), Some("2026-11-22T18:00:00 01:00"));
        assert!(q.has("x"));
        assert_eq!(q.last("x"), None);
    }

    #[test]
    fn plain_parts_borrow_from_the_query() {
        let q = Query::parse(Some("key=a/b&type=c%2Fd")).unwrap();
        assert!(matches!(
            q.pairs[0],
            (Cow::Borrowed("key"), Cow::Borrowed("a/b"))
        ));
        assert!(matches!(&q.pairs[1].1, Cow::Owned(v) if v == "c/d"));
    }

    #[test]
    fn rejects_bad_percent_encoding_and_non_utf8() {
        for bad in ["key=%", "key=%zz", "key=%4", "key=%ff%fe", "%c3=1"] {
            assert!(Query::parse(Some(bad)).is_err(), "{bad}");
        }
    }
}
