//! Validated names: [`Key`], [`KeyPrefix`] and [`EventType`].
//!
//! Input is checked once, at the edge, and the newtypes are trusted
//! everywhere inside: a `Key` is always 1..=1024 bytes of UTF-8 without ASCII
//! control characters, an `EventType` always 1..=128 characters of
//! `[A-Za-z0-9._:/-]`.

use std::borrow::Borrow;
use std::fmt;
use std::sync::Arc;

use crate::error::InvalidName;

/// Longest key or prefix, in bytes.
pub const MAX_KEY_BYTES: usize = 1024;
/// Longest event type, in characters (all ASCII, so also bytes).
pub const MAX_TYPE_CHARS: usize = 128;

fn check_key_text(text: &str, what: &'static str) -> Result<(), InvalidName> {
    if text.is_empty() {
        return Err(InvalidName::new(what, text, "must not be empty"));
    }
    if text.len() > MAX_KEY_BYTES {
        return Err(InvalidName::new(what, text, "is longer than 1024 bytes"));
    }
    if text.bytes().any(|b| b.is_ascii_control()) {
        return Err(InvalidName::new(
            what,
            text,
            "contains an ASCII control character",
        ));
    }
    Ok(())
}

macro_rules! shared_name {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(Arc<str>);

        impl $name {
            /// The validated text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Debug::fmt(&*self.0, f)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl Borrow<str> for $name {
            fn borrow(&self) -> &str {
                &self.0
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl std::str::FromStr for $name {
            type Err = InvalidName;
            fn from_str(s: &str) -> Result<Self, InvalidName> {
                Self::new(s)
            }
        }

        impl TryFrom<&str> for $name {
            type Error = InvalidName;
            fn try_from(s: &str) -> Result<Self, InvalidName> {
                Self::new(s)
            }
        }

        impl TryFrom<String> for $name {
            type Error = InvalidName;
            fn try_from(s: String) -> Result<Self, InvalidName> {
                Self::new(&s)
            }
        }
    };
}

shared_name! {
    /// An event key: 1..=1024 bytes of UTF-8 with no ASCII control
    /// characters. `/` is conventional but has no special meaning.
    Key
}

shared_name! {
    /// A key prefix, with the same rules as a [`Key`]. Prefix `foo` matches
    /// keys `foo`, `foo1` and `foo/bar`: a plain string prefix.
    KeyPrefix
}

shared_name! {
    /// An event type: 1..=128 characters of `[A-Za-z0-9._:/-]`, such as
    /// `user.created`. It becomes the SSE `event:` field, so it can never
    /// break a frame.
    EventType
}

impl Key {
    /// Validates `text` as a key.
    ///
    /// # Errors
    /// [`InvalidName`] when it is empty, over 1024 bytes or holds a control
    /// character.
    pub fn new(text: &str) -> Result<Self, InvalidName> {
        check_key_text(text, "key")?;
        Ok(Self(Arc::from(text)))
    }

    /// True when this key starts with `prefix` (byte-wise, which for UTF-8 is
    /// the same as character-wise).
    pub fn starts_with(&self, prefix: &str) -> bool {
        self.0.starts_with(prefix)
    }
}

impl KeyPrefix {
    /// Validates `text` as a key prefix.
    ///
    /// # Errors
    /// [`InvalidName`] when it is empty, over 1024 bytes or holds a control
    /// character.
    pub fn new(text: &str) -> Result<Self, InvalidName> {
        check_key_text(text, "prefix")?;
        Ok(Self(Arc::from(text)))
    }
}

impl EventType {
    /// Validates `text` as an event type.
    ///
    /// # Errors
    /// [`InvalidName`] when it is empty, over 128 characters or holds a
    /// character outside `[A-Za-z0-9._:/-]`.
    pub fn new(text: &str) -> Result<Self, InvalidName> {
        if text.is_empty() {
            return Err(InvalidName::new("type", text, "must not be empty"));
        }
        if text.len() > MAX_TYPE_CHARS {
            return Err(InvalidName::new(
                "type",
                text,
                "is longer than 128 characters",
            ));
        }
        let allowed =
            |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'/' | b'-');
        if !text.bytes().all(allowed) {
            return Err(InvalidName::new(
                "type",
                text,
                "may only hold the characters A-Z a-z 0-9 . _ : / -",
            ));
        }
        Ok(Self(Arc::from(text)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_accept_unicode_and_slashes() {
        assert_eq!(
            Key::new("users/42/ünï")
                .map(|k| k.to_string())
                .ok()
                .as_deref(),
            Some("users/42/ünï")
        );
        assert!(Key::new(&"k".repeat(1024)).is_ok());
    }

    #[test]
    fn keys_reject_empty_long_and_control() {
        assert!(Key::new("").is_err());
        assert!(Key::new(&"k".repeat(1025)).is_err());
        for bad in ["a\nb", "a\rb", "tab\there", "nul\0", "del\x7f"] {
            assert!(Key::new(bad).is_err(), "{bad:?} should be rejected");
            assert!(
                KeyPrefix::new(bad).is_err(),
                "{bad:?} should be rejected as prefix"
            );
        }
    }

    #[test]
    fn types_allow_only_their_alphabet() {
        for good in ["user.created", "a", "A-Z_0:9/x", &"t".repeat(128)] {
            assert!(EventType::new(good).is_ok(), "{good:?}");
        }
        for bad in ["", "with space", "new\nline", "ü", "a,b", &"t".repeat(129)] {
            assert!(EventType::new(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn errors_name_the_field_and_reason() {
        let err = EventType::new("a b").err().map(|e| e.to_string());
        assert_eq!(
            err.as_deref(),
            Some("invalid type \"a b\": may only hold the characters A-Z a-z 0-9 . _ : / -")
        );
    }
}
