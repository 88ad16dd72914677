//! The [`Agent`] port over the session service: an item's input goes into a fresh session
//! as a user's message, exactly as a person's would (so dispatch wakes whatever agent
//! serves the session's name), the reply is followed live, and the session is archived
//! as its trace.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use agentwire_archive::Archiver;
use agentwire_session::events::{Envelope, EventType};
use agentwire_session::{
    AppendError, AppendRequest, CreateError, CreateStream, Expiry, Mode, Offset, Payload,
    ReadError, ReadFrom, Sessions, events_of,
};
use async_trait::async_trait;
use bytes::Bytes;

use crate::dataset::InputMessage;
use crate::runner::{Agent, Answer, AskError, Asked};

/// The user an eval's questions come from, in the session's events.
pub const EVAL_USER: &str = "agentwire-eval";

/// How much a follow reads at once.
const READ_BYTES: usize = 256 * 1024;

/// Asks through `sessions` and archives with `archiver`.
pub struct SessionAgent {
    sessions: Sessions,
    archiver: Arc<Archiver>,
}

impl SessionAgent {
    pub fn new(sessions: Sessions, archiver: Arc<Archiver>) -> SessionAgent {
        SessionAgent { sessions, archiver }
    }

    /// Creates the session and posts the input, unless an earlier attempt did: then the
    /// offset its question was at. Returns where to follow from.
    async fn post(&self, stored: &str, input: &[InputMessage]) -> Result<Offset, AskError> {
        let created = self
            .sessions
            .create(CreateStream {
                name: stored.to_owned(),
                content_type: Some("application/json".into()),
                expiry: Expiry::Never,
                closed: false,
                fork: None,
                body: Bytes::new(),
            })
            .await;
        match created {
            Ok(created) if created.created => {}
            // An interrupted attempt made it: its question is there if its tail moved.
            Ok(_) => {
                let info = self
                    .sessions
                    .head(stored)
                    .await
                    .map_err(read_error(stored))?;
                if info.tail > Offset::ZERO {
                    return Ok(Offset::ZERO);
                }
            }
            Err(CreateError::ConfigMismatch { .. }) => {
                return Err(AskError::Unusable(format!(
                    "session {stored} exists and is not a JSON session: use another pattern"
                )));
            }
            Err(CreateError::Storage(e)) => {
                return Err(AskError::Storage(format!(
                    "cannot create session {stored}: {e}"
                )));
            }
            Err(e) => {
                return Err(AskError::Unusable(format!(
                    "cannot create session {stored}: {e}"
                )));
            }
        }
        let mut events = Vec::new();
        for (i, message) in input.iter().enumerate() {
            let id = message_id(i);
            match message.role.as_str() {
                "user" => events.extend(Envelope::user_message(
                    &id,
                    EVAL_USER,
                    message.content.clone(),
                )),
                role => events.extend([
                    Envelope::message_start(&id, role).with_agent("eval-history"),
                    Envelope::message_delta(&id, message.content.clone())
                        .with_agent("eval-history"),
                    Envelope::message_end(&id).with_agent("eval-history"),
                ]),
            }
        }
        let body = serde_json::to_vec(&events.iter().map(Envelope::to_value).collect::<Vec<_>>())
            .map_err(|e| AskError::Unusable(e.to_string()))?;
        let payload = Payload::frame(Mode::Json, Bytes::from(body), false)
            .map_err(|e| AskError::Unusable(e.to_string()))?;
        self.sessions
            .append(
                stored,
                AppendRequest {
                    content_type: Some("application/json".into()),
                    payload,
                    close: false,
                    stream_seq: None,
                    producer: None,
                },
            )
            .await
            .map_err(|e| match e {
                AppendError::Storage(e) => {
                    AskError::Storage(format!("cannot post the question to {stored}: {e}"))
                }
                e => AskError::Unusable(format!("cannot post the question to {stored}: {e}")),
            })?;
        Ok(Offset::ZERO)
    }

    /// Follows the session until a reply has ended and none is open, or `deadline`.
    async fn follow(
        &self,
        stored: &str,
        from: Offset,
        input: usize,
        deadline: Instant,
    ) -> Result<Answer, AskError> {
        let ours: HashSet<String> = (0..input).map(message_id).collect();
        let mut at = from;
        let (mut open, mut ended) = (HashSet::<String>::new(), 0usize);
        let mut agent_seen = false;
        let mut failure = None;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(Answer::TimedOut { agent_seen });
            }
            let batch = self
                .sessions
                .read_live(
                    stored,
                    ReadFrom::At(at),
                    READ_BYTES,
                    left.min(Duration::from_secs(20)),
                )
                .await
                .map_err(read_error(stored))?;
            for event in events_of(&batch) {
                let Ok(envelope) = Envelope::parse(&event.json) else {
                    continue;
                };
                if envelope.is_from_user()
                    || envelope.id.as_ref().is_some_and(|id| ours.contains(id))
                {
                    continue;
                }
                agent_seen = true;
                let Some(id) = envelope.id.clone() else {
                    continue;
                };
                match envelope.kind {
                    EventType::MessageStart => {
                        open.insert(id);
                    }
                    EventType::MessageEnd if open.remove(&id) => {
                        ended += 1;
                        failure = if envelope.is_stopped() {
                            Some("the reply was stopped".to_owned())
                        } else {
                            envelope
                                .data
                                .as_ref()
                                .and_then(|d| d.get("error"))
                                .map(|e| format!("the reply failed: {}", short(e)))
                        };
                    }
                    _ => {}
                }
            }
            at = batch.next;
            if ended > 0 && open.is_empty() {
                return Ok(match failure {
                    Some(reason) => Answer::Failed(reason),
                    None => Answer::Answered,
                });
            }
            if batch.info.closed && batch.up_to_date() {
                return Ok(Answer::Failed(
                    "the session was closed before a reply ended".into(),
                ));
            }
        }
    }
}

fn read_error(stored: &str) -> impl Fn(ReadError) -> AskError + '_ {
    move |e| match e {
        ReadError::Storage(e) => AskError::Storage(format!("cannot read {stored}: {e}")),
        e => AskError::Unusable(format!("cannot read {stored}: {e}")),
    }
}

/// The id of the input's message `i` in the session.
fn message_id(i: usize) -> String {
    format!("eval_{i}")
}

/// An error value in a line: a string as is, else its JSON, at most 200 characters.
fn short(value: &serde_json::Value) -> String {
    let text = match value.as_str() {
        Some(s) => s.to_owned(),
        None => value.to_string(),
    };
    text.chars().take(200).collect()
}

#[async_trait]
impl Agent for SessionAgent {
    async fn ask(
        &self,
        tenant: &str,
        session: &str,
        input: &[InputMessage],
        timeout: Duration,
    ) -> Result<Asked, AskError> {
        let stored = agentwire_auth::stored_name(tenant, session);
        let started = Instant::now();
        let from = self.post(&stored, input).await?;
        let answer = self
            .follow(&stored, from, input.len(), started + timeout)
            .await?;
        let latency_ms = (answer == Answer::Answered).then(|| started.elapsed().as_millis() as u64);
        let archived = self
            .archiver
            .archive(&stored)
            .await
            .map_err(|e| AskError::Storage(format!("cannot archive {session}: {e}")))?;
        Ok(Asked {
            answer,
            trace_key: archived.map(|a| a.key),
            latency_ms,
        })
    }
}
