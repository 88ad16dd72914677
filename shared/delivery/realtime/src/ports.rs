//! The ports WebSocket handlers push and remember connections through.

use agentwire_auth::Claims;
use async_trait::async_trait;
use bytes::Bytes;

/// Why a push did not reach a client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PushError {
    /// The connection no longer exists (API Gateway's 410): forget it.
    #[error("connection {0} is gone")]
    Gone(String),
    /// Anything else; the connection may still be there.
    #[error("push failed: {0}")]
    Failed(String),
}

/// Sends a frame to one connected client (API Gateway's `PostToConnection`).
#[async_trait]
pub trait ClientPush: Send + Sync {
    /// Sends `frame` (one WebSocket text message) to `connection_id`.
    async fn post(&self, connection_id: &str, frame: Bytes) -> Result<(), PushError>;
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

/// One user's presence in a session.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Member {
    pub user: String,
    /// How many of the user's connections follow the session.
    pub connections: usize,
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

    /// Forgets a connection; returns it and the sessions it followed, if it was known.
    async fn disconnect(
        &self,
        connection_id: &str,
    ) -> Result<Option<(Connection, Vec<String>)>, RegistryError>;

    /// The connection, if known.
    async fn get(&self, connection_id: &str) -> Result<Option<Connection>, RegistryError>;

    /// Adds a subscription; false if it already existed.
    async fn subscribe(&self, connection_id: &str, session: &str) -> Result<bool, RegistryError>;

    /// Removes a subscription; false if there was none.
    async fn unsubscribe(&self, connection_id: &str, session: &str) -> Result<bool, RegistryError>;

    /// Connections subscribed to `session`.
    async fn subscribers(&self, session: &str) -> Result<Vec<String>, RegistryError>;

    /// Who follows `session` now, one entry per user.
    async fn presence(&self, session: &str) -> Result<Vec<Member>, RegistryError>;
}
