//! The ports traces are archived through: the archive itself, and the index of sessions
//! waiting for their idle archive.

use async_trait::async_trait;
use bytes::Bytes;

/// A failure of the archive's or the index's storage, without user data.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("archive storage: {0}")]
pub struct ArchiveError(pub String);

/// Where traces are kept (S3 on AWS, a directory locally). Keys come from
/// [`crate::object_key`]: `traces/dt=<day>/tenant=<t>/<session>.jsonl.gz`.
#[async_trait]
pub trait TraceArchive: Send + Sync {
    /// Writes (or replaces) the object at `key`; durable once this returns.
    async fn put(&self, key: &str, body: Bytes) -> Result<(), ArchiveError>;

    /// The object at `key`, if there is one.
    async fn get(&self, key: &str) -> Result<Option<Bytes>, ArchiveError>;

    /// The keys of every object whose key starts with `prefix`, in key order (a day's
    /// traces: `traces/dt=2025-06-15/`).
    async fn list(&self, prefix: &str) -> Result<Vec<String>, ArchiveError>;
}

/// Sessions with activity not archived yet, and when each was last active, so an idle
/// sweep finds them without scanning every session.
#[async_trait]
pub trait ActivityIndex: Send + Sync {
    /// Records that `session` (a stored name) was active at `at_ms`; later times win.
    async fn touch(&self, session: &str, at_ms: i64) -> Result<(), ArchiveError>;

    /// Sessions last active before `before_ms`, with that time.
    async fn idle_since(&self, before_ms: i64) -> Result<Vec<(String, i64)>, ArchiveError>;

    /// Forgets `session` if it was not active after `at_ms` (activity since then stays).
    async fn archived(&self, session: &str, at_ms: i64) -> Result<(), ArchiveError>;
}
