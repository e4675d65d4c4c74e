//! The matching index: from an event's target to the subscribers it may
//! match, without looking at the others.
//!
//! Exact keys live in a hash map; prefixes in a hash map too, looked up once
//! per distinct prefix length that exists (usually a handful), so an event
//! for one key costs a few hash lookups whatever the number of subscribers.
//! Broadcasts, which are rarer, use ordered sets for the "starts with P"
//! ranges. The index yields candidates by key; the type filter and the
//! de-duplication of a subscriber reached twice (say by a key and a prefix)
//! are the caller's.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use indexmap::IndexMap;

use crate::event::Target;
use crate::filter::Filter;
use crate::key::{Key, KeyPrefix};

/// A subscriber's handle in the index.
pub type SubscriberId = u64;

/// Subscribers by the keys and prefixes of their filters.
#[derive(Debug)]
pub struct MatchIndex<T> {
    exact: HashMap<Key, IndexMap<SubscriberId, T>>,
    exact_sorted: BTreeSet<Key>,
    prefixes: HashMap<KeyPrefix, IndexMap<SubscriberId, T>>,
    prefixes_sorted: BTreeSet<KeyPrefix>,
    /// Prefix length in bytes → how many prefixes have it.
    prefix_lengths: BTreeMap<usize, usize>,
    all_keys: IndexMap<SubscriberId, T>,
    len: usize,
}

impl<T> Default for MatchIndex<T> {
    fn default() -> Self {
        Self {
            exact: HashMap::new(),
            exact_sorted: BTreeSet::new(),
            prefixes: HashMap::new(),
            prefixes_sorted: BTreeSet::new(),
            prefix_lengths: BTreeMap::new(),
            all_keys: IndexMap::new(),
            len: 0,
        }
    }
}

impl<T: Clone> MatchIndex<T> {
    /// An empty index.
    pub fn new() -> Self {
        Self::default()
    }

    /// How many subscribers are indexed.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when no subscriber is indexed.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Indexes subscriber `id` under every key and prefix of `filter`.
    /// `id` must not be indexed already.
    pub fn insert(&mut self, id: SubscriberId, filter: &Filter, value: T) {
        self.len += 1;
        if filter.is_all_keys() {
            self.all_keys.insert(id, value);
            return;
        }
        for key in filter.key_list() {
            let slot = self.exact.entry(key.clone()).or_default();
            if slot.is_empty() {
                self.exact_sorted.insert(key.clone());
            }
            slot.insert(id, value.clone());
        }
        for prefix in filter.prefix_list() {
            let slot = self.prefixes.entry(prefix.clone()).or_default();
            if slot.is_empty() {
                self.prefixes_sorted.insert(prefix.clone());
                *self
                    .prefix_lengths
                    .entry(prefix.as_str().len())
                    .or_default() += 1;
            }
            slot.insert(id, value.clone());
        }
    }

    /// Removes subscriber `id`, indexed with this same `filter`. Removing an
    /// id that is not indexed does nothing.
    pub fn remove(&mut self, id: SubscriberId, filter: &Filter) {
        let mut found = false;
        if filter.is_all_keys() {
            found = self.all_keys.swap_remove(&id).is_some();
        }
        for key in filter.key_list() {
            if let Some(slot) = self.exact.get_mut(key) {
                found |= slot.swap_remove(&id).is_some();
                if slot.is_empty() {
                    self.exact.remove(key);
                    self.exact_sorted.remove(key);
                }
            }
        }
        for prefix in filter.prefix_list() {
            if let Some(slot) = self.prefixes.get_mut(prefix) {
                found |= slot.swap_remove(&id).is_some();
                if slot.is_empty() {
                    self.prefixes.remove(prefix);
                    self.prefixes_sorted.remove(prefix);
                    let len = prefix.as_str().len();
                    if let Some(count) = self.prefix_lengths.get_mut(&len) {
                        *count -= 1;
                        if *count == 0 {
                            self.prefix_lengths.remove(&len);
                        }
                    }
                }
            }
        }
        if found {
            self.len -= 1;
        }
    }

    /// Calls `visit` for every subscriber whose keys or prefixes match
    /// `target`. A subscriber reached through several of its keys or
    /// prefixes is visited once for each.
    pub fn for_each_candidate(&self, target: &Target, mut visit: impl FnMut(SubscriberId, &T)) {
        let mut visit_all = |slot: &IndexMap<SubscriberId, T>| {
            slot.iter().for_each(|(id, value)| visit(*id, value))
        };
        visit_all(&self.all_keys);
        match target {
            Target::Key(key) => {
                if let Some(slot) = self.exact.get(key.as_str()) {
                    visit_all(slot);
                }
                self.for_each_prefix_of(key.as_str(), key.as_str().len(), &mut visit_all);
            }
            Target::Prefix(p) => {
                let p = p.as_str();
                let keys = self
                    .exact_sorted
                    .range::<str, _>((std::ops::Bound::Included(p), std::ops::Bound::Unbounded));
                for key in keys.take_while(|k| k.starts_with(p)) {
                    if let Some(slot) = self.exact.get(key) {
                        visit_all(slot);
                    }
                }
                // Prefixes Q that start with P (P itself included)...
                let longer = self
                    .prefixes_sorted
                    .range::<str, _>((std::ops::Bound::Included(p), std::ops::Bound::Unbounded));
                for q in longer.take_while(|q| q.as_str().starts_with(p)) {
                    if let Some(slot) = self.prefixes.get(q) {
                        visit_all(slot);
                    }
                }
                // ...and prefixes Q that P starts with, shorter than P.
                self.for_each_prefix_of(p, p.len() - 1, &mut visit_all);
            }
        }
    }

    /// Visits the slots of indexed prefixes of at most `max_len` bytes that
    /// `text` starts with.
    fn for_each_prefix_of(
        &self,
        text: &str,
        max_len: usize,
        visit_all: &mut impl FnMut(&IndexMap<SubscriberId, T>),
    ) {
        for &len in self.prefix_lengths.range(..=max_len).map(|(len, _)| len) {
            // A prefix ends on a character boundary, so a length that is not
            // one in `text` cannot match.
            if let Some(head) = text.get(..len) {
                if let Some(slot) = self.prefixes.get(head) {
                    visit_all(slot);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::key::EventType;
    use proptest::prelude::*;
    use std::collections::BTreeSet;

    fn candidates(index: &MatchIndex<()>, target: &Target) -> BTreeSet<SubscriberId> {
        let mut out = BTreeSet::new();
        index.for_each_candidate(target, |id, _| {
            out.insert(id);
        });
        out
    }

    #[test]
    fn removes_cleanly_and_ignores_unknown_ids() {
        let mut index = MatchIndex::new();
        let filter =
            Filter::keys([Key::new("a").unwrap()]).with_types([EventType::new("t").unwrap()]);
        index.insert(1, &filter, ());
        index.remove(2, &filter);
        assert_eq!(index.len(), 1);
        index.remove(1, &filter);
        index.remove(1, &filter);
        assert!(index.is_empty());
        assert!(candidates(&index, &Target::Key(Key::new("a").unwrap())).is_empty());
        assert!(index.exact.is_empty() && index.exact_sorted.is_empty());
    }

    /// Small alphabet, so keys and prefixes overlap often.
    fn name() -> impl Strategy<Value = String> {
        "[ab/é]{1,4}"
    }

    fn filter() -> impl Strategy<Value = Filter> {
        (
            prop::collection::vec(name(), 0..3),
            prop::collection::vec(name(), 0..3),
        )
            .prop_map(|(keys, prefixes)| {
                Filter::new(
                    keys.iter().map(|k| Key::new(k).unwrap()).collect(),
                    prefixes
                        .iter()
                        .map(|p| KeyPrefix::new(p).unwrap())
                        .collect(),
                    vec![],
                    64,
                )
                .unwrap()
            })
    }

    fn target() -> impl Strategy<Value = Target> {
        prop_oneof![
            name().prop_map(|k| Target::Key(Key::new(&k).unwrap())),
            name().prop_map(|p| Target::Prefix(KeyPrefix::new(&p).unwrap())),
        ]
    }

    proptest! {
        /// The index finds exactly the subscribers a naive scan of every
        /// filter finds, also after removals.
        #[test]
        fn index_agrees_with_a_naive_scan(
            filters in prop::collection::vec(filter(), 0..12),
            removed in prop::collection::vec(any::<prop::sample::Index>(), 0..4),
            targets in prop::collection::vec(target(), 1..8),
        ) {
            let mut index = MatchIndex::new();
            for (id, f) in filters.iter().enumerate() {
                index.insert(id as u64, f, ());
            }
            let mut live: BTreeSet<u64> = (0..filters.len() as u64).collect();
            if !filters.is_empty() {
                for r in &removed {
                    let id = r.index(filters.len());
                    index.remove(id as u64, &filters[id]);
                    live.remove(&(id as u64));
                }
            }
            prop_assert_eq!(index.len(), live.len());
            for target in &targets {
                let naive: BTreeSet<u64> = live.iter().copied().filter(|&id| filters[id as usize].matches_target(target)).collect();
                prop_assert_eq!(candidates(&index, target), naive, "target {:?}", target);
            }
        }
    }
}
