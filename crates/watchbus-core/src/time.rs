//! Event times: UTC milliseconds, printed as RFC 3339 with three fraction
//! digits and `Z` (`2026-11-22T17:00:00.123Z`).

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::error::InvalidTimestamp;

/// A point in time with millisecond precision, as milliseconds since the
/// Unix epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Timestamp(pub u64);

impl Timestamp {
    /// Milliseconds since 1970-01-01T00:00:00Z.
    pub const fn as_millis(self) -> u64 {
        self.0
    }

    /// Parses RFC 3339 with any offset and any number of fraction digits.
    /// A `+` offset that reached us URL-decoded as a space is accepted.
    /// Fractions below a millisecond round up, so that for event times,
    /// which are whole milliseconds, `time >= parsed` says exactly `time >=
    /// text`; times before 1970 are 0.
    ///
    /// # Errors
    /// [`InvalidTimestamp`] when `text` is not RFC 3339.
    pub fn parse_rfc3339(text: &str) -> Result<Self, InvalidTimestamp> {
        let invalid = || InvalidTimestamp(text.chars().take(64).collect());
        let repaired;
        let mut candidate = text.trim();
        // `2026-11-22T17:00:00 01:00`: the `+` became a space in the query.
        if let Some(space) = candidate.rfind(' ') {
            if candidate.len() - space == 6 {
                repaired = format!(
                    "{}+{}",
                    candidate.get(..space).unwrap_or_default(),
                    candidate.get(space + 1..).unwrap_or_default()
                );
                candidate = &repaired;
            }
        }
        let parsed = OffsetDateTime::parse(candidate, &Rfc3339).map_err(|_| invalid())?;
        let nanos = parsed.unix_timestamp_nanos();
        let millis = nanos.div_euclid(1_000_000) + i128::from(nanos.rem_euclid(1_000_000) != 0);
        Ok(Self(u64::try_from(millis).unwrap_or(0)))
    }
}

impl Timestamp {
    /// Appends the same text as `Display` (`2026-11-22T17:00:00.123Z`),
    /// without the formatter: every receipt and envelope prints a time.
    pub fn push_rfc3339(self, out: &mut String) {
        // Only ASCII digits went in.
        out.push_str(std::str::from_utf8(&self.rfc3339()).unwrap_or_default());
    }

    /// The RFC 3339 text: a fixed-width layout filled in place costs a
    /// tenth of seven formatted fields.
    fn rfc3339(self) -> [u8; 24] {
        let mut text = *b"9999-12-31T23:59:59.999Z";
        let secs = i64::try_from(self.0 / 1000).unwrap_or(i64::MAX);
        // Beyond year 9999 (never produced by a real clock) the text stays
        // the latest time RFC 3339 can show.
        if let Ok(t) = OffsetDateTime::from_unix_timestamp(secs) {
            if t.year() <= 9999 {
                let fields = [
                    (0..4, u32::try_from(t.year()).unwrap_or(0)),
                    (5..7, u32::from(u8::from(t.month()))),
                    (8..10, u32::from(t.day())),
                    (11..13, u32::from(t.hour())),
                    (14..16, u32::from(t.minute())),
                    (17..19, u32::from(t.second())),
                    (20..23, u32::try_from(self.0 % 1000).unwrap_or(0)),
                ];
                for (at, value) in fields {
                    put_digits(text.get_mut(at).unwrap_or_default(), value);
                }
            }
        }
        text
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Only ASCII digits went in.
        f.write_str(std::str::from_utf8(&self.rfc3339()).unwrap_or_default())
    }
}

/// Writes `value` in decimal into `out`, right-aligned and zero-padded.
fn put_digits(out: &mut [u8], mut value: u32) {
    for digit in out.iter_mut().rev() {
        *digit = b'0' + (value % 10) as u8;
        value /= 10;
    }
}

/// The source of event times. The server uses [`SystemClock`]; tests inject
/// a [`ManualClock`] to test `from_timestamp` and retention by age without
/// sleeping.
pub trait Clock: Send + Sync + fmt::Debug + 'static {
    /// The current time.
    fn now(&self) -> Timestamp;
}

/// The operating system's wall clock, to the millisecond.
///
/// Reading the system clock costs tens of nanoseconds on a virtual machine
/// (48 ns on the machine of `docs/BENCHMARKS.md`); the CPU's time-stamp
/// counter costs a fraction of that. So each thread reads the system clock
/// at most every [`SystemClock::REANCHOR`], and in between adds the time
/// the counter measured since (where the CPU has no invariant counter, the
/// monotonic clock stands in). A step of the system clock, forwards or
/// back, is therefore seen within that interval; the drift in between is
/// the counter's, microseconds at most.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl SystemClock {
    /// How long a thread goes on from its last read of the system clock.
    pub const REANCHOR: Duration = Duration::from_millis(100);
}

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        Timestamp(anchored::unix_nanos() / 1_000_000)
    }
}

/// The per-thread pairing of the system clock with the counter.
mod anchored {
    use std::cell::Cell;
    use std::sync::LazyLock;
    use std::time::{SystemTime, UNIX_EPOCH};

    use super::SystemClock;

    /// The counter, calibrated once per process (from 0.5 ms to 200 ms, on
    /// first use).
    static COUNTER: LazyLock<quanta::Clock> = LazyLock::new(quanta::Clock::new);

    /// A system-clock reading and the counter's raw value at it.
    #[derive(Clone, Copy)]
    struct Anchor {
        raw: u64,
        unix_nanos: u64,
    }

    thread_local! {
        /// `raw == 0`: not read yet on this thread.
        static ANCHOR: Cell<Anchor> = const { Cell::new(Anchor { raw: 0, unix_nanos: 0 }) };
    }

    /// Counter reads around a system-clock read further apart than this
    /// were interrupted: the pairing would be off by the interruption.
    const MAX_BRACKET_NANOS: u64 = 20_000;

    // 100 ms fits a u64 many times over.
    #[allow(clippy::cast_possible_truncation)]
    const REANCHOR_NANOS: u64 = SystemClock::REANCHOR.as_nanos() as u64;

    /// Nanoseconds since the Unix epoch.
    pub(super) fn unix_nanos() -> u64 {
        let counter = &*COUNTER;
        let raw = counter.raw();
        let anchor = ANCHOR.get();
        let since = counter.delta_as_nanos(anchor.raw, raw);
        // A counter below the anchor (the thread moved to a core whose
        // counter lags) re-anchors rather than hold the time still.
        if anchor.raw != 0 && raw > anchor.raw && since < REANCHOR_NANOS {
            return anchor.unix_nanos.saturating_add(since);
        }
        let anchor = read_anchor(counter);
        ANCHOR.set(anchor);
        anchor.unix_nanos
    }

    /// Reads the system clock between two counter reads, and keeps the
    /// tightest of a few tries, so a thread preempted mid-read does not
    /// anchor to a stale pairing.
    fn read_anchor(counter: &quanta::Clock) -> Anchor {
        let mut best = bracketed_read(counter);
        for _ in 1..4 {
            if best.0 <= MAX_BRACKET_NANOS {
                break;
            }
            let next = bracketed_read(counter);
            if next.0 < best.0 {
                best = next;
            }
        }
        best.1
    }

    /// A system-clock read paired with the counter at the middle of the two
    /// counter reads around it, and how far apart those were.
    fn bracketed_read(counter: &quanta::Clock) -> (u64, Anchor) {
        let before = counter.raw();
        let unix_nanos = system_unix_nanos();
        let after = counter.raw();
        let raw = before + after.saturating_sub(before) / 2;
        let anchor = Anchor {
            raw: raw.max(1),
            unix_nanos,
        };
        (counter.delta_as_nanos(before, after), anchor)
    }

    fn system_unix_nanos() -> u64 {
        // Before 1970 (a clock set wrong) reads as 1970.
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| {
                d.as_secs()
                    .saturating_mul(1_000_000_000)
                    .saturating_add(u64::from(d.subsec_nanos()))
            })
            .unwrap_or(0)
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn a_thread_rereads_the_system_clock_once_its_anchor_is_old() {
            let started = std::time::Instant::now();
            let first = unix_nanos();
            let anchor = ANCHOR.get();
            assert!(anchor.raw != 0 && anchor.unix_nanos <= first);
            // Soon after: extrapolated from the same anchor (unless this
            // thread was held up past the interval, on a loaded machine).
            unix_nanos();
            if started.elapsed() < SystemClock::REANCHOR {
                assert_eq!(ANCHOR.get().unix_nanos, anchor.unix_nanos);
            }
            std::thread::sleep(SystemClock::REANCHOR + std::time::Duration::from_millis(20));
            let later = unix_nanos();
            let renewed = ANCHOR.get();
            assert_eq!(
                renewed.unix_nanos, later,
                "the read that renews is the system clock's"
            );
            assert!(renewed.unix_nanos >= anchor.unix_nanos + REANCHOR_NANOS);
        }
    }
}

/// A clock that stands still until told to move; for tests.
#[derive(Debug, Clone, Default)]
pub struct ManualClock(Arc<std::sync::atomic::AtomicU64>);

impl ManualClock {
    /// A clock showing `start`.
    pub fn new(start: Timestamp) -> Self {
        Self(Arc::new(std::sync::atomic::AtomicU64::new(start.0)))
    }

    /// Moves the clock forward by `millis`.
    pub fn advance(&self, millis: u64) {
        self.0
            .fetch_add(millis, std::sync::atomic::Ordering::SeqCst);
    }

    /// Sets the clock to `to`.
    pub fn set(&self, to: Timestamp) {
        self.0.store(to.0, std::sync::atomic::Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        Timestamp(self.0.load(std::sync::atomic::Ordering::SeqCst))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn system_millis() -> u64 {
        let since = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap();
        u64::try_from(since.as_millis()).unwrap()
    }

    /// Every reading lies between system-clock readings taken just before
    /// and after it (give or take the millisecond the two round apart), on
    /// a thread's first read, between re-anchorings and across them.
    fn reads_track_the_system_clock() {
        let span = SystemClock::REANCHOR * 3;
        let start = std::time::Instant::now();
        let mut reads = 0;
        while start.elapsed() < span || reads < 10 {
            let before = system_millis();
            let now = SystemClock.now().as_millis();
            let after = system_millis();
            assert!(
                before.saturating_sub(1) <= now && now <= after + 1,
                "read {reads}: {now} is outside [{before}, {after}]"
            );
            reads += 1;
            std::thread::sleep(Duration::from_millis(7));
        }
    }

    #[test]
    fn the_system_clock_tracks_the_system_time() {
        reads_track_the_system_clock();
        // Another thread anchors on its own.
        std::thread::spawn(reads_track_the_system_clock)
            .join()
            .unwrap();
    }

    #[test]
    fn pushed_text_is_the_displayed_text() {
        let mut out = String::from("t:");
        Timestamp(1_795_452_000_123).push_rfc3339(&mut out);
        assert_eq!(out, format!("t:{}", Timestamp(1_795_452_000_123)));
        assert_eq!(out, "t:2026-11-23T16:40:00.123Z");
    }

    #[test]
    fn prints_three_fraction_digits_and_z() {
        assert_eq!(Timestamp(0).to_string(), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            Timestamp(1_795_453_200_123).to_string(),
            "2026-11-23T17:00:00.123Z"
        );
        assert_eq!(
            Timestamp(253_402_300_799_999).to_string(),
            "9999-12-31T23:59:59.999Z"
        );
        // Past what RFC 3339 can show: the latest time it can.
        for beyond in [253_402_300_800_000, u64::MAX] {
            assert_eq!(Timestamp(beyond).to_string(), "9999-12-31T23:59:59.999Z");
        }
    }

    proptest::proptest! {
        /// The same text as the `time` crate's own fields give.
        #[test]
        fn prints_what_time_computes(ms in 0u64..253_402_300_800_000) {
            let t = OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000).unwrap();
            let expected = format!(
                "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
                t.year(), u8::from(t.month()), t.day(), t.hour(), t.minute(), t.second(), t.millisecond()
            );
            proptest::prop_assert_eq!(Timestamp(ms).to_string(), expected);
        }
    }

    #[test]
    fn parses_offsets_fractions_and_decoded_plus() {
        let z = Timestamp::parse_rfc3339("2026-11-22T17:00:00.123Z");
        assert_eq!(
            z.clone().map(|t| t.to_string()).ok().as_deref(),
            Some("2026-11-22T17:00:00.123Z")
        );
        let plus = Timestamp::parse_rfc3339("2026-11-22T18:00:00.123+01:00");
        assert_eq!(plus, z);
        let spaced = Timestamp::parse_rfc3339("2026-11-22T18:00:00.123 01:00");
        assert_eq!(spaced, z);
        // An event at .123 is before .123999: the time to resume at is .124.
        let fine = Timestamp::parse_rfc3339("2026-11-22T17:00:00.123999Z");
        assert_eq!(
            fine.map(|t| t.as_millis()),
            z.clone().map(|t| t.as_millis() + 1)
        );
        let just_over = Timestamp::parse_rfc3339("2026-11-22T17:00:00.123000001Z");
        assert_eq!(
            just_over.map(|t| t.as_millis()),
            z.clone().map(|t| t.as_millis() + 1)
        );
        let exact = Timestamp::parse_rfc3339("2026-11-22T17:00:00.123000Z");
        assert_eq!(exact, z);
        let whole = Timestamp::parse_rfc3339("2026-11-22T17:00:00Z").map(|t| t.to_string());
        assert_eq!(whole.ok().as_deref(), Some("2026-11-22T17:00:00.000Z"));
    }

    #[test]
    fn rejects_non_rfc3339() {
        for bad in [
            "",
            "yesterday",
            "2026-11-22",
            "2026-11-22T17:00:00",
            "1795452000123",
            "2026-13-01T00:00:00Z",
        ] {
            assert!(Timestamp::parse_rfc3339(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn round_trips() {
        for ms in [0, 1, 999, 1_000, 1_795_452_000_123, 253_402_300_799_999] {
            let t = Timestamp(ms);
            assert_eq!(Timestamp::parse_rfc3339(&t.to_string()), Ok(t));
        }
    }
}
