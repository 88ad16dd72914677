//! The Durable Streams API on Lambda: the same axum router `agentwire dev` serves, on
//! DynamoDB. API Gateway buffers responses, so SSE is refused (use long-poll or WebSocket).
//! OTLP/HTTP trace ingest (`POST /v1/traces`) is served beside it, into the bucket, and
//! the scores API (`GET /v1/traces/{id}/scores`, `GET /v1/scores`) from the score index.

use agentwire_aws_stack::{Needs, Settings, Stack};
use agentwire_streams_http::HttpConfig;
use agentwire_traces_http::TracesConfig;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    agentwire_aws_stack::init_logging();
    let settings = Settings::from_env(Needs::API)?;
    let stack = Stack::connect(&settings).await?;
    let config = HttpConfig {
        long_poll_timeout: settings.long_poll_timeout,
        // Lambda takes at most 6 MB per request, and API Gateway base64-encodes binary
        // bodies (4/3): 4 MiB keeps every accepted append inside, with a clear 413 above.
        max_body_bytes: 4 * 1024 * 1024,
        sse: false,
        ..HttpConfig::default()
    };
    let traces = TracesConfig {
        // The same Lambda request limit as appends.
        max_body_bytes: config.max_body_bytes,
        ..TracesConfig::default()
    };
    let auth = stack.auth().await?;
    let app = agentwire_streams_http::router(stack.sessions()?, auth.clone(), config)
        .merge(agentwire_traces_http::router(
            stack.trace_archive(),
            auth.clone(),
            traces,
        ))
        .merge(agentwire_traces_http::scores_router(
            stack.scores.clone(),
            auth,
        ));
    lambda_http::run(app).await.map_err(|e| anyhow::anyhow!(e))
}
