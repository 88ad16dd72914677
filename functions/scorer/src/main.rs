//! The scorer job on Lambda: S3 event notifications of new objects under `traces/` (each
//! trace scored into `scores/` and the index) and the EventBridge schedule (the nightly
//! re-score of the day that ended).

use agentwire_aws_stack::{Needs, Settings, Stack, lambda};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    agentwire_aws_stack::init_logging();
    let stack = Stack::connect_in_lambda(&Settings::from_env(Needs::JOB)?)?;
    lambda::serve_scorer(stack.scorer())
        .await
        .map_err(|e| anyhow::anyhow!(e))
}
