//! The local twin of S3's event notifications: an archive that, after each trace it
//! stores, hands the key to the scorer job.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use agentwire_trace::{ArchiveError, TraceArchive};
use async_trait::async_trait;
use bytes::Bytes;
use tokio::sync::{Notify, mpsc};
use tracing::{debug, warn};

use crate::ScorerJob;

/// Stores through the archive it wraps; every successful put under `traces/` is then
/// scored, one at a time, in the order written. A trace that fails to score is logged (by
/// key) and left to the nightly re-score.
pub struct ScoringArchive {
    inner: Arc<dyn TraceArchive>,
    queue: mpsc::UnboundedSender<String>,
    /// The worker's half, until the first put starts it (inside the runtime).
    idle_worker: Mutex<Option<(mpsc::UnboundedReceiver<String>, Arc<ScorerJob>)>>,
    pending: Arc<Pending>,
}

#[derive(Default)]
struct Pending {
    count: AtomicUsize,
    settled: Notify,
}

impl ScoringArchive {
    /// Wraps `inner`; the worker scoring with `job` (which should write through `inner`,
    /// not through this archive) starts on the first put, on that put's runtime.
    pub fn new(inner: Arc<dyn TraceArchive>, job: Arc<ScorerJob>) -> Arc<ScoringArchive> {
        let (queue, keys) = mpsc::unbounded_channel::<String>();
        Arc::new(ScoringArchive {
            inner,
            queue,
            idle_worker: Mutex::new(Some((keys, job))),
            pending: Arc::new(Pending::default()),
        })
    }

    fn start_worker(&self) {
        let taken = self
            .idle_worker
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        let Some((mut keys, job)) = taken else {
            return;
        };
        let pending = self.pending.clone();
        tokio::spawn(async move {
            while let Some(key) = keys.recv().await {
                match job.score_key(&key).await {
                    Ok(done) => debug!(key, records = done.records, "trace scored"),
                    Err(e) => {
                        warn!(error = %e, "trace not scored; the nightly re-score retries it")
                    }
                }
                if pending.count.fetch_sub(1, Ordering::AcqRel) == 1 {
                    pending.settled.notify_waiters();
                }
            }
        });
    }

    /// Waits until every trace stored so far has been scored (or failed to be).
    pub async fn settled(&self) {
        loop {
            let notified = self.pending.settled.notified();
            if self.pending.count.load(Ordering::Acquire) == 0 {
                return;
            }
            notified.await;
        }
    }
}

#[async_trait]
impl TraceArchive for ScoringArchive {
    async fn put(&self, key: &str, body: Bytes) -> Result<(), ArchiveError> {
        self.inner.put(key, body).await?;
        if key.starts_with("traces/") {
            self.start_worker();
            self.pending.count.fetch_add(1, Ordering::AcqRel);
            if self.queue.send(key.to_owned()).is_err() {
                // The worker is gone (the runtime is shutting down): the nightly re-score
                // scores this trace.
                self.pending.count.fetch_sub(1, Ordering::AcqRel);
                warn!(key, "scorer stopped; trace left to the nightly re-score");
            }
        }
        Ok(())
    }

    async fn put_new(&self, key: &str, body: Bytes) -> Result<bool, ArchiveError> {
        // Traces are replaced, never created once: only other objects come this way.
        self.inner.put_new(key, body).await
    }

    async fn get(&self, key: &str) -> Result<Option<Bytes>, ArchiveError> {
        self.inner.get(key).await
    }

    async fn list(&self, prefix: &str) -> Result<Vec<String>, ArchiveError> {
        self.inner.list(prefix).await
    }
}
