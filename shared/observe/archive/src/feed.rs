//! The local twin of the session table's DynamoDB Stream: the session service tells the
//! [`ChangeFeed`] of every durable append, and it hands them to the archiver in batches,
//! as Lambda's event source mapping does (a batching window, retries of a failed batch).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use agentwire_session::{
    AppendKind, AppendObserver, Appended, Clock, Created, Payload, SessionChange, Sessions,
};
use async_trait::async_trait;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tracing::warn;

use crate::Archiver;

/// Attempts of one batch before it is given up (the template's `MaximumRetryAttempts`).
/// A close given up on is not lost: its session was recorded as active first, so the
/// idle sweep archives it.
const ATTEMPTS: u32 = 6;

/// Session changes from creates and appends, delivered to an [`Archiver`] once per
/// batching window.
pub struct ChangeFeed {
    /// `None` once closed: the task then delivers what is queued and ends.
    changes: Mutex<Option<mpsc::UnboundedSender<SessionChange>>>,
    closing: watch::Sender<bool>,
    clock: Arc<dyn Clock>,
    task: Mutex<Option<JoinHandle<()>>>,
}

impl ChangeFeed {
    /// Starts delivering to `archiver`: everything that arrived in a `window` is one batch.
    pub fn start(archiver: Arc<Archiver>, window: Duration, clock: Arc<dyn Clock>) -> ChangeFeed {
        let (changes, mut receiver) = mpsc::unbounded_channel();
        let (closing, mut closed) = watch::channel(false);
        let task = tokio::spawn(async move {
            while let Some(first) = receiver.recv().await {
                // A closing feed delivers at once rather than waiting out the window.
                if !*closed.borrow() {
                    tokio::select! {
                        _ = tokio::time::sleep(window) => {}
                        _ = closed.wait_for(|closed| *closed) => {}
                    }
                }
                let mut batch = vec![first];
                while let Ok(change) = receiver.try_recv() {
                    batch.push(change);
                }
                deliver(&archiver, batch, window).await;
            }
        });
        ChangeFeed {
            changes: Mutex::new(Some(changes)),
            closing,
            clock,
            task: Mutex::new(Some(task)),
        }
    }

    /// Takes no more changes, and waits until every one already told is delivered (or its
    /// batch given up on): call it after the last append, when the process stops.
    pub async fn close(&self) {
        drop(self.changes.lock().map(|mut c| c.take()));
        self.closing.send_replace(true);
        let task = self.task.lock().ok().and_then(|mut t| t.take());
        if let Some(task) = task {
            let _ = task.await;
        }
    }

    fn send(&self, change: SessionChange) {
        let sender = self.changes.lock().ok().and_then(|c| c.clone());
        match sender {
            // Fails only if the task is gone, which `close` alone makes happen.
            Some(sender) => {
                let _ = sender.send(change);
            }
            None => warn!(
                "a session change after the change feed closed; the idle sweep will not see it"
            ),
        }
    }
}

impl Drop for ChangeFeed {
    fn drop(&mut self) {
        if let Some(task) = self.task.get_mut().ok().and_then(Option::take) {
            task.abort();
        }
    }
}

async fn deliver(archiver: &Archiver, batch: Vec<SessionChange>, backoff: Duration) {
    for attempt in 1..=ATTEMPTS {
        match archiver.on_changes(batch.clone()).await {
            Ok(_) => return,
            Err(e) if attempt < ATTEMPTS => {
                warn!(error = %e, attempt, "archiving a batch of session changes failed; retrying");
                tokio::time::sleep(backoff * attempt).await;
            }
            Err(e) => warn!(
                error = %e,
                changes = batch.len(),
                "gave up on a batch of session changes; the idle sweep archives them"
            ),
        }
    }
}

#[async_trait]
impl AppendObserver for ChangeFeed {
    async fn appended(&self, _: &Sessions, name: &str, appended: &Appended, _: Option<&Payload>) {
        if appended.kind != AppendKind::Written {
            return;
        }
        let change = if appended.closed {
            SessionChange::Closed {
                session: name.to_owned(),
            }
        } else {
            SessionChange::Active {
                session: name.to_owned(),
                at_ms: self.clock.now_ms(),
            }
        };
        self.send(change);
    }

    async fn created(&self, _: &Sessions, created: &Created) {
        if !created.created {
            return;
        }
        // As the table's stream tells a new `meta` item: closed at birth, or active.
        let session = created.info.name.clone();
        self.send(if created.info.closed {
            SessionChange::Closed { session }
        } else {
            SessionChange::Active {
                session,
                at_ms: self.clock.now_ms(),
            }
        });
    }
}
