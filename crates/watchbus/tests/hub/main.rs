//! The hub through its public API: publish, matching, resume, lagging,
//! bookmarks, reset and shutdown, concurrency, and the memory store against
//! a model. One integration binary; each module is one concern.
//!
//! Helpers and the small assert macros live here and in `support`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

/// Receives exactly these events (by id), in this order.
macro_rules! assert_ids {
    ($sub:expr, $ids:expr) => {{
        let want: Vec<watchbus::EventId> = $ids.into_iter().collect();
        let got = crate::support::recv_n(&mut $sub, want.len()).await;
        assert_eq!(
            crate::support::ids(&got),
            want,
            "ids received (left) vs expected (right)"
        );
    }};
}

/// Receives exactly these events, each written `"key:text"` (or
/// `"prefix*:text"` for a broadcast), in this order.
macro_rules! assert_events {
    ($sub:expr, [$($label:expr),* $(,)?]) => {{
        let want: Vec<&str> = vec![$($label),*];
        let got = crate::support::recv_n(&mut $sub, want.len()).await;
        let got: Vec<String> = got.iter().map(|e| crate::support::label(e)).collect();
        assert_eq!(got, want, "events received (left) vs expected (right)");
    }};
}

/// Nothing is ready for this subscription right now (it has not ended).
macro_rules! assert_idle {
    ($sub:expr) => {{
        if let Some(ready) = crate::support::try_recv(&mut $sub) {
            panic!("expected nothing ready, got {ready:?}");
        }
    }};
}

/// The subscription's next answer is the end, for this reason.
macro_rules! assert_ended {
    ($sub:expr, $reason:expr) => {{
        match crate::support::recv(&mut $sub).await {
            Err(reason) => assert_eq!(reason, $reason, "end reason"),
            Ok(event) => panic!("expected the end {:?}, got event {event:?}", $reason),
        }
    }};
}

/// The result is `HubError::Gone`; evaluates to the `Gone`.
macro_rules! assert_gone {
    ($result:expr) => {{
        match $result {
            Err(watchbus::HubError::Gone(gone)) => gone,
            other => panic!("expected Gone, got {other:?}"),
        }
    }};
}

/// The result is `HubError::UnknownId` for this id.
macro_rules! assert_unknown_id {
    ($result:expr, $id:expr) => {{
        match $result {
            Err(watchbus::HubError::UnknownId(id)) => assert_eq!(id, $id),
            other => panic!("expected UnknownId({}), got {other:?}", $id),
        }
    }};
}

mod bookmark;
mod lagging;
mod lifecycle;
mod once;
mod props;
mod publish;
mod resume;
mod seed;
mod storm;
mod support;
