//! Black-box conformance tests of `watchbus serve`, written from the HTTP and
//! CLI contracts (`spec/http-api.md`, `spec/cli.md`). Each test starts its
//! own server on `127.0.0.1:0` and speaks to it over real sockets.
//!
//! The same sources build two test targets, one per store:
//!
//! - `cargo test -p watchbus-cli --test conformance -- --test-threads 2`
//!   runs against `--store memory`;
//! - `cargo test -p watchbus-cli --test conformance_redis -- --test-threads 2`
//!   runs against `--store redis://...`, a private `redis-server` per test
//!   (per store: servers that share one share it). Without `redis-server`
//!   on PATH it prints `SKIPPED: redis-server not found` and passes, unless
//!   `WATCHBUS_REQUIRE_REDIS=1`.
//!
//! `WATCHBUS_TEST_STORE=memory|redis` overrides the target's choice. Where
//! the contract lets the stores differ (what survives a restart), tests ask
//! the store's capabilities and assert each store's behaviour. `cluster`
//! tests run several servers on one Redis (redis target only).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

#[macro_use]
pub(crate) mod support;

mod admin;
mod auth;
mod browser;
mod cli;
mod cluster;
mod errors;
mod history;
mod hosts;
mod idempotency;
mod publish;
mod resume;
mod robustness;
mod schema;
mod scoped_tokens;
mod seed;
mod shutdown;
mod sse;
mod stalled;
mod ws;
