//! The ClientPush contract on both implementations, with real WebSocket clients on the
//! local gateway (its router on a port-0 listener): [`LocalPush`] writing to the sockets,
//! and `ApiGatewayPush` sending them through the AWS SDK's management client to the
//! gateway's `/@connections`, as a Lambda does to API Gateway.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use agentwire_apigw_push::{ApiGatewayPush, local_client};
use agentwire_auth::Auth;
use agentwire_contracts::client_push_contract;
use agentwire_contracts::push::{PushClient, PushHarness};
use agentwire_local_gateway::{LocalPush, management_router, router};
use agentwire_realtime::{ClientPush, InMemoryConnectionRegistry, PushError, Realtime};
use agentwire_session::Sessions;
use agentwire_sqlite::SqliteSessionLog;
use async_trait::async_trait;
use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// A local gateway on its own port, with `push` the ClientPush under test.
struct Gateway {
    push: Arc<dyn ClientPush>,
    url: String,
    seen: Arc<Seen>,
    pings: AtomicU64,
    _dir: tempfile::TempDir,
}

/// What the handlers pushed, and to whom: how the harness learns a new client's id (the
/// gateway tells it only to the handlers), from the reply to the client's first ping.
struct Seen {
    local: Arc<LocalPush>,
    frames: Mutex<Vec<(String, Bytes)>>,
}

#[async_trait]
impl ClientPush for Seen {
    async fn post(&self, connection_id: &str, frame: Bytes) -> Result<(), PushError> {
        let seen = (connection_id.to_owned(), frame.clone());
        self.frames.lock().unwrap().push(seen);
        self.local.post(connection_id, frame).await
    }

    async fn close(&self, connection_id: &str, code: u16, reason: &str) -> Result<(), PushError> {
        self.local.close(connection_id, code, reason).await
    }
}

/// Starts a gateway; `push` picks the ClientPush under test given its sockets and URL.
async fn gateway(push: impl FnOnce(Arc<LocalPush>, &str) -> Arc<dyn ClientPush>) -> Gateway {
    let dir = tempfile::tempdir().expect("temp dir");
    // The handlers need a log; these clients never subscribe, so it stays empty.
    let log = SqliteSessionLog::open(dir.path().join("sessions.db")).expect("open log");
    let local = Arc::new(LocalPush::default());
    let seen = Arc::new(Seen {
        local: local.clone(),
        frames: Mutex::default(),
    });
    let realtime = Realtime::new(
        Sessions::new(Arc::new(log)),
        Arc::new(InMemoryConnectionRegistry::default()),
        seen.clone(),
        Auth::Insecure {
            tenant: "acme".into(),
        },
    );
    let app = router(realtime, local.clone()).merge(management_router(local.clone()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("address"));
    tokio::spawn(async move { axum::serve(listener, app).await });
    Gateway {
        push: push(local, &url),
        url,
        seen,
        pings: AtomicU64::new(0),
        _dir: dir,
    }
}

async fn local_push() -> Gateway {
    gateway(|local, _| local).await
}

async fn api_gateway_push() -> Gateway {
    gateway(|_, url| Arc::new(ApiGatewayPush::new(local_client(url)))).await
}

struct Client {
    id: String,
    socket: WebSocketStream<MaybeTlsStream<TcpStream>>,
}

impl PushHarness for Gateway {
    type Client = Client;

    fn push(&self) -> &dyn ClientPush {
        self.push.as_ref()
    }

    async fn connect(&self) -> Client {
        let url = format!("{}/ws", self.url.replacen("http", "ws", 1));
        let (socket, _) = tokio_tungstenite::connect_async(url)
            .await
            .expect("connect");
        let mut client = Client {
            id: String::new(),
            socket,
        };
        // The gateway reads a socket's messages only once pushes can reach it, so the
        // reply to a ping also says the client is connected.
        let n = self.pings.fetch_add(1, Ordering::Relaxed);
        let ping = format!(r#"{{"action":"ping","id":"harness-{n}"}}"#);
        client
            .socket
            .send(Message::text(ping))
            .await
            .expect("send ping");
        let pong = client.next_frame().await.expect("the pong");
        let frames = self.seen.frames.lock().unwrap();
        let to = frames.iter().find(|(_, frame)| *frame == pong);
        client.id = to.expect("the handlers pushed the pong").0.clone();
        drop(frames);
        client
    }
}

impl PushClient for Client {
    fn id(&self) -> &str {
        &self.id
    }

    async fn next_frame(&mut self) -> Option<Bytes> {
        while let Some(message) = self.socket.next().await {
            match message.ok()? {
                Message::Text(text) => return Some(text.into()),
                Message::Binary(_) => panic!("{} received a binary message", self.id),
                Message::Close(_) => return None,
                Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => {}
            }
        }
        None
    }

    async fn close(&mut self) {
        let _ = self.socket.close(None).await;
    }
}

mod local {
    use super::*;
    client_push_contract!(local_push);
}

mod api_gateway {
    use super::*;
    client_push_contract!(api_gateway_push);
}
