//! The ConnectionRegistry contract, on the in-process registry `agentwire dev` uses.

use std::sync::Arc;

use agentwire_realtime::{ConnectionRegistry, InMemoryConnectionRegistry};
use agentwire_session_contract::connection_registry_contract;

async fn registry() -> Arc<dyn ConnectionRegistry> {
    Arc::new(InMemoryConnectionRegistry::default())
}

connection_registry_contract!(registry);
