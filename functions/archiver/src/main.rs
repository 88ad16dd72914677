//! The archiver job on Lambda: DynamoDB Stream batches of the session table (closes, and
//! activity for the idle sweep) and the EventBridge schedule (the sweep itself). With
//! `AGENTWIRE_JOB=dispatch` the same bootstrap is the dispatch function (Durable Streams
//! subscriptions: webhook wakes from the same table's stream, and the lease and retry
//! sweep on a schedule); with `AGENTWIRE_JOB=evals` it is the evals function (scheduled
//! evals and the runs created over the API): one build, three functions with their own
//! roles.

use agentwire_aws_stack::{Needs, Sends, Settings, Stack, lambda};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    agentwire_aws_stack::init_logging();
    let served = match std::env::var("AGENTWIRE_JOB").as_deref() {
        Ok("dispatch") => {
            // Wake events are appends, pushed to the wake stream's WebSocket followers; the
            // webhook key is derived from the token secret.
            let stack = Stack::connect(&Settings::from_env(Needs::API)?).await?;
            // Every send goes through the stream, this function's own follow-ups too:
            // nothing is left running when an invocation returns.
            let dispatch = stack.dispatch(Sends::ByChangeFeed).await?;
            let sessions = stack.sessions_dispatching(&dispatch)?;
            lambda::serve_dispatch(dispatch, sessions).await
        }
        Ok("evals") => {
            // Asks through sessions (the table's stream wakes the agent under test), so it
            // needs the API's settings; runs until every unfinished run is done or the
            // function's timeout cuts it (the next invocation resumes).
            let stack = Stack::connect(&Settings::from_env(Needs::API)?).await?;
            let job = stack.evals_job()?;
            lambda::serve_job(&job).await
        }
        Ok(other) => {
            anyhow::bail!(
                "AGENTWIRE_JOB={other}: expected dispatch or evals, or nothing for the archiver"
            )
        }
        Err(_) => {
            let settings = Settings::from_env(Needs::JOB)?;
            let archiver = Stack::connect(&settings).await?.archiver();
            lambda::serve_archiver(&archiver).await
        }
    };
    served.map_err(|e| anyhow::anyhow!(e))
}
