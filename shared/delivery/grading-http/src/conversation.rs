//! An item's trace as the grading page shows it: the conversation (user and assistant
//! messages), the tool calls, and the retrieved passages, with the ranges scorers flagged.
//!
//! Traces are found in the archive by their session: the object
//! `traces/dt=<day>/tenant=<t>/<session>.jsonl.gz` whose spans carry the trace id. The day
//! is not known from the item, so the days of `hints` (when the trace's scores were
//! recorded, and the day before and after) are tried first, then every archived object of
//! the session (one listing of `traces/`).

use std::sync::Arc;

use agentwire_scoring::{ScoreRecord, ScoringConfig, TraceView, ViewOptions};
use agentwire_trace::{Span, TraceArchive};
use serde::Serialize;

use agentwire_grading::GradingError;

/// What the page shows of a trace.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Conversation {
    pub messages: Vec<ShownMessage>,
    pub tool_calls: Vec<ShownToolCall>,
    pub passages: Vec<Passage>,
}

/// A chat message. `flagged` holds the ranges of its text scorers pointed at (empty when
/// the queue is blind).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ShownMessage {
    pub role: String,
    pub text: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub flagged: Vec<Flag>,
}

/// A tool call, folded on the page.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ShownToolCall {
    pub name: String,
    pub arguments: Option<serde_json::Value>,
    pub result: Option<serde_json::Value>,
    pub error: Option<String>,
}

/// One retrieved document: `source` is the retrieval tool's name.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Passage {
    pub source: String,
    pub text: String,
    pub flagged: Vec<Flag>,
}

/// A range of text a scorer flagged: Unicode scalar offsets, end exclusive; `label` is
/// the score record's name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Flag {
    pub start: usize,
    pub end: usize,
    pub label: String,
}

fn storage(e: impl ToString) -> GradingError {
    GradingError::Storage(e.to_string())
}

/// The tenant's view options (which tools are retrieval), as the scorer reads them: its
/// scoring configuration, or the defaults when it has none, it does not parse, or it
/// cannot be read (the page still shows the conversation; only passages may be missed).
pub(crate) async fn view_options(
    archive: &Arc<dyn TraceArchive>,
    tenant: &str,
) -> Result<ViewOptions, GradingError> {
    let body = match archive.get(&agentwire_scorer::config_key(tenant)).await {
        Ok(body) => body,
        Err(e) => {
            tracing::warn!(error = %e, "scoring configuration unreadable; default view options");
            None
        }
    };
    Ok(body
        .and_then(|body| {
            let text = std::str::from_utf8(&body).ok()?;
            ScoringConfig::parse(text).ok()
        })
        .unwrap_or_default()
        .view_options())
}

/// The spans of the archived object of `session` that holds `trace_id`, or `None` when no
/// object does.
pub(crate) async fn find_trace(
    archive: &Arc<dyn TraceArchive>,
    tenant: &str,
    session: &str,
    trace_id: &str,
    hints_ms: &[i64],
) -> Result<Option<Vec<Span>>, GradingError> {
    agentwire_trace::find_trace(archive.as_ref(), tenant, session, trace_id, hints_ms)
        .await
        .map_err(storage)
}

/// The page's conversation from a trace view; the flagged ranges come from `records`
/// (pass none for a blind queue).
pub(crate) fn conversation(view: &TraceView, records: &[ScoreRecord]) -> Conversation {
    let flags_of = |span_id: &str| -> Vec<(Option<usize>, Option<usize>, String)> {
        let mut flags: Vec<_> = records
            .iter()
            .flat_map(|r| {
                r.evidence
                    .iter()
                    .filter(move |e| e.span_id == span_id)
                    .map(move |e| (e.start, e.end, r.name.clone()))
            })
            .collect();
        flags.sort();
        flags.dedup();
        flags
    };
    let ranges = |text: &str, flags: Vec<(Option<usize>, Option<usize>, String)>| {
        let len = text.chars().count();
        flags
            .into_iter()
            .filter_map(|(start, end, label)| {
                let (start, end) = (start.unwrap_or(0).min(len), end.unwrap_or(len).min(len));
                (start < end).then_some(Flag { start, end, label })
            })
            .collect::<Vec<_>>()
    };
    // Ranges are of the span's text: the message's when it is alone on its span, else the
    // span's last assistant message (an OTLP chat span holds the prompt and the answer, and
    // the scorers' ranges are in the answer).
    let owner = |i: usize| -> bool {
        let m = &view.messages[i];
        let mut same = view
            .messages
            .iter()
            .enumerate()
            .filter(|(_, o)| o.span_id == m.span_id);
        if same.clone().count() == 1 {
            return true;
        }
        same.rfind(|(_, o)| o.role == "assistant").map(|(j, _)| j) == Some(i)
    };
    let messages = view
        .messages
        .iter()
        .enumerate()
        .map(|(i, m)| ShownMessage {
            role: m.role.clone(),
            text: m.text.clone(),
            flagged: if owner(i) {
                ranges(&m.text, flags_of(&m.span_id))
            } else {
                Vec::new()
            },
        })
        .collect();
    let tool_calls = view
        .tool_calls
        .iter()
        .map(|c| ShownToolCall {
            name: c.name.clone(),
            arguments: c.arguments.clone(),
            result: c.result.clone(),
            error: c.error.clone(),
        })
        .collect();
    let mut passages = Vec::new();
    for call in view.tool_calls.iter().filter(|c| c.retrieval) {
        let single = call.documents.len() == 1;
        for document in &call.documents {
            // A range on a call with several documents cannot be placed; a whole-span
            // flag marks each of them.
            let flags = flags_of(&call.span_id)
                .into_iter()
                .filter(|(start, end, _)| single || (start.is_none() && end.is_none()))
                .collect();
            passages.push(Passage {
                source: call.name.clone(),
                text: document.clone(),
                flagged: ranges(document, flags),
            });
        }
    }
    Conversation {
        messages,
        tool_calls,
        passages,
    }
}
