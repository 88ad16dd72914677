//! The WebSocket handlers driven by real API Gateway event shapes (`events/*.json`), on a
//! real SQLite log, with a push port that records what clients would receive.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use agentwire_auth::{Auth, Claims, Role, Signer};
use agentwire_realtime::frames::MAX_FRAME_BYTES;
use agentwire_realtime::presence::append_events;
use agentwire_realtime::{
    ClientPush, ConnectionRegistry, Fanout, InMemoryConnectionRegistry, PushError, Realtime,
};
use agentwire_session::{CreateStream, Expiry, Sessions};
use agentwire_sqlite::SqliteSessionLog;
use async_trait::async_trait;
use aws_lambda_events::apigw::ApiGatewayWebsocketProxyRequest;
use bytes::Bytes;
use serde_json::{Value, json};

const SECRET: &[u8] = b"handler tests secret, 32 bytes or more";
const CONNECTION: &str = "CtFqpcOFvHcCIhw=";

/// Records pushes; connections in `gone` answer like API Gateway's 410.
#[derive(Default)]
struct RecordingPush {
    frames: Mutex<Vec<(String, Value)>>,
    gone: Mutex<HashSet<String>>,
}

#[async_trait]
impl ClientPush for RecordingPush {
    async fn post(&self, connection_id: &str, frame: Bytes) -> Result<(), PushError> {
        if self.gone.lock().unwrap().contains(connection_id) {
            return Err(PushError::Gone(connection_id.to_owned()));
        }
        assert!(
            frame.len() <= MAX_FRAME_BYTES,
            "a frame of {} bytes",
            frame.len()
        );
        let frame = serde_json::from_slice(&frame).expect("frames are JSON");
        self.frames
            .lock()
            .unwrap()
            .push((connection_id.to_owned(), frame));
        Ok(())
    }
}

impl RecordingPush {
    fn frames(&self) -> Vec<(String, Value)> {
        self.frames.lock().unwrap().clone()
    }

    /// Waits until `done` holds for what was pushed.
    async fn wait_for(&self, what: &str, done: impl Fn(&[(String, Value)]) -> bool) {
        for _ in 0..500 {
            if done(&self.frames()) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("timed out waiting for {what}: {:#?}", self.frames());
    }
}

struct World {
    realtime: Realtime,
    sessions: Sessions,
    registry: Arc<InMemoryConnectionRegistry>,
    push: Arc<RecordingPush>,
    _dir: tempfile::TempDir,
}

async fn world() -> World {
    let dir = tempfile::tempdir().unwrap();
    let log = Arc::new(SqliteSessionLog::open(dir.path().join("s.db")).unwrap());
    let registry = Arc::new(InMemoryConnectionRegistry::default());
    let push = Arc::new(RecordingPush::default());
    let fanout = Fanout::new(registry.clone(), push.clone());
    let sessions = Sessions::new(log).with_observer(Arc::new(fanout));
    for name in ["acme/chat-1", "acme/chat-2"] {
        sessions
            .create(CreateStream {
                name: name.into(),
                content_type: Some("application/json".into()),
                expiry: Expiry::Never,
                closed: false,
                fork: None,
                body: Bytes::new(),
            })
            .await
            .unwrap();
    }
    let auth = Auth::Tokens(Signer::new(SECRET));
    World {
        realtime: Realtime::new(sessions.clone(), registry.clone(), push.clone(), auth),
        sessions,
        registry,
        push,
        _dir: dir,
    }
}

fn fixture(name: &str) -> ApiGatewayWebsocketProxyRequest {
    let path = format!("{}/../../../events/{name}", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap())
        .unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn token(sessions: &str, role: Role) -> String {
    Signer::new(SECRET).mint(&Claims {
        tenant: "acme".into(),
        sessions: sessions.into(),
        role,
        user: Some("ana".into()),
        exp: i64::MAX,
    })
}

fn connect_event(token: &str) -> ApiGatewayWebsocketProxyRequest {
    let mut event = fixture("apigw-ws-connect.json");
    event.query_string_parameters = format!("token={token}").parse().unwrap();
    event
}

fn message(body: Value) -> ApiGatewayWebsocketProxyRequest {
    let mut event = fixture("apigw-ws-message.json");
    event.body = Some(body.to_string());
    event
}

#[tokio::test]
async fn connect_needs_a_valid_token() {
    let w = world().await;
    let refused = w.realtime.handle(fixture("apigw-ws-connect.json")).await;
    assert_eq!(refused.status_code, 401);
    assert!(w.registry.get(CONNECTION).await.unwrap().is_none());
    let accepted = w
        .realtime
        .handle(connect_event(&token("chat-*", Role::Reader)))
        .await;
    assert_eq!(accepted.status_code, 200);
    let connection = w
        .registry
        .get(CONNECTION)
        .await
        .unwrap()
        .expect("registered");
    assert_eq!(connection.claims.user.as_deref(), Some("ana"));
}

#[tokio::test]
async fn one_connection_follows_two_sessions() {
    let w = world().await;
    assert_eq!(
        w.realtime
            .handle(connect_event(&token("chat-*", Role::Reader)))
            .await
            .status_code,
        200
    );
    assert_eq!(
        w.realtime
            .handle(fixture("apigw-ws-message.json"))
            .await
            .status_code,
        200
    );
    w.realtime
        .handle(message(
            json!({"action": "subscribe", "session": "chat-2", "offset": "now", "id": 7}),
        ))
        .await;
    for (session, text) in [("acme/chat-1", "one"), ("acme/chat-2", "two")] {
        append_events(
            &w.sessions,
            session,
            &[json!({"type": "message.delta", "data": {"text": text}})],
        )
        .await
        .unwrap();
    }
    let delta_in = |frames: &[(String, Value)], session: &str| {
        frames.iter().any(|(_, f)| {
            f["session"] == session
                && f["events"]
                    .as_array()
                    .is_some_and(|e| e.iter().any(|e| e["event"]["type"] == "message.delta"))
        })
    };
    w.push
        .wait_for("deltas of both sessions", |f| {
            delta_in(f, "chat-1") && delta_in(f, "chat-2")
        })
        .await;
    let frames = w.push.frames();
    assert!(frames.iter().all(|(to, _)| to == CONNECTION));
    let subscribed = frames
        .iter()
        .find(|(_, f)| f["type"] == "subscribed" && f["id"] == 7)
        .expect("reply with id");
    assert_eq!(subscribed.1["session"], "chat-2");
    let presence = w.registry.presence("acme/chat-1").await.unwrap();
    assert_eq!(presence.len(), 1);
    assert_eq!(presence[0].user, "ana");
}

#[tokio::test]
async fn disconnect_forgets_the_connection_and_announces_the_leave() {
    let w = world().await;
    w.realtime
        .handle(connect_event(&token("chat-*", Role::Reader)))
        .await;
    w.realtime.handle(fixture("apigw-ws-message.json")).await;
    assert_eq!(
        w.realtime
            .handle(fixture("apigw-ws-disconnect.json"))
            .await
            .status_code,
        200
    );
    assert!(w.registry.get(CONNECTION).await.unwrap().is_none());
    assert!(
        w.registry
            .subscribers("acme/chat-1")
            .await
            .unwrap()
            .is_empty()
    );
    let log = w
        .sessions
        .read(
            "acme/chat-1",
            agentwire_session::ReadFrom::Start,
            usize::MAX,
        )
        .await
        .unwrap();
    let types: Vec<String> = agentwire_session::events_of(&log)
        .iter()
        .filter_map(|e| agentwire_session::events::event_type(&e.json))
        .collect();
    assert_eq!(types, ["presence.join", "presence.leave"]);
}

#[tokio::test]
async fn a_gone_connection_is_dropped_on_the_next_push() {
    let w = world().await;
    w.realtime
        .handle(connect_event(&token("chat-*", Role::Reader)))
        .await;
    w.realtime.handle(fixture("apigw-ws-message.json")).await;
    w.push.gone.lock().unwrap().insert(CONNECTION.to_owned());
    append_events(
        &w.sessions,
        "acme/chat-1",
        &[json!({"type": "message.delta"})],
    )
    .await
    .unwrap();
    for _ in 0..500 {
        if w.registry.get(CONNECTION).await.unwrap().is_none() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(
        w.registry.get(CONNECTION).await.unwrap().is_none(),
        "a 410 removes the connection"
    );
    assert!(
        w.registry
            .subscribers("acme/chat-1")
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn a_large_batch_reaches_the_client_in_frames_under_128_kb() {
    let w = world().await;
    w.realtime
        .handle(connect_event(&token("chat-1", Role::Reader)))
        .await;
    w.realtime
        .handle(message(
            json!({"action": "subscribe", "session": "chat-1", "offset": "now"}),
        ))
        .await;
    let events: Vec<Value> = (0..40)
        .map(|i| json!({"type": "tool.result", "data": {"i": i, "blob": "x".repeat(10_000)}}))
        .collect();
    append_events(&w.sessions, "acme/chat-1", &events)
        .await
        .unwrap();
    let count = |frames: &[(String, Value)]| -> usize {
        frames
            .iter()
            .filter(|(_, f)| f["type"] == "events")
            .flat_map(|(_, f)| f["events"].as_array().cloned().unwrap_or_default())
            .filter(|e| e["event"]["type"] == "tool.result")
            .count()
    };
    w.push.wait_for("all 40 results", |f| count(f) == 40).await;
    let frames = w.push.frames();
    let event_frames: Vec<_> = frames
        .iter()
        .filter(|(_, f)| f["type"] == "events")
        .collect();
    assert!(
        event_frames.len() >= 4,
        "400 KB of events need several frames, got {}",
        event_frames.len()
    );
    let is: Vec<u64> = event_frames
        .iter()
        .flat_map(|(_, f)| f["events"].as_array().cloned().unwrap_or_default())
        .filter_map(|e| e["event"]["data"]["i"].as_u64())
        .collect();
    assert_eq!(is, (0..40).collect::<Vec<_>>());
}
