//! The archiver end to end on real engines: a scripted multi-agent session is appended to
//! DynamoDB Local through the Lambda wiring, the archiver runs on the DynamoDB Stream and
//! EventBridge fixtures of `events/`, and the trace is read back from a local S3 server.

use agentwire_archive::{ArchiverEvent, TraceArchive};
mod common;

use agentwire_session::{AppendRequest, CreateStream, Mode, Payload, Sessions};
use agentwire_trace::{Span, decode_jsonl_gz};
use bytes::Bytes;
use common::stack;
use serde_json::{Value, json};

fn fixture(name: &str) -> Value {
    let path = format!("{}/../../events/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

async fn session(sessions: &Sessions, name: &str, events: &[Value], close: bool) {
    sessions
        .create(CreateStream {
            name: name.into(),
            content_type: Some("application/json".into()),
            ..CreateStream::default()
        })
        .await
        .unwrap();
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
    let (settings, stack) = stack().await;
    let events = scripted();
    session(&stack.sessions(), "acme/trip-42", &events, true).await;

    // The stream record of that close, as Lambda delivers it.
    let event = ArchiverEvent::parse(fixture("dynamodb-stream-session-closed.json")).unwrap();
    let report = stack.archiver(&settings).handle(event).await.unwrap();
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
    let (settings, stack) = stack().await;
    let archiver = stack.archiver(&settings);
    session(&stack.sessions(), "acme/chat-7", &scripted()[..3], false).await;

    // An append (tail 1 → 3), a TTL renewal on read (tail unchanged: not activity) and a
    // delete of another session.
    let event = ArchiverEvent::parse(fixture("dynamodb-stream-session-appended.json")).unwrap();
    let report = archiver.handle(event).await.unwrap();
    assert!(report.archived.is_empty());
    assert_eq!(report.touched, 1, "one active session");

    let schedule = || ArchiverEvent::parse(fixture("eventbridge-schedule.json")).unwrap();
    let report = archiver.handle(schedule()).await.unwrap();
    assert_eq!(report.archived.len(), 1, "{report:?}");
    assert_eq!(report.archived[0].session, "acme/chat-7");
    assert_eq!(report.archived[0].events, 3);
    // Archived sessions leave the index until they are active again.
    let report = archiver.handle(schedule()).await.unwrap();
    assert!(report.archived.is_empty(), "{report:?}");
}

#[test]
fn events_that_are_neither_stream_nor_schedule_are_refused() {
    let e = ArchiverEvent::parse(fixture("apigw-http-append.json")).unwrap_err();
    assert!(e.contains("expected a DynamoDB Stream event"), "{e}");
}
