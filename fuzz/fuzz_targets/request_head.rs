//! Any bytes as a request head: the parser never panics, and the direct
//! publish path reads a publish exactly as the ordinary path does.
#![no_main]

libfuzzer_sys::fuzz_target!(|bytes: &[u8]| watchbus_http::fuzzing::request_head(bytes));
