//! Auth (three roles, header or `access_token`) and CORS.

use serde_json::json;

use crate::support::ws;
use crate::support::{Answer, TestServer, check_error};

const P: &str = "pub-token";
const S: &str = "sub-token";
const A: &str = "adm-token";

fn all_roles() -> TestServer {
    TestServer::start(&[
        "--publish-token",
        P,
        "--subscribe-token",
        S,
        "--admin-token",
        A,
    ])
}

#[derive(Debug, Clone, Copy)]
enum Endpoint {
    Publish,
    Subscribe,
    History,
    Reset,
    Stats,
    Metrics,
}

async fn call(srv: &TestServer, endpoint: Endpoint, token: Option<&str>) -> Answer {
    let req = match endpoint {
        Endpoint::Publish => srv
            .http
            .post(srv.url("/v1/events"))
            .header("content-type", "application/json")
            .body(json!({"key": "k", "data": 1}).to_string()),
        Endpoint::Subscribe => srv.http.get(srv.url("/v1/events?key=k")),
        Endpoint::History => srv.http.get(srv.url("/v1/events/history")),
        Endpoint::Reset => srv.http.post(srv.url("/v1/admin/reset")),
        Endpoint::Stats => srv.http.get(srv.url("/v1/stats")),
        Endpoint::Metrics => srv.http.get(srv.url("/metrics")),
    };
    let req = match token {
        Some(t) => req.bearer_auth(t),
        None => req,
    };
    let resp = req.send().await.unwrap();
    if resp.status().as_u16() == 200 && matches!(endpoint, Endpoint::Subscribe) {
        // An open stream: do not wait for its end.
        return Answer {
            status: 200,
            content_type: None,
            headers: resp.headers().clone(),
            text: String::new(),
        };
    }
    Answer::of(resp).await
}

fn ok_status(endpoint: Endpoint) -> u16 {
    match endpoint {
        Endpoint::Reset => 204,
        _ => 200,
    }
}

#[tokio::test]
async fn each_role_needs_its_token() {
    let srv = all_roles();
    use Endpoint::*;
    // (endpoint, tokens that are allowed)
    let matrix: [(Endpoint, &[&str]); 6] = [
        (Publish, &[P, A]),
        (Subscribe, &[S, A]),
        (History, &[S, A]),
        (Stats, &[A]),
        (Metrics, &[A]),
        (Reset, &[A]),
    ];
    for (endpoint, allowed) in matrix {
        let answer = call(&srv, endpoint, None).await;
        if let Err(why) = check_error(&answer, 401) {
            panic!("{endpoint:?} without a token: {why}");
        }
        let answer = call(&srv, endpoint, Some("wrong-token")).await;
        if let Err(why) = check_error(&answer, 401) {
            panic!("{endpoint:?} with a wrong token: {why}");
        }
        for token in [P, S, A] {
            let answer = call(&srv, endpoint, Some(token)).await;
            if allowed.contains(&token) {
                assert_eq!(
                    answer.status,
                    ok_status(endpoint),
                    "{endpoint:?} with {token}: {:?}",
                    answer.text
                );
            } else if let Err(why) = check_error(&answer, 403) {
                panic!("{endpoint:?} with the valid token {token} of another role: {why}");
            }
        }
    }
}

#[tokio::test]
async fn access_token_query_parameter_works_for_streams_and_history() {
    let srv = all_roles();
    for (token, status) in [(S, 200), (A, 200), (P, 403), ("nope", 401)] {
        let resp = srv
            .http
            .get(srv.url(&format!("/v1/events?key=k&access_token={token}")))
            .send()
            .await
            .unwrap();
        assert_eq!(
            resp.status().as_u16(),
            status,
            "SSE with access_token={token}"
        );
        if status != 200 {
            assert_error!(resp, status);
        }
        let resp = srv
            .http
            .get(srv.url(&format!("/v1/events/history?access_token={token}")))
            .send()
            .await
            .unwrap();
        assert_eq!(
            resp.status().as_u16(),
            status,
            "history with access_token={token}"
        );
    }
    // The subscriber sees events published with the publish token.
    let mut sub = srv.sse(&format!("key=k&access_token={S}")).await;
    let resp = srv
        .http
        .post(srv.url("/v1/events"))
        .bearer_auth(P)
        .header("content-type", "application/json")
        .body(r#"{"key":"k","data":"hi"}"#)
        .send()
        .await
        .unwrap();
    let id = assert_status!(resp, 200).json()["id"].clone();
    assert_eq!(sub.next_event().await.json()["id"], id);
}

#[tokio::test]
async fn websocket_checks_the_subscribe_role_before_the_upgrade() {
    let mut srv = all_roles();
    srv.token = None;
    ws::expect_refused(&srv, "key=k", 401).await;
    ws::expect_refused(&srv, "key=k&access_token=wrong", 401).await;
    ws::expect_refused(&srv, &format!("key=k&access_token={P}"), 403).await;
    for token in [S, A] {
        srv.token = Some(token.to_owned());
        let _sock = ws::connect(&srv, "key=k").await;
    }
    // The Authorization header works for WebSocket too.
    srv.token = None;
    for (token, want) in [(S, None), (A, None), (P, Some(403)), ("wrong", Some(401))] {
        let bearer = format!("Bearer {token}");
        let got = ws::try_connect_with(&srv, "key=k", None, &[("authorization", &bearer)]).await;
        match (got, want) {
            (Ok(_), None) => {}
            (Err((status, _)), Some(want)) if status == want => {}
            (Ok(_), Some(want)) => {
                panic!("WebSocket with header token {token}: upgraded, want {want}")
            }
            (Err((status, body)), want) => {
                panic!("WebSocket with header token {token}: {status} {body:?}, want {want:?}")
            }
        }
    }
}

#[tokio::test]
async fn admin_token_may_publish_and_subscribe() {
    let mut srv = all_roles();
    srv.token = Some(A.to_owned());
    let mut sse = srv.sse("key=k").await;
    let p = srv.publish("k", json!(1)).await;
    assert_ids!(sse.next_ids(1).await, [p.id]);
    let page = srv.history("").await;
    assert_eq!(page["events"].as_array().map(Vec::len), Some(1));
}

#[tokio::test]
async fn health_endpoints_are_always_open() {
    let srv = all_roles();
    for path in ["/healthz", "/readyz"] {
        let resp = srv.http.get(srv.url(path)).send().await.unwrap();
        assert_eq!(resp.status().as_u16(), 200, "{path} without a token");
        let resp = srv
            .http
            .get(srv.url(path))
            .bearer_auth("wrong")
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 200, "{path} with a wrong token");
    }
}

#[tokio::test]
async fn a_role_without_a_token_is_open() {
    // Only admin has a token: publish and subscribe are open.
    let srv = TestServer::start(&["--admin-token", A]);
    let mut sse = srv.sse("key=k").await;
    let p = srv.publish("k", json!(1)).await;
    assert_ids!(sse.next_ids(1).await, [p.id]);
    let answer = call(&srv, Endpoint::Stats, None).await;
    if let Err(why) = check_error(&answer, 401) {
        panic!("stats without the admin token: {why}");
    }
    assert_eq!(call(&srv, Endpoint::Stats, Some(A)).await.status, 200);
    // No token configured at all: everything open.
    let open = TestServer::start(&[]);
    for endpoint in [
        Endpoint::Publish,
        Endpoint::Subscribe,
        Endpoint::History,
        Endpoint::Stats,
        Endpoint::Metrics,
        Endpoint::Reset,
    ] {
        let answer = call(&open, endpoint, None).await;
        assert_eq!(
            answer.status,
            ok_status(endpoint),
            "{endpoint:?} on an open server: {:?}",
            answer.text
        );
    }
}

fn acao(answer: &Answer) -> Option<String> {
    answer
        .headers
        .get("access-control-allow-origin")
        .map(|v| v.to_str().unwrap_or_default().to_owned())
}

#[tokio::test]
async fn cors_allows_the_configured_origin_only() {
    let srv = TestServer::start(&["--cors-origin", "http://a.example"]);
    let get = |origin: &'static str| {
        let req = srv
            .http
            .get(srv.url("/v1/events/history"))
            .header("origin", origin);
        async move { Answer::of(req.send().await.unwrap()).await }
    };
    let answer = get("http://a.example").await;
    assert_eq!(answer.status, 200);
    assert_eq!(
        acao(&answer).as_deref(),
        Some("http://a.example"),
        "headers {:?}",
        answer.headers
    );
    let answer = get("http://b.example").await;
    let other = acao(&answer);
    assert!(
        other.is_none() || other.as_deref() == Some("http://a.example"),
        "another origin must not be allowed: {other:?}"
    );

    // Preflight for a publish with a token and JSON.
    let preflight = |origin: &'static str| {
        let req = srv
            .http
            .request(reqwest::Method::OPTIONS, srv.url("/v1/events"))
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header(
                "access-control-request-headers",
                "content-type, authorization",
            );
        async move { Answer::of(req.send().await.unwrap()).await }
    };
    let answer = preflight("http://a.example").await;
    assert!(
        answer.status == 200 || answer.status == 204,
        "preflight status {} {:?}",
        answer.status,
        answer.text
    );
    assert_eq!(
        acao(&answer).as_deref(),
        Some("http://a.example"),
        "preflight headers {:?}",
        answer.headers
    );
    let methods = answer
        .headers
        .get("access-control-allow-methods")
        .map(|v| v.to_str().unwrap().to_ascii_uppercase())
        .unwrap_or_default();
    assert!(
        methods.contains("POST") || methods.contains('*'),
        "allow-methods {methods:?}"
    );
    let allowed = answer
        .headers
        .get("access-control-allow-headers")
        .map(|v| v.to_str().unwrap().to_ascii_lowercase())
        .unwrap_or_default();
    assert!(
        allowed.contains('*')
            || (allowed.contains("content-type") && allowed.contains("authorization")),
        "allow-headers {allowed:?}"
    );
    let answer = preflight("http://b.example").await;
    let other = acao(&answer);
    assert!(
        other.is_none() || other.as_deref() == Some("http://a.example"),
        "preflight from another origin must not be allowed: {other:?}"
    );

    // The SSE stream carries the header too.
    let sse = srv
        .sse_with("key=k", &[("Origin", "http://a.example")])
        .await;
    assert_eq!(
        sse.header("access-control-allow-origin"),
        Some("http://a.example"),
        "SSE headers {:?}",
        sse.headers
    );
}

#[tokio::test]
async fn cors_star_allows_any_origin_and_none_configured_allows_none() {
    let srv = TestServer::start(&["--cors-origin", "*"]);
    let resp = srv
        .http
        .get(srv.url("/v1/events/history"))
        .header("origin", "http://z.example")
        .send()
        .await
        .unwrap();
    let answer = Answer::of(resp).await;
    let got = acao(&answer);
    assert!(
        got.as_deref() == Some("*") || got.as_deref() == Some("http://z.example"),
        "ACAO {got:?}"
    );

    let srv = TestServer::start(&[]);
    let resp = srv
        .http
        .get(srv.url("/v1/events/history"))
        .header("origin", "http://z.example")
        .send()
        .await
        .unwrap();
    let answer = Answer::of(resp).await;
    assert_eq!(acao(&answer), None, "no --cors-origin: no CORS header");
}
