//! The `POST /v1/traces` handler: read, decode, map, merge into the archive, answer.
//!
//! **Archive objects.** A session's spans go to
//! `traces/dt=<day>/tenant=<t>/<session>.jsonl.gz`, where `<day>` is the UTC day of the
//! earliest span of the request's spans of that session. Spans of one session arrive over
//! several requests (exporters send spans as they end, children before their parents):
//! before writing, the objects of that day, the day before and the day after are looked up
//! (in that order) and the first found is merged into (spans replaced by trace and span id),
//! so a trace crossing midnight stays one object. A conversation lasting several days
//! starts a new object once no object of the day before exists.
//!
//! Writes of one session are serialised within the process (a read-merge-write); two
//! processes (two Lambda instances) exporting the same session at the same instant may
//! race, and the later write wins. Exporters batch per process, so this takes two agents
//! exporting one conversation at once.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::io::Read;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use agentwire_auth::{Action, Auth, AuthError, bearer};
use agentwire_ingest::otlp::{
    self, ExportTracePartialSuccess, ExportTraceServiceRequest, ExportTraceServiceResponse,
    Ingested,
};
use agentwire_trace::{Span, TraceArchive, decode_jsonl_gz, encode_jsonl_gz, object_key};
use axum::body::Body;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use bytes::{Bytes, BytesMut};
use flate2::read::MultiGzDecoder;
use futures_util::StreamExt;
use http::{HeaderMap, HeaderValue, StatusCode, header};
use prost::Message;
use serde_json::json;
use tokio::sync::Mutex;

use crate::TracesConfig;

/// Locks serialising the read-merge-write of one session, by hash.
const STRIPES: usize = 64;

const DAY_MS: i64 = 86_400_000;

pub(crate) struct Ingest {
    archive: Arc<dyn TraceArchive>,
    auth: Auth,
    config: TracesConfig,
    stripes: Vec<Mutex<()>>,
}

impl Ingest {
    pub(crate) fn new(archive: Arc<dyn TraceArchive>, auth: Auth, config: TracesConfig) -> Ingest {
        Ingest {
            archive,
            auth,
            config,
            stripes: (0..STRIPES).map(|_| Mutex::new(())).collect(),
        }
    }

    fn stripe(&self, tenant: &str, session: &str) -> &Mutex<()> {
        let mut hasher = DefaultHasher::new();
        (tenant, session).hash(&mut hasher);
        &self.stripes[(hasher.finish() % STRIPES as u64) as usize]
    }

    /// Merges `spans` into the session's object and writes it.
    async fn write(
        &self,
        tenant: &str,
        session: &str,
        earliest_ms: i64,
        spans: Vec<Span>,
    ) -> Result<(), Failure> {
        let _guard = self.stripe(tenant, session).lock().await;
        let mut key = object_key(tenant, session, earliest_ms);
        let mut stored = None;
        for day in [0, -1, 1] {
            let candidate = object_key(tenant, session, earliest_ms.saturating_add(day * DAY_MS));
            if let Some(bytes) = self
                .archive
                .get(&candidate)
                .await
                .map_err(Failure::storage)?
            {
                key = candidate;
                stored = Some(bytes);
                break;
            }
        }
        let stored = match stored {
            Some(bytes) => decode_jsonl_gz(&bytes).map_err(|e| Failure::Unreadable {
                key: key.clone(),
                reason: e.to_string(),
            })?,
            None => Vec::new(),
        };
        // An object without the OTLP session root is an agentwire session's archive: merging
        // into it would let an ingest token rewrite a durable session's trace, and the
        // archiver's next write would drop the merged spans anyway.
        let root_id = otlp::session_root_id(tenant, session);
        if !stored.is_empty()
            && !stored
                .iter()
                .any(|s| s.span_id == root_id && s.parent_span_id.is_none())
        {
            return Err(Failure::Taken { key });
        }
        let merged = otlp::merge_session(tenant, session, stored, spans);
        let body = encode_jsonl_gz(&merged).map_err(|e| Failure::Internal(e.to_string()))?;
        self.archive
            .put(&key, Bytes::from(body))
            .await
            .map_err(Failure::storage)
    }
}

/// Why a session's spans were not written.
enum Failure {
    /// The archive failed: the request may be retried.
    Storage(String),
    /// The session's stored object is not an archive: its spans are rejected.
    Unreadable {
        key: String,
        reason: String,
    },
    /// The session's object is an agentwire session's archived trace: its spans are rejected.
    Taken {
        key: String,
    },
    Internal(String),
}

impl Failure {
    fn storage(e: impl ToString) -> Failure {
        Failure::Storage(e.to_string())
    }
}

/// The request's encoding, which the answer uses too.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Encoding {
    Protobuf,
    Json,
}

/// An OTLP failure response: an HTTP status and a `google.rpc.Status`.
pub(crate) struct OtlpError {
    status: StatusCode,
    message: String,
    encoding: Encoding,
    headers: Vec<(header::HeaderName, &'static str)>,
}

impl OtlpError {
    fn new(status: StatusCode, encoding: Encoding, message: impl Into<String>) -> OtlpError {
        OtlpError {
            status,
            message: message.into(),
            encoding,
            headers: Vec::new(),
        }
    }

    fn auth(e: &AuthError, encoding: Encoding) -> OtlpError {
        if e.is_unauthenticated() {
            let mut error = OtlpError::new(StatusCode::UNAUTHORIZED, encoding, e.to_string());
            error.headers.push((header::WWW_AUTHENTICATE, "Bearer"));
            error
        } else {
            OtlpError::new(StatusCode::FORBIDDEN, encoding, e.to_string())
        }
    }

    /// The `google.rpc.Code` for the HTTP status.
    fn code(&self) -> i32 {
        match self.status {
            StatusCode::UNAUTHORIZED => 16,        // UNAUTHENTICATED
            StatusCode::FORBIDDEN => 7,            // PERMISSION_DENIED
            StatusCode::REQUEST_TIMEOUT => 4,      // DEADLINE_EXCEEDED
            StatusCode::PAYLOAD_TOO_LARGE => 8,    // RESOURCE_EXHAUSTED
            StatusCode::SERVICE_UNAVAILABLE => 14, // UNAVAILABLE
            s if s.is_server_error() => 13,        // INTERNAL
            _ => 3,                                // INVALID_ARGUMENT
        }
    }
}

/// `google.rpc.Status`, without details.
#[derive(Clone, PartialEq, prost::Message)]
struct RpcStatus {
    #[prost(int32, tag = "1")]
    code: i32,
    #[prost(string, tag = "2")]
    message: String,
}

impl IntoResponse for OtlpError {
    fn into_response(self) -> Response {
        if self.status.is_server_error() {
            tracing::error!(status = %self.status, error = %self.message, "trace ingest failed");
        }
        let code = self.code();
        let mut response = match self.encoding {
            Encoding::Protobuf => encoded(
                self.status,
                Encoding::Protobuf,
                RpcStatus {
                    code,
                    message: self.message,
                }
                .encode_to_vec(),
            ),
            Encoding::Json => encoded(
                self.status,
                Encoding::Json,
                json!({ "code": code, "message": self.message })
                    .to_string()
                    .into_bytes(),
            ),
        };
        for (name, value) in self.headers {
            response
                .headers_mut()
                .insert(name, HeaderValue::from_static(value));
        }
        response
    }
}

fn encoded(status: StatusCode, encoding: Encoding, body: Vec<u8>) -> Response {
    let content_type = match encoding {
        Encoding::Protobuf => "application/x-protobuf",
        Encoding::Json => "application/json",
    };
    (
        status,
        [(header::CONTENT_TYPE, HeaderValue::from_static(content_type))],
        body,
    )
        .into_response()
}

fn header_str(headers: &HeaderMap, name: header::HeaderName) -> Option<&str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// The encoding a `Content-Type` names, or `None` for one OTLP/HTTP does not define.
fn encoding_of(content_type: Option<&str>) -> Option<Encoding> {
    let media = content_type?.split(';').next()?.trim().to_ascii_lowercase();
    match media.as_str() {
        "application/x-protobuf" | "application/protobuf" => Some(Encoding::Protobuf),
        "application/json" => Some(Encoding::Json),
        _ => None,
    }
}

fn now_s() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or_default()
}

/// `POST /v1/traces`.
pub(crate) async fn handle(
    State(ingest): State<Arc<Ingest>>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, OtlpError> {
    let content_type = header_str(&headers, header::CONTENT_TYPE);
    let encoding = encoding_of(content_type);
    // Failures before the content type is known are answered in JSON.
    let reply = encoding.unwrap_or(Encoding::Json);
    let token = bearer(header_str(&headers, header::AUTHORIZATION));
    let principal = ingest
        .auth
        .authenticate(token, now_s())
        .map_err(|e| OtlpError::auth(&e, reply))?;
    if !principal.claims.role.allows(Action::Ingest) {
        let refused = AuthError::RoleForbids {
            role: principal.claims.role,
            action: Action::Ingest,
        };
        return Err(OtlpError::auth(&refused, reply));
    }
    let Some(encoding) = encoding else {
        return Err(OtlpError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Encoding::Json,
            format!(
                "unsupported Content-Type {:?}: send application/x-protobuf or application/json",
                content_type.unwrap_or("")
            ),
        ));
    };
    let gzip = match header_str(&headers, header::CONTENT_ENCODING).map(str::trim) {
        None | Some("") => false,
        Some(e) if e.eq_ignore_ascii_case("identity") => false,
        Some(e) if e.eq_ignore_ascii_case("gzip") => true,
        Some(other) => {
            return Err(OtlpError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                encoding,
                format!("unsupported Content-Encoding {other:?}: send gzip or none"),
            ));
        }
    };
    let config = &ingest.config;
    let raw = read_body(body, config.max_body_bytes, config.body_timeout, encoding).await?;
    let bytes = if gzip {
        gunzip(&raw, config.max_decoded_bytes, encoding)?
    } else {
        raw.to_vec()
    };
    let request: ExportTraceServiceRequest = match encoding {
        Encoding::Protobuf => otlp::decode_protobuf(&bytes),
        Encoding::Json => otlp::decode_json(&bytes),
    }
    .map_err(|e| OtlpError::new(StatusCode::BAD_REQUEST, encoding, e.to_string()))?;
    drop(bytes);

    let mut ingested: Ingested = otlp::map_request(&request);
    drop(request);
    let tenant = principal.claims.tenant.clone();
    for session in ingested
        .sessions
        .iter()
        .map(|s| s.session.clone())
        .collect::<Vec<_>>()
    {
        if let Err(e) = principal.authorize(&session, Action::Ingest) {
            ingested.reject_session(&session, &e.to_string());
        }
    }
    let mut accepted = 0usize;
    for session in std::mem::take(&mut ingested.sessions) {
        let count = session.spans.len();
        let earliest = session.earliest_ms();
        match ingest
            .write(&tenant, &session.session, earliest, session.spans)
            .await
        {
            Ok(()) => accepted += count,
            Err(Failure::Storage(e)) => {
                let mut error = OtlpError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    encoding,
                    format!("the trace archive is unavailable, retry later: {e}"),
                );
                error.headers.push((header::RETRY_AFTER, "1"));
                return Err(error);
            }
            Err(Failure::Unreadable { key, reason }) => {
                ingested.rejected_spans += count as i64;
                ingested.errors.push(format!(
                    "session {:?}: its archive object {key} cannot be read ({reason}); its spans were not stored",
                    session.session
                ));
            }
            Err(Failure::Taken { key }) => {
                ingested.rejected_spans += count as i64;
                ingested.errors.push(format!(
                    "session {:?}: {key} is the archived trace of an agentwire session of that name; name the OpenTelemetry conversation differently (gen_ai.conversation.id or session.id); its spans were not stored",
                    session.session
                ));
            }
            Err(Failure::Internal(e)) => {
                return Err(OtlpError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    encoding,
                    e,
                ));
            }
        }
    }
    tracing::info!(
        tenant = %tenant,
        accepted,
        rejected = ingested.rejected_spans,
        "traces ingested"
    );
    let partial_success = (ingested.rejected_spans > 0).then(|| ExportTracePartialSuccess {
        rejected_spans: ingested.rejected_spans,
        error_message: ingested.error_message(),
    });
    Ok(match encoding {
        Encoding::Protobuf => encoded(
            StatusCode::OK,
            encoding,
            ExportTraceServiceResponse { partial_success }.encode_to_vec(),
        ),
        // Built by hand: the OTLP/JSON form, int64 as a string, no `null`s.
        Encoding::Json => {
            let body = match partial_success {
                Some(p) => json!({"partialSuccess": {
                    "rejectedSpans": p.rejected_spans.to_string(),
                    "errorMessage": p.error_message,
                }}),
                None => json!({}),
            };
            encoded(StatusCode::OK, encoding, body.to_string().into_bytes())
        }
    })
}

/// The body, at most `limit` bytes, each part arriving within `pause` of the last.
async fn read_body(
    body: Body,
    limit: usize,
    pause: Duration,
    encoding: Encoding,
) -> Result<Bytes, OtlpError> {
    let mut chunks = body.into_data_stream();
    let mut buf = BytesMut::new();
    loop {
        let Ok(next) = tokio::time::timeout(pause, chunks.next()).await else {
            return Err(OtlpError::new(
                StatusCode::REQUEST_TIMEOUT,
                encoding,
                format!(
                    "the request body stopped arriving for {} ms: send it without pauses",
                    pause.as_millis()
                ),
            ));
        };
        let Some(chunk) = next else { break };
        let chunk = chunk.map_err(|e| {
            OtlpError::new(
                StatusCode::BAD_REQUEST,
                encoding,
                format!("cannot read the request body: {e}"),
            )
        })?;
        if buf.len() + chunk.len() > limit {
            return Err(too_large("request body", limit, encoding));
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(buf.freeze())
}

fn too_large(what: &str, limit: usize, encoding: Encoding) -> OtlpError {
    OtlpError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        encoding,
        format!("{what} exceeds the limit of {limit} bytes: export smaller batches"),
    )
}

/// A gzip body inflated, refusing more than `limit` bytes.
fn gunzip(raw: &[u8], limit: usize, encoding: Encoding) -> Result<Vec<u8>, OtlpError> {
    let mut out = Vec::new();
    MultiGzDecoder::new(raw)
        .take(limit as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| {
            OtlpError::new(
                StatusCode::BAD_REQUEST,
                encoding,
                format!("the body is not valid gzip (Content-Encoding: gzip): {e}"),
            )
        })?;
    if out.len() > limit {
        return Err(too_large("decompressed request body", limit, encoding));
    }
    Ok(out)
}
