//! Ending connections the server must stop pushing to, with the frame and close code
//! that tell the client what to do (docs/ARCHITECTURE.md §6.2).

use bytes::Bytes;
use serde_json::Value;
use tracing::debug;

use crate::frames;
use crate::ports::{CLOSE_BEHIND, CLOSE_TOKEN_EXPIRED, ClientPush, PushError};

/// The `token_expired` error frame for a token that expired at `exp` (Unix seconds).
pub(crate) fn expired_frame(exp: i64, action: Option<&str>, id: Option<&Value>) -> Bytes {
    let message = format!("token expired at {exp} (Unix seconds): reconnect with a fresh token");
    frames::error("token_expired", &message, action, id)
}

/// Tells `connection_id` its token expired at `exp` and closes it with 4001. `Err` only
/// when the connection is gone (forget it).
pub(crate) async fn expire(
    push: &dyn ClientPush,
    connection_id: &str,
    exp: i64,
    action: Option<&str>,
    id: Option<&Value>,
) -> Result<(), PushError> {
    debug!(connection = %connection_id, "token expired: closing");
    // The frame is best effort: API Gateway cannot send close codes, so on AWS it is what
    // explains the close; locally the close code says it too.
    let _ = push
        .post(connection_id, expired_frame(exp, action, id))
        .await;
    closed(
        push.close(connection_id, CLOSE_TOKEN_EXPIRED, "token expired")
            .await,
    )
}

/// Closes `connection_id`, which missed a frame, with 4002: it reconnects and resumes by
/// offset instead of silently missing events. `Err` only when it is gone.
pub(crate) async fn behind(push: &dyn ClientPush, connection_id: &str) -> Result<(), PushError> {
    debug!(connection = %connection_id, "client behind: closing");
    let frame = frames::error(
        "behind",
        "frames could not be delivered fast enough: reconnect and resume each subscription from the last offset seen",
        None,
        None,
    );
    // Sent only if it can be: a full outbox or a throttled API refuses it, the close does not.
    let _ = push.post(connection_id, frame).await;
    closed(push.close(connection_id, CLOSE_BEHIND, "behind").await)
}

fn closed(result: Result<(), PushError>) -> Result<(), PushError> {
    match result {
        Err(PushError::Gone(id)) => Err(PushError::Gone(id)),
        Err(e) => {
            debug!(error = %e, "close failed; the connection ends at its next failed push");
            Ok(())
        }
        Ok(()) => Ok(()),
    }
}
