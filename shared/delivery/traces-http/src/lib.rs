//! OTLP/HTTP trace ingest: `POST /v1/traces` writes OpenTelemetry spans into the trace
//! archive, in the archive's trace model (see `agentwire_ingest::otlp`), so an agent that
//! never used an agentwire session can still be scored.
//!
//! The request and its answers follow the OTLP/HTTP specification: the body is an
//! `ExportTraceServiceRequest` as binary protobuf (`application/x-protobuf`) or OTLP/JSON
//! (`application/json`), optionally `Content-Encoding: gzip`; the answer is an
//! `ExportTraceServiceResponse` in the request's encoding, with `partial_success` when
//! spans were rejected; failures are a `google.rpc.Status` in the request's encoding (JSON
//! when the content type is unsupported) with 400 (undecodable), 401/403 (token), 408
//! (body stalled), 413 (too large), 415 (content type or encoding) or 503 (archive
//! unavailable: retryable, with `Retry-After`).
//!
//! Requests are authenticated like the Durable Streams API (`Authorization: Bearer`); the
//! token's role must allow [`agentwire_auth::Action::Ingest`] (`ingest`, `writer`,
//! `admin`), and each trace's session must be one the token covers (others are rejected
//! spans). Traces land in the token's tenant.

mod ingest;
mod scores;

pub use scores::DEFAULT_PAGE;

use std::sync::Arc;
use std::time::Duration;

use agentwire_auth::Auth;
use agentwire_scoring::ScoreIndex;
use agentwire_trace::TraceArchive;
use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};

/// Where OTLP/HTTP exporters send traces (their default path).
pub const TRACES_PATH: &str = "/v1/traces";

/// Limits of the ingest door.
#[derive(Debug, Clone)]
pub struct TracesConfig {
    /// Largest request body accepted as sent (compressed or not); larger ones get 413.
    pub max_body_bytes: usize,
    /// Largest body after gzip decompression; larger ones get 413 (a small gzip body can
    /// inflate a thousandfold).
    pub max_decoded_bytes: usize,
    /// Longest pause between two parts of a request body before 408.
    pub body_timeout: Duration,
}

impl Default for TracesConfig {
    fn default() -> TracesConfig {
        TracesConfig {
            max_body_bytes: 8 * 1024 * 1024,
            max_decoded_bytes: 32 * 1024 * 1024,
            body_timeout: Duration::from_secs(10),
        }
    }
}

/// `POST /v1/traces`, writing each session's spans through `archive` (merged with what it
/// holds: see `agentwire_ingest::otlp::merge_session`) under the token's tenant.
pub fn router(archive: Arc<dyn TraceArchive>, auth: Auth, config: TracesConfig) -> Router {
    let state = Arc::new(ingest::Ingest::new(archive, auth, config));
    Router::new()
        .route(TRACES_PATH, post(ingest::handle))
        .with_state(state)
        .layer(DefaultBodyLimit::disable())
}

/// `GET /v1/traces/{trace_id}/scores` and `GET /v1/scores`: the score index, read with any
/// token that may read sessions (see the `scores` module).
pub fn scores_router(index: Arc<dyn ScoreIndex>, auth: Auth) -> Router {
    let state = Arc::new(scores::Scores::new(index, auth));
    Router::new()
        .route("/v1/traces/{trace_id}/scores", get(scores::trace))
        .route("/v1/scores", get(scores::list))
        .with_state(state)
}
