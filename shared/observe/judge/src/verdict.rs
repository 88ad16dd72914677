//! The judge's reply checked against the rubric. The reply is one JSON object,
//! `{"criteria": {"<key>": {"value": <answer>, "explanation": "<why>"}}}`, with every
//! criterion of the rubric and no other; [`schema`] is that shape as a strict JSON schema
//! (for endpoints that enforce one), and [`parse`] checks it whether or not they did.

use agentwire_grading::rubric::{Rubric, Scale};
use agentwire_scoring::record::RecordUsage;
use agentwire_scoring::{ScoreRecord, Source, TraceView};
use serde_json::{Map, Value, json};

/// The longest explanation kept, in characters; a longer one is cut, not refused.
pub const MAX_EXPLANATION: usize = 2000;
/// The most characters of the model's own text an error message quotes.
const MAX_QUOTE: usize = 40;

/// The verdict's shape for `rubric`: every object closed (`additionalProperties: false`),
/// every property required, each value one of its scale's answers.
pub fn schema(rubric: &Rubric) -> Value {
    let properties: Map<String, Value> = rubric
        .criteria
        .iter()
        .map(|c| {
            let answer = json!({
                "type": "object",
                "additionalProperties": false,
                "required": ["explanation", "value"],
                "properties": {
                    "explanation": {"type": "string", "description": "the evidence first, then why"},
                    "value": {"type": "string", "enum": c.scale.values()},
                },
            });
            (c.key.clone(), answer)
        })
        .collect();
    let keys: Vec<&str> = rubric.criteria.iter().map(|c| c.key.as_str()).collect();
    json!({
        "type": "object",
        "additionalProperties": false,
        "required": ["criteria"],
        "properties": {
            "criteria": {
                "type": "object",
                "additionalProperties": false,
                "required": keys,
                "properties": properties,
            },
        },
    })
}

/// The answer to one criterion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CriterionVerdict {
    pub key: String,
    /// One of the criterion's [`Scale::values`].
    pub value: String,
    /// Not blank; at most [`MAX_EXPLANATION`] characters.
    pub explanation: String,
}

/// A checked reply: an answer to every criterion, in the rubric's order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub answers: Vec<CriterionVerdict>,
}

/// Why a reply is not a verdict, naming the place by path (`criteria.tone.value`). It
/// quotes at most a short value of the model's, never the reply.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct VerdictError(pub String);

fn quote(text: &str) -> String {
    if text.chars().count() <= MAX_QUOTE {
        format!("{text:?}")
    } else {
        let head: String = text.chars().take(MAX_QUOTE).collect();
        format!("{head:?}…")
    }
}

/// The outermost `{…}` of `text`: the object inside a fenced block or prose.
fn outermost_object(text: &str) -> Option<&str> {
    let start = text.find('{')?;
    let end = text.rfind('}')?;
    (start < end).then(|| &text[start..=end])
}

/// Checks a reply against `rubric`. Tolerated: a fenced block or prose around the one
/// object; an ordinal point as a number (`3`); pass/fail as `true`/`false`; a long
/// explanation (cut to [`MAX_EXPLANATION`]). Refused: anything else off the shape.
pub fn parse(rubric: &Rubric, text: &str) -> Result<Verdict, VerdictError> {
    let fail = |message: String| Err(VerdictError(message));
    let Some(object) = outermost_object(text) else {
        return fail("the reply has no JSON object".into());
    };
    let reply: Value = match serde_json::from_str(object) {
        Ok(value) => value,
        Err(e) => {
            return fail(format!(
                "the reply is not valid JSON (line {}, column {})",
                e.line(),
                e.column()
            ));
        }
    };
    let Some(criteria) = reply.get("criteria") else {
        return fail("criteria: missing".into());
    };
    let Some(criteria) = criteria.as_object() else {
        return fail("criteria: not an object".into());
    };
    if let Some(unknown) = criteria.keys().find(|k| rubric.criterion(k).is_none()) {
        return fail(format!(
            "criteria.{}: not a criterion of rubric {}",
            quote(unknown),
            rubric.name
        ));
    }
    let mut answers = Vec::with_capacity(rubric.criteria.len());
    for criterion in &rubric.criteria {
        let key = &criterion.key;
        let Some(answer) = criteria.get(key) else {
            return fail(format!("criteria.{key}: missing"));
        };
        let Some(answer) = answer.as_object() else {
            return fail(format!("criteria.{key}: not an object"));
        };
        let allowed = criterion.scale.values();
        let value = match (answer.get("value"), &criterion.scale) {
            (None | Some(Value::Null), _) => {
                return fail(format!("criteria.{key}.value: missing"));
            }
            (Some(Value::String(s)), _) => s.trim().to_owned(),
            (Some(Value::Number(n)), Scale::Ordinal { .. }) => match n.as_f64() {
                Some(f) if f.fract() == 0.0 && f.abs() < 1e15 => format!("{}", f as i64),
                _ => n.to_string(),
            },
            (Some(Value::Bool(b)), Scale::PassFail) => if *b { "pass" } else { "fail" }.into(),
            (Some(other), _) => {
                let shown = match other {
                    Value::Array(_) => "an array".to_owned(),
                    Value::Object(_) => "an object".to_owned(),
                    short => quote(&short.to_string()),
                };
                return fail(format!(
                    "criteria.{key}.value: {shown} is not one of {}",
                    allowed.join(", ")
                ));
            }
        };
        if criterion.scale.code(&value).is_none() {
            return fail(format!(
                "criteria.{key}.value: {} is not one of {}",
                quote(&value),
                allowed.join(", ")
            ));
        }
        let explanation = match answer.get("explanation") {
            None | Some(Value::Null) => {
                return fail(format!("criteria.{key}.explanation: missing"));
            }
            Some(Value::String(s)) if s.trim().is_empty() => {
                return fail(format!("criteria.{key}.explanation: blank"));
            }
            Some(Value::String(s)) => s.trim().chars().take(MAX_EXPLANATION).collect(),
            Some(_) => return fail(format!("criteria.{key}.explanation: not a string")),
        };
        answers.push(CriterionVerdict {
            key: key.clone(),
            value,
            explanation,
        });
    }
    Ok(Verdict { answers })
}

/// The verdict as score records, one a criterion, named `<rubric>.<criterion>`: source
/// judge, the answer as label, and its place on the scale as the value, mapped onto [0, 1]
/// as people's grades are (`Grade::to_score_records`: fail 0, pass 1; ordinal points
/// evenly from 0 to 1; a categorical label's index). Every record carries the call's
/// `usage` (one call answers them all).
pub fn to_records(
    verdict: &Verdict,
    rubric: &Rubric,
    view: &TraceView,
    scorer_version: &str,
    usage: Option<RecordUsage>,
    scored_at_ms: i64,
) -> Vec<ScoreRecord> {
    verdict
        .answers
        .iter()
        .filter_map(|answer| {
            let criterion = rubric.criterion(&answer.key)?;
            let code = criterion.scale.code(&answer.value)?;
            let value = match &criterion.scale {
                Scale::Ordinal { anchors } if anchors.len() > 1 => {
                    (code - 1.0) / (anchors.len() as f64 - 1.0)
                }
                _ => code,
            };
            Some(ScoreRecord {
                trace_id: view.trace_id.clone(),
                span_id: None,
                session: view.session.clone(),
                tenant: view.tenant.clone(),
                name: format!("{}.{}", rubric.name, criterion.key),
                value,
                label: Some(answer.value.clone()),
                source: Source::Judge,
                explanation: Some(answer.explanation.clone()),
                evidence: Vec::new(),
                scorer: "judge".into(),
                scorer_version: scorer_version.to_owned(),
                trace_digest: view.digest.clone(),
                scored_at_ms,
                usage,
            })
        })
        .collect()
}

#[cfg(test)]
pub(crate) mod tests {
    use agentwire_grading::rubric::Criterion;

    use super::*;
    use crate::redact::tests::{message, view};

    fn criterion(key: &str, scale: Scale) -> Criterion {
        Criterion {
            key: key.into(),
            title: format!("Is the {key} right?"),
            guidance: format!("Look at the {key}."),
            scale,
            justification_required: true,
            scorers: Vec::new(),
        }
    }

    /// `advice` v2: `sound` pass/fail, `tone` 1 to 3, `kind` one of three labels.
    pub(crate) fn rubric() -> Rubric {
        Rubric {
            name: "advice".into(),
            version: 2,
            title: "Advice quality".into(),
            criteria: vec![
                criterion("sound", Scale::PassFail),
                criterion(
                    "tone",
                    Scale::Ordinal {
                        anchors: vec!["Rude".into(), "Flat".into(), "Warm and clear".into()],
                    },
                ),
                criterion(
                    "kind",
                    Scale::Categorical {
                        labels: vec!["answer".into(), "refusal".into(), "handoff".into()],
                    },
                ),
            ],
        }
    }

    const GOOD: &str = r#"{"criteria": {
        "sound": {"value": "pass", "explanation": "Cites the refund policy."},
        "tone": {"value": "3", "explanation": "Polite."},
        "kind": {"value": "answer", "explanation": "Answers the question."}
    }}"#;

    fn values(verdict: &Verdict) -> Vec<(&str, &str)> {
        verdict
            .answers
            .iter()
            .map(|a| (a.key.as_str(), a.value.as_str()))
            .collect()
    }

    fn error(text: &str) -> String {
        parse(&rubric(), text).unwrap_err().0
    }

    #[test]
    fn a_plain_reply_parses_in_rubric_order() {
        let reordered = r#"{"criteria": {
            "kind": {"value": "refusal", "explanation": "Declines."},
            "tone": {"value": "1", "explanation": "  Curt.  "},
            "sound": {"value": "fail", "explanation": "No policy."}}}"#;
        let verdict = parse(&rubric(), reordered).unwrap();
        assert_eq!(
            values(&verdict),
            [("sound", "fail"), ("tone", "1"), ("kind", "refusal")]
        );
        assert_eq!(verdict.answers[1].explanation, "Curt.");
    }

    #[test]
    fn fences_prose_numbers_and_booleans_are_tolerated() {
        let fenced = format!("Here is my verdict:\n```json\n{GOOD}\n```\nThanks!");
        assert_eq!(
            parse(&rubric(), &fenced).unwrap(),
            parse(&rubric(), GOOD).unwrap()
        );
        let loose = r#"{"criteria": {
            "sound": {"value": true, "explanation": "ok"},
            "tone": {"value": 2, "explanation": "ok"},
            "kind": {"value": "handoff", "explanation": "ok"}}}"#;
        let verdict = parse(&rubric(), loose).unwrap();
        assert_eq!(
            values(&verdict),
            [("sound", "pass"), ("tone", "2"), ("kind", "handoff")]
        );
        let other = loose.replace("true", "false").replace(": 2,", ": 3.0,");
        let verdict = parse(&rubric(), &other).unwrap();
        assert_eq!(values(&verdict)[..2], [("sound", "fail"), ("tone", "3")]);
    }

    #[test]
    fn long_explanations_are_cut_not_refused() {
        let long = "é".repeat(MAX_EXPLANATION + 50);
        let text = GOOD.replace("Polite.", &long);
        let verdict = parse(&rubric(), &text).unwrap();
        assert_eq!(
            verdict.answers[1].explanation.chars().count(),
            MAX_EXPLANATION
        );
    }

    #[test]
    fn each_refusal_names_its_place() {
        assert_eq!(
            error("I cannot grade this."),
            "the reply has no JSON object"
        );
        assert!(error("{criteria: }").starts_with("the reply is not valid JSON"));
        assert_eq!(error(r#"{"verdict": {}}"#), "criteria: missing");
        assert_eq!(error(r#"{"criteria": []}"#), "criteria: not an object");
        assert_eq!(
            error(&GOOD.replace("\"tone\"", "\"style\"")),
            r#"criteria."style": not a criterion of rubric advice"#
        );
        let without_kind = r#"{"criteria": {
            "sound": {"value": "pass", "explanation": "x"},
            "tone": {"value": "3", "explanation": "x"}}}"#;
        assert_eq!(error(without_kind), "criteria.kind: missing");
        assert_eq!(
            error(&GOOD.replace(r#""value": "3""#, r#""value": "great""#)),
            r#"criteria.tone.value: "great" is not one of 1, 2, 3"#
        );
        assert_eq!(
            error(&GOOD.replace(r#""value": "3""#, r#""value": 4"#)),
            r#"criteria.tone.value: "4" is not one of 1, 2, 3"#
        );
        assert_eq!(
            error(&GOOD.replace(r#""value": "pass""#, r#""value": 1"#)),
            r#"criteria.sound.value: "1" is not one of fail, pass"#
        );
        assert_eq!(
            error(&GOOD.replace(r#""value": "answer""#, r#""value": true"#)),
            r#"criteria.kind.value: "true" is not one of answer, refusal, handoff"#
        );
        assert_eq!(
            error(&GOOD.replace(r#""value": "answer", "#, "")),
            "criteria.kind.value: missing"
        );
        assert_eq!(
            error(&GOOD.replace("Polite.", "  ")),
            "criteria.tone.explanation: blank"
        );
        assert_eq!(
            error(&GOOD.replace(r#", "explanation": "Polite.""#, "")),
            "criteria.tone.explanation: missing"
        );
        let long = "x".repeat(500);
        let message = error(&GOOD.replace(r#""value": "3""#, &format!("\"value\": \"{long}\"")));
        assert!(message.len() < 120, "{message}");
    }

    #[test]
    fn the_schema_is_strict_and_lists_each_scale() {
        let schema = schema(&rubric());
        assert_eq!(schema["additionalProperties"], false);
        assert_eq!(schema["required"], json!(["criteria"]));
        let criteria = &schema["properties"]["criteria"];
        assert_eq!(criteria["additionalProperties"], false);
        assert_eq!(criteria["required"], json!(["sound", "tone", "kind"]));
        let tone = &criteria["properties"]["tone"];
        assert_eq!(tone["additionalProperties"], false);
        assert_eq!(tone["required"], json!(["explanation", "value"]));
        assert_eq!(tone["properties"]["value"]["enum"], json!(["1", "2", "3"]));
        assert_eq!(
            criteria["properties"]["sound"]["properties"]["value"]["enum"],
            json!(["fail", "pass"])
        );
        assert_eq!(
            criteria["properties"]["kind"]["properties"]["value"]["enum"],
            json!(["answer", "refusal", "handoff"])
        );
    }

    #[test]
    fn records_map_each_scale_as_grades_do() {
        let trace = view(vec![message("user", "hi", 0)], Vec::new());
        let usage = RecordUsage {
            input_tokens: 900,
            output_tokens: 80,
        };
        let verdict = parse(
            &rubric(),
            &GOOD
                .replace(r#""value": "3""#, r#""value": "2""#)
                .replace("answer\"", "handoff\""),
        )
        .unwrap();
        let records = to_records(
            &verdict,
            &rubric(),
            &trace,
            "gpt-4o-mini/judge-1",
            Some(usage),
            7,
        );
        let got: Vec<(&str, f64, &str)> = records
            .iter()
            .map(|r| (r.name.as_str(), r.value, r.label.as_deref().unwrap()))
            .collect();
        assert_eq!(
            got,
            [
                ("advice.sound", 1.0, "pass"),
                ("advice.tone", 0.5, "2"),
                ("advice.kind", 2.0, "handoff")
            ]
        );
        let r = &records[0];
        assert_eq!(r.source, Source::Judge);
        assert_eq!(
            (r.scorer.as_str(), r.scorer_version.as_str()),
            ("judge", "gpt-4o-mini/judge-1")
        );
        assert_eq!(r.explanation.as_deref(), Some("Cites the refund policy."));
        assert_eq!(
            (
                r.trace_digest.as_str(),
                r.tenant.as_str(),
                r.session.as_str()
            ),
            ("d1", "acme", "s-1")
        );
        assert_eq!(r.trace_id, trace.trace_id);
        assert_eq!(r.scored_at_ms, 7);
        assert_eq!(
            r.usage,
            Some(RecordUsage {
                input_tokens: 900,
                output_tokens: 80
            })
        );
        let fail = parse(
            &rubric(),
            &GOOD
                .replace("\"pass\"", "\"fail\"")
                .replace("\"3\"", "\"1\""),
        )
        .unwrap();
        let records = to_records(&fail, &rubric(), &trace, "v", None, 0);
        assert_eq!((records[0].value, records[1].value), (0.0, 0.0));
        assert_eq!(records[2].value, 0.0);
        assert_eq!(records[0].usage, None);
    }
}
