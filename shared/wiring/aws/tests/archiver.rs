//! The archiver end to end on real engines: a scripted multi-agent session is appended to
//! DynamoDB Local through the Lambda wiring, the archiver runs on the DynamoDB Stream and
//! EventBridge fixtures of `events/`, and the trace is read back from a local S3 server.

use agentwire_archive::TraceArchive;
use agentwire_aws_stack::lambda::{self, ArchiverEvent};
mod common;

use agentwire_session::{AppendRequest, CreateStream, Mode, Payload, Sessions};
use agentwire_trace::{Span, decode_jsonl_gz};
use bytes::Bytes;
use common::stack;
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
    let item = client
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
    let image = |item: &std::collections::HashMap<String, AttributeValue>| -> Value {
        let item: serde_dynamo::Item = item
            .iter()
            .map(|(k, v)| (k.clone(), serde_dynamo::AttributeValue::from(v.clone())))
            .collect::<std::collections::HashMap<_, _>>()
            .into();
        serde_json::to_value(item).unwrap()
    };
    let mut before = item.clone();
    before.insert("closed".into(), AttributeValue::Bool(false));
    json!({"Records": [{
        "eventID": "1", "eventName": "MODIFY", "eventVersion": "1.1", "eventSource": "aws:dynamodb",
        "awsRegion": "us-east-1",
        "dynamodb": {
            "Keys": {"pk": {"S": format!("stream#{session}")}, "sk": {"S": "meta"}},
            "NewImage": image(&item), "OldImage": image(&before),
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
