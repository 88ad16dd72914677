//! The nightly clustering of failing traces and the report pages on Lambda, on its
//! schedule.

use agentwire_aws_stack::{Needs, Settings, Stack, lambda};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    agentwire_aws_stack::init_logging();
    let stack = Stack::connect_in_lambda(&Settings::from_env(Needs::JOB)?)?;
    lambda::serve_job(&stack.clusters_job()?)
        .await
        .map_err(|e| anyhow::anyhow!(e))
}
