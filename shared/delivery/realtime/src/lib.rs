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
//! - `{"action":"send","session":"s","text":"…"}`: a user message.
//! - `{"action":"presence","session":"s"}`: who follows the session now.
//! - `{"action":"ping"}`
//!
//! Any request may carry an `id`, echoed in its reply (`subscribed`, `ack`, `presence`,
//! `pong`) or `error` frame.

mod fanout;
pub mod frames;
mod handler;
mod memory;
pub mod ports;
pub mod presence;

pub use fanout::Fanout;
pub use handler::Realtime;
pub use memory::InMemoryConnectionRegistry;
pub use ports::{ClientPush, Connection, ConnectionRegistry, Member, PushError, RegistryError};

/// The session name a client uses: the stored name without its tenant.
pub fn client_name(stored: &str) -> &str {
    stored.split_once('/').map_or(stored, |(_, name)| name)
}
