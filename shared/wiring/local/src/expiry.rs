//! Freeing expired sessions' space in SQLite, as a job. Only the embedded backend needs
//! it: DynamoDB checks expiry on every read and its TTL deletes the items.

use std::sync::Arc;
use std::time::Duration;

use agentwire_jobs::{Job, JobError, JobReport, Schedule};
use agentwire_sqlite::SqliteSessionLog;
use async_trait::async_trait;

/// Deletes every SQLite session whose TTL or expiry time has passed.
pub struct ExpirySweep {
    log: Arc<SqliteSessionLog>,
    every: Duration,
}

impl ExpirySweep {
    pub fn new(log: Arc<SqliteSessionLog>, every: Duration) -> ExpirySweep {
        ExpirySweep { log, every }
    }
}

#[async_trait]
impl Job for ExpirySweep {
    fn name(&self) -> &'static str {
        "expiry"
    }

    fn about(&self) -> &'static str {
        "frees the space of expired sessions (local only: DynamoDB's TTL does it on AWS)"
    }

    fn schedule(&self) -> Schedule {
        Schedule::every(self.every)
    }

    async fn run(&self, _now_ms: i64) -> Result<JobReport, JobError> {
        // The log's writer reads its own clock, the one its TTLs were set by.
        let expired = self
            .log
            .expire_due()
            .await
            .map_err(|e| JobError::Retryable(e.to_string()))?;
        Ok(JobReport {
            summary: format!("deleted {expired} expired session(s)"),
            details: (expired > 0)
                .then(|| format!("{expired} expired session(s) deleted"))
                .into_iter()
                .collect(),
        })
    }
}
