//! Reports for people who would rather look than read: self-contained HTML pages (no
//! script, no external file; plots as inline SVG), readable on a tablet and with the
//! keyboard.
//!
//! [`RunReports`] writes each eval run's page as it finishes, beside its results
//! (`runs/tenant=<t>/<run>/report.html`): what was run, how many items answered, each
//! measure's mean with its interval against the previous finished run of the same dataset
//! and mode (the baseline), the trend of the headline measures over the last runs, the
//! items that got worse or better, and every item's result.

mod plots;
pub mod site;

use std::collections::BTreeMap;

use agentwire_evals::compare::{Comparison, DEFAULT_MIN_DELTA, compare};
use agentwire_evals::run::lower_is_better;
use agentwire_evals::{AfterRun, EvalStore, ItemResult, ItemStatus, Run, Status, StoreError};
use async_trait::async_trait;
use minijinja::{Environment, context};
use serde::Serialize;
use tracing::warn;

/// Finished runs of a dataset a report's trend shows, at most.
pub const HISTORY: usize = 20;

const TEMPLATE: &str = include_str!("run.html");

/// Writes each finished run's report.
pub struct RunReports;

#[async_trait]
impl AfterRun for RunReports {
    async fn finished(&self, store: &EvalStore, run: &Run) {
        if let Err(e) = write_report(store, run).await {
            warn!(run = %run.spec.id, error = %e, "eval report not written");
        }
    }
}

/// Renders and stores the report of `run` (finished), reading its baseline and history.
pub async fn write_report(store: &EvalStore, run: &Run) -> Result<(), StoreError> {
    let tenant = &run.spec.tenant;
    let items = store.items(tenant, &run.spec.id).await?;
    // Runs of this dataset and mode finished before or with this one, by creation time
    // (ids of one millisecond tie: the id breaks it).
    let mut history = Vec::new();
    for id in store.run_ids(tenant).await? {
        let Some(other) = store.run(tenant, &id).await? else {
            continue;
        };
        let before = (other.spec.created_ms, &other.spec.id) <= (run.spec.created_ms, &run.spec.id);
        if before
            && other.status == Status::Finished
            && other.spec.dataset == run.spec.dataset
            && other.spec.mode == run.spec.mode
        {
            history.push(if other.spec.id == run.spec.id {
                run.clone()
            } else {
                other
            });
        }
    }
    history.sort_by(|a, b| (a.spec.created_ms, &a.spec.id).cmp(&(b.spec.created_ms, &b.spec.id)));
    let history: Vec<Run> = history.split_off(history.len().saturating_sub(HISTORY));
    let baseline = match history.iter().rev().nth(1) {
        Some(previous) => {
            let previous_items = store.items(tenant, &previous.spec.id).await?;
            Some(compare(
                previous,
                &previous_items,
                run,
                &items,
                DEFAULT_MIN_DELTA,
            ))
        }
        None => None,
    };
    let html = render(run, &items, baseline.as_ref(), &history);
    store.save_report(tenant, &run.spec.id, html).await
}

#[derive(Serialize)]
struct Row {
    name: String,
    n: usize,
    mean: String,
    ci: String,
    baseline: Option<String>,
    delta: Option<String>,
    p: Option<String>,
    worse: Option<usize>,
    better: Option<usize>,
    unit: &'static str,
}

#[derive(Serialize)]
struct ChangeRow {
    measure: String,
    item: String,
    before: String,
    after: String,
    before_trace: String,
    after_trace: String,
}

#[derive(Serialize)]
struct ItemRow {
    id: String,
    status: &'static str,
    error: String,
    session: String,
    trace: String,
    values: Vec<String>,
}

fn figure(value: f64) -> String {
    if value.is_nan() {
        "–".into()
    } else if value.abs() >= 10.0 {
        format!("{value:.0}")
    } else {
        format!("{value:.3}")
    }
}

/// The report page of `run`: its items, the comparison with its baseline, its history
/// (oldest first, ending with `run`).
pub fn render(
    run: &Run,
    items: &[ItemResult],
    baseline: Option<&Comparison>,
    history: &[Run],
) -> String {
    let summary = run.summary.clone().unwrap_or_default();
    let rows: Vec<Row> = summary
        .metrics
        .iter()
        .map(|metric| {
            let compared = baseline.and_then(|c| c.measure(&metric.name));
            Row {
                name: metric.name.clone(),
                n: metric.n,
                mean: figure(metric.mean),
                ci: format!("{} – {}", figure(metric.ci.low), figure(metric.ci.high)),
                baseline: compared.map(|m| figure(m.a.mean)),
                delta: compared.map(|m| format!("{:+.3}", m.delta)),
                p: compared.map(|m| format!("{:.3}", m.p)),
                worse: compared.map(|m| m.regressions.len()),
                better: compared.map(|m| m.improvements.len()),
                unit: if lower_is_better(&metric.name) {
                    "lower is better"
                } else {
                    ""
                },
            }
        })
        .collect();
    let changes = |worse: bool| -> Vec<ChangeRow> {
        baseline
            .into_iter()
            .flat_map(|c| c.measures.iter())
            .filter(|m| !m.lower_is_better)
            .flat_map(|m| {
                let list = if worse {
                    &m.regressions
                } else {
                    &m.improvements
                };
                list.iter().map(move |change| ChangeRow {
                    measure: m.name.clone(),
                    item: change.item.clone(),
                    before: figure(change.a),
                    after: figure(change.b),
                    before_trace: change.a_trace.clone().unwrap_or_default(),
                    after_trace: change.b_trace.clone().unwrap_or_default(),
                })
            })
            .collect()
    };
    // The item table shows the measures every report reader looks for first.
    let columns: Vec<String> = summary
        .metrics
        .iter()
        .map(|m| m.name.clone())
        .filter(|name| headline(name))
        .collect();
    let item_rows: Vec<ItemRow> = items
        .iter()
        .map(|result| {
            let values = result.values();
            ItemRow {
                id: result.item.clone(),
                status: match result.status {
                    ItemStatus::Answered => "answered",
                    ItemStatus::Timeout => "timed out",
                    ItemStatus::Error => "error",
                },
                error: result.error.clone().unwrap_or_default(),
                session: result.session.clone().unwrap_or_default(),
                trace: result.trace_id.clone().unwrap_or_default(),
                values: columns
                    .iter()
                    .map(|c| {
                        values
                            .get(c)
                            .map(|v| figure(*v))
                            .unwrap_or_else(|| "–".into())
                    })
                    .collect(),
            }
        })
        .collect();
    let trend: Vec<(String, BTreeMap<String, f64>)> = history
        .iter()
        .map(|r| {
            let means = r
                .summary
                .iter()
                .flat_map(|s| s.metrics.iter())
                .filter(|m| headline(&m.name))
                .map(|m| (m.name.clone(), m.mean))
                .collect();
            (r.spec.id.clone(), means)
        })
        .collect();
    let mut env = Environment::new();
    env.add_template("run.html", TEMPLATE)
        .expect("the report template parses");
    let page = env
        .get_template("run.html")
        .expect("just added")
        .render(context! {
            run => &run.spec,
            status => run.status.as_str(),
            items => run.items,
            summary => &summary,
            created => day_time(run.spec.created_ms),
            baseline => baseline.map(|c| c.a.clone()),
            rows => rows,
            regressions => changes(true),
            improvements => changes(false),
            columns => columns,
            item_rows => item_rows,
            measures_plot => plots::measures(&summary, baseline),
            trend_plot => (trend.len() > 1).then(|| plots::trend(&trend)),
            trend_runs => trend.len(),
        });
    page.unwrap_or_else(|e| {
        format!("<!doctype html><title>report</title><p>the report could not be rendered: {e}</p>")
    })
}

/// The measures a reader looks at first: whether items were answered, the reference
/// scorers, tool use and groundedness (not every rule and sub-measure).
fn headline(name: &str) -> bool {
    name == agentwire_evals::run::ANSWERED
        || name.starts_with("reference.")
        || name == "tool_use"
        || name == "tool_use.expected_actions"
        || name == "groundedness"
        || name == "conversation"
}

pub(crate) fn day_time(ms: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(ms.div_euclid(1000))
        .map(|t| {
            format!(
                "{:04}-{:02}-{:02} {:02}:{:02} UTC",
                t.year(),
                u8::from(t.month()),
                t.day(),
                t.hour(),
                t.minute()
            )
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests;
