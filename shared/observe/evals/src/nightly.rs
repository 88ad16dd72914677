//! The `evals` job: each tenant's scheduled evals, once a day, and every unfinished run
//! carried on. A tenant schedules evals in `config/tenant=<t>/evals.toml`:
//!
//! ```toml
//! [[eval]]
//! name = "smoke"            # the schedule's name (default: the dataset's)
//! dataset = "smoke"         # its latest version each night, unless `version` is given
//! pattern = "eval-*"        # the sessions the agent under test serves
//! hour = 2                  # runs on the first tick at or after 02:00 UTC (default 0)
//! timeout_ms = 60000
//! concurrency = 8
//! # mode = "replay"         # score the dataset's recorded traces instead
//! ```
//!
//! A day's run of a schedule is claimed with a marker object written once
//! (`runs/tenant=<t>/nightly/<day>/<name>.json`), so overlapping ticks never start it
//! twice. On AWS the job carries runs out itself (a run cut by the function's timeout is
//! resumed by the next tick, from its last item); under `agentwire dev` it hands them to
//! the process's [`Launch`].

use std::sync::Arc;
use std::time::Duration;

use agentwire_jobs::{Job, JobError, JobReport, Schedule};
use agentwire_session::path::{encode_segment, percent_decode};
use agentwire_trace::TraceArchive;
use async_trait::async_trait;
use bytes::Bytes;
use serde::Deserialize;
use tracing::warn;

use crate::run::Mode;
use crate::runner::{EvalError, Launch, NewRun, Runner};
use crate::store::StoreError;

/// How often the job looks for due evals and unfinished runs (the template's schedule).
pub const NIGHTLY_EVERY: Duration = Duration::from_secs(60 * 60);

/// Where a tenant's eval schedule is kept.
pub fn config_key(tenant: &str) -> String {
    format!("config/tenant={}/evals.toml", encode_segment(tenant))
}

/// A tenant's `evals.toml`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EvalSchedule {
    #[serde(default)]
    pub eval: Vec<Scheduled>,
}

/// One scheduled eval.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scheduled {
    #[serde(default)]
    pub name: Option<String>,
    pub dataset: String,
    #[serde(default)]
    pub version: Option<u32>,
    #[serde(default)]
    pub mode: Option<Mode>,
    #[serde(default)]
    pub pattern: Option<String>,
    #[serde(default)]
    pub hour: u8,
    #[serde(default)]
    pub timeout_ms: Option<u64>,
    #[serde(default)]
    pub concurrency: Option<usize>,
    #[serde(default)]
    pub label: Option<String>,
}

impl EvalSchedule {
    /// Reads an `evals.toml`; the error names the line when TOML gives it.
    pub fn parse(text: &str) -> Result<EvalSchedule, String> {
        let schedule: EvalSchedule =
            toml::from_str(text).map_err(|e| e.to_string().trim().to_owned())?;
        let mut names = std::collections::HashSet::new();
        for (i, entry) in schedule.eval.iter().enumerate() {
            if !names.insert(entry.name()) {
                return Err(format!(
                    "eval[{i}]: another eval is named {:?}: give each a name of its own",
                    entry.name()
                ));
            }
            if entry.hour > 23 {
                return Err(format!("eval[{i}].hour must be from 0 to 23"));
            }
            crate::dataset::validate_name("eval name", entry.name())
                .map_err(|e| format!("eval[{i}]: {e}"))?;
        }
        Ok(schedule)
    }
}

impl Scheduled {
    pub fn name(&self) -> &str {
        self.name.as_deref().unwrap_or(&self.dataset)
    }

    fn new_run(&self) -> NewRun {
        let defaults: NewRun = serde_json::from_value(serde_json::json!({"dataset": self.dataset}))
            .expect("a run with a dataset alone is valid");
        NewRun {
            dataset: self.dataset.clone(),
            version: self.version,
            mode: self.mode.unwrap_or(Mode::Live),
            pattern: self.pattern.clone(),
            timeout_ms: self.timeout_ms.unwrap_or(defaults.timeout_ms),
            concurrency: self.concurrency.unwrap_or(defaults.concurrency),
            label: self
                .label
                .clone()
                .or_else(|| Some(format!("nightly {}", self.name()))),
        }
    }
}

/// The job.
pub struct Nightly {
    runner: Arc<Runner>,
    objects: Arc<dyn TraceArchive>,
    /// Hands runs to the process (`agentwire dev`); without it the job runs them itself.
    launch: Option<Arc<dyn Launch>>,
    every: Duration,
}

impl Nightly {
    pub fn new(
        runner: Arc<Runner>,
        objects: Arc<dyn TraceArchive>,
        launch: Option<Arc<dyn Launch>>,
        every: Duration,
    ) -> Nightly {
        Nightly {
            runner,
            objects,
            launch,
            every,
        }
    }

    /// Starts the due scheduled evals of `now_ms`'s day; the details name what was started
    /// and which configurations are invalid.
    async fn start_due(&self, now_ms: i64, report: &mut JobReport) -> Result<(), JobError> {
        let storage = |e: String| JobError::Retryable(e);
        let day = agentwire_trace::utc_day(now_ms);
        let hour = (now_ms.rem_euclid(86_400_000) / 3_600_000) as u8;
        let keys = self
            .objects
            .list("config/tenant=")
            .await
            .map_err(|e| storage(e.0))?;
        for key in keys.iter().filter(|k| k.ends_with("/evals.toml")) {
            let Some(tenant) = key
                .strip_prefix("config/tenant=")
                .and_then(|k| k.strip_suffix("/evals.toml"))
                .and_then(percent_decode)
            else {
                continue;
            };
            let Some(body) = self.objects.get(key).await.map_err(|e| storage(e.0))? else {
                continue;
            };
            let schedule = match std::str::from_utf8(&body)
                .map_err(|_| "not UTF-8".to_owned())
                .and_then(EvalSchedule::parse)
            {
                Ok(schedule) => schedule,
                Err(e) => {
                    report.details.push(format!("{key}: invalid: {e}"));
                    continue;
                }
            };
            for entry in schedule.eval.iter().filter(|e| e.hour <= hour) {
                let marker = format!(
                    "runs/tenant={}/nightly/{day}/{}.json",
                    encode_segment(&tenant),
                    entry.name()
                );
                // The claim names the run it starts: a tick that fails between the claim
                // and the run's creation leaves the claim for the next tick to complete.
                let fresh = crate::runner::run_id(now_ms);
                let claim = Bytes::from(serde_json::json!({"run": fresh}).to_string());
                let claimed = self
                    .objects
                    .put_new(&marker, claim)
                    .await
                    .map_err(|e| storage(e.0))?;
                let id = if claimed {
                    fresh
                } else {
                    let body = self.objects.get(&marker).await.map_err(|e| storage(e.0))?;
                    let named = body
                        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
                        .and_then(|v| v["run"].as_str().map(str::to_owned));
                    let Some(id) = named else { continue };
                    let exists = self.runner.store().run(&tenant, &id).await;
                    if exists.map_err(|e| storage(e.to_string()))?.is_some() {
                        continue;
                    }
                    id
                };
                match self
                    .runner
                    .create_as(&tenant, entry.new_run(), "nightly", Some(&id))
                    .await
                {
                    Ok(run) => {
                        report.details.push(format!(
                            "started run {} of {} for tenant {tenant} ({}@{})",
                            run.spec.id,
                            entry.name(),
                            run.spec.dataset,
                            run.spec.version
                        ));
                    }
                    Err(EvalError::Store(e)) => return Err(storage(e.to_string())),
                    Err(e) => {
                        warn!(tenant = %tenant, eval = entry.name(), error = %e, "scheduled eval not started");
                        report
                            .details
                            .push(format!("{key}: eval {} not started: {e}", entry.name()));
                    }
                }
            }
        }
        Ok(())
    }
}

#[async_trait]
impl Job for Nightly {
    fn name(&self) -> &'static str {
        "evals"
    }

    fn about(&self) -> &'static str {
        "start each tenant's scheduled evals once a day (evals.toml), and carry on unfinished runs"
    }

    fn schedule(&self) -> Schedule {
        Schedule::every(self.every)
    }

    async fn run(&self, now_ms: i64) -> Result<JobReport, JobError> {
        let mut report = JobReport::default();
        self.start_due(now_ms, &mut report).await?;
        let unfinished = self
            .runner
            .store()
            .unfinished()
            .await
            .map_err(|e| JobError::Retryable(e.to_string()))?;
        let mut finished = 0;
        for (tenant, id) in &unfinished {
            match &self.launch {
                Some(launch) => {
                    launch.launch(tenant, id);
                    report
                        .details
                        .push(format!("carrying on run {id} of tenant {tenant}"));
                }
                None => match self.runner.execute(tenant, id, |_, _| {}).await {
                    Ok(run) => {
                        finished += 1;
                        report.details.push(format!(
                            "run {id} of tenant {tenant}: {}",
                            run.status.as_str()
                        ));
                    }
                    Err(EvalError::Store(StoreError::Storage(e))) => {
                        return Err(JobError::Retryable(e));
                    }
                    // A run that cannot go on (damaged, its dataset gone) is reported and
                    // left: it must not hold up every run after it.
                    Err(e) => report
                        .details
                        .push(format!("run {id} of tenant {tenant}: {e}")),
                },
            }
        }
        report.summary = match &self.launch {
            Some(_) => format!("{} eval runs carried on", unfinished.len()),
            None => format!("{finished} of {} eval runs carried out", unfinished.len()),
        };
        Ok(report)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedules_parse_and_name_what_is_wrong() {
        let ok = EvalSchedule::parse("[[eval]]\ndataset = \"a\"\n[[eval]]\nname = \"a-replay\"\ndataset = \"a\"\nmode = \"replay\"\nhour = 3\n").unwrap();
        assert_eq!(ok.eval.len(), 2);
        assert_eq!((ok.eval[1].name(), ok.eval[1].hour), ("a-replay", 3));
        for (text, says) in [
            (
                "[[eval]]\ndataset = \"a\"\n[[eval]]\ndataset = \"a\"\n",
                "another eval is named \"a\"",
            ),
            (
                "[[eval]]\ndataset = \"a\"\nhour = 24\n",
                "hour must be from 0 to 23",
            ),
            ("[[eval]]\ndataset = \"a\"\ncolour = 1\n", "colour"),
            (
                "[[eval]]\nname = \"a b\"\ndataset = \"a\"\n",
                "contains ' '",
            ),
        ] {
            let error = EvalSchedule::parse(text).unwrap_err();
            assert!(error.contains(says), "{text}: {error}");
        }
    }
}
