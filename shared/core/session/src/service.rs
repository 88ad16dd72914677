//! The session service: the port plus live waiting, shared by every transport.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use tokio::sync::{OnceCell, watch};
use tracing::instrument;

use bytes::Bytes;

use crate::content::{Mode, Payload, json_messages};
use crate::error::{AppendError, CreateError, DeleteError, ReadError};
use crate::events::EventType;
use crate::log::SessionLog;
use crate::model::{
    AppendKind, AppendRequest, Appended, CreateStream, Created, ReadBatch, StreamInfo,
};
use crate::offset::{Offset, ReadFrom};

/// The events of a batch read from a JSON session, each with its offset (empty for
/// sessions of other content types, which have no events).
pub fn events_of(batch: &ReadBatch) -> Vec<Event> {
    if Mode::of(&batch.info.content_type) != Mode::Json {
        return Vec::new();
    }
    let mut events = Vec::new();
    for record in &batch.records {
        for (i, message) in json_messages(&record.data).into_iter().enumerate() {
            events.push(Event {
                offset: record.start.advance(i as u64),
                json: record.data.slice_ref(message),
                at_ms: record.at_ms,
            });
        }
    }
    events
}

/// The events of a JSON payload appended at `start`, each with its offset; their `at_ms`
/// is 0 (unknown): the log decided the commit time.
pub fn payload_events(start: Offset, payload: &Payload) -> Vec<Event> {
    json_messages(&payload.data)
        .into_iter()
        .enumerate()
        .map(|(i, message)| Event {
            offset: start.advance(i as u64),
            json: payload.data.slice_ref(message),
            at_ms: 0,
        })
        .collect()
}

/// How many events before an append [`Sessions::control_between`] looks at, at most.
pub const MAX_CONTROL_SCAN_EVENTS: u64 = 1024;
/// How much event data [`Sessions::control_between`] reads, at most (plus one record).
pub const MAX_CONTROL_SCAN_BYTES: usize = 4 * 1024 * 1024;
/// The size of each read of that scan.
const CONTROL_SCAN_CHUNK: usize = 256 * 1024;

/// Sessions over one [`SessionLog`], with in-process wake-ups for live readers.
#[derive(Clone)]
pub struct Sessions {
    log: Arc<dyn SessionLog>,
    tails: Arc<Tails>,
    stopping: watch::Sender<bool>,
    observers: Vec<Arc<dyn AppendObserver>>,
    /// Re-read live streams this often, for appends made by other processes (Lambda
    /// instances), which in-process wake-ups cannot see.
    poll: Option<Duration>,
}

/// Told of every append that wrote data, once it is durable: how new events reach pushed
/// subscribers. Implementations return quickly (they may hand the work to a task).
#[async_trait::async_trait]
pub trait AppendObserver: Send + Sync {
    /// `name` gained the units `[appended.start, appended.tail)`; `sessions` is the service
    /// it happened in, for reading them (and appending in reaction). `json` is the
    /// append's own payload when the session holds JSON events ([`payload_events`] makes
    /// them events), so telling subscribers needs no read.
    async fn appended(
        &self,
        sessions: &Sessions,
        name: &str,
        appended: &Appended,
        json: Option<&Payload>,
    );

    /// A stream was created (not merely confirmed): `created.info.name` is its stored name.
    async fn created(&self, _sessions: &Sessions, _created: &Created) {}
}

/// One event of a JSON session, with its offset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub offset: Offset,
    /// The event's JSON, as appended.
    pub json: Bytes,
    /// When its append was committed, unix ms ([`crate::Record::at_ms`]; 0 when unknown).
    pub at_ms: i64,
}

impl Sessions {
    /// A service over `log`.
    pub fn new(log: Arc<dyn SessionLog>) -> Sessions {
        Sessions {
            log,
            tails: Arc::default(),
            stopping: watch::Sender::new(false),
            observers: Vec::new(),
            poll: None,
        }
    }

    /// The same service, with live reads also re-reading the log every `interval`: for
    /// deployments where other processes append (one Lambda instance per request).
    pub fn with_poll_interval(mut self, interval: Duration) -> Sessions {
        self.poll = Some(interval);
        self
    }

    /// The same service, also telling `observer` of every durable append (observers are
    /// told in the order they were added).
    pub fn with_observer(mut self, observer: Arc<dyn AppendObserver>) -> Sessions {
        self.observers.push(observer);
        self
    }

    /// Ends every live read now and makes new ones answer at once: the server is stopping.
    pub fn stop_live_reads(&self) {
        self.stopping.send_replace(true);
    }

    /// True once [`Sessions::stop_live_reads`] was called.
    pub fn is_stopping(&self) -> bool {
        *self.stopping.borrow()
    }

    /// Creates a stream (or confirms an identical one).
    #[instrument(skip_all, fields(session = %request.name))]
    pub async fn create(&self, request: CreateStream) -> Result<Created, CreateError> {
        let created = self.log.create(request).await?;
        if created.created {
            for observer in &self.observers {
                observer.created(self, &created).await;
            }
        }
        Ok(created)
    }

    /// Appends, then wakes the stream's live readers.
    #[instrument(skip_all, fields(session = %name))]
    pub async fn append(
        &self,
        name: &str,
        request: AppendRequest,
    ) -> Result<Appended, AppendError> {
        // Kept (a reference count, not a copy) for the observers.
        let json = request.content_type.as_deref().map(Mode::of) == Some(Mode::Json);
        let payload = request.payload.clone();
        let appended = self.log.append(name, request).await?;
        if appended.kind == AppendKind::Written {
            self.tails.wake(name);
            let own = json && appended.tail.0 - appended.start.0 == payload.units;
            for observer in &self.observers {
                observer
                    .appended(self, name, &appended, own.then_some(&payload))
                    .await;
            }
        }
        Ok(appended)
    }

    /// Control events (`control.*` but acks) in `[since, until)` of a JSON session: what an
    /// agent that has seen everything before `since` has not yet acted on.
    ///
    /// Bounded, since an append pays for it: only the last [`MAX_CONTROL_SCAN_EVENTS`]
    /// events before `until` are looked at, and reading stops after about
    /// [`MAX_CONTROL_SCAN_BYTES`] of them. Control older than that is not returned; an
    /// agent that far behind learns of it by following the session.
    #[instrument(skip_all, fields(session = %name))]
    pub async fn control_between(
        &self,
        name: &str,
        since: Offset,
        until: Offset,
    ) -> Result<Vec<Event>, ReadError> {
        let mut found = Vec::new();
        let mut at = since.max(Offset(until.0.saturating_sub(MAX_CONTROL_SCAN_EVENTS)));
        let mut read_bytes = 0;
        while at < until && read_bytes < MAX_CONTROL_SCAN_BYTES {
            let batch = self
                .log
                .read(name, ReadFrom::At(at), CONTROL_SCAN_CHUNK)
                .await?;
            if Mode::of(&batch.info.content_type) != Mode::Json {
                // Byte streams hold no events.
                return Ok(found);
            }
            read_bytes += batch.data_len();
            for event in events_of(&batch) {
                if event.offset >= until {
                    return Ok(found);
                }
                // Only the type is read: this scans every event an agent has not seen.
                if EventType::peek(&event.json).is_some_and(|t| t.is_control_request()) {
                    found.push(event);
                }
            }
            if batch.records.is_empty() || batch.next <= at {
                break;
            }
            at = batch.next;
        }
        Ok(found)
    }

    /// Reads what is there now.
    #[instrument(skip_all, fields(session = %name))]
    pub async fn read(
        &self,
        name: &str,
        from: ReadFrom,
        max_bytes: usize,
    ) -> Result<ReadBatch, ReadError> {
        self.log.read(name, from, max_bytes).await
    }

    /// Reads from `from`, waiting up to `timeout` for data when there is none yet. Returns
    /// an empty batch on timeout, and at once when the stream is closed at that offset.
    #[instrument(skip_all, fields(session = %name))]
    pub async fn read_live(
        &self,
        name: &str,
        from: ReadFrom,
        max_bytes: usize,
        timeout: Duration,
    ) -> Result<ReadBatch, ReadError> {
        let deadline = tokio::time::Instant::now() + timeout;
        // Subscribe before reading, so an append between the read and the wait still wakes us.
        let mut woken = self.tails.watch(name);
        let mut stopping = self.stopping.subscribe();
        let mut batch = self.log.read(name, from, max_bytes).await?;
        let from = ReadFrom::At(batch.from);
        while batch.records.is_empty() && !batch.info.closed && !*stopping.borrow() {
            let poll = self.poll.unwrap_or(timeout);
            tokio::select! {
                woke = tokio::time::timeout_at(deadline, woken.changed()) => match woke {
                    Ok(Ok(())) => {
                        let wake = *woken.borrow_and_update();
                        batch = self.read_after_wake(name, batch.from, max_bytes, wake).await?;
                    }
                    Ok(Err(_)) | Err(_) => break,
                },
                _ = tokio::time::sleep(poll), if self.poll.is_some() => {
                    // HEAD first: it neither writes (a read renews a TTL) nor queries data.
                    let info = self.log.head(name).await?;
                    if info.tail > batch.from || info.closed {
                        batch = self.log.read(name, from, max_bytes).await?;
                    }
                }
                _ = stopping.changed() => break,
            }
        }
        Ok(batch)
    }

    /// A read by live readers woken by wake-up number `wake`: readers at the same offset
    /// share one read of the log (a hundred SSE subscribers woken by an append cost one
    /// query for it, not a hundred). Sharing is safe because the shared read starts after
    /// wake-up `wake` was sent, that is after the append that caused it was durable. Its
    /// error is shared too, so waiters do not retry one after another.
    async fn read_after_wake(
        &self,
        name: &str,
        from: Offset,
        max_bytes: usize,
        wake: u64,
    ) -> Result<ReadBatch, ReadError> {
        let Some(shared) = self.tails.shared_read(
            name,
            SharedKey {
                wake,
                from,
                max_bytes,
            },
        ) else {
            return self.log.read(name, ReadFrom::At(from), max_bytes).await;
        };
        shared
            .get_or_init(|| self.log.read(name, ReadFrom::At(from), max_bytes))
            .await
            .clone()
    }

    /// The stream's metadata.
    #[instrument(skip_all, fields(session = %name))]
    pub async fn head(&self, name: &str) -> Result<StreamInfo, ReadError> {
        self.log.head(name).await
    }

    /// Deletes the stream and wakes its live readers so they see it is gone.
    #[instrument(skip_all, fields(session = %name))]
    pub async fn delete(&self, name: &str) -> Result<(), DeleteError> {
        self.log.delete(name).await?;
        self.tails.wake(name);
        Ok(())
    }
}

/// One watch channel per stream that has live readers; the value only counts wake-ups.
#[derive(Default)]
struct Tails {
    channels: Mutex<HashMap<String, Tail>>,
}

struct Tail {
    wakes: watch::Sender<u64>,
    /// The read live readers woken by the latest wake-up share (see `read_after_wake`);
    /// weak, so the batch is freed with its last reader rather than at the next append.
    shared: Option<(SharedKey, Weak<SharedRead>)>,
}

type SharedRead = OnceCell<Result<ReadBatch, ReadError>>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct SharedKey {
    wake: u64,
    from: Offset,
    max_bytes: usize,
}

impl Tails {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Tail>> {
        self.channels
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn watch(&self, name: &str) -> watch::Receiver<u64> {
        let mut channels = self.lock();
        if channels.len() > 1024 {
            channels.retain(|_, tail| tail.wakes.receiver_count() > 0);
        }
        channels
            .entry(name.to_owned())
            .or_insert_with(|| Tail {
                wakes: watch::channel(0).0,
                shared: None,
            })
            .wakes
            .subscribe()
    }

    fn wake(&self, name: &str) {
        let mut channels = self.lock();
        if let Some(tail) = channels.get_mut(name) {
            if tail.wakes.receiver_count() == 0 {
                channels.remove(name);
            } else {
                tail.shared = None;
                tail.wakes.send_modify(|wakes| *wakes += 1);
            }
        }
    }

    /// The read shared by readers with `key`; None if wake-ups have moved past it.
    fn shared_read(&self, name: &str, key: SharedKey) -> Option<Arc<SharedRead>> {
        let mut channels = self.lock();
        let tail = channels.get_mut(name)?;
        if *tail.wakes.borrow() != key.wake {
            return None;
        }
        let existing = match &tail.shared {
            Some((shared, cell)) if *shared == key => cell.upgrade(),
            _ => None,
        };
        Some(existing.unwrap_or_else(|| {
            let cell = Arc::new(OnceCell::new());
            tail.shared = Some((key, Arc::downgrade(&cell)));
            cell
        }))
    }
}
