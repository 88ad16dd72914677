//! The client side: follow a session live over the WebSocket API.

use std::collections::VecDeque;

use agentwire_session::Offset;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::client::Client;
use crate::error::SdkError;

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// One session followed over a WebSocket: events come out once each, in offset order,
/// whatever the pushes did (duplicates are dropped, gaps and oversized events are fetched
/// over HTTP). Survives reconnects by resuming from [`SessionFeed::next_offset`].
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
}

impl SessionFeed {
    /// Connects and follows `session` from `from` (`-1`, `now`, or an offset).
    pub async fn connect(
        client: &Client,
        session: &str,
        from: &str,
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
        };
        feed.open(from).await?;
        Ok(feed)
    }

    async fn open(&mut self, from: &str) -> Result<(), SdkError> {
        let (socket, _) = tokio_tungstenite::connect_async(self.client.ws_url()).await?;
        self.socket = Some(socket);
        let resuming = from != "-1" && from != "now";
        if !resuming {
            self.early = Some(Vec::new());
        }
        let subscribed = self
            .request(json!({"action": "subscribe", "session": self.session, "offset": from}))
            .await;
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

    /// The next event, in order, exactly once.
    pub async fn next_event(&mut self) -> Result<(Offset, Value), SdkError> {
        loop {
            if let Some(event) = self.ready.pop_front() {
                self.handed = event.0.advance(1);
                return Ok(event);
            }
            let frame = self.receive().await?;
            if !self.absorb(frame.clone()).await? {
                self.replies.push_back(frame);
            }
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
    /// arrive meanwhile are kept in order.
    pub async fn request(&mut self, mut request: Value) -> Result<Value, SdkError> {
        self.request_id += 1;
        let id = self.request_id;
        request["id"] = json!(id);
        self.send_raw(&request.to_string()).await?;
        loop {
            let frame = self.receive().await?;
            if frame.get("id") == Some(&json!(id)) {
                return match frame["type"].as_str() {
                    Some("error") => Err(frame_error(&frame)),
                    _ => Ok(frame),
                };
            }
            if !self.absorb(frame.clone()).await? {
                self.replies.push_back(frame);
            }
        }
    }

    /// Sends a text frame as is (for clients that speak the protocol themselves).
    pub async fn send_raw(&mut self, text: &str) -> Result<(), SdkError> {
        let socket = self.socket.as_mut().ok_or(SdkError::Closed)?;
        socket.send(Message::Text(text.to_owned().into())).await?;
        Ok(())
    }

    /// The next frame that was not an event (replies and errors not claimed by a request).
    pub async fn next_reply(&mut self) -> Result<Value, SdkError> {
        loop {
            if let Some(frame) = self.replies.pop_front() {
                return Ok(frame);
            }
            let frame = self.receive().await?;
            if !self.absorb(frame.clone()).await? {
                return Ok(frame);
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
                Some(Ok(Message::Close(_))) | None => {
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

fn frame_error(frame: &Value) -> SdkError {
    SdkError::Frame {
        code: frame["code"].as_str().unwrap_or("error").to_owned(),
        message: frame["message"].as_str().unwrap_or_default().to_owned(),
    }
}
