//! Scheduled jobs. A [`Job`] is named, has a [`Schedule`], and does one round of work in
//! [`Job::run`]. On AWS each job is a small Lambda function on an EventBridge schedule
//! (`functions/<job>/`); locally the [`Scheduler`] runs the very same job inside
//! `agentwire dev` on the same schedule, and `agentwire job run <name>` runs one on demand.

use std::sync::Arc;
use std::time::Duration;

use agentwire_session::Clock;
use async_trait::async_trait;
use serde::Serialize;
use tokio::task::JoinHandle;
use tracing::{info, warn};

/// How often a job runs: a fixed rate, as EventBridge's `rate(...)` expressions give it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Schedule {
    every: Duration,
}

impl Schedule {
    /// Every `every` (at least a second).
    pub fn every(every: Duration) -> Schedule {
        Schedule {
            every: every.max(Duration::from_secs(1)),
        }
    }

    /// The time between two runs.
    pub fn period(&self) -> Duration {
        self.every
    }

    /// The schedule as an EventBridge expression (`rate(15 minutes)`), in the largest
    /// whole unit, as `infra/template.yaml` writes it.
    pub fn expression(&self) -> String {
        let secs = self.every.as_secs();
        let (n, unit) = if secs.is_multiple_of(86_400) {
            (secs / 86_400, "day")
        } else if secs.is_multiple_of(3_600) {
            (secs / 3_600, "hour")
        } else if secs.is_multiple_of(60) {
            (secs / 60, "minute")
        } else {
            // EventBridge's finest rate is a minute; local schedules may be finer.
            (secs, "second")
        };
        format!("rate({n} {unit}{})", if n == 1 { "" } else { "s" })
    }
}

/// What one run did, for a person (`agentwire job run`) and for Lambda's response.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct JobReport {
    /// One line: what was done (`archived 2 sessions`).
    pub summary: String,
    /// One line per thing done (the keys written, the sessions expired), never user data.
    pub details: Vec<String>,
}

impl JobReport {
    /// True when the run found nothing to do (the scheduler then logs nothing).
    pub fn is_idle(&self) -> bool {
        self.details.is_empty()
    }
}

/// Why a run failed, and whether running it again could help.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JobError {
    /// Storage or a network was unavailable: the same run may succeed later.
    #[error("{0} (retrying may help)")]
    Retryable(String),
    /// The job cannot succeed as configured or with the data it found.
    #[error("{0}")]
    Permanent(String),
}

impl JobError {
    /// Lambda retries a failed invocation only when this is true.
    pub fn is_retryable(&self) -> bool {
        matches!(self, JobError::Retryable(_))
    }
}

/// A scheduled job: the same value runs on Lambda and inside `agentwire dev`.
#[async_trait]
pub trait Job: Send + Sync {
    /// The name `agentwire job run` takes, and the function's folder (`functions/<name>`).
    fn name(&self) -> &'static str;

    /// One line on what the job does.
    fn about(&self) -> &'static str;

    /// How often it runs.
    fn schedule(&self) -> Schedule;

    /// Does one round of work as of `now_ms` (unix ms). Running it twice is safe: every
    /// job's work is idempotent, since schedules and retries may overlap.
    async fn run(&self, now_ms: i64) -> Result<JobReport, JobError>;
}

/// Runs jobs on their schedules in this process: `agentwire dev`'s EventBridge.
pub struct Scheduler {
    tasks: Vec<JoinHandle<()>>,
}

impl Scheduler {
    /// Starts one task per job; each first runs one period after start, then every period
    /// after the previous run ends (runs of one job never overlap).
    pub fn start(jobs: &[Arc<dyn Job>], clock: Arc<dyn Clock>) -> Scheduler {
        let tasks = jobs
            .iter()
            .map(|job| {
                let (job, clock) = (job.clone(), clock.clone());
                tokio::spawn(async move {
                    let period = job.schedule().period();
                    let mut every =
                        tokio::time::interval_at(tokio::time::Instant::now() + period, period);
                    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                    loop {
                        every.tick().await;
                        match job.run(clock.now_ms()).await {
                            Ok(report) if report.is_idle() => {}
                            Ok(report) => {
                                info!(job = job.name(), summary = %report.summary, "job ran")
                            }
                            Err(e) => warn!(job = job.name(), error = %e, "job failed"),
                        }
                    }
                })
            })
            .collect();
        Scheduler { tasks }
    }

    /// Stops every job's task (a run in progress is cut at its next await).
    pub fn stop(self) {
        for task in self.tasks {
            task.abort();
        }
    }
}

/// The job called `name`, or an error listing the names there are.
pub fn find<'a>(jobs: &'a [Arc<dyn Job>], name: &str) -> Result<&'a Arc<dyn Job>, String> {
    jobs.iter().find(|job| job.name() == name).ok_or_else(|| {
        let names: Vec<_> = jobs.iter().map(|job| job.name()).collect();
        format!("no job called {name:?}; the jobs are: {}", names.join(", "))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    #[test]
    fn schedules_read_as_eventbridge_writes_them() {
        let every = |secs| Schedule::every(Duration::from_secs(secs)).expression();
        assert_eq!(every(60), "rate(1 minute)");
        assert_eq!(every(900), "rate(15 minutes)");
        assert_eq!(every(7200), "rate(2 hours)");
        assert_eq!(every(86_400), "rate(1 day)");
        assert_eq!(every(5), "rate(5 seconds)");
        assert_eq!(
            Schedule::every(Duration::ZERO).period(),
            Duration::from_secs(1)
        );
    }

    struct Counting {
        runs: Mutex<Vec<i64>>,
    }

    #[async_trait]
    impl Job for Counting {
        fn name(&self) -> &'static str {
            "counting"
        }
        fn about(&self) -> &'static str {
            "counts its runs"
        }
        fn schedule(&self) -> Schedule {
            Schedule::every(Duration::from_secs(10))
        }
        async fn run(&self, now_ms: i64) -> Result<JobReport, JobError> {
            self.runs.lock().expect("not poisoned").push(now_ms);
            Ok(JobReport::default())
        }
    }

    struct Fixed;
    impl Clock for Fixed {
        fn now_ms(&self) -> i64 {
            42
        }
    }

    #[tokio::test(start_paused = true)]
    async fn the_scheduler_runs_each_job_once_a_period() {
        let job = Arc::new(Counting {
            runs: Mutex::default(),
        });
        let scheduler = Scheduler::start(&[job.clone() as Arc<dyn Job>], Arc::new(Fixed));
        tokio::time::sleep(Duration::from_secs(5)).await;
        assert!(
            job.runs.lock().unwrap().is_empty(),
            "ran before its first period"
        );
        tokio::time::sleep(Duration::from_secs(31)).await;
        assert_eq!(*job.runs.lock().unwrap(), vec![42, 42, 42]);
        scheduler.stop();
    }

    #[test]
    fn an_unknown_job_lists_the_known_ones() {
        let jobs: Vec<Arc<dyn Job>> = vec![Arc::new(Counting {
            runs: Mutex::default(),
        })];
        assert_eq!(find(&jobs, "counting").unwrap().name(), "counting");
        let err = find(&jobs, "archive").err().unwrap();
        assert!(
            err.contains("\"archive\"") && err.contains("counting"),
            "{err}"
        );
    }

    #[test]
    fn only_retryable_errors_ask_for_a_retry() {
        assert!(JobError::Retryable("s3 timed out".into()).is_retryable());
        assert!(!JobError::Permanent("bad config".into()).is_retryable());
    }
}
