//! The two ways a subscription reaches a client.

pub(crate) mod sse;
pub mod ws;

/// The instant of the wall-clock `deadline` (a token's expiry) on tokio's
/// clock: now, if it has passed.
fn instant_of(deadline: std::time::SystemTime) -> tokio::time::Instant {
    let left = deadline
        .duration_since(std::time::SystemTime::now())
        .unwrap_or_default();
    tokio::time::Instant::now() + left
}
