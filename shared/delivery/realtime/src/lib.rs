//! WebSocket sessions, shaped like API Gateway WebSocket Lambda handlers.
//!
//! [`Realtime::handle`] takes an `ApiGatewayWebsocketProxyRequest` (`$connect`,
//! `$disconnect`, or a message routed by its `action`) and returns an
//! `ApiGatewayProxyResponse`. It talks to clients only through the [`ClientPush`] port and
//! remembers them only through the [`ConnectionRegistry`] port, so the same code runs in
//! `agentwire dev`'s local gateway and on Lambda behind API Gateway.
//!
//! Client requests (JSON, one per message):
//! - `{"action":"subscribe","session":"s","offset":"-1"|"now"|<offset>}`: replay what follows
//!   the offset, then follow live.
//! - `{"action":"unsubscribe","session":"s"}`
//! - `{"action":"control","session":"s","kind":"cancel"|"steer"|"pause"|"resume","data":{…}}`
//! - `{"action":"send","session":"s","text":"…","client_message_id":"…"?}`: a user message;
//!   its id is the server's (`u_<random>`, in the ack's `message_id`), the client's
//!   optional correlation id is only echoed (`client_message_id`).
//! - `{"action":"presence","session":"s"}`: who follows the session now.
//! - `{"action":"ping"}`: answered `{"type":"pong","tails":{"<session>":"<offset>"}}`, the
//!   current tail of every session the connection follows, so a client can see a gap at
//!   the end of a session (a lost `message.end`).
//!
//! Pushes stop when the connection's token expires: the next push or request gets
//! `{"type":"error","code":"token_expired",…}` and the close code 4001. A client that
//! cannot keep up is closed with 4002 (after a `behind` error frame if it can take one),
//! never silently skipped; it reconnects and resumes from the last offset it saw.
//!
//! Any request may carry an `id`, echoed in its reply (`subscribed`, `ack`, `presence`,
//! `pong`) or `error` frame.

mod closing;
mod fanout;
pub mod frames;
mod handler;
mod memory;
pub mod ports;
pub mod presence;

pub use fanout::Fanout;
pub use handler::Realtime;
pub use memory::InMemoryConnectionRegistry;
pub use ports::{
    Announce, CLOSE_BEHIND, CLOSE_TOKEN_EXPIRED, ClientPush, Connection, ConnectionRegistry,
    Disconnected, Member, PRESENCE_WINDOW_MS, PushError, RegistryError, Subscriber, Subscription,
};

/// The session name a client uses: the stored name without its tenant.
pub fn client_name(stored: &str) -> &str {
    agentwire_auth::split_stored_name(stored).map_or(stored, |(_, name)| name)
}
