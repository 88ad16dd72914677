//! The LLM judge (docs/ARCHITECTURE.md §9.5): a scorer that asks a model to answer a
//! rubric about a trace, within a tenant's daily budget, after the tenant's redaction.
//!
//! - [`config`]: a tenant's `judge.toml` (endpoint, budget, prices, redaction, rubrics).
//! - [`endpoint`]: the port a model is called through, and [`endpoint::Resilient`], which
//!   adds timeouts, retries with backoff and jitter, and a concurrency limit to any of them.
//! - [`openai`]: OpenAI-compatible `chat/completions` (hosted providers, llama.cpp, vLLM).
//! - [`prompt`], [`verdict`]: the prompt a rubric and a trace make, and the reply checked
//!   against the rubric.
//! - [`redact`], [`sample`]: what leaves for the endpoint, and which traces are judged.
//! - [`budget`]: the daily spend port (SQLite and DynamoDB adapters keep it atomic).
//! - [`judge`]: one trace judged against one rubric, every failure a recorded outcome.
//! - [`calibrate`]: a rubric's prompt variants compared on items the experts graded.
//! - [`job`]: the job that judges every scored trace of a tenant with a `judge.toml`.

/// The daily spend port (in `agentwire-scoring`, beside the score index, so store adapters
/// need not depend on the judge).
pub use agentwire_scoring::budget;
pub mod calibrate;
pub mod config;
pub mod endpoint;
#[cfg(feature = "fake-server")]
pub mod fake;
pub mod job;
pub mod judge;
pub mod openai;
pub mod prompt;
pub mod redact;
pub mod sample;
pub mod verdict;

pub use budget::{BudgetLedger, Caps, Charge, LedgerError};
pub use endpoint::{
    AttemptGate, ChatMessage, ChatReply, ChatRequest, EndpointError, Gated, ModelEndpoint,
    Resilient, RetryPolicy, Structured, TokenUsage,
};
