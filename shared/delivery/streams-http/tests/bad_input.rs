//! Bad input gets the protocol's status code and a message naming the problem, and
//! changes nothing. Runs the router in-process on a real SQLite log.

use std::sync::Arc;
use std::time::Duration;

use agentwire_auth::Auth;
use agentwire_session::Sessions;
use agentwire_sqlite::SqliteSessionLog;
use agentwire_streams_http::{HttpConfig, router};
use axum::Router;
use axum::body::{Body, to_bytes};
use http::{Request, StatusCode};
use tower::ServiceExt;

const TAIL: &str = "stream-next-offset";

struct Server {
    app: Router,
    _dir: tempfile::TempDir,
}

fn server() -> Server {
    let dir = tempfile::tempdir().expect("temp dir");
    let log = SqliteSessionLog::open(dir.path().join("s.db")).expect("open");
    let config = HttpConfig {
        max_body_bytes: 1024,
        long_poll_timeout: Duration::from_millis(200),
        ..HttpConfig::default()
    };
    Server {
        app: router(
            Sessions::new(Arc::new(log)),
            Auth::Insecure { tenant: "t".into() },
            config,
        ),
        _dir: dir,
    }
}

struct Reply {
    status: StatusCode,
    headers: http::HeaderMap,
    body: String,
}

impl Server {
    async fn send(
        &self,
        method: &str,
        uri: &str,
        headers: &[(&str, &str)],
        body: impl Into<Body>,
    ) -> Reply {
        let mut request = Request::builder().method(method).uri(uri);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = self
            .app
            .clone()
            .oneshot(request.body(body.into()).expect("request"))
            .await
            .expect("infallible");
        let status = response.status();
        let headers = response.headers().clone();
        let body = to_bytes(response.into_body(), usize::MAX)
            .await
            .expect("body");
        Reply {
            status,
            headers,
            body: String::from_utf8_lossy(&body).into_owned(),
        }
    }

    async fn json_stream(&self, name: &str) {
        let uri = format!("/v1/stream/{name}");
        let created = self
            .send(
                "PUT",
                &uri,
                &[("content-type", "application/json")],
                r#"{"n":1}"#,
            )
            .await;
        assert_eq!(created.status, StatusCode::CREATED);
    }

    /// The stream's tail and content, to show a refused request changed nothing.
    async fn snapshot(&self, name: &str) -> (String, String) {
        let read = self
            .send("GET", &format!("/v1/stream/{name}"), &[], Body::empty())
            .await;
        assert_eq!(read.status, StatusCode::OK);
        (
            read.headers[TAIL].to_str().expect("ascii").to_owned(),
            read.body,
        )
    }
}

fn assert_refused(reply: &Reply, status: StatusCode, mentions: &str) {
    assert_eq!(reply.status, status, "body: {}", reply.body);
    assert!(
        reply.body.to_lowercase().contains(&mentions.to_lowercase()),
        "the message should name the problem ({mentions:?}): {:?}",
        reply.body
    );
}

#[tokio::test]
async fn malformed_offsets_are_400() {
    let s = server();
    s.json_stream("s").await;
    for offset in [
        "abc",
        "1",
        "0_0",
        "0000000000000000_000000000000000x",
        "%20",
        "9999999999999999_9999999999999999",
    ] {
        let reply = s
            .send(
                "GET",
                &format!("/v1/stream/s?offset={offset}"),
                &[],
                Body::empty(),
            )
            .await;
        assert_refused(&reply, StatusCode::BAD_REQUEST, "offset");
    }
    let twice = s
        .send(
            "GET",
            "/v1/stream/s?offset=-1&offset=now",
            &[],
            Body::empty(),
        )
        .await;
    assert_refused(&twice, StatusCode::BAD_REQUEST, "more than once");
    let live = s
        .send("GET", "/v1/stream/s?live=long-poll", &[], Body::empty())
        .await;
    assert_refused(&live, StatusCode::BAD_REQUEST, "offset");
    let mode = s
        .send(
            "GET",
            "/v1/stream/s?offset=-1&live=websocket",
            &[],
            Body::empty(),
        )
        .await;
    assert_refused(&mode, StatusCode::BAD_REQUEST, "live mode");
}

#[tokio::test]
async fn unknown_streams_are_404_for_every_operation() {
    let s = server();
    for method in ["GET", "HEAD", "DELETE"] {
        let reply = s
            .send(method, "/v1/stream/nobody", &[], Body::empty())
            .await;
        assert_eq!(reply.status, StatusCode::NOT_FOUND, "{method}");
    }
    let append = s
        .send(
            "POST",
            "/v1/stream/nobody",
            &[("content-type", "text/plain")],
            "x",
        )
        .await;
    assert_refused(&append, StatusCode::NOT_FOUND, "nobody");
    let fork = s
        .send(
            "PUT",
            "/v1/stream/f",
            &[("stream-forked-from", "/v1/stream/nobody")],
            Body::empty(),
        )
        .await;
    assert_refused(&fork, StatusCode::NOT_FOUND, "nobody");
    assert_eq!(
        s.send("HEAD", "/v1/stream/f", &[], Body::empty())
            .await
            .status,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn content_type_mismatch_is_409_and_changes_nothing() {
    let s = server();
    s.json_stream("s").await;
    let before = s.snapshot("s").await;
    let reply = s
        .send(
            "POST",
            "/v1/stream/s",
            &[("content-type", "text/plain")],
            "hello",
        )
        .await;
    assert_refused(&reply, StatusCode::CONFLICT, "content-type");
    let missing = s.send("POST", "/v1/stream/s", &[], "hello").await;
    assert_refused(&missing, StatusCode::BAD_REQUEST, "content-type");
    let invalid = s
        .send(
            "POST",
            "/v1/stream/s",
            &[("content-type", "application/json")],
            "{nope",
        )
        .await;
    assert_refused(&invalid, StatusCode::BAD_REQUEST, "json");
    let empty = s
        .send(
            "POST",
            "/v1/stream/s",
            &[("content-type", "application/json")],
            "[]",
        )
        .await;
    assert_refused(&empty, StatusCode::BAD_REQUEST, "empty");
    let put = s
        .send(
            "PUT",
            "/v1/stream/s",
            &[("content-type", "text/plain")],
            Body::empty(),
        )
        .await;
    assert_refused(&put, StatusCode::CONFLICT, "content type");
    assert_eq!(s.snapshot("s").await, before);
}

#[tokio::test]
async fn oversized_bodies_are_413_and_change_nothing() {
    let s = server();
    s.json_stream("s").await;
    let before = s.snapshot("s").await;
    let big = format!(r#"{{"text":"{}"}}"#, "x".repeat(2048));
    let reply = s
        .send(
            "POST",
            "/v1/stream/s",
            &[("content-type", "application/json")],
            big.clone(),
        )
        .await;
    assert_refused(&reply, StatusCode::PAYLOAD_TOO_LARGE, "1024 bytes");
    let create = s
        .send(
            "PUT",
            "/v1/stream/big",
            &[("content-type", "application/json")],
            big,
        )
        .await;
    assert_refused(&create, StatusCode::PAYLOAD_TOO_LARGE, "limit");
    assert_eq!(
        s.send("HEAD", "/v1/stream/big", &[], Body::empty())
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(s.snapshot("s").await, before);
}

#[tokio::test]
async fn bad_producer_headers_are_400_and_change_nothing() {
    let s = server();
    s.json_stream("s").await;
    let before = s.snapshot("s").await;
    let json = ("content-type", "application/json");
    let cases: [(&[(&str, &str)], &str); 5] = [
        (
            &[json, ("producer-id", "p"), ("producer-epoch", "0")],
            "producer-seq",
        ),
        (
            &[
                json,
                ("producer-id", ""),
                ("producer-epoch", "0"),
                ("producer-seq", "0"),
            ],
            "producer-id",
        ),
        (
            &[
                json,
                ("producer-id", "p"),
                ("producer-epoch", "x"),
                ("producer-seq", "0"),
            ],
            "producer-epoch",
        ),
        (
            &[
                json,
                ("producer-id", "p"),
                ("producer-epoch", "0"),
                ("producer-seq", "-1"),
            ],
            "producer-seq",
        ),
        (
            &[
                json,
                ("producer-id", "p"),
                ("producer-epoch", "9007199254740992"),
                ("producer-seq", "0"),
            ],
            "2^53",
        ),
    ];
    for (headers, mentions) in cases {
        let reply = s.send("POST", "/v1/stream/s", headers, r#"{"n":2}"#).await;
        assert_refused(&reply, StatusCode::BAD_REQUEST, mentions);
    }
    let gap = s
        .send(
            "POST",
            "/v1/stream/s",
            &[
                json,
                ("producer-id", "p"),
                ("producer-epoch", "0"),
                ("producer-seq", "3"),
            ],
            "1",
        )
        .await;
    assert_refused(&gap, StatusCode::CONFLICT, "sequence gap");
    assert_eq!(gap.headers["producer-expected-seq"], "0");
    assert_eq!(gap.headers["producer-received-seq"], "3");
    assert_eq!(s.snapshot("s").await, before);
}

#[tokio::test]
async fn bad_create_headers_are_400() {
    let s = server();
    let cases: [(&[(&str, &str)], &str); 5] = [
        (&[("stream-ttl", "01")], "stream-ttl"),
        (
            &[
                ("stream-ttl", "1"),
                ("stream-expires-at", "2030-01-01T00:00:00Z"),
            ],
            "cannot both",
        ),
        (&[("stream-expires-at", "next week")], "stream-expires-at"),
        (&[("content-type", "not a type")], "content-type"),
        (
            &[("stream-fork-offset", "0000000000000000_0000000000000000")],
            "stream-forked-from",
        ),
    ];
    for (headers, mentions) in cases {
        let reply = s
            .send("PUT", "/v1/stream/new", headers, Body::empty())
            .await;
        assert_refused(&reply, StatusCode::BAD_REQUEST, mentions);
    }
    assert_eq!(
        s.send("HEAD", "/v1/stream/new", &[], Body::empty())
            .await
            .status,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn closed_streams_refuse_appends_with_their_final_offset() {
    let s = server();
    s.json_stream("s").await;
    let close = s
        .send(
            "POST",
            "/v1/stream/s",
            &[("stream-closed", "true")],
            Body::empty(),
        )
        .await;
    assert_eq!(close.status, StatusCode::NO_CONTENT);
    let before = s.snapshot("s").await;
    let reply = s
        .send(
            "POST",
            "/v1/stream/s",
            &[("content-type", "application/json")],
            "2",
        )
        .await;
    assert_refused(&reply, StatusCode::CONFLICT, "closed");
    assert_eq!(reply.headers["stream-closed"], "true");
    assert_eq!(reply.headers[TAIL].to_str().ok(), Some(before.0.as_str()));
    assert_eq!(s.snapshot("s").await, before);
}

#[tokio::test]
async fn long_poll_wakes_on_append_and_times_out_with_204() {
    let s = server();
    s.json_stream("s").await;
    let (tail, _) = s.snapshot("s").await;
    let uri = format!("/v1/stream/s?offset={tail}&live=long-poll");
    let timed_out = s.send("GET", &uri, &[], Body::empty()).await;
    assert_eq!(timed_out.status, StatusCode::NO_CONTENT);
    assert_eq!(timed_out.headers["stream-up-to-date"], "true");
    assert_eq!(timed_out.headers[TAIL].to_str().ok(), Some(tail.as_str()));

    let waiting = {
        let app = s.app.clone();
        let uri = uri.clone();
        tokio::spawn(async move {
            let request = Request::get(uri).body(Body::empty()).expect("request");
            let response = app.oneshot(request).await.expect("infallible");
            let status = response.status();
            (
                status,
                to_bytes(response.into_body(), usize::MAX)
                    .await
                    .expect("body"),
            )
        })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    let append = s
        .send(
            "POST",
            "/v1/stream/s",
            &[("content-type", "application/json")],
            r#"{"n":2}"#,
        )
        .await;
    assert_eq!(append.status, StatusCode::NO_CONTENT);
    let (status, body) = waiting.await.expect("long-poll task");
    assert_eq!(status, StatusCode::OK);
    assert_eq!(&body[..], br#"[{"n":2}]"#);
}
