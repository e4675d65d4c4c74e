//! Scoped tokens: JWTs that name the keys a client may publish to and
//! subscribe to, and until when, signed with the server's secret (HS256) or
//! with the private key of a public key the server holds (RS256 to RS512,
//! PS256 to PS512, ES256, ES384, EdDSA).
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
//! `aud` and `iss` are read only when the server requires an audience or an
//! issuer ([`ScopedTokens::audience`], [`ScopedTokens::issuer`]).
//! A key is covered by the same key in `keys` or by a prefix it starts
//! with; a prefix (a subscription's `prefix=`, or a broadcast) by a prefix
//! it starts with; every key (a subscription naming no key) only by the
//! empty prefix `""`. `admin` grants the admin role and every key.
//!
//! A verified token's grant is remembered until shortly before its `exp`,
//! so a client that sends one token with many requests pays for its
//! signature once: an HMAC and a JSON parse are a few microseconds, an RSA
//! signature far more.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use quick_cache::sync::Cache;
use serde::Deserialize;
use serde_json::Value;
use thiserror::Error;
use watchbus::Target;
use watchbus_core::Filter;

use super::Role;
use crate::error::ApiError;

/// Verifies scoped tokens against one or more keys: an HS256 secret, a
/// public key, or both ([`ScopedTokens::or`]). A token is checked with the
/// key of its header's algorithm; an algorithm no key takes is refused as
/// an unknown token.
#[derive(Clone)]
pub struct ScopedTokens {
    verifiers: Vec<Verifier>,
    /// Claims every token must carry, whichever key checks it.
    required: Required,
    /// Grants of tokens already verified, by token. Shared by clones.
    verified: Arc<Remembered>,
}

/// The `aud` and `iss` a token must name, when the server is told them.
#[derive(Debug, Clone, Default)]
struct Required {
    audience: Option<String>,
    issuer: Option<String>,
}

impl Required {
    /// Refuses verified `claims` whose `aud` does not name the audience or
    /// whose `iss` is not the issuer, when these are required; `aud` is
    /// checked first.
    fn check(&self, claims: &Claims) -> Result<(), ApiError> {
        let missing = |claim: &str| ApiError::TokenRefused(format!("it has no {claim:?} claim"));
        if let Some(audience) = &self.audience {
            let names_it = match &claims.aud {
                None | Some(Value::Null) => return Err(missing("aud")),
                Some(Value::String(aud)) => aud == audience,
                Some(Value::Array(auds)) => auds.iter().any(|aud| aud.as_str() == Some(audience)),
                Some(_) => false,
            };
            if !names_it {
                return Err(ApiError::TokenRefused(
                    "its audience (aud) is not this server's".into(),
                ));
            }
        }
        if let Some(issuer) = &self.issuer {
            match &claims.iss {
                None | Some(Value::Null) => return Err(missing("iss")),
                Some(Value::String(iss)) if iss == issuer => {}
                Some(_) => {
                    return Err(ApiError::TokenRefused(
                        "its issuer (iss) is not the one this server takes".into(),
                    ));
                }
            }
        }
        Ok(())
    }
}

/// Verified tokens and their grants, bounded by their size in memory.
type Remembered = Cache<String, Arc<Grant>, GrantWeight>;

/// A remembered token's weight: about the bytes it and its grant take.
#[derive(Debug, Clone, Copy)]
struct GrantWeight;

impl quick_cache::Weighter<String, Arc<Grant>> for GrantWeight {
    fn weight(&self, token: &String, grant: &Arc<Grant>) -> u64 {
        (token.len() + grant.bytes) as u64
    }
}

/// One key, and the algorithms it verifies.
#[derive(Clone)]
struct Verifier {
    key: DecodingKey,
    validation: Validation,
    kind: &'static str,
}

impl fmt::Debug for ScopedTokens {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kinds: Vec<_> = self.verifiers.iter().map(|v| v.kind).collect();
        write!(f, "ScopedTokens({})", kinds.join(", "))
    }
}

/// A JWT secret too short to resist guessing.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error(
    "a JWT secret needs at least {min} bytes, this one has {0}",
    min = ScopedTokens::MIN_SECRET_BYTES
)]
pub struct WeakSecret(pub usize);

/// A public key the server cannot verify tokens with.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum BadPublicKey {
    /// A private key: the server needs, and should hold, only the public
    /// half.
    #[error(
        "this is a private key; give the server only its public key \
         (`openssl pkey -in KEY -pubout`)"
    )]
    Private,
    /// Not a PEM public key at all (a certificate, say).
    #[error("expected a PEM public key (-----BEGIN PUBLIC KEY-----), found {0}")]
    NotPublicKey(String),
    /// A PEM public key of a kind no algorithm here takes, or garbled.
    #[error("not an RSA, EC (P-256, P-384) or Ed25519 public key")]
    Unsupported,
}

impl ScopedTokens {
    /// The shortest secret taken: 256 bits, the size of HS256's hash.
    pub const MIN_SECRET_BYTES: usize = 32;

    /// How much memory verified tokens and their grants may take, about;
    /// past it, the least used are forgotten, and verified again when next
    /// seen. Room for some 10,000 tokens of a few keys each.
    pub const REMEMBERED_BYTES: u64 = 16 << 20;

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
        Ok(Self::with(
            DecodingKey::from_secret(secret),
            &[Algorithm::HS256],
            "HS256",
        ))
    }

    /// Verifies tokens signed with the private half of `pem`, a PEM public
    /// key (`-----BEGIN PUBLIC KEY-----`, or `RSA PUBLIC KEY`): an RSA key
    /// takes RS256, RS384, RS512, PS256, PS384 and PS512; an EC key ES256
    /// (P-256) and ES384 (P-384); an Ed25519 key EdDSA.
    ///
    /// # Errors
    /// [`BadPublicKey`] when `pem` is a private key, not a PEM public key,
    /// or a key of another kind.
    pub fn public_key_pem(pem: &[u8]) -> Result<Self, BadPublicKey> {
        match ::pem::parse(pem).as_ref().map(::pem::Pem::tag) {
            Ok("PUBLIC KEY" | "RSA PUBLIC KEY") => {}
            Ok(label) if label.contains("PRIVATE") => return Err(BadPublicKey::Private),
            Ok(label) => return Err(BadPublicKey::NotPublicKey(format!("BEGIN {label}"))),
            Err(_) => return Err(BadPublicKey::NotPublicKey("no PEM block".into())),
        }
        use Algorithm::{ES256, ES384, EdDSA, PS256, PS384, PS512, RS256, RS384, RS512};
        if let Ok(key) = DecodingKey::from_rsa_pem(pem) {
            let algorithms = [RS256, RS384, RS512, PS256, PS384, PS512];
            return Ok(Self::with(key, &algorithms, "RSA public key"));
        }
        // The curve is not read here: a P-256 key verifies no ES384
        // signature, and the reverse, so the wrong one is refused.
        if let Ok(key) = DecodingKey::from_ec_pem(pem) {
            return Ok(Self::with(key, &[ES256, ES384], "EC public key"));
        }
        if let Ok(key) = DecodingKey::from_ed_pem(pem) {
            return Ok(Self::with(key, &[EdDSA], "Ed25519 public key"));
        }
        Err(BadPublicKey::Unsupported)
    }

    /// Takes the tokens that either `self` or `other` verifies. When both
    /// take one algorithm, only `self`'s key checks it: two secrets do not
    /// both work.
    ///
    /// Claims required by either ([`ScopedTokens::audience`],
    /// [`ScopedTokens::issuer`]) are required of every token, whichever key
    /// checks it; where both name one, `self`'s wins.
    #[must_use]
    pub fn or(mut self, other: Self) -> Self {
        self.verifiers.extend(other.verifiers);
        self.required = Required {
            audience: self.required.audience.or(other.required.audience),
            issuer: self.required.issuer.or(other.required.issuer),
        };
        self.renewed()
    }

    /// Refuses every token whose `aud` claim does not name `audience` (the
    /// string itself, or an array holding it), or that has none: tokens
    /// that an issuer signs for other services with the same key are not
    /// taken here. Without it, `aud` is not read.
    #[must_use]
    pub fn audience(mut self, audience: &str) -> Self {
        self.required.audience = Some(audience.to_owned());
        self.renewed()
    }

    /// Refuses every token whose `iss` claim is not exactly `issuer`, or
    /// that has none. Without it, `iss` is not read.
    #[must_use]
    pub fn issuer(mut self, issuer: &str) -> Self {
        self.required.issuer = Some(issuer.to_owned());
        self.renewed()
    }

    /// Forgets what was verified under other rules (clones made before
    /// keep theirs).
    fn renewed(mut self) -> Self {
        self.verified = Self::remembered();
        self
    }

    fn remembered() -> Arc<Remembered> {
        Arc::new(Cache::with_weighter(
            10_000,
            Self::REMEMBERED_BYTES,
            GrantWeight,
        ))
    }

    fn with(key: DecodingKey, algorithms: &[Algorithm], kind: &'static str) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.algorithms = algorithms.to_vec();
        // A stream ends at `exp`, and a request from `exp`'s second on is
        // refused, not accepted only to end at once. A leeway would only
        // move that edge.
        validation.leeway = 0;
        validation.reject_tokens_expiring_in_less_than = 1;
        validation.validate_nbf = true;
        // `aud` and `iss` are checked by `Required`, also when absent.
        validation.validate_aud = false;
        Self {
            verifiers: vec![Verifier {
                key,
                validation,
                kind,
            }],
            required: Required::default(),
            verified: Self::remembered(),
        }
    }

    /// What `token` grants, once its signature, algorithm and times are
    /// checked.
    pub(crate) fn verify(&self, token: &str) -> Result<Arc<Grant>, ApiError> {
        self.verify_at(token, SystemTime::now())
    }

    fn verify_at(&self, token: &str, now: SystemTime) -> Result<Arc<Grant>, ApiError> {
        if let Some(grant) = self.verified.get(token) {
            if grant.usable_at(now) {
                return Ok(grant);
            }
            // Near or past its end: verified afresh, which says why.
            self.verified.remove(token);
        }
        let grant = Arc::new(self.verify_signed(token)?);
        if grant.usable_at(now) {
            self.verified.insert(token.to_owned(), Arc::clone(&grant));
        }
        Ok(grant)
    }

    fn verify_signed(&self, token: &str) -> Result<Grant, ApiError> {
        // Not a JWT, signed with another key or by an algorithm no key
        // takes: said alike, as of any unknown token.
        let header = jsonwebtoken::decode_header(token).map_err(|_| ApiError::Unauthorized)?;
        let verifier = self
            .verifiers
            .iter()
            .find(|v| v.validation.algorithms.contains(&header.alg))
            .ok_or(ApiError::Unauthorized)?;
        match jsonwebtoken::decode::<Claims>(token, &verifier.key, &verifier.validation) {
            Ok(data) => {
                self.required.check(&data.claims)?;
                Ok(data.claims.into())
            }
            Err(err) => Err(match err.kind() {
                ErrorKind::ExpiredSignature => ApiError::TokenRefused("it has expired".into()),
                ErrorKind::ImmatureSignature => {
                    ApiError::TokenRefused("it is not valid yet (nbf)".into())
                }
                ErrorKind::MissingRequiredClaim(claim) => {
                    // Also an `exp` that is there but no time jsonwebtoken
                    // reads (a string, 1e300): `exp` is the only claim it
                    // is told to require.
                    ApiError::TokenRefused(format!(
                        "its {claim:?} claim is missing, or not a time in seconds since 1970"
                    ))
                }
                // Reached only past the signature: the server's own issuer
                // minted these claims wrong.
                ErrorKind::Json(json) => {
                    ApiError::TokenRefused(format!("its claims are malformed: {json}"))
                }
                _ => ApiError::Unauthorized,
            }),
        }
    }
}

/// A scoped token's claims, as signed.
#[derive(Debug, Deserialize)]
struct Claims {
    /// Seconds since the Unix epoch. Required, but checked by
    /// [`ScopedTokens::verify`] after the claims are read.
    #[serde(default)]
    exp: Option<f64>,
    /// Read as any JSON: a value of the wrong type is refused only where
    /// the claim is required.
    #[serde(default)]
    aud: Option<Value>,
    #[serde(default)]
    iss: Option<Value>,
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

/// What a verified token grants each role, and until when.
#[derive(Debug)]
pub(crate) struct Grant {
    publish: Option<Arc<Scope>>,
    subscribe: Option<Arc<Scope>>,
    admin: bool,
    /// `None`: never (only for claims read without verification).
    expires: Option<SystemTime>,
    /// About the memory this grant takes, to bound what is remembered.
    bytes: usize,
}

impl From<Claims> for Grant {
    fn from(claims: Claims) -> Self {
        let scope_bytes = |scope: &Option<Scope>| {
            scope.as_ref().map_or(0, |scope| {
                let strings = scope.keys.iter().chain(&scope.prefixes);
                size_of::<Scope>()
                    + strings
                        .map(|s| size_of::<String>() + s.len())
                        .sum::<usize>()
            })
        };
        let bytes = size_of::<Self>()
            + scope_bytes(&claims.watchbus.publish)
            + scope_bytes(&claims.watchbus.subscribe);
        Self {
            bytes,
            publish: claims.watchbus.publish.map(Arc::new),
            subscribe: claims.watchbus.subscribe.map(Arc::new),
            admin: claims.watchbus.admin,
            expires: claims.exp.map(expiry_time),
        }
    }
}

/// The end of a verified token whose `exp` is `exp`: an `exp` past the year
/// 9999, which no clock reaches, is taken as the end of that year rather
/// than overflowing the system time.
fn expiry_time(exp: f64) -> SystemTime {
    /// 9999-12-31T23:59:59Z.
    const LAST_SECOND: f64 = 253_402_300_799.0;
    let since = Duration::try_from_secs_f64(exp.min(LAST_SECOND)).unwrap_or(Duration::ZERO);
    UNIX_EPOCH.checked_add(since).unwrap_or(UNIX_EPOCH)
}

impl Grant {
    /// A remembered grant is used until a second before its end; the last
    /// second is left to the full check, which refuses from `exp`'s second
    /// on and says so.
    const REVERIFY_BEFORE_END: Duration = Duration::from_secs(1);

    fn usable_at(&self, now: SystemTime) -> bool {
        self.expires
            .is_some_and(|end| now + Self::REVERIFY_BEFORE_END < end)
    }

    /// The access this grant gives a request in `role`.
    pub(crate) fn access(&self, role: Role) -> Result<Access, ApiError> {
        let scope = if self.admin {
            None
        } else {
            let scope = match role {
                Role::Publish => self.publish.clone(),
                Role::Subscribe => self.subscribe.clone(),
                Role::Admin => None,
            };
            Some(scope.ok_or(ApiError::Forbidden(role.name()))?)
        };
        Ok(Access {
            role,
            scope,
            expires: self.expires,
        })
    }
}

/// What an authorized request may reach, and until when.
#[derive(Debug, Clone)]
pub(crate) struct Access {
    role: Role,
    /// `None`: every key.
    scope: Option<Arc<Scope>>,
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
            scope: Some(Arc::new(Scope {
                keys: keys.iter().map(|k| (*k).to_owned()).collect(),
                prefixes: prefixes.iter().map(|p| (*p).to_owned()).collect(),
            })),
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

    fn claims(json: serde_json::Value) -> Grant {
        serde_json::from_value::<Claims>(json).unwrap().into()
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
    fn an_exp_past_any_clock_ends_in_the_year_9999() {
        let end_of_9999 = UNIX_EPOCH + Duration::from_secs(253_402_300_799);
        for exp in [1e13, 1e19, 9.3e18, u64::MAX as f64, f64::MAX] {
            let grant = claims(serde_json::json!({"exp": exp, "watchbus": {"admin": true}}));
            assert_eq!(grant.expires, Some(end_of_9999), "{exp}");
            assert!(grant.usable_at(SystemTime::now()), "{exp}");
        }
        assert_eq!(
            claims(serde_json::json!({"exp": 1.5})).expires,
            Some(UNIX_EPOCH + Duration::from_millis(1500))
        );
    }

    /// A file of the workspace's `testdata/jwt`.
    fn key_file(name: &str) -> Vec<u8> {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../testdata/jwt/");
        std::fs::read(format!("{dir}{name}")).unwrap()
    }

    fn unix_now() -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs()
    }

    /// A token signed by the private key file `key` with `alg`, granting
    /// subscribe on `s/` until `exp`.
    fn signed_by(key: &str, alg: Algorithm, exp: u64) -> String {
        signed_with(key, alg, serde_json::json!({"exp": exp}))
    }

    /// As [`signed_by`], with the claims in `claims` beside the grant.
    fn signed_with(key: &str, alg: Algorithm, mut claims: serde_json::Value) -> String {
        use jsonwebtoken::EncodingKey;
        let pem = key_file(key);
        let key = match alg {
            Algorithm::ES256 | Algorithm::ES384 => EncodingKey::from_ec_pem(&pem),
            Algorithm::EdDSA => EncodingKey::from_ed_pem(&pem),
            _ => EncodingKey::from_rsa_pem(&pem),
        }
        .unwrap();
        claims["watchbus"] = serde_json::json!({"subscribe": {"prefixes": ["s/"]}});
        jsonwebtoken::encode(&jsonwebtoken::Header::new(alg), &claims, &key).unwrap()
    }

    fn public(name: &str) -> ScopedTokens {
        ScopedTokens::public_key_pem(&key_file(name)).unwrap()
    }

    /// The status, or the message of a `401` that says why.
    fn outcome(tokens: &ScopedTokens, token: &str) -> Result<(), String> {
        match tokens.verify(token) {
            Ok(grant) => grant
                .access(Role::Subscribe)
                .and_then(|access| access.check_filter(&filter(&[], &["s/1"])))
                .map_err(|err| err.to_string()),
            Err(ApiError::Unauthorized) => Err("unknown".into()),
            Err(err) => Err(err.to_string()),
        }
    }

    #[test]
    fn a_public_key_takes_its_own_algorithms_signed_by_its_private_key() {
        let exp = unix_now() + 3600;
        let rsa = public("rsa.pub.pem");
        assert_eq!(format!("{rsa:?}"), "ScopedTokens(RSA public key)");
        for alg in [Algorithm::RS256, Algorithm::RS512, Algorithm::PS256] {
            assert_eq!(
                outcome(&rsa, &signed_by("rsa.key", alg, exp)),
                Ok(()),
                "{alg:?}"
            );
        }
        let pkcs1 = public("rsa.pkcs1.pub.pem");
        let rs384 = signed_by("rsa.key", Algorithm::RS384, exp);
        assert_eq!(outcome(&pkcs1, &rs384), Ok(()));

        let p256 = public("p256.pub.pem");
        assert_eq!(format!("{p256:?}"), "ScopedTokens(EC public key)");
        assert_eq!(
            outcome(&p256, &signed_by("p256.key", Algorithm::ES256, exp)),
            Ok(())
        );
        let p384 = public("p384.pub.pem");
        assert_eq!(
            outcome(&p384, &signed_by("p384.key", Algorithm::ES384, exp)),
            Ok(())
        );
        let ed = public("ed25519.pub.pem");
        assert_eq!(
            outcome(&ed, &signed_by("ed25519.key", Algorithm::EdDSA, exp)),
            Ok(())
        );

        let unknown = Err("unknown".to_owned());
        // Another key of the same kind, another curve, another kind.
        let other = signed_by("other-p256.key", Algorithm::ES256, exp);
        assert_eq!(outcome(&p256, &other), unknown);
        let es384 = signed_by("p384.key", Algorithm::ES384, exp);
        assert_eq!(outcome(&p256, &es384), unknown);
        assert_eq!(
            outcome(&rsa, &signed_by("p256.key", Algorithm::ES256, exp)),
            unknown
        );
        // The public key used as an HMAC secret: the classic confusion of
        // algorithms, refused because no key here takes HS256.
        let pem = String::from_utf8(key_file("rsa.pub.pem")).unwrap();
        let confused = jsonwebtoken::encode(
            &jsonwebtoken::Header::new(Algorithm::HS256),
            &serde_json::json!({"exp": exp, "watchbus": {"admin": true}}),
            &jsonwebtoken::EncodingKey::from_secret(pem.as_bytes()),
        )
        .unwrap();
        assert_eq!(outcome(&rsa, &confused), unknown);
        // Times are checked as for HS256.
        let expired = signed_by("p256.key", Algorithm::ES256, unix_now() - 10);
        assert_eq!(
            outcome(&p256, &expired),
            Err("the bearer token is refused: it has expired".into())
        );
    }

    #[test]
    fn a_secret_and_a_public_key_each_verify_their_own_tokens() {
        let exp = unix_now() + 3600;
        let secret = b"a-test-secret-of-more-than-32-bytes!";
        let both = ScopedTokens::hs256(secret)
            .unwrap()
            .or(public("ed25519.pub.pem"));
        assert_eq!(
            format!("{both:?}"),
            "ScopedTokens(HS256, Ed25519 public key)"
        );
        let hs256 = jsonwebtoken::encode(
            &jsonwebtoken::Header::new(Algorithm::HS256),
            &serde_json::json!({"exp": exp, "watchbus": {"subscribe": {"prefixes": ["s/"]}}}),
            &jsonwebtoken::EncodingKey::from_secret(secret),
        )
        .unwrap();
        assert_eq!(outcome(&both, &hs256), Ok(()));
        let eddsa = signed_by("ed25519.key", Algorithm::EdDSA, exp);
        assert_eq!(outcome(&both, &eddsa), Ok(()));
        let es256 = signed_by("p256.key", Algorithm::ES256, exp);
        assert_eq!(outcome(&both, &es256), Err("unknown".into()));
    }

    #[test]
    fn an_audience_and_an_issuer_are_required_of_every_token_once_set() {
        use serde_json::json;
        let exp = unix_now() + 3600;
        let ed = |claims| signed_with("ed25519.key", Algorithm::EdDSA, claims);
        let open = public("ed25519.pub.pem");
        // Unset, neither claim is read.
        let other_service = ed(json!({"exp": exp, "aud": "billing", "iss": "idp"}));
        assert_eq!(outcome(&open, &other_service), Ok(()));

        // Set before `or`, it holds for the key added after, and the
        // reverse.
        let secret = ScopedTokens::hs256(&[7; 32]).unwrap();
        let servers = [
            public("ed25519.pub.pem")
                .audience("watchbus")
                .issuer("https://idp.example")
                .or(secret.clone()),
            secret.or(public("ed25519.pub.pem")
                .audience("watchbus")
                .issuer("https://idp.example")),
        ];
        let refused = |why: &str| Err(format!("the bearer token is refused: {why}"));
        for server in &servers {
            let ok = |aud: serde_json::Value| {
                ed(json!({"exp": exp, "aud": aud, "iss": "https://idp.example"}))
            };
            assert_eq!(outcome(server, &ok(json!("watchbus"))), Ok(()));
            assert_eq!(outcome(server, &ok(json!(["billing", "watchbus"]))), Ok(()));
            assert_eq!(
                outcome(server, &ok(json!("billing"))),
                refused("its audience (aud) is not this server's")
            );
            assert_eq!(
                outcome(server, &ok(json!(["billing"]))),
                refused("its audience (aud) is not this server's")
            );
            // Neither a number nor an array of them names it.
            for aud in [json!(7), json!([7]), json!({"aud": "watchbus"})] {
                assert_eq!(
                    outcome(server, &ok(aud)),
                    refused("its audience (aud) is not this server's")
                );
            }
            let wrong_type = ed(json!({"exp": exp, "aud": "watchbus", "iss": 7}));
            assert_eq!(
                outcome(server, &wrong_type),
                refused("its issuer (iss) is not the one this server takes")
            );
            // Lacking both, it is told the first, every time.
            let neither = ed(json!({"exp": exp, "aud": null}));
            assert_eq!(
                outcome(server, &neither),
                refused("it has no \"aud\" claim")
            );
            let no_aud = ed(json!({"exp": exp, "iss": "https://idp.example"}));
            assert_eq!(outcome(server, &no_aud), refused("it has no \"aud\" claim"));
            let other_issuer = ed(json!({"exp": exp, "aud": "watchbus", "iss": "idp"}));
            assert_eq!(
                outcome(server, &other_issuer),
                refused("its issuer (iss) is not the one this server takes")
            );
            let no_iss = ed(json!({"exp": exp, "aud": "watchbus"}));
            assert_eq!(outcome(server, &no_iss), refused("it has no \"iss\" claim"));
            // The secret's tokens too.
            let hs256 = |claims: serde_json::Value| {
                let mut claims = claims;
                claims["watchbus"] = json!({"subscribe": {"prefixes": ["s/"]}});
                let key = jsonwebtoken::EncodingKey::from_secret(&[7; 32]);
                jsonwebtoken::encode(&jsonwebtoken::Header::default(), &claims, &key).unwrap()
            };
            let full = json!({"exp": exp, "aud": "watchbus", "iss": "https://idp.example"});
            assert_eq!(outcome(server, &hs256(full)), Ok(()));
            assert_eq!(
                outcome(server, &hs256(json!({"exp": exp}))),
                refused("it has no \"aud\" claim")
            );
        }

        // What a server verified before the rule is not taken after it.
        let token = ed(json!({"exp": exp}));
        assert_eq!(outcome(&open, &token), Ok(()));
        let strict = open.clone().audience("watchbus");
        assert_eq!(outcome(&strict, &token), refused("it has no \"aud\" claim"));
        assert_eq!(
            outcome(&open, &token),
            Ok(()),
            "the looser clone is unchanged"
        );
    }

    #[test]
    fn only_a_pem_public_key_is_taken() {
        let refused = |name: &str| ScopedTokens::public_key_pem(&key_file(name)).err();
        assert_eq!(refused("rsa.key"), Some(BadPublicKey::Private));
        assert_eq!(refused("ed25519.key"), Some(BadPublicKey::Private));
        assert_eq!(
            refused("p256.cert.pem"),
            Some(BadPublicKey::NotPublicKey("BEGIN CERTIFICATE".into()))
        );
        assert_eq!(
            ScopedTokens::public_key_pem(b"a-shared-secret").err(),
            Some(BadPublicKey::NotPublicKey("no PEM block".into()))
        );
        let garbled = b"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n";
        assert_eq!(
            ScopedTokens::public_key_pem(garbled).err(),
            Some(BadPublicKey::Unsupported)
        );
        assert_eq!(
            BadPublicKey::Private.to_string(),
            "this is a private key; give the server only its public key \
             (`openssl pkey -in KEY -pubout`)"
        );
    }

    #[test]
    fn a_verified_token_is_remembered_until_a_second_before_its_end() {
        let exp = unix_now() + 3600;
        let tokens = public("p256.pub.pem");
        let token = signed_by("p256.key", Algorithm::ES256, exp);
        let now = SystemTime::now();
        let first = tokens.verify_at(&token, now).unwrap();
        let again = tokens.verify_at(&token, now).unwrap();
        assert!(Arc::ptr_eq(&first, &again), "the second use is remembered");
        // A clone shares what was verified.
        let clone = tokens.clone();
        assert!(Arc::ptr_eq(&first, &clone.verify_at(&token, now).unwrap()));

        // Near its end it is verified afresh (still valid by the real
        // clock, so accepted), and no longer remembered.
        let near_end = UNIX_EPOCH + Duration::from_secs(exp) - Duration::from_millis(500);
        let fresh = tokens.verify_at(&token, near_end).unwrap();
        assert!(!Arc::ptr_eq(&first, &fresh));
        assert_eq!(tokens.verified.len(), 0);

        // A refused token is not remembered.
        let expired = signed_by("p256.key", Algorithm::ES256, unix_now() - 10);
        assert!(tokens.verify(&expired).is_err());
        assert_eq!(tokens.verified.len(), 0);
    }

    #[test]
    fn what_is_remembered_is_bounded_by_its_size() {
        let mut tokens = public("ed25519.pub.pem");
        let key = jsonwebtoken::EncodingKey::from_ed_pem(&key_file("ed25519.key")).unwrap();
        let exp = unix_now() + 3600;
        // Two tokens of 40 keys each, of the same size.
        let token = |user: u32| {
            let keys: Vec<String> = (0..40)
                .map(|i| format!("users/{user}/key/{i:04}"))
                .collect();
            let claims = serde_json::json!({"exp": exp, "watchbus": {"subscribe": {"keys": keys}}});
            jsonwebtoken::encode(&jsonwebtoken::Header::new(Algorithm::EdDSA), &claims, &key)
                .unwrap()
        };
        let (first, second) = (token(1), token(2));
        let grant = tokens.verify(&first).unwrap();
        let weight = quick_cache::Weighter::weight(&GrantWeight, &first, &grant);
        assert!(weight > 2_000, "a token and its 40 keys weigh {weight}");
        // Room for one of them, not two.
        tokens.verified = Arc::new(Cache::with_weighter(10, weight * 3 / 2, GrantWeight));
        tokens.verify(&first).unwrap();
        tokens.verify(&second).unwrap();
        assert_eq!(tokens.verified.len(), 1);
        assert!(tokens.verified.weight() <= weight * 3 / 2);
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
