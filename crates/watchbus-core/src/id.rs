//! Event ids: `EPOCH-SEQ`.
//!
//! The epoch names one life of a store's log (a process start for the memory
//! store, the creation of the stream for Redis) and is taken from the clock
//! in milliseconds, so a later life has a larger epoch. `SEQ` counts events
//! within the epoch from 1. Ids therefore compare as `(epoch, seq)` and never
//! repeat, not even across a restart: an id from an earlier epoch is simply
//! older than everything retained, and a resume from it is `410 Gone`.

use std::fmt;
use std::str::FromStr;

use crate::error::MalformedId;

/// The position of an event in a store's single ordered log.
///
/// `seq` 0 is "before the first event of the epoch": the position of a
/// subscriber that started on an empty log. It is never the id of an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct EventId {
    /// The log's life this id belongs to.
    pub epoch: u64,
    /// The event's place in that life, counting from 1.
    pub seq: u64,
}

impl EventId {
    /// The id at `seq` within `epoch`.
    pub const fn new(epoch: u64, seq: u64) -> Self {
        Self { epoch, seq }
    }
}

impl EventId {
    /// Appends the same text as `Display` (`EPOCH-SEQ`), without the
    /// formatter: every frame and receipt prints an id.
    pub fn push_text(self, out: &mut String) {
        // Writing into a String cannot fail.
        let _ = self.write_text(out);
    }

    /// `EPOCH-SEQ` through `itoa`, for `Display` and `push_text` alike.
    fn write_text(self, out: &mut impl fmt::Write) -> fmt::Result {
        out.write_str(itoa::Buffer::new().format(self.epoch))?;
        out.write_char('-')?;
        out.write_str(itoa::Buffer::new().format(self.seq))
    }
}

impl fmt::Display for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.write_text(f)
    }
}

fn digits(text: &str) -> Option<u64> {
    // `u64::from_str` accepts a leading `+`, and leading zeros; an id
    // printed never has either.
    if text.is_empty() || text.len() > 20 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if text.len() > 1 && text.starts_with('0') {
        return None;
    }
    text.parse().ok()
}

impl FromStr for EventId {
    type Err = MalformedId;

    /// Parses the exact form the server prints; anything else is malformed.
    fn from_str(text: &str) -> Result<Self, MalformedId> {
        let malformed = || MalformedId(text.chars().take(64).collect());
        let (epoch, seq) = text.split_once('-').ok_or_else(malformed)?;
        match (digits(epoch), digits(seq)) {
            (Some(epoch), Some(seq)) => Ok(Self { epoch, seq }),
            _ => Err(malformed()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn pushed_text_is_the_displayed_text() {
        let mut out = String::from("id:");
        EventId::new(1_795_452_000_123, 42).push_text(&mut out);
        assert_eq!(out, "id:1795452000123-42");
    }

    #[test]
    fn parses_what_it_prints() {
        let id = EventId::new(1_795_452_000_123, 42);
        assert_eq!(id.to_string(), "1795452000123-42");
        assert_eq!("1795452000123-42".parse::<EventId>(), Ok(id));
        // A zero is one digit: an empty log's position prints `<epoch>-0`.
        assert_eq!("0-0".parse::<EventId>(), Ok(EventId::new(0, 0)));
        assert_eq!("10-0".parse::<EventId>(), Ok(EventId::new(10, 0)));
    }

    #[test]
    fn rejects_everything_else() {
        for bad in [
            "",
            "-",
            "1-",
            "-1",
            "1",
            "a-1",
            "1-a",
            "+1-2",
            "1-+2",
            "01-2",
            "1-02",
            "00-0",
            "0-00",
            "1-2-3",
            " 1-2",
            "1-2 ",
            "99999999999999999999999-1",
        ] {
            assert!(
                bad.parse::<EventId>().is_err(),
                "{bad:?} should be malformed"
            );
        }
    }

    #[test]
    fn orders_by_epoch_then_seq() {
        assert!(EventId::new(1, 999) < EventId::new(2, 1));
        assert!(EventId::new(2, 1) < EventId::new(2, 2));
    }

    proptest! {
        #[test]
        fn display_round_trips(epoch: u64, seq: u64) {
            let id = EventId::new(epoch, seq);
            prop_assert_eq!(id.to_string().parse::<EventId>(), Ok(id));
        }

        #[test]
        fn parsing_arbitrary_text_never_panics(text in ".{0,40}") {
            let _ = text.parse::<EventId>();
        }
    }
}
