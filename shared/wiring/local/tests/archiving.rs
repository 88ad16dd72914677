//! The archiver's local twin: `agentwire dev`'s stack writes a trace under
//! `<data-dir>/traces/` when a session closes (within the change window) and when one has
//! been idle past the idle time (within a sweep), timed by the log's commit times.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use agentwire_contracts::ManualClock;
use agentwire_local_stack::{LocalSettings, LocalStack};
use agentwire_session::{AppendRequest, CreateStream, Mode, Payload, Sessions};
use agentwire_trace::{Span, decode_jsonl_gz};
use bytes::Bytes;
use serde_json::{Value, json};

async fn create(sessions: &Sessions, name: &str) {
    sessions
        .create(CreateStream {
            name: name.into(),
            content_type: Some("application/json".into()),
            ..CreateStream::default()
        })
        .await
        .unwrap();
}

async fn append(sessions: &Sessions, name: &str, events: &[Value], close: bool) {
    let body = serde_json::to_vec(events).unwrap();
    let payload = Payload::frame(Mode::Json, Bytes::from(body), false).unwrap();
    sessions
        .append(
            name,
            AppendRequest {
                content_type: Some("application/json".into()),
                payload,
                close,
                ..AppendRequest::default()
            },
        )
        .await
        .unwrap();
}

/// Every file under `dir`, recursively, relative to it.
fn files(root: &Path, dir: &Path, found: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            files(root, &path, found);
        } else {
            found.push(path.strip_prefix(root).unwrap().to_path_buf());
        }
    }
}

/// Waits up to `limit` for traces to appear under the data directory.
async fn traces(data: &Path, limit: Duration) -> Vec<PathBuf> {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let mut found = Vec::new();
        files(data, &data.join("traces"), &mut found);
        found.retain(|p| p.extension().is_some_and(|e| e == "gz"));
        if !found.is_empty() || tokio::time::Instant::now() > deadline {
            return found;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn settings(data: &Path) -> LocalSettings {
    LocalSettings {
        idle: Duration::from_secs(600),
        archive_sweep: Duration::from_millis(200),
        change_window: Duration::from_millis(100),
        ..LocalSettings::new(data)
    }
}

fn message<'a>(spans: &'a [Span], id: &str) -> &'a Span {
    spans
        .iter()
        .find(|s| s.attributes.get("agentwire.message.id") == Some(&json!(id)))
        .unwrap_or_else(|| panic!("no span for message {id}"))
}

#[tokio::test]
async fn a_closed_session_is_archived_at_once_with_spans_timed_by_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::default());
    let stack = LocalStack::open_with_clock(&settings(dir.path()), clock.clone()).unwrap();
    let name = "local/chat-1";
    create(&stack.sessions, name).await;
    append(
        &stack.sessions,
        name,
        &[
            json!({"type": "message.start", "id": "u1", "role": "user"}),
            json!({"type": "message.delta", "id": "u1", "data": {"text": "hi"}}),
            json!({"type": "message.end", "id": "u1", "role": "user"}),
            json!({"type": "message.start", "id": "m1", "agent": "demo"}),
        ],
        false,
    )
    .await;
    // The reply streams for 3 s (no event carries its own `ts`).
    for word in ["Hello", " there", "!"] {
        clock.advance(Duration::from_secs(1));
        append(&stack.sessions, name, &[json!({"type": "message.delta", "id": "m1", "agent": "demo", "data": {"text": word}})], false).await;
    }
    assert!(
        traces(dir.path(), Duration::from_millis(400))
            .await
            .is_empty(),
        "archived before it closed or went idle"
    );
    append(
        &stack.sessions,
        name,
        &[json!({"type": "message.end", "id": "m1", "agent": "demo"})],
        true,
    )
    .await;

    let found = traces(dir.path(), Duration::from_secs(5)).await;
    assert_eq!(found.len(), 1, "one trace: {found:?}");
    let key = found[0].to_str().unwrap();
    assert!(
        key.starts_with("traces/dt=") && key.ends_with("/tenant=local/chat-1.jsonl.gz"),
        "{key}"
    );
    let spans = decode_jsonl_gz(&std::fs::read(dir.path().join(&found[0])).unwrap()).unwrap();
    let reply = message(&spans, "m1");
    let nanos = reply.end_time_unix_nano - reply.start_time_unix_nano;
    assert_eq!(
        nanos, 3_000_000_000,
        "the reply's span lasts the 3 s it streamed for"
    );
    assert!(
        reply.attributes["gen_ai.output.messages"]
            .as_str()
            .unwrap()
            .contains("Hello there!")
    );
}

#[tokio::test]
async fn an_idle_session_is_archived_by_the_scheduled_sweep() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::default());
    let stack = LocalStack::open_with_clock(&settings(dir.path()), clock.clone()).unwrap();
    let jobs = stack.start_jobs();
    let name = "local/chat-2";
    create(&stack.sessions, name).await;
    append(
        &stack.sessions,
        name,
        &[json!({"type": "message.start", "id": "u1", "role": "user"})],
        false,
    )
    .await;
    // Sweeps run, but the session is not idle yet.
    assert!(
        traces(dir.path(), Duration::from_millis(600))
            .await
            .is_empty()
    );
    clock.advance(Duration::from_secs(601));
    let found = traces(dir.path(), Duration::from_secs(5)).await;
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(
        found[0]
            .to_str()
            .unwrap()
            .ends_with("/tenant=local/chat-2.jsonl.gz")
    );
    jobs.stop();

    // `agentwire job run archiver` runs the same sweep on demand: nothing is due now.
    let archiver = agentwire_jobs::find(&stack.jobs, "archiver").unwrap();
    let report = archiver.run(clock_now(&clock)).await.unwrap();
    assert!(report.details.is_empty(), "archived again: {report:?}");
}

fn clock_now(clock: &ManualClock) -> i64 {
    agentwire_session::Clock::now_ms(clock)
}

#[tokio::test]
async fn the_jobs_are_the_archiver_the_rescore_the_evals_and_the_expiry_sweep() {
    let dir = tempfile::tempdir().unwrap();
    let stack = LocalStack::open(&LocalSettings::new(dir.path())).unwrap();
    let names: Vec<_> = stack.jobs.iter().map(|job| job.name()).collect();
    assert_eq!(
        names,
        ["archiver", "rescore", "evals", "clusters", "expiry"]
    );
    let evals = agentwire_jobs::find(&stack.jobs, "evals").unwrap();
    assert_eq!(evals.schedule().expression(), "rate(1 hour)");
    let rescore = agentwire_jobs::find(&stack.jobs, "rescore").unwrap();
    assert_eq!(rescore.schedule().expression(), "rate(1 day)");
    let expiry = agentwire_jobs::find(&stack.jobs, "expiry").unwrap();
    assert_eq!(expiry.schedule().expression(), "rate(1 minute)");
    let report = expiry.run(0).await.unwrap();
    assert!(report.details.is_empty(), "{report:?}");
}

#[tokio::test]
async fn a_session_created_closed_is_archived_and_closing_the_stack_flushes_the_feed() {
    let dir = tempfile::tempdir().unwrap();
    let settings = LocalSettings {
        // Longer than the test waits: only `close` can deliver in time.
        change_window: Duration::from_secs(30),
        ..settings(dir.path())
    };
    let stack = LocalStack::open(&settings).unwrap();
    let body = serde_json::to_vec(&[json!({"type": "message.start", "id": "u1", "role": "user"})])
        .unwrap();
    stack
        .sessions
        .create(CreateStream {
            name: "local/born-closed".into(),
            content_type: Some("application/json".into()),
            closed: true,
            body: Bytes::from(body),
            ..CreateStream::default()
        })
        .await
        .unwrap();
    create(&stack.sessions, "local/closed-at-exit").await;
    append(
        &stack.sessions,
        "local/closed-at-exit",
        &[json!({"type": "message.start", "id": "u1", "role": "user"})],
        true,
    )
    .await;
    tokio::time::timeout(Duration::from_secs(10), stack.close())
        .await
        .expect("close finishes");
    let mut found: Vec<String> = traces(dir.path(), Duration::ZERO)
        .await
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    found.sort();
    assert_eq!(found, ["born-closed.jsonl.gz", "closed-at-exit.jsonl.gz"]);
}

/// `GET path` on the app `agentwire dev` serves, without a token (the insecure stack).
async fn get(app: &axum::Router, path: &str) -> (u16, Value) {
    use tower::ServiceExt;
    let request = http::Request::get(path)
        .body(axum::body::Body::empty())
        .unwrap();
    let response = app.clone().oneshot(request).await.unwrap();
    let status = response.status().as_u16();
    let body = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .unwrap();
    let value =
        serde_json::from_slice(&body).unwrap_or_else(|_| json!(String::from_utf8_lossy(&body)));
    (status, value)
}

#[tokio::test]
async fn an_archived_session_is_scored_and_its_scores_served() {
    let dir = tempfile::tempdir().unwrap();
    let stack = LocalStack::open(&settings(dir.path())).unwrap();
    let name = "local/museum";
    create(&stack.sessions, name).await;
    append(
        &stack.sessions,
        name,
        &[
            json!({"type": "message.start", "id": "u1", "role": "user"}),
            json!({"type": "message.delta", "id": "u1", "data": {"text": "When does the city museum open on Sundays?"}}),
            json!({"type": "message.end", "id": "u1", "role": "user"}),
            json!({"type": "tool.call", "id": "c1", "agent": "guide", "data": {"tool": "search", "retrieval": true, "query": "museum hours"}}),
            json!({"type": "tool.result", "id": "c1", "agent": "guide", "data": {"result": ["The city museum opens at 9am on Sundays and closes at 5pm."]}}),
            json!({"type": "message.start", "id": "m1", "agent": "guide", "role": "assistant"}),
            json!({"type": "message.delta", "id": "m1", "agent": "guide", "data": {"text": "The city museum opens at 11am on Sundays."}}),
            json!({"type": "message.end", "id": "m1", "agent": "guide"}),
        ],
        true,
    )
    .await;
    let found = traces(dir.path(), Duration::from_secs(5)).await;
    assert_eq!(found.len(), 1, "{found:?}");
    stack.scoring.settled().await;

    let trace_key = found[0].to_str().unwrap().to_owned();
    let scores_file = dir.path().join(trace_key.replacen("traces/", "scores/", 1));
    let records = agentwire_scorer::decode_records(&std::fs::read(&scores_file).unwrap()).unwrap();
    let grounded = records
        .iter()
        .find(|r| r.name == "groundedness")
        .expect("a groundedness record");
    // The scorer read the retrieved context: the answer's hour is not in it.
    assert!(
        !grounded.evidence.is_empty() && grounded.value < 1.0,
        "11am is not in the context: {grounded:?}"
    );
    assert_eq!(grounded.session, "museum");
    assert_eq!(grounded.tenant, "local");
    let trace_id = agentwire_trace::trace_id("local", "museum");
    assert_eq!(grounded.trace_id, trace_id);

    let app = stack.app(
        agentwire_auth::Auth::insecure("local").unwrap(),
        agentwire_streams_http::HttpConfig::default(),
    );
    let (status, body) = get(&app, &format!("/v1/traces/{trace_id}/scores")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["scores"].as_array().unwrap().len(), records.len());
    let (status, body) = get(&app, "/v1/scores?name=groundedness").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["scores"].as_array().unwrap().len(), 1, "{body}");
    assert_eq!(body["scores"][0]["trace_id"], trace_id.as_str());
    let (_, body) = get(&app, "/v1/scores?name=groundedness&label=no-such-label").await;
    assert_eq!(body["scores"], json!([]));
    let (status, body) = get(&app, "/v1/scores?colour=red").await;
    assert_eq!(status, 400);
    assert!(body.as_str().unwrap().contains("colour"), "{body}");
    let (status, _) = get(&app, "/v1/traces/not-a-trace/scores").await;
    assert_eq!(status, 400);

    // Re-scoring replaces: the same records, not twice as many.
    stack.scorer.score_key(&trace_key).await.unwrap();
    let again = stack.scores.trace("local", &trace_id).await.unwrap();
    assert_eq!(again.len(), records.len());
}

#[tokio::test]
async fn a_trace_sent_over_otlp_is_scored_too() {
    use tower::ServiceExt;
    let dir = tempfile::tempdir().unwrap();
    let stack = LocalStack::open(&settings(dir.path())).unwrap();
    let app = stack.app(
        agentwire_auth::Auth::insecure("local").unwrap(),
        agentwire_streams_http::HttpConfig::default(),
    );
    let text = |key: &str, value: &str| json!({"key": key, "value": {"stringValue": value}});
    let messages = |role: &str, content: &str| {
        json!([{"role": role, "parts": [{"type": "text", "content": content}]}]).to_string()
    };
    let body = json!({"resourceSpans": [{"scopeSpans": [{"spans": [{
        "traceId": "0af7651916cd43dd8448eb211c80319c",
        "spanId": "b7ad6b7169203331",
        "name": "chat gpt-4o",
        "startTimeUnixNano": "1750000000000000000",
        "endTimeUnixNano": "1750000001000000000",
        "attributes": [
            text("gen_ai.operation.name", "chat"),
            text("gen_ai.conversation.id", "otlp-conv"),
            text("gen_ai.input.messages", &messages("user", "Write to ana@example.com")),
            text("gen_ai.output.messages", &messages("assistant", "Sent to ana@example.com.")),
        ],
    }]}]}]});
    let request = http::Request::post("/v1/traces")
        .header("content-type", "application/json")
        .body(axum::body::Body::from(body.to_string()))
        .unwrap();
    let response = app.clone().oneshot(request).await.unwrap();
    assert_eq!(response.status(), 200);
    stack.scoring.settled().await;

    let (status, body) = get(&app, "/v1/scores?name=rules.no_pii_email").await;
    assert_eq!(status, 200, "{body}");
    let records = body["scores"].as_array().unwrap();
    assert_eq!(records.len(), 1, "{body}");
    assert_eq!(records[0]["session"], "otlp-conv");
    assert_eq!(
        records[0]["label"], "violated",
        "the reply holds an email address"
    );
}

/// Waits up to `limit` for `n` objects under `<data>/judge/`.
async fn judged(data: &Path, n: usize, limit: Duration) -> Vec<PathBuf> {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let mut found = Vec::new();
        files(data, &data.join("judge"), &mut found);
        if found.len() >= n || tokio::time::Instant::now() > deadline {
            found.sort();
            return found;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_scored_trace_is_judged_with_the_experts_graded_examples_and_redacted() {
    use agentwire_grading::{Answer, Criterion, Grade, Rubric, Scale};
    use agentwire_judge::fake::{FakeModel, Script};
    use agentwire_scoring::Source;

    let model = FakeModel::start(Script::answer_with(|_| {
        json!({"criteria": {"accurate": {"value": "fail", "explanation": "the hours contradict the retrieved page"}}})
    }))
    .await;
    let dir = tempfile::tempdir().unwrap();
    let stack = LocalStack::open(&settings(dir.path())).unwrap();
    let config = format!(
        "[endpoint]\nkind = \"openai\"\nbase_url = \"{}\"\nmodel = \"judge-model\"\n\n[[rubric]]\nname = \"hours\"\nsample = 1.0\nfew_shot = 2\n",
        model.base_url()
    );
    stack
        .archive
        .put(
            &agentwire_judge::job::judge_config_key("local"),
            Bytes::from(config),
        )
        .await
        .unwrap();
    let rubric = Rubric {
        name: "hours".into(),
        version: 1,
        title: "Opening hours".into(),
        criteria: vec![Criterion {
            key: "accurate".into(),
            title: "Are the hours right?".into(),
            guidance: "Compare with the retrieved page.".into(),
            scale: Scale::PassFail,
            justification_required: true,
            scorers: Vec::new(),
        }],
    };
    stack.grading.put_rubric("local", &rubric).await.unwrap();
    // An expert graded the `example` session's trace, with a justification.
    let example = agentwire_trace::trace_id("local", "example");
    let spec: agentwire_grading::QueueSpec = serde_json::from_value(json!({
        "name": "week", "rubric": {"name": "hours", "version": 1}, "graders": ["ana"], "per_item": 1
    }))
    .unwrap();
    let items = agentwire_grading::plan_items(&spec, &[(example.clone(), "example".into())]);
    stack
        .grading
        .create_queue("local", &spec, &items)
        .await
        .unwrap();
    stack
        .grading
        .claim("local", "week", "ana", 1_000)
        .await
        .unwrap()
        .unwrap();
    let grade = Grade {
        queue: "week".into(),
        trace_id: example.clone(),
        session: "example".into(),
        grader: "ana".into(),
        rubric: rubric.reference(),
        answers: [(
            "accurate".to_string(),
            Answer {
                value: "pass".into(),
                justification: Some(
                    "Both hours match the page, as the expert line requires".into(),
                ),
            },
        )]
        .into(),
        graded_ms: 2_000,
    };
    stack.grading.submit("local", &grade, 2_000).await.unwrap();

    let conversation = |question: &str, answer: &str| {
        vec![
            json!({"type": "message.start", "id": "u1", "role": "user"}),
            json!({"type": "message.delta", "id": "u1", "data": {"text": question}}),
            json!({"type": "message.end", "id": "u1", "role": "user"}),
            json!({"type": "tool.call", "id": "c1", "agent": "guide", "data": {"tool": "search", "retrieval": true, "query": "museum hours"}}),
            json!({"type": "tool.result", "id": "c1", "agent": "guide", "data": {"result": ["The city museum opens at 9am on Sundays."]}}),
            json!({"type": "message.start", "id": "m1", "agent": "guide", "role": "assistant"}),
            json!({"type": "message.delta", "id": "m1", "agent": "guide", "data": {"text": answer}}),
            json!({"type": "message.end", "id": "m1", "agent": "guide"}),
        ]
    };
    create(&stack.sessions, "local/example").await;
    let events = conversation("When does it open?", "It opens at 9am.");
    append(&stack.sessions, "local/example", &events, true).await;
    assert_eq!(
        judged(dir.path(), 1, Duration::from_secs(10)).await.len(),
        1
    );
    create(&stack.sessions, "local/museum").await;
    let events = conversation(
        "When does the museum open? Write to me at jane@example.com",
        "The city museum opens at 11am on Sundays.",
    );
    append(&stack.sessions, "local/museum", &events, true).await;
    let objects = judged(dir.path(), 2, Duration::from_secs(10)).await;
    assert_eq!(objects.len(), 2, "{objects:?}");

    // The verdict is in the index beside the code records, as a judge record.
    let museum = agentwire_trace::trace_id("local", "museum");
    let records = stack.scores.trace("local", &museum).await.unwrap();
    let verdict = records
        .iter()
        .find(|r| r.source == Source::Judge)
        .unwrap_or_else(|| panic!("no judge record: {records:?}"));
    assert_eq!(verdict.name, "hours.accurate");
    assert_eq!(verdict.label.as_deref(), Some("fail"));
    assert!(records.iter().any(|r| r.source == Source::Code));
    // The museum's prompt showed the expert's graded example; nothing sent held the email.
    let sent: Vec<String> = model.received().iter().map(Value::to_string).collect();
    assert_eq!(sent.len(), 2, "one call per trace");
    assert!(
        sent[1].contains("as the expert line requires"),
        "the expert's justification is a few-shot example"
    );
    assert!(
        !sent[0].contains("as the expert line requires"),
        "a graded trace is never its own example"
    );
    assert!(sent.iter().all(|s| !s.contains("jane@example.com")));
    // Every outcome is kept, readable as JSON lines.
    let museum_object = objects
        .iter()
        .find(|p| p.to_string_lossy().contains("museum"))
        .unwrap();
    let body = std::fs::read(dir.path().join(museum_object)).unwrap();
    let mut text = String::new();
    std::io::Read::read_to_string(&mut flate2::read::GzDecoder::new(&body[..]), &mut text).unwrap();
    let line: Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    assert_eq!(line["outcome"], "judged", "{line}");
    assert_eq!(line["rubric"], "hours");
    assert!(line["masked"].as_u64().unwrap() >= 1, "{line}");
}
