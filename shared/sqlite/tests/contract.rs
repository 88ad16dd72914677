//! The SessionLog contract, on SQLite.

use std::sync::Arc;

use agentwire_session_contract::{ManualClock, Subject, session_log_contract};
use agentwire_sqlite::SqliteSessionLog;

async fn subject() -> Subject {
    let dir = tempfile::tempdir().expect("temp dir");
    let clock = Arc::new(ManualClock::default());
    let log = SqliteSessionLog::open_with_clock(dir.path().join("sessions.db"), clock.clone())
        .expect("open");
    Subject {
        log: Arc::new(log),
        clock,
        keep: Box::new(dir),
    }
}

session_log_contract!(subject);
