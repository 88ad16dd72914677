//! Tenants over the WebSocket API of `agentwire dev`'s app (real sockets on 127.0.0.1): a
//! token whose tenant contains `/` is refused at the upgrade, and pushes carry the name a
//! client uses, split from the stored name at the tenant boundary.

use std::time::Duration;

use agentwire_auth::{Auth, Claims, Role, Signer};
use agentwire_local_stack::{LocalSettings, LocalStack};
use agentwire_session::{AppendRequest, CreateStream, Mode, Payload, Sessions};
use agentwire_streams_http::HttpConfig;
use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

const SECRET: &[u8] = b"a test secret of at least 32 bytes!!";

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

fn token(tenant: &str) -> String {
    // Signed without the tenant check, as `agentwire token` minted them before it.
    Signer::new(SECRET).mint(&Claims {
        tenant: tenant.into(),
        sessions: "*".into(),
        role: Role::Admin,
        user: Some("ana".into()),
        exp: i64::MAX,
    })
}

async fn serve(stack: &LocalStack) -> String {
    let app = stack.app(Auth::Tokens(Signer::new(SECRET)), HttpConfig::default());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("address");
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("ws://{addr}/ws")
}

async fn create_with(sessions: &Sessions, stored: &str, event: Value) {
    sessions
        .create(CreateStream {
            name: stored.into(),
            content_type: Some("application/json".into()),
            ..CreateStream::default()
        })
        .await
        .expect("create");
    let body = Bytes::from(serde_json::to_vec(&event).expect("json"));
    sessions
        .append(
            stored,
            AppendRequest {
                content_type: Some("application/json".into()),
                payload: Payload::frame(Mode::Json, body, false).expect("frame"),
                ..AppendRequest::default()
            },
        )
        .await
        .expect("append");
}

/// The next frame of `type`, skipping others (presence, …).
async fn frame_of(socket: &mut Socket, kind: &str) -> Value {
    loop {
        let message = tokio::time::timeout(Duration::from_secs(5), socket.next())
            .await
            .unwrap_or_else(|_| panic!("no {kind} frame within 5 s"))
            .expect("socket open")
            .expect("frame");
        if let Message::Text(text) = message {
            let frame: Value = serde_json::from_str(&text).expect("JSON frame");
            if frame["type"] == kind {
                return frame;
            }
        }
    }
}

#[tokio::test]
async fn a_tenant_with_a_slash_is_refused_and_pushes_name_sessions_as_clients_do() {
    let dir = tempfile::tempdir().expect("temp dir");
    let stack = LocalStack::open(&LocalSettings::new(dir.path())).expect("stack");
    let url = serve(&stack).await;

    // `acme/prod`'s `chat` would be stored as `acme/prod/chat`, which is `acme`'s
    // `prod/chat`: its token is refused at the upgrade.
    match tokio_tungstenite::connect_async(format!("{url}?token={}", token("acme/prod"))).await {
        Err(tungstenite::Error::Http(response)) => assert_eq!(response.status(), 401),
        Err(other) => panic!("expected a 401 refusal, got {other}"),
        Ok(_) => panic!("a token of tenant acme/prod was accepted"),
    }

    // acme's own session `prod/chat` (and what a refused tenant stored under that name
    // before tenants were checked) is acme's; pushes name it as acme's clients do.
    create_with(
        &stack.sessions,
        "acme/prod/chat",
        json!({"type": "message.delta", "n": 1}),
    )
    .await;
    let (mut socket, _) =
        tokio_tungstenite::connect_async(format!("{url}?token={}", token("acme")))
            .await
            .expect("acme connects");
    let subscribe = json!({"action": "subscribe", "session": "prod/chat", "offset": "-1"});
    socket
        .send(Message::Text(subscribe.to_string().into()))
        .await
        .expect("send");
    let subscribed = frame_of(&mut socket, "subscribed").await;
    assert_eq!(subscribed["session"], "prod/chat");
    // The live push of this connection's own presence.join may overtake the replay (the
    // subscription is registered before it, so nothing is missed): every frame names the
    // session as the client does, until the replayed event arrives.
    loop {
        let events = frame_of(&mut socket, "events").await;
        assert_eq!(events["session"], "prod/chat", "{events}");
        if events["events"][0]["event"]["n"] == 1 {
            break;
        }
        assert_eq!(
            events["events"][0]["event"]["type"], "presence.join",
            "only the join may come first: {events}"
        );
    }
}

/// One `Connection: close` HTTP request; the reply's status code.
async fn status_of(addr: &str, method: &str, path: &str, token: &str, body: &str) -> u16 {
    reply_of(addr, method, path, token, body).await.0
}

/// One `Connection: close` HTTP request; the reply's status code and its whole text.
async fn reply_of(addr: &str, method: &str, path: &str, token: &str, body: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut reply = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut reply))
        .await
        .expect("a reply within 5 s")
        .expect("read");
    let reply = String::from_utf8_lossy(&reply).into_owned();
    let status = reply
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP reply: {reply}"));
    (status, reply)
}

#[tokio::test]
async fn a_grader_token_reaches_the_grading_api_and_no_session() {
    let dir = tempfile::tempdir().expect("temp dir");
    let stack = LocalStack::open(&LocalSettings::new(dir.path())).expect("stack");
    let url = serve(&stack).await;
    let addr = url
        .strip_prefix("ws://")
        .and_then(|rest| rest.strip_suffix("/ws"))
        .expect("an address")
        .to_owned();
    create_with(
        &stack.sessions,
        "acme/chat",
        json!({"type": "message.delta", "n": 1}),
    )
    .await;
    // Even a grader token whose scope is every name of the tenant.
    let grader = Signer::new(SECRET).mint(&Claims {
        tenant: "acme".into(),
        sessions: "*".into(),
        role: Role::Grader,
        user: Some("alice".into()),
        exp: i64::MAX,
    });
    assert_eq!(
        status_of(&addr, "GET", "/v1/stream/chat", &grader, "").await,
        403
    );
    assert_eq!(
        status_of(&addr, "POST", "/v1/stream/chat", &grader, "{}").await,
        403
    );
    assert_eq!(
        status_of(&addr, "POST", "/v1/traces", &grader, "{}").await,
        403
    );
    assert_eq!(
        status_of(&addr, "GET", "/v1/scores", &grader, "").await,
        403
    );
    match tokio_tungstenite::connect_async(format!("{url}?token={grader}")).await {
        Err(tungstenite::Error::Http(response)) => assert_eq!(response.status(), 403),
        Err(other) => panic!("expected a 403 refusal, got {other}"),
        Ok(_) => panic!("a grader token opened a WebSocket"),
    }
    // The grading API is served: an unknown queue is a 404, not a missing route.
    let (status, reply) = reply_of(&addr, "POST", "/v1/queues/review/claim", &grader, "").await;
    assert_eq!(status, 404, "{reply}");
    assert!(
        reply.contains(r#"{"error":"no queue \"review\""}"#),
        "{reply}"
    );
}
