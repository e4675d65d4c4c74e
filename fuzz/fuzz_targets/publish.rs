//! Any query, media type, token and body of a publish: stored, or refused
//! with a client error and nothing stored.
#![no_main]

libfuzzer_sys::fuzz_target!(
    |input: (bool, Option<&str>, Option<&str>, Option<&str>, &[u8])| {
        let (tokens, query, content_type, authorization, body) = input;
        watchbus_http::fuzzing::publish(tokens, query, content_type, authorization, body);
    }
);
