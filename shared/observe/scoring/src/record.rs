//! Score records: one for every verdict on a trace, whoever gave it (code, a judge, a
//! person), and their OpenTelemetry form.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// Who gave a verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    /// A deterministic scorer.
    Code,
    /// A model grading against a rubric.
    Judge,
    /// A person.
    Human,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Code => "code",
            Source::Judge => "judge",
            Source::Human => "human",
        }
    }
}

/// Where in the trace a verdict's reason is: a span, and optionally a character range of
/// its text (Unicode scalar offsets, end exclusive).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Evidence {
    pub span_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end: Option<usize>,
}

impl Evidence {
    /// The whole span.
    pub fn span(span_id: &str) -> Evidence {
        Evidence {
            span_id: span_id.to_owned(),
            start: None,
            end: None,
        }
    }

    /// Characters `start..end` of the span's text.
    pub fn range(span_id: &str, start: usize, end: usize) -> Evidence {
        Evidence {
            span_id: span_id.to_owned(),
            start: Some(start),
            end: Some(end),
        }
    }
}

/// One verdict on one trace (or one span of it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScoreRecord {
    pub trace_id: String,
    /// The span the verdict is about, when it is about one span.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub span_id: Option<String>,
    pub session: String,
    pub tenant: String,
    /// What is measured: `groundedness`, `tool_use`, `rules.<rule>`, ….
    pub name: String,
    /// The measurement. Higher is better, in [0, 1], unless the scorer documents a unit
    /// (milliseconds, tokens, dollars).
    pub value: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    pub source: Source,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub explanation: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub evidence: Vec<Evidence>,
    pub scorer: String,
    pub scorer_version: String,
    /// The [`crate::TraceView::digest`] of the trace as scored: a changed trace is stale.
    pub trace_digest: String,
    /// When the verdict was given, unix milliseconds.
    pub scored_at_ms: i64,
    /// The model tokens the verdict cost (a judge's; one call answers every criterion of a
    /// rubric, so that call's records carry the same figures).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<RecordUsage>,
}

/// Tokens a model call used.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordUsage {
    pub input_tokens: u64,
    pub output_tokens: u64,
}

impl RecordUsage {
    pub fn total(&self) -> u64 {
        self.input_tokens + self.output_tokens
    }
}

impl ScoreRecord {
    /// The record's identity: re-scoring writes a record with the same key, which replaces
    /// this one.
    pub fn key(&self) -> RecordKey {
        RecordKey {
            tenant: self.tenant.clone(),
            trace_id: self.trace_id.clone(),
            source: self.source,
            name: self.name.clone(),
            span_id: self.span_id.clone().unwrap_or_default(),
        }
    }

    /// The verdict as an OpenTelemetry `gen_ai.evaluation.result` event, in OTLP/JSON's
    /// shape: attached to the trace (and span) it grades.
    pub fn to_otel_event(&self) -> Value {
        let mut attributes = vec![
            attribute("gen_ai.evaluation.name", json!({"stringValue": self.name})),
            attribute(
                "gen_ai.evaluation.score.value",
                json!({"doubleValue": self.value}),
            ),
            attribute(
                "agentwire.evaluation.source",
                json!({"stringValue": self.source.as_str()}),
            ),
            attribute(
                "agentwire.evaluation.scorer",
                json!({"stringValue": format!("{}@{}", self.scorer, self.scorer_version)}),
            ),
            attribute(
                "agentwire.trace.digest",
                json!({"stringValue": self.trace_digest}),
            ),
        ];
        if let Some(label) = &self.label {
            attributes.push(attribute(
                "gen_ai.evaluation.score.label",
                json!({"stringValue": label}),
            ));
        }
        if let Some(explanation) = &self.explanation {
            attributes.push(attribute(
                "gen_ai.evaluation.explanation",
                json!({"stringValue": explanation}),
            ));
        }
        if let Some(usage) = &self.usage {
            attributes.push(attribute(
                "gen_ai.usage.input_tokens",
                json!({"intValue": usage.input_tokens.to_string()}),
            ));
            attributes.push(attribute(
                "gen_ai.usage.output_tokens",
                json!({"intValue": usage.output_tokens.to_string()}),
            ));
        }
        let mut event = json!({
            "name": "gen_ai.evaluation.result",
            "timeUnixNano": (self.scored_at_ms.max(0) as u64 * 1_000_000).to_string(),
            "traceId": self.trace_id,
            "attributes": attributes,
        });
        if let Some(span_id) = &self.span_id {
            event["spanId"] = json!(span_id);
        }
        event
    }
}

fn attribute(key: &str, value: Value) -> Value {
    json!({"key": key, "value": value})
}

/// The identity of a [`ScoreRecord`]: tenant, trace, source, name and span.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RecordKey {
    pub tenant: String,
    pub trace_id: String,
    pub source: Source,
    pub name: String,
    /// Empty for a verdict on the whole trace.
    pub span_id: String,
}

/// Whether records of `name` are measurements in their own units (milliseconds, tokens,
/// dollars: lower is better) rather than verdicts in [0, 1] that pass or fail.
pub fn is_measurement(name: &str) -> bool {
    name.starts_with("latency.") || name.starts_with("usage.") || name.starts_with("cost.")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> ScoreRecord {
        ScoreRecord {
            trace_id: "0123456789abcdef0123456789abcdef".into(),
            span_id: Some("0123456789abcdef".into()),
            session: "s-1".into(),
            tenant: "acme".into(),
            name: "groundedness".into(),
            value: 0.25,
            label: Some("ungrounded".into()),
            source: Source::Code,
            explanation: Some("1 unsupported sentence".into()),
            evidence: vec![Evidence::range("0123456789abcdef", 3, 9)],
            scorer: "groundedness".into(),
            scorer_version: "1".into(),
            trace_digest: "ab".into(),
            scored_at_ms: 1_750_000_000_000,
            usage: None,
        }
    }

    #[test]
    fn records_round_trip_as_json_with_lowercase_sources() {
        let record = record();
        let text = serde_json::to_string(&record).unwrap();
        assert!(text.contains(r#""source":"code""#), "{text}");
        assert_eq!(serde_json::from_str::<ScoreRecord>(&text).unwrap(), record);
        let whole = ScoreRecord {
            span_id: None,
            label: None,
            explanation: None,
            evidence: Vec::new(),
            ..record
        };
        let text = serde_json::to_string(&whole).unwrap();
        assert!(
            !text.contains("span_id") && !text.contains("evidence"),
            "{text}"
        );
        assert_eq!(serde_json::from_str::<ScoreRecord>(&text).unwrap(), whole);
    }

    #[test]
    fn the_otel_event_carries_the_evaluation_attributes() {
        let event = record().to_otel_event();
        assert_eq!(event["name"], "gen_ai.evaluation.result");
        assert_eq!(event["spanId"], "0123456789abcdef");
        assert_eq!(event["timeUnixNano"], "1750000000000000000");
        let get = |key: &str| {
            event["attributes"]
                .as_array()
                .unwrap()
                .iter()
                .find(|a| a["key"] == key)
                .map(|a| a["value"].clone())
                .unwrap()
        };
        assert_eq!(get("gen_ai.evaluation.name")["stringValue"], "groundedness");
        assert_eq!(get("gen_ai.evaluation.score.value")["doubleValue"], 0.25);
        assert_eq!(
            get("gen_ai.evaluation.score.label")["stringValue"],
            "ungrounded"
        );
        assert_eq!(
            get("agentwire.evaluation.scorer")["stringValue"],
            "groundedness@1"
        );
    }

    #[test]
    fn the_key_ignores_value_and_time_but_not_the_span() {
        let a = record();
        let b = ScoreRecord {
            value: 1.0,
            scored_at_ms: 0,
            ..record()
        };
        assert_eq!(a.key(), b.key());
        let c = ScoreRecord {
            span_id: None,
            ..record()
        };
        assert_ne!(a.key(), c.key());
    }
}
