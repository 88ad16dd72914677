//! The database layout. One row per stream, one row per append batch, one row per producer.

use rusqlite::Connection;

/// Applied once per database; `user_version` records it.
const SCHEMA_V1: &str = r#"
CREATE TABLE streams (
    -- Never reused, so ETags and fork links survive delete and re-create of a name.
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    name            TEXT NOT NULL UNIQUE,
    content_type    TEXT NOT NULL,
    ttl_seconds     INTEGER,
    expires_at_ms   INTEGER,
    accessed_ms     INTEGER NOT NULL,
    tail            INTEGER NOT NULL,
    closed          INTEGER NOT NULL DEFAULT 0,
    closed_by_id    TEXT,
    closed_by_epoch INTEGER,
    closed_by_seq   INTEGER,
    last_stream_seq TEXT,
    fork_source     INTEGER,
    fork_offset     INTEGER,
    fork_refs       INTEGER NOT NULL DEFAULT 0,
    deleted         INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE records (
    id           INTEGER PRIMARY KEY,
    stream_id    INTEGER NOT NULL,
    start_offset INTEGER NOT NULL,
    end_offset   INTEGER NOT NULL,
    data         BLOB NOT NULL
);
CREATE UNIQUE INDEX records_by_end ON records (stream_id, end_offset);
CREATE TABLE producers (
    stream_id   INTEGER NOT NULL,
    producer_id TEXT NOT NULL,
    epoch       INTEGER NOT NULL,
    last_seq    INTEGER NOT NULL,
    PRIMARY KEY (stream_id, producer_id)
) WITHOUT ROWID;
"#;

/// Version 2: each record's commit time (unix ms). Rows written before it read as 0,
/// "unknown". Adding a column with a constant default rewrites no rows, so the migration is
/// instant however large the database.
const MIGRATE_V2: &str = "ALTER TABLE records ADD COLUMN at_ms INTEGER NOT NULL DEFAULT 0;";

/// The schema version this code writes.
const VERSION: i64 = 2;

/// Sets the connection up for durable WAL use and brings the schema up to date, all
/// missing steps in one transaction (a new database runs every step).
pub fn open_writer(conn: &Connection) -> rusqlite::Result<()> {
    configure(conn)?;
    let version: i64 = conn.query_row("PRAGMA user_version", [], |row| row.get(0))?;
    if version < VERSION {
        let mut script = String::from("BEGIN;");
        if version < 1 {
            script.push_str(SCHEMA_V1);
        }
        script.push_str(MIGRATE_V2);
        script.push_str(&format!("PRAGMA user_version = {VERSION}; COMMIT;"));
        conn.execute_batch(&script)?;
    }
    Ok(())
}

/// Sets a reader connection up; readers never write.
pub fn open_reader(conn: &Connection) -> rusqlite::Result<()> {
    configure(conn)?;
    conn.pragma_update(None, "query_only", true)
}

fn configure(conn: &Connection) -> rusqlite::Result<()> {
    let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |row| row.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(rusqlite::Error::InvalidParameterName(format!(
            "journal_mode is {mode}, expected wal"
        )));
    }
    // FULL: every commit fsyncs the WAL, so an acknowledged append survives power loss.
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "busy_timeout", 5000)?;
    // Every statement the log, scores, grading and subscriptions run stays prepared (rusqlite
    // keeps 16 by default; the writer alone runs about 35 distinct ones).
    conn.set_prepared_statement_cache_capacity(64);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store;
    use agentwire_session::{AppendRequest, Payload, ReadFrom};
    use bytes::Bytes;

    /// A database from before commit times keeps its data, which reads as of unknown time
    /// (0), while new appends carry theirs.
    #[test]
    fn version_1_databases_migrate_in_place() {
        let dir = tempfile::tempdir().unwrap();
        let conn = Connection::open(dir.path().join("v1.db")).unwrap();
        configure(&conn).unwrap();
        conn.execute_batch(&format!(
            "{SCHEMA_V1} PRAGMA user_version = 1; \
             INSERT INTO streams (name, content_type, accessed_ms, tail) \
               VALUES ('old', 'text/plain', 0, 3); \
             INSERT INTO records (stream_id, start_offset, end_offset, data) \
               VALUES (1, 0, 3, X'616263');"
        ))
        .unwrap();

        open_writer(&conn).unwrap();
        open_writer(&conn).unwrap();
        let version: i64 = conn
            .query_row("PRAGMA user_version", [], |row| row.get(0))
            .unwrap();
        assert_eq!(version, VERSION);
        let append = AppendRequest {
            content_type: Some("text/plain".into()),
            payload: Payload {
                data: Bytes::from_static(b"de"),
                units: 2,
            },
            ..AppendRequest::default()
        };
        store::append(&conn, "old", &append, 5_000).unwrap();
        let read = store::read(&conn, "old", ReadFrom::Start, 1024, 6_000).unwrap();
        let records: Vec<(&[u8], i64)> = read
            .batch
            .records
            .iter()
            .map(|r| (&r.data[..], r.at_ms))
            .collect();
        assert_eq!(records, [(&b"abc"[..], 0), (&b"de"[..], 5_000)]);
    }
}
