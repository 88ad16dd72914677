//! Grades: one grader's answers to one rubric version about one queue item, and drafts,
//! the answers so far, saved as the grader types so a reload loses nothing.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::queue::{Adjudication, QueueSpec, shown};
use crate::rubric::{Rubric, RubricRef};
use crate::store::GradingError;

/// The longest justification, in bytes.
pub const MAX_JUSTIFICATION: usize = 8192;
/// The largest draft, in bytes of JSON.
pub const MAX_DRAFT: usize = 64 * 1024;

/// One criterion's answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Answer {
    /// One of the criterion's scale values (`pass`, `3`, a label).
    pub value: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub justification: Option<String>,
}

/// A submitted grade.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Grade {
    pub queue: String,
    pub trace_id: String,
    pub session: String,
    pub grader: String,
    /// The rubric version the answers are to: the queue's.
    pub rubric: RubricRef,
    /// By criterion key: every criterion of the rubric.
    pub answers: BTreeMap<String, Answer>,
    /// Unix ms.
    pub graded_ms: i64,
}

/// A grader's unfinished answers to one item: whatever the page had, kept verbatim (it
/// need not be valid yet).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Draft {
    pub queue: String,
    pub trace_id: String,
    pub grader: String,
    pub body: serde_json::Value,
    /// Unix ms.
    pub saved_ms: i64,
}

impl Grade {
    /// The grade as score records of source `human`, one per criterion: named
    /// `<rubric>.<criterion>/<grader>` (so graders never replace each other's), the answer
    /// as the label, its position on the scale as the value (fail 0 and pass 1; ordinal
    /// points mapped onto [0, 1]; a categorical label's index), the justification as the
    /// explanation, the grader as the scorer and `<rubric>@<version>` as its version.
    /// Answers to criteria the rubric lacks are skipped (a validated grade has none).
    pub fn to_score_records(
        &self,
        tenant: &str,
        rubric: &crate::Rubric,
        trace_digest: &str,
    ) -> Vec<agentwire_scoring::ScoreRecord> {
        use crate::Scale;
        rubric
            .criteria
            .iter()
            .filter_map(|criterion| {
                let answer = self.answers.get(&criterion.key)?;
                let code = criterion.scale.code(&answer.value)?;
                let value = match &criterion.scale {
                    Scale::Ordinal { anchors } if anchors.len() > 1 => {
                        (code - 1.0) / (anchors.len() as f64 - 1.0)
                    }
                    _ => code,
                };
                Some(agentwire_scoring::ScoreRecord {
                    trace_id: self.trace_id.clone(),
                    span_id: None,
                    session: self.session.clone(),
                    tenant: tenant.to_string(),
                    name: format!("{}.{}/{}", rubric.name, criterion.key, self.grader),
                    value,
                    label: Some(answer.value.clone()),
                    source: agentwire_scoring::Source::Human,
                    explanation: answer.justification.clone(),
                    evidence: Vec::new(),
                    scorer: self.grader.clone(),
                    scorer_version: format!("{}@{}", rubric.name, rubric.version),
                    trace_digest: trace_digest.to_string(),
                    scored_at_ms: self.graded_ms,
                    usage: None,
                })
            })
            .collect()
    }
}

fn invalid(field: impl Into<String>, message: impl Into<String>) -> GradingError {
    GradingError::Invalid {
        field: field.into(),
        message: message.into(),
    }
}

/// Checks answers given to a queue's item against `rubric`, the rubric version the grade
/// names: it must be the queue's version (else `Invalid` on `rubric`: the page was opened
/// on an older version); then no answer to a criterion the rubric lacks, every criterion
/// answered with a value its scale allows, a justification where the criterion requires
/// one (not blank), and none longer than [`MAX_JUSTIFICATION`]. The first problem is
/// returned, in the rubric's order, as `Invalid` naming `answers.<key>[.value|.justification]`
/// and what is allowed.
pub fn check_grade(
    rubric: &Rubric,
    spec: &QueueSpec,
    answers: &BTreeMap<String, Answer>,
) -> Result<(), GradingError> {
    if rubric.reference() != spec.rubric {
        return Err(invalid(
            "rubric",
            format!(
                "stale rubric version: the queue grades with {} version {}",
                spec.rubric.name, spec.rubric.version
            ),
        ));
    }
    let keys = || {
        rubric
            .criteria
            .iter()
            .map(|c| c.key.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    if let Some(unknown) = answers.keys().find(|k| rubric.criterion(k).is_none()) {
        return Err(invalid(
            format!("answers.{}", shown_key(unknown)),
            format!("the rubric has no such criterion; allowed: {}", keys()),
        ));
    }
    for criterion in &rubric.criteria {
        let key = &criterion.key;
        let allowed = criterion.scale.values().join(", ");
        let Some(answer) = answers.get(key) else {
            return Err(invalid(
                format!("answers.{key}"),
                format!("not answered; every criterion needs an answer; allowed: {allowed}"),
            ));
        };
        if criterion.scale.code(&answer.value).is_none() {
            return Err(invalid(
                format!("answers.{key}.value"),
                format!(
                    "{} is not on the scale; allowed: {allowed}",
                    shown(&answer.value)
                ),
            ));
        }
        let justification = answer.justification.as_deref().unwrap_or("");
        if justification.len() > MAX_JUSTIFICATION {
            return Err(invalid(
                format!("answers.{key}.justification"),
                format!(
                    "{} bytes; allowed: at most {MAX_JUSTIFICATION}",
                    justification.len()
                ),
            ));
        }
        if criterion.justification_required && justification.trim().is_empty() {
            return Err(invalid(
                format!("answers.{key}.justification"),
                "required for this criterion: say in a sentence why you chose this answer",
            ));
        }
    }
    Ok(())
}

/// An unknown criterion key as a field path shows it: as given when it is a plain name,
/// else quoted and cut short (it is user input).
fn shown_key(key: &str) -> String {
    if crate::rubric::valid_name(key) {
        key.to_owned()
    } else {
        shown(key)
    }
}

/// The criteria (keys, in the rubric's order) on which the grades of one item disagree
/// beyond what `adjudication` tolerates: on a nominal scale (pass/fail, categorical) any
/// two answers differ; on an ordinal one the spread of the points (max − min) exceeds
/// `adjudication.threshold`. Only grades to this rubric version and answers on its scale
/// count; a criterion with fewer than two such answers has no disagreement.
pub fn disagreement(rubric: &Rubric, grades: &[Grade], adjudication: &Adjudication) -> Vec<String> {
    let reference = rubric.reference();
    rubric
        .criteria
        .iter()
        .filter(|criterion| {
            let codes: Vec<f64> = grades
                .iter()
                .filter(|g| g.rubric == reference)
                .filter_map(|g| criterion.scale.code(&g.answers.get(&criterion.key)?.value))
                .collect();
            let (Some(min), Some(max)) = (
                codes.iter().copied().reduce(f64::min),
                codes.iter().copied().reduce(f64::max),
            ) else {
                return false;
            };
            if criterion.scale.is_ordinal() {
                max - min > adjudication.threshold
            } else {
                max != min
            }
        })
        .map(|criterion| criterion.key.clone())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::queue::DEFAULT_LEASE_MS;
    use crate::rubric::{Criterion, Scale};

    fn rubric(version: u32) -> Rubric {
        let criterion = |key: &str, scale: Scale, justification_required: bool| Criterion {
            key: key.into(),
            title: key.into(),
            guidance: String::new(),
            scale,
            justification_required,
            scorers: Vec::new(),
        };
        Rubric {
            name: "clinical".into(),
            version,
            title: String::new(),
            criteria: vec![
                criterion("safe", Scale::PassFail, true),
                criterion(
                    "accuracy",
                    Scale::Ordinal {
                        anchors: (1..=5).map(|p| p.to_string()).collect(),
                    },
                    false,
                ),
                criterion(
                    "tone",
                    Scale::Categorical {
                        labels: vec!["warm".into(), "neutral".into(), "curt".into()],
                    },
                    false,
                ),
            ],
        }
    }

    fn spec(version: u32) -> QueueSpec {
        QueueSpec {
            name: "q".into(),
            title: String::new(),
            rubric: RubricRef {
                name: "clinical".into(),
                version,
            },
            graders: vec!["ann".into(), "bob".into()],
            per_item: 2,
            shared_share: 0.0,
            blind: false,
            deadline_ms: None,
            lease_ms: DEFAULT_LEASE_MS,
            adjudication: None,
            source: serde_json::Value::Null,
            created_ms: 0,
        }
    }

    fn answer(value: &str, justification: Option<&str>) -> Answer {
        Answer {
            value: value.into(),
            justification: justification.map(Into::into),
        }
    }

    fn answers(safe: &str, accuracy: &str, tone: &str) -> BTreeMap<String, Answer> {
        [
            ("safe", answer(safe, Some("no dosing advice"))),
            ("accuracy", answer(accuracy, None)),
            ("tone", answer(tone, None)),
        ]
        .into_iter()
        .map(|(k, a)| (k.to_owned(), a))
        .collect()
    }

    fn refused(answers: &BTreeMap<String, Answer>) -> String {
        check_grade(&rubric(1), &spec(1), answers)
            .expect_err("refused")
            .to_string()
    }

    #[test]
    fn a_complete_grade_on_the_scales_passes() {
        check_grade(&rubric(1), &spec(1), &answers("pass", "5", "curt")).expect("valid");
        check_grade(&rubric(1), &spec(1), &answers("fail", "1", "warm")).expect("valid");
    }

    #[test]
    fn a_value_off_the_scale_names_the_field_and_the_allowed_values() {
        assert_eq!(
            refused(&answers("pass", "6", "warm")),
            r#"answers.accuracy.value: "6" is not on the scale; allowed: 1, 2, 3, 4, 5"#
        );
        for off in ["0", "03", " 3", "3.0", ""] {
            assert!(
                refused(&answers("pass", off, "warm")).starts_with("answers.accuracy.value:"),
                "{off:?}"
            );
        }
        assert_eq!(
            refused(&answers("PASS", "3", "warm")),
            r#"answers.safe.value: "PASS" is not on the scale; allowed: fail, pass"#
        );
        assert_eq!(
            refused(&answers("pass", "3", "rude")),
            r#"answers.tone.value: "rude" is not on the scale; allowed: warm, neutral, curt"#
        );
    }

    #[test]
    fn every_criterion_is_answered_and_no_other() {
        let mut missing = answers("pass", "3", "warm");
        missing.remove("tone");
        let message = refused(&missing);
        assert!(
            message.starts_with("answers.tone: not answered"),
            "{message}"
        );
        let mut extra = answers("pass", "3", "warm");
        extra.insert("bogus".into(), answer("pass", None));
        assert_eq!(
            refused(&extra),
            "answers.bogus: the rubric has no such criterion; allowed: safe, accuracy, tone"
        );
    }

    #[test]
    fn a_required_justification_is_present_and_not_blank() {
        for blank in [None, Some(""), Some("  \n\t")] {
            let mut given = answers("pass", "3", "warm");
            given.insert("safe".into(), answer("pass", blank));
            let message = refused(&given);
            assert!(
                message.starts_with("answers.safe.justification: required"),
                "{blank:?}: {message}"
            );
        }
        // Not required: none is fine.
        let given = answers("pass", "3", "warm");
        assert_eq!(given["accuracy"].justification, None);
        check_grade(&rubric(1), &spec(1), &given).expect("optional justification");
    }

    #[test]
    fn a_justification_has_a_length_limit() {
        let mut given = answers("pass", "3", "warm");
        given.insert(
            "tone".into(),
            answer("warm", Some(&"x".repeat(MAX_JUSTIFICATION + 1))),
        );
        assert_eq!(
            refused(&given),
            "answers.tone.justification: 8193 bytes; allowed: at most 8192"
        );
        given.insert(
            "tone".into(),
            answer("warm", Some(&"x".repeat(MAX_JUSTIFICATION))),
        );
        check_grade(&rubric(1), &spec(1), &given).expect("at the limit");
    }

    #[test]
    fn a_grade_to_another_rubric_version_is_stale() {
        let err =
            check_grade(&rubric(1), &spec(2), &answers("pass", "3", "warm")).expect_err("stale");
        assert_eq!(
            err,
            GradingError::Invalid {
                field: "rubric".into(),
                message: "stale rubric version: the queue grades with clinical version 2".into()
            }
        );
        let mut other = rubric(2);
        other.name = "legal".into();
        assert!(check_grade(&other, &spec(2), &answers("pass", "3", "warm")).is_err());
    }

    fn graded(grader: &str, version: u32, given: BTreeMap<String, Answer>) -> Grade {
        Grade {
            queue: "q".into(),
            trace_id: "t".into(),
            session: "s".into(),
            grader: grader.into(),
            rubric: RubricRef {
                name: "clinical".into(),
                version,
            },
            answers: given,
            graded_ms: 0,
        }
    }

    fn adjudication(threshold: f64) -> Adjudication {
        Adjudication {
            queue: "adj".into(),
            threshold,
            graders: vec!["dee".into()],
        }
    }

    #[test]
    fn nominal_scales_disagree_when_any_two_answers_differ() {
        let r = rubric(1);
        let same = [
            graded("ann", 1, answers("pass", "3", "warm")),
            graded("bob", 1, answers("pass", "3", "warm")),
            graded("cat", 1, answers("pass", "3", "warm")),
        ];
        assert!(disagreement(&r, &same, &adjudication(0.0)).is_empty());
        let mut split = same.clone();
        split[2] = graded("cat", 1, answers("fail", "3", "curt"));
        // The threshold is for ordinal scales only.
        assert_eq!(
            disagreement(&r, &split, &adjudication(5.0)),
            ["safe", "tone"]
        );
    }

    #[test]
    fn ordinal_scales_disagree_when_the_spread_exceeds_the_threshold() {
        let r = rubric(1);
        let grades = [
            graded("ann", 1, answers("pass", "2", "warm")),
            graded("bob", 1, answers("pass", "3", "warm")),
            graded("cat", 1, answers("pass", "4", "warm")),
        ];
        assert_eq!(disagreement(&r, &grades, &adjudication(1.0)), ["accuracy"]);
        assert!(
            disagreement(&r, &grades, &adjudication(2.0)).is_empty(),
            "2 is not > 2"
        );
        assert_eq!(disagreement(&r, &grades, &adjudication(0.0)), ["accuracy"]);
    }

    #[test]
    fn one_answer_or_other_versions_never_disagree() {
        let r = rubric(1);
        let alone = [graded("ann", 1, answers("pass", "1", "warm"))];
        assert!(disagreement(&r, &alone, &adjudication(0.0)).is_empty());
        // A grade to version 2 means something else: it does not count against version 1.
        let mixed = [
            graded("ann", 1, answers("pass", "1", "warm")),
            graded("bob", 2, answers("fail", "5", "curt")),
        ];
        assert!(disagreement(&r, &mixed, &adjudication(0.0)).is_empty());
        // Nor does an answer off the scale or a missing one.
        let mut partial = answers("pass", "9", "warm");
        partial.remove("tone");
        let odd = [
            graded("ann", 1, answers("pass", "1", "curt")),
            graded("bob", 1, partial),
        ];
        assert!(disagreement(&r, &odd, &adjudication(0.0)).is_empty());
    }
}
