//! Fan-out: after an append is durable, push its events to every connection subscribed to
//! the session.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use agentwire_session::{AppendObserver, Appended, Offset, ReadFrom, Sessions, events_of};
use async_trait::async_trait;
use tracing::{debug, warn};

use crate::frames::event_frames;
use crate::ports::{ClientPush, ConnectionRegistry, PushError};
use crate::{client_name, presence};

/// Pushes appended events to subscribers, in offset order per session. Cheap to clone.
#[derive(Clone)]
pub struct Fanout {
    inner: Arc<Inner>,
}

struct Inner {
    registry: Arc<dyn ConnectionRegistry>,
    push: Arc<dyn ClientPush>,
    /// Per session, the offset up to which events were pushed. Deliveries for one session
    /// take turns on it, so concurrent appends are pushed once each, in order.
    cursors: Mutex<HashMap<String, Arc<tokio::sync::Mutex<Option<Offset>>>>>,
    /// Push each append's own events before it is acknowledged (see [`Fanout::inline`]).
    inline: bool,
}

impl Fanout {
    pub fn new(registry: Arc<dyn ConnectionRegistry>, push: Arc<dyn ClientPush>) -> Fanout {
        Fanout {
            inner: Arc::new(Inner {
                registry,
                push,
                cursors: Mutex::default(),
                inline: false,
            }),
        }
    }

    /// For Lambda: each append's events are pushed before the append is acknowledged,
    /// because work left running after a response may never run (the instance freezes).
    /// Instances share no cursor, so each pushes exactly its own append; pushes for
    /// concurrent appends may arrive out of order, which clients fix by offset.
    pub fn inline(registry: Arc<dyn ConnectionRegistry>, push: Arc<dyn ClientPush>) -> Fanout {
        Fanout {
            inner: Arc::new(Inner {
                registry,
                push,
                cursors: Mutex::default(),
                inline: true,
            }),
        }
    }

    fn cursor(&self, session: &str) -> Arc<tokio::sync::Mutex<Option<Offset>>> {
        let mut cursors = self.inner.cursors.lock().unwrap_or_else(|p| p.into_inner());
        cursors.entry(session.to_owned()).or_default().clone()
    }

    /// Pushes everything in `session` from `start` (or from what was already pushed) to
    /// `tail`, and whatever arrived meanwhile.
    pub async fn deliver(&self, sessions: &Sessions, session: &str, start: Offset, tail: Offset) {
        let cursor = self.cursor(session);
        let mut pushed = cursor.lock().await;
        // Once something was pushed, continue from there: that covers appends whose own
        // delivery has not run yet, and skips what an earlier delivery already read.
        let from = match *pushed {
            Some(done) if done >= tail => return,
            Some(done) => done,
            None => start,
        };
        if let Some(at) = self.push_range(sessions, session, from, tail).await {
            *pushed = Some(at.max(pushed.unwrap_or(at)));
        }
    }

    /// Pushes `[from, tail)` of `session` to its subscribers; returns how far it got, or
    /// `None` when the subscribers could not be listed.
    async fn push_range(
        &self,
        sessions: &Sessions,
        session: &str,
        from: Offset,
        tail: Offset,
    ) -> Option<Offset> {
        let subscribers = match self.inner.registry.subscribers(session).await {
            Ok(subscribers) => subscribers,
            Err(e) => {
                warn!(error = %e, "cannot list subscribers; clients will catch up by offset");
                return None;
            }
        };
        if subscribers.is_empty() {
            return Some(tail);
        }
        let mut at = from;
        let mut gone = Vec::new();
        while at < tail {
            let batch = match sessions.read(session, ReadFrom::At(at), 1024 * 1024).await {
                Ok(batch) => batch,
                Err(e) => {
                    debug!(error = %e, "fan-out read failed; subscribers will catch up by offset");
                    break;
                }
            };
            if batch.records.is_empty() {
                break;
            }
            let frames = event_frames(client_name(session), &events_of(&batch));
            for id in &subscribers {
                if gone.contains(id) {
                    continue;
                }
                for frame in &frames {
                    match self.inner.push.post(id, frame.clone()).await {
                        Ok(()) => {}
                        Err(PushError::Gone(_)) => {
                            gone.push(id.clone());
                            break;
                        }
                        Err(e) => {
                            debug!(connection = %id, error = %e, "push failed; the client will catch up by offset");
                            break;
                        }
                    }
                }
            }
            at = batch.next;
        }
        for id in gone {
            // The socket is gone without a $disconnect: forget it as if it had said goodbye.
            if let Ok(Some((connection, followed))) = self.inner.registry.disconnect(&id).await {
                for session in followed {
                    presence::leave(sessions, &session, &connection).await;
                }
            }
        }
        Some(at)
    }
}

#[async_trait]
impl AppendObserver for Fanout {
    /// Pushes in the background (the append is acknowledged without waiting for clients),
    /// or before returning when [`Fanout::inline`].
    async fn appended(&self, sessions: &Sessions, name: &str, appended: &Appended) {
        if self.inner.inline {
            self.push_range(sessions, name, appended.start, appended.tail)
                .await;
            return;
        }
        let (fanout, sessions, name, appended) =
            (self.clone(), sessions.clone(), name.to_owned(), *appended);
        tokio::spawn(async move {
            fanout
                .deliver(&sessions, &name, appended.start, appended.tail)
                .await
        });
    }
}
