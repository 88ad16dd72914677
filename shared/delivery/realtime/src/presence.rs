//! Presence: a user following a session is announced in the session itself, so every
//! device sees who joined and left, in order with everything else. The registry decides
//! when (one join per user while connected, rate-limited: [`Announce`]); the live
//! `presence` query is exact either way.

use agentwire_session::events::Envelope;
use agentwire_session::{
    AppendError, AppendRequest, Appended, Mode, Payload, ProtocolError, Sessions,
};
use bytes::Bytes;
use serde::Serialize;
use tracing::debug;

use crate::ports::{Announce, Connection, Disconnected};

/// Appends events ([`Envelope`]s, or raw JSON values) to a session in one batch.
pub async fn append_events<E: Serialize>(
    sessions: &Sessions,
    session: &str,
    events: &[E],
) -> Result<Appended, AppendError> {
    let body = serde_json::to_vec(events).map_err(|e| ProtocolError::InvalidJson(e.to_string()))?;
    let body = Bytes::from(body);
    let payload = Payload::frame(Mode::Json, body, false)?;
    let request = AppendRequest {
        content_type: Some("application/json".into()),
        payload,
        ..AppendRequest::default()
    };
    sessions.append(session, request).await
}

fn user(connection: &Connection) -> &str {
    connection.claims.user.as_deref().unwrap_or("anonymous")
}

/// Records what the registry decided about `connection`'s user in `session`
/// ([`Announce`]): a `presence.join` or `presence.leave` naming the connection. A closed
/// or deleted session simply keeps no record of it.
pub async fn announce(
    sessions: &Sessions,
    session: &str,
    connection: &Connection,
    announce: Option<Announce>,
) {
    let event = match announce {
        Some(Announce::Join) => Envelope::presence_join(user(connection), &connection.id),
        Some(Announce::Leave) => Envelope::presence_leave(user(connection), &connection.id),
        None => return,
    };
    if let Err(e) = append_events(sessions, session, &[event]).await {
        debug!(error = %e, "presence not recorded");
    }
}

/// Records the leaves a disconnect decided on.
pub async fn disconnected(sessions: &Sessions, gone: &Disconnected) {
    for session in &gone.leaves {
        announce(sessions, session, &gone.connection, Some(Announce::Leave)).await;
    }
}
