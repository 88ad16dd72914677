//! The Durable Streams HTTP protocol over axum: `/v1/stream/<name>`.
//!
//! Handlers are thin: they read headers with [`agentwire_session::headers`], call the
//! [`Sessions`] service, and render the result; every error becomes a response in
//! [`error`].

mod error;
mod headers;
mod sse;
mod stream;
mod subscriptions;

use std::sync::Arc;
use std::time::Duration;

use agentwire_auth::Auth;
use agentwire_session::Sessions;
use axum::Router;
use axum::body::Body;
use axum::extract::{DefaultBodyLimit, MatchedPath};
use axum::routing::{any, get};
use http::{HeaderName, HeaderValue, Method, Request, Response};
use tokio::sync::Semaphore;
use tower_http::classify::ServerErrorsFailureClass;
use tower_http::cors::{AllowHeaders, AllowOrigin, CorsLayer};
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::trace::TraceLayer;
use tracing::Span;
use tracing::field::Empty;

pub use error::ApiError;

/// Where streams live under the server root.
pub const STREAM_PREFIX: &str = "/v1/stream/";

/// Limits and timings of the HTTP protocol.
#[derive(Debug, Clone)]
pub struct HttpConfig {
    /// Largest request body accepted; larger ones get 413.
    pub max_body_bytes: usize,
    /// How long a long-poll waits for data before answering 204.
    pub long_poll_timeout: Duration,
    /// How long an SSE response stays open before the server ends it (clients reconnect).
    pub sse_max_duration: Duration,
    /// Data returned by one read, at most (a larger append is returned in parts, each
    /// with the `Stream-Next-Offset` to read the rest from; only a single JSON message
    /// larger than this is returned whole).
    pub read_chunk_bytes: usize,
    /// Catch-up reads served at once, at most: each holds up to `read_chunk_bytes` in
    /// memory until its response is sent. Reads beyond it wait up to `read_queue_timeout`
    /// for a slot, then get `503` with `Retry-After: 1`.
    pub max_concurrent_reads: usize,
    /// How long a catch-up read waits for a slot when `max_concurrent_reads` are running.
    pub read_queue_timeout: Duration,
    /// Longest pause allowed between two parts of a request body: a client that stops
    /// sending mid-body gets `408` instead of holding its connection (the server's header
    /// timeout covers only the request head).
    pub body_timeout: Duration,
    /// Whether `live=sse` is served. Off behind API Gateway HTTP APIs, which buffer whole
    /// responses: there it is refused with 400 and clients use long-poll or WebSocket.
    pub sse: bool,
}

impl Default for HttpConfig {
    fn default() -> HttpConfig {
        HttpConfig {
            max_body_bytes: 8 * 1024 * 1024,
            long_poll_timeout: Duration::from_secs(30),
            sse_max_duration: Duration::from_secs(60),
            read_chunk_bytes: 1024 * 1024,
            max_concurrent_reads: 64,
            read_queue_timeout: Duration::from_secs(5),
            body_timeout: Duration::from_secs(10),
            sse: true,
        }
    }
}

#[derive(Clone)]
struct AppState {
    sessions: Sessions,
    auth: Auth,
    config: HttpConfig,
    /// One permit per catch-up read in progress (held until its body is sent).
    reads: Arc<Semaphore>,
    /// Subscriptions, when the server offers them.
    dispatch: Option<Arc<agentwire_dispatch::Dispatch>>,
}

/// The protocol's routes over `sessions`, with CORS and browser security headers. Every
/// request is authenticated by `auth`, confined to its tenant's sessions, and runs in a
/// `request` span with its method, route pattern, stream name, status and latency.
pub fn router(sessions: Sessions, auth: Auth, config: HttpConfig) -> Router {
    build(sessions, auth, config, None)
}

/// [`router`] with the reserved subscription routes (`/v1/stream/__ds/…`) served by
/// `dispatch`; `sessions` should carry its [`agentwire_dispatch::DispatchObserver`].
pub fn router_with_dispatch(
    sessions: Sessions,
    auth: Auth,
    config: HttpConfig,
    dispatch: Arc<agentwire_dispatch::Dispatch>,
) -> Router {
    build(sessions, auth, config, Some(dispatch))
}

fn build(
    sessions: Sessions,
    auth: Auth,
    config: HttpConfig,
    dispatch: Option<Arc<agentwire_dispatch::Dispatch>>,
) -> Router {
    let state = AppState {
        sessions,
        auth,
        reads: Arc::new(Semaphore::new(config.max_concurrent_reads.max(1))),
        config,
        dispatch,
    };
    Router::new()
        // Routed before streams: `__ds` names no stream.
        .route("/v1/stream/__ds/{*rest}", any(subscriptions::handle))
        .route("/v1/stream/{*name}", any(stream::handle))
        .route("/healthz", get(|| async { "ok\n" }))
        .with_state(state)
        .layer(DefaultBodyLimit::disable())
        .layer(cors())
        .layer(SetResponseHeaderLayer::if_not_present(
            HeaderName::from_static("x-content-type-options"),
            HeaderValue::from_static("nosniff"),
        ))
        .layer(SetResponseHeaderLayer::if_not_present(
            HeaderName::from_static("cross-origin-resource-policy"),
            HeaderValue::from_static("cross-origin"),
        ))
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(request_span)
                .on_response(record_response)
                .on_failure(record_failure),
        )
}

/// One span per request: `method`, `route` (the matched pattern, never the URI: a query
/// may carry `?token=`), `session` (the stream name, recorded by the handler once it is
/// valid), then `status` and `latency_ms`. Never headers (`Authorization`) nor bodies.
fn request_span(request: &Request<Body>) -> Span {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", MatchedPath::as_str);
    tracing::info_span!(
        "request",
        method = %request.method(),
        route = %route,
        session = Empty,
        status = Empty,
        latency_ms = Empty,
    )
}

/// Records the outcome on the request's span once the response head is ready (streamed
/// bodies, SSE and long-polls included, go on after it).
fn record_response(response: &Response<Body>, latency: Duration, span: &Span) {
    span.record("status", response.status().as_u16());
    span.record("latency_ms", latency.as_secs_f64() * 1000.0);
    tracing::debug!(parent: span, "response");
}

/// 5xx responses are already logged, with their message, by [`ApiError`]; only failures
/// of the service or of a streamed body are logged here.
fn record_failure(failure: ServerErrorsFailureClass, latency: Duration, span: &Span) {
    if let ServerErrorsFailureClass::Error(error) = failure {
        let latency_ms = latency.as_secs_f64() * 1000.0;
        tracing::error!(parent: span, %error, latency_ms, "response failed");
    }
}

fn cors() -> CorsLayer {
    CorsLayer::new()
        .allow_origin(AllowOrigin::mirror_request())
        .allow_methods([
            Method::GET,
            Method::POST,
            Method::PUT,
            Method::DELETE,
            Method::HEAD,
            Method::OPTIONS,
        ])
        .allow_headers(AllowHeaders::mirror_request())
        .expose_headers(headers::EXPOSED.map(HeaderName::from_static))
        .max_age(Duration::from_secs(86_400))
}
