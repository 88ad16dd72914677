//! Masking before anything leaves for an endpoint: the rules scorer's PII detectors find
//! what a tenant configured, and every match becomes `[redacted <id>]` in each text of the
//! view a prompt can quote (messages, tool arguments, results and errors, retrieved
//! documents, the root's attributes).

use std::ops::Range;

use agentwire_scoring::TraceView;
use agentwire_scoring::scorers::rules::PiiKind;
use serde_json::Value;

/// A copy of `view` with every match of `kinds` masked, and the number of masks.
pub fn redact(view: &TraceView, kinds: &[PiiKind]) -> (TraceView, usize) {
    let mut out = view.clone();
    if kinds.is_empty() {
        return (out, 0);
    }
    let mut masks = 0;
    let mut text = |s: &mut String| {
        let (masked, n) = redact_text(s, kinds);
        if n > 0 {
            *s = masked;
            masks += n;
        }
    };
    for message in &mut out.messages {
        text(&mut message.text);
    }
    for call in &mut out.tool_calls {
        for value in [&mut call.arguments, &mut call.result]
            .into_iter()
            .flatten()
        {
            walk(value, &mut text);
        }
        if let Some(error) = &mut call.error {
            text(error);
        }
        for document in &mut call.documents {
            text(document);
        }
    }
    for value in out.attributes.values_mut() {
        walk(value, &mut text);
    }
    (out, masks)
}

/// Every string of `value` through `f`: values, and object keys too (a map keyed by email
/// address is rendered into the prompt as it is).
fn walk(value: &mut Value, f: &mut impl FnMut(&mut String)) {
    match value {
        Value::String(s) => f(s),
        Value::Array(items) => items.iter_mut().for_each(|v| walk(v, f)),
        Value::Object(map) => {
            let entries = std::mem::take(map);
            for (mut key, mut item) in entries {
                f(&mut key);
                walk(&mut item, f);
                // Two keys masked alike keep both values: the later under a numbered key.
                let mut unique = key.clone();
                let mut n = 2;
                while map.contains_key(&unique) {
                    unique = format!("{key} ({n})");
                    n += 1;
                }
                map.insert(unique, item);
            }
        }
        Value::Null | Value::Bool(_) | Value::Number(_) => {}
    }
}

/// `text` with every match of `kinds` masked, and the number of masks. Matches of
/// different detectors that overlap are one mask, named by the one that starts first.
pub fn redact_text(text: &str, kinds: &[PiiKind]) -> (String, usize) {
    let found = kinds
        .iter()
        .flat_map(|&kind| kind.detect(text).into_iter().map(move |r| (r, kind.id())))
        .collect();
    mask(text, found)
}

/// `text` with each of the byte ranges `found` replaced by `[redacted <id>]`, overlapping
/// ranges merged into one.
fn mask(text: &str, mut found: Vec<(Range<usize>, &str)>) -> (String, usize) {
    found.retain(|(r, _)| !r.is_empty());
    if found.is_empty() {
        return (text.to_owned(), 0);
    }
    found.sort_by_key(|(r, _)| (r.start, std::cmp::Reverse(r.end)));
    let mut merged: Vec<(Range<usize>, &str)> = Vec::with_capacity(found.len());
    for (range, id) in found {
        match merged.last_mut() {
            Some((last, _)) if range.start < last.end => last.end = last.end.max(range.end),
            _ => merged.push((range, id)),
        }
    }
    let mut out = String::with_capacity(text.len());
    let mut at = 0;
    for (range, id) in &merged {
        out.push_str(&text[at..range.start]);
        out.push_str("[redacted ");
        out.push_str(id);
        out.push(']');
        at = range.end;
    }
    out.push_str(&text[at..]);
    (out, merged.len())
}

#[cfg(test)]
pub(crate) mod tests {
    use agentwire_scoring::view::{Message, ToolCall};
    use serde_json::json;

    use super::*;

    pub(crate) const EMAIL: &str = "ana.lopez@example.com";
    pub(crate) const PHONE: &str = "+44 20 7946 0958";
    pub(crate) const CARD: &str = "4111 1111 1111 1111";
    pub(crate) const IBAN: &str = "DE89 3704 0044 0532 0130 00";

    pub(crate) fn message(role: &str, text: &str, at_ms: u64) -> Message {
        Message {
            span_id: format!("{at_ms:016}"),
            role: role.into(),
            text: text.into(),
            start_ns: at_ms * 1_000_000,
            end_ns: (at_ms + 5) * 1_000_000,
            model: None,
            finish_reason: None,
            error: None,
            incomplete: false,
            annotations: Vec::new(),
        }
    }

    pub(crate) fn tool(name: &str, arguments: Value, result: Value, at_ms: u64) -> ToolCall {
        ToolCall {
            span_id: format!("{at_ms:016}"),
            call_id: None,
            name: name.into(),
            arguments: Some(arguments),
            result: Some(result),
            error: None,
            retrieval: false,
            start_ns: at_ms * 1_000_000,
            end_ns: (at_ms + 5) * 1_000_000,
            documents: Vec::new(),
        }
    }

    /// A trace of these messages and tool calls, tenant `acme`, digest `d1`.
    pub(crate) fn view(messages: Vec<Message>, tool_calls: Vec<ToolCall>) -> TraceView {
        TraceView {
            trace_id: "0123456789abcdef0123456789abcdef".into(),
            tenant: "acme".into(),
            session: "s-1".into(),
            root_span_id: "0000000000000001".into(),
            digest: "d1".into(),
            messages,
            tool_calls,
            events: Vec::new(),
            usage: Vec::new(),
            expected_actions: None,
            dataset_reward: None,
            attributes: serde_json::Map::new(),
            start_ns: 0,
            end_ns: 100_000_000,
        }
    }

    fn pii_view() -> TraceView {
        let mut search = tool(
            "search_docs",
            json!({"query": format!("owner {EMAIL}")}),
            json!([format!("Call {PHONE} for help")]),
            20,
        );
        search.retrieval = true;
        search.documents = vec![format!("Call {PHONE} for help")];
        let mut pay = tool(
            "pay",
            json!({"card": CARD, "amount": 12, "nested": [{"iban": IBAN}], EMAIL: "key kept"}),
            json!({"status": "ok"}),
            30,
        );
        pay.error = Some(format!("declined for {EMAIL}"));
        let mut view = view(
            vec![
                message(
                    "user",
                    &format!("Héllo — my email is {EMAIL}, pay with {CARD} ✓"),
                    10,
                ),
                message(
                    "assistant",
                    &format!("Paid from {IBAN}. Reach us on {PHONE}."),
                    40,
                ),
            ],
            vec![search, pay],
        );
        view.attributes
            .insert("agentwire.user".into(), json!(EMAIL));
        view.attributes.insert("agentwire.count".into(), json!(3));
        view
    }

    #[test]
    fn every_kind_is_masked_in_every_place_and_counted() {
        let original = pii_view();
        let (view, masks) = redact(&original, &PiiKind::ALL);
        assert_eq!(
            view.messages[0].text,
            "Héllo — my email is [redacted email], pay with [redacted card] ✓"
        );
        assert_eq!(
            view.messages[1].text,
            "Paid from [redacted iban]. Reach us on [redacted phone]."
        );
        let search = &view.tool_calls[0];
        assert_eq!(
            search.arguments,
            Some(json!({"query": "owner [redacted email]"}))
        );
        assert_eq!(
            search.result,
            Some(json!(["Call [redacted phone] for help"]))
        );
        assert_eq!(search.documents, ["Call [redacted phone] for help"]);
        let pay = &view.tool_calls[1];
        assert_eq!(
            pay.arguments,
            Some(json!({
                "card": "[redacted card]",
                "amount": 12,
                "nested": [{"iban": "[redacted iban]"}],
                "[redacted email]": "key kept",
            }))
        );
        assert_eq!(pay.error.as_deref(), Some("declined for [redacted email]"));
        assert_eq!(view.attributes["agentwire.user"], "[redacted email]");
        assert_eq!(view.attributes["agentwire.count"], 3);
        assert_eq!(masks, 12);
        // Nothing else moved.
        let unmasked = TraceView {
            messages: original.messages.clone(),
            tool_calls: original.tool_calls.clone(),
            attributes: original.attributes.clone(),
            ..view.clone()
        };
        assert_eq!(unmasked, original);
        assert_eq!(view.tool_calls[1].result, original.tool_calls[1].result);
    }

    #[test]
    fn only_the_configured_kinds_are_masked() {
        let (view, masks) = redact(&pii_view(), &[PiiKind::Phone]);
        assert_eq!(masks, 3);
        assert!(view.messages[0].text.contains(EMAIL));
        assert!(
            view.messages[1]
                .text
                .ends_with("Reach us on [redacted phone].")
        );
        let (same, none) = redact(&pii_view(), &[]);
        assert_eq!((same, none), (pii_view(), 0));
    }

    #[test]
    fn text_without_matches_is_unchanged() {
        let text = "Order 12345 on 2024-01-15 at 10:30, ünïcode ✓";
        assert_eq!(redact_text(text, &PiiKind::ALL), (text.to_owned(), 0));
    }

    #[test]
    fn overlapping_matches_of_different_detectors_are_one_mask() {
        let text = "é 0123456789 ✓";
        let found = vec![(3..9, "card"), (5..13, "phone"), (13..13, "iban")];
        assert_eq!(mask(text, found), ("é [redacted card] ✓".to_owned(), 1));
        let nested = vec![(3..13, "phone"), (5..7, "card")];
        assert_eq!(mask(text, nested), ("é [redacted phone] ✓".to_owned(), 1));
        let apart = vec![(3..5, "card"), (5..7, "phone")];
        assert_eq!(
            mask(text, apart),
            ("é [redacted card][redacted phone]456789 ✓".to_owned(), 2)
        );
    }
}
