//! The span record written to the archive, in the OTLP JSON style with snake_case names.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

/// One span of a session's trace: one line of the archive.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Span {
    /// 32 lowercase hex digits, the same for every span of a session (see [`trace_id`]).
    pub trace_id: String,
    /// 16 lowercase hex digits, derived from the trace id and the span's stable key
    /// (`root`, `agent:<path>`, `message:<id>`, `tool:<call id>`), so re-archiving a
    /// session gives the same ids.
    pub span_id: String,
    /// The parent's `span_id`; `None` only for the root span.
    pub parent_span_id: Option<String>,
    /// `invoke_agent <agent>`, `chat [<model>]` or `execute_tool <tool>`.
    pub name: String,
    pub kind: SpanKind,
    /// Unix time in nanoseconds, as a JSON number (OTLP/JSON exporters write it as a string).
    pub start_time_unix_nano: u64,
    /// Unix time in nanoseconds; never before `start_time_unix_nano`.
    pub end_time_unix_nano: u64,
    /// `gen_ai.*` and `agentwire.*` attributes; structured values are JSON strings.
    pub attributes: Map<String, Value>,
    /// Session events that are not spans of their own (control, presence, status, …).
    pub events: Vec<SpanEvent>,
    pub status: SpanStatus,
}

/// A point in time within a span.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SpanEvent {
    /// The session event's `type`, e.g. `control.cancel`.
    pub name: String,
    /// Unix time in nanoseconds.
    pub time_unix_nano: u64,
    pub attributes: Map<String, Value>,
}

/// OpenTelemetry span kind: `client` for calls to a model, `internal` for the rest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SpanKind {
    Internal,
    Client,
}

/// OpenTelemetry span status. Success stays `unset`, as OpenTelemetry advises for
/// instrumentation; `error` comes with an `error.type` attribute saying why.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SpanStatus {
    Unset,
    Ok,
    Error,
}

/// The trace id of a tenant's session: the first 16 bytes of a SHA-256 over both names,
/// length-prefixed so that no two (tenant, session) pairs share an input.
pub fn trace_id(tenant: &str, session: &str) -> String {
    let digest = Sha256::new()
        .chain_update(b"agentwire-trace\0")
        .chain_update((tenant.len() as u64).to_be_bytes())
        .chain_update(tenant)
        .chain_update(session)
        .finalize();
    hex(&digest[..16])
}

/// The id of the span with stable `key` within `trace_id`: the first 8 bytes of a SHA-256
/// over both, so every door that derives its spans' keys deterministically (the archiver,
/// the importers) gives the same ids on every run.
pub fn span_id(trace_id: &str, key: &str) -> String {
    let digest = Sha256::new()
        .chain_update(trace_id)
        .chain_update(b"\0")
        .chain_update(key)
        .finalize();
    hex(&digest[..8])
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
