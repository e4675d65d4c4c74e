//! Deadlines from durations that settings and tokens give, which may be
//! past what the clock counts.

use std::time::Duration;

use tokio::time::Instant;

/// Beyond a century is as good as never for a connection, and adding it to
/// now cannot overflow.
const CENTURY: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// `duration` from now, at most a century: `--idle-timeout 1000000000y`
/// (or a token's `exp` in the year 9999) must not panic a connection's
/// task on an `Instant` overflow.
pub(crate) fn after(duration: Duration) -> Instant {
    Instant::now() + duration.min(CENTURY)
}
