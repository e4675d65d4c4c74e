//! Any subscription query and `Last-Event-ID`: parsed, or refused with a
//! client error.
#![no_main]

libfuzzer_sys::fuzz_target!(|input: (&str, Option<&str>, u8)| {
    let (query, last_event_id, max_filters) = input;
    watchbus_http::fuzzing::subscribe(query, last_event_id, usize::from(max_filters % 8));
});
