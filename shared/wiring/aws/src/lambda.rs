//! Jobs on Lambda: the events that invoke them and what their outcomes tell Lambda.
//!
//! A failed invocation is retried by Lambda (asynchronous invocations from EventBridge
//! twice; stream batches up to the source's `MaximumRetryAttempts`, bisected), which only
//! helps when the failure can pass. So a [`JobError::Retryable`] fails the invocation, and
//! a [`JobError::Permanent`] one is logged and answered, so the same doomed run is not
//! repeated.

use std::sync::Arc;

use agentwire_archive::Archiver;
use agentwire_jobs::{Job, JobError, JobReport};
use agentwire_judge::job::JudgeJob;
use agentwire_scorer::{RESCORE_EVERY, Rescore, ScorerJob};
use agentwire_session::{Clock, SessionChange, SystemClock};
use aws_lambda_events::dynamodb::Event as StreamEvent;
use aws_lambda_events::eventbridge::EventBridgeEvent;
use aws_lambda_events::s3::S3Event;
use aws_lambda_events::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent};
use lambda_runtime::{Diagnostic, LambdaEvent, service_fn};
use serde_json::{Value, json};
use tracing::{error, info, warn};

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

/// How long one scheduled invocation of the dispatch function sweeps: EventBridge
/// schedules run at most every minute, and leases are seconds long, so each invocation
/// sweeps every [`SWEEP_EVERY`] until the next one is about to start.
pub const SWEEP_FOR: std::time::Duration = std::time::Duration::from_secs(55);
pub const SWEEP_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

/// What invoked the dispatch function.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DispatchEvent {
    /// A batch of the session table's stream: subscriptions as they were and are.
    Changes(
        Vec<(
            Option<agentwire_dispatch::Subscription>,
            agentwire_dispatch::Subscription,
        )>,
    ),
    /// The schedule: sweep expired leases and due retries.
    Schedule,
}

impl DispatchEvent {
    /// Tells the two event shapes apart; anything else is refused with what it was.
    pub fn parse(event: Value) -> Result<DispatchEvent, String> {
        if event.get("Records").is_some() {
            let event: StreamEvent = serde_json::from_value(event)
                .map_err(|e| format!("not a DynamoDB Stream event: {e}"))?;
            return Ok(DispatchEvent::Changes(
                agentwire_dynamo::subscription_changes(&event),
            ));
        }
        if event.get("detail-type").is_some() {
            let _: EventBridgeEvent = serde_json::from_value(event)
                .map_err(|e| format!("not an EventBridge event: {e}"))?;
            return Ok(DispatchEvent::Schedule);
        }
        Err(
            "expected a DynamoDB Stream event (Records) or an EventBridge schedule (detail-type)"
                .into(),
        )
    }
}

/// One invocation of the dispatch function: the wakes a batch asked for sent (a failed
/// send is the subscription's scheduled retry, not the batch's; one never answered is
/// woken again when its lease runs out), or a minute of sweeping.
pub async fn dispatch(
    dispatch: &Arc<agentwire_dispatch::Dispatch>,
    sessions: &agentwire_session::Sessions,
    event: Value,
) -> Result<Value, Diagnostic> {
    let event = DispatchEvent::parse(event).map_err(|message| Diagnostic {
        error_type: "BadEvent".into(),
        error_message: message,
    })?;
    match event {
        DispatchEvent::Changes(changes) => {
            let sends = changes.len();
            futures_util::future::join_all(
                changes
                    .iter()
                    .map(|(old, new)| dispatch.send_changed(sessions, old.as_ref(), new)),
            )
            .await;
            Ok(json!({ "job": "dispatch", "changes": sends }))
        }
        DispatchEvent::Schedule => {
            let until = tokio::time::Instant::now() + SWEEP_FOR;
            let mut sweeps = 0;
            while tokio::time::Instant::now() < until {
                if let Err(e) = dispatch.sweep(sessions).await {
                    warn!(error = %e, "subscription sweep failed");
                }
                sweeps += 1;
                tokio::time::sleep(SWEEP_EVERY).await;
            }
            Ok(json!({ "job": "dispatch", "sweeps": sweeps }))
        }
    }
}

/// Serves the dispatch function on Lambda: its stream batches and its schedule.
pub async fn serve_dispatch(
    dispatch: Arc<agentwire_dispatch::Dispatch>,
    sessions: agentwire_session::Sessions,
) -> Result<(), lambda_runtime::Error> {
    lambda_runtime::run(service_fn(|event: LambdaEvent<Value>| {
        let (dispatch, sessions) = (dispatch.clone(), sessions.clone());
        async move { self::dispatch(&dispatch, &sessions, event.payload).await }
    }))
    .await
}

/// What invoked the scorer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScorerEvent {
    /// New objects: from S3 event notifications (`Records`, keys URL-encoded), or S3's
    /// `Object Created` event through EventBridge (the template's route; its key is the
    /// object's name as is). The keys of the objects created, and why any record of the
    /// batch carried no usable key.
    Created {
        keys: Vec<String>,
        refused: Vec<String>,
    },
    /// The schedule: the nightly re-score of the day that ended.
    Schedule,
}

/// An S3 event's object key as the object is named: S3 sends it URL-encoded, with `+`
/// for a space (so a literal `+` arrives as `%2B`).
pub fn decode_s3_key(key: &str) -> Result<String, String> {
    let spaced = key.replace('+', " ");
    percent_encoding::percent_decode_str(&spaced)
        .decode_utf8()
        .map(|key| key.into_owned())
        .map_err(|_| format!("the S3 key {key:?} does not decode to UTF-8"))
}

impl ScorerEvent {
    /// Tells the two event shapes apart; anything else is refused with what it was.
    pub fn parse(event: Value) -> Result<ScorerEvent, String> {
        if event.get("Records").is_some() {
            let event: S3Event = serde_json::from_value(event)
                .map_err(|e| format!("not an S3 event notification: {e}"))?;
            let (mut keys, mut refused) = (Vec::new(), Vec::new());
            for (i, record) in event.records.iter().enumerate() {
                let name = record.event_name.as_deref().unwrap_or_default();
                // Deletes (and tests S3 sends when a notification is set up) score nothing.
                if !name.starts_with("ObjectCreated:") {
                    continue;
                }
                match record.s3.object.key.as_deref().map(decode_s3_key) {
                    Some(Ok(key)) => keys.push(key),
                    Some(Err(reason)) => refused.push(format!("record {i}: {reason}")),
                    None => refused.push(format!("record {i}: no object key")),
                }
            }
            return Ok(ScorerEvent::Created { keys, refused });
        }
        if event.get("detail-type").is_some() {
            let event: EventBridgeEvent = serde_json::from_value(event)
                .map_err(|e| format!("not an EventBridge event: {e}"))?;
            if event.source != "aws.s3" {
                return Ok(ScorerEvent::Schedule);
            }
            if event.detail_type != "Object Created" {
                return Err(format!(
                    "an S3 event of type {:?}: only Object Created is scored",
                    event.detail_type
                ));
            }
            return Ok(
                match event.detail.pointer("/object/key").and_then(Value::as_str) {
                    Some(key) => ScorerEvent::Created {
                        keys: vec![key.to_owned()],
                        refused: Vec::new(),
                    },
                    None => ScorerEvent::Created {
                        keys: Vec::new(),
                        refused: vec!["an Object Created event without detail.object.key".into()],
                    },
                },
            );
        }
        Err("expected S3 event notifications (Records), S3's Object Created through EventBridge, or an EventBridge schedule (detail-type)".into())
    }
}

/// One scorer invocation. New objects are scored one by one: a trace that cannot be
/// scored (not a trace, a bad tenant configuration) is reported and skipped, while a
/// storage failure fails the invocation so Lambda retries it (scoring again replaces, so
/// the traces already done are not duplicated). The schedule re-scores yesterday.
pub async fn score(job: &Arc<ScorerJob>, event: Value) -> Result<Value, Diagnostic> {
    let event = ScorerEvent::parse(event).map_err(|message| Diagnostic {
        error_type: "BadEvent".into(),
        error_message: message,
    })?;
    let result = match event {
        ScorerEvent::Created { keys, refused } => {
            let mut report = JobReport::default();
            for reason in refused {
                warn!(reason, "S3 record skipped");
                report.details.push(format!("skipped: {reason}"));
            }
            let (mut scored, mut skipped) = (0usize, report.details.len());
            let mut failure = None;
            for key in &keys {
                match job.score_key(key).await {
                    Ok(done) => {
                        scored += 1;
                        info!(key, records = done.records, "trace scored");
                        report.details.push(format!(
                            "scored {} ({} records)",
                            done.trace_key, done.records
                        ));
                    }
                    Err(e) if e.is_retryable() => {
                        failure = Some(JobError::Retryable(e.to_string()));
                        break;
                    }
                    Err(e) => {
                        skipped += 1;
                        warn!(error = %e, "trace skipped");
                        report.details.push(format!("skipped: {e}"));
                    }
                }
            }
            report.summary = format!("scored {scored} traces, skipped {skipped}");
            match failure {
                Some(e) => Err(e),
                None => Ok(report),
            }
        }
        ScorerEvent::Schedule => {
            Rescore::new(job.clone(), RESCORE_EVERY)
                .run(SystemClock.now_ms())
                .await
        }
    };
    outcome("scorer", result)
}

/// Serves the scorer on Lambda: S3 notifications of new traces and its nightly schedule.
pub async fn serve_scorer(job: Arc<ScorerJob>) -> Result<(), lambda_runtime::Error> {
    let job = &job;
    lambda_runtime::run(service_fn(|event: LambdaEvent<Value>| {
        score(job, event.payload)
    }))
    .await
}

/// The trace key an SQS message of the judge queue names: the body is EventBridge's S3
/// `Object Created` event for a `scores/` object (the scorer job's output), whose trace
/// is the same key under `traces/`.
pub fn judge_trace_key(body: &str) -> Result<String, String> {
    let event: EventBridgeEvent =
        serde_json::from_str(body).map_err(|e| format!("not an EventBridge event: {e}"))?;
    let key = event
        .detail
        .pointer("/object/key")
        .and_then(Value::as_str)
        .ok_or("an S3 event without detail.object.key")?;
    let parsed = agentwire_trace::ObjectKey::parse(key)
        .filter(|k| k.prefix == "scores")
        .ok_or_else(|| format!("{key}: not a scores/ key"))?;
    Ok(parsed.under("traces"))
}

/// One batch of the judge queue. Each message's trace is judged; a storage failure
/// reports that message as failed, so SQS redelivers it alone (and after
/// `maxReceiveCount` moves it to the failure queue); anything else (a bad message, a bad
/// `judge.toml`) is logged and the message is done: retrying cannot fix it. Endpoint
/// failures, invalid replies and a spent budget are judgements, recorded, not failures.
pub async fn judge_batch(job: &JudgeJob, event: SqsEvent) -> SqsBatchResponse {
    // Concurrently: each tenant's endpoint limits its own calls in flight, and a batch of
    // slow model calls one after another would outlast the function's timeout.
    let failed =
        futures_util::future::join_all(event.records.into_iter().map(|message| async move {
            let id = message.message_id.clone().unwrap_or_default();
            let key = match judge_trace_key(message.body.as_deref().unwrap_or_default()) {
                Ok(key) => key,
                Err(reason) => {
                    warn!(message = %id, reason, "judge message skipped");
                    return None;
                }
            };
            match job.judge_key(&key).await {
                Ok(judgements) => {
                    info!(key, rubrics = judgements.len(), "trace judged");
                    None
                }
                Err(e) if e.is_retryable() => {
                    warn!(key, error = %e, "trace not judged; SQS redelivers it");
                    Some(id)
                }
                Err(e) => {
                    warn!(key, error = %e, "trace not judged");
                    None
                }
            }
        }))
        .await;
    let mut response = SqsBatchResponse::default();
    for id in failed.into_iter().flatten() {
        let mut failure = BatchItemFailure::default();
        failure.item_identifier = id;
        response.batch_item_failures.push(failure);
    }
    response
}

/// Serves the judge on Lambda: batches of its SQS queue.
pub async fn serve_judge(job: Arc<JudgeJob>) -> Result<(), lambda_runtime::Error> {
    let job = &job;
    lambda_runtime::run(service_fn(|event: LambdaEvent<SqsEvent>| async move {
        Ok::<_, lambda_runtime::Error>(judge_batch(job, event.payload).await)
    }))
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn s3_keys_are_url_decoded_with_plus_for_space() {
        assert_eq!(
            decode_s3_key("traces/dt=2026-12-01/tenant=acme/my+chat%2B1%C3%A9.jsonl.gz"),
            Ok("traces/dt=2026-12-01/tenant=acme/my chat+1\u{e9}.jsonl.gz".into())
        );
        // The archive's own escapes survive one level of decoding.
        assert_eq!(
            decode_s3_key("traces/dt=2026-12-01/tenant=a%252Fb/x.jsonl.gz"),
            Ok("traces/dt=2026-12-01/tenant=a%2Fb/x.jsonl.gz".into())
        );
        assert!(decode_s3_key("traces/%FF.jsonl.gz").is_err());
    }

    #[test]
    fn a_judge_message_names_the_trace_of_its_scores_object() {
        let body = json!({
            "version": "0", "id": "1", "detail-type": "Object Created", "source": "aws.s3",
            "account": "1", "time": "2026-12-01T00:00:00Z", "region": "eu-west-1", "resources": [],
            "detail": {"bucket": {"name": "b"}, "object": {"key": "scores/dt=2026-12-01/tenant=acme/s%201.jsonl.gz"}}
        })
        .to_string();
        assert_eq!(
            judge_trace_key(&body),
            Ok("traces/dt=2026-12-01/tenant=acme/s%201.jsonl.gz".into())
        );
        let traces = body.replace("scores/", "traces/");
        assert!(
            judge_trace_key(&traces)
                .unwrap_err()
                .contains("not a scores/ key")
        );
        assert!(judge_trace_key("{}").is_err());
    }

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

    /// The template's re-score schedule is the scorer's own.
    #[test]
    fn the_template_schedules_the_rescore_as_the_job_does() {
        let path = format!(
            "{}/../../../infra/template.yaml",
            env!("CARGO_MANIFEST_DIR")
        );
        let template = std::fs::read_to_string(&path).expect("the template");
        let scorer = &template[template.find("  ScorerFunction:").expect("ScorerFunction")..];
        let schedule = scorer
            .lines()
            .find_map(|line| line.trim().strip_prefix("Schedule: "))
            .expect("a Schedule event");
        let job = agentwire_jobs::Schedule::every(agentwire_scorer::RESCORE_EVERY);
        assert_eq!(schedule, job.expression());
    }
}
