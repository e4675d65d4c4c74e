//! Subscription filters and the matching rules of the contract.
//!
//! An event matches a filter when its key matches one of the filter's keys
//! (exactly) or prefixes (plain string prefix), or the filter names no keys
//! and no prefixes; and, when the filter names types, the event's type is one
//! of them (an untyped event matches no type filter).
//!
//! A broadcast to prefix `P` matches when some key the filter could match
//! starts with `P`: an exact key starting with `P`, a prefix `Q` where one of
//! `P`, `Q` starts with the other, or a filter of all keys.

use thiserror::Error;

use crate::event::{Event, Target};
use crate::key::{EventType, Key, KeyPrefix};

/// The most keys and prefixes (together), and the most types, one
/// subscription may name unless configured otherwise.
pub const DEFAULT_MAX_FILTERS: usize = 64;

/// A filter over too many keys/prefixes or types.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum FilterError {
    /// More keys and prefixes than allowed.
    #[error("too many keys and prefixes: {given} given, at most {max} allowed")]
    TooManyKeys {
        /// How many were given.
        given: usize,
        /// The limit.
        max: usize,
    },
    /// More event types than allowed.
    #[error("too many event types: {given} given, at most {max} allowed")]
    TooManyTypes {
        /// How many were given.
        given: usize,
        /// The limit.
        max: usize,
    },
}

/// What a subscription wants: keys, prefixes and types. Duplicates are
/// removed; an empty filter matches every event.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    keys: Vec<Key>,
    prefixes: Vec<KeyPrefix>,
    types: Vec<EventType>,
}

fn dedup<T: Ord>(mut items: Vec<T>) -> Vec<T> {
    items.sort();
    items.dedup();
    items
}

impl Filter {
    /// Every event.
    pub fn all() -> Self {
        Self::default()
    }

    /// A filter within `max` keys+prefixes and `max` types.
    ///
    /// # Errors
    /// [`FilterError`] when a limit is exceeded (counted after duplicates are
    /// removed).
    pub fn new(
        keys: Vec<Key>,
        prefixes: Vec<KeyPrefix>,
        types: Vec<EventType>,
        max: usize,
    ) -> Result<Self, FilterError> {
        let (keys, prefixes, types) = (dedup(keys), dedup(prefixes), dedup(types));
        if keys.len() + prefixes.len() > max {
            return Err(FilterError::TooManyKeys {
                given: keys.len() + prefixes.len(),
                max,
            });
        }
        if types.len() > max {
            return Err(FilterError::TooManyTypes {
                given: types.len(),
                max,
            });
        }
        Ok(Self {
            keys,
            prefixes,
            types,
        })
    }

    /// Exactly these keys.
    pub fn keys(keys: impl IntoIterator<Item = Key>) -> Self {
        Self {
            keys: dedup(keys.into_iter().collect()),
            ..Self::default()
        }
    }

    /// Every key with one of these prefixes.
    pub fn prefixes(prefixes: impl IntoIterator<Item = KeyPrefix>) -> Self {
        Self {
            prefixes: dedup(prefixes.into_iter().collect()),
            ..Self::default()
        }
    }

    /// The same filter, narrowed to these types.
    #[must_use]
    pub fn with_types(mut self, types: impl IntoIterator<Item = EventType>) -> Self {
        self.types = dedup(types.into_iter().collect());
        self
    }

    /// The exact keys.
    pub fn key_list(&self) -> &[Key] {
        &self.keys
    }

    /// The prefixes.
    pub fn prefix_list(&self) -> &[KeyPrefix] {
        &self.prefixes
    }

    /// The types.
    pub fn type_list(&self) -> &[EventType] {
        &self.types
    }

    /// True when the filter names no keys and no prefixes.
    pub fn is_all_keys(&self) -> bool {
        self.keys.is_empty() && self.prefixes.is_empty()
    }

    /// True when an event of this type passes the type filter.
    pub fn matches_type(&self, event_type: Option<&EventType>) -> bool {
        self.types.is_empty() || event_type.is_some_and(|t| self.types.binary_search(t).is_ok())
    }

    /// True when an event sent to `target` passes the key/prefix filter.
    pub fn matches_target(&self, target: &Target) -> bool {
        if self.is_all_keys() {
            return true;
        }
        match target {
            Target::Key(key) => {
                self.keys.binary_search(key).is_ok()
                    || self.prefixes.iter().any(|q| key.starts_with(q.as_str()))
            }
            Target::Prefix(p) => {
                let p = p.as_str();
                self.keys.iter().any(|k| k.starts_with(p))
                    || self
                        .prefixes
                        .iter()
                        .any(|q| q.as_str().starts_with(p) || p.starts_with(q.as_str()))
            }
        }
    }

    /// True when the event matches: its target and its type.
    pub fn matches(&self, event: &Event) -> bool {
        self.matches_type(event.event_type()) && self.matches_target(event.target())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn k(s: &str) -> Key {
        Key::new(s).unwrap()
    }
    fn p(s: &str) -> KeyPrefix {
        KeyPrefix::new(s).unwrap()
    }
    fn t(s: &str) -> EventType {
        EventType::new(s).unwrap()
    }

    #[test]
    fn prefix_is_a_plain_string_prefix() {
        let filter = Filter::prefixes([p("foo")]);
        for key in ["foo", "foo1", "foo/bar"] {
            assert!(filter.matches_target(&Target::Key(k(key))), "{key}");
        }
        assert!(!filter.matches_target(&Target::Key(k("fo"))));
        assert!(!filter.matches_target(&Target::Key(k("xfoo"))));
    }

    #[test]
    fn empty_filter_matches_every_key_and_broadcast() {
        let all = Filter::all();
        assert!(all.matches_target(&Target::Key(k("anything"))));
        assert!(all.matches_target(&Target::Prefix(p("any"))));
    }

    #[test]
    fn broadcast_overlap_rule() {
        let keys = Filter::keys([k("room/1")]);
        assert!(keys.matches_target(&Target::Prefix(p("room/"))));
        assert!(keys.matches_target(&Target::Prefix(p("room/1"))));
        assert!(!keys.matches_target(&Target::Prefix(p("room/12"))));
        let prefixes = Filter::prefixes([p("room/1")]);
        assert!(
            prefixes.matches_target(&Target::Prefix(p("room/"))),
            "Q starts with P"
        );
        assert!(
            prefixes.matches_target(&Target::Prefix(p("room/12"))),
            "P starts with Q"
        );
        assert!(!prefixes.matches_target(&Target::Prefix(p("room/2"))));
    }

    #[test]
    fn type_filter_excludes_untyped_events() {
        let filter = Filter::all().with_types([t("a"), t("b")]);
        assert!(filter.matches_type(Some(&t("a"))));
        assert!(!filter.matches_type(Some(&t("c"))));
        assert!(!filter.matches_type(None));
        assert!(Filter::all().matches_type(None));
    }

    #[test]
    fn limits_count_keys_and_prefixes_together_after_dedup() {
        let keys: Vec<Key> = (0..40).map(|i| k(&format!("k{i}"))).collect();
        let prefixes: Vec<KeyPrefix> = (0..24).map(|i| p(&format!("p{i}"))).collect();
        assert!(Filter::new(keys.clone(), prefixes.clone(), vec![], 64).is_ok());
        let mut more = prefixes.clone();
        more.push(p("extra"));
        assert_eq!(
            Filter::new(keys.clone(), more, vec![], 64),
            Err(FilterError::TooManyKeys { given: 65, max: 64 })
        );
        let doubled: Vec<Key> = keys.iter().chain(keys.iter()).cloned().collect();
        assert!(Filter::new(doubled, prefixes, vec![], 64).is_ok());
        let types: Vec<EventType> = (0..65).map(|i| t(&format!("t{i}"))).collect();
        assert_eq!(
            Filter::new(vec![], vec![], types, 64),
            Err(FilterError::TooManyTypes { given: 65, max: 64 })
        );
    }
}
