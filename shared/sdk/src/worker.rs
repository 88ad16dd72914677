//! A pool worker: serves every session whose name matches a pattern, woken by a Durable
//! Streams pull-wake subscription, one lease per session.
//!
//! The workers of a pool share one subscription (`lease_scope: "stream"`, so each session
//! has a lease of its own) and follow its wake stream. On a wake a worker claims that
//! session's lease, reads what arrived since the session's cursor, and hands it to the
//! handler as a [`Job`]; heartbeats keep the lease while the handler writes, and a `done`
//! ack moves the cursor past what was handled. A worker that dies loses its lease when the
//! lease runs out: the server writes `agent.lost` into the session and wakes it again, and
//! another worker answers what is still unanswered ([`Job::unanswered`]).

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use agentwire_session::Offset;
use agentwire_session::events::{Envelope, EventType};
use serde_json::{Value, json};
use tokio::sync::Semaphore;
use tracing::{debug, info, warn};

use crate::agent::Session;
use crate::client::{Client, refuse_unless_ok};
use crate::error::SdkError;

/// What a pool of workers shares, and what this one is called.
#[derive(Debug, Clone)]
pub struct WorkerOptions {
    /// The pool's subscription id (workers of one pool use the same).
    pub subscription: String,
    /// The session names the pool serves (`chat-*`).
    pub pattern: String,
    /// The stream wakes are written to; made if missing.
    pub wake_stream: String,
    /// How long a session's lease lasts without a heartbeat (1 s to 10 min): how soon a
    /// dead worker's session is answered by another.
    pub lease_ttl: Duration,
    /// This worker's name, as claims and `agent.lost` give it.
    pub name: String,
    /// Sessions served at once.
    pub concurrency: usize,
}

impl WorkerOptions {
    /// A pool `subscription` over `pattern`, waking through `wakes/<subscription>`, with
    /// 10 s leases, 16 sessions at a time, and a name unique to this process.
    pub fn new(subscription: &str, pattern: &str) -> WorkerOptions {
        WorkerOptions {
            subscription: subscription.to_owned(),
            pattern: pattern.to_owned(),
            wake_stream: format!("wakes/{subscription}"),
            lease_ttl: Duration::from_secs(10),
            name: format!("worker-{}-{:04x}", std::process::id(), fastrand::u16(..)),
            concurrency: 16,
        }
    }
}

/// A user message, assembled from its events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserMessage {
    pub id: String,
    pub text: String,
}

/// One session's new events, under its lease.
pub struct Job {
    /// The session, with the agent API (replies, control, sub-agents).
    pub session: Session,
    /// What arrived since the session's cursor, with offsets; from the session's start
    /// when a message in it began before the cursor (a user message sent in pieces).
    pub events: Vec<(Offset, Value)>,
    lease: Arc<Lease>,
}

impl Job {
    /// The user messages among [`Job::events`] that ended and have no finished reply: see
    /// [`UserMessages::unanswered`].
    pub fn unanswered(&self) -> Vec<UserMessage> {
        user_messages(&self.events).unanswered
    }

    /// Says which reply this worker is writing, at once: if the worker dies, the
    /// session's `agent.lost` names it.
    pub async fn working_on(&self, reply_id: &str) -> Result<(), SdkError> {
        *self.lease.reply.lock().unwrap_or_else(|p| p.into_inner()) = Some(reply_id.to_owned());
        self.lease.beat().await.map(drop)
    }
}

/// The user messages of a stretch of a session, by what is left to do for them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UserMessages {
    /// Ended and without a finished reply (a `message.start` naming them as `parent`, then
    /// its `message.end`): a reply a lost agent left unfinished is answered again, a
    /// finished one never twice.
    pub unanswered: Vec<UserMessage>,
    /// Started and not ended yet, with their text so far.
    pub open: Vec<UserMessage>,
}

/// Sorts the user messages among `events` (see [`UserMessages`]), in the order they began.
pub fn user_messages(events: &[(Offset, Value)]) -> UserMessages {
    let mut started: Vec<String> = Vec::new();
    let mut texts: HashMap<String, String> = HashMap::new();
    let mut ended: HashSet<String> = HashSet::new();
    let mut replies: HashMap<String, String> = HashMap::new();
    let mut finished: HashSet<String> = HashSet::new();
    for (_, event) in events {
        let Ok(event) = Envelope::from_value(event.clone()) else {
            continue;
        };
        let Some(id) = event.id.clone() else { continue };
        match event.kind {
            EventType::MessageStart if event.is_from_user() => {
                started.push(id.clone());
                texts.insert(id, String::new());
            }
            EventType::MessageStart => {
                if let Some(parent) = event.parent.clone() {
                    replies.insert(id, parent);
                }
            }
            EventType::MessageDelta => {
                if let Some(text) = texts.get_mut(&id) {
                    text.push_str(event.text().unwrap_or_default());
                }
            }
            EventType::MessageEnd if texts.contains_key(&id) => {
                ended.insert(id);
            }
            EventType::MessageEnd if !event.is_from_user() => {
                finished.insert(id);
            }
            _ => {}
        }
    }
    let answered: HashSet<&String> = replies
        .iter()
        .filter(|(reply, _)| finished.contains(*reply))
        .map(|(_, parent)| parent)
        .collect();
    let mut messages = UserMessages::default();
    for id in started {
        let Some(text) = texts.remove(&id) else {
            continue; // started twice: sorted at its first start
        };
        let message = UserMessage { text, id };
        if !ended.contains(&message.id) {
            messages.open.push(message);
        } else if !answered.contains(&message.id) {
            messages.unanswered.push(message);
        }
    }
    messages
}

/// A claimed session's lease.
struct Lease {
    client: Client,
    subscription: String,
    token: String,
    wake_id: String,
    generation: u64,
    reply: Mutex<Option<String>>,
}

impl Lease {
    async fn post(&self, path: &str, body: Value) -> Result<Value, SdkError> {
        let url = self
            .client
            .stream_url(&format!("__ds/subscriptions/{}/{path}", self.subscription));
        let response = self
            .client
            .http
            .post(url)
            .bearer_auth(&self.token)
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await?;
        let response = refuse_unless_ok(response).await?;
        Ok(response.json().await.unwrap_or(Value::Null))
    }

    /// A heartbeat: the lease runs for another TTL.
    async fn beat(&self) -> Result<Value, SdkError> {
        let reply = self.reply.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let mut body = json!({"wake_id": self.wake_id, "generation": self.generation});
        if let Some(reply) = reply {
            body["reply"] = json!(reply);
        }
        self.post("ack", body).await
    }

    /// Gives the lease back without acking: the work is woken again.
    async fn release(&self) -> Result<Value, SdkError> {
        self.post(
            "release",
            json!({"wake_id": self.wake_id, "generation": self.generation}),
        )
        .await
    }

    /// Acks `stream` up to `offset` and gives the lease back.
    async fn done(&self, stream: &str, offset: Offset) -> Result<Value, SdkError> {
        self.post(
            "ack",
            json!({
                "wake_id": self.wake_id,
                "generation": self.generation,
                "acks": [{"stream": stream, "offset": offset.to_string()}],
                "done": true,
            }),
        )
        .await
    }
}

/// A worker of a pool; see the module documentation.
pub struct Worker {
    client: Client,
    options: WorkerOptions,
}

impl Worker {
    /// Makes the wake stream and the pool's subscription if they are missing (the same
    /// configuration re-confirms; another is refused with the server's reason).
    pub async fn start(client: &Client, options: WorkerOptions) -> Result<Worker, SdkError> {
        if options.concurrency == 0 {
            return Err(SdkError::Protocol(
                "a worker serves at least one session".into(),
            ));
        }
        client.ensure(&options.wake_stream).await?;
        let body = json!({
            "type": "pull-wake",
            "pattern": options.pattern,
            "wake_stream": options.wake_stream,
            "lease_ttl_ms": options.lease_ttl.as_millis() as u64,
            "lease_scope": "stream",
            "description": format!("agent pool for {}", options.pattern),
        });
        let url = client.stream_url(&format!("__ds/subscriptions/{}", options.subscription));
        let request = client
            .http
            .put(url)
            .header("content-type", "application/json")
            .body(body.to_string());
        refuse_unless_ok(client.authorized(request).send().await?).await?;
        Ok(Worker {
            client: client.clone(),
            options,
        })
    }

    pub fn name(&self) -> &str {
        &self.options.name
    }

    /// Serves the pool until an error it cannot get past (the wake stream gone, a token
    /// refused): each wake is claimed and, if this worker got the lease, `handler` gets
    /// the session's new events. Wakes that arrive while every slot is busy wait: the
    /// wake stream keeps them, and another worker may claim them first.
    pub async fn run<H, F>(&self, handler: H) -> Result<(), SdkError>
    where
        H: Fn(Job) -> F + Send + Sync + 'static,
        F: Future<Output = Result<(), SdkError>> + Send + 'static,
    {
        let handler = Arc::new(handler);
        let slots = Arc::new(Semaphore::new(self.options.concurrency));
        // Sessions being served here, each with the number of the serve that has it.
        let serving: Arc<Mutex<HashMap<String, u64>>> = Arc::default();
        let mut serves = 0u64;
        let prefix = format!("{}:", self.options.subscription);
        let mut at = self.client.ensure(&self.options.wake_stream).await?;
        info!(worker = %self.options.name, pattern = %self.options.pattern, "worker serving");
        loop {
            let (events, next) = self
                .client
                .wait_events(&self.options.wake_stream, at)
                .await?;
            at = next;
            for (_, event) in events {
                if event["type"] != "wake" {
                    continue;
                }
                let Some(id) = event["subscription_id"].as_str() else {
                    continue;
                };
                if !id.starts_with(&prefix) {
                    continue;
                }
                serves += 1;
                let serve_no = serves;
                {
                    let mut serving = serving.lock().unwrap_or_else(|p| p.into_inner());
                    if serving.contains_key(id) {
                        // Being served here: what it woke for is read before the ack.
                        continue;
                    }
                    serving.insert(id.to_owned(), serve_no);
                }
                let permit = slots
                    .clone()
                    .acquire_owned()
                    .await
                    .map_err(|_| SdkError::Closed)?;
                let (client, handler, serving) =
                    (self.client.clone(), handler.clone(), serving.clone());
                let (id, name, ttl) = (
                    id.to_owned(),
                    self.options.name.clone(),
                    self.options.lease_ttl,
                );
                tokio::spawn(async move {
                    let done = || release(&serving, &id, serve_no);
                    if let Err(e) = serve(&client, &id, &name, ttl, handler, &done).await {
                        warn!(subscription = %id, error = %e, "session not served");
                    }
                    done();
                    drop(permit);
                });
            }
        }
    }
}

/// How long a worker whose handler failed keeps the session before giving it back.
fn retry_pause(ttl: Duration) -> Duration {
    (ttl / 2).min(Duration::from_secs(5))
}

/// Forgets that serve `serve_no` has session `id` (once; a later serve's entry stays).
fn release(serving: &Mutex<HashMap<String, u64>>, id: &str, serve_no: u64) {
    let mut serving = serving.lock().unwrap_or_else(|p| p.into_inner());
    if serving.get(id) == Some(&serve_no) {
        serving.remove(id);
    }
}

/// Whether a message event in `events` belongs to a message that started before them.
fn begins_before(events: &[(Offset, Value)]) -> bool {
    let mut started = HashSet::new();
    for (_, event) in events {
        let (Some(kind), Some(id)) = (event["type"].as_str(), event["id"].as_str()) else {
            continue;
        };
        match kind {
            "message.start" => {
                started.insert(id);
            }
            "message.delta" | "message.end" if !started.contains(id) => return true,
            _ => {}
        }
    }
    false
}

/// Claims `id`'s lease and runs `handler` until the session has nothing new, then acks.
async fn serve<H, F>(
    client: &Client,
    id: &str,
    worker: &str,
    ttl: Duration,
    handler: Arc<H>,
    done_here: &(dyn Fn() + Sync),
) -> Result<(), SdkError>
where
    H: Fn(Job) -> F + Send + Sync + 'static,
    F: Future<Output = Result<(), SdkError>> + Send + 'static,
{
    let url = client.stream_url(&format!("__ds/subscriptions/{id}/claim"));
    let request = client
        .http
        .post(url)
        .header("content-type", "application/json")
        .body(json!({"worker": worker}).to_string());
    let response = client.authorized(request).send().await?;
    if response.status() == reqwest::StatusCode::CONFLICT {
        // Another worker has it, or it was answered already.
        debug!(subscription = %id, "claim lost");
        return Ok(());
    }
    let claim: Value = refuse_unless_ok(response).await?.json().await?;
    let field = |name: &str| {
        claim[name]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| SdkError::Protocol(format!("a claim without {name}")))
    };
    let lease = Arc::new(Lease {
        client: client.clone(),
        subscription: id.to_owned(),
        token: field("token")?,
        wake_id: field("wake_id")?,
        generation: claim["generation"]
            .as_u64()
            .ok_or_else(|| SdkError::Protocol("a claim without generation".into()))?,
        reply: Mutex::new(None),
    });
    let stream = claim["streams"][0]["path"]
        .as_str()
        .ok_or_else(|| SdkError::Protocol("a claim without its stream".into()))?
        .to_owned();
    let mut cursor = Offset::parse(claim["streams"][0]["acked_offset"].as_str().unwrap_or(""))
        .map_err(|e| SdkError::Protocol(format!("a claim's acked_offset: {e}")))?;
    // Heartbeats at a third of the TTL; a fenced one means the lease is gone (it ran
    // out, another worker has the session): stop writing at once.
    // A worker that cannot reach the server stops too, before its lease can have run out
    // (it runs from the server's answer to the last beat, so from after it was sent).
    let (lost_tx, mut lost) = tokio::sync::watch::channel(false);
    let beats = {
        let lease = lease.clone();
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(ttl / 3);
            ticker.tick().await;
            let mut last = tokio::time::Instant::now();
            loop {
                ticker.tick().await;
                let sent = tokio::time::Instant::now();
                match lease.beat().await {
                    Ok(_) => last = sent,
                    // Fenced (409) or deleted (404): the lease is gone.
                    Err(SdkError::Refused { status, .. }) if status == 409 || status == 404 => {
                        warn!(subscription = %lease.subscription, "lease lost");
                        let _ = lost_tx.send(true);
                        return;
                    }
                    Err(e) if last.elapsed() + ttl / 3 >= ttl => {
                        warn!(subscription = %lease.subscription, error = %e, "lease about to run out unrenewed");
                        let _ = lost_tx.send(true);
                        return;
                    }
                    // The next beat may get through in time.
                    Err(e) => {
                        warn!(subscription = %lease.subscription, error = %e, "heartbeat failed")
                    }
                }
            }
        })
    };
    let session = client.open(&stream).await?;
    let outcome = async {
        loop {
            let mut events = Vec::new();
            let mut from = cursor;
            loop {
                let page = client.read(&stream, from).await?;
                events.extend(page.events);
                from = page.next;
                if page.up_to_date {
                    break;
                }
            }
            if events.is_empty() {
                return Ok::<(), SdkError>(());
            }
            if begins_before(&events) {
                // A message whose start is behind the cursor (sent in several appends):
                // the job sees the session from its start, so it is whole.
                let mut whole = Vec::new();
                let mut at = Offset::ZERO;
                while at < cursor {
                    let page = client.read(&stream, at).await?;
                    if page.events.is_empty() {
                        break;
                    }
                    whole.extend(page.events.into_iter().filter(|(o, _)| *o < cursor));
                    at = page.next;
                }
                whole.extend(events);
                events = whole;
            }
            let job = Job {
                session: session.clone(),
                events,
                lease: lease.clone(),
            };
            let mut work = tokio::spawn(handler(job));
            tokio::select! {
                done = &mut work => done.map_err(|e| SdkError::Protocol(format!("handler failed: {e}")))??,
                _ = lost.wait_for(|lost| *lost) => {
                    work.abort();
                    return Err(SdkError::Protocol("the lease ran out mid-work; the session goes to another worker".into()));
                }
            }
            // Read again: what arrived meanwhile (the reply itself, or another message).
            cursor = from;
        }
    }
    .await;
    if let Err(e) = outcome {
        if !*lost.borrow() {
            // The handler failed (a model endpoint down, a bug): this worker is alive, so
            // it gives the session back itself, after a pause that keeps a failure that
            // repeats from spinning (the heartbeats hold the lease meanwhile); the user's
            // message is woken again, for whichever worker claims it.
            warn!(subscription = %id, error = %e, "handler failed; the session is given back");
            tokio::time::sleep(retry_pause(ttl)).await;
            beats.abort();
            done_here();
            lease.release().await?;
        }
        return Err(e);
    }
    beats.abort();
    // The ack wakes the session again if more arrived: that wake is this worker's to
    // take too, so it is no longer "being served" here.
    done_here();
    lease.done(&stream, cursor).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(events: Vec<Value>) -> Job {
        let client = Client::new("http://127.0.0.1:9", None);
        Job {
            session: Session::at(&client, "chat-1", Offset::ZERO),
            events: events
                .into_iter()
                .enumerate()
                .map(|(i, e)| (Offset::ZERO.advance(i as u64), e))
                .collect(),
            lease: Arc::new(Lease {
                client,
                subscription: "pool:00".into(),
                token: String::new(),
                wake_id: String::new(),
                generation: 1,
                reply: Mutex::new(None),
            }),
        }
    }

    fn user(id: &str, text: &str) -> Vec<Value> {
        Envelope::user_message(id, "ann", text)
            .into_iter()
            .map(|e| serde_json::to_value(e).unwrap())
            .collect()
    }

    #[test]
    fn a_message_sent_in_pieces_is_seen_whole() {
        let mut first = user("u1", "in pieces");
        let end = first.pop().unwrap();
        let at = |events: Vec<Value>| -> Vec<(Offset, Value)> {
            events.into_iter().map(|e| (Offset::ZERO, e)).collect()
        };
        assert!(!begins_before(&at(first.clone())));
        assert!(job(first.clone()).unanswered().is_empty(), "not ended yet");
        // The next batch holds only its end: the job must reach back for its start.
        assert!(begins_before(&at(vec![end.clone()])));
        assert!(
            job(vec![end.clone()]).unanswered().is_empty(),
            "a user's end is no reply"
        );
        first.push(end);
        assert_eq!(job(first).unanswered().len(), 1);
    }

    #[test]
    fn a_message_with_a_finished_reply_is_answered_and_an_unfinished_one_is_not() {
        let mut events = user("u1", "first");
        events.extend(user("u2", "second"));
        events.extend(user("u3", "still typing"));
        events.pop(); // u3 has not ended
        events.push(
            json!({"type": "message.start", "id": "r1", "role": "assistant", "parent": "u1"}),
        );
        events.push(json!({"type": "message.end", "id": "r1"}));
        // A lost worker's reply to u2: started, never ended.
        events.push(
            json!({"type": "message.start", "id": "r2", "role": "assistant", "parent": "u2"}),
        );
        events.push(json!({"type": "agent.lost", "id": "r2", "data": {"worker": "w1", "subscription": "pool:00", "generation": 1}}));
        let job = job(events);
        assert_eq!(
            job.unanswered(),
            [UserMessage {
                id: "u2".into(),
                text: "second".into()
            }]
        );
        // u3 goes on: its text so far, for whoever follows the session live.
        assert_eq!(
            user_messages(&job.events).open,
            [UserMessage {
                id: "u3".into(),
                text: "still typing".into()
            }]
        );
    }
}
