//! The ConnectionRegistry contract, on the in-process registry `agentwire dev` uses.

use std::sync::Arc;

use agentwire_contracts::{ManualClock, connection_registry_contract};
use agentwire_realtime::{ConnectionRegistry, InMemoryConnectionRegistry};

async fn registry(clock: Arc<ManualClock>) -> Arc<dyn ConnectionRegistry> {
    Arc::new(InMemoryConnectionRegistry::with_clock(clock))
}

connection_registry_contract!(registry);
