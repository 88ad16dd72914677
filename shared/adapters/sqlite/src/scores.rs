//! The [`ScoreIndex`] beside the sessions, in the same SQLite file (`agentwire dev`'s
//! database): one row per score record, keyed by its identity
//! `(tenant, trace_id, source, name, span_id)`, with an index on `(tenant, scored_at_ms, …)`
//! for the newest-first listing. Writes run on their own connection (so they never wait in
//! the log's writer queue); reads on a small pool of reader connections, each in its own
//! WAL snapshot.
//!
//! The whole record is kept as JSON beside the columns filters use; its value is also kept
//! as its IEEE-754 bits, so it reads back exactly (JSON's float parsing is only best-effort).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use agentwire_scoring::{
    IndexError, MAX_PAGE, ScoreFilter, ScoreIndex, ScorePage, ScoreRecord, Source, check_replace,
    check_upsert, decode_cursor, encode_cursor,
};
use async_trait::async_trait;
use rusqlite::{Connection, params};

use crate::pool::{ReadPool, Readers};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS scores (
    tenant       TEXT NOT NULL,
    trace_id     TEXT NOT NULL,
    source       TEXT NOT NULL,
    name         TEXT NOT NULL,
    -- '' when the record is about the whole trace.
    span_id      TEXT NOT NULL,
    scored_at_ms INTEGER NOT NULL,
    -- NULL for NaN (SQLite's REAL has none); value_bits is exact.
    value        REAL,
    value_bits   INTEGER NOT NULL,
    label        TEXT,
    record       TEXT NOT NULL,
    PRIMARY KEY (tenant, trace_id, source, name, span_id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS scores_by_time
    ON scores (tenant, scored_at_ms, trace_id, source, name, span_id);
";

/// Score records indexed per tenant and trace, in SQLite.
pub struct SqliteScoreIndex {
    path: PathBuf,
    writer: Arc<Mutex<Connection>>,
    readers: Arc<Readers>,
}

fn failed(e: impl std::fmt::Display) -> IndexError {
    IndexError::Storage(format!("sqlite: {e}"))
}

/// Where a listing resumes: the last record returned, in the listing's order.
#[derive(Debug, Clone, PartialEq)]
struct Cursor {
    scored_at_ms: i64,
    trace_id: String,
    source: String,
    name: String,
    span_id: String,
}

impl Cursor {
    fn of(record: &ScoreRecord) -> Cursor {
        Cursor {
            scored_at_ms: record.scored_at_ms,
            trace_id: record.trace_id.clone(),
            source: record.source.as_str().to_owned(),
            name: record.name.clone(),
            span_id: record.span_id.clone().unwrap_or_default(),
        }
    }

    fn encode(&self) -> String {
        let json = serde_json::json!([
            self.scored_at_ms,
            self.trace_id,
            self.source,
            self.name,
            self.span_id
        ]);
        encode_cursor(&json)
    }

    fn decode(text: &str) -> Result<Cursor, IndexError> {
        let bad = || IndexError::BadCursor(format!("not a score listing cursor: {text:?}"));
        let (scored_at_ms, trace_id, source, name, span_id): (i64, String, String, String, String) =
            decode_cursor(text).ok_or_else(bad)?;
        Ok(Cursor {
            scored_at_ms,
            trace_id,
            source,
            name,
            span_id,
        })
    }
}

/// A stored row back as its record: the JSON, with the exact value.
fn from_row(json: &str, bits: i64) -> rusqlite::Result<ScoreRecord> {
    let mut record: ScoreRecord = serde_json::from_str(json).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, e.into())
    })?;
    record.value = f64::from_bits(bits as u64);
    Ok(record)
}

impl SqliteScoreIndex {
    /// Opens (or creates) the index in the database at `path` (the session log's file),
    /// with reads on a pool of the default size.
    pub fn open(path: impl AsRef<Path>) -> Result<SqliteScoreIndex, IndexError> {
        SqliteScoreIndex::open_with(
            path,
            ReadPool {
                max_connections: 2,
                ..ReadPool::default()
            },
        )
    }

    /// Opens (or creates) the index at `path`, reading on a pool sized by `pool`.
    pub fn open_with(
        path: impl AsRef<Path>,
        pool: ReadPool,
    ) -> Result<SqliteScoreIndex, IndexError> {
        let path = path.as_ref().to_path_buf();
        let conn = crate::pool::open_writer(&path, SCHEMA).map_err(failed)?;
        Ok(SqliteScoreIndex {
            path,
            writer: Arc::new(Mutex::new(conn)),
            readers: Readers::start(pool).map_err(failed)?,
        })
    }

    async fn write<T: Send + 'static>(
        &self,
        op: impl FnOnce(&mut Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T, IndexError> {
        let conn = self.writer.clone();
        tokio::task::spawn_blocking(move || {
            let mut conn = conn
                .lock()
                .map_err(|_| failed("the connection's lock is poisoned"))?;
            op(&mut conn).map_err(failed)
        })
        .await
        .map_err(failed)?
    }

    async fn read<T: Send + 'static>(
        &self,
        op: impl FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T, IndexError> {
        let permit = self.readers.acquire().await.map_err(failed)?;
        let readers = Arc::clone(&self.readers);
        let path = self.path.clone();
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            let conn = match readers.take() {
                Some(conn) => conn,
                None => {
                    let conn = Connection::open(&path).map_err(failed)?;
                    crate::schema::open_reader(&conn).map_err(failed)?;
                    readers.track(conn)
                }
            };
            let result = op(&conn).map_err(failed);
            readers.put_back(conn);
            result
        })
        .await
        .map_err(failed)?
    }
}

/// Writes `rows` (records with their JSON) by key, replacing a row with the same key.
fn insert_rows(
    tx: &rusqlite::Transaction,
    tenant: &str,
    trace_id: &str,
    rows: &[(ScoreRecord, String)],
) -> rusqlite::Result<()> {
    let mut insert = tx.prepare_cached(
        "INSERT OR REPLACE INTO scores
           (tenant, trace_id, source, name, span_id, scored_at_ms, value,
            value_bits, label, record)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
    )?;
    for (r, json) in rows {
        insert.execute(params![
            tenant,
            trace_id,
            r.source.as_str(),
            r.name,
            r.span_id.clone().unwrap_or_default(),
            r.scored_at_ms,
            (!r.value.is_nan()).then_some(r.value),
            r.value.to_bits() as i64,
            r.label,
            json,
        ])?;
    }
    Ok(())
}

#[async_trait]
impl ScoreIndex for SqliteScoreIndex {
    async fn replace(
        &self,
        tenant: &str,
        trace_id: &str,
        source: Source,
        records: &[ScoreRecord],
    ) -> Result<(), IndexError> {
        check_replace(tenant, trace_id, source, records)?;
        let rows = records
            .iter()
            .map(|r| serde_json::to_string(r).map(|json| (r.clone(), json)))
            .collect::<Result<Vec<_>, _>>()
            .map_err(failed)?;
        let (tenant, trace_id) = (tenant.to_owned(), trace_id.to_owned());
        self.write(move |conn| {
            // One transaction: readers see the old records or the new, never a mix.
            let tx = conn.transaction()?;
            tx.execute(
                "DELETE FROM scores WHERE tenant = ?1 AND trace_id = ?2 AND source = ?3",
                params![tenant, trace_id, source.as_str()],
            )?;
            insert_rows(&tx, &tenant, &trace_id, &rows)?;
            tx.commit()
        })
        .await
    }

    async fn upsert(
        &self,
        tenant: &str,
        trace_id: &str,
        records: &[ScoreRecord],
    ) -> Result<(), IndexError> {
        check_upsert(tenant, trace_id, records)?;
        let rows = records
            .iter()
            .map(|r| serde_json::to_string(r).map(|json| (r.clone(), json)))
            .collect::<Result<Vec<_>, _>>()
            .map_err(failed)?;
        let (tenant, trace_id) = (tenant.to_owned(), trace_id.to_owned());
        self.write(move |conn| {
            // One transaction, and no delete: the trace's other records stay as they are.
            let tx = conn.transaction()?;
            insert_rows(&tx, &tenant, &trace_id, &rows)?;
            tx.commit()
        })
        .await
    }

    async fn trace(&self, tenant: &str, trace_id: &str) -> Result<Vec<ScoreRecord>, IndexError> {
        let (tenant, trace_id) = (tenant.to_owned(), trace_id.to_owned());
        let mut records = self
            .read(move |conn| {
                let mut query = conn.prepare_cached(
                    "SELECT record, value_bits FROM scores WHERE tenant = ?1 AND trace_id = ?2",
                )?;
                query
                    .query_map(params![tenant, trace_id], |row| {
                        from_row(&row.get::<_, String>(0)?, row.get(1)?)
                    })?
                    .collect::<rusqlite::Result<Vec<_>>>()
            })
            .await?;
        records
            .sort_by(|a, b| (a.source, &a.name, &a.span_id).cmp(&(b.source, &b.name, &b.span_id)));
        Ok(records)
    }

    async fn list(&self, tenant: &str, filter: &ScoreFilter) -> Result<ScorePage, IndexError> {
        let limit = filter.limit.clamp(1, MAX_PAGE);
        let after = filter.after.as_deref().map(Cursor::decode).transpose()?;
        let (tenant, filter) = (tenant.to_owned(), filter.clone());
        let records = self
            .read(move |conn| {
                // Fetch one more than the page to know whether another follows.
                let mut query = conn.prepare_cached(
                    "SELECT record, value_bits FROM scores
                     WHERE tenant = ?1
                       AND (?2 IS NULL OR name = ?2)
                       AND (?3 IS NULL OR label = ?3)
                       AND (?4 IS NULL OR source = ?4)
                       AND (?5 IS NULL OR scored_at_ms >= ?5)
                       AND (?6 IS NULL OR scored_at_ms < ?6)
                       AND (?7 IS NULL OR value <= ?7)
                       AND (?8 IS NULL
                            OR (scored_at_ms, trace_id, source, name, span_id)
                               < (?8, ?9, ?10, ?11, ?12))
                     ORDER BY scored_at_ms DESC, trace_id DESC, source DESC, name DESC,
                              span_id DESC
                     LIMIT ?13",
                )?;
                let cursor = after.as_ref();
                query
                    .query_map(
                        params![
                            tenant,
                            filter.name,
                            filter.label,
                            filter.source.map(Source::as_str),
                            filter.since_ms,
                            filter.until_ms,
                            filter.max_value,
                            cursor.map(|c| c.scored_at_ms),
                            cursor.map(|c| c.trace_id.as_str()),
                            cursor.map(|c| c.source.as_str()),
                            cursor.map(|c| c.name.as_str()),
                            cursor.map(|c| c.span_id.as_str()),
                            (limit + 1) as i64,
                        ],
                        |row| from_row(&row.get::<_, String>(0)?, row.get(1)?),
                    )?
                    .collect::<rusqlite::Result<Vec<_>>>()
            })
            .await?;
        let mut records = records;
        let next = if records.len() > limit {
            records.truncate(limit);
            records.last().map(|r| Cursor::of(r).encode())
        } else {
            None
        };
        Ok(ScorePage { records, next })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_garbage_is_refused() {
        let cursor = Cursor {
            scored_at_ms: -3,
            trace_id: "t\"1".into(),
            source: "code".into(),
            name: "rules.ü".into(),
            span_id: String::new(),
        };
        assert_eq!(Cursor::decode(&cursor.encode()), Ok(cursor));
        for bad in ["", "zz", "abc", "5b5d", "ünï"] {
            assert!(Cursor::decode(bad).is_err(), "{bad:?}");
        }
    }
}
