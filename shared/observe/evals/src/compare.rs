//! Comparing two runs item by item, and the gate a CI step puts on the comparison.
//!
//! Per measure (every record name either run has, and `answered`): each run's mean with
//! its bootstrap interval, the mean paired difference B − A over the items both have, its
//! interval and the paired permutation test's p-value, and the items that got worse
//! (regressions) or better (improvements) by at least `min_delta` (for latency, tokens and
//! cost, lower is better). Items pair by id.
//!
//! A gate is a list of conditions on run B's figures, each failing the gate when it holds:
//! `--fail-if 'reference.facts.mean < 0.8'` (a statistic of a measure, an operator and a
//! number) and `--fail-if-regressed reference.facts` (any item regressed on it).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::run::{ItemResult, Run, lower_is_better};
use crate::stats::{Interval, mean_interval, paired_p};

/// The smallest change of an item's value that counts as a regression or an improvement.
pub const DEFAULT_MIN_DELTA: f64 = 0.1;

/// One item's value in both runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Change {
    pub item: String,
    pub a: f64,
    pub b: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub a_trace: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub b_trace: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub a_session: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub b_session: Option<String>,
}

/// One run's figures for a measure.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Side {
    pub n: usize,
    #[serde(with = "crate::stats::nan_as_null")]
    pub mean: f64,
    pub ci: Interval,
}

/// One measure, compared.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MeasureComparison {
    pub name: String,
    pub lower_is_better: bool,
    pub a: Side,
    pub b: Side,
    /// Items both runs have a value for.
    pub paired: usize,
    /// Mean of B − A over the paired items, with its bootstrap interval.
    #[serde(with = "crate::stats::nan_as_null")]
    pub delta: f64,
    pub delta_ci: Interval,
    /// Two-sided paired permutation test of B − A.
    pub p: f64,
    pub regressions: Vec<Change>,
    pub improvements: Vec<Change>,
}

/// Two runs compared.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Comparison {
    pub a: String,
    pub b: String,
    pub min_delta: f64,
    pub measures: Vec<MeasureComparison>,
    /// Items only one run has.
    pub only_a: Vec<String>,
    pub only_b: Vec<String>,
}

impl Comparison {
    pub fn measure(&self, name: &str) -> Option<&MeasureComparison> {
        self.measures.iter().find(|m| m.name == name)
    }
}

/// Compares run `a` (the baseline) with run `b` (the candidate).
pub fn compare(
    a: &Run,
    a_results: &[ItemResult],
    b: &Run,
    b_results: &[ItemResult],
    min_delta: f64,
) -> Comparison {
    let index = |results: &[ItemResult]| -> BTreeMap<String, (BTreeMap<String, f64>, ItemResult)> {
        results
            .iter()
            .map(|r| (r.item.clone(), (r.values(), r.clone())))
            .collect()
    };
    let (left, right) = (index(a_results), index(b_results));
    let mut names: Vec<String> = left
        .values()
        .chain(right.values())
        .flat_map(|(values, _)| values.keys().cloned())
        .collect();
    names.sort();
    names.dedup();
    let measures = names
        .iter()
        .map(|name| {
            let side = |items: &BTreeMap<String, (BTreeMap<String, f64>, ItemResult)>| {
                let values: Vec<f64> = items
                    .values()
                    .filter_map(|(v, _)| v.get(name).copied())
                    .collect();
                let (mean, ci) = mean_interval(&values, 1);
                Side {
                    n: values.len(),
                    mean,
                    ci,
                }
            };
            let lower = lower_is_better(name);
            let mut differences = Vec::new();
            let (mut regressions, mut improvements) = (Vec::new(), Vec::new());
            for (item, (values_a, result_a)) in &left {
                let Some((values_b, result_b)) = right.get(item) else {
                    continue;
                };
                let (Some(va), Some(vb)) = (values_a.get(name), values_b.get(name)) else {
                    continue;
                };
                differences.push(vb - va);
                let better = if lower { va - vb } else { vb - va };
                let change = || Change {
                    item: item.clone(),
                    a: *va,
                    b: *vb,
                    a_trace: result_a.trace_id.clone(),
                    b_trace: result_b.trace_id.clone(),
                    a_session: result_a.session.clone(),
                    b_session: result_b.session.clone(),
                };
                // A relative change for unbounded measures (milliseconds, dollars).
                let scale = if lower {
                    va.abs().max(f64::EPSILON)
                } else {
                    1.0
                };
                if better / scale <= -min_delta {
                    regressions.push(change());
                } else if better / scale >= min_delta {
                    improvements.push(change());
                }
            }
            let (delta, delta_ci) = mean_interval(&differences, 2);
            MeasureComparison {
                name: name.clone(),
                lower_is_better: lower,
                a: side(&left),
                b: side(&right),
                paired: differences.len(),
                delta,
                delta_ci,
                p: paired_p(&differences, 3),
                regressions,
                improvements,
            }
        })
        .collect();
    Comparison {
        a: a.spec.id.clone(),
        b: b.spec.id.clone(),
        min_delta,
        measures,
        only_a: left
            .keys()
            .filter(|k| !right.contains_key(*k))
            .cloned()
            .collect(),
        only_b: right
            .keys()
            .filter(|k| !left.contains_key(*k))
            .cloned()
            .collect(),
    }
}

/// A comparison operator of a gate condition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Lt,
    Le,
    Gt,
    Ge,
}

impl Op {
    fn holds(self, left: f64, right: f64) -> bool {
        match self {
            Op::Lt => left < right,
            Op::Le => left <= right,
            Op::Gt => left > right,
            Op::Ge => left >= right,
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Op::Lt => "<",
            Op::Le => "<=",
            Op::Gt => ">",
            Op::Ge => ">=",
        }
    }
}

/// The statistics a condition can name.
pub const STATISTICS: [&str; 8] = [
    "mean",
    "ci_low",
    "ci_high",
    "delta",
    "p",
    "regressions",
    "improvements",
    "n",
];

/// One condition that fails the gate when it holds.
#[derive(Debug, Clone, PartialEq)]
pub enum Condition {
    /// `<measure>.<statistic> <op> <number>`.
    Threshold {
        measure: String,
        statistic: String,
        op: Op,
        value: f64,
    },
    /// Any item regressed on the measure.
    Regressed { measure: String },
}

impl Condition {
    /// Reads `reference.facts.mean < 0.8` (operators `<`, `<=`, `>`, `>=`; statistics in
    /// [`STATISTICS`]).
    pub fn parse(text: &str) -> Result<Condition, String> {
        let ops = [("<=", Op::Le), (">=", Op::Ge), ("<", Op::Lt), (">", Op::Gt)];
        let (at, token, op) = ops
            .iter()
            .filter_map(|(token, op)| text.find(token).map(|at| (at, *token, *op)))
            .min_by_key(|(at, token, _)| (*at, std::cmp::Reverse(token.len())))
            .ok_or_else(|| {
                format!("{text:?} is not a condition: write <measure>.<statistic> < <number>, e.g. 'reference.facts.mean < 0.8'")
            })?;
        let left = text[..at].trim();
        let right = text[at + token.len()..].trim();
        let (measure, statistic) = left.rsplit_once('.').ok_or_else(|| {
            format!(
                "{left:?} names no statistic: write <measure>.<statistic>, e.g. groundedness.mean"
            )
        })?;
        if !STATISTICS.contains(&statistic) {
            return Err(format!(
                "{statistic:?} is not a statistic: use one of {}",
                STATISTICS.join(", ")
            ));
        }
        let value: f64 = right
            .parse()
            .ok()
            .filter(|v: &f64| v.is_finite())
            .ok_or_else(|| format!("{right:?} is not a number"))?;
        Ok(Condition::Threshold {
            measure: measure.to_owned(),
            statistic: statistic.to_owned(),
            op,
            value,
        })
    }
}

/// The figure `statistic` of a compared measure (B's side for mean and interval).
fn statistic(measure: &MeasureComparison, statistic: &str) -> f64 {
    match statistic {
        "mean" => measure.b.mean,
        "ci_low" => measure.b.ci.low,
        "ci_high" => measure.b.ci.high,
        "delta" => measure.delta,
        "p" => measure.p,
        "regressions" => measure.regressions.len() as f64,
        "improvements" => measure.improvements.len() as f64,
        _ => measure.b.n as f64,
    }
}

/// The gate over a comparison: `Err` with a one-line reason naming the first condition
/// that holds (or a measure neither run has), else `Ok`.
pub fn gate(comparison: &Comparison, conditions: &[Condition]) -> Result<(), String> {
    for condition in conditions {
        let name = match condition {
            Condition::Threshold { measure, .. } | Condition::Regressed { measure } => measure,
        };
        let Some(measure) = comparison.measure(name) else {
            return Err(format!(
                "gate: no measure {name:?} in runs {} and {} (they have {})",
                comparison.a,
                comparison.b,
                comparison
                    .measures
                    .iter()
                    .map(|m| m.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        };
        match condition {
            Condition::Threshold {
                statistic: stat,
                op,
                value,
                ..
            } => {
                let figure = statistic(measure, stat);
                if figure.is_nan() || op.holds(figure, *value) {
                    return Err(format!(
                        "gate failed: {name}.{stat} is {figure:.3} in run {} ({name}.{stat} {} {value})",
                        comparison.b,
                        op.as_str()
                    ));
                }
            }
            Condition::Regressed { .. } if !measure.regressions.is_empty() => {
                let items: Vec<&str> = measure
                    .regressions
                    .iter()
                    .map(|c| c.item.as_str())
                    .collect();
                let shown = if items.len() > 8 {
                    format!("{}, and {} more", items[..8].join(", "), items.len() - 8)
                } else {
                    items.join(", ")
                };
                return Err(format!(
                    "gate failed: {name} regressed on {} of {} items ({shown}): mean {:.3} -> {:.3}",
                    items.len(),
                    measure.paired,
                    measure.a.mean,
                    measure.b.mean
                ));
            }
            Condition::Regressed { .. } => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::run::{ItemStatus, Mode, RunSpec, Status};
    use agentwire_scoring::{ScoreRecord, Source};

    fn run(id: &str) -> Run {
        Run {
            spec: RunSpec {
                id: id.into(),
                tenant: "t".into(),
                dataset: "d".into(),
                version: 1,
                mode: Mode::Live,
                pattern: Some("eval-*".into()),
                timeout_ms: 1000,
                concurrency: 1,
                label: None,
                origin: "api".into(),
                created_ms: 0,
            },
            status: Status::Finished,
            items: 0,
            error: None,
            finished_ms: None,
            summary: None,
        }
    }

    fn result(item: &str, facts: f64, latency: f64, status: ItemStatus) -> ItemResult {
        let record = |name: &str, value: f64| ScoreRecord {
            trace_id: format!("trace-{item}"),
            span_id: None,
            session: format!("s-{item}"),
            tenant: "t".into(),
            name: name.into(),
            value,
            label: None,
            source: Source::Code,
            explanation: None,
            evidence: Vec::new(),
            scorer: "x".into(),
            scorer_version: "1".into(),
            trace_digest: "d".into(),
            scored_at_ms: 0,
            usage: None,
        };
        ItemResult {
            item: item.into(),
            status,
            error: None,
            session: Some(format!("s-{item}")),
            trace_id: Some(format!("trace-{item}")),
            trace_key: None,
            latency_ms: None,
            records: vec![
                record("reference.facts", facts),
                record("latency.total_ms", latency),
            ],
            reward: None,
            finished_ms: 0,
        }
    }

    fn twenty(worse: &[usize]) -> Vec<ItemResult> {
        (0..20)
            .map(|i| {
                let bad = worse.contains(&i);
                result(
                    &format!("q{i:02}"),
                    if bad { 0.0 } else { 1.0 },
                    1000.0,
                    ItemStatus::Answered,
                )
            })
            .collect()
    }

    #[test]
    fn regressions_are_exactly_the_items_that_got_worse() {
        let (a, b) = (run("A"), run("B"));
        let comparison = compare(
            &a,
            &twenty(&[]),
            &b,
            &twenty(&[2, 5, 11]),
            DEFAULT_MIN_DELTA,
        );
        let facts = comparison.measure("reference.facts").unwrap();
        let items: Vec<&str> = facts.regressions.iter().map(|c| c.item.as_str()).collect();
        assert_eq!(items, ["q02", "q05", "q11"]);
        assert!(facts.improvements.is_empty());
        assert_eq!((facts.a.mean, facts.b.mean, facts.paired), (1.0, 0.85, 20));
        assert!((facts.delta + 0.15).abs() < 1e-12 && facts.delta_ci.high <= 0.0);
        assert!((facts.p - 0.25).abs() < 1e-12, "3 items: 2/8, {}", facts.p);
        assert_eq!(facts.regressions[0].b_trace.as_deref(), Some("trace-q02"));
        // The other way round they are improvements.
        let back = compare(
            &b,
            &twenty(&[2, 5, 11]),
            &a,
            &twenty(&[]),
            DEFAULT_MIN_DELTA,
        );
        assert_eq!(
            back.measure("reference.facts").unwrap().improvements.len(),
            3
        );
        let answered = comparison.measure("answered").unwrap();
        assert!(answered.regressions.is_empty());
    }

    #[test]
    fn latency_regresses_upwards_and_timeouts_regress_answered() {
        let a = vec![
            result("q1", 1.0, 1000.0, ItemStatus::Answered),
            result("q2", 1.0, 1000.0, ItemStatus::Answered),
        ];
        let b = vec![
            result("q1", 1.0, 1500.0, ItemStatus::Answered),
            result("q2", 1.0, 1050.0, ItemStatus::Timeout),
        ];
        let comparison = compare(&run("A"), &a, &run("B"), &b, DEFAULT_MIN_DELTA);
        let latency = comparison.measure("latency.total_ms").unwrap();
        assert!(latency.lower_is_better);
        assert_eq!(
            latency.regressions.len(),
            1,
            "50 % slower; 5 % is under the delta"
        );
        let answered = comparison.measure("answered").unwrap();
        assert_eq!(answered.regressions[0].item, "q2");
    }

    #[test]
    fn the_gate_names_the_condition_that_failed() {
        let comparison = compare(
            &run("A"),
            &twenty(&[]),
            &run("B"),
            &twenty(&[2, 5]),
            DEFAULT_MIN_DELTA,
        );
        let pass = compare(
            &run("A"),
            &twenty(&[]),
            &run("A2"),
            &twenty(&[]),
            DEFAULT_MIN_DELTA,
        );
        let regressed = Condition::Regressed {
            measure: "reference.facts".into(),
        };
        assert_eq!(gate(&pass, std::slice::from_ref(&regressed)), Ok(()));
        assert_eq!(
            gate(&comparison, std::slice::from_ref(&regressed)).unwrap_err(),
            "gate failed: reference.facts regressed on 2 of 20 items (q02, q05): mean 1.000 -> 0.900"
        );
        let floor = Condition::parse("reference.facts.mean < 0.95").unwrap();
        assert_eq!(
            gate(&comparison, std::slice::from_ref(&floor)).unwrap_err(),
            "gate failed: reference.facts.mean is 0.900 in run B (reference.facts.mean < 0.95)"
        );
        assert_eq!(gate(&pass, &[floor]), Ok(()));
        let unknown = Condition::parse("groundedness.mean < 0.8").unwrap();
        assert!(
            gate(&pass, &[unknown])
                .unwrap_err()
                .contains("no measure \"groundedness\"")
        );
    }

    #[test]
    fn conditions_parse_or_say_what_is_wrong() {
        assert_eq!(
            Condition::parse(" tool_use.expected_actions.ci_low<=0.5 ").unwrap(),
            Condition::Threshold {
                measure: "tool_use.expected_actions".into(),
                statistic: "ci_low".into(),
                op: Op::Le,
                value: 0.5
            }
        );
        for (bad, says) in [
            ("groundedness.mean = 1", "not a condition"),
            ("groundedness < 1", "names no statistic"),
            ("mean < 1", "names no statistic"),
            ("groundedness.mean < high", "not a number"),
            ("groundedness.average > 1", "not a statistic"),
        ] {
            let error = Condition::parse(bad).unwrap_err();
            assert!(error.contains(says), "{bad}: {error}");
        }
    }

    #[test]
    fn a_measure_only_one_run_has_compares_and_round_trips_as_json() {
        let mut b = twenty(&[]);
        for result in &mut b {
            result.records.retain(|r| r.name != "reference.facts");
        }
        let comparison = compare(&run("A"), &twenty(&[]), &run("B"), &b, DEFAULT_MIN_DELTA);
        let facts = comparison.measure("reference.facts").unwrap();
        assert!(facts.b.mean.is_nan() && facts.delta.is_nan() && facts.paired == 0);
        let text = serde_json::to_string(&comparison).unwrap();
        let back: Comparison = serde_json::from_str(&text).unwrap();
        assert!(back.measure("reference.facts").unwrap().b.mean.is_nan());
        // A figure that is not there fails a condition on it, saying so.
        let floor = Condition::parse("reference.facts.mean < 0.5").unwrap();
        assert!(gate(&comparison, &[floor]).unwrap_err().contains("is NaN"));
    }
}
