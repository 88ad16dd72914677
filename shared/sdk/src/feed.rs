//! The client side: follow a session live over the WebSocket API.

use std::collections::{HashSet, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use agentwire_session::Offset;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::client::Client;
use crate::error::SdkError;

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// The close code agentwire sends when a connection's token expired: reconnect with a fresh one.
pub const CLOSE_TOKEN_EXPIRED: u16 = 4001;
/// The close code agentwire sends when a connection fell behind: reconnect and resume.
pub const CLOSE_BEHIND: u16 = 4002;
/// The error code of a refusal (or a notice before close 4001) because the token expired.
pub const TOKEN_EXPIRED: &str = "token_expired";
/// How often a feed pings while it waits, unless [`FeedOptions::heartbeat`] says otherwise.
pub const DEFAULT_HEARTBEAT: Duration = Duration::from_secs(10);

/// Where a feed gets tokens: asked for the first connection and again whenever the server
/// says the token expired (close 4001, a `token_expired` frame, or a refused upgrade).
/// Any `Fn() -> impl Future<Output = Result<String, SdkError>>` is one.
pub trait TokenSource: Send + Sync {
    /// A token valid now.
    fn token(&self) -> Pin<Box<dyn Future<Output = Result<String, SdkError>> + Send + '_>>;
}

impl<F, Fut> TokenSource for F
where
    F: Fn() -> Fut + Send + Sync,
    Fut: Future<Output = Result<String, SdkError>> + Send + 'static,
{
    fn token(&self) -> Pin<Box<dyn Future<Output = Result<String, SdkError>> + Send + '_>> {
        Box::pin(self())
    }
}

/// How a [`SessionFeed`] keeps itself connected.
#[derive(Clone)]
pub struct FeedOptions {
    /// Fresh tokens (see [`TokenSource`]); it replaces the client's token. Without one, an
    /// expired token ends the feed's calls with `SdkError::Frame { code: "token_expired" }`.
    pub token_source: Option<Arc<dyn TokenSource>>,
    /// Ping this often while waiting for events, and check the pong's tail for events that
    /// never arrived (see [`SessionFeed::check_tail`]); `None` never pings.
    pub heartbeat: Option<Duration>,
}

impl Default for FeedOptions {
    fn default() -> FeedOptions {
        FeedOptions {
            token_source: None,
            heartbeat: Some(DEFAULT_HEARTBEAT),
        }
    }
}

impl std::fmt::Debug for FeedOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FeedOptions")
            .field("token_source", &self.token_source.is_some())
            .field("heartbeat", &self.heartbeat)
            .finish()
    }
}

/// Why waiting on the socket stopped.
enum Interrupt {
    /// The token expired (close 4001 or a `token_expired` frame): renew and reconnect.
    Expired(String),
    /// The server dropped us for falling behind (close 4002 or a `behind` frame): reconnect.
    Behind,
    Failed(SdkError),
}

impl From<SdkError> for Interrupt {
    fn from(e: SdkError) -> Interrupt {
        Interrupt::Failed(e)
    }
}

/// One session followed over a WebSocket: events come out once each, in offset order,
/// whatever the pushes did (duplicates are dropped, gaps and oversized events are fetched
/// over HTTP). Survives reconnects by resuming from [`SessionFeed::next_offset`]; while
/// waiting for events it reconnects by itself when the server closes with 4001 (token
/// expired: with a fresh token from its [`TokenSource`]) or 4002 (fell behind), and
/// resubscribes when a heartbeat's pong shows events it never received.
pub struct SessionFeed {
    client: Client,
    session: String,
    socket: Option<Socket>,
    /// The offset after the last event received (handed out or ready).
    next: Offset,
    /// The offset after the last event handed out.
    handed: Offset,
    ready: VecDeque<(Offset, Value)>,
    replies: VecDeque<Value>,
    request_id: u64,
    /// While a first subscribe awaits its reply, pushed events are held here: their
    /// position is only known once the reply says where the subscription starts.
    early: Option<Vec<Value>>,
    options: FeedOptions,
    /// The close code of the socket that just closed, if it sent one.
    close_code: Option<(u16, String)>,
    /// Ids of the feed's own requests (heartbeats, resubscribes): their replies are not
    /// handed to callers.
    own: HashSet<u64>,
    last_ping: Instant,
    /// The session's tail at the last pong, when it was beyond what this feed had received.
    behind_at: Option<Offset>,
}

impl SessionFeed {
    /// Connects and follows `session` from `from` (`-1`, `now`, or an offset), with the
    /// client's token and the default heartbeat.
    pub async fn connect(
        client: &Client,
        session: &str,
        from: &str,
    ) -> Result<SessionFeed, SdkError> {
        SessionFeed::connect_with(client, session, from, FeedOptions::default()).await
    }

    /// [`SessionFeed::connect`] with options: a token source, a heartbeat.
    pub async fn connect_with(
        client: &Client,
        session: &str,
        from: &str,
        options: FeedOptions,
    ) -> Result<SessionFeed, SdkError> {
        let mut feed = SessionFeed {
            client: client.clone(),
            session: session.to_owned(),
            socket: None,
            next: Offset::ZERO,
            handed: Offset::ZERO,
            ready: VecDeque::new(),
            replies: VecDeque::new(),
            request_id: 0,
            early: None,
            options,
            close_code: None,
            own: HashSet::new(),
            last_ping: Instant::now(),
            behind_at: None,
        };
        if feed.options.token_source.is_some() {
            feed.renew_token().await?;
        }
        feed.open(from).await?;
        Ok(feed)
    }

    /// Asks the token source for a fresh token; it is used from the next connection on
    /// (and by HTTP reads at once).
    async fn renew_token(&mut self) -> Result<(), SdkError> {
        if let Some(source) = &self.options.token_source {
            let token = source.token().await?;
            self.client.token = Some(token);
        }
        Ok(())
    }

    async fn open(&mut self, from: &str) -> Result<(), SdkError> {
        let socket = match tokio_tungstenite::connect_async(self.client.ws_url()).await {
            Ok((socket, _)) => socket,
            // The token expired while we were away: a source can give a fresh one.
            Err(tungstenite::Error::Http(response))
                if response.status() == 401 && self.options.token_source.is_some() =>
            {
                self.renew_token().await?;
                tokio_tungstenite::connect_async(self.client.ws_url())
                    .await?
                    .0
            }
            Err(e) => return Err(e.into()),
        };
        self.socket = Some(socket);
        self.close_code = None;
        self.own.clear();
        self.behind_at = None;
        self.last_ping = Instant::now();
        let resuming = from != "-1" && from != "now";
        if !resuming {
            self.early = Some(Vec::new());
        }
        let subscribed = self
            .request_once(json!({"action": "subscribe", "session": self.session, "offset": from}))
            .await
            .map_err(Self::request_error);
        let early = self.early.take().unwrap_or_default();
        let subscribed = subscribed?;
        let start = subscribed["from"]
            .as_str()
            .and_then(|o| Offset::parse(o).ok())
            .ok_or_else(|| {
                SdkError::Protocol(format!("subscribed without an offset: {subscribed}"))
            })?;
        if resuming {
            // Resuming: keep our own position; the server replays from it.
            return Ok(());
        }
        self.next = start;
        self.handed = start;
        // Pushes that raced ahead of the reply (our own presence.join, say), now in place.
        for frame in early {
            self.absorb(frame).await?;
        }
        Ok(())
    }

    /// The offset after the last event handed out: resume from here.
    pub fn next_offset(&self) -> Offset {
        self.handed
    }

    /// Drops the connection (as a network failure would). Nothing is cancelled.
    pub async fn disconnect(&mut self) {
        if let Some(mut socket) = self.socket.take() {
            let _ = socket.close(None).await;
        }
    }

    /// Connects again and resumes after the last event handed out.
    pub async fn reconnect(&mut self) -> Result<(), SdkError> {
        self.disconnect().await;
        self.ready.clear();
        self.next = self.handed;
        let from = self.handed.to_string();
        self.open(&from).await
    }

    /// The next event, in order, exactly once. Waiting, it pings every heartbeat, and
    /// recovers by itself from an expired token (given a token source) and from falling
    /// behind; other failures are returned (call [`SessionFeed::reconnect`]).
    pub async fn next_event(&mut self) -> Result<(Offset, Value), SdkError> {
        loop {
            if let Some(event) = self.ready.pop_front() {
                self.handed = event.0.advance(1);
                return Ok(event);
            }
            match self.pump().await {
                Ok(Some(frame)) => self.replies.push_back(frame),
                Ok(None) => {}
                Err(interrupt) => self.recover(interrupt).await?,
            }
        }
    }

    /// Pings, and resubscribes from the last offset received if the session's tail is
    /// beyond it and stays so at a second ping (pushes in flight get that long to arrive),
    /// as when a session's last push (a `message.end`, say) was lost. True if it
    /// resubscribed; the missing events then come out of [`SessionFeed::next_event`].
    /// Servers whose pongs carry no `tails` never trigger it.
    pub async fn check_tail(&mut self) -> Result<bool, SdkError> {
        for _ in 0..2 {
            let pong = self.request(json!({"action": "ping"})).await?;
            if self.on_pong(&pong) {
                self.resubscribe().await?;
                return Ok(true);
            }
            if self.behind_at.is_none() {
                return Ok(false);
            }
        }
        Ok(false)
    }

    /// Notes a pong's tail; true when what was missing at the previous pong still is.
    fn on_pong(&mut self, pong: &Value) -> bool {
        let Some(tail) = pong["tails"][self.session.as_str()]
            .as_str()
            .and_then(|o| Offset::parse(o).ok())
        else {
            return false;
        };
        let still_missing = self.behind_at.is_some_and(|at| self.next < at);
        self.behind_at = (tail > self.next && !still_missing).then_some(tail);
        still_missing
    }

    /// Subscribes again on this socket from the offset after the last event received; the
    /// replay's duplicates are dropped by offset.
    async fn resubscribe(&mut self) -> Result<(), SdkError> {
        self.request_id += 1;
        let id = self.request_id;
        self.own.insert(id);
        let from = self.next.to_string();
        let request =
            json!({"action": "subscribe", "session": self.session, "offset": from, "id": id});
        self.send_raw(&request.to_string()).await
    }

    async fn ping(&mut self) -> Result<(), SdkError> {
        self.last_ping = Instant::now();
        self.request_id += 1;
        let id = self.request_id;
        self.own.insert(id);
        self.send_raw(&json!({"action": "ping", "id": id}).to_string())
            .await
    }

    /// Waits for one frame (or the heartbeat): `Some` is a reply for callers, `None` means
    /// the frame was taken in (events, the feed's own replies) or a ping went out.
    async fn pump(&mut self) -> Result<Option<Value>, Interrupt> {
        let received = match self.options.heartbeat {
            Some(every) => {
                let due = self.last_ping + every;
                match tokio::time::timeout_at(due, self.receive()).await {
                    Ok(received) => received,
                    Err(_) => {
                        self.ping().await.map_err(|e| self.interrupt(e))?;
                        return Ok(None);
                    }
                }
            }
            None => self.receive().await,
        };
        let frame = received.map_err(|e| self.interrupt(e))?;
        self.inbound(frame).await
    }

    /// Sorts a frame that answers none of the caller's requests.
    async fn inbound(&mut self, frame: Value) -> Result<Option<Value>, Interrupt> {
        if self.absorb(frame.clone()).await? {
            return Ok(None);
        }
        if frame["type"] == "error" {
            if is_expiry(&frame) {
                let message = frame["message"].as_str().unwrap_or("token expired");
                return Err(Interrupt::Expired(message.to_owned()));
            }
            if frame["code"] == "behind" {
                return Err(Interrupt::Behind);
            }
        }
        let own = frame["id"].as_u64().is_some_and(|id| self.own.remove(&id));
        if frame["type"] == "pong" && self.on_pong(&frame) {
            self.resubscribe().await?;
        }
        // The feed's own pongs and `subscribed` replies are for it alone; its errors are
        // passed on, so a refused resubscribe is seen.
        if own && frame["type"] != "error" {
            return Ok(None);
        }
        Ok(Some(frame))
    }

    /// An error from the socket, or what its close code says.
    fn interrupt(&mut self, e: SdkError) -> Interrupt {
        match (&e, self.close_code.take()) {
            (SdkError::Closed, Some((CLOSE_TOKEN_EXPIRED, reason))) => Interrupt::Expired(reason),
            (SdkError::Closed, Some((CLOSE_BEHIND, _))) => Interrupt::Behind,
            _ => Interrupt::Failed(e),
        }
    }

    fn request_error(e: RequestError) -> SdkError {
        match e {
            RequestError::Refused(e) => e,
            RequestError::Expired(message) => error_of(Interrupt::Expired(message)),
            RequestError::Interrupted(interrupt) => error_of(interrupt),
        }
    }

    /// Reconnects after an expiry (with a fresh token) or falling behind, resuming from the
    /// last event handed out; anything else, or an expiry without a token source, is the
    /// caller's error.
    async fn recover(&mut self, interrupt: Interrupt) -> Result<(), SdkError> {
        match interrupt {
            Interrupt::Expired(_) if self.options.token_source.is_some() => {
                self.renew_token().await?;
                self.reconnect().await
            }
            Interrupt::Behind => self.reconnect().await,
            Interrupt::Expired(message) => {
                // Nothing more will come on this socket; the caller needs a new token.
                self.disconnect().await;
                Err(error_of(Interrupt::Expired(message)))
            }
            Interrupt::Failed(e) => Err(e),
        }
    }

    /// Sends `{"action":"control","kind":…}`; returns the control event's offset.
    pub async fn control(&mut self, kind: &str, data: Value) -> Result<Offset, SdkError> {
        let ack = self
            .request(
                json!({"action": "control", "session": self.session, "kind": kind, "data": data}),
            )
            .await?;
        offset_field(&ack, "offset")
    }

    /// Sends a user message; returns its offset.
    pub async fn send_message(&mut self, text: &str) -> Result<Offset, SdkError> {
        let ack = self
            .request(json!({"action": "send", "session": self.session, "text": text}))
            .await?;
        offset_field(&ack, "offset")
    }

    /// Who follows the session now: `[{"user":…,"connections":n}]`.
    pub async fn presence(&mut self) -> Result<Value, SdkError> {
        let reply = self
            .request(json!({"action": "presence", "session": self.session}))
            .await?;
        Ok(reply["members"].clone())
    }

    /// Sends a raw request and waits for the frame that answers it (by `id`); events that
    /// arrive meanwhile are kept in order. A request refused because the token expired is
    /// sent again once on a new connection with a fresh token, given a token source (it was
    /// not applied). If the connection is closed for expiry or falling behind before the
    /// answer, the feed reconnects and the request fails with `SdkError::Closed`: whether
    /// it was applied is unknown.
    pub async fn request(&mut self, request: Value) -> Result<Value, SdkError> {
        match self.request_once(request.clone()).await {
            Ok(reply) => Ok(reply),
            Err(RequestError::Refused(e)) => Err(e),
            Err(RequestError::Expired(_)) if self.options.token_source.is_some() => {
                self.renew_token().await?;
                self.reconnect().await?;
                let retried = self.request_once(request).await;
                retried.map_err(Self::request_error)
            }
            Err(expired @ RequestError::Expired(_)) => Err(Self::request_error(expired)),
            Err(RequestError::Interrupted(interrupt)) => {
                self.recover(interrupt).await?;
                // Recovered, but the answer was lost with the old connection.
                Err(SdkError::Closed)
            }
        }
    }

    /// One request on the current socket, without recovery.
    async fn request_once(&mut self, mut request: Value) -> Result<Value, RequestError> {
        self.request_id += 1;
        let id = self.request_id;
        request["id"] = json!(id);
        self.send_raw(&request.to_string())
            .await
            .map_err(|e| RequestError::Interrupted(self.interrupt(e)))?;
        loop {
            let frame = self
                .receive()
                .await
                .map_err(|e| RequestError::Interrupted(self.interrupt(e)))?;
            if frame.get("id") == Some(&json!(id)) {
                return match frame["type"].as_str() {
                    Some("error") if is_expiry(&frame) => Err(RequestError::Expired(
                        frame["message"].as_str().unwrap_or_default().to_owned(),
                    )),
                    Some("error") => Err(RequestError::Refused(frame_error(&frame))),
                    _ => Ok(frame),
                };
            }
            if let Some(reply) = self
                .inbound(frame)
                .await
                .map_err(RequestError::Interrupted)?
            {
                self.replies.push_back(reply);
            }
        }
    }

    /// Sends a text frame as is (for clients that speak the protocol themselves).
    pub async fn send_raw(&mut self, text: &str) -> Result<(), SdkError> {
        let socket = self.socket.as_mut().ok_or(SdkError::Closed)?;
        socket.send(Message::Text(text.to_owned().into())).await?;
        Ok(())
    }

    /// The next frame that was not an event (replies and errors not claimed by a request);
    /// recovers from expiry and falling behind as [`SessionFeed::next_event`] does.
    pub async fn next_reply(&mut self) -> Result<Value, SdkError> {
        loop {
            if let Some(frame) = self.replies.pop_front() {
                return Ok(frame);
            }
            match self.pump().await {
                Ok(Some(frame)) => return Ok(frame),
                Ok(None) => {}
                Err(interrupt) => self.recover(interrupt).await?,
            }
        }
    }

    async fn receive(&mut self) -> Result<Value, SdkError> {
        let socket = self.socket.as_mut().ok_or(SdkError::Closed)?;
        loop {
            match socket.next().await {
                Some(Ok(Message::Text(text))) => {
                    return serde_json::from_str(&text)
                        .map_err(|e| SdkError::Protocol(format!("frame is not JSON: {e}")));
                }
                Some(Ok(Message::Close(frame))) => {
                    self.socket = None;
                    self.close_code =
                        frame.map(|f| (u16::from(f.code), f.reason.as_str().to_owned()));
                    return Err(SdkError::Closed);
                }
                None => {
                    self.socket = None;
                    return Err(SdkError::Closed);
                }
                Some(Ok(_)) => continue,
                Some(Err(e)) => {
                    self.socket = None;
                    return Err(e.into());
                }
            }
        }
    }

    /// Takes the events of an `events` or `oversize` frame for this session into the
    /// ready queue, in order; false for any other frame.
    async fn absorb(&mut self, frame: Value) -> Result<bool, SdkError> {
        if frame["session"].as_str() != Some(self.session.as_str()) {
            return Ok(false);
        }
        if let Some(early) = &mut self.early
            && matches!(frame["type"].as_str(), Some("events" | "oversize"))
        {
            early.push(frame);
            return Ok(true);
        }
        match frame["type"].as_str() {
            Some("events") => {
                for item in frame["events"].as_array().into_iter().flatten() {
                    let offset = offset_field(item, "offset")?;
                    self.accept(offset, item["event"].clone()).await?;
                }
                Ok(true)
            }
            Some("oversize") => {
                let offset = offset_field(&frame, "offset")?;
                if offset >= self.next {
                    self.fill_to(offset.advance(1)).await?;
                }
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    async fn accept(&mut self, offset: Offset, event: Value) -> Result<(), SdkError> {
        if offset < self.next {
            return Ok(()); // already handed out: a replayed or re-pushed duplicate
        }
        if offset > self.next {
            // A gap: a push was missed (or is still on its way). Fetch what is missing.
            self.fill_to(offset).await?;
            if offset < self.next {
                return Ok(());
            }
        }
        self.ready.push_back((offset, event));
        self.next = offset.advance(1);
        Ok(())
    }

    /// Reads over HTTP until `until` is handed out.
    async fn fill_to(&mut self, until: Offset) -> Result<(), SdkError> {
        while self.next < until {
            let page = self.client.read(&self.session, self.next).await?;
            if page.events.is_empty() {
                break;
            }
            for (offset, event) in page.events {
                if offset >= self.next && offset < until {
                    self.ready.push_back((offset, event));
                    self.next = offset.advance(1);
                }
            }
            if page.up_to_date && page.next <= self.next {
                break;
            }
        }
        Ok(())
    }
}

fn offset_field(value: &Value, field: &str) -> Result<Offset, SdkError> {
    value[field]
        .as_str()
        .and_then(|o| Offset::parse(o).ok())
        .ok_or_else(|| SdkError::Protocol(format!("frame without a valid {field}: {value}")))
}

/// The error a caller sees for an interrupt it has to handle.
fn error_of(interrupt: Interrupt) -> SdkError {
    match interrupt {
        Interrupt::Expired(message) => SdkError::Frame {
            code: TOKEN_EXPIRED.to_owned(),
            message: if message.is_empty() {
                "token expired".to_owned()
            } else {
                message
            },
        },
        Interrupt::Behind => SdkError::Closed,
        Interrupt::Failed(e) => e,
    }
}

/// How one request on the current socket ended, short of an answer.
enum RequestError {
    /// Answered with an error frame other than expiry: not applied.
    Refused(SdkError),
    /// Answered "token expired": not applied.
    Expired(String),
    /// No answer: the socket closed or failed.
    Interrupted(Interrupt),
}

/// Whether an error frame says the token expired (`unauthorized` + "expired" on old servers).
fn is_expiry(frame: &Value) -> bool {
    frame["code"] == TOKEN_EXPIRED
        || (frame["code"] == "unauthorized"
            && frame["message"]
                .as_str()
                .is_some_and(|m| m.contains("expired")))
}

fn frame_error(frame: &Value) -> SdkError {
    SdkError::Frame {
        code: frame["code"].as_str().unwrap_or("error").to_owned(),
        message: frame["message"].as_str().unwrap_or_default().to_owned(),
    }
}
