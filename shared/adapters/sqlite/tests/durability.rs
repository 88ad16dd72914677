//! An acknowledged append survives power loss only if the writer commits to a WAL that is
//! fsynced on every commit. Killing the process (the crash-recovery test) loses nothing even
//! with `synchronous=OFF`, as the OS still holds the writes, so the settings are pinned here.

use agentwire_session::{CreateStream, Expiry, SessionLog};
use agentwire_sqlite::{Durability, SqliteSessionLog};
use bytes::Bytes;

#[tokio::test]
async fn the_writer_commits_to_a_wal_fsynced_on_every_commit() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("sessions.db");
    // A new database, then the same file opened again (the mode is the file's, the
    // synchronous setting each connection's own).
    for open in ["created", "reopened"] {
        let log = SqliteSessionLog::open(&path).expect("open");
        log.create(CreateStream {
            name: format!("s-{open}"),
            content_type: Some("text/plain".into()),
            expiry: Expiry::Never,
            closed: false,
            fork: None,
            body: Bytes::from_static(b"x"),
        })
        .await
        .expect("create");
        assert_eq!(
            log.durability().await.expect("durability"),
            Durability {
                journal_mode: "wal".into(),
                synchronous: "FULL".into(),
            },
            "{open}"
        );
    }
}
