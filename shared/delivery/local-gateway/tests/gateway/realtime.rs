//! The local gateway with the real handlers, fan-out and SQLite log, and real WebSocket
//! clients on a port-0 listener: what a browser sees when it falls behind or its token
//! expires.

use std::sync::Arc;
use std::time::Duration;

use agentwire_auth::{Auth, Claims, Role, Signer};
use agentwire_local_gateway::{LocalPush, router};
use agentwire_realtime::presence::append_events;
use agentwire_realtime::{ClientPush, Fanout, InMemoryConnectionRegistry, Realtime};
use agentwire_session::{CreateStream, Expiry, Offset, Sessions};
use agentwire_sqlite::SqliteSessionLog;
use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

const SECRET: &[u8] = b"local gateway tests secret, 32 bytes or more";
const WAIT: Duration = Duration::from_secs(20);

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

struct World {
    url: String,
    sessions: Sessions,
    push: Arc<LocalPush>,
    _dir: tempfile::TempDir,
}

async fn world() -> World {
    let dir = tempfile::tempdir().expect("temp dir");
    let log = Arc::new(SqliteSessionLog::open(dir.path().join("s.db")).expect("open log"));
    let registry = Arc::new(InMemoryConnectionRegistry::default());
    let push = Arc::new(LocalPush::default());
    let fanout = Fanout::new(registry.clone(), push.clone());
    let sessions = Sessions::new(log).with_observer(Arc::new(fanout));
    sessions
        .create(CreateStream {
            name: "acme/chat".into(),
            content_type: Some("application/json".into()),
            expiry: Expiry::Never,
            closed: false,
            fork: None,
            body: Bytes::new(),
        })
        .await
        .expect("create");
    let auth = Auth::Tokens(Signer::new(SECRET));
    let realtime = Realtime::new(sessions.clone(), registry, push.clone(), auth);
    let app = router(realtime, push.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("ws://{}/ws", listener.local_addr().expect("address"));
    tokio::spawn(async move { axum::serve(listener, app).await });
    World {
        url,
        sessions,
        push,
        _dir: dir,
    }
}

fn token(exp: i64) -> String {
    Signer::new(SECRET).mint(&Claims {
        tenant: "acme".into(),
        sessions: "chat".into(),
        role: Role::Reader,
        user: Some("ana".into()),
        exp,
    })
}

fn now_s() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_secs() as i64
}

async fn connect(w: &World, exp: i64) -> Socket {
    let url = format!("{}?token={}", w.url, token(exp));
    tokio_tungstenite::connect_async(url)
        .await
        .expect("connect")
        .0
}

async fn subscribe(socket: &mut Socket, offset: &str) {
    let request = json!({"action": "subscribe", "session": "chat", "offset": offset});
    socket
        .send(Message::text(request.to_string()))
        .await
        .expect("send subscribe");
}

/// What one socket read.
enum Read {
    Frame(Value),
    Closed(Option<(CloseCode, String)>),
}

async fn read(socket: &mut Socket) -> Read {
    loop {
        let message = tokio::time::timeout(WAIT, socket.next())
            .await
            .expect("a frame or a close in time");
        match message {
            Some(Ok(Message::Text(text))) => {
                return Read::Frame(serde_json::from_str(&text).expect("frames are JSON"));
            }
            Some(Ok(Message::Close(frame))) => {
                return Read::Closed(frame.map(|f| (f.code, f.reason.to_string())));
            }
            Some(Ok(_)) => continue,
            Some(Err(e)) => panic!("socket error instead of a close: {e}"),
            None => return Read::Closed(None),
        }
    }
}

/// Offsets of the events in an `events` frame, and its `next`.
fn offsets(frame: &Value) -> Option<(Vec<String>, String)> {
    if frame["type"] != "events" {
        return None;
    }
    let events = frame["events"].as_array()?;
    let offsets = events
        .iter()
        .filter_map(|e| e["offset"].as_str().map(str::to_owned))
        .collect();
    Some((offsets, frame["next"].as_str()?.to_owned()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_is_closed_with_4002_and_resumes_without_loss() {
    let w = world().await;
    let mut slow = connect(&w, i64::MAX).await;
    subscribe(&mut slow, "-1").await;
    // Its own presence.join names the connection, so the test can watch its outbox.
    let mut seen: Vec<String> = Vec::new();
    let mut next: String;
    let id = loop {
        if let Read::Frame(frame) = read(&mut slow).await
            && let Some((got, after)) = offsets(&frame)
        {
            seen.extend(got);
            next = after;
            break frame["events"][0]["event"]["data"]["connection"]
                .as_str()
                .expect("the join names the connection")
                .to_owned();
        }
    };
    // Now it stops reading, while the agent writes 100 KB events.
    let event = json!({"type": "tool.result", "data": {"blob": "x".repeat(100_000)}});
    let probe = || Bytes::from_static(br#"{"type":"probe"}"#);
    let mut written = 0;
    while w.push.post(&id, probe()).await.is_ok() {
        assert!(
            written < 2_000,
            "200 MB written and the client is not behind"
        );
        append_events(&w.sessions, "acme/chat", &vec![event.clone(); 10])
            .await
            .expect("append");
        written += 10;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // Behind (maybe first found by the probe): the next push closes it.
    append_events(&w.sessions, "acme/chat", std::slice::from_ref(&event))
        .await
        .expect("append");
    // The outbox is bounded, so a stalled reader holds at most 8 MiB there.
    let mut close = None;
    while close.is_none() {
        match read(&mut slow).await {
            Read::Frame(frame) => {
                if let Some((got, after)) = offsets(&frame) {
                    seen.extend(got);
                    next = after;
                }
            }
            Read::Closed(frame) => close = Some(frame),
        }
    }
    let (code, _) = close.flatten().expect("a close frame");
    assert_eq!(u16::from(code), 4002, "closed as behind");

    // Reconnect and resume from the last offset seen: everything arrives. Live pushes
    // may come before the replay (clients dedupe by offset), so read until all is there.
    let tail = w.sessions.head("acme/chat").await.expect("head").tail;
    let every: Vec<String> = (0..tail.0).map(|n| Offset(n).to_string()).collect();
    let mut again = connect(&w, i64::MAX).await;
    subscribe(&mut again, &next).await;
    loop {
        seen.sort();
        seen.dedup();
        if every.iter().all(|o| seen.binary_search(o).is_ok()) {
            break;
        }
        match read(&mut again).await {
            Read::Frame(frame) => {
                seen.extend(offsets(&frame).map(|(got, _)| got).unwrap_or_default())
            }
            Read::Closed(frame) => panic!("closed while resuming: {frame:?}"),
        }
    }
    seen.retain(|o| o < &tail.to_string());
    assert_eq!(seen.len(), every.len(), "nothing lost");
    assert_eq!(seen, every);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_token_gets_token_expired_and_close_4001_and_no_more_pushes() {
    let w = world().await;
    let exp = now_s() + 2;
    let mut socket = connect(&w, exp).await;
    subscribe(&mut socket, "now").await;
    let Read::Frame(subscribed) = read(&mut socket).await else {
        panic!("closed before subscribing");
    };
    assert_eq!(subscribed["type"], "subscribed");
    while now_s() < exp {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    append_events(
        &w.sessions,
        "acme/chat",
        &[json!({"type": "message.delta", "data": {"text": "after expiry"}})],
    )
    .await
    .expect("append");
    let mut frames = Vec::new();
    let close = loop {
        match read(&mut socket).await {
            Read::Frame(frame) => frames.push(frame),
            Read::Closed(frame) => break frame,
        }
    };
    let (code, reason) = close.expect("a close frame");
    assert_eq!(u16::from(code), 4001);
    assert_eq!(reason, "token expired");
    assert!(
        !frames
            .iter()
            .any(|f| f.to_string().contains("after expiry")),
        "no push after expiry: {frames:?}"
    );
    let error = frames
        .iter()
        .find(|f| f["type"] == "error")
        .expect("the token_expired frame");
    assert_eq!(error["code"], "token_expired");
    assert_eq!(
        error["message"],
        format!("token expired at {exp} (Unix seconds): reconnect with a fresh token")
    );
}
