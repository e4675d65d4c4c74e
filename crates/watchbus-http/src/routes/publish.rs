//! `POST /v1/events`: validate, then store. A `200` means stored.
//!
//! Two forms. JSON (`Content-Type: application/json`): one event object or
//! an array of 1..=1000, validated whole before anything is stored. Query
//! (`?key=K&type=T` or `?prefix=P`): the body is the data, JSON when the
//! Content-Type says so, otherwise UTF-8 text.

use axum::body::{Body, HttpBody as _};
use axum::extract::{Request, State};
use axum::http::header::CONTENT_TYPE;
use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde::Deserialize;
use serde_json::value::RawValue;
use std::time::Duration;
use watchbus::{
    Appended, Data, Draft, Event, EventId, EventType, Hub, IdempotencyKey, Key, KeyPrefix, Once,
    Target, Timestamp,
};

use crate::auth::{self, Access, Role};
use crate::cors::{PageHeaders, check_page_origin};
use crate::error::{ApiError, PageRequest};
use crate::query::Query;
use crate::schema::Schemas;
use crate::{AppState, HttpConfig};

/// The most events in one array.
pub(crate) const MAX_BATCH: usize = 1000;

#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "an event object")]
struct Item<'a> {
    #[serde(borrow, default)]
    key: Option<std::borrow::Cow<'a, str>>,
    #[serde(borrow, default)]
    prefix: Option<std::borrow::Cow<'a, str>>,
    #[serde(borrow, default, rename = "type")]
    event_type: Option<std::borrow::Cow<'a, str>>,
    #[serde(borrow, default)]
    data: Option<&'a RawValue>,
}

fn target(key: Option<&str>, prefix: Option<&str>) -> Result<Target, ApiError> {
    match (key, prefix) {
        (Some(key), None) => Ok(Target::Key(Key::new(key)?)),
        (None, Some(prefix)) => Ok(Target::Prefix(KeyPrefix::new(prefix)?)),
        (Some(_), Some(_)) => Err(ApiError::BothTargets),
        (None, None) => Err(ApiError::MissingTarget),
    }
}

fn event_type(text: Option<&str>) -> Result<Option<EventType>, ApiError> {
    text.map(EventType::new).transpose().map_err(ApiError::from)
}

impl Item<'_> {
    /// The item as a draft, checked against its type's schema.
    fn draft(&self, schemas: &Schemas) -> Result<Draft, ApiError> {
        let data = match self.data {
            None => Data::null(),
            Some(raw) => {
                Data::from_json(raw.get()).map_err(|e| ApiError::InvalidJson(e.to_string()))?
            }
        };
        let draft = Draft {
            target: target(self.key.as_deref(), self.prefix.as_deref())?,
            event_type: event_type(self.event_type.as_deref())?,
            data,
        };
        schemas.check(&draft)?;
        Ok(draft)
    }
}

/// A header value as [`axum::http::HeaderValue::to_str`] gives it: only
/// when it is all visible ASCII (or tabs).
pub(crate) fn header_text(value: &[u8]) -> Option<&str> {
    if value
        .iter()
        .all(|&b| b == b'\t' || (b' '..=b'~').contains(&b))
    {
        std::str::from_utf8(value).ok()
    } else {
        None
    }
}

/// The media type of a `Content-Type` value, without parameters, as sent
/// (media types compare case-insensitively).
fn media_type(content_type: &str) -> &str {
    content_type.split(';').next().unwrap_or_default().trim()
}

/// What a publish body asked to store.
#[derive(Debug)]
enum Drafts {
    /// One event: a query-form body or a JSON object. The answer is one
    /// receipt.
    One(Draft),
    /// A JSON array, stored all or none. The answer is an array too.
    Many(Vec<Draft>),
}

/// The drafts of a JSON-form body. Each is checked in array order, so the
/// refusal names the first event at fault.
fn parse_json_form(body: &[u8], schemas: &Schemas) -> Result<Drafts, ApiError> {
    let text = std::str::from_utf8(body).map_err(|_| ApiError::NotUtf8("the body"))?;
    let invalid = |e: serde_json::Error| ApiError::InvalidJson(e.to_string());
    if text.trim_start().starts_with('[') {
        // The array first, then each event: so that a refusal names its
        // event, and the first one at fault.
        let items: Vec<&RawValue> = serde_json::from_str(text).map_err(invalid)?;
        if items.is_empty() {
            return Err(ApiError::EmptyBatch);
        }
        if items.len() > MAX_BATCH {
            return Err(ApiError::BatchTooLarge {
                given: items.len(),
                max: MAX_BATCH,
            });
        }
        let drafts = items
            .iter()
            .enumerate()
            .map(|(at, raw)| {
                serde_json::from_str::<Item<'_>>(raw.get())
                    .map_err(|e| ApiError::NotAnEvent(without_position(&e)))
                    .and_then(|item| item.draft(schemas))
                    .map_err(|error| ApiError::InBatch {
                        at,
                        error: Box::new(error),
                    })
            })
            .collect::<Result<_, _>>()?;
        Ok(Drafts::Many(drafts))
    } else {
        let item: Item<'_> = serde_json::from_str(text).map_err(invalid)?;
        Ok(Drafts::One(item.draft(schemas)?))
    }
}

/// serde's message without its "at line 1 column 9": a place within one
/// event of the array, not within the body.
fn without_position(error: &serde_json::Error) -> String {
    let message = error.to_string();
    match message.rsplit_once(" at line ") {
        Some((message, _)) => message.to_owned(),
        None => message,
    }
}

fn parse_query_form(
    query: &Query<'_>,
    is_json: bool,
    body: &[u8],
    schemas: &Schemas,
) -> Result<Draft, ApiError> {
    let data = if is_json {
        let text = std::str::from_utf8(body).map_err(|_| ApiError::NotUtf8("the body"))?;
        Data::from_json(text).map_err(|e| ApiError::InvalidJson(e.to_string()))?
    } else {
        Data::text(std::str::from_utf8(body).map_err(|_| ApiError::NotUtf8("the body"))?)
    };
    let key = query
        .has("key")
        .then(|| query.last("key").unwrap_or_default());
    let prefix = query
        .has("prefix")
        .then(|| query.last("prefix").unwrap_or_default());
    let draft = Draft {
        target: target(key, prefix)?,
        event_type: event_type(query.last("type"))?,
        data,
    };
    schemas.check(&draft)?;
    Ok(draft)
}

/// How long a body may take to arrive. `serve` reads small bodies whole
/// (within its own request timeout) before the handler runs; this bounds
/// the others, streamed in by hyper, so a client trickling a body cannot
/// hold a publish open for ever.
const BODY_TIMEOUT: Duration = Duration::from_secs(30);

/// The whole body, up to `max` bytes, within [`BODY_TIMEOUT`]. A body that
/// breaks off or is badly framed is a malformed request, not one that is
/// too large.
async fn read_body(body: Body, max: usize) -> Result<Bytes, ApiError> {
    let read = tokio::time::timeout(BODY_TIMEOUT, axum::body::to_bytes(body, max))
        .await
        .map_err(|_| ApiError::RequestTimeout {
            after: BODY_TIMEOUT,
        })?;
    read.map_err(|err| {
        let err = err.into_inner();
        if err.is::<http_body_util::LengthLimitError>() {
            ApiError::BodyTooLarge { max }
        } else {
            ApiError::MalformedRequest(format!("the body could not be read: {err}"))
        }
    })
}

/// Appends `{"id":"...","time":"..."}`: ids and times need no escaping.
fn push_receipt(out: &mut String, id: EventId, time: Timestamp) {
    out.push_str("{\"id\":\"");
    id.push_text(out);
    out.push_str("\",\"time\":\"");
    time.push_rfc3339(out);
    out.push_str("\"}");
}

/// The `200` body: one receipt, or an array of them for an array body.
fn receipts(
    receipts: impl ExactSizeIterator<Item = (EventId, Timestamp)>,
    as_array: bool,
) -> String {
    let mut out = String::with_capacity(72 * receipts.len() + 2);
    if as_array {
        out.push('[');
    }
    for (at, (id, time)) in receipts.enumerate() {
        if at > 0 {
            out.push(',');
        }
        push_receipt(&mut out, id, time);
    }
    if as_array {
        out.push(']');
    }
    out
}

/// The ids and times of `events`, for [`receipts`].
fn of_events(
    events: &[std::sync::Arc<Event>],
) -> impl ExactSizeIterator<Item = (EventId, Timestamp)> {
    events.iter().map(|event| (event.id(), event.time()))
}

/// The header that names a publish request, so that a retry of it is
/// stored once (the IETF draft "The Idempotency-Key HTTP Header Field").
pub(crate) const IDEMPOTENCY_KEY: HeaderName = HeaderName::from_static("idempotency-key");

/// The header that marks the answer to a retry: nothing was stored now.
pub(crate) const IDEMPOTENT_REPLAYED: HeaderName = HeaderName::from_static("idempotent-replayed");

/// The value of an `Idempotency-Key` header: the key, quoted as the draft
/// writes it (a structured-field string) or bare as most clients send it.
fn idempotency_key(value: &[u8]) -> Result<IdempotencyKey, ApiError> {
    let refused = || ApiError::InvalidIdempotencyKey(String::from_utf8_lossy(value).into_owned());
    let text = std::str::from_utf8(value).map_err(|_| refused())?;
    let bare = text
        .strip_prefix('"')
        .and_then(|rest| rest.strip_suffix('"'))
        .unwrap_or(text);
    IdempotencyKey::new(bare).map_err(|_| refused())
}

/// The `200` body of a publish, and whether it answers a retry.
pub(crate) struct Receipts {
    /// One receipt, or an array of them for an array body.
    pub(crate) body: String,
    /// The receipts are an earlier publish's: nothing was stored now.
    pub(crate) replayed: bool,
}

/// What the head of a publish allows, checked before its body is read:
/// the query, and which form the body takes.
pub(crate) struct Accepted<'a> {
    query: Query<'a>,
    access: Access,
    schemas: &'a Schemas,
    is_json: bool,
    query_form: bool,
    idempotency_key: Option<IdempotencyKey>,
}

/// Checks a publish's head, in the contract's order: the query, the
/// token, then the media type; then the idempotency key, if any.
/// `content_type` and `idempotency_key` are the first such header's value
/// as sent, so that one that cannot be read is refused saying so;
/// `authorization` the first such header's value, if it is visible ASCII.
pub(crate) fn accept<'a>(
    config: &'a HttpConfig,
    query: Option<&'a str>,
    content_type: Option<&[u8]>,
    authorization: Option<&str>,
    idempotency_key: Option<&[u8]>,
) -> Result<Accepted<'a>, ApiError> {
    let query = Query::parse(query)?;
    let access = config
        .tokens
        .authorize_bearer(Role::Publish, authorization, &query)?;
    let media = content_type.map(|raw| header_text(raw).map(media_type));
    let is_json = media
        .flatten()
        .is_some_and(|media| media.eq_ignore_ascii_case("application/json"));
    let query_form = query.has("key") || query.has("prefix");
    if !query_form && !is_json {
        return Err(ApiError::UnsupportedMediaType(match media {
            None => "none".into(),
            Some(None) => "one that is not visible ASCII".into(),
            Some(Some(media)) => format!("{:?}", media.to_ascii_lowercase()),
        }));
    }
    let idempotency_key = idempotency_key.map(self::idempotency_key).transpose()?;
    Ok(Accepted {
        query,
        access,
        schemas: &config.schemas,
        is_json,
        query_form,
        idempotency_key,
    })
}

/// Stores what an accepted publish's `body` asks for, once per
/// idempotency key, and returns the `200` body.
pub(crate) async fn store(
    hub: &Hub,
    accepted: &Accepted<'_>,
    body: &[u8],
) -> Result<Receipts, ApiError> {
    let drafts = if accepted.query_form {
        Drafts::One(parse_query_form(
            &accepted.query,
            accepted.is_json,
            body,
            accepted.schemas,
        )?)
    } else {
        parse_json_form(body, accepted.schemas)?
    };
    // Before an idempotent replay too: its receipts are the key's.
    match &drafts {
        Drafts::One(draft) => accepted.access.check_target(&draft.target)?,
        Drafts::Many(drafts) => {
            for (at, draft) in drafts.iter().enumerate() {
                accepted
                    .access
                    .check_target(&draft.target)
                    .map_err(|error| ApiError::InBatch {
                        at,
                        error: Box::new(error),
                    })?;
            }
        }
    }
    if let Some(key) = &accepted.idempotency_key {
        let (drafts, as_array) = match drafts {
            Drafts::One(draft) => (vec![draft], false),
            Drafts::Many(drafts) => (drafts, true),
        };
        let once = Once::new(key.clone(), &drafts);
        let appended = hub.publish_all_once(&once, drafts).await?;
        let replayed = matches!(appended, Appended::Replayed(_));
        let all = appended.receipts();
        return Ok(Receipts {
            body: receipts(all.iter().map(|r| (r.id, r.time)), as_array),
            replayed,
        });
    }
    // One event takes the store's direct path, with no vectors.
    let body = match drafts {
        Drafts::One(draft) => receipts(of_events(&[hub.publish_one(draft).await?]), false),
        Drafts::Many(drafts) => receipts(of_events(&hub.publish_all(drafts).await?), true),
    };
    Ok(Receipts {
        body,
        replayed: false,
    })
}

/// Handles `POST /v1/events`. [`crate::serve_api`] answers most publishes
/// without the router, through [`accept`] and [`store`] as well.
pub(crate) async fn publish(
    State(state): State<AppState>,
    request: Request,
) -> Result<Response, ApiError> {
    let (parts, body) = request.into_parts();
    let page = PageHeaders::of(&parts.headers);
    check_page_origin(state.cors.as_deref(), page, PageRequest::Publish)?;
    let accepted = accept(
        &state.config,
        parts.uri.query(),
        parts.headers.get(CONTENT_TYPE).map(HeaderValue::as_bytes),
        auth::authorization(&parts.headers)?,
        parts
            .headers
            .get(IDEMPOTENCY_KEY)
            .map(HeaderValue::as_bytes),
    )?;
    let max = state.config.max_body;
    // Refused before a byte of it is read, so that a client that sent
    // `Expect: 100-continue` is not asked to send it.
    if body.size_hint().lower() > max as u64 {
        return Err(ApiError::BodyTooLarge { max });
    }
    let body = read_body(body, max).await?;
    let receipts = store(&state.hub, &accepted, &body).await?;
    Ok(receipts_response(receipts))
}

/// The `200` of a publish, with the receipts [`store`] gave.
pub(crate) fn receipts_response(receipts: Receipts) -> Response {
    let mut response = (
        StatusCode::OK,
        [(CONTENT_TYPE, HeaderValue::from_static("application/json"))],
        receipts.body,
    )
        .into_response();
    if receipts.replayed {
        response
            .headers_mut()
            .insert(IDEMPOTENT_REPLAYED, HeaderValue::from_static("true"));
    }
    response
}

/// Publishes what a client sent through [`accept`] and [`store`], on a
/// fresh hub, and checks the outcome: stored, with one receipt per event
/// stored, or refused with a client error and nothing stored. With an
/// `idempotency_key`, it is sent twice: the second answers as the first
/// and stores nothing. With `tokens`, a publish needs the token `t` (`s`
/// is the subscribe token). Events of type `t.x` must have an object as
/// their data. For the property tests and the fuzzer.
#[cfg(any(test, fuzzing))]
pub(crate) fn check_publish(
    tokens: bool,
    query: Option<&str>,
    content_type: Option<&str>,
    authorization: Option<&str>,
    idempotency_key: Option<&[u8]>,
    body: &[u8],
) -> Result<(), String> {
    let tokens = crate::auth::Tokens {
        publish: tokens.then(|| "t".into()),
        subscribe: tokens.then(|| "s".into()),
        admin: None,
        scoped: None,
    };
    let mut schemas = Schemas::new();
    let object = serde_json::json!({"type": "object"});
    let t_x = EventType::new("t.x").map_err(|e| e.to_string())?;
    schemas.insert(t_x, &object).map_err(|e| e.to_string())?;
    let config = HttpConfig {
        tokens,
        schemas,
        ..HttpConfig::default()
    };
    let hub = Hub::memory();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .map_err(|e| e.to_string())?;
    let send = || {
        runtime.block_on(async {
            let content_type = content_type.map(str::as_bytes);
            let accepted = accept(&config, query, content_type, authorization, idempotency_key)?;
            store(&hub, &accepted, body).await
        })
    };
    let stored = send();
    let published = hub.metrics().published_events;
    if idempotency_key.is_some() {
        let again = send();
        let now = hub.metrics().published_events;
        match (&stored, &again) {
            (Ok(first), Ok(again)) if first.replayed || !again.replayed => {
                return Err("a retry was not marked replayed, or the first was".into());
            }
            (Ok(first), Ok(again)) if first.body != again.body => {
                return Err(format!(
                    "a retry answered {} after {}",
                    again.body, first.body
                ));
            }
            (Ok(_), Ok(_)) | (Err(_), Err(_)) => {}
            _ => return Err("a retry was answered otherwise than the first".into()),
        }
        if now != published {
            return Err(format!("a retry stored {} events", now - published));
        }
    }
    match stored {
        Ok(receipts) => {
            let receipts: serde_json::Value = serde_json::from_str(&receipts.body)
                .map_err(|e| format!("the receipts are not JSON: {e}"))?;
            let count = receipts.as_array().map_or(1, Vec::len) as u64;
            if published == 0 || count != published {
                return Err(format!("{count} receipts for {published} events stored"));
            }
            Ok(())
        }
        Err(error) if !error.status_and_code().0.is_client_error() => {
            Err(format!("refused with {error:?}, not a client error"))
        }
        Err(_) if published > 0 => Err(format!("refused, yet {published} events stored")),
        Err(_) => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_form_validates_every_item() {
        let Ok(Drafts::Many(ok)) = parse_json_form(
            br#"[{"key":"a","data":1},{"prefix":"b/","type":"t.x","data":{"x":[1, 2]}}]"#,
            &Schemas::new(),
        ) else {
            panic!("an array is many drafts");
        };
        assert_eq!(ok.len(), 2);
        assert_eq!(ok[1].data.as_json(), r#"{"x":[1,2]}"#);
        let code = |body: &[u8]| {
            parse_json_form(body, &Schemas::new())
                .err()
                .map(|e| e.status_and_code())
        };
        assert_eq!(code(b"[]").map(|c| c.1), Some("empty_batch"));
        assert_eq!(
            code(br#"{"key":"a","extra":1}"#).map(|c| c.1),
            Some("invalid_json")
        );
        assert_eq!(
            code(br#"{"key":"a","prefix":"b"}"#).map(|c| c.1),
            Some("key_and_prefix")
        );
        assert_eq!(code(br#"{"data":1}"#).map(|c| c.1), Some("missing_key"));
        assert_eq!(code(br#"{"key":"a\nb"}"#).map(|c| c.1), Some("invalid_key"));
        assert_eq!(
            code(br#"{"key":"a","type":"no spaces"}"#).map(|c| c.1),
            Some("invalid_type")
        );
        assert_eq!(
            code(b"{\"key\":\"\xff\"}").map(|c| c.1),
            Some("invalid_utf8")
        );
        assert_eq!(
            code(br#"[{"key":"a"},{"key":""}]"#).map(|c| c.1),
            Some("invalid_key")
        );
        let message = parse_json_form(
            br#"[{"key":"a"},{"key":"b","type":"a b"}]"#,
            &Schemas::new(),
        )
        .err()
        .map(|e| e.to_string());
        assert_eq!(
            message.as_deref(),
            Some(
                "event 1 of the array: invalid type \"a b\": \
                 may only hold the characters A-Z a-z 0-9 . _ : / -"
            )
        );
    }

    #[test]
    fn null_type_and_missing_data_are_none_and_null() {
        let Ok(Drafts::One(draft)) =
            parse_json_form(br#"{"key":"a","type":null}"#, &Schemas::new())
        else {
            panic!("an object is one draft");
        };
        assert_eq!(draft.event_type, None);
        assert_eq!(draft.data.as_json(), "null");
    }

    #[test]
    fn receipts_are_objects_or_arrays_of_them() {
        use watchbus::{EventId, Timestamp};
        let event = |seq| {
            std::sync::Arc::new(
                Draft::to_key(Key::new("k").unwrap(), Data::null())
                    .stored(EventId::new(5, seq), Timestamp(0)),
            )
        };
        let one = receipts(of_events(&[event(1)]), false);
        assert_eq!(one, r#"{"id":"5-1","time":"1970-01-01T00:00:00.000Z"}"#);
        let many: serde_json::Value =
            serde_json::from_str(&receipts(of_events(&[event(1), event(2)]), true)).unwrap();
        assert_eq!(many[1]["id"], "5-2");
    }

    #[test]
    fn an_idempotency_key_is_checked_after_the_token_and_refused_unless_it_is_one() {
        let config = HttpConfig {
            tokens: crate::auth::Tokens {
                publish: Some("t".into()),
                ..crate::auth::Tokens::default()
            },
            ..HttpConfig::default()
        };
        let check = |authorization, key: &[u8]| {
            accept(&config, Some("key=k"), None, authorization, Some(key))
                .map(|accepted| accepted.idempotency_key.map(|key| key.as_str().to_owned()))
                .map_err(|error| error.status_and_code().1)
        };
        assert_eq!(check(None, b"a b"), Err("unauthorized"));
        for bad in [&b"a b"[..], b"", b"\"\"", b"caf\xc3\xa9", b"\xff"] {
            assert_eq!(
                check(Some("Bearer t"), bad),
                Err("invalid_idempotency_key"),
                "{bad:?}"
            );
        }
        for good in [&b"k-1"[..], b"\"k-1\""] {
            assert_eq!(check(Some("Bearer t"), good), Ok(Some("k-1".into())));
        }
    }

    #[test]
    fn the_json_form_needs_application_json_and_says_what_came_instead() {
        let config = HttpConfig::default();
        let refusal =
            |content_type: Option<&[u8]>| match accept(&config, None, content_type, None, None) {
                Ok(_) => "accepted".to_owned(),
                Err(error) => error.to_string(),
            };
        let wants = "publish takes Content-Type application/json (or ?key= with any body); the request sent";
        assert_eq!(refusal(None), format!("{wants} none"));
        assert_eq!(
            refusal(Some(b"Text/Plain; charset=utf-8")),
            format!("{wants} \"text/plain\"")
        );
        assert_eq!(
            refusal(Some(b"t\xc3\xa9xt")),
            format!("{wants} one that is not visible ASCII")
        );
        assert_eq!(refusal(Some(b"Application/JSON; charset=x")), "accepted");
    }

    /// Schemas registered: `n` must be a number.
    fn number_schemas() -> Schemas {
        let mut schemas = Schemas::new();
        let number = serde_json::json!({"type": "number"});
        schemas
            .insert(EventType::new("n").unwrap(), &number)
            .unwrap();
        schemas
    }

    /// The status, code and message a JSON-form `body` is refused with,
    /// under [`number_schemas`].
    fn refused(body: &[u8]) -> Option<((StatusCode, &'static str), String)> {
        parse_json_form(body, &number_schemas())
            .err()
            .map(|e| (e.status_and_code(), e.to_string()))
    }

    #[test]
    fn each_form_checks_the_data_against_its_types_schema() {
        let schemas = number_schemas();
        let mismatch = "the data does not match the JSON Schema of event type \"n\": \
                        the data is not of type \"number\"";
        assert_eq!(
            refused(br#"{"key":"a","type":"n","data":"1"}"#),
            Some((
                (StatusCode::UNPROCESSABLE_ENTITY, "schema_mismatch"),
                mismatch.to_owned()
            ))
        );
        assert_eq!(refused(br#"{"key":"a","type":"n","data":1}"#), None);
        assert_eq!(refused(br#"{"key":"a","data":"1"}"#), None);

        let query = Query::parse(Some("key=a&type=n")).unwrap();
        let text = parse_query_form(&query, false, b"1", &schemas).unwrap_err();
        assert_eq!(text.to_string(), mismatch, "text data is a JSON string");
        assert!(parse_query_form(&query, true, b"1", &schemas).is_ok());
        let untyped = Query::parse(Some("key=a")).unwrap();
        assert!(parse_query_form(&untyped, false, b"1", &schemas).is_ok());
    }

    #[test]
    fn an_array_is_refused_for_its_first_event_at_fault() {
        assert_eq!(
            refused(br#"[{"key":"a","type":"n","data":1},{"key":"a","type":"n"},{"key":""}]"#),
            Some((
                (StatusCode::UNPROCESSABLE_ENTITY, "schema_mismatch"),
                "event 1 of the array: the data does not match the JSON Schema of event \
                 type \"n\": the data is not of type \"number\""
                    .to_owned()
            ))
        );
        assert_eq!(
            refused(br#"[{"key":""},{"key":"a","type":"n"}]"#).map(|r| r.0),
            Some((StatusCode::BAD_REQUEST, "invalid_key"))
        );
    }

    #[test]
    fn batch_limit_is_413() {
        let body = format!("[{}]", vec![r#"{"key":"k"}"#; MAX_BATCH + 1].join(","));
        let err = parse_json_form(body.as_bytes(), &Schemas::new())
            .err()
            .map(|e| e.status_and_code());
        assert_eq!(
            err,
            Some((StatusCode::PAYLOAD_TOO_LARGE, "batch_too_large"))
        );
    }

    /// Any query, media type, token and body: a publish is stored, or
    /// refused with a client error and nothing stored. Never a panic.
    mod props {
        use proptest::collection::vec;
        use proptest::prelude::*;
        use proptest::sample::select;

        use super::*;

        fn one_of(options: &'static [&'static str]) -> impl Strategy<Value = String> {
            select(options).prop_map(str::to_owned)
        }

        /// Text near what a publish holds, or anything.
        fn text() -> impl Strategy<Value = String> {
            prop_oneof![
                4 => one_of(&[
                    "", "a", "orders/42", "orders/", "/a", "a//b", "a b", "t.x", "1", "null",
                    "%2F", "%", "%zz", "%C3%A9", "%FF", "+", "\u{0}", "\u{7f}", "é",
                ]),
                1 => any::<String>(),
            ]
        }

        fn query() -> impl Strategy<Value = Option<String>> {
            let name = one_of(&["key", "prefix", "type", "access_token", "x", ""]);
            let pairs = vec((name, prop_oneof![text(), one_of(&["t", "s", "a"])]), 0..4);
            proptest::option::of(pairs.prop_map(|pairs| {
                pairs
                    .iter()
                    .map(|(name, value)| format!("{name}={value}"))
                    .collect::<Vec<_>>()
                    .join("&")
            }))
        }

        /// One publish in the JSON form, valid or not.
        fn item() -> impl Strategy<Value = String> {
            let name = || prop_oneof![3 => one_of(&["a", "orders/42", "orders/"]), 1 => text()];
            let field = |name: &str, value: Option<String>| {
                let value = serde_json::to_string(&value?).ok()?;
                Some(format!("\"{name}\":{value}"))
            };
            let data = select(vec!["null", "1", "\"s\"", "{}", "[1]"]);
            (
                proptest::option::weighted(0.8, name()),
                proptest::option::weighted(0.2, name()),
                proptest::option::weighted(0.3, text()),
                proptest::option::weighted(0.9, data),
            )
                .prop_map(move |(key, prefix, kind, data)| {
                    let fields = [
                        field("key", key),
                        field("prefix", prefix),
                        field("type", kind),
                        data.map(|data| format!("\"data\":{data}")),
                    ];
                    format!(
                        "{{{}}}",
                        fields.into_iter().flatten().collect::<Vec<_>>().join(",")
                    )
                })
        }

        fn body() -> impl Strategy<Value = Vec<u8>> {
            prop_oneof![
                3 => item().prop_map(String::into_bytes),
                2 => vec(item(), 0..4).prop_map(|items| format!("[{}]", items.join(",")).into_bytes()),
                1 => one_of(&["", "{", "[]", "[{}]", "{\"key\":\"a\",\"x\":1}", "\"a\"", "1e999"])
                    .prop_map(String::into_bytes),
                1 => vec(any::<u8>(), 0..16),
            ]
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(2048))]

            #[test]
            fn a_publish_is_stored_or_refused_with_nothing_stored(
                query in query(),
                content_type in proptest::option::weighted(0.9, prop_oneof![
                    4 => one_of(&["application/json"]),
                    1 => one_of(&["Application/JSON; charset=utf-8", "text/plain"]),
                    1 => any::<String>(),
                ]),
                authorization in proptest::option::weighted(0.8, prop_oneof![
                    4 => one_of(&["Bearer t"]),
                    1 => one_of(&["bearer t", "Bearer s", "Bearer", "t"]),
                ]),
                with_tokens in any::<bool>(),
                idempotency_key in proptest::option::weighted(0.3, prop_oneof![
                    4 => one_of(&["k-1", "\"k-1\"", "a b", "", "\"\"", "é"])
                        .prop_map(String::into_bytes),
                    1 => vec(any::<u8>(), 0..8),
                ]),
                body in body(),
            ) {
                let checked = check_publish(
                    with_tokens,
                    query.as_deref(),
                    content_type.as_deref(),
                    authorization.as_deref(),
                    idempotency_key.as_deref(),
                    &body,
                );
                prop_assert_eq!(checked, Ok(()));
            }
        }
    }
}
