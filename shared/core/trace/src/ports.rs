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

    /// Writes `body` at `key` only if no object is there, atomically: `false` (and nothing
    /// written) when one was. What makes a version number or a run id one writer's alone.
    async fn put_new(&self, key: &str, body: Bytes) -> Result<bool, ArchiveError>;

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

/// The spans of the archived object of `session` that holds `trace_id`, or `None` when no
/// object does. `hints_ms` are times the trace is likely archived near (a grade's, a
/// score's): their days (and the days either side) are tried first, then every object of
/// the session, newest day first. An object that does not decode is skipped.
pub async fn find_trace(
    archive: &dyn TraceArchive,
    tenant: &str,
    session: &str,
    trace_id: &str,
    hints_ms: &[i64],
) -> Result<Option<Vec<crate::Span>>, ArchiveError> {
    const DAY_MS: i64 = 86_400_000;
    let mut tried = std::collections::BTreeSet::new();
    for hint in hints_ms {
        for day in [0, -1, 1] {
            let key = crate::object_key(tenant, session, hint.saturating_add(day * DAY_MS));
            if tried.insert(key.clone())
                && let Some(spans) = read_trace(archive, &key, trace_id).await?
            {
                return Ok(Some(spans));
            }
        }
    }
    let mut keys: Vec<String> = archive
        .list("traces/")
        .await?
        .into_iter()
        .filter(|key| {
            crate::ObjectKey::parse(key).is_some_and(|k| k.tenant == tenant && k.session == session)
        })
        .filter(|key| !tried.contains(key))
        .collect();
    keys.reverse();
    for key in keys {
        if let Some(spans) = read_trace(archive, &key, trace_id).await? {
            return Ok(Some(spans));
        }
    }
    Ok(None)
}

async fn read_trace(
    archive: &dyn TraceArchive,
    key: &str,
    trace_id: &str,
) -> Result<Option<Vec<crate::Span>>, ArchiveError> {
    let Some(body) = archive.get(key).await? else {
        return Ok(None);
    };
    // An object that does not decode is no trace of this one's: the next may be.
    let Ok(spans) = crate::decode_jsonl_gz(&body) else {
        return Ok(None);
    };
    Ok(spans
        .iter()
        .any(|s| s.trace_id == trace_id)
        .then_some(spans))
}
