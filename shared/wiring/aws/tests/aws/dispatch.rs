//! Webhook wakes as Lambda sends them: the streams function's router stores the wake (it
//! cannot send after answering), and the dispatch function, fed the subscription item's
//! stream record, sends it, signed; a record delivered twice sends nothing twice.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use agentwire_auth::Auth;
use agentwire_aws_stack::{Sends, Settings, Targets, lambda};
use agentwire_streams_http::HttpConfig;
use aws_lambda_events::dynamodb::{Event, EventRecord, StreamRecord};
use serde_json::{Value, json};

use crate::common::stack;

/// A receiver that answers `{"done": true}` and keeps what it was sent.
async fn receiver() -> (String, Arc<Mutex<Vec<(String, axum::body::Bytes)>>>) {
    let got: Arc<Mutex<Vec<(String, axum::body::Bytes)>>> = Arc::default();
    let keep = got.clone();
    let app = axum::Router::new().route(
        "/wake",
        axum::routing::post(
            move |headers: axum::http::HeaderMap, body: axum::body::Bytes| async move {
                let signature = headers
                    .get("webhook-signature")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_owned();
                keep.lock().unwrap().push((signature, body));
                (
                    [("content-type", "application/json")],
                    json!({"done": true}).to_string(),
                )
            },
        ),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}/wake"), got)
}

/// The subscription item as it is stored now, as a stream image.
async fn image(settings: &Settings, id: &str) -> serde_dynamo::Item {
    let client = agentwire_dynamo::local_client(settings.dynamodb_endpoint.as_deref().unwrap());
    let item = client
        .get_item()
        .table_name(&settings.sessions_table)
        .key(
            "pk",
            aws_sdk_dynamodb::types::AttributeValue::S("sub#acme".into()),
        )
        .key("sk", aws_sdk_dynamodb::types::AttributeValue::S(id.into()))
        .consistent_read(true)
        .send()
        .await
        .unwrap()
        .item
        .expect("the subscription item");
    item.into_iter()
        .map(|(k, v)| (k, serde_dynamo::AttributeValue::from(v)))
        .collect::<std::collections::HashMap<_, _>>()
        .into()
}

/// A MODIFY record of the subscription item, as DynamoDB Streams sends it.
fn record(old: serde_dynamo::Item, new: serde_dynamo::Item) -> Value {
    let mut change = StreamRecord::default();
    change.keys = new.clone();
    change.keys.retain(|k, _| k == "pk" || k == "sk");
    change.old_image = old;
    change.new_image = new;
    let mut record = EventRecord::default();
    record.event_name = "MODIFY".into();
    record.event_source = Some("aws:dynamodb".into());
    record.change = change;
    let mut event = Event::default();
    event.records = vec![record];
    serde_json::to_value(event).unwrap()
}

async fn subscription(http: &reqwest::Client, base: &str) -> Value {
    let got = http
        .get(format!("{base}/v1/stream/__ds/subscriptions/agents"))
        .send()
        .await
        .unwrap();
    got.json().await.unwrap()
}

#[tokio::test]
async fn the_dispatch_function_sends_the_wake_the_streams_function_stored_once() {
    let (settings, stack) = stack().await;
    let (url, got) = receiver().await;
    // As the streams function is wired: wakes stored, never sent from the request.
    let http_dispatch = stack
        .dispatch_with(Sends::ByChangeFeed, Targets::PublicAndLoopback)
        .await
        .unwrap();
    let app = stack
        .http_app(
            Auth::insecure("acme").unwrap(),
            HttpConfig::default(),
            Some(http_dispatch),
        )
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    let http = reqwest::Client::new();

    let created = http
        .put(format!("{base}/v1/stream/__ds/subscriptions/agents"))
        .header("content-type", "application/json")
        .body(json!({"type": "webhook", "pattern": "chat-*", "webhook": {"url": url}}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201, "{:?}", created.text().await);
    let before = image(&settings, "agents").await;
    let put = http
        .put(format!("{base}/v1/stream/chat-1"))
        .header("content-type", "application/json")
        .body(r#"[{"type":"message.start","id":"u1","data":{"role":"user"}}]"#)
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), 201);
    let woken = subscription(&http, &base).await;
    assert_eq!(woken["generation"], 1, "the append woke it: {woken}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        got.lock().unwrap().is_empty(),
        "the streams function sends nothing"
    );

    // The dispatch function, as its bootstrap wires it, gets the item's stream record.
    let dispatch = stack
        .dispatch_with(Sends::ByChangeFeed, Targets::PublicAndLoopback)
        .await
        .unwrap();
    let sessions = stack.sessions_dispatching(&dispatch).unwrap();
    let after = image(&settings, "agents").await;
    let event = record(before, after);
    lambda::dispatch(&dispatch, &sessions, event.clone())
        .await
        .expect("the batch is handled");
    {
        let sent = got.lock().unwrap();
        assert_eq!(sent.len(), 1, "one wake sent: {sent:?}");
        let (signature, raw) = &sent[0];
        let body: Value = serde_json::from_slice(raw).unwrap();
        assert_eq!(body["generation"], 1);
        assert_eq!(body["streams"][0]["path"], "chat-1");
        let jwks = dispatch.jwks();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        assert!(
            agentwire_dispatch::signing::verify(signature, raw, &jwks, now, 300),
            "signed with the published key: {signature}"
        );
    }
    // `done` acked the snapshot: the stream's cursor is at its tail.
    let head = http
        .head(format!("{base}/v1/stream/chat-1"))
        .send()
        .await
        .unwrap();
    let tail = head.headers()["stream-next-offset"]
        .to_str()
        .unwrap()
        .to_owned();
    let settled = subscription(&http, &base).await;
    assert_eq!(settled["streams"][0]["acked_offset"], tail, "{settled}");

    // Streams deliver at least once: the same record again sends nothing more.
    lambda::dispatch(&dispatch, &sessions, event).await.unwrap();
    assert_eq!(
        got.lock().unwrap().len(),
        1,
        "a repeated record is harmless"
    );

    // Anything else is refused with what it was.
    let refused = lambda::dispatch(&dispatch, &sessions, json!({"hello": 1})).await;
    assert!(refused.is_err());
}
