//! A fresh stack (its own tables and bucket) on DynamoDB Local and a local S3 server, wired
//! as the functions wire it.

use std::collections::HashMap;

use agentwire_aws_stack::{Needs, Settings, Stack};

pub async fn stack() -> (Settings, Stack) {
    stack_with(Needs::API).await
}

/// A stack wired for `needs`: `Needs::REQUESTS` is the HTTP function's (no delivery).
pub async fn stack_with(needs: Needs) -> (Settings, Stack) {
    let id = format!("{:012x}", fastrand::u64(..) >> 16);
    let vars = HashMap::from([
        ("AGENTWIRE_SESSIONS_TABLE", format!("sessions-{id}")),
        ("AGENTWIRE_CONNECTIONS_TABLE", format!("connections-{id}")),
        ("AGENTWIRE_BUCKET", format!("agentwire-{id}")),
        ("AGENTWIRE_WS_ENDPOINT", "http://127.0.0.1:9".into()),
        (
            "AGENTWIRE_SECRET",
            "stack-test-secret-stack-test-secret-0123".into(),
        ),
        // Every session with activity counts as idle at once.
        ("AGENTWIRE_IDLE_MINUTES", "0".into()),
        (
            "AGENTWIRE_DYNAMODB_ENDPOINT",
            std::env::var("AGENTWIRE_DYNAMODB_ENDPOINT")
                .unwrap_or_else(|_| "http://127.0.0.1:8000".into()),
        ),
        (
            "AGENTWIRE_S3_ENDPOINT",
            std::env::var("AGENTWIRE_S3_ENDPOINT")
                .unwrap_or_else(|_| "http://127.0.0.1:9000".into()),
        ),
    ]);
    let settings = Settings::from_lookup(needs, |name| vars.get(name).cloned()).unwrap();
    let stack = Stack::connect(&settings).await.unwrap();
    stack.ensure_local_resources().await.unwrap_or_else(|e| {
        panic!(
            "DynamoDB Local and an S3 server must be running (tests/run-all.sh starts them): {e}"
        )
    });
    (settings, stack)
}
