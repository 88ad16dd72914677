//! The agent side: appending to a session exactly once, streaming replies, and control.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use agentwire_session::Offset;
use agentwire_session::events::{ControlKind, Envelope, ROLE_ASSISTANT};
use reqwest::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::{broadcast, mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::{Instant, sleep, sleep_until};
use tracing::{debug, warn};

use crate::client::{Client, next_offset, refuse_unless_ok};
use crate::error::SdkError;

/// A control event an agent must act on.
#[derive(Debug, Clone, PartialEq)]
pub struct ControlEvent {
    /// Where the control event sits in the session.
    pub offset: Offset,
    /// `cancel`, `steer`, `pause`, `resume`, or a kind appended over HTTP.
    pub kind: ControlKind,
    /// Its `data` (`null` when it has none).
    pub data: Value,
}

impl ControlEvent {
    /// The control in a raw event read from the session; None for anything else.
    fn from_event(offset: Offset, event: Value) -> Option<ControlEvent> {
        let envelope = Envelope::from_value(event).ok()?;
        Some(ControlEvent {
            offset,
            kind: envelope.control_kind()?,
            data: envelope.data.unwrap_or(Value::Null),
        })
    }

    /// The id of the message a cancel targets (`data.message_id`); None means all.
    fn target(&self) -> Option<&str> {
        self.data.get("message_id").and_then(Value::as_str)
    }
}

/// The body of a `200` append response: control that arrived since the agent last looked.
#[derive(Deserialize)]
struct ControlSince {
    #[serde(default)]
    control: Vec<ControlItem>,
}

/// Fields as plain values: a malformed item is skipped, not an error after the append.
#[derive(Deserialize)]
struct ControlItem {
    offset: Value,
    event: Value,
}

/// How token deltas are coalesced into appends: one append (one storage write, one push
/// per subscriber) carries everything produced within `linger`, or `max_bytes` of text.
#[derive(Debug, Clone, Copy)]
pub struct Coalesce {
    pub linger: Duration,
    pub max_bytes: usize,
}

impl Default for Coalesce {
    /// 100 ms: smooth enough to read, and at 50 tokens/s about five tokens per append,
    /// which is what keeps the cost per streamed token low.
    fn default() -> Coalesce {
        Coalesce {
            linger: Duration::from_millis(100),
            max_bytes: 8 * 1024,
        }
    }
}

/// Retries of one append on network errors and 5xx (the producer headers make them safe).
const RETRIES: u32 = 8;

struct Producer {
    id: String,
    epoch: u64,
    seq: u64,
    /// Everything before this offset has been seen (for control scanning).
    seen: Offset,
}

struct Shared {
    client: Client,
    name: String,
    controls: broadcast::Sender<ControlEvent>,
    published: Mutex<HashSet<Offset>>,
}

impl Shared {
    /// Publishes a control event once, whichever path brought it first.
    fn publish(&self, control: ControlEvent) {
        let fresh = self
            .published
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(control.offset);
        if fresh {
            debug!(kind = %control.kind, offset = %control.offset, "control received");
            let _ = self.controls.send(control);
        }
    }
}

/// An agent's handle on a session. Clones share the producer; [`Session::sub_agent`]
/// makes a handle with its own producer and `agent` path.
#[derive(Clone)]
pub struct Session {
    shared: Arc<Shared>,
    agent: Option<String>,
    parent: Option<String>,
    producer: Arc<tokio::sync::Mutex<Producer>>,
}

/// Where an append landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    /// The session's tail after the append.
    pub tail: Offset,
}

impl Producer {
    /// After an append whose fate is unknown (retries spent): the server may have applied
    /// it, so its sequence number is never reused for other events (the server would take
    /// them for its duplicate and drop them); a new producer starts afresh.
    fn rotate(&mut self) {
        self.id = producer_id();
        self.seq = 0;
    }
}

fn producer_id() -> String {
    format!("sdk-{:016x}", fastrand::u64(..))
}

impl Client {
    /// Opens (creating if needed) a JSON session for an agent.
    pub async fn open(&self, session: &str) -> Result<Session, SdkError> {
        let tail = self.ensure(session).await?;
        Ok(Session::at(self, session, tail))
    }
}

impl Session {
    /// A handle on `session` whose tail is known to be `tail`.
    pub(crate) fn at(client: &Client, session: &str, tail: Offset) -> Session {
        let (controls, _) = broadcast::channel(64);
        Session {
            shared: Arc::new(Shared {
                client: client.clone(),
                name: session.to_owned(),
                controls,
                published: Mutex::default(),
            }),
            agent: None,
            parent: None,
            producer: Arc::new(tokio::sync::Mutex::new(Producer {
                id: producer_id(),
                epoch: 0,
                seq: 0,
                seen: tail,
            })),
        }
    }
}

impl Session {
    /// The session's name.
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// This handle's `agent` path, stamped on its events.
    pub fn agent(&self) -> Option<&str> {
        self.agent.as_deref()
    }

    /// A handle for a sub-agent at `path` (e.g. `planner/search-1`), working for the event
    /// `parent` (e.g. the orchestrator's message id): its events carry both, and it has its
    /// own producer, so sub-agents append concurrently. Control is shared with the parent.
    pub fn sub_agent(&self, path: &str, parent: Option<&str>) -> Session {
        let seen = self.producer.try_lock().map(|p| p.seen).unwrap_or_default();
        Session {
            shared: Arc::clone(&self.shared),
            agent: Some(path.to_owned()),
            parent: parent.map(str::to_owned),
            producer: Arc::new(tokio::sync::Mutex::new(Producer {
                id: producer_id(),
                epoch: 0,
                seq: 0,
                seen,
            })),
        }
    }

    /// The session's tail after this handle's last append (or at open).
    pub async fn position(&self) -> Offset {
        self.producer.lock().await.seen
    }

    /// Control events as they arrive (from append responses and from [`Session::watch_control`]).
    pub fn controls(&self) -> broadcast::Receiver<ControlEvent> {
        self.shared.controls.subscribe()
    }

    /// Appends raw JSON events exactly once (see [`Session::append_envelopes`]); objects
    /// without an `agent` or `parent` get this handle's.
    pub async fn append(&self, mut events: Vec<Value>) -> Result<Appended, SdkError> {
        for event in &mut events {
            let Some(object) = event.as_object_mut() else {
                continue;
            };
            if let Some(agent) = &self.agent {
                object.entry("agent").or_insert_with(|| json!(agent));
            }
            if let Some(parent) = &self.parent {
                object.entry("parent").or_insert_with(|| json!(parent));
            }
        }
        self.append_body(Value::from(events).to_string()).await
    }

    /// Appends events exactly once: retried on network errors with the same producer
    /// sequence, so the server applies it at most once. Events without an `agent` or
    /// `parent` get this handle's. Control events that arrived since this handle's
    /// previous append come back in the response and are published.
    pub async fn append_envelopes(&self, mut events: Vec<Envelope>) -> Result<Appended, SdkError> {
        for event in &mut events {
            // An extra field of the same name (not a string) counts as set, as in `append`.
            if let Some(agent) = &self.agent
                && event.agent.is_none()
                && !event.extra.contains_key("agent")
            {
                event.agent = Some(agent.clone());
            }
            if let Some(parent) = &self.parent
                && event.parent.is_none()
                && !event.extra.contains_key("parent")
            {
                event.parent = Some(parent.clone());
            }
        }
        let body = serde_json::to_string(&events)
            .map_err(|e| SdkError::Protocol(format!("events are not JSON: {e}")))?;
        self.append_body(body).await
    }

    async fn append_body(&self, body: String) -> Result<Appended, SdkError> {
        let mut producer = self.producer.lock().await;
        let client = &self.shared.client;
        let mut attempt = 0;
        let response = loop {
            let request = client
                .http
                .post(client.stream_url(&self.shared.name))
                .header("content-type", "application/json")
                .header("producer-id", &producer.id)
                .header("producer-epoch", producer.epoch.to_string())
                .header("producer-seq", producer.seq.to_string())
                .header("agentwire-control-since", producer.seen.to_string())
                .timeout(Duration::from_secs(30))
                .body(body.clone());
            match client.authorized(request).send().await {
                Ok(response) if !response.status().is_server_error() => break response,
                Ok(response) if attempt >= RETRIES => {
                    producer.rotate();
                    break response;
                }
                Err(e) if attempt >= RETRIES => {
                    producer.rotate();
                    return Err(e.into());
                }
                Ok(response) => {
                    warn!(status = %response.status(), attempt, "append failed; retrying")
                }
                Err(e) => warn!(error = %e, attempt, "append failed; retrying"),
            }
            attempt += 1;
            sleep(Duration::from_millis(25 << attempt.min(6))).await;
        };
        let response = refuse_unless_ok(response).await?;
        let tail = next_offset(&response)?;
        producer.seq += 1;
        producer.seen = tail;
        drop(producer);
        if response.status() == StatusCode::OK
            && response.headers().contains_key("agentwire-control")
        {
            let body: ControlSince = response.json().await?;
            for item in body.control {
                let offset = item.offset.as_str().and_then(|o| Offset::parse(o).ok());
                if let Some(control) = offset.and_then(|o| ControlEvent::from_event(o, item.event))
                {
                    self.shared.publish(control);
                }
            }
        }
        Ok(Appended { tail })
    }

    /// Follows the session live (long-poll) and publishes control events as they are
    /// appended, so an agent learns of a cancel even while it is not appending.
    pub fn watch_control(&self) -> JoinHandle<()> {
        let shared = Arc::clone(&self.shared);
        tokio::spawn(async move {
            let mut at = match shared.client.ensure(&shared.name).await {
                Ok(tail) => tail,
                Err(e) => return warn!(error = %e, "control watch could not start"),
            };
            loop {
                match shared.client.wait(&shared.name, at).await {
                    Ok(page) => {
                        for (offset, event) in page.events {
                            if let Some(control) = ControlEvent::from_event(offset, event) {
                                shared.publish(control);
                            }
                        }
                        at = page.next;
                    }
                    Err(SdkError::Refused { status: 404, .. }) => return,
                    Err(e) => {
                        debug!(error = %e, "control watch retrying");
                        sleep(Duration::from_millis(200)).await;
                    }
                }
            }
        })
    }

    /// Acknowledges control: `cut` is the offset where this agent's output stopped.
    pub async fn ack(&self, control: &ControlEvent, cut: Offset) -> Result<Appended, SdkError> {
        self.append_envelopes(vec![Envelope::control_ack(
            control.offset,
            &control.kind,
            cut,
        )])
        .await
    }

    /// Starts a reply message (`message.start`) and streams its deltas coalesced by
    /// `coalesce`. A `control.cancel` stops it (see [`Reply::cancelled`]).
    pub fn reply(&self, id: &str, parent: Option<&str>, coalesce: Coalesce) -> Reply {
        let (tx, rx) = mpsc::unbounded_channel();
        let cancel = CancelSignal::default();
        let watcher = {
            let (mut controls, cancel, id) = (self.controls(), cancel.clone(), id.to_owned());
            tokio::spawn(async move {
                while let Ok(control) = controls.recv().await {
                    if control.kind == ControlKind::Cancel
                        && control.target().is_none_or(|t| t == id)
                    {
                        cancel.set(control);
                        return;
                    }
                }
            })
        };
        let mut start = Envelope::message_start(id, ROLE_ASSISTANT);
        if let Some(parent) = parent {
            start = start.with_parent(parent);
        }
        let flusher = tokio::spawn(flush(
            self.clone(),
            id.to_owned(),
            start,
            rx,
            coalesce,
            cancel.clone(),
        ));
        Reply {
            id: id.to_owned(),
            tx: Some(tx),
            flusher,
            watcher,
            cancel,
        }
    }
}

/// Set once, when a cancel for the reply arrives. Clone it into a `select!`.
#[derive(Clone, Default)]
pub struct CancelSignal {
    state: Arc<watch::Sender<Option<ControlEvent>>>,
}

impl CancelSignal {
    fn set(&self, control: ControlEvent) {
        self.state.send_if_modified(|state| {
            let first = state.is_none();
            if first {
                *state = Some(control.clone());
            }
            first
        });
    }

    /// The cancel, if one arrived.
    pub fn get(&self) -> Option<ControlEvent> {
        self.state.borrow().clone()
    }

    /// Resolves when a cancel arrives.
    pub async fn cancelled(&self) -> ControlEvent {
        let mut rx = self.state.subscribe();
        loop {
            if let Some(control) = rx.borrow_and_update().clone() {
                return control;
            }
            if rx.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    }
}

/// How a reply ended.
#[derive(Debug, Clone, PartialEq)]
pub struct ReplyOutcome {
    /// The offset after the reply's last delta: where its output stopped.
    pub cut: Offset,
    /// The cancel that stopped it, if one did.
    pub cancelled_by: Option<ControlEvent>,
}

/// A reply being streamed. Dropping it without [`Reply::end`] leaves the message open.
pub struct Reply {
    id: String,
    tx: Option<mpsc::UnboundedSender<String>>,
    flusher: JoinHandle<Result<Offset, SdkError>>,
    watcher: JoinHandle<()>,
    cancel: CancelSignal,
}

impl Reply {
    /// The message id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Queues text; it is appended within the linger time.
    pub fn delta(&self, text: impl Into<String>) {
        if let Some(tx) = &self.tx {
            let _ = tx.send(text.into());
        }
    }

    /// The reply's cancel signal.
    pub fn cancelled(&self) -> CancelSignal {
        self.cancel.clone()
    }

    /// Flushes what is queued (unless cancelled) and appends `message.end`; a cancelled
    /// reply ends with `"stopped": true` and is acknowledged with its cut offset.
    pub async fn end(mut self, session: &Session) -> Result<ReplyOutcome, SdkError> {
        self.tx.take();
        let cut = self
            .flusher
            .await
            .map_err(|e| SdkError::Protocol(format!("reply task failed: {e}")))??;
        self.watcher.abort();
        let cancelled_by = self.cancel.get();
        let events = match &cancelled_by {
            None => vec![Envelope::message_end(&self.id)],
            Some(control) => vec![
                Envelope::message_stopped(&self.id),
                Envelope::control_ack(control.offset, &control.kind, cut),
            ],
        };
        session.append_envelopes(events).await?;
        Ok(ReplyOutcome { cut, cancelled_by })
    }
}

/// Appends `message.start`, then coalesced deltas, until the queue closes or a cancel
/// arrives. An append in flight always completes, so the cut offset is exact.
async fn flush(
    session: Session,
    id: String,
    start: Envelope,
    mut rx: mpsc::UnboundedReceiver<String>,
    coalesce: Coalesce,
    cancel: CancelSignal,
) -> Result<Offset, SdkError> {
    let mut cut = session.append_envelopes(vec![start]).await?.tail;
    'replies: loop {
        let first = tokio::select! {
            biased;
            _ = cancel.cancelled() => break,
            text = rx.recv() => match text {
                Some(text) => text,
                None => break,
            },
        };
        let mut text = first;
        let deadline = Instant::now() + coalesce.linger;
        let mut closed = false;
        while text.len() < coalesce.max_bytes {
            tokio::select! {
                biased;
                _ = cancel.cancelled() => break 'replies,
                more = rx.recv() => match more {
                    Some(more) => text.push_str(&more),
                    None => { closed = true; break; }
                },
                _ = sleep_until(deadline) => break,
            }
        }
        let delta = Envelope::message_delta(&id, text);
        cut = session.append_envelopes(vec![delta]).await?.tail;
        if closed {
            break;
        }
    }
    Ok(cut)
}
