//! The scorer job (docs/ARCHITECTURE.md §9.3): scores a trace when it is written to the
//! archive, and re-scores a whole day on a schedule. On AWS S3 event notifications on
//! `traces/` and an EventBridge schedule invoke it; locally [`ScoringArchive`] tells it of
//! every trace the archiver or OTLP ingest writes, and `agentwire dev` runs the nightly
//! re-score on the same schedule.
//!
//! For a trace at `traces/dt=<day>/tenant=<t>/<session>.jsonl.gz` it writes every code
//! scorer's records to `scores/dt=<day>/tenant=<t>/<session>.jsonl.gz` (gzip JSON lines,
//! replacing what was there) and makes them the trace's code records in the index. The
//! tenant is the key's: an attribute inside a trace never moves its scores to another
//! tenant.

mod codec;
mod configs;
mod trigger;

pub use codec::{RecordsError, decode_records, encode_records};
pub use configs::{CONFIG_TTL, TenantConfigs, config_key, save_version, version_key};
pub use trigger::ScoringArchive;

use std::sync::Arc;
use std::time::Duration;

use agentwire_jobs::{Job, JobError, JobReport, Schedule};
use agentwire_scoring::{ScoreIndex, Source, TraceView};
use agentwire_session::Clock;
use agentwire_trace::{ObjectKey, TraceArchive, TraceError, decode_jsonl_gz};
use async_trait::async_trait;
use bytes::Bytes;
use tracing::{info, warn};

/// How often the re-score runs (the template's schedule).
pub const RESCORE_EVERY: Duration = Duration::from_secs(24 * 60 * 60);

/// Why one trace was not scored. Messages name the key (and line), never trace content.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScoreError {
    #[error("{key}: not a trace key (traces/dt=<day>/tenant=<tenant>/<session>.jsonl.gz)")]
    NotATraceKey { key: String },
    #[error("{key}: no such object")]
    Missing { key: String },
    #[error("{key}: not an archived trace: {reason}")]
    NotATrace { key: String, reason: String },
    #[error("{key}: tenant configuration {config}: {reason}")]
    Config {
        key: String,
        config: String,
        reason: String,
    },
    /// Storage failed; the same call may succeed later.
    #[error("{0}")]
    Storage(String),
}

impl ScoreError {
    /// Storage failures are worth retrying; bad traces and configurations are not.
    pub fn is_retryable(&self) -> bool {
        matches!(self, ScoreError::Storage(_))
    }
}

/// What scoring one trace did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scored {
    pub trace_key: String,
    pub scores_key: String,
    pub records: usize,
}

/// Told of every trace once its code records are stored: how the LLM judge hears of
/// traces (in-process locally, a queue on AWS).
#[async_trait]
pub trait AfterScore: Send + Sync {
    /// `trace_key` was scored. Must not fail the scoring: whatever goes wrong is the
    /// hook's to record.
    async fn scored(&self, trace_key: &str);
}

/// A trace read for scoring: its key, its view (tenant and session from the key), and
/// the tenant's scoring.
pub struct ReadTrace {
    pub key: ObjectKey,
    pub view: TraceView,
    pub scoring: Arc<agentwire_scoring::Scoring>,
}

/// Scores archived traces into the score store and index.
pub struct ScorerJob {
    archive: Arc<dyn TraceArchive>,
    index: Arc<dyn ScoreIndex>,
    configs: TenantConfigs,
    clock: Arc<dyn Clock>,
    after: Option<Arc<dyn AfterScore>>,
}

impl ScorerJob {
    pub fn new(
        archive: Arc<dyn TraceArchive>,
        index: Arc<dyn ScoreIndex>,
        clock: Arc<dyn Clock>,
    ) -> ScorerJob {
        ScorerJob {
            configs: TenantConfigs::new(archive.clone(), clock.clone()),
            archive,
            index,
            clock,
            after: None,
        }
    }

    /// Tells `hook` of every trace scored.
    pub fn with_after(mut self, hook: Arc<dyn AfterScore>) -> ScorerJob {
        self.after = Some(hook);
        self
    }

    /// Scores the trace at `key`: its records replace the trace's code records.
    pub async fn score_key(&self, key: &str) -> Result<Scored, ScoreError> {
        let ReadTrace {
            key: parsed,
            view,
            scoring,
        } = self.read(key).await?;
        let records = scoring.score_view(&view, self.clock.now_ms());
        // The index first: the `scores/` object's event is what tells the judge on AWS,
        // and it reads the code records from the index.
        self.index
            .replace(&parsed.tenant, &view.trace_id, Source::Code, &records)
            .await
            .map_err(|e| ScoreError::Storage(e.to_string()))?;
        let scores_key = parsed.under("scores");
        let body = encode_records(&records).map_err(|e| ScoreError::Storage(e.to_string()))?;
        self.archive
            .put(&scores_key, Bytes::from(body))
            .await
            .map_err(|e| ScoreError::Storage(e.to_string()))?;
        if let Some(after) = &self.after {
            after.scored(key).await;
        }
        Ok(Scored {
            trace_key: key.to_owned(),
            scores_key,
            records: records.len(),
        })
    }

    /// Reads the trace at `key` as the scorers see it, with its tenant's scoring.
    pub async fn read(&self, key: &str) -> Result<ReadTrace, ScoreError> {
        let parsed = ObjectKey::parse(key)
            .filter(|k| k.prefix == "traces")
            .ok_or_else(|| ScoreError::NotATraceKey {
                key: key.to_owned(),
            })?;
        let body = self
            .archive
            .get(key)
            .await
            .map_err(|e| ScoreError::Storage(e.to_string()))?
            .ok_or_else(|| ScoreError::Missing {
                key: key.to_owned(),
            })?;
        let spans = decode_jsonl_gz(&body).map_err(|e| ScoreError::NotATrace {
            key: key.to_owned(),
            reason: without_content(&e),
        })?;
        let scoring = self
            .configs
            .get(&parsed.tenant)
            .await
            .map_err(|e| match e {
                configs::ConfigLoadError::Storage(e) => ScoreError::Storage(e),
                configs::ConfigLoadError::Invalid { config, reason } => ScoreError::Config {
                    key: key.to_owned(),
                    config,
                    reason,
                },
            })?;
        let mut view =
            TraceView::from_spans(&spans, &scoring.config().view_options()).map_err(|e| {
                ScoreError::NotATrace {
                    key: key.to_owned(),
                    reason: e.to_string(),
                }
            })?;
        // The key's tenant, from the token that wrote it, not what the trace says.
        view.tenant = parsed.tenant.clone();
        if view.session == view.trace_id {
            view.session = parsed.session.clone();
        }
        Ok(ReadTrace {
            key: parsed,
            view,
            scoring,
        })
    }

    /// Scores every trace of `day` (`YYYY-MM-DD`). A trace that cannot be scored is
    /// reported and skipped; storage failures stop the run (it is retried whole).
    pub async fn rescore_day(&self, day: &str) -> Result<JobReport, JobError> {
        let keys = self
            .archive
            .list(&format!("traces/dt={day}/"))
            .await
            .map_err(|e| JobError::Retryable(e.to_string()))?;
        let mut report = JobReport::default();
        let (mut scored, mut skipped) = (0usize, 0usize);
        for key in &keys {
            match self.score_key(key).await {
                Ok(done) => {
                    scored += 1;
                    report.details.push(format!(
                        "scored {} ({} records)",
                        done.trace_key, done.records
                    ));
                }
                Err(e) if e.is_retryable() => return Err(JobError::Retryable(e.to_string())),
                Err(e) => {
                    skipped += 1;
                    warn!(error = %e, "trace skipped");
                    report.details.push(format!("skipped: {e}"));
                }
            }
        }
        report.summary = format!("re-scored {scored} traces of {day}, skipped {skipped}");
        Ok(report)
    }
}

/// Why an archive did not decode, without quoting it: JSON errors can quote the input,
/// and a trace's input is a user's conversation.
pub fn without_content(error: &TraceError) -> String {
    match error {
        TraceError::Decode { line, source } => format!(
            "line {line}: not a span (JSON {:?} error at column {})",
            source.classify(),
            source.column()
        )
        .to_lowercase(),
        other => other.to_string(),
    }
}

/// The nightly re-score: every trace of the day that just ended (UTC), so late traces,
/// new scorer versions and configuration changes reach the whole day.
pub struct Rescore {
    job: Arc<ScorerJob>,
    every: Duration,
}

impl Rescore {
    pub fn new(job: Arc<ScorerJob>, every: Duration) -> Rescore {
        Rescore { job, every }
    }
}

/// The UTC day before the one `now_ms` falls in, `YYYY-MM-DD`.
pub fn previous_day(now_ms: i64) -> String {
    agentwire_trace::utc_day(now_ms.saturating_sub(24 * 60 * 60 * 1000))
}

#[async_trait]
impl Job for Rescore {
    fn name(&self) -> &'static str {
        "rescore"
    }

    fn about(&self) -> &'static str {
        "re-score every trace of the day that just ended (UTC)"
    }

    fn schedule(&self) -> Schedule {
        Schedule::every(self.every)
    }

    async fn run(&self, now_ms: i64) -> Result<JobReport, JobError> {
        let day = previous_day(now_ms);
        let report = self.job.rescore_day(&day).await?;
        info!(summary = %report.summary, "rescore done");
        Ok(report)
    }
}
