//! The reference-based scorers a dataset makes possible: the agent's answer (the text of
//! every non-user message after the item's question) against the item's expectations.
//! Each gives one outcome per item that carries its expectation, value in [0, 1]:
//!
//! - `reference.exact`: 1 when the answer is the expected output, ignoring surrounding
//!   whitespace, else 0 (label `match` / `differs`).
//! - `reference.fuzzy`: normalised Levenshtein similarity of answer and expected output,
//!   both lower-cased with punctuation dropped and whitespace collapsed (label `pass`
//!   from [`FUZZY_PASS`]).
//! - `reference.numeric`: the answer's last number against `expected.number`:
//!   `1 − min(1, |answer − expected| / max(|expected|, 1))` (label `pass` within
//!   [`NUMERIC_TOLERANCE`] of it); 0 when the answer has no number.
//! - `reference.json`: the answer's JSON (the whole answer, a fenced block, or its first
//!   `{…}`/`[…]`) against `expected.json`: the fraction of the expected value's leaves
//!   (scalars at their paths) the answer has equal (numbers by value); 0 when the answer
//!   holds no JSON (label `pass` when every leaf matches).
//! - `reference.facts`: expected-facts recall, the fraction of `expected.facts` the answer
//!   states: a fact is stated when its normalised text appears in the normalised answer,
//!   or every one of its content words does (label `pass` when all are).
//!
//! Expected tool actions are the tool-use scorer's: the runner gives it the item's
//! `expected.actions` and it scores `tool_use.expected_actions`.

use serde_json::Value;

use agentwire_scoring::Outcome;
use agentwire_scoring::view::TraceView;

use crate::dataset::Item;

/// The fuzzy similarity at which an answer passes.
pub const FUZZY_PASS: f64 = 0.8;

/// How far (relative to the expected value, at least 1 apart in absolute terms below 1)
/// an answer's number may be and still pass.
pub const NUMERIC_TOLERANCE: f64 = 1e-6;

/// The scorer name and version reference records carry.
pub const SCORER: &str = "reference";
pub const VERSION: &str = "1";

/// The answer in `view` to the item's question: the text of the messages not written by
/// the user after the last user message.
pub fn answer(view: &TraceView) -> String {
    let from = view
        .messages
        .iter()
        .rposition(|m| m.role == "user")
        .map(|i| i + 1)
        .unwrap_or(0);
    view.messages[from..]
        .iter()
        .filter(|m| m.role != "user" && m.role != "system" && m.role != "tool")
        .map(|m| m.text.as_str())
        .collect::<Vec<_>>()
        .join("\n")
}

/// The measures an item's expectations call for: an item that got no answer scores 0 on
/// each, so a run that stops answering cannot look as good as one that answers.
pub fn expected_measures(item: &Item) -> Vec<&'static str> {
    let expected = &item.expected;
    let mut names = Vec::new();
    if expected.output.is_some() {
        names.extend(["reference.exact", "reference.fuzzy"]);
    }
    if expected.number.is_some() {
        names.push("reference.numeric");
    }
    if expected.json.is_some() {
        names.push("reference.json");
    }
    if !expected.facts.is_empty() {
        names.push("reference.facts");
    }
    if expected.actions.is_some() {
        names.push("tool_use.expected_actions");
    }
    names
}

/// The reference outcomes of `item` on `view`.
pub fn score(view: &TraceView, item: &Item) -> Vec<Outcome> {
    let answer = answer(view);
    let span = view
        .messages
        .iter()
        .rev()
        .find(|m| m.role != "user")
        .map(|m| m.span_id.clone());
    let mut outcomes = Vec::new();
    let expected = &item.expected;
    if let Some(output) = &expected.output {
        let exact = answer.trim() == output.trim();
        outcomes.push(
            Outcome::new("reference.exact", if exact { 1.0 } else { 0.0 })
                .label(if exact { "match" } else { "differs" })
                .explanation(if exact {
                    "the answer is the expected output".to_owned()
                } else {
                    format!(
                        "the answer ({} characters) is not the expected output ({} characters)",
                        answer.trim().chars().count(),
                        output.trim().chars().count()
                    )
                }),
        );
        let similarity = strsim::normalized_levenshtein(&normalise(&answer), &normalise(output));
        outcomes.push(
            Outcome::new("reference.fuzzy", similarity)
                .label(pass(similarity >= FUZZY_PASS))
                .explanation(format!(
                    "similarity {similarity:.3} to the expected output (passes from {FUZZY_PASS})"
                )),
        );
    }
    if let Some(want) = expected.number {
        outcomes.push(match last_number(&answer) {
            Some(got) => {
                let relative = (got - want).abs() / want.abs().max(1.0);
                let value = 1.0 - relative.min(1.0);
                Outcome::new("reference.numeric", value)
                    .label(pass(relative <= NUMERIC_TOLERANCE))
                    .explanation(format!(
                        "the answer's number {got} against the expected {want}: relative difference {relative:.4}"
                    ))
            }
            None => Outcome::new("reference.numeric", 0.0)
                .label("fail")
                .explanation(format!("the answer has no number (expected {want})")),
        });
    }
    if let Some(want) = &expected.json {
        outcomes.push(match answer_json(&answer) {
            Some(got) => {
                let mut leaves = Vec::new();
                leaves_of(want, String::new(), &mut leaves);
                let total = leaves.len().max(1);
                let differing: Vec<&String> = leaves
                    .iter()
                    .filter(|(path, value)| !same(at_path(&got, path), value))
                    .map(|(path, _)| path)
                    .collect();
                let value = 1.0 - differing.len() as f64 / total as f64;
                let explanation = if differing.is_empty() {
                    format!("all {total} expected values are in the answer's JSON")
                } else {
                    format!(
                        "{} of {total} expected values differ or are missing: {}",
                        differing.len(),
                        list(differing.iter().map(|p| if p.is_empty() {
                            "(the value)"
                        } else {
                            p.as_str()
                        }))
                    )
                };
                Outcome::new("reference.json", value)
                    .label(pass(differing.is_empty()))
                    .explanation(explanation)
            }
            None => Outcome::new("reference.json", 0.0)
                .label("fail")
                .explanation("the answer holds no JSON value"),
        });
    }
    if !expected.facts.is_empty() {
        let text = normalise(&answer);
        let words: std::collections::HashSet<&str> = text.split(' ').collect();
        let missing: Vec<&str> = expected
            .facts
            .iter()
            .filter(|fact| !stated(fact, &text, &words))
            .map(String::as_str)
            .collect();
        let total = expected.facts.len();
        let value = (total - missing.len()) as f64 / total as f64;
        let explanation = if missing.is_empty() {
            format!("states all {total} expected facts")
        } else {
            format!(
                "states {} of {total} expected facts; missing: {}",
                total - missing.len(),
                list(missing.iter().copied())
            )
        };
        outcomes.push(
            Outcome::new("reference.facts", value)
                .label(pass(missing.is_empty()))
                .explanation(explanation),
        );
    }
    if let Some(span) = span {
        outcomes = outcomes.into_iter().map(|o| o.span(span.clone())).collect();
    }
    outcomes
}

fn pass(ok: bool) -> &'static str {
    if ok { "pass" } else { "fail" }
}

fn list<'a>(names: impl Iterator<Item = &'a str>) -> String {
    let names: Vec<String> = names.map(|n| format!("{n:?}")).collect();
    match names.len() {
        0..=5 => names.join(", "),
        n => format!("{}, and {} more", names[..5].join(", "), n - 5),
    }
}

/// Lower-cased, punctuation as spaces, whitespace collapsed.
fn normalise(text: &str) -> String {
    text.to_lowercase()
        .chars()
        .map(|c| if c.is_alphanumeric() { c } else { ' ' })
        .collect::<String>()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

/// Words too common to say whether a fact was stated.
const STOP: [&str; 24] = [
    "a", "an", "the", "of", "to", "in", "on", "at", "for", "and", "or", "is", "are", "be", "it",
    "its", "by", "with", "that", "this", "as", "was", "were", "from",
];

fn stated(fact: &str, text: &str, words: &std::collections::HashSet<&str>) -> bool {
    let fact = normalise(fact);
    if fact.is_empty() {
        return true;
    }
    if format!(" {text} ").contains(&format!(" {fact} ")) {
        return true;
    }
    let content: Vec<&str> = fact.split(' ').filter(|w| !STOP.contains(w)).collect();
    !content.is_empty() && content.iter().all(|w| words.contains(w))
}

/// The last number written in `text` (`-1,234.5` is -1234.5).
fn last_number(text: &str) -> Option<f64> {
    let mut last = None;
    let chars: Vec<char> = text.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        if chars[i].is_ascii_digit() {
            let negative =
                i > 0 && chars[i - 1] == '-' && (i < 2 || !chars[i - 2].is_alphanumeric());
            let mut number = String::new();
            while i < chars.len()
                && (chars[i].is_ascii_digit()
                    || (matches!(chars[i], '.' | ',')
                        && chars.get(i + 1).is_some_and(char::is_ascii_digit)))
            {
                if chars[i] != ',' {
                    number.push(chars[i]);
                }
                i += 1;
            }
            if let Ok(value) = number.parse::<f64>() {
                last = Some(if negative { -value } else { value });
            }
        } else {
            i += 1;
        }
    }
    last
}

/// The answer's JSON: all of it, else a fenced code block, else its first `{` or `[` to
/// the matching last `}` or `]`.
fn answer_json(answer: &str) -> Option<Value> {
    let trimmed = answer.trim();
    if let Ok(value) = serde_json::from_str(trimmed) {
        return Some(value);
    }
    if let Some(start) = trimmed.find("```") {
        let body = &trimmed[start + 3..];
        let body = body.strip_prefix("json").unwrap_or(body);
        if let Some(end) = body.find("```")
            && let Ok(value) = serde_json::from_str(body[..end].trim())
        {
            return Some(value);
        }
    }
    for (open, close) in [('{', '}'), ('[', ']')] {
        if let (Some(start), Some(end)) = (trimmed.find(open), trimmed.rfind(close))
            && start < end
            && let Ok(value) = serde_json::from_str(&trimmed[start..=end])
        {
            return Some(value);
        }
    }
    None
}

/// Every scalar of `value` with its path (`a.b[2]`); an empty object or array is a leaf.
fn leaves_of(value: &Value, path: String, out: &mut Vec<(String, Value)>) {
    match value {
        Value::Object(map) if !map.is_empty() => {
            for (key, child) in map {
                let at = if path.is_empty() {
                    key.clone()
                } else {
                    format!("{path}.{key}")
                };
                leaves_of(child, at, out);
            }
        }
        Value::Array(items) if !items.is_empty() => {
            for (i, child) in items.iter().enumerate() {
                leaves_of(child, format!("{path}[{i}]"), out);
            }
        }
        leaf => out.push((path, leaf.clone())),
    }
}

fn at_path<'a>(value: &'a Value, path: &str) -> Option<&'a Value> {
    let mut at = value;
    for part in path.split('.').filter(|p| !p.is_empty()) {
        let (key, indexes) = match part.find('[') {
            Some(i) => (&part[..i], &part[i..]),
            None => (part, ""),
        };
        if !key.is_empty() {
            at = at.get(key)?;
        }
        for index in indexes.split('[').filter(|s| !s.is_empty()) {
            at = at.get(index.trim_end_matches(']').parse::<usize>().ok()?)?;
        }
    }
    Some(at)
}

fn same(got: Option<&Value>, want: &Value) -> bool {
    match (got, want) {
        (Some(Value::Number(a)), Value::Number(b)) => a.as_f64() == b.as_f64(),
        (Some(Value::String(a)), Value::String(b)) => a.trim() == b.trim(),
        (Some(a), b) => a == b,
        (None, _) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataset::parse_jsonl;
    use agentwire_scoring::view::Message;

    fn view(answer: &str) -> TraceView {
        let message = |role: &str, text: &str, span: &str| Message {
            span_id: span.into(),
            role: role.into(),
            text: text.into(),
            ..Message::default()
        };
        TraceView {
            messages: vec![
                message("user", "an earlier question", "s0"),
                message("assistant", "an earlier answer 99", "s1"),
                message("user", "the question", "s2"),
                message("assistant", answer, "s3"),
            ],
            ..TraceView::default()
        }
    }

    fn item(expected: &str) -> Item {
        parse_jsonl(&format!(
            "{{\"id\": \"i\", \"input\": \"q\", \"expected\": {expected}}}"
        ))
        .unwrap()
        .remove(0)
    }

    fn outcome(answer: &str, expected: &str, name: &str) -> Outcome {
        score(&view(answer), &item(expected))
            .into_iter()
            .find(|o| o.name == name)
            .unwrap_or_else(|| panic!("no {name}"))
    }

    #[test]
    fn exact_and_fuzzy_match_read_only_the_answer_to_the_last_question() {
        let exact = outcome("  Paris \n", r#"{"output": "Paris"}"#, "reference.exact");
        assert_eq!((exact.value, exact.label.as_deref()), (1.0, Some("match")));
        assert_eq!(exact.span_id.as_deref(), Some("s3"));
        let near = outcome("paris!", r#"{"output": "Paris"}"#, "reference.fuzzy");
        assert_eq!(near.value, 1.0);
        assert_eq!(
            outcome("paris!", r#"{"output": "Paris"}"#, "reference.exact").value,
            0.0
        );
        let far = outcome("London", r#"{"output": "Paris"}"#, "reference.fuzzy");
        assert!(
            far.value < 0.5 && far.label.as_deref() == Some("fail"),
            "{far:?}"
        );
    }

    #[test]
    fn numbers_compare_by_the_answers_last_number() {
        let right = outcome(
            "It is 1,234.5 in total.",
            r#"{"number": 1234.5}"#,
            "reference.numeric",
        );
        assert_eq!((right.value, right.label.as_deref()), (1.0, Some("pass")));
        let off = outcome("about 90", r#"{"number": 100}"#, "reference.numeric");
        assert!((off.value - 0.9).abs() < 1e-9 && off.label.as_deref() == Some("fail"));
        let negative = outcome("it fell to -3", r#"{"number": -3}"#, "reference.numeric");
        assert_eq!(negative.value, 1.0);
        let none = outcome("no idea", r#"{"number": 7}"#, "reference.numeric");
        assert_eq!(none.value, 0.0);
        // The earlier answer's 99 is not this answer's.
        assert_eq!(
            none.explanation.as_deref(),
            Some("the answer has no number (expected 7)")
        );
    }

    #[test]
    fn json_compares_the_expected_leaves() {
        let want = r#"{"json": {"city": "Paris", "days": 3, "tags": ["a", "b"]}}"#;
        let all = outcome(
            "Here:\n```json\n{\"city\": \"Paris\", \"days\": 3.0, \"tags\": [\"a\", \"b\"], \"extra\": 1}\n```",
            want,
            "reference.json",
        );
        assert_eq!((all.value, all.label.as_deref()), (1.0, Some("pass")));
        let half = outcome(
            r#"{"city": "Rome", "days": 3, "tags": ["a"]}"#,
            want,
            "reference.json",
        );
        assert_eq!(half.value, 0.5, "{half:?}");
        assert!(half.explanation.unwrap().contains("\"city\", \"tags[1]\""));
        assert_eq!(outcome("none", want, "reference.json").value, 0.0);
    }

    #[test]
    fn facts_recall_counts_facts_stated_in_any_order_of_their_words() {
        let recall = outcome(
            "Refunds are possible within 30 days; the receipt is required.",
            r#"{"facts": ["within 30 days", "receipt required", "store credit"]}"#,
            "reference.facts",
        );
        assert!((recall.value - 2.0 / 3.0).abs() < 1e-9, "{recall:?}");
        assert_eq!(recall.label.as_deref(), Some("fail"));
        assert!(recall.explanation.unwrap().contains("\"store credit\""));
        // Part of a word is not the word.
        let partial = outcome("300 days", r#"{"facts": ["30 days"]}"#, "reference.facts");
        assert_eq!(partial.value, 0.0);
    }

    #[test]
    fn items_without_expectations_get_no_reference_outcomes() {
        assert!(score(&view("x"), &item("{}")).is_empty());
    }
}
