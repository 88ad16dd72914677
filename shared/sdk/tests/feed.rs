//! `SessionFeed` against a small fake WebSocket server on 127.0.0.1:0 that speaks the
//! protocol's recovery parts: close 4001 (token expired) and 4002 (behind), the
//! `token_expired` frame, and pongs carrying each subscription's tail. A fake, because the
//! real server's side of these is built separately; the feed's other behaviour is tested
//! against `agentwire dev` in tests/tests/websocket.rs.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use agentwire_sdk::{Client, FeedOptions, Offset, SdkError, SessionFeed, TokenSource};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::time::timeout;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

type TestResult = Result<(), Box<dyn std::error::Error + Send + Sync>>;

const WAIT: Duration = Duration::from_secs(5);

/// Accepts WebSocket connections and hands each to the test, with its `?token=`.
struct FakeServer {
    url: String,
    connections: mpsc::UnboundedReceiver<Connection>,
}

struct Connection {
    token: Option<String>,
    ws: WebSocketStream<TcpStream>,
}

impl FakeServer {
    async fn start() -> std::io::Result<FakeServer> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}", listener.local_addr()?);
        let (tx, connections) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let tx = tx.clone();
                tokio::spawn(async move {
                    let mut token = None;
                    // The callback's shape (and its large error type) is tungstenite's.
                    #[allow(clippy::result_large_err)]
                    let seen = |request: &Request, response: Response| {
                        token = request.uri().query().and_then(|q| {
                            q.split('&')
                                .find_map(|kv| kv.strip_prefix("token="))
                                .map(str::to_owned)
                        });
                        Ok(response)
                    };
                    if let Ok(ws) = tokio_tungstenite::accept_hdr_async(tcp, seen).await {
                        let _ = tx.send(Connection { token, ws });
                    }
                });
            }
        });
        Ok(FakeServer { url, connections })
    }

    async fn accept(&mut self) -> Connection {
        timeout(WAIT, self.connections.recv())
            .await
            .expect("the feed connects")
            .expect("the server runs")
    }

    /// Whether a connection arrives within `wait`.
    async fn connects_within(&mut self, wait: Duration) -> bool {
        timeout(wait, self.connections.recv()).await.is_ok()
    }
}

impl Connection {
    /// The next request frame (pings included).
    async fn request(&mut self) -> Value {
        loop {
            let message = timeout(WAIT, self.ws.next())
                .await
                .expect("a request in time")
                .expect("the socket is open")
                .expect("a frame");
            if let Message::Text(text) = message {
                return serde_json::from_str(&text).expect("requests are JSON");
            }
        }
    }

    /// The next request with `action`, answering pings on the way with `tails`.
    async fn expect(&mut self, action: &str, tails: Option<&Value>) -> Value {
        loop {
            let request = self.request().await;
            if request["action"] == action {
                return request;
            }
            if request["action"] == "ping" {
                self.pong(&request, tails).await;
            }
        }
    }

    async fn send(&mut self, frame: Value) {
        self.ws
            .send(Message::Text(frame.to_string().into()))
            .await
            .expect("the feed is connected");
    }

    async fn pong(&mut self, ping: &Value, tails: Option<&Value>) {
        let mut pong = json!({"type": "pong", "id": ping["id"]});
        if let Some(tails) = tails {
            pong["tails"] = tails.clone();
        }
        self.send(pong).await;
    }

    /// Answers a subscribe from `from` and replays `events` (offsets from `from`).
    async fn subscribed(&mut self, subscribe: &Value, from: u64, events: &[u64]) {
        self.send(
            json!({"type": "subscribed", "session": "s", "from": off(from), "id": subscribe["id"]}),
        )
        .await;
        if !events.is_empty() {
            self.push(events).await;
        }
    }

    async fn push(&mut self, events: &[u64]) {
        let items: Vec<Value> = events
            .iter()
            .map(|&n| json!({"offset": off(n), "event": {"type": "message.delta", "data": {"text": n.to_string()}}}))
            .collect();
        let next = off(events.last().map_or(0, |n| n + 1));
        self.send(json!({"type": "events", "session": "s", "from": off(events[0]), "next": next, "events": items}))
            .await;
    }

    async fn close(mut self, code: u16, reason: &str) {
        let frame = CloseFrame {
            code: CloseCode::from(code),
            reason: reason.to_owned().into(),
        };
        let _ = self.ws.close(Some(frame)).await;
    }
}

fn off(n: u64) -> String {
    Offset(n).to_string()
}

/// A source giving `t1`, `t2`, …, counting its calls.
fn numbered_tokens() -> (Arc<dyn TokenSource>, Arc<AtomicUsize>) {
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = calls.clone();
    let source = move || {
        let n = counter.fetch_add(1, Ordering::SeqCst) + 1;
        async move { Ok::<_, SdkError>(format!("t{n}")) }
    };
    (Arc::new(source), calls)
}

fn options(source: Option<Arc<dyn TokenSource>>, heartbeat: Option<Duration>) -> FeedOptions {
    FeedOptions {
        token_source: source,
        heartbeat,
    }
}

/// Follows "s" from -1 and collects `n` events' offsets.
fn follow(
    url: &str,
    token: Option<&str>,
    options: FeedOptions,
    n: usize,
) -> tokio::task::JoinHandle<Result<Vec<u64>, SdkError>> {
    let client = Client::new(url, token.map(str::to_owned));
    tokio::spawn(async move {
        let mut feed = SessionFeed::connect_with(&client, "s", "-1", options).await?;
        let mut seen = Vec::new();
        while seen.len() < n {
            seen.push(feed.next_event().await?.0.0);
        }
        Ok(seen)
    })
}

#[tokio::test]
async fn close_4001_asks_the_token_source_again_and_resumes_from_the_last_offset() -> TestResult {
    let mut server = FakeServer::start().await?;
    let (source, calls) = numbered_tokens();
    let feed = follow(&server.url, None, options(Some(source), None), 3);

    let mut first = server.accept().await;
    assert_eq!(first.token.as_deref(), Some("t1"));
    let subscribe = first.expect("subscribe", None).await;
    assert_eq!(subscribe["offset"], "-1");
    first.subscribed(&subscribe, 0, &[0, 1]).await;
    first.close(4001, "token expired").await;

    let mut second = server.accept().await;
    assert_eq!(second.token.as_deref(), Some("t2"), "a fresh token");
    let subscribe = second.expect("subscribe", None).await;
    assert_eq!(subscribe["offset"], off(2), "resumes after the last event");
    second.subscribed(&subscribe, 2, &[2]).await;

    assert_eq!(timeout(WAIT, feed).await???, vec![0, 1, 2]);
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    Ok(())
}

#[tokio::test]
async fn a_token_expired_frame_before_an_abnormal_close_renews_the_token() -> TestResult {
    // API Gateway's shape: the frame, then the connection just goes (no close code).
    let mut server = FakeServer::start().await?;
    let (source, calls) = numbered_tokens();
    let feed = follow(&server.url, None, options(Some(source), None), 2);

    let mut first = server.accept().await;
    let subscribe = first.expect("subscribe", None).await;
    first.subscribed(&subscribe, 0, &[0]).await;
    first
        .send(json!({"type": "error", "code": "token_expired", "message": "token expired at 5 (Unix seconds): reconnect with a fresh token"}))
        .await;

    let mut second = server.accept().await;
    assert_eq!(second.token.as_deref(), Some("t2"));
    drop(first);
    let subscribe = second.expect("subscribe", None).await;
    assert_eq!(subscribe["offset"], off(1));
    second.subscribed(&subscribe, 1, &[1]).await;

    assert_eq!(timeout(WAIT, feed).await???, vec![0, 1]);
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    Ok(())
}

#[tokio::test]
async fn a_request_refused_as_expired_is_sent_again_with_a_fresh_token() -> TestResult {
    let mut server = FakeServer::start().await?;
    let (source, _) = numbered_tokens();
    let client = Client::new(&server.url, None);
    let feed = tokio::spawn(async move {
        let mut feed =
            SessionFeed::connect_with(&client, "s", "-1", options(Some(source), None)).await?;
        feed.control("cancel", json!({})).await
    });

    let mut first = server.accept().await;
    let subscribe = first.expect("subscribe", None).await;
    first.subscribed(&subscribe, 0, &[]).await;
    let control = first.expect("control", None).await;
    // An old server's refusal: `unauthorized`, saying why.
    first
        .send(json!({"type": "error", "code": "unauthorized", "message": "token expired at 5 (Unix seconds)", "action": "control", "id": control["id"]}))
        .await;

    let mut second = server.accept().await;
    assert_eq!(second.token.as_deref(), Some("t2"));
    let subscribe = second.expect("subscribe", None).await;
    assert_eq!(subscribe["offset"], off(0));
    second.subscribed(&subscribe, 0, &[]).await;
    let control = second.expect("control", None).await;
    assert_eq!(control["kind"], "cancel", "the same request, again");
    second
        .send(json!({"type": "ack", "action": "control", "offset": off(7), "id": control["id"]}))
        .await;

    assert_eq!(timeout(WAIT, feed).await???, Offset(7));
    Ok(())
}

#[tokio::test]
async fn without_a_token_source_an_expired_token_is_an_error_not_a_reconnect() -> TestResult {
    let mut server = FakeServer::start().await?;
    let feed = follow(&server.url, Some("static"), options(None, None), 2);

    let mut first = server.accept().await;
    assert_eq!(first.token.as_deref(), Some("static"));
    let subscribe = first.expect("subscribe", None).await;
    first.subscribed(&subscribe, 0, &[0]).await;
    first.close(4001, "token expired").await;

    match timeout(WAIT, feed).await?? {
        Err(SdkError::Frame { code, message }) => {
            assert_eq!(code, "token_expired");
            assert_eq!(message, "token expired");
        }
        other => panic!("expected a token_expired error, got {other:?}"),
    }
    assert!(
        !server.connects_within(Duration::from_millis(300)).await,
        "no reconnect with a token that cannot be renewed"
    );
    Ok(())
}

#[tokio::test]
async fn close_4002_reconnects_and_resumes_from_the_last_offset() -> TestResult {
    let mut server = FakeServer::start().await?;
    let client = Client::new(&server.url, Some("static".into()));
    // The default options, as `SessionFeed::connect` uses.
    let feed = tokio::spawn(async move {
        let mut feed = SessionFeed::connect(&client, "s", "-1").await?;
        let mut seen = Vec::new();
        while seen.len() < 3 {
            seen.push(feed.next_event().await?.0.0);
        }
        Ok::<_, SdkError>(seen)
    });

    let mut first = server.accept().await;
    let subscribe = first.expect("subscribe", None).await;
    first.subscribed(&subscribe, 0, &[0]).await;
    first.close(4002, "behind").await;

    let mut second = server.accept().await;
    assert_eq!(second.token.as_deref(), Some("static"), "the same token");
    let subscribe = second.expect("subscribe", None).await;
    assert_eq!(subscribe["offset"], off(1));
    second.subscribed(&subscribe, 1, &[1, 2]).await;

    assert_eq!(timeout(WAIT, feed).await???, vec![0, 1, 2]);
    Ok(())
}

#[tokio::test]
async fn a_pong_tail_beyond_the_last_event_resubscribes_from_it() -> TestResult {
    let mut server = FakeServer::start().await?;
    let heartbeat = Duration::from_millis(50);
    let feed = follow(&server.url, None, options(None, Some(heartbeat)), 2);

    let mut socket = server.accept().await;
    let subscribe = socket.expect("subscribe", None).await;
    // Events 0 and 1 exist; the push of 1 (the reply's `message.end`, say) was lost.
    socket.subscribed(&subscribe, 0, &[0]).await;
    let tails = json!({"s": off(2)});
    let mut pongs = 0;
    let resubscribe = loop {
        let request = socket.request().await;
        if request["action"] == "subscribe" {
            break request;
        }
        assert_eq!(request["action"], "ping");
        socket.pong(&request, Some(&tails)).await;
        pongs += 1;
    };
    assert!(
        pongs >= 2,
        "one pong behind is a push still on its way; the second confirms the gap"
    );
    assert_eq!(resubscribe["offset"], off(1), "from the last offset seen");
    socket.subscribed(&resubscribe, 1, &[1]).await;
    assert_eq!(timeout(WAIT, feed).await???, vec![0, 1]);
    Ok(())
}

#[tokio::test]
async fn check_tail_resubscribes_only_when_behind() -> TestResult {
    let mut server = FakeServer::start().await?;
    let client = Client::new(&server.url, None);
    let feed = tokio::spawn(async move {
        let mut feed = SessionFeed::connect_with(&client, "s", "-1", options(None, None)).await?;
        let first = feed.next_event().await?.0;
        let behind = feed.check_tail().await?;
        let second = feed.next_event().await?.0;
        let caught_up = feed.check_tail().await?;
        Ok::<_, SdkError>((first, behind, second, caught_up))
    });

    let mut socket = server.accept().await;
    let subscribe = socket.expect("subscribe", None).await;
    socket.subscribed(&subscribe, 0, &[0]).await;
    let tails = json!({"s": off(2)});
    let resubscribe = socket.expect("subscribe", Some(&tails)).await;
    assert_eq!(resubscribe["offset"], off(1));
    socket.subscribed(&resubscribe, 1, &[1]).await;
    let ping = socket.expect("ping", None).await;
    socket.pong(&ping, Some(&tails)).await;

    let (first, behind, second, caught_up) = timeout(WAIT, feed).await???;
    assert_eq!((first, second), (Offset(0), Offset(1)));
    assert!(behind, "two pongs beyond the last event: resubscribed");
    assert!(!caught_up, "a tail at the last event: nothing to do");
    Ok(())
}
