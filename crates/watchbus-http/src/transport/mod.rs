//! The two ways a subscription reaches a client.

use std::pin::Pin;
use std::time::SystemTime;

use tokio::time::Sleep;

pub(crate) mod sse;
pub mod ws;

/// When a stream opened with a scoped token must end: a timer armed only
/// for such streams, so that the others stay as small as before and their
/// `select!` never polls it (guard the branch with [`Expiry::is_armed`]).
struct Expiry(Option<Pin<Box<Sleep>>>);

impl Expiry {
    /// A timer for the wall-clock `expires` (passed already: at once), or
    /// none.
    fn at(expires: Option<SystemTime>) -> Self {
        Self(expires.map(|deadline| {
            let left = deadline
                .duration_since(SystemTime::now())
                .unwrap_or_default();
            Box::pin(tokio::time::sleep_until(crate::deadline::after(left)))
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
