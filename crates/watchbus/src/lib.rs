//! watchbus: a real-time event hub to embed.
//!
//! Publishers post JSON events to string keys; subscribers follow exact
//! keys, key prefixes and event types, and resume after a disconnect with
//! nothing lost and nothing repeated, or a clear "gone" when the events they
//! need have aged out.
//!
//! ```
//! use watchbus::{Data, Hub, KeyPrefix, Key};
//!
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! let hub = Hub::memory();
//! let mut room = hub.subscribe_prefix(KeyPrefix::new("rooms/7/").unwrap()).await.unwrap();
//! hub.publish(Key::new("rooms/7/chat").unwrap(), Data::text("hi")).await.unwrap();
//! hub.broadcast(KeyPrefix::new("rooms/").unwrap(), Data::text("closing soon")).await.unwrap();
//! assert_eq!(room.recv().await.unwrap().data().as_json(), r#""hi""#);
//! assert_eq!(room.recv().await.unwrap().data().as_json(), r#""closing soon""#);
//! drop(room); // stops watching
//! # });
//! ```
//!
//! The data path: [`Hub::publish`] → [`Store::append`] → the store's live
//! feed → the hub's dispatch → each matching [`Subscription`] → a transport
//! (`watchbus-http` for SSE and WebSocket). The HTTP server is
//! `watchbus-http`; the binary is `watchbus-cli`.
//!
//! The Redis Streams store (`RedisStore`) is the `redis` feature, on by
//! default here; `watchbus-http` does not ask for it, so an application
//! that wants only the memory store builds without Redis's client and TLS
//! (`watchbus = { version = "0.1", default-features = false }`).

#![deny(missing_docs)]

mod cache;
pub mod error;
pub mod hub;
pub mod store;
pub mod subscription;

pub use error::HubError;
pub use hub::{Hub, Metrics, OnGone, Stats, SubscribeRequest};
pub use store::memory::MemoryStore;
#[cfg(feature = "redis")]
pub use store::redis::{RedisConfig, RedisStore, RedisStoreError};
pub use store::{
    AppendNowError, Appended, Feed, Gone, IdempotencyKey, InvalidIdempotencyKey, KeyTableStats,
    LogStats, Once, Page, Receipt, ResumePoint, Retention, Store, StoreError, Wakeups,
};
pub use subscription::{StreamEnd, Subscription};
pub use watchbus_core::{
    Clock, Data, Draft, Event, EventId, EventType, Filter, FilterError, InvalidName,
    InvalidTimestamp, Key, KeyPrefix, MalformedId, ManualClock, SystemClock, Target, Timestamp,
};

/// The public handles cross threads and tasks: `Hub` is shared, a
/// `Subscription` moves into the task that serves it.
const _: () = {
    const fn send_sync<T: Send + Sync>() {}
    const fn send<T: Send>() {}
    send_sync::<Hub>();
    send_sync::<std::sync::Arc<dyn Store>>();
    send::<Subscription>();
    send::<HubError>();
};

/// Every error the API hands out goes through `?` into a boxed error (or
/// `anyhow`), so an application can treat each as one.
const _: () = {
    const fn error<T: std::error::Error + Send + Sync + 'static>() {}
    error::<HubError>();
    error::<StoreError>();
    error::<StreamEnd>();
    error::<Gone>();
    error::<InvalidName>();
    error::<FilterError>();
    error::<MalformedId>();
    error::<InvalidTimestamp>();
    error::<InvalidIdempotencyKey>();
};
