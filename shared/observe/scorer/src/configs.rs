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

/// Where version `n` of a tenant's configuration is kept: every version written by
/// [`save_version`] stays, the live one is [`config_key`].
pub fn version_key(tenant: &str, n: u32) -> String {
    format!(
        "config/tenant={}/scoring/v{n:06}.toml",
        encode_segment(tenant)
    )
}

/// Makes `text` the tenant's live configuration and keeps it as the next version; returns
/// that version's number (1 for the first). Scorers pick it up within [`CONFIG_TTL`].
pub async fn save_version(
    archive: &dyn TraceArchive,
    tenant: &str,
    text: &str,
) -> Result<u32, agentwire_trace::ArchiveError> {
    let prefix = format!("config/tenant={}/scoring/v", encode_segment(tenant));
    let latest = archive
        .list(&prefix)
        .await?
        .iter()
        .filter_map(|key| {
            key.strip_prefix(&prefix)?
                .strip_suffix(".toml")?
                .parse::<u32>()
                .ok()
        })
        .max()
        .unwrap_or(0);
    let n = latest + 1;
    let body = bytes::Bytes::copy_from_slice(text.as_bytes());
    // The version first: a crash between the two leaves the history complete and the live
    // file as it was.
    archive.put(&version_key(tenant, n), body.clone()).await?;
    archive.put(&config_key(tenant), body).await?;
    Ok(n)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn each_saved_version_is_kept_and_the_last_is_live() {
        let dir = tempfile::tempdir().unwrap();
        let archive = agentwire_fs::DirTraceArchive::new(dir.path());
        assert_eq!(save_version(&archive, "acme", "a = 1\n").await.unwrap(), 1);
        assert_eq!(save_version(&archive, "acme", "a = 2\n").await.unwrap(), 2);
        assert_eq!(save_version(&archive, "other", "b = 1\n").await.unwrap(), 1);
        let get = |key: String| {
            let archive = &archive;
            async move { archive.get(&key).await.unwrap().unwrap() }
        };
        assert_eq!(get(version_key("acme", 1)).await, "a = 1\n");
        assert_eq!(get(version_key("acme", 2)).await, "a = 2\n");
        assert_eq!(get(config_key("acme")).await, "a = 2\n");
        assert_eq!(get(config_key("other")).await, "b = 1\n");
    }
}
