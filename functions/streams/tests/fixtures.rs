//! The streams function's handler on API Gateway HTTP API events (payload 2.0) from
//! `events/`: the event becomes a request exactly as `lambda_http` builds it, and the
//! router the function runs answers it.

use std::sync::Arc;

use agentwire_auth::Auth;
use agentwire_session::Sessions;
use agentwire_sqlite::SqliteSessionLog;
use agentwire_streams_http::HttpConfig;
use lambda_http::request::LambdaRequest;
use tower::ServiceExt;

fn request(name: &str) -> lambda_http::Request {
    let path = format!("{}/../../events/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let event: LambdaRequest =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"));
    lambda_http::Request::from(event)
}

/// The function's router (as its `main` builds it), on an embedded log.
fn app(dir: &tempfile::TempDir) -> axum::Router {
    let log = SqliteSessionLog::open(dir.path().join("s.db")).unwrap();
    let config = HttpConfig {
        sse: false,
        ..HttpConfig::default()
    };
    agentwire_streams_http::router(
        Sessions::new(Arc::new(log)),
        Auth::Insecure {
            tenant: "acme".into(),
        },
        config,
    )
}

async fn send(app: &axum::Router, request: lambda_http::Request) -> (u16, String) {
    let (parts, body) = request.into_parts();
    let request = http::Request::from_parts(parts, axum::body::Body::from(body.to_vec()));
    let response = app.clone().oneshot(request).await.unwrap();
    let status = response.status().as_u16();
    let body = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap();
    (status, String::from_utf8_lossy(&body).into_owned())
}

#[tokio::test]
async fn an_append_event_appends_once_with_its_producer_headers() {
    let dir = tempfile::tempdir().unwrap();
    let app = app(&dir);
    let create = http::Request::put("/v1/stream/trip-42")
        .header("content-type", "application/json")
        .body(axum::body::Body::empty())
        .unwrap();
    assert_eq!(app.clone().oneshot(create).await.unwrap().status(), 201);

    let (status, _) = send(&app, request("apigw-http-append.json")).await;
    assert_eq!(status, 200);
    // Lambda retries deliver the same event again: the producer headers make it a no-op.
    let (status, _) = send(&app, request("apigw-http-append.json")).await;
    assert_eq!(
        status, 204,
        "a duplicate is acknowledged without a second write"
    );

    let read = http::Request::get("/v1/stream/trip-42?offset=-1")
        .body(axum::body::Body::empty())
        .unwrap();
    let response = app.clone().oneshot(read).await.unwrap();
    let body = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap();
    let events: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(events.as_array().map(Vec::len), Some(1), "{events}");
    assert_eq!(events[0]["id"], "m1");
}

#[tokio::test]
async fn sse_behind_api_gateway_is_refused_with_a_reason() {
    let dir = tempfile::tempdir().unwrap();
    let (status, body) = send(&app(&dir), request("apigw-http-live-sse.json")).await;
    assert_eq!(status, 400);
    assert!(body.contains("live=sse is not available"), "{body}");
    assert!(body.contains("long-poll"), "{body}");
}
