//! The ports the session service stands on.

use async_trait::async_trait;

use crate::error::{AppendError, CreateError, DeleteError, ReadError, StorageError};
use crate::model::{AppendRequest, Appended, CreateStream, Created, ReadBatch, StreamInfo};
use crate::offset::ReadFrom;

/// The durable, ordered log of every session: the one place session data is stored.
///
/// Every implementation keeps docs/ARCHITECTURE.md §4: offsets strictly increase without
/// gaps; an append is acknowledged only once durable; a producer's retry applies at most
/// once; a read from offset X returns exactly what follows X; concurrent appends to one
/// stream get one total order. A refused request changes nothing. Acknowledged data is
/// never lost. Expired streams behave as if they did not exist.
#[async_trait]
pub trait SessionLog: Send + Sync {
    /// Creates a stream, or confirms that an identical one exists (`created: false`).
    async fn create(&self, request: CreateStream) -> Result<Created, CreateError>;

    /// Appends to (and optionally closes) the stream, atomically with the producer's state.
    async fn append(&self, name: &str, request: AppendRequest) -> Result<Appended, AppendError>;

    /// Reads records from `from`, stopping after about `max_bytes` of data (always at least
    /// one record when there is any). Forks stitch in their sources' data. Resets a TTL.
    async fn read(
        &self,
        name: &str,
        from: ReadFrom,
        max_bytes: usize,
    ) -> Result<ReadBatch, ReadError>;

    /// The stream's metadata; does not reset a TTL.
    async fn head(&self, name: &str) -> Result<StreamInfo, ReadError>;

    /// Deletes the stream. One that forks still read from is kept, soft-deleted, until the
    /// last of them is gone.
    async fn delete(&self, name: &str) -> Result<(), DeleteError>;
}

/// Wall-clock time, as a port so TTL behaviour can be tested without sleeping.
pub trait Clock: Send + Sync {
    /// Milliseconds since the Unix epoch.
    fn now_ms(&self) -> i64;
}

/// The real clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> i64 {
        let since_epoch = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        since_epoch.as_millis() as i64
    }
}

/// Large payloads kept outside the log (a claim check): the log stores the key, the blob
/// store the bytes. Keys are chosen by the caller and written once.
#[async_trait]
pub trait BlobStore: Send + Sync {
    /// Stores `data` under `key`; durable once this returns.
    async fn put(&self, key: &str, data: bytes::Bytes) -> Result<(), StorageError>;

    /// The bytes stored under `key`; an error if there are none.
    async fn get(&self, key: &str) -> Result<bytes::Bytes, StorageError>;

    /// Removes `key`; removing a missing key succeeds.
    async fn delete(&self, key: &str) -> Result<(), StorageError>;
}
