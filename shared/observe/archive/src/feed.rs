//! The local twin of the session table's DynamoDB Stream: the session service tells the
//! [`ChangeFeed`] of every durable append, and it hands them to the archiver in batches,
//! as Lambda's event source mapping does (a batching window, retries of a failed batch).

use std::sync::Arc;
use std::time::Duration;

use agentwire_session::{AppendKind, AppendObserver, Appended, Clock, SessionChange, Sessions};
use async_trait::async_trait;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracing::warn;

use crate::Archiver;

/// Attempts of one batch before it is given up (the template's `MaximumRetryAttempts`).
/// A close given up on is not lost: its session was recorded as active first, so the
/// idle sweep archives it.
const ATTEMPTS: u32 = 6;

/// Session changes from appends, delivered to an [`Archiver`] once per batching window.
pub struct ChangeFeed {
    changes: mpsc::UnboundedSender<SessionChange>,
    clock: Arc<dyn Clock>,
    task: JoinHandle<()>,
}

impl ChangeFeed {
    /// Starts delivering to `archiver`: everything that arrived in a `window` is one batch.
    pub fn start(archiver: Arc<Archiver>, window: Duration, clock: Arc<dyn Clock>) -> ChangeFeed {
        let (changes, mut receiver) = mpsc::unbounded_channel();
        let task = tokio::spawn(async move {
            while let Some(first) = receiver.recv().await {
                tokio::time::sleep(window).await;
                let mut batch = vec![first];
                while let Ok(change) = receiver.try_recv() {
                    batch.push(change);
                }
                deliver(&archiver, batch, window).await;
            }
        });
        ChangeFeed {
            changes,
            clock,
            task,
        }
    }

    /// Stops delivering; changes not yet delivered wait for the idle sweep.
    pub fn stop(&self) {
        self.task.abort();
    }
}

impl Drop for ChangeFeed {
    fn drop(&mut self) {
        self.task.abort();
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
    async fn appended(&self, _: &Sessions, name: &str, appended: &Appended) {
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
        // Fails only once the feed has stopped, when the process is shutting down.
        let _ = self.changes.send(change);
    }
}
