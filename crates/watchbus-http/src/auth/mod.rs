//! Bearer tokens for the three roles.
//!
//! A role with no token configured is open, unless scoped tokens are
//! configured: then every role takes one. Admin may also publish and
//! subscribe. A token comes as `Authorization: Bearer <token>` or, for
//! browsers' EventSource and WebSocket, as `?access_token=`. No token or an
//! unknown token is `401`; a valid token of another role, or a scoped token
//! that does not cover a key asked for, is `403`.

use axum::http::HeaderMap;
use axum::http::header::AUTHORIZATION;
use subtle::ConstantTimeEq;

use crate::error::ApiError;
use crate::query::Query;

mod scoped;

pub(crate) use scoped::Access;
pub use scoped::{BadPublicKey, ScopedTokens, WeakSecret};

/// The bearer token of each role; `None` leaves the role open unless
/// `scoped` is set.
#[derive(Clone, Default)]
pub struct Tokens {
    /// Needed to publish.
    pub publish: Option<String>,
    /// Needed to subscribe (SSE, WebSocket, history).
    pub subscribe: Option<String>,
    /// Needed for `/v1/admin/*`, `/v1/stats` and `/metrics`; also grants
    /// publish and subscribe.
    pub admin: Option<String>,
    /// Scoped tokens (JWTs naming keys and prefixes per role), taken
    /// besides the role tokens above. When set, no role is open.
    pub scoped: Option<ScopedTokens>,
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let shown = |t: &Option<String>| if t.is_some() { "set" } else { "open" };
        f.debug_struct("Tokens")
            .field("publish", &shown(&self.publish))
            .field("subscribe", &shown(&self.subscribe))
            .field("admin", &shown(&self.admin))
            .field("scoped", &self.scoped)
            .finish()
    }
}

/// What a request needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    Publish,
    Subscribe,
    Admin,
}

impl Role {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Publish => "publish",
            Self::Subscribe => "subscribe",
            Self::Admin => "admin",
        }
    }
}

fn same(presented: &str, configured: Option<&String>) -> bool {
    configured.is_some_and(|token| bool::from(token.as_bytes().ct_eq(presented.as_bytes())))
}

impl Tokens {
    fn token(&self, role: Role) -> Option<&String> {
        match role {
            Role::Publish => self.publish.as_ref(),
            Role::Subscribe => self.subscribe.as_ref(),
            Role::Admin => self.admin.as_ref(),
        }
    }

    /// Checks that the request may act in `role`, and says on which keys.
    pub(crate) fn authorize(
        &self,
        role: Role,
        headers: &HeaderMap,
        query: &Query<'_>,
    ) -> Result<Access, ApiError> {
        self.authorize_bearer(role, authorization(headers)?, query)
    }

    /// Checks that a request with this `Authorization` value (the first
    /// one, if it is visible ASCII) and `query` may act in `role`, and says
    /// on which keys.
    pub(crate) fn authorize_bearer(
        &self,
        role: Role,
        authorization: Option<&str>,
        query: &Query<'_>,
    ) -> Result<Access, ApiError> {
        if self.token(role).is_none() && self.scoped.is_none() {
            return Ok(Access::every_key(role));
        }
        let bearer = authorization.and_then(bearer_token);
        let Some(presented) = bearer.or_else(|| query.last("access_token")) else {
            return Err(ApiError::Unauthorized);
        };
        if same(presented, self.token(role)) || same(presented, self.admin.as_ref()) {
            return Ok(Access::every_key(role));
        }
        if same(presented, self.publish.as_ref()) || same(presented, self.subscribe.as_ref()) {
            return Err(ApiError::Forbidden(role.name()));
        }
        match &self.scoped {
            Some(scoped) => scoped.verify(presented)?.access(role),
            None => Err(ApiError::Unauthorized),
        }
    }
}

/// Why a request with two `Authorization` headers is refused.
pub(crate) const TWO_AUTHORIZATIONS: &str =
    "it must carry at most one Authorization header (RFC 9110 §11.6.2)";

/// The request's `Authorization` value, if it has one that is visible
/// ASCII. Two are refused `400`: the header is not a list, and a proxy in
/// front could check the other one. (`serve` refuses them as it reads the
/// head; this is for a router mounted elsewhere.)
pub(crate) fn authorization(headers: &HeaderMap) -> Result<Option<&str>, ApiError> {
    let mut given = headers.get_all(AUTHORIZATION).iter();
    let first = given.next();
    if given.next().is_some() {
        return Err(ApiError::MalformedRequest(TWO_AUTHORIZATIONS.into()));
    }
    Ok(first.and_then(|value| value.to_str().ok()))
}

/// The token of an `Authorization: Bearer <token>` value; the scheme's
/// name is case-insensitive (RFC 9110 §11.1).
fn bearer_token(authorization: &str) -> Option<&str> {
    let (scheme, token) = authorization.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then_some(token.trim())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens() -> Tokens {
        Tokens {
            publish: Some("p".into()),
            subscribe: Some("s".into()),
            admin: Some("a".into()),
            scoped: None,
        }
    }

    fn check(tokens: &Tokens, role: Role, header: Option<&str>, query: &str) -> Result<(), u16> {
        let mut headers = HeaderMap::new();
        if let Some(value) = header {
            headers.insert(AUTHORIZATION, value.parse().unwrap());
        }
        let query = Query::parse(Some(query)).unwrap();
        tokens
            .authorize(role, &headers, &query)
            .map(drop)
            .map_err(|e| e.status_and_code().0.as_u16())
    }

    #[test]
    fn two_authorizations_are_refused_whatever_they_say() {
        for tokens in [tokens(), Tokens::default()] {
            let mut headers = HeaderMap::new();
            headers.append(AUTHORIZATION, "Bearer p".parse().unwrap());
            headers.append(AUTHORIZATION, "Bearer p".parse().unwrap());
            let refused = tokens
                .authorize(Role::Publish, &headers, &Query::parse(None).unwrap())
                .map(drop)
                .map_err(|e| e.status_and_code());
            assert_eq!(
                refused,
                Err((axum::http::StatusCode::BAD_REQUEST, "malformed_request"))
            );
        }
    }

    #[test]
    fn roles_tokens_and_statuses() {
        let t = tokens();
        assert_eq!(check(&t, Role::Publish, Some("Bearer p"), ""), Ok(()));
        for scheme in ["bearer", "BEARER", "bEaReR"] {
            let header = format!("{scheme} p");
            assert_eq!(
                check(&t, Role::Publish, Some(&header), ""),
                Ok(()),
                "{header}"
            );
        }
        assert_eq!(check(&t, Role::Publish, Some("Bearer  p "), ""), Ok(()));
        assert_eq!(check(&t, Role::Publish, Some("Basic p"), ""), Err(401));
        assert_eq!(check(&t, Role::Publish, Some("Bearerp"), ""), Err(401));
        assert_eq!(
            check(&t, Role::Publish, Some("Bearer a"), ""),
            Ok(()),
            "admin may publish"
        );
        assert_eq!(check(&t, Role::Subscribe, None, "access_token=s"), Ok(()));
        assert_eq!(check(&t, Role::Publish, Some("Bearer s"), ""), Err(403));
        assert_eq!(check(&t, Role::Admin, Some("Bearer p"), ""), Err(403));
        assert_eq!(check(&t, Role::Publish, Some("Bearer nope"), ""), Err(401));
        assert_eq!(check(&t, Role::Publish, None, ""), Err(401));
        assert_eq!(check(&t, Role::Publish, Some("Basic cA=="), ""), Err(401));
    }

    #[test]
    fn a_role_without_a_token_is_open() {
        let t = Tokens {
            admin: Some("a".into()),
            ..Tokens::default()
        };
        assert_eq!(check(&t, Role::Publish, None, ""), Ok(()));
        assert_eq!(check(&t, Role::Admin, None, ""), Err(401));
    }
}
