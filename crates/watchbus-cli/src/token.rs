//! `watchbus token`: signs a scoped token (docs/auth.md) with the server's
//! secret or the private key of its public key, for scripts, tests and
//! trying the scopes by hand. An application signs its own with any JWT
//! library; this is the same token.

use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

use crate::exit::UsageError;

/// Signs a scoped token and prints it.
#[derive(Debug, clap::Args)]
#[command(after_long_help = "\
Examples:
    export WATCHBUS_JWT_SECRET=...   # the server's --jwt-secret
    watchbus token --subscribe-key orders/42 --subscribe-prefix users/7/ --ttl 15m
    watchbus token --private-key issuer.key --publish-prefix orders/ --ttl 1h
    watchbus watch --key orders/42 --token \"$(watchbus token --subscribe-key orders/42)\"

Prints the token (a JWT) and a newline. With --private-key the algorithm follows the key: RS256 for RSA, ES256 or ES384 for EC P-256 or P-384, EdDSA for Ed25519; --alg picks another of the same kind (RS384, RS512, PS256, PS384, PS512). The empty prefix (--subscribe-prefix '') covers every key.")]
pub(crate) struct TokenArgs {
    /// A key the token may subscribe to (SSE, WebSocket, history); repeatable
    #[arg(long = "subscribe-key", value_name = "KEY")]
    subscribe_keys: Vec<String>,

    /// A key prefix the token may subscribe to; repeatable
    #[arg(long = "subscribe-prefix", value_name = "PREFIX")]
    subscribe_prefixes: Vec<String>,

    /// A key the token may publish to; repeatable
    #[arg(long = "publish-key", value_name = "KEY")]
    publish_keys: Vec<String>,

    /// A key prefix the token may publish and broadcast to; repeatable
    #[arg(long = "publish-prefix", value_name = "PREFIX")]
    publish_prefixes: Vec<String>,

    /// Grant the admin role, and every key to publish and subscribe
    #[arg(long)]
    admin: bool,

    /// How long the token is valid, from now
    #[arg(long, value_name = "DURATION", default_value = "1h", value_parser = parse_ttl)]
    ttl: Duration,

    /// The `aud` claim: the audience the server requires (--jwt-audience)
    #[arg(long, value_name = "AUD", env = "WATCHBUS_JWT_AUDIENCE", value_parser = crate::settings::parse_claim)]
    audience: Option<String>,

    /// The `iss` claim: the issuer the server requires (--jwt-issuer)
    #[arg(long, value_name = "ISS", env = "WATCHBUS_JWT_ISSUER", value_parser = crate::settings::parse_claim)]
    issuer: Option<String>,

    /// The server's HS256 secret (at least 32 bytes), used unless --private-key is given
    #[arg(
        long,
        value_name = "SECRET",
        env = "WATCHBUS_JWT_SECRET",
        hide_env_values = true
    )]
    secret: Option<String>,

    /// PEM private key (PKCS#8, or PKCS#1 for RSA) whose public key the server has (--jwt-public-key)
    #[arg(long, value_name = "FILE")]
    private_key: Option<PathBuf>,

    /// Signing algorithm for --private-key, of the key's kind [default: RS256, ES256/ES384 by curve, or EdDSA]
    #[arg(long, value_name = "ALG", value_parser = parse_algorithm)]
    alg: Option<Algorithm>,
}

fn parse_ttl(text: &str) -> Result<Duration, String> {
    let ttl = humantime::parse_duration(text.trim())
        .map_err(|err| format!("invalid duration `{text}`: {err} (e.g. 15m, 1h, 7d)"))?;
    if ttl < Duration::from_secs(1) {
        return Err("must be at least 1s: the token's end is counted in seconds".to_owned());
    }
    Ok(ttl)
}

fn parse_algorithm(text: &str) -> Result<Algorithm, String> {
    use Algorithm::{ES256, ES384, EdDSA, PS256, PS384, PS512, RS256, RS384, RS512};
    const TAKEN: [Algorithm; 9] = [
        RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384, EdDSA,
    ];
    text.parse::<Algorithm>()
        .ok()
        .filter(|alg| TAKEN.contains(alg))
        .ok_or_else(|| {
            format!(
                "unknown algorithm `{text}` (one of RS256, RS384, RS512, PS256, PS384, PS512, \
                 ES256, ES384, EdDSA; HS256 is --secret's)"
            )
        })
}

/// Signs and prints the token.
pub(crate) fn run(args: &TokenArgs) -> anyhow::Result<()> {
    let token = mint(args, SystemTime::now()).map_err(|err| anyhow::Error::new(UsageError(err)))?;
    println!("{token}");
    Ok(())
}

/// The token `args` ask for, valid from `now` for their TTL.
fn mint(args: &TokenArgs, now: SystemTime) -> anyhow::Result<String> {
    let claims = claims(args, now)?;
    let (algorithm, key) = match &args.private_key {
        Some(path) => {
            let text = std::fs::read(path)
                .with_context(|| format!("cannot read the private key {}", path.display()))?;
            signing_key(&text, args.alg)
                .with_context(|| format!("the private key {}", path.display()))?
        }
        None => {
            let secret = args.secret.as_deref().context(
                "give the server's secret (--secret or WATCHBUS_JWT_SECRET) or --private-key",
            )?;
            watchbus_http::ScopedTokens::hs256(secret.as_bytes()).context("--secret")?;
            if args.alg.is_some() {
                anyhow::bail!("--alg is for --private-key: a secret signs HS256");
            }
            (
                Algorithm::HS256,
                EncodingKey::from_secret(secret.as_bytes()),
            )
        }
    };
    jsonwebtoken::encode(&Header::new(algorithm), &claims, &key)
        .with_context(|| format!("cannot sign the token with {algorithm:?}"))
}

/// The claims: `exp`, `aud` and `iss` when given, and the `watchbus`
/// grants (only the roles given).
fn claims(args: &TokenArgs, now: SystemTime) -> anyhow::Result<Value> {
    let scope = |keys: &[String], prefixes: &[String]| -> anyhow::Result<Option<Value>> {
        for key in keys {
            watchbus::Key::new(key)?;
        }
        for prefix in prefixes.iter().filter(|p| !p.is_empty()) {
            watchbus::KeyPrefix::new(prefix)?;
        }
        Ok((!keys.is_empty() || !prefixes.is_empty())
            .then(|| json!({"keys": keys, "prefixes": prefixes})))
    };
    let mut grants = serde_json::Map::new();
    if let Some(subscribe) = scope(&args.subscribe_keys, &args.subscribe_prefixes)? {
        grants.insert("subscribe".into(), subscribe);
    }
    if let Some(publish) = scope(&args.publish_keys, &args.publish_prefixes)? {
        grants.insert("publish".into(), publish);
    }
    if args.admin {
        grants.insert("admin".into(), Value::Bool(true));
    }
    if grants.is_empty() {
        anyhow::bail!(
            "the token would grant nothing: give --subscribe-key, --subscribe-prefix, \
             --publish-key, --publish-prefix or --admin"
        );
    }
    let exp = (now + args.ttl)
        .duration_since(UNIX_EPOCH)
        .context("the clock is before 1970")?
        .as_secs();
    let mut claims = serde_json::Map::new();
    claims.insert("exp".into(), exp.into());
    if let Some(audience) = &args.audience {
        claims.insert("aud".into(), audience.as_str().into());
    }
    if let Some(issuer) = &args.issuer {
        claims.insert("iss".into(), issuer.as_str().into());
    }
    claims.insert("watchbus".into(), grants.into());
    Ok(Value::Object(claims))
}

/// The key of a PEM private key, and the algorithm it signs with.
fn signing_key(text: &[u8], alg: Option<Algorithm>) -> anyhow::Result<(Algorithm, EncodingKey)> {
    use Algorithm::{ES256, ES384, EdDSA, PS256, PS384, PS512, RS256, RS384, RS512};
    let parsed = pem::parse(text);
    let label = parsed.as_ref().map_or("no PEM block", pem::Pem::tag);
    if label == "ENCRYPTED PRIVATE KEY" {
        anyhow::bail!(
            "the private key is encrypted: give it decrypted \
             (`openssl pkey -in KEY -out PLAIN_KEY`), readable by this user only"
        );
    }
    if !label.ends_with("PRIVATE KEY") {
        anyhow::bail!(
            "expected a PEM private key (-----BEGIN PRIVATE KEY-----), found {label}; \
             the server holds the public key, this command the private one"
        );
    }
    if let Ok(key) = EncodingKey::from_rsa_pem(text) {
        let alg = alg.unwrap_or(RS256);
        anyhow::ensure!(
            [RS256, RS384, RS512, PS256, PS384, PS512].contains(&alg),
            "an RSA key signs RS256, RS384, RS512, PS256, PS384 or PS512, not {alg:?}"
        );
        return Ok((alg, key));
    }
    if let Ok(key) = EncodingKey::from_ed_pem(text) {
        anyhow::ensure!(
            alg.is_none_or(|alg| alg == EdDSA),
            "an Ed25519 key signs EdDSA only"
        );
        return Ok((EdDSA, key));
    }
    if let Ok(key) = EncodingKey::from_ec_pem(text) {
        // The curve decides: a P-256 key signs ES256 only, a P-384 key
        // ES384 only. Whichever signs is the key's.
        let curve = [ES256, ES384]
            .into_iter()
            .find(|alg| jsonwebtoken::encode(&Header::new(*alg), &json!({}), &key).is_ok())
            .context("an EC key of a curve other than P-256 and P-384")?;
        anyhow::ensure!(
            alg.is_none_or(|alg| alg == curve),
            "this EC key signs {curve:?} only"
        );
        return Ok((curve, key));
    }
    anyhow::bail!("not an RSA, EC (P-256, P-384) or Ed25519 private key")
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser as _;

    #[derive(Debug, clap::Parser)]
    struct Cli {
        #[command(flatten)]
        args: TokenArgs,
    }

    fn args(argv: &[&str]) -> TokenArgs {
        Cli::try_parse_from(std::iter::once("token").chain(argv.iter().copied()))
            .unwrap()
            .args
    }

    const SECRET: &str = "a-test-secret-of-more-than-32-bytes!";
    const NOW: u64 = 1_800_000_000;

    fn now() -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(NOW)
    }

    /// The header's algorithm and the claims of `token`, once its
    /// signature is checked with `key` (the secret, or a public key file).
    fn read(token: &str, key: &str) -> (Algorithm, Value) {
        use jsonwebtoken::DecodingKey;
        let alg = jsonwebtoken::decode_header(token).unwrap().alg;
        let key = match alg {
            Algorithm::HS256 => DecodingKey::from_secret(key.as_bytes()),
            _ => {
                let pem = std::fs::read(key_file(key)).unwrap();
                match alg {
                    Algorithm::ES256 | Algorithm::ES384 => DecodingKey::from_ec_pem(&pem),
                    Algorithm::EdDSA => DecodingKey::from_ed_pem(&pem),
                    _ => DecodingKey::from_rsa_pem(&pem),
                }
                .unwrap()
            }
        };
        let mut validation = jsonwebtoken::Validation::new(alg);
        validation.validate_exp = false;
        validation.validate_aud = false;
        let claims = jsonwebtoken::decode::<Value>(token, &key, &validation)
            .unwrap()
            .claims;
        (alg, claims)
    }

    fn error(argv: &[&str]) -> String {
        format!("{:#}", mint(&args(argv), now()).unwrap_err())
    }

    fn key_file(name: &str) -> String {
        format!("{}/../../testdata/jwt/{name}", env!("CARGO_MANIFEST_DIR"))
    }

    #[test]
    fn the_claims_name_exactly_the_grants_given() {
        let token = mint(
            &args(&[
                "--secret",
                SECRET,
                "--subscribe-key",
                "orders/42",
                "--subscribe-prefix",
                "users/7/",
                "--publish-prefix",
                "",
                "--ttl",
                "15m",
            ]),
            now(),
        )
        .unwrap();
        assert_eq!(
            read(&token, SECRET),
            (
                Algorithm::HS256,
                json!({"exp": NOW + 900, "watchbus": {
                    "subscribe": {"keys": ["orders/42"], "prefixes": ["users/7/"]},
                    "publish": {"keys": [], "prefixes": [""]},
                }})
            )
        );
        let admin = mint(&args(&["--secret", SECRET, "--admin"]), now()).unwrap();
        assert_eq!(
            read(&admin, SECRET).1,
            json!({"exp": NOW + 3600, "watchbus": {"admin": true}})
        );
        let addressed = mint(
            &args(&[
                "--secret",
                SECRET,
                "--admin",
                "--audience",
                "watchbus",
                "--issuer",
                "https://idp.example",
            ]),
            now(),
        )
        .unwrap();
        assert_eq!(
            read(&addressed, SECRET).1,
            json!({"exp": NOW + 3600, "aud": "watchbus", "iss": "https://idp.example",
                   "watchbus": {"admin": true}})
        );
    }

    #[test]
    fn a_private_key_signs_with_its_own_algorithm() {
        for (file, extra, want) in [
            ("rsa", None, Algorithm::RS256),
            ("rsa", Some("PS384"), Algorithm::PS384),
            ("p256", None, Algorithm::ES256),
            ("p384", None, Algorithm::ES384),
            ("ed25519", None, Algorithm::EdDSA),
        ] {
            let path = key_file(&format!("{file}.key"));
            let mut argv = vec!["--private-key", &path, "--publish-key", "k"];
            if let Some(alg) = extra {
                argv.extend(["--alg", alg]);
            }
            let token = mint(&args(&argv), now()).unwrap();
            let (alg, claims) = read(&token, &format!("{file}.pub.pem"));
            assert_eq!(alg, want, "{file} {extra:?}");
            assert_eq!(
                claims["watchbus"],
                json!({"publish": {"keys": ["k"], "prefixes": []}})
            );
        }
    }

    #[test]
    fn bad_requests_are_refused_saying_why() {
        let p256 = key_file("p256.key");
        let public = key_file("p256.pub.pem");
        let ed = key_file("ed25519.key");
        let encrypted =
            std::env::temp_dir().join(format!("watchbus-enc-{}.pem", std::process::id()));
        std::fs::write(
            &encrypted,
            "-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n",
        )
        .unwrap();
        let encrypted = encrypted.to_str().unwrap().to_owned();
        for (argv, want) in [
            (
                vec!["--secret", SECRET],
                "the token would grant nothing: give --subscribe-key, --subscribe-prefix, \
                 --publish-key, --publish-prefix or --admin",
            ),
            (
                vec!["--admin"],
                "give the server's secret (--secret or WATCHBUS_JWT_SECRET) or --private-key",
            ),
            (
                vec!["--secret", "short", "--admin"],
                "--secret: a JWT secret needs at least 32 bytes, this one has 5",
            ),
            (
                vec!["--secret", SECRET, "--admin", "--alg", "RS256"],
                "--alg is for --private-key: a secret signs HS256",
            ),
            (
                vec!["--secret", SECRET, "--subscribe-key", ""],
                "must not be empty",
            ),
            (
                vec!["--private-key", &public, "--admin"],
                "found PUBLIC KEY; the server holds the public key, this command the private one",
            ),
            (
                vec!["--private-key", &encrypted, "--admin"],
                "the private key is encrypted: give it decrypted",
            ),
            (
                vec!["--private-key", &p256, "--admin", "--alg", "ES384"],
                "this EC key signs ES256 only",
            ),
            (
                vec!["--private-key", &ed, "--admin", "--alg", "RS256"],
                "an Ed25519 key signs EdDSA only",
            ),
        ] {
            let got = error(&argv);
            assert!(got.contains(want), "{argv:?}: {got}");
        }
        std::fs::remove_file(&encrypted).unwrap();
        assert!(!error(&["--secret", "short", "--admin"]).contains("short"));
    }

    #[test]
    fn flags_are_checked_when_parsed() {
        let refused = |argv: &[&str]| {
            Cli::try_parse_from(std::iter::once("token").chain(argv.iter().copied()))
                .unwrap_err()
                .to_string()
        };
        assert!(refused(&["--ttl", "500ms"]).contains("must be at least 1s"));
        assert!(refused(&["--alg", "HS256"]).contains("HS256 is --secret's"));
        assert!(refused(&["--alg", "none"]).contains("unknown algorithm `none`"));
        assert!(refused(&["--audience", ""]).contains("must not be empty"));
        assert!(refused(&["--issuer", ""]).contains("must not be empty"));
    }
}
