//! The archiver job on Lambda: DynamoDB Stream batches of the session table (closes, and
//! activity for the idle sweep) and the EventBridge schedule (the sweep itself).

use agentwire_aws_stack::{Needs, Settings, Stack, lambda};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    agentwire_aws_stack::init_logging();
    let archiver = Stack::connect_in_lambda(&Settings::from_env(Needs::JOB)?)?.archiver();
    lambda::serve_archiver(&archiver)
        .await
        .map_err(|e| anyhow::anyhow!(e))
}
