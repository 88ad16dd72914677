//! The local gateway: what API Gateway's WebSocket API does on AWS, in-process.
//!
//! It accepts WebSocket connections at `/ws`, turns the handshake, each text frame and the
//! close into `$connect`, `$default` and `$disconnect` events, calls the very handler
//! Lambda calls ([`Realtime::handle`]), and implements [`ClientPush`] by writing to the
//! socket. A refused `$connect` refuses the upgrade with the handler's status and message.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use agentwire_realtime::{ClientPush, PushError, Realtime, frames};
use async_trait::async_trait;
use aws_lambda_events::apigw::{ApiGatewayProxyResponse, ApiGatewayWebsocketProxyRequest};
use aws_lambda_events::encodings::Body as LambdaBody;
use axum::Router;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, RawQuery, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use base64::Engine;
use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http::{HeaderMap, StatusCode};
use tokio::sync::mpsc;
use tracing::{Instrument, debug, info_span};

/// Frames queued for one client before it counts as not keeping up (it then misses frames
/// and catches up by offset, as after any gap).
const QUEUE: usize = 4096;
/// Messages above this close the socket; smaller ones reach the handler, which refuses
/// those over API Gateway's limit with an error frame.
const MAX_MESSAGE: usize = 1024 * 1024;

/// What the gateway sends down one socket.
enum Outgoing {
    Frame(Bytes),
    /// Close the socket (the management API's `DELETE /@connections/{id}`).
    Close,
}

/// One open socket.
struct Socket {
    outbox: mpsc::Sender<Outgoing>,
    connected_at: std::time::SystemTime,
}

/// [`ClientPush`] onto this process's sockets.
#[derive(Default)]
pub struct LocalPush {
    sockets: Mutex<HashMap<String, Socket>>,
}

impl LocalPush {
    fn sockets(&self) -> std::sync::MutexGuard<'_, HashMap<String, Socket>> {
        self.sockets.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[async_trait]
impl ClientPush for LocalPush {
    async fn post(&self, connection_id: &str, frame: Bytes) -> Result<(), PushError> {
        let sender = self
            .sockets()
            .get(connection_id)
            .map(|socket| socket.outbox.clone());
        let Some(sender) = sender else {
            return Err(PushError::Gone(connection_id.to_owned()));
        };
        sender
            .try_send(Outgoing::Frame(frame))
            .map_err(|e| match e {
                mpsc::error::TrySendError::Closed(_) => PushError::Gone(connection_id.to_owned()),
                mpsc::error::TrySendError::Full(_) => {
                    PushError::Failed("client is not keeping up".into())
                }
            })
    }
}

#[derive(Clone)]
struct Gateway {
    realtime: Realtime,
    push: Arc<LocalPush>,
}

/// The `/ws` route over `realtime`, pushing through `push` (which `realtime` must use too).
pub fn router(realtime: Realtime, push: Arc<LocalPush>) -> Router {
    Router::new()
        .route("/ws", get(upgrade))
        .with_state(Gateway { realtime, push })
}

/// API Gateway connection ids look like this: 12 random bytes, base64 (URL-safe here, so
/// they fit in the management API's paths).
fn connection_id() -> String {
    let bytes: [u8; 12] = std::array::from_fn(|_| fastrand::u8(..));
    base64::engine::general_purpose::URL_SAFE.encode(bytes)
}

/// API Gateway's management API for this gateway's connections, as the AWS SDK calls it:
/// `POST /@connections/{id}` pushes its body, `GET` describes the connection, `DELETE`
/// closes it; an unknown connection is `410 GoneException`. It trusts every caller: it is
/// for local runs and tests only.
pub fn management_router(push: Arc<LocalPush>) -> Router {
    Router::new()
        .route(
            "/@connections/{id}",
            axum::routing::post(post_to_connection)
                .get(get_connection)
                .delete(delete_connection),
        )
        .with_state(push)
}

fn gone(id: &str) -> Response {
    let body = format!(r#"{{"message":"connection {id} is gone"}}"#);
    (
        StatusCode::GONE,
        [
            ("x-amzn-errortype", "GoneException"),
            ("content-type", "application/json"),
        ],
        body,
    )
        .into_response()
}

async fn post_to_connection(
    State(push): State<Arc<LocalPush>>,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    match push.post(&id, body).await {
        Ok(()) => StatusCode::OK.into_response(),
        Err(PushError::Gone(_)) => gone(&id),
        Err(PushError::Failed(e)) => (StatusCode::INTERNAL_SERVER_ERROR, e).into_response(),
    }
}

async fn get_connection(State(push): State<Arc<LocalPush>>, Path(id): Path<String>) -> Response {
    let connected_at = push.sockets().get(&id).map(|socket| socket.connected_at);
    let Some(connected_at) = connected_at else {
        return gone(&id);
    };
    let seconds = connected_at
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    let body = format!(
        r#"{{"ConnectedAt":{seconds},"Identity":{{"SourceIp":"127.0.0.1"}},"LastActiveAt":{seconds}}}"#
    );
    (StatusCode::OK, [("content-type", "application/json")], body).into_response()
}

async fn delete_connection(State(push): State<Arc<LocalPush>>, Path(id): Path<String>) -> Response {
    let outbox = push.sockets().get(&id).map(|socket| socket.outbox.clone());
    match outbox {
        Some(outbox) => {
            let _ = outbox.send(Outgoing::Close).await;
            StatusCode::NO_CONTENT.into_response()
        }
        None => gone(&id),
    }
}

fn event(route: &str, connection_id: &str) -> ApiGatewayWebsocketProxyRequest {
    let mut event = ApiGatewayWebsocketProxyRequest::default();
    event.request_context.route_key = Some(route.to_owned());
    event.request_context.connection_id = Some(connection_id.to_owned());
    event.request_context.event_type = Some(
        match route {
            "$connect" => "CONNECT",
            "$disconnect" => "DISCONNECT",
            _ => "MESSAGE",
        }
        .to_owned(),
    );
    event.request_context.stage = Some("local".to_owned());
    event
}

fn refused(response: ApiGatewayProxyResponse) -> Response {
    let status = StatusCode::from_u16(response.status_code as u16)
        .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let body = match response.body {
        Some(LambdaBody::Text(text)) => text,
        _ => status.canonical_reason().unwrap_or_default().to_owned(),
    };
    (status, format!("{body}\n")).into_response()
}

async fn upgrade(
    State(gateway): State<Gateway>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    upgrade: WebSocketUpgrade,
) -> Response {
    let id = connection_id();
    let mut connect = event("$connect", &id);
    connect.query_string_parameters = query
        .as_deref()
        .unwrap_or_default()
        .parse()
        .unwrap_or_default();
    connect.headers = headers;
    let answer = gateway.realtime.handle(connect).await;
    if answer.status_code != 200 {
        return refused(answer);
    }
    let span = info_span!("ws", connection = %id);
    upgrade
        .max_message_size(MAX_MESSAGE)
        .on_upgrade(move |socket| serve(gateway, id, socket).instrument(span))
}

/// Runs one connection: frames in become `$default` events, pushes go out, close is
/// `$disconnect`.
async fn serve(gateway: Gateway, id: String, socket: WebSocket) {
    let (mut sink, mut stream) = socket.split();
    let (tx, mut outbox) = mpsc::channel::<Outgoing>(QUEUE);
    let socket = Socket {
        outbox: tx,
        connected_at: std::time::SystemTime::now(),
    };
    gateway.push.sockets().insert(id.clone(), socket);
    let writer = tokio::spawn(async move {
        while let Some(Outgoing::Frame(frame)) = outbox.recv().await {
            let text = String::from_utf8_lossy(&frame).into_owned();
            if sink.send(Message::Text(text.into())).await.is_err() {
                break;
            }
        }
        let _ = sink.close().await;
    });
    while let Some(message) = stream.next().await {
        let body = match message {
            Ok(Message::Text(text)) => text.to_string(),
            Ok(Message::Binary(_)) => {
                let refusal = frames::error(
                    "bad_request",
                    "binary frames are not supported: send JSON text",
                    None,
                    None,
                );
                let _ = gateway.push.post(&id, refusal).await;
                continue;
            }
            Ok(Message::Close(_)) | Err(_) => break,
            Ok(Message::Ping(_) | Message::Pong(_)) => continue,
        };
        let mut event = event("$default", &id);
        event.body = Some(body);
        gateway.realtime.handle(event).await;
    }
    debug!("socket closed");
    gateway.push.sockets().remove(&id);
    gateway.realtime.handle(event("$disconnect", &id)).await;
    writer.abort();
}
