//! Any query, media type, token, idempotency key and body of a publish:
//! stored, or refused with a client error and nothing stored; sent again
//! under its key, answered the same and nothing stored.
#![no_main]

use watchbus_http::fuzzing::PublishInput;

libfuzzer_sys::fuzz_target!(|input: PublishInput<'_>| watchbus_http::fuzzing::publish(input));
