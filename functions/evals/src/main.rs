//! The evals function on Lambda: scheduled evals and the runs created over the API, on a
//! schedule.

use agentwire_aws_stack::{Needs, Settings, Stack, lambda};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    agentwire_aws_stack::init_logging();
    // Asks through sessions (the table's stream wakes the agent under test), so it needs
    // the API's settings; runs until every unfinished run is done or the function's
    // timeout cuts it (the next invocation resumes).
    let stack = Stack::connect_in_lambda(&Settings::from_env(Needs::API)?)?;
    let job = stack.evals_job()?;
    lambda::serve_job(&job)
        .await
        .map_err(|e| anyhow::anyhow!(e))
}
