//! The archiver end to end on real engines: a scripted multi-agent session is appended to
//! DynamoDB Local through the Lambda wiring, the archiver runs on the DynamoDB Stream and
//! EventBridge fixtures of `events/`, and the trace is read back from a local S3 server.

use agentwire_archive::TraceArchive;
use agentwire_aws_stack::lambda::{self, ArchiverEvent};

use crate::common::stack;
use agentwire_session::{AppendRequest, CreateStream, Mode, Payload, Sessions};
use agentwire_trace::{Span, decode_jsonl_gz};
use bytes::Bytes;
use serde_json::{Value, json};

fn fixture(name: &str) -> Value {
    let path = format!("{}/../../../events/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

async fn session(sessions: &Sessions, name: &str, events: &[Value], close: bool) {
    create_json(sessions, name).await;
    append_json(sessions, name, events, close).await;
}

/// An orchestrator answering a user with the help of a sub-agent that calls a tool.
fn scripted() -> Vec<Value> {
    vec![
        json!({"type": "message.start", "id": "u1", "role": "user", "user": "ana", "ts": 1000}),
        json!({"type": "message.delta", "id": "u1", "data": {"text": "Trains to Porto?"}, "ts": 1000}),
        json!({"type": "message.end", "id": "u1", "role": "user", "ts": 1000}),
        json!({"type": "message.start", "id": "m1", "agent": "planner", "parent": "u1", "ts": 1100}),
        json!({"type": "tool.call", "id": "c1", "agent": "planner/search-1", "parent": "m1", "data": {"tool": "timetable", "from": "Lisbon"}, "ts": 1200}),
        json!({"type": "tool.result", "id": "c1", "agent": "planner/search-1", "parent": "m1", "data": {"trains": 14}, "ts": 1400}),
        json!({"type": "message.start", "id": "s1", "agent": "planner/search-1", "parent": "m1", "ts": 1450}),
        json!({"type": "message.delta", "id": "s1", "agent": "planner/search-1", "parent": "m1", "data": {"text": "14 trains"}, "ts": 1500}),
        json!({"type": "message.end", "id": "s1", "agent": "planner/search-1", "parent": "m1", "ts": 1550}),
        json!({"type": "message.delta", "id": "m1", "agent": "planner", "data": {"text": "There are "}, "ts": 1600}),
        json!({"type": "message.delta", "id": "m1", "agent": "planner", "data": {"text": "14 a day."}, "ts": 1700}),
        json!({"type": "control.cancel", "user": "ana", "ts": 1750}),
        json!({"type": "message.end", "id": "m1", "agent": "planner", "data": {"stopped": true}, "ts": 1800}),
        json!({"type": "control.ack", "agent": "planner", "ts": 1810}),
    ]
}

fn span<'a>(spans: &'a [Span], name: &str) -> &'a Span {
    spans.iter().find(|s| s.name == name).unwrap_or_else(|| {
        panic!(
            "no span {name} in {:?}",
            spans.iter().map(|s| &s.name).collect::<Vec<_>>()
        )
    })
}

fn message<'a>(spans: &'a [Span], id: &str) -> &'a Span {
    spans
        .iter()
        .find(|s| s.attributes.get("agentwire.message.id") == Some(&json!(id)))
        .unwrap_or_else(|| panic!("no span for message {id}"))
}

#[tokio::test]
async fn a_closed_session_is_archived_as_spans_with_parent_links() {
    let (_, stack) = stack().await;
    let events = scripted();
    session(&stack.sessions().unwrap(), "acme/trip-42", &events, true).await;

    // The stream record of that close, as Lambda delivers it.
    let ArchiverEvent::Changes(changes) =
        ArchiverEvent::parse(fixture("dynamodb-stream-session-closed.json")).unwrap()
    else {
        panic!("a stream batch");
    };
    let report = stack.archiver().on_changes(changes).await.unwrap();
    assert_eq!(report.archived.len(), 1, "{report:?}");
    let archived = &report.archived[0];
    assert_eq!(archived.events, events.len());
    assert!(
        archived.key.starts_with("traces/dt=")
            && archived.key.ends_with("/tenant=acme/trip-42.jsonl.gz"),
        "{}",
        archived.key
    );

    let body = TraceArchive::get(&stack.bucket, &archived.key)
        .await
        .unwrap()
        .expect("the trace is in S3");
    assert_eq!(&body[..2], &[0x1f, 0x8b], "gzip");
    let spans = decode_jsonl_gz(&body).unwrap();
    assert_eq!(spans.len(), archived.spans);
    let roots: Vec<&Span> = spans
        .iter()
        .filter(|s| s.parent_span_id.is_none())
        .collect();
    assert_eq!(roots.len(), 1, "one root: the session");
    let root = roots[0];
    assert!(spans.iter().all(|s| s.trace_id == root.trace_id));
    assert_eq!(root.attributes["gen_ai.conversation.id"], json!("trip-42"));

    // The sub-agent hangs under the orchestrator's message that spawned it.
    let m1 = message(&spans, "m1");
    let search = span(&spans, "invoke_agent planner/search-1");
    assert_eq!(search.parent_span_id.as_ref(), Some(&m1.span_id));
    // Its tool call and its own message hang under the sub-agent.
    let tool = span(&spans, "execute_tool timetable");
    assert_eq!(tool.parent_span_id.as_ref(), Some(&search.span_id));
    assert_eq!(
        message(&spans, "s1").parent_span_id.as_ref(),
        Some(&search.span_id)
    );
    assert_eq!(tool.attributes["gen_ai.tool.call.id"], json!("c1"));
    // Times come from the events; the cancelled reply is an error with its full text.
    assert_eq!(tool.start_time_unix_nano, 1_200_000_000);
    assert_eq!(tool.end_time_unix_nano, 1_400_000_000);
    let output = m1.attributes["gen_ai.output.messages"].as_str().unwrap();
    assert!(output.contains("There are 14 a day."), "{output}");
    assert_eq!(format!("{:?}", m1.status), "Error");
    assert!(root.events.iter().any(|e| e.name == "control.cancel"));
}

#[tokio::test]
async fn idle_sessions_are_archived_by_the_scheduled_sweep() {
    let (_, stack) = stack().await;
    let archiver = stack.archiver();
    session(
        &stack.sessions().unwrap(),
        "acme/chat-7",
        &scripted()[..3],
        false,
    )
    .await;

    // An append (tail 1 → 3), a TTL renewal on read (tail unchanged: not activity) and a
    // delete of another session.
    // Through the function's own handler, as Lambda invokes it.
    let answer = lambda::archive(&archiver, fixture("dynamodb-stream-session-appended.json"))
        .await
        .unwrap();
    assert_eq!(answer["details"], json!([]), "nothing archived: {answer}");
    assert!(
        answer["summary"]
            .as_str()
            .unwrap()
            .contains("recorded activity of 1"),
        "one active session: {answer}"
    );

    let answer = lambda::archive(&archiver, fixture("eventbridge-schedule.json"))
        .await
        .unwrap();
    let details = answer["details"].as_array().unwrap();
    assert_eq!(details.len(), 1, "{answer}");
    let line = details[0].as_str().unwrap();
    assert!(
        line.contains("tenant=acme/chat-7.jsonl.gz (3 events"),
        "{line}"
    );
    // Archived sessions leave the index until they are active again.
    let answer = lambda::archive(&archiver, fixture("eventbridge-schedule.json"))
        .await
        .unwrap();
    assert_eq!(answer["details"], json!([]), "{answer}");
}

#[test]
fn events_that_are_neither_stream_nor_schedule_are_refused() {
    let e = ArchiverEvent::parse(fixture("apigw-http-append.json")).unwrap_err();
    assert!(e.contains("expected a DynamoDB Stream event"), "{e}");
}

/// The meta item the adapter wrote for `session`, as a DynamoDB Stream record of its close
/// (the old image: the same item before the close), so the archiver decodes the layout the
/// adapter really writes rather than a hand-written copy of it.
async fn close_record(client: &aws_sdk_dynamodb::Client, table: &str, session: &str) -> Value {
    use aws_sdk_dynamodb::types::AttributeValue;
    let meta = client
        .get_item()
        .table_name(table)
        .key("pk", AttributeValue::S(format!("stream#{session}")))
        .key("sk", AttributeValue::S("meta".into()))
        .consistent_read(true)
        .send()
        .await
        .unwrap()
        .item
        .expect("the session's meta item");
    let generation = meta["gen"].as_n().expect("gen").clone();
    // The close is the session's newest record (log layout): the INSERT the table's stream
    // sends for it.
    let newest = client
        .query()
        .table_name(table)
        .key_condition_expression("pk = :pk")
        .expression_attribute_values(":pk", AttributeValue::S(format!("log#{generation}")))
        .scan_index_forward(false)
        .limit(1)
        .consistent_read(true)
        .send()
        .await
        .unwrap()
        .items
        .and_then(|items| items.into_iter().next())
        .expect("the session's newest record");
    assert_eq!(
        newest.get("cl"),
        Some(&AttributeValue::Bool(true)),
        "the newest record is the close"
    );
    let image = |item: &std::collections::HashMap<String, AttributeValue>| -> Value {
        let item: serde_dynamo::Item = item
            .iter()
            .map(|(k, v)| (k.clone(), serde_dynamo::AttributeValue::from(v.clone())))
            .collect::<std::collections::HashMap<_, _>>()
            .into();
        serde_json::to_value(item).unwrap()
    };
    let mut keys = newest.clone();
    keys.retain(|name, _| name == "pk" || name == "sk");
    json!({"Records": [{
        "eventID": "1", "eventName": "INSERT", "eventVersion": "1.1", "eventSource": "aws:dynamodb",
        "awsRegion": "us-east-1",
        "dynamodb": {
            "Keys": image(&keys),
            "NewImage": image(&newest),
            "SequenceNumber": "1", "SizeBytes": 1, "StreamViewType": "NEW_AND_OLD_IMAGES"
        },
        "eventSourceARN": "arn:aws:dynamodb:us-east-1:123456789012:table/t/stream/x"
    }]})
}

/// The same session through `agentwire dev`'s stack (SQLite, the change feed, a directory)
/// and through the functions' adapters (DynamoDB Local, a stream record of the adapter's own
/// item, S3) gives the same object key and the same spans, span by span.
#[tokio::test]
async fn the_local_twin_writes_what_the_aws_path_writes() {
    use agentwire_archive::Archiver;
    use agentwire_contracts::ManualClock;
    use agentwire_dynamo::{DynamoActivityIndex, DynamoSessionLog};
    use agentwire_local_stack::{LocalSettings, LocalStack};
    use agentwire_s3::S3Bucket;
    use std::sync::Arc;
    use std::time::Duration;

    let start = 1_795_694_400_000; // both logs commit at the same times
    let steps: Vec<(Vec<Value>, bool)> = vec![
        (scripted()[..4].iter().map(strip_ts).collect(), false),
        (scripted()[4..9].iter().map(strip_ts).collect(), false),
        (scripted()[9..].to_vec(), true),
    ];

    // Locally.
    let dir = tempfile::tempdir().unwrap();
    let local_clock = Arc::new(ManualClock::at(start));
    let settings = LocalSettings {
        change_window: Duration::from_millis(50),
        ..LocalSettings::new(dir.path())
    };
    let local = LocalStack::open_with_clock(&settings, local_clock.clone()).unwrap();
    create_json(&local.sessions, "acme/twin-1").await;
    for (events, close) in &steps {
        local_clock.advance(Duration::from_millis(700));
        append_json(&local.sessions, "acme/twin-1", events, *close).await;
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    let local_key = loop {
        let mut keys = Vec::new();
        collect(dir.path(), &dir.path().join("traces"), &mut keys);
        if let Some(key) = keys.pop() {
            break key;
        }
        assert!(tokio::time::Instant::now() < deadline, "no local trace");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let local_spans =
        decode_jsonl_gz(&std::fs::read(dir.path().join(&local_key)).unwrap()).unwrap();

    // On the AWS adapters.
    let (settings, _) = stack().await;
    let dynamodb = agentwire_dynamo::local_client(settings.dynamodb_endpoint.as_deref().unwrap());
    let bucket = S3Bucket::new(
        agentwire_s3::local_client(settings.s3_endpoint.as_deref().unwrap()),
        &settings.bucket,
    );
    let aws_clock = Arc::new(ManualClock::at(start));
    let log = Arc::new(
        DynamoSessionLog::with_clock(
            dynamodb.clone(),
            &settings.sessions_table,
            aws_clock.clone(),
        )
        .with_blobs(Arc::new(bucket.clone())),
    );
    let sessions = Sessions::new(log.clone());
    create_json(&sessions, "acme/twin-1").await;
    for (events, close) in &steps {
        aws_clock.advance(Duration::from_millis(700));
        append_json(&sessions, "acme/twin-1", events, *close).await;
    }
    let archiver = Archiver::new(
        log,
        Arc::new(bucket.clone()),
        Arc::new(DynamoActivityIndex::new(
            dynamodb.clone(),
            &settings.sessions_table,
        )),
        settings.idle,
    );
    let record = close_record(&dynamodb, &settings.sessions_table, "acme/twin-1").await;
    let answer = lambda::archive(&archiver, record).await.unwrap();
    let details = answer["details"].as_array().unwrap();
    assert_eq!(details.len(), 1, "{answer}");
    let aws_key = details[0]
        .as_str()
        .unwrap()
        .split(' ')
        .next()
        .unwrap()
        .to_owned();
    assert_eq!(local_key.to_str().unwrap(), aws_key, "the same layout");
    let body = TraceArchive::get(&bucket, &aws_key)
        .await
        .unwrap()
        .expect("in S3");
    let aws_spans = decode_jsonl_gz(&body).unwrap();

    assert_eq!(local_spans.len(), aws_spans.len());
    for (local, aws) in local_spans.iter().zip(&aws_spans) {
        assert_eq!(local, aws, "span {} differs", local.name);
    }
    // Server times, not the archive time: the first reply ran from the first to the last append.
    let m1 = message(&aws_spans, "m1");
    assert!(m1.end_time_unix_nano > m1.start_time_unix_nano);
}

fn strip_ts(event: &Value) -> Value {
    let mut event = event.clone();
    event.as_object_mut().unwrap().remove("ts");
    event
}

async fn create_json(sessions: &Sessions, name: &str) {
    sessions
        .create(CreateStream {
            name: name.into(),
            content_type: Some("application/json".into()),
            ..CreateStream::default()
        })
        .await
        .unwrap();
}

async fn append_json(sessions: &Sessions, name: &str, events: &[Value], close: bool) {
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

fn collect(root: &std::path::Path, dir: &std::path::Path, found: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            collect(root, &path, found);
        } else if path.extension().is_some_and(|e| e == "gz") {
            found.push(path.strip_prefix(root).unwrap().to_path_buf());
        }
    }
}

/// A session answered from a retrieval tool's result, as the archiver writes it.
fn retrieval_trace(tenant: &str, session: &str) -> Bytes {
    let events = [
        json!({"type": "message.start", "id": "u1", "role": "user", "ts": 1000}),
        json!({"type": "message.delta", "id": "u1", "data": {"text": "How many trains run to Porto a day?"}, "ts": 1000}),
        json!({"type": "message.end", "id": "u1", "role": "user", "ts": 1000}),
        json!({"type": "tool.call", "id": "c1", "data": {"tool": "search_timetable", "retrieval": true, "query": "Porto"}, "ts": 1100}),
        json!({"type": "tool.result", "id": "c1", "data": ["Fourteen trains run from Lisbon to Porto every day."], "ts": 1300}),
        json!({"type": "message.start", "id": "m1", "role": "assistant", "ts": 1400}),
        json!({"type": "message.delta", "id": "m1", "data": {"text": "Fourteen trains run from Lisbon to Porto every day."}, "ts": 1500}),
        json!({"type": "message.end", "id": "m1", "ts": 1600}),
    ];
    let raw: Vec<Vec<u8>> = events.iter().map(|e| e.to_string().into_bytes()).collect();
    let offsets: Vec<String> = (0..raw.len()).map(|i| format!("{i:016}_{i:016}")).collect();
    let stored: Vec<agentwire_trace::SessionEvent> = raw
        .iter()
        .zip(&offsets)
        .map(|(json, offset)| agentwire_trace::SessionEvent {
            offset,
            json,
            at_ms: None,
        })
        .collect();
    let ctx = agentwire_trace::TraceContext {
        tenant,
        session,
        archived_at_ms: 1_764_584_100_000, // 2026-12-01
    };
    let spans = agentwire_trace::build_trace(&ctx, &stored);
    Bytes::from(agentwire_trace::encode_jsonl_gz(&spans).unwrap())
}

/// The scorer on the AWS adapters: an S3 notification of a new trace (the fixture, its key
/// URL-encoded as S3 sends it) writes `scores/` to S3 and indexes the records in DynamoDB;
/// the same event again changes nothing; a second tenant's trace of the same id stays
/// its own.
#[tokio::test]
async fn a_new_trace_in_s3_is_scored_into_scores_and_the_index() {
    use agentwire_scoring::{ScoreFilter, ScoreIndex};

    let (_, stack) = stack().await;
    let archive = stack.trace_archive();
    let trace_key = "traces/dt=2026-12-01/tenant=acme/trip%2042.jsonl.gz";
    archive
        .put(trace_key, retrieval_trace("acme", "trip 42"))
        .await
        .unwrap();
    let scorer = stack.scorer();
    let event = fixture("s3-put-trace.json");
    let answer = lambda::score(&scorer, event.clone()).await.unwrap();
    assert_eq!(
        answer["details"][0].as_str().unwrap().split(' ').nth(1),
        Some(trace_key),
        "{answer}"
    );

    let scores_key = "scores/dt=2026-12-01/tenant=acme/trip%2042.jsonl.gz";
    let body = archive
        .get(scores_key)
        .await
        .unwrap()
        .expect("scores/ in S3");
    let written = agentwire_scorer::decode_records(&body).unwrap();
    let grounded = written
        .iter()
        .find(|r| r.name == "groundedness")
        .unwrap_or_else(|| panic!("no groundedness in {written:?}"));
    assert_eq!(grounded.label.as_deref(), Some("grounded"), "{grounded:?}");
    assert!(
        written
            .iter()
            .all(|r| r.tenant == "acme" && r.session == "trip 42")
    );
    let trace_id = grounded.trace_id.clone();

    let by_identity = |mut records: Vec<agentwire_scoring::ScoreRecord>| {
        records
            .sort_by(|a, b| (a.source, &a.name, &a.span_id).cmp(&(b.source, &b.name, &b.span_id)));
        records
    };
    // serde_json (without its `float_roundtrip` feature) may read a value back 1 ULP off:
    // compare the values apart, the index's being the exact ones.
    let without_values = |records: &[agentwire_scoring::ScoreRecord]| {
        records
            .iter()
            .map(|r| agentwire_scoring::ScoreRecord {
                value: 0.0,
                ..r.clone()
            })
            .collect::<Vec<_>>()
    };
    let indexed = stack.scores.trace("acme", &trace_id).await.unwrap();
    let from_s3 = by_identity(written.clone());
    assert_eq!(
        without_values(&indexed),
        without_values(&from_s3),
        "the index holds what S3 holds"
    );
    for (index, s3) in indexed.iter().zip(&from_s3) {
        assert!(
            (index.value - s3.value).abs() <= f64::EPSILON * s3.value.abs().max(1.0),
            "{}: {} in the index, {} in S3",
            index.name,
            index.value,
            s3.value
        );
    }

    // Delivered again (at least once): still one set.
    lambda::score(&scorer, event).await.unwrap();
    let again = stack.scores.trace("acme", &trace_id).await.unwrap();
    assert_eq!(again.len(), written.len());
    let listed = stack
        .scores
        .list(
            "acme",
            &ScoreFilter {
                limit: 100,
                ..ScoreFilter::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(
        listed.records.len(),
        written.len(),
        "no duplicates in the listing"
    );

    // Another tenant's trace with the same trace id (OTLP clients choose their ids; these
    // spans even claim to be acme's): scored as the key's tenant, kept apart. Its record
    // comes through EventBridge (the template's route), key as is.
    let zeta_key = "traces/dt=2026-12-01/tenant=zeta/trip%2042.jsonl.gz";
    archive
        .put(zeta_key, retrieval_trace("acme", "trip 42"))
        .await
        .unwrap();
    let mut zeta_event = fixture("eventbridge-s3-object-created.json");
    zeta_event["detail"]["object"]["key"] = json!(zeta_key);
    lambda::score(&scorer, zeta_event).await.unwrap();
    let zeta = stack.scores.trace("zeta", &trace_id).await.unwrap();
    assert_eq!(zeta.len(), written.len());
    assert!(zeta.iter().all(|r| r.tenant == "zeta"));
    assert_eq!(stack.scores.trace("acme", &trace_id).await.unwrap(), again);
    let acme = stack
        .scores
        .list(
            "acme",
            &ScoreFilter {
                limit: 100,
                ..ScoreFilter::default()
            },
        )
        .await
        .unwrap();
    assert!(
        acme.records.iter().all(|r| r.tenant == "acme"),
        "zeta's records leaked"
    );
}

/// One bad trace in a batch is reported and skipped while the others are scored; a storage
/// failure fails the invocation, so Lambda retries it.
#[tokio::test]
async fn a_bad_trace_is_skipped_and_a_storage_failure_fails_the_invocation() {
    use agentwire_scoring::ScoreIndex;
    use std::sync::Arc;

    let (settings, stack) = stack().await;
    let archive = stack.trace_archive();
    let good = "traces/dt=2026-12-01/tenant=acme/trip%2042.jsonl.gz";
    let bad = "traces/dt=2026-12-01/tenant=acme/garbage.jsonl.gz";
    archive
        .put(good, retrieval_trace("acme", "trip 42"))
        .await
        .unwrap();
    archive
        .put(bad, Bytes::from_static(b"not gzip"))
        .await
        .unwrap();
    let mut event = fixture("s3-put-trace.json");
    let mut second = event["Records"][0].clone();
    second["s3"]["object"]["key"] = json!("traces/dt%3D2026-12-01/tenant%3Dacme/garbage.jsonl.gz");
    let mut missing = event["Records"][0].clone();
    missing["s3"]["object"]["key"] = json!("traces/dt%3D2026-12-01/tenant%3Dacme/gone.jsonl.gz");
    event["Records"] = json!([second, missing, event["Records"][0].clone()]);
    let answer = lambda::score(&stack.scorer(), event.clone()).await.unwrap();
    let details: Vec<&str> = answer["details"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d.as_str().unwrap())
        .collect();
    assert_eq!(details.len(), 3, "{answer}");
    assert!(
        details[0].starts_with("skipped: ") && details[0].contains(bad),
        "{details:?}"
    );
    assert!(
        details[1].starts_with("skipped: ") && details[1].contains("gone"),
        "{details:?}"
    );
    assert!(
        details[2].starts_with(&format!("scored {good}")),
        "{details:?}"
    );
    assert_eq!(answer["summary"], "scored 1 traces, skipped 2");
    let scores = archive
        .get("scores/dt=2026-12-01/tenant=acme/trip%2042.jsonl.gz")
        .await
        .unwrap()
        .expect("the good trace was scored");
    let trace_id = agentwire_scorer::decode_records(&scores).unwrap()[0]
        .trace_id
        .clone();
    assert!(
        !stack
            .scores
            .trace("acme", &trace_id)
            .await
            .unwrap()
            .is_empty()
    );

    // The index's table is not there: DynamoDB fails, and so does the invocation.
    let dynamodb = agentwire_dynamo::local_client(settings.dynamodb_endpoint.as_deref().unwrap());
    let broken = Arc::new(agentwire_scorer::ScorerJob::new(
        archive,
        Arc::new(agentwire_dynamo::DynamoScoreIndex::new(
            dynamodb,
            "no-such-table",
        )),
        Arc::new(agentwire_session::SystemClock),
    ));
    let failure = lambda::score(&broken, event).await.unwrap_err();
    assert_eq!(failure.error_type, "Retryable", "{failure:?}");
}

#[test]
fn scorer_events_are_told_apart() {
    use agentwire_aws_stack::lambda::ScorerEvent;
    assert_eq!(
        ScorerEvent::parse(fixture("s3-put-trace.json")),
        Ok(ScorerEvent::Created {
            keys: vec!["traces/dt=2026-12-01/tenant=acme/trip%2042.jsonl.gz".into()],
            refused: vec![],
        })
    );
    assert_eq!(
        ScorerEvent::parse(fixture("eventbridge-s3-object-created.json")),
        Ok(ScorerEvent::Created {
            keys: vec!["traces/dt=2026-12-01/tenant=acme/trip%2042.jsonl.gz".into()],
            refused: vec![],
        })
    );
    assert_eq!(
        ScorerEvent::parse(fixture("eventbridge-schedule.json")),
        Ok(ScorerEvent::Schedule)
    );
    // A deletion scores nothing.
    let mut removed = fixture("s3-put-trace.json");
    removed["Records"][0]["eventName"] = json!("ObjectRemoved:Delete");
    assert_eq!(
        ScorerEvent::parse(removed),
        Ok(ScorerEvent::Created {
            keys: vec![],
            refused: vec![]
        })
    );
    assert!(ScorerEvent::parse(json!({"hello": 1})).is_err());
}
