//! The nightly `clusters` job, and where its results are kept:
//! `clusters/dt=<day>/tenant=<t>/members.jsonl.gz` (one line per trace and view) and
//! `clusters.jsonl.gz` (one line per cluster and view), gzip JSON lines in the archive's
//! Hive-style partitions, which DuckDB and Athena read as they are.
//!
//! Each run clusters the last whole UTC day of every tenant with traces that day, once:
//! `clusters.jsonl.gz` is written last, so its presence means the night is done, and a
//! run cut short is simply done again. A tenant tunes its clustering in
//! `config/tenant=<t>/clusters.toml`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use agentwire_jobs::{Job, JobError, JobReport, Schedule};
use agentwire_scoring::{ScoreRecord, TraceView, ViewOptions};
use agentwire_session::path::encode_segment;
use agentwire_trace::{ArchiveError, ObjectKey, TraceArchive, decode_jsonl_gz, utc_day};
use async_trait::async_trait;
use bytes::Bytes;
use futures_util::{StreamExt, stream};
use serde::Deserialize;
use tracing::warn;

use crate::docs::docs_of;
use crate::embed::{EmbedError, Embedder};
use crate::features::Sparse;
use crate::night::{
    ClusterRecord, DEFAULT_SAMPLE, Doc, Member, Night, Outcome, Previous, Settings, View,
    cluster_night,
};
use crate::{decode_lines, encode_lines};

/// How often the job looks for a night to cluster (the template's schedule).
pub const NIGHTLY_EVERY: Duration = Duration::from_secs(60 * 60);

/// The most traces of one tenant and day read; beyond it a stable sample of this size
/// (by a hash of the key) is read. At about 1.2 KiB of text and features per trace, it
/// keeps an invocation well inside 1 GiB of memory and 15 minutes.
pub const MAX_TRACES: usize = 100_000;

/// Nights looked back for the previous result, so ids survive a night without traffic.
pub const LOOKBACK_NIGHTS: i64 = 7;

/// Objects read at once.
const READS_IN_FLIGHT: usize = 32;

const DAY_MS: i64 = 86_400_000;

pub fn clusters_key(day: &str, tenant: &str) -> String {
    format!(
        "clusters/dt={day}/tenant={}/clusters.jsonl.gz",
        encode_segment(tenant)
    )
}

pub fn members_key(day: &str, tenant: &str) -> String {
    format!(
        "clusters/dt={day}/tenant={}/members.jsonl.gz",
        encode_segment(tenant)
    )
}

/// A tenant's `clusters.toml`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterSettings {
    #[serde(default = "default_min_cluster_size")]
    pub min_cluster_size: usize,
    #[serde(default)]
    pub min_samples: Option<usize>,
    /// The most traces HDBSCAN clusters per view; the rest are assigned.
    #[serde(default = "default_sample")]
    pub sample: usize,
    /// Groups closer than this are not split; unset, the embedder's own default
    /// ([`Embedder::default_epsilon`]).
    #[serde(default)]
    pub epsilon: Option<f64>,
    #[serde(default = "default_views")]
    pub views: Vec<View>,
}

fn default_min_cluster_size() -> usize {
    Settings::default().min_cluster_size
}
fn default_sample() -> usize {
    DEFAULT_SAMPLE
}
fn default_views() -> Vec<View> {
    View::ALL.to_vec()
}

impl Default for ClusterSettings {
    fn default() -> ClusterSettings {
        ClusterSettings {
            min_cluster_size: default_min_cluster_size(),
            min_samples: None,
            sample: DEFAULT_SAMPLE,
            epsilon: None,
            views: default_views(),
        }
    }
}

impl ClusterSettings {
    pub fn config_key(tenant: &str) -> String {
        format!("config/tenant={}/clusters.toml", encode_segment(tenant))
    }

    pub fn parse(text: &str) -> Result<ClusterSettings, String> {
        let s: ClusterSettings =
            toml::from_str(text).map_err(|e| e.to_string().trim().to_owned())?;
        if s.min_cluster_size < 2 {
            return Err("min_cluster_size must be at least 2".into());
        }
        if s.epsilon.is_some_and(|e| !(0.0..=2.0).contains(&e)) {
            return Err("epsilon must be from 0 to 2".into());
        }
        if s.sample < s.min_cluster_size {
            return Err("sample must be at least min_cluster_size".into());
        }
        Ok(s)
    }

    /// The settings a night runs with, given the embedder that will embed it.
    pub fn settings(&self, embedder: &dyn Embedder) -> Settings {
        Settings {
            min_cluster_size: self.min_cluster_size,
            min_samples: self.min_samples,
            sample: self.sample,
            epsilon: self.epsilon.unwrap_or_else(|| embedder.default_epsilon()),
            ..Settings::default()
        }
    }
}

/// Why a night could not be clustered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NightError {
    #[error(transparent)]
    Storage(#[from] ArchiveError),
    #[error(transparent)]
    Embed(#[from] EmbedError),
}

/// Results in the archive.
#[derive(Clone)]
pub struct Store {
    archive: Arc<dyn TraceArchive>,
}

impl Store {
    pub fn new(archive: Arc<dyn TraceArchive>) -> Store {
        Store { archive }
    }

    pub fn archive(&self) -> &Arc<dyn TraceArchive> {
        &self.archive
    }

    /// A finished night's clusters and members, if that night was clustered.
    pub async fn night(
        &self,
        day: &str,
        tenant: &str,
    ) -> Result<Option<(Vec<ClusterRecord>, Vec<Member>)>, ArchiveError> {
        let Some(clusters) = self.archive.get(&clusters_key(day, tenant)).await? else {
            return Ok(None);
        };
        let members = self
            .archive
            .get(&members_key(day, tenant))
            .await?
            .unwrap_or_default();
        let bad = |e: String| ArchiveError(format!("clusters of {day}: {e}"));
        Ok(Some((
            decode_lines(&clusters).map_err(bad)?,
            decode_lines(&members).map_err(bad)?,
        )))
    }

    /// The latest night before `day` (looking back [`LOOKBACK_NIGHTS`]) that was clustered.
    pub async fn previous(
        &self,
        day_ms: i64,
        tenant: &str,
    ) -> Result<Option<(Vec<ClusterRecord>, Vec<Member>)>, ArchiveError> {
        for back in 1..=LOOKBACK_NIGHTS {
            if let Some(night) = self.night(&utc_day(day_ms - back * DAY_MS), tenant).await? {
                return Ok(Some(night));
            }
        }
        Ok(None)
    }

    /// Writes a night: members first, clusters last (the night is done once they exist).
    pub async fn save(
        &self,
        day: &str,
        tenant: &str,
        outcome: &Outcome,
    ) -> Result<(), ArchiveError> {
        self.archive
            .put(
                &members_key(day, tenant),
                Bytes::from(encode_lines(&outcome.members)),
            )
            .await?;
        self.archive
            .put(
                &clusters_key(day, tenant),
                Bytes::from(encode_lines(&outcome.clusters)),
            )
            .await
    }
}

type Read = Option<(Option<Vec<agentwire_trace::Span>>, Vec<ScoreRecord>)>;

/// A trace object (spans, if they decode) and the score records beside it.
async fn read_one(archive: &dyn TraceArchive, key: String) -> Result<Read, ArchiveError> {
    let Some(bytes) = archive.get(&key).await? else {
        return Ok(None);
    };
    let scores = match ObjectKey::parse(&key) {
        Some(k) => match archive.get(&k.under("scores")).await? {
            Some(b) => agentwire_scorer::decode_records(&b).unwrap_or_default(),
            None => Vec::new(),
        },
        None => Vec::new(),
    };
    Ok(Some((decode_jsonl_gz(&bytes).ok(), scores)))
}

/// Reads the traces at `keys` (and their scores beside them) as docs of each view.
/// Traces that do not decode are counted, not fatal.
pub async fn read_docs(
    archive: &dyn TraceArchive,
    keys: &[String],
    views: &[View],
) -> Result<(BTreeMap<View, Vec<Doc>>, usize), ArchiveError> {
    let reads = stream::iter(keys.iter().cloned())
        .map(|key| read_one(archive, key))
        .buffered(READS_IN_FLIGHT);
    let mut reads = std::pin::pin!(reads);
    let mut out: BTreeMap<View, Vec<Doc>> = views.iter().map(|v| (*v, Vec::new())).collect();
    let mut unreadable = 0;
    while let Some(read) = reads.next().await {
        let Some((spans, scores)) = read? else {
            continue;
        };
        let view = spans.and_then(|s| TraceView::from_spans(&s, &ViewOptions::default()).ok());
        let Some(trace) = view else {
            unreadable += 1;
            continue;
        };
        let scores: Vec<ScoreRecord> = scores
            .into_iter()
            .filter(|s| s.trace_id == trace.trace_id)
            .collect();
        for (v, docs) in out.iter_mut() {
            if let Some(doc) = docs_of(*v, &trace, &scores) {
                docs.push(doc);
            }
        }
    }
    Ok((out, unreadable))
}

/// Keeps at most `n` keys, picked by a stable hash, in key order.
pub fn bounded_keys(mut keys: Vec<String>, n: usize) -> Vec<String> {
    if keys.len() > n {
        let hash = |k: &str| {
            k.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
                (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
            })
        };
        keys.sort_by_key(|k| hash(k));
        keys.truncate(n);
        keys.sort();
    }
    keys
}

/// One vector per doc. Texts pass the masking of [`agentwire_judge::redact`] (every PII
/// kind) before a remote embedder sees them.
pub async fn embed_docs(embedder: &dyn Embedder, docs: &[Doc]) -> Result<Vec<Sparse>, EmbedError> {
    let texts: Vec<String> = docs
        .iter()
        .map(|d| {
            if embedder.remote() {
                agentwire_judge::redact::redact_text(
                    &d.text,
                    &agentwire_scoring::scorers::rules::PiiKind::ALL,
                )
                .0
            } else {
                d.text.clone()
            }
        })
        .collect();
    let vectors = embedder.embed(&texts).await?;
    if vectors.len() != docs.len() {
        return Err(EmbedError::Refused(format!(
            "{} vectors for {} texts",
            vectors.len(),
            docs.len()
        )));
    }
    Ok(vectors)
}

/// Clusters the docs of each view (embedded by [`embed_docs`]).
pub async fn cluster_views(
    day: &str,
    tenant: &str,
    docs: &BTreeMap<View, Vec<Doc>>,
    embedder: &dyn Embedder,
    previous: &Previous,
    settings: &Settings,
) -> Result<Outcome, EmbedError> {
    let mut outcome = Outcome::default();
    for (view, docs) in docs {
        if docs.is_empty() {
            continue;
        }
        let vectors = embed_docs(embedder, docs).await?;
        let night = Night {
            day: day.to_owned(),
            tenant: tenant.to_owned(),
            view: *view,
            embedding: embedder.name(),
        };
        let one = cluster_night(&night, docs, &vectors, previous, settings);
        outcome.members.extend(one.members);
        outcome.clusters.extend(one.clusters);
    }
    Ok(outcome)
}

/// What runs after a night is saved (the report pages).
#[async_trait]
pub trait AfterNight: Send + Sync {
    async fn clustered(&self, day: &str, tenant: &str);
}

/// The job.
pub struct ClusterJob {
    store: Store,
    embedder: Arc<dyn Embedder>,
    after: Option<Arc<dyn AfterNight>>,
    every: Duration,
}

impl ClusterJob {
    pub fn new(
        archive: Arc<dyn TraceArchive>,
        embedder: Arc<dyn Embedder>,
        after: Option<Arc<dyn AfterNight>>,
        every: Duration,
    ) -> ClusterJob {
        ClusterJob {
            store: Store::new(archive),
            embedder,
            after,
            every,
        }
    }

    async fn settings(&self, tenant: &str) -> Result<ClusterSettings, String> {
        match self
            .store
            .archive
            .get(&ClusterSettings::config_key(tenant))
            .await
        {
            Ok(Some(text)) => ClusterSettings::parse(&String::from_utf8_lossy(&text)),
            Ok(None) => Ok(ClusterSettings::default()),
            Err(e) => Err(e.to_string()),
        }
    }

    /// Clusters one tenant's day (its keys given) and saves it; a line for the report.
    pub async fn night(
        &self,
        day: &str,
        day_ms: i64,
        tenant: &str,
        keys: Vec<String>,
    ) -> Result<String, JobError> {
        let config = self
            .settings(tenant)
            .await
            .map_err(|e| JobError::Permanent(format!("tenant {tenant:?}: clusters.toml: {e}")))?;
        let storage = |e: ArchiveError| JobError::Retryable(e.to_string());
        let total = keys.len();
        let keys = bounded_keys(keys, MAX_TRACES);
        let (docs, unreadable) = read_docs(self.store.archive.as_ref(), &keys, &config.views)
            .await
            .map_err(storage)?;
        let previous = match self.store.previous(day_ms, tenant).await.map_err(storage)? {
            Some((clusters, members)) => Previous { clusters, members },
            None => Previous::default(),
        };
        let outcome = cluster_views(
            day,
            tenant,
            &docs,
            self.embedder.as_ref(),
            &previous,
            &config.settings(self.embedder.as_ref()),
        )
        .await
        .map_err(|e| match e {
            EmbedError::Unavailable(_) => JobError::Retryable(e.to_string()),
            EmbedError::Refused(_) => JobError::Permanent(e.to_string()),
        })?;
        self.store
            .save(day, tenant, &outcome)
            .await
            .map_err(storage)?;
        if let Some(after) = &self.after {
            after.clustered(day, tenant).await;
        }
        let live = outcome.clusters.iter().filter(|c| c.size > 0).count();
        let new = outcome
            .clusters
            .iter()
            .filter(|c| c.status == crate::night::Status::New)
            .count();
        Ok(format!(
            "clustered {day} of tenant {tenant:?}: {} of {total} traces read{}, {live} clusters ({new} new), {}",
            keys.len(),
            if unreadable > 0 {
                format!(" ({unreadable} unreadable)")
            } else {
                String::new()
            },
            self.embedder.name()
        ))
    }
}

#[async_trait]
impl Job for ClusterJob {
    fn name(&self) -> &'static str {
        "clusters"
    }

    fn about(&self) -> &'static str {
        "clusters each tenant's traces of the last whole day, tracks clusters across nights, and writes the report pages"
    }

    fn schedule(&self) -> Schedule {
        Schedule::every(self.every)
    }

    async fn run(&self, now_ms: i64) -> Result<JobReport, JobError> {
        let day_ms = now_ms - DAY_MS;
        let day = utc_day(day_ms);
        let keys = self
            .store
            .archive
            .list(&format!("traces/dt={day}/"))
            .await
            .map_err(|e| JobError::Retryable(e.to_string()))?;
        let mut tenants: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for key in keys {
            if let Some(k) = ObjectKey::parse(&key) {
                tenants.entry(k.tenant).or_default().push(key);
            }
        }
        let mut report = JobReport::default();
        let mut first_error = None;
        for (tenant, keys) in tenants {
            match self.store.archive.get(&clusters_key(&day, &tenant)).await {
                Ok(Some(_)) => continue,
                Ok(None) => {}
                Err(e) => return Err(JobError::Retryable(e.to_string())),
            }
            match self.night(&day, day_ms, &tenant, keys).await {
                Ok(line) => report.details.push(line),
                Err(e) => {
                    warn!(tenant = %tenant, error = %e, "night not clustered");
                    report.details.push(format!("tenant {tenant:?}: {e}"));
                    first_error.get_or_insert(e);
                }
            }
        }
        report.summary = format!("clustered {} tenant nights of {day}", report.details.len());
        match first_error {
            Some(JobError::Retryable(e)) => Err(JobError::Retryable(e)),
            _ => Ok(report),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::embed::LocalTfIdf;

    /// An embedder with no measured epsilon of its own.
    struct ByMeaning;

    #[async_trait::async_trait]
    impl Embedder for ByMeaning {
        fn name(&self) -> String {
            "by-meaning".into()
        }
        fn remote(&self) -> bool {
            true
        }
        async fn embed(&self, _: &[String]) -> Result<Vec<Sparse>, EmbedError> {
            Ok(Vec::new())
        }
    }

    #[test]
    fn bounded_keys_keep_a_stable_subset_in_key_order() {
        let keys: Vec<String> = (0..1000).map(|i| format!("traces/k{i:04}")).collect();
        let kept = bounded_keys(keys.clone(), 100);
        assert_eq!(kept.len(), 100);
        assert!(kept.windows(2).all(|w| w[0] < w[1]), "in key order");
        assert!(kept.iter().all(|k| keys.contains(k)));
        // Not the first 100: a prefix would sample one hour of a day.
        assert_ne!(kept, keys[..100].to_vec());
        let mut shuffled = keys.clone();
        shuffled.reverse();
        assert_eq!(
            bounded_keys(shuffled, 100),
            kept,
            "the same keys whatever the listing order"
        );
        assert_eq!(bounded_keys(keys[..10].to_vec(), 100), keys[..10].to_vec());
    }

    #[test]
    fn epsilon_is_the_embedders_unless_the_tenant_sets_one() {
        let unset = ClusterSettings::parse("min_cluster_size = 4").unwrap();
        assert_eq!(
            unset.settings(&LocalTfIdf).epsilon,
            crate::night::DEFAULT_EPSILON
        );
        assert_eq!(unset.settings(&ByMeaning).epsilon, 0.0);
        let set = ClusterSettings::parse("epsilon = 0.3").unwrap();
        assert_eq!(set.settings(&LocalTfIdf).epsilon, 0.3);
        assert_eq!(set.settings(&ByMeaning).epsilon, 0.3);
        let err = ClusterSettings::parse("epsilon = 3.0").unwrap_err();
        assert!(err.contains("epsilon"), "{err}");
    }
}
