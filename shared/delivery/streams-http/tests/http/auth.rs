//! Every HTTP request is authenticated, confined to its token's sessions and role, and to
//! its tenant: refusals are 401/403 with a message, and change nothing.

use std::sync::Arc;

use agentwire_auth::{Auth, Claims, Role, Signer};
use agentwire_session::Sessions;
use agentwire_sqlite::SqliteSessionLog;
use agentwire_streams_http::{HttpConfig, router};
use axum::Router;
use axum::body::{Body, to_bytes};
use http::{Request, StatusCode};
use tower::ServiceExt;

const SECRET: &[u8] = b"a test secret of at least 32 bytes!!";

fn token(tenant: &str, sessions: &str, role: Role, exp_from_now: i64) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    Signer::new(SECRET).mint(&Claims {
        tenant: tenant.into(),
        sessions: sessions.into(),
        role,
        user: None,
        exp: now + exp_from_now,
    })
}

struct Server {
    app: Router,
    _dir: tempfile::TempDir,
}

impl Server {
    fn new() -> Server {
        let dir = tempfile::tempdir().unwrap();
        let log = SqliteSessionLog::open(dir.path().join("s.db")).unwrap();
        let auth = Auth::Tokens(Signer::new(SECRET));
        Server {
            app: router(Sessions::new(Arc::new(log)), auth, HttpConfig::default()),
            _dir: dir,
        }
    }

    async fn send(
        &self,
        method: &str,
        uri: &str,
        token: Option<&str>,
        body: &str,
    ) -> (StatusCode, String) {
        let mut request = Request::builder()
            .method(method)
            .uri(uri)
            .header("content-type", "text/plain");
        if let Some(token) = token {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        let response = self
            .app
            .clone()
            .oneshot(request.body(Body::from(body.to_owned())).unwrap())
            .await
            .unwrap();
        let status = response.status();
        let body = to_bytes(response.into_body(), usize::MAX).await.unwrap();
        (status, String::from_utf8_lossy(&body).into_owned())
    }
}

#[tokio::test]
async fn missing_expired_and_tampered_tokens_are_401() {
    let s = Server::new();
    let (status, body) = s.send("GET", "/v1/stream/a", None, "").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(body.contains("missing token"), "{body}");

    let expired = token("acme", "*", Role::Admin, -1);
    let (status, body) = s.send("GET", "/v1/stream/a", Some(&expired), "").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(body.contains("expired"), "{body}");

    let good = token("acme", "*", Role::Reader, 60);
    let mut tampered = good.clone();
    tampered.pop();
    tampered.push(if good.ends_with('A') { 'B' } else { 'A' });
    let (status, body) = s.send("GET", "/v1/stream/a", Some(&tampered), "").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(
        body.contains("signature") || body.contains("malformed"),
        "{body}"
    );

    let forged = Signer::new(b"someone else's secret, also long!!!".to_vec()).mint(&Claims {
        tenant: "acme".into(),
        sessions: "*".into(),
        role: Role::Admin,
        user: None,
        exp: i64::MAX,
    });
    let (status, _) = s.send("PUT", "/v1/stream/a", Some(&forged), "").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let admin = token("acme", "*", Role::Admin, 60);
    assert_eq!(
        s.send("HEAD", "/v1/stream/a", Some(&admin), "").await.0,
        StatusCode::NOT_FOUND,
        "nothing was created"
    );
}

#[tokio::test]
async fn roles_and_session_scopes_are_enforced() {
    let s = Server::new();
    let writer_a = token("acme", "a", Role::Writer, 60);
    assert_eq!(
        s.send("PUT", "/v1/stream/a", Some(&writer_a), "").await.0,
        StatusCode::CREATED
    );
    assert_eq!(
        s.send("POST", "/v1/stream/a", Some(&writer_a), "hello")
            .await
            .0,
        StatusCode::NO_CONTENT
    );

    let reader_a = token("acme", "a", Role::Reader, 60);
    let (status, body) = s
        .send("POST", "/v1/stream/a", Some(&reader_a), "nope")
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(body.contains("reader may not append"), "{body}");
    let (status, body) = s.send("GET", "/v1/stream/b", Some(&reader_a), "").await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(body.contains("does not cover session \"b\""), "{body}");
    let (status, _) = s.send("DELETE", "/v1/stream/a", Some(&writer_a), "").await;
    assert_eq!(status, StatusCode::FORBIDDEN, "only admins delete");
    let fork = Request::put("/v1/stream/a-copy")
        .header(
            "authorization",
            format!("Bearer {}", token("acme", "a-*", Role::Writer, 60)),
        )
        .header("stream-forked-from", "/v1/stream/a")
        .body(Body::empty())
        .unwrap();
    let forked = s.app.clone().oneshot(fork).await.unwrap();
    assert_eq!(
        forked.status(),
        StatusCode::FORBIDDEN,
        "forking needs read access to the source"
    );

    let (status, body) = s.send("GET", "/v1/stream/a", Some(&reader_a), "").await;
    assert_eq!(
        (status, body.as_str()),
        (StatusCode::OK, "hello"),
        "refusals changed nothing"
    );
}

#[tokio::test]
async fn tenants_never_see_each_others_sessions() {
    let s = Server::new();
    let acme = token("acme", "*", Role::Admin, 60);
    let globex = token("globex", "*", Role::Admin, 60);
    assert_eq!(
        s.send("PUT", "/v1/stream/shared-name", Some(&acme), "")
            .await
            .0,
        StatusCode::CREATED
    );
    assert_eq!(
        s.send("POST", "/v1/stream/shared-name", Some(&acme), "acme data")
            .await
            .0,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        s.send("GET", "/v1/stream/shared-name", Some(&globex), "")
            .await
            .0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        s.send("PUT", "/v1/stream/shared-name", Some(&globex), "")
            .await
            .0,
        StatusCode::CREATED
    );
    assert_eq!(
        s.send("GET", "/v1/stream/shared-name", Some(&globex), "")
            .await
            .1,
        ""
    );
    assert_eq!(
        s.send("GET", "/v1/stream/shared-name", Some(&acme), "")
            .await
            .1,
        "acme data"
    );
}

#[tokio::test]
async fn a_tenant_named_with_a_slash_never_shares_another_tenants_sessions() {
    let s = Server::new();
    // Tenant `acme/prod` stores `chat` as `acme/prod/chat`, which is also where tenant
    // `acme` stores `prod/chat`: such a token (minted before tenants were checked) is
    // refused outright, so neither can reach the other's sessions.
    let prod = token("acme/prod", "*", Role::Admin, 60);
    for (method, body) in [("PUT", ""), ("POST", "prod's secret"), ("GET", "")] {
        let (status, message) = s.send(method, "/v1/stream/chat", Some(&prod), body).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{method}: {message}");
        assert!(
            message.contains("tenant") && message.contains("'/'"),
            "{message}"
        );
    }
    let acme = token("acme", "*", Role::Admin, 60);
    for method in ["GET", "HEAD", "DELETE"] {
        assert_eq!(
            s.send(method, "/v1/stream/prod/chat", Some(&acme), "")
                .await
                .0,
            StatusCode::NOT_FOUND,
            "{method}: nothing of acme/prod is under acme"
        );
    }
    // acme's own `prod/chat` is acme's, and stays out of reach of the refused token.
    assert_eq!(
        s.send("PUT", "/v1/stream/prod/chat", Some(&acme), "")
            .await
            .0,
        StatusCode::CREATED
    );
    assert_eq!(
        s.send("POST", "/v1/stream/prod/chat", Some(&acme), "acme data")
            .await
            .0,
        StatusCode::NO_CONTENT
    );
    let (status, _) = s.send("GET", "/v1/stream/chat", Some(&prod), "").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        s.send("GET", "/v1/stream/prod/chat", Some(&acme), "")
            .await
            .1,
        "acme data"
    );
}

#[tokio::test]
async fn an_ingest_token_can_neither_read_nor_write_sessions() {
    let s = Server::new();
    let admin = token("acme", "*", Role::Admin, 60);
    assert_eq!(
        s.send("PUT", "/v1/stream/a", Some(&admin), "").await.0,
        StatusCode::CREATED
    );
    let ingest = token("acme", "*", Role::Ingest, 60);
    for (method, body) in [
        ("GET", ""),
        ("HEAD", ""),
        ("POST", "hello"),
        ("PUT", ""),
        ("DELETE", ""),
    ] {
        let (status, text) = s.send(method, "/v1/stream/a", Some(&ingest), body).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{method}: {text}");
        if method != "HEAD" {
            assert!(text.contains("role ingest may not"), "{method}: {text}");
        }
    }
    let (status, _) = s
        .send("GET", "/v1/stream/a?offset=-1", Some(&admin), "")
        .await;
    assert_eq!(status, StatusCode::OK, "the session is still there");
    let (_, text) = s
        .send("GET", "/v1/stream/a?offset=-1", Some(&admin), "")
        .await;
    assert!(!text.contains("hello"), "nothing was appended: {text}");
}
