//! Every error is JSON with the envelope; unknown paths and wrong methods.

use crate::support::{Answer, TestServer, check_error};

/// Sends each request; each must be answered `status` with the envelope.
async fn assert_each_refused(srv: &TestServer, requests: &[(reqwest::Method, &str)], status: u16) {
    for (method, path) in requests {
        let resp = srv
            .http
            .request(method.clone(), srv.url(path))
            .send()
            .await
            .unwrap();
        let answer = Answer::of(resp).await;
        if let Err(why) = check_error(&answer, status) {
            panic!("{method} {path}: {why}");
        }
    }
}

#[tokio::test]
async fn unknown_path_is_404_with_the_envelope() {
    let srv = TestServer::start(&[]);
    let requests = [
        (reqwest::Method::GET, "/nope"),
        (reqwest::Method::GET, "/v1/nope"),
        (reqwest::Method::GET, "/v1/events/nope"),
        (reqwest::Method::POST, "/v2/events"),
        (reqwest::Method::GET, "/v1/admin/nope"),
    ];
    assert_each_refused(&srv, &requests, 404).await;
}

#[tokio::test]
async fn wrong_method_is_405_with_the_envelope() {
    let srv = TestServer::start(&[]);
    let requests = [
        (reqwest::Method::DELETE, "/v1/events"),
        (reqwest::Method::PUT, "/v1/events"),
        (reqwest::Method::POST, "/v1/events/history"),
        (reqwest::Method::GET, "/v1/admin/reset"),
        (reqwest::Method::POST, "/v1/stats"),
        (reqwest::Method::POST, "/healthz"),
        (reqwest::Method::DELETE, "/metrics"),
        (reqwest::Method::POST, "/v1/ws"),
    ];
    assert_each_refused(&srv, &requests, 405).await;
}

#[tokio::test]
async fn a_plain_get_on_the_websocket_path_is_an_error_not_a_crash() {
    let srv = TestServer::start(&[]);
    let resp = srv.get("/v1/ws?key=k").send().await.unwrap();
    let answer = Answer::of(resp).await;
    assert!(
        (400..500).contains(&answer.status),
        "GET /v1/ws without an upgrade: {}",
        answer.status
    );
    if let Err(why) = check_error(&answer, answer.status) {
        panic!("GET /v1/ws without an upgrade: {why}");
    }
    let resp = srv.get("/healthz").send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 200);
}
