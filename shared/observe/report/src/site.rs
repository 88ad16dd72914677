//! The nightly report pages of a tenant (`reports/dt=<day>/tenant=<t>/index.html`): scores
//! over the last 30 days with the day's worst traces, the night's clusters (table, map,
//! examples), agreement of graders and scorers per criterion, and the latest eval runs.
//! Self-contained like the run pages: no script, no external file, plots as inline SVG.

use std::collections::BTreeMap;
use std::sync::Arc;

use agentwire_agreement::CriterionAgreement;
use agentwire_cluster::{AfterNight, ClusterRecord, Member, Status, Store as ClusterStore, View};
use agentwire_evals::compare::{DEFAULT_MIN_DELTA, compare};
use agentwire_evals::{EvalStore, Status as RunStatus};
use agentwire_scoring::ScoreRecord;
use agentwire_session::path::encode_segment;
use agentwire_trace::{ArchiveError, TraceArchive, utc_day};
use async_trait::async_trait;
use bytes::Bytes;
use minijinja::{Environment, context};
use serde::{Deserialize, Serialize};
use tracing::warn;

use crate::plots;

const TEMPLATE: &str = include_str!("site.html");

/// Days of scores the page shows.
pub const DAYS: i64 = 30;
/// Scorers a plot draws at most.
pub const PLOTTED: usize = 8;
/// Worst traces listed per scorer and day.
pub const WORST: usize = 3;
/// A score below this fails (as the clusters' failure rates count it).
const FAILING: f64 = agentwire_cluster::FAILING;
const DAY_MS: i64 = 86_400_000;

pub fn page_key(day: &str, tenant: &str) -> String {
    format!(
        "reports/dt={day}/tenant={}/index.html",
        encode_segment(tenant)
    )
}

fn summary_key(day: &str, tenant: &str) -> String {
    format!(
        "reports/dt={day}/tenant={}/scores.json",
        encode_segment(tenant)
    )
}

/// Agreement figures of a tenant's annotation queues (the grading service computes them).
#[async_trait]
pub trait AgreementSource: Send + Sync {
    async fn agreements(&self, tenant: &str) -> Result<Vec<QueueAgreement>, String>;
}

/// One queue's agreement, per criterion.
#[derive(Debug, Clone)]
pub struct QueueAgreement {
    pub queue: String,
    pub criteria: Vec<CriterionAgreement>,
}

/// One scorer's figures on one day.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ScorerDay {
    pub n: usize,
    pub mean: f64,
    /// The range of values: only scores in [0, 1] have a failure rate and are plotted.
    #[serde(default)]
    pub min: f64,
    #[serde(default)]
    pub max: f64,
    pub failure_rate: f64,
    pub worst: Vec<Worst>,
}

/// A low-scoring trace.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Worst {
    pub session: String,
    pub trace_id: String,
    pub value: f64,
    pub explanation: Option<String>,
}

/// A day's figures per score name (kept beside the day's page, so later pages read one
/// object per earlier day instead of every score record).
pub type DaySummary = BTreeMap<String, ScorerDay>;

/// Sums up score records into a day's figures.
pub fn summarise_scores(records: &[ScoreRecord]) -> DaySummary {
    let mut by_name: BTreeMap<String, Vec<&ScoreRecord>> = BTreeMap::new();
    for r in records.iter().filter(|r| r.value.is_finite()) {
        by_name.entry(r.name.clone()).or_default().push(r);
    }
    by_name
        .into_iter()
        .map(|(name, mut rs)| {
            let n = rs.len();
            let mean = rs.iter().map(|r| r.value).sum::<f64>() / n as f64;
            let min = rs.iter().map(|r| r.value).fold(f64::INFINITY, f64::min);
            let max = rs.iter().map(|r| r.value).fold(f64::NEG_INFINITY, f64::max);
            let bounded = (0.0..=1.0).contains(&min)
                && (0.0..=1.0).contains(&max)
                && !agentwire_scoring::is_measurement(&name);
            let failure_rate = if bounded {
                rs.iter().filter(|r| r.value < FAILING).count() as f64 / n as f64
            } else {
                f64::NAN
            };
            rs.sort_by(|a, b| {
                a.value
                    .total_cmp(&b.value)
                    .then(a.trace_id.cmp(&b.trace_id))
            });
            let worst = rs
                .iter()
                .filter(|r| bounded && r.value < FAILING)
                .take(WORST)
                .map(|r| Worst {
                    session: r.session.clone(),
                    trace_id: r.trace_id.clone(),
                    value: r.value,
                    explanation: r.explanation.clone(),
                })
                .collect();
            (
                name,
                ScorerDay {
                    n,
                    mean,
                    min,
                    max,
                    failure_rate,
                    worst,
                },
            )
        })
        .collect()
}

/// The tenant's score records of `day`, read from the archive's `scores/` objects.
async fn day_records(
    archive: &dyn TraceArchive,
    day: &str,
    tenant: &str,
) -> Result<Vec<ScoreRecord>, ArchiveError> {
    let prefix = format!("scores/dt={day}/tenant={}/", encode_segment(tenant));
    let mut out = Vec::new();
    for key in archive.list(&prefix).await? {
        if let Some(bytes) = archive.get(&key).await? {
            match agentwire_scorer::decode_records(&bytes) {
                Ok(records) => out.extend(records),
                Err(e) => warn!(key = %key, error = %e, "score records skipped in the report"),
            }
        }
    }
    Ok(out)
}

/// A day's summary: stored for days before `today` once computed (they are complete).
async fn day_summary(
    archive: &dyn TraceArchive,
    day: &str,
    tenant: &str,
    today: &str,
) -> Result<DaySummary, ArchiveError> {
    let key = summary_key(day, tenant);
    if day != today
        && let Some(bytes) = archive.get(&key).await?
        && let Ok(summary) = serde_json::from_slice::<DaySummary>(&bytes)
    {
        return Ok(summary);
    }
    let summary = summarise_scores(&day_records(archive, day, tenant).await?);
    if !summary.is_empty() {
        archive
            .put(
                &key,
                Bytes::from(serde_json::to_vec(&summary).unwrap_or_default()),
            )
            .await?;
    }
    Ok(summary)
}

#[derive(Serialize)]
struct ScorerRow {
    name: String,
    n: usize,
    mean: String,
    failure_rate: String,
    trend: String,
    worst: Vec<Worst>,
}

#[derive(Serialize)]
struct ClusterRow {
    id: String,
    label: String,
    summary: Option<String>,
    size: usize,
    failure_rate: String,
    change: String,
    new: bool,
    gone: bool,
    trend: String,
    terms: String,
    scores: String,
    examples: Vec<agentwire_cluster::Representative>,
}

#[derive(Serialize)]
struct ViewSection {
    view: &'static str,
    title: &'static str,
    traces: usize,
    sampled: usize,
    noise: usize,
    embedding: String,
    clusters: Vec<ClusterRow>,
    map: String,
}

#[derive(Serialize)]
struct AgreementRow {
    queue: String,
    criterion: String,
    who: String,
    statistic: &'static str,
    value: String,
    interval: String,
    items: usize,
    verdict: String,
}

#[derive(Serialize)]
struct RunRow {
    id: String,
    dataset: String,
    mode: String,
    status: String,
    created: String,
    items: usize,
    headline: String,
}

#[derive(Serialize)]
struct CompareRow {
    measure: String,
    a: String,
    b: String,
    delta: String,
    p: String,
    worse: usize,
    better: usize,
}

fn pct(v: f64) -> String {
    if v.is_finite() {
        format!("{:.1} %", 100.0 * v)
    } else {
        "–".into()
    }
}

fn num(v: f64) -> String {
    if v.is_finite() {
        format!("{v:.3}")
    } else {
        "–".into()
    }
}

fn estimate(e: &agentwire_agreement::Estimate) -> (String, String) {
    let value = e.value.map_or_else(
        || {
            e.reason
                .as_ref()
                .map_or("undefined".into(), |r| format!("undefined ({r:?})"))
        },
        num,
    );
    let interval = e.ci.as_ref().map_or_else(
        || "–".into(),
        |ci| format!("{} to {}", num(ci.low), num(ci.high)),
    );
    (value, interval)
}

fn cluster_section(
    view: View,
    clusters: &[ClusterRecord],
    members: &[Member],
) -> Option<ViewSection> {
    let of_view: Vec<&ClusterRecord> = clusters.iter().filter(|c| c.view == view).collect();
    let members: Vec<&Member> = members.iter().filter(|m| m.view == view).collect();
    let first = of_view.first()?;
    let mut rows: Vec<&ClusterRecord> = of_view.clone();
    // Live clusters by size, gone ones last.
    rows.sort_by(|a, b| {
        (a.status == Status::Gone)
            .cmp(&(b.status == Status::Gone))
            .then(b.size.cmp(&a.size))
            .then(a.id.cmp(&b.id))
    });
    let map_clusters: Vec<&ClusterRecord> = rows.iter().filter(|c| c.size > 0).copied().collect();
    let map = plots::cluster_map(&map_clusters, &members);
    Some(ViewSection {
        view: view.as_str(),
        title: match view {
            View::Requests => "What people asked for",
            View::Failures => "How traces failed",
        },
        traces: first.traces,
        sampled: first.sampled,
        noise: members.iter().filter(|m| m.cluster.is_none()).count(),
        embedding: first.embedding.clone(),
        map,
        clusters: rows
            .iter()
            .map(|c| ClusterRow {
                id: c.id.clone(),
                label: c.label.clone(),
                summary: c.summary.clone(),
                size: c.size,
                failure_rate: pct(c.failure_rate),
                change: match (&c.previous, c.status) {
                    (_, Status::New) => "new tonight".into(),
                    (Some(p), _) => {
                        let d = c.size as i64 - p.size as i64;
                        format!(
                            "{}{d} traces, failures {} → {}",
                            if d >= 0 { "+" } else { "" },
                            pct(p.failure_rate),
                            pct(c.failure_rate)
                        )
                    }
                    (None, _) => "–".into(),
                },
                new: c.status == Status::New,
                gone: c.status == Status::Gone,
                trend: plots::sparkline(
                    &c.history.iter().map(|h| h.size as f64).collect::<Vec<_>>(),
                    &format!(
                        "Size of cluster {} over the last {} nights",
                        c.label,
                        c.history.len()
                    ),
                ),
                terms: c.terms.join(", "),
                scores: c
                    .scores
                    .iter()
                    .map(|(n, v)| format!("{n} {v:.2}"))
                    .collect::<Vec<_>>()
                    .join(", "),
                examples: c.representatives.clone(),
            })
            .collect(),
    })
}

/// Renders and stores the tenant's page of `day`; returns its key.
pub async fn write_site(
    archive: Arc<dyn TraceArchive>,
    agreements: Option<&dyn AgreementSource>,
    day: &str,
    tenant: &str,
) -> Result<String, ArchiveError> {
    let html = render_site(archive.clone(), agreements, day, tenant).await?;
    let key = page_key(day, tenant);
    archive.put(&key, Bytes::from(html)).await?;
    Ok(key)
}

fn day_ms(day: &str) -> Option<i64> {
    let format = time::macros::format_description!("[year]-[month]-[day]");
    let date = time::Date::parse(day, &format).ok()?;
    Some(date.midnight().assume_utc().unix_timestamp() * 1000)
}

/// The page of `day` for `tenant`.
pub async fn render_site(
    archive: Arc<dyn TraceArchive>,
    agreements: Option<&dyn AgreementSource>,
    day: &str,
    tenant: &str,
) -> Result<String, ArchiveError> {
    let at = day_ms(day).ok_or_else(|| ArchiveError(format!("not a day: {day:?}")))?;
    // Scores over the last 30 days.
    let mut days = Vec::new();
    for back in (0..DAYS).rev() {
        let d = utc_day(at - back * DAY_MS);
        let summary = day_summary(archive.as_ref(), &d, tenant, day).await?;
        days.push((d, summary));
    }
    let names: Vec<String> = {
        let mut n: Vec<String> = days.iter().flat_map(|(_, s)| s.keys().cloned()).collect();
        n.sort();
        n.dedup();
        n
    };
    let today = days.last().map(|(_, s)| s.clone()).unwrap_or_default();
    let scorer_rows: Vec<ScorerRow> = names
        .iter()
        .map(|name| {
            let t = today.get(name);
            ScorerRow {
                name: name.clone(),
                n: t.map_or(0, |t| t.n),
                mean: t.map_or("–".into(), |t| num(t.mean)),
                failure_rate: t.map_or("–".into(), |t| pct(t.failure_rate)),
                trend: plots::sparkline(
                    &days
                        .iter()
                        .map(|(_, s)| s.get(name).map_or(f64::NAN, |x| x.failure_rate))
                        .collect::<Vec<_>>(),
                    &format!("Daily failure rate of {name} over the last {DAYS} days"),
                ),
                worst: t.map(|t| t.worst.clone()).unwrap_or_default(),
            }
        })
        .collect();
    // Plotted: scores in [0, 1] on every day they have; the headline ones (no `.` in the
    // name) when there are many, so the legend stays readable.
    let bounded: Vec<&String> = names
        .iter()
        .filter(|n| !agentwire_scoring::is_measurement(n))
        .filter(|n| {
            days.iter()
                .filter_map(|(_, s)| s.get(*n))
                .all(|d| d.min >= 0.0 && d.max <= 1.0)
        })
        .collect();
    let headline: Vec<&String> = bounded
        .iter()
        .copied()
        .filter(|n| !n.contains('.'))
        .collect();
    let plotted: Vec<&String> = if bounded.len() > PLOTTED && !headline.is_empty() {
        headline.into_iter().take(PLOTTED).collect()
    } else {
        bounded.into_iter().take(PLOTTED).collect()
    };
    let series = |f: fn(&ScorerDay) -> f64| -> Vec<(String, Vec<f64>)> {
        plotted
            .iter()
            .map(|n| {
                (
                    (*n).clone(),
                    days.iter()
                        .map(|(_, s)| s.get(*n).map_or(f64::NAN, f))
                        .collect(),
                )
            })
            .collect()
    };
    let labels: Vec<String> = days.iter().map(|(d, _)| d[5..].to_owned()).collect();
    let means_plot = plots::daily(&labels, &series(|s| s.mean), "Daily mean score per scorer");
    let failures_plot = plots::daily(
        &labels,
        &series(|s| s.failure_rate),
        "Daily failure rate per scorer",
    );
    let scored_days = days.iter().filter(|(_, s)| !s.is_empty()).count();

    // Clusters of the night.
    let clusters = ClusterStore::new(archive.clone())
        .night(day, tenant)
        .await?;
    let sections: Vec<ViewSection> = match &clusters {
        Some((c, m)) => View::ALL
            .iter()
            .filter_map(|v| cluster_section(*v, c, m))
            .collect(),
        None => Vec::new(),
    };

    // Agreement.
    let mut agreement_rows = Vec::new();
    let mut agreement_error = None;
    if let Some(source) = agreements {
        match source.agreements(tenant).await {
            Ok(queues) => {
                for q in queues {
                    for c in q.criteria {
                        let (value, interval) = estimate(&c.krippendorff_alpha);
                        agreement_rows.push(AgreementRow {
                            queue: q.queue.clone(),
                            criterion: c.criterion.clone(),
                            who: format!("{} graders", c.graders),
                            statistic: "Krippendorff's α",
                            value,
                            interval,
                            items: c.pairable_items,
                            verdict: String::new(),
                        });
                        for s in &c.scorers {
                            let (value, interval) = estimate(&s.vs_consensus);
                            agreement_rows.push(AgreementRow {
                                queue: q.queue.clone(),
                                criterion: c.criterion.clone(),
                                who: format!("scorer {}", s.scorer),
                                statistic: "κ with the graders' consensus",
                                value,
                                interval,
                                items: s.items,
                                verdict: match s.trusted {
                                    Some(true) => "agrees as well as a grader".into(),
                                    Some(false) => "agrees less than the graders do".into(),
                                    None => "not enough data".into(),
                                },
                            });
                        }
                    }
                }
            }
            Err(e) => agreement_error = Some(e),
        }
    }

    // Evals.
    let evals = EvalStore::new(archive.clone());
    let mut runs = Vec::new();
    for id in evals
        .run_ids(tenant)
        .await
        .map_err(|e| ArchiveError(e.to_string()))?
    {
        if let Some(run) = evals
            .run(tenant, &id)
            .await
            .map_err(|e| ArchiveError(e.to_string()))?
        {
            runs.push(run);
        }
    }
    runs.sort_by(|a, b| (b.spec.created_ms, &b.spec.id).cmp(&(a.spec.created_ms, &a.spec.id)));
    let run_rows: Vec<RunRow> = runs
        .iter()
        .take(10)
        .map(|r| RunRow {
            id: r.spec.id.clone(),
            dataset: format!("{}@{}", r.spec.dataset, r.spec.version),
            mode: format!("{:?}", r.spec.mode).to_lowercase(),
            status: r.status.as_str().to_owned(),
            created: crate::day_time(r.spec.created_ms),
            items: r.items,
            headline: r
                .summary
                .as_ref()
                .map(|s| {
                    s.metrics
                        .iter()
                        .filter(|m| !agentwire_evals::run::lower_is_better(&m.name))
                        .take(3)
                        .map(|m| format!("{} {}", m.name, num(m.mean)))
                        .collect::<Vec<_>>()
                        .join(", ")
                })
                .unwrap_or_default(),
        })
        .collect();
    // The latest finished run against the previous finished run of its dataset and mode.
    let finished: Vec<_> = runs
        .iter()
        .filter(|r| r.status == RunStatus::Finished)
        .collect();
    let mut comparison = None;
    if let Some(latest) = finished.first()
        && let Some(before) = finished
            .iter()
            .skip(1)
            .find(|r| r.spec.dataset == latest.spec.dataset && r.spec.mode == latest.spec.mode)
    {
        let a_items = evals
            .items(tenant, &before.spec.id)
            .await
            .map_err(|e| ArchiveError(e.to_string()))?;
        let b_items = evals
            .items(tenant, &latest.spec.id)
            .await
            .map_err(|e| ArchiveError(e.to_string()))?;
        let c = compare(before, &a_items, latest, &b_items, DEFAULT_MIN_DELTA);
        let rows: Vec<CompareRow> = c
            .measures
            .iter()
            .map(|m| CompareRow {
                measure: m.name.clone(),
                a: num(m.a.mean),
                b: num(m.b.mean),
                delta: num(m.delta),
                p: num(m.p),
                worse: m.regressions.len(),
                better: m.improvements.len(),
            })
            .collect();
        comparison = Some((before.spec.id.clone(), latest.spec.id.clone(), rows));
    }

    let mut env = Environment::new();
    env.add_template("site.html", TEMPLATE)
        .expect("the site template parses");
    let page = env
        .get_template("site.html")
        .expect("just added")
        .render(context! {
            day,
            tenant,
            scored_days,
            scorers => scorer_rows,
            plotted => plotted.len(),
            means_plot,
            failures_plot,
            clustered => clusters.is_some(),
            sections,
            agreements => agreement_rows,
            agreement_error,
            has_agreement_source => agreements.is_some(),
            runs => run_rows,
            comparison => comparison.as_ref().map(|(a, b, rows)| context! { a, b, rows }),
        })
        .unwrap_or_else(|e| {
            format!(
                "<!doctype html><title>report</title><p>The report could not be rendered: {e}</p>"
            )
        });
    Ok(page)
}

/// Writes the pages after each clustered night.
pub struct SiteReports {
    archive: Arc<dyn TraceArchive>,
    agreements: Option<Arc<dyn AgreementSource>>,
}

impl SiteReports {
    pub fn new(
        archive: Arc<dyn TraceArchive>,
        agreements: Option<Arc<dyn AgreementSource>>,
    ) -> SiteReports {
        SiteReports {
            archive,
            agreements,
        }
    }
}

#[async_trait]
impl AfterNight for SiteReports {
    async fn clustered(&self, day: &str, tenant: &str) {
        if let Err(e) = write_site(
            self.archive.clone(),
            self.agreements.as_deref(),
            day,
            tenant,
        )
        .await
        {
            warn!(day, error = %e, "report pages not written");
        }
    }
}
