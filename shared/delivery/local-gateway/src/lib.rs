//! The local gateway: what API Gateway's WebSocket API does on AWS, in-process.
//!
//! It accepts WebSocket connections at `/ws`, turns the handshake, each text frame and the
//! close into `$connect`, `$default` and `$disconnect` events, calls the very handler
//! Lambda calls ([`Realtime::handle`]), and implements [`ClientPush`] by writing to the
//! socket. A refused `$connect` refuses the upgrade with the handler's status and message.
//!
//! Each socket's outbox is bounded by bytes ([`MAX_OUTBOX_BYTES`]): a push that does not
//! fit is refused as [`PushError::Behind`], and the handlers then close the socket with
//! 4002 through [`ClientPush::close`], which bypasses a full outbox. A client that stops
//! reading altogether is dropped [`CLOSE_TIMEOUT`] after its close, so it holds at most the
//! outbox, one frame in flight and the kernel's socket buffers.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use agentwire_realtime::{ClientPush, PushError, Realtime, frames};
use async_trait::async_trait;
use aws_lambda_events::apigw::{ApiGatewayProxyResponse, ApiGatewayWebsocketProxyRequest};
use aws_lambda_events::encodings::Body as LambdaBody;
use axum::Router;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, RawQuery, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use base64::Engine;
use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http::{HeaderMap, StatusCode};
use tokio::sync::{Notify, mpsc};
use tracing::{Instrument, debug, info_span};

/// Bytes of frames queued for one client (including the one being written) before it
/// counts as behind: pushes beyond it are refused with [`PushError::Behind`].
pub const MAX_OUTBOX_BYTES: usize = 8 * 1024 * 1024;
/// How long a close waits for a client that does not read: for the frame being written
/// to finish, then for the close frame to go out, then for the client's close reply.
/// A close that follows queued frames is made to bypass them after this long too.
pub const CLOSE_TIMEOUT: Duration = Duration::from_secs(10);
/// Messages above this close the socket; smaller ones reach the handler, which refuses
/// those over API Gateway's limit with an error frame.
const MAX_MESSAGE: usize = 1024 * 1024;

/// A close's code and reason; `None` closes without them (the management API's
/// `DELETE /@connections/{id}`, as API Gateway does).
type Close = Option<(u16, String)>;

/// What the gateway sends down one socket, in order.
enum Outgoing {
    Frame(Bytes),
    Close(Close),
}

/// State shared by a socket's pushers and its writer.
#[derive(Default)]
struct Outbox {
    /// Bytes of frames accepted and not yet written.
    queued: AtomicUsize,
    /// A close was asked for: no frame is accepted any more.
    closing: AtomicBool,
    /// A frame was refused: later ones are too, or the client would read past a gap.
    behind: AtomicBool,
    /// A close that jumps the queue, taken by the writer when `urgent` is notified.
    urgent_close: Mutex<Option<Close>>,
    urgent: Notify,
}

impl Outbox {
    fn close_now(&self, close: Close) {
        let mut urgent = self.urgent_close.lock().unwrap_or_else(|p| p.into_inner());
        urgent.get_or_insert(close);
        drop(urgent);
        self.urgent.notify_one();
    }

    fn take_urgent(&self) -> Close {
        self.urgent_close
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
            .flatten()
    }
}

/// One open socket.
struct Socket {
    outbox: mpsc::UnboundedSender<Outgoing>,
    state: Arc<Outbox>,
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

    fn socket(&self, id: &str) -> Option<(mpsc::UnboundedSender<Outgoing>, Arc<Outbox>)> {
        self.sockets()
            .get(id)
            .map(|socket| (socket.outbox.clone(), socket.state.clone()))
    }

    /// Closes `connection_id`: after its queued frames while it keeps up, at once (its
    /// queue dropped) when more than half the outbox is waiting, and at once anyway if the
    /// queue has not drained within [`CLOSE_TIMEOUT`].
    fn close_socket(&self, connection_id: &str, close: Close) -> Result<(), PushError> {
        let Some((sender, state)) = self.socket(connection_id) else {
            return Err(PushError::Gone(connection_id.to_owned()));
        };
        if state.closing.swap(true, Ordering::SeqCst) {
            return Ok(());
        }
        if state.behind.load(Ordering::SeqCst)
            || state.queued.load(Ordering::SeqCst) > MAX_OUTBOX_BYTES / 2
        {
            state.close_now(close);
            return Ok(());
        }
        if sender.send(Outgoing::Close(close.clone())).is_err() {
            return Err(PushError::Gone(connection_id.to_owned()));
        }
        tokio::spawn(async move {
            tokio::time::sleep(CLOSE_TIMEOUT).await;
            state.close_now(close);
        });
        Ok(())
    }
}

#[async_trait]
impl ClientPush for LocalPush {
    async fn post(&self, connection_id: &str, frame: Bytes) -> Result<(), PushError> {
        let gone = || PushError::Gone(connection_id.to_owned());
        let (sender, state) = self.socket(connection_id).ok_or_else(gone)?;
        // A closing socket is as good as gone: API Gateway answers 410 after a delete.
        if state.closing.load(Ordering::SeqCst) {
            return Err(gone());
        }
        let behind = || PushError::Behind(connection_id.to_owned());
        if state.behind.load(Ordering::SeqCst) {
            return Err(behind());
        }
        let len = frame.len();
        let before = state.queued.fetch_add(len, Ordering::SeqCst);
        if before + len > MAX_OUTBOX_BYTES {
            state.queued.fetch_sub(len, Ordering::SeqCst);
            state.behind.store(true, Ordering::SeqCst);
            return Err(behind());
        }
        sender.send(Outgoing::Frame(frame)).map_err(|_| {
            state.queued.fetch_sub(len, Ordering::SeqCst);
            gone()
        })
    }

    async fn close(&self, connection_id: &str, code: u16, reason: &str) -> Result<(), PushError> {
        self.close_socket(connection_id, Some((code, reason.to_owned())))
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
        // As API Gateway throttles a connection that does not keep up.
        Err(PushError::Behind(_)) => (
            StatusCode::TOO_MANY_REQUESTS,
            [
                ("x-amzn-errortype", "LimitExceededException"),
                ("content-type", "application/json"),
            ],
            format!(r#"{{"message":"connection {id} is not keeping up"}}"#),
        )
            .into_response(),
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
    match push.close_socket(&id, None) {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(_) => gone(&id),
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

/// Writes a socket's frames until a close (queued or urgent), then sends the close frame.
/// Returns when the socket is done for; the queue left over is dropped with `outbox`.
async fn write(
    mut sink: futures_util::stream::SplitSink<WebSocket, Message>,
    mut outbox: mpsc::UnboundedReceiver<Outgoing>,
    state: Arc<Outbox>,
) {
    let close = loop {
        let next = tokio::select! {
            biased;
            () = state.urgent.notified() => break state.take_urgent(),
            next = outbox.recv() => next,
        };
        let frame = match next {
            Some(Outgoing::Frame(frame)) => frame,
            Some(Outgoing::Close(close)) => break close,
            None => return,
        };
        let len = frame.len();
        let message = Message::Text(String::from_utf8_lossy(&frame).into_owned().into());
        let (sent, urgent) = {
            let send = sink.send(message);
            tokio::pin!(send);
            tokio::select! {
                biased;
                sent = &mut send => (Some(sent), false),
                // Finish the frame in flight (a cut frame would corrupt the stream), if the
                // client reads it soon enough.
                () = state.urgent.notified() => {
                    (tokio::time::timeout(CLOSE_TIMEOUT, &mut send).await.ok(), true)
                }
            }
        };
        state.queued.fetch_sub(len, Ordering::SeqCst);
        match sent {
            Some(Ok(())) if urgent => break state.take_urgent(),
            Some(Ok(())) => {}
            _ => return,
        }
    };
    // Frames still queued are dropped now, not when the client finally reads.
    drop(outbox);
    let frame = close.map(|(code, reason)| CloseFrame {
        code,
        reason: reason.into(),
    });
    let _ = tokio::time::timeout(CLOSE_TIMEOUT, sink.send(Message::Close(frame))).await;
}

/// Runs one connection: frames in become `$default` events, pushes go out, close is
/// `$disconnect`.
async fn serve(gateway: Gateway, id: String, socket: WebSocket) {
    let (sink, mut stream) = socket.split();
    let (tx, outbox) = mpsc::unbounded_channel::<Outgoing>();
    let state = Arc::new(Outbox::default());
    let socket = Socket {
        outbox: tx,
        state: state.clone(),
        connected_at: std::time::SystemTime::now(),
    };
    gateway.push.sockets().insert(id.clone(), socket);
    let mut writer = tokio::spawn(write(sink, outbox, state));
    // Set once the writer is done (closed): then only the client's close reply is awaited.
    let mut closed_at: Option<tokio::time::Instant> = None;
    loop {
        let deadline = closed_at.map_or_else(
            || tokio::time::Instant::now() + Duration::from_secs(86_400),
            |at| at + CLOSE_TIMEOUT,
        );
        let message = tokio::select! {
            message = stream.next() => message,
            _ = &mut writer, if closed_at.is_none() => {
                closed_at = Some(tokio::time::Instant::now());
                continue;
            }
            () = tokio::time::sleep_until(deadline), if closed_at.is_some() => break,
        };
        let Some(message) = message else { break };
        if closed_at.is_some() {
            // Closed by the server: requests are no longer served.
            match message {
                Ok(Message::Close(_)) | Err(_) => break,
                _ => continue,
            }
        }
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
