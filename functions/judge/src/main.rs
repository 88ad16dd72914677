//! The LLM judge on Lambda: batches of its SQS queue (the bucket's new `scores/` objects).

use agentwire_aws_stack::{Needs, Settings, Stack, lambda};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    agentwire_aws_stack::init_logging();
    let stack = Stack::connect_in_lambda(&Settings::from_env(Needs::JOB)?)?;
    lambda::serve_judge(stack.judge())
        .await
        .map_err(|e| anyhow::anyhow!(e))
}
