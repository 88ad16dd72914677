//! The Durable Streams HTTP protocol over axum: `/v1/stream/<name>`.
//!
//! Handlers are thin: they read headers with [`agentwire_session::headers`], call the
//! [`Sessions`] service, and render the result; every error becomes a response in
//! [`error`].

mod error;
mod headers;
mod sse;
mod stream;

use std::time::Duration;

use agentwire_auth::Auth;
use agentwire_session::Sessions;
use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{any, get};
use http::{HeaderName, HeaderValue, Method};
use tower_http::cors::{AllowHeaders, AllowOrigin, CorsLayer};
use tower_http::set_header::SetResponseHeaderLayer;

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
    /// Data returned by one catch-up read, at most (one record is always returned whole).
    pub read_chunk_bytes: usize,
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
            sse: true,
        }
    }
}

#[derive(Clone)]
struct AppState {
    sessions: Sessions,
    auth: Auth,
    config: HttpConfig,
}

/// The protocol's routes over `sessions`, with CORS and browser security headers. Every
/// request is authenticated by `auth` and confined to its tenant's sessions.
pub fn router(sessions: Sessions, auth: Auth, config: HttpConfig) -> Router {
    let state = AppState {
        sessions,
        auth,
        config,
    };
    Router::new()
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
