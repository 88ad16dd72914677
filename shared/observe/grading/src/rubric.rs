//! Rubrics: what a grader answers about a trace. Named and versioned; a version, once
//! stored, never changes (the store refuses a different body under the same version), so
//! every grade can be read against exactly the rubric it was given under.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use crate::store::GradingError;

/// The most criteria one rubric has.
pub const MAX_CRITERIA: usize = 20;
/// The most points of an ordinal scale and labels of a categorical one.
pub const MAX_POINTS: usize = 10;
/// The longest name, key or label, in bytes.
pub const MAX_NAME: usize = 64;
/// The longest title, guidance or anchor text, in bytes.
pub const MAX_TEXT: usize = 4096;

/// A rubric version: its criteria, in the order the form shows them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rubric {
    /// Letters, digits, `-` and `_`.
    pub name: String,
    /// From 1, one more for every change.
    pub version: u32,
    #[serde(default)]
    pub title: String,
    pub criteria: Vec<Criterion>,
}

/// A rubric version, as queues and grades name it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct RubricRef {
    pub name: String,
    pub version: u32,
}

/// One question of a rubric.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Criterion {
    /// The criterion's identity within the rubric (letters, digits, `-`, `_`).
    pub key: String,
    pub title: String,
    /// What a grader should look for, shown beside the form.
    #[serde(default)]
    pub guidance: String,
    pub scale: Scale,
    /// Whether an answer needs a written justification.
    #[serde(default)]
    pub justification_required: bool,
    /// Automated scorers that answer the same question, compared with the graders as one
    /// more grader.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub scorers: Vec<ScorerLink>,
}

/// How a scorer's record maps onto a criterion's scale: pass/fail is `value >= threshold`;
/// an ordinal scale of `k` points maps `value` in [0, 1] linearly onto 1..=k, rounded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScorerLink {
    /// The score record's name (`groundedness`, `tool_use`, `rules.no_refunds`, …).
    pub name: String,
    #[serde(default = "half")]
    pub threshold: f64,
}

fn half() -> f64 {
    0.5
}

/// The answers a criterion allows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Scale {
    /// `pass` or `fail`.
    PassFail,
    /// `1` to `anchors.len()`; `anchors[i]` describes the point `i + 1`.
    Ordinal { anchors: Vec<String> },
    /// One of `labels`, unordered.
    Categorical { labels: Vec<String> },
}

impl Scale {
    /// Whether agreement on this scale is ordinal (distances count) or nominal.
    pub fn is_ordinal(&self) -> bool {
        matches!(self, Scale::Ordinal { .. })
    }

    /// The level the agreement statistics read this scale at.
    pub fn level(&self) -> agentwire_agreement::Scale {
        if self.is_ordinal() {
            agentwire_agreement::Scale::Ordinal
        } else {
            agentwire_agreement::Scale::Nominal
        }
    }

    /// An answer as the agreement statistics read it: ordinal points as numbers, labels
    /// (pass/fail, categories) as text; `None` for a value off the scale.
    pub fn agreement_value(&self, value: &str) -> Option<agentwire_agreement::Value> {
        let code = self.code(value)?;
        Some(if self.is_ordinal() {
            agentwire_agreement::Value::Number(code)
        } else {
            agentwire_agreement::Value::Text(value.to_owned())
        })
    }

    /// The answers allowed, in scale order: what the form offers and the statistics code.
    pub fn values(&self) -> Vec<String> {
        match self {
            Scale::PassFail => vec!["fail".into(), "pass".into()],
            Scale::Ordinal { anchors } => (1..=anchors.len()).map(|p| p.to_string()).collect(),
            Scale::Categorical { labels } => labels.clone(),
        }
    }

    /// The answer's position on the scale (fail 0, pass 1; ordinal points as themselves;
    /// a label's index), or `None` when the scale does not allow it.
    pub fn code(&self, value: &str) -> Option<f64> {
        match self {
            Scale::PassFail => match value {
                "fail" => Some(0.0),
                "pass" => Some(1.0),
                _ => None,
            },
            Scale::Ordinal { anchors } => value
                .parse::<usize>()
                .ok()
                .filter(|p| (1..=anchors.len()).contains(p) && *value == p.to_string())
                .map(|p| p as f64),
            Scale::Categorical { labels } => {
                labels.iter().position(|l| l == value).map(|i| i as f64)
            }
        }
    }

    /// A scorer's value (in [0, 1]) as an answer on this scale; categorical scales have
    /// no mapping.
    pub fn from_score(&self, value: f64, threshold: f64) -> Option<String> {
        if !value.is_finite() {
            return None;
        }
        match self {
            Scale::PassFail => Some(if value >= threshold { "pass" } else { "fail" }.into()),
            Scale::Ordinal { anchors } => {
                let k = anchors.len() as f64;
                let point = (1.0 + value.clamp(0.0, 1.0) * (k - 1.0)).round();
                Some((point as usize).to_string())
            }
            Scale::Categorical { .. } => None,
        }
    }
}

/// Whether `name` is a valid rubric, queue, criterion or grader name.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
}

fn invalid(field: impl Into<String>, message: impl Into<String>) -> GradingError {
    GradingError::Invalid {
        field: field.into(),
        message: message.into(),
    }
}

impl Rubric {
    /// This version's reference.
    pub fn reference(&self) -> RubricRef {
        RubricRef {
            name: self.name.clone(),
            version: self.version,
        }
    }

    /// The criterion with `key`.
    pub fn criterion(&self, key: &str) -> Option<&Criterion> {
        self.criteria.iter().find(|c| c.key == key)
    }

    /// Checks the definition: names, sizes, scales with at least two answers, unique keys
    /// and labels, thresholds in [0, 1].
    pub fn validate(&self) -> Result<(), GradingError> {
        if !valid_name(&self.name) {
            return Err(invalid(
                "name",
                format!(
                    "{:?} is not a rubric name: 1 to {MAX_NAME} letters, digits, '-', '_' or '.'",
                    self.name
                ),
            ));
        }
        if self.version == 0 {
            return Err(invalid("version", "versions start at 1"));
        }
        if self.title.len() > MAX_TEXT {
            return Err(invalid("title", format!("longer than {MAX_TEXT} bytes")));
        }
        if self.criteria.is_empty() || self.criteria.len() > MAX_CRITERIA {
            return Err(invalid(
                "criteria",
                format!("a rubric has 1 to {MAX_CRITERIA} criteria"),
            ));
        }
        let mut keys = BTreeSet::new();
        for (i, c) in self.criteria.iter().enumerate() {
            let field = |f: &str| format!("criteria[{i}].{f}");
            if !valid_name(&c.key) {
                return Err(invalid(
                    field("key"),
                    format!("{:?} is not a criterion key", c.key),
                ));
            }
            if !keys.insert(c.key.as_str()) {
                return Err(invalid(field("key"), format!("{:?} is used twice", c.key)));
            }
            if c.title.is_empty() || c.title.len() > MAX_TEXT {
                return Err(invalid(field("title"), format!("1 to {MAX_TEXT} bytes")));
            }
            if c.guidance.len() > MAX_TEXT {
                return Err(invalid(
                    field("guidance"),
                    format!("longer than {MAX_TEXT} bytes"),
                ));
            }
            let texts: &[String] = match &c.scale {
                Scale::PassFail => &[],
                Scale::Ordinal { anchors } => anchors,
                Scale::Categorical { labels } => labels,
            };
            if !matches!(c.scale, Scale::PassFail) && !(2..=MAX_POINTS).contains(&texts.len()) {
                return Err(invalid(
                    field("scale"),
                    format!("a scale has 2 to {MAX_POINTS} points or labels"),
                ));
            }
            if let Scale::Categorical { labels } = &c.scale {
                let unique: BTreeSet<_> = labels.iter().collect();
                if unique.len() != labels.len() || labels.iter().any(|l| !valid_name(l)) {
                    return Err(invalid(
                        field("scale.labels"),
                        "labels are distinct names (letters, digits, '-', '_', '.')",
                    ));
                }
            }
            if texts.iter().any(|t| t.len() > MAX_TEXT) {
                return Err(invalid(
                    field("scale"),
                    format!("an anchor is longer than {MAX_TEXT} bytes"),
                ));
            }
            for (j, link) in c.scorers.iter().enumerate() {
                if link.name.is_empty() || link.name.len() > MAX_NAME {
                    return Err(invalid(
                        format!("criteria[{i}].scorers[{j}].name"),
                        "1 to 64 bytes",
                    ));
                }
                if !(0.0..=1.0).contains(&link.threshold) {
                    return Err(invalid(
                        format!("criteria[{i}].scorers[{j}].threshold"),
                        "a threshold is in [0, 1]",
                    ));
                }
                if matches!(c.scale, Scale::Categorical { .. }) {
                    return Err(invalid(
                        format!("criteria[{i}].scorers[{j}]"),
                        "a scorer's value cannot be mapped onto a categorical scale",
                    ));
                }
            }
        }
        Ok(())
    }
}
