//! Calibration: the threshold at which a scorer's value best agrees with the graders'
//! consensus on a pass/fail criterion, checked on items held back from the tuning.
//!
//! Items are split by a hash of their id (the same item is always on the same side, so a
//! re-run tunes on the same items); the threshold is chosen on the tuning side to maximise
//! Cohen's kappa with the consensus, and the verdict (does it help?) is taken on the
//! held-back side only, comparing the current threshold with the tuned one there.

use agentwire_agreement::{GradeTable, Options, Scale, Value, agreement_with};
use serde::Serialize;

/// The share of items held back from the tuning when the caller does not say.
pub const DEFAULT_HOLDOUT: f64 = 0.3;
/// The most thresholds tried: quantiles of the values, beyond which the search only
/// splits hairs between neighbouring items.
const MAX_CANDIDATES: usize = 200;
/// Fewer items than this on either side and no verdict is given.
pub const MIN_ITEMS: usize = 10;

/// One item: the scorer's value and the graders' consensus on it.
#[derive(Debug, Clone, PartialEq)]
pub struct Point {
    pub item: String,
    pub value: f64,
    /// Whether the consensus is `pass`.
    pub pass: bool,
}

/// What a calibration found.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Calibration {
    /// Items the threshold was chosen on, and items it was checked on.
    pub tuned_on: usize,
    pub held_back: usize,
    pub holdout_share: f64,
    pub threshold_before: f64,
    pub threshold_after: f64,
    /// Cohen's kappa with the consensus on the tuning items, at the tuned threshold.
    pub tuning_kappa: Option<f64>,
    /// On the held-back items: kappa and accuracy at the current and at the tuned threshold.
    pub held_back_kappa_before: Option<f64>,
    pub held_back_kappa_after: Option<f64>,
    pub held_back_accuracy_before: f64,
    pub held_back_accuracy_after: f64,
    /// Whether the tuned threshold agrees better on the held-back items.
    pub improves: bool,
}

/// Why no calibration could be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CalibrateError {
    #[error(
        "{0} items with both a consensus and a score on one side of the split; calibration needs at least {MIN_ITEMS} on each"
    )]
    TooFew(usize),
    #[error("the held-back share must be in (0, 1), got {0}")]
    BadHoldout(String),
}

/// Where `id` falls in [0, 1), by the queues' stable hash: the same split on every run
/// and machine.
pub fn stable_fraction(id: &str) -> f64 {
    (crate::plan::stable_hash(id) >> 11) as f64 / (1u64 << 53) as f64
}

/// Cohen's kappa and accuracy of `value >= threshold` against the consensus.
fn agree(points: &[&Point], threshold: f64) -> (Option<f64>, f64) {
    let mut table = GradeTable::new("calibration");
    let mut same = 0usize;
    for p in points {
        let predicted = p.value >= threshold;
        same += usize::from(predicted == p.pass);
        let code = |pass: bool| Value::Number(if pass { 1.0 } else { 0.0 });
        // Values are finite and items distinct (the caller's points), so adds succeed.
        let _ = table.add(p.item.clone(), "consensus", code(p.pass));
        let _ = table.add(p.item.clone(), "scorer", code(predicted));
    }
    let options = Options {
        resamples: 0,
        ..Options::default()
    };
    let kappa = agreement_with(&table, Scale::Nominal, &options)
        .ok()
        .and_then(|a| a.pairwise.first().and_then(|p| p.kappa.value));
    (kappa, same as f64 / points.len().max(1) as f64)
}

/// Tunes the threshold on the items outside the held-back share and checks it on those
/// inside. Points with a non-finite value are ignored; an item given twice counts once.
pub fn calibrate(
    points: &[Point],
    current: f64,
    holdout_share: f64,
) -> Result<Calibration, CalibrateError> {
    if !(holdout_share > 0.0 && holdout_share < 1.0) {
        return Err(CalibrateError::BadHoldout(holdout_share.to_string()));
    }
    let mut seen = std::collections::HashSet::new();
    let points: Vec<&Point> = points
        .iter()
        .filter(|p| p.value.is_finite() && seen.insert(p.item.as_str()))
        .collect();
    let (held, tune): (Vec<&Point>, Vec<&Point>) = points
        .iter()
        .partition(|p| stable_fraction(&p.item) < holdout_share);
    if held.len() < MIN_ITEMS || tune.len() < MIN_ITEMS {
        return Err(CalibrateError::TooFew(held.len().min(tune.len())));
    }

    // Candidates: midpoints between neighbouring distinct values (at most MAX_CANDIDATES
    // of them, evenly spaced in rank), and the current threshold.
    let mut values: Vec<f64> = tune.iter().map(|p| p.value).collect();
    values.sort_by(f64::total_cmp);
    values.dedup();
    let mut candidates = vec![current];
    let step = (values.len() / MAX_CANDIDATES).max(1);
    for w in values.windows(2).step_by(step) {
        candidates.push((w[0] + w[1]) / 2.0);
    }
    let mut best = (current, agree(&tune, current).0);
    for &t in &candidates[1..] {
        let (kappa, _) = agree(&tune, t);
        if kappa.unwrap_or(f64::NEG_INFINITY) > best.1.unwrap_or(f64::NEG_INFINITY) {
            best = (t, kappa);
        }
    }

    let (kappa_before, accuracy_before) = agree(&held, current);
    let (kappa_after, accuracy_after) = agree(&held, best.0);
    let improves = kappa_after.unwrap_or(f64::NEG_INFINITY)
        > kappa_before.unwrap_or(f64::NEG_INFINITY)
        && best.0 != current;
    Ok(Calibration {
        tuned_on: tune.len(),
        held_back: held.len(),
        holdout_share,
        threshold_before: current,
        threshold_after: best.0,
        tuning_kappa: best.1,
        held_back_kappa_before: kappa_before,
        held_back_kappa_after: kappa_after,
        held_back_accuracy_before: accuracy_before,
        held_back_accuracy_after: accuracy_after,
        improves,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn points(n: usize, boundary: f64) -> Vec<Point> {
        (0..n)
            .map(|i| {
                let value = i as f64 / n as f64;
                Point {
                    item: format!("item-{i}"),
                    value,
                    pass: value >= boundary,
                }
            })
            .collect()
    }

    #[test]
    fn a_misplaced_threshold_is_moved_to_where_the_graders_draw_the_line() {
        let c = calibrate(&points(200, 0.3), 0.7, DEFAULT_HOLDOUT).unwrap();
        assert!((c.threshold_after - 0.3).abs() < 0.02, "{c:?}");
        assert!(c.improves);
        assert_eq!(c.held_back_kappa_after, Some(1.0));
        assert!(c.held_back_kappa_before.unwrap() < 0.8);
        assert_eq!(c.tuned_on + c.held_back, 200);
    }

    #[test]
    fn a_threshold_already_right_is_not_reported_as_an_improvement() {
        let c = calibrate(&points(200, 0.5), 0.5, DEFAULT_HOLDOUT).unwrap();
        assert!(!c.improves, "{c:?}");
        assert_eq!(c.held_back_kappa_before, Some(1.0));
    }

    #[test]
    fn the_split_is_the_same_on_every_run_and_holds_back_about_the_share() {
        let ps = points(1000, 0.5);
        let held = ps.iter().filter(|p| stable_fraction(&p.item) < 0.3).count();
        assert!((250..350).contains(&held), "{held}");
        assert_eq!(stable_fraction("item-7"), stable_fraction("item-7"));
    }

    #[test]
    fn too_few_items_or_a_bad_share_is_refused() {
        assert!(matches!(
            calibrate(&points(12, 0.5), 0.5, 0.3),
            Err(CalibrateError::TooFew(_))
        ));
        assert!(matches!(
            calibrate(&points(200, 0.5), 0.5, 1.0),
            Err(CalibrateError::BadHoldout(_))
        ));
    }
}
