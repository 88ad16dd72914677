//! The Durable Streams API on Lambda: the same axum router `agentwire dev` serves, on
//! DynamoDB, behind the HTTP API (`/v1/stream/*`) and at the function URL agents may
//! append through. API Gateway buffers responses, so SSE is refused (use long-poll or
//! WebSocket). Durable Streams subscriptions are served too: pull-wake claims here,
//! webhook sends by the dispatch function. Appends are pushed to WebSocket subscribers.

use agentwire_aws_stack::{MAX_BODY_BYTES, Needs, Sends, Settings, Stack};
use agentwire_streams_http::HttpConfig;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    agentwire_aws_stack::init_logging();
    let settings = Settings::from_env(Needs::API)?;
    let stack = Stack::connect_in_lambda(&settings)?;
    let config = HttpConfig {
        long_poll_timeout: settings.long_poll_timeout,
        max_body_bytes: MAX_BODY_BYTES,
        sse: false,
        ..HttpConfig::default()
    };
    // Webhook wakes are sent by the dispatch function, which follows the table's stream:
    // this one's work ends with its answer.
    let dispatch = stack.dispatch(Sends::ByChangeFeed).await?;
    let app = stack.streams_app(stack.auth().await?, config, Some(dispatch))?;
    lambda_http::run(app).await.map_err(|e| anyhow::anyhow!(e))
}
