//! The archiver's [`ActivityIndex`] beside the sessions, in the same SQLite file: one row
//! per session with appends not yet archived. Written once per session per batch of
//! changes (not per append), on its own connection, so it never waits in the log's
//! writer queue.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use agentwire_trace::{ActivityIndex, ArchiveError};
use async_trait::async_trait;
use rusqlite::{Connection, params};

/// Sessions awaiting their idle archive, in SQLite.
pub struct SqliteActivityIndex {
    conn: Arc<Mutex<Connection>>,
}

fn failed(e: impl std::fmt::Display) -> ArchiveError {
    ArchiveError(format!("sqlite: {e}"))
}

impl SqliteActivityIndex {
    /// Opens (or creates) the index in the database at `path` (the session log's file).
    pub fn open(path: impl AsRef<Path>) -> Result<SqliteActivityIndex, ArchiveError> {
        let conn = Connection::open(path).map_err(failed)?;
        // The log's writer holds the write lock for a group commit at a time: wait for it.
        conn.busy_timeout(Duration::from_secs(10)).map_err(failed)?;
        conn.execute_batch(
            "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;
             CREATE TABLE IF NOT EXISTS activity (
                 session TEXT PRIMARY KEY,
                 at_ms   INTEGER NOT NULL
             ) WITHOUT ROWID;",
        )
        .map_err(failed)?;
        Ok(SqliteActivityIndex {
            conn: Arc::new(Mutex::new(conn)),
        })
    }

    async fn with<T: Send + 'static>(
        &self,
        op: impl FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T, ArchiveError> {
        let conn = self.conn.clone();
        tokio::task::spawn_blocking(move || {
            let conn = conn
                .lock()
                .map_err(|_| failed("the connection's lock is poisoned"))?;
            op(&conn).map_err(failed)
        })
        .await
        .map_err(failed)?
    }
}

#[async_trait]
impl ActivityIndex for SqliteActivityIndex {
    async fn touch(&self, session: &str, at_ms: i64) -> Result<(), ArchiveError> {
        let session = session.to_owned();
        self.with(move |conn| {
            conn.execute(
                "INSERT INTO activity (session, at_ms) VALUES (?1, ?2)
                 ON CONFLICT (session) DO UPDATE SET at_ms = max(at_ms, excluded.at_ms)",
                params![session, at_ms],
            )
            .map(drop)
        })
        .await
    }

    async fn idle_since(&self, before_ms: i64) -> Result<Vec<(String, i64)>, ArchiveError> {
        self.with(move |conn| {
            let mut query = conn.prepare_cached(
                "SELECT session, at_ms FROM activity WHERE at_ms < ?1 ORDER BY at_ms",
            )?;
            query
                .query_map([before_ms], |row| Ok((row.get(0)?, row.get(1)?)))?
                .collect()
        })
        .await
    }

    async fn archived(&self, session: &str, at_ms: i64) -> Result<(), ArchiveError> {
        let session = session.to_owned();
        self.with(move |conn| {
            conn.execute(
                "DELETE FROM activity WHERE session = ?1 AND at_ms <= ?2",
                params![session, at_ms],
            )
            .map(drop)
        })
        .await
    }
}
