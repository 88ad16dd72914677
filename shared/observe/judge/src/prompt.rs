//! The prompt a rubric and a trace make: a system message with the judge's instructions,
//! the rubric and the experts' examples, and a user message with the trace, rendered as
//! plain text within a size budget (what was cut is marked in place and stated).
//!
//! [`PROMPT_VERSION`] names the template: it is part of the cache key and of the records'
//! scorer version, so it changes whenever the text below does.

use std::collections::BTreeMap;

use agentwire_grading::grade::Answer;
use agentwire_grading::rubric::{Rubric, Scale};
use agentwire_scoring::TraceView;
use serde_json::{Map, Value, json};

use crate::config::{EndpointConfig, JudgeConfig, PromptConfig};
use crate::endpoint::ChatMessage;
use crate::verdict;

/// The most few-shot examples a prompt is given (a rubric's or variant's `few_shot` is at
/// most this; the job and calibration keep no more).
pub const MAX_EXAMPLES: usize = 10;

/// The template's version; bump it with any change to the prompt's text or layout.
pub const PROMPT_VERSION: &str = "judge-1";

/// An expert's answer to one criterion of a few-shot example.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExampleAnswer {
    pub key: String,
    pub value: String,
    /// Already redacted.
    pub justification: Option<String>,
}

/// A graded trace shown to the judge as an example of where the experts draw the line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Example {
    /// The trace, already rendered ([`render_trace`]) and redacted.
    pub trace: String,
    pub answers: Vec<ExampleAnswer>,
    /// The experts disagreed and an adjudicator settled it: shown first.
    pub adjudicated: bool,
}

/// Whether a grade's answers justify at least one criterion: only such grades are shown
/// as examples (they say where the line is, not only which side).
pub fn justified(answers: &BTreeMap<String, Answer>) -> bool {
    answers.values().any(|a| {
        a.justification
            .as_deref()
            .is_some_and(|j| !j.trim().is_empty())
    })
}

/// A graded trace as an example: the trace (`view`, unredacted) and the expert's
/// `answers` to the rubric's criteria, both redacted as `config` says.
pub fn example(
    view: &TraceView,
    answers: &BTreeMap<String, Answer>,
    rubric: &Rubric,
    config: &JudgeConfig,
    adjudicated: bool,
) -> Example {
    let mask = &config.redaction.mask;
    let (view, _) = crate::redact::redact(view, mask);
    let rendered = render_trace(&view, config.prompt.max_example_chars);
    let answers = rubric
        .criteria
        .iter()
        .filter_map(|c| {
            let answer = answers.get(&c.key)?;
            Some(ExampleAnswer {
                key: c.key.clone(),
                value: answer.value.clone(),
                justification: answer
                    .justification
                    .as_deref()
                    .map(|j| crate::redact::redact_text(j, mask).0),
            })
        })
        .collect();
    Example {
        trace: rendered.text,
        answers,
        adjudicated,
    }
}

/// A trace as prompt text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    pub text: String,
    /// Characters cut to fit the budget (each cut is marked in the text).
    pub cut_chars: usize,
}

/// A prompt ready to send.
#[derive(Debug, Clone, PartialEq)]
pub struct Prompt {
    pub messages: Vec<ChatMessage>,
    /// The verdict's JSON schema ([`verdict::schema`]).
    pub schema: Value,
    pub schema_name: String,
    /// Characters of the trace cut to fit [`PromptConfig::max_trace_chars`].
    pub cut_chars: usize,
}

/// Why no prompt can be sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PromptError {
    /// Even without examples, the rubric and the trace with the reply's allowance exceed
    /// the model's context window.
    #[error(
        "the rubric and trace do not fit the model's context: about {needed_tokens} tokens \
         with the reply, of {context_tokens}"
    )]
    DoesNotFit {
        needed_tokens: u64,
        context_tokens: u64,
    },
}

/// How readily a piece of a rendered trace is cut: the middle first (context and tool
/// results, then the rest), the first request and the final answer last; labels never.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Keep {
    Label,
    Context,
    Middle,
    Essential,
}

struct Piece {
    text: String,
    keep: Keep,
}

#[derive(Default)]
struct Doc {
    pieces: Vec<Piece>,
}

impl Doc {
    fn label(&mut self, text: impl Into<String>) {
        self.push(text.into(), Keep::Label);
    }

    fn push(&mut self, text: String, keep: Keep) {
        self.pieces.push(Piece { text, keep });
    }
}

fn compact(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// The trace as plain text: the user's requests, the retrieved context (numbered), the
/// tool calls, and the assistant's answers (the final one last), in at most `max_chars`
/// characters where the labels allow. Over it, the middle is cut first, longest first,
/// and the first request and the final answer only if nothing else is left to cut.
pub fn render_trace(view: &TraceView, max_chars: usize) -> Rendered {
    let mut doc = Doc::default();

    doc.label("## The user's request\n");
    let users: Vec<&str> = view
        .messages
        .iter()
        .filter(|m| m.role == "user" && !m.text.trim().is_empty())
        .map(|m| m.text.as_str())
        .collect();
    if users.is_empty() {
        doc.label("(none)\n");
    }
    for (i, text) in users.iter().enumerate() {
        if users.len() > 1 {
            doc.label(format!("[{}] ", i + 1));
        }
        let keep = if i == 0 {
            Keep::Essential
        } else {
            Keep::Middle
        };
        doc.push((*text).to_owned(), keep);
        doc.label("\n");
    }

    doc.label("\n## Retrieved context\n");
    let mut numbered = Vec::with_capacity(view.tool_calls.len());
    let mut n = 0;
    for call in &view.tool_calls {
        let first = n + 1;
        if call.retrieval {
            for document in &call.documents {
                n += 1;
                doc.label(format!("[{n}] ({}) ", call.name));
                doc.push(document.clone(), Keep::Context);
                doc.label("\n");
            }
        }
        numbered.push((first, n));
    }
    if n == 0 {
        doc.label("(none)\n");
    }

    doc.label("\n## Tool calls\n");
    if view.tool_calls.is_empty() {
        doc.label("(none)\n");
    }
    for (i, (call, (first, last))) in view.tool_calls.iter().zip(numbered).enumerate() {
        doc.label(format!("[{}] {}\n  arguments: ", i + 1, call.name));
        match &call.arguments {
            Some(arguments) => doc.push(compact(arguments), Keep::Middle),
            None => doc.label("(none)"),
        }
        if let Some(error) = &call.error {
            doc.label("\n  error: ");
            doc.push(error.clone(), Keep::Middle);
        }
        if call.retrieval && last > first {
            doc.label(format!(
                "\n  result: the documents [{first}] to [{last}] above"
            ));
        } else if call.retrieval && last == first {
            doc.label(format!("\n  result: the document [{first}] above"));
        } else if let Some(result) = &call.result {
            doc.label("\n  result: ");
            doc.push(compact(result), Keep::Context);
        } else if call.error.is_none() {
            doc.label("\n  result: (none)");
        }
        doc.label("\n");
    }

    doc.label("\n## The assistant's answer\n");
    let answers: Vec<&str> = view
        .messages
        .iter()
        .filter(|m| m.role == "assistant" && !m.text.trim().is_empty())
        .map(|m| m.text.as_str())
        .collect();
    match answers.split_last() {
        None => doc.label("(no answer)\n"),
        Some((last, earlier)) => {
            for (i, text) in earlier.iter().enumerate() {
                doc.label(format!("Earlier reply [{}]:\n", i + 1));
                doc.push((*text).to_owned(), Keep::Middle);
                doc.label("\n");
            }
            doc.label("Final answer:\n");
            doc.push((*last).to_owned(), Keep::Essential);
            doc.label("\n");
        }
    }

    let cut_chars = fit(&mut doc.pieces, max_chars);
    let text = doc.pieces.into_iter().map(|p| p.text).collect();
    Rendered { text, cut_chars }
}

fn marker(cut: usize) -> String {
    format!("[… {cut} characters cut …]")
}

/// A piece of `len` characters shown in at most `cap` characters plus the cut's marker,
/// when cutting makes it shorter; its shown length.
fn shown(len: usize, cap: usize) -> usize {
    if len <= cap {
        return len;
    }
    len.min(cap + marker(len - cap).chars().count())
}

/// Cuts the pieces, the class most readily cut first and within it the longest first
/// (all cut to one common length), until the text fits `max_chars`; the characters cut.
fn fit(pieces: &mut [Piece], max_chars: usize) -> usize {
    let lens: Vec<usize> = pieces.iter().map(|p| p.text.chars().count()).collect();
    let mut total: usize = lens.iter().sum();
    let mut cut_chars = 0;
    for class in [Keep::Context, Keep::Middle, Keep::Essential] {
        if total <= max_chars {
            break;
        }
        let members: Vec<usize> = (0..pieces.len())
            .filter(|&i| pieces[i].keep == class)
            .collect();
        let whole: usize = members.iter().map(|&i| lens[i]).sum();
        let others = total - whole;
        let size = |cap: usize| -> usize { members.iter().map(|&i| shown(lens[i], cap)).sum() };
        // The largest common length that fits (sizes grow with it), else nothing kept.
        let (mut low, mut high) = (0, members.iter().map(|&i| lens[i]).max().unwrap_or(0));
        while low < high {
            let mid = (low + high).div_ceil(2);
            if others + size(mid) <= max_chars {
                low = mid;
            } else {
                high = mid - 1;
            }
        }
        let cap = low;
        for &i in &members {
            if shown(lens[i], cap) < lens[i] {
                pieces[i].text = cut(&pieces[i].text, lens[i], cap);
                cut_chars += lens[i] - cap;
            }
        }
        total = others + size(cap);
    }
    cut_chars
}

/// `text` (of `len` characters) with its middle replaced by a marker, keeping `keep`
/// characters: two thirds from the start, a third from the end.
fn cut(text: &str, len: usize, keep: usize) -> String {
    let tail = keep / 3;
    let head = keep - tail;
    let byte = |chars: usize| {
        text.char_indices()
            .nth(chars)
            .map_or(text.len(), |(b, _)| b)
    };
    format!(
        "{}{}{}",
        &text[..byte(head)],
        marker(len - keep),
        &text[byte(len - tail)..]
    )
}

/// `text` within `max_chars` characters, its middle cut and marked when longer.
fn cut_to(text: &str, max_chars: usize) -> String {
    let mut pieces = [Piece {
        text: text.to_owned(),
        keep: Keep::Context,
    }];
    fit(&mut pieces, max_chars);
    let [piece] = pieces;
    piece.text
}

const INSTRUCTIONS: &str = "You are an impartial expert grader. You are shown one trace of a \
conversation between a user and an AI assistant: the user's request, the context the assistant \
retrieved, the tools it called and their results, and the assistant's answer. Grade the trace \
with the rubric below, as the domain experts who wrote it would.

- Answer every criterion of the rubric, each with one of the values its scale allows.
- In each explanation, first cite the evidence in the trace that decides the answer (quote it \
briefly), then say why it earns that value.
- Judge only what the trace shows. `[redacted …]` marks text masked for privacy and \
`[… N characters cut …]` marks text shortened to fit: neither is the assistant's doing.
- Reply with JSON only, no prose and no code fence, in exactly this shape:
{\"criteria\": {\"<criterion key>\": {\"explanation\": \"<the evidence, then why>\", \"value\": \"<a value of its scale>\"}}}";

fn scale_text(scale: &Scale) -> String {
    match scale {
        Scale::PassFail => "Scale: \"pass\" or \"fail\".".to_owned(),
        Scale::Ordinal { anchors } => {
            let mut text = format!("Scale: \"1\" to \"{}\", where:", anchors.len());
            for (i, anchor) in anchors.iter().enumerate() {
                text.push_str(&format!("\n  {} = {anchor}", i + 1));
            }
            text
        }
        Scale::Categorical { labels } => {
            let quoted: Vec<String> = labels.iter().map(|l| format!("\"{l}\"")).collect();
            format!("Scale: one of {}.", quoted.join(", "))
        }
    }
}

fn system_message(
    rubric: &Rubric,
    instructions: &str,
    examples: &[&Example],
    max_example_chars: usize,
) -> String {
    let mut text = String::from(INSTRUCTIONS);
    if !instructions.trim().is_empty() {
        text.push_str("\n\n# The rubric owner's instructions\n");
        text.push_str(instructions.trim());
    }
    let title = if rubric.title.trim().is_empty() {
        &rubric.name
    } else {
        &rubric.title
    };
    text.push_str(&format!("\n\n# Rubric: {title}\n"));
    for criterion in &rubric.criteria {
        text.push_str(&format!("\n## {}: {}\n", criterion.key, criterion.title));
        if !criterion.guidance.trim().is_empty() {
            text.push_str(&format!("Guidance: {}\n", criterion.guidance.trim()));
        }
        text.push_str(&scale_text(&criterion.scale));
        text.push('\n');
    }
    if !examples.is_empty() {
        text.push_str("\n# Examples graded by the experts\n");
    }
    for (i, example) in examples.iter().enumerate() {
        text.push_str(&format!("\n## Example {}\n", i + 1));
        if example.adjudicated {
            text.push_str("(The experts disagreed on this one; this is the settled answer.)\n");
        }
        text.push_str(&cut_to(&example.trace, max_example_chars));
        let criteria: Map<String, Value> = example
            .answers
            .iter()
            .map(|a| {
                let why = a
                    .justification
                    .as_deref()
                    .unwrap_or("(no justification given)");
                (a.key.clone(), json!({"explanation": why, "value": a.value}))
            })
            .collect();
        text.push_str("\nThe experts' answer:\n");
        text.push_str(&json!({ "criteria": criteria }).to_string());
        text.push('\n');
    }
    text
}

fn user_message(trace: &Rendered) -> String {
    let mut text = format!("Grade this trace.\n\n{}", trace.text);
    if trace.cut_chars > 0 {
        text.push_str(&format!(
            "\nThis trace was shortened: {} characters were cut where marked.\n",
            trace.cut_chars
        ));
    }
    text.push_str("\nReply with the JSON verdict only.");
    text
}

/// Tokens as a typical tokenizer counts them, about three bytes each: for deciding what
/// fits, not for the budget (which uses [`input_token_bound`]).
fn estimate(messages: &[ChatMessage], schema: &Value) -> u64 {
    let third = |bytes: usize| (bytes as u64).div_ceil(3);
    messages.iter().map(|m| third(m.content.len())).sum::<u64>() + third(schema.to_string().len())
}

/// The prompt for judging `view` (already redacted) against `rubric`, with a variant's
/// `instructions` (none for the built-in prompt) and as many of `examples` as fit the
/// model's context (adjudicated ones first; the last dropped first).
pub fn build(
    rubric: &Rubric,
    view: &TraceView,
    instructions: &str,
    examples: &[Example],
    prompt: &PromptConfig,
    endpoint: &EndpointConfig,
) -> Result<Prompt, PromptError> {
    let trace = render_trace(view, prompt.max_trace_chars);
    let user = user_message(&trace);
    let schema = verdict::schema(rubric);
    let mut shown: Vec<&Example> = examples.iter().filter(|e| e.adjudicated).collect();
    shown.extend(examples.iter().filter(|e| !e.adjudicated));
    loop {
        let messages = vec![
            ChatMessage::system(system_message(
                rubric,
                instructions,
                &shown,
                prompt.max_example_chars,
            )),
            ChatMessage::user(user.clone()),
        ];
        let needed = estimate(&messages, &schema) + u64::from(endpoint.max_output_tokens);
        if needed <= endpoint.context_tokens {
            return Ok(Prompt {
                messages,
                schema,
                schema_name: "verdict".into(),
                cut_chars: trace.cut_chars,
            });
        }
        if shown.pop().is_none() {
            return Err(PromptError::DoesNotFit {
                needed_tokens: needed,
                context_tokens: endpoint.context_tokens,
            });
        }
    }
}

/// An upper bound of the input tokens `messages` and `schema` can cost: every byte of
/// their text (a BPE token covers at least one byte), plus 16 a message and 64 for the
/// chat template's own tokens. The budget reserves this before a call.
pub fn input_token_bound(messages: &[ChatMessage], schema: &Value) -> u64 {
    let bytes: usize = messages.iter().map(|m| m.content.len()).sum();
    bytes as u64 + schema.to_string().len() as u64 + 16 * messages.len() as u64 + 64
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::redact::tests::{message, tool, view};
    use crate::verdict::tests::rubric;

    fn trace() -> TraceView {
        let mut search = tool(
            "search_docs",
            json!({"query": "refund window"}),
            json!(["Refunds within 30 days.", "Keep the receipt."]),
            20,
        );
        search.retrieval = true;
        search.documents = vec!["Refunds within 30 days.".into(), "Keep the receipt.".into()];
        let mut lookup = tool("lookup_order", json!({"id": 42}), Value::Null, 30);
        lookup.result = None;
        lookup.error = Some("order not found".into());
        let book = tool("book", json!({"day": "mañana"}), json!({"ok": true}), 40);
        view(
            vec![
                message("system", "Be brief.", 0),
                message("user", "Can I get a refund?", 10),
                message("assistant", "Let me check.", 15),
                message("user", "Order 42.", 25),
                message("assistant", "Yes: within 30 days, with the receipt.", 50),
            ],
            vec![search, lookup, book],
        )
    }

    fn endpoint(context_tokens: u64) -> EndpointConfig {
        toml::from_str(&format!(
            "kind = \"openai\"\nmodel = \"m\"\nmax_output_tokens = 100\ncontext_tokens = {context_tokens}"
        ))
        .unwrap()
    }

    fn example(tag: &str, adjudicated: bool) -> Example {
        Example {
            trace: format!("## The user's request\nexample {tag}\n"),
            answers: vec![ExampleAnswer {
                key: "tone".into(),
                value: "2".into(),
                justification: Some(format!("flat in {tag}")),
            }],
            adjudicated,
        }
    }

    #[test]
    fn the_trace_has_its_sections_in_order() {
        let rendered = render_trace(&trace(), 10_000);
        assert_eq!(rendered.cut_chars, 0);
        let text = &rendered.text;
        let at = |needle: &str| {
            text.find(needle)
                .unwrap_or_else(|| panic!("{needle:?} missing from\n{text}"))
        };
        let order = [
            "## The user's request\n[1] Can I get a refund?\n[2] Order 42.\n",
            "## Retrieved context\n[1] (search_docs) Refunds within 30 days.\n[2] (search_docs) Keep the receipt.\n",
            "## Tool calls\n[1] search_docs\n  arguments: {\"query\":\"refund window\"}\n  result: the documents [1] to [2] above\n",
            "[2] lookup_order\n  arguments: {\"id\":42}\n  error: order not found\n",
            "[3] book\n  arguments: {\"day\":\"mañana\"}\n  result: {\"ok\":true}\n",
            "## The assistant's answer\nEarlier reply [1]:\nLet me check.\nFinal answer:\nYes: within 30 days, with the receipt.\n",
        ];
        let places: Vec<usize> = order.iter().map(|s| at(s)).collect();
        assert!(places.windows(2).all(|w| w[0] < w[1]), "{text}");
        assert!(!text.contains("Be brief."));
        let mut one = trace();
        one.tool_calls[0].documents.truncate(1);
        let text = render_trace(&one, 10_000).text;
        assert!(
            text.contains("  result: the document [1] above\n"),
            "{text}"
        );
        let empty = render_trace(&view(Vec::new(), Vec::new()), 10_000).text;
        assert!(empty.contains("## Retrieved context\n(none)"), "{empty}");
        assert!(empty.ends_with("(no answer)\n"), "{empty}");
    }

    #[test]
    fn a_long_trace_keeps_the_question_and_answer_and_cuts_the_longest_middle_first() {
        let mut long = trace();
        long.tool_calls[0].documents[0] = "d".repeat(5000);
        long.tool_calls[2].result = Some(json!("r".repeat(3000)));
        long.messages[3].text = "ü".repeat(400);
        let whole = render_trace(&long, usize::MAX).text.chars().count();
        let rendered = render_trace(&long, 2000);
        let text = &rendered.text;
        assert!(text.chars().count() <= 2000, "{}", text.chars().count());
        assert!(text.contains("[1] Can I get a refund?\n"));
        assert!(text.contains("Final answer:\nYes: within 30 days, with the receipt.\n"));
        assert!(
            text.contains("Keep the receipt."),
            "the short document stays whole"
        );
        assert!(
            text.contains(&"ü".repeat(400)),
            "the middle class is not needed"
        );
        let markers: Vec<&str> = text
            .match_indices("characters cut …]")
            .map(|(_, m)| m)
            .collect();
        assert_eq!(markers.len(), 2, "{text}");
        let cuts: Vec<usize> = text
            .match_indices("[… ")
            .map(|(i, _)| {
                let rest = &text[i + "[… ".len()..];
                rest[..rest.find(' ').unwrap()].parse().unwrap()
            })
            .collect();
        assert_eq!(cuts.iter().sum::<usize>(), rendered.cut_chars);
        let markers_len: usize = cuts.iter().map(|&n| marker(n).chars().count()).sum();
        assert_eq!(
            whole - rendered.cut_chars + markers_len,
            text.chars().count()
        );
        assert!(
            text.contains("dddd") && text.contains("rrrr"),
            "heads are kept"
        );
    }

    #[test]
    fn the_question_and_answer_are_cut_only_when_nothing_else_is_left() {
        let mut long = trace();
        let last = long.messages.len() - 1;
        long.messages[last].text = format!("Start {} end", "a".repeat(5000));
        let rendered = render_trace(&long, 1500);
        assert!(rendered.text.chars().count() <= 1500);
        assert!(rendered.text.contains("Final answer:\nStart aaa"));
        assert!(
            rendered.text.contains("aaa end\n"),
            "the answer's end is kept too"
        );
        assert!(rendered.cut_chars > 3500);
    }

    #[test]
    fn the_system_message_states_the_task_rubric_and_anchors() {
        let built = build(
            &rubric(),
            &trace(),
            "",
            &[],
            &PromptConfig::default(),
            &endpoint(100_000),
        )
        .unwrap();
        assert_eq!(built.messages.len(), 2);
        let system = &built.messages[0];
        assert_eq!(system.role, "system");
        for needle in [
            "impartial expert",
            "Answer every criterion",
            "first cite the evidence",
            "JSON only",
            "{\"criteria\": {",
            "# Rubric: Advice quality",
            "## tone: Is the tone right?",
            "Guidance: Look at the tone.",
            "Scale: \"pass\" or \"fail\".",
            "Scale: \"1\" to \"3\", where:\n  1 = Rude\n  2 = Flat\n  3 = Warm and clear",
            "Scale: one of \"answer\", \"refusal\", \"handoff\".",
        ] {
            assert!(system.content.contains(needle), "{needle:?} missing");
        }
        assert!(!system.content.contains("Examples graded"));
        let user = &built.messages[1];
        assert_eq!(user.role, "user");
        assert!(user.content.contains("## The assistant's answer"));
        assert!(!user.content.contains("shortened"));
        assert_eq!(built.schema, verdict::schema(&rubric()));
        assert_eq!(built.schema_name, "verdict");
        assert_eq!(built.cut_chars, 0);
    }

    #[test]
    fn a_variants_instructions_follow_the_built_in_ones() {
        let config = PromptConfig::default();
        let plain = build(&rubric(), &trace(), "", &[], &config, &endpoint(100_000)).unwrap();
        let strict = "Fail any refund promise without the receipt rule.";
        let built = build(
            &rubric(),
            &trace(),
            strict,
            &[],
            &config,
            &endpoint(100_000),
        )
        .unwrap();
        let system = &built.messages[0].content;
        let owner = system.find("# The rubric owner's instructions\n").unwrap();
        assert!(owner > system.find("JSON only").unwrap());
        assert!(owner < system.find("# Rubric:").unwrap());
        assert!(system.contains(strict));
        assert!(!plain.messages[0].content.contains("rubric owner"));
        assert_eq!(
            built.messages[1], plain.messages[1],
            "the trace is the same"
        );
    }

    #[test]
    fn a_cut_trace_says_so_in_the_prompt() {
        let mut long = trace();
        long.tool_calls[0].documents[0] = "d".repeat(30_000);
        let built = build(
            &rubric(),
            &long,
            "",
            &[],
            &PromptConfig::default(),
            &endpoint(100_000),
        )
        .unwrap();
        assert!(built.cut_chars > 6000);
        let sentence = format!(
            "This trace was shortened: {} characters were cut where marked.",
            built.cut_chars
        );
        assert!(built.messages[1].content.contains(&sentence));
        assert!(built.messages[1].content.chars().count() < 24_200);
    }

    #[test]
    fn examples_come_adjudicated_first_with_the_experts_answers() {
        let examples = [example("one", false), example("two", true)];
        let built = build(
            &rubric(),
            &trace(),
            "",
            &examples,
            &PromptConfig::default(),
            &endpoint(100_000),
        )
        .unwrap();
        let system = &built.messages[0].content;
        let two = system.find("example two").unwrap();
        let one = system.find("example one").unwrap();
        assert!(two < one, "the adjudicated example first");
        assert!(system.contains(
            "The experts' answer:\n{\"criteria\":{\"tone\":{\"explanation\":\"flat in two\",\"value\":\"2\"}}}"
        ));
        assert!(system.contains("(The experts disagreed on this one"));
        let long = Example {
            trace: "x".repeat(10_000),
            ..example("three", false)
        };
        let config = PromptConfig {
            max_example_chars: 500,
            ..PromptConfig::default()
        };
        let built = build(
            &rubric(),
            &trace(),
            "",
            &[long],
            &config,
            &endpoint(100_000),
        )
        .unwrap();
        assert!(built.messages[0].content.contains("characters cut …]"));
        assert!(built.messages[0].content.len() < 4000);
    }

    #[test]
    fn examples_are_dropped_last_first_before_the_prompt_does_not_fit() {
        let big = |tag: &str, adjudicated| Example {
            trace: format!("{tag} {}", "y".repeat(2900)),
            ..example(tag, adjudicated)
        };
        let examples = [big("plain", false), big("settled", true)];
        let config = PromptConfig::default();
        let without = build(&rubric(), &trace(), "", &[], &config, &endpoint(100_000)).unwrap();
        let bare = estimate(&without.messages, &without.schema) + 100;
        // Room for one example (about 1000 tokens each), not two.
        let built = build(
            &rubric(),
            &trace(),
            "",
            &examples,
            &config,
            &endpoint(bare + 1500),
        )
        .unwrap();
        let system = &built.messages[0].content;
        assert!(system.contains("settled y") && !system.contains("plain y"));
        let built = build(&rubric(), &trace(), "", &examples, &config, &endpoint(bare)).unwrap();
        assert_eq!(built.messages, without.messages);
        let e = build(
            &rubric(),
            &trace(),
            "",
            &examples,
            &config,
            &endpoint(bare - 1),
        )
        .unwrap_err();
        assert_eq!(
            e,
            PromptError::DoesNotFit {
                needed_tokens: bare,
                context_tokens: bare - 1
            }
        );
        assert!(
            e.to_string().contains("do not fit the model's context"),
            "{e}"
        );
    }

    #[test]
    fn the_token_bound_covers_every_byte() {
        let built = build(
            &rubric(),
            &trace(),
            "",
            &[example("e", true)],
            &PromptConfig::default(),
            &endpoint(100_000),
        )
        .unwrap();
        let bytes: usize = built.messages.iter().map(|m| m.content.len()).sum();
        let schema_bytes = built.schema.to_string().len();
        let bound = input_token_bound(&built.messages, &built.schema);
        assert_eq!(bound, (bytes + schema_bytes + 2 * 16 + 64) as u64);
        assert!(bound >= estimate(&built.messages, &built.schema) * 3);
        let unicode = [ChatMessage::user("ü✓")];
        assert_eq!(input_token_bound(&unicode, &json!({})), 5 + 2 + 16 + 64);
    }
}
