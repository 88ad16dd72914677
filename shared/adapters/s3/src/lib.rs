//! S3 for what does not belong in DynamoDB: payloads over the claim-check size
//! ([`BlobStore`], under `blobs/`) and archived traces ([`TraceArchive`], under `traces/`).

use agentwire_session::{BlobStore, StorageError};
use agentwire_trace::{ArchiveError, TraceArchive};
use async_trait::async_trait;
use aws_sdk_s3::Client;
use aws_sdk_s3::error::DisplayErrorContext;
use aws_sdk_s3::primitives::ByteStream;
use bytes::Bytes;
use tracing::instrument;

/// One bucket, holding blobs and traces under their own prefixes (keys carry them).
#[derive(Clone)]
pub struct S3Bucket {
    client: Client,
    bucket: String,
}

/// A client for an S3-compatible endpoint (a local S3 server) with static credentials and
/// path-style addressing.
pub fn local_client(endpoint: &str) -> Client {
    use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region};
    let config = aws_sdk_s3::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .region(Region::new("us-east-1"))
        .force_path_style(true)
        .credentials_provider(Credentials::new(
            "local",
            "local",
            None,
            None,
            "agentwire-local",
        ))
        .build();
    Client::from_conf(config)
}

impl S3Bucket {
    pub fn new(client: Client, bucket: impl Into<String>) -> S3Bucket {
        S3Bucket {
            client,
            bucket: bucket.into(),
        }
    }

    /// Creates the bucket if it does not exist; for local servers and tests.
    pub async fn ensure_bucket(&self) -> Result<(), StorageError> {
        if self
            .client
            .head_bucket()
            .bucket(&self.bucket)
            .send()
            .await
            .is_ok()
        {
            return Ok(());
        }
        self.client
            .create_bucket()
            .bucket(&self.bucket)
            .send()
            .await
            .map_err(|e| failed("create bucket", &self.bucket, e))?;
        Ok(())
    }

    async fn put(&self, key: &str, body: Bytes) -> Result<(), StorageError> {
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .body(ByteStream::from(body))
            .send()
            .await
            .map_err(|e| failed("put", key, e))?;
        Ok(())
    }

    async fn get(&self, key: &str) -> Result<Option<Bytes>, StorageError> {
        let object = match self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
        {
            Ok(object) => object,
            Err(e) if e.as_service_error().is_some_and(|e| e.is_no_such_key()) => return Ok(None),
            Err(e) => return Err(failed("get", key, e)),
        };
        let body = object
            .body
            .collect()
            .await
            .map_err(|e| failed("read", key, e))?;
        Ok(Some(body.into_bytes()))
    }
}

fn failed(what: &str, key: &str, e: impl std::error::Error) -> StorageError {
    StorageError::new(format!("s3 {what} {key}: {}", DisplayErrorContext(e)))
}

#[async_trait]
impl BlobStore for S3Bucket {
    #[instrument(skip(self, data), fields(bytes = data.len()))]
    async fn put(&self, key: &str, data: Bytes) -> Result<(), StorageError> {
        S3Bucket::put(self, key, data).await
    }

    #[instrument(skip(self))]
    async fn get(&self, key: &str) -> Result<Bytes, StorageError> {
        S3Bucket::get(self, key)
            .await?
            .ok_or_else(|| StorageError::new(format!("s3 blob {key} is missing")))
    }

    #[instrument(skip(self))]
    async fn delete(&self, key: &str) -> Result<(), StorageError> {
        self.client
            .delete_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| failed("delete", key, e))?;
        Ok(())
    }
}

#[async_trait]
impl TraceArchive for S3Bucket {
    async fn put(&self, key: &str, body: Bytes) -> Result<(), ArchiveError> {
        S3Bucket::put(self, key, body)
            .await
            .map_err(|e| ArchiveError(e.message))
    }

    async fn put_new(&self, key: &str, body: Bytes) -> Result<bool, ArchiveError> {
        // S3's conditional write: `If-None-Match: *` makes a put that would replace an
        // object fail with 412 Precondition Failed.
        let sent = self
            .client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .if_none_match("*")
            .body(ByteStream::from(body))
            .send()
            .await;
        match sent {
            Ok(_) => Ok(true),
            Err(e)
                if e.raw_response()
                    .is_some_and(|r| matches!(r.status().as_u16(), 412 | 409)) =>
            {
                Ok(false)
            }
            Err(e) => Err(ArchiveError(failed("put", key, e).message)),
        }
    }

    async fn get(&self, key: &str) -> Result<Option<Bytes>, ArchiveError> {
        S3Bucket::get(self, key)
            .await
            .map_err(|e| ArchiveError(e.message))
    }

    async fn list(&self, prefix: &str) -> Result<Vec<String>, ArchiveError> {
        let mut pages = self
            .client
            .list_objects_v2()
            .bucket(&self.bucket)
            .prefix(prefix)
            .into_paginator()
            .send();
        let mut keys = Vec::new();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| ArchiveError(failed("list", prefix, e).message))?;
            keys.extend(
                page.contents()
                    .iter()
                    .filter_map(|o| o.key().map(str::to_owned)),
            );
        }
        // S3 lists in UTF-8 binary order already; sorting keeps the promise on any server.
        keys.sort();
        Ok(keys)
    }
}
