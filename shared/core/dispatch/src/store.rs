//! The ports the dispatch service stores subscriptions through and lists streams with.

use std::collections::BTreeMap;
use std::sync::Mutex;

use agentwire_session::Offset;
use async_trait::async_trait;

use crate::model::{Delivered, Subscription};

/// A storage failure; the request may be retried.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("subscription storage: {0}")]
pub struct StoreError(pub String);

/// Subscriptions by tenant and id, each with a version for conditional writes: every
/// change is a read, a pure transition and a write that succeeds only if nobody wrote in
/// between, so concurrent requests (several Lambda instances) never undo each other.
#[async_trait]
pub trait SubscriptionStore: Send + Sync {
    /// The subscription and its version.
    async fn get(&self, tenant: &str, id: &str) -> Result<Option<(Subscription, u64)>, StoreError>;

    /// Writes `subscription` if the stored version is `expected` (`None`: if there is
    /// none); `false` when another write came first. The new version is `expected + 1`.
    async fn put(
        &self,
        subscription: &Subscription,
        expected: Option<u64>,
    ) -> Result<bool, StoreError>;

    /// Deletes it; whether it existed.
    async fn delete(&self, tenant: &str, id: &str) -> Result<bool, StoreError>;

    /// Every subscription of `tenant`, for matching its appends.
    async fn list(&self, tenant: &str) -> Result<Vec<Subscription>, StoreError>;

    /// (tenant, id) of subscriptions whose lease or retry falls due by `by_ms`.
    async fn due(&self, by_ms: i64) -> Result<Vec<(String, String)>, StoreError>;
}

/// The streams of a tenant with their tails: what a new pattern subscription links.
#[async_trait]
pub trait StreamCatalog: Send + Sync {
    /// Every live stream of `tenant`, by the name its clients use.
    async fn streams(&self, tenant: &str) -> Result<Vec<(String, Offset)>, StoreError>;
}

/// Sends signed wakes to webhooks.
#[async_trait]
pub trait WebhookClient: Send + Sync {
    /// POSTs `body` to `url` with the `Webhook-Signature` header `signature`, and says how
    /// the receiver answered. Implementations check the target before sending.
    async fn post(&self, url: &str, signature: &str, body: Vec<u8>) -> Delivered;
}

/// In memory, for tests and single-process use.
#[derive(Default)]
pub struct MemorySubscriptionStore {
    items: Mutex<BTreeMap<(String, String), (Subscription, u64)>>,
}

impl MemorySubscriptionStore {
    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<(String, String), (Subscription, u64)>> {
        // A panicking holder leaves whole entries: nothing half-written to guard against.
        self.items.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[async_trait]
impl SubscriptionStore for MemorySubscriptionStore {
    async fn get(&self, tenant: &str, id: &str) -> Result<Option<(Subscription, u64)>, StoreError> {
        Ok(self
            .lock()
            .get(&(tenant.to_owned(), id.to_owned()))
            .cloned())
    }

    async fn put(
        &self,
        subscription: &Subscription,
        expected: Option<u64>,
    ) -> Result<bool, StoreError> {
        let mut items = self.lock();
        let key = (subscription.tenant.clone(), subscription.id.clone());
        let current = items.get(&key).map(|(_, v)| *v);
        if current != expected {
            return Ok(false);
        }
        items.insert(key, (subscription.clone(), expected.map_or(1, |v| v + 1)));
        Ok(true)
    }

    async fn delete(&self, tenant: &str, id: &str) -> Result<bool, StoreError> {
        Ok(self
            .lock()
            .remove(&(tenant.to_owned(), id.to_owned()))
            .is_some())
    }

    async fn list(&self, tenant: &str) -> Result<Vec<Subscription>, StoreError> {
        Ok(self
            .lock()
            .iter()
            .filter(|((t, _), _)| t == tenant)
            .map(|(_, (s, _))| s.clone())
            .collect())
    }

    async fn due(&self, by_ms: i64) -> Result<Vec<(String, String)>, StoreError> {
        Ok(self
            .lock()
            .iter()
            .filter(|(_, (s, _))| s.next_due_ms().is_some_and(|at| at <= by_ms))
            .map(|(k, _)| k.clone())
            .collect())
    }
}
