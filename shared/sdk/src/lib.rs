//! The Rust SDK for agentwire sessions.
//!
//! Agents use [`Client::open`] to get a [`Session`], stream replies with [`Session::reply`]
//! (token deltas coalesced into few appends), and learn of control (cancel, steer, pause,
//! resume) through [`Session::controls`] and each reply's [`CancelSignal`]. Clients follow a
//! session live over the WebSocket API with [`SessionFeed`], which orders and dedupes
//! events by offset and fills gaps over HTTP. A pool of agents serves every session whose
//! name matches a pattern with [`Worker`]: woken by a Durable Streams subscription, one
//! lease per session, lost workers' sessions answered by another.

mod agent;
mod client;
mod error;
mod feed;
mod worker;

pub use agent::{CancelSignal, Coalesce, ControlEvent, Reply, ReplyOutcome, Session};
pub use agentwire_session::Offset;
pub use agentwire_session::events::{ControlAck, ControlKind, Envelope, EventType};
pub use client::Client;
pub use error::SdkError;
pub use feed::{
    CLOSE_BEHIND, CLOSE_TOKEN_EXPIRED, DEFAULT_HEARTBEAT, FeedOptions, SessionFeed, TOKEN_EXPIRED,
    TokenSource,
};
pub use worker::{Job, UserMessage, UserMessages, Worker, WorkerOptions, user_messages};
