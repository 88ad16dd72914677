//! Ranking and classification metrics for scorer quality: AUROC, F1 at a threshold, the
//! F1-best threshold, grouped k-fold cross-validation, and character-level span F1.

/// Area under the ROC curve of `scores` (higher = more likely positive) against `labels`:
/// the Mann-Whitney U statistic over positives and negatives, ties counted half (average
/// ranks). `None` without both a positive and a negative.
pub fn auroc(labels: &[bool], scores: &[f64]) -> Option<f64> {
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[a].total_cmp(&scores[b]));
    let mut rank_sum_pos = 0.0;
    let mut i = 0;
    while i < order.len() {
        let mut j = i;
        while j + 1 < order.len() && scores[order[j + 1]] == scores[order[i]] {
            j += 1;
        }
        // Ranks i+1..=j+1 share their average.
        let rank = (i + j) as f64 / 2.0 + 1.0;
        for &k in &order[i..=j] {
            if labels[k] {
                rank_sum_pos += rank;
            }
        }
        i = j + 1;
    }
    let pos = labels.iter().filter(|&&l| l).count() as f64;
    let neg = labels.len() as f64 - pos;
    if pos == 0.0 || neg == 0.0 {
        return None;
    }
    Some((rank_sum_pos - pos * (pos + 1.0) / 2.0) / (pos * neg))
}

/// Counts of a binary prediction.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub tp: usize,
    pub fp: usize,
    pub fn_: usize,
}

impl Counts {
    pub fn add(&mut self, label: bool, predicted: bool) {
        match (label, predicted) {
            (true, true) => self.tp += 1,
            (false, true) => self.fp += 1,
            (true, false) => self.fn_ += 1,
            (false, false) => {}
        }
    }

    pub fn precision(&self) -> f64 {
        ratio(self.tp, self.tp + self.fp)
    }

    pub fn recall(&self) -> f64 {
        ratio(self.tp, self.tp + self.fn_)
    }

    /// 2TP / (2TP + FP + FN); 0 when there is nothing to find or predicted.
    pub fn f1(&self) -> f64 {
        ratio(2 * self.tp, 2 * self.tp + self.fp + self.fn_)
    }
}

fn ratio(a: usize, b: usize) -> f64 {
    if b == 0 { 0.0 } else { a as f64 / b as f64 }
}

/// F1 of predicting positive when `score >= threshold`.
pub fn f1_at(labels: &[bool], scores: &[f64], threshold: f64) -> f64 {
    let mut c = Counts::default();
    for (&l, &s) in labels.iter().zip(scores) {
        c.add(l, s >= threshold);
    }
    c.f1()
}

/// The threshold (one of the scores) that maximises F1 of `score >= threshold`, and that F1.
/// Ties between thresholds go to the higher one.
pub fn best_threshold(labels: &[bool], scores: &[f64]) -> (f64, f64) {
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]));
    let pos = labels.iter().filter(|&&l| l).count();
    let (mut tp, mut fp) = (0usize, 0usize);
    let mut best = (f64::INFINITY, 0.0);
    for (n, &i) in order.iter().enumerate() {
        if labels[i] {
            tp += 1;
        } else {
            fp += 1;
        }
        if order.get(n + 1).is_some_and(|&k| scores[k] == scores[i]) {
            continue;
        }
        let f1 = ratio(2 * tp, tp + fp + pos);
        if f1 > best.1 {
            best = (scores[i], f1);
        }
    }
    best
}

/// Assigns each item to one of `k` folds so that items of one group share a fold: groups
/// in order of a stable hash of their name, dealt round-robin. Deterministic.
pub fn grouped_folds(groups: &[&str], k: usize) -> Vec<usize> {
    let mut names: Vec<&str> = groups.to_vec();
    names.sort_unstable();
    names.dedup();
    names.sort_by_key(|g| (fnv(g), *g));
    let fold: std::collections::HashMap<&str, usize> =
        names.iter().enumerate().map(|(i, g)| (*g, i % k)).collect();
    groups.iter().map(|g| fold[g]).collect()
}

fn fnv(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Out-of-fold F1: for each fold, the F1-best threshold on the other folds, applied to this
/// fold; F1 of the pooled predictions. Returns the F1 and each fold's threshold.
pub fn out_of_fold_f1(
    labels: &[bool],
    scores: &[f64],
    folds: &[usize],
    k: usize,
) -> (f64, Vec<f64>) {
    let mut counts = Counts::default();
    let mut thresholds = Vec::new();
    for f in 0..k {
        let (train_l, train_s): (Vec<bool>, Vec<f64>) = (0..labels.len())
            .filter(|&i| folds[i] != f)
            .map(|i| (labels[i], scores[i]))
            .unzip();
        let (t, _) = best_threshold(&train_l, &train_s);
        thresholds.push(t);
        for i in (0..labels.len()).filter(|&i| folds[i] == f) {
            counts.add(labels[i], scores[i] >= t);
        }
    }
    (counts.f1(), thresholds)
}

/// Character-level overlap of predicted and labelled ranges (`start..end`) of one text,
/// added into `counts`: each char in both is a true positive, in the prediction only a
/// false positive, in the labels only a false negative. Overlapping ranges count once.
pub fn add_span_counts(
    counts: &mut Counts,
    predicted: &[(usize, usize)],
    labelled: &[(usize, usize)],
    len: usize,
) {
    let mark = |ranges: &[(usize, usize)]| {
        let mut v = vec![false; len];
        for &(a, b) in ranges {
            for x in v.iter_mut().take(b.min(len)).skip(a) {
                *x = true;
            }
        }
        v
    };
    let (p, l) = (mark(predicted), mark(labelled));
    for (p, l) in p.into_iter().zip(l) {
        counts.add(l, p);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auroc_by_hand_with_ties_at_half() {
        // Positives 0.8, 0.4; negatives 0.4, 0.1. Pairs: (0.8>0.4) 1, (0.8>0.1) 1,
        // (0.4=0.4) 0.5, (0.4>0.1) 1 => 3.5 / 4.
        let got = auroc(&[true, true, false, false], &[0.8, 0.4, 0.4, 0.1]);
        assert_eq!(got, Some(0.875));
        assert_eq!(auroc(&[true, false], &[0.0, 1.0]), Some(0.0));
        assert_eq!(auroc(&[true, true], &[0.0, 1.0]), None);
        // All tied: 0.5.
        assert_eq!(auroc(&[true, false, false], &[1.0, 1.0, 1.0]), Some(0.5));
    }

    #[test]
    fn best_threshold_and_f1() {
        let labels = [true, true, false, true, false];
        let scores = [0.9, 0.8, 0.7, 0.6, 0.1];
        // >= 0.6: tp 3, fp 1 -> 6/7; >= 0.8: tp 2 -> 4/5; >= 0.1: 6/8.
        let (t, f) = best_threshold(&labels, &scores);
        assert_eq!(t, 0.6);
        assert!((f - 6.0 / 7.0).abs() < 1e-12);
        assert!((f1_at(&labels, &scores, 0.6) - f).abs() < 1e-12);
        assert!((f1_at(&labels, &scores, 0.0) - 0.75).abs() < 1e-12);
    }

    #[test]
    fn folds_keep_groups_together_and_spread_them() {
        let groups = ["a", "b", "a", "c", "d", "e", "b"];
        let folds = grouped_folds(&groups, 5);
        assert_eq!(folds[0], folds[2]);
        assert_eq!(folds[1], folds[6]);
        let mut used: Vec<usize> = folds.clone();
        used.sort_unstable();
        used.dedup();
        assert_eq!(used.len(), 5, "five groups over five folds: {folds:?}");
    }

    #[test]
    fn span_counts_by_char() {
        let mut c = Counts::default();
        // Predicted 0..4 and 2..6 (= 0..6), labelled 4..8 in a 10-char text.
        add_span_counts(&mut c, &[(0, 4), (2, 6)], &[(4, 8)], 10);
        assert_eq!(
            c,
            Counts {
                tp: 2,
                fp: 4,
                fn_: 2
            }
        );
        assert!((c.f1() - 0.4).abs() < 1e-12);
    }
}
