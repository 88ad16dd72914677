//! Sessions become traces: when a session is closed, or has been idle for a while, its
//! events are read from the log, turned into OpenTelemetry GenAI spans
//! ([`agentwire_trace`]) and written to the [`TraceArchive`] as gzip JSON lines.
//!
//! On AWS the archiver runs on the session table's DynamoDB Stream (closes, and activity
//! it remembers in an [`ActivityIndex`]) and on an EventBridge schedule (the idle sweep).

mod archiver;
mod dir;
mod events;
mod ports;

pub use archiver::{Archived, Archiver, Report};
pub use dir::DirTraceArchive;
pub use events::{ArchiverEvent, SessionChange, changes_of};
pub use ports::{ActivityIndex, ArchiveError, TraceArchive};
