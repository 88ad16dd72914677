//! Catch-up reads are bounded: a large session is returned in pages of at most
//! `read_chunk_bytes`, each with the `Stream-Next-Offset` to read on from, and reads
//! beyond `max_concurrent_reads` wait briefly, then get `503` with `Retry-After`.
//! Runs the router in-process on a real SQLite log.

use std::sync::Arc;
use std::time::{Duration, Instant};

use agentwire_auth::Auth;
use agentwire_session::Sessions;
use agentwire_sqlite::SqliteSessionLog;
use agentwire_streams_http::{HttpConfig, router};
use axum::Router;
use axum::body::{Body, to_bytes};
use http::{Request, Response, StatusCode};
use tower::ServiceExt;

fn app(config: HttpConfig) -> (Router, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("temp dir");
    let log = SqliteSessionLog::open(dir.path().join("s.db")).expect("open");
    let app = router(
        Sessions::new(Arc::new(log)),
        Auth::Insecure { tenant: "t".into() },
        config,
    );
    (app, dir)
}

async fn send(app: &Router, method: &str, uri: &str, body: impl Into<Body>) -> Response<Body> {
    let request = Request::builder()
        .method(method)
        .uri(uri)
        .header("content-type", "application/json")
        .body(body.into())
        .expect("request");
    app.clone().oneshot(request).await.expect("infallible")
}

fn header<'a>(response: &'a Response<Body>, name: &str) -> Option<&'a str> {
    response.headers().get(name).and_then(|v| v.to_str().ok())
}

/// A JSON session of one 600 KB append (600 messages of about 1 KB).
async fn large_session(app: &Router) -> Vec<String> {
    let messages: Vec<String> = (0..600)
        .map(|i| format!(r#"{{"i":{i},"pad":"{}"}}"#, "x".repeat(1_000)))
        .collect();
    let created = send(app, "PUT", "/v1/stream/big", Body::empty()).await;
    assert_eq!(created.status(), StatusCode::CREATED);
    let body = format!("[{}]", messages.join(","));
    let appended = send(app, "POST", "/v1/stream/big", body).await;
    assert_eq!(appended.status(), StatusCode::NO_CONTENT);
    messages
}

#[tokio::test]
async fn a_catch_up_read_of_a_large_session_is_paged_with_stream_next_offset() {
    const CHUNK: usize = 64 * 1024;
    let (app, _dir) = app(HttpConfig {
        read_chunk_bytes: CHUNK,
        ..HttpConfig::default()
    });
    let messages = large_session(&app).await;

    let mut offset = "-1".to_owned();
    let mut got: Vec<serde_json::Value> = Vec::new();
    let mut pages = 0;
    loop {
        let response = send(&app, "GET", &format!("/v1/stream/big?offset={offset}"), "").await;
        assert_eq!(response.status(), StatusCode::OK);
        let length: usize = header(&response, "content-length")
            .expect("a content-length")
            .parse()
            .expect("a number");
        let next = header(&response, "stream-next-offset")
            .expect("a next offset")
            .to_owned();
        let up_to_date = header(&response, "stream-up-to-date") == Some("true");
        let body = to_bytes(response.into_body(), usize::MAX)
            .await
            .expect("body");
        assert_eq!(body.len(), length);
        // The JSON array's brackets and commas come on top of the data.
        assert!(
            body.len() <= CHUNK + 2 + CHUNK / 1_000,
            "page {pages} has {} bytes, over the {CHUNK}-byte bound",
            body.len()
        );
        let page: Vec<serde_json::Value> = serde_json::from_slice(&body).expect("a JSON array");
        assert!(!page.is_empty(), "an empty page before the end");
        got.extend(page);
        pages += 1;
        offset = next;
        if up_to_date {
            break;
        }
        assert!(pages < 100, "paging never reached the end");
    }
    assert!(pages >= 9, "600 KB in {pages} pages of 64 KB");
    assert_eq!(got.len(), messages.len());
    assert!(got.iter().enumerate().all(|(i, m)| m["i"] == i));
    // At the tail: an empty array, up to date.
    let response = send(&app, "GET", &format!("/v1/stream/big?offset={offset}"), "").await;
    assert_eq!(header(&response, "stream-up-to-date"), Some("true"));
    let body = to_bytes(response.into_body(), usize::MAX)
        .await
        .expect("body");
    assert_eq!(&body[..], b"[]");
}

#[tokio::test]
async fn reads_over_the_cap_wait_briefly_then_get_503_with_retry_after() {
    let (app, _dir) = app(HttpConfig {
        max_concurrent_reads: 1,
        read_queue_timeout: Duration::from_millis(200),
        ..HttpConfig::default()
    });
    large_session(&app).await;

    // A read whose body has not been sent yet holds the only slot.
    let first = send(&app, "GET", "/v1/stream/big?offset=-1", "").await;
    assert_eq!(first.status(), StatusCode::OK);
    let started = Instant::now();
    let refused = send(&app, "GET", "/v1/stream/big?offset=-1", "").await;
    assert_eq!(refused.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        started.elapsed() >= Duration::from_millis(200),
        "it waited for a slot first"
    );
    assert_eq!(header(&refused, "retry-after"), Some("1"));
    let message = to_bytes(refused.into_body(), usize::MAX)
        .await
        .expect("body");
    assert!(
        String::from_utf8_lossy(&message).contains("too many reads"),
        "{message:?}"
    );
    // HEAD and appends are not reads of data: they go on.
    let head = send(&app, "HEAD", "/v1/stream/big", "").await;
    assert_eq!(head.status(), StatusCode::OK);

    // Once the first body is sent, its slot is free; a waiting read takes it.
    let waiting = tokio::spawn({
        let app = app.clone();
        async move { send(&app, "GET", "/v1/stream/big?offset=-1", "").await }
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    to_bytes(first.into_body(), usize::MAX).await.expect("body");
    let served = waiting.await.expect("joined");
    assert_eq!(served.status(), StatusCode::OK);
}
