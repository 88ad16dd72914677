//! `tool_use`: did the agent use its tools correctly?
//!
//! Measures, over the trace's tool calls in time order, these problems:
//!
//! - **schema**: a call whose arguments fail the tool's declared schema
//!   ([`ToolUseOptions::schemas`]; tools without one are not checked);
//! - **error**: a call whose result is an error (span status error). An error the agent
//!   recovered from (a later call of the same tool succeeded) is *recovered*: it lowers the
//!   value but fails the trace only with [`ToolUseOptions::fail_on_recovered_errors`]; an
//!   unrecovered one fails it;
//! - **repeat**: more than [`ToolUseOptions::max_identical_calls`] identical calls (same tool,
//!   same normalised arguments) with no successful state-changing call of another kind in
//!   between (reading a record again after changing it is not a repeat);
//! - **loop**: two different calls alternating `A B A B` — more than
//!   [`ToolUseOptions::max_cycles`] cycles of a pair in a row;
//! - **unconfirmed**: a state-changing call to a tool the tenant's policy says needs the
//!   user's confirmation ([`ToolUseOptions::confirm_state_changing`],
//!   [`ToolUseOptions::require_confirmation`]), when the last user message before the call
//!   does not confirm (see [`ToolUseOptions::confirmation_words`]);
//! - **expected actions** (only when the trace carries `agentwire.expected_actions`, as
//!   datasets do): the successful state-changing calls against the expected actions that are
//!   state-changing, as multisets (order-insensitive) of tool name and normalised arguments;
//!   the first divergence in time order is named: the earliest call that no expected action
//!   matches (with the first differing argument against an expected action of that tool),
//!   else the first expected action never made. Failed calls are left out because they
//!   changed nothing; read-only actions are left out because a run may read more or less
//!   than the reference and still end in the same state (tau-bench's reward checks the
//!   final state, and its task actions include reads).
//!
//! **State-changing** tools: those in [`ToolUseOptions::state_changing`]; not those in
//! [`ToolUseOptions::read_only`] or marked as retrieval; else by the default rule: a tool is
//! read-only when its name's first word (up to `_`, `-`, `.`, a space, or a lower-to-upper
//! case change; `get_user`, `getUser`) is a reading verb (`get`, `search`, `list`, `find`,
//! `lookup`, `look`, `read`, `fetch`, `query`, `view`, `show`, `describe`, `retrieve`,
//! `calculate`, `calc`, `compute`, `count`, `think`), or it hands the conversation to a
//! person (`transfer_to_human…`, `handoff…`): neither changes the records the user's
//! request is about. Every other tool is taken to change state: a wrong guess that way only
//! asks for a confirmation or a comparison that was not needed, the other way misses one.
//!
//! **Normalised arguments**: object keys in sorted order, `null` members dropped (an
//! optional argument given as `null` is one not given), numbers compared by value (`250` is
//! `250.0`), strings trimmed. Arrays keep their order.
//!
//! **Outcomes**: one `tool_use` per trace that has tool calls or carries expected actions
//! (none otherwise). Label `fail` when expected actions diverge or any failing problem
//! exists, else `pass`. Value: 1 without problems; a pass with `r` recovered errors is
//! `0.5 + 0.5 / (1 + r)`; a fail with `n` failing problems is `0.5 / (1 + n)`, and 0 when
//! the expected actions diverge, so `value > 0.5` exactly when it passes and `1 − value` is
//! a graded failure signal. Explanation: each problem, and the first divergence; evidence:
//! the span of every call involved. With expected actions, also `tool_use.expected_actions`:
//! 1 (`match`) or 0 (`diverged`), with the divergence alone.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;

use serde::Deserialize;
use serde_json::Value;

use crate::config::ConfigError;
use crate::record::Evidence;
use crate::scorers::{Outcome, Scorer};
use crate::view::{Message, ToolCall, TraceView};

/// The `[tool_use]` section of a tenant's configuration.
///
/// ```toml
/// [tool_use]
/// state_changing = ["send_certificate"]
/// read_only = ["transfer_to_human_agents"]
/// confirm_state_changing = true          # every state-changing call needs a "yes"
/// require_confirmation = ["refund"]      # and these, state-changing or not
/// max_identical_calls = 1
/// max_cycles = 1
///
/// [tool_use.schemas.cancel_reservation]
/// type = "object"
/// required = ["reservation_id"]
/// properties.reservation_id = { type = "string" }
/// properties.reason = { type = "string", enum = ["change_of_plan", "airline_cancelled_flight", "other"] }
/// ```
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ToolUseOptions {
    /// Each tool's declared argument schema, by tool name.
    pub schemas: BTreeMap<String, Schema>,
    /// Tools that change state, whatever their name says.
    pub state_changing: Vec<String>,
    /// Tools that do not change state, whatever their name says.
    pub read_only: Vec<String>,
    /// Whether every state-changing call needs the user's confirmation (default false).
    pub confirm_state_changing: bool,
    /// Tools whose calls need the user's confirmation (default none).
    pub require_confirmation: Vec<String>,
    /// What confirms: the last user message before the call contains one of these words or
    /// phrases (case-insensitive, at word boundaries) and does not start with a refusal
    /// (`no`, `nope`, `not`, `don't`, `do not`, `wait`, `stop`, `hold on`). Default:
    /// `yes`, `yeah`, `yep`, `yup`, `sure`, `ok`, `okay`, `confirm`, `confirmed`,
    /// `proceed`, `go ahead`, `please do`, `do it`, `correct`, `that's right`,
    /// `sounds good`, `absolutely`, `definitely`.
    pub confirmation_words: Vec<String>,
    /// Identical calls allowed in one state before it is a repeat (default 1: a second
    /// identical call is one).
    pub max_identical_calls: usize,
    /// `A B` cycles in a row allowed before it is a loop (default 1: `A B A B` is one).
    pub max_cycles: usize,
    /// Whether an error the agent recovered from fails the trace (default false).
    pub fail_on_recovered_errors: bool,
}

impl Default for ToolUseOptions {
    fn default() -> Self {
        ToolUseOptions {
            schemas: BTreeMap::new(),
            state_changing: Vec::new(),
            read_only: Vec::new(),
            confirm_state_changing: false,
            require_confirmation: Vec::new(),
            confirmation_words: [
                "yes",
                "yeah",
                "yep",
                "yup",
                "sure",
                "ok",
                "okay",
                "confirm",
                "confirmed",
                "proceed",
                "go ahead",
                "please do",
                "do it",
                "correct",
                "that's right",
                "sounds good",
                "absolutely",
                "definitely",
            ]
            .map(str::to_owned)
            .to_vec(),
            max_identical_calls: 1,
            max_cycles: 1,
            fail_on_recovered_errors: false,
        }
    }
}

/// A declared argument schema: the subset of JSON Schema that catches malformed calls
/// (`type`, `required`, `properties`, `items`, `enum`, `additionalProperties = false`).
/// Written here rather than taken from the `jsonschema` crate, which brings regex engines,
/// format validators and remote references for a check that needs none of them.
/// Annotations (`description`, `title`, `default`, `examples`) are accepted and ignored;
/// any other keyword is an error, so no one believes a constraint is checked when it is not.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Schema {
    #[serde(rename = "type")]
    pub kind: Option<Types>,
    pub required: Vec<String>,
    pub properties: BTreeMap<String, Schema>,
    pub items: Option<Box<Schema>>,
    #[serde(rename = "enum")]
    pub one_of: Option<Vec<Value>>,
    #[serde(rename = "additionalProperties")]
    pub additional_properties: Option<bool>,
    pub description: Option<String>,
    pub title: Option<String>,
    pub default: Option<Value>,
    pub examples: Option<Vec<Value>>,
}

/// `type`: one JSON type name or a list of them.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum Types {
    One(String),
    Any(Vec<String>),
}

const TYPE_NAMES: [&str; 7] = [
    "string", "number", "integer", "boolean", "object", "array", "null",
];

impl Types {
    fn names(&self) -> Vec<&str> {
        match self {
            Types::One(name) => vec![name.as_str()],
            Types::Any(names) => names.iter().map(String::as_str).collect(),
        }
    }
}

impl Schema {
    /// Checks the type names, recursively (`field` is where this schema is).
    fn check(&self, field: &str) -> Result<(), ConfigError> {
        if let Some(kind) = &self.kind {
            for name in kind.names() {
                if !TYPE_NAMES.contains(&name) {
                    return Err(ConfigError::new(
                        format!("{field}.type"),
                        format!(
                            "unknown type `{name}`, expected one of {}",
                            TYPE_NAMES.join(", ")
                        ),
                    ));
                }
            }
        }
        for (name, property) in &self.properties {
            property.check(&format!("{field}.properties.{name}"))?;
        }
        if let Some(items) = &self.items {
            items.check(&format!("{field}.items"))?;
        }
        Ok(())
    }

    /// The first way `value` (at `path`, `$` for the arguments) fails this schema.
    fn violation(&self, value: &Value, path: &str) -> Option<String> {
        if let Some(kind) = &self.kind {
            let names = kind.names();
            if !names.iter().any(|name| is_type(value, name)) {
                return Some(format!(
                    "{path}: expected {}, got {}",
                    names.join(" or "),
                    type_name(value)
                ));
            }
        }
        if let Some(allowed) = &self.one_of
            && !allowed
                .iter()
                .any(|a| canonical(&normalise(a)) == canonical(&normalise(value)))
        {
            return Some(format!(
                "{path}: {} is not one of the allowed values",
                short(value)
            ));
        }
        if let Value::Object(object) = value {
            for name in &self.required {
                if object.get(name).is_none_or(Value::is_null) {
                    return Some(format!("{path}: missing required `{name}`"));
                }
            }
            for (name, member) in object {
                match self.properties.get(name) {
                    Some(property) => {
                        // An optional member given as null is one not given.
                        if member.is_null() && !self.required.contains(name) {
                            continue;
                        }
                        if let Some(v) = property.violation(member, &format!("{path}.{name}")) {
                            return Some(v);
                        }
                    }
                    None if self.additional_properties == Some(false) => {
                        return Some(format!("{path}: unexpected `{name}`"));
                    }
                    None => {}
                }
            }
        }
        if let (Value::Array(elements), Some(items)) = (value, &self.items) {
            for (i, element) in elements.iter().enumerate() {
                if let Some(v) = items.violation(element, &format!("{path}[{i}]")) {
                    return Some(v);
                }
            }
        }
        None
    }
}

fn is_type(value: &Value, name: &str) -> bool {
    match name {
        "string" => value.is_string(),
        "number" => value.is_number(),
        "integer" => {
            value.is_i64() || value.is_u64() || value.as_f64().is_some_and(|f| f.fract() == 0.0)
        }
        "boolean" => value.is_boolean(),
        "object" => value.is_object(),
        "array" => value.is_array(),
        "null" => value.is_null(),
        _ => false,
    }
}

fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// The `tool_use` scorer (see the module documentation).
pub struct ToolUse {
    options: ToolUseOptions,
    /// The confirmation words, lowercased and split into words.
    confirmations: Vec<Vec<String>>,
}

impl ToolUse {
    /// Checks the options: known schema types, at least one confirmation word when a
    /// confirmation is required.
    pub fn new(options: &ToolUseOptions) -> Result<ToolUse, ConfigError> {
        for (tool, schema) in &options.schemas {
            schema.check(&format!("tool_use.schemas.{tool}"))?;
        }
        let confirmations: Vec<Vec<String>> = options
            .confirmation_words
            .iter()
            .map(|w| words(w))
            .filter(|w| !w.is_empty())
            .collect();
        let asks = options.confirm_state_changing || !options.require_confirmation.is_empty();
        if asks && confirmations.is_empty() {
            return Err(ConfigError::new(
                "tool_use.confirmation_words",
                "a confirmation is required but no word confirms",
            ));
        }
        Ok(ToolUse {
            options: options.clone(),
            confirmations,
        })
    }

    /// Whether calls to `call`'s tool change state (see the module documentation).
    pub fn is_state_changing(&self, name: &str, retrieval: bool) -> bool {
        let listed = |list: &[String]| list.iter().any(|n| n == name);
        if listed(&self.options.state_changing) {
            return true;
        }
        if listed(&self.options.read_only) || retrieval {
            return false;
        }
        !reads_by_name(name)
    }

    fn needs_confirmation(&self, call: &ToolCall) -> bool {
        self.options.require_confirmation.contains(&call.name)
            || (self.options.confirm_state_changing
                && self.is_state_changing(&call.name, call.retrieval))
    }

    /// Whether `message` confirms (see [`ToolUseOptions::confirmation_words`]).
    fn confirms(&self, message: &str) -> bool {
        let said = words(message);
        const REFUSALS: [&[&str]; 8] = [
            &["no"],
            &["nope"],
            &["not"],
            &["don't"],
            &["do", "not"],
            &["wait"],
            &["stop"],
            &["hold", "on"],
        ];
        let starts_with = |refusal: &[&str]| {
            said.len() >= refusal.len() && said.iter().zip(refusal).all(|(a, b)| a == b)
        };
        if REFUSALS.iter().any(|r| starts_with(r)) {
            return false;
        }
        self.confirmations
            .iter()
            .any(|phrase| said.windows(phrase.len()).any(|w| w == phrase.as_slice()))
    }
}

/// The default rule: is `name` a reading verb's or a hand-off to a person?
fn reads_by_name(name: &str) -> bool {
    const READING: [&str; 18] = [
        "get",
        "search",
        "list",
        "find",
        "lookup",
        "look",
        "read",
        "fetch",
        "query",
        "view",
        "show",
        "describe",
        "retrieve",
        "calculate",
        "calc",
        "compute",
        "count",
        "think",
    ];
    let lower = name.to_lowercase();
    if lower.starts_with("transfer_to_human") || lower.starts_with("handoff") {
        return true;
    }
    let mut first = String::new();
    let mut previous_lower = false;
    for c in name.chars() {
        if matches!(c, '_' | '-' | '.' | ' ') || (c.is_uppercase() && previous_lower) {
            break;
        }
        previous_lower = c.is_lowercase();
        first.extend(c.to_lowercase());
    }
    READING.contains(&first.as_str())
}

/// Lowercased words (letters, digits and apostrophes; `’` read as `'`).
fn words(text: &str) -> Vec<String> {
    text.to_lowercase()
        .replace('’', "'")
        .split(|c: char| !(c.is_alphanumeric() || c == '\''))
        .filter(|w| !w.is_empty())
        .map(str::to_owned)
        .collect()
}

/// Arguments as compared: sorted keys (by [`canonical`]), no `null` members, integral
/// numbers as integers, trimmed strings.
fn normalise(value: &Value) -> Value {
    match value {
        Value::Object(object) => Value::Object(
            object
                .iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k.clone(), normalise(v)))
                .collect(),
        ),
        Value::Array(elements) => Value::Array(elements.iter().map(normalise).collect()),
        Value::Number(n) => match n.as_f64() {
            Some(f) if !n.is_i64() && !n.is_u64() && f.fract() == 0.0 && f.abs() < 9.0e15 => {
                Value::from(f as i64)
            }
            _ => value.clone(),
        },
        Value::String(s) => Value::String(s.trim().to_owned()),
        other => other.clone(),
    }
}

/// A JSON text with object keys sorted, whatever the map's order.
fn canonical(value: &Value) -> String {
    let mut out = String::new();
    write_canonical(value, &mut out);
    out
}

fn write_canonical(value: &Value, out: &mut String) {
    match value {
        Value::Object(object) => {
            let mut members: Vec<(&String, &Value)> = object.iter().collect();
            members.sort_by(|a, b| a.0.cmp(b.0));
            out.push('{');
            for (i, (k, v)) in members.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(k.clone()).to_string());
                out.push(':');
                write_canonical(v, out);
            }
            out.push('}');
        }
        Value::Array(elements) => {
            out.push('[');
            for (i, v) in elements.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(v, out);
            }
            out.push(']');
        }
        other => out.push_str(&other.to_string()),
    }
}

/// A value for an explanation, cut to 60 characters.
fn short(value: &Value) -> String {
    let text = value.to_string();
    match text.char_indices().nth(60) {
        Some((end, _)) => format!("{}…", &text[..end]),
        None => text,
    }
}

/// One call's comparison key: its tool and normalised arguments.
fn call_key(name: &str, arguments: Option<&Value>) -> String {
    let arguments = arguments.map(normalise).unwrap_or(Value::Null);
    format!("{name}\0{}", canonical(&arguments))
}

/// The first path where `got` and `expected` (both normalised) differ.
fn first_difference(got: &Value, expected: &Value, path: &str) -> Option<String> {
    match (got, expected) {
        (Value::Object(g), Value::Object(e)) => {
            let mut keys: Vec<&String> = g.keys().chain(e.keys()).collect();
            keys.sort();
            keys.dedup();
            keys.into_iter().find_map(|k| {
                let at = format!("{path}.{k}");
                match (g.get(k), e.get(k)) {
                    (Some(gv), Some(ev)) => first_difference(gv, ev, &at),
                    (Some(gv), None) => Some(format!("`{at}` = {} not expected", short(gv))),
                    (None, Some(ev)) => Some(format!("`{at}` missing, expected {}", short(ev))),
                    (None, None) => None,
                }
            })
        }
        (Value::Array(g), Value::Array(e)) if g.len() == e.len() => g
            .iter()
            .zip(e)
            .enumerate()
            .find_map(|(i, (gv, ev))| first_difference(gv, ev, &format!("{path}[{i}]"))),
        _ if canonical(got) == canonical(expected) => None,
        _ => Some(format!(
            "`{path}` = {}, expected {}",
            short(got),
            short(expected)
        )),
    }
}

/// One problem found: what, which calls, and whether it fails the trace.
struct Problem {
    text: String,
    spans: Vec<String>,
    fails: bool,
}

/// The expected-actions comparison.
struct Divergence {
    text: String,
    spans: Vec<String>,
}

impl ToolUse {
    fn problems(&self, view: &TraceView) -> Vec<Problem> {
        let calls = &view.tool_calls;
        let mut problems = Vec::new();
        let state_changing: Vec<bool> = calls
            .iter()
            .map(|c| self.is_state_changing(&c.name, c.retrieval))
            .collect();
        let keys: Vec<String> = calls
            .iter()
            .map(|c| call_key(&c.name, c.arguments.as_ref()))
            .collect();

        for call in calls {
            let Some(schema) = self.options.schemas.get(&call.name) else {
                continue;
            };
            let arguments = call
                .arguments
                .clone()
                .unwrap_or(Value::Object(Default::default()));
            if let Some(violation) = schema.violation(&arguments, "$") {
                problems.push(Problem {
                    text: format!("`{}` arguments fail its schema ({violation})", call.name),
                    spans: vec![call.span_id.clone()],
                    fails: true,
                });
            }
        }

        for (i, call) in calls.iter().enumerate() {
            if call.error.is_none() {
                continue;
            }
            let recovered = calls[i + 1..]
                .iter()
                .any(|later| later.name == call.name && later.error.is_none());
            let fails = !recovered || self.options.fail_on_recovered_errors;
            problems.push(Problem {
                text: if recovered {
                    format!(
                        "`{}` returned an error, then succeeded on a later call",
                        call.name
                    )
                } else {
                    format!(
                        "`{}` returned an error and never succeeded after it",
                        call.name
                    )
                },
                spans: vec![call.span_id.clone()],
                fails,
            });
        }

        // Repeats: runs of identical calls not separated by a successful state change
        // (other than one of the identical calls themselves).
        let mut by_key: HashMap<&str, Vec<usize>> = HashMap::new();
        for (i, key) in keys.iter().enumerate() {
            by_key.entry(key).or_default().push(i);
        }
        let changed_between = |a: usize, b: usize| {
            (a + 1..b).any(|j| state_changing[j] && calls[j].error.is_none() && keys[j] != keys[a])
        };
        let mut repeats: Vec<Vec<usize>> = Vec::new();
        for indices in by_key.values() {
            let mut run = vec![indices[0]];
            for &i in &indices[1..] {
                if changed_between(run[run.len() - 1], i) {
                    repeats.push(std::mem::take(&mut run));
                }
                run.push(i);
            }
            repeats.push(run);
        }
        repeats.retain(|run| run.len() > self.options.max_identical_calls);
        repeats.sort();
        for run in repeats {
            problems.push(Problem {
                text: format!(
                    "`{}` called {} times with identical arguments",
                    calls[run[0]].name,
                    run.len()
                ),
                spans: run.iter().map(|&i| calls[i].span_id.clone()).collect(),
                fails: true,
            });
        }

        // Loops: maximal stretches where call i is the same as call i - 2 but not i - 1.
        let mut i = 0;
        while i + 3 < keys.len() {
            let alternates = |j: usize| keys[j] == keys[j - 2] && keys[j] != keys[j - 1];
            if keys[i] != keys[i + 1] && alternates(i + 2) {
                let mut end = i + 2;
                while end + 1 < keys.len() && alternates(end + 1) {
                    end += 1;
                }
                // Whole `A B` pairs among the calls i..=end.
                let length = end - i + 1;
                let cycles = length / 2;
                if cycles > self.options.max_cycles {
                    problems.push(Problem {
                        text: format!(
                            "loop: `{}` and `{}` alternated {cycles} times",
                            calls[i].name,
                            calls[i + 1].name
                        ),
                        spans: (i..=end).map(|j| calls[j].span_id.clone()).collect(),
                        fails: true,
                    });
                }
                i = end + 1;
            } else {
                i += 1;
            }
        }

        for call in calls.iter().filter(|c| self.needs_confirmation(c)) {
            let asked = last_user_message(&view.messages, call.start_ns);
            if !asked.is_some_and(|m| self.confirms(&m.text)) {
                problems.push(Problem {
                    text: format!(
                        "`{}` called without the user's confirmation in the message before it",
                        call.name
                    ),
                    spans: vec![call.span_id.clone()],
                    fails: true,
                });
            }
        }
        problems
    }

    /// The expected-actions comparison; `None` when they match.
    fn divergence(&self, view: &TraceView) -> Option<Option<Divergence>> {
        let expected = view.expected_actions.as_ref()?;
        let mut open: Vec<(&str, Value, String)> = expected
            .iter()
            .filter(|a| self.is_state_changing(&a.name, false))
            .map(|a| {
                let arguments = normalise(&a.arguments);
                let key = call_key(&a.name, Some(&arguments));
                (a.name.as_str(), arguments, key)
            })
            .collect();
        let mut unexpected: Vec<&ToolCall> = Vec::new();
        for call in view
            .tool_calls
            .iter()
            .filter(|c| c.error.is_none() && self.is_state_changing(&c.name, c.retrieval))
        {
            let key = call_key(&call.name, call.arguments.as_ref());
            match open.iter().position(|(_, _, k)| *k == key) {
                Some(found) => {
                    open.remove(found);
                }
                None => unexpected.push(call),
            }
        }
        let summary = |first: String| {
            let mut text = format!("expected actions diverge: {first}");
            if unexpected.len() + open.len() > 1 {
                let _ = write!(
                    text,
                    " ({} unexpected call(s), {} expected action(s) not made)",
                    unexpected.len(),
                    open.len()
                );
            }
            text
        };
        if let Some(call) = unexpected.first() {
            let got = call
                .arguments
                .as_ref()
                .map(normalise)
                .unwrap_or(Value::Null);
            let first = match open.iter().find(|(name, _, _)| *name == call.name) {
                Some((_, arguments, _)) => format!(
                    "first divergence at `{}`: {}",
                    call.name,
                    first_difference(&got, arguments, "$")
                        .unwrap_or_else(|| "arguments differ".to_owned())
                ),
                None => format!("first divergence: unexpected call `{}`", call.name),
            };
            return Some(Some(Divergence {
                text: summary(first),
                spans: unexpected.iter().map(|c| c.span_id.clone()).collect(),
            }));
        }
        if let Some((name, _, _)) = open.first() {
            return Some(Some(Divergence {
                text: summary(format!(
                    "first divergence: expected `{name}` was never called"
                )),
                spans: Vec::new(),
            }));
        }
        Some(None)
    }
}

/// The last user message that started before `at`.
fn last_user_message(messages: &[Message], at: u64) -> Option<&Message> {
    messages
        .iter()
        .rfind(|m| m.role == "user" && m.start_ns <= at)
}

impl Scorer for ToolUse {
    fn name(&self) -> &'static str {
        "tool_use"
    }

    fn version(&self) -> &'static str {
        "1"
    }

    fn score(&self, view: &TraceView) -> Vec<Outcome> {
        if view.tool_calls.is_empty() && view.expected_actions.is_none() {
            return Vec::new();
        }
        let problems = self.problems(view);
        let divergence = self.divergence(view);
        let failing = problems.iter().filter(|p| p.fails).count();
        let recovered = problems.len() - failing;
        let diverged = matches!(divergence, Some(Some(_)));
        let value = if diverged {
            0.0
        } else if failing > 0 {
            0.5 / (1.0 + failing as f64)
        } else {
            0.5 + 0.5 / (1.0 + recovered as f64)
        };
        let mut texts: Vec<&str> = Vec::new();
        let mut spans: Vec<&String> = Vec::new();
        if let Some(Some(d)) = &divergence {
            texts.push(&d.text);
            spans.extend(&d.spans);
        }
        for problem in &problems {
            texts.push(&problem.text);
            spans.extend(&problem.spans);
        }
        let mut seen = std::collections::HashSet::new();
        let evidence: Vec<Evidence> = spans
            .into_iter()
            .filter(|s| seen.insert(s.as_str()))
            .map(|s| Evidence::span(s))
            .collect();
        let pass = !diverged && failing == 0;
        let explanation = if texts.is_empty() {
            format!("{} tool call(s), no problems", view.tool_calls.len())
        } else {
            texts.join("; ")
        };
        let mut outcomes = vec![
            Outcome::new("tool_use", value)
                .label(if pass { "pass" } else { "fail" })
                .explanation(explanation)
                .evidence(evidence),
        ];
        if let Some(divergence) = divergence {
            outcomes.push(match divergence {
                None => Outcome::new("tool_use.expected_actions", 1.0)
                    .label("match")
                    .explanation("the state-changing calls match the expected actions"),
                Some(d) => Outcome::new("tool_use.expected_actions", 0.0)
                    .label("diverged")
                    .explanation(d.text)
                    .evidence(d.spans.iter().map(|s| Evidence::span(s)).collect()),
            });
        }
        outcomes
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::view::ViewOptions;
    use agentwire_trace::{Span, SpanKind, SpanStatus};
    use serde_json::{Map, json};

    /// A trace, built as the importers write one: `("user", text)` and
    /// `("assistant", text)` are messages, `("call", [name, arguments, result])` a tool call
    /// (a result string starting with `Error` is an error), `("expected", actions)` the
    /// root's expected actions.
    fn trace(items: &[(&str, Value)]) -> TraceView {
        let mut root = Map::new();
        root.insert("gen_ai.operation.name".into(), "invoke_agent".into());
        root.insert("agentwire.session".into(), "s".into());
        root.insert("agentwire.tenant".into(), "acme".into());
        let span = |i: usize, name: &str, attributes: Map<String, Value>| Span {
            trace_id: "t".repeat(32),
            span_id: format!("{i:016x}"),
            parent_span_id: Some("0".repeat(16)),
            name: name.to_owned(),
            kind: SpanKind::Internal,
            start_time_unix_nano: 1_000 + i as u64 * 10,
            end_time_unix_nano: 1_005 + i as u64 * 10,
            attributes,
            events: Vec::new(),
            status: SpanStatus::Unset,
        };
        let mut spans = Vec::new();
        for (i, (kind, value)) in items.iter().enumerate() {
            let i = i + 1;
            let mut attributes = Map::new();
            match *kind {
                "expected" => {
                    root.insert(
                        "agentwire.expected_actions".into(),
                        value.to_string().into(),
                    );
                }
                "user" | "assistant" => {
                    let key = if *kind == "user" {
                        "gen_ai.input.messages"
                    } else {
                        "gen_ai.output.messages"
                    };
                    let content =
                        json!([{"role": kind, "parts": [{"type": "text", "content": value}]}]);
                    attributes.insert("gen_ai.operation.name".into(), "chat".into());
                    attributes.insert("agentwire.message.role".into(), (*kind).into());
                    attributes.insert(key.into(), content.to_string().into());
                    spans.push(span(i, "chat", attributes));
                }
                _ => {
                    let name = value[0].as_str().expect("a tool name");
                    attributes.insert("gen_ai.operation.name".into(), "execute_tool".into());
                    attributes.insert("gen_ai.tool.name".into(), name.into());
                    attributes.insert(
                        "gen_ai.tool.call.arguments".into(),
                        value[1].to_string().into(),
                    );
                    attributes.insert(
                        "gen_ai.tool.call.result".into(),
                        value[2].to_string().into(),
                    );
                    let mut s = span(i, &format!("execute_tool {name}"), attributes);
                    if let Some(error) = value[2].as_str().filter(|r| r.starts_with("Error")) {
                        s.attributes.insert("error.type".into(), error.into());
                        s.status = SpanStatus::Error;
                    }
                    spans.push(s);
                }
            }
        }
        let mut root = span(0, "invoke_agent", root);
        root.span_id = "0".repeat(16);
        root.parent_span_id = None;
        spans.insert(0, root);
        TraceView::from_spans(&spans, &ViewOptions::default()).expect("a trace")
    }

    fn call(name: &str, arguments: Value, result: Value) -> (&'static str, Value) {
        ("call", json!([name, arguments, result]))
    }

    fn scorer(toml_text: &str) -> ToolUse {
        let options: ToolUseOptions = toml::from_str(toml_text).expect("options");
        ToolUse::new(&options).expect("valid options")
    }

    /// The `tool_use` outcome, or a panic.
    fn outcome(scorer: &ToolUse, view: &TraceView) -> Outcome {
        scorer
            .score(view)
            .into_iter()
            .find(|o| o.name == "tool_use")
            .expect("a tool_use outcome")
    }

    fn assert_fails(outcome: &Outcome, says: &str) {
        assert_eq!(outcome.label.as_deref(), Some("fail"), "{outcome:?}");
        assert!(outcome.value < 0.5, "{outcome:?}");
        let explanation = outcome.explanation.as_deref().unwrap_or_default();
        assert!(
            explanation.contains(says),
            "{explanation:?} should say {says:?}"
        );
    }

    fn assert_passes(outcome: &Outcome) {
        assert_eq!(outcome.label.as_deref(), Some("pass"), "{outcome:?}");
        assert!(outcome.value > 0.5, "{outcome:?}");
    }

    #[test]
    fn a_clean_trace_passes_and_one_without_tools_is_not_scored() {
        let s = scorer("");
        let view = trace(&[
            ("user", "my id is u1".into()),
            call("get_user", json!({"id": "u1"}), json!({"name": "A"})),
            ("assistant", "Hi A".into()),
        ]);
        let o = outcome(&s, &view);
        assert_passes(&o);
        assert_eq!(o.value, 1.0);
        assert_eq!(
            s.score(&view).len(),
            1,
            "no expected actions, no sub-outcome"
        );
        assert!(s.score(&trace(&[("user", "hi".into())])).is_empty());
    }

    #[test]
    fn arguments_failing_the_declared_schema_fail() {
        let s = scorer(
            r#"
            [schemas.cancel]
            type = "object"
            required = ["id"]
            properties.id = { type = "string", description = "reservation" }
            properties.reason = { type = "string", enum = ["change_of_plan", "other"] }
            properties.seats = { type = "array", items = { type = "integer" } }
            "#,
        );
        let ok = trace(&[call(
            "cancel",
            json!({"id": "R1", "reason": "other", "seats": [1, 2.0], "note": null}),
            json!("ok"),
        )]);
        assert_passes(&outcome(&s, &ok));
        for (arguments, says) in [
            (json!({"reason": "other"}), "$: missing required `id`"),
            (json!({"id": 5}), "$.id: expected string, got number"),
            (
                json!({"id": "R1", "reason": "bored"}),
                "$.reason: \"bored\" is not one of the allowed values",
            ),
            (
                json!({"id": "R1", "seats": [1, "2"]}),
                "$.seats[1]: expected integer, got string",
            ),
            (json!("{not json"), "$: expected object, got string"),
        ] {
            let view = trace(&[call("cancel", arguments, json!("ok"))]);
            assert_fails(&outcome(&s, &view), says);
        }
        // Tools without a schema are not checked.
        assert_passes(&outcome(
            &s,
            &trace(&[call("book", json!("anything"), json!("ok"))]),
        ));
    }

    #[test]
    fn schemas_with_unknown_keywords_or_types_are_rejected() {
        let error = toml::from_str::<ToolUseOptions>("[schemas.x]\nminimum = 3\n")
            .expect_err("unknown keyword");
        assert!(error.to_string().contains("minimum"), "{error}");
        let options: ToolUseOptions =
            toml::from_str("[schemas.x]\nproperties.a = { type = \"text\" }\n").expect("parses");
        let error = ToolUse::new(&options).err().expect("unknown type");
        assert_eq!(error.field, "tool_use.schemas.x.properties.a.type");
        assert!(
            toml::from_str::<ToolUseOptions>("max_repeats = 3\n").is_err(),
            "unknown option"
        );
    }

    #[test]
    fn errors_fail_unless_recovered() {
        let s = scorer("");
        let unrecovered = trace(&[
            call(
                "book",
                json!({"amount": 5}),
                json!("Error: payment amount does not add up"),
            ),
            ("assistant", "Sorry".into()),
        ]);
        let o = outcome(&s, &unrecovered);
        assert_fails(&o, "`book` returned an error and never succeeded");
        assert_eq!(o.value, 0.25);
        assert_eq!(o.evidence, vec![Evidence::span(&format!("{:016x}", 1))]);

        let recovered = trace(&[
            call(
                "book",
                json!({"amount": 5}),
                json!("Error: payment amount does not add up"),
            ),
            call("book", json!({"amount": 50}), json!({"ok": true})),
        ]);
        let o = outcome(&s, &recovered);
        assert_passes(&o);
        assert_eq!(o.value, 0.75, "a recovered error lowers the value");
        assert!(
            o.explanation
                .as_deref()
                .unwrap_or_default()
                .contains("then succeeded")
        );
        assert_fails(
            &outcome(&scorer("fail_on_recovered_errors = true"), &recovered),
            "then succeeded",
        );
    }

    #[test]
    fn identical_calls_in_one_state_are_repeats() {
        let s = scorer("");
        let view = trace(&[
            call("get_order", json!({"id": "A", "x": 1}), json!({})),
            call("get_order", json!({"x": 1.0, "id": " A "}), json!({})),
            call("get_order", json!({"id": "A", "x": 1}), json!({})),
        ]);
        let o = outcome(&s, &view);
        assert_fails(&o, "`get_order` called 3 times with identical arguments");
        assert_eq!(o.evidence.len(), 3);
        assert_passes(&outcome(&scorer("max_identical_calls = 3"), &view));
        // Reading again after a change is not a repeat; changing twice is.
        let reread = trace(&[
            call("get_order", json!({"id": "A"}), json!({})),
            call("update_order", json!({"id": "A", "qty": 2}), json!({})),
            call("get_order", json!({"id": "A"}), json!({})),
        ]);
        assert_passes(&outcome(&s, &reread));
        let twice = trace(&[
            call("cancel_order", json!({"id": "A"}), json!({})),
            call("cancel_order", json!({"id": "A"}), json!({})),
        ]);
        assert_fails(&outcome(&s, &twice), "`cancel_order` called 2 times");
    }

    #[test]
    fn alternating_calls_are_loops() {
        let s = scorer("max_identical_calls = 10");
        let a = || call("get_a", json!({}), json!({}));
        let b = || call("get_b", json!({}), json!({}));
        assert_fails(
            &outcome(&s, &trace(&[a(), b(), a(), b()])),
            "loop: `get_a` and `get_b` alternated 2 times",
        );
        assert_passes(&outcome(&s, &trace(&[a(), b(), a()])));
        assert_passes(&outcome(
            &scorer("max_identical_calls = 10\nmax_cycles = 2"),
            &trace(&[a(), b(), a(), b()]),
        ));
    }

    #[test]
    fn state_changing_calls_need_confirmation_when_the_policy_asks() {
        let policy = scorer("confirm_state_changing = true");
        let with = |answer: &str| {
            trace(&[
                ("user", "cancel R1".into()),
                ("assistant", "Cancel R1, refund $50. Proceed?".into()),
                ("user", answer.into()),
                call("get_reservation", json!({"id": "R1"}), json!({})),
                call("cancel_reservation", json!({"id": "R1"}), json!("ok")),
            ])
        };
        assert_passes(&outcome(&policy, &with("Yes, please.")));
        assert_passes(&outcome(&policy, &with("OK go ahead")));
        assert_passes(&outcome(&policy, &with("That’s right")));
        for answer in [
            "No, wait.",
            "What would the refund be?",
            "Don't proceed",
            "yesterday",
        ] {
            let o = outcome(&policy, &with(answer));
            assert_fails(
                &o,
                "`cancel_reservation` called without the user's confirmation",
            );
            assert_eq!(o.evidence.len(), 1, "the read needs none: {o:?}");
        }
        // No policy, no check; a listed tool needs it even when read-only by name.
        assert_passes(&outcome(&scorer(""), &with("What would the refund be?")));
        let listed = scorer("require_confirmation = [\"get_reservation\"]");
        assert_fails(
            &outcome(&listed, &with("hmm")),
            "`get_reservation` called without",
        );
        assert!(
            ToolUse::new(&ToolUseOptions {
                confirm_state_changing: true,
                confirmation_words: vec![" ".into()],
                ..ToolUseOptions::default()
            })
            .is_err()
        );
    }

    #[test]
    fn the_default_rule_says_which_tools_change_state() {
        let s = scorer("state_changing = [\"think_hard\"]\nread_only = [\"send_report\"]");
        for name in [
            "get_user_details",
            "searchFlights",
            "list_all_airports",
            "calculate",
            "think",
            "transfer_to_human_agents",
            "lookup-order",
            "fetch.page",
        ] {
            assert!(!s.is_state_changing(name, false), "{name} reads");
        }
        for name in [
            "book_reservation",
            "cancel_reservation",
            "send_certificate",
            "getaway",
            "think_hard",
            "update",
        ] {
            assert!(s.is_state_changing(name, false), "{name} changes state");
        }
        assert!(
            !s.is_state_changing("send_report", false),
            "listed as read-only"
        );
        assert!(!s.is_state_changing("book", true), "retrieval reads");
    }

    fn expected() -> (&'static str, Value) {
        (
            "expected",
            json!([
                {"name": "get_user", "arguments": {"id": "u1"}},
                {"name": "book", "arguments": {"user": "u1", "flights": [{"n": "HAT1", "date": "2024-05-20"}], "amount": 250}},
                {"name": "cancel", "arguments": {"id": "R1"}}
            ]),
        )
    }

    #[test]
    fn state_changing_calls_matching_the_expected_actions_pass_in_any_order() {
        let s = scorer("");
        let view = trace(&[
            expected(),
            call("cancel", json!({"id": "R1", "reason": null}), json!("ok")),
            call(
                "book",
                // A failed call changed nothing: it is not an unexpected action.
                json!({"amount": 25, "flights": [{"date": "2024-05-20", "n": "HAT1"}], "user": "u1"}),
                json!("Error: payment"),
            ),
            call(
                "book",
                json!({"amount": 250.0, "flights": [{"date": "2024-05-20", "n": "HAT1 "}], "user": "u1"}),
                json!({"ok": true}),
            ),
        ]);
        let outcomes = s.score(&view);
        assert_passes(&outcomes[0]);
        assert_eq!(outcomes[1].name, "tool_use.expected_actions");
        assert_eq!(
            (outcomes[1].value, outcomes[1].label.as_deref()),
            (1.0, Some("match"))
        );
    }

    #[test]
    fn the_first_divergence_from_the_expected_actions_is_named() {
        let s = scorer("");
        let wrong_date = trace(&[
            expected(),
            call("cancel", json!({"id": "R1"}), json!("ok")),
            call(
                "book",
                json!({"user": "u1", "flights": [{"n": "HAT1", "date": "2024-05-21"}], "amount": 250}),
                json!("ok"),
            ),
        ]);
        let outcomes = s.score(&wrong_date);
        assert_fails(
            &outcomes[0],
            "first divergence at `book`: `$.flights[0].date` = \"2024-05-21\", expected \"2024-05-20\"",
        );
        assert_eq!(outcomes[0].value, 0.0);
        assert_eq!(
            outcomes[0].evidence,
            vec![Evidence::span(&format!("{:016x}", 3))]
        );
        assert_eq!(
            (outcomes[1].value, outcomes[1].label.as_deref()),
            (0.0, Some("diverged"))
        );

        let unexpected = trace(&[expected(), call("refund", json!({"id": "R1"}), json!("ok"))]);
        assert_fails(
            &outcome(&s, &unexpected),
            "first divergence: unexpected call `refund`",
        );
        assert_fails(
            &outcome(&s, &unexpected),
            "(1 unexpected call(s), 2 expected action(s) not made)",
        );

        let missing = trace(&[
            expected(),
            call(
                "book",
                json!({"user": "u1", "flights": [{"n": "HAT1", "date": "2024-05-20"}], "amount": 250}),
                json!("ok"),
            ),
        ]);
        assert_fails(
            &outcome(&s, &missing),
            "first divergence: expected `cancel` was never called",
        );
        // Expected actions without any call still score: nothing was done.
        assert_fails(
            &outcome(&s, &trace(&[expected(), ("assistant", "done".into())])),
            "expected `book` was never called",
        );
    }
}
