//! Idempotent appends: a publisher names a publish request with a key of
//! its own, and a retry of the same request within the store's window is
//! answered with the first append's ids and times instead of being stored
//! again.
//!
//! A publisher cannot tell "not stored" from "stored, but the answer was
//! lost" (a connection that broke, a store that timed out after storing),
//! so it retries, and without a key a retry can store an event twice. With
//! a key it is stored once. A key is remembered with a digest of the
//! request, so reusing a key for a different request is refused rather
//! than answered with another request's ids.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::time::Duration;

use smallvec::SmallVec;
use thiserror::Error;
use watchbus_core::{Draft, EventId, Target, Timestamp};

/// A publisher's name for one publish request: 1 to 255 visible ASCII
/// characters (`!` to `~`), such as a UUID.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct IdempotencyKey(std::sync::Arc<str>);

/// Why a text is not an [`IdempotencyKey`].
#[derive(Debug, Error, PartialEq, Eq)]
#[error("an idempotency key is 1 to 255 visible ASCII characters (no spaces), such as a UUID")]
pub struct InvalidIdempotencyKey;

impl IdempotencyKey {
    /// The longest key, in bytes.
    pub const MAX_LEN: usize = 255;

    /// `text` as a key.
    ///
    /// # Errors
    /// [`InvalidIdempotencyKey`] when it is empty, longer than
    /// [`Self::MAX_LEN`], or holds anything but `!` to `~`.
    pub fn new(text: &str) -> Result<Self, InvalidIdempotencyKey> {
        let visible = text.bytes().all(|b| b.is_ascii_graphic());
        if text.is_empty() || text.len() > Self::MAX_LEN || !visible {
            return Err(InvalidIdempotencyKey);
        }
        Ok(Self(text.into()))
    }

    /// The key as given.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for IdempotencyKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// One idempotent request: its key and a digest of what it publishes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Once {
    key: IdempotencyKey,
    digest: Digest,
}

/// A SHA-1 digest of a request's events.
type Digest = [u8; 20];

impl Once {
    /// The request that publishes `drafts` under `key`. The digest (SHA-1)
    /// covers each draft's target, type and data in order, so every
    /// node of a cluster computes the same one.
    pub fn new(key: IdempotencyKey, drafts: &[Draft]) -> Self {
        let mut sha = sha1_smol::Sha1::new();
        for draft in drafts {
            let (kind, target) = match &draft.target {
                Target::Key(key) => (b"k", key.as_str()),
                Target::Prefix(prefix) => (b"p", prefix.as_str()),
            };
            let event_type = draft.event_type.as_ref().map_or("", |t| t.as_str());
            sha.update(kind);
            // Each part with its length, so no two requests run together
            // into the same bytes.
            for part in [target, event_type, draft.data.as_json()] {
                sha.update(&(part.len() as u64).to_le_bytes());
                sha.update(part.as_bytes());
            }
        }
        Self {
            key,
            digest: sha.digest().bytes(),
        }
    }

    /// The key.
    pub fn key(&self) -> &IdempotencyKey {
        &self.key
    }

    /// The request's digest, in hex.
    pub fn digest(&self) -> String {
        use std::fmt::Write as _;
        let mut hex = String::with_capacity(2 * self.digest.len());
        for byte in self.digest {
            // Writing to a `String` cannot fail.
            let _ = write!(hex, "{byte:02x}");
        }
        hex
    }
}

/// An event's id and time, as a publish answers them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Receipt {
    /// The event's id.
    pub id: EventId,
    /// When it was accepted.
    pub time: Timestamp,
}

/// What an idempotent append did.
#[derive(Debug, Clone)]
pub enum Appended {
    /// The events were stored now.
    Stored(Vec<std::sync::Arc<watchbus_core::Event>>),
    /// The same request was stored before, within the window: these are
    /// its receipts, and nothing was stored now.
    Replayed(Vec<Receipt>),
}

impl Appended {
    /// The receipts, whichever happened.
    pub fn receipts(&self) -> Vec<Receipt> {
        match self {
            Self::Stored(events) => events
                .iter()
                .map(|event| Receipt {
                    id: event.id(),
                    time: event.time(),
                })
                .collect(),
            Self::Replayed(receipts) => receipts.clone(),
        }
    }
}

/// The idempotency keys an in-process store remembers, oldest first, for
/// its window and up to its most keys.
#[derive(Debug)]
pub(crate) struct Remembered {
    /// The most keys remembered; past it, the oldest is forgotten before
    /// its window ends.
    max_keys: usize,
    // One allocation per key, shared by both tables: a full table forgets a
    // key and remembers another on every keyed publish.
    by_key: HashMap<IdempotencyKey, (Digest, SmallVec<[Receipt; 1]>)>,
    /// When each key was remembered, oldest first.
    order: VecDeque<(Timestamp, IdempotencyKey)>,
    /// Keys forgotten at the most keys, before their window ended: a retry
    /// of one of them would be stored again.
    forgotten_early: u64,
    /// When that was last logged, so a flood of keyed publishes logs once
    /// a minute, not once a publish.
    warned_at: Option<Timestamp>,
}

/// What a store does with an idempotent request.
pub(crate) enum Seen {
    /// Not seen within the window: append it, then [`Remembered::note`].
    New,
    /// Seen: answer these receipts.
    Replay(Vec<Receipt>),
}

impl Default for Remembered {
    fn default() -> Self {
        Self::new(Self::DEFAULT_MAX_KEYS)
    }
}

impl Remembered {
    /// The most keys remembered unless told otherwise: about 15 MB of UUID
    /// keys.
    pub(crate) const DEFAULT_MAX_KEYS: usize = 100_000;

    /// An empty table of at most `max_keys` keys (at least one).
    pub(crate) fn new(max_keys: usize) -> Self {
        Self {
            max_keys: max_keys.max(1),
            by_key: HashMap::new(),
            order: VecDeque::new(),
            forgotten_early: 0,
            warned_at: None,
        }
    }

    /// Whether `once` was seen within `window` before `now`.
    ///
    /// # Errors
    /// [`super::StoreError::KeyReused`] when its key was seen with another
    /// request.
    pub(crate) fn check(
        &mut self,
        once: &Once,
        now: Timestamp,
        window: Duration,
    ) -> Result<Seen, super::StoreError> {
        self.forget_before(now, window);
        match self.by_key.get(once.key()) {
            None => Ok(Seen::New),
            Some((digest, receipts)) if *digest == once.digest => {
                Ok(Seen::Replay(receipts.to_vec()))
            }
            Some(_) => Err(super::StoreError::KeyReused(once.key().clone())),
        }
    }

    /// Remembers `once` and what its append answered, at `now`.
    pub(crate) fn note(&mut self, once: &Once, now: Timestamp, receipts: Vec<Receipt>) {
        if self.order.len() >= self.max_keys {
            // `check` forgot every key past its window, so this one's
            // window has not ended: say so, since retries are no longer
            // safe for as long as the window promises.
            self.forgotten_early += 1;
            if let Some((at, _)) = self.order.front() {
                self.warn_forgotten_early(now, now.as_millis().saturating_sub(at.as_millis()));
            }
            self.forget_oldest();
        }
        self.by_key
            .insert(once.key().clone(), (once.digest, receipts.into()));
        self.order.push_back((now, once.key().clone()));
    }

    /// Logs, at most once a minute, that keys are forgotten `age_ms` after
    /// their publish, before their window ends.
    fn warn_forgotten_early(&mut self, now: Timestamp, age_ms: u64) {
        const EVERY_MS: u64 = 60_000;
        if self
            .warned_at
            .is_some_and(|at| now.as_millis() < at.as_millis().saturating_add(EVERY_MS))
        {
            return;
        }
        self.warned_at = Some(now);
        tracing::warn!(
            max_keys = self.max_keys,
            forgotten_early = self.forgotten_early,
            "idempotency keys are forgotten {:?} after their publish, before the window ends: \
             the memory store remembers at most {} keys, and a retry after that is stored again \
             (raise the limit: `serve --idempotency-max-keys`, \
             `MemoryStore::with_max_idempotency_keys`)",
            Duration::from_millis(age_ms),
            self.max_keys,
        );
    }

    /// The table at `now`, once the keys past `window` are forgotten.
    pub(crate) fn stats(&mut self, now: Timestamp, window: Duration) -> super::KeyTableStats {
        self.forget_before(now, window);
        super::KeyTableStats {
            remembered: self.order.len() as u64,
            forgotten_early: self.forgotten_early,
        }
    }

    fn forget_before(&mut self, now: Timestamp, window: Duration) {
        let window = u64::try_from(window.as_millis()).unwrap_or(u64::MAX);
        while let Some((at, _)) = self.order.front() {
            if at.as_millis().saturating_add(window) > now.as_millis() {
                break;
            }
            self.forget_oldest();
        }
    }

    fn forget_oldest(&mut self) {
        if let Some((_, key)) = self.order.pop_front() {
            self.by_key.remove(&key);
        }
    }
}

#[cfg(test)]
mod tests {
    use watchbus_core::{Data, Key};

    use super::*;

    fn draft(key: &str, data: &str) -> Draft {
        Draft::to_key(Key::new(key).unwrap(), Data::text(data))
    }

    fn once(key: &str, drafts: &[Draft]) -> Once {
        Once::new(IdempotencyKey::new(key).unwrap(), drafts)
    }

    fn receipt(seq: u64) -> Vec<Receipt> {
        vec![Receipt {
            id: EventId::new(1, seq),
            time: Timestamp(5),
        }]
    }

    #[test]
    fn keys_are_visible_ascii_of_1_to_255_bytes() {
        assert!(IdempotencyKey::new("8e03978e-40d5-43e8-bc93-6894a57f9324").is_ok());
        assert!(IdempotencyKey::new(&"x".repeat(255)).is_ok());
        for bad in ["", "a b", "tab\t", "é", &"x".repeat(256)] {
            assert_eq!(
                IdempotencyKey::new(bad),
                Err(InvalidIdempotencyKey),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn the_digest_tells_requests_apart_and_only_them() {
        let one = [draft("a", "1")];
        assert_eq!(once("k", &one).digest(), once("k", &one).digest());
        // The same on every node and every version: it is kept in Redis.
        assert_eq!(
            once("k", &one).digest(),
            "6454113e26c708ede0e1d9a02862c6c911969f2e"
        );
        for other in [
            vec![draft("a", "2")],
            vec![draft("b", "1")],
            vec![draft("a", "1"), draft("a", "1")],
            vec![Draft::to_prefix(
                watchbus_core::KeyPrefix::new("a").unwrap(),
                Data::text("1"),
            )],
        ] {
            assert_ne!(
                once("k", &one).digest(),
                once("k", &other).digest(),
                "{other:?}"
            );
        }
        // Lengths keep the parts apart: "ab" + "" is not "a" + "b".
        let typed = |key: &str, t: &str| {
            let mut d = draft(key, "");
            d.event_type = Some(watchbus_core::EventType::new(t).unwrap());
            d
        };
        assert_ne!(
            once("k", &[typed("ab", "c")]).digest(),
            once("k", &[typed("a", "bc")]).digest()
        );
    }

    #[test]
    fn a_key_is_replayed_within_its_window_and_refused_for_another_request() {
        let window = Duration::from_secs(10);
        let mut remembered = Remembered::default();
        let first = once("k", &[draft("a", "1")]);
        assert!(matches!(
            remembered.check(&first, Timestamp(1_000), window),
            Ok(Seen::New)
        ));
        remembered.note(&first, Timestamp(1_000), receipt(7));
        match remembered.check(&first, Timestamp(10_999), window) {
            Ok(Seen::Replay(receipts)) => assert_eq!(receipts, receipt(7)),
            _ => panic!("not replayed within the window"),
        }
        let other = once("k", &[draft("a", "2")]);
        assert!(matches!(
            remembered.check(&other, Timestamp(2_000), window),
            Err(super::super::StoreError::KeyReused(key)) if key.as_str() == "k"
        ));
        // At the window's end it is forgotten, and the key is free again.
        assert!(matches!(
            remembered.check(&other, Timestamp(11_000), window),
            Ok(Seen::New)
        ));
        assert!(remembered.by_key.is_empty() && remembered.order.is_empty());
    }

    #[test]
    fn past_the_most_keys_the_oldest_is_forgotten_first() {
        let window = Duration::from_secs(60);
        let mut remembered = Remembered::new(3);
        for n in 0..=3 {
            let key = once(&format!("k{n}"), &[]);
            remembered.note(&key, Timestamp(1), receipt(n as u64));
        }
        assert_eq!(remembered.by_key.len(), 3);
        assert_eq!(remembered.forgotten_early, 1);
        assert_eq!(remembered.warned_at, Some(Timestamp(1)));
        assert!(matches!(
            remembered.check(&once("k0", &[]), Timestamp(2), window),
            Ok(Seen::New)
        ));
        assert!(matches!(
            remembered.check(&once("k1", &[]), Timestamp(2), window),
            Ok(Seen::Replay(r)) if r == receipt(1)
        ));
    }

    #[test]
    fn keys_forgotten_before_their_window_are_counted_and_logged_once_a_minute() {
        let mut remembered = Remembered::new(3);
        for n in 0..3 {
            remembered.note(&once(&format!("k{n}"), &[]), Timestamp(1), receipt(0));
        }
        assert_eq!(
            (remembered.forgotten_early, remembered.warned_at),
            (0, None)
        );
        let mut note = |n: usize, at: u64| {
            remembered.note(&once(&format!("new{n}"), &[]), Timestamp(at), receipt(0));
            (remembered.forgotten_early, remembered.warned_at)
        };
        assert_eq!(note(0, 1_000), (1, Some(Timestamp(1_000))));
        assert_eq!(note(1, 60_999), (2, Some(Timestamp(1_000))));
        assert_eq!(note(2, 61_000), (3, Some(Timestamp(61_000))));
    }

    #[test]
    fn stats_count_the_keys_within_their_window_and_those_forgotten_early() {
        let window = Duration::from_secs(10);
        let mut remembered = Remembered::new(3);
        let stats = |remembered: u64, forgotten_early: u64| super::super::KeyTableStats {
            remembered,
            forgotten_early,
        };
        assert_eq!(remembered.stats(Timestamp(0), window), stats(0, 0));
        remembered.note(&once("a", &[]), Timestamp(1_000), receipt(1));
        remembered.note(&once("b", &[]), Timestamp(2_000), receipt(2));
        assert_eq!(remembered.stats(Timestamp(10_999), window), stats(2, 0));
        // "a"'s window ended: it is no longer counted, with no keyed publish
        // in between to forget it.
        assert_eq!(remembered.stats(Timestamp(11_000), window), stats(1, 0));
        for n in 0..3 {
            remembered.note(&once(&format!("k{n}"), &[]), Timestamp(11_500), receipt(0));
        }
        assert_eq!(remembered.stats(Timestamp(11_500), window), stats(3, 1));
    }

    #[test]
    fn a_table_holds_at_least_one_key() {
        let window = Duration::from_secs(60);
        let mut remembered = Remembered::new(0);
        let first = once("a", &[]);
        remembered.note(&first, Timestamp(1), receipt(1));
        // Nothing was forgotten to make room for the first key.
        let stats = remembered.stats(Timestamp(2), window);
        assert_eq!((stats.remembered, stats.forgotten_early), (1, 0));
        assert!(matches!(
            remembered.check(&first, Timestamp(2), window),
            Ok(Seen::Replay(r)) if r == receipt(1)
        ));
    }
}
