//! Entry points for `cargo fuzz` (fuzz/), built only with `--cfg fuzzing`.
//! Each runs the same check as the property tests of the code it names and
//! panics where that check fails, so the fuzzer reports the input.

/// The request head parser and the direct publish path
/// ([`crate::server`]): see `server::request::check_both_paths`.
pub fn request_head(bytes: &[u8]) {
    if let Err(failure) = crate::server::check_both_paths(bytes) {
        panic!("{failure}");
    }
}

/// What the `publish` target feeds: whether tokens are set, the query,
/// `Content-Type`, `Authorization`, `Idempotency-Key` and the body.
pub type PublishInput<'a> = (
    bool,
    Option<&'a str>,
    Option<&'a str>,
    Option<&'a str>,
    Option<&'a [u8]>,
    &'a [u8],
);

/// A publish's query, media type, token, idempotency key and body: see
/// `routes::publish::check_publish`.
pub fn publish(input: PublishInput<'_>) {
    let (tokens, query, content_type, authorization, idempotency_key, body) = input;
    if let Err(failure) = crate::routes::publish::check_publish(
        tokens,
        query,
        content_type,
        authorization,
        idempotency_key,
        body,
    ) {
        panic!("{failure}");
    }
}

/// A subscription's query and `Last-Event-ID`: see
/// `params::check_subscribe`.
pub fn subscribe(query: &str, last_event_id: Option<&str>, max_filters: usize) {
    if let Err(failure) = crate::params::check_subscribe(query, last_event_id, max_filters) {
        panic!("{failure}");
    }
}
