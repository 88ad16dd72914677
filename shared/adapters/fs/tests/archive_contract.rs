//! The TraceArchive contract on a directory, and what only a directory must refuse.

use std::sync::Arc;

use agentwire_contracts::trace_archive_contract;
use agentwire_fs::DirTraceArchive;
use agentwire_trace::TraceArchive;
use bytes::Bytes;

async fn archive() -> (Arc<dyn TraceArchive>, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("temp dir");
    (Arc::new(DirTraceArchive::new(dir.path())), dir)
}

trace_archive_contract!(archive);

/// Keys that would leave the root are refused, and nothing is written beside it.
#[tokio::test]
async fn keys_never_leave_the_root() {
    let outer = tempfile::tempdir().expect("temp dir");
    let archive = DirTraceArchive::new(outer.path().join("root"));
    let outside = outer.path().join("escaped.jsonl.gz").display().to_string();
    for key in [
        "../escaped.jsonl.gz",
        "traces/../../escaped.jsonl.gz",
        outside.as_str(),
    ] {
        let put = archive.put(key, Bytes::from_static(b"x")).await;
        assert!(put.is_err(), "{key} was accepted");
        assert!(archive.get(key).await.is_err(), "{key} was read");
    }
    let beside: Vec<_> = std::fs::read_dir(outer.path())
        .expect("list")
        .map(|entry| entry.expect("entry").file_name())
        .collect();
    assert!(beside.iter().all(|name| name == "root"), "{beside:?}");
}
