//! Scoped tokens (`--jwt-secret`, `--jwt-public-key`): JWTs naming the keys
//! and prefixes each role reaches, on every path that takes a token, and
//! streams that end when their token does.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

use crate::support::sse::NextError;
use crate::support::ws::{self, WsNext};
use crate::support::{Answer, End, SseClient, TestServer, check_error, enc, format_time, page_ids};

pub(crate) const SECRET: &str = "a-test-secret-of-more-than-32-bytes!";
/// A static admin token beside the scoped ones.
const A: &str = "adm-token";

fn server() -> TestServer {
    let mut srv = TestServer::start(&["--jwt-secret", SECRET, "--admin-token", A]);
    // The suite's helpers (publish, history, stats) act as admin.
    srv.token = Some(A.to_owned());
    srv
}

pub(crate) fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

pub(crate) fn sign(algorithm: Algorithm, secret: &str, claims: &Value) -> String {
    jsonwebtoken::encode(
        &Header::new(algorithm),
        claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap()
}

/// A token granting `watchbus` claims for an hour.
fn token(watchbus: Value) -> String {
    sign(
        Algorithm::HS256,
        SECRET,
        &json!({"exp": unix_now() + 3600, "watchbus": watchbus}),
    )
}

/// The status and error message of an answer that must be the contract's
/// error envelope.
async fn refusal(resp: reqwest::Response) -> (u16, String) {
    // A stream's body never ends: say so rather than wait for it.
    assert!(
        !resp.status().is_success(),
        "{} answered {}, not a refusal",
        resp.url(),
        resp.status()
    );
    let answer = Answer::of(resp).await;
    if let Err(why) = check_error(&answer, answer.status) {
        panic!("{why}");
    }
    let body = answer.json();
    let message = body["error"]["message"].as_str().unwrap();
    if message.starts_with("the bearer token is refused") {
        assert_eq!(
            answer.headers["www-authenticate"], r#"Bearer realm="watchbus", error="invalid_token""#,
            "{message}"
        );
    }
    (answer.status, message.to_owned())
}

async fn get(srv: &TestServer, path_and_query: &str, token: &str) -> reqwest::Response {
    srv.http
        .get(srv.url(path_and_query))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
}

async fn post_json(srv: &TestServer, body: &Value, token: &str) -> reqwest::Response {
    srv.http
        .post(srv.url("/v1/events"))
        .bearer_auth(token)
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .unwrap()
}

/// Publishes `x` in the query form, with an `Idempotency-Key` if given.
async fn post_text(
    srv: &TestServer,
    query: &str,
    token: &str,
    idempotency_key: Option<&str>,
) -> reqwest::Response {
    let mut req = srv
        .http
        .post(srv.url(&format!("/v1/events?{query}")))
        .bearer_auth(token)
        .body("x");
    if let Some(key) = idempotency_key {
        req = req.header("idempotency-key", key);
    }
    req.send().await.unwrap()
}

/// Opens `GET /v1/events?<query>` with `token` in `access_token`, as a
/// browser's EventSource would.
async fn sse(srv: &TestServer, query: &str, token: &str) -> SseClient {
    let path = format!("/v1/events?{query}&access_token={}", enc(token));
    SseClient::connect(&srv.addr, &path, &[])
        .await
        .expect_ok(&path)
}

fn forbidden(role: &str, what: &str) -> (u16, String) {
    (403, format!("this token does not grant {role} on {what}"))
}

#[tokio::test]
async fn a_scoped_token_subscribes_to_the_keys_and_prefixes_it_names_only() {
    let mut srv = server();
    let t = token(json!({"subscribe": {"keys": ["a"], "prefixes": ["p/"]}}));
    let refused = [
        ("key=b", forbidden("subscribe", "key \"b\"")),
        ("key=a&key=b", forbidden("subscribe", "key \"b\"")),
        // `p` reaches keys such as `px`, outside `p/`.
        ("prefix=p", forbidden("subscribe", "prefix \"p\"")),
        ("type=t", forbidden("subscribe", "every key")),
        ("", forbidden("subscribe", "every key")),
    ];
    for (query, want) in &refused {
        for path in ["/v1/events", "/v1/events/history"] {
            let got = refusal(get(&srv, &format!("{path}?{query}"), &t).await).await;
            assert_eq!(&got, want, "{path}?{query}");
        }
        as_client(&mut srv, Some(&t), async |srv| {
            ws::expect_refused(srv, query, 403).await;
        })
        .await;
    }

    // Covered: a key it names, a key under its prefix, a narrower prefix.
    let mut stream = sse(&srv, "key=a&key=p/1&prefix=p/x", &t).await;
    let mut socket = as_client(&mut srv, Some(&t), async |srv| {
        ws::connect(srv, "key=a&prefix=p/").await
    })
    .await;
    let a1 = srv.publish("a", json!(1)).await;
    let _b = srv.publish("b", json!(2)).await;
    let p1 = srv.publish("p/1", json!(3)).await;
    let px = srv.publish("p/x/y", json!(4)).await;
    let broadcast = srv.publish_event(json!({"prefix": "p/", "data": 5})).await;
    let _elsewhere = srv.publish("q", json!(6)).await;
    let a2 = srv.publish("a", json!(7)).await;
    assert_ids!(
        stream.next_ids(5).await,
        [&a1.id, &p1.id, &px.id, &broadcast.id, &a2.id]
    );
    let mut got = Vec::new();
    while got.len() < 5 {
        got.push(
            ws::next_event(&mut socket).await["id"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    assert_ids!(got, [&a1.id, &p1.id, &px.id, &broadcast.id, &a2.id]);

    let page = srv
        .http
        .get(srv.url("/v1/events/history?key=a"))
        .bearer_auth(&t)
        .send()
        .await
        .unwrap();
    let page = assert_status!(page, 200).json();
    assert_ids!(page_ids(&page), [&a1.id, &a2.id]);

    // The empty prefix covers every key: no filter at all.
    let everything = token(json!({"subscribe": {"prefixes": [""]}}));
    let page = assert_status!(get(&srv, "/v1/events/history", &everything).await, 200).json();
    assert_eq!(page_ids(&page).len(), 7);
}

/// Runs `act` with `token` as the one the suite's helpers send, then
/// goes back to the admin token.
async fn as_client<T>(
    srv: &mut TestServer,
    token: Option<&str>,
    act: impl AsyncFnOnce(&TestServer) -> T,
) -> T {
    srv.token = token.map(str::to_owned);
    let result = act(srv).await;
    srv.token = Some(A.to_owned());
    result
}

#[tokio::test]
async fn a_scoped_token_publishes_to_the_keys_and_prefixes_it_names_only() {
    let srv = server();
    let t = token(json!({"publish": {"keys": ["a"], "prefixes": ["p/"]}}));
    let refused = [
        (
            json!({"key": "b", "data": 1}),
            forbidden("publish", "key \"b\""),
        ),
        (
            json!({"prefix": "p", "data": 1}),
            forbidden("publish", "prefix \"p\""),
        ),
        (
            json!([{"key": "a", "data": 1}, {"key": "b", "data": 2}]),
            (
                403,
                "event 1 of the array: this token does not grant publish on key \"b\"".into(),
            ),
        ),
    ];
    for (body, want) in &refused {
        assert_eq!(
            &refusal(post_json(&srv, body, &t).await).await,
            want,
            "{body}"
        );
    }
    // The query form, on the server's direct publish path.
    let resp = post_text(&srv, "key=b", &t, None).await;
    assert_eq!(refusal(resp).await, forbidden("publish", "key \"b\""));
    // The admin's keyed publish to `b`, retried with the scoped token: the
    // token is refused, not answered the admin's receipt.
    let admin = post_text(&srv, "key=b", A, Some("k-1")).await;
    let admin = assert_status!(admin, 200).json()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let resp = post_text(&srv, "key=b", &t, Some("k-1")).await;
    assert_eq!(refusal(resp).await, forbidden("publish", "key \"b\""));
    let page = srv.history("").await;
    assert_ids!(page_ids(&page), [&admin]);
    let mut stored = vec![admin];

    for body in [
        json!({"key": "a", "data": 1}),
        json!({"key": "p/1", "data": 2}),
        json!({"prefix": "p/", "data": 3}),
        json!({"prefix": "p/x", "data": 4}),
    ] {
        let answer = assert_status!(post_json(&srv, &body, &t).await, 200);
        stored.push(answer.json()["id"].as_str().unwrap().to_owned());
    }
    let resp = post_text(&srv, "key=a", &t, None).await;
    stored.push(
        assert_status!(resp, 200).json()["id"]
            .as_str()
            .unwrap()
            .to_owned(),
    );
    assert_ids!(page_ids(&srv.history("").await), stored);
}

#[tokio::test]
async fn a_scoped_token_needs_the_role_and_a_valid_signature() {
    let srv = server();
    let subscriber = token(json!({"subscribe": {"prefixes": [""]}}));
    let publisher = token(json!({"publish": {"prefixes": [""]}}));
    let admin = token(json!({"admin": true}));
    let publish = json!({"key": "k", "data": 1});

    let role = |name: &str| (403, format!("this token does not grant the {name} role"));
    assert_eq!(
        refusal(post_json(&srv, &publish, &subscriber).await).await,
        role("publish")
    );
    assert_eq!(
        refusal(get(&srv, "/v1/events?key=k", &publisher).await).await,
        role("subscribe")
    );
    for path in ["/v1/stats", "/metrics"] {
        assert_eq!(
            refusal(get(&srv, path, &subscriber).await).await,
            role("admin"),
            "{path}"
        );
        assert_eq!(
            get(&srv, path, &admin).await.status().as_u16(),
            200,
            "{path}"
        );
    }
    // The admin claim reaches every key, in every role.
    assert_eq!(
        post_json(&srv, &publish, &admin).await.status().as_u16(),
        200
    );
    let _stream = sse(&srv, "type=t", &admin).await;

    let unknown =
        "a valid bearer token is required (Authorization: Bearer <token>, or ?access_token=)";
    let hour = unix_now() + 3600;
    let cases = [
        ("no token", None, unknown.to_owned()),
        ("not a JWT", Some("nope".to_owned()), unknown.to_owned()),
        (
            "another secret",
            Some(sign(
                Algorithm::HS256,
                "another-secret-of-more-than-32-bytes",
                &json!({"exp": hour, "watchbus": {"admin": true}}),
            )),
            unknown.to_owned(),
        ),
        (
            "another algorithm",
            Some(sign(
                Algorithm::HS512,
                SECRET,
                &json!({"exp": hour, "watchbus": {"admin": true}}),
            )),
            unknown.to_owned(),
        ),
        (
            "expired",
            Some(sign(
                Algorithm::HS256,
                SECRET,
                &json!({"exp": unix_now() - 1, "watchbus": {"admin": true}}),
            )),
            "the bearer token is refused: it has expired".to_owned(),
        ),
        (
            "not valid yet",
            Some(sign(
                Algorithm::HS256,
                SECRET,
                &json!({"exp": hour, "nbf": hour - 60, "watchbus": {"admin": true}}),
            )),
            "the bearer token is refused: it is not valid yet (nbf)".to_owned(),
        ),
        (
            "no exp",
            Some(sign(
                Algorithm::HS256,
                SECRET,
                &json!({"watchbus": {"admin": true}}),
            )),
            "the bearer token is refused: its \"exp\" claim is missing, or not a time in seconds since 1970".to_owned(),
        ),
        (
            "an exp past any time",
            Some(sign(
                Algorithm::HS256,
                SECRET,
                &json!({"exp": 1e300, "watchbus": {"admin": true}}),
            )),
            "the bearer token is refused: its \"exp\" claim is missing, or not a time in seconds since 1970".to_owned(),
        ),
    ];
    for (what, token, message) in &cases {
        let mut req = srv.http.get(srv.url("/v1/events/history?key=k"));
        if let Some(token) = token {
            req = req.bearer_auth(token);
        }
        let got = refusal(req.send().await.unwrap()).await;
        assert_eq!(got, (401, message.clone()), "{what}");
    }
    // A claim the server does not know is refused, not ignored: a typo
    // must not pass for a token granting nothing.
    let misspelt = token(json!({"subscibe": {"keys": ["k"]}}));
    let (status, message) = refusal(get(&srv, "/v1/events/history?key=k", &misspelt).await).await;
    assert_eq!(status, 401);
    assert!(
        message.starts_with(
            "the bearer token is refused: its claims are malformed: unknown field `subscibe`"
        ),
        "{message}"
    );
    // The static admin token works beside scoped ones.
    assert_eq!(get(&srv, "/v1/stats", A).await.status().as_u16(), 200);
}

/// A token that may subscribe to key `k` until `exp` (Unix seconds).
fn expiring_at(exp: u64) -> String {
    sign(
        Algorithm::HS256,
        SECRET,
        &json!({"exp": exp, "watchbus": {"subscribe": {"keys": ["k"]}}}),
    )
}

/// Every frame until the stream ends, and how it ended; a stream that
/// goes on past its token fails.
async fn frames_to_end(stream: &mut SseClient) -> (Vec<String>, End) {
    let mut frames = Vec::new();
    loop {
        match stream.next_frame_within(Duration::from_secs(10)).await {
            Ok(frame) => frames.push(frame.raw),
            Err(NextError::Ended(end)) => return (frames, end),
            Err(NextError::Timeout) => panic!("the SSE stream outlived its token: {frames:?}"),
        }
    }
}

#[tokio::test]
async fn streams_end_when_their_token_expires_and_resume_with_a_new_one() {
    let mut srv = server();
    // Two whole seconds at least: `exp` is to the second.
    let exp = unix_now() + 3;
    let short = expiring_at(exp);
    let mut stream = sse(&srv, "key=k", &short).await;
    let mut socket = as_client(&mut srv, Some(&short), async |srv| {
        ws::connect(srv, "key=k").await
    })
    .await;
    let first = srv.publish("k", json!(1)).await;
    assert_ids!(stream.next_ids(1).await, [&first.id]);
    assert_eq!(ws::next_event(&mut socket).await["id"], json!(first.id));

    // The last frame says why; then the body ends cleanly.
    let (frames, end) = frames_to_end(&mut stream).await;
    assert_eq!(frames, [": token expired\n\n"]);
    assert_eq!(end, End::Clean);
    // Not long before `exp` by the wall clock (tokio's clock may drift a
    // little from it).
    assert!(
        unix_now() + 1 >= exp,
        "the SSE stream ended before its token expired"
    );
    let (texts, end) = ws::read_to_end(&mut socket, Duration::from_secs(10)).await;
    assert!(texts.is_empty(), "no events after the first: {texts:?}");
    match end {
        WsNext::Close(Some((code, reason))) => {
            assert_eq!((code, reason.as_str()), (4401, "token expired"));
        }
        other => panic!("the WebSocket ended with {other:?}, not close 4401"),
    }

    // The old token is refused now; a new one resumes with nothing lost.
    let resume = format!("key=k&from={}", first.id);
    let (status, message) = refusal(get(&srv, &format!("/v1/events?{resume}"), &short).await).await;
    assert_eq!(
        (status, message.as_str()),
        (401, "the bearer token is refused: it has expired")
    );
    let second = srv.publish("k", json!(2)).await;
    let fresh = token(json!({"subscribe": {"keys": ["k"]}}));
    let mut stream = sse(&srv, &resume, &fresh).await;
    assert_ids!(stream.next_ids(1).await, [&second.id]);
}

/// An `exp` past the year 9999 is a token that outlives any stream, not a
/// time to overflow on.
#[tokio::test]
async fn a_token_expiring_past_any_clock_serves_and_its_streams_go_on() {
    let mut srv = server();
    for exp in [
        json!(10_000_000_000_000_000_000_u64),
        json!(u64::MAX),
        json!(9.3e18),
    ] {
        let far = sign(
            Algorithm::HS256,
            SECRET,
            &json!({"exp": exp, "watchbus": {"subscribe": {"keys": ["k"]}}}),
        );
        let page = assert_status!(get(&srv, "/v1/events/history?key=k", &far).await, 200).json();
        let mut stream = sse(&srv, "key=k", &far).await;
        let mut socket = as_client(&mut srv, Some(&far), async |srv| {
            ws::connect(srv, "key=k").await
        })
        .await;
        let published = srv.publish("k", json!(exp)).await;
        assert_ids!(stream.next_ids(1).await, [&published.id]);
        assert_eq!(
            ws::next_event(&mut socket).await["id"],
            json!(published.id),
            "{exp}"
        );
        assert_eq!(page["next"], Value::Null, "{exp}");
        // Neither stream ends for the token.
        assert!(
            matches!(
                stream.next_frame_within(Duration::from_secs(1)).await,
                Err(NextError::Timeout)
            ),
            "the SSE stream of a token with exp {exp} ended"
        );
        assert!(
            matches!(
                ws::next_within(&mut socket, Duration::from_secs(1)).await,
                WsNext::Timeout
            ),
            "the WebSocket of a token with exp {exp} ended"
        );
    }
}

#[tokio::test]
async fn on_expiry_event_ends_the_stream_with_the_point_to_resume_from() {
    let srv = server();
    let exp = unix_now() + 3;
    let short = expiring_at(exp);
    // One stream moves past an event it does not match; the other, opened
    // after it, sees nothing after its opening bookmark.
    let mut moved = sse(&srv, "key=k&on_expiry=event", &short).await;
    let start = moved.opening().await;
    let first = srv.publish("k", json!(1)).await;
    assert_ids!(moved.next_ids(1).await, [&first.id]);
    let other = srv.publish("other", json!(2)).await;
    let mut still = sse(&srv, "key=k&on_expiry=event", &short).await;
    assert_eq!(still.opening().await, other.id);
    assert_ne!(start, other.id);

    let at = format_time(
        time::OffsetDateTime::from_unix_timestamp(i64::try_from(exp).unwrap()).unwrap(),
    );
    let data = json!({
        "code": "token_expired",
        "message": format!(
            "the token expired at {at}: open a new stream with a new token and from= the last event id received"
        ),
    });
    for (stream, id_line) in [
        (&mut moved, format!("id: {}\n", other.id)),
        (&mut still, String::new()),
    ] {
        let (frames, end) = frames_to_end(stream).await;
        assert_eq!(
            frames,
            [format!(
                ": token expired\n{id_line}event: token_expired\ndata: {data}\n\n"
            )]
        );
        assert_eq!(end, End::Clean);
    }

    // From the bookmark, a new token misses nothing.
    let second = srv.publish("k", json!(3)).await;
    let fresh = token(json!({"subscribe": {"keys": ["k"]}}));
    let mut resumed = sse(&srv, &format!("key=k&from={}", other.id), &fresh).await;
    assert_ids!(resumed.next_ids(1).await, [&second.id]);

    let (status, message) =
        refusal(get(&srv, "/v1/events?key=k&on_expiry=later", &fresh).await).await;
    assert_eq!(
        (status, message.as_str()),
        (400, "invalid on_expiry \"later\": expected close or event")
    );
}

/// A file of the workspace's test keys (`testdata/jwt`).
fn key_path(name: &str) -> String {
    format!("{}/../../testdata/jwt/{name}", env!("CARGO_MANIFEST_DIR"))
}

/// A token signed by the private key file `key` with `algorithm`, granting
/// `watchbus` claims for an hour.
fn signed_by(key: &str, algorithm: Algorithm, watchbus: Value) -> String {
    let pem = std::fs::read(key_path(key)).unwrap();
    let key = match algorithm {
        Algorithm::ES256 | Algorithm::ES384 => EncodingKey::from_ec_pem(&pem),
        Algorithm::EdDSA => EncodingKey::from_ed_pem(&pem),
        _ => EncodingKey::from_rsa_pem(&pem),
    }
    .unwrap();
    let claims = json!({"exp": unix_now() + 3600, "watchbus": watchbus});
    jsonwebtoken::encode(&Header::new(algorithm), &claims, &key).unwrap()
}

#[tokio::test]
async fn a_public_key_verifies_the_tokens_its_private_key_signed() {
    let public_key = key_path("ed25519.pub.pem");
    let mut srv = TestServer::start(&["--jwt-public-key", &public_key, "--admin-token", A]);
    srv.token = Some(A.to_owned());
    let grants = json!({"subscribe": {"keys": ["k"]}, "publish": {"keys": ["k"]}});
    let t = signed_by("ed25519.key", Algorithm::EdDSA, grants.clone());

    let mut stream = sse(&srv, "key=k", &t).await;
    let published = post_text(&srv, "key=k", &t, None).await;
    let published = assert_status!(published, 200).json();
    let _other = srv.publish("other", json!(1)).await;
    let again = srv.publish("k", json!(2)).await;
    assert_ids!(
        stream.next_ids(2).await,
        [published["id"].as_str().unwrap(), &again.id]
    );
    assert_eq!(
        refusal(post_text(&srv, "key=other", &t, None).await).await,
        forbidden("publish", "key \"other\"")
    );

    // Refused alike, as unknown tokens: another key's signature; the
    // public key used as an HS256 secret (the server takes no HS256 here);
    // no token at all (no role is open).
    let unknown = (
        401,
        "a valid bearer token is required (Authorization: Bearer <token>, or ?access_token=)"
            .to_owned(),
    );
    let other_key = signed_by("p256.key", Algorithm::ES256, grants.clone());
    let pem = std::fs::read_to_string(&public_key).unwrap();
    let confused = sign(
        Algorithm::HS256,
        &pem,
        &json!({"exp": unix_now() + 3600, "watchbus": {"admin": true}}),
    );
    for token in [&other_key, &confused] {
        let got = refusal(get(&srv, "/v1/events/history?key=k", token).await).await;
        assert_eq!(got, unknown);
    }
    let anonymous = srv
        .http
        .get(srv.url("/v1/events/history?key=k"))
        .send()
        .await
        .unwrap();
    assert_eq!(refusal(anonymous).await, unknown);
}

#[tokio::test]
async fn a_secret_and_a_public_key_serve_side_by_side() {
    let public_key = key_path("rsa.pub.pem");
    let srv = TestServer::start(&["--jwt-secret", SECRET, "--jwt-public-key", &public_key]);
    let grants = json!({"subscribe": {"prefixes": [""]}});
    for t in [
        token(grants.clone()),
        signed_by("rsa.key", Algorithm::RS256, grants.clone()),
        signed_by("rsa.key", Algorithm::PS512, grants.clone()),
    ] {
        let page = assert_status!(get(&srv, "/v1/events/history", &t).await, 200).json();
        assert_eq!(page_ids(&page).len(), 0);
    }
}

/// `watchbus token ARGS`: the token it printed.
fn minted(args: &[&str]) -> String {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_watchbus"))
        .arg("token")
        .args(args)
        .env_remove("WATCHBUS_JWT_SECRET")
        .env_remove("WATCHBUS_JWT_AUDIENCE")
        .env_remove("WATCHBUS_JWT_ISSUER")
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "watchbus token {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let printed = String::from_utf8(output.stdout).unwrap();
    printed.strip_suffix('\n').unwrap().to_owned()
}

#[tokio::test]
async fn tokens_signed_by_watchbus_token_are_taken_as_scoped() {
    let public_key = key_path("p256.pub.pem");
    let srv = TestServer::start(&["--jwt-secret", SECRET, "--jwt-public-key", &public_key]);
    let by_secret = minted(&["--secret", SECRET, "--subscribe-key", "k", "--ttl", "5m"]);
    let private_key = key_path("p256.key");
    let by_key = minted(&["--private-key", &private_key, "--publish-prefix", "k"]);

    let mut stream = sse(&srv, "key=k", &by_secret).await;
    let published = assert_status!(post_text(&srv, "key=k", &by_key, None).await, 200).json();
    assert_ids!(
        stream.next_ids(1).await,
        [published["id"].as_str().unwrap()]
    );
    assert_eq!(
        refusal(get(&srv, "/v1/events/history?key=other", &by_secret).await).await,
        forbidden("subscribe", "key \"other\"")
    );
    assert_eq!(
        refusal(post_text(&srv, "key=other", &by_key, None).await).await,
        forbidden("publish", "key \"other\"")
    );
}

#[tokio::test]
async fn a_server_told_an_audience_and_an_issuer_takes_only_tokens_naming_both() {
    let public_key = key_path("rsa.pub.pem");
    let private_key = key_path("rsa.key");
    let srv = TestServer::start(&[
        "--jwt-secret",
        SECRET,
        "--jwt-public-key",
        &public_key,
        "--jwt-audience",
        "watchbus",
        "--jwt-issuer",
        "https://idp.example",
    ]);
    let mint = |signer: &[&str], claims: &[&str]| {
        minted(&[signer, claims, &["--subscribe-key", "k"]].concat())
    };
    let by_secret = ["--secret", SECRET];
    let by_key = ["--private-key", private_key.as_str()];
    let both = ["--audience", "watchbus", "--issuer", "https://idp.example"];
    for signer in [&by_secret[..], &by_key[..]] {
        let t = mint(signer, &both);
        let page = assert_status!(get(&srv, "/v1/events/history?key=k", &t).await, 200).json();
        assert_eq!(page_ids(&page).len(), 0);
    }

    let refused = |why: &str| (401, format!("the bearer token is refused: {why}"));
    let cases = [
        (mint(&by_secret, &[]), refused("it has no \"aud\" claim")),
        (
            mint(&by_key, &["--audience", "watchbus"]),
            refused("it has no \"iss\" claim"),
        ),
        (
            mint(
                &by_key,
                &["--audience", "billing", "--issuer", "https://idp.example"],
            ),
            refused("its audience (aud) is not this server's"),
        ),
        (
            mint(
                &by_secret,
                &[
                    "--audience",
                    "watchbus",
                    "--issuer",
                    "https://other.example",
                ],
            ),
            refused("its issuer (iss) is not the one this server takes"),
        ),
    ];
    for (t, want) in cases {
        assert_eq!(
            refusal(get(&srv, "/v1/events/history?key=k", &t).await).await,
            want
        );
        // A stream is refused alike, before it starts.
        let path = format!("/v1/events?key=k&access_token={}", enc(&t));
        let resp = srv.http.get(srv.url(&path)).send().await.unwrap();
        assert_eq!(refusal(resp).await, want);
    }
}
