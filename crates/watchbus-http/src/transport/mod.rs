//! The two ways a subscription reaches a client.

pub(crate) mod sse;
pub mod ws;
