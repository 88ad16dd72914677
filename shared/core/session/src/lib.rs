//! Sessions as durable streams: the domain model, the Durable Streams protocol rules, and
//! the [`SessionLog`] port every storage backend implements.
//!
//! Nothing here knows about HTTP or storage engines: transports parse headers with
//! [`headers`], backends decide appends with [`rules`], and both share the model.

pub mod change;
pub mod content;
pub mod error;
pub mod events;
pub mod fork;
pub mod headers;
pub mod log;
pub mod model;
pub mod offset;
pub mod path;
pub mod rules;
pub mod service;

pub use change::SessionChange;
pub use content::{MAX_JSON_DEPTH, Mode, Payload, check_depth};
pub use error::{AppendError, CreateError, DeleteError, ProtocolError, ReadError, StorageError};
pub use log::{BlobStore, Clock, SessionLog, SystemClock};
pub use model::*;
pub use offset::{Offset, ReadFrom};
pub use service::{
    AppendObserver, Event, MAX_CONTROL_SCAN_BYTES, MAX_CONTROL_SCAN_EVENTS, Sessions, events_of,
    payload_events,
};
