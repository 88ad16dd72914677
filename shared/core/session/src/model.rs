//! The session model: streams, records, and the requests and outcomes of each operation.

use bytes::Bytes;

use crate::content::Payload;
use crate::offset::Offset;

/// When a stream expires.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Expiry {
    /// Lives until deleted.
    #[default]
    Never,
    /// Expires after this many seconds without a read or write (sliding window).
    Ttl { seconds: u64 },
    /// Expires at this instant (Unix milliseconds).
    At { unix_ms: i64 },
}

impl Expiry {
    /// The instant the stream expires, given when it was last read or written.
    pub fn deadline_ms(self, last_access_ms: i64) -> Option<i64> {
        match self {
            Expiry::Never => None,
            Expiry::Ttl { seconds } => {
                Some(last_access_ms.saturating_add((seconds as i64).saturating_mul(1000)))
            }
            Expiry::At { unix_ms } => Some(unix_ms),
        }
    }

    /// Whether a stream last read or written at `last_access_ms` has expired at `now_ms`.
    pub fn has_passed(self, last_access_ms: i64, now_ms: i64) -> bool {
        self.deadline_ms(last_access_ms)
            .is_some_and(|deadline| deadline <= now_ms)
    }

    /// The expiry a fork gets: its own if it asked for one, else its source's (DS §4.2).
    pub fn for_fork(requested: Expiry, source: Expiry) -> Expiry {
        match requested {
            Expiry::Never => source,
            own => own,
        }
    }
}

/// An idempotent producer's claim on one append: `(Producer-Id, Producer-Epoch, Producer-Seq)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProducerClaim {
    pub id: String,
    pub epoch: u64,
    pub seq: u64,
}

/// What the log remembers of a producer on one stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProducerState {
    pub epoch: u64,
    /// The highest sequence number accepted in `epoch`.
    pub last_seq: u64,
}

/// Where a fork branches off its source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForkFrom {
    /// The source stream's name.
    pub source: String,
    /// The divergence point; `None` means the source's tail.
    pub offset: Option<Offset>,
    /// Units of the next source record to inherit past `offset`.
    pub sub_offset: u64,
}

/// A request to create a stream.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CreateStream {
    pub name: String,
    /// The requested content type; `None` means the default, or the fork source's.
    pub content_type: Option<String>,
    pub expiry: Expiry,
    /// Create the stream already closed (its initial content is then all it will hold).
    pub closed: bool,
    pub fork: Option<ForkFrom>,
    /// Initial content, as sent; framed by [`crate::rules::plan_create`].
    pub body: Bytes,
}

/// A stream's metadata, as HEAD reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamInfo {
    /// Internal identity, unique across deletions and re-creations of one name.
    pub id: u64,
    pub name: String,
    pub content_type: String,
    pub expiry: Expiry,
    /// The offset after the last unit: where the next append goes.
    pub tail: Offset,
    pub closed: bool,
    /// The fork source and divergence point, for forks.
    pub fork: Option<(String, Offset)>,
}

/// The result of a create: the stream, and whether this request created it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Created {
    pub info: StreamInfo,
    /// False when an identical stream already existed (idempotent PUT).
    pub created: bool,
}

/// A request to append to (and optionally close) a stream.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AppendRequest {
    /// The request's content type; required when `payload` is not empty.
    pub content_type: Option<String>,
    pub payload: Payload,
    /// Close the stream atomically after this append.
    pub close: bool,
    /// `Stream-Seq`: an opaque writer sequence that must strictly increase (byte order).
    pub stream_seq: Option<String>,
    pub producer: Option<ProducerClaim>,
}

/// What an accepted append did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppendKind {
    /// New data (or a first close) was written.
    Written,
    /// A producer retry of an append already applied; nothing was written.
    Duplicate,
    /// A close-only request on a stream that was already closed.
    AlreadyClosed,
}

/// The outcome of an accepted append.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    pub kind: AppendKind,
    /// Offset of the first appended unit (equals `tail` when nothing was written).
    pub start: Offset,
    /// The stream's tail after the append.
    pub tail: Offset,
    pub closed: bool,
    /// The producer's epoch and highest accepted sequence, when producer headers were sent.
    pub producer: Option<ProducerState>,
}

/// A stored unit range: one append batch, or the part of one a read asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Offset of the record's first unit.
    pub start: Offset,
    /// Offset after the record's last unit.
    pub end: Offset,
    /// Raw bytes, or JSON messages joined by commas.
    pub data: Bytes,
    /// When the append that wrote the record was committed, in unix milliseconds, by the
    /// log's clock: the same for every message of the record, and for the record read
    /// through a fork. 0 when unknown (stored before logs kept commit times).
    pub at_ms: i64,
}

/// The answer to a read: records in order from the requested offset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadBatch {
    pub info: StreamInfo,
    /// The offset the read started at.
    pub from: Offset,
    pub records: Vec<Record>,
    /// Where the next read should start.
    pub next: Offset,
}

impl ReadBatch {
    /// True when the batch reaches the stream's tail.
    pub fn up_to_date(&self) -> bool {
        self.next >= self.info.tail
    }

    /// True when the reader has everything a closed stream will ever hold (EOF).
    pub fn end_of_stream(&self) -> bool {
        self.info.closed && self.up_to_date()
    }

    /// Total size of the records' data.
    pub fn data_len(&self) -> usize {
        self.records.iter().map(|r| r.data.len()).sum()
    }
}
