//! Sessions become traces: when a session is closed, or has been idle for a while, its
//! events are read from the log, turned into OpenTelemetry GenAI spans
//! ([`agentwire_trace`]) and written to the [`TraceArchive`] as gzip JSON lines.
//!
//! The [`Archiver`] is told of [`SessionChange`]s (closes at once; activity it remembers
//! in an [`ActivityIndex`]) and is a [`Job`](agentwire_jobs::Job) whose run is the idle
//! sweep. On AWS the changes come from the session table's DynamoDB Stream and the sweep
//! from an EventBridge schedule; under `agentwire dev`, from the session service's append
//! observer ([`ChangeFeed`]) and the local scheduler.

mod archiver;
mod feed;

pub use agentwire_session::SessionChange;
pub use agentwire_trace::{ActivityIndex, ArchiveError, TraceArchive};
pub use archiver::{Archived, Archiver, Report, SWEEP_EVERY, job_error};
pub use feed::ChangeFeed;
