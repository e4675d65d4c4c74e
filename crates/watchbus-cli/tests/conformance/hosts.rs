//! DNS rebinding: a server on loopback answers only to addresses,
//! `localhost` and the names of `--allowed-host`. A page of a name rebound
//! to `127.0.0.1` is of the server's own origin to the browser; its `Host`
//! header, which it cannot change, still names it.

use serde_json::json;

use crate::support::{Answer, TestServer};

/// The exact refusal of a request for `host`.
fn refusal(host: &str) -> serde_json::Value {
    json!({"error": {
        "code": "forbidden",
        "message": format!(
            "this server does not answer to the host {host:?} \
             (a page of a name made to resolve to it?): \
             serve --allowed-host (HttpConfig::allowed_hosts) lists the names it may be reached by"
        ),
    }})
}

/// `method path` sent with `Host: host`, and an `Origin` of that host, as
/// a rebound page sends it; the body sized or chunked.
async fn as_page_of(
    srv: &TestServer,
    host: &str,
    method: reqwest::Method,
    path: &str,
    chunked: bool,
) -> Answer {
    let url = srv.url(path);
    let mut request = reqwest::Client::new()
        .request(method, url)
        .header("host", host)
        .header("origin", format!("http://{host}"))
        .header("content-type", "text/plain");
    request = if chunked {
        let chunks = futures_util::stream::iter([Ok::<_, std::io::Error>("forged".to_owned())]);
        request.body(reqwest::Body::wrap_stream(chunks))
    } else {
        request.body("forged")
    };
    Answer::of(request.send().await.expect("request")).await
}

#[tokio::test]
async fn a_server_on_loopback_refuses_a_rebound_name_everywhere() {
    let srv = TestServer::start(&[]);
    let mut sse = srv.sse("key=k").await;
    srv.wait_active(1).await;
    let host = "evil.example:8080";
    let get = reqwest::Method::GET;
    let post = reqwest::Method::POST;
    for (method, path, chunked) in [
        (&post, "/v1/events?key=k", false),
        (&post, "/v1/events?key=k", true),
        (&post, "/v1/admin/reset", false),
        (&get, "/v1/events?key=k", false),
        (&get, "/v1/events/history?key=k", false),
        (&get, "/v1/stats", false),
        (&get, "/v1/ws?key=k", false),
    ] {
        let answer = as_page_of(&srv, host, method.clone(), path, chunked).await;
        assert_eq!(
            (answer.status, answer.json()),
            (403, refusal(host)),
            "{method} {path}, chunked: {chunked}"
        );
    }
    // Nothing was stored or reset, and the subscriber goes on.
    let live = srv.publish("k", json!("live")).await.id;
    assert_eq!(sse.next_ids(1).await, std::slice::from_ref(&live));
    assert_eq!(srv.history_ids("key=k").await, [live]);
    // Addresses and localhost are this server's, whatever their port: a
    // page of one of them is of the server's own origin, and may publish.
    let port = srv.addr.rsplit_once(':').map(|(_, port)| port).unwrap();
    for host in [
        format!("localhost:{port}"),
        "app.localhost".into(),
        "[::1]:1".into(),
    ] {
        let answer = as_page_of(&srv, &host, post.clone(), "/v1/events?key=k", false).await;
        assert_eq!(answer.status, 200, "{host}: {}", answer.text);
    }
    let own = srv.post("/v1/events?key=k").body("x").send().await.unwrap();
    assert_eq!(own.status().as_u16(), 200);
}

#[tokio::test]
async fn allowed_hosts_are_answered() {
    let srv = TestServer::start(&[
        "--allowed-host",
        "hub.example",
        "--allowed-host",
        ".corp.example",
        "--cors-origin",
        "*",
    ]);
    let post = reqwest::Method::POST;
    for host in [
        "hub.example",
        "HUB.example:443",
        "corp.example",
        "a.corp.example:8080",
    ] {
        let answer = as_page_of(&srv, host, post.clone(), "/v1/events?key=k", false).await;
        assert_eq!(answer.status, 200, "{host}: {}", answer.text);
    }
    for host in ["evil.example", "xcorp.example"] {
        for chunked in [false, true] {
            let answer = as_page_of(&srv, host, post.clone(), "/v1/events?key=k", chunked).await;
            assert_eq!((answer.status, answer.json()), (403, refusal(host)));
        }
    }
    let any = TestServer::start(&["--allowed-host", "*", "--cors-origin", "*"]);
    let answer = as_page_of(&any, "evil.example", post, "/v1/events?key=k", false).await;
    assert_eq!(answer.status, 200, "{}", answer.text);
}
