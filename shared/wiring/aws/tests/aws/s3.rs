//! The S3 contracts on the client the functions send with (`https_client`: reqwest, not
//! the SDK's own client, which `agentwire-s3`'s tests use), against the local S3 server.

use std::sync::Arc;

use agentwire_contracts::{blob_store_contract, trace_archive_contract};
use agentwire_s3::S3Bucket;
use agentwire_session::BlobStore;
use agentwire_trace::TraceArchive;

async fn bucket() -> S3Bucket {
    let endpoint =
        std::env::var("AGENTWIRE_S3_ENDPOINT").unwrap_or_else(|_| "http://127.0.0.1:9000".into());
    let config = agentwire_s3::local_client(&endpoint)
        .config()
        .to_builder()
        .http_client(agentwire_aws_stack::https_client())
        .build();
    let bucket = S3Bucket::new(
        aws_sdk_s3::Client::from_conf(config),
        format!("agentwire-reqwest-{:016x}", fastrand::u64(..)),
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
