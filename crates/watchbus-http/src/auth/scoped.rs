//! Scoped tokens: JWTs signed with the server's secret (HS256) that name
//! the keys a client may publish to and subscribe to, and until when.
//!
//! ```json
//! {
//!   "exp": 1767225600,
//!   "watchbus": {
//!     "subscribe": {"keys": ["orders/42"], "prefixes": ["news/"]},
//!     "publish": {"keys": ["orders/42"]},
//!     "admin": false
//!   }
//! }
//! ```
//!
//! `exp` is required and `nbf` honoured, both to the second with no leeway.
//! A key is covered by the same key in `keys` or by a prefix it starts
//! with; a prefix (a subscription's `prefix=`, or a broadcast) by a prefix
//! it starts with; every key (a subscription naming no key) only by the
//! empty prefix `""`. `admin` grants the admin role and every key.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use thiserror::Error;
use watchbus::Target;
use watchbus_core::Filter;

use super::Role;
use crate::error::ApiError;

/// Verifies scoped tokens: JWTs signed with HS256 and one shared secret.
#[derive(Clone)]
pub struct ScopedTokens {
    key: DecodingKey,
    validation: Validation,
}

impl fmt::Debug for ScopedTokens {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ScopedTokens(HS256)")
    }
}

/// A JWT secret too short to resist guessing.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error(
    "a JWT secret needs at least {min} bytes, this one has {0}",
    min = ScopedTokens::MIN_SECRET_BYTES
)]
pub struct WeakSecret(pub usize);

impl ScopedTokens {
    /// The shortest secret taken: 256 bits, the size of HS256's hash.
    pub const MIN_SECRET_BYTES: usize = 32;

    /// Verifies tokens signed with HS256 and `secret`, and no other
    /// algorithm (a token naming another is refused).
    ///
    /// # Errors
    /// [`WeakSecret`] when the secret is shorter than
    /// [`ScopedTokens::MIN_SECRET_BYTES`].
    pub fn hs256(secret: &[u8]) -> Result<Self, WeakSecret> {
        if secret.len() < Self::MIN_SECRET_BYTES {
            return Err(WeakSecret(secret.len()));
        }
        let mut validation = Validation::new(Algorithm::HS256);
        // A stream ends at `exp`, and a request from `exp`'s second on is
        // refused, not accepted only to end at once. A leeway would only
        // move that edge.
        validation.leeway = 0;
        validation.reject_tokens_expiring_in_less_than = 1;
        validation.validate_nbf = true;
        // The secret is the server's own: no audience to tell apart.
        validation.validate_aud = false;
        Ok(Self {
            key: DecodingKey::from_secret(secret),
            validation,
        })
    }

    /// The claims of `token`, once its signature, algorithm and times are
    /// checked.
    pub(crate) fn verify(&self, token: &str) -> Result<Claims, ApiError> {
        match jsonwebtoken::decode::<Claims>(token, &self.key, &self.validation) {
            Ok(data) => Ok(data.claims),
            Err(err) => Err(match err.kind() {
                ErrorKind::ExpiredSignature => ApiError::TokenRefused("it has expired".into()),
                ErrorKind::ImmatureSignature => {
                    ApiError::TokenRefused("it is not valid yet (nbf)".into())
                }
                ErrorKind::MissingRequiredClaim(claim) => {
                    ApiError::TokenRefused(format!("it has no {claim:?} claim"))
                }
                // Reached only past the signature: the server's own issuer
                // minted these claims wrong.
                ErrorKind::Json(json) => {
                    ApiError::TokenRefused(format!("its claims are malformed: {json}"))
                }
                // Not a JWT, not signed with this secret, another algorithm:
                // said alike, as of any unknown token.
                _ => ApiError::Unauthorized,
            }),
        }
    }
}

/// What a scoped token grants.
#[derive(Debug, Deserialize)]
pub(crate) struct Claims {
    /// Seconds since the Unix epoch. Required, but checked by
    /// [`ScopedTokens::verify`] after the claims are read.
    #[serde(default)]
    exp: Option<f64>,
    #[serde(default)]
    watchbus: Grants,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Grants {
    #[serde(default)]
    publish: Option<Scope>,
    #[serde(default)]
    subscribe: Option<Scope>,
    #[serde(default)]
    admin: bool,
}

/// Keys and key prefixes one role of a token reaches.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Scope {
    #[serde(default)]
    keys: Vec<String>,
    #[serde(default)]
    prefixes: Vec<String>,
}

impl Scope {
    fn covers_key(&self, key: &str) -> bool {
        self.keys.iter().any(|k| k == key) || self.covers_prefix(key)
    }

    /// Every key starting with `prefix` is covered.
    fn covers_prefix(&self, prefix: &str) -> bool {
        self.prefixes.iter().any(|p| prefix.starts_with(p.as_str()))
    }

    fn covers_every_key(&self) -> bool {
        self.prefixes.iter().any(String::is_empty)
    }
}

impl Claims {
    /// The access these claims give a request in `role`.
    pub(crate) fn access(self, role: Role) -> Result<Access, ApiError> {
        let expires = self
            .exp
            .map(|exp| UNIX_EPOCH + Duration::try_from_secs_f64(exp).unwrap_or(Duration::ZERO));
        let grants = self.watchbus;
        let scope = if grants.admin {
            None
        } else {
            let scope = match role {
                Role::Publish => grants.publish,
                Role::Subscribe => grants.subscribe,
                Role::Admin => None,
            };
            Some(scope.ok_or(ApiError::Forbidden(role.name()))?)
        };
        Ok(Access {
            role,
            scope,
            expires,
        })
    }
}

/// What an authorized request may reach, and until when.
#[derive(Debug, Clone)]
pub(crate) struct Access {
    role: Role,
    /// `None`: every key.
    scope: Option<Scope>,
    /// When the token's grant ends; `None`: never.
    expires: Option<SystemTime>,
}

impl Access {
    /// Every key, for good: an open role, or a configured role token.
    pub(crate) fn every_key(role: Role) -> Self {
        Self {
            role,
            scope: None,
            expires: None,
        }
    }

    /// When the grant ends, for a stream to end then.
    pub(crate) fn expires(&self) -> Option<SystemTime> {
        self.expires
    }

    fn refuse(&self, what: String) -> ApiError {
        ApiError::NotGranted {
            role: self.role.name(),
            what,
        }
    }

    /// Checks that every key `filter` can match is covered.
    pub(crate) fn check_filter(&self, filter: &Filter) -> Result<(), ApiError> {
        let Some(scope) = &self.scope else {
            return Ok(());
        };
        if filter.is_all_keys() && !scope.covers_every_key() {
            return Err(self.refuse("every key".into()));
        }
        if let Some(key) = filter
            .key_list()
            .iter()
            .find(|k| !scope.covers_key(k.as_str()))
        {
            return Err(self.refuse(format!("key {:?}", key.as_str())));
        }
        match filter
            .prefix_list()
            .iter()
            .find(|p| !scope.covers_prefix(p.as_str()))
        {
            Some(prefix) => Err(self.refuse(format!("prefix {:?}", prefix.as_str()))),
            None => Ok(()),
        }
    }

    /// Checks that an event to `target` is covered.
    pub(crate) fn check_target(&self, target: &Target) -> Result<(), ApiError> {
        let Some(scope) = &self.scope else {
            return Ok(());
        };
        match target {
            Target::Key(key) if !scope.covers_key(key.as_str()) => {
                Err(self.refuse(format!("key {:?}", key.as_str())))
            }
            Target::Prefix(prefix) if !scope.covers_prefix(prefix.as_str()) => {
                Err(self.refuse(format!("prefix {:?}", prefix.as_str())))
            }
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use watchbus::{Key, KeyPrefix};

    fn scope(keys: &[&str], prefixes: &[&str]) -> Access {
        Access {
            role: Role::Subscribe,
            scope: Some(Scope {
                keys: keys.iter().map(|k| (*k).to_owned()).collect(),
                prefixes: prefixes.iter().map(|p| (*p).to_owned()).collect(),
            }),
            expires: None,
        }
    }

    fn filter(keys: &[&str], prefixes: &[&str]) -> Filter {
        Filter::new(
            keys.iter().map(|k| Key::new(k).unwrap()).collect(),
            prefixes
                .iter()
                .map(|p| KeyPrefix::new(p).unwrap())
                .collect(),
            Vec::new(),
            64,
        )
        .unwrap()
    }

    fn refused(result: Result<(), ApiError>) -> Option<String> {
        result.err().map(|err| err.to_string())
    }

    #[test]
    fn a_filter_is_covered_key_by_key_and_prefix_by_prefix() {
        let access = scope(&["a", "b*"], &["p/"]);
        let covered: [(&[&str], &[&str]); 5] = [
            (&["a"], &[]),
            // `*` is a key's own character, not a wildcard.
            (&["b*"], &[]),
            (&["a", "p/1", "p/"], &[]),
            (&[], &["p/"]),
            (&["a"], &["p/x/", "p/y"]),
        ];
        for (keys, prefixes) in covered {
            assert_eq!(refused(access.check_filter(&filter(keys, prefixes))), None);
        }
        let not = |what: &str| Some(format!("this token does not grant subscribe on {what}"));
        let uncovered: [(&[&str], &[&str], _); 6] = [
            (&["b"], &[], not("key \"b\"")),
            (&["bx"], &[], not("key \"bx\"")),
            (&["a", "p"], &[], not("key \"p\"")),
            (&[], &["p"], not("prefix \"p\"")),
            (&[], &["a"], not("prefix \"a\"")),
            (&[], &[], not("every key")),
        ];
        for (keys, prefixes, want) in uncovered {
            assert_eq!(
                refused(access.check_filter(&filter(keys, prefixes))),
                want,
                "{keys:?} {prefixes:?}"
            );
        }
        let everything = scope(&[], &[""]);
        assert_eq!(refused(everything.check_filter(&Filter::all())), None);
        assert_eq!(
            refused(Access::every_key(Role::Subscribe).check_filter(&Filter::all())),
            None
        );
    }

    #[test]
    fn a_target_is_covered_as_a_key_or_as_every_key_under_a_prefix() {
        let access = scope(&["a"], &["p/"]);
        let key = |k: &str| Target::Key(Key::new(k).unwrap());
        let prefix = |p: &str| Target::Prefix(KeyPrefix::new(p).unwrap());
        for target in [key("a"), key("p/1"), prefix("p/"), prefix("p/x")] {
            assert_eq!(refused(access.check_target(&target)), None, "{target:?}");
        }
        // A broadcast to `a` reaches `ab` too.
        for target in [key("b"), key("ab"), prefix("a"), prefix("p")] {
            assert!(
                refused(access.check_target(&target)).is_some(),
                "{target:?}"
            );
        }
    }

    fn claims(json: serde_json::Value) -> Claims {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn claims_give_each_role_its_own_scope_and_admin_every_key() {
        let both = || {
            claims(serde_json::json!({"exp": 10, "watchbus": {
                "publish": {"keys": ["a"]}, "subscribe": {"prefixes": ["s/"]}
            }}))
        };
        let publish = both().access(Role::Publish).unwrap();
        assert!(
            publish
                .check_target(&Target::Key(Key::new("a").unwrap()))
                .is_ok()
        );
        assert!(publish.check_filter(&filter(&["a"], &[])).is_ok());
        assert!(publish.check_filter(&filter(&["s/1"], &[])).is_err());
        let subscribe = both().access(Role::Subscribe).unwrap();
        assert!(subscribe.check_filter(&filter(&["s/1"], &[])).is_ok());
        assert!(subscribe.check_filter(&filter(&["a"], &[])).is_err());
        assert_eq!(
            subscribe.expires(),
            Some(UNIX_EPOCH + Duration::from_secs(10))
        );
        assert_eq!(
            refused(both().access(Role::Admin).map(drop)).as_deref(),
            Some("this token does not grant the admin role")
        );
        let none = claims(serde_json::json!({"exp": 10}));
        assert!(none.access(Role::Subscribe).is_err());
        for role in [Role::Publish, Role::Subscribe, Role::Admin] {
            let admin = claims(serde_json::json!({"exp": 10, "watchbus": {"admin": true}}));
            let access = admin.access(role).unwrap();
            assert!(access.check_filter(&Filter::all()).is_ok());
        }
    }

    #[test]
    fn a_short_secret_is_refused() {
        assert_eq!(ScopedTokens::hs256(&[7; 31]).err(), Some(WeakSecret(31)));
        assert!(ScopedTokens::hs256(&[7; 32]).is_ok());
        assert_eq!(
            WeakSecret(3).to_string(),
            "a JWT secret needs at least 32 bytes, this one has 3"
        );
    }
}
