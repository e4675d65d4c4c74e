//! Black-box conformance tests of `watchbus serve`, written from the HTTP and
//! CLI contracts (`spec/http-api.md`, `spec/cli.md`). Each test starts its
//! own server on `127.0.0.1:0` and speaks to it over real sockets.
//!
//! Run: `cargo test -p watchbus-cli --test conformance -- --test-threads 2`.
//! `WATCHBUS_TEST_STORE` selects the store (default `memory`).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

#[macro_use]
mod support;

mod admin;
mod auth;
mod cli;
mod errors;
mod history;
mod publish;
mod resume;
mod robustness;
mod seed;
mod shutdown;
mod sse;
mod ws;
