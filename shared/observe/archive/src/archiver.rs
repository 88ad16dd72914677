//! The archiver: reads a session, writes its trace.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use agentwire_auth::split_stored_name;
use agentwire_session::{Clock, Mode, ReadError, ReadFrom, SessionLog, SystemClock, events_of};
use agentwire_trace::{SessionEvent, TraceContext, build_trace, encode_jsonl_gz, object_key};
use tracing::{info, instrument, warn};

use agentwire_jobs::{Job, JobError, JobReport, Schedule};
use agentwire_session::SessionChange;
use agentwire_trace::{ActivityIndex, ArchiveError, TraceArchive};
use async_trait::async_trait;

/// Reads per round trip while archiving.
const READ_BYTES: usize = 1024 * 1024;
/// How often the idle sweep runs by default (the template's schedule).
pub const SWEEP_EVERY: Duration = Duration::from_secs(15 * 60);

/// One trace written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Archived {
    /// The session's stored (tenant-scoped) name.
    pub session: String,
    pub key: String,
    pub events: usize,
    pub spans: usize,
    pub bytes: usize,
}

/// What one invocation did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Report {
    pub archived: Vec<Archived>,
    /// Sessions whose activity was recorded for a later idle sweep.
    pub touched: usize,
}

/// Archives closed and idle sessions.
pub struct Archiver {
    log: Arc<dyn SessionLog>,
    archive: Arc<dyn TraceArchive>,
    activity: Arc<dyn ActivityIndex>,
    idle: Duration,
    sweep_every: Duration,
    clock: Arc<dyn Clock>,
}

impl Archiver {
    /// Sessions count as idle after `idle` without an append.
    pub fn new(
        log: Arc<dyn SessionLog>,
        archive: Arc<dyn TraceArchive>,
        activity: Arc<dyn ActivityIndex>,
        idle: Duration,
    ) -> Archiver {
        Archiver {
            log,
            archive,
            activity,
            idle,
            sweep_every: SWEEP_EVERY,
            clock: Arc::new(SystemClock),
        }
    }

    /// Sweeps for idle sessions every `every` when run as a job (default 15 minutes).
    pub fn with_sweep_every(mut self, every: Duration) -> Archiver {
        self.sweep_every = every;
        self
    }

    /// Reads time from `clock` instead of the system's.
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Archiver {
        self.clock = clock;
        self
    }

    /// Writes `session`'s trace. `None` when there is nothing to archive: the session is
    /// gone, or it is not a JSON session of events.
    #[instrument(skip(self))]
    pub async fn archive(&self, session: &str) -> Result<Option<Archived>, ArchiveError> {
        let storage = |e: ReadError| ArchiveError(format!("reading {session}: {e}"));
        let mut events = Vec::new();
        let mut from = ReadFrom::Start;
        loop {
            let batch = match self.log.read(session, from, READ_BYTES).await {
                Ok(batch) => batch,
                Err(ReadError::NotFound(_) | ReadError::Gone(_)) => return Ok(None),
                Err(e) => return Err(storage(e)),
            };
            if Mode::of(&batch.info.content_type) != Mode::Json {
                // A byte stream has no events to trace.
                return Ok(None);
            }
            let done = batch.next >= batch.info.tail || batch.records.is_empty();
            events.extend(
                events_of(&batch)
                    .into_iter()
                    .map(|e| (e.offset.to_string(), e.json, e.at_ms)),
            );
            if done {
                break;
            }
            from = ReadFrom::At(batch.next);
        }
        if events.is_empty() {
            return Ok(None);
        }
        let (tenant, name) = split_stored_name(session).unwrap_or(("", session));
        let now = self.clock.now_ms();
        let context = TraceContext {
            tenant,
            session: name,
            archived_at_ms: now,
        };
        let inputs: Vec<SessionEvent<'_>> = events
            .iter()
            // The log's 0 ("unknown") is not a time; the trace builder falls back for it.
            .map(|(offset, json, at_ms)| SessionEvent {
                offset,
                json,
                at_ms: Some(*at_ms).filter(|&ms| ms > 0),
            })
            .collect();
        let spans = build_trace(&context, &inputs);
        let body = encode_jsonl_gz(&spans).map_err(|e| ArchiveError(e.to_string()))?;
        // Partitioned by the day the session started, so archiving it again (after more
        // activity, or a retried batch) replaces the one object instead of adding another.
        let started_ms = spans
            .first()
            .map_or(now, |root| (root.start_time_unix_nano / 1_000_000) as i64);
        let key = object_key(tenant, name, started_ms);
        let archived = Archived {
            session: session.to_owned(),
            key: key.clone(),
            events: events.len(),
            spans: spans.len(),
            bytes: body.len(),
        };
        self.archive.put(&key, body.into()).await?;
        info!(
            key,
            events = archived.events,
            spans = archived.spans,
            "archived"
        );
        Ok(Some(archived))
    }

    /// Acts on a batch of session changes. An error fails the batch, so Lambda retries it;
    /// archiving again replaces the session's one object (its key is fixed). Every
    /// session's activity is recorded before any close is archived, so a close that fails
    /// for good (the batch is dropped after its retries) loses nothing: the idle sweep
    /// archives it and every other session of the batch.
    pub async fn on_changes(&self, changes: Vec<SessionChange>) -> Result<Report, ArchiveError> {
        let mut report = Report::default();
        // One write per session per batch, however many appends it saw.
        let mut active: BTreeMap<String, i64> = BTreeMap::new();
        let mut closed = Vec::new();
        let mut deleted = Vec::new();
        let now = self.clock.now_ms();
        for change in changes {
            match change {
                SessionChange::Active { session, at_ms } => {
                    let latest = active.entry(session).or_insert(at_ms);
                    *latest = (*latest).max(at_ms);
                }
                SessionChange::Closed { session } => {
                    let latest = active.entry(session.clone()).or_insert(now);
                    *latest = (*latest).max(now);
                    if !closed.contains(&session) {
                        closed.push(session);
                    }
                }
                SessionChange::Deleted { session } => {
                    active.remove(&session);
                    closed.retain(|s| *s != session);
                    deleted.push(session);
                }
            }
        }
        for session in &deleted {
            self.activity.archived(session, i64::MAX).await?;
        }
        for (session, at_ms) in &active {
            self.activity.touch(session, *at_ms).await?;
        }
        report.touched = active.keys().filter(|s| !closed.contains(s)).count();
        for session in closed {
            if let Some(archived) = self.archive(&session).await? {
                report.archived.push(archived);
            }
            self.activity.archived(&session, now).await?;
        }
        Ok(report)
    }

    /// Archives every session idle for longer than the configured time, as of `now_ms`.
    pub async fn sweep(&self, now_ms: i64) -> Result<Report, ArchiveError> {
        let before = now_ms - self.idle.as_millis() as i64;
        let mut report = Report::default();
        for (session, at_ms) in self.activity.idle_since(before).await? {
            match self.archive(&session).await {
                Ok(archived) => {
                    report.archived.extend(archived);
                    self.activity.archived(&session, at_ms).await?;
                }
                // One bad session must not hold up the rest; it stays due for next time.
                Err(e) => warn!(error = %e, "cannot archive an idle session"),
            }
        }
        Ok(report)
    }
}

/// Archive storage failures pass: what is due stays due for the next run or retry.
pub fn job_error(e: ArchiveError) -> JobError {
    JobError::Retryable(e.to_string())
}

impl Report {
    /// The report as a job's: one line per trace written.
    pub fn to_job_report(&self) -> JobReport {
        JobReport {
            summary: format!(
                "archived {} session(s), recorded activity of {}",
                self.archived.len(),
                self.touched
            ),
            details: self
                .archived
                .iter()
                .map(|a| {
                    format!(
                        "{} ({} events, {} spans, {} bytes)",
                        a.key, a.events, a.spans, a.bytes
                    )
                })
                .collect(),
        }
    }
}

/// The archiver's scheduled part is the idle sweep; closes reach it as changes.
#[async_trait]
impl Job for Archiver {
    fn name(&self) -> &'static str {
        "archiver"
    }

    fn about(&self) -> &'static str {
        "writes the traces of sessions idle past the idle time (closed ones are archived at once)"
    }

    fn schedule(&self) -> Schedule {
        Schedule::every(self.sweep_every)
    }

    async fn run(&self, now_ms: i64) -> Result<JobReport, JobError> {
        let report = self.sweep(now_ms).await.map_err(job_error)?;
        Ok(report.to_job_report())
    }
}
