//! The dispatch function on Lambda: Durable Streams subscriptions. Webhook wakes come from
//! the session table's stream (subscription items), the lease and retry sweep from a
//! schedule.

use agentwire_aws_stack::{Needs, Sends, Settings, Stack, lambda};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    agentwire_aws_stack::init_logging();
    // Wake events are appends, pushed to the wake stream's WebSocket followers; the
    // webhook key is derived from the token secret.
    let stack = Stack::connect_in_lambda(&Settings::from_env(Needs::API)?)?;
    // Every send goes through the stream, this function's own follow-ups too: nothing is
    // left running when an invocation returns.
    let dispatch = stack.dispatch(Sends::ByChangeFeed).await?;
    let sessions = stack.sessions_dispatching(&dispatch)?;
    lambda::serve_dispatch(dispatch, sessions)
        .await
        .map_err(|e| anyhow::anyhow!(e))
}
