//! Percentiles over measured samples.

use std::time::Duration;

/// Summary of latency samples: nearest-rank percentiles.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Latency {
    pub samples: usize,
    pub p50: Duration,
    pub p90: Duration,
    pub p99: Duration,
    pub max: Duration,
}

impl Latency {
    pub fn of(mut samples: Vec<Duration>) -> Option<Latency> {
        if samples.is_empty() {
            return None;
        }
        samples.sort_unstable();
        let rank = |p: f64| {
            let index = ((p / 100.0) * samples.len() as f64).ceil() as usize;
            samples[index.clamp(1, samples.len()) - 1]
        };
        Some(Latency {
            samples: samples.len(),
            p50: rank(50.0),
            p90: rank(90.0),
            p99: rank(99.0),
            max: samples[samples.len() - 1],
        })
    }
}

/// Milliseconds with two decimals, the unit every latency row uses.
pub fn ms(d: Duration) -> String {
    format!("{:.2}", d.as_secs_f64() * 1e3)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn micros(values: impl IntoIterator<Item = u64>) -> Vec<Duration> {
        values.into_iter().map(Duration::from_micros).collect()
    }

    #[test]
    fn nearest_rank_percentiles() {
        // 1..=100 µs, shuffled: p50 is the 50th smallest, p99 the 99th.
        let mut values: Vec<u64> = (1..=100).collect();
        values.reverse();
        let l = Latency::of(micros(values)).unwrap();
        assert_eq!(l.samples, 100);
        assert_eq!(l.p50, Duration::from_micros(50));
        assert_eq!(l.p90, Duration::from_micros(90));
        assert_eq!(l.p99, Duration::from_micros(99));
        assert_eq!(l.max, Duration::from_micros(100));
    }

    #[test]
    fn one_sample_is_every_percentile() {
        let l = Latency::of(micros([7])).unwrap();
        let seven = Duration::from_micros(7);
        assert_eq!((l.p50, l.p90, l.p99, l.max), (seven, seven, seven, seven));
    }

    #[test]
    fn no_samples_no_summary() {
        assert_eq!(Latency::of(Vec::new()), None);
    }
}
