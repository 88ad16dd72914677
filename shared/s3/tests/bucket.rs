//! The S3 adapters against a real S3-compatible server (moto's, started by
//! `tests/run-all.sh`; set AGENTWIRE_S3_ENDPOINT to use another).

use agentwire_archive::TraceArchive;
use agentwire_s3::{S3Bucket, local_client};
use agentwire_session::BlobStore;
use bytes::Bytes;

async fn bucket() -> S3Bucket {
    let endpoint =
        std::env::var("AGENTWIRE_S3_ENDPOINT").unwrap_or_else(|_| "http://127.0.0.1:9000".into());
    let bucket = S3Bucket::new(
        local_client(&endpoint),
        format!("agentwire-test-{:016x}", fastrand::u64(..)),
    );
    bucket.ensure_bucket().await.unwrap_or_else(|e| {
        panic!("an S3 server must be running at {endpoint} (tests/run-all.sh starts one): {e}")
    });
    bucket
}

#[tokio::test]
async fn blobs_round_trip_byte_exactly_and_delete() {
    let bucket = bucket().await;
    let data: Bytes = (0..5 * 1024 * 1024).map(|i| (i % 251) as u8).collect();
    BlobStore::put(&bucket, "blobs/a", data.clone())
        .await
        .unwrap();
    assert_eq!(BlobStore::get(&bucket, "blobs/a").await.unwrap(), data);
    bucket.delete("blobs/a").await.unwrap();
    let missing = BlobStore::get(&bucket, "blobs/a").await.unwrap_err();
    assert!(missing.message.contains("blobs/a is missing"), "{missing}");
    // Deleting what is not there succeeds: removal is idempotent.
    bucket.delete("blobs/a").await.unwrap();
}

#[tokio::test]
async fn traces_are_written_and_read_back() {
    let bucket = bucket().await;
    let key = "traces/dt=2026-11-26/tenant=acme/chat-1.jsonl.gz";
    assert_eq!(TraceArchive::get(&bucket, key).await.unwrap(), None);
    TraceArchive::put(&bucket, key, Bytes::from_static(b"one"))
        .await
        .unwrap();
    TraceArchive::put(&bucket, key, Bytes::from_static(b"two"))
        .await
        .unwrap();
    assert_eq!(
        TraceArchive::get(&bucket, key).await.unwrap().as_deref(),
        Some(&b"two"[..])
    );
}

#[tokio::test]
async fn a_missing_bucket_is_a_clear_error() {
    let endpoint =
        std::env::var("AGENTWIRE_S3_ENDPOINT").unwrap_or_else(|_| "http://127.0.0.1:9000".into());
    let bucket = S3Bucket::new(local_client(&endpoint), "no-such-bucket-agentwire");
    let e = BlobStore::put(&bucket, "blobs/x", Bytes::from_static(b"x"))
        .await
        .unwrap_err();
    assert!(e.message.contains("s3 put blobs/x"), "{e}");
    assert!(e.message.contains("NoSuchBucket"), "{e}");
}
