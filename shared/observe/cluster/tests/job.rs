//! The `clusters` job over a real archive directory: two nights of archived sessions (the
//! second night made of the first's with a tenth replaced by a kind of request never seen
//! before), clustered by the job as it runs each night, results read back from
//! `clusters/dt=<day>/tenant=<t>/`.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use agentwire_cluster::{ClusterJob, LocalTfIdf, Status, Store, View, clusters_key};
use agentwire_fs::DirTraceArchive;
use agentwire_jobs::Job;
use agentwire_trace::{
    SessionEvent, TraceArchive, TraceContext, build_trace, encode_jsonl_gz, object_key,
};
use bytes::Bytes;
use serde_json::json;

/// 2025-11-01T10:00:00Z.
const NIGHT_1: i64 = 1_761_991_200_000;
const DAY: i64 = 86_400_000;

const KINDS: &[(&str, &str)] = &[
    ("refund", "I want a refund for order {n} it arrived broken"),
    ("flight", "change my flight {n} to next Tuesday morning"),
    (
        "baggage",
        "how many checked bags can I bring on booking {n}",
    ),
    ("invoice", "send me the VAT invoice for payment {n}"),
    ("shipping", "where is my package {n} tracking shows nothing"),
    ("cancel", "cancel my subscription {n} and stop charging me"),
];
const NEW_KIND: (&str, &str) = (
    "locked",
    "password reset for account {n} the reset email never arrives",
);
const NAMES: &[&str] = &[
    "Ana", "Omar", "Li", "Sofia", "Raj", "Chen", "Maria", "Yusuf", "Ines", "Kofi", "Lena", "Tomas",
    "Aiko", "Priya", "Jonas", "Mina", "Pavel", "Zara", "Eli", "Noor",
];

fn request(kind: &str, template: &str, i: usize) -> (String, String) {
    let n = 1000 + (i * 7919) % 9000;
    let text = template.replace("{n}", &n.to_string());
    let text = match i % 3 {
        0 => text,
        1 => format!("{text} regards {}", NAMES[i % NAMES.len()]),
        _ => format!("I am {} {text}", NAMES[(i * 3) % NAMES.len()]),
    };
    (format!("{kind}-{i}"), text)
}

/// An archived session of one user request and a reply, as the archiver writes it.
fn trace(tenant: &str, session: &str, text: &str, at_ms: i64) -> Bytes {
    let events = [
        json!({"type": "message.start", "id": "u1", "role": "user", "ts": at_ms}),
        json!({"type": "message.delta", "id": "u1", "data": {"text": text}}),
        json!({"type": "message.end", "id": "u1", "role": "user"}),
        json!({"type": "message.start", "id": "m1", "agent": "bot", "role": "assistant"}),
        json!({"type": "message.delta", "id": "m1", "agent": "bot", "data": {"text": "On it."}}),
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
            at_ms: Some(at_ms),
        })
        .collect();
    let ctx = TraceContext {
        tenant,
        session,
        archived_at_ms: at_ms,
    };
    Bytes::from(encode_jsonl_gz(&build_trace(&ctx, &stored)).unwrap())
}

async fn archive_night(
    archive: &dyn TraceArchive,
    tenant: &str,
    at_ms: i64,
    sessions: &[(String, String)],
) {
    for (session, text) in sessions {
        archive
            .put(
                &object_key(tenant, session, at_ms),
                trace(tenant, session, text, at_ms),
            )
            .await
            .unwrap();
    }
}

fn job(archive: Arc<dyn TraceArchive>) -> ClusterJob {
    ClusterJob::new(
        archive,
        Arc::new(LocalTfIdf),
        None,
        Duration::from_secs(3600),
    )
}

#[tokio::test]
async fn night_two_keeps_nine_in_ten_cluster_ids_and_the_new_kind_is_a_new_cluster() {
    let dir = tempfile::tempdir().unwrap();
    let archive: Arc<dyn TraceArchive> = Arc::new(DirTraceArchive::new(dir.path()));
    let night1: Vec<(String, String)> = KINDS
        .iter()
        .flat_map(|(kind, template)| (0..40).map(move |i| request(kind, template, i)))
        .collect();
    archive_night(archive.as_ref(), "acme", NIGHT_1, &night1).await;
    // Another tenant's night, which must not mix into acme's clusters.
    archive_night(archive.as_ref(), "other", NIGHT_1, &night1[..30]).await;

    let job = job(archive.clone());
    // The run after midnight clusters the day that ended.
    let report = job.run(NIGHT_1 + DAY).await.unwrap();
    assert_eq!(report.details.len(), 2, "{report:?}");
    let store = Store::new(archive.clone());
    let (first, members1) = store
        .night("2025-11-01", "acme")
        .await
        .unwrap()
        .expect("night 1");
    assert_eq!(
        members1.iter().filter(|m| m.view == View::Requests).count(),
        night1.len()
    );
    assert!(
        members1
            .iter()
            .all(|m| !m.session.is_empty() && m.tenant == "acme")
    );
    let ids1: HashSet<String> = first
        .iter()
        .filter(|c| c.size > 0 && c.view == View::Requests)
        .map(|c| c.id.clone())
        .collect();
    assert!(
        ids1.len() >= KINDS.len(),
        "{} clusters on night 1",
        ids1.len()
    );

    // Running again changes nothing: the night is done.
    let before = archive
        .get(&clusters_key("2025-11-01", "acme"))
        .await
        .unwrap();
    let again = job.run(NIGHT_1 + DAY + 60_000).await.unwrap();
    assert!(again.details.is_empty(), "{again:?}");
    assert_eq!(
        archive
            .get(&clusters_key("2025-11-01", "acme"))
            .await
            .unwrap(),
        before
    );

    // Night 2: the same sessions with a tenth replaced by the new kind.
    let replaced = night1.len() / 10;
    let mut night2: Vec<(String, String)> = night1
        .iter()
        .enumerate()
        .filter(|(i, _)| i % 10 != 3)
        .map(|(_, s)| s.clone())
        .collect();
    assert_eq!(night2.len(), night1.len() - replaced);
    night2.extend((0..replaced).map(|i| request(NEW_KIND.0, NEW_KIND.1, i)));
    archive_night(archive.as_ref(), "acme", NIGHT_1 + DAY, &night2).await;
    job.run(NIGHT_1 + 2 * DAY).await.unwrap();
    let (second, members2) = store
        .night("2025-11-02", "acme")
        .await
        .unwrap()
        .expect("night 2");
    let ids2: HashSet<String> = second
        .iter()
        .filter(|c| c.size > 0 && c.view == View::Requests)
        .map(|c| c.id.clone())
        .collect();
    let kept = ids1.intersection(&ids2).count() as f64 / ids1.len() as f64;
    assert!(kept >= 0.9, "kept {kept:.2} of night 1's ids");

    let locked: Vec<_> = members2
        .iter()
        .filter(|m| m.session.starts_with("locked"))
        .collect();
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for m in &locked {
        *counts
            .entry(m.cluster.as_deref().unwrap_or("noise"))
            .or_default() += 1;
    }
    let (id, n) = counts.iter().max_by_key(|(_, n)| **n).unwrap();
    assert!(*n as f64 >= 0.8 * locked.len() as f64, "{counts:?}");
    let cluster = second
        .iter()
        .find(|c| c.id == *id)
        .expect("the new kind's cluster");
    assert_eq!(cluster.status, Status::New);
    assert!(!ids1.contains(*id));
    assert!(
        cluster.label.contains("password") || cluster.label.contains("reset"),
        "{}",
        cluster.label
    );
    // Kept clusters carry their history: night 1's figures, then night 2's.
    let kept_one = second.iter().find(|c| c.status == Status::Kept).unwrap();
    assert_eq!(
        kept_one
            .history
            .iter()
            .map(|h| h.day.as_str())
            .collect::<Vec<_>>(),
        ["2025-11-01", "2025-11-02"]
    );
    assert_eq!(kept_one.embedding, "tfidf-hashed-65536");
}

#[tokio::test]
async fn a_bad_clusters_toml_is_named_and_nothing_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let archive: Arc<dyn TraceArchive> = Arc::new(DirTraceArchive::new(dir.path()));
    let sessions: Vec<(String, String)> =
        (0..12).map(|i| request("refund", KINDS[0].1, i)).collect();
    archive_night(archive.as_ref(), "acme", NIGHT_1, &sessions).await;
    archive
        .put(
            "config/tenant=acme/clusters.toml",
            Bytes::from_static(b"min_cluster_size = 1\n"),
        )
        .await
        .unwrap();
    let report = job(archive.clone()).run(NIGHT_1 + DAY).await.unwrap();
    assert_eq!(report.details.len(), 1);
    assert!(
        report.details[0].contains("min_cluster_size must be at least 2"),
        "{report:?}"
    );
    assert_eq!(
        archive
            .get(&clusters_key("2025-11-01", "acme"))
            .await
            .unwrap(),
        None
    );
    // A setting that does not exist is named too.
    archive
        .put(
            "config/tenant=acme/clusters.toml",
            Bytes::from_static(b"min_size = 4\n"),
        )
        .await
        .unwrap();
    let report = job(archive.clone()).run(NIGHT_1 + DAY).await.unwrap();
    assert!(report.details[0].contains("min_size"), "{report:?}");
}
