//! Spans are timed by when the log committed each event, unless the event says otherwise.

use std::sync::Arc;
use std::time::Duration;

use agentwire_archive::Archiver;
use agentwire_contracts::ManualClock;
use agentwire_fs::DirTraceArchive;
use agentwire_session::{AppendRequest, CreateStream, Mode, Payload, SessionLog};
use agentwire_sqlite::{SqliteActivityIndex, SqliteSessionLog};
use agentwire_trace::{Span, TraceArchive, decode_jsonl_gz};
use bytes::Bytes;
use serde_json::Value;

const START_MS: i64 = 1_750_000_000_000;

/// Appends `events` (one append each, `clock` advanced by the given time before it) to a
/// fresh session, archives it a day later, and returns its spans.
async fn archived_spans(events: &[(Duration, Value)]) -> Vec<Span> {
    let dir = tempfile::tempdir().expect("temp dir");
    let clock = Arc::new(ManualClock::at(START_MS));
    let log: Arc<dyn SessionLog> = Arc::new(
        SqliteSessionLog::open_with_clock(dir.path().join("s.db"), clock.clone()).expect("open"),
    );
    let session = "acme/s-1";
    log.create(CreateStream {
        name: session.into(),
        content_type: Some("application/json".into()),
        ..CreateStream::default()
    })
    .await
    .expect("create");
    for (after, event) in events {
        clock.advance(*after);
        let body = Bytes::from(event.to_string());
        log.append(
            session,
            AppendRequest {
                content_type: Some("application/json".into()),
                payload: Payload::frame(Mode::Json, body, false).expect("valid JSON"),
                ..AppendRequest::default()
            },
        )
        .await
        .expect("append");
    }
    let archive = Arc::new(DirTraceArchive::new(dir.path()));
    let activity = SqliteActivityIndex::open(dir.path().join("s.db")).expect("open the index");
    clock.advance(Duration::from_secs(86_400));
    let archiver = Archiver::new(
        log,
        archive.clone(),
        Arc::new(activity),
        Duration::from_secs(60),
    )
    .with_clock(clock);
    let archived = archiver
        .archive(session)
        .await
        .expect("archive")
        .expect("a trace");
    let body = archive
        .get(&archived.key)
        .await
        .expect("get")
        .expect("stored");
    decode_jsonl_gz(&body).expect("decode")
}

fn message<'s>(spans: &'s [Span], id: &str) -> &'s Span {
    spans
        .iter()
        .find(|s| s.attributes.get("agentwire.message.id") == Some(&Value::from(id)))
        .unwrap_or_else(|| panic!("no message span {id}"))
}

fn ms(span: &Span) -> (i64, i64) {
    (
        (span.start_time_unix_nano / 1_000_000) as i64,
        (span.end_time_unix_nano / 1_000_000) as i64,
    )
}

#[tokio::test]
async fn a_reply_streamed_over_3_s_spans_3_s_without_ts() {
    let spans = archived_spans(&[
        (
            Duration::ZERO,
            serde_json::json!({"type": "message.start", "id": "m1", "agent": "a"}),
        ),
        (
            Duration::from_millis(1_200),
            serde_json::json!({"type": "message.delta", "id": "m1", "agent": "a", "data": {"text": "hi"}}),
        ),
        (
            Duration::from_millis(1_800),
            serde_json::json!({"type": "message.end", "id": "m1", "agent": "a"}),
        ),
    ])
    .await;
    assert_eq!(ms(message(&spans, "m1")), (START_MS, START_MS + 3_000));
    // The root too: not stretched to the archive time a day later.
    assert_eq!(ms(&spans[0]), (START_MS, START_MS + 3_000));
}

#[tokio::test]
async fn an_events_own_ts_still_wins() {
    let spans = archived_spans(&[
        (
            Duration::ZERO,
            serde_json::json!({"type": "message.start", "id": "m1", "agent": "a", "ts": START_MS - 10_000}),
        ),
        (
            Duration::from_secs(3),
            serde_json::json!({"type": "message.end", "id": "m1", "agent": "a"}),
        ),
    ])
    .await;
    assert_eq!(
        ms(message(&spans, "m1")),
        (START_MS - 10_000, START_MS + 3_000)
    );
}
