//! `422`: data that fails the JSON Schema registered for its event type
//! (`serve --schema TYPE=FILE`) is refused whole, stores nothing and
//! disturbs no subscriber.

use std::path::PathBuf;

use serde_json::{Value, json};

use crate::support::{Answer, TestServer, check_error, page_ids};

/// The schema of `order.created` in these tests.
const ORDER: &str = r#"{
    "type": "object",
    "properties": {
        "amount": {"type": "number", "minimum": 0},
        "currency": {"type": "string", "pattern": "^[A-Z]{3}$"}
    },
    "required": ["amount"]
}"#;

/// A fresh directory for this test's files.
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "watchbus-conformance-{}-{name}",
        std::process::id()
    ));
    std::fs::create_dir_all(dir.join("schemas")).unwrap();
    dir
}

/// A server with [`ORDER`] as the schema of `order.created`, its file in
/// `dir`.
fn serve_with_order_schema(dir: &std::path::Path) -> TestServer {
    let order = dir.join("schemas/order.json");
    std::fs::write(&order, ORDER).unwrap();
    let arg = format!("order.created={}", order.display());
    TestServer::start(&["--schema", &arg])
}

/// Checks a `422 schema_mismatch` answer and returns its message.
async fn mismatch(response: reqwest::Response) -> String {
    let answer = Answer::of(response).await;
    match check_error(&answer, 422) {
        Ok(code) => assert_eq!(code, "schema_mismatch", "{}", answer.text),
        Err(why) => panic!("{why}"),
    }
    answer.json()["error"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

async fn published(srv: &TestServer) -> u64 {
    srv.stats().await["events"]["published"].as_u64().unwrap()
}

const AMOUNT_NOT_A_NUMBER: &str = "the data does not match the JSON Schema of event type \
                                   \"order.created\": at /amount: value is not of type \"number\"";

#[tokio::test]
async fn data_failing_its_types_schema_is_422_and_nothing_of_it_is_stored() {
    let dir = scratch("schema-422");
    let srv = serve_with_order_schema(&dir);
    let mut watcher = srv.sse("prefix=orders/").await;

    // The JSON form, one event.
    let bad = json!({"key": "orders/1", "type": "order.created", "data": {"amount": "12"}});
    assert_eq!(
        mismatch(srv.publish_raw(&bad).await).await,
        AMOUNT_NOT_A_NUMBER
    );

    // The same body through the router rather than the server's direct
    // publish path (a chunked body goes the ordinary way): the same answer.
    assert_eq!(
        mismatch(srv.publish_chunked(&bad).await).await,
        AMOUNT_NOT_A_NUMBER
    );

    // An array is refused whole, naming the first event at fault; the
    // values themselves are not echoed.
    let batch = json!([
        {"key": "orders/1", "type": "order.created", "data": {"amount": 1}},
        {"key": "orders/2", "type": "order.created", "data": {"amount": -1, "currency": "eur"}},
        {"key": "orders/3", "data": "untyped"},
    ]);
    assert_eq!(
        mismatch(srv.publish_raw(&batch).await).await,
        "event 1 of the array: the data does not match the JSON Schema of event type \
         \"order.created\": at /amount: value is less than the minimum of 0 (and 1 other error)"
    );

    // The query form: a text body is a JSON string, which is not an object.
    let text = srv
        .post("/v1/events?key=orders/1&type=order.created")
        .header("content-type", "text/plain")
        .body("amount=12")
        .send()
        .await
        .unwrap();
    assert_eq!(
        mismatch(text).await,
        "the data does not match the JSON Schema of event type \"order.created\": \
         the data is not of type \"object\""
    );
    assert_eq!(published(&srv).await, 0, "a refused publish stores nothing");

    // Valid data of the type, untyped data and a type without a schema are
    // stored, and the watcher sees exactly them: nothing refused reached it.
    let valid = srv
        .publish_typed(
            "orders/1",
            "order.created",
            json!({"amount": 12.5, "currency": "EUR"}),
        )
        .await;
    let untyped = srv.publish("orders/2", json!({"amount": "any"})).await;
    let other = srv
        .publish_typed("orders/3", "order.shipped", json!("anything"))
        .await;
    let query_form = srv
        .post("/v1/events?key=orders/4&type=order.created")
        .header("content-type", "application/json")
        .body(r#"{"amount": 0}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(query_form.status().as_u16(), 200);
    let query_form: Value = query_form.json().await.unwrap();
    let query_id = query_form["id"].as_str().unwrap().to_owned();
    assert_ids!(
        watcher.next_ids(4).await,
        [&valid.id, &untyped.id, &other.id, &query_id]
    );
    assert_eq!(published(&srv).await, 4);
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test]
async fn a_config_files_schema_path_is_read_from_its_directory() {
    let dir = scratch("schema-config");
    std::fs::write(dir.join("schemas/order.json"), ORDER).unwrap();
    let config = dir.join("watchbus.toml");
    std::fs::write(&config, "schema = [\"order.created=schemas/order.json\"]\n").unwrap();
    // Run from elsewhere, so a path relative to the working directory
    // would not be found.
    let srv = TestServer::start(&["--config", config.to_str().unwrap()]);
    let bad = json!({"key": "k", "type": "order.created", "data": {"amount": "12"}});
    assert_eq!(
        mismatch(srv.publish_raw(&bad).await).await,
        AMOUNT_NOT_A_NUMBER
    );
    srv.publish_typed("k", "order.created", json!({"amount": 12}))
        .await;
    assert_eq!(published(&srv).await, 1);
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test]
async fn publish_from_standard_input_names_the_line_a_schema_refused() {
    let dir = scratch("schema-cli");
    let srv = serve_with_order_schema(&dir);
    // Line 2 is blank; line 3 fails the schema.
    let input = "{\"amount\": 1}\n\n{\"amount\": \"x\"}\n{\"amount\": 2}\n";
    let args = [
        "publish",
        "--server",
        &srv.base,
        "--type",
        "order.created",
        "k",
        "-",
    ];
    let out = super::cli::run_cli(args.map(str::to_owned).to_vec(), Some(input)).await;
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    // Lines read together go as one array, all or nothing: line 1 went
    // alone, or with line 3.
    let (start, end) = (
        "error: line 3: the data does not match the JSON Schema of event type \"order.created\": \
         at /amount: value is not of type \"number\" (schema_mismatch, HTTP 422); nothing from line ",
        " on was stored",
    );
    let from = stderr
        .trim_end()
        .strip_prefix(start)
        .and_then(|rest| rest.strip_suffix(end))
        .unwrap_or_else(|| panic!("stderr: {stderr}"));
    let stored = page_ids(&srv.history("").await);
    let printed: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect();
    match from {
        "1" => assert!(stored.is_empty(), "{stored:?}"),
        "3" => assert_eq!(stored.len(), 1, "line 1 alone was stored: {stored:?}"),
        other => panic!("nothing stored from line {other}?"),
    }
    assert_eq!(printed, stored, "the ids printed are the events stored");
    std::fs::remove_dir_all(dir).unwrap();
}
