//! Fan-out: after an append is durable, push its events to every connection subscribed to
//! the session.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use agentwire_session::{
    AppendObserver, Appended, Clock, Event, Offset, Payload, ReadFrom, Sessions, SystemClock,
    events_of, payload_events,
};
use async_trait::async_trait;
use tracing::{debug, warn};

use crate::frames::event_frames;
use crate::ports::{ClientPush, ConnectionRegistry, PushError, Subscriber};
use crate::{client_name, closing, presence};

/// Forgets a connection whose socket is gone without a `$disconnect`, as if it had said
/// goodbye (its leaves are recorded).
pub(crate) async fn forget(
    sessions: &Sessions,
    registry: &dyn ConnectionRegistry,
    connection_id: &str,
) {
    if let Ok(Some(gone)) = registry.disconnect(connection_id).await {
        presence::disconnected(sessions, &gone).await;
    }
}

/// The offsets `[from, to)` of a session pushed to its subscribers, with no gap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Pushed {
    from: Offset,
    to: Offset,
}

impl Pushed {
    /// The range once `[from, to)` was pushed too. A range below this one that does not
    /// reach it leaves a gap, owned by the deliveries still to come for the appends in
    /// it, so the range stays as it is (those appends are below it and get pushed).
    fn extend(self, from: Offset, to: Offset) -> Pushed {
        if to < self.from {
            return self;
        }
        Pushed {
            from: self.from.min(from),
            to: self.to.max(to),
        }
    }
}

/// Pushes appended events to subscribers, in offset order per session. Cheap to clone.
#[derive(Clone)]
pub struct Fanout {
    inner: Arc<Inner>,
}

struct Inner {
    registry: Arc<dyn ConnectionRegistry>,
    push: Arc<dyn ClientPush>,
    /// Per session, the range of offsets pushed so far. Deliveries for one session take
    /// turns on it, so concurrent appends are pushed once each, in order where they can be.
    cursors: Mutex<HashMap<String, Arc<tokio::sync::Mutex<Option<Pushed>>>>>,
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

    fn cursor(&self, session: &str) -> Arc<tokio::sync::Mutex<Option<Pushed>>> {
        let mut cursors = self.inner.cursors.lock().unwrap_or_else(|p| p.into_inner());
        cursors.entry(session.to_owned()).or_default().clone()
    }

    /// Pushes everything in `session` from `start` (or from what was already pushed) to
    /// `tail`, and whatever arrived meanwhile.
    pub async fn deliver(&self, sessions: &Sessions, session: &str, start: Offset, tail: Offset) {
        let cursor = self.cursor(session);
        let mut pushed = cursor.lock().await;
        // Deliveries run in the order their tasks get the lock, not in offset order: a
        // later append's may come first. Above what was pushed, continue from its end
        // (that covers appends whose own delivery has not run yet); an append below it
        // was not pushed by anyone, so it is pushed now, late (clients order by offset).
        let from = match *pushed {
            None => start,
            Some(range) if start < range.from => start,
            Some(range) if range.to >= tail => return,
            Some(range) => range.to,
        };
        if let Some(at) = self.push_range(sessions, session, (from, tail), None).await {
            *pushed = Some(match *pushed {
                None => Pushed { from, to: at },
                Some(range) => range.extend(from, at),
            });
        }
    }

    /// Pushes `[from, tail)` of `session` to its subscribers: `given`, the events of exactly
    /// that range, or else what a read returns. Returns how far it got, or `None` when the
    /// subscribers could not be listed.
    async fn push_range(
        &self,
        sessions: &Sessions,
        session: &str,
        (from, tail): (Offset, Offset),
        mut given: Option<&[Event]>,
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
        // Connections closed during this delivery (token expired, or behind): no more pushes.
        let mut closed: Vec<String> = Vec::new();
        let mut live = Vec::with_capacity(subscribers.len());
        let now_s = SystemClock.now_ms() / 1000;
        for subscriber in subscribers {
            match self.token_exp(&subscriber).await {
                Some(exp) if exp <= now_s => {
                    // Never a push after expiry: the client learns why and reconnects.
                    if closing::expire(self.inner.push.as_ref(), &subscriber.id, exp, None, None)
                        .await
                        .is_err()
                    {
                        gone.push(subscriber.id);
                    }
                }
                _ => live.push(subscriber.id),
            }
        }
        while at < tail {
            let (frames, next) = match given.take() {
                Some(events) => (event_frames(client_name(session), events), tail),
                None => {
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
                    (
                        event_frames(client_name(session), &events_of(&batch)),
                        batch.next,
                    )
                }
            };
            for id in &live {
                if gone.contains(id) || closed.contains(id) {
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
                            // A skipped frame would be a silent gap: close it so the client
                            // resumes by offset.
                            debug!(connection = %id, error = %e, "push failed: closing as behind");
                            match closing::behind(self.inner.push.as_ref(), id).await {
                                Ok(()) => closed.push(id.clone()),
                                Err(_) => gone.push(id.clone()),
                            }
                            break;
                        }
                    }
                }
            }
            at = next;
        }
        for id in gone {
            forget(sessions, self.inner.registry.as_ref(), &id).await;
        }
        Some(at)
    }

    /// When `subscriber`'s token expires: from the subscription when the registry keeps
    /// it there, else from the connection (`None` if that is unknown).
    async fn token_exp(&self, subscriber: &Subscriber) -> Option<i64> {
        if let Some(exp) = subscriber.token_exp {
            return Some(exp);
        }
        match self.inner.registry.get(&subscriber.id).await {
            Ok(connection) => connection.map(|c| c.claims.exp),
            Err(e) => {
                debug!(error = %e, "cannot look up a subscriber's expiry");
                None
            }
        }
    }
}

#[async_trait]
impl AppendObserver for Fanout {
    /// Pushes in the background (the append is acknowledged without waiting for clients),
    /// or before returning when [`Fanout::inline`].
    async fn appended(
        &self,
        sessions: &Sessions,
        name: &str,
        appended: &Appended,
        json: Option<&Payload>,
    ) {
        if self.inner.inline {
            // The append's own events, without reading back what was just written (on AWS
            // that read is a consistent query per append).
            let events = json.map(|payload| payload_events(appended.start, payload));
            self.push_range(
                sessions,
                name,
                (appended.start, appended.tail),
                events.as_deref(),
            )
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
