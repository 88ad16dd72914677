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

/// Sets the connection up for durable WAL use and brings the schema up to date.
pub fn open_writer(conn: &Connection) -> rusqlite::Result<()> {
    configure(conn)?;
    let version: i64 = conn.query_row("PRAGMA user_version", [], |row| row.get(0))?;
    if version < 1 {
        conn.execute_batch(&format!(
            "BEGIN; {SCHEMA_V1} PRAGMA user_version = 1; COMMIT;"
        ))?;
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
    Ok(())
}
