//! Errors, one enum per operation. Each message names what was wrong; the HTTP layer maps
//! variants to status codes in one place.

use crate::offset::Offset;

/// A request that is malformed before it reaches a stream (always a client error).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolError {
    #[error("malformed offset {0:?}: expected -1, now, or an offset this server returned")]
    MalformedOffset(String),
    #[error("invalid Content-Type {0:?}: expected type/subtype")]
    InvalidContentType(String),
    #[error("body is not valid JSON: {0}")]
    InvalidJson(String),
    #[error("an append of an empty JSON array carries no messages")]
    EmptyJsonArray,
    #[error("empty append body: send data, or Stream-Closed: true to close the stream")]
    EmptyBody,
    #[error("append with a body needs a Content-Type header")]
    MissingContentType,
    #[error(
        "invalid Stream-TTL {0:?}: expected whole seconds from 0 to 9007199254740991 (2^53-1) in decimal, without sign or leading zeros"
    )]
    InvalidTtl(String),
    #[error(
        "invalid Stream-Expires-At {0:?}: expected an RFC 3339 timestamp between years 0000 and 9999 (UTC)"
    )]
    InvalidExpiresAt(String),
    #[error(
        "header {header} is not visible ASCII (byte 0x{byte:02X}): protocol header values must be ASCII, percent-encode anything else"
    )]
    NonAsciiHeader { header: &'static str, byte: u8 },
    #[error("JSON nests deeper than {limit} levels of arrays and objects")]
    JsonTooDeep { limit: usize },
    #[error("Stream-TTL and Stream-Expires-At cannot both be set")]
    TtlAndExpiresAt,
    #[error("Producer-Id, Producer-Epoch and Producer-Seq must be sent together (missing {0})")]
    PartialProducerHeaders(&'static str),
    #[error("invalid {header} {value:?}: {reason}")]
    InvalidHeader {
        header: &'static str,
        value: String,
        reason: &'static str,
    },
    #[error("{0} requires Stream-Forked-From")]
    ForkHeaderWithoutSource(&'static str),
    #[error("invalid stream name {0:?}")]
    InvalidName(String),
    #[error("stream name {0:?} is reserved: __ds is the protocol's control namespace")]
    ReservedName(String),
}

/// Why a stream could not be created (or forked).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CreateError {
    #[error(transparent)]
    Protocol(#[from] ProtocolError),
    #[error("stream {name} already exists with a different {field}")]
    ConfigMismatch { name: String, field: &'static str },
    #[error("stream {0} was deleted and its path is kept for the forks that reference it")]
    PathRetained(String),
    #[error("fork source {0} does not exist")]
    SourceNotFound(String),
    #[error("fork source {0} was deleted")]
    SourceDeleted(String),
    #[error("fork offset {offset} is beyond the source's tail {tail}")]
    ForkOffsetBeyondTail { offset: Offset, tail: Offset },
    #[error(
        "Stream-Fork-Sub-Offset {sub_offset} reaches past the next data boundary ({available} units available)"
    )]
    SubOffsetPastBoundary { sub_offset: u64, available: u64 },
    #[error("Content-Type {requested} does not match the fork source's {source_type}")]
    ForkContentTypeMismatch {
        requested: String,
        source_type: String,
    },
    #[error(transparent)]
    Storage(#[from] StorageError),
}

/// Why an append (or close) was refused. Nothing was written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AppendError {
    #[error(transparent)]
    Protocol(#[from] ProtocolError),
    #[error("stream {0} does not exist")]
    NotFound(String),
    #[error("stream {0} was deleted")]
    Gone(String),
    #[error("stream is closed; no more appends are accepted")]
    Closed { tail: Offset },
    #[error("Content-Type {requested} does not match the stream's {stream_type}")]
    ContentTypeMismatch {
        requested: String,
        stream_type: String,
    },
    #[error("Stream-Seq {received:?} is not greater than the last accepted {last:?}")]
    SeqRegression { received: String, last: String },
    #[error("producer epoch {received} is stale: the current epoch is {current}")]
    StaleEpoch { received: u64, current: u64 },
    #[error("producer sequence gap: expected {expected}, received {received}")]
    SeqGap { expected: u64, received: u64 },
    #[error("a new producer epoch must start at Producer-Seq 0, got {0}")]
    EpochMustStartAtZero(u64),
    #[error(transparent)]
    Storage(#[from] StorageError),
}

/// Why a read failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReadError {
    #[error(transparent)]
    Protocol(#[from] ProtocolError),
    #[error("stream {0} does not exist")]
    NotFound(String),
    #[error("stream {0} was deleted")]
    Gone(String),
    #[error(transparent)]
    Storage(#[from] StorageError),
}

/// Why a delete failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeleteError {
    #[error("stream {0} does not exist")]
    NotFound(String),
    #[error("stream {0} was already deleted")]
    Gone(String),
    #[error(transparent)]
    Storage(#[from] StorageError),
}

/// The backend failed; whether the operation took effect is unknown only if `retryable`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("storage failure: {message}")]
pub struct StorageError {
    /// What failed, without user data.
    pub message: String,
}

impl StorageError {
    /// A storage failure described by `message`.
    pub fn new(message: impl Into<String>) -> StorageError {
        StorageError {
            message: message.into(),
        }
    }
}
