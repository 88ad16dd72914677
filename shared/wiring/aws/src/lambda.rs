//! Jobs on Lambda: the events that invoke them and what their outcomes tell Lambda.
//!
//! A failed invocation is retried by Lambda (asynchronous invocations from EventBridge
//! twice; stream batches up to the source's `MaximumRetryAttempts`, bisected), which only
//! helps when the failure can pass. So a [`JobError::Retryable`] fails the invocation, and
//! a [`JobError::Permanent`] one is logged and answered, so the same doomed run is not
//! repeated.

use agentwire_archive::Archiver;
use agentwire_jobs::{Job, JobError, JobReport};
use agentwire_session::{Clock, SessionChange, SystemClock};
use aws_lambda_events::dynamodb::Event as StreamEvent;
use aws_lambda_events::eventbridge::EventBridgeEvent;
use lambda_runtime::{Diagnostic, LambdaEvent, service_fn};
use serde_json::{Value, json};
use tracing::error;

/// What invoked the archiver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ArchiverEvent {
    /// A batch of the session table's stream, as the changes it tells.
    Changes(Vec<SessionChange>),
    /// The schedule: the idle sweep.
    Schedule,
}

impl ArchiverEvent {
    /// Tells the two event shapes apart; anything else is refused with what it was.
    pub fn parse(event: Value) -> Result<ArchiverEvent, String> {
        if event.get("Records").is_some() {
            let event: StreamEvent = serde_json::from_value(event)
                .map_err(|e| format!("not a DynamoDB Stream event: {e}"))?;
            return Ok(ArchiverEvent::Changes(agentwire_dynamo::session_changes(
                &event,
            )));
        }
        if event.get("detail-type").is_some() {
            let _: EventBridgeEvent = serde_json::from_value(event)
                .map_err(|e| format!("not an EventBridge event: {e}"))?;
            return Ok(ArchiverEvent::Schedule);
        }
        Err(
            "expected a DynamoDB Stream event (Records) or an EventBridge schedule (detail-type)"
                .into(),
        )
    }
}

/// The Lambda's answer to a job's run: its report, or a failure Lambda retries.
pub fn outcome(job: &str, result: Result<JobReport, JobError>) -> Result<Value, Diagnostic> {
    match result {
        Ok(report) => {
            Ok(json!({ "job": job, "summary": report.summary, "details": report.details }))
        }
        Err(e) if e.is_retryable() => Err(Diagnostic {
            error_type: "Retryable".into(),
            error_message: e.to_string(),
        }),
        Err(e) => {
            error!(job, error = %e, "the job failed and retrying cannot help");
            Ok(json!({ "job": job, "error": e.to_string() }))
        }
    }
}

/// One archiver invocation: a stream batch archives what closed and remembers what was
/// active; the schedule runs the idle sweep.
pub async fn archive(archiver: &Archiver, event: Value) -> Result<Value, Diagnostic> {
    let event = ArchiverEvent::parse(event).map_err(|message| Diagnostic {
        error_type: "BadEvent".into(),
        error_message: message,
    })?;
    let result = match event {
        // An error fails the whole batch, so the stream retries (and bisects) it.
        ArchiverEvent::Changes(changes) => archiver
            .on_changes(changes)
            .await
            .map(|report| report.to_job_report())
            .map_err(agentwire_archive::job_error),
        ArchiverEvent::Schedule => archiver.run(SystemClock.now_ms()).await,
    };
    outcome(archiver.name(), result)
}

/// Serves `job` on Lambda: every invocation (its EventBridge schedule) is one run.
pub async fn serve_job(job: &dyn Job) -> Result<(), lambda_runtime::Error> {
    lambda_runtime::run(service_fn(|_: LambdaEvent<Value>| async move {
        outcome(job.name(), job.run(SystemClock.now_ms()).await)
    }))
    .await
}

/// Serves the archiver on Lambda: its stream batches and its schedule.
pub async fn serve_archiver(archiver: &Archiver) -> Result<(), lambda_runtime::Error> {
    lambda_runtime::run(service_fn(|event: LambdaEvent<Value>| {
        archive(archiver, event.payload)
    }))
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_retryable_failures_fail_the_invocation() {
        let retry = outcome("x", Err(JobError::Retryable("s3 is down".into()))).unwrap_err();
        assert_eq!(retry.error_type, "Retryable");
        assert!(retry.error_message.contains("s3 is down"));
        let answered = outcome("x", Err(JobError::Permanent("no such table".into()))).unwrap();
        assert_eq!(answered["error"], "no such table");
        let ok = outcome(
            "x",
            Ok(JobReport {
                summary: "did 1".into(),
                details: vec!["one".into()],
            }),
        )
        .unwrap();
        assert_eq!(ok["details"][0], "one");
    }
}

#[cfg(test)]
mod schedule {
    /// The template's schedule for the archiver is the job's own default.
    #[test]
    fn the_template_schedules_the_archiver_as_the_job_does() {
        let path = format!(
            "{}/../../../infra/template.yaml",
            env!("CARGO_MANIFEST_DIR")
        );
        let template = std::fs::read_to_string(&path).expect("the template");
        let archiver = &template[template
            .find("  ArchiverFunction:")
            .expect("ArchiverFunction")..];
        let schedule = archiver
            .lines()
            .find_map(|line| line.trim().strip_prefix("Schedule: "))
            .expect("a Schedule event");
        let job = agentwire_jobs::Schedule::every(agentwire_archive::SWEEP_EVERY);
        assert_eq!(schedule, job.expression());
    }
}
