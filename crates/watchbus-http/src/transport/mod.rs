//! The two ways a subscription reaches a client.

use std::pin::Pin;
use std::time::{Duration, SystemTime};

use tokio::time::{Instant, Sleep};

pub(crate) mod sse;
pub mod ws;

/// When a stream opened with a scoped token must end: a timer armed only
/// for such streams, so that the others stay as small as before and their
/// `select!` never polls it (guard the branch with [`Expiry::is_armed`]).
struct Expiry(Option<Pin<Box<Sleep>>>);

const CENTURY: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

impl Expiry {
    /// A timer for the wall-clock `expires` (passed already: at once), or
    /// none.
    fn at(expires: Option<SystemTime>) -> Self {
        Self(expires.map(|deadline| {
            let left = deadline
                .duration_since(SystemTime::now())
                .unwrap_or_default();
            // Beyond a century is as good as never, and cannot overflow.
            let left = left.min(CENTURY);
            Box::pin(tokio::time::sleep_until(Instant::now() + left))
        }))
    }

    fn is_armed(&self) -> bool {
        self.0.is_some()
    }

    /// Resolves when the token expires; never without one.
    async fn passed(&mut self) {
        match &mut self.0 {
            Some(sleep) => sleep.as_mut().await,
            None => std::future::pending().await,
        }
    }
}
