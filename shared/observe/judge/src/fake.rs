//! A test double that speaks the real protocol: a local OpenAI-compatible
//! `POST /v1/chat/completions` on `127.0.0.1:0`, answering from a [`Script`]. It answers in
//! the form each request asks for (message content, or a tool call when the request has
//! `tools`; server-sent events when `stream` is true), and records every request so tests
//! can check what left the process (redaction, headers, the structure asked for).
//!
//! Usage is reported as a real server would, but cheaper: a quarter of the bytes (at least
//! one) of the messages' content and of the reply text, below the byte bound the budget
//! reserves, as real tokenizers are.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;
use serde_json::{Value, json};

/// The characters of reply text in each streamed event.
const STREAM_PIECE_CHARS: usize = 8;
/// Streamed bodies go out in network chunks of this many bytes, so the client sees chunk
/// boundaries inside lines and inside UTF-8 characters.
const STREAM_WRITE_BYTES: usize = 13;

/// One scripted answer.
#[derive(Debug, Clone)]
pub enum Reply {
    /// A 200 whose verdict text is this JSON, in the form the request asked for.
    Verdict(Value),
    /// This status, with `Retry-After: <seconds>` when given, and an OpenAI error body.
    Status(u16, Option<u64>),
    /// The inner reply after a delay.
    Slow(Duration, Box<Reply>),
    /// A 200 whose verdict text is this string (malformed content, e.g. not JSON).
    Text(String),
    /// A 200 whose body is not JSON.
    Garbage,
}

type Answer = dyn Fn(&Value) -> Reply + Send + Sync;

/// Replies consumed one per request in order, then a default reply made from each
/// request.
pub struct Script {
    queue: VecDeque<Reply>,
    answer: Box<Answer>,
}

impl Script {
    /// These replies, one per request; any request after them gets a 500.
    pub fn new(replies: impl IntoIterator<Item = Reply>) -> Script {
        Script {
            queue: replies.into_iter().collect(),
            answer: Box::new(|_| Reply::Status(500, None)),
        }
    }

    /// Every request answered with the verdict `f` makes from its body.
    pub fn answer_with(f: impl Fn(&Value) -> Value + Send + Sync + 'static) -> Script {
        Script::reply_with(move |request| Reply::Verdict(f(request)))
    }

    /// Every request answered with the reply `f` makes from its body.
    pub fn reply_with(f: impl Fn(&Value) -> Reply + Send + Sync + 'static) -> Script {
        Script {
            queue: VecDeque::new(),
            answer: Box::new(f),
        }
    }

    /// Every request answered with this verdict.
    pub fn verdict(verdict: Value) -> Script {
        Script::answer_with(move |_| verdict.clone())
    }

    /// This script's replies, then `next`'s replies and default.
    pub fn then(mut self, mut next: Script) -> Script {
        self.queue.append(&mut next.queue);
        Script {
            queue: self.queue,
            answer: next.answer,
        }
    }
}

struct Shared {
    script: Mutex<Script>,
    received: Mutex<Vec<Value>>,
    authorizations: Mutex<Vec<Option<String>>>,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
}

/// A running fake server; it stops when dropped.
pub struct FakeModel {
    shared: Arc<Shared>,
    addr: SocketAddr,
    server: tokio::task::JoinHandle<()>,
}

impl FakeModel {
    /// Starts the server on a free local port.
    ///
    /// # Panics
    /// When no local port can be bound (a test environment problem).
    pub async fn start(script: Script) -> FakeModel {
        let shared = Arc::new(Shared {
            script: Mutex::new(script),
            received: Mutex::default(),
            authorizations: Mutex::default(),
            in_flight: AtomicUsize::new(0),
            max_in_flight: AtomicUsize::new(0),
        });
        let app = axum::Router::new()
            .route("/v1/chat/completions", axum::routing::post(chat))
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("the fake model binds a local port");
        let addr = listener
            .local_addr()
            .expect("a bound listener has an address");
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        FakeModel {
            shared,
            addr,
            server,
        }
    }

    /// `http://127.0.0.1:PORT/v1`, the base URL an OpenAI client is given.
    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    /// Every request body received, in order (a body that is not JSON as a string).
    pub fn received(&self) -> Vec<Value> {
        lock(&self.shared.received).clone()
    }

    /// The `Authorization` header of every request, in order.
    pub fn authorizations(&self) -> Vec<Option<String>> {
        lock(&self.shared.authorizations).clone()
    }

    /// Requests received so far.
    pub fn requests(&self) -> usize {
        lock(&self.shared.received).len()
    }

    /// The most requests that were being answered at once.
    pub fn max_in_flight(&self) -> usize {
        self.shared.max_in_flight.load(Ordering::SeqCst)
    }
}

impl Drop for FakeModel {
    fn drop(&mut self) {
        self.server.abort();
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// Counts a request in flight until dropped (also when the client gives up).
struct InFlight(Arc<Shared>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

async fn chat(State(shared): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    let now = shared.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
    shared.max_in_flight.fetch_max(now, Ordering::SeqCst);
    let _in_flight = InFlight(shared.clone());
    let request: Value = serde_json::from_slice(&body)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&body).into_owned()));
    let authorization = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    lock(&shared.received).push(request.clone());
    lock(&shared.authorizations).push(authorization);
    let mut reply = {
        let mut script = lock(&shared.script);
        match script.queue.pop_front() {
            Some(reply) => reply,
            None => (script.answer)(&request),
        }
    };
    loop {
        reply = match reply {
            Reply::Slow(delay, inner) => {
                tokio::time::sleep(delay).await;
                *inner
            }
            Reply::Verdict(verdict) => return answer(&request, &verdict.to_string()),
            Reply::Text(text) => return answer(&request, &text),
            Reply::Status(status, retry_after) => return status_reply(status, retry_after),
            Reply::Garbage => return respond(StatusCode::OK, "text/html", "<html>oops".into()),
        }
    }
}

fn respond(status: StatusCode, content_type: &str, body: Body) -> Response {
    let mut response = Response::new(body);
    *response.status_mut() = status;
    if let Ok(value) = content_type.parse() {
        response.headers_mut().insert(header::CONTENT_TYPE, value);
    }
    response
}

fn status_reply(status: u16, retry_after: Option<u64>) -> Response {
    let error = json!({"error": {"message": format!("scripted status {status}"), "type": "fake"}});
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = respond(status, "application/json", error.to_string().into());
    if let Some(seconds) = retry_after {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, seconds.into());
    }
    response
}

/// `text` as the reply content, or as the arguments of a call to the request's first tool.
fn answer(request: &Value, text: &str) -> Response {
    let model = request.get("model").cloned().unwrap_or(json!("fake"));
    let tool = request.pointer("/tools/0/function/name").cloned();
    let prompt_bytes: usize = request
        .get("messages")
        .and_then(Value::as_array)
        .map(|ms| {
            ms.iter()
                .filter_map(|m| m["content"].as_str())
                .map(str::len)
                .sum()
        })
        .unwrap_or(0);
    let (prompt_tokens, completion_tokens) = ((prompt_bytes / 4).max(1), (text.len() / 4).max(1));
    let usage = json!({
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    });
    let call = |arguments: &str| {
        json!([{"index": 0, "id": "call_0", "type": "function",
                "function": {"name": tool, "arguments": arguments}}])
    };
    if request.get("stream") != Some(&Value::Bool(true)) {
        let message = match &tool {
            Some(_) => json!({"role": "assistant", "content": null, "tool_calls": call(text)}),
            None => json!({"role": "assistant", "content": text}),
        };
        let body = json!({
            "id": "chatcmpl-fake", "object": "chat.completion", "created": 0, "model": model,
            "choices": [{"index": 0, "message": message,
                         "finish_reason": if tool.is_some() { "tool_calls" } else { "stop" }}],
            "usage": usage,
        });
        return respond(StatusCode::OK, "application/json", body.to_string().into());
    }
    let chunk = |delta: Value| {
        json!({"id": "chatcmpl-fake", "object": "chat.completion.chunk", "model": model,
               "choices": [{"index": 0, "delta": delta}]})
    };
    let mut events = vec![chunk(match &tool {
        Some(_) => json!({"role": "assistant", "tool_calls": call("")}),
        None => json!({"role": "assistant", "content": ""}),
    })];
    let chars: Vec<char> = text.chars().collect();
    for piece in chars.chunks(STREAM_PIECE_CHARS) {
        let piece: String = piece.iter().collect();
        events.push(chunk(match &tool {
            Some(_) => json!({"tool_calls": [{"index": 0, "function": {"arguments": piece}}]}),
            None => json!({"content": piece}),
        }));
    }
    if request.pointer("/stream_options/include_usage") == Some(&Value::Bool(true)) {
        events.push(
            json!({"id": "chatcmpl-fake", "object": "chat.completion.chunk",
                           "model": model, "choices": [], "usage": usage}),
        );
    }
    let mut sse: String = events.iter().map(|e| format!("data: {e}\n\n")).collect();
    sse.push_str("data: [DONE]\n\n");
    let writes: Vec<Result<Bytes, std::io::Error>> = sse
        .as_bytes()
        .chunks(STREAM_WRITE_BYTES)
        .map(|w| Ok(Bytes::copy_from_slice(w)))
        .collect();
    let body = Body::from_stream(futures_util::stream::iter(writes));
    respond(StatusCode::OK, "text/event-stream", body)
}
