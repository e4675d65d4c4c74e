//! `GET /v1/events/history`: a page of retained events.

use axum::extract::{Request, State};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use watchbus::ResumePoint;

use crate::AppState;
use crate::auth::Role;
use crate::error::ApiError;
use crate::params;
use crate::query::Query;

/// Events per page unless `limit` says otherwise.
const DEFAULT_LIMIT: usize = 100;
/// The largest `limit`.
const MAX_LIMIT: usize = 1000;
/// About the most bytes of envelopes in one page: a page of large events
/// ends early (with `next` set) rather than be built in memory whole.
const PAGE_BYTES: usize = 8 * 1024 * 1024;

/// How many of `events` fit in a page: up to [`PAGE_BYTES`] of envelopes,
/// and at least one.
fn fitting(events: &[std::sync::Arc<watchbus::Event>]) -> usize {
    let mut bytes = 0;
    for (at, event) in events.iter().enumerate() {
        bytes += event.envelope().len() + 1;
        if at > 0 && bytes > PAGE_BYTES {
            return at;
        }
    }
    events.len()
}

fn limit(query: &Query<'_>) -> Result<usize, ApiError> {
    let Some(text) = query.last("limit") else {
        return Ok(DEFAULT_LIMIT);
    };
    match text.parse::<usize>() {
        Ok(limit) if (1..=MAX_LIMIT).contains(&limit) => Ok(limit),
        _ => Err(ApiError::InvalidParameter {
            name: "limit",
            value: text.into(),
            expected: "a whole number from 1 to 1000",
        }),
    }
}

/// Handles `GET /v1/events/history`.
pub(crate) async fn history(
    State(state): State<AppState>,
    request: Request,
) -> Result<Response, ApiError> {
    let query = Query::parse(request.uri().query())?;
    let access = state
        .config
        .tokens
        .authorize(Role::Subscribe, request.headers(), &query)?;
    let filter = params::filter(&query, state.config.max_filters)?;
    access.check_filter(&filter)?;
    let from: Option<ResumePoint> = params::resume_point(&query, None)?;
    let limit = limit(&query)?;
    let page = state.hub.history(&filter, from, limit).await?;
    let events = page.events.get(..fitting(&page.events)).unwrap_or_default();
    let next = match events.last() {
        Some(last) if events.len() < page.events.len() => Some(last.id()),
        _ => (!page.reached_head).then_some(page.through),
    };
    // The envelopes are already JSON: splice them in rather than re-encode.
    let mut body =
        Vec::with_capacity(32 + events.iter().map(|e| e.envelope().len() + 1).sum::<usize>());
    body.extend_from_slice(b"{\"events\":[");
    for (at, event) in events.iter().enumerate() {
        if at > 0 {
            body.push(b',');
        }
        body.extend_from_slice(event.envelope());
    }
    body.extend_from_slice(b"],\"next\":");
    match next {
        None => body.extend_from_slice(b"null}"),
        Some(next) => body.extend_from_slice(format!("\"{next}\"}}").as_bytes()),
    }
    Ok((
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        body,
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limit_defaults_and_bounds() {
        let limit_of = |s: &str| limit(&Query::parse(Some(s)).unwrap());
        assert_eq!(limit_of("").ok(), Some(100));
        assert_eq!(limit_of("limit=1000").ok(), Some(1000));
        for bad in ["limit=1001", "limit=0", "limit=-1", "limit=ten"] {
            assert!(limit_of(bad).is_err(), "{bad}");
        }
    }
}
