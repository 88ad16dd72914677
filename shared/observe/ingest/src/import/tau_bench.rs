//! tau-bench trajectories to traces: one trace per run (`agentwire import tau-bench`).
//!
//! The input is tau-bench's results file: a JSON array of runs, each
//! `{task_id, trial, reward, info: {task: {actions: [{name, kwargs}], ...}, ...}, traj}`
//! where `traj` is the run's OpenAI-style chat: `system`, `user` and `assistant` messages
//! (`content`, and `tool_calls: [{id, function: {name, arguments}}]` on the assistant's),
//! and `tool` messages answering a call by `tool_call_id`.
//!
//! Each run becomes the spans the archiver writes for a session named
//! `tau-<task_id>-<trial>`:
//! - **root** `invoke_agent`: the contract's root attributes plus `agentwire.dataset.name =
//!   "tau-bench"`, `.item` (the task id, as a string like every dataset's item), `.trial`,
//!   `.reward` (a number), and `agentwire.expected_actions` (the task's actions as
//!   `[{"name", "arguments"}]`; left out with [`Options::expected_actions`] `= false`, which
//!   is how a trace without ground truth looks, for measuring the scorers without it);
//! - **message** `chat`, one per system, user or assistant message with text;
//! - **tool** `execute_tool <name>`, one per tool call, under the assistant message that made
//!   it when that message has text (else under the root): its arguments (the JSON they
//!   parse to; a string when they do not parse, which is the agent's mistake, kept for the
//!   scorers to see) and its tool message's content as the result (the JSON it parses to,
//!   else the string). A result starting with `Error` (how tau-bench's tools fail) gives
//!   status error and `error.type` = that text.
//!
//! tau-bench records no times, so they are synthetic and only order the spans: the run
//! starts at 2024-05-15T20:00:00Z (the airline domain's "current time"), the n-th element
//! of `traj` happens n milliseconds later, a message span lasts 0.5 ms, and a tool span runs
//! from its call (plus 1 µs per earlier call of the same message) to its tool message.
//! Span ids derive from the trace id and `message:<traj index>` / `tool:<traj index>:<call
//! index>`, so importing a file again gives the same ids.
//!
//! A run that is not in this shape is reported in [`Import::skipped`] (naming the file, the
//! element's index and the field) and skipped; so is a second run with a task id and trial
//! already seen (it would be the same session).

use std::collections::{HashMap, HashSet};

use agentwire_trace::{Span, SpanKind, SpanStatus, span_id, trace_id};
use serde_json::{Map, Value, json};

use super::{Import, ImportError, RowError};

/// How runs become traces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Options {
    /// Keep the task's actions as `agentwire.expected_actions` (default true).
    pub expected_actions: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            expected_actions: true,
        }
    }
}

/// 2024-05-15T20:00:00Z in unix nanoseconds: when every imported run starts.
const BASE_NS: u64 = 1_715_803_200_000_000_000;
const MS: u64 = 1_000_000;

/// The runs of a tau-bench results file (`file_name` names it in errors) as traces of
/// `tenant`, with the default [`Options`].
pub fn read(json: &[u8], file_name: &str, tenant: &str) -> Result<Import, ImportError> {
    read_with(json, file_name, tenant, &Options::default())
}

/// [`read`] with options. Fails only when the file is not a JSON array; a bad run is
/// reported in [`Import::skipped`].
pub fn read_with(
    json: &[u8],
    file_name: &str,
    tenant: &str,
    options: &Options,
) -> Result<Import, ImportError> {
    let fatal = |message: String| ImportError {
        file: file_name.to_owned(),
        message,
    };
    let value: Value = serde_json::from_slice(json).map_err(|e| {
        fatal(format!(
            "not JSON (a tau-bench results file is a JSON array of runs): {e}"
        ))
    })?;
    let Value::Array(runs) = value else {
        return Err(fatal(
            "not a JSON array (a tau-bench results file is a JSON array of runs)".to_owned(),
        ));
    };
    let mut import = Import::default();
    let mut sessions = HashSet::new();
    for (index, run) in runs.iter().enumerate() {
        let skip = |field: Option<String>, message: String| RowError {
            file: file_name.to_owned(),
            location: match field {
                Some(field) => format!("element {index}, field {field}"),
                None => format!("element {index}"),
            },
            message,
        };
        match Run::parse(run) {
            Err(Bad { field, message }) => import.skipped.push(skip(field, message)),
            Ok(run) => {
                let session = format!("tau-{}-{}", run.task_id, run.trial);
                if !sessions.insert(session.clone()) {
                    import.skipped.push(skip(
                        None,
                        format!("a second run of task {} trial {}", run.task_id, run.trial),
                    ));
                    continue;
                }
                import.traces.push(run.spans(tenant, &session, options));
            }
        }
    }
    Ok(import)
}

/// Why a run cannot be read: the field to blame (a path like `traj[3].tool_calls[0].id`).
struct Bad {
    field: Option<String>,
    message: String,
}

fn bad(field: impl Into<String>, message: impl Into<String>) -> Bad {
    Bad {
        field: Some(field.into()),
        message: message.into(),
    }
}

/// One run, checked.
struct Run<'a> {
    task_id: String,
    trial: i64,
    reward: f64,
    /// The task's actions, `[{"name", "arguments"}]`; `None` when the run has none recorded.
    actions: Option<Vec<Value>>,
    traj: Vec<Element<'a>>,
}

enum Element<'a> {
    Message {
        role: &'a str,
        text: Option<&'a str>,
        calls: Vec<Call<'a>>,
    },
    ToolResult {
        call_id: &'a str,
        content: &'a str,
    },
}

struct Call<'a> {
    id: &'a str,
    name: &'a str,
    /// The arguments as given: a JSON string (OpenAI's form) or already an object.
    arguments: &'a Value,
}

impl<'a> Run<'a> {
    fn parse(run: &'a Value) -> Result<Run<'a>, Bad> {
        let Some(run) = run.as_object() else {
            return Err(Bad {
                field: None,
                message: "not a JSON object (a run)".to_owned(),
            });
        };
        let task_id = match run.get("task_id") {
            Some(Value::Number(n)) if n.is_i64() || n.is_u64() => n.to_string(),
            Some(Value::String(s)) if !s.is_empty() => s.clone(),
            _ => return Err(bad("task_id", "missing or not an integer")),
        };
        let trial = run
            .get("trial")
            .and_then(Value::as_i64)
            .ok_or_else(|| bad("trial", "missing or not an integer"))?;
        let reward = run
            .get("reward")
            .and_then(Value::as_f64)
            .filter(|r| r.is_finite())
            .ok_or_else(|| bad("reward", "missing or not a number"))?;
        let actions = match run
            .get("info")
            .and_then(|i| i.get("task"))
            .and_then(|t| t.get("actions"))
        {
            None | Some(Value::Null) => None,
            Some(Value::Array(actions)) => Some(
                actions
                    .iter()
                    .enumerate()
                    .map(|(i, action)| {
                        let field = format!("info.task.actions[{i}]");
                        let name = action
                            .get("name")
                            .and_then(Value::as_str)
                            .filter(|n| !n.is_empty())
                            .ok_or_else(|| {
                                bad(format!("{field}.name"), "missing or not a string")
                            })?;
                        let arguments = match action.get("kwargs") {
                            None | Some(Value::Null) => Value::Object(Map::new()),
                            Some(kwargs @ Value::Object(_)) => kwargs.clone(),
                            Some(_) => return Err(bad(format!("{field}.kwargs"), "not an object")),
                        };
                        Ok(json!({"name": name, "arguments": arguments}))
                    })
                    .collect::<Result<Vec<_>, Bad>>()?,
            ),
            Some(_) => return Err(bad("info.task.actions", "not an array")),
        };
        let traj = run
            .get("traj")
            .and_then(Value::as_array)
            .ok_or_else(|| bad("traj", "missing or not an array"))?
            .iter()
            .enumerate()
            .map(|(i, element)| Element::parse(element, &format!("traj[{i}]")))
            .collect::<Result<Vec<_>, Bad>>()?;
        Ok(Run {
            task_id,
            trial,
            reward,
            actions,
            traj,
        })
    }

    fn spans(&self, tenant: &str, session: &str, options: &Options) -> Vec<Span> {
        let trace = trace_id(tenant, session);
        let root_id = span_id(&trace, "root");
        let at = |index: usize| BASE_NS + index as u64 * MS;
        // Where each call's answer is, to end its span there.
        let answers: HashMap<&str, (usize, &str)> = self
            .traj
            .iter()
            .enumerate()
            .filter_map(|(index, element)| match element {
                Element::ToolResult { call_id, content } => Some((*call_id, (index, *content))),
                Element::Message { .. } => None,
            })
            .collect();
        let span = |key: &str, parent: &str, name: String, kind, start, end| Span {
            trace_id: trace.clone(),
            span_id: span_id(&trace, key),
            parent_span_id: Some(parent.to_owned()),
            name,
            kind,
            start_time_unix_nano: start,
            end_time_unix_nano: end,
            attributes: Map::from_iter([("gen_ai.conversation.id".to_owned(), session.into())]),
            events: Vec::new(),
            status: SpanStatus::Unset,
        };
        let mut spans = Vec::new();
        for (index, element) in self.traj.iter().enumerate() {
            let Element::Message { role, text, calls } = element else {
                continue;
            };
            let start = at(index);
            let mut parent = root_id.clone();
            if let Some(text) = text.filter(|t| !t.is_empty()) {
                let (attribute, kind) = match *role {
                    "assistant" => ("gen_ai.output.messages", SpanKind::Client),
                    _ => ("gen_ai.input.messages", SpanKind::Internal),
                };
                let mut message = span(
                    &format!("message:{index}"),
                    &root_id,
                    "chat".to_owned(),
                    kind,
                    start,
                    start + MS / 2,
                );
                let content = json!([{"role": role, "parts": [{"type": "text", "content": text}]}]);
                let attributes = &mut message.attributes;
                attributes.insert("gen_ai.operation.name".into(), "chat".into());
                attributes.insert("agentwire.message.id".into(), index.to_string().into());
                attributes.insert("agentwire.message.role".into(), (*role).into());
                attributes.insert(attribute.into(), content.to_string().into());
                parent = message.span_id.clone();
                spans.push(message);
            }
            for (number, call) in calls.iter().enumerate() {
                let start = start + (number as u64 + 1) * 1_000;
                let answer = answers.get(call.id);
                let end = answer.map_or(start, |(i, _)| at(*i).max(start));
                let mut tool = span(
                    &format!("tool:{index}:{number}"),
                    &parent,
                    format!("execute_tool {}", call.name),
                    SpanKind::Internal,
                    start,
                    end,
                );
                let attributes = &mut tool.attributes;
                attributes.insert("gen_ai.operation.name".into(), "execute_tool".into());
                attributes.insert("gen_ai.tool.name".into(), call.name.into());
                attributes.insert("gen_ai.tool.call.id".into(), call.id.into());
                let arguments = match call.arguments {
                    Value::String(raw) => {
                        serde_json::from_str(raw).unwrap_or_else(|_| raw.as_str().into())
                    }
                    other => other.clone(),
                };
                attributes.insert(
                    "gen_ai.tool.call.arguments".into(),
                    arguments.to_string().into(),
                );
                if let Some((_, content)) = answer {
                    let result: Value =
                        serde_json::from_str(content).unwrap_or_else(|_| (*content).into());
                    attributes.insert("gen_ai.tool.call.result".into(), result.to_string().into());
                    if content.starts_with("Error") {
                        attributes.insert("error.type".into(), content.trim().into());
                        tool.status = SpanStatus::Error;
                    }
                }
                spans.push(tool);
            }
        }
        let end = spans
            .iter()
            .map(|s| s.end_time_unix_nano)
            .max()
            .unwrap_or(BASE_NS);
        let mut root = span(
            "root",
            &root_id,
            "invoke_agent".to_owned(),
            SpanKind::Internal,
            BASE_NS,
            end,
        );
        root.parent_span_id = None;
        let attributes = &mut root.attributes;
        attributes.insert("gen_ai.operation.name".into(), "invoke_agent".into());
        attributes.insert("agentwire.session".into(), session.into());
        attributes.insert("agentwire.tenant".into(), tenant.into());
        attributes.insert("agentwire.dataset.name".into(), "tau-bench".into());
        attributes.insert("agentwire.dataset.item".into(), self.task_id.clone().into());
        attributes.insert("agentwire.dataset.trial".into(), self.trial.into());
        attributes.insert("agentwire.dataset.reward".into(), self.reward.into());
        if options.expected_actions
            && let Some(actions) = &self.actions
        {
            attributes.insert(
                "agentwire.expected_actions".into(),
                Value::Array(actions.clone()).to_string().into(),
            );
        }
        spans.insert(0, root);
        spans
    }
}

impl<'a> Element<'a> {
    fn parse(element: &'a Value, field: &str) -> Result<Element<'a>, Bad> {
        let role = element
            .get("role")
            .and_then(Value::as_str)
            .ok_or_else(|| bad(format!("{field}.role"), "missing or not a string"))?;
        let content = match element.get("content") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s.as_str()),
            Some(_) => return Err(bad(format!("{field}.content"), "not a string or null")),
        };
        match role {
            "system" | "user" | "assistant" => {
                let calls = match element.get("tool_calls") {
                    None | Some(Value::Null) => Vec::new(),
                    Some(Value::Array(calls)) if role == "assistant" => calls
                        .iter()
                        .enumerate()
                        .map(|(i, call)| Call::parse(call, &format!("{field}.tool_calls[{i}]")))
                        .collect::<Result<_, Bad>>()?,
                    Some(Value::Array(_)) => {
                        return Err(bad(
                            format!("{field}.tool_calls"),
                            format!("a {role} message cannot call tools"),
                        ));
                    }
                    Some(_) => return Err(bad(format!("{field}.tool_calls"), "not an array")),
                };
                Ok(Element::Message {
                    role,
                    text: content,
                    calls,
                })
            }
            "tool" => Ok(Element::ToolResult {
                call_id: element
                    .get("tool_call_id")
                    .and_then(Value::as_str)
                    .ok_or_else(|| {
                        bad(format!("{field}.tool_call_id"), "missing or not a string")
                    })?,
                content: content.unwrap_or(""),
            }),
            other => Err(bad(
                format!("{field}.role"),
                format!("unknown role {other:?} (expected system, user, assistant or tool)"),
            )),
        }
    }
}

impl<'a> Call<'a> {
    fn parse(call: &'a Value, field: &str) -> Result<Call<'a>, Bad> {
        let id = call
            .get("id")
            .and_then(Value::as_str)
            .ok_or_else(|| bad(format!("{field}.id"), "missing or not a string"))?;
        let function = call
            .get("function")
            .ok_or_else(|| bad(format!("{field}.function"), "missing"))?;
        let name = function
            .get("name")
            .and_then(Value::as_str)
            .filter(|n| !n.is_empty())
            .ok_or_else(|| bad(format!("{field}.function.name"), "missing or not a string"))?;
        let arguments = function
            .get("arguments")
            .filter(|a| a.is_string() || a.is_object())
            .ok_or_else(|| {
                bad(
                    format!("{field}.function.arguments"),
                    "missing or not a JSON string or object",
                )
            })?;
        Ok(Call {
            id,
            name,
            arguments,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two runs of one task: the first books after a failed attempt, the second never acts.
    fn fixture() -> Value {
        json!([
            {
                "task_id": 7, "trial": 0, "reward": 1.0,
                "info": {"task": {"user_id": "u1", "actions": [
                    {"name": "get_user_details", "kwargs": {"user_id": "u1"}},
                    {"name": "book", "kwargs": {"user_id": "u1", "amount": 250}}
                ]}},
                "traj": [
                    {"role": "system", "content": "policy"},
                    {"role": "user", "content": "Book it please."},
                    {"role": "assistant", "content": null, "tool_calls": [
                        {"id": "c1", "type": "function", "function": {"name": "book", "arguments": "{\"user_id\":\"u1\",\"amount\":25}"}}
                    ]},
                    {"role": "tool", "tool_call_id": "c1", "name": "book", "content": "Error: payment amount does not add up"},
                    {"role": "assistant", "content": "Retrying.", "tool_calls": [
                        {"id": "c2", "type": "function", "function": {"name": "book", "arguments": "{\"user_id\":\"u1\",\"amount\":250}"}}
                    ]},
                    {"role": "tool", "tool_call_id": "c2", "name": "book", "content": "{\"ok\": true}"},
                    {"role": "assistant", "content": "Done."}
                ]
            },
            {
                "task_id": 7, "trial": 1, "reward": 0.0,
                "info": {"task": {"actions": []}},
                "traj": [
                    {"role": "user", "content": "Hi"},
                    {"role": "assistant", "content": "Hello"}
                ]
            }
        ])
    }

    fn import(value: &Value) -> Import {
        read(value.to_string().as_bytes(), "runs.json", "acme").expect("a JSON array")
    }

    fn attr<'s>(span: &'s Span, key: &str) -> &'s Value {
        span.attributes
            .get(key)
            .unwrap_or_else(|| panic!("{} has no {key}", span.name))
    }

    #[test]
    fn one_trace_per_run_with_the_contract_root_attributes() {
        let import = import(&fixture());
        assert!(import.skipped.is_empty(), "{:?}", import.skipped);
        assert_eq!(import.traces.len(), 2);
        let root = &import.traces[0][0];
        assert_eq!(root.parent_span_id, None);
        assert_eq!(root.trace_id, trace_id("acme", "tau-7-0"));
        assert_eq!(attr(root, "agentwire.session"), "tau-7-0");
        assert_eq!(attr(root, "gen_ai.conversation.id"), "tau-7-0");
        assert_eq!(attr(root, "agentwire.tenant"), "acme");
        assert_eq!(attr(root, "gen_ai.operation.name"), "invoke_agent");
        assert_eq!(attr(root, "agentwire.dataset.name"), "tau-bench");
        assert_eq!(attr(root, "agentwire.dataset.item"), "7");
        assert_eq!(attr(root, "agentwire.dataset.trial"), 0);
        assert_eq!(attr(root, "agentwire.dataset.reward"), 1.0);
        let expected: Value = serde_json::from_str(
            attr(root, "agentwire.expected_actions")
                .as_str()
                .expect("a JSON string"),
        )
        .expect("JSON");
        assert_eq!(
            expected,
            json!([
                {"name": "get_user_details", "arguments": {"user_id": "u1"}},
                {"name": "book", "arguments": {"user_id": "u1", "amount": 250}}
            ])
        );
        assert_eq!(attr(&import.traces[1][0], "agentwire.session"), "tau-7-1");
    }

    #[test]
    fn messages_and_tool_calls_become_spans_in_order() {
        let import = import(&fixture());
        let spans = &import.traces[0];
        let names: Vec<&str> = spans.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "invoke_agent",
                "chat",
                "chat",
                "execute_tool book",
                "chat",
                "execute_tool book",
                "chat"
            ]
        );
        let user = &spans[2];
        assert_eq!(attr(user, "agentwire.message.role"), "user");
        let input: Value = serde_json::from_str(
            attr(user, "gen_ai.input.messages")
                .as_str()
                .expect("string"),
        )
        .expect("JSON");
        assert_eq!(
            input,
            json!([{"role": "user", "parts": [{"type": "text", "content": "Book it please."}]}])
        );
        let failed = &spans[3];
        assert_eq!(
            failed.parent_span_id.as_deref(),
            Some(spans[0].span_id.as_str()),
            "no text: under the root"
        );
        assert_eq!(failed.status, SpanStatus::Error);
        assert_eq!(
            attr(failed, "error.type"),
            "Error: payment amount does not add up"
        );
        assert_eq!(
            attr(failed, "gen_ai.tool.call.result"),
            "\"Error: payment amount does not add up\""
        );
        assert_eq!(attr(failed, "gen_ai.tool.call.id"), "c1");
        let booked = &spans[5];
        assert_eq!(
            booked.parent_span_id.as_deref(),
            Some(spans[4].span_id.as_str()),
            "under its message"
        );
        assert_eq!(booked.status, SpanStatus::Unset);
        assert_eq!(attr(booked, "gen_ai.tool.name"), "book");
        // Compared as JSON: key order depends on serde_json's `preserve_order` feature,
        // which another crate of a workspace build may turn on.
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(
                attr(booked, "gen_ai.tool.call.arguments").as_str().unwrap()
            )
            .unwrap(),
            serde_json::json!({"amount": 250, "user_id": "u1"})
        );
        assert_eq!(attr(booked, "gen_ai.tool.call.result"), r#"{"ok":true}"#);
        let output: Value = serde_json::from_str(
            attr(&spans[6], "gen_ai.output.messages")
                .as_str()
                .expect("string"),
        )
        .expect("JSON");
        assert_eq!(output[0]["parts"][0]["content"], "Done.");
        // Ordered synthetic times; a tool span ends at its answer.
        for pair in spans[1..].windows(2) {
            assert!(pair[0].start_time_unix_nano < pair[1].start_time_unix_nano);
        }
        assert_eq!(failed.end_time_unix_nano, BASE_NS + 3 * MS);
        assert!(
            spans
                .iter()
                .all(|s| s.start_time_unix_nano <= s.end_time_unix_nano)
        );
        assert_eq!(spans[0].end_time_unix_nano, BASE_NS + 6 * MS + MS / 2);
    }

    #[test]
    fn importing_again_gives_the_same_ids() {
        let first = import(&fixture());
        let second = import(&fixture());
        assert_eq!(first.traces, second.traces);
        let ids: HashSet<&str> = first.traces[0].iter().map(|s| s.span_id.as_str()).collect();
        assert_eq!(ids.len(), first.traces[0].len(), "span ids are distinct");
    }

    #[test]
    fn expected_actions_can_be_left_out() {
        let import = read_with(
            fixture().to_string().as_bytes(),
            "runs.json",
            "acme",
            &Options {
                expected_actions: false,
            },
        )
        .expect("a JSON array");
        assert!(
            !import.traces[0][0]
                .attributes
                .contains_key("agentwire.expected_actions")
        );
        assert_eq!(attr(&import.traces[0][0], "agentwire.dataset.reward"), 1.0);
    }

    #[test]
    fn unparsable_arguments_are_kept_as_a_string() {
        let mut runs = fixture();
        runs[0]["traj"][2]["tool_calls"][0]["function"]["arguments"] = "{not json".into();
        let import = import(&runs);
        assert_eq!(
            attr(&import.traces[0][3], "gen_ai.tool.call.arguments"),
            "\"{not json\""
        );
    }

    #[test]
    fn a_bad_run_is_reported_with_its_index_and_field_and_skipped() {
        let mut runs = fixture();
        runs[1]["traj"][1]["role"] = 5.into();
        let mut broken = fixture()[0].clone();
        broken["trial"] = 2.into();
        broken["traj"][2]["tool_calls"][0]["function"]
            .as_object_mut()
            .expect("object")
            .remove("name");
        runs.as_array_mut().expect("array").push(broken);
        runs.as_array_mut()
            .expect("array")
            .push(fixture()[0].clone());
        runs.as_array_mut().expect("array").push(json!("a string"));
        let import = import(&runs);
        assert_eq!(import.traces.len(), 1, "only the first run is good");
        let errors: Vec<String> = import.skipped.iter().map(ToString::to_string).collect();
        assert_eq!(
            errors,
            [
                "runs.json: element 1, field traj[1].role: missing or not a string",
                "runs.json: element 2, field traj[2].tool_calls[0].function.name: missing or not a string",
                "runs.json: element 3: a second run of task 7 trial 0",
                "runs.json: element 4: not a JSON object (a run)",
            ]
        );
    }

    #[test]
    fn a_file_that_is_not_an_array_is_an_error() {
        let error = read(b"{\"task_id\": 1}", "runs.json", "acme").expect_err("not an array");
        assert!(
            error.to_string().starts_with("runs.json: not a JSON array"),
            "{error}"
        );
        let error = read(b"[{", "runs.json", "acme").expect_err("not JSON");
        assert!(
            error.to_string().starts_with("runs.json: not JSON"),
            "{error}"
        );
    }
}
