//! Presence: a connection following a session is announced in the session itself, so every
//! device sees who joined and left, in order with everything else.

use agentwire_session::events::Envelope;
use agentwire_session::{
    AppendError, AppendRequest, Appended, Mode, Payload, ProtocolError, Sessions,
};
use bytes::Bytes;
use serde::Serialize;
use tracing::debug;

use crate::ports::Connection;

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

/// Announces that `connection` follows `session`.
pub async fn join(sessions: &Sessions, session: &str, connection: &Connection) {
    let join = Envelope::presence_join(user(connection), &connection.id);
    if let Err(e) = append_events(sessions, session, &[join]).await {
        debug!(error = %e, "presence.join not recorded");
    }
}

/// Announces that `connection` stopped following `session`. A closed or deleted session
/// simply keeps no record of it.
pub async fn leave(sessions: &Sessions, session: &str, connection: &Connection) {
    let leave = Envelope::presence_leave(user(connection), &connection.id);
    if let Err(e) = append_events(sessions, session, &[leave]).await {
        debug!(error = %e, "presence.leave not recorded");
    }
}
