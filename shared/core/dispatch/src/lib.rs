//! Agent dispatch: Durable Streams subscriptions. A subscription links streams (by a
//! pattern over their names, or explicitly) and wakes a worker when any of them has events
//! past its cursor: by a signed webhook, or by a wake event on a stream that a pool of
//! workers follows and claims from, one at a time under a lease.
//!
//! - [`model`]: a subscription and its transitions (pure: the tails and the time given).
//! - [`service`]: requests, appends, deliveries and the sweeper over the ports.
//! - [`store`]: the [`SubscriptionStore`], [`StreamCatalog`] and [`WebhookClient`] ports.
//! - [`signing`]: Ed25519 webhook signatures and the JWK Set.
//! - [`glob`], [`url_check`]: stream-name patterns, and webhook targets that are safe.

pub mod error;
pub mod glob;
pub mod model;
pub mod service;
pub mod signing;
pub mod store;
pub mod url_check;

pub use error::DispatchError;
pub use model::{Delivery, Spec, Subscription};
pub use service::{Dispatch, DispatchConfig, DispatchObserver, Sends};
pub use store::{
    MemorySubscriptionStore, StoreError, StreamCatalog, SubscriptionStore, WebhookClient,
};
pub use url_check::Targets;
