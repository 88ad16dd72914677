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
    /// [`ScoreIndex::replace`] was given a record of another tenant, trace or source.
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
}
