//! The contract of the `TraceArchive` port: [`trace_archive_contract!`] expands to one
//! `#[tokio::test]` per case, given an async fn returning a fresh, empty archive and
//! whatever must outlive it (a temp dir, or `()`).

use agentwire_trace::TraceArchive;
use bytes::Bytes;

use crate::binary;

/// Generates one `#[tokio::test]` per case. `$archive` is an async fn returning
/// `(Arc<dyn TraceArchive>, keep)`, where `keep` lives until the case ends.
#[macro_export]
macro_rules! trace_archive_contract {
    ($archive:path) => {
        $crate::trace_archive_contract!(@cases $archive;
            a_missing_key_is_none,
            bodies_round_trip_byte_exactly,
            a_put_replaces_the_whole_object,
            neighbouring_keys_are_separate_objects,
            dot_and_empty_segments_never_reach_another_key,
            listing_a_prefix_gives_its_keys_in_order,
            put_new_writes_only_where_nothing_is,
            of_racing_put_news_exactly_one_wins,
        );
    };
    (@cases $archive:path; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test]
            async fn $case() {
                let (archive, _keep) = $archive().await;
                $crate::archive::$case(&*archive).await;
            }
        )*
    };
}

/// A key as `agentwire_trace::object_key` makes them.
const KEY: &str = "traces/dt=2026-11-26/tenant=acme/chat-1.jsonl.gz";

async fn get(archive: &dyn TraceArchive, key: &str) -> Option<Bytes> {
    archive
        .get(key)
        .await
        .unwrap_or_else(|e| panic!("get {key}: {e}"))
}

async fn put(archive: &dyn TraceArchive, key: &str, body: &'static [u8]) {
    archive
        .put(key, Bytes::from_static(body))
        .await
        .unwrap_or_else(|e| panic!("put {key}: {e}"));
}

pub async fn a_missing_key_is_none(archive: &dyn TraceArchive) {
    assert_eq!(get(archive, KEY).await, None, "in an empty archive");
    put(archive, KEY, b"trace").await;
    for missing in [
        "traces/dt=2026-11-26/tenant=acme/chat-2.jsonl.gz",
        "traces/dt=2026-11-26/tenant=acme/chat-1.jsonl",
        "traces/dt=2026-11-26/tenant=acme/chat-1.jsonl.gz.gz",
        "traces/dt=2026-11-27/tenant=other/chat-1.jsonl.gz",
    ] {
        assert_eq!(get(archive, missing).await, None, "{missing}");
    }
}

pub async fn bodies_round_trip_byte_exactly(archive: &dyn TraceArchive) {
    // Gzip's magic, invalid UTF-8 and NULs must survive; so must a large trace and nothing.
    for (key, body) in [
        (
            "traces/dt=2026-11-26/tenant=acme/small.jsonl.gz",
            binary(300, 1),
        ),
        (
            "traces/dt=2026-11-26/tenant=acme/large.jsonl.gz",
            binary(3 * 1024 * 1024 + 17, 2),
        ),
        (
            "traces/dt=2026-11-26/tenant=acme/empty.jsonl.gz",
            Bytes::new(),
        ),
    ] {
        archive
            .put(key, body.clone())
            .await
            .unwrap_or_else(|e| panic!("put {key}: {e}"));
        let read = get(archive, key).await.expect("the object just written");
        assert!(
            read == body,
            "{key}: {} bytes back for {}",
            read.len(),
            body.len()
        );
    }
}

pub async fn a_put_replaces_the_whole_object(archive: &dyn TraceArchive) {
    put(archive, KEY, b"the first, longer archive of this session").await;
    // Shorter than the first: a replace that kept the old tail would show.
    put(archive, KEY, b"again").await;
    assert_eq!(get(archive, KEY).await.as_deref(), Some(&b"again"[..]));
}

/// Keys that share a directory or a stem are unrelated objects, whatever order they are
/// written in.
pub async fn neighbouring_keys_are_separate_objects(archive: &dyn TraceArchive) {
    let keys = [
        "traces/dt=2026-11-26/tenant=acme/chat-1.jsonl.partial",
        "traces/dt=2026-11-26/tenant=acme/chat-1.jsonl.tmp",
        KEY,
        "traces/dt=2026-11-26/tenant=acme/chat-1.jsonl.zst",
        "traces/dt=2026-11-26/tenant=acme/chat-10.jsonl.gz",
        "traces/dt=2026-11-26/tenant=acme-2/chat-1.jsonl.gz",
    ];
    for key in keys {
        archive
            .put(key, Bytes::from(key.to_owned()))
            .await
            .unwrap_or_else(|e| panic!("put {key}: {e}"));
    }
    for key in keys {
        assert_eq!(
            get(archive, key).await.as_deref(),
            Some(key.as_bytes()),
            "{key} holds what was written to it"
        );
    }
}

/// A key with a `.`, `..` or empty segment either names an object of its own or is refused;
/// it never reads or writes the key it would normalise to. (A directory must refuse them,
/// as they would alias other files or leave its root; S3 keeps most as keys of their own.)
pub async fn dot_and_empty_segments_never_reach_another_key(archive: &dyn TraceArchive) {
    put(archive, KEY, b"the real trace").await;
    for key in [
        "traces/dt=2026-11-26/tenant=acme/x/../chat-1.jsonl.gz",
        "traces/dt=2026-11-26/tenant=acme/./chat-1.jsonl.gz",
        "traces/dt=2026-11-26//tenant=acme/chat-1.jsonl.gz",
        "traces/dt=2026-11-26/tenant=acme/chat-1.jsonl.gz/",
        "/traces/dt=2026-11-26/tenant=acme/chat-1.jsonl.gz",
        "traces/dt=2026-11-26/tenant=acme/../tenant=acme/chat-1.jsonl.gz",
    ] {
        if let Ok(Some(body)) = archive.get(key).await {
            panic!("{key} read {:?} before anything was written to it", body);
        }
        if archive
            .put(key, Bytes::from_static(b"intruder"))
            .await
            .is_ok()
        {
            assert_eq!(
                archive.get(key).await.ok().flatten().as_deref(),
                Some(&b"intruder"[..]),
                "{key} was accepted, so it must be an object of its own"
            );
        }
        assert_eq!(
            get(archive, KEY).await.as_deref(),
            Some(&b"the real trace"[..]),
            "writing {key} changed {KEY}"
        );
    }
}

pub async fn listing_a_prefix_gives_its_keys_in_order(archive: &dyn TraceArchive) {
    let list = |prefix: &'static str| async move {
        archive
            .list(prefix)
            .await
            .unwrap_or_else(|e| panic!("list {prefix}: {e}"))
    };
    assert!(list("traces/").await.is_empty(), "an empty archive");
    for key in [
        "traces/dt=2026-11-27/tenant=acme/b.jsonl.gz",
        "traces/dt=2026-11-26/tenant=zeta/a.jsonl.gz",
        "traces/dt=2026-11-26/tenant=acme/b.jsonl.gz",
        "traces/dt=2026-11-26/tenant=acme/a.jsonl.gz",
        "scores/dt=2026-11-26/tenant=acme/a.jsonl.gz",
    ] {
        put(archive, key, b"x").await;
    }
    assert_eq!(
        list("traces/dt=2026-11-26/").await,
        [
            "traces/dt=2026-11-26/tenant=acme/a.jsonl.gz",
            "traces/dt=2026-11-26/tenant=acme/b.jsonl.gz",
            "traces/dt=2026-11-26/tenant=zeta/a.jsonl.gz",
        ]
    );
    // A prefix ending mid-segment matches by characters, as S3's does.
    assert_eq!(
        list("traces/dt=2026-11-2").await.len(),
        4,
        "every traces/ key of both days"
    );
    assert_eq!(
        list("traces/dt=2026-11-26/tenant=acme/b").await,
        ["traces/dt=2026-11-26/tenant=acme/b.jsonl.gz"]
    );
    assert!(list("traces/dt=2026-11-28/").await.is_empty());
    assert_eq!(list("scores/").await.len(), 1);
}

/// `put_new` writes a missing key, and refuses (changing nothing) one that is there.
pub async fn put_new_writes_only_where_nothing_is(archive: &dyn TraceArchive) {
    let key = "runs/tenant=acme/r1/run.json";
    assert!(
        archive
            .put_new(key, Bytes::from_static(b"first"))
            .await
            .unwrap()
    );
    assert!(
        !archive
            .put_new(key, Bytes::from_static(b"second"))
            .await
            .unwrap()
    );
    assert_eq!(get(archive, key).await.as_deref(), Some(&b"first"[..]));
    put(archive, KEY, b"trace").await;
    assert!(
        !archive
            .put_new(KEY, Bytes::from_static(b"other"))
            .await
            .unwrap()
    );
    assert_eq!(get(archive, KEY).await.as_deref(), Some(&b"trace"[..]));
}

/// Of writers racing `put_new` on one key, exactly one wins, and its body is the object.
pub async fn of_racing_put_news_exactly_one_wins(archive: &dyn TraceArchive) {
    let key = "datasets/tenant=acme/name=d/v000001.jsonl.gz";
    let bodies: Vec<Bytes> = (0..8).map(|i| Bytes::from(format!("body {i}"))).collect();
    let won = futures_util::future::join_all(
        bodies.iter().map(|body| archive.put_new(key, body.clone())),
    )
    .await;
    let winners: Vec<usize> = won
        .iter()
        .enumerate()
        .filter(|(_, w)| *w.as_ref().unwrap())
        .map(|(i, _)| i)
        .collect();
    assert_eq!(winners.len(), 1, "{won:?}");
    assert_eq!(get(archive, key).await, Some(bodies[winners[0]].clone()));
}
