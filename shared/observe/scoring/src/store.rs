//! The port score records are indexed through (SQLite locally, DynamoDB on AWS), so a
//! trace's scores and a filtered listing are one query away. The records themselves are
//! also written as gzip JSON lines under `scores/` for DuckDB and Athena.

use async_trait::async_trait;

use crate::record::{ScoreRecord, Source};

/// Why the index could not answer, without user data.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IndexError {
    /// Its storage failed; the same call may succeed later.
    #[error("score index: {0}")]
    Storage(String),
    /// [`ScoreFilter::after`] is not a cursor this index gave out: the caller's mistake.
    #[error("{0}")]
    BadCursor(String),
    /// [`ScoreIndex::replace`] or [`ScoreIndex::upsert`] was given a record of another
    /// tenant, trace (or, for `replace`, source).
    #[error("{0}")]
    Mismatch(String),
}

/// Checks that every record given to [`ScoreIndex::replace`] is of that tenant, trace and
/// source: a record filed under another trace's key would be read as that trace's.
pub fn check_replace(
    tenant: &str,
    trace_id: &str,
    source: Source,
    records: &[ScoreRecord],
) -> Result<(), IndexError> {
    match records
        .iter()
        .find(|r| r.tenant != tenant || r.trace_id != trace_id || r.source != source)
    {
        Some(stray) => Err(IndexError::Mismatch(format!(
            "a record of {}/{} ({}) given to replace {tenant}/{trace_id} ({})",
            stray.tenant,
            stray.trace_id,
            stray.source.as_str(),
            source.as_str()
        ))),
        None => Ok(()),
    }
}

/// Checks that every record given to [`ScoreIndex::upsert`] is of that tenant and trace
/// (any source): a record filed under another trace's key would be read as that trace's.
pub fn check_upsert(
    tenant: &str,
    trace_id: &str,
    records: &[ScoreRecord],
) -> Result<(), IndexError> {
    match records
        .iter()
        .find(|r| r.tenant != tenant || r.trace_id != trace_id)
    {
        Some(stray) => Err(IndexError::Mismatch(format!(
            "a record of {}/{} given to upsert into {tenant}/{trace_id}",
            stray.tenant, stray.trace_id
        ))),
        None => Ok(()),
    }
}

/// A listing position as an opaque cursor: its JSON, hex-encoded (safe in a URL, and
/// nothing a client should read meaning into). Both indexes write their cursors this way.
pub fn encode_cursor<T: serde::Serialize>(position: &T) -> String {
    let json = serde_json::to_vec(position).unwrap_or_default();
    json.iter().map(|b| format!("{b:02x}")).collect()
}

/// The position [`encode_cursor`] wrote, or `None` for text it did not write.
pub fn decode_cursor<T: serde::de::DeserializeOwned>(text: &str) -> Option<T> {
    if !text.len().is_multiple_of(2) || !text.is_ascii() {
        return None;
    }
    let bytes: Vec<u8> = (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).ok())
        .collect::<Option<_>>()?;
    serde_json::from_slice(&bytes).ok()
}

/// Which records a listing returns: all given conditions hold.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ScoreFilter {
    pub name: Option<String>,
    pub label: Option<String>,
    pub source: Option<Source>,
    /// Scored at or after, unix ms.
    pub since_ms: Option<i64>,
    /// Scored before, unix ms.
    pub until_ms: Option<i64>,
    /// Value at most this (the failing end of a score).
    pub max_value: Option<f64>,
    /// At most this many records (the index may cap it).
    pub limit: usize,
    /// Resume after this cursor, from a previous page's `next`.
    pub after: Option<String>,
}

/// One page of a listing, newest first.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ScorePage {
    pub records: Vec<ScoreRecord>,
    /// Pass as [`ScoreFilter::after`] for the next page; `None` on the last.
    pub next: Option<String>,
}

/// The most records one listing page returns, whatever the filter asks.
pub const MAX_PAGE: usize = 1000;

/// Score records indexed per tenant and trace.
#[async_trait]
pub trait ScoreIndex: Send + Sync {
    /// Makes `records` the records of `source` for the trace: those of that source the
    /// trace had before are replaced (re-scoring never duplicates). Every record must
    /// belong to `tenant` and `trace_id`.
    async fn replace(
        &self,
        tenant: &str,
        trace_id: &str,
        source: Source,
        records: &[ScoreRecord],
    ) -> Result<(), IndexError>;

    /// Writes each of `records` by its key (tenant, trace, source, name, span): a record
    /// with the same key is replaced, every other record of the trace is left as it is (so
    /// two writers adding different names never undo each other, unlike `replace`). Every
    /// record must belong to `tenant` and `trace_id`, else [`IndexError::Mismatch`] and
    /// nothing is written. Records with one key given twice: the last one wins.
    async fn upsert(
        &self,
        tenant: &str,
        trace_id: &str,
        records: &[ScoreRecord],
    ) -> Result<(), IndexError>;

    /// The trace's records, every source, ordered by source, name and span.
    async fn trace(&self, tenant: &str, trace_id: &str) -> Result<Vec<ScoreRecord>, IndexError>;

    /// The tenant's records that match `filter`, newest first.
    async fn list(&self, tenant: &str, filter: &ScoreFilter) -> Result<ScorePage, IndexError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(tenant: &str, trace_id: &str, source: Source) -> ScoreRecord {
        ScoreRecord {
            trace_id: trace_id.into(),
            span_id: None,
            session: "s".into(),
            tenant: tenant.into(),
            name: "n".into(),
            value: 1.0,
            label: None,
            source,
            explanation: None,
            evidence: Vec::new(),
            scorer: "n".into(),
            scorer_version: "1".into(),
            trace_digest: "d".into(),
            scored_at_ms: 0,
            usage: None,
        }
    }

    #[test]
    fn only_the_traces_own_records_may_replace_its_records() {
        let own = record("acme", "t1", Source::Code);
        assert_eq!(
            check_replace("acme", "t1", Source::Code, std::slice::from_ref(&own)),
            Ok(())
        );
        assert_eq!(check_replace("acme", "t1", Source::Code, &[]), Ok(()));
        for stray in [
            record("globex", "t1", Source::Code),
            record("acme", "t2", Source::Code),
            record("acme", "t1", Source::Human),
        ] {
            let error = check_replace("acme", "t1", Source::Code, &[own.clone(), stray]);
            assert!(matches!(error, Err(IndexError::Mismatch(_))), "{error:?}");
        }
    }

    #[test]
    fn only_the_traces_own_records_may_be_upserted_whatever_their_source() {
        let code = record("acme", "t1", Source::Code);
        let human = record("acme", "t1", Source::Human);
        assert_eq!(check_upsert("acme", "t1", &[code.clone(), human]), Ok(()));
        assert_eq!(check_upsert("acme", "t1", &[]), Ok(()));
        for stray in [
            record("globex", "t1", Source::Code),
            record("acme", "t2", Source::Code),
        ] {
            let error = check_upsert("acme", "t1", &[code.clone(), stray]);
            assert!(matches!(error, Err(IndexError::Mismatch(_))), "{error:?}");
        }
    }
}
