//! Which traces a rubric judges. Traces a deterministic scorer flagged, or left near its
//! threshold, are always judged; the rest are sampled at the rubric's rate by a stable
//! hash of the trace id, so a rerun (or another process) picks exactly the same traces.

use std::fmt;

use agentwire_scoring::{ScoreRecord, Source};

use crate::config::RubricConfig;

/// Whether `trace_id` falls in `rubric`'s sample at `rate`: a stable 64-bit hash of the
/// two, read as a number in [0, 1), below `rate`. Rate 0 picks none, 1 picks all.
pub fn sampled(trace_id: &str, rubric: &str, rate: f64) -> bool {
    unit(trace_id, rubric) < rate
}

/// FNV-1a over `rubric \0 trace_id`, finished with MurmurHash3's `fmix64` so ids that
/// differ in their last bytes still spread over the whole range; the top 53 bits as a
/// fraction. Both steps are fixed forever: changing them would re-pick every sample.
fn unit(trace_id: &str, rubric: &str) -> f64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let bytes = rubric.bytes().chain([0]).chain(trace_id.bytes());
    for b in bytes {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash ^= hash >> 33;
    hash = hash.wrapping_mul(0xff51_afd7_ed55_8ccd);
    hash ^= hash >> 33;
    hash = hash.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    hash ^= hash >> 33;
    (hash >> 11) as f64 / (1u64 << 53) as f64
}

/// Why a trace is (or is not) judged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pick {
    /// A scorer named in `always_if_flagged` scored it below its threshold.
    Flagged {
        record: String,
    },
    /// Such a scorer passed it within `near_threshold` of its threshold.
    NearThreshold {
        record: String,
    },
    /// In the rubric's random sample.
    Sampled,
    NotSampled,
}

impl Pick {
    /// Whether the trace is sent to the judge.
    pub fn judged(&self) -> bool {
        !matches!(self, Pick::NotSampled)
    }
}

impl fmt::Display for Pick {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Pick::Flagged { record } => write!(f, "flagged: {record}"),
            Pick::NearThreshold { record } => write!(f, "near threshold: {record}"),
            Pick::Sampled => f.write_str("sampled"),
            Pick::NotSampled => f.write_str("not sampled"),
        }
    }
}

/// Whether `pattern` names the record `name`: exactly, or as a prefix when it ends with `*`.
fn matches(pattern: &str, name: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => name.starts_with(prefix),
        None => pattern == name,
    }
}

/// The stratum of a trace for `rubric`, given the code scorers' records on it and each
/// record's pass threshold. A flag anywhere outranks a near miss; among equals the first
/// record wins. Records of judges and people, and non-finite values, are not strata.
pub fn pick(
    trace_id: &str,
    rubric: &RubricConfig,
    code: &[ScoreRecord],
    threshold: &dyn Fn(&str) -> f64,
) -> Pick {
    let mut near = None;
    let watched = code.iter().filter(|r| {
        r.source == Source::Code
            && r.value.is_finite()
            && rubric.always_if_flagged.iter().any(|p| matches(p, &r.name))
    });
    for record in watched {
        let line = threshold(&record.name);
        if record.value < line {
            return Pick::Flagged {
                record: record.name.clone(),
            };
        }
        if near.is_none() && (record.value - line).abs() <= rubric.near_threshold {
            near = Some(record.name.clone());
        }
    }
    match near {
        Some(record) => Pick::NearThreshold { record },
        None if sampled(trace_id, &rubric.name, rubric.sample) => Pick::Sampled,
        None => Pick::NotSampled,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rubric(sample: f64, always: &[&str]) -> RubricConfig {
        RubricConfig {
            name: "advice".into(),
            version: None,
            sample,
            always_if_flagged: always.iter().map(|s| s.to_string()).collect(),
            near_threshold: 0.1,
            few_shot: 3,
            prompt: None,
            variant: Vec::new(),
        }
    }

    fn record(name: &str, value: f64, source: Source) -> ScoreRecord {
        ScoreRecord {
            trace_id: "t".into(),
            span_id: None,
            session: "s".into(),
            tenant: "acme".into(),
            name: name.into(),
            value,
            label: None,
            source,
            explanation: None,
            evidence: Vec::new(),
            scorer: name.into(),
            scorer_version: "1".into(),
            trace_digest: "d".into(),
            scored_at_ms: 0,
            usage: None,
        }
    }

    fn ids(n: usize) -> impl Iterator<Item = String> {
        (0..n).map(|i| format!("{i:032x}"))
    }

    #[test]
    fn the_same_ids_are_picked_on_every_call() {
        let first: Vec<bool> = ids(1000).map(|id| sampled(&id, "advice", 0.3)).collect();
        let again: Vec<bool> = ids(1000).map(|id| sampled(&id, "advice", 0.3)).collect();
        assert_eq!(first, again);
        let other: Vec<bool> = ids(1000).map(|id| sampled(&id, "tone", 0.3)).collect();
        assert_ne!(first, other, "each rubric has its own sample");
        // Pinned: the hash must never change, or reruns would pick other traces.
        assert_eq!(
            unit("abc", "advice"),
            2105676243267685.0 / (1u64 << 53) as f64
        );
        assert!(sampled("abc", "advice", 0.234) && !sampled("abc", "advice", 0.233));
        assert_ne!(unit("abc", "advice"), unit("abd", "advice"));
        assert!((0.0..1.0).contains(&unit("", "")));
    }

    #[test]
    fn the_rate_is_honoured() {
        for (rate, low, high) in [(0.1, 900, 1100), (0.5, 4800, 5200), (0.01, 70, 130)] {
            let n = ids(10_000).filter(|id| sampled(id, "advice", rate)).count();
            assert!((low..=high).contains(&n), "rate {rate}: {n} of 10000");
        }
        assert_eq!(
            ids(10_000).filter(|id| sampled(id, "advice", 0.0)).count(),
            0
        );
        assert_eq!(
            ids(10_000).filter(|id| sampled(id, "advice", 1.0)).count(),
            10_000
        );
        // A larger rate keeps every trace a smaller one picked.
        assert!(ids(2000).all(|id| !sampled(&id, "a", 0.2) || sampled(&id, "a", 0.4)));
    }

    #[test]
    fn a_flag_outranks_a_near_miss_and_the_first_of_each_wins() {
        let config = rubric(0.0, &["groundedness", "rules.*"]);
        let half = |_: &str| 0.5;
        let records = [
            record("groundedness", 0.55, Source::Code),
            record("rules.no_pii_email", 0.0, Source::Code),
            record("rules.no_pii_card", 0.0, Source::Code),
        ];
        let got = pick("t", &config, &records, &half);
        assert_eq!(
            got,
            Pick::Flagged {
                record: "rules.no_pii_email".into()
            }
        );
        assert_eq!(got.to_string(), "flagged: rules.no_pii_email");
        assert!(got.judged());
        let got = pick("t", &config, &records[..1], &half);
        assert_eq!(got.to_string(), "near threshold: groundedness");
        assert!(got.judged());
        let passing = [
            record("groundedness", 0.9, Source::Code),
            record("rules.no_pii_email", 1.0, Source::Code),
            record("groundedness", 0.58, Source::Code),
        ];
        assert_eq!(
            pick("t", &config, &passing, &half).to_string(),
            "near threshold: groundedness"
        );
        assert_eq!(pick("t", &config, &passing[..2], &half), Pick::NotSampled);
        assert!(!Pick::NotSampled.judged());
        assert_eq!(Pick::NotSampled.to_string(), "not sampled");
    }

    #[test]
    fn thresholds_are_asked_per_record() {
        let config = rubric(0.0, &["tool_use"]);
        let records = [record("tool_use", 0.7, Source::Code)];
        let strict = |name: &str| if name == "tool_use" { 0.9 } else { 0.0 };
        assert_eq!(
            pick("t", &config, &records, &strict),
            Pick::Flagged {
                record: "tool_use".into()
            }
        );
        assert_eq!(pick("t", &config, &records, &|_| 0.2), Pick::NotSampled);
    }

    #[test]
    fn patterns_match_exactly_or_by_prefix() {
        assert!(matches("rules.*", "rules.no_pii_email"));
        assert!(matches("*", "anything"));
        assert!(matches("groundedness", "groundedness"));
        assert!(!matches("groundedness", "groundedness.sentence"));
        assert!(!matches("rules.*", "rule"));
        let config = rubric(0.0, &["ground"]);
        let records = [record("groundedness", 0.0, Source::Code)];
        assert_eq!(pick("t", &config, &records, &|_| 0.5), Pick::NotSampled);
    }

    #[test]
    fn records_not_from_code_are_not_strata() {
        let config = rubric(0.0, &["advice.*", "groundedness"]);
        let records = [
            record("advice.tone", 0.0, Source::Judge),
            record("groundedness", 0.0, Source::Human),
            record("groundedness", f64::NAN, Source::Code),
        ];
        assert_eq!(pick("t", &config, &records, &|_| 0.5), Pick::NotSampled);
    }

    #[test]
    fn the_rest_is_sampled_by_trace_id() {
        let config = rubric(0.5, &["groundedness"]);
        let calm = [record("groundedness", 1.0, Source::Code)];
        for id in ids(200) {
            let expected = if sampled(&id, "advice", 0.5) {
                Pick::Sampled
            } else {
                Pick::NotSampled
            };
            assert_eq!(pick(&id, &config, &calm, &|_| 0.5), expected);
        }
        assert_eq!(Pick::Sampled.to_string(), "sampled");
        assert!(ids(200).any(|id| pick(&id, &config, &[], &|_| 0.5) == Pick::Sampled));
    }
}
