//! The scorer job on the local adapters (a directory archive, the SQLite index): what it
//! writes, what configuration it reads, and what it does with bad input.

use std::sync::Arc;

use agentwire_fs::DirTraceArchive;
use agentwire_scorer::{Rescore, ScoreError, ScorerJob, config_key, decode_records};
use agentwire_scoring::{ScoreIndex, Source};
use agentwire_session::SystemClock;
use agentwire_sqlite::SqliteScoreIndex;
use agentwire_trace::{
    SessionEvent, TraceArchive, TraceContext, build_trace, encode_jsonl_gz, object_key,
};
use bytes::Bytes;
use serde_json::{Value, json};

struct Subject {
    archive: Arc<dyn TraceArchive>,
    index: Arc<dyn ScoreIndex>,
    job: Arc<ScorerJob>,
    _dir: tempfile::TempDir,
}

fn subject() -> Subject {
    let dir = tempfile::tempdir().unwrap();
    let archive: Arc<dyn TraceArchive> = Arc::new(DirTraceArchive::new(dir.path()));
    let index: Arc<dyn ScoreIndex> =
        Arc::new(SqliteScoreIndex::open(dir.path().join("sessions.db")).unwrap());
    let job = Arc::new(ScorerJob::new(
        archive.clone(),
        index.clone(),
        Arc::new(SystemClock),
    ));
    Subject {
        archive,
        index,
        job,
        _dir: dir,
    }
}

/// 2025-06-15T12:00:00Z.
const NOON_MS: i64 = 1_749_988_800_000;

/// A session's trace (as the archiver writes it) whose root claims `claimed_tenant`.
fn trace(claimed_tenant: &str, session: &str, answer: &str) -> Bytes {
    let events = [
        json!({"type": "message.start", "id": "u1", "role": "user", "ts": NOON_MS}),
        json!({"type": "message.delta", "id": "u1", "data": {"text": "What is the refund window?"}}),
        json!({"type": "message.end", "id": "u1", "role": "user"}),
        json!({"type": "tool.call", "id": "c1", "agent": "bot", "data": {"tool": "policy", "retrieval": true}}),
        json!({"type": "tool.result", "id": "c1", "agent": "bot", "data": {"result": "Refunds are accepted within 30 days of purchase."}}),
        json!({"type": "message.start", "id": "m1", "agent": "bot", "role": "assistant"}),
        json!({"type": "message.delta", "id": "m1", "agent": "bot", "data": {"text": answer}}),
        json!({"type": "message.end", "id": "m1", "agent": "bot"}),
    ];
    let json: Vec<Vec<u8>> = events.iter().map(|e| e.to_string().into_bytes()).collect();
    let offsets: Vec<String> = (0..events.len()).map(|i| format!("{i:016}")).collect();
    let stored: Vec<SessionEvent> = json
        .iter()
        .zip(&offsets)
        .map(|(json, offset)| SessionEvent {
            offset,
            json,
            at_ms: Some(NOON_MS),
        })
        .collect();
    let ctx = TraceContext {
        tenant: claimed_tenant,
        session,
        archived_at_ms: NOON_MS,
    };
    Bytes::from(encode_jsonl_gz(&build_trace(&ctx, &stored)).unwrap())
}

async fn put_trace(s: &Subject, tenant: &str, session: &str, body: Bytes) -> String {
    let key = object_key(tenant, session, NOON_MS);
    s.archive.put(&key, body).await.unwrap();
    key
}

fn names(records: &[agentwire_scoring::ScoreRecord]) -> Vec<&str> {
    records.iter().map(|r| r.name.as_str()).collect()
}

#[tokio::test]
async fn a_trace_is_scored_into_its_scores_object_and_the_index_and_rescoring_replaces() {
    let s = subject();
    let key = put_trace(
        &s,
        "acme",
        "refund-1",
        trace("acme", "refund-1", "You have 30 days."),
    )
    .await;
    let done = s.job.score_key(&key).await.unwrap();
    assert_eq!(
        done.scores_key,
        "scores/dt=2025-06-15/tenant=acme/refund-1.jsonl.gz"
    );
    let stored = decode_records(&s.archive.get(&done.scores_key).await.unwrap().unwrap()).unwrap();
    assert_eq!(stored.len(), done.records);
    assert!(
        names(&stored).contains(&"groundedness"),
        "{:?}",
        names(&stored)
    );
    assert!(
        stored
            .iter()
            .all(|r| r.source == Source::Code && r.session == "refund-1")
    );

    let trace_id = agentwire_trace::trace_id("acme", "refund-1");
    let indexed = s.index.trace("acme", &trace_id).await.unwrap();
    assert_eq!(indexed.len(), stored.len());

    // A changed trace re-scored: its records replace the old ones, digest and all.
    put_trace(
        &s,
        "acme",
        "refund-1",
        trace("acme", "refund-1", "You have 90 days."),
    )
    .await;
    s.job.score_key(&key).await.unwrap();
    let again = s.index.trace("acme", &trace_id).await.unwrap();
    assert_eq!(again.len(), indexed.len(), "replaced, not added");
    assert_ne!(again[0].trace_digest, indexed[0].trace_digest);
}

#[tokio::test]
async fn the_keys_tenant_wins_over_what_the_trace_claims() {
    let s = subject();
    let key = put_trace(
        &s,
        "acme",
        "forged",
        trace("globex", "forged", "You have 30 days."),
    )
    .await;
    s.job.score_key(&key).await.unwrap();
    let claimed_id = agentwire_trace::trace_id("globex", "forged");
    assert!(
        s.index
            .trace("globex", &claimed_id)
            .await
            .unwrap()
            .is_empty()
    );
    let records = s.index.trace("acme", &claimed_id).await.unwrap();
    assert!(!records.is_empty());
    assert!(records.iter().all(|r| r.tenant == "acme"));
}

#[tokio::test]
async fn the_tenants_configuration_chooses_the_scorers() {
    let s = subject();
    s.archive
        .put(
            &config_key("acme"),
            Bytes::from_static(b"scorers = [\"latency_cost\", \"rules\"]\n"),
        )
        .await
        .unwrap();
    let key = put_trace(&s, "acme", "s", trace("acme", "s", "You have 30 days.")).await;
    s.job.score_key(&key).await.unwrap();
    let records = s
        .index
        .trace("acme", &agentwire_trace::trace_id("acme", "s"))
        .await
        .unwrap();
    let scorers: std::collections::BTreeSet<&str> =
        records.iter().map(|r| r.scorer.as_str()).collect();
    assert_eq!(scorers, ["latency_cost", "rules"].into());
}

#[tokio::test]
async fn bad_configurations_keys_and_traces_are_errors_that_name_them_without_content() {
    let s = subject();
    s.archive
        .put(
            &config_key("bad"),
            Bytes::from_static(b"[[rules.rule]]\nid = \"x\"\npattern = \"(\"\n"),
        )
        .await
        .unwrap();
    let key = put_trace(&s, "bad", "s", trace("bad", "s", "fine")).await;
    let error = s.job.score_key(&key).await.unwrap_err();
    let ScoreError::Config { config, reason, .. } = &error else {
        panic!("{error}")
    };
    assert_eq!(config, "config/tenant=bad/scoring.toml");
    assert!(
        reason.starts_with("line 3: rules.rule[0].pattern"),
        "{reason}"
    );
    assert!(!error.is_retryable());

    let error = s.job.score_key("traces/nonsense.gz").await.unwrap_err();
    assert!(matches!(error, ScoreError::NotATraceKey { .. }), "{error}");
    let error = s
        .job
        .score_key(&object_key("acme", "missing", NOON_MS))
        .await
        .unwrap_err();
    assert!(matches!(error, ScoreError::Missing { .. }), "{error}");

    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    std::io::Write::write_all(&mut gz, b"{\"start_time_unix_nano\": \"my card number\"}\n")
        .unwrap();
    let key = put_trace(&s, "acme", "junk", Bytes::from(gz.finish().unwrap())).await;
    let error = s.job.score_key(&key).await.unwrap_err();
    let message = error.to_string();
    assert!(
        message.contains(&key) && message.contains("line 1"),
        "{message}"
    );
    assert!(!message.contains("my card number"), "content in: {message}");
}

#[tokio::test]
async fn the_nightly_rescore_scores_yesterday_and_skips_what_it_cannot() {
    let s = subject();
    put_trace(&s, "acme", "a", trace("acme", "a", "You have 30 days.")).await;
    put_trace(&s, "acme", "b", Bytes::from_static(b"not gzip")).await;
    let job: Arc<dyn agentwire_jobs::Job> =
        Arc::new(Rescore::new(s.job.clone(), agentwire_scorer::RESCORE_EVERY));
    // The next day, just after midnight.
    let report = job.run(NOON_MS + 12 * 3_600_000 + 1_000).await.unwrap();
    assert_eq!(
        report.summary, "re-scored 1 traces of 2025-06-15, skipped 1",
        "{report:?}"
    );
    let details: Vec<Value> = report.details.iter().map(|d| json!(d)).collect();
    assert!(
        report
            .details
            .iter()
            .any(|d| d.starts_with("skipped: traces/dt=2025-06-15/tenant=acme/b.jsonl.gz")),
        "{details:?}"
    );
    assert!(
        !s.index
            .trace("acme", &agentwire_trace::trace_id("acme", "a"))
            .await
            .unwrap()
            .is_empty()
    );
}
