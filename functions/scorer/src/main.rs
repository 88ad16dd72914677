//! The scorer job on Lambda: S3 event notifications of new objects under `traces/` (each
//! trace scored into `scores/` and the index) and the EventBridge schedule (the nightly
//! re-score of the day that ended). With `AGENTWIRE_JOB=judge` the same bootstrap is the
//! LLM judge, taking batches of its SQS queue; with `AGENTWIRE_JOB=clusters` it is the
//! nightly clustering and report pages, on its schedule: one build, three functions with
//! their own roles.

use agentwire_aws_stack::{Needs, Settings, Stack, lambda};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    agentwire_aws_stack::init_logging();
    let settings = Settings::from_env(Needs::JOB)?;
    let stack = Stack::connect(&settings).await?;
    let served = match std::env::var("AGENTWIRE_JOB").as_deref() {
        Ok("judge") => lambda::serve_judge(stack.judge()).await,
        Ok("clusters") => lambda::serve_job(&stack.clusters_job()?).await,
        Ok(other) => {
            anyhow::bail!(
                "AGENTWIRE_JOB={other}: expected judge or clusters, or nothing for the scorer"
            )
        }
        Err(_) => lambda::serve_scorer(stack.scorer()).await,
    };
    served.map_err(|e| anyhow::anyhow!(e))
}
