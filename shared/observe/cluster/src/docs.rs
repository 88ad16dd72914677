//! What is clustered of a trace.

use std::collections::BTreeMap;

use agentwire_scoring::{ScoreRecord, TraceView};

use crate::night::{Doc, View};

/// A verdict below this value is a failure (verdicts are in [0, 1], 1 the best; latency,
/// usage and cost are measurements, which never fail by themselves).
pub const FAILING: f64 = 0.5;

/// Whether a record is a failing verdict.
pub fn fails(record: &ScoreRecord) -> bool {
    record.value.is_finite()
        && record.value < FAILING
        && !agentwire_scoring::is_measurement(&record.name)
}

/// Characters of a trace's text clustered: the start of a conversation says what it is
/// about, and a bound keeps one huge trace from weighing on the whole night.
pub const MAX_TEXT_CHARS: usize = 4_000;

fn bounded(mut text: String) -> String {
    if let Some((at, _)) = text.char_indices().nth(MAX_TEXT_CHARS) {
        text.truncate(at);
    }
    text
}

/// The trace as `view` sees it, with its scores; `None` when the view has nothing of it
/// (no user message, or no failing score).
pub fn docs_of(view: View, trace: &TraceView, scores: &[ScoreRecord]) -> Option<Doc> {
    let mut sums: BTreeMap<String, (f64, usize)> = BTreeMap::new();
    for s in scores.iter().filter(|s| s.value.is_finite()) {
        let e = sums.entry(s.name.clone()).or_default();
        e.0 += s.value;
        e.1 += 1;
    }
    let failing: Vec<&ScoreRecord> = scores.iter().filter(|s| fails(s)).collect();
    let text = match view {
        View::Requests => trace
            .messages
            .iter()
            .filter(|m| m.role == "user" && !m.text.trim().is_empty())
            .map(|m| m.text.trim())
            .collect::<Vec<_>>()
            .join("\n"),
        View::Failures => failing
            .iter()
            .map(|s| match &s.explanation {
                Some(why) => format!("{}: {why}", s.name),
                None => s.name.clone(),
            })
            .collect::<Vec<_>>()
            .join("\n"),
    };
    if text.trim().is_empty() {
        return None;
    }
    Some(Doc {
        session: trace.session.clone(),
        trace_id: trace.trace_id.clone(),
        text: bounded(text),
        scores: sums
            .into_iter()
            .map(|(n, (s, c))| (n, s / c as f64))
            .collect(),
        failed: !failing.is_empty(),
    })
}
