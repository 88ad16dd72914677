//! The parts of the Durable Streams protocol (and agentwire's WebSocket frames) the
//! workloads use: create, append, catch-up and long-poll reads, SSE, subscriptions.

use std::time::Duration;

use anyhow::{Context, bail};
use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use reqwest::{Client, StatusCode, header};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream, connect_async, tungstenite::Message};

/// One server under test.
#[derive(Debug, Clone)]
pub struct Target {
    pub name: String,
    /// Base URL, e.g. `http://127.0.0.1:8787`.
    pub url: String,
    pub token: Option<String>,
    /// Whether it serves agentwire's WebSocket gateway at `/ws`.
    pub websocket: bool,
    /// What an acknowledged append survives, shown in the table.
    pub durability: String,
    /// The server's process, for its CPU time (`/proc/<pid>/stat`).
    pub pid: Option<u32>,
}

impl Target {
    /// `name=url[;ws][;token=T][;durability=text][;pid=N]`
    pub fn parse(spec: &str) -> anyhow::Result<Target> {
        let mut parts = spec.split(';');
        let (name, url) = parts
            .next()
            .and_then(|first| first.split_once('='))
            .context("a target is name=url[;ws][;token=T][;durability=text][;pid=N]")?;
        let mut target = Target {
            name: name.to_owned(),
            url: url.trim_end_matches('/').to_owned(),
            token: None,
            websocket: false,
            durability: "?".to_owned(),
            pid: None,
        };
        for part in parts {
            match part.split_once('=') {
                None if part == "ws" => target.websocket = true,
                Some(("token", token)) => target.token = Some(token.to_owned()),
                Some(("durability", text)) => target.durability = text.to_owned(),
                Some(("pid", pid)) => target.pid = Some(pid.parse().context("pid=N")?),
                _ => bail!("unknown target option {part:?} in {spec:?}"),
            }
        }
        Ok(target)
    }

    pub fn stream_url(&self, name: &str) -> String {
        format!("{}/v1/stream/{name}", self.url)
    }

    /// A client holding at most one connection, so `n` clients are `n` connections.
    pub fn client(&self) -> Client {
        let mut headers = header::HeaderMap::new();
        if let Some(token) = &self.token {
            headers.insert(
                header::AUTHORIZATION,
                format!("Bearer {token}")
                    .parse()
                    .expect("token is a header value"),
            );
        }
        Client::builder()
            .default_headers(headers)
            .pool_max_idle_per_host(1)
            .tcp_nodelay(true)
            .timeout(Duration::from_secs(60))
            .build()
            .expect("reqwest client")
    }
}

/// A 100-byte JSON message carrying its sequence number.
pub fn message(seq: u64) -> Bytes {
    let head = format!(r#"{{"seq":{seq},"pad":""#);
    let pad = 100 - head.len() - 2;
    Bytes::from(format!(r#"{head}{}"}}"#, "x".repeat(pad)))
}

/// The sequence number of a message written by [`message`] (others, such as presence
/// events, have none).
pub fn seq_of(message: &Value) -> Option<u64> {
    message.get("seq")?.as_u64()
}

pub async fn create(client: &Client, url: &str) -> anyhow::Result<()> {
    let response = client
        .put(url)
        .header(header::CONTENT_TYPE, "application/json")
        .send()
        .await?;
    if !response.status().is_success() {
        bail!("PUT {url}: {}", response.status());
    }
    Ok(())
}

pub async fn append(client: &Client, url: &str, body: Bytes) -> anyhow::Result<()> {
    let response = client
        .post(url)
        .header(header::CONTENT_TYPE, "application/json")
        .body(body)
        .send()
        .await?;
    if !response.status().is_success() {
        bail!("POST {url}: {}", response.status());
    }
    Ok(())
}

/// One read: the messages, the next offset, and whether the reader is at the tail.
pub struct Read {
    pub messages: Vec<Value>,
    pub next: String,
    pub up_to_date: bool,
}

/// A catch-up read (`live: None`) or a long-poll (`Some("long-poll")`); a long-poll that
/// times out returns no messages and the same offset.
pub async fn read(
    client: &Client,
    url: &str,
    offset: &str,
    live: Option<&str>,
) -> anyhow::Result<Read> {
    let mut query = vec![("offset", offset)];
    query.extend(live.map(|mode| ("live", mode)));
    let response = client.get(url).query(&query).send().await?;
    let status = response.status();
    let header_text = |name: &str| {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let next = header_text("stream-next-offset").unwrap_or_else(|| offset.to_owned());
    let up_to_date = header_text("stream-up-to-date").is_some();
    if status == StatusCode::NO_CONTENT {
        return Ok(Read {
            messages: Vec::new(),
            next,
            up_to_date: true,
        });
    }
    if !status.is_success() {
        bail!("GET {url}?offset={offset}: {status}");
    }
    let body = response.bytes().await?;
    let messages = if body.is_empty() {
        Vec::new()
    } else {
        serde_json::from_slice::<Vec<Value>>(&body).context("a JSON stream read is an array")?
    };
    Ok(Read {
        messages,
        next,
        up_to_date,
    })
}

/// An SSE response being read: yields the messages of each `data` event.
pub struct Sse {
    body: reqwest::Response,
    buffer: Vec<u8>,
    /// Where to reconnect: the last `control` event's `streamNextOffset`.
    pub offset: String,
}

impl Sse {
    pub async fn open(client: &Client, url: &str, offset: &str) -> anyhow::Result<Sse> {
        let response = client
            .get(url)
            .query(&[("offset", offset), ("live", "sse")])
            .timeout(Duration::from_secs(3600))
            .send()
            .await?;
        if !response.status().is_success() {
            bail!("GET {url} live=sse: {}", response.status());
        }
        Ok(Sse {
            body: response,
            buffer: Vec::new(),
            offset: offset.to_owned(),
        })
    }

    /// The messages of the next `data` event (control events are skipped); None at the end.
    pub async fn next(&mut self) -> anyhow::Result<Option<Vec<Value>>> {
        loop {
            if let Some(end) = find(&self.buffer, b"\n\n") {
                let event: Vec<u8> = self.buffer.drain(..end + 2).collect();
                let text = std::str::from_utf8(&event)?;
                let mut kind = "message";
                let mut data = String::new();
                for line in text.lines() {
                    if let Some(value) = line.strip_prefix("event:") {
                        kind = value.trim();
                    } else if let Some(value) = line.strip_prefix("data:") {
                        data.push_str(value.strip_prefix(' ').unwrap_or(value));
                        data.push('\n');
                    }
                }
                match kind {
                    "data" if !data.trim().is_empty() => {
                        return Ok(Some(serde_json::from_str(&data)?));
                    }
                    "control" => {
                        let control: Value = serde_json::from_str(&data)?;
                        if let Some(next) = control["streamNextOffset"].as_str() {
                            self.offset = next.to_owned();
                        }
                    }
                    _ => {}
                }
                continue;
            }
            match self.body.chunk().await? {
                // SSE lines may end in CRLF; JSON data never holds a raw CR.
                Some(chunk) => self.buffer.extend(chunk.iter().filter(|&&b| b != b'\r')),
                None => return Ok(None),
            }
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// A WebSocket connection to agentwire's gateway.
pub struct Socket {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
}

impl Socket {
    pub async fn connect(target: &Target) -> anyhow::Result<Socket> {
        let mut url = format!("{}/ws", target.url.replacen("http", "ws", 1));
        if let Some(token) = &target.token {
            url.push_str("?token=");
            url.push_str(token);
        }
        let (ws, _) = tokio::time::timeout(Duration::from_secs(30), connect_async(url))
            .await
            .context("no WebSocket handshake within 30 s")??;
        Ok(Socket { ws })
    }

    /// Subscribes to `session` from `offset` and waits (up to 30 s) for the reply.
    pub async fn subscribe(&mut self, session: &str, offset: &str) -> anyhow::Result<()> {
        let request = json!({"action": "subscribe", "session": session, "offset": offset});
        self.ws.send(Message::text(request.to_string())).await?;
        loop {
            let frame = tokio::time::timeout(Duration::from_secs(30), self.frame())
                .await
                .context("no reply to subscribe within 30 s")??
                .context("closed before subscribed")?;
            match frame["type"].as_str() {
                Some("subscribed") => return Ok(()),
                Some("error") => bail!("subscribe refused: {frame}"),
                _ => {}
            }
        }
    }

    /// The next frame from the server; None once closed.
    pub async fn frame(&mut self) -> anyhow::Result<Option<Value>> {
        while let Some(message) = self.ws.next().await {
            match message? {
                Message::Text(text) => return Ok(Some(serde_json::from_str(&text)?)),
                Message::Close(_) => return Ok(None),
                _ => {}
            }
        }
        Ok(None)
    }

    /// The events of the next `events` frame (other frames are skipped).
    pub async fn events(&mut self) -> anyhow::Result<Option<Vec<Value>>> {
        while let Some(mut frame) = self.frame().await? {
            if frame["type"] == "events" {
                let events = match frame["events"].take() {
                    Value::Array(items) => items,
                    _ => bail!("an events frame without events: {frame}"),
                };
                return Ok(Some(
                    events.into_iter().map(|mut e| e["event"].take()).collect(),
                ));
            }
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_100_bytes_and_carry_their_seq() {
        for seq in [0, 7, 123_456, u64::MAX] {
            let bytes = message(seq);
            assert_eq!(bytes.len(), 100, "{}", String::from_utf8_lossy(&bytes));
            let value: Value = serde_json::from_slice(&bytes).unwrap();
            assert_eq!(seq_of(&value), Some(seq));
        }
    }

    #[test]
    fn target_spec() {
        let t = Target::parse("aw=http://h:1/;ws;token=abc;durability=fsync").unwrap();
        assert_eq!(
            (t.name.as_str(), t.url.as_str(), t.websocket),
            ("aw", "http://h:1", true)
        );
        assert_eq!(t.token.as_deref(), Some("abc"));
        assert_eq!(t.durability, "fsync");
        assert!(Target::parse("aw=http://h;bogus").is_err());
        assert!(Target::parse("http://h").is_err());
    }
}
