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
    /// none); `false` when another write came first. The new version is `expected + 1`
    /// (a create after a delete continues the deleted one's count: versions never repeat).
    async fn put(
        &self,
        subscription: &Subscription,
        expected: Option<u64>,
    ) -> Result<bool, StoreError>;

    /// Deletes it, leaving a tombstone that keeps its version counting; whether it existed.
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
    items: Mutex<Items>,
}

/// By (tenant, id): the subscription (`None`: a tombstone) and its version.
type Items = BTreeMap<(String, String), (Option<Subscription>, u64)>;

impl MemorySubscriptionStore {
    fn lock(&self) -> std::sync::MutexGuard<'_, Items> {
        // A panicking holder leaves whole entries: nothing half-written to guard against.
        self.items.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[async_trait]
impl SubscriptionStore for MemorySubscriptionStore {
    async fn get(&self, tenant: &str, id: &str) -> Result<Option<(Subscription, u64)>, StoreError> {
        let items = self.lock();
        Ok(match items.get(&(tenant.to_owned(), id.to_owned())) {
            Some((Some(sub), version)) => Some((sub.clone(), *version)),
            _ => None,
        })
    }

    async fn put(
        &self,
        subscription: &Subscription,
        expected: Option<u64>,
    ) -> Result<bool, StoreError> {
        let mut items = self.lock();
        let key = (subscription.tenant.clone(), subscription.id.clone());
        let next = match (items.get(&key), expected) {
            (None, None) => 1,
            (Some((None, tomb)), None) => tomb + 1,
            (Some((Some(_), version)), Some(want)) if *version == want => want + 1,
            _ => return Ok(false),
        };
        items.insert(key, (Some(subscription.clone()), next));
        Ok(true)
    }

    async fn delete(&self, tenant: &str, id: &str) -> Result<bool, StoreError> {
        let mut items = self.lock();
        match items.get_mut(&(tenant.to_owned(), id.to_owned())) {
            Some((sub @ Some(_), version)) => {
                *sub = None;
                *version += 1;
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    async fn list(&self, tenant: &str) -> Result<Vec<Subscription>, StoreError> {
        Ok(self
            .lock()
            .iter()
            .filter(|((t, _), _)| t == tenant)
            .filter_map(|(_, (s, _))| s.clone())
            .collect())
    }

    async fn due(&self, by_ms: i64) -> Result<Vec<(String, String)>, StoreError> {
        Ok(self
            .lock()
            .iter()
            .filter(|(_, (s, _))| {
                s.as_ref()
                    .and_then(Subscription::next_due_ms)
                    .is_some_and(|at| at <= by_ms)
            })
            .map(|(k, _)| k.clone())
            .collect())
    }
}
