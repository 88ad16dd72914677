//! Live reads as Server-Sent Events (DS §5.8).
//!
//! Every data event is written together with the control event that follows it, in one
//! body frame, so a client never sees data without the offset after it.

use std::time::Duration;

use agentwire_session::headers::next_cursor;
use agentwire_session::{Clock, Mode, ReadBatch, ReadFrom, StreamInfo, SystemClock};
use axum::body::{Body, Bytes};
use axum::response::Response;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use futures_util::stream;
use http::{HeaderValue, header};
use tokio::time::Instant;

use crate::AppState;
use crate::headers::STREAM_SSE_DATA_ENCODING;
use crate::stream::{control_event, render};

/// What the SSE body stream carries between polls.
struct Tail {
    app: AppState,
    name: String,
    from: ReadFrom,
    cursor: Option<String>,
    base64: bool,
    deadline: Instant,
    first: bool,
    done: bool,
}

/// Starts an SSE response for a stream known to exist.
pub(crate) fn respond(
    app: &AppState,
    name: String,
    info: StreamInfo,
    from: ReadFrom,
    cursor: Option<String>,
) -> Response {
    let media = agentwire_session::content::media_type(&info.content_type);
    let base64 = Mode::of(&info.content_type) == Mode::Bytes && !media.starts_with("text/");
    let state = Tail {
        deadline: Instant::now() + app.config.sse_max_duration,
        app: app.clone(),
        name,
        from,
        cursor,
        base64,
        first: true,
        done: false,
    };
    let events = stream::unfold(state, |mut tail| async move {
        if tail.done {
            return None;
        }
        let frame = tail.next_frame().await;
        Some((Ok::<Bytes, std::convert::Infallible>(frame), tail))
    });
    let mut response = Response::new(Body::from_stream(events));
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    if base64 {
        headers.insert(STREAM_SSE_DATA_ENCODING, HeaderValue::from_static("base64"));
    }
    response
}

impl Tail {
    /// The next body frame: data with its control event, a control event alone when the
    /// client starts caught up or reaches the end of the stream, or an idle keep-alive.
    async fn next_frame(&mut self) -> Bytes {
        let chunk = self.app.config.read_chunk_bytes;
        let sessions = &self.app.sessions;
        let result = if self.first {
            sessions.read(&self.name, self.from, chunk).await
        } else {
            let remaining = self.deadline.saturating_duration_since(Instant::now());
            let wait = remaining.min(self.app.config.long_poll_timeout);
            sessions.read_live(&self.name, self.from, chunk, wait).await
        };
        let first = std::mem::replace(&mut self.first, false);
        let batch = match result {
            Ok(batch) => batch,
            Err(error) => {
                // The stream went away mid-flight (deleted or expired): end the response.
                self.done = true;
                return Bytes::from(format!(
                    "event: error\ndata:{}\n\n",
                    escape_line(&error.to_string())
                ));
            }
        };
        self.from = ReadFrom::At(batch.next);
        let closed = batch.end_of_stream();
        let out_of_time = Instant::now() + Duration::from_millis(1) >= self.deadline;
        self.done = closed || out_of_time || sessions.is_stopping();
        if !first && batch.records.is_empty() && !closed {
            // Idle: a comment keeps proxies from timing the connection out and repeats no offset.
            return Bytes::from_static(b": keep-alive\n\n");
        }
        let cursor = (!closed).then(|| next_cursor(SystemClock.now_ms(), self.cursor.as_deref()));
        self.cursor.clone_from(&cursor);
        let mut frame = String::new();
        if !batch.records.is_empty() {
            self.push_data(&mut frame, &batch);
        }
        let control = control_event(&batch.next.to_string(), cursor, batch.up_to_date(), closed);
        frame.push_str("event: control\ndata:");
        frame.push_str(&control);
        frame.push_str("\n\n");
        Bytes::from(frame)
    }

    fn push_data(&self, frame: &mut String, batch: &ReadBatch) {
        let body = render(batch);
        frame.push_str("event: data\n");
        if self.base64 {
            frame.push_str("data:");
            frame.push_str(&BASE64.encode(&body));
            frame.push('\n');
        } else {
            // Text and JSON go line by line: each of CRLF, CR and LF ends an SSE line, so a
            // payload can never inject an event of its own.
            let text = String::from_utf8_lossy(&body);
            for line in text.split("\r\n").flat_map(|l| l.split(['\r', '\n'])) {
                frame.push_str("data:");
                frame.push_str(line);
                frame.push('\n');
            }
        }
        frame.push('\n');
    }
}

fn escape_line(text: &str) -> String {
    text.replace(['\r', '\n'], " ")
}
