//! Annotation queues. A queue is a list of traces (items) to grade against one rubric
//! version by a named set of graders. Each item has a fixed number of **slots** (how many
//! graders grade it: `per_item`, or every grader for the items shared for agreement). A
//! grader takes a slot by a **claim**, a lease that expires; while it holds, no other
//! grader can take that slot, and a grader is never given an item they claimed before
//! (each grader sees an item at most once). Submitting a grade fills the slot for good.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use crate::rubric::{MAX_NAME, MAX_TEXT, RubricRef, valid_name};
use crate::store::GradingError;

/// The most graders one queue has.
pub const MAX_GRADERS: usize = 50;
/// The most items one queue has.
pub const MAX_ITEMS: usize = 10_000;
/// How long a claim holds when the queue does not say, in milliseconds (30 minutes).
pub const DEFAULT_LEASE_MS: i64 = 30 * 60 * 1000;

/// A queue's definition, fixed when it is created.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueueSpec {
    /// Letters, digits, `-`, `_` and `.`; unique within the tenant.
    pub name: String,
    #[serde(default)]
    pub title: String,
    pub rubric: RubricRef,
    /// Who may grade it: the `user` of their grader tokens.
    pub graders: Vec<String>,
    /// Graders per item (at most the number of graders).
    pub per_item: u32,
    /// The share of items, in [0, 1], every grader grades (for agreement).
    #[serde(default)]
    pub shared_share: f64,
    /// Whether graders see only the trace: no other grades and no scorer outputs.
    #[serde(default)]
    pub blind: bool,
    /// After this (unix ms) no new claims are given; held claims may still be submitted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deadline_ms: Option<i64>,
    /// How long a claim holds, ms.
    #[serde(default = "default_lease")]
    pub lease_ms: i64,
    /// Where items the graders disagree on go.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub adjudication: Option<Adjudication>,
    /// How the items were chosen (the filter, as given), for the record.
    #[serde(default)]
    pub source: serde_json::Value,
    /// When it was created, unix ms.
    #[serde(default)]
    pub created_ms: i64,
}

fn default_lease() -> i64 {
    DEFAULT_LEASE_MS
}

/// Disagreement beyond `threshold` on any criterion sends the item to `queue` (one slot,
/// graded by its `graders`). Nominal scales disagree when any two answers differ
/// (`threshold` unused); ordinal ones when the spread (max − min) exceeds `threshold`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Adjudication {
    pub queue: String,
    #[serde(default)]
    pub threshold: f64,
    /// Who adjudicates; their own queue is created with the first item sent to it.
    pub graders: Vec<String>,
}

/// One trace in a queue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueItem {
    /// The trace id (32 hex digits): the item's identity within the queue.
    pub trace_id: String,
    /// The trace's session (its archive key's session part).
    pub session: String,
    /// Order in the queue, from 0: claims take items in this order.
    pub position: u32,
    /// How many graders grade it.
    pub slots: u32,
}

/// A grader's hold on one slot of one item.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claim {
    pub queue: String,
    pub item: QueueItem,
    pub grader: String,
    /// Which slot, `0..item.slots`.
    pub slot: u32,
    /// The lease ends here (unix ms) unless renewed by claiming again.
    pub lease_until_ms: i64,
}

/// One slot as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum SlotState {
    /// Held by a grader until the time given (unix ms); free again after it unless the
    /// grader submits or claims again first.
    Held { grader: String, until_ms: i64 },
    /// Graded: filled for good.
    Done { grader: String },
}

/// An item with its slots (free slots are absent), and every grader who ever claimed it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ItemState {
    pub item: QueueItem,
    /// `(slot, state)` for each slot that was ever taken, by slot.
    pub slots: Vec<(u32, SlotState)>,
    /// Graders who claimed it at least once, sorted.
    pub seen_by: Vec<String>,
}

/// The shortest lease a queue may set: one minute.
pub const MIN_LEASE_MS: i64 = 60 * 1000;
/// The longest lease a queue may set: a day.
pub const MAX_LEASE_MS: i64 = 24 * 60 * 60 * 1000;

fn invalid(field: impl Into<String>, message: impl Into<String>) -> GradingError {
    GradingError::Invalid {
        field: field.into(),
        message: message.into(),
    }
}

/// A name as a message shows it: quoted, and cut short when long (it is user input).
pub(crate) fn shown(text: &str) -> String {
    const SHOWN: usize = 64;
    match text.char_indices().nth(SHOWN) {
        Some((end, _)) => format!("{:?}…", &text[..end]),
        None => format!("{text:?}"),
    }
}

/// Checks a list of grader names: 1 to [`MAX_GRADERS`] distinct valid names.
fn check_graders(field: &str, graders: &[String]) -> Result<(), GradingError> {
    if graders.is_empty() || graders.len() > MAX_GRADERS {
        return Err(invalid(
            field,
            format!(
                "{} graders given; allowed: 1 to {MAX_GRADERS}",
                graders.len()
            ),
        ));
    }
    let mut seen = BTreeSet::new();
    for (i, grader) in graders.iter().enumerate() {
        if !valid_name(grader) {
            return Err(invalid(
                format!("{field}[{i}]"),
                format!(
                    "{} is not a grader name; allowed: 1 to {MAX_NAME} letters, digits, '-', \
                     '_' or '.'",
                    shown(grader)
                ),
            ));
        }
        if !seen.insert(grader.as_str()) {
            return Err(invalid(
                format!("{field}[{i}]"),
                format!("{} is listed twice; each grader once", shown(grader)),
            ));
        }
    }
    Ok(())
}

impl QueueSpec {
    /// Checks the definition: a valid name and rubric reference, 1 to [`MAX_GRADERS`]
    /// distinct valid grader names, `1 <= per_item <= graders`, `shared_share` in [0, 1],
    /// a lease of [`MIN_LEASE_MS`] to [`MAX_LEASE_MS`], and an adjudication queue (if any)
    /// with a valid name other than this queue's, its own graders and a threshold >= 0.
    pub fn validate(&self) -> Result<(), GradingError> {
        if !valid_name(&self.name) {
            return Err(invalid(
                "name",
                format!(
                    "{} is not a queue name; allowed: 1 to {MAX_NAME} letters, digits, '-', \
                     '_' or '.'",
                    shown(&self.name)
                ),
            ));
        }
        if self.title.len() > MAX_TEXT {
            return Err(invalid("title", format!("longer than {MAX_TEXT} bytes")));
        }
        if !valid_name(&self.rubric.name) {
            return Err(invalid(
                "rubric.name",
                format!("{} is not a rubric name", shown(&self.rubric.name)),
            ));
        }
        if self.rubric.version == 0 {
            return Err(invalid("rubric.version", "versions start at 1"));
        }
        check_graders("graders", &self.graders)?;
        if self.per_item == 0 || self.per_item as usize > self.graders.len() {
            return Err(invalid(
                "per_item",
                format!(
                    "{} graders per item; allowed: 1 to {} (the number of graders)",
                    self.per_item,
                    self.graders.len()
                ),
            ));
        }
        if !(0.0..=1.0).contains(&self.shared_share) {
            return Err(invalid(
                "shared_share",
                format!(
                    "{} is not a share; allowed: 0 to 1 (0.2 gives a fifth of the items to \
                     every grader)",
                    self.shared_share
                ),
            ));
        }
        if !(MIN_LEASE_MS..=MAX_LEASE_MS).contains(&self.lease_ms) {
            return Err(invalid(
                "lease_ms",
                format!(
                    "{} ms; allowed: {MIN_LEASE_MS} (a minute) to {MAX_LEASE_MS} (a day)",
                    self.lease_ms
                ),
            ));
        }
        if let Some(adjudication) = &self.adjudication {
            if !valid_name(&adjudication.queue) {
                return Err(invalid(
                    "adjudication.queue",
                    format!(
                        "{} is not a queue name; allowed: 1 to {MAX_NAME} letters, digits, \
                         '-', '_' or '.'",
                        shown(&adjudication.queue)
                    ),
                ));
            }
            if adjudication.queue == self.name {
                return Err(invalid(
                    "adjudication.queue",
                    "a queue cannot adjudicate itself; name another queue",
                ));
            }
            if !(adjudication.threshold.is_finite() && adjudication.threshold >= 0.0) {
                return Err(invalid(
                    "adjudication.threshold",
                    format!(
                        "{}; allowed: a number >= 0 (the largest spread of ordinal answers \
                         that is not a disagreement)",
                        adjudication.threshold
                    ),
                ));
            }
            check_graders("adjudication.graders", &adjudication.graders)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> QueueSpec {
        QueueSpec {
            name: "clinical-v1".into(),
            title: "Clinical answers".into(),
            rubric: RubricRef {
                name: "clinical".into(),
                version: 1,
            },
            graders: vec!["ann".into(), "bob".into(), "cat".into()],
            per_item: 2,
            shared_share: 0.2,
            blind: true,
            deadline_ms: None,
            lease_ms: DEFAULT_LEASE_MS,
            adjudication: Some(Adjudication {
                queue: "clinical-v1-adjudication".into(),
                threshold: 1.0,
                graders: vec!["dee".into()],
            }),
            source: serde_json::Value::Null,
            created_ms: 0,
        }
    }

    fn refused(spec: &QueueSpec) -> (String, String) {
        match spec.validate() {
            Err(GradingError::Invalid { field, message }) => (field, message),
            other => panic!("expected Invalid, got {other:?}"),
        }
    }

    #[test]
    fn a_sound_spec_and_the_boundaries_pass() {
        spec().validate().expect("valid");
        let mut edge = spec();
        edge.per_item = 3;
        edge.shared_share = 1.0;
        edge.lease_ms = MIN_LEASE_MS;
        edge.adjudication = None;
        edge.validate()
            .expect("per_item = graders, share 1, a minute's lease");
        edge.shared_share = 0.0;
        edge.lease_ms = MAX_LEASE_MS;
        edge.graders = (0..MAX_GRADERS).map(|g| format!("g{g}")).collect();
        edge.validate()
            .expect("share 0, a day's lease, MAX_GRADERS graders");
    }

    #[test]
    fn each_bad_field_is_refused_by_name_saying_what_is_allowed() {
        type Change = fn(&mut QueueSpec);
        let cases: &[(Change, &str, &str)] = &[
            (|s| s.name = "no spaces".into(), "name", "letters, digits"),
            (|s| s.name = String::new(), "name", "1 to 64"),
            (|s| s.title = "x".repeat(MAX_TEXT + 1), "title", "4096"),
            (|s| s.rubric.name = "a/b".into(), "rubric.name", "\"a/b\""),
            (|s| s.rubric.version = 0, "rubric.version", "start at 1"),
            (|s| s.graders.clear(), "graders", "allowed: 1 to 50"),
            (
                |s| s.graders = (0..=MAX_GRADERS).map(|g| format!("g{g}")).collect(),
                "graders",
                "51 graders given",
            ),
            (|s| s.graders[1] = "b b".into(), "graders[1]", "\"b b\""),
            (|s| s.graders[2] = "ann".into(), "graders[2]", "twice"),
            (|s| s.per_item = 0, "per_item", "allowed: 1 to 3"),
            (|s| s.per_item = 4, "per_item", "allowed: 1 to 3"),
            (|s| s.shared_share = 1.5, "shared_share", "allowed: 0 to 1"),
            (|s| s.shared_share = -0.1, "shared_share", "allowed: 0 to 1"),
            (
                |s| s.shared_share = f64::NAN,
                "shared_share",
                "allowed: 0 to 1",
            ),
            (|s| s.lease_ms = MIN_LEASE_MS - 1, "lease_ms", "a minute"),
            (|s| s.lease_ms = MAX_LEASE_MS + 1, "lease_ms", "a day"),
            (
                |s| s.adjudication.as_mut().unwrap().queue = "clinical-v1".into(),
                "adjudication.queue",
                "itself",
            ),
            (
                |s| s.adjudication.as_mut().unwrap().queue = "x y".into(),
                "adjudication.queue",
                "letters, digits",
            ),
            (
                |s| s.adjudication.as_mut().unwrap().threshold = -1.0,
                "adjudication.threshold",
                ">= 0",
            ),
            (
                |s| s.adjudication.as_mut().unwrap().threshold = f64::INFINITY,
                "adjudication.threshold",
                ">= 0",
            ),
            (
                |s| s.adjudication.as_mut().unwrap().graders.clear(),
                "adjudication.graders",
                "allowed: 1 to 50",
            ),
            (
                |s| s.adjudication.as_mut().unwrap().graders = vec!["dee".into(), "dee".into()],
                "adjudication.graders[1]",
                "twice",
            ),
        ];
        for (change, field, says) in cases {
            let mut bad = spec();
            change(&mut bad);
            let (got_field, message) = refused(&bad);
            assert_eq!(&got_field, field, "{message}");
            assert!(
                message.contains(says),
                "{field}: {message:?} lacks {says:?}"
            );
        }
    }

    #[test]
    fn long_input_is_cut_short_in_messages() {
        let mut bad = spec();
        bad.name = "é".repeat(1000);
        let (_, message) = refused(&bad);
        assert!(message.len() < 300, "{} bytes", message.len());
        assert!(message.contains('…'));
    }
}
