//! The SessionLog contract, on DynamoDB Local (started by `tests/run-all.sh`; set
//! AGENTWIRE_DYNAMODB_ENDPOINT to use another).

use std::sync::Arc;

use agentwire_dynamo::{DynamoSessionLog, local_client};
use agentwire_session_contract::{ManualClock, Subject, session_log_contract};

async fn subject() -> Subject {
    let endpoint = std::env::var("AGENTWIRE_DYNAMODB_ENDPOINT")
        .unwrap_or_else(|_| "http://127.0.0.1:8000".into());
    let clock = Arc::new(ManualClock::default());
    let table = format!("contract-{:016x}", fastrand::u64(..));
    let log = DynamoSessionLog::with_clock(local_client(&endpoint), table, clock.clone());
    log.ensure_table().await.unwrap_or_else(|e| {
        panic!("DynamoDB Local must be running at {endpoint} (tests/run-all.sh starts it): {e}")
    });
    Subject {
        log: Arc::new(log),
        clock,
        keep: Box::new(()),
    }
}

session_log_contract!(subject);
