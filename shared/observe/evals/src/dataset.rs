//! Datasets: versioned collections of items, each a known input and what a good answer to
//! it is. A dataset is written as JSON lines, one item per line:
//!
//! ```json
//! {"id": "refund-1", "input": "Can I get a refund?", "expected": {"facts": ["30 days"]}, "tags": ["billing"]}
//! {"id": "refund-2", "input": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}, {"role": "user", "content": "Refund?"}]}
//! {"id": "tau-5-0", "trace": "traces/dt=2026-12-01/tenant=acme/tau-5-0.jsonl.gz", "metadata": {"reward": 1}}
//! ```
//!
//! - `id`: 1 to 64 characters of `A-Z a-z 0-9 . _ -`, unique in the dataset: runs pair
//!   items by it. Without one, an item's id is `item-` and 12 hex digits of its input's
//!   SHA-256, so the same input keeps its id across versions.
//! - `input`: the user's message, or the conversation so far (messages of role `user`,
//!   `assistant` or `system`, the last one the user's; `content` or `text`).
//! - `expected` (all optional): `output` (the reference answer), `facts` (what the answer
//!   must say), `number`, `json`, `actions` (state-changing tool calls, `{"name",
//!   "arguments"}`), `labels` (a grade per scorer name, when a person graded the trace).
//! - `context`: retrieved passages the item is about; `tags`; `metadata` (any JSON object).
//! - `trace`: the archive key of a recorded trajectory, for replay runs (scored without an
//!   agent; `input` is then optional).

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

/// The longest id or dataset name, in bytes.
pub const MAX_NAME_LEN: usize = 64;

/// The most items one dataset version holds.
pub const MAX_ITEMS: usize = 100_000;

/// One message of an item's input.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InputMessage {
    pub role: String,
    #[serde(alias = "text")]
    pub content: String,
}

/// What a good answer to an item is; every part optional.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expected {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub facts: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub number: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub json: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actions: Option<Vec<ExpectedCall>>,
    /// A grade per scorer name (`tool_use: "pass"`, `correct: 1`), from a person.
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub labels: Map<String, Value>,
}

impl Expected {
    pub fn is_empty(&self) -> bool {
        self == &Expected::default()
    }
}

/// A tool call a correct run makes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExpectedCall {
    pub name: String,
    #[serde(default)]
    pub arguments: Value,
}

/// One known input and its expectations.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Item {
    pub id: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub input: Vec<InputMessage>,
    #[serde(default, skip_serializing_if = "Expected::is_empty")]
    pub expected: Expected,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub context: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub metadata: Map<String, Value>,
    /// The archive key of a recorded trajectory (replay items).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace: Option<String>,
}

impl Item {
    /// The user's message the agent answers: the input's last message.
    pub fn question(&self) -> Option<&str> {
        self.input.last().map(|m| m.content.as_str())
    }
}

/// An item as a line may write it (`input` a string or messages; `id` optional).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Line {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    input: Option<InputLine>,
    #[serde(default)]
    expected: Expected,
    #[serde(default)]
    context: Vec<String>,
    #[serde(default)]
    tags: Vec<String>,
    #[serde(default)]
    metadata: Map<String, Value>,
    #[serde(default)]
    trace: Option<String>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum InputLine {
    Text(String),
    Messages(Vec<InputMessage>),
}

/// Why a dataset's text is not a dataset: the 1-based line and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {message}")]
pub struct LineError {
    pub line: usize,
    pub message: String,
}

/// Checks a dataset, item or run name: 1 to 64 characters of `A-Z a-z 0-9 . _ -`, not
/// starting with `.` (they become parts of session names and object keys).
pub fn validate_name(what: &str, name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > MAX_NAME_LEN {
        return Err(format!(
            "{what} {name:?} must be 1 to {MAX_NAME_LEN} characters long"
        ));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Err(format!(
            "{what} {name:?} contains {c:?}: only A-Z a-z 0-9 . _ - are allowed"
        ));
    }
    if name.starts_with('.') {
        return Err(format!("{what} {name:?} must not start with '.'"));
    }
    Ok(())
}

/// The items of a dataset written as JSON lines (blank lines are skipped). The first bad
/// line is the error; nothing is returned for a text with one.
pub fn parse_jsonl(text: &str) -> Result<Vec<Item>, LineError> {
    let mut items = Vec::new();
    let mut seen: HashMap<String, usize> = HashMap::new();
    for (index, raw) in text.lines().enumerate() {
        let line = index + 1;
        let raw = raw.trim();
        if raw.is_empty() {
            continue;
        }
        let fail = |message: String| LineError { line, message };
        let value: Value = serde_json::from_str(raw)
            .map_err(|e| fail(format!("not JSON ({e}): each line must be one item object")))?;
        if !value.is_object() {
            return Err(fail("not an item: each line must be a JSON object".into()));
        }
        let parsed: Line =
            serde_json::from_value(value).map_err(|e| fail(format!("not an item: {e}")))?;
        let item = item_of(parsed).map_err(fail)?;
        if let Some(first) = seen.insert(item.id.clone(), line) {
            return Err(fail(format!(
                "item id {:?} is already used on line {first}",
                item.id
            )));
        }
        items.push(item);
        if items.len() > MAX_ITEMS {
            return Err(fail(format!("a dataset holds at most {MAX_ITEMS} items")));
        }
    }
    if items.is_empty() {
        return Err(LineError {
            line: 0,
            message: "the dataset has no items".into(),
        });
    }
    Ok(items)
}

fn item_of(line: Line) -> Result<Item, String> {
    let input = match line.input {
        None => Vec::new(),
        Some(InputLine::Text(text)) => vec![InputMessage {
            role: "user".into(),
            content: text,
        }],
        Some(InputLine::Messages(messages)) => messages,
    };
    for (i, message) in input.iter().enumerate() {
        if !matches!(message.role.as_str(), "user" | "assistant" | "system") {
            return Err(format!(
                "input message {} has role {:?}: use user, assistant or system",
                i + 1,
                message.role
            ));
        }
    }
    match (input.last(), &line.trace) {
        (None, None) => return Err("an item needs an input (or a recorded trace)".into()),
        (Some(last), _) if last.role != "user" || last.content.trim().is_empty() => {
            return Err("the input's last message must be the user's, and not empty".into());
        }
        _ => {}
    }
    if let Some(trace) = &line.trace
        && !trace.starts_with("traces/")
    {
        return Err(format!(
            "trace {trace:?} is not an archive key (traces/dt=<day>/tenant=<t>/<session>.jsonl.gz)"
        ));
    }
    if let Some(number) = line.expected.number
        && !number.is_finite()
    {
        return Err("expected.number must be a finite number".into());
    }
    let id = match line.id {
        Some(id) => id,
        None => {
            let basis = serde_json::to_vec(&(&input, &line.trace)).unwrap_or_default();
            let hash = Sha256::digest(&basis);
            let hex: String = hash[..6].iter().map(|b| format!("{b:02x}")).collect();
            format!("item-{hex}")
        }
    };
    validate_name("item id", &id)?;
    Ok(Item {
        id,
        input,
        expected: line.expected,
        context: line.context,
        tags: line.tags,
        metadata: line.metadata,
        trace: line.trace,
    })
}

/// The items as JSON lines, one per line, each line ending in `\n`: [`parse_jsonl`] reads
/// them back unchanged.
pub fn to_jsonl(items: &[Item]) -> String {
    let mut text = String::new();
    for item in items {
        text.push_str(&serde_json::to_string(item).unwrap_or_default());
        text.push('\n');
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_become_items_with_inputs_expectations_and_stable_ids() {
        let text = r#"{"id": "q1", "input": "What is 2+2?", "expected": {"output": "4", "facts": ["four"]}, "tags": ["math"]}

{"input": [{"role": "user", "content": "Hi"}, {"role": "assistant", "text": "Hello"}, {"role": "user", "content": "Refund?"}], "metadata": {"tier": "gold"}}
{"id": "tau-1", "trace": "traces/dt=2026-12-01/tenant=acme/tau-1.jsonl.gz"}
"#;
        let items = parse_jsonl(text).unwrap();
        assert_eq!(items.len(), 3);
        assert_eq!(items[0].id, "q1");
        assert_eq!(items[0].question(), Some("What is 2+2?"));
        assert_eq!(items[0].expected.facts, ["four"]);
        assert_eq!(items[1].input.len(), 3);
        assert_eq!(items[1].question(), Some("Refund?"));
        assert!(items[1].id.starts_with("item-") && items[1].id.len() == 17);
        assert!(
            items[2]
                .trace
                .as_deref()
                .unwrap()
                .ends_with("tau-1.jsonl.gz")
        );
        // Written back and read again, nothing changes; the generated id stays.
        assert_eq!(parse_jsonl(&to_jsonl(&items)).unwrap(), items);
        let again = parse_jsonl(text).unwrap();
        assert_eq!(again[1].id, items[1].id);
    }

    #[test]
    fn a_bad_line_is_named_with_what_is_wrong() {
        let cases = [
            (
                "{\"id\": \"a\", \"input\": \"x\"}\n[1, 2]\n",
                2,
                "JSON object",
            ),
            (
                "{\"id\": \"a\", \"input\": \"x\"}\nnot json\n",
                2,
                "not JSON",
            ),
            ("{\"id\": \"a\"}\n", 1, "needs an input"),
            (
                "{\"id\": \"a\", \"input\": \"x\", \"colour\": 1}\n",
                1,
                "colour",
            ),
            (
                "{\"id\": \"a\", \"input\": \"x\", \"expected\": {\"fact\": []}}\n",
                1,
                "fact",
            ),
            (
                "{\"id\": \"a\", \"input\": \"x\"}\n{\"id\": \"a\", \"input\": \"y\"}\n",
                2,
                "already used on line 1",
            ),
            ("{\"id\": \"a b\", \"input\": \"x\"}\n", 1, "contains ' '"),
            (
                "{\"input\": [{\"role\": \"user\", \"content\": \"x\"}, {\"role\": \"assistant\", \"content\": \"y\"}]}\n",
                1,
                "last message must be the user's",
            ),
            (
                "{\"input\": [{\"role\": \"robot\", \"content\": \"x\"}]}\n",
                1,
                "role \"robot\"",
            ),
            (
                "{\"id\": \"a\", \"trace\": \"s3://x\"}\n",
                1,
                "not an archive key",
            ),
            ("\n\n", 0, "no items"),
        ];
        for (text, line, says) in cases {
            let error = parse_jsonl(text).unwrap_err();
            assert_eq!(error.line, line, "{text}: {error}");
            assert!(error.message.contains(says), "{text}: {error}");
        }
    }
}
