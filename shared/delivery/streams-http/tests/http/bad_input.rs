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
    server_with(HttpConfig {
        max_body_bytes: 1024,
        long_poll_timeout: Duration::from_millis(200),
        ..HttpConfig::default()
    })
}

fn server_with(config: HttpConfig) -> Server {
    let dir = tempfile::tempdir().expect("temp dir");
    let log = SqliteSessionLog::open(dir.path().join("s.db")).expect("open");
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

impl Server {
    /// Like [`Server::send`], with header values as raw bytes (not necessarily ASCII).
    async fn send_bytes(
        &self,
        method: &str,
        uri: &str,
        headers: &[(&str, &[u8])],
        body: impl Into<Body>,
    ) -> Reply {
        let mut request = Request::builder().method(method).uri(uri);
        for (name, value) in headers {
            let value = http::HeaderValue::from_bytes(value).expect("a legal header value");
            request = request.header(*name, value);
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

    async fn status_of(&self, uri: &str) -> StatusCode {
        self.send("HEAD", uri, &[], Body::empty()).await.status
    }
}

#[tokio::test]
async fn ttls_and_expiries_out_of_range_are_400_and_create_nothing() {
    let s = server();
    // 2^63 used to wrap to a negative i64 (201, then the stream was gone at once).
    for ttl in [
        "9223372036854775808",
        "18446744073709551615",
        "9007199254740992",
    ] {
        let reply = s
            .send("PUT", "/v1/stream/t", &[("stream-ttl", ttl)], Body::empty())
            .await;
        assert_refused(&reply, StatusCode::BAD_REQUEST, "stream-ttl");
        assert!(reply.body.contains("2^53-1"), "{}", reply.body);
    }
    // A year past 9999 in UTC cannot be written back as Stream-Expires-At.
    let reply = s
        .send(
            "PUT",
            "/v1/stream/t",
            &[("stream-expires-at", "9999-12-31T23:59:59-01:00")],
            Body::empty(),
        )
        .await;
    assert_refused(&reply, StatusCode::BAD_REQUEST, "stream-expires-at");
    assert_eq!(s.status_of("/v1/stream/t").await, StatusCode::NOT_FOUND);

    let largest = s
        .send(
            "PUT",
            "/v1/stream/t",
            &[("stream-ttl", "9007199254740991")],
            Body::empty(),
        )
        .await;
    assert_eq!(largest.status, StatusCode::CREATED);
    assert_eq!(largest.headers["stream-ttl"], "9007199254740991");
    assert_eq!(
        s.status_of("/v1/stream/t").await,
        StatusCode::OK,
        "not expired"
    );
}

#[tokio::test]
async fn protocol_headers_that_are_not_ascii_are_400_and_change_nothing() {
    let s = server();
    s.json_stream("s").await;
    let json: (&str, &[u8]) = ("content-type", b"application/json");
    let first = s
        .send_bytes("POST", "/v1/stream/s", &[json, ("stream-seq", b"b")], "2")
        .await;
    assert_eq!(first.status, StatusCode::NO_CONTENT);
    let before = s.snapshot("s").await;
    // "aé" is below "b": read as absent, it was accepted unchecked.
    let regressing = s
        .send_bytes(
            "POST",
            "/v1/stream/s",
            &[json, ("stream-seq", b"a\xc3\xa9")],
            "3",
        )
        .await;
    assert_refused(&regressing, StatusCode::BAD_REQUEST, "stream-seq");
    assert!(regressing.body.contains("ASCII"), "{}", regressing.body);
    let cases: [(&str, &[u8]); 5] = [
        ("stream-closed", b"tru\xe9"),
        ("content-type", b"application/json\xff"),
        ("producer-id", b"caf\xc3\xa9"),
        ("agentwire-control-since", b"\xc3"),
        ("authorization", b"Bearer \xc3\xa9"),
    ];
    for (name, value) in cases {
        let mut headers = vec![(name, value)];
        if name != "content-type" {
            headers.push(json);
        }
        let reply = s.send_bytes("POST", "/v1/stream/s", &headers, "4").await;
        assert_refused(&reply, StatusCode::BAD_REQUEST, name);
    }
    assert_eq!(s.snapshot("s").await, before);
    let create = s
        .send_bytes(
            "PUT",
            "/v1/stream/new",
            &[("stream-ttl", b"6\xd9\xa0")],
            Body::empty(),
        )
        .await;
    assert_refused(&create, StatusCode::BAD_REQUEST, "stream-ttl");
    assert_eq!(s.status_of("/v1/stream/new").await, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn fork_sources_are_percent_decoded_and_what_names_no_stream_path_is_400() {
    let s = server();
    let source = s
        .send(
            "PUT",
            "/v1/stream/caf%C3%A9",
            &[("content-type", "text/plain")],
            "hello",
        )
        .await;
    assert_eq!(source.status, StatusCode::CREATED);
    let fork = s
        .send(
            "PUT",
            "/v1/stream/fork",
            &[("stream-forked-from", "/v1/stream/caf%C3%A9")],
            Body::empty(),
        )
        .await;
    assert_eq!(fork.status, StatusCode::CREATED, "{}", fork.body);
    let read = s.send("GET", "/v1/stream/fork", &[], Body::empty()).await;
    assert_eq!(read.body, "hello", "the fork reads its source");

    // Raw UTF-8 used to be read as no header at all: an empty ordinary stream.
    let raw = s
        .send_bytes(
            "PUT",
            "/v1/stream/bad",
            &[("stream-forked-from", "/v1/stream/café".as_bytes())],
            Body::empty(),
        )
        .await;
    assert_refused(&raw, StatusCode::BAD_REQUEST, "stream-forked-from");
    for value in [
        "caf%C3%A9",
        "/v1/stream/",
        "/v1/stream/%zz",
        "/v1/stream/%C3",
        "/v1/stream/a%00",
        "/v1/stream/caf%C3%A9?offset=-1",
        "http://localhost/v1/stream/caf%C3%A9",
    ] {
        let reply = s
            .send(
                "PUT",
                "/v1/stream/bad",
                &[("stream-forked-from", value)],
                Body::empty(),
            )
            .await;
        assert_refused(&reply, StatusCode::BAD_REQUEST, "stream-forked-from");
    }
    assert_eq!(s.status_of("/v1/stream/bad").await, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn location_headers_are_percent_encoded() {
    let s = server();
    for (path, encoded) in [
        ("/v1/stream/a%20b%3Fc", "/v1/stream/a%20b%3Fc"),
        ("/v1/stream/caf%C3%A9", "/v1/stream/caf%C3%A9"),
        ("/v1/stream/dir/x%23y", "/v1/stream/dir/x%23y"),
    ] {
        let reply = s
            .send("PUT", path, &[("host", "example.test")], Body::empty())
            .await;
        assert_eq!(reply.status, StatusCode::CREATED);
        let location = reply.headers.get("location").map(|v| v.as_bytes());
        let location = location.map(String::from_utf8_lossy);
        assert_eq!(
            location.as_deref(),
            Some(format!("http://example.test{encoded}").as_str()),
            "{path}: a URL that names the stream"
        );
        assert_eq!(
            s.status_of(encoded).await,
            StatusCode::OK,
            "it names the stream"
        );
    }
}

#[tokio::test]
async fn json_nested_deeper_than_the_limit_is_400_and_changes_nothing() {
    let s = server();
    s.json_stream("s").await;
    let before = s.snapshot("s").await;
    let limit = agentwire_session::MAX_JSON_DEPTH;
    let nested = |depth: usize| format!("{}{}", "[".repeat(depth), "]".repeat(depth));
    let json = ("content-type", "application/json");
    let reply = s
        .send("POST", "/v1/stream/s", &[json], nested(limit + 1))
        .await;
    assert_refused(&reply, StatusCode::BAD_REQUEST, &format!("{limit} levels"));
    let create = s
        .send("PUT", "/v1/stream/deep", &[json], nested(limit + 1))
        .await;
    assert_refused(&create, StatusCode::BAD_REQUEST, "levels");
    assert_eq!(s.status_of("/v1/stream/deep").await, StatusCode::NOT_FOUND);
    assert_eq!(s.snapshot("s").await, before);
    let at_limit = s.send("POST", "/v1/stream/s", &[json], nested(limit)).await;
    assert_eq!(at_limit.status, StatusCode::NO_CONTENT, "{}", at_limit.body);
}

/// A SQLite log that counts the units (events, for JSON) its reads return.
struct CountingLog {
    inner: SqliteSessionLog,
    units_read: std::sync::atomic::AtomicU64,
}

#[async_trait::async_trait]
impl agentwire_session::SessionLog for CountingLog {
    async fn create(
        &self,
        request: agentwire_session::CreateStream,
    ) -> Result<agentwire_session::Created, agentwire_session::CreateError> {
        self.inner.create(request).await
    }

    async fn append(
        &self,
        name: &str,
        request: agentwire_session::AppendRequest,
    ) -> Result<agentwire_session::Appended, agentwire_session::AppendError> {
        self.inner.append(name, request).await
    }

    async fn read(
        &self,
        name: &str,
        from: agentwire_session::ReadFrom,
        max_bytes: usize,
    ) -> Result<agentwire_session::ReadBatch, agentwire_session::ReadError> {
        let batch = self.inner.read(name, from, max_bytes).await?;
        let units: u64 = batch.records.iter().map(|r| r.end.0 - r.start.0).sum();
        self.units_read
            .fetch_add(units, std::sync::atomic::Ordering::SeqCst);
        Ok(batch)
    }

    async fn head(
        &self,
        name: &str,
    ) -> Result<agentwire_session::StreamInfo, agentwire_session::ReadError> {
        self.inner.head(name).await
    }

    async fn delete(&self, name: &str) -> Result<(), agentwire_session::DeleteError> {
        self.inner.delete(name).await
    }
}

#[tokio::test]
async fn control_since_looks_back_a_bounded_number_of_events() {
    use std::sync::atomic::Ordering;
    let dir = tempfile::tempdir().expect("temp dir");
    let log = Arc::new(CountingLog {
        inner: SqliteSessionLog::open(dir.path().join("s.db")).expect("open"),
        units_read: Default::default(),
    });
    let s = Server {
        app: router(
            Sessions::new(log.clone()),
            Auth::Insecure { tenant: "t".into() },
            HttpConfig::default(),
        ),
        _dir: dir,
    };
    let json = ("content-type", "application/json");
    let window = agentwire_session::MAX_CONTROL_SCAN_EVENTS as usize;
    let deltas = vec![r#"{"type":"message.delta","data":{"text":"x"}}"#; 3 * window].join(",");
    let body = format!(
        r#"[{{"type":"control.cancel"}},{deltas},{{"type":"control.steer","data":{{"text":"y"}}}}]"#
    );
    let created = s.send("PUT", "/v1/stream/s", &[json], body).await;
    assert_eq!(created.status, StatusCode::CREATED);
    log.units_read.store(0, Ordering::SeqCst);

    let reply = s
        .send(
            "POST",
            "/v1/stream/s",
            &[
                json,
                (
                    "agentwire-control-since",
                    "0000000000000000_0000000000000000",
                ),
            ],
            r#"{"type":"message.delta"}"#,
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    let units = log.units_read.load(Ordering::SeqCst) as usize;
    assert!(
        units <= window + 1,
        "an append with Agentwire-Control-Since: 0 read {units} events (at most {window} expected)"
    );
    // The steer, among the last events, is reported; the cancel, 3000 events back, is not.
    assert_eq!(reply.headers["agentwire-control"], "1", "{}", reply.body);
    assert!(reply.body.contains("control.steer") && !reply.body.contains("control.cancel"));
}

#[tokio::test]
async fn a_request_body_that_stops_arriving_is_408_and_appends_nothing() {
    use futures_util::StreamExt;
    let server = server_with(HttpConfig {
        body_timeout: Duration::from_millis(200),
        ..HttpConfig::default()
    });
    let json = [("content-type", "application/json")];
    assert_eq!(
        server.send("PUT", "/v1/stream/s", &json, "").await.status,
        201
    );
    // One part of the body, then nothing more: the client stalled mid-upload.
    let first = futures_util::stream::iter([Ok::<_, std::io::Error>(bytes::Bytes::from_static(
        b"[{\"a\":",
    ))]);
    let stalled = first.chain(futures_util::stream::pending());
    let reply = tokio::time::timeout(
        Duration::from_secs(10),
        server.send("POST", "/v1/stream/s", &json, Body::from_stream(stalled)),
    )
    .await
    .expect("answered, not held open");
    assert_eq!(reply.status, StatusCode::REQUEST_TIMEOUT, "{}", reply.body);
    assert!(reply.body.contains("200 ms"), "{}", reply.body);
    let read = server.send("GET", "/v1/stream/s?offset=-1", &[], "").await;
    assert_eq!(read.body, "[]", "nothing was appended");
}
