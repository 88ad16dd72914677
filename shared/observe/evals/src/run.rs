//! Runs: one pass of a dataset version through the agent (or a replay of its recorded
//! traces), the result of every item, and the summary a finished run keeps.

use std::collections::BTreeMap;

use agentwire_scoring::ScoreRecord;
use serde::{Deserialize, Serialize};

use crate::stats::{Interval, mean_interval};

/// How items reach their traces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// A fresh session per item, its input posted as the user's message, answered by
    /// whatever agent dispatch delivers it to.
    Live,
    /// Each item's recorded trace, scored as it is: no agent runs.
    Replay,
}

/// What a run is asked to do; fixed when it is created.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunSpec {
    pub id: String,
    pub tenant: String,
    pub dataset: String,
    pub version: u32,
    pub mode: Mode,
    /// Live runs: the session name pattern an agent serves; each item's session is the
    /// pattern with its `*` replaced by `<run>-<item>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pattern: Option<String>,
    /// How long an item waits for its reply.
    pub timeout_ms: u64,
    /// Items in flight at once.
    pub concurrency: usize,
    /// What the run is of (`prompt v2`, a commit), for people comparing runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    /// Who started it: `api` or `nightly`.
    pub origin: String,
    pub created_ms: i64,
}

impl RunSpec {
    /// The session item `item` is run in (live runs).
    pub fn session_of(&self, item: &str) -> Option<String> {
        let pattern = self.pattern.as_deref()?;
        Some(pattern.replacen('*', &format!("{}-{item}", self.id), 1))
    }
}

/// Where a run is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Created, not started (or waiting to be resumed).
    Queued,
    /// Items are being run; an interrupted run stays here until it is resumed.
    Running,
    /// Every item has its result and the summary is written.
    Finished,
    /// It cannot finish as asked (`error` says why); the results so far are kept.
    Failed,
}

impl Status {
    /// The status as the API writes it (`finished`).
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Queued => "queued",
            Status::Running => "running",
            Status::Finished => "finished",
            Status::Failed => "failed",
        }
    }
}

/// A run as stored: its spec, where it is, and once finished its summary.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Run {
    pub spec: RunSpec,
    pub status: Status,
    /// Items in the dataset version.
    pub items: usize,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_ms: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary: Option<Summary>,
}

/// How one item went.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ItemStatus {
    /// The agent replied (or, replayed, the recorded trace was read) and it was scored.
    Answered,
    /// No reply ended within the run's timeout.
    Timeout,
    /// The reply failed, or the item could not be run (the error says which).
    Error,
}

/// One item's result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ItemResult {
    pub item: String,
    pub status: ItemStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The session it ran in (live runs; the recorded one for replays).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace_key: Option<String>,
    /// From the question's append to the reply's end (live runs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_ms: Option<u64>,
    /// Every verdict on its trace: the tenant's scorers and the reference ones.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub records: Vec<ScoreRecord>,
    /// The item's `metadata.reward`, when it has one (a recorded run's outcome).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reward: Option<f64>,
    pub finished_ms: i64,
}

impl ItemResult {
    /// The item's value per record name: the mean of its records of that name (span-level
    /// scorers give several), plus `answered` (1 when it answered, else 0).
    pub fn values(&self) -> BTreeMap<String, f64> {
        let mut sums: BTreeMap<String, (f64, usize)> = BTreeMap::new();
        for record in &self.records {
            if record.value.is_finite() {
                let entry = sums.entry(record.name.clone()).or_default();
                entry.0 += record.value;
                entry.1 += 1;
            }
        }
        let mut values: BTreeMap<String, f64> = sums
            .into_iter()
            .map(|(name, (sum, n))| (name, sum / n as f64))
            .collect();
        let answered = if self.status == ItemStatus::Answered {
            1.0
        } else {
            0.0
        };
        values.insert(ANSWERED.to_owned(), answered);
        values
    }
}

/// The measure every run has: the fraction of items answered.
pub const ANSWERED: &str = "answered";

/// Whether lower values of `name` are better: latency, tokens and cost, in their units.
pub fn lower_is_better(name: &str) -> bool {
    agentwire_scoring::is_measurement(name)
}

/// One measure over a run's items.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Metric {
    pub name: String,
    /// Items with a value.
    pub n: usize,
    #[serde(with = "crate::stats::nan_as_null")]
    pub mean: f64,
    /// 95 % percentile bootstrap interval of the mean.
    pub ci: Interval,
    /// Items whose value is above 0.5 (scorers' values pass above it), for measures in
    /// [0, 1].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub passed: Option<usize>,
}

/// How often a measure's verdict (value above 0.5) agrees with the items' recorded reward
/// (above 0.5 is a success): how far a scorer can be trusted on this dataset.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RewardAgreement {
    pub name: String,
    pub n: usize,
    pub agreement: f64,
    /// Counts of (verdict pass, reward success): `[[pass&success, pass&failure],
    /// [fail&success, fail&failure]]`.
    pub table: [[usize; 2]; 2],
}

/// What a finished run found.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub answered: usize,
    pub timeouts: usize,
    pub errors: usize,
    pub metrics: Vec<Metric>,
    /// Latency of answered items (live runs), p50 and p95, ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_p50_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_p95_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reward_agreement: Vec<RewardAgreement>,
}

impl Summary {
    /// The metric called `name`.
    pub fn metric(&self, name: &str) -> Option<&Metric> {
        self.metrics.iter().find(|m| m.name == name)
    }
}

/// The summary of a run's item results.
pub fn summarise(results: &[ItemResult]) -> Summary {
    let count = |status| results.iter().filter(|r| r.status == status).count();
    let mut by_name: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    for result in results {
        for (name, value) in result.values() {
            by_name.entry(name).or_default().push(value);
        }
    }
    let metrics = by_name
        .iter()
        .map(|(name, values)| {
            let (mean, ci) = mean_interval(values, 0);
            let unit = values.iter().all(|v| (0.0..=1.0).contains(v)) && !lower_is_better(name);
            Metric {
                name: name.clone(),
                n: values.len(),
                mean,
                ci,
                passed: unit.then(|| values.iter().filter(|v| **v > 0.5).count()),
            }
        })
        .collect();
    let mut latencies: Vec<u64> = results
        .iter()
        .filter(|r| r.status == ItemStatus::Answered)
        .filter_map(|r| r.latency_ms)
        .collect();
    latencies.sort_unstable();
    let percentile = |q: f64| {
        (!latencies.is_empty())
            .then(|| latencies[((latencies.len() - 1) as f64 * q).round() as usize])
    };
    let mut reward_agreement = Vec::new();
    let verdicts = |name: &str, values: &[f64]| {
        name != ANSWERED && !lower_is_better(name) && values.iter().all(|v| (0.0..=1.0).contains(v))
    };
    for name in by_name
        .iter()
        .filter(|(n, v)| verdicts(n, v))
        .map(|(n, _)| n)
    {
        let mut table = [[0usize; 2]; 2];
        for result in results {
            let (Some(reward), Some(value)) = (result.reward, result.values().get(name).copied())
            else {
                continue;
            };
            table[usize::from(value <= 0.5)][usize::from(reward <= 0.5)] += 1;
        }
        let n: usize = table.iter().flatten().sum();
        if n > 0 {
            reward_agreement.push(RewardAgreement {
                name: name.clone(),
                n,
                agreement: (table[0][0] + table[1][1]) as f64 / n as f64,
                table,
            });
        }
    }
    Summary {
        answered: count(ItemStatus::Answered),
        timeouts: count(ItemStatus::Timeout),
        errors: count(ItemStatus::Error),
        metrics,
        latency_p50_ms: percentile(0.5),
        latency_p95_ms: percentile(0.95),
        reward_agreement,
    }
}
