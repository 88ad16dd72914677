//! The SessionLog contract, on SQLite.

use std::sync::Arc;

use agentwire_contracts::{ManualClock, Subject, session_log_contract};
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

/// The ActivityIndex contract, on SQLite (in the session log's file).
mod activity_index {
    use std::sync::Arc;

    use agentwire_contracts::activity_index_contract;
    use agentwire_sqlite::SqliteActivityIndex;
    use agentwire_trace::ActivityIndex;

    async fn index() -> (Arc<dyn ActivityIndex>, tempfile::TempDir) {
        let dir = tempfile::tempdir().expect("temp dir");
        let index = SqliteActivityIndex::open(dir.path().join("sessions.db")).expect("open");
        (Arc::new(index), dir)
    }

    activity_index_contract!(index);
}

/// The ScoreIndex contract, on SQLite (in the session log's file, beside the sessions).
mod score_index {
    use std::sync::Arc;

    use agentwire_contracts::score_index_contract;
    use agentwire_scoring::ScoreIndex;
    use agentwire_sqlite::{SqliteScoreIndex, SqliteSessionLog};

    async fn index() -> (Arc<dyn ScoreIndex>, (tempfile::TempDir, SqliteSessionLog)) {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("sessions.db");
        // The log opens the file first, as `agentwire dev` does.
        let log = SqliteSessionLog::open(&path).expect("open the log");
        let index = SqliteScoreIndex::open(&path).expect("open");
        (Arc::new(index), (dir, log))
    }

    score_index_contract!(index);
}
