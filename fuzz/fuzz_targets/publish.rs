//! Any query, media type, token, idempotency key and body of a publish:
//! stored, or refused with a client error and nothing stored; sent again
//! under its key, answered the same and nothing stored.
#![no_main]

/// Whether tokens are set, the query, `Content-Type`, `Authorization`,
/// `Idempotency-Key` and the body.
type Publish<'a> = (
    bool,
    Option<&'a str>,
    Option<&'a str>,
    Option<&'a str>,
    Option<&'a [u8]>,
    &'a [u8],
);

libfuzzer_sys::fuzz_target!(|input: Publish<'_>| {
    let (tokens, query, content_type, authorization, idempotency_key, body) = input;
    watchbus_http::fuzzing::publish(
        tokens,
        query,
        content_type,
        authorization,
        idempotency_key,
        body,
    );
});
