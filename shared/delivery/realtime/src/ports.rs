//! The ports WebSocket handlers push and remember connections through.

use agentwire_auth::Claims;
use async_trait::async_trait;
use bytes::Bytes;

/// Close code: the connection's token expired; reconnect with a fresh token.
pub const CLOSE_TOKEN_EXPIRED: u16 = 4001;
/// Close code: the client fell behind (frames could not be delivered); reconnect and
/// resume each subscription from the last offset seen.
pub const CLOSE_BEHIND: u16 = 4002;

/// Why a push did not reach a client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PushError {
    /// The connection no longer exists (API Gateway's 410): forget it.
    #[error("connection {0} is gone")]
    Gone(String),
    /// The client is not keeping up (the local outbox is full, or API Gateway throttled
    /// the push with 429 `LimitExceededException`): the frame was not delivered, so the
    /// connection must be closed with [`CLOSE_BEHIND`] for the client to resume by offset.
    #[error("connection {0} is behind")]
    Behind(String),
    /// Anything else; the connection may still be there.
    #[error("push failed: {0}")]
    Failed(String),
}

/// Sends a frame to one connected client (API Gateway's `PostToConnection`).
#[async_trait]
pub trait ClientPush: Send + Sync {
    /// Sends `frame` (one WebSocket text message) to `connection_id`.
    async fn post(&self, connection_id: &str, frame: Bytes) -> Result<(), PushError>;

    /// Closes `connection_id` with a WebSocket close `code` and `reason` where the
    /// transport can send one (the local gateway), or just ends it (API Gateway's
    /// `DeleteConnection`, which cannot choose a code: send an `error` frame first).
    /// Frames already accepted are delivered first unless the client is behind; no
    /// frame is accepted afterwards. Closing a connection that is gone is `Gone`.
    async fn close(&self, connection_id: &str, code: u16, reason: &str) -> Result<(), PushError>;
}

/// A connected client, as `$connect` admitted it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connection {
    pub id: String,
    /// What its token allowed at connect time; re-checked (expiry included) on every route.
    pub claims: Claims,
    /// Unix milliseconds.
    pub connected_at_ms: i64,
}

/// A connection subscribed to a session, as the fan-out needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscriber {
    /// The connection id.
    pub id: String,
    /// When its token expires (Unix seconds, `claims.exp`); `None` when the registry does
    /// not know (items written before it kept the expiry): look the connection up.
    pub token_exp: Option<i64>,
}

/// One user's presence in a session.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Member {
    pub user: String,
    /// How many of the user's connections follow the session.
    pub connections: usize,
}

/// What the session's log should record about a user's presence after a change.
///
/// The registry keeps, per user and session, whether the log currently says the user is
/// present (an announced join without its leave). A join is announced when a user with
/// live subscriptions is not announced yet, at most once per [`PRESENCE_WINDOW_MS`] per
/// user and session; a leave is announced when the user's last subscription goes and
/// only if the join was announced. So the log never claims a presence that ended, and
/// subscribe/unsubscribe cycles add at most one join and one leave per window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Announce {
    /// Append `presence.join`.
    Join,
    /// Append `presence.leave`.
    Leave,
}

/// At most one announced join (and so one leave) per user and session in this window.
pub const PRESENCE_WINDOW_MS: i64 = 60_000;

/// The outcome of a subscribe or unsubscribe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Subscription {
    /// Whether the subscription was added (subscribe) or removed (unsubscribe); false when
    /// it already existed, or there was none.
    pub changed: bool,
    /// What to append to the session's log for the connection's user, if anything.
    pub announce: Option<Announce>,
}

/// What `disconnect` removed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Disconnected {
    pub connection: Connection,
    /// Every session it followed.
    pub sessions: Vec<String>,
    /// Those of `sessions` whose log should record the user's leave (their last
    /// connection there went, and their join was announced).
    pub leaves: Vec<String>,
}

/// A failure of the registry's storage.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("connection registry: {0}")]
pub struct RegistryError(pub String);

/// Connections and what they follow. Session names here are stored (tenant-scoped) names.
#[async_trait]
pub trait ConnectionRegistry: Send + Sync {
    /// Remembers a new connection.
    async fn connect(&self, connection: Connection) -> Result<(), RegistryError>;

    /// Forgets a connection and its subscriptions, if it was known.
    async fn disconnect(&self, connection_id: &str) -> Result<Option<Disconnected>, RegistryError>;

    /// The connection, if known.
    async fn get(&self, connection_id: &str) -> Result<Option<Connection>, RegistryError>;

    /// Adds a subscription (`changed` false if it already existed) and says whether the
    /// user's join should be announced ([`Announce`]).
    async fn subscribe(
        &self,
        connection_id: &str,
        session: &str,
    ) -> Result<Subscription, RegistryError>;

    /// Removes a subscription (`changed` false if there was none) and says whether the
    /// user's leave should be announced ([`Announce`]).
    async fn unsubscribe(
        &self,
        connection_id: &str,
        session: &str,
    ) -> Result<Subscription, RegistryError>;

    /// Connections subscribed to `session`, with their tokens' expiry.
    async fn subscribers(&self, session: &str) -> Result<Vec<Subscriber>, RegistryError>;

    /// Sessions `connection_id` is subscribed to (none if it is unknown).
    async fn subscriptions(&self, connection_id: &str) -> Result<Vec<String>, RegistryError>;

    /// Who follows `session` now, one entry per user: exact, whatever the log announced.
    async fn presence(&self, session: &str) -> Result<Vec<Member>, RegistryError>;
}
