//! The statistics runs are compared with: a percentile bootstrap interval of a mean, and a
//! paired sign-flip permutation test. Both are seeded, so one comparison always prints the
//! same figures. (A dozen lines each; no statistics crate offers the paired permutation
//! test, and the bootstrap is the agreement crate's method.)

use serde::{Deserialize, Serialize};

/// Bootstrap resamples and permutations drawn.
pub const RESAMPLES: usize = 2000;

/// A 95 % interval.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Interval {
    #[serde(with = "nan_as_null")]
    pub low: f64,
    #[serde(with = "nan_as_null")]
    pub high: f64,
}

/// A figure that may be undefined (a mean of no items) as JSON: `null` for NaN, and back.
pub mod nan_as_null {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(value: &f64, s: S) -> Result<S::Ok, S::Error> {
        match value.is_finite() {
            true => s.serialize_f64(*value),
            false => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
        Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::NAN))
    }
}

/// The mean of `values` and its 95 % percentile bootstrap interval (seeded with `seed`).
/// No values: NaN and an interval of NaN.
pub fn mean_interval(values: &[f64], seed: u64) -> (f64, Interval) {
    let n = values.len();
    if n == 0 {
        return (
            f64::NAN,
            Interval {
                low: f64::NAN,
                high: f64::NAN,
            },
        );
    }
    let mean = values.iter().sum::<f64>() / n as f64;
    let mut rng = fastrand::Rng::with_seed(seed ^ 0x5eed);
    let mut means: Vec<f64> = (0..RESAMPLES)
        .map(|_| (0..n).map(|_| values[rng.usize(..n)]).sum::<f64>() / n as f64)
        .collect();
    means.sort_by(f64::total_cmp);
    let at = |q: f64| means[((RESAMPLES - 1) as f64 * q).round() as usize];
    (
        mean,
        Interval {
            low: at(0.025).min(mean),
            high: at(0.975).max(mean),
        },
    )
}

/// The two-sided p-value of a paired sign-flip permutation test on `differences` (B − A
/// per item): how often flipping the signs at random gives a mean difference at least as
/// far from 0 as the one seen. Exact for up to 16 non-zero differences, else over [`RESAMPLES`]
/// random flips. 1 when every difference is 0 (or there are none).
pub fn paired_p(differences: &[f64], seed: u64) -> f64 {
    // A zero difference is the same flipped or not: only the others vary the sum.
    let differences: Vec<f64> = differences.iter().copied().filter(|d| *d != 0.0).collect();
    let n = differences.len();
    let observed = differences.iter().sum::<f64>().abs();
    if n == 0 {
        return 1.0;
    }
    // Sums equal up to rounding count as "as far".
    let as_far = |sum: f64| sum.abs() >= observed - 1e-9;
    if n <= 16 {
        let total = 1u32 << n;
        let hits = (0..total)
            .filter(|signs| {
                let sum: f64 = differences
                    .iter()
                    .enumerate()
                    .map(|(i, d)| if signs & (1 << i) != 0 { -d } else { *d })
                    .sum();
                as_far(sum)
            })
            .count();
        return hits as f64 / total as f64;
    }
    let mut rng = fastrand::Rng::with_seed(seed ^ 0xf11);
    let hits = (0..RESAMPLES)
        .filter(|_| {
            let sum: f64 = differences
                .iter()
                .map(|d| if rng.bool() { -d } else { *d })
                .sum();
            as_far(sum)
        })
        .count();
    // The observed assignment counts as one of the draws, so p is never 0.
    (hits + 1) as f64 / (RESAMPLES + 1) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_interval_brackets_the_mean_and_repeats_with_its_seed() {
        let values: Vec<f64> = (0..40).map(|i| f64::from(i % 5) / 4.0).collect();
        let (mean, ci) = mean_interval(&values, 7);
        assert!((mean - 0.5).abs() < 1e-12);
        assert!(
            ci.low < mean && mean < ci.high && ci.low > 0.3 && ci.high < 0.7,
            "{ci:?}"
        );
        assert_eq!(mean_interval(&values, 7), (mean, ci));
        let (one, point) = mean_interval(&[1.0; 5], 0);
        assert_eq!((one, point.low, point.high), (1.0, 1.0, 1.0));
        assert!(mean_interval(&[], 0).0.is_nan());
    }

    #[test]
    fn the_paired_test_is_exact_for_small_samples() {
        // Five items all one worse: only the all-negative and all-positive flips are as far.
        assert!((paired_p(&[-1.0; 5], 0) - 2.0 / 32.0).abs() < 1e-12);
        assert_eq!(paired_p(&[0.0; 8], 0), 1.0);
        assert_eq!(paired_p(&[], 0), 1.0);
        // One difference of twenty is no evidence.
        let mut one = vec![0.0; 20];
        one[3] = -1.0;
        assert!(paired_p(&one, 0) > 0.9);
        // Five of twenty all worse by one is.
        let mut five = vec![0.0; 20];
        five[..5].fill(-1.0);
        assert!((paired_p(&five, 0) - 2.0 / 32.0).abs() < 1e-12);
        // Many differences are sampled, and the estimate lands near the exact figure.
        let many: Vec<f64> = (0..40)
            .map(|i| if i % 4 == 0 { 0.5 } else { -0.5 })
            .collect();
        let p = paired_p(&many, 0);
        assert!(p > 0.0 && p < 0.01, "{p}");
        assert_eq!(paired_p(&many, 0), p);
    }
}
