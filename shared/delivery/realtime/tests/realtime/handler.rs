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

/// Records pushes and closes; connections in `gone` answer like API Gateway's 410, those
/// in `behind` like its 429, and closed ones are gone.
#[derive(Default)]
struct RecordingPush {
    frames: Mutex<Vec<(String, Value)>>,
    gone: Mutex<HashSet<String>>,
    behind: Mutex<HashSet<String>>,
    /// How many more frames fit before every connection is behind (`None`: no limit).
    budget: Mutex<Option<usize>>,
    closes: Mutex<Vec<(String, u16)>>,
}

#[async_trait]
impl ClientPush for RecordingPush {
    async fn post(&self, connection_id: &str, frame: Bytes) -> Result<(), PushError> {
        if self.gone.lock().unwrap().contains(connection_id) {
            return Err(PushError::Gone(connection_id.to_owned()));
        }
        if self.behind.lock().unwrap().contains(connection_id) {
            return Err(PushError::Behind(connection_id.to_owned()));
        }
        if let Some(left) = self.budget.lock().unwrap().as_mut() {
            if *left == 0 {
                return Err(PushError::Behind(connection_id.to_owned()));
            }
            *left -= 1;
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

    async fn close(&self, connection_id: &str, code: u16, _reason: &str) -> Result<(), PushError> {
        if self.gone.lock().unwrap().contains(connection_id) {
            return Err(PushError::Gone(connection_id.to_owned()));
        }
        self.closes
            .lock()
            .unwrap()
            .push((connection_id.to_owned(), code));
        self.gone.lock().unwrap().insert(connection_id.to_owned());
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
    token_for("ana", sessions, role, i64::MAX)
}

fn token_for(user: &str, sessions: &str, role: Role, exp: i64) -> String {
    Signer::new(SECRET).mint(&Claims {
        tenant: "acme".into(),
        sessions: sessions.into(),
        role,
        user: Some(user.into()),
        exp,
    })
}

fn now_s() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// The types of the events in `session`'s log, in order.
async fn log_types(sessions: &Sessions, session: &str) -> Vec<String> {
    let log = sessions
        .read(session, agentwire_session::ReadFrom::Start, usize::MAX)
        .await
        .unwrap();
    agentwire_session::events_of(&log)
        .iter()
        .filter_map(|e| agentwire_session::events::event_type(&e.json))
        .collect()
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
async fn an_ingest_token_cannot_connect() {
    let w = world().await;
    let refused = w
        .realtime
        .handle(connect_event(&token("chat-*", Role::Ingest)))
        .await;
    assert_eq!(refused.status_code, 403);
    let body = format!("{:?}", refused.body);
    assert!(body.contains("role ingest may not read"), "{body}");
    assert!(w.registry.get(CONNECTION).await.unwrap().is_none());
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

#[tokio::test]
async fn the_authorization_header_wins_over_the_query_token() {
    let w = world().await;
    let mut event = connect_event(&token_for("eve", "chat-*", Role::Reader, i64::MAX));
    let header = format!(
        "Bearer {}",
        token_for("ana", "chat-*", Role::Reader, i64::MAX)
    );
    event
        .headers
        .insert("authorization", header.parse().unwrap());
    assert_eq!(w.realtime.handle(event).await.status_code, 200);
    let connection = w
        .registry
        .get(CONNECTION)
        .await
        .unwrap()
        .expect("registered");
    assert_eq!(
        connection.claims.user.as_deref(),
        Some("ana"),
        "the header's token"
    );
}

#[tokio::test]
async fn a_user_message_never_takes_the_clients_message_id() {
    let w = world().await;
    append_events(
        &w.sessions,
        "acme/chat-1",
        &[json!({"type": "message.start", "id": "a_1", "role": "assistant"})],
    )
    .await
    .unwrap();
    w.realtime
        .handle(connect_event(&token("chat-*", Role::Controller)))
        .await;
    w.realtime
        .handle(message(json!({
            "action": "send", "session": "chat-1", "text": "I am the agent now",
            "message_id": "a_1", "id": 5,
        })))
        .await;
    w.push
        .wait_for("the ack", |f| f.iter().any(|(_, f)| f["type"] == "ack"))
        .await;
    let frames = w.push.frames();
    let ack = &frames.iter().find(|(_, f)| f["type"] == "ack").unwrap().1;
    let id = ack["message_id"].as_str().expect("a message id");
    assert!(
        id.starts_with("u_"),
        "the server's id, not the client's: {ack}"
    );
    assert_eq!(ack["client_message_id"], "a_1", "echoed for correlation");
    assert_eq!(ack["id"], 5);
    let log = w
        .sessions
        .read(
            "acme/chat-1",
            agentwire_session::ReadFrom::Start,
            usize::MAX,
        )
        .await
        .unwrap();
    let under_a_1: Vec<Value> = agentwire_session::events_of(&log)
        .iter()
        .map(|e| serde_json::from_slice::<Value>(&e.json).unwrap())
        .filter(|e| e["id"] == "a_1")
        .collect();
    assert_eq!(under_a_1.len(), 1, "only the agent's event: {under_a_1:?}");
}

#[tokio::test]
async fn an_expired_token_gets_no_push_and_is_closed_with_4001() {
    let w = world().await;
    let exp = now_s() + 2;
    w.realtime
        .handle(connect_event(&token_for(
            "ana",
            "chat-*",
            Role::Reader,
            exp,
        )))
        .await;
    w.realtime
        .handle(message(
            json!({"action": "subscribe", "session": "chat-1", "offset": "now"}),
        ))
        .await;
    while now_s() < exp {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    append_events(
        &w.sessions,
        "acme/chat-1",
        &[json!({"type": "message.delta", "data": {"text": "after expiry"}})],
    )
    .await
    .unwrap();
    w.push
        .wait_for("the close", |_| !w.push.closes.lock().unwrap().is_empty())
        .await;
    assert_eq!(
        *w.push.closes.lock().unwrap(),
        vec![(CONNECTION.to_owned(), 4001)]
    );
    let frames = w.push.frames();
    assert!(
        !frames
            .iter()
            .any(|(_, f)| f.to_string().contains("after expiry")),
        "nothing pushed after expiry: {frames:#?}"
    );
    let error = &frames.last().expect("the error frame").1;
    assert_eq!(error["type"], "error");
    assert_eq!(error["code"], "token_expired");
    assert_eq!(
        error["message"],
        format!("token expired at {exp} (Unix seconds): reconnect with a fresh token")
    );
}

#[tokio::test]
async fn a_request_after_expiry_is_answered_token_expired_and_closed() {
    let w = world().await;
    let exp = now_s() + 1;
    w.realtime
        .handle(connect_event(&token_for(
            "ana",
            "chat-*",
            Role::Reader,
            exp,
        )))
        .await;
    while now_s() < exp {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    w.realtime
        .handle(message(json!({"action": "ping", "id": 3})))
        .await;
    let frames = w.push.frames();
    assert_eq!(frames.len(), 1, "{frames:#?}");
    assert_eq!(frames[0].1["code"], "token_expired");
    assert_eq!(frames[0].1["id"], 3);
    assert_eq!(
        *w.push.closes.lock().unwrap(),
        vec![(CONNECTION.to_owned(), 4001)]
    );
}

#[tokio::test]
async fn a_subscriber_that_falls_behind_is_closed_with_4002_not_skipped() {
    let w = world().await;
    w.realtime
        .handle(connect_event(&token("chat-*", Role::Reader)))
        .await;
    w.realtime
        .handle(message(
            json!({"action": "subscribe", "session": "chat-1", "offset": "now"}),
        ))
        .await;
    w.push.behind.lock().unwrap().insert(CONNECTION.to_owned());
    append_events(
        &w.sessions,
        "acme/chat-1",
        &[json!({"type": "message.delta"})],
    )
    .await
    .unwrap();
    w.push
        .wait_for("the close", |_| !w.push.closes.lock().unwrap().is_empty())
        .await;
    assert_eq!(
        *w.push.closes.lock().unwrap(),
        vec![(CONNECTION.to_owned(), 4002)]
    );
}

#[tokio::test]
async fn a_replay_that_falls_behind_is_closed_with_4002() {
    let w = world().await;
    let events: Vec<Value> = (0..40)
        .map(|i| json!({"type": "tool.result", "data": {"i": i, "blob": "x".repeat(10_000)}}))
        .collect();
    append_events(&w.sessions, "acme/chat-1", &events)
        .await
        .unwrap();
    w.realtime
        .handle(connect_event(&token("chat-*", Role::Reader)))
        .await;
    // The `subscribed` reply and one frame of the replay fit; the rest does not.
    *w.push.budget.lock().unwrap() = Some(2);
    w.realtime
        .handle(message(
            json!({"action": "subscribe", "session": "chat-1", "offset": "-1"}),
        ))
        .await;
    assert_eq!(
        *w.push.closes.lock().unwrap(),
        vec![(CONNECTION.to_owned(), 4002)]
    );
    let frames = w.push.frames();
    assert_eq!(frames.len(), 2, "nothing after the frame that did not fit");
}

#[tokio::test]
async fn subscribe_cycles_add_a_bounded_number_of_presence_events() {
    let w = world().await;
    w.realtime
        .handle(connect_event(&token("chat-*", Role::Reader)))
        .await;
    for _ in 0..100 {
        w.realtime
            .handle(message(
                json!({"action": "subscribe", "session": "chat-1", "offset": "now"}),
            ))
            .await;
        w.realtime
            .handle(message(
                json!({"action": "unsubscribe", "session": "chat-1"}),
            ))
            .await;
    }
    w.realtime.handle(fixture("apigw-ws-disconnect.json")).await;
    assert_eq!(
        log_types(&w.sessions, "acme/chat-1").await,
        ["presence.join", "presence.leave"]
    );
}

#[tokio::test]
async fn pong_carries_the_tail_of_every_subscription() {
    let w = world().await;
    w.realtime
        .handle(connect_event(&token("chat-*", Role::Reader)))
        .await;
    for session in ["chat-1", "chat-2"] {
        w.realtime
            .handle(message(
                json!({"action": "subscribe", "session": session, "offset": "now"}),
            ))
            .await;
    }
    let appended = append_events(
        &w.sessions,
        "acme/chat-2",
        &[json!({"type": "message.end"})],
    )
    .await
    .unwrap();
    w.realtime
        .handle(message(json!({"action": "ping", "id": "p"})))
        .await;
    let frames = w.push.frames();
    let pong = &frames
        .iter()
        .find(|(_, f)| f["type"] == "pong")
        .expect("pong")
        .1;
    assert_eq!(pong["id"], "p");
    let tail_1 = w.sessions.head("acme/chat-1").await.unwrap().tail;
    assert_eq!(
        pong["tails"],
        json!({"chat-1": tail_1.to_string(), "chat-2": appended.tail.to_string()})
    );
}

#[tokio::test]
async fn a_request_nested_deeper_than_the_http_limit_is_refused_as_http_does() {
    let w = world().await;
    w.realtime
        .handle(connect_event(&token("chat-*", Role::Controller)))
        .await;
    let nested = |depth: usize| {
        format!(
            r#"{{"action":"control","session":"chat-1","kind":"steer","data":{}{}}}"#,
            "[".repeat(depth),
            "]".repeat(depth)
        )
    };
    // The request is one level more than its `data`, the stored event (its envelope) one
    // more again: `limit - 2` levels of data are the most a control event can carry.
    let limit = agentwire_session::MAX_JSON_DEPTH;
    for (depth, refused) in [(limit - 2, false), (limit, true)] {
        let mut event = fixture("apigw-ws-message.json");
        event.body = Some(nested(depth));
        w.realtime.handle(event).await;
        let frames = w.push.frames();
        let (_, last) = frames.last().expect("a reply");
        if refused {
            assert_eq!(last["code"], "bad_request", "{last}");
            let message = last["message"].as_str().unwrap();
            assert!(message.contains(&limit.to_string()), "{message}");
        } else {
            assert_eq!(last["type"], "ack", "{last}");
        }
    }
    let steers = log_types(&w.sessions, "acme/chat-1")
        .await
        .into_iter()
        .filter(|t| t == "control.steer")
        .count();
    assert_eq!(steers, 1, "only the request within the limit was appended");
}

#[tokio::test]
async fn a_connection_admitted_with_an_invalid_tenant_cannot_act() {
    let w = world().await;
    w.realtime
        .handle(connect_event(&token("chat-*", Role::Reader)))
        .await;
    // As if admitted before tenant names were checked: the registry holds its claims.
    let mut connection = w.registry.get(CONNECTION).await.unwrap().unwrap();
    w.registry.disconnect(CONNECTION).await.unwrap();
    connection.claims.tenant = "acme/prod".into();
    w.registry.connect(connection).await.unwrap();
    w.realtime
        .handle(message(
            json!({"action": "subscribe", "session": "chat-1", "offset": "-1"}),
        ))
        .await;
    let frames = w.push.frames();
    let (_, last) = frames.last().expect("a reply");
    assert_eq!(last["type"], "error", "{last}");
    assert_eq!(last["code"], "unauthorized", "{last}");
    assert!(
        w.registry
            .subscribers("acme/prod/chat-1")
            .await
            .unwrap()
            .is_empty(),
        "nothing was subscribed"
    );
}

/// Creates the JSON session `acme/chat-1` and subscribes ana's connection to it.
async fn follow_chat_1(sessions: &Sessions, registry: &InMemoryConnectionRegistry) {
    sessions
        .create(CreateStream {
            name: "acme/chat-1".into(),
            content_type: Some("application/json".into()),
            expiry: Expiry::Never,
            closed: false,
            fork: None,
            body: Bytes::new(),
        })
        .await
        .unwrap();
    let claims = Claims {
        tenant: "acme".into(),
        sessions: "*".into(),
        role: Role::Reader,
        user: Some("ana".into()),
        exp: i64::MAX,
    };
    registry
        .connect(agentwire_realtime::Connection {
            id: CONNECTION.into(),
            claims,
            connected_at_ms: 0,
        })
        .await
        .unwrap();
    registry.subscribe(CONNECTION, "acme/chat-1").await.unwrap();
}

/// Deliveries run in whatever order their tasks get to the session: a later append's may
/// come first. The earlier append must still reach subscribers (it once did not, when the
/// later delivery set the session's cursor past it: a silent loss seen in the benchmark).
#[tokio::test]
async fn an_append_whose_delivery_runs_after_a_later_ones_is_still_pushed() {
    let dir = tempfile::tempdir().unwrap();
    let log = Arc::new(SqliteSessionLog::open(dir.path().join("s.db")).unwrap());
    let registry = Arc::new(InMemoryConnectionRegistry::default());
    let push = Arc::new(RecordingPush::default());
    // No observer: the test calls the deliveries itself, in the order it chooses.
    let sessions = Sessions::new(log);
    let fanout = Fanout::new(registry.clone(), push.clone());
    follow_chat_1(&sessions, registry.as_ref()).await;
    let mut appended = Vec::new();
    for n in 0..4 {
        let event = json!({"type": "message.delta", "data": {"n": n}});
        appended.push(
            append_events(&sessions, "acme/chat-1", &[event])
                .await
                .unwrap(),
        );
    }
    // The last append's delivery first, then the first's, then the middle two.
    for i in [3, 0, 2, 1] {
        let a = appended[i];
        fanout
            .deliver(&sessions, "acme/chat-1", a.start, a.tail)
            .await;
    }
    let mut seen: Vec<i64> = push
        .frames()
        .iter()
        .filter(|(_, f)| f["type"] == "events")
        .flat_map(|(_, f)| f["events"].as_array().unwrap().clone())
        .map(|e| e["event"]["data"]["n"].as_i64().unwrap())
        .collect();
    seen.sort();
    seen.dedup();
    assert_eq!(
        seen,
        vec![0, 1, 2, 3],
        "every append reached the subscriber"
    );
}

/// A log that counts reads, to show what the fan-out reads.
struct CountingLog {
    log: SqliteSessionLog,
    reads: std::sync::atomic::AtomicUsize,
}

#[async_trait]
impl agentwire_session::SessionLog for CountingLog {
    async fn create(
        &self,
        request: CreateStream,
    ) -> Result<agentwire_session::Created, agentwire_session::CreateError> {
        self.log.create(request).await
    }
    async fn append(
        &self,
        name: &str,
        request: agentwire_session::AppendRequest,
    ) -> Result<agentwire_session::Appended, agentwire_session::AppendError> {
        self.log.append(name, request).await
    }
    async fn read(
        &self,
        name: &str,
        from: agentwire_session::ReadFrom,
        max_bytes: usize,
    ) -> Result<agentwire_session::ReadBatch, agentwire_session::ReadError> {
        self.reads.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.log.read(name, from, max_bytes).await
    }
    async fn head(
        &self,
        name: &str,
    ) -> Result<agentwire_session::StreamInfo, agentwire_session::ReadError> {
        self.log.head(name).await
    }
    async fn delete(&self, name: &str) -> Result<(), agentwire_session::DeleteError> {
        self.log.delete(name).await
    }
}

/// On Lambda each append pushes its own events before it is acknowledged: from the bytes
/// the append carried, not by reading back what it just wrote (a paid, consistent query
/// per append on DynamoDB).
#[tokio::test]
async fn an_inline_fanout_pushes_the_appends_own_events_without_reading_them_back() {
    let dir = tempfile::tempdir().unwrap();
    let log = Arc::new(CountingLog {
        log: SqliteSessionLog::open(dir.path().join("s.db")).unwrap(),
        reads: Default::default(),
    });
    let registry = Arc::new(InMemoryConnectionRegistry::default());
    let push = Arc::new(RecordingPush::default());
    let fanout = Fanout::inline(registry.clone(), push.clone());
    let sessions = Sessions::new(log.clone()).with_observer(Arc::new(fanout));
    follow_chat_1(&sessions, registry.as_ref()).await;
    let reads_before = log.reads.load(std::sync::atomic::Ordering::SeqCst);
    let mut offsets = Vec::new();
    for n in 0..3 {
        let events: Vec<Value> = (0..2)
            .map(|k| json!({"type": "message.delta", "data": {"n": n * 2 + k}}))
            .collect();
        let appended = append_events(&sessions, "acme/chat-1", &events)
            .await
            .unwrap();
        offsets.push(appended.start);
    }
    let pushed: Vec<(i64, String)> = push
        .frames()
        .iter()
        .filter(|(_, f)| f["type"] == "events")
        .flat_map(|(_, f)| f["events"].as_array().unwrap().clone())
        .map(|e| {
            (
                e["event"]["data"]["n"].as_i64().unwrap(),
                e["offset"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        pushed.iter().map(|(n, _)| *n).collect::<Vec<_>>(),
        vec![0, 1, 2, 3, 4, 5],
        "every event pushed once, in order"
    );
    assert_eq!(
        log.reads.load(std::sync::atomic::Ordering::SeqCst) - reads_before,
        0,
        "the fan-out read nothing"
    );
    // The pushed offsets are the log's own.
    let batch = sessions
        .read(
            "acme/chat-1",
            agentwire_session::ReadFrom::Start,
            usize::MAX,
        )
        .await
        .unwrap();
    let logged: Vec<String> = agentwire_session::events_of(&batch)
        .iter()
        .map(|e| e.offset.to_string())
        .collect();
    let pushed_offsets: Vec<String> = pushed.into_iter().map(|(_, o)| o).collect();
    assert_eq!(pushed_offsets, logged);
}
