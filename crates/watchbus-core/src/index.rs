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
//!
//! Most keys have one subscriber, so a key's subscribers are stored inline
//! while there is one: a lookup then reads the hash table and nothing else.
//!
//! Every publish hashes its key once here. SipHash, the standard library's
//! default, cost as much as the rest of the dispatch; the tables use
//! foldhash instead, seeded at random per table, as `hashbrown` does by
//! default: several times faster on short keys, and still not predictable
//! by a client choosing keys to collide.

use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, BTreeSet, HashMap};

use foldhash::fast::RandomState;
use indexmap::IndexMap;

use crate::event::Target;
use crate::filter::Filter;
use crate::key::{Key, KeyPrefix};

/// A subscriber's handle in the index.
pub type SubscriberId = u64;

/// The subscribers of one key or prefix.
#[derive(Debug)]
enum Slot<T> {
    One(SubscriberId, T),
    /// Two or more.
    Many(Box<IndexMap<SubscriberId, T>>),
}

impl<T> Slot<T> {
    fn insert(&mut self, id: SubscriberId, value: T) {
        match self {
            Self::Many(map) => {
                map.insert(id, value);
            }
            Self::One(only, only_value) if *only == id => *only_value = value,
            Self::One(..) => {
                let many = Self::Many(Box::new(IndexMap::with_capacity(2)));
                if let Self::One(only, only_value) = std::mem::replace(self, many) {
                    if let Self::Many(map) = self {
                        map.insert(only, only_value);
                        map.insert(id, value);
                    }
                }
            }
        }
    }

    /// Removes `id`; returns whether it was there and whether the slot is
    /// now empty (then the caller drops it).
    fn remove(&mut self, id: SubscriberId) -> (bool, bool) {
        match self {
            Self::One(only, _) => (*only == id, *only == id),
            Self::Many(map) => {
                let found = map.swap_remove(&id).is_some();
                if map.len() == 1 {
                    if let Some((only, value)) = map.pop() {
                        *self = Self::One(only, value);
                    }
                }
                (found, map_is_empty(self))
            }
        }
    }

    fn for_each(&self, visit: &mut impl FnMut(SubscriberId, &T)) {
        match self {
            Self::One(id, value) => visit(*id, value),
            Self::Many(map) => map.iter().for_each(|(id, value)| visit(*id, value)),
        }
    }
}

fn map_is_empty<T>(slot: &Slot<T>) -> bool {
    matches!(slot, Slot::Many(map) if map.is_empty())
}

/// Subscribers by the keys and prefixes of their filters.
#[derive(Debug)]
pub struct MatchIndex<T> {
    exact: HashMap<Key, Slot<T>, RandomState>,
    exact_sorted: BTreeSet<Key>,
    prefixes: HashMap<KeyPrefix, Slot<T>, RandomState>,
    prefixes_sorted: BTreeSet<KeyPrefix>,
    /// Prefix length in bytes → how many prefixes have it.
    prefix_lengths: BTreeMap<usize, usize>,
    all_keys: IndexMap<SubscriberId, T>,
    len: usize,
}

impl<T> Default for MatchIndex<T> {
    fn default() -> Self {
        Self {
            exact: HashMap::default(),
            exact_sorted: BTreeSet::new(),
            prefixes: HashMap::default(),
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
            match self.exact.entry(key.clone()) {
                Entry::Occupied(slot) => slot.into_mut().insert(id, value.clone()),
                Entry::Vacant(slot) => {
                    slot.insert(Slot::One(id, value.clone()));
                    self.exact_sorted.insert(key.clone());
                }
            }
        }
        for prefix in filter.prefix_list() {
            match self.prefixes.entry(prefix.clone()) {
                Entry::Occupied(slot) => slot.into_mut().insert(id, value.clone()),
                Entry::Vacant(slot) => {
                    slot.insert(Slot::One(id, value.clone()));
                    self.prefixes_sorted.insert(prefix.clone());
                    *self
                        .prefix_lengths
                        .entry(prefix.as_str().len())
                        .or_default() += 1;
                }
            }
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
                let (removed, empty) = slot.remove(id);
                found |= removed;
                if empty {
                    self.exact.remove(key);
                    self.exact_sorted.remove(key);
                }
            }
        }
        for prefix in filter.prefix_list() {
            if let Some(slot) = self.prefixes.get_mut(prefix) {
                let (removed, empty) = slot.remove(id);
                found |= removed;
                if empty {
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
        self.all_keys
            .iter()
            .for_each(|(id, value)| visit(*id, value));
        let mut visit_all = |slot: &Slot<T>| slot.for_each(&mut visit);
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
                self.for_each_prefix_of(p, p.len().saturating_sub(1), &mut visit_all);
            }
        }
    }

    /// Visits the slots of indexed prefixes of at most `max_len` bytes that
    /// `text` starts with.
    fn for_each_prefix_of(&self, text: &str, max_len: usize, visit_all: &mut impl FnMut(&Slot<T>)) {
        // Most hubs watch no prefix: a range over the empty map still costs
        // a hundred instructions per publish.
        if self.prefix_lengths.is_empty() {
            return;
        }
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
