//! The trace view: what every scorer reads, whichever door a trace came in by.
//!
//! A trace is the spans of one archive object (`agentwire_trace::Span`, the attributes the
//! archiver writes, which OTLP ingest and the importers write too). The view reads:
//!
//! - **messages**, in time order, from `chat` spans: a span with `agentwire.message.role`
//!   is one message (the archiver's and the importers' shape: text in
//!   `gen_ai.input.messages` for users, `gen_ai.output.messages` otherwise). A span without
//!   it (an instrumented model call, from OTLP) contributes its `gen_ai.input.messages`
//!   that no earlier call already sent (model calls resend the history), then its
//!   `gen_ai.output.messages`. Text is the message's `text` parts joined, or its `content`
//!   string.
//! - **tool calls**, in time order, from `execute_tool` spans: arguments, result, error.
//! - **retrieved context**: tool calls marked `agentwire.tool.retrieval = true`, or
//!   `gen_ai.tool.type = "retrieval"`, or with operation `retrieval`, or whose tool name is
//!   in [`ViewOptions::retrieval_tools`]. Their documents: a string result; or each
//!   element of an array result that is a string or an object with `content`, `text`,
//!   `page_content` or `document.content`; or those of an object's `documents`,
//!   `results` or `result` field (a session's `tool.result` keeps its whole `data`).
//! - **span events** (control, presence, status), in time order.
//! - **timings**: start and end of the trace; time to first token, from the first
//!   assistant message's `agentwire.first_token_unix_nano` (or its start) back to the
//!   user message before it.
//! - **usage** per model call, and the dataset's expected actions and reward when the trace
//!   came from a dataset.

use std::collections::HashMap;

use agentwire_trace::{Span, SpanStatus};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

/// How to read a trace: the tenant's configuration of what counts as retrieval.
#[derive(Debug, Clone, Default)]
pub struct ViewOptions {
    /// Tool names whose results are retrieved context, besides spans marked as retrieval.
    pub retrieval_tools: Vec<String>,
}

/// Why spans could not be read as a trace.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ViewError {
    #[error("the trace has no spans")]
    Empty,
}

/// A chat message.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Message {
    /// The span it was read from (several messages share one when a model call resent a
    /// history).
    pub span_id: String,
    /// `user`, `assistant`, `system` or `tool`.
    pub role: String,
    pub text: String,
    pub start_ns: u64,
    pub end_ns: u64,
    pub model: Option<String>,
    pub finish_reason: Option<String>,
    /// Why it failed (`error.type`), when its span's status is error.
    pub error: Option<String>,
    /// It never ended (the archiver saw no `message.end`).
    pub incomplete: bool,
    /// Labels people put on ranges of its text (datasets' annotations).
    pub annotations: Vec<Annotation>,
}

/// A labelled character range of a message's text.
#[derive(Debug, Clone, PartialEq)]
pub struct Annotation {
    /// Unicode scalar offsets into the message's text, end exclusive.
    pub start: usize,
    pub end: usize,
    pub label: String,
}

/// One tool call and its result.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ToolCall {
    pub span_id: String,
    pub call_id: Option<String>,
    pub name: String,
    /// Parsed JSON when the arguments were JSON, else the string as given.
    pub arguments: Option<Value>,
    pub result: Option<Value>,
    /// Why it failed (`error.type`, else the status), when its span's status is error.
    pub error: Option<String>,
    pub retrieval: bool,
    pub start_ns: u64,
    pub end_ns: u64,
    /// A retrieval call's documents, as text.
    pub documents: Vec<String>,
}

/// A span event: control, presence, status.
#[derive(Debug, Clone, PartialEq)]
pub struct TraceEvent {
    /// `control.cancel`, `presence.leave`, ….
    pub name: String,
    pub time_ns: u64,
    pub span_id: String,
    pub attributes: Map<String, Value>,
}

/// A state-changing call a correct run makes (datasets such as tau-bench).
#[derive(Debug, Clone, PartialEq)]
pub struct ExpectedAction {
    pub name: String,
    pub arguments: Value,
}

/// A model call's tokens.
#[derive(Debug, Clone, PartialEq)]
pub struct Usage {
    pub span_id: String,
    pub model: Option<String>,
    pub input_tokens: Option<u64>,
    pub output_tokens: Option<u64>,
}

/// One trace as scorers read it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TraceView {
    pub trace_id: String,
    pub tenant: String,
    /// The session (or conversation) the trace is of; the trace id when it names none.
    pub session: String,
    /// The root span's id.
    pub root_span_id: String,
    /// Hex SHA-256 of the spans' JSON, in span id order: a changed trace has a new digest.
    pub digest: String,
    pub messages: Vec<Message>,
    pub tool_calls: Vec<ToolCall>,
    pub events: Vec<TraceEvent>,
    pub usage: Vec<Usage>,
    pub expected_actions: Option<Vec<ExpectedAction>>,
    /// A dataset's verdict on the run (tau-bench's reward).
    pub dataset_reward: Option<f64>,
    /// The root span's attributes.
    pub attributes: Map<String, Value>,
    pub start_ns: u64,
    pub end_ns: u64,
}

impl TraceView {
    /// Reads the spans of one archive object. They may span several trace ids (OTLP
    /// ingest keeps a conversation's traces, one a turn, under one session root): the
    /// view's trace id is the root span's. An empty object is an error.
    pub fn from_spans(spans: &[Span], options: &ViewOptions) -> Result<TraceView, ViewError> {
        let first = spans.first().ok_or(ViewError::Empty)?;
        let root = spans
            .iter()
            .find(|s| s.parent_span_id.is_none())
            .unwrap_or(first);
        let text_attr = |key: &str| root.attributes.get(key).and_then(Value::as_str);
        let session = text_attr("agentwire.session")
            .or_else(|| text_attr("gen_ai.conversation.id"))
            .unwrap_or(&root.trace_id)
            .to_owned();
        let tenant = text_attr("agentwire.tenant").unwrap_or_default().to_owned();

        let mut order: Vec<&Span> = spans.iter().collect();
        order.sort_by(|a, b| {
            (a.start_time_unix_nano, a.end_time_unix_nano)
                .cmp(&(b.start_time_unix_nano, b.end_time_unix_nano))
        });

        let mut messages = Vec::new();
        let mut tool_calls = Vec::new();
        let mut usage = Vec::new();
        let mut resent: Seen = HashMap::new();
        for span in &order {
            match operation(span) {
                Operation::Chat => {
                    read_messages(span, &mut messages, &mut resent);
                    let tokens = |key: &str| span.attributes.get(key).and_then(Value::as_u64);
                    let (input_tokens, output_tokens) = (
                        tokens("gen_ai.usage.input_tokens"),
                        tokens("gen_ai.usage.output_tokens"),
                    );
                    if input_tokens.is_some() || output_tokens.is_some() {
                        usage.push(Usage {
                            span_id: span.span_id.clone(),
                            model: model(span),
                            input_tokens,
                            output_tokens,
                        });
                    }
                }
                Operation::Tool => tool_calls.push(read_tool(span, options)),
                Operation::Other => {}
            }
        }

        let mut events: Vec<TraceEvent> = order
            .iter()
            .flat_map(|span| {
                span.events.iter().map(|event| TraceEvent {
                    name: event.name.clone(),
                    time_ns: event.time_unix_nano,
                    span_id: span.span_id.clone(),
                    attributes: event.attributes.clone(),
                })
            })
            .collect();
        events.sort_by_key(|e| e.time_ns);

        let expected_actions = root
            .attributes
            .get("agentwire.expected_actions")
            .and_then(json_attribute)
            .and_then(|v| v.as_array().cloned())
            .map(|actions| {
                actions
                    .iter()
                    .filter_map(|a| {
                        Some(ExpectedAction {
                            name: a.get("name")?.as_str()?.to_owned(),
                            arguments: a
                                .get("arguments")
                                .or_else(|| a.get("kwargs"))
                                .cloned()
                                .unwrap_or(Value::Object(Map::new())),
                        })
                    })
                    .collect()
            });
        let dataset_reward = root
            .attributes
            .get("agentwire.dataset.reward")
            .and_then(|v| {
                v.as_f64()
                    .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
            });

        Ok(TraceView {
            trace_id: root.trace_id.clone(),
            tenant,
            session,
            root_span_id: root.span_id.clone(),
            digest: digest(spans),
            messages,
            tool_calls,
            events,
            usage,
            expected_actions,
            dataset_reward,
            attributes: root.attributes.clone(),
            start_ns: spans
                .iter()
                .map(|s| s.start_time_unix_nano)
                .min()
                .unwrap_or(0),
            end_ns: spans
                .iter()
                .map(|s| s.end_time_unix_nano)
                .max()
                .unwrap_or(0),
        })
    }

    /// The answer the trace ends with: the last assistant message with text.
    pub fn final_answer(&self) -> Option<&Message> {
        self.final_answer_index().map(|i| &self.messages[i])
    }

    fn final_answer_index(&self) -> Option<usize> {
        self.messages
            .iter()
            .rposition(|m| m.role == "assistant" && !m.text.trim().is_empty())
    }

    /// What the final answer answers: the last user message before it.
    pub fn question(&self) -> Option<&Message> {
        let end = self.final_answer_index()?;
        self.messages[..end].iter().rev().find(|m| m.role == "user")
    }

    /// The retrieval calls.
    pub fn retrieved(&self) -> Vec<&ToolCall> {
        self.tool_calls.iter().filter(|c| c.retrieval).collect()
    }

    /// The retrieved documents the final answer could draw on: those of retrieval calls
    /// that started before it ended (all of them when there is no final answer).
    pub fn context_text(&self) -> Vec<&str> {
        let until = self.final_answer().map_or(u64::MAX, |m| m.end_ns);
        self.tool_calls
            .iter()
            .filter(|c| c.retrieval && c.start_ns <= until)
            .flat_map(|c| c.documents.iter().map(String::as_str))
            .collect()
    }

    /// Milliseconds from the first user message to the first token of the assistant's
    /// reply to it; `None` without both.
    pub fn time_to_first_token_ms(&self) -> Option<f64> {
        let user = self.messages.iter().position(|m| m.role == "user")?;
        let asked = self.messages[user].end_ns.max(self.messages[user].start_ns);
        let reply = self.messages[user + 1..]
            .iter()
            .find(|m| m.role == "assistant")?;
        // An assistant message starts at its first token when the trace records it.
        Some(reply.start_ns.saturating_sub(asked) as f64 / 1e6)
    }

    /// Milliseconds from the trace's first span start to its last span end.
    pub fn total_ms(&self) -> f64 {
        self.end_ns.saturating_sub(self.start_ns) as f64 / 1e6
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Operation {
    Chat,
    Tool,
    Other,
}

fn operation(span: &Span) -> Operation {
    let op = span
        .attributes
        .get("gen_ai.operation.name")
        .and_then(Value::as_str)
        .unwrap_or_else(|| span.name.split(' ').next().unwrap_or_default());
    match op {
        "chat" | "text_completion" | "generate_content" => Operation::Chat,
        "execute_tool" | "retrieval" => Operation::Tool,
        _ => Operation::Other,
    }
}

fn model(span: &Span) -> Option<String> {
    ["gen_ai.response.model", "gen_ai.request.model"]
        .iter()
        .find_map(|key| span.attributes.get(*key).and_then(Value::as_str))
        .map(str::to_owned)
}

fn error_of(span: &Span) -> Option<String> {
    (span.status == SpanStatus::Error).then(|| {
        span.attributes
            .get("error.type")
            .and_then(Value::as_str)
            .unwrap_or("error")
            .to_owned()
    })
}

/// A structured attribute: the JSON in a string (how the archive keeps structures), or the
/// value itself.
fn json_attribute(value: &Value) -> Option<Value> {
    match value {
        Value::String(s) => serde_json::from_str(s).ok(),
        Value::Null => None,
        other => Some(other.clone()),
    }
}

/// A message's text: its `text` parts joined, or its `content` when that is a string.
fn message_text(message: &Value) -> String {
    if let Some(parts) = message.get("parts").and_then(Value::as_array) {
        return parts
            .iter()
            .filter(|p| {
                p.get("type")
                    .and_then(Value::as_str)
                    .is_none_or(|t| t == "text")
            })
            .filter_map(|p| p.get("content").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join("");
    }
    match message.get("content") {
        Some(Value::String(s)) => s.clone(),
        _ => String::new(),
    }
}

/// How many times each (role, text) was read from model calls so far.
type Seen = HashMap<(String, String), usize>;

fn read_messages(span: &Span, out: &mut Vec<Message>, resent: &mut Seen) {
    let own_role = span
        .attributes
        .get("agentwire.message.role")
        .and_then(Value::as_str);
    let finish_reason = span
        .attributes
        .get("gen_ai.response.finish_reasons")
        .and_then(json_attribute)
        .and_then(|v| v.get(0).and_then(Value::as_str).map(str::to_owned));
    let annotations = span
        .attributes
        .get("agentwire.annotations")
        .and_then(json_attribute)
        .and_then(|v| v.as_array().cloned())
        .unwrap_or_default()
        .iter()
        .filter_map(|a| {
            Some(Annotation {
                start: usize::try_from(a.get("start")?.as_u64()?).ok()?,
                end: usize::try_from(a.get("end")?.as_u64()?).ok()?,
                label: a
                    .get("label")
                    .and_then(Value::as_str)
                    .unwrap_or("annotation")
                    .to_owned(),
            })
        })
        .collect::<Vec<_>>();
    let first_token = span
        .attributes
        .get("agentwire.first_token_unix_nano")
        .and_then(Value::as_u64);
    let list = |key: &str| {
        span.attributes
            .get(key)
            .and_then(json_attribute)
            .and_then(|v| v.as_array().cloned())
            .unwrap_or_default()
    };
    let make = |role: &str, text: String, output: bool| Message {
        span_id: span.span_id.clone(),
        role: role.to_owned(),
        text,
        // An output message starts when its first token arrived, if that is known.
        start_ns: if output {
            first_token.unwrap_or(span.start_time_unix_nano)
        } else {
            span.start_time_unix_nano
        },
        // A model call was sent its input when it started.
        end_ns: if output || own_role.is_some() {
            span.end_time_unix_nano
        } else {
            span.start_time_unix_nano
        },
        model: model(span),
        finish_reason: if output { finish_reason.clone() } else { None },
        error: if output || own_role.is_some() {
            error_of(span)
        } else {
            None
        },
        incomplete: span.attributes.get("agentwire.message.incomplete") == Some(&Value::Bool(true)),
        annotations: if output {
            annotations.clone()
        } else {
            Vec::new()
        },
    };
    match own_role {
        // One message per span: the archiver's and the importers' shape.
        Some(role) => {
            let key = if role == "user" || role == "system" {
                "gen_ai.input.messages"
            } else {
                "gen_ai.output.messages"
            };
            let text: String = list(key).iter().map(message_text).collect();
            let mut message = make(role, text, role != "user" && role != "system");
            if role == "user" || role == "system" {
                message.annotations = annotations.clone();
            }
            out.push(message);
        }
        // A model call: the history it was sent (new messages only), then its reply. The
        // n-th occurrence of a message in a history is new when fewer than n were read
        // before, so a user saying "yes" again is read again, a resent "yes" is not.
        None => {
            let mut in_history: Seen = HashMap::new();
            for input in list("gen_ai.input.messages") {
                let role = input.get("role").and_then(Value::as_str).unwrap_or("user");
                let text = message_text(&input);
                if text.is_empty() {
                    continue;
                }
                let key = (role.to_owned(), text.clone());
                let nth = in_history.entry(key.clone()).or_default();
                *nth += 1;
                let read = resent.entry(key).or_default();
                if *nth <= *read {
                    continue;
                }
                *read += 1;
                out.push(make(role, text, false));
            }
            for output in list("gen_ai.output.messages") {
                let role = output
                    .get("role")
                    .and_then(Value::as_str)
                    .unwrap_or("assistant");
                let text = message_text(&output);
                *resent.entry((role.to_owned(), text.clone())).or_default() += 1;
                out.push(make(role, text, true));
            }
        }
    }
}

fn read_tool(span: &Span, options: &ViewOptions) -> ToolCall {
    let attr = |key: &str| span.attributes.get(key);
    let name = attr("gen_ai.tool.name")
        .and_then(Value::as_str)
        .map(str::to_owned)
        .unwrap_or_else(|| {
            span.name
                .strip_prefix("execute_tool ")
                .unwrap_or(&span.name)
                .to_owned()
        });
    let parsed = |key: &str| {
        attr(key).map(|v| match v {
            Value::String(s) => serde_json::from_str(s).unwrap_or_else(|_| v.clone()),
            other => other.clone(),
        })
    };
    let retrieval = attr("agentwire.tool.retrieval") == Some(&Value::Bool(true))
        || attr("gen_ai.tool.type").and_then(Value::as_str) == Some("retrieval")
        || attr("gen_ai.operation.name").and_then(Value::as_str) == Some("retrieval")
        || options.retrieval_tools.contains(&name);
    let result = parsed("gen_ai.tool.call.result");
    let documents = if retrieval {
        result.as_ref().map(documents).unwrap_or_default()
    } else {
        Vec::new()
    };
    ToolCall {
        span_id: span.span_id.clone(),
        call_id: attr("gen_ai.tool.call.id")
            .and_then(Value::as_str)
            .map(str::to_owned),
        name,
        arguments: parsed("gen_ai.tool.call.arguments"),
        result,
        error: error_of(span),
        retrieval,
        start_ns: span.start_time_unix_nano,
        end_ns: span.end_time_unix_nano,
        documents,
    }
}

/// The documents of a retrieval result (see the module doc).
fn documents(result: &Value) -> Vec<String> {
    fn one(doc: &Value) -> Option<String> {
        match doc {
            Value::String(s) => Some(s.clone()),
            Value::Object(o) => ["content", "text", "page_content"]
                .iter()
                .find_map(|k| o.get(*k).and_then(Value::as_str))
                .or_else(|| o.get("document")?.get("content")?.as_str())
                .map(str::to_owned),
            _ => None,
        }
    }
    match result {
        Value::String(s) => vec![s.clone()],
        Value::Array(items) => items.iter().filter_map(one).collect(),
        Value::Object(o) => match ["documents", "results", "result"]
            .iter()
            .find_map(|k| o.get(*k))
        {
            Some(inner @ (Value::Array(_) | Value::String(_))) => documents(inner),
            _ => one(result).into_iter().collect(),
        },
        _ => Vec::new(),
    }
}

/// SHA-256 over the spans' JSON in span id order, so the digest does not depend on the
/// order an archive lists them in.
fn digest(spans: &[Span]) -> String {
    let mut sorted: Vec<&Span> = spans.iter().collect();
    sorted.sort_by(|a, b| a.span_id.cmp(&b.span_id));
    let mut hasher = Sha256::new();
    for span in sorted {
        // Serialising a Span cannot fail: its maps have string keys.
        if let Ok(json) = serde_json::to_vec(span) {
            hasher.update(&json);
        }
        hasher.update(b"\n");
    }
    hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use agentwire_trace::{SessionEvent, SpanKind, TraceContext, build_trace};
    use serde_json::json;

    use super::*;

    /// A session as the archiver makes a trace of it.
    fn archived(events: &[Value]) -> Vec<Span> {
        let json: Vec<Vec<u8>> = events.iter().map(|e| e.to_string().into_bytes()).collect();
        let offsets: Vec<String> = (0..events.len()).map(|i| format!("{i:016}")).collect();
        let events: Vec<SessionEvent> = json
            .iter()
            .zip(&offsets)
            .map(|(json, offset)| SessionEvent {
                offset,
                json,
                at_ms: None,
            })
            .collect();
        let ctx = TraceContext {
            tenant: "acme",
            session: "s-1",
            archived_at_ms: 1_750_000_000_000,
        };
        build_trace(&ctx, &events)
    }

    fn session() -> Vec<Span> {
        archived(&[
            json!({"type": "message.start", "id": "u1", "role": "user", "ts": 1000}),
            json!({"type": "message.delta", "id": "u1", "data": {"text": "When does the museum open?"}, "ts": 1000}),
            json!({"type": "message.end", "id": "u1", "role": "user", "ts": 1001}),
            json!({"type": "tool.call", "id": "c1", "agent": "bot", "data": {"tool": "search_docs", "arguments": {"q": "museum hours"}}, "ts": 1100}),
            json!({"type": "tool.result", "id": "c1", "agent": "bot", "data": {"result": [{"content": "The museum opens at 9am."}, "Closed on Mondays."]}, "ts": 1200}),
            json!({"type": "message.start", "id": "m1", "agent": "bot", "role": "assistant", "ts": 1300}),
            json!({"type": "message.delta", "id": "m1", "agent": "bot", "data": {"text": "It opens at 9am."}, "ts": 1451}),
            json!({"type": "message.end", "id": "m1", "agent": "bot", "data": {"model": "m-1", "usage": {"input_tokens": 50, "output_tokens": 7}}, "ts": 1500}),
            json!({"type": "control.steer", "data": {"text": "shorter"}, "ts": 1600}),
        ])
    }

    #[test]
    fn an_archived_session_reads_as_messages_tools_events_and_times() {
        let options = ViewOptions {
            retrieval_tools: vec!["search_docs".into()],
        };
        let view = TraceView::from_spans(&session(), &options).unwrap();
        assert_eq!(view.tenant, "acme");
        assert_eq!(view.session, "s-1");
        let roles: Vec<(&str, &str)> = view
            .messages
            .iter()
            .map(|m| (m.role.as_str(), m.text.as_str()))
            .collect();
        assert_eq!(
            roles,
            [
                ("user", "When does the museum open?"),
                ("assistant", "It opens at 9am.")
            ]
        );
        assert_eq!(view.question().unwrap().text, "When does the museum open?");
        assert_eq!(view.final_answer().unwrap().model.as_deref(), Some("m-1"));
        assert_eq!(view.tool_calls.len(), 1);
        let call = &view.tool_calls[0];
        assert_eq!(call.name, "search_docs");
        assert_eq!(call.arguments, Some(json!({"q": "museum hours"})));
        assert!(call.retrieval);
        assert_eq!(
            view.context_text(),
            ["The museum opens at 9am.", "Closed on Mondays."]
        );
        assert_eq!(view.events.len(), 1);
        assert_eq!(view.events[0].name, "control.steer");
        assert_eq!(view.usage[0].output_tokens, Some(7));
        // From the user's message ending (1001 ms) to the first delta (1451 ms).
        assert_eq!(view.time_to_first_token_ms(), Some(450.0));
        assert_eq!(view.total_ms(), 600.0);

        // Without the tool in the list, the same call is not retrieval.
        let plain = TraceView::from_spans(&session(), &ViewOptions::default()).unwrap();
        assert!(!plain.tool_calls[0].retrieval);
        assert!(plain.context_text().is_empty());
    }

    #[test]
    fn the_digest_changes_with_the_trace_not_its_order() {
        let spans = session();
        let view = TraceView::from_spans(&spans, &ViewOptions::default()).unwrap();
        let mut reversed = spans.clone();
        reversed.reverse();
        let same = TraceView::from_spans(&reversed, &ViewOptions::default()).unwrap();
        assert_eq!(view.digest, same.digest);
        let mut changed = spans;
        changed[1].end_time_unix_nano += 1;
        let other = TraceView::from_spans(&changed, &ViewOptions::default()).unwrap();
        assert_ne!(view.digest, other.digest);
    }

    fn span(id: &str, start_ms: u64, attributes: Value) -> Span {
        Span {
            trace_id: "0123456789abcdef0123456789abcdef".into(),
            span_id: format!("{id:0>16}"),
            parent_span_id: (id != "1").then(|| format!("{:0>16}", "1")),
            name: "span".into(),
            kind: SpanKind::Internal,
            start_time_unix_nano: start_ms * 1_000_000,
            end_time_unix_nano: (start_ms + 10) * 1_000_000,
            attributes: attributes.as_object().cloned().unwrap(),
            events: Vec::new(),
            status: SpanStatus::Unset,
        }
    }

    fn messages(list: Value) -> String {
        list.to_string()
    }

    #[test]
    fn model_calls_that_resend_the_history_add_only_new_messages() {
        let user =
            |text: &str| json!({"role": "user", "parts": [{"type": "text", "content": text}]});
        let bot =
            |text: &str| json!({"role": "assistant", "parts": [{"type": "text", "content": text}]});
        let spans = vec![
            span(
                "1",
                0,
                json!({"gen_ai.operation.name": "invoke_agent", "gen_ai.conversation.id": "conv-9"}),
            ),
            span(
                "2",
                10,
                json!({
                    "gen_ai.operation.name": "chat",
                    "gen_ai.input.messages": messages(json!([{"role": "system", "content": "Be brief."}, user("hi")])),
                    "gen_ai.output.messages": messages(json!([bot("hello")])),
                }),
            ),
            span(
                "3",
                30,
                json!({
                    "gen_ai.operation.name": "retrieval",
                    "gen_ai.tool.call.result": json!({"documents": [{"document": {"content": "doc one"}}]}).to_string(),
                }),
            ),
            span(
                "4",
                50,
                json!({
                    "gen_ai.operation.name": "chat",
                    "gen_ai.input.messages": messages(json!([{"role": "system", "content": "Be brief."}, user("hi"), bot("hello"), user("and now?")])),
                    "gen_ai.output.messages": messages(json!([bot("now this")])),
                }),
            ),
        ];
        let view = TraceView::from_spans(&spans, &ViewOptions::default()).unwrap();
        assert_eq!(view.session, "conv-9");
        let roles: Vec<(&str, &str)> = view
            .messages
            .iter()
            .map(|m| (m.role.as_str(), m.text.as_str()))
            .collect();
        assert_eq!(
            roles,
            [
                ("system", "Be brief."),
                ("user", "hi"),
                ("assistant", "hello"),
                ("user", "and now?"),
                ("assistant", "now this"),
            ]
        );
        assert_eq!(view.question().unwrap().text, "and now?");
        assert_eq!(view.context_text(), ["doc one"]);
    }

    #[test]
    fn a_message_said_again_is_read_again_though_its_first_saying_is_resent() {
        let user =
            |text: &str| json!({"role": "user", "parts": [{"type": "text", "content": text}]});
        let bot =
            |text: &str| json!({"role": "assistant", "parts": [{"type": "text", "content": text}]});
        let spans = vec![
            span("1", 0, json!({"gen_ai.operation.name": "invoke_agent"})),
            span(
                "2",
                10,
                json!({
                    "gen_ai.operation.name": "chat",
                    "gen_ai.input.messages": messages(json!([user("yes")])),
                    "gen_ai.output.messages": messages(json!([bot("Book it?")])),
                }),
            ),
            span(
                "3",
                50,
                json!({
                    "gen_ai.operation.name": "chat",
                    "gen_ai.input.messages": messages(json!([user("yes"), bot("Book it?"), user("yes")])),
                    "gen_ai.output.messages": messages(json!([bot("Booked.")])),
                }),
            ),
        ];
        let view = TraceView::from_spans(&spans, &ViewOptions::default()).unwrap();
        let texts: Vec<&str> = view.messages.iter().map(|m| m.text.as_str()).collect();
        assert_eq!(texts, ["yes", "Book it?", "yes", "Booked."]);
    }

    #[test]
    fn an_object_of_several_traces_reads_as_its_roots() {
        assert_eq!(
            TraceView::from_spans(&[], &ViewOptions::default()),
            Err(ViewError::Empty)
        );
        let mut turn = span("2", 0, json!({}));
        turn.trace_id = "f".repeat(32);
        let view = TraceView::from_spans(&[turn, span("1", 0, json!({}))], &ViewOptions::default())
            .unwrap();
        assert_eq!(view.trace_id, "0123456789abcdef0123456789abcdef");
        assert_eq!(view.root_span_id, format!("{:0>16}", "1"));
    }

    #[test]
    fn expected_actions_reward_and_annotations_are_read() {
        let spans = vec![
            span(
                "1",
                0,
                json!({
                    "gen_ai.operation.name": "invoke_agent",
                    "agentwire.expected_actions": json!([{"name": "book", "arguments": {"id": 1}}]).to_string(),
                    "agentwire.dataset.reward": 1.0,
                }),
            ),
            span(
                "2",
                10,
                json!({
                    "gen_ai.operation.name": "chat",
                    "agentwire.message.role": "assistant",
                    "gen_ai.output.messages": messages(json!([{"role": "assistant", "parts": [{"type": "text", "content": "Booked."}]}])),
                    "agentwire.annotations": json!([{"start": 0, "end": 7, "label": "Evident Baseless Info"}]).to_string(),
                }),
            ),
        ];
        let view = TraceView::from_spans(&spans, &ViewOptions::default()).unwrap();
        let actions = view.expected_actions.unwrap();
        assert_eq!(actions[0].name, "book");
        assert_eq!(actions[0].arguments, json!({"id": 1}));
        assert_eq!(view.dataset_reward, Some(1.0));
        let answer = &view.messages[0];
        assert_eq!(answer.annotations[0].label, "Evident Baseless Info");
        assert_eq!(
            (answer.annotations[0].start, answer.annotations[0].end),
            (0, 7)
        );
    }
}
