//! The API beside the Durable Streams API on Lambda, behind the same HTTP API: OTLP/HTTP
//! trace ingest (`POST /v1/traces`) into the bucket, the scores API
//! (`GET /v1/traces/{id}/scores`, `GET /v1/scores`) from the score index, the grading API
//! (`/v1/rubrics`, `/v1/queues`) on the session table, the evals API (`/v1/evals`) and the
//! report pages (`Stack::api_app` builds them); the grading page is served at `/grade/`.
//! The streams function serves `/v1/stream/*`: this one appends to no session and pushes
//! to no client.

mod page;

use agentwire_aws_stack::{MAX_BODY_BYTES, Needs, Settings, Stack};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    agentwire_aws_stack::init_logging();
    let settings = Settings::from_env(Needs::REQUESTS)?;
    let stack = Stack::connect_in_lambda(&settings)?;
    let app = stack
        .api_app(stack.auth().await?, MAX_BODY_BYTES)
        .merge(page::router());
    lambda_http::run(app).await.map_err(|e| anyhow::anyhow!(e))
}
