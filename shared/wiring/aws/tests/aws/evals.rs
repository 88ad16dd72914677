//! The `evals` job on the AWS adapters (DynamoDB Local, a local S3 server), wired as the
//! evals function wires it: a tenant's scheduled eval is started once a day and carried
//! out through sessions in the table, answered by an agent following them, archived to the
//! bucket and scored; its results are in the bucket.

use std::sync::Arc;
use std::time::Duration;

use agentwire_evals::{Mode, Status};
use agentwire_jobs::Job;
use agentwire_session::events::Envelope;
use agentwire_session::{AppendRequest, Mode as Content, Payload, ReadFrom, Sessions, events_of};
use bytes::Bytes;

use crate::common::stack;

/// Answers every eval session of the tenant's first unfinished run with "You said: …",
/// as an agent served by dispatch would (here it follows the sessions itself).
async fn answer_runs(sessions: Sessions, runner: Arc<agentwire_evals::Runner>, tenant: &str) {
    let (run, items) = loop {
        let unfinished = runner.store().unfinished().await.unwrap();
        if let Some((_, id)) = unfinished.first() {
            let run = runner.store().run(tenant, id).await.unwrap().unwrap();
            let dataset = runner
                .store()
                .dataset(tenant, &run.spec.dataset, Some(run.spec.version))
                .await
                .unwrap()
                .unwrap();
            break (run, dataset.items);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    for item in items {
        let stored = agentwire_auth::stored_name(tenant, &run.spec.session_of(&item.id).unwrap());
        let sessions = sessions.clone();
        tokio::spawn(async move {
            let question = loop {
                if let Ok(batch) = sessions
                    .read_live(&stored, ReadFrom::Start, 1 << 20, Duration::from_secs(1))
                    .await
                {
                    let text: String = events_of(&batch)
                        .iter()
                        .filter_map(|e| Envelope::parse(&e.json).ok())
                        .filter_map(|e| e.text().map(str::to_owned))
                        .collect();
                    if !text.is_empty() {
                        break text;
                    }
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            };
            let reply = [
                Envelope::message_start("r1", "assistant").with_agent("tester"),
                Envelope::message_delta("r1", format!("You said: {question}")).with_agent("tester"),
                Envelope::message_end("r1").with_agent("tester"),
            ];
            let body =
                serde_json::to_vec(&reply.iter().map(Envelope::to_value).collect::<Vec<_>>())
                    .unwrap();
            sessions
                .append(
                    &stored,
                    AppendRequest {
                        content_type: Some("application/json".into()),
                        payload: Payload::frame(Content::Json, Bytes::from(body), false).unwrap(),
                        close: false,
                        stream_seq: None,
                        producer: None,
                    },
                )
                .await
                .unwrap();
        });
    }
}

#[tokio::test]
async fn the_evals_job_runs_a_tenants_scheduled_eval_once_a_day_on_dynamodb_and_s3() {
    let (_, stack) = stack().await;
    let runner = stack.evals().unwrap();
    let items = agentwire_evals::parse_jsonl(
        "{\"id\": \"pears\", \"input\": \"Tell me about pears\", \"expected\": {\"facts\": [\"pears\"]}}\n\
         {\"id\": \"figs\", \"input\": \"And figs?\", \"expected\": {\"facts\": [\"figs\"], \"output\": \"figs\"}}\n",
    )
    .unwrap();
    assert_eq!(
        runner
            .store()
            .add_version("acme", "smoke", &items)
            .await
            .unwrap(),
        (1, true)
    );
    let bucket = stack.trace_archive();
    bucket
        .put(
            "config/tenant=acme/evals.toml",
            Bytes::from_static(
                b"[[eval]]\ndataset = \"smoke\"\npattern = \"eval-*\"\ntimeout_ms = 20000\n",
            ),
        )
        .await
        .unwrap();
    let agent = tokio::spawn(answer_runs(
        stack.sessions().unwrap(),
        runner.clone(),
        "acme",
    ));

    let job = stack.evals_job().unwrap();
    let now = agentwire_session::Clock::now_ms(&agentwire_session::SystemClock);
    let report = job.run(now).await.unwrap();
    agent.await.unwrap();
    assert_eq!(report.summary, "1 of 1 eval runs carried out", "{report:?}");
    let ids = runner.store().run_ids("acme").await.unwrap();
    assert_eq!(ids.len(), 1);
    let run = runner.store().run("acme", &ids[0]).await.unwrap().unwrap();
    assert_eq!(
        (run.status, run.spec.mode, run.spec.origin.as_str()),
        (Status::Finished, Mode::Live, "nightly")
    );
    let summary = run.summary.unwrap();
    assert_eq!(
        (summary.answered, summary.timeouts, summary.errors),
        (2, 0, 0)
    );
    assert_eq!(summary.metric("reference.facts").unwrap().mean, 1.0);
    assert_eq!(
        summary.metric("reference.exact").unwrap().mean,
        0.0,
        "\"You said: And figs?\" is not \"figs\""
    );
    let results = runner.store().items("acme", &ids[0]).await.unwrap();
    for result in &results {
        let key = result.trace_key.as_deref().unwrap();
        assert!(
            key.starts_with("traces/dt=") && bucket.get(key).await.unwrap().is_some(),
            "{key}"
        );
    }
    let prefix = format!("runs/tenant=acme/{}/", ids[0]);
    let keys = bucket.list(&prefix).await.unwrap();
    assert!(
        keys.contains(&format!("{prefix}results.jsonl.gz")),
        "{keys:?}"
    );
    let report = runner
        .store()
        .report("acme", &ids[0])
        .await
        .unwrap()
        .expect("its report");
    let html = String::from_utf8(report.to_vec()).unwrap();
    assert!(
        html.contains("smoke@1") && html.contains("nightly smoke"),
        "the report names the run"
    );

    // The same day again: nothing new starts.
    let again = job.run(now + 60_000).await.unwrap();
    assert_eq!(again.summary, "0 of 0 eval runs carried out", "{again:?}");
    assert_eq!(runner.store().run_ids("acme").await.unwrap().len(), 1);
}
