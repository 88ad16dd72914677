//! Presence: a connection following a session is announced in the session itself, so every
//! device sees who joined and left, in order with everything else.

use agentwire_session::{AppendError, AppendRequest, Appended, Mode, Payload, Sessions};
use bytes::Bytes;
use serde_json::{Value, json};
use tracing::debug;

use crate::ports::Connection;

/// Appends JSON events to a session in one batch.
pub async fn append_events(
    sessions: &Sessions,
    session: &str,
    events: &[Value],
) -> Result<Appended, AppendError> {
    let body = Bytes::from(Value::from(events.to_vec()).to_string());
    let payload = Payload::frame(Mode::Json, body, false)?;
    let request = AppendRequest {
        content_type: Some("application/json".into()),
        payload,
        ..AppendRequest::default()
    };
    sessions.append(session, request).await
}

fn event(kind: &str, connection: &Connection) -> Value {
    json!({
        "type": kind,
        "data": {
            "user": connection.claims.user.as_deref().unwrap_or("anonymous"),
            "connection": connection.id,
        }
    })
}

/// Announces that `connection` follows `session`.
pub async fn join(sessions: &Sessions, session: &str, connection: &Connection) {
    if let Err(e) = append_events(sessions, session, &[event("presence.join", connection)]).await {
        debug!(error = %e, "presence.join not recorded");
    }
}

/// Announces that `connection` stopped following `session`. A closed or deleted session
/// simply keeps no record of it.
pub async fn leave(sessions: &Sessions, session: &str, connection: &Connection) {
    if let Err(e) = append_events(sessions, session, &[event("presence.leave", connection)]).await {
        debug!(error = %e, "presence.leave not recorded");
    }
}
