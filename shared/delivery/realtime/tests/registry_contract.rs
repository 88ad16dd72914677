//! The ConnectionRegistry contract, on the in-process registry `agentwire dev` uses.

use std::sync::Arc;

use agentwire_contracts::connection_registry_contract;
use agentwire_realtime::{ConnectionRegistry, InMemoryConnectionRegistry};

async fn registry() -> Arc<dyn ConnectionRegistry> {
    Arc::new(InMemoryConnectionRegistry::default())
}

connection_registry_contract!(registry);
