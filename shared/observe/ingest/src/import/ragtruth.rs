//! RAGTruth responses to traces: one trace per response (`agentwire import ragtruth`).
//!
//! The input is RAGTruth's two JSON-lines files: `response.jsonl` (one model response per
//! line: `{id, source_id, model, temperature, labels: [{start, end, text, label_type, ...}],
//! split, quality, response}`) and `source_info.jsonl` (one retrieval task per line:
//! `{source_id, task_type, source, source_info: {question, passages}, prompt}`). Only QA
//! tasks (a `question` and a `passages` string) are read.
//!
//! Each response becomes the spans of a session named `ragtruth-<id>`:
//! - **root** `invoke_agent ragtruth`: the contract's root attributes plus
//!   `agentwire.dataset.name = "ragtruth"`, `.item` (the response id), `.group` (the source
//!   id: responses to the same passages share it), `.model`, `.quality`, `.split`,
//!   `.temperature` when given;
//! - **user message** `chat`: the question;
//! - **retrieval tool** `execute_tool retrieve` (`agentwire.tool.retrieval = true`): the
//!   question as arguments `{"query": ...}` and the passages as the result, a JSON array of
//!   strings, split at the `passage N:` markers (markers dropped);
//! - **assistant message** `chat <model>`: the response, with the labelled hallucination
//!   spans as `agentwire.annotations` (`[{start, end, label, text, source: "human"}]`, char
//!   offsets into the response, as RAGTruth gives them).
//!
//! RAGTruth records no times: the n-th response (0-based, in file order) starts at
//! 2024-01-01T00:00:00Z plus n seconds; the user message takes its first millisecond, the
//! retrieval the second, the answer the third. Span ids derive from the trace id and the
//! keys `root`, `message:user`, `tool:retrieve`, `message:assistant`, so importing again
//! gives the same ids.
//!
//! A line that is not JSON, lacks a field, or (for a response) names a source not in the
//! sources file is reported in [`Import::skipped`] with its file, line and field, and skipped.
//! So is a second response with an id already seen.

use std::collections::{HashMap, HashSet};
use std::io::BufRead;

use agentwire_trace::{Span, SpanKind, SpanStatus, span_id, trace_id};
use serde_json::{Map, Value, json};

use super::{Import, ImportError, RowError};

/// 2024-01-01T00:00:00Z in unix nanoseconds.
const BASE_NS: u64 = 1_704_067_200_000_000_000;
const MS: u64 = 1_000_000;
const SECOND: u64 = 1_000_000_000;

/// One QA task: what was asked and the passages retrieved for it.
struct Source {
    question: String,
    passages: Vec<String>,
}

/// Reads `responses` against `sources` (`*_name` name them in errors) as traces of `tenant`.
/// Fails only when a file cannot be read; bad lines are reported in [`Import::skipped`].
pub fn read(
    responses: impl BufRead,
    responses_name: &str,
    sources: impl BufRead,
    sources_name: &str,
    tenant: &str,
) -> Result<Import, ImportError> {
    let mut import = Import::default();
    let mut by_id: HashMap<String, Source> = HashMap::new();
    for (n, line) in sources.lines().enumerate() {
        let line = line.map_err(|e| ImportError {
            file: sources_name.to_owned(),
            message: format!("cannot read line {}: {e}", n + 1),
        })?;
        if line.trim().is_empty() {
            continue;
        }
        match parse_source(&line) {
            Ok((id, source)) => {
                by_id.insert(id, source);
            }
            Err(bad) => import.skipped.push(bad.at(sources_name, n + 1)),
        }
    }
    let mut seen = HashSet::new();
    let mut ordinal = 0u64;
    for (n, line) in responses.lines().enumerate() {
        let line = line.map_err(|e| ImportError {
            file: responses_name.to_owned(),
            message: format!("cannot read line {}: {e}", n + 1),
        })?;
        if line.trim().is_empty() {
            continue;
        }
        let response = match parse_response(&line) {
            Ok(r) => r,
            Err(bad) => {
                import.skipped.push(bad.at(responses_name, n + 1));
                continue;
            }
        };
        let Some(source) = by_id.get(&response.source_id) else {
            import.skipped.push(
                Bad::field(
                    "source_id",
                    format!(
                        "source {} is not in {sources_name} (or its line there was skipped)",
                        response.source_id
                    ),
                )
                .at(responses_name, n + 1),
            );
            continue;
        };
        if !seen.insert(response.id.clone()) {
            import.skipped.push(
                Bad::field("id", format!("a second response with id {}", response.id))
                    .at(responses_name, n + 1),
            );
            continue;
        }
        import
            .traces
            .push(spans(tenant, &response, source, BASE_NS + ordinal * SECOND));
        ordinal += 1;
    }
    Ok(import)
}

/// Why a line cannot be read, and the field to blame.
struct Bad {
    field: Option<String>,
    message: String,
}

impl Bad {
    fn field(field: &str, message: impl Into<String>) -> Bad {
        Bad {
            field: Some(field.to_owned()),
            message: message.into(),
        }
    }

    fn at(self, file: &str, line: usize) -> RowError {
        RowError {
            file: file.to_owned(),
            location: match self.field {
                Some(field) => format!("line {line}, field {field}"),
                None => format!("line {line}"),
            },
            message: self.message,
        }
    }
}

fn object(line: &str) -> Result<Map<String, Value>, Bad> {
    match serde_json::from_str::<Value>(line) {
        Ok(Value::Object(o)) => Ok(o),
        Ok(_) => Err(Bad {
            field: None,
            message: "not a JSON object".to_owned(),
        }),
        Err(e) => Err(Bad {
            field: None,
            message: format!("not JSON: {e}"),
        }),
    }
}

fn string<'a>(o: &'a Map<String, Value>, path: &str, key: &str) -> Result<&'a str, Bad> {
    match o.get(key) {
        Some(Value::String(s)) => Ok(s),
        Some(_) => Err(Bad::field(path, "not a string")),
        None => Err(Bad::field(path, "missing")),
    }
}

// RAGTruth writes ids as strings; accept numbers too.
fn id(o: &Map<String, Value>, key: &str) -> Result<String, Bad> {
    match o.get(key) {
        Some(Value::String(s)) if !s.is_empty() => Ok(s.clone()),
        Some(Value::Number(n)) => Ok(n.to_string()),
        Some(_) => Err(Bad::field(key, "not a non-empty string or a number")),
        None => Err(Bad::field(key, "missing")),
    }
}

fn parse_source(line: &str) -> Result<(String, Source), Bad> {
    let o = object(line)?;
    let id = id(&o, "source_id")?;
    let info = match o.get("source_info") {
        Some(Value::Object(info)) => info,
        Some(_) => return Err(Bad::field("source_info", "not an object (not a QA task?)")),
        None => return Err(Bad::field("source_info", "missing")),
    };
    let question = string(info, "source_info.question", "question")?.to_owned();
    let passages = split_passages(string(info, "source_info.passages", "passages")?);
    Ok((id, Source { question, passages }))
}

/// The passages of RAGTruth's `passages` string: the text between `passage N:` markers
/// (at its start or a line's), trimmed. Text without markers is one passage.
pub fn split_passages(text: &str) -> Vec<String> {
    let mut starts = Vec::new(); // (marker start, text start) byte offsets
    let mut line_start = 0;
    for line in text.split_inclusive('\n') {
        if let Some(after) = line.strip_prefix("passage ") {
            let digits = after.bytes().take_while(u8::is_ascii_digit).count();
            if digits > 0 && after[digits..].starts_with(':') {
                let marker_len = "passage ".len() + digits + 1;
                starts.push((line_start, line_start + marker_len));
            }
        }
        line_start += line.len();
    }
    if starts.is_empty() {
        let t = text.trim();
        return if t.is_empty() {
            Vec::new()
        } else {
            vec![t.to_owned()]
        };
    }
    let mut out = Vec::new();
    // Text before the first marker (none in RAGTruth) is kept as a passage of its own.
    let lead = text[..starts[0].0].trim();
    if !lead.is_empty() {
        out.push(lead.to_owned());
    }
    for (i, &(_, from)) in starts.iter().enumerate() {
        let to = starts.get(i + 1).map_or(text.len(), |s| s.0);
        out.push(text[from..to].trim().to_owned());
    }
    out
}

struct Response {
    id: String,
    source_id: String,
    model: Option<String>,
    temperature: Option<f64>,
    quality: Option<String>,
    split: Option<String>,
    text: String,
    labels: Vec<Value>,
}

fn parse_response(line: &str) -> Result<Response, Bad> {
    let o = object(line)?;
    let id = id(&o, "id")?;
    let source_id = id_field(&o)?;
    let text = string(&o, "response", "response")?.to_owned();
    let chars = text.chars().count();
    let labels = match o.get("labels") {
        Some(Value::Array(labels)) => labels,
        Some(_) => return Err(Bad::field("labels", "not an array")),
        None => return Err(Bad::field("labels", "missing")),
    };
    let mut annotations = Vec::new();
    for (i, label) in labels.iter().enumerate() {
        let path = |k: &str| format!("labels[{i}].{k}");
        let Value::Object(l) = label else {
            return Err(Bad::field(&format!("labels[{i}]"), "not an object"));
        };
        let offset = |k: &str| -> Result<usize, Bad> {
            l.get(k)
                .and_then(Value::as_u64)
                .and_then(|n| usize::try_from(n).ok())
                .ok_or_else(|| Bad::field(&path(k), "missing or not a non-negative integer"))
        };
        let (start, end) = (offset("start")?, offset("end")?);
        if start > end || end > chars {
            return Err(Bad::field(
                &path("end"),
                format!("range {start}..{end} is not within the response's {chars} characters"),
            ));
        }
        let label_type = string(l, &path("label_type"), "label_type")?;
        let labelled: String = text.chars().skip(start).take(end - start).collect();
        annotations.push(json!({
            "start": start, "end": end, "label": label_type, "text": labelled, "source": "human",
        }));
    }
    let opt = |k: &str| o.get(k).and_then(Value::as_str).map(str::to_owned);
    Ok(Response {
        id,
        source_id,
        model: opt("model"),
        temperature: o.get("temperature").and_then(Value::as_f64),
        quality: opt("quality"),
        split: opt("split"),
        text,
        labels: annotations,
    })
}

fn id_field(o: &Map<String, Value>) -> Result<String, Bad> {
    id(o, "source_id")
}

fn text_messages(role: &str, text: &str) -> String {
    json!([{"role": role, "parts": [{"type": "text", "content": text}]}]).to_string()
}

fn spans(tenant: &str, r: &Response, source: &Source, start_ns: u64) -> Vec<Span> {
    let session = format!("ragtruth-{}", r.id);
    let trace = trace_id(tenant, &session);
    let root_id = span_id(&trace, "root");
    let span =
        |key: &str, name: String, kind, from: u64, to: u64, attributes: Map<String, Value>| Span {
            trace_id: trace.clone(),
            span_id: span_id(&trace, key),
            parent_span_id: (key != "root").then(|| root_id.clone()),
            name,
            kind,
            start_time_unix_nano: from,
            end_time_unix_nano: to,
            attributes,
            events: Vec::new(),
            status: SpanStatus::Unset,
        };

    let mut root = Map::new();
    root.insert("gen_ai.operation.name".into(), "invoke_agent".into());
    root.insert("gen_ai.agent.name".into(), "ragtruth".into());
    root.insert("agentwire.session".into(), session.clone().into());
    root.insert("gen_ai.conversation.id".into(), session.clone().into());
    root.insert("agentwire.tenant".into(), tenant.into());
    root.insert("agentwire.dataset.name".into(), "ragtruth".into());
    root.insert("agentwire.dataset.item".into(), r.id.clone().into());
    root.insert("agentwire.dataset.group".into(), r.source_id.clone().into());
    for (k, v) in [
        ("model", &r.model),
        ("quality", &r.quality),
        ("split", &r.split),
    ] {
        if let Some(v) = v {
            root.insert(format!("agentwire.dataset.{k}"), v.clone().into());
        }
    }
    if let Some(t) = r.temperature {
        root.insert("agentwire.dataset.temperature".into(), t.into());
    }

    let mut user = Map::new();
    user.insert("gen_ai.operation.name".into(), "chat".into());
    user.insert("agentwire.message.role".into(), "user".into());
    user.insert(
        "gen_ai.input.messages".into(),
        text_messages("user", &source.question).into(),
    );

    let mut tool = Map::new();
    tool.insert("gen_ai.operation.name".into(), "execute_tool".into());
    tool.insert("gen_ai.tool.name".into(), "retrieve".into());
    tool.insert("gen_ai.tool.call.id".into(), "retrieve".into());
    tool.insert("agentwire.tool.retrieval".into(), true.into());
    tool.insert(
        "gen_ai.tool.call.arguments".into(),
        json!({"query": source.question}).to_string().into(),
    );
    tool.insert(
        "gen_ai.tool.call.result".into(),
        json!(source.passages).to_string().into(),
    );

    let mut answer = Map::new();
    answer.insert("gen_ai.operation.name".into(), "chat".into());
    answer.insert("agentwire.message.role".into(), "assistant".into());
    answer.insert(
        "gen_ai.output.messages".into(),
        text_messages("assistant", &r.text).into(),
    );
    if let Some(model) = &r.model {
        answer.insert("gen_ai.response.model".into(), model.clone().into());
    }
    answer.insert(
        "agentwire.annotations".into(),
        Value::Array(r.labels.clone()).to_string().into(),
    );
    let chat_name = match &r.model {
        Some(m) => format!("chat {m}"),
        None => "chat".to_owned(),
    };

    vec![
        span(
            "root",
            "invoke_agent ragtruth".into(),
            SpanKind::Internal,
            start_ns,
            start_ns + 3 * MS,
            root,
        ),
        span(
            "message:user",
            "chat".into(),
            SpanKind::Internal,
            start_ns,
            start_ns + MS,
            user,
        ),
        span(
            "tool:retrieve",
            "execute_tool retrieve".into(),
            SpanKind::Internal,
            start_ns + MS,
            start_ns + 2 * MS,
            tool,
        ),
        span(
            "message:assistant",
            chat_name,
            SpanKind::Client,
            start_ns + 2 * MS,
            start_ns + 3 * MS,
            answer,
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    const SOURCES: &str = concat!(
        r#"{"source_id": "s1", "task_type": "QA", "source_info": {"question": "when was it built", "passages": "passage 1:Built in 1990.\n\npassage 2:Tall tower.\n\n"}}"#,
        "\n",
        r#"{"source_id": "s2", "task_type": "QA", "source_info": {"question": "who", "passages": "passage 1:Ana."}}"#,
        "\n",
    );

    fn responses() -> String {
        [
            r#"{"id": "1", "source_id": "s1", "model": "m", "labels": [{"start": 13, "end": 17, "label_type": "Evident Conflict"}], "quality": "good", "response": "It was büilt 1991."}"#,
            r#"{"id": "2", "source_id": "s2", "model": "m", "labels": [], "response": "Ana."}"#,
            r#"{"id": "3", "source_id": "nope", "labels": [], "response": "x"}"#,
        ]
        .join("\n")
    }

    fn attr<'a>(span: &'a Span, key: &str) -> &'a Value {
        span.attributes.get(key).unwrap_or(&Value::Null)
    }

    #[test]
    fn each_response_is_a_trace_with_question_passages_answer_and_labels() {
        let import = read(
            responses().as_bytes(),
            "r.jsonl",
            SOURCES.as_bytes(),
            "s.jsonl",
            "t",
        )
        .expect("readable");
        assert_eq!(import.traces.len(), 2);
        let t = &import.traces[0];
        assert_eq!(t.len(), 4);
        let root = &t[0];
        assert_eq!(root.parent_span_id, None);
        assert_eq!(root.trace_id, trace_id("t", "ragtruth-1"));
        assert_eq!(attr(root, "agentwire.session"), "ragtruth-1");
        assert_eq!(attr(root, "agentwire.dataset.name"), "ragtruth");
        assert_eq!(attr(root, "agentwire.dataset.item"), "1");
        assert_eq!(attr(root, "agentwire.dataset.group"), "s1");
        assert_eq!(attr(&t[1], "agentwire.message.role"), "user");
        let tool = &t[2];
        assert_eq!(tool.name, "execute_tool retrieve");
        assert_eq!(attr(tool, "agentwire.tool.retrieval"), true);
        let passages: Value =
            serde_json::from_str(attr(tool, "gen_ai.tool.call.result").as_str().unwrap_or(""))
                .expect("result is JSON");
        assert_eq!(passages, json!(["Built in 1990.", "Tall tower."]));
        let answer = &t[3];
        let ann: Value =
            serde_json::from_str(attr(answer, "agentwire.annotations").as_str().unwrap_or(""))
                .expect("annotations are JSON");
        // Char offsets: "ü" is one char, so 13..17 is "1991" (as bytes it would be " 199").
        assert_eq!(ann[0]["text"], "1991");
        assert_eq!(ann[0]["label"], "Evident Conflict");
        assert_eq!(ann[0]["source"], "human");
        assert!(
            t.windows(2)
                .all(|w| w[0].start_time_unix_nano <= w[1].start_time_unix_nano)
        );
        assert!(
            import.traces[0][0].start_time_unix_nano < import.traces[1][0].start_time_unix_nano
        );
        // Deterministic ids.
        let again = read(
            responses().as_bytes(),
            "r.jsonl",
            SOURCES.as_bytes(),
            "s.jsonl",
            "t",
        )
        .expect("readable");
        assert_eq!(again.traces, import.traces);
    }

    #[test]
    fn bad_rows_are_reported_with_file_line_and_field_and_skipped() {
        let responses = format!(
            "{}\nnot json\n{}\n{}",
            responses(),
            r#"{"id": "4", "source_id": "s1", "labels": []}"#,
            r#"{"id": "5", "source_id": "s1", "labels": [{"start": 0, "end": 99, "label_type": "x"}], "response": "short"}"#,
        );
        let import = read(
            responses.as_bytes(),
            "r.jsonl",
            SOURCES.as_bytes(),
            "s.jsonl",
            "t",
        )
        .expect("readable");
        assert_eq!(import.traces.len(), 2);
        let got: Vec<String> = import.skipped.iter().map(|e| e.to_string()).collect();
        assert_eq!(got.len(), 4, "{got:?}");
        assert!(
            got[0].starts_with("r.jsonl: line 3, field source_id: source nope"),
            "{got:?}"
        );
        assert!(got[1].starts_with("r.jsonl: line 4: not JSON"), "{got:?}");
        assert_eq!(got[2], "r.jsonl: line 5, field response: missing");
        assert!(
            got[3].starts_with("r.jsonl: line 6, field labels[0].end: range 0..99"),
            "{got:?}"
        );
    }

    #[test]
    fn passages_split_at_markers_only_at_line_starts() {
        assert_eq!(
            split_passages("passage 1:a passage 2: not a marker\n\npassage 2:b\n"),
            ["a passage 2: not a marker", "b"]
        );
        assert_eq!(split_passages("no markers"), ["no markers"]);
    }
}
