//! The grading API: domain experts grade traces in annotation queues, and queue owners
//! set the queues up and read the grades.
//!
//! Owners (an `admin` token of the tenant):
//! - `PUT /v1/rubrics/{name}/{version}` (a [`agentwire_grading::Rubric`]): 201 stored, 200
//!   the same body was there, 409 another body is (versions never change).
//! - `GET /v1/rubrics/{name}?version=`: that version, or the latest.
//! - `POST /v1/queues` (`{"queue": QueueSpec, "traces": [..]}` or `{"queue", "filter":
//!   {name, label, max_value, source, since_ms, until_ms, sample}}`): 201 `{"queue",
//!   "items"}` (200 for a retried create of the same queue).
//! - `GET /v1/queues`, `GET /v1/queues/{q}` (spec and progress), `GET /v1/queues/{q}/grades`.
//! - `GET /v1/queues/{q}/agreement`: per criterion, the graders' agreement (kappas, alpha,
//!   intervals, disagreed items; `agentwire_agreement`) and each linked scorer's as one
//!   more grader.
//!
//! Graders (a `grader` token whose `s` covers the queue and whose `u` is the grader; an
//! admin token with a `u` may grade too):
//! - `POST /v1/queues/{q}/claim`: 200 `{"claim": Claim|null, "progress": {done, total}}`.
//! - `GET /v1/queues/{q}/items/{trace_id}`: an item the grader claimed, with its rubric,
//!   the conversation, their draft, and (unless the queue is blind) the scores and the other
//!   graders' grades.
//! - `PUT /v1/queues/{q}/items/{trace_id}/draft` (any JSON up to 64 KiB): 204.
//! - `POST /v1/queues/{q}/items/{trace_id}/grade` (`{"rubric": {name, version}, "answers":
//!   {key: {value, justification?}}}`): 201; the grade's score records (source `human`)
//!   join the trace's scores, and a complete item its graders disagree on goes to the
//!   queue's adjudication queue.
//!
//! Errors are `{"error": "<message>"}`: 400 invalid input (the message names the field),
//! 401 no or bad token (a grader token without `u` too), 403 wrong role, a grader token
//! not covering the queue (whether or not it exists), or a grader not in the queue; 404 no
//! such rubric, queue or item (another tenant's are never visible); 409 a rubric or queue
//! conflict, a slot not held, or a queue past its deadline; 413 a body too large; 503
//! storage unavailable (retry). A refused call changes nothing.

mod conversation;
mod http;
pub mod reports;
pub mod service;

pub use conversation::{Conversation, Flag, Passage, ShownMessage, ShownToolCall};
pub use service::{GradingService, MAX_FILTER_SCAN};

use std::sync::Arc;

use agentwire_auth::Auth;
use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post, put};

/// The largest request body by default (a rubric of 20 criteria with long guidance, or a
/// queue of 10 000 listed traces, fits): larger ones get 413.
pub const DEFAULT_MAX_BODY_BYTES: usize = 1024 * 1024;

/// The grading routes over `service`, authenticated by `auth`; request bodies larger than
/// `max_body_bytes` get 413.
pub fn router(service: GradingService, auth: Auth, max_body_bytes: usize) -> Router {
    let state = Arc::new(http::Api { service, auth });
    Router::new()
        .route("/v1/rubrics/{name}/{version}", put(http::put_rubric))
        .route("/v1/rubrics/{name}", get(http::get_rubric))
        .route(
            "/v1/queues",
            post(http::create_queue).get(http::list_queues),
        )
        .route("/v1/queues/{queue}", get(http::get_queue))
        .route("/v1/queues/{queue}/grades", get(http::grades))
        .route("/v1/queues/{queue}/agreement", get(http::agreement))
        .route("/v1/queues/{queue}/claim", post(http::claim))
        .route("/v1/queues/{queue}/items/{trace_id}", get(http::item))
        .route(
            "/v1/queues/{queue}/items/{trace_id}/draft",
            put(http::draft),
        )
        .route(
            "/v1/queues/{queue}/items/{trace_id}/grade",
            post(http::grade),
        )
        .with_state(state)
        .layer(DefaultBodyLimit::max(max_body_bytes))
}
