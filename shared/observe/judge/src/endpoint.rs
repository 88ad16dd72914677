//! The port a judge model is called through. An endpoint makes one attempt per call;
//! [`Resilient`] wraps any endpoint with a timeout per attempt, retries with exponential
//! backoff and full jitter on 429, 5xx and network errors (honouring `Retry-After`), and a
//! limit on calls in flight.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

/// One message of a chat request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatMessage {
    /// `system`, `user` or `assistant`.
    pub role: String,
    pub content: String,
}

impl ChatMessage {
    pub fn system(content: impl Into<String>) -> ChatMessage {
        ChatMessage {
            role: "system".into(),
            content: content.into(),
        }
    }
    pub fn user(content: impl Into<String>) -> ChatMessage {
        ChatMessage {
            role: "user".into(),
            content: content.into(),
        }
    }
    pub fn assistant(content: impl Into<String>) -> ChatMessage {
        ChatMessage {
            role: "assistant".into(),
            content: content.into(),
        }
    }
}

/// How the endpoint is asked for a structured verdict.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Structured {
    /// `response_format: {type: json_schema, json_schema: {strict: true, schema}}`.
    #[default]
    JsonSchema,
    /// One forced tool (function) call whose parameters are the schema; the verdict is its
    /// arguments.
    Tool,
    /// `response_format: {type: json_object}`: JSON, shape not enforced by the server.
    JsonObject,
    /// Nothing asked of the server: the prompt alone asks for JSON.
    None,
}

/// A request for one completion.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ChatRequest {
    pub model: String,
    pub messages: Vec<ChatMessage>,
    /// The most tokens the reply may have (the budget reserves this many).
    pub max_tokens: u32,
    pub temperature: f32,
    /// The JSON schema the verdict must match, used as [`Structured`] says.
    pub schema: serde_json::Value,
    /// The name of the schema (and of the tool, for [`Structured::Tool`]).
    pub schema_name: String,
    pub structured: Structured,
    /// Ask for a streamed reply (server-sent events) and assemble it.
    pub stream: bool,
}

/// Tokens a call used, as the endpoint reported them: the same figures a judge's score
/// records carry.
pub use agentwire_scoring::RecordUsage as TokenUsage;

/// What the endpoint answered: the verdict's text (the message content, or the forced tool
/// call's arguments), the model that answered, and the tokens used.
#[derive(Debug, Clone, PartialEq)]
pub struct ChatReply {
    pub text: String,
    pub model: String,
    /// `None` when the endpoint did not report usage (the budget then keeps what it
    /// reserved).
    pub usage: Option<TokenUsage>,
}

/// Why a call failed. Messages never quote the request (it holds a user's conversation);
/// a server's error body is cut to its first 200 characters.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum EndpointError {
    /// No reply within the timeout.
    #[error("no reply within {after_ms} ms")]
    Timeout { after_ms: u64 },
    /// An HTTP status other than success; `retry_after_ms` from a `Retry-After` header.
    #[error("HTTP {status}: {message}")]
    Status {
        status: u16,
        message: String,
        retry_after_ms: Option<u64>,
    },
    /// No connection could be made (refused, DNS): the request was never sent.
    #[error("unreachable: {0}")]
    Unreachable(String),
    /// The connection failed after the request may have been sent (reset, a body cut).
    #[error("transport: {0}")]
    Transport(String),
    /// A reply that is not the protocol (not JSON, no choices, a stream that never ended).
    #[error("protocol: {0}")]
    Protocol(String),
    /// The request cannot be sent as configured (no key, a bad URL); not retried.
    #[error("configuration: {0}")]
    Config(String),
}

impl EndpointError {
    /// 429, 5xx, timeouts and transport failures are worth another attempt.
    pub fn is_retryable(&self) -> bool {
        match self {
            EndpointError::Status { status, .. } => *status == 429 || *status >= 500,
            EndpointError::Timeout { .. }
            | EndpointError::Transport(_)
            | EndpointError::Unreachable(_) => true,
            EndpointError::Protocol(_) | EndpointError::Config(_) => false,
        }
    }
}

impl EndpointError {
    /// Whether the model certainly did not run, so nothing can have been billed: the
    /// request was never sent, or a 4xx refused it (429 included).
    pub fn never_ran(&self) -> bool {
        match self {
            EndpointError::Config(_) | EndpointError::Unreachable(_) => true,
            EndpointError::Status { status, .. } => (400..500).contains(status),
            _ => false,
        }
    }
}

/// Asked before every attempt of a call, and told how each ended: how a budget pays for
/// each attempt (retries included) before it is made.
#[async_trait]
pub trait AttemptGate: Send + Sync {
    /// Whether another attempt may be made.
    async fn admit(&self) -> bool;
    /// How the attempt just admitted ended.
    async fn settle(&self, outcome: &Result<ChatReply, EndpointError>);
}

/// How a gated call ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Gated {
    /// The last attempt's result.
    Done(Result<ChatReply, EndpointError>),
    /// The gate refused an attempt; `last` is the error of the one before, if any.
    Refused { last: Option<EndpointError> },
}

/// A model behind some protocol: one attempt per call.
#[async_trait]
pub trait ModelEndpoint: Send + Sync {
    /// A short description for logs and records (`openai:http://host/v1`, `bedrock:eu-west-1`).
    fn describe(&self) -> String;
    async fn complete(&self, request: &ChatRequest) -> Result<ChatReply, EndpointError>;

    /// `complete` with every attempt admitted and settled by `gate` (one attempt here;
    /// [`Resilient`] asks before each retry too).
    async fn complete_gated(&self, request: &ChatRequest, gate: &dyn AttemptGate) -> Gated {
        if !gate.admit().await {
            return Gated::Refused { last: None };
        }
        let outcome = self.complete(request).await;
        gate.settle(&outcome).await;
        Gated::Done(outcome)
    }
}

/// Retries and timeouts of [`Resilient`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts after the first.
    pub max_retries: u32,
    /// The first backoff's ceiling; doubled each retry, up to `max_backoff`.
    pub base_backoff: Duration,
    pub max_backoff: Duration,
    /// One attempt's limit.
    pub timeout: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_retries: 3,
            base_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(20),
            timeout: Duration::from_secs(60),
        }
    }
}

/// Any endpoint with a timeout per attempt, retries, and at most `concurrency` calls in
/// flight (callers beyond it wait their turn).
pub struct Resilient {
    inner: Arc<dyn ModelEndpoint>,
    policy: RetryPolicy,
    permits: Arc<tokio::sync::Semaphore>,
}

impl Resilient {
    pub fn new(
        inner: Arc<dyn ModelEndpoint>,
        policy: RetryPolicy,
        concurrency: usize,
    ) -> Resilient {
        Resilient {
            inner,
            policy,
            permits: Arc::new(tokio::sync::Semaphore::new(concurrency.max(1))),
        }
    }
}

#[async_trait]
impl ModelEndpoint for Resilient {
    fn describe(&self) -> String {
        self.inner.describe()
    }

    /// The permit is held across the backoff sleeps: a call being throttled keeps its
    /// slot, so retries add no load beyond `concurrency` and waiting callers do not
    /// rush a server that just answered 429.
    async fn complete(&self, request: &ChatRequest) -> Result<ChatReply, EndpointError> {
        match self.complete_gated(request, &Open).await {
            Gated::Done(result) => result,
            Gated::Refused { last } => Err(last.unwrap_or_else(|| {
                EndpointError::Config("the call was refused before it was made".into())
            })),
        }
    }

    async fn complete_gated(&self, request: &ChatRequest, gate: &dyn AttemptGate) -> Gated {
        let Ok(_permit) = self.permits.acquire().await else {
            return Gated::Done(Err(EndpointError::Config(
                "the concurrency limit was closed".into(),
            )));
        };
        let mut attempt = 0;
        let mut last = None;
        loop {
            if !gate.admit().await {
                return Gated::Refused { last };
            }
            let outcome =
                match tokio::time::timeout(self.policy.timeout, self.inner.complete(request)).await
                {
                    Ok(outcome) => outcome,
                    Err(_) => Err(EndpointError::Timeout {
                        after_ms: millis(self.policy.timeout),
                    }),
                };
            gate.settle(&outcome).await;
            let error = match outcome {
                Ok(reply) => return Gated::Done(Ok(reply)),
                Err(error) => error,
            };
            if !error.is_retryable() || attempt >= self.policy.max_retries {
                return Gated::Done(Err(error));
            }
            tracing::debug!(endpoint = %self.inner.describe(), attempt, %error, "retrying");
            tokio::time::sleep(backoff(&self.policy, attempt, &error)).await;
            last = Some(error);
            attempt += 1;
        }
    }
}

/// Admits every attempt.
struct Open;

#[async_trait]
impl AttemptGate for Open {
    async fn admit(&self) -> bool {
        true
    }
    async fn settle(&self, _: &Result<ChatReply, EndpointError>) {}
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Full jitter: uniform in `[0, min(max_backoff, base_backoff * 2^attempt)]`, but never
/// less than a `Retry-After` the server gave (itself capped at `max_backoff`).
fn backoff(policy: &RetryPolicy, attempt: u32, error: &EndpointError) -> Duration {
    let ceiling = policy
        .base_backoff
        .checked_mul(1u32.checked_shl(attempt).unwrap_or(u32::MAX))
        .unwrap_or(policy.max_backoff)
        .min(policy.max_backoff);
    let jittered = Duration::from_millis(fastrand::u64(0..=millis(ceiling)));
    match error {
        EndpointError::Status {
            retry_after_ms: Some(ms),
            ..
        } => jittered.max(Duration::from_millis(*ms).min(policy.max_backoff)),
        _ => jittered,
    }
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    /// Answers from a script, one entry per attempt; an entry with a delay sleeps first.
    #[derive(Default)]
    struct Scripted {
        script: Mutex<VecDeque<(Duration, Result<ChatReply, EndpointError>)>>,
        calls: AtomicUsize,
        in_flight: AtomicUsize,
        max_in_flight: AtomicUsize,
    }

    impl Scripted {
        fn new(script: Vec<Result<ChatReply, EndpointError>>) -> Arc<Scripted> {
            Arc::new(Scripted {
                script: Mutex::new(script.into_iter().map(|r| (Duration::ZERO, r)).collect()),
                ..Scripted::default()
            })
        }
        fn calls(&self) -> usize {
            self.calls.load(Ordering::SeqCst)
        }
    }

    #[async_trait]
    impl ModelEndpoint for Scripted {
        fn describe(&self) -> String {
            "scripted".into()
        }
        async fn complete(&self, _: &ChatRequest) -> Result<ChatReply, EndpointError> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
            self.max_in_flight.fetch_max(now, Ordering::SeqCst);
            let (delay, reply) = self
                .script
                .lock()
                .unwrap()
                .pop_front()
                .unwrap_or((Duration::from_millis(5), Ok(ok())));
            tokio::time::sleep(delay).await;
            self.in_flight.fetch_sub(1, Ordering::SeqCst);
            reply
        }
    }

    fn ok() -> ChatReply {
        ChatReply {
            text: "{}".into(),
            model: "m".into(),
            usage: None,
        }
    }

    fn status(status: u16, retry_after_ms: Option<u64>) -> Result<ChatReply, EndpointError> {
        Err(EndpointError::Status {
            status,
            message: "no".into(),
            retry_after_ms,
        })
    }

    fn request() -> ChatRequest {
        ChatRequest {
            model: "m".into(),
            messages: vec![ChatMessage::user("hi")],
            max_tokens: 10,
            temperature: 0.0,
            schema: serde_json::json!({}),
            schema_name: "verdict".into(),
            structured: Structured::JsonSchema,
            stream: false,
        }
    }

    fn policy(max_retries: u32) -> RetryPolicy {
        RetryPolicy {
            max_retries,
            base_backoff: Duration::from_millis(1),
            max_backoff: Duration::from_millis(4),
            timeout: Duration::from_secs(5),
        }
    }

    #[tokio::test]
    async fn retries_429_and_500_then_succeeds() {
        let inner = Scripted::new(vec![status(429, None), status(500, None), Ok(ok())]);
        let resilient = Resilient::new(inner.clone(), policy(3), 1);
        assert_eq!(resilient.complete(&request()).await, Ok(ok()));
        assert_eq!(inner.calls(), 3);
    }

    #[tokio::test]
    async fn does_not_retry_400_or_protocol_errors() {
        for error in [status(400, None), Err(EndpointError::Protocol("x".into()))] {
            let inner = Scripted::new(vec![error.clone(), Ok(ok())]);
            let resilient = Resilient::new(inner.clone(), policy(3), 1);
            assert_eq!(resilient.complete(&request()).await, error);
            assert_eq!(inner.calls(), 1);
        }
    }

    #[tokio::test]
    async fn gives_up_after_max_retries_with_the_last_error() {
        let inner = Scripted::new(vec![
            status(503, None),
            status(502, None),
            status(500, None),
            Ok(ok()),
        ]);
        let resilient = Resilient::new(inner.clone(), policy(2), 1);
        assert_eq!(resilient.complete(&request()).await, status(500, None));
        assert_eq!(inner.calls(), 3);
    }

    #[tokio::test]
    async fn each_attempt_is_timed_out_and_retried() {
        let inner = Scripted::new(vec![]);
        inner
            .script
            .lock()
            .unwrap()
            .push_back((Duration::from_secs(30), Ok(ok())));
        let resilient = Resilient::new(
            inner.clone(),
            RetryPolicy {
                timeout: Duration::from_millis(50),
                ..policy(0)
            },
            1,
        );
        assert_eq!(
            resilient.complete(&request()).await,
            Err(EndpointError::Timeout { after_ms: 50 })
        );
        let resilient = Resilient::new(
            inner.clone(),
            RetryPolicy {
                timeout: Duration::from_millis(50),
                ..policy(1)
            },
            1,
        );
        inner
            .script
            .lock()
            .unwrap()
            .push_back((Duration::from_secs(30), Ok(ok())));
        assert_eq!(resilient.complete(&request()).await, Ok(ok()));
        assert_eq!(inner.calls(), 3);
    }

    #[test]
    fn backoff_is_jittered_under_a_doubling_ceiling_and_honours_retry_after() {
        let policy = RetryPolicy {
            base_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_millis(1000),
            ..policy(3)
        };
        let plain = EndpointError::Transport("reset".into());
        for (attempt, ceiling) in [
            (0, 100),
            (1, 200),
            (2, 400),
            (3, 800),
            (4, 1000),
            (40, 1000),
        ] {
            let waits: Vec<_> = (0..200)
                .map(|_| backoff(&policy, attempt, &plain))
                .collect();
            assert!(waits.iter().all(|w| *w <= Duration::from_millis(ceiling)));
            assert!(
                waits
                    .iter()
                    .any(|w| *w < Duration::from_millis(ceiling / 2))
            );
        }
        let throttled = status(429, Some(300)).unwrap_err();
        assert!(backoff(&policy, 0, &throttled) >= Duration::from_millis(300));
        let long = status(429, Some(60_000)).unwrap_err();
        assert_eq!(backoff(&policy, 0, &long), Duration::from_millis(1000));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn never_more_calls_in_flight_than_the_limit() {
        let inner = Scripted::new(vec![]);
        let resilient = Arc::new(Resilient::new(inner.clone(), policy(0), 3));
        let callers: Vec<_> = (0..16)
            .map(|_| {
                let resilient = resilient.clone();
                tokio::spawn(async move { resilient.complete(&request()).await })
            })
            .collect();
        for caller in callers {
            assert_eq!(caller.await.unwrap(), Ok(ok()));
        }
        assert_eq!(inner.calls(), 16);
        assert_eq!(inner.max_in_flight.load(Ordering::SeqCst), 3);
    }
}
