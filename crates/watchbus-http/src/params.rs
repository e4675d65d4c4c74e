//! The subscription parameters shared by SSE, WebSocket and history.

use axum::http::HeaderMap;
use watchbus::{EventId, EventType, Filter, Key, KeyPrefix, OnGone, ResumePoint, Timestamp};

use crate::error::ApiError;
use crate::query::Query;

/// What `data:` (or a WebSocket frame) carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum Format {
    /// The JSON envelope.
    #[default]
    Envelope,
    /// Only the payload.
    Raw,
}

/// What an SSE stream opened with a scoped token sends when the token
/// expires, before it ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum OnExpiry {
    /// `on_expiry=close` (the default): the comment `: token expired`.
    #[default]
    Close,
    /// `on_expiry=event`: also an `event: token_expired` a page can
    /// listen for, whose last event id is where to resume.
    Event,
}

/// How an SSE stream frames its bookmarks (`bookmarks=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum Bookmarks {
    /// `bookmarks=id` (the default, the contract's): an id-only frame,
    /// which a browser following the spec (Chromium) keeps as its last
    /// event id without firing an event.
    #[default]
    Id,
    /// `bookmarks=event`: an `event: bookmark` frame with data, which every
    /// browser keeps, Firefox and WebKit included; a page sees it only if
    /// it listens for `bookmark`.
    Event,
}

/// A parsed subscription request.
#[derive(Debug)]
pub(crate) struct SubscribeParams {
    pub(crate) filter: Filter,
    pub(crate) from: Option<ResumePoint>,
    pub(crate) format: Format,
    pub(crate) on_gone: OnGone,
    pub(crate) on_expiry: OnExpiry,
    pub(crate) bookmarks: Bookmarks,
}

/// Parses the filter (`key`, `prefix`, `event_type`) within `max_filters`.
pub(crate) fn filter(query: &Query<'_>, max_filters: usize) -> Result<Filter, ApiError> {
    let keys = query
        .all("key")
        .map(Key::new)
        .collect::<Result<Vec<_>, _>>()?;
    let prefixes = query
        .all("prefix")
        .map(KeyPrefix::new)
        .collect::<Result<Vec<_>, _>>()?;
    let types = query
        .all("event_type")
        .flat_map(|v| v.split(','))
        .map(EventType::new)
        .collect::<Result<Vec<_>, _>>()?;
    // Refuse an absurd list before building it, however it is spread.
    Ok(Filter::new(keys, prefixes, types, max_filters)?)
}

/// The resume point, by precedence: `Last-Event-ID`, then `from`, then
/// `from_timestamp`. A browser's EventSource reconnects with its original
/// URL plus the header, so the header is the newest truth.
pub(crate) fn resume_point(
    query: &Query<'_>,
    headers: Option<&HeaderMap>,
) -> Result<Option<ResumePoint>, ApiError> {
    let header = headers
        .and_then(|h| h.get("last-event-id"))
        .map(|value| {
            value
                .to_str()
                .map_err(|_| ApiError::NotUtf8("the Last-Event-ID header"))
        })
        .transpose()?
        .map(str::trim)
        .filter(|v| !v.is_empty());
    if let Some(id) = header.or_else(|| query.last("from")) {
        return Ok(Some(ResumePoint::After(id.parse::<EventId>()?)));
    }
    if let Some(time) = query.last("from_timestamp") {
        return Ok(Some(ResumePoint::At(Timestamp::parse_rfc3339(time)?)));
    }
    Ok(None)
}

impl SubscribeParams {
    /// Parses every subscription parameter of an SSE or WebSocket request.
    pub(crate) fn parse(
        query: &Query<'_>,
        headers: &HeaderMap,
        max_filters: usize,
    ) -> Result<Self, ApiError> {
        let format = one_of(
            query,
            "format",
            Format::Envelope,
            [("envelope", Format::Envelope), ("raw", Format::Raw)],
            "envelope or raw",
        )?;
        let on_gone = one_of(
            query,
            "on_gone",
            OnGone::Error,
            [("error", OnGone::Error), ("event", OnGone::GoLive)],
            "error or event",
        )?;
        let on_expiry = one_of(
            query,
            "on_expiry",
            OnExpiry::Close,
            [("close", OnExpiry::Close), ("event", OnExpiry::Event)],
            "close or event",
        )?;
        let bookmarks = one_of(
            query,
            "bookmarks",
            Bookmarks::Id,
            [("id", Bookmarks::Id), ("event", Bookmarks::Event)],
            "id or event",
        )?;
        Ok(Self {
            filter: filter(query, max_filters)?,
            from: resume_point(query, Some(headers))?,
            format,
            on_gone,
            on_expiry,
            bookmarks,
        })
    }
}

/// The choice parameter `name`: `default` when absent, the value it
/// names, or `400 invalid_parameter` saying what is `expected`.
fn one_of<T: Copy, const N: usize>(
    query: &Query<'_>,
    name: &'static str,
    default: T,
    choices: [(&str, T); N],
    expected: &'static str,
) -> Result<T, ApiError> {
    let Some(value) = query.last(name) else {
        return Ok(default);
    };
    choices
        .iter()
        .find(|(text, _)| *text == value)
        .map(|&(_, choice)| choice)
        .ok_or_else(|| ApiError::InvalidParameter {
            name,
            value: value.into(),
            expected,
        })
}

/// Parses a subscription request's query and `Last-Event-ID` as a
/// subscribe does, and checks that it is parsed or refused with a client
/// error. For the property tests and the fuzzer.
#[cfg(any(test, fuzzing))]
pub(crate) fn check_subscribe(
    query: &str,
    last_event_id: Option<&str>,
    max_filters: usize,
) -> Result<(), String> {
    let mut headers = HeaderMap::new();
    if let Some(value) = last_event_id.and_then(|id| id.parse().ok()) {
        headers.insert("last-event-id", value);
    }
    let parsed = Query::parse(Some(query))
        .and_then(|query| SubscribeParams::parse(&query, &headers, max_filters));
    match parsed {
        Err(error) if !error.status_and_code().0.is_client_error() => {
            Err(format!("refused with {error:?}, not a client error"))
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point(query: &str, header: Option<&str>) -> Result<Option<ResumePoint>, ApiError> {
        let mut headers = HeaderMap::new();
        if let Some(h) = header {
            headers.insert("last-event-id", h.parse().unwrap());
        }
        resume_point(&Query::parse(Some(query)).unwrap(), Some(&headers))
    }

    #[test]
    fn header_beats_from_beats_timestamp() {
        let q = "from=1-5&from_timestamp=2026-11-22T17:00:00Z";
        assert_eq!(
            point(q, Some("1-9")).unwrap(),
            Some(ResumePoint::After(EventId::new(1, 9)))
        );
        assert_eq!(
            point(q, None).unwrap(),
            Some(ResumePoint::After(EventId::new(1, 5)))
        );
        let t = Timestamp::parse_rfc3339("2026-11-22T17:00:00Z").unwrap();
        assert_eq!(
            point("from_timestamp=2026-11-22T17:00:00Z", None).unwrap(),
            Some(ResumePoint::At(t))
        );
        assert_eq!(point("", None).unwrap(), None);
    }

    #[test]
    fn bad_values_are_errors() {
        assert!(point("from=nope", None).is_err());
        assert!(point("", Some("nope")).is_err());
        assert!(point("from_timestamp=yesterday", None).is_err());
    }

    #[test]
    fn types_may_be_comma_separated_or_repeated() {
        let q = Query::parse(Some("event_type=a,b&event_type=c")).unwrap();
        let f = filter(&q, 64).unwrap();
        assert_eq!(
            f.type_list().iter().map(|t| t.as_str()).collect::<Vec<_>>(),
            ["a", "b", "c"]
        );
        let q = Query::parse(Some("event_type=a,,b")).unwrap();
        assert!(filter(&q, 64).is_err());
    }

    #[test]
    fn choice_parameters_take_their_values_and_say_what_they_expect() {
        let parse = |query: &str| {
            let query = Query::parse(Some(query)).unwrap();
            SubscribeParams::parse(&query, &HeaderMap::new(), 64)
        };
        let choices = |p: SubscribeParams| (p.format, p.on_gone, p.on_expiry, p.bookmarks);
        assert_eq!(
            choices(parse("key=k").unwrap()),
            (
                Format::Envelope,
                OnGone::Error,
                OnExpiry::Close,
                Bookmarks::Id
            )
        );
        let named = "key=k&format=envelope&on_gone=error&on_expiry=close&bookmarks=id";
        assert_eq!(
            choices(parse(named).unwrap()),
            (
                Format::Envelope,
                OnGone::Error,
                OnExpiry::Close,
                Bookmarks::Id
            )
        );
        let others = "key=k&format=raw&on_gone=event&on_expiry=event&bookmarks=event";
        assert_eq!(
            choices(parse(others).unwrap()),
            (
                Format::Raw,
                OnGone::GoLive,
                OnExpiry::Event,
                Bookmarks::Event
            )
        );
        for (query, message) in [
            (
                "format=Raw",
                r#"invalid format "Raw": expected envelope or raw"#,
            ),
            (
                "on_gone=live",
                r#"invalid on_gone "live": expected error or event"#,
            ),
            (
                "on_expiry=later",
                r#"invalid on_expiry "later": expected close or event"#,
            ),
            (
                "bookmarks=comment",
                r#"invalid bookmarks "comment": expected id or event"#,
            ),
        ] {
            let error = parse(&format!("key=k&{query}")).unwrap_err();
            assert_eq!(error.to_string(), message);
            assert_eq!(error.status_and_code().1, "invalid_parameter");
        }
    }

    /// Any query and `Last-Event-ID`: parsed, or a client error. Never a
    /// panic.
    mod props {
        use proptest::collection::vec;
        use proptest::prelude::*;
        use proptest::sample::select;

        use super::*;

        fn value() -> impl Strategy<Value = String> {
            prop_oneof![
                4 => select(vec![
                    "", "a", "a/", "orders/42", "t.x,t.y", ",", "raw", "event", "5-1", "0-0",
                    "5-", "-1", "99999999999999999999-1", "2026-11-22T17:00:00Z",
                    "2026-11-22T18:00:00+01:00", "2026-11-22T18:00:00 01:00", "%2F", "%", "+",
                    "%FF", "é", "close", "id",
                ])
                .prop_map(str::to_owned),
                1 => any::<String>(),
            ]
        }

        fn query() -> impl Strategy<Value = String> {
            let name = select(vec![
                "key",
                "prefix",
                "event_type",
                "from",
                "from_timestamp",
                "format",
                "on_gone",
                "on_expiry",
                "bookmarks",
                "x",
            ]);
            vec((name, value()), 0..6).prop_map(|pairs| {
                pairs
                    .iter()
                    .map(|(name, value)| format!("{name}={value}"))
                    .collect::<Vec<_>>()
                    .join("&")
            })
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(2048))]

            #[test]
            fn any_subscription_request_is_parsed_or_refused_as_a_client_error(
                query in query(),
                last_event_id in proptest::option::of(value()),
                max_filters in 0usize..4,
            ) {
                let checked = check_subscribe(&query, last_event_id.as_deref(), max_filters);
                prop_assert_eq!(checked, Ok(()));
            }
        }
    }
}
