//! Every request runs in a span with its method, route pattern, stream name, status and
//! latency, and nothing a client would not want in a log: no payloads, no tokens (neither
//! `Authorization` nor `?token=`).

use std::io::Write;
use std::sync::{Arc, Mutex};

use agentwire_auth::{Auth, Claims, Role, Signer};
use agentwire_session::Sessions;
use agentwire_sqlite::SqliteSessionLog;
use agentwire_streams_http::{HttpConfig, router};
use axum::body::{Body, to_bytes};
use http::{Request, StatusCode};
use tower::ServiceExt;
use tracing_subscriber::fmt::format::FmtSpan;

const SECRET: &[u8] = b"a test secret of at least 32 bytes!!";
const PAYLOAD: &str = "PAYLOAD-d41d8cd98f00b204";

/// Log output, collected in memory.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Captured {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn token() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    Signer::new(SECRET).mint(&Claims {
        tenant: "acme".into(),
        sessions: "*".into(),
        role: Role::Admin,
        user: Some("ana".into()),
        exp: now + 3600,
    })
}

#[tokio::test]
async fn spans_name_method_route_status_and_session_but_no_payload_or_token() {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_span_events(FmtSpan::CLOSE)
        .with_writer(move || writer.clone())
        .finish();
    // The test runs on one thread (tokio's current-thread runtime), so this covers it.
    let _guard = tracing::subscriber::set_default(subscriber);

    let dir = tempfile::tempdir().unwrap();
    let log = SqliteSessionLog::open(dir.path().join("s.db")).unwrap();
    let app = router(
        Sessions::new(Arc::new(log)),
        Auth::Tokens(Signer::new(SECRET)),
        HttpConfig::default(),
    );
    let token = token();
    let body = format!(r#"[{{"type":"message.delta","data":{{"text":"{PAYLOAD}"}}}}]"#);
    let requests = [
        (
            "PUT",
            "/v1/stream/chat-spans".to_owned(),
            true,
            String::new(),
        ),
        ("POST", "/v1/stream/chat-spans".to_owned(), true, body),
        (
            "GET",
            format!("/v1/stream/chat-spans?offset=-1&token={token}"),
            false,
            String::new(),
        ),
    ];
    let mut statuses = Vec::new();
    for (method, uri, header, body) in requests {
        let mut request = Request::builder()
            .method(method)
            .uri(uri)
            .header("content-type", "application/json");
        if header {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        let response = app
            .clone()
            .oneshot(request.body(Body::from(body)).unwrap())
            .await
            .unwrap();
        statuses.push(response.status());
        let read = to_bytes(response.into_body(), usize::MAX).await.unwrap();
        if method == "GET" {
            assert!(String::from_utf8_lossy(&read).contains(PAYLOAD));
        }
    }
    assert_eq!(
        statuses,
        [StatusCode::CREATED, StatusCode::NO_CONTENT, StatusCode::OK]
    );

    let logs = captured.text();
    for expected in [
        "request{",
        "method=PUT",
        "method=POST",
        "method=GET",
        "route=/v1/stream/{*name}",
        "session=chat-spans",
        "status=201",
        "status=204",
        "status=200",
        "latency_ms=",
    ] {
        assert!(logs.contains(expected), "no {expected:?} in:\n{logs}");
    }
    assert!(
        !logs.contains(PAYLOAD),
        "the payload is in the logs:\n{logs}"
    );
    let signature = token.rsplit('.').next().unwrap();
    assert!(
        !logs.contains(&token) && !logs.contains(signature),
        "the token is in the logs:\n{logs}"
    );
    assert!(!logs.contains("token="), "a query is in the logs:\n{logs}");
    assert!(!logs.to_lowercase().contains("authorization"), "{logs}");
}
