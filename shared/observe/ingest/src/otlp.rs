//! OTLP trace export requests to the archive's trace model.
//!
//! [`decode_protobuf`] and [`decode_json`] read an `ExportTraceServiceRequest` as the OTLP
//! specification encodes it (binary protobuf, or OTLP/JSON: lowerCamelCase keys, hex ids,
//! 64-bit integers as strings or numbers, enums as integers). [`map_request`] turns its
//! spans into [`Span`]s grouped by session, and [`merge_session`] folds them into what the
//! archive already holds for that session and gives the session its root span.
//!
//! **Sessions.** A trace's session is the first non-empty `gen_ai.conversation.id`, else
//! `session.id`, else `ai.telemetry.metadata.sessionId`, found on any of its spans in the
//! request (then on its resource), else its trace id (32 hex digits). Traces naming the same
//! session share its archive object, so a conversation exported as one trace per turn is
//! one trace in the archive.
//!
//! **The session root.** OTLP traces have no span standing for the whole session, which
//! the archive's model requires: [`merge_session`] adds one, `invoke_agent <agent>`, with
//! span id [`session_root_id`] (stable per tenant and session), the trace id
//! `agentwire_trace::trace_id(tenant, session)` (as the archiver gives a session), `agentwire.source = "otlp"` and
//! `agentwire.otlp.trace_ids` (a JSON array of the OTLP trace ids in the object), and hangs
//! every OTLP root span (no parent) under it. It runs from the earliest span's start to the
//! latest span's end.
//!
//! **Mapping.** Every attribute that came is kept (resource attributes too, on each span
//! that does not set the same key; the scope as `otel.scope.name`/`otel.scope.version`);
//! the normalised `gen_ai.*`/`agentwire.*` attributes of the contract are added where the
//! span does not carry them already. A span is a
//! - **chat** span when `gen_ai.operation.name` is `chat`, `text_completion` or
//!   `generate_content`, OpenInference's `openinference.span.kind` is `LLM`, the Vercel AI
//!   SDK's `ai.operationId` ends in `.doGenerate`/`.doStream`, or it carries old-style
//!   `gen_ai.prompt`/`gen_ai.completion` content (attributes, flattened `.N.` attributes or
//!   `gen_ai.*.message`/`gen_ai.choice` events);
//! - **tool** span when `gen_ai.operation.name` is `execute_tool`, the OpenInference kind
//!   is `TOOL` or `RETRIEVER` (retrieval: `agentwire.tool.retrieval = true`, the documents
//!   as its result), or `ai.operationId` is `ai.toolCall`;
//! - **agent** span when `gen_ai.operation.name` is `invoke_agent`/`create_agent`, the
//!   OpenInference kind is `AGENT`, or `ai.operationId` is one of the SDK's outer calls
//!   (`ai.generateText`, `ai.streamText`, `ai.generateObject`, `ai.streamObject`);
//! - else kept as it came.
//!
//! Span names are kept as they came. **Validation**: a span whose trace id is not 16
//! bytes, or span id not 8 bytes, or either all zero, or whose parent id is neither empty
//! nor 8 bytes, is rejected, counted and described ([`Ingested::rejected_spans`]), never
//! dropped silently.

use std::collections::{BTreeMap, HashMap};

use agentwire_trace::{Span, SpanEvent, SpanKind, SpanStatus};
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::trace::v1 as otlp;
use prost::Message;
use serde_json::{Map, Value, json};

pub use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTracePartialSuccess, ExportTraceServiceRequest, ExportTraceServiceResponse,
};

/// Session names longer than this (in bytes) are refused: the archive key holds the name
/// percent-escaped, and object stores cap keys at 1024 bytes.
pub const MAX_SESSION_BYTES: usize = 256;

/// How many rejected spans [`Ingested::error_message`] describes one by one.
const DESCRIBED_ERRORS: usize = 5;

/// A request body that is not an `ExportTraceServiceRequest`.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("the body is not a protobuf ExportTraceServiceRequest: {0}")]
    Protobuf(#[source] prost::DecodeError),
    #[error("the body is not an OTLP/JSON ExportTraceServiceRequest: {0}")]
    Json(#[source] serde_json::Error),
}

/// Reads a binary protobuf `ExportTraceServiceRequest` (`application/x-protobuf`).
pub fn decode_protobuf(body: &[u8]) -> Result<ExportTraceServiceRequest, DecodeError> {
    ExportTraceServiceRequest::decode(body).map_err(DecodeError::Protobuf)
}

/// Reads an OTLP/JSON `ExportTraceServiceRequest` (`application/json`).
///
/// Beyond what `opentelemetry-proto`'s serde support reads (lowerCamelCase keys, hex ids,
/// 64-bit integers as strings or numbers, unknown keys ignored), this accepts `null` for
/// any field (the protobuf JSON mapping's "default value") and enum names
/// (`"SPAN_KIND_CLIENT"`, `"STATUS_CODE_ERROR"`) where the spec asks for integers.
pub fn decode_json(body: &[u8]) -> Result<ExportTraceServiceRequest, DecodeError> {
    let mut value: Value = serde_json::from_slice(body).map_err(DecodeError::Json)?;
    tolerate(&mut value);
    serde_json::from_value(value).map_err(DecodeError::Json)
}

/// Removes `null` members and turns enum names into their numbers, in place.
fn tolerate(value: &mut Value) {
    match value {
        Value::Object(object) => {
            object.retain(|_, v| !v.is_null());
            for (key, member) in object.iter_mut() {
                if let (Some(number), true) = (
                    member.as_str().and_then(enum_number),
                    key == "kind" || key == "code",
                ) {
                    *member = number.into();
                } else {
                    tolerate(member);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(tolerate),
        _ => {}
    }
}

fn enum_number(name: &str) -> Option<i32> {
    otlp::span::SpanKind::from_str_name(name)
        .map(|k| k as i32)
        .or_else(|| otlp::status::StatusCode::from_str_name(name).map(|c| c as i32))
}

/// The spans of one session from one request, not yet merged with the archive.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionSpans {
    pub session: String,
    /// Mapped spans, in request order; OTLP root spans still without a parent.
    pub spans: Vec<Span>,
}

impl SessionSpans {
    /// The earliest span start, unix milliseconds: what the session's archive key is dated by.
    pub fn earliest_ms(&self) -> i64 {
        let nanos = self
            .spans
            .iter()
            .map(|s| s.start_time_unix_nano)
            .min()
            .unwrap_or(0);
        i64::try_from(nanos / 1_000_000).unwrap_or(i64::MAX)
    }
}

/// What a request held: its spans by session, and the spans it rejected.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Ingested {
    /// One entry per session, in order of first appearance.
    pub sessions: Vec<SessionSpans>,
    /// Spans rejected (OTLP partial success's `rejected_spans`).
    pub rejected_spans: i64,
    /// Why, one line per rejected span (`resource_spans[0].scope_spans[1].spans[2]: …`).
    pub errors: Vec<String>,
}

impl Ingested {
    /// OTLP partial success's `error_message`: the first few reasons, and how many more.
    pub fn error_message(&self) -> String {
        let mut message = self
            .errors
            .iter()
            .take(DESCRIBED_ERRORS)
            .cloned()
            .collect::<Vec<_>>()
            .join("; ");
        if self.errors.len() > DESCRIBED_ERRORS {
            message.push_str(&format!(
                "; and {} more",
                self.errors.len() - DESCRIBED_ERRORS
            ));
        }
        message
    }

    /// Rejects the spans of `session` (already mapped) for `reason`, e.g. a token not
    /// covering it.
    pub fn reject_session(&mut self, session: &str, reason: &str) {
        if let Some(at) = self.sessions.iter().position(|s| s.session == session) {
            let gone = self.sessions.remove(at);
            self.rejected_spans += gone.spans.len() as i64;
            self.errors.push(format!("session {session:?}: {reason}"));
        }
    }
}

/// A span of the request, validated, before its trace's session is known.
struct Pending {
    span: Span,
    /// Its resource's attributes (for the session fallback).
    resource: usize,
}

/// Maps every span of `request` (see the module doc), grouping them by session.
pub fn map_request(request: &ExportTraceServiceRequest) -> Ingested {
    let mut ingested = Ingested::default();
    let mut pending: Vec<Pending> = Vec::new();
    let mut resources: Vec<Map<String, Value>> = Vec::new();
    for (r, resource_spans) in request.resource_spans.iter().enumerate() {
        let resource = resource_spans
            .resource
            .as_ref()
            .map(|r| attributes(&r.attributes))
            .unwrap_or_default();
        for (s, scope_spans) in resource_spans.scope_spans.iter().enumerate() {
            let scope = scope_spans.scope.as_ref();
            for (i, span) in scope_spans.spans.iter().enumerate() {
                match validate(span) {
                    Err(reason) => {
                        ingested.rejected_spans += 1;
                        ingested.errors.push(format!(
                            "resource_spans[{r}].scope_spans[{s}].spans[{i}]: {reason}"
                        ));
                    }
                    Ok(()) => {
                        let mut mapped = convert(span);
                        for (key, value) in &resource {
                            if !mapped.attributes.contains_key(key) {
                                mapped.attributes.insert(key.clone(), value.clone());
                            }
                        }
                        if let Some(scope) = scope {
                            if !scope.name.is_empty() {
                                set_absent(&mut mapped.attributes, "otel.scope.name", &scope.name);
                            }
                            if !scope.version.is_empty() {
                                set_absent(
                                    &mut mapped.attributes,
                                    "otel.scope.version",
                                    &scope.version,
                                );
                            }
                        }
                        pending.push(Pending {
                            span: mapped,
                            resource: resources.len(),
                        });
                    }
                }
            }
        }
        resources.push(resource);
    }

    // A trace's session, from any of its spans (then resources).
    let mut sessions: HashMap<String, String> = HashMap::new();
    for key in SESSION_KEYS {
        for p in &pending {
            if sessions.contains_key(&p.span.trace_id) {
                continue;
            }
            let found = non_empty_str(&p.span.attributes, key)
                .or_else(|| non_empty_str(&resources[p.resource], key));
            if let Some(session) = found {
                sessions.insert(p.span.trace_id.clone(), session.to_owned());
            }
        }
    }
    let mut order: Vec<String> = Vec::new();
    let mut groups: HashMap<String, Vec<Span>> = HashMap::new();
    for (index, p) in pending.into_iter().enumerate() {
        let mut span = p.span;
        let session = sessions
            .get(&span.trace_id)
            .cloned()
            .unwrap_or_else(|| span.trace_id.clone());
        if session.len() > MAX_SESSION_BYTES {
            ingested.rejected_spans += 1;
            ingested.errors.push(format!(
                "span {} (request position {index}): session name is {} bytes, at most {MAX_SESSION_BYTES}",
                span.span_id,
                session.len()
            ));
            continue;
        }
        normalise(&mut span, &session);
        if !groups.contains_key(&session) {
            order.push(session.clone());
        }
        groups.entry(session).or_default().push(span);
    }
    ingested.sessions = order
        .into_iter()
        .map(|session| SessionSpans {
            spans: groups.remove(&session).unwrap_or_default(),
            session,
        })
        .collect();
    ingested
}

/// Where a session's name is looked for, first first.
const SESSION_KEYS: [&str; 3] = [
    "gen_ai.conversation.id",
    "session.id",
    "ai.telemetry.metadata.sessionId",
];

fn validate(span: &otlp::Span) -> Result<(), String> {
    let valid = |id: &[u8], len: usize| id.len() == len && id.iter().any(|&b| b != 0);
    if !valid(&span.trace_id, 16) {
        return Err(format!(
            "trace_id must be 16 bytes, not all zero (got {} bytes)",
            span.trace_id.len()
        ));
    }
    if !valid(&span.span_id, 8) {
        return Err(format!(
            "span_id must be 8 bytes, not all zero (got {} bytes)",
            span.span_id.len()
        ));
    }
    if !span.parent_span_id.is_empty() && span.parent_span_id.len() != 8 {
        return Err(format!(
            "parent_span_id must be empty or 8 bytes (got {} bytes)",
            span.parent_span_id.len()
        ));
    }
    Ok(())
}

/// The span as it came, in the archive's record.
fn convert(span: &otlp::Span) -> Span {
    let mut attrs = attributes(&span.attributes);
    let kind = if span.kind == otlp::span::SpanKind::Client as i32 {
        SpanKind::Client
    } else {
        SpanKind::Internal
    };
    let events: Vec<SpanEvent> = span
        .events
        .iter()
        .map(|e| SpanEvent {
            name: e.name.clone(),
            time_unix_nano: e.time_unix_nano,
            attributes: attributes(&e.attributes),
        })
        .collect();
    let status = match span.status.as_ref().map(|s| s.code) {
        Some(code) if code == otlp::status::StatusCode::Error as i32 => {
            let message = span.status.as_ref().map(|s| s.message.as_str());
            if !attrs.contains_key("error.type") {
                let why = events
                    .iter()
                    .filter(|e| e.name == "exception")
                    .find_map(|e| non_empty_str(&e.attributes, "exception.type"))
                    .or(message.filter(|m| !m.is_empty()))
                    .unwrap_or("error");
                attrs.insert("error.type".into(), why.into());
            }
            SpanStatus::Error
        }
        Some(code) if code == otlp::status::StatusCode::Ok as i32 => SpanStatus::Ok,
        _ => SpanStatus::Unset,
    };
    let parent = (span.parent_span_id.iter().any(|&b| b != 0)).then(|| hex(&span.parent_span_id));
    Span {
        trace_id: hex(&span.trace_id),
        span_id: hex(&span.span_id),
        parent_span_id: parent,
        name: span.name.clone(),
        kind,
        start_time_unix_nano: span.start_time_unix_nano,
        end_time_unix_nano: span.end_time_unix_nano.max(span.start_time_unix_nano),
        attributes: attrs,
        events,
        status,
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// OTLP attributes as JSON: strings, booleans, integers and doubles as themselves,
/// arrays as arrays, key-value lists as objects, bytes as lowercase hex.
pub fn attributes(list: &[KeyValue]) -> Map<String, Value> {
    list.iter()
        .map(|kv| (kv.key.clone(), any(kv.value.as_ref())))
        .collect()
}

fn any(value: Option<&AnyValue>) -> Value {
    use any_value::Value as V;
    match value.and_then(|v| v.value.as_ref()) {
        None | Some(V::StringValueStrindex(_)) => Value::Null,
        Some(V::StringValue(s)) => s.clone().into(),
        Some(V::BoolValue(b)) => (*b).into(),
        Some(V::IntValue(i)) => (*i).into(),
        Some(V::DoubleValue(d)) => serde_json::Number::from_f64(*d)
            .map(Value::Number)
            .unwrap_or_else(|| d.to_string().into()),
        Some(V::ArrayValue(a)) => a.values.iter().map(|v| any(Some(v))).collect(),
        Some(V::KvlistValue(kv)) => Value::Object(attributes(&kv.values)),
        Some(V::BytesValue(b)) => hex(b).into(),
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Operation {
    Chat,
    Tool { retrieval: bool },
    Agent,
    Other,
}

fn operation(span: &Span) -> Operation {
    let a = &span.attributes;
    if let Some(op) = non_empty_str(a, "gen_ai.operation.name") {
        match op {
            "chat" | "text_completion" | "generate_content" => return Operation::Chat,
            "execute_tool" => return Operation::Tool { retrieval: false },
            "invoke_agent" | "create_agent" => return Operation::Agent,
            _ => {}
        }
    }
    if let Some(kind) = non_empty_str(a, "openinference.span.kind") {
        match kind.to_ascii_uppercase().as_str() {
            "LLM" => return Operation::Chat,
            "TOOL" => return Operation::Tool { retrieval: false },
            "RETRIEVER" => return Operation::Tool { retrieval: true },
            "AGENT" => return Operation::Agent,
            _ => {}
        }
    }
    if let Some(id) = non_empty_str(a, "ai.operationId") {
        if id.ends_with(".doGenerate") || id.ends_with(".doStream") {
            return Operation::Chat;
        }
        match id {
            "ai.toolCall" => return Operation::Tool { retrieval: false },
            "ai.generateText" | "ai.streamText" | "ai.generateObject" | "ai.streamObject" => {
                return Operation::Agent;
            }
            _ => {}
        }
    }
    let old_content = a.keys().any(|k| {
        k == "gen_ai.prompt"
            || k == "gen_ai.completion"
            || k.starts_with("gen_ai.prompt.")
            || k.starts_with("gen_ai.completion.")
    }) || span
        .events
        .iter()
        .any(|e| message_event_role(&e.name).is_some());
    if old_content {
        return Operation::Chat;
    }
    Operation::Other
}

/// Adds the contract's attributes to a span (keeping every attribute it came with).
fn normalise(span: &mut Span, session: &str) {
    let op = operation(span);
    let name = span.name.clone();
    let span_id = span.span_id.clone();
    let events = std::mem::take(&mut span.events);
    let a = &mut span.attributes;
    set_absent(a, "gen_ai.conversation.id", session);
    if let Some(user) = ["user.id", "ai.telemetry.metadata.userId", "enduser.id"]
        .iter()
        .find_map(|k| non_empty_str(a, k))
    {
        let user = user.to_owned();
        set_absent(a, "agentwire.user", &user);
    }
    match op {
        Operation::Chat => {
            chat(a, &events);
            // The AI SDK's time to the first streamed chunk, as the archiver records a
            // session's first token.
            if let Some(ms) = a.get("ai.response.msToFirstChunk").and_then(Value::as_f64)
                && ms >= 0.0
                && !a.contains_key("agentwire.first_token_unix_nano")
            {
                let at = span.start_time_unix_nano.saturating_add((ms * 1e6) as u64);
                a.insert("agentwire.first_token_unix_nano".into(), at.into());
            }
            span.kind = SpanKind::Client;
        }
        Operation::Tool { retrieval } => tool(a, retrieval, &name, &span_id),
        Operation::Agent => {
            set_operation(a, "invoke_agent");
            let agent = ["gen_ai.agent.name", "agent.name", "ai.telemetry.functionId"]
                .iter()
                .find_map(|k| non_empty_str(a, k))
                .unwrap_or(name.as_str())
                .to_owned();
            set_absent(a, "gen_ai.agent.name", &agent);
        }
        Operation::Other => {}
    }
    span.events = events;
}

/// Sets `gen_ai.operation.name` to `op`, keeping a different one that came as
/// `agentwire.otlp.operation`.
fn set_operation(a: &mut Map<String, Value>, op: &str) {
    if let Some(came) = non_empty_str(a, "gen_ai.operation.name")
        && came != op
    {
        let came = came.to_owned();
        set_absent(a, "agentwire.otlp.operation", &came);
    }
    a.insert("gen_ai.operation.name".into(), op.into());
}

fn chat(a: &mut Map<String, Value>, events: &[SpanEvent]) {
    // No `agentwire.message.role`: that marks a span as one message, and a model call
    // carries its whole history (the trace view reads both shapes).
    set_operation(a, "chat");
    if let Some(model) = ["gen_ai.request.model", "llm.model_name", "ai.model.id"]
        .iter()
        .find_map(|k| non_empty_str(a, k))
    {
        let model = model.to_owned();
        set_absent(a, "gen_ai.request.model", &model);
    }
    if let Some(model) = [
        "gen_ai.response.model",
        "ai.response.model",
        "llm.model_name",
    ]
    .iter()
    .find_map(|k| non_empty_str(a, k))
    {
        let model = model.to_owned();
        set_absent(a, "gen_ai.response.model", &model);
    }
    for (target, sources) in [
        (
            "gen_ai.usage.input_tokens",
            [
                "llm.token_count.prompt",
                "ai.usage.inputTokens",
                "ai.usage.promptTokens",
                "gen_ai.usage.prompt_tokens",
            ],
        ),
        (
            "gen_ai.usage.output_tokens",
            [
                "llm.token_count.completion",
                "ai.usage.outputTokens",
                "ai.usage.completionTokens",
                "gen_ai.usage.completion_tokens",
            ],
        ),
    ] {
        if !a.contains_key(target)
            && let Some(n) = sources.iter().find_map(|k| a.get(*k).and_then(as_count))
        {
            a.insert(target.into(), n.into());
        }
    }
    let finish = non_empty_str(a, "ai.response.finishReason")
        .or_else(|| non_empty_str(a, "ai.finishReason"))
        .or_else(|| non_empty_str(a, "gen_ai.completion.0.finish_reason"))
        .map(str::to_owned);
    if let Some(reason) = &finish
        && !a.contains_key("gen_ai.response.finish_reasons")
    {
        a.insert("gen_ai.response.finish_reasons".into(), json!([reason]));
    }
    if !a.contains_key("gen_ai.input.messages") {
        let input = openinference_messages(a, "llm.input_messages.")
            .or_else(|| flattened_messages(a, "gen_ai.prompt."))
            .or_else(|| json_messages(a, "gen_ai.prompt"))
            .or_else(|| json_messages(a, "ai.prompt.messages"))
            .or_else(|| event_messages(events, false))
            .or_else(|| value_message(a, "input.value", "user"));
        if let Some(messages) = input {
            a.insert(
                "gen_ai.input.messages".into(),
                Value::Array(messages).to_string().into(),
            );
        }
    }
    if !a.contains_key("gen_ai.output.messages") {
        let output = openinference_messages(a, "llm.output_messages.")
            .or_else(|| flattened_messages(a, "gen_ai.completion."))
            .or_else(|| json_messages(a, "gen_ai.completion"))
            .or_else(|| vercel_output(a))
            .or_else(|| event_messages(events, true))
            .or_else(|| value_message(a, "output.value", "assistant"));
        if let Some(mut messages) = output {
            if let Some(reason) = &finish {
                for message in &mut messages {
                    if let Some(m) = message.as_object_mut() {
                        m.entry("finish_reason").or_insert(reason.as_str().into());
                    }
                }
            }
            a.insert(
                "gen_ai.output.messages".into(),
                Value::Array(messages).to_string().into(),
            );
        }
    }
}

fn tool(a: &mut Map<String, Value>, retrieval: bool, name: &str, span_id: &str) {
    set_operation(a, "execute_tool");
    let tool = [
        "gen_ai.tool.name",
        "tool.name",
        "ai.toolCall.name",
        "tool_call.function.name",
    ]
    .iter()
    .find_map(|k| non_empty_str(a, k))
    .unwrap_or_else(|| name.strip_prefix("execute_tool ").unwrap_or(name))
    .to_owned();
    set_absent(a, "gen_ai.tool.name", &tool);
    let id = ["ai.toolCall.id", "tool_call.id", "gen_ai.tool.call.id"]
        .iter()
        .find_map(|k| non_empty_str(a, k))
        .unwrap_or(span_id)
        .to_owned();
    set_absent(a, "gen_ai.tool.call.id", &id);
    if !a.contains_key("gen_ai.tool.call.arguments") {
        let arguments = [
            "ai.toolCall.args",
            "ai.toolCall.input",
            "tool_call.function.arguments",
            "input.value",
            "tool.parameters",
        ]
        .iter()
        .find_map(|k| a.get(*k).filter(|v| !v.is_null()));
        let arguments = arguments.map(|v| match (retrieval, json_of(v)) {
            // A retriever's input is its query text.
            (true, Value::String(query)) => json!({ "query": query }),
            (_, value) => value,
        });
        if let Some(arguments) = arguments {
            a.insert(
                "gen_ai.tool.call.arguments".into(),
                arguments.to_string().into(),
            );
        }
    }
    if retrieval {
        a.insert("agentwire.tool.retrieval".into(), true.into());
    }
    if !a.contains_key("gen_ai.tool.call.result") {
        let documents = retrieval.then(|| documents(a)).flatten();
        let result = documents.or_else(|| {
            ["ai.toolCall.result", "ai.toolCall.output", "output.value"]
                .iter()
                .find_map(|k| a.get(*k).filter(|v| !v.is_null()))
                .map(json_of)
        });
        if let Some(result) = result {
            a.insert("gen_ai.tool.call.result".into(), result.to_string().into());
        }
    }
}

/// OpenInference's `retrieval.documents.N.document.{content,id,score,metadata}`, as an
/// array of objects with `content` (what the view reads as one document each).
fn documents(a: &Map<String, Value>) -> Option<Value> {
    let docs = indexed(a, "retrieval.documents.");
    if docs.is_empty() {
        return None;
    }
    let list: Vec<Value> = docs
        .into_values()
        .map(|fields| {
            let mut doc = Map::new();
            for (key, value) in fields {
                if let Some(field) = key.strip_prefix("document.") {
                    let value = if field == "metadata" {
                        json_of(&value)
                    } else {
                        value
                    };
                    doc.insert(field.to_owned(), value);
                }
            }
            Value::Object(doc)
        })
        .collect();
    Some(Value::Array(list))
}

/// Attributes `<prefix>N.<rest>` grouped by N (in order), each as `rest -> value`.
fn indexed(a: &Map<String, Value>, prefix: &str) -> BTreeMap<usize, Vec<(String, Value)>> {
    let mut out: BTreeMap<usize, Vec<(String, Value)>> = BTreeMap::new();
    for (key, value) in a {
        let Some(rest) = key.strip_prefix(prefix) else {
            continue;
        };
        let Some((n, field)) = rest.split_once('.') else {
            continue;
        };
        if let Ok(n) = n.parse::<usize>() {
            out.entry(n)
                .or_default()
                .push((field.to_owned(), value.clone()));
        }
    }
    out
}

fn field<'f>(fields: &'f [(String, Value)], name: &str) -> Option<&'f Value> {
    fields.iter().find(|(k, _)| k == name).map(|(_, v)| v)
}

/// OpenInference's flattened messages: `<prefix>N.message.role`, `.message.content`,
/// `.message.contents.M.message_content.text`, `.message.tool_calls.K.tool_call.*`,
/// `.message.tool_call_id`.
fn openinference_messages(a: &Map<String, Value>, prefix: &str) -> Option<Vec<Value>> {
    let groups = indexed(a, prefix);
    let messages: Vec<Value> = groups
        .into_values()
        .map(|fields| {
            let role = field(&fields, "message.role")
                .and_then(Value::as_str)
                .unwrap_or("user")
                .to_owned();
            let mut parts = Vec::new();
            if let Some(text) = field(&fields, "message.content").and_then(Value::as_str) {
                parts.push(text_part(text));
            }
            let sub: Map<String, Value> = fields.iter().cloned().collect();
            for (_, content) in indexed(&sub, "message.contents.") {
                if let Some(text) = field(&content, "message_content.text").and_then(Value::as_str)
                {
                    parts.push(text_part(text));
                }
            }
            for (_, call) in indexed(&sub, "message.tool_calls.") {
                parts.push(tool_call_part(
                    field(&call, "tool_call.id"),
                    field(&call, "tool_call.function.name"),
                    field(&call, "tool_call.function.arguments"),
                ));
            }
            let parts = match field(&fields, "message.tool_call_id") {
                Some(id) if role == "tool" => vec![json!({
                    "type": "tool_call_response",
                    "id": id,
                    "response": parts_text(&parts),
                })],
                _ => parts,
            };
            json!({ "role": role, "parts": parts })
        })
        .collect();
    (!messages.is_empty()).then_some(messages)
}

/// OpenLLMetry's flattened `gen_ai.prompt.N.role`/`.content` (and `.tool_calls.K.*`).
fn flattened_messages(a: &Map<String, Value>, prefix: &str) -> Option<Vec<Value>> {
    let groups = indexed(a, prefix);
    let messages: Vec<Value> = groups
        .into_values()
        .filter_map(|fields| {
            let role = field(&fields, "role")
                .and_then(Value::as_str)
                .unwrap_or(if prefix.contains("completion") {
                    "assistant"
                } else {
                    "user"
                })
                .to_owned();
            let mut message = Map::new();
            message.insert("role".into(), role.into());
            if let Some(content) = field(&fields, "content") {
                message.insert("content".into(), json_of(content));
            }
            let sub: Map<String, Value> = fields.iter().cloned().collect();
            let calls: Vec<Value> = indexed(&sub, "tool_calls.")
                .into_values()
                .map(|call| {
                    tool_call_part(
                        field(&call, "id"),
                        field(&call, "name"),
                        field(&call, "arguments"),
                    )
                })
                .collect();
            let mut normal = normalise_message(&Value::Object(message))?;
            if let Some(parts) = normal.get_mut("parts").and_then(Value::as_array_mut) {
                parts.extend(calls);
            }
            Some(normal)
        })
        .collect();
    (!messages.is_empty()).then_some(messages)
}

/// A JSON string attribute holding an array of messages (`gen_ai.prompt`,
/// `ai.prompt.messages`), or an object with `messages` (and `system`/`prompt`).
fn json_messages(a: &Map<String, Value>, key: &str) -> Option<Vec<Value>> {
    let value = json_of(a.get(key)?);
    let list = match &value {
        Value::Array(list) => list.clone(),
        Value::Object(o) => {
            let mut list = Vec::new();
            if let Some(system) = o.get("system").and_then(Value::as_str) {
                list.push(json!({"role": "system", "content": system}));
            }
            if let Some(Value::Array(messages)) = o.get("messages") {
                list.extend(messages.iter().cloned());
            }
            if let Some(prompt) = o.get("prompt").and_then(Value::as_str) {
                list.push(json!({"role": "user", "content": prompt}));
            }
            list
        }
        Value::String(text) => vec![json!({"role": "user", "content": text})],
        _ => Vec::new(),
    };
    let messages: Vec<Value> = list.iter().filter_map(normalise_message).collect();
    (!messages.is_empty()).then_some(messages)
}

/// The Vercel AI SDK's `ai.response.text` and `ai.response.toolCalls` (`ai.result.*` before
/// SDK 4), as one assistant message.
fn vercel_output(a: &Map<String, Value>) -> Option<Vec<Value>> {
    let text = non_empty_str(a, "ai.response.text").or_else(|| non_empty_str(a, "ai.result.text"));
    let calls = a
        .get("ai.response.toolCalls")
        .or_else(|| a.get("ai.result.toolCalls"))
        .map(json_of);
    if text.is_none() && calls.is_none() {
        return None;
    }
    let mut parts: Vec<Value> = text.map(text_part).into_iter().collect();
    if let Some(Value::Array(calls)) = calls {
        for call in &calls {
            parts.push(tool_call_part(
                call.get("toolCallId"),
                call.get("toolName"),
                call.get("input").or_else(|| call.get("args")),
            ));
        }
    }
    Some(vec![json!({"role": "assistant", "parts": parts})])
}

/// The role of an old GenAI message event (`gen_ai.user.message`, …, `gen_ai.choice`).
fn message_event_role(name: &str) -> Option<&'static str> {
    match name {
        "gen_ai.system.message" => Some("system"),
        "gen_ai.user.message" => Some("user"),
        "gen_ai.assistant.message" => Some("assistant"),
        "gen_ai.tool.message" => Some("tool"),
        "gen_ai.choice" => Some("assistant"),
        "gen_ai.content.prompt" => Some("user"),
        "gen_ai.content.completion" => Some("assistant"),
        _ => None,
    }
}

/// Messages from the old GenAI span events: inputs (`output == false`) or the choices.
fn event_messages(events: &[SpanEvent], output: bool) -> Option<Vec<Value>> {
    let mut messages = Vec::new();
    for event in events {
        let Some(role) = message_event_role(&event.name) else {
            continue;
        };
        let is_output = matches!(
            event.name.as_str(),
            "gen_ai.choice" | "gen_ai.content.completion"
        );
        if is_output != output {
            continue;
        }
        let e = &event.attributes;
        if let Some(list) =
            json_messages(e, "gen_ai.prompt").or_else(|| json_messages(e, "gen_ai.completion"))
        {
            messages.extend(list);
            continue;
        }
        let message = e.get("message").map(json_of);
        let content = e
            .get("content")
            .or_else(|| e.get("message.content"))
            .map(json_of)
            .or_else(|| message.as_ref().and_then(|m| m.get("content").cloned()));
        let mut m = json!({ "role": role });
        if let Some(content) = content {
            m["content"] = content;
        }
        if let Some(calls) = message.as_ref().and_then(|m| m.get("tool_calls")) {
            m["tool_calls"] = calls.clone();
        }
        if let Some(id) = e.get("id") {
            m["tool_call_id"] = id.clone();
        }
        if let Some(mut normal) = normalise_message(&m) {
            if let Some(reason) = e.get("finish_reason") {
                normal["finish_reason"] = reason.clone();
            }
            messages.push(normal);
        }
    }
    (!messages.is_empty()).then_some(messages)
}

/// OpenInference's `input.value`/`output.value` as one message when nothing else says what
/// was said: its text, or the text of a JSON value's messages.
fn value_message(a: &Map<String, Value>, key: &str, role: &str) -> Option<Vec<Value>> {
    let text = non_empty_str(a, key)?;
    let mime_json =
        non_empty_str(a, &key.replace(".value", ".mime_type")).is_some_and(|m| m.contains("json"));
    if mime_json
        && let Ok(value) = serde_json::from_str::<Value>(text)
        && let Some(list) = value.get("messages").and_then(Value::as_array)
    {
        let messages: Vec<Value> = list.iter().filter_map(normalise_message).collect();
        if !messages.is_empty() {
            return Some(messages);
        }
    }
    Some(vec![json!({"role": role, "parts": [text_part(text)]})])
}

/// A message in any of the common shapes (GenAI `parts`, OpenAI `content` + `tool_calls`,
/// Anthropic and Vercel content parts) in the GenAI shape.
fn normalise_message(m: &Value) -> Option<Value> {
    let object = m.as_object()?;
    if object.get("parts").is_some_and(Value::is_array) {
        return Some(m.clone());
    }
    let role = object
        .get("role")
        .and_then(Value::as_str)
        .unwrap_or("user")
        .to_owned();
    let mut parts = Vec::new();
    match object.get("content") {
        Some(Value::String(text)) => parts.push(text_part(text)),
        Some(Value::Array(items)) => {
            for item in items {
                parts.push(content_part(item));
            }
        }
        Some(Value::Null) | None => {}
        Some(other) => parts.push(text_part(&other.to_string())),
    }
    if let Some(Value::Array(calls)) = object.get("tool_calls") {
        for call in calls {
            let function = call.get("function").unwrap_or(call);
            parts.push(tool_call_part(
                call.get("id"),
                function.get("name"),
                function.get("arguments"),
            ));
        }
    }
    if role == "tool"
        && let Some(id) = object.get("tool_call_id")
    {
        parts = vec![json!({
            "type": "tool_call_response",
            "id": id,
            "response": parts_text(&parts),
        })];
    }
    let mut out = json!({ "role": role, "parts": parts });
    if let Some(reason) = object.get("finish_reason") {
        out["finish_reason"] = reason.clone();
    }
    Some(out)
}

fn content_part(item: &Value) -> Value {
    let Some(o) = item.as_object() else {
        return match item.as_str() {
            Some(text) => text_part(text),
            None => text_part(&item.to_string()),
        };
    };
    let kind = o.get("type").and_then(Value::as_str).unwrap_or("text");
    match kind {
        "text" | "input_text" | "output_text" => {
            let text = o
                .get("text")
                .or_else(|| o.get("content"))
                .and_then(Value::as_str)
                .unwrap_or_default();
            text_part(text)
        }
        "tool-call" | "tool_use" | "tool_call" | "function_call" => tool_call_part(
            o.get("toolCallId").or_else(|| o.get("id")),
            o.get("toolName").or_else(|| o.get("name")),
            o.get("input")
                .or_else(|| o.get("args"))
                .or_else(|| o.get("arguments")),
        ),
        "tool-result" | "tool_result" | "tool_call_response" | "function_call_output" => json!({
            "type": "tool_call_response",
            "id": o.get("toolCallId").or_else(|| o.get("tool_use_id")).or_else(|| o.get("id")),
            "response": o.get("output").or_else(|| o.get("result")).or_else(|| o.get("content")).or_else(|| o.get("response")),
        }),
        _ => item.clone(),
    }
}

fn text_part(text: &str) -> Value {
    json!({"type": "text", "content": text})
}

fn tool_call_part(id: Option<&Value>, name: Option<&Value>, arguments: Option<&Value>) -> Value {
    json!({
        "type": "tool_call",
        "id": id,
        "name": name,
        "arguments": arguments.map(json_of),
    })
}

fn parts_text(parts: &[Value]) -> String {
    parts
        .iter()
        .filter_map(|p| p.get("content").and_then(Value::as_str))
        .collect::<Vec<_>>()
        .join("")
}

/// A value that may be JSON text: the JSON it holds, else itself.
fn json_of(value: &Value) -> Value {
    match value {
        Value::String(text) => serde_json::from_str(text).unwrap_or_else(|_| value.clone()),
        _ => value.clone(),
    }
}

/// A token count: a non-negative integer, or a string of one.
fn as_count(value: &Value) -> Option<u64> {
    value
        .as_u64()
        .or_else(|| value.as_f64().filter(|f| *f >= 0.0).map(|f| f as u64))
        .or_else(|| value.as_str().and_then(|s| s.trim().parse().ok()))
}

fn non_empty_str<'a>(a: &'a Map<String, Value>, key: &str) -> Option<&'a str> {
    a.get(key).and_then(Value::as_str).filter(|s| !s.is_empty())
}

fn set_absent(a: &mut Map<String, Value>, key: &str, value: &str) {
    if !a.contains_key(key) {
        a.insert(key.to_owned(), value.into());
    }
}

/// The span id of `session`'s root span in `tenant`: stable, so every write of the session
/// replaces the same root.
pub fn session_root_id(tenant: &str, session: &str) -> String {
    agentwire_trace::trace_id(tenant, &format!("otlp-session-root\0{session}"))[..16].to_owned()
}

/// `stored` (the session's archive object, possibly empty) with `new` merged in: a span
/// replaces the stored one with the same trace and span id; the session root is rebuilt
/// (see the module doc). Root first, then by start time.
pub fn merge_session(tenant: &str, session: &str, stored: Vec<Span>, new: Vec<Span>) -> Vec<Span> {
    let root_id = session_root_id(tenant, session);
    let mut spans: Vec<Span> = Vec::new();
    let mut at: HashMap<(String, String), usize> = HashMap::new();
    for span in stored.into_iter().chain(new) {
        if span.span_id == root_id && span.parent_span_id.is_none() {
            continue;
        }
        let key = (span.trace_id.clone(), span.span_id.clone());
        match at.get(&key) {
            Some(&i) => spans[i] = span,
            None => {
                at.insert(key, spans.len());
                spans.push(span);
            }
        }
    }
    spans.sort_by_key(|s| (s.start_time_unix_nano, s.end_time_unix_nano));
    let mut trace_ids: Vec<&str> = Vec::new();
    for span in &spans {
        if !trace_ids.contains(&span.trace_id.as_str()) {
            trace_ids.push(&span.trace_id);
        }
    }
    // The session's own id, as the archiver derives a session's: the OTLP traces under it
    // keep theirs, and no two sessions' objects share the id their scores are indexed by
    // (a span naming another session's trace id cannot reach that session's scores).
    let trace_id = agentwire_trace::trace_id(tenant, session);
    let start = spans
        .iter()
        .map(|s| s.start_time_unix_nano)
        .min()
        .unwrap_or(0);
    let end = spans
        .iter()
        .map(|s| s.end_time_unix_nano)
        .max()
        .unwrap_or(start);
    let agent = spans
        .iter()
        .find(|s| s.parent_span_id.is_none() || s.parent_span_id.as_deref() == Some(&root_id))
        .and_then(|s| {
            non_empty_str(&s.attributes, "gen_ai.agent.name")
                .or_else(|| non_empty_str(&s.attributes, "service.name"))
        })
        .map(str::to_owned);
    let mut attributes = Map::new();
    attributes.insert("gen_ai.operation.name".into(), "invoke_agent".into());
    if let Some(agent) = &agent {
        attributes.insert("gen_ai.agent.name".into(), agent.as_str().into());
    }
    attributes.insert("gen_ai.conversation.id".into(), session.into());
    attributes.insert("agentwire.tenant".into(), tenant.into());
    attributes.insert("agentwire.session".into(), session.into());
    attributes.insert("agentwire.source".into(), "otlp".into());
    attributes.insert(
        "agentwire.otlp.trace_ids".into(),
        json!(trace_ids).to_string().into(),
    );
    let root = Span {
        trace_id,
        span_id: root_id.clone(),
        parent_span_id: None,
        name: match &agent {
            Some(agent) => format!("invoke_agent {agent}"),
            None => "invoke_agent".to_owned(),
        },
        kind: SpanKind::Internal,
        start_time_unix_nano: start,
        end_time_unix_nano: end,
        attributes,
        events: Vec::new(),
        status: SpanStatus::Unset,
    };
    for span in &mut spans {
        if span.parent_span_id.is_none() {
            span.parent_span_id = Some(root_id.clone());
        }
    }
    std::iter::once(root).chain(spans).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_with_string_integers_nulls_and_enum_names_decodes() {
        let body = br#"{"resourceSpans":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"svc"}}]},
          "scopeSpans":[{"scope":{"name":"lib","version":"1"},"spans":[{
            "traceId":"5B8EFFF798038103D269B633813FC60C","spanId":"EEE19B7EC3C1B174","parentSpanId":"",
            "name":"chat gpt","kind":"SPAN_KIND_CLIENT","startTimeUnixNano":"1544712660000000000",
            "endTimeUnixNano":1544712661000000000,"status":{"code":2,"message":"boom"},"traceState":null,
            "attributes":[{"key":"gen_ai.operation.name","value":{"stringValue":"chat"}},
                          {"key":"gen_ai.usage.input_tokens","value":{"intValue":"12"}},
                          {"key":"gen_ai.conversation.id","value":{"stringValue":"conv-1"}}],
            "events":[{"timeUnixNano":"1544712660500000000","name":"exception","attributes":[{"key":"exception.type","value":{"stringValue":"Timeout"}}]}]
          }]}]}]}"#;
        let request = decode_json(body).unwrap();
        let ingested = map_request(&request);
        assert_eq!(ingested.rejected_spans, 0);
        let session = &ingested.sessions[0];
        assert_eq!(session.session, "conv-1");
        let span = &session.spans[0];
        assert_eq!(span.trace_id, "5b8efff798038103d269b633813fc60c");
        assert_eq!(span.span_id, "eee19b7ec3c1b174");
        assert_eq!(span.parent_span_id, None);
        assert_eq!(span.kind, SpanKind::Client);
        assert_eq!(span.start_time_unix_nano, 1_544_712_660_000_000_000);
        assert_eq!(span.end_time_unix_nano, 1_544_712_661_000_000_000);
        assert_eq!(span.status, SpanStatus::Error);
        assert_eq!(span.attributes["error.type"], "Timeout");
        assert_eq!(span.attributes["gen_ai.usage.input_tokens"], 12);
        assert_eq!(span.attributes["service.name"], "svc");
        assert_eq!(span.attributes["otel.scope.name"], "lib");
        assert_eq!(span.events[0].time_unix_nano, 1_544_712_660_500_000_000);
        assert_eq!(session.earliest_ms(), 1_544_712_660_000);
    }

    #[test]
    fn bad_json_is_an_error() {
        assert!(decode_json(b"{").is_err());
        assert!(
            decode_json(br#"{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"zz"}]}]}]}"#)
                .is_err()
        );
        assert!(decode_protobuf(b"\xff\xff\xff").is_err());
    }

    fn span_with(attrs: Value) -> otlp::Span {
        let attributes = attrs
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| KeyValue {
                key: k.clone(),
                value: Some(AnyValue {
                    value: Some(match v {
                        Value::String(s) => any_value::Value::StringValue(s.clone()),
                        Value::Bool(b) => any_value::Value::BoolValue(*b),
                        Value::Number(n) => any_value::Value::IntValue(n.as_i64().unwrap()),
                        _ => any_value::Value::StringValue(v.to_string()),
                    }),
                }),
                ..Default::default()
            })
            .collect();
        otlp::Span {
            trace_id: vec![1; 16],
            span_id: vec![2; 8],
            name: "s".into(),
            start_time_unix_nano: 10,
            end_time_unix_nano: 20,
            attributes,
            ..Default::default()
        }
    }

    fn mapped(attrs: Value) -> Span {
        let request = ExportTraceServiceRequest {
            resource_spans: vec![otlp::ResourceSpans {
                scope_spans: vec![otlp::ScopeSpans {
                    spans: vec![span_with(attrs)],
                    ..Default::default()
                }],
                ..Default::default()
            }],
        };
        map_request(&request).sessions.remove(0).spans.remove(0)
    }

    fn parsed(span: &Span, key: &str) -> Value {
        serde_json::from_str(span.attributes[key].as_str().unwrap()).unwrap()
    }

    #[test]
    fn openinference_flattened_messages_and_tool_calls() {
        let span = mapped(json!({
            "openinference.span.kind": "LLM",
            "llm.model_name": "gpt-4o",
            "llm.input_messages.0.message.role": "system",
            "llm.input_messages.0.message.content": "be brief",
            "llm.input_messages.1.message.role": "user",
            "llm.input_messages.1.message.contents.0.message_content.type": "text",
            "llm.input_messages.1.message.contents.0.message_content.text": "hi",
            "llm.output_messages.0.message.role": "assistant",
            "llm.output_messages.0.message.tool_calls.0.tool_call.id": "c1",
            "llm.output_messages.0.message.tool_calls.0.tool_call.function.name": "search",
            "llm.output_messages.0.message.tool_calls.0.tool_call.function.arguments": "{\"q\":\"x\"}",
            "llm.token_count.prompt": 5,
            "session.id": "s-9",
        }));
        assert_eq!(span.attributes["gen_ai.operation.name"], "chat");
        assert_eq!(span.attributes["gen_ai.request.model"], "gpt-4o");
        assert_eq!(span.attributes["gen_ai.usage.input_tokens"], 5);
        assert_eq!(span.attributes["gen_ai.conversation.id"], "s-9");
        assert_eq!(
            parsed(&span, "gen_ai.input.messages"),
            json!([
                {"role": "system", "parts": [{"type": "text", "content": "be brief"}]},
                {"role": "user", "parts": [{"type": "text", "content": "hi"}]},
            ])
        );
        assert_eq!(
            parsed(&span, "gen_ai.output.messages"),
            json!([{"role": "assistant", "parts": [
                {"type": "tool_call", "id": "c1", "name": "search", "arguments": {"q": "x"}}
            ]}])
        );
    }

    #[test]
    fn old_genai_events_become_messages() {
        let mut span = span_with(json!({"gen_ai.system": "openai"}));
        let event = |name: &str, key: &str, value: &str| otlp::span::Event {
            name: name.into(),
            time_unix_nano: 15,
            attributes: vec![KeyValue {
                key: key.into(),
                value: Some(AnyValue {
                    value: Some(any_value::Value::StringValue(value.into())),
                }),
                ..Default::default()
            }],
            ..Default::default()
        };
        span.events = vec![
            event("gen_ai.user.message", "content", "What is 2+2?"),
            event(
                "gen_ai.choice",
                "message",
                "{\"role\":\"assistant\",\"content\":\"4\"}",
            ),
        ];
        let request = ExportTraceServiceRequest {
            resource_spans: vec![otlp::ResourceSpans {
                scope_spans: vec![otlp::ScopeSpans {
                    spans: vec![span],
                    ..Default::default()
                }],
                ..Default::default()
            }],
        };
        let span = map_request(&request).sessions.remove(0).spans.remove(0);
        assert_eq!(span.attributes["gen_ai.operation.name"], "chat");
        assert_eq!(
            parsed(&span, "gen_ai.input.messages")[0]["parts"][0]["content"],
            "What is 2+2?"
        );
        assert_eq!(
            parsed(&span, "gen_ai.output.messages")[0]["parts"][0]["content"],
            "4"
        );
        assert_eq!(span.events.len(), 2, "events are kept");
    }

    #[test]
    fn invalid_ids_are_rejected_and_described() {
        let mut zero = span_with(json!({}));
        zero.trace_id = vec![0; 16];
        let mut short = span_with(json!({}));
        short.span_id = vec![1; 3];
        let good = span_with(json!({}));
        let request = ExportTraceServiceRequest {
            resource_spans: vec![otlp::ResourceSpans {
                scope_spans: vec![otlp::ScopeSpans {
                    spans: vec![zero, good, short],
                    ..Default::default()
                }],
                ..Default::default()
            }],
        };
        let ingested = map_request(&request);
        assert_eq!(ingested.rejected_spans, 2);
        assert_eq!(ingested.sessions[0].spans.len(), 1);
        let message = ingested.error_message();
        assert!(
            message.contains("spans[0]: trace_id must be 16 bytes"),
            "{message}"
        );
        assert!(
            message.contains("spans[2]: span_id must be 8 bytes"),
            "{message}"
        );
    }

    #[test]
    fn merging_replaces_by_id_and_keeps_one_root() {
        let a = mapped(json!({"gen_ai.operation.name": "chat"}));
        let mut b = a.clone();
        b.span_id = "0303030303030303".into();
        b.start_time_unix_nano = 5;
        let first = merge_session("acme", "s", Vec::new(), vec![a.clone()]);
        assert_eq!(first.len(), 2);
        assert_eq!(first[0].span_id, session_root_id("acme", "s"));
        assert_eq!(
            first[1].parent_span_id.as_deref(),
            Some(first[0].span_id.as_str())
        );
        let mut a2 = a.clone();
        a2.end_time_unix_nano = 99;
        let second = merge_session("acme", "s", first, vec![a2, b]);
        assert_eq!(second.len(), 3, "root, the replaced span and the new one");
        assert_eq!(
            second.iter().filter(|s| s.parent_span_id.is_none()).count(),
            1
        );
        let root = &second[0];
        assert_eq!(root.attributes["agentwire.session"], "s");
        assert_eq!(root.attributes["agentwire.tenant"], "acme");
        assert_eq!(root.attributes["gen_ai.operation.name"], "invoke_agent");
        assert_eq!(
            (root.start_time_unix_nano, root.end_time_unix_nano),
            (5, 99)
        );
        assert_eq!(second[1].start_time_unix_nano, 5, "by start time");
    }
}
