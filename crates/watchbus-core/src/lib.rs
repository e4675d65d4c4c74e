//! The event model of [watchbus](https://docs.rs/watchbus): validated names,
//! event ids, payloads, events, filters, the matching index and the wire
//! frames. Pure logic, no I/O; the hub and the stores live in `watchbus`.
//!
//! Everything a client sends is parsed here once into a newtype
//! ([`Key`], [`KeyPrefix`], [`EventType`], [`EventId`], [`Timestamp`],
//! [`Data`]) and trusted from then on.

#![deny(missing_docs)]

pub mod data;
pub mod encode;
pub mod error;
pub mod event;
pub mod filter;
pub mod id;
pub mod index;
pub mod key;
pub mod time;

pub use data::Data;
pub use error::{InvalidName, InvalidTimestamp, MalformedId};
pub use event::{Draft, Event, Target};
pub use filter::{DEFAULT_MAX_FILTERS, Filter, FilterError};
pub use id::EventId;
pub use index::{MatchIndex, SubscriberId};
pub use key::{EventType, Key, KeyPrefix};
pub use time::{Clock, ManualClock, SystemClock, Timestamp};
