//! Tenants' scoring configurations, read from the archive's store at
//! `config/tenant=<tenant>/scoring.toml` and kept for a while, so a warm function does not
//! read the file for every trace.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use agentwire_scoring::{Scoring, ScoringConfig};
use agentwire_session::Clock;
use agentwire_session::path::encode_segment;
use agentwire_trace::TraceArchive;

/// How long a read configuration is used before it is read again.
pub const CONFIG_TTL: Duration = Duration::from_secs(60);

/// Where a tenant's scoring configuration is kept.
pub fn config_key(tenant: &str) -> String {
    format!("config/tenant={}/scoring.toml", encode_segment(tenant))
}

#[derive(Debug, Clone)]
pub(crate) enum ConfigLoadError {
    Storage(String),
    Invalid { config: String, reason: String },
}

/// When a tenant's configuration was read, and what it gave.
type Loaded = (i64, Result<Arc<Scoring>, ConfigLoadError>);

/// Each tenant's built scorers, or why its configuration is invalid, as last read.
pub struct TenantConfigs {
    archive: Arc<dyn TraceArchive>,
    clock: Arc<dyn Clock>,
    cache: Mutex<HashMap<String, Loaded>>,
}

impl TenantConfigs {
    pub fn new(archive: Arc<dyn TraceArchive>, clock: Arc<dyn Clock>) -> TenantConfigs {
        TenantConfigs {
            archive,
            clock,
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// The tenant's scorers: the defaults when it has no configuration file.
    pub(crate) async fn get(&self, tenant: &str) -> Result<Arc<Scoring>, ConfigLoadError> {
        let now = self.clock.now_ms();
        let ttl = CONFIG_TTL.as_millis() as i64;
        if let Some((at, cached)) = self.lock().get(tenant)
            && now - at < ttl
        {
            return cached.clone();
        }
        let key = config_key(tenant);
        let loaded = match self.archive.get(&key).await {
            // Storage failures are not cached: the next trace tries again.
            Err(e) => return Err(ConfigLoadError::Storage(e.to_string())),
            Ok(None) => {
                Scoring::new(ScoringConfig::default()).map_err(|e| ConfigLoadError::Invalid {
                    config: "(defaults)".into(),
                    reason: e.to_string(),
                })
            }
            Ok(Some(body)) => std::str::from_utf8(&body)
                .map_err(|_| "not UTF-8".to_owned())
                .and_then(|text| Scoring::parse(text).map_err(|e| e.to_string()))
                .map_err(|reason| ConfigLoadError::Invalid {
                    config: key.clone(),
                    reason,
                }),
        }
        .map(Arc::new);
        self.lock().insert(tenant.to_owned(), (now, loaded.clone()));
        loaded
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Loaded>> {
        // The map holds no invariant a panicking holder could break.
        self.cache.lock().unwrap_or_else(|e| e.into_inner())
    }
}
