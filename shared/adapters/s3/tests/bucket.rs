//! The S3 adapters against a real S3-compatible server (moto's, started by
//! `tests/run-all.sh`; set AGENTWIRE_S3_ENDPOINT to use another): the BlobStore and
//! TraceArchive contracts, each case on a bucket of its own.

use std::sync::Arc;

use agentwire_contracts::{blob_store_contract, trace_archive_contract};
use agentwire_s3::{S3Bucket, local_client};
use agentwire_session::BlobStore;
use agentwire_trace::TraceArchive;
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

async fn blobs() -> Arc<dyn BlobStore> {
    Arc::new(bucket().await)
}

async fn archive() -> (Arc<dyn TraceArchive>, ()) {
    (Arc::new(bucket().await), ())
}

blob_store_contract!(blobs);
trace_archive_contract!(archive);

#[tokio::test]
async fn a_missing_blob_names_its_key() {
    let missing = BlobStore::get(&bucket().await, "blobs/a")
        .await
        .unwrap_err();
    assert!(missing.message.contains("blobs/a is missing"), "{missing}");
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
