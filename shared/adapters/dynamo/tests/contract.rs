//! The SessionLog contract, on DynamoDB Local (started by `tests/run-all.sh`; set
//! AGENTWIRE_DYNAMODB_ENDPOINT to use another).

use std::sync::Arc;

use agentwire_contracts::{ManualClock, Subject, session_log_contract};
use agentwire_dynamo::{DynamoSessionLog, local_client};

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

/// The ActivityIndex contract, on DynamoDB Local (in the session table, `pk = activity`).
mod activity_index {
    use std::sync::Arc;

    use agentwire_contracts::activity_index_contract;
    use agentwire_dynamo::{DynamoActivityIndex, DynamoSessionLog, local_client};
    use agentwire_trace::ActivityIndex;

    async fn index() -> (Arc<dyn ActivityIndex>, ()) {
        let endpoint = std::env::var("AGENTWIRE_DYNAMODB_ENDPOINT")
            .unwrap_or_else(|_| "http://127.0.0.1:8000".into());
        let table = format!("activity-{:016x}", fastrand::u64(..));
        // The index lives in the session table, which the log creates.
        DynamoSessionLog::new(local_client(&endpoint), &table)
            .ensure_table()
            .await
            .unwrap_or_else(|e| panic!("DynamoDB Local must be running at {endpoint}: {e}"));
        (
            Arc::new(DynamoActivityIndex::new(local_client(&endpoint), table)),
            (),
        )
    }

    activity_index_contract!(index);
}
