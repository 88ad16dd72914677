//! From a session's events to its spans.

use std::collections::HashMap;

use agentwire_session::events::Envelope;
use serde_json::{Map, Value, json};

use crate::span::{Span, SpanEvent, SpanKind, SpanStatus, span_id, trace_id};

/// One event of the session as stored.
#[derive(Debug, Clone, Copy)]
pub struct SessionEvent<'a> {
    /// Its offset, e.g. `0000000000000000_0000000000000042`.
    pub offset: &'a str,
    /// Its raw JSON bytes, as appended.
    pub json: &'a [u8],
    /// When the log committed its append, unix ms (the server time); `None`, or not
    /// positive, when unknown. The event's time unless it carries its own `ts`.
    pub at_ms: Option<i64>,
}

/// What the trace is of, and when it is being written.
#[derive(Debug, Clone, Copy)]
pub struct TraceContext<'a> {
    pub tenant: &'a str,
    pub session: &'a str,
    /// When the archive is written, unix milliseconds: the time of a session whose events
    /// carry no `ts` at all.
    pub archived_at_ms: i64,
}

/// The spans of one session, root first, then in order of first appearance. Never fails:
/// events that are not JSON objects with a string `type`, and message or tool events
/// without a string `id`, are skipped and counted in the root's `agentwire.events.skipped`.
pub fn build_trace(ctx: &TraceContext, events: &[SessionEvent]) -> Vec<Span> {
    let parsed: Vec<Option<Parsed>> = events.iter().map(Parsed::read).collect();
    // An event's own `ts` wins: its producer knew when it happened, and may have appended
    // it later (batched, or retried). Else it happened when the log committed it.
    let own_times: Vec<Option<u64>> = events
        .iter()
        .zip(&parsed)
        .map(|(event, parsed)| {
            let server = event.at_ms.filter(|&ms| ms > 0).map(ms_to_nanos);
            parsed.as_ref()?.ts.or(server)
        })
        .collect();
    // An event with neither (stored before logs kept commit times) happened when the one
    // before it did; events before the first known time at that time (not at archive
    // time, which would stretch the trace over the idle time before archiving).
    let mut clock = own_times
        .iter()
        .find_map(|&time| time)
        .unwrap_or_else(|| ms_to_nanos(ctx.archived_at_ms));
    let root_agent = parsed
        .iter()
        .flatten()
        .find_map(|p| p.str("agent"))
        .and_then(|path| path.split('/').next())
        .filter(|name| !name.is_empty())
        .map(str::to_owned);
    let mut builder = Builder::new(ctx, root_agent);
    let mut skipped = 0u64;
    for ((event, parsed), own_time) in events.iter().zip(&parsed).zip(own_times) {
        builder.drafts[ROOT].offset(event.offset);
        let Some(parsed) = parsed else {
            skipped += 1;
            continue;
        };
        clock = own_time.unwrap_or(clock);
        if !builder.add(parsed, event.offset, clock) {
            skipped += 1;
        }
    }
    builder.finish(events.len(), skipped)
}

/// The root span's index in `Builder::drafts`.
const ROOT: usize = 0;

/// A session event that is a JSON object with a string `type`: its envelope, parsed once.
struct Parsed {
    envelope: Envelope,
    ts: Option<u64>,
}

impl Parsed {
    fn read(event: &SessionEvent) -> Option<Parsed> {
        let envelope = Envelope::parse(event.json).ok()?;
        let ts = envelope.extra.get("ts").and_then(ts_nanos);
        Some(Parsed { envelope, ts })
    }

    fn kind(&self) -> &str {
        self.envelope.kind.as_str()
    }

    /// A non-empty string field: one of the envelope's, or another top-level one (`user`).
    fn str(&self, field: &str) -> Option<&str> {
        let e = &self.envelope;
        match field {
            "id" => e.id.as_deref(),
            "agent" => e.agent.as_deref(),
            "parent" => e.parent.as_deref(),
            "role" => e.role.as_deref(),
            _ => e.extra.get(field).and_then(Value::as_str),
        }
        .filter(|s| !s.is_empty())
    }

    /// The event's `data`, unless it is absent or `null`.
    fn payload(&self) -> Option<&Value> {
        self.envelope.data.as_ref().filter(|d| !d.is_null())
    }

    fn data(&self, field: &str) -> Option<&Value> {
        self.envelope.data.as_ref()?.get(field)
    }

    /// A top-level field beyond the envelope's (`model`, `usage`, `error`), or else one of
    /// its `data`.
    fn field(&self, field: &str) -> Option<&Value> {
        self.envelope
            .extra
            .get(field)
            .or_else(|| self.data(field))
            .filter(|v| !v.is_null())
    }
}

/// `ts` in unix milliseconds (integer or fractional) as unix nanoseconds; `None` when absent
/// or not a number. Negative times clamp to the epoch.
fn ts_nanos(ts: &Value) -> Option<u64> {
    match ts.as_i64() {
        Some(ms) => Some(ms_to_nanos(ms)),
        // `as` saturates, and maps NaN to 0.
        None => ts.as_f64().map(|ms| (ms * 1e6) as u64),
    }
}

fn ms_to_nanos(ms: i64) -> u64 {
    u64::try_from(ms).unwrap_or(0).saturating_mul(1_000_000)
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Operation {
    Root,
    Agent,
    Chat,
    Tool,
}

/// A span being assembled.
struct Draft<'a> {
    key: String,
    operation: Operation,
    /// Agent path, message id or tool call id.
    subject: String,
    /// The agent span (or the root) whose events made this span.
    owner: usize,
    /// `parent` ids on this span's events, first seen first.
    parent_ids: Vec<String>,
    times: Option<(u64, u64)>,
    offsets: Option<(&'a str, &'a str)>,
    attributes: Map<String, Value>,
    events: Vec<SpanEvent>,
    error: Option<String>,
    // Messages only.
    role: Option<String>,
    text: String,
    finish_reason: Option<String>,
}

impl<'a> Draft<'a> {
    fn new(operation: Operation, subject: &str, owner: usize) -> Draft<'a> {
        let key = match operation {
            Operation::Root => "root".to_owned(),
            Operation::Agent => format!("agent:{subject}"),
            Operation::Chat => format!("message:{subject}"),
            Operation::Tool => format!("tool:{subject}"),
        };
        Draft {
            key,
            operation,
            subject: subject.to_owned(),
            owner,
            parent_ids: Vec::new(),
            times: None,
            offsets: None,
            attributes: Map::new(),
            events: Vec::new(),
            error: None,
            role: None,
            text: String::new(),
            finish_reason: None,
        }
    }

    fn touch(&mut self, event: &Parsed, offset: &'a str, time: u64) {
        // Min and max rather than first and last: producers' clocks may disagree, and a
        // span must never end before it starts.
        self.times = Some(match self.times {
            None => (time, time),
            Some((start, end)) => (start.min(time), end.max(time)),
        });
        self.offset(offset);
        if let Some(parent) = event.str("parent")
            && !self.parent_ids.iter().any(|p| p == parent)
        {
            self.parent_ids.push(parent.to_owned());
        }
    }

    fn offset(&mut self, offset: &'a str) {
        self.offsets = Some(
            self.offsets
                .map_or((offset, offset), |(first, _)| (first, offset)),
        );
    }

    fn set(&mut self, key: &str, value: impl Into<Value>) {
        self.attributes.insert(key.to_owned(), value.into());
    }

    fn is_user_message(&self) -> bool {
        self.operation == Operation::Chat && self.role.as_deref() == Some("user")
    }
}

struct Builder<'a, 'c> {
    ctx: &'c TraceContext<'c>,
    root_agent: Option<String>,
    drafts: Vec<Draft<'a>>,
    agents: HashMap<String, usize>,
    messages: HashMap<String, usize>,
    tools: HashMap<String, usize>,
}

impl<'a, 'c> Builder<'a, 'c> {
    fn new(ctx: &'c TraceContext<'c>, root_agent: Option<String>) -> Self {
        let root = Draft::new(Operation::Root, root_agent.as_deref().unwrap_or(""), ROOT);
        Builder {
            ctx,
            root_agent,
            drafts: vec![root],
            agents: HashMap::new(),
            messages: HashMap::new(),
            tools: HashMap::new(),
        }
    }

    /// Adds one event; false if it is a message or tool event without an id.
    fn add(&mut self, event: &Parsed, offset: &'a str, time: u64) -> bool {
        const SPANNED: [&str; 5] = [
            "message.start",
            "message.delta",
            "message.end",
            "tool.call",
            "tool.result",
        ];
        let kind = event.kind();
        let id = event.str("id");
        if SPANNED.contains(&kind) && id.is_none() {
            return false;
        }
        let owner = self.agent_span(event.str("agent"));
        self.drafts[ROOT].touch(event, offset, time);
        if owner != ROOT {
            self.drafts[owner].touch(event, offset, time);
        }
        match (kind, id) {
            ("message.start" | "message.delta" | "message.end", Some(id)) => {
                let index = Self::span(
                    &mut self.drafts,
                    &mut self.messages,
                    Operation::Chat,
                    id,
                    owner,
                );
                self.drafts[index].touch(event, offset, time);
                message(&mut self.drafts[index], kind, event, time);
            }
            ("tool.call" | "tool.result", Some(id)) => {
                let index = Self::span(
                    &mut self.drafts,
                    &mut self.tools,
                    Operation::Tool,
                    id,
                    owner,
                );
                self.drafts[index].touch(event, offset, time);
                tool(&mut self.drafts[index], kind, event);
            }
            // Control, presence, status and unknown types annotate their agent's span.
            _ => self.drafts[owner]
                .events
                .push(span_event(event, offset, time)),
        }
        true
    }

    /// The span of the agent at `path`, created on first sight; the root agent's events
    /// (and those without an agent) belong to the root span.
    fn agent_span(&mut self, path: Option<&str>) -> usize {
        match path {
            None => ROOT,
            Some(path) if Some(path) == self.root_agent.as_deref() => ROOT,
            Some(path) => Self::span(
                &mut self.drafts,
                &mut self.agents,
                Operation::Agent,
                path,
                ROOT,
            ),
        }
    }

    fn span(
        drafts: &mut Vec<Draft<'a>>,
        index: &mut HashMap<String, usize>,
        operation: Operation,
        subject: &str,
        owner: usize,
    ) -> usize {
        *index.entry(subject.to_owned()).or_insert_with(|| {
            drafts.push(Draft::new(operation, subject, owner));
            drafts.len() - 1
        })
    }

    /// The span each draft hangs under (`None` for the root), acyclic.
    fn parents(&self) -> Vec<Option<usize>> {
        let message = |id: &str| self.messages.get(id).copied();
        let mut parents: Vec<Option<usize>> = self
            .drafts
            .iter()
            .enumerate()
            .map(|(index, draft)| match draft.operation {
                Operation::Root => None,
                Operation::Chat if draft.is_user_message() => Some(ROOT),
                Operation::Chat => Some(draft.owner),
                // A sub-agent works for the message its events name, if that message is
                // another agent's; else for the nearest agent up its path.
                Operation::Agent => draft
                    .parent_ids
                    .iter()
                    .filter_map(|id| message(id))
                    .find(|&m| self.drafts[m].owner != index)
                    .or_else(|| self.ancestor(&draft.subject))
                    .or(Some(ROOT)),
                // A tool call belongs to the message it names only if its own agent wrote
                // that message: the SDK stamps a sub-agent's `parent` (the orchestrator's
                // message) on all its events, tool calls included.
                Operation::Tool => draft
                    .parent_ids
                    .iter()
                    .filter_map(|id| message(id))
                    .find(|&m| self.drafts[m].owner == draft.owner)
                    .or(Some(draft.owner)),
            })
            .collect();
        // Agents naming each other's messages could loop; re-hang a span on the root when
        // its own chain leads back to it. Walks are bounded, so this ends, and re-hanging on
        // the root never makes a new loop.
        for span in 0..parents.len() {
            let mut at = parents[span];
            for _ in 0..parents.len() {
                match at {
                    Some(p) if p == span => {
                        parents[span] = Some(ROOT);
                        break;
                    }
                    Some(p) => at = parents[p],
                    None => break,
                }
            }
        }
        parents
    }

    /// The span of the nearest agent up `path` (`a/b/c` → `a/b` → `a`).
    fn ancestor(&self, path: &str) -> Option<usize> {
        let mut path = path;
        while let Some((up, _)) = path.rsplit_once('/') {
            if self.root_agent.as_deref() == Some(up) {
                return Some(ROOT);
            }
            if let Some(&index) = self.agents.get(up) {
                return Some(index);
            }
            path = up;
        }
        None
    }

    fn finish(self, count: usize, skipped: u64) -> Vec<Span> {
        let trace = trace_id(self.ctx.tenant, self.ctx.session);
        let ids: Vec<String> = self
            .drafts
            .iter()
            .map(|d| span_id(&trace, &d.key))
            .collect();
        let parents = self.parents();
        let fallback = ms_to_nanos(self.ctx.archived_at_ms);
        let root_name = self.root_agent.clone();
        self.drafts
            .into_iter()
            .zip(parents)
            .zip(&ids)
            .map(|((mut draft, parent), id)| {
                let (start, end) = draft.times.unwrap_or((fallback, fallback));
                let (name, kind) = describe(&mut draft, root_name.as_deref());
                draft.set("gen_ai.conversation.id", self.ctx.session);
                if let Some((first, last)) = draft.offsets {
                    draft.set("agentwire.offset.start", first);
                    draft.set("agentwire.offset.end", last);
                }
                if draft.operation == Operation::Root {
                    draft.set("agentwire.tenant", self.ctx.tenant);
                    draft.set("agentwire.session", self.ctx.session);
                    draft.set("agentwire.events", count);
                    draft.set("agentwire.events.skipped", skipped);
                    if let Some((first, last)) = draft.offsets {
                        draft.set("agentwire.first_offset", first);
                        draft.set("agentwire.last_offset", last);
                    }
                }
                let status = match draft.error.take() {
                    Some(error) => {
                        draft.set("error.type", error);
                        SpanStatus::Error
                    }
                    None => SpanStatus::Unset,
                };
                Span {
                    trace_id: trace.clone(),
                    span_id: id.clone(),
                    parent_span_id: parent.map(|p| ids[p].clone()),
                    name,
                    kind,
                    start_time_unix_nano: start,
                    end_time_unix_nano: end,
                    attributes: draft.attributes,
                    events: draft.events,
                    status,
                }
            })
            .collect()
    }
}

/// Reads a `message.*` event into its chat span.
fn message(draft: &mut Draft, kind: &str, event: &Parsed, time: u64) {
    if draft.role.is_none() {
        draft.role = event.str("role").map(str::to_owned);
    }
    if let Some(user) = event.str("user") {
        draft.set("agentwire.user", user);
    }
    match kind {
        "message.start" => {
            if let Some(model) = event.field("model") {
                draft.set("gen_ai.request.model", model.clone());
            }
        }
        "message.delta" => {
            if let Some(text) = event.data("text").and_then(Value::as_str) {
                // Time to first token is measured to the first delta that carried text.
                if draft.text.is_empty() && !text.is_empty() {
                    draft.set("agentwire.first_token_unix_nano", time);
                }
                draft.text.push_str(text);
            }
        }
        _ => {
            let reason = event.data("reason").and_then(Value::as_str);
            let stopped = event.data("stopped").and_then(Value::as_bool) == Some(true);
            draft.finish_reason = Some(
                reason
                    .unwrap_or(if stopped { "cancelled" } else { "stop" })
                    .to_owned(),
            );
            if stopped || reason.is_some_and(is_failure) {
                draft.error = Some(reason.unwrap_or("cancelled").to_owned());
            }
            if let Some(error) = failure(event.data("error")) {
                draft.error = Some(error);
            }
            if let Some(model) = event.field("model") {
                draft.set("gen_ai.response.model", model.clone());
            }
            if let Some(usage) = event.field("usage") {
                for tokens in ["input_tokens", "output_tokens"] {
                    if let Some(n) = usage.get(tokens).and_then(Value::as_u64) {
                        draft.set(&format!("gen_ai.usage.{tokens}"), n);
                    }
                }
            }
        }
    }
}

/// Finish reasons that mean the message did not complete.
fn is_failure(reason: &str) -> bool {
    matches!(
        reason,
        "cancel" | "cancelled" | "canceled" | "error" | "aborted"
    )
}

/// An `error` field's meaning: absent, `null` and `false` are no error; a string names it.
fn failure(error: Option<&Value>) -> Option<String> {
    match error? {
        Value::Null | Value::Bool(false) => None,
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        _ => Some("error".to_owned()),
    }
}

/// Reads a `tool.*` event into its execute_tool span.
fn tool(draft: &mut Draft, kind: &str, event: &Parsed) {
    if !draft.attributes.contains_key("gen_ai.tool.name")
        && let Some(name) = ["tool", "name"]
            .iter()
            .find_map(|f| event.field(f).and_then(Value::as_str))
    {
        draft.set("gen_ai.tool.name", name);
    }
    let data = event.payload();
    if kind == "tool.call" {
        // `data.arguments` when the producer separates them, else `data` without the name.
        let arguments = event.data("arguments").cloned().or_else(|| {
            let mut data = data?.as_object()?.clone();
            data.remove("tool");
            data.remove("name");
            data.remove("retrieval");
            Some(Value::Object(data))
        });
        if let Some(arguments) = arguments.or_else(|| data.cloned()) {
            draft.set("gen_ai.tool.call.arguments", arguments.to_string());
        }
        // The producer says its result is retrieved context (scorers check answers
        // against it).
        if event.data("retrieval").and_then(Value::as_bool) == Some(true) {
            draft.set("agentwire.tool.retrieval", true);
        }
    } else {
        if let Some(result) = data {
            draft.set("gen_ai.tool.call.result", result.to_string());
        }
        let is_error = event.data("is_error").and_then(Value::as_bool) == Some(true)
            || event.data("status").and_then(Value::as_str) == Some("error");
        draft.error = failure(event.field("error")).or(is_error.then(|| "error".to_owned()));
    }
}

/// A session event that is not a span of its own, as a span event.
fn span_event(event: &Parsed, offset: &str, time: u64) -> SpanEvent {
    let mut attributes = Map::new();
    attributes.insert("agentwire.offset".into(), offset.into());
    for field in ["agent", "user"] {
        if let Some(value) = event.str(field) {
            attributes.insert(format!("agentwire.{field}"), value.into());
        }
    }
    if let Some(data) = &event.envelope.data {
        attributes.insert("agentwire.data".into(), data.to_string().into());
    }
    SpanEvent {
        name: event.kind().to_owned(),
        time_unix_nano: time,
        attributes,
    }
}

/// The span's name and kind, adding its operation's attributes.
fn describe(draft: &mut Draft, root_agent: Option<&str>) -> (String, SpanKind) {
    let named = |operation: &str, name: Option<&str>| match name {
        Some(name) => format!("{operation} {name}"),
        None => operation.to_owned(),
    };
    match draft.operation {
        Operation::Root | Operation::Agent => {
            let agent = match draft.operation {
                Operation::Root => root_agent.map(str::to_owned),
                _ => Some(draft.subject.clone()),
            };
            draft.set("gen_ai.operation.name", "invoke_agent");
            if let Some(agent) = &agent {
                draft.set("gen_ai.agent.name", agent.as_str());
            }
            (named("invoke_agent", agent.as_deref()), SpanKind::Internal)
        }
        Operation::Chat => {
            let role = draft.role.clone().unwrap_or_else(|| "assistant".to_owned());
            draft.set("gen_ai.operation.name", "chat");
            draft.set("agentwire.message.id", draft.subject.clone());
            draft.set("agentwire.message.role", role.as_str());
            // The semantic conventions' message shape: a user's message is input to the
            // agents, anything else is output.
            let mut content =
                json!({"role": role, "parts": [{"type": "text", "content": draft.text}]});
            match &draft.finish_reason {
                None => draft.set("agentwire.message.incomplete", true),
                // Finish reasons are a model's; a user's message just ends.
                Some(_) if role == "user" => {}
                Some(reason) => {
                    content["finish_reason"] = reason.as_str().into();
                    draft.set("gen_ai.response.finish_reasons", json!([reason]));
                }
            }
            let (attribute, kind) = if role == "user" {
                ("gen_ai.input.messages", SpanKind::Internal)
            } else {
                ("gen_ai.output.messages", SpanKind::Client)
            };
            draft.set(attribute, json!([content]).to_string());
            if let Some(parent) = draft.parent_ids.first() {
                draft.set("agentwire.parent", parent.clone());
            }
            let model = draft
                .attributes
                .get("gen_ai.request.model")
                .or_else(|| draft.attributes.get("gen_ai.response.model"))
                .and_then(Value::as_str);
            (named("chat", model), kind)
        }
        Operation::Tool => {
            draft.set("gen_ai.operation.name", "execute_tool");
            draft.set("gen_ai.tool.call.id", draft.subject.clone());
            if let Some(parent) = draft.parent_ids.first() {
                draft.set("agentwire.parent", parent.clone());
            }
            let tool = draft
                .attributes
                .get("gen_ai.tool.name")
                .and_then(Value::as_str);
            (named("execute_tool", tool), SpanKind::Internal)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CTX: TraceContext = TraceContext {
        tenant: "acme",
        session: "s-1",
        archived_at_ms: 1_750_000_000_000,
    };

    /// Stored events, each at offset `0000000000000000_<its index>`.
    fn stored(events: &[Value]) -> Vec<(String, Vec<u8>)> {
        events
            .iter()
            .enumerate()
            .map(|(i, e)| {
                (
                    format!("0000000000000000_{i:016}"),
                    e.to_string().into_bytes(),
                )
            })
            .collect()
    }

    fn trace(stored: &[(String, Vec<u8>)]) -> Vec<Span> {
        let events: Vec<SessionEvent> = stored
            .iter()
            .map(|(offset, json)| SessionEvent {
                offset,
                json,
                at_ms: None,
            })
            .collect();
        build_trace(&CTX, &events)
    }

    /// Spans of events as stored, each with the server time it was committed at.
    fn trace_at(events: &[(Value, Option<i64>)]) -> Vec<Span> {
        let (values, times): (Vec<Value>, Vec<Option<i64>>) = events.iter().cloned().unzip();
        let stored = stored(&values);
        let events: Vec<SessionEvent> = stored
            .iter()
            .zip(times)
            .map(|((offset, json), at_ms)| SessionEvent {
                offset,
                json,
                at_ms,
            })
            .collect();
        build_trace(&CTX, &events)
    }

    fn named<'s>(spans: &'s [Span], name: &str) -> &'s Span {
        spans
            .iter()
            .find(|s| s.name == name)
            .unwrap_or_else(|| panic!("no span {name}"))
    }

    fn with<'s>(spans: &'s [Span], attribute: &str, value: &str) -> &'s Span {
        spans
            .iter()
            .find(|s| s.attributes.get(attribute).and_then(Value::as_str) == Some(value))
            .unwrap_or_else(|| panic!("no span with {attribute} = {value}"))
    }

    /// An attribute holding JSON as a string, parsed (key order is not part of the format).
    fn json_in(attributes: &Map<String, Value>, attribute: &str) -> Value {
        let text = attributes[attribute].as_str().expect("a JSON string");
        serde_json::from_str(text).expect("valid JSON")
    }

    fn ms(span: &Span) -> (u64, u64) {
        (
            span.start_time_unix_nano / 1_000_000,
            span.end_time_unix_nano / 1_000_000,
        )
    }

    /// A planner answering a user with the help of a search sub-agent, cancelled midway.
    fn scripted() -> Vec<Value> {
        let search = |mut e: Value| {
            e["agent"] = json!("planner/search-1");
            // As the SDK's sub-agent handle does: its `parent` unless the event names one.
            if e.get("parent").is_none() {
                e["parent"] = json!("m1");
            }
            e
        };
        vec![
            json!({"type": "presence.join", "user": "ana", "ts": 1000}),
            json!({"type": "message.start", "id": "u1", "role": "user", "user": "ana", "ts": 1001}),
            json!({"type": "message.delta", "id": "u1", "data": {"text": "find rust books"}}),
            json!({"type": "message.end", "id": "u1", "role": "user"}),
            json!({"type": "message.start", "id": "m1", "agent": "planner", "role": "assistant", "parent": "u1", "ts": 1010}),
            json!({"type": "message.delta", "id": "m1", "agent": "planner", "data": {"text": "Let me "}, "ts": 1020}),
            search(json!({"type": "agent.status", "data": {"state": "working"}, "ts": 1030})),
            search(
                json!({"type": "tool.call", "id": "c1", "data": {"tool": "search", "query": "rust"}, "ts": 1040}),
            ),
            search(json!({"type": "tool.result", "id": "c1", "data": {"hits": 3}, "ts": 1050})),
            search(json!({"type": "message.start", "id": "s1", "role": "assistant", "ts": 1060})),
            search(
                json!({"type": "tool.call", "id": "c2", "parent": "s1", "data": {"tool": "fetch", "arguments": {"url": "x"}}, "ts": 1070}),
            ),
            search(
                json!({"type": "tool.result", "id": "c2", "parent": "s1", "data": {"error": "timeout"}, "ts": 1080}),
            ),
            search(
                json!({"type": "message.delta", "id": "s1", "data": {"text": "3 hits"}, "ts": 1090}),
            ),
            search(json!({"type": "message.end", "id": "s1", "ts": 1100})),
            json!({"type": "message.delta", "id": "m1", "agent": "planner", "data": {"text": "search."}, "ts": 1110}),
            json!({"type": "control.cancel", "data": {"message_id": "m1"}, "user": "ana", "ts": 1120}),
            json!({"type": "message.end", "id": "m1", "agent": "planner", "data": {"stopped": true}, "ts": 1130}),
            json!({"type": "control.ack", "agent": "planner", "data": {"kind": "cancel"}, "ts": 1140}),
        ]
    }

    #[test]
    fn a_multi_agent_session_becomes_a_span_tree() {
        let spans = trace(&stored(&scripted()));
        let names: Vec<&str> = spans.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "invoke_agent planner",
                "chat",
                "chat",
                "invoke_agent planner/search-1",
                "execute_tool search",
                "chat",
                "execute_tool fetch",
            ]
        );
        let trace_id = trace_id("acme", "s-1");
        assert!(spans.iter().all(|s| s.trace_id == trace_id));
        assert_eq!(trace_id.len(), 32);
        let roots: Vec<&Span> = spans
            .iter()
            .filter(|s| s.parent_span_id.is_none())
            .collect();
        assert_eq!(roots.len(), 1);
        let root = roots[0];
        let (u1, m1, s1) = (
            with(&spans, "agentwire.message.id", "u1"),
            with(&spans, "agentwire.message.id", "m1"),
            with(&spans, "agentwire.message.id", "s1"),
        );
        let search = named(&spans, "invoke_agent planner/search-1");
        let (c1, c2) = (
            named(&spans, "execute_tool search"),
            named(&spans, "execute_tool fetch"),
        );
        let parent = |s: &Span| s.parent_span_id.clone();
        assert_eq!(parent(u1), Some(root.span_id.clone()));
        assert_eq!(
            parent(m1),
            Some(root.span_id.clone()),
            "planner is the root agent"
        );
        assert_eq!(
            parent(search),
            Some(m1.span_id.clone()),
            "sub-agent works for m1"
        );
        assert_eq!(parent(s1), Some(search.span_id.clone()));
        // c1 names m1 (stamped by the sub-agent's handle) but m1 is the planner's: it hangs
        // under its own agent. c2 names the sub-agent's own message.
        assert_eq!(parent(c1), Some(search.span_id.clone()));
        assert_eq!(parent(c2), Some(s1.span_id.clone()));

        assert_eq!(root.attributes["gen_ai.operation.name"], "invoke_agent");
        assert_eq!(root.attributes["gen_ai.agent.name"], "planner");
        assert_eq!(root.attributes["gen_ai.conversation.id"], "s-1");
        assert_eq!(root.attributes["agentwire.tenant"], "acme");
        assert_eq!(root.attributes["agentwire.events"], 18);
        assert_eq!(root.attributes["agentwire.events.skipped"], 0);
        assert_eq!(
            root.attributes["agentwire.first_offset"],
            "0000000000000000_0000000000000000"
        );
        assert_eq!(
            root.attributes["agentwire.last_offset"],
            "0000000000000000_0000000000000017"
        );
        let root_events: Vec<&str> = root.events.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(
            root_events,
            ["presence.join", "control.cancel", "control.ack"]
        );
        assert_eq!(search.events[0].name, "agent.status");
        assert_eq!(
            json_in(&search.events[0].attributes, "agentwire.data"),
            json!({"state":"working"})
        );

        assert_eq!(
            json_in(&u1.attributes, "gen_ai.input.messages"),
            json!([{"role": "user", "parts": [{"type": "text", "content": "find rust books"}]}])
        );
        assert_eq!(u1.kind, SpanKind::Internal);
        assert_eq!(u1.attributes["agentwire.user"], "ana");
        let output = json_in(&m1.attributes, "gen_ai.output.messages");
        assert_eq!(output[0]["parts"][0]["content"], "Let me search.");
        assert_eq!(output[0]["finish_reason"], "cancelled");
        // The first delta with text, not the message's start (1010).
        assert_eq!(
            m1.attributes["agentwire.first_token_unix_nano"],
            1_020_000_000u64
        );
        assert_eq!(m1.kind, SpanKind::Client);
        assert_eq!(m1.status, SpanStatus::Error);
        assert_eq!(m1.attributes["error.type"], "cancelled");
        assert_eq!(m1.attributes["agentwire.parent"], "u1");
        assert_eq!(s1.status, SpanStatus::Unset);

        assert_eq!(c1.attributes["gen_ai.tool.call.id"], "c1");
        assert_eq!(
            json_in(&c1.attributes, "gen_ai.tool.call.arguments"),
            json!({"query":"rust"})
        );
        assert_eq!(
            json_in(&c1.attributes, "gen_ai.tool.call.result"),
            json!({"hits":3})
        );
        assert_eq!(c1.status, SpanStatus::Unset);
        assert_eq!(
            json_in(&c2.attributes, "gen_ai.tool.call.arguments"),
            json!({"url":"x"})
        );
        assert_eq!(c2.status, SpanStatus::Error);
        assert_eq!(c2.attributes["error.type"], "timeout");

        // Times come from `ts`; events without it take the previous event's.
        assert_eq!(ms(root), (1000, 1140));
        assert_eq!(ms(u1), (1001, 1001));
        assert_eq!(ms(m1), (1010, 1130));
        assert_eq!(ms(search), (1030, 1100));
        assert_eq!(ms(c1), (1040, 1050));
        assert_eq!(root.events[1].time_unix_nano, 1_120_000_000);
        assert_eq!(
            m1.attributes["agentwire.offset.start"],
            "0000000000000000_0000000000000004"
        );
        assert_eq!(
            m1.attributes["agentwire.offset.end"],
            "0000000000000000_0000000000000016"
        );
        assert!(
            spans
                .iter()
                .all(|s| s.start_time_unix_nano <= s.end_time_unix_nano)
        );
    }

    #[test]
    fn ids_are_deterministic_and_distinct() {
        let events = stored(&scripted());
        let (a, b) = (trace(&events), trace(&events));
        assert_eq!(a, b);
        let mut ids: Vec<&str> = a.iter().map(|s| s.span_id.as_str()).collect();
        assert!(
            ids.iter()
                .all(|id| id.len() == 16 && id.bytes().all(|b| b.is_ascii_hexdigit()))
        );
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), a.len());
        assert_ne!(trace_id("acme", "s-1"), trace_id("acme", "s-2"));
        assert_ne!(trace_id("ac", "mes-1"), trace_id("acm", "es-1"));
    }

    #[test]
    fn a_sub_agent_may_start_before_the_message_it_works_for() {
        // As `agentwire demo-agent` does: research first, then the reply it was for.
        let research = json!({"agent": "demo/research", "parent": "r1"});
        let with = |mut e: Value| {
            e.as_object_mut()
                .unwrap()
                .extend(research.as_object().unwrap().clone());
            e
        };
        let spans = trace(&stored(&[
            json!({"type": "message.start", "id": "u1", "role": "user"}),
            with(json!({"type": "tool.call", "id": "r1_search", "data": {"tool": "search_notes"}})),
            with(json!({"type": "tool.result", "id": "r1_search", "data": {"hits": 3}})),
            json!({"type": "message.start", "id": "r1", "agent": "demo", "parent": "u1"}),
        ]));
        let names: Vec<&str> = spans.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "invoke_agent demo",
                "chat",
                "invoke_agent demo/research",
                "execute_tool search_notes",
                "chat"
            ]
        );
        assert_eq!(spans[2].parent_span_id.as_ref(), Some(&spans[4].span_id));
        assert_eq!(spans[3].parent_span_id.as_ref(), Some(&spans[2].span_id));
        assert_eq!(spans[4].parent_span_id.as_ref(), Some(&spans[0].span_id));
    }

    #[test]
    fn garbage_is_counted_and_skipped() {
        let mut events = stored(&[
            json!([1, 2]),
            json!({"data": 1}),
            json!({"type": 5}),
            json!(null),
            json!({"type": "message.delta", "data": {"text": "no id"}}),
            json!({"type": "message.delta", "id": "m", "agent": 7, "ts": "soon", "data": "odd"}),
            json!({"type": "tool.result", "id": "t", "data": [1]}),
            json!({"type": "tool.progress", "data": 0.5}),
        ]);
        events.push(("x".into(), b"{not json".to_vec()));
        events.push(("y".into(), vec![0xff, 0xfe]));
        let spans = trace(&events);
        let root = &spans[0];
        assert_eq!(root.attributes["agentwire.events"], 10);
        assert_eq!(root.attributes["agentwire.events.skipped"], 7);
        assert_eq!(root.attributes["agentwire.last_offset"], "y");
        assert_eq!(root.name, "invoke_agent");
        assert_eq!(spans.len(), 3);
        assert_eq!(spans[1].attributes["agentwire.message.incomplete"], true);
        assert_eq!(spans[2].name, "execute_tool");
        assert_eq!(
            root.events[0].name, "tool.progress",
            "unknown kinds are span events"
        );
        // No `ts` anywhere: everything happened at archive time.
        assert!(
            spans
                .iter()
                .all(|s| ms(s) == (1_750_000_000_000, 1_750_000_000_000))
        );
        assert_eq!(trace(&[]).len(), 1);
    }

    #[test]
    fn times_fall_back_and_never_run_backwards() {
        let spans = trace(&stored(&[
            json!({"type": "message.start", "id": "m", "agent": "a"}),
            json!({"type": "message.delta", "id": "m", "agent": "a", "ts": 5000, "data": {"text": "x"}}),
            json!({"type": "message.delta", "id": "m", "agent": "a", "ts": 4000.5}),
            json!({"type": "message.end", "id": "m", "agent": "a", "ts": -3}),
        ]));
        // The leading event takes the first `ts`, not the archive time; a clock that went
        // backwards widens the span instead of inverting it.
        assert_eq!(spans[1].start_time_unix_nano, 0);
        assert_eq!(spans[1].end_time_unix_nano, 5_000_000_000);
        assert!(
            spans
                .iter()
                .all(|s| s.start_time_unix_nano <= s.end_time_unix_nano)
        );
    }

    #[test]
    fn agents_naming_each_others_messages_do_not_loop() {
        let spans = trace(&stored(&[
            json!({"type": "agent.status", "agent": "root"}),
            json!({"type": "message.start", "id": "mx", "agent": "x", "parent": "my"}),
            json!({"type": "message.start", "id": "my", "agent": "y", "parent": "mx"}),
            json!({"type": "message.start", "id": "mz", "agent": "root/a/b", "parent": "nowhere"}),
        ]));
        let by_id: HashMap<&str, &Span> = spans.iter().map(|s| (s.span_id.as_str(), s)).collect();
        for span in &spans {
            let mut at = span;
            for _ in 0..=spans.len() {
                match &at.parent_span_id {
                    Some(parent) => at = by_id[parent.as_str()],
                    None => break,
                }
            }
            assert!(
                at.parent_span_id.is_none(),
                "{} does not reach the root",
                span.name
            );
        }
        // `root/a/b` has no `root/a` span: the nearest agent up its path is the root.
        let b = named(&spans, "invoke_agent root/a/b");
        assert_eq!(b.parent_span_id.as_deref(), Some(spans[0].span_id.as_str()));
    }

    #[test]
    fn a_call_marked_as_retrieval_is_marked_on_its_span() {
        let spans = trace(&stored(&[
            json!({"type": "tool.call", "id": "r", "data": {"tool": "search", "retrieval": true, "q": "x"}}),
            json!({"type": "tool.result", "id": "r", "data": {"result": ["doc"]}}),
            json!({"type": "tool.call", "id": "p", "data": {"tool": "fetch"}}),
        ]));
        assert_eq!(spans[1].attributes["agentwire.tool.retrieval"], true);
        assert_eq!(
            json_in(&spans[1].attributes, "gen_ai.tool.call.arguments"),
            json!({"q": "x"})
        );
        assert!(!spans[2].attributes.contains_key("agentwire.tool.retrieval"));
    }

    #[test]
    fn model_usage_and_failure_reasons_are_recorded() {
        let spans = trace(&stored(&[
            json!({"type": "message.start", "id": "m", "agent": "a", "model": "claude-x"}),
            json!({"type": "message.end", "id": "m", "agent": "a", "data": {"reason": "error", "model": "claude-x-1", "usage": {"input_tokens": 12, "output_tokens": 30}}}),
            json!({"type": "message.start", "id": "n", "agent": "a"}),
            json!({"type": "message.end", "id": "n", "agent": "a", "data": {"reason": "length"}}),
        ]));
        let m = &spans[1];
        assert_eq!(m.name, "chat claude-x");
        assert_eq!(m.attributes["gen_ai.request.model"], "claude-x");
        assert_eq!(m.attributes["gen_ai.response.model"], "claude-x-1");
        assert_eq!(m.attributes["gen_ai.usage.input_tokens"], 12);
        assert_eq!(m.attributes["gen_ai.usage.output_tokens"], 30);
        assert_eq!(
            m.attributes["gen_ai.response.finish_reasons"],
            json!(["error"])
        );
        assert_eq!(m.status, SpanStatus::Error);
        assert_eq!(spans[2].status, SpanStatus::Unset);
        assert_eq!(
            spans[2].attributes["gen_ai.response.finish_reasons"],
            json!(["length"])
        );
    }

    #[test]
    fn server_times_time_events_without_ts() {
        // A reply streamed over 3 s, its events carrying no `ts`.
        let spans = trace_at(&[
            (
                json!({"type": "message.start", "id": "u1", "role": "user"}),
                Some(1_000),
            ),
            (
                json!({"type": "message.start", "id": "m", "agent": "a"}),
                Some(1_000),
            ),
            (
                json!({"type": "message.delta", "id": "m", "agent": "a", "data": {"text": "x"}}),
                Some(2_500),
            ),
            (
                json!({"type": "message.end", "id": "m", "agent": "a"}),
                Some(4_000),
            ),
        ]);
        let m = with(&spans, "agentwire.message.id", "m");
        assert_eq!(ms(m), (1_000, 4_000));
        assert_eq!(ms(&spans[0]), (1_000, 4_000));
    }

    #[test]
    fn an_events_own_ts_wins_over_its_server_time() {
        let spans = trace_at(&[
            (
                json!({"type": "message.start", "id": "m", "agent": "a", "ts": 500}),
                Some(1_000),
            ),
            (
                json!({"type": "message.end", "id": "m", "agent": "a"}),
                Some(4_000),
            ),
            (
                json!({"type": "control.ack", "agent": "a", "ts": 4_500}),
                Some(9_000),
            ),
        ]);
        let m = with(&spans, "agentwire.message.id", "m");
        assert_eq!(ms(m), (500, 4_000));
        assert_eq!(spans[0].events[0].time_unix_nano, 4_500_000_000);
    }

    #[test]
    fn unknown_server_times_fall_back_to_the_previous_event() {
        // Records stored before commit times were kept read as 0: unknown.
        let spans = trace_at(&[
            (
                json!({"type": "message.start", "id": "m", "agent": "a"}),
                Some(0),
            ),
            (
                json!({"type": "message.delta", "id": "m", "agent": "a"}),
                Some(2_000),
            ),
            (
                json!({"type": "message.end", "id": "m", "agent": "a"}),
                None,
            ),
            (
                json!({"type": "message.start", "id": "n", "agent": "a"}),
                Some(-5),
            ),
        ]);
        assert_eq!(
            ms(with(&spans, "agentwire.message.id", "m")),
            (2_000, 2_000)
        );
        assert_eq!(
            ms(with(&spans, "agentwire.message.id", "n")),
            (2_000, 2_000)
        );
    }
}
