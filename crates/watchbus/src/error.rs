//! The hub's errors, named for what the caller can do about them. The HTTP
//! layer maps each to one status, in one place.

use thiserror::Error;
use watchbus_core::EventId;

use crate::store::{Gone, IdempotencyKey, StoreError};

/// Why the hub refused.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum HubError {
    /// Events after the resume point were evicted (HTTP `410`).
    #[error("{0}")]
    Gone(Gone),
    /// The resume id was never issued by this server (HTTP `400`).
    #[error("event id {0} was never issued by this server")]
    UnknownId(EventId),
    /// The store did not answer (HTTP `503`). A read changed nothing; an
    /// append that timed out may still be stored, then or later
    /// ([`crate::store::StoreError::Unavailable`]).
    #[error("the store is unavailable")]
    Unavailable(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The hub is shutting down (HTTP `503`).
    #[error("the server is shutting down")]
    ShuttingDown,
    /// The hub holds its most subscriptions ([`crate::Hub::with_max_subscribers`]);
    /// nothing was opened (HTTP `503`).
    #[error("this server holds its most subscribers ({max}); retry later, or on another server")]
    TooManySubscribers {
        /// The bound.
        max: usize,
    },
    /// An idempotency key already used for a different request within its
    /// window; nothing was stored (HTTP `422`).
    #[error("{}", StoreError::KeyReused(.0.clone()))]
    KeyReused(IdempotencyKey),
}

impl From<StoreError> for HubError {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::Gone(gone) => Self::Gone(gone),
            StoreError::UnknownId(id) => Self::UnknownId(id),
            StoreError::Unavailable(source) => Self::Unavailable(source),
            StoreError::Closed => Self::ShuttingDown,
            StoreError::KeyReused(key) => Self::KeyReused(key),
        }
    }
}
