//! The SubscriptionStore contract on the in-memory store the tests and single processes use.

use std::sync::Arc;

use agentwire_contracts::subscription_store_contract;
use agentwire_dispatch::{MemorySubscriptionStore, SubscriptionStore};

async fn store() -> (Arc<dyn SubscriptionStore>, ()) {
    (Arc::new(MemorySubscriptionStore::default()), ())
}

subscription_store_contract!(store);
