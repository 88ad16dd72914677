//! Handlers for one stream URL: PUT create, POST append/close, GET read, HEAD, DELETE.

use std::time::Duration;

use agentwire_session::content::{self, Mode};
use agentwire_session::headers::{self as protocol, format_rfc3339, next_cursor};
use agentwire_session::path;
use agentwire_session::{
    AppendKind, AppendRequest, CreateStream, Event, Expiry, Offset, Payload, ProtocolError,
    ReadBatch, ReadFrom, StreamInfo,
};
use agentwire_session::{Clock, SystemClock};
use axum::body::{Body, Bytes};
use axum::extract::{Path, RawQuery, State};
use axum::response::{IntoResponse, Response};
use bytes::BytesMut;
use futures_util::StreamExt;
use http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use serde_json::json;
use std::collections::VecDeque;
use tokio::sync::OwnedSemaphorePermit;

use agentwire_auth::{Action, Principal, bearer};

use crate::error::ApiError;
use crate::headers::*;
use crate::{AppState, STREAM_PREFIX, sse};

/// Query parameters of a read.
#[derive(Debug, Default)]
pub(crate) struct ReadQuery {
    offset: Option<String>,
    live: Option<String>,
    cursor: Option<String>,
    /// For clients that cannot set headers (EventSource); prefer `Authorization: Bearer`.
    token: Option<String>,
}

impl ReadQuery {
    /// Parses the query string; a parameter given twice is refused rather than guessed at.
    fn parse(raw: Option<&str>) -> Result<ReadQuery, ApiError> {
        let mut query = ReadQuery::default();
        for (key, value) in form_urlencoded::parse(raw.unwrap_or_default().as_bytes()) {
            let slot = match key.as_ref() {
                "offset" => &mut query.offset,
                "live" => &mut query.live,
                "cursor" => &mut query.cursor,
                "token" => &mut query.token,
                _ => continue,
            };
            if slot.replace(value.into_owned()).is_some() {
                return Err(ApiError::bad_request(format!(
                    "query parameter {key} is given more than once"
                )));
            }
        }
        Ok(query)
    }
}

/// Bodies up to this much past the limit are read and dropped before answering 413, so the
/// client sees the status instead of a reset connection.
const DRAIN_PAST_LIMIT: usize = 64 * 1024 * 1024;

pub(crate) async fn read_body(
    body: Body,
    limit: usize,
    pause: Duration,
) -> Result<Bytes, ApiError> {
    let mut chunks = body.into_data_stream();
    let mut buf = BytesMut::new();
    let mut total = 0usize;
    loop {
        let Ok(next) = tokio::time::timeout(pause, chunks.next()).await else {
            return Err(ApiError::request_timeout(pause));
        };
        let Some(chunk) = next else { break };
        let chunk = chunk
            .map_err(|e| ApiError::bad_request(format!("cannot read the request body: {e}")))?;
        total += chunk.len();
        if total <= limit {
            buf.extend_from_slice(&chunk);
        } else if total > limit + DRAIN_PAST_LIMIT {
            break;
        }
    }
    if total > limit {
        return Err(ApiError::payload_too_large(limit));
    }
    Ok(buf.freeze())
}

pub(crate) async fn handle(
    State(app): State<AppState>,
    Path(name): Path<String>,
    method: Method,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let name = stream_name(&name)?;
    tracing::Span::current().record("session", tracing::field::display(&name));
    check_request(&headers)?;
    let query = ReadQuery::parse(query.as_deref())?;
    let token = bearer(header(&headers, header::AUTHORIZATION.as_str())).or(query.token.as_deref());
    let principal = app.auth.authenticate(token, SystemClock.now_ms() / 1000)?;
    let action = match method {
        Method::PUT | Method::POST => Action::Append,
        Method::DELETE => Action::Delete,
        _ => Action::Read,
    };
    principal.authorize(&name, action)?;
    let stored = principal.stored_name(&name);
    let limit = app.config.max_body_bytes;
    match method {
        Method::PUT => {
            let body = read_body(body, limit, app.config.body_timeout).await?;
            create(&app, &principal, &name, stored, &headers, body).await
        }
        Method::POST => {
            append(
                &app,
                stored,
                &headers,
                read_body(body, limit, app.config.body_timeout).await?,
            )
            .await
        }
        Method::GET => read(&app, stored, &headers, query).await,
        Method::HEAD => head(&app, stored).await,
        Method::DELETE => {
            app.sessions.delete(&stored).await?;
            Ok(StatusCode::NO_CONTENT.into_response())
        }
        other => Ok((
            StatusCode::METHOD_NOT_ALLOWED,
            [(header::ALLOW, "GET, HEAD, POST, PUT, DELETE, OPTIONS")],
            format!("method {other} is not supported on a stream\n"),
        )
            .into_response()),
    }
}

/// Stream names are the path after the prefix; control characters are refused.
fn stream_name(raw: &str) -> Result<String, ProtocolError> {
    path::validate_name(raw)?;
    Ok(raw.to_owned())
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

fn content_type(headers: &HeaderMap) -> Result<Option<String>, ProtocolError> {
    match header(headers, header::CONTENT_TYPE.as_str()) {
        None => Ok(None),
        Some(value) => {
            content::validate_content_type(value)?;
            Ok(Some(value.to_owned()))
        }
    }
}

async fn create(
    app: &AppState,
    principal: &Principal,
    name: &str,
    stored: String,
    headers: &HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let mut fork = protocol::fork(
        header(headers, STREAM_FORKED_FROM),
        header(headers, STREAM_FORK_OFFSET),
        header(headers, STREAM_FORK_SUB_OFFSET),
    )?;
    if let Some(fork) = &mut fork {
        // A fork reads its source, so the caller must be allowed to read it.
        let source = path::fork_source(&fork.source, STREAM_PREFIX)?;
        principal.authorize(&source, Action::Read)?;
        fork.source = principal.stored_name(&source);
    }
    let request = CreateStream {
        name: stored,
        content_type: content_type(headers)?,
        expiry: protocol::expiry(
            header(headers, STREAM_TTL),
            header(headers, STREAM_EXPIRES_AT),
        )?,
        closed: protocol::is_true(header(headers, STREAM_CLOSED)),
        fork,
        body,
    };
    let created = app.sessions.create(request).await?;
    let status = if created.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    let mut response = status.into_response();
    let out = response.headers_mut();
    metadata_headers(out, &created.info);
    if created.created {
        set(out, header::LOCATION.as_str(), location(headers, name));
    }
    Ok(response)
}

/// The absolute URL of a stream, as the client addressed this server; the name is
/// percent-encoded, so the URL names the stream exactly.
fn location(request: &HeaderMap, name: &str) -> String {
    let host = header(request, header::HOST.as_str()).unwrap_or("localhost");
    let scheme = header(request, "x-forwarded-proto").unwrap_or("http");
    let name = path::encode_name(name);
    format!("{scheme}://{host}{STREAM_PREFIX}{name}")
}

async fn append(
    app: &AppState,
    name: String,
    headers: &HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let close = protocol::is_true(header(headers, STREAM_CLOSED));
    let content_type = content_type(headers)?;
    let producer = protocol::producer(
        header(headers, PRODUCER_ID),
        header(headers, PRODUCER_EPOCH),
        header(headers, PRODUCER_SEQ),
    )?;
    let payload = if body.is_empty() {
        if !close {
            return Err(ProtocolError::EmptyBody.into());
        }
        Payload::default()
    } else {
        let Some(content_type) = &content_type else {
            return Err(ProtocolError::MissingContentType.into());
        };
        Payload::frame(Mode::of(content_type), body, false)?
    };
    let request = AppendRequest {
        content_type,
        payload,
        close,
        stream_seq: header(headers, STREAM_SEQ).map(str::to_owned),
        producer,
    };
    // Parsed before appending, so a bad value refuses the request instead of half-serving it.
    let control_since = header(headers, AGENTWIRE_CONTROL_SINCE)
        .map(Offset::parse)
        .transpose()?;
    let appended = app.sessions.append(&name, request).await?;
    // 200 marks new data from an idempotent producer; everything else (plain appends,
    // close-only requests, duplicates) is 204.
    let wrote_data = appended.kind == AppendKind::Written && appended.tail > appended.start;
    let status = match appended.producer {
        Some(_) if wrote_data => StatusCode::OK,
        _ => StatusCode::NO_CONTENT,
    };
    let pending = match control_since {
        Some(since) => {
            app.sessions
                .control_between(&name, since, appended.start)
                .await?
        }
        None => Vec::new(),
    };
    let mut response = if pending.is_empty() {
        status.into_response()
    } else {
        control_response(&pending)
    };
    let out = response.headers_mut();
    set(out, STREAM_NEXT_OFFSET, appended.tail.to_string());
    if appended.closed {
        set(out, STREAM_CLOSED, "true".into());
    }
    if let Some(producer) = appended.producer {
        set(out, PRODUCER_EPOCH, producer.epoch.to_string());
        set(out, PRODUCER_SEQ, producer.last_seq.to_string());
    }
    Ok(response)
}

/// An agentwire extension to appends: control events the agent has not seen, as
/// `200 {"control":[{"offset":…,"event":{…}}]}` with `Agentwire-Control: <count>`.
fn control_response(pending: &[Event]) -> Response {
    let mut body = String::from(r#"{"control":["#);
    for (i, event) in pending.iter().enumerate() {
        if i > 0 {
            body.push(',');
        }
        body.push_str(&format!(
            r#"{{"offset":"{}","event":{}}}"#,
            event.offset,
            String::from_utf8_lossy(&event.json)
        ));
    }
    body.push_str("]}");
    let mut response = Response::new(Body::from(body));
    let out = response.headers_mut();
    set(
        out,
        header::CONTENT_TYPE.as_str(),
        "application/json".into(),
    );
    set(out, AGENTWIRE_CONTROL, pending.len().to_string());
    response
}

async fn head(app: &AppState, name: String) -> Result<Response, ApiError> {
    let info = app.sessions.head(&name).await?;
    let mut response = StatusCode::OK.into_response();
    let out = response.headers_mut();
    metadata_headers(out, &info);
    set(out, header::CACHE_CONTROL.as_str(), "no-store".into());
    Ok(response)
}

/// Content type, tail, expiry and closure: what HEAD, PUT and reads all report.
fn metadata_headers(out: &mut HeaderMap, info: &StreamInfo) {
    set(
        out,
        header::CONTENT_TYPE.as_str(),
        info.content_type.clone(),
    );
    set(out, STREAM_NEXT_OFFSET, info.tail.to_string());
    match info.expiry {
        Expiry::Never => {}
        Expiry::Ttl { seconds } => set(out, STREAM_TTL, seconds.to_string()),
        Expiry::At { unix_ms } => set(out, STREAM_EXPIRES_AT, format_rfc3339(unix_ms)),
    }
    if info.closed {
        set(out, STREAM_CLOSED, "true".into());
    }
}

async fn read(
    app: &AppState,
    name: String,
    headers: &HeaderMap,
    query: ReadQuery,
) -> Result<Response, ApiError> {
    let from = ReadFrom::parse(query.offset.as_deref())?;
    let chunk = app.config.read_chunk_bytes;
    match query.live.as_deref() {
        None => {
            // Bounded: each read holds up to `chunk` bytes until its body is sent.
            let queue = app.config.read_queue_timeout;
            let permit = match tokio::time::timeout(queue, app.reads.clone().acquire_owned()).await
            {
                Ok(Ok(permit)) => permit,
                _ => return Ok(busy(app.config.max_concurrent_reads)),
            };
            let batch = app.sessions.read(&name, from, chunk).await?;
            Ok(catch_up(batch, from, headers, Some(permit)))
        }
        Some("long-poll") => {
            if query.offset.is_none() {
                return Err(ApiError::bad_request("live=long-poll requires an offset"));
            }
            let timeout = app.config.long_poll_timeout;
            let batch = app.sessions.read_live(&name, from, chunk, timeout).await?;
            let cursor = next_cursor(SystemClock.now_ms(), query.cursor.as_deref());
            if batch.records.is_empty() {
                let mut response = StatusCode::NO_CONTENT.into_response();
                let out = response.headers_mut();
                set(out, STREAM_NEXT_OFFSET, batch.next.to_string());
                set(out, STREAM_UP_TO_DATE, "true".into());
                if batch.info.closed {
                    set(out, STREAM_CLOSED, "true".into());
                } else {
                    set(out, STREAM_CURSOR, cursor);
                }
                return Ok(response);
            }
            let at = ReadFrom::At(batch.from);
            let ended = batch.end_of_stream();
            let mut response = catch_up(batch, at, headers, None);
            if !ended {
                set(response.headers_mut(), STREAM_CURSOR, cursor);
            }
            Ok(response)
        }
        Some("sse") => {
            if !app.config.sse {
                return Err(ApiError::bad_request(
                    "live=sse is not available on this deployment (API Gateway buffers responses): use live=long-poll or the WebSocket API",
                ));
            }
            if query.offset.is_none() {
                return Err(ApiError::bad_request("live=sse requires an offset"));
            }
            let info = app.sessions.head(&name).await?;
            Ok(sse::respond(app, name, info, from, query.cursor))
        }
        Some(other) => Err(ApiError::bad_request(format!(
            "unknown live mode {:?}: expected long-poll or sse",
            other.chars().take(32).collect::<String>()
        ))),
    }
}

/// `503` for a read over `max_concurrent_reads`: not an error of the server, so not
/// logged as one.
fn busy(max_concurrent_reads: usize) -> Response {
    let mut response = (
        StatusCode::SERVICE_UNAVAILABLE,
        format!(
            "too many reads in progress (at most {max_concurrent_reads} at once): retry after 1 s\n"
        ),
    )
        .into_response();
    let out = response.headers_mut();
    set(out, header::RETRY_AFTER.as_str(), "1".into());
    set(
        out,
        header::CONTENT_TYPE.as_str(),
        "text/plain; charset=utf-8".into(),
    );
    response
}

/// Renders a batch as a catch-up (or long-poll data) response; `permit` (a read slot) is
/// held until the body has been sent or dropped.
fn catch_up(
    batch: ReadBatch,
    from: ReadFrom,
    request: &HeaderMap,
    permit: Option<OwnedSemaphorePermit>,
) -> Response {
    let now = matches!(from, ReadFrom::Now);
    let etag = format!(
        "\"{}:{}:{}{}\"",
        batch.info.id,
        batch.from,
        batch.next,
        if batch.end_of_stream() { ":c" } else { "" }
    );
    if !now
        && header(request, header::IF_NONE_MATCH.as_str())
            .is_some_and(|tags| etag_matches(tags, &etag))
    {
        let mut response = StatusCode::NOT_MODIFIED.into_response();
        set(response.headers_mut(), header::ETAG.as_str(), etag);
        return response;
    }
    let mut response = Response::new(Body::new(ReadBody::of(&batch, permit)));
    let out = response.headers_mut();
    set(
        out,
        header::CONTENT_TYPE.as_str(),
        batch.info.content_type.clone(),
    );
    set(out, STREAM_NEXT_OFFSET, batch.next.to_string());
    if batch.up_to_date() {
        set(out, STREAM_UP_TO_DATE, "true".into());
    }
    if batch.end_of_stream() {
        set(out, STREAM_CLOSED, "true".into());
    }
    if now {
        set(out, header::CACHE_CONTROL.as_str(), "no-store".into());
    } else {
        set(out, header::ETAG.as_str(), etag);
        set(
            out,
            header::CACHE_CONTROL.as_str(),
            "private, max-age=60, stale-while-revalidate=300".into(),
        );
    }
    response
}

fn etag_matches(if_none_match: &str, etag: &str) -> bool {
    if_none_match.split(',').any(|tag| {
        let tag = tag.trim();
        tag == "*" || tag == etag || tag.strip_prefix("W/") == Some(etag)
    })
}

/// The body of a catch-up read, sent record by record from the batch's buffers rather
/// than copied into one (its length is known, so it still has a `Content-Length`).
struct ReadBody {
    frames: VecDeque<Bytes>,
    remaining: u64,
    /// The read's slot, freed when the body is done or dropped.
    permit: Option<OwnedSemaphorePermit>,
}

impl ReadBody {
    /// Raw bytes as stored, or the JSON array of the messages: `[`, records joined by
    /// `,`, `]`.
    fn of(batch: &ReadBatch, permit: Option<OwnedSemaphorePermit>) -> ReadBody {
        let json = Mode::of(&batch.info.content_type) == Mode::Json;
        let mut frames = VecDeque::with_capacity(batch.records.len() * 2 + 2);
        if json {
            frames.push_back(Bytes::from_static(b"["));
        }
        for (i, record) in batch.records.iter().enumerate() {
            if json && i > 0 {
                frames.push_back(Bytes::from_static(b","));
            }
            if !record.data.is_empty() {
                frames.push_back(record.data.clone());
            }
        }
        if json {
            frames.push_back(Bytes::from_static(b"]"));
        }
        let remaining = frames.iter().map(|f| f.len() as u64).sum();
        ReadBody {
            frames,
            remaining,
            permit,
        }
    }
}

impl http_body::Body for ReadBody {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
        let next = self.frames.pop_front();
        if let Some(frame) = &next {
            self.remaining -= frame.len() as u64;
        }
        if self.frames.is_empty() {
            self.permit = None;
        }
        std::task::Poll::Ready(next.map(|frame| Ok(http_body::Frame::data(frame))))
    }

    fn is_end_stream(&self) -> bool {
        self.frames.is_empty()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        http_body::SizeHint::with_exact(self.remaining)
    }
}

/// The body of a read: raw bytes, or a JSON array of the messages.
pub(crate) fn render(batch: &ReadBatch) -> Bytes {
    match Mode::of(&batch.info.content_type) {
        Mode::Bytes if batch.records.len() == 1 => batch.records[0].data.clone(),
        Mode::Bytes => batch
            .records
            .iter()
            .flat_map(|r| r.data.iter().copied())
            .collect(),
        Mode::Json => {
            let mut out = Vec::with_capacity(batch.data_len() + batch.records.len() + 2);
            out.push(b'[');
            for (i, record) in batch.records.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                out.extend_from_slice(&record.data);
            }
            out.push(b']');
            Bytes::from(out)
        }
    }
}

pub(crate) fn set(out: &mut HeaderMap, name: &'static str, value: String) {
    if let Ok(value) = HeaderValue::from_str(&value) {
        out.insert(name, value);
    }
}

/// The JSON of an SSE control event.
pub(crate) fn control_event(
    next: &str,
    cursor: Option<String>,
    up_to_date: bool,
    closed: bool,
) -> String {
    let mut control = json!({ "streamNextOffset": next });
    if let Some(cursor) = cursor.filter(|_| !closed) {
        control["streamCursor"] = json!(cursor);
    }
    if up_to_date || closed {
        control["upToDate"] = json!(true);
    }
    if closed {
        control["streamClosed"] = json!(true);
    }
    control.to_string()
}
