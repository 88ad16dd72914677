//! The archiver job on Lambda: DynamoDB Stream batches of the session table (closes, and
//! activity for the idle sweep) and the EventBridge schedule (the sweep itself).

use agentwire_aws_stack::{Needs, Settings, Stack, lambda};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    agentwire_aws_stack::init_logging();
    let settings = Settings::from_env(Needs::JOB)?;
    let archiver = Stack::connect(&settings).await?.archiver();
    lambda::serve_archiver(&archiver)
        .await
        .map_err(|e| anyhow::anyhow!(e))
}
