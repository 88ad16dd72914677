//! Sessions as traces (docs/ARCHITECTURE.md §9.1): one session's events become one
//! OpenTelemetry trace in the GenAI semantic conventions' shape, archived as gzip JSON
//! lines. Pure logic: the archiver reads the session and writes the bytes.
//!
//! The session is the trace; its id is derived from tenant and session, and every span id
//! from the trace id and a stable key, so archiving a session again gives the same ids.
//! Spans, root first:
//!
//! - **root**, `invoke_agent <root agent>`: the whole session. The root agent is the first
//!   segment of the first `agent` path (`planner` for `planner/search-1`); its events and
//!   those without an agent belong here. `gen_ai.conversation.id`, `agentwire.tenant`,
//!   `agentwire.session`, `agentwire.events`, `agentwire.events.skipped`,
//!   `agentwire.first_offset`, `agentwire.last_offset`.
//! - **agent**, `invoke_agent <path>`, one per other `agent` path: under the message its
//!   events' `parent` names (if another agent wrote it), else the nearest agent up its path
//!   (`a/b` → `a`), else the root. `gen_ai.agent.name`.
//! - **message**, `chat [<model>]`, one per `message.*` id: under its agent (a user's
//!   message under the root). Text from the deltas' `data.text` in `gen_ai.output.messages`
//!   (`gen_ai.input.messages` for role `user`), `agentwire.message.role`, finish reason;
//!   status error when it ended stopped (a cancel) or with a failure reason or `error`.
//!   `gen_ai.request.model`, `gen_ai.response.model` and `gen_ai.usage.*` when present;
//!   `agentwire.first_token_unix_nano`, the time of its first delta with text.
//! - **tool**, `execute_tool <name>`, one per `tool.call`/`tool.result` id: under the
//!   message its `parent` names if its own agent wrote it, else its agent. Name from
//!   `data.tool`, `gen_ai.tool.call.arguments` and `.result` as JSON; status error when the
//!   result carries `error`.
//! - **span events**, not spans: `control.*`, `presence.*`, `agent.status` and unknown
//!   types, on their agent's span (the root without an agent).
//!
//! Every span has `agentwire.offset.start`/`.end` (its first and last event) and runs from
//! its earliest to its latest event time: `ts` (unix ms) when an event has it, else the
//! server time (when the log committed its append, kept with every record), else the
//! previous event's time, else the session's first known time, else the archive time.

mod archive;
mod build;
mod ports;
mod span;

pub use archive::{ObjectKey, TraceError, decode_jsonl_gz, encode_jsonl_gz, object_key, utc_day};
pub use build::{SessionEvent, TraceContext, build_trace};
pub use ports::{ActivityIndex, ArchiveError, TraceArchive, find_trace};
pub use span::{Span, SpanEvent, SpanKind, SpanStatus, span_id, trace_id};
