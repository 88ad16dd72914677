//! Where datasets and runs are kept: objects in the trace archive's store (S3 on AWS, the
//! data directory locally), beside `traces/` and `scores/`, readable by DuckDB and Athena:
//!
//! - `datasets/tenant=<t>/name=<name>/v000001.jsonl.gz`: a version's items, gzip JSON
//!   lines. Written once with `put_new`: a version never changes, and of two uploads
//!   racing for one number exactly one gets it (the other takes the next).
//! - `runs/tenant=<t>/<run>/run.json`: the run (spec, status, summary once finished).
//! - `runs/tenant=<t>/<run>/items/<item>.json`: each item's result, written as it ends, so
//!   an interrupted run resumes without running done items again.
//! - `runs/tenant=<t>/<run>/results.jsonl.gz`: every item's result, once finished.

use std::io::{Read, Write};
use std::sync::Arc;

use agentwire_session::path::encode_segment;
use agentwire_trace::{ArchiveError, TraceArchive};
use bytes::Bytes;
use flate2::Compression;
use flate2::read::MultiGzDecoder;
use flate2::write::GzEncoder;
use serde::Serialize;

use crate::dataset::{self, Item};
use crate::run::{ItemResult, Run};

/// Why the store could not do what was asked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// Storage failed; the same call may succeed later.
    #[error("eval storage: {0}")]
    Storage(String),
    /// Something stored does not read back (written by another version, or damaged).
    #[error("{key}: {message}")]
    Corrupt { key: String, message: String },
}

impl From<ArchiveError> for StoreError {
    fn from(e: ArchiveError) -> StoreError {
        StoreError::Storage(e.0)
    }
}

/// A dataset version's items.
#[derive(Debug, Clone, PartialEq)]
pub struct DatasetVersion {
    pub name: String,
    pub version: u32,
    pub items: Vec<Item>,
}

/// Datasets and runs over an object store.
#[derive(Clone)]
pub struct EvalStore {
    objects: Arc<dyn TraceArchive>,
}

fn tenant_prefix(kind: &str, tenant: &str) -> String {
    format!("{kind}/tenant={}/", encode_segment(tenant))
}

fn version_key(tenant: &str, name: &str, version: u32) -> String {
    format!(
        "{}name={name}/v{version:06}.jsonl.gz",
        tenant_prefix("datasets", tenant)
    )
}

fn run_prefix(tenant: &str, run: &str) -> String {
    format!("{}{run}/", tenant_prefix("runs", tenant))
}

fn gzip(text: &[u8]) -> Bytes {
    let mut encoder = GzEncoder::new(Vec::new(), Compression::default());
    // Writing to a Vec cannot fail.
    let _ = encoder.write_all(text);
    Bytes::from(encoder.finish().unwrap_or_default())
}

fn gunzip(key: &str, body: &[u8]) -> Result<String, StoreError> {
    let mut text = String::new();
    MultiGzDecoder::new(body)
        .read_to_string(&mut text)
        .map_err(|e| StoreError::Corrupt {
            key: key.to_owned(),
            message: format!("not gzip text: {e}"),
        })?;
    Ok(text)
}

fn json<T: Serialize>(value: &T) -> Bytes {
    Bytes::from(serde_json::to_vec(value).unwrap_or_default())
}

fn parse<T: serde::de::DeserializeOwned>(key: &str, body: &[u8]) -> Result<T, StoreError> {
    serde_json::from_slice(body).map_err(|e| StoreError::Corrupt {
        key: key.to_owned(),
        message: format!("does not read back: {e}"),
    })
}

impl EvalStore {
    pub fn new(objects: Arc<dyn TraceArchive>) -> EvalStore {
        EvalStore { objects }
    }

    /// The versions of dataset `name`, oldest first.
    pub async fn versions(&self, tenant: &str, name: &str) -> Result<Vec<u32>, StoreError> {
        let prefix = format!("{}name={name}/v", tenant_prefix("datasets", tenant));
        let mut versions: Vec<u32> = self
            .objects
            .list(&prefix)
            .await?
            .iter()
            .filter_map(|k| {
                k.strip_prefix(&prefix)?
                    .strip_suffix(".jsonl.gz")?
                    .parse()
                    .ok()
            })
            .collect();
        versions.sort_unstable();
        Ok(versions)
    }

    /// Every dataset of the tenant with its versions, by name.
    pub async fn datasets(&self, tenant: &str) -> Result<Vec<(String, Vec<u32>)>, StoreError> {
        let prefix = tenant_prefix("datasets", tenant);
        let mut found: std::collections::BTreeMap<String, Vec<u32>> = Default::default();
        for key in self.objects.list(&prefix).await? {
            let Some(rest) = key
                .strip_prefix(&prefix)
                .and_then(|r| r.strip_prefix("name="))
            else {
                continue;
            };
            let Some((name, file)) = rest.split_once('/') else {
                continue;
            };
            if let Some(version) = file
                .strip_prefix('v')
                .and_then(|f| f.strip_suffix(".jsonl.gz"))
                .and_then(|v| v.parse().ok())
            {
                found.entry(name.to_owned()).or_default().push(version);
            }
        }
        Ok(found
            .into_iter()
            .map(|(name, mut versions)| {
                versions.sort_unstable();
                (name, versions)
            })
            .collect())
    }

    /// Version `version` of dataset `name` (the latest when `None`), or `None` when there
    /// is no such dataset or version.
    pub async fn dataset(
        &self,
        tenant: &str,
        name: &str,
        version: Option<u32>,
    ) -> Result<Option<DatasetVersion>, StoreError> {
        let version = match version {
            Some(v) => v,
            None => match self.versions(tenant, name).await?.last() {
                Some(v) => *v,
                None => return Ok(None),
            },
        };
        let key = version_key(tenant, name, version);
        let Some(body) = self.objects.get(&key).await? else {
            return Ok(None);
        };
        let items =
            dataset::parse_jsonl(&gunzip(&key, &body)?).map_err(|e| StoreError::Corrupt {
                key: key.clone(),
                message: e.to_string(),
            })?;
        Ok(Some(DatasetVersion {
            name: name.to_owned(),
            version,
            items,
        }))
    }

    /// Stores `items` as the next version of dataset `name`; when they are the latest
    /// version's items already, that version (a retried upload makes no new one). Returns
    /// the version and whether it was made now.
    pub async fn add_version(
        &self,
        tenant: &str,
        name: &str,
        items: &[Item],
    ) -> Result<(u32, bool), StoreError> {
        let text = dataset::to_jsonl(items);
        // What is stored must read back: a version that did not would block the dataset.
        if let Err(e) = dataset::parse_jsonl(&text) {
            return Err(StoreError::Corrupt {
                key: format!("dataset {name}"),
                message: format!("its items do not read back: {e}"),
            });
        }
        let body = gzip(text.as_bytes());
        loop {
            let latest = self.versions(tenant, name).await?.last().copied();
            if let Some(latest) = latest
                && let Some(stored) = self.dataset(tenant, name, Some(latest)).await?
                && stored.items == items
            {
                return Ok((latest, false));
            }
            let next = latest.unwrap_or(0) + 1;
            if self
                .objects
                .put_new(&version_key(tenant, name, next), body.clone())
                .await?
            {
                return Ok((next, true));
            }
            // Another upload took that number: look again.
        }
    }

    /// Creates the run record; false when a run with its id exists (nothing written).
    pub async fn create_run(&self, run: &Run) -> Result<bool, StoreError> {
        let key = format!("{}run.json", run_prefix(&run.spec.tenant, &run.spec.id));
        Ok(self.objects.put_new(&key, json(run)).await?)
    }

    /// Replaces the run record (its status and summary change as it runs).
    pub async fn save_run(&self, run: &Run) -> Result<(), StoreError> {
        let key = format!("{}run.json", run_prefix(&run.spec.tenant, &run.spec.id));
        Ok(self.objects.put(&key, json(run)).await?)
    }

    pub async fn run(&self, tenant: &str, id: &str) -> Result<Option<Run>, StoreError> {
        let key = format!("{}run.json", run_prefix(tenant, id));
        match self.objects.get(&key).await? {
            Some(body) => parse(&key, &body).map(Some),
            None => Ok(None),
        }
    }

    /// The ids of the tenant's runs, oldest first (ids sort by creation time).
    pub async fn run_ids(&self, tenant: &str) -> Result<Vec<String>, StoreError> {
        let prefix = tenant_prefix("runs", tenant);
        let mut ids: Vec<String> = self
            .objects
            .list(&prefix)
            .await?
            .iter()
            .filter_map(|k| k.strip_prefix(&prefix)?.strip_suffix("/run.json"))
            .filter(|id| !id.contains('/'))
            .map(str::to_owned)
            .collect();
        ids.sort();
        Ok(ids)
    }

    /// Every run of every tenant that is queued or running, as (tenant, run id).
    pub async fn unfinished(&self) -> Result<Vec<(String, String)>, StoreError> {
        let mut found = Vec::new();
        for key in self.objects.list("runs/tenant=").await? {
            let Some(rest) = key.strip_prefix("runs/tenant=") else {
                continue;
            };
            let parts: Vec<&str> = rest.split('/').collect();
            let [tenant, id, "run.json"] = parts[..] else {
                continue;
            };
            let Some(tenant) = agentwire_session::path::percent_decode(tenant) else {
                continue;
            };
            if let Some(run) = self.run(&tenant, id).await?
                && matches!(
                    run.status,
                    crate::run::Status::Queued | crate::run::Status::Running
                )
            {
                found.push((tenant, id.to_owned()));
            }
        }
        Ok(found)
    }

    /// Records one item's result (replacing an earlier one for the item).
    pub async fn save_item(
        &self,
        tenant: &str,
        run: &str,
        result: &ItemResult,
    ) -> Result<(), StoreError> {
        let key = format!("{}items/{}.json", run_prefix(tenant, run), result.item);
        Ok(self.objects.put(&key, json(result)).await?)
    }

    /// The results recorded so far, by item id.
    pub async fn items(&self, tenant: &str, run: &str) -> Result<Vec<ItemResult>, StoreError> {
        let prefix = format!("{}items/", run_prefix(tenant, run));
        let mut results = Vec::new();
        for key in self.objects.list(&prefix).await? {
            if let Some(body) = self.objects.get(&key).await? {
                results.push(parse::<ItemResult>(&key, &body)?);
            }
        }
        results.sort_by(|a, b| a.item.cmp(&b.item));
        Ok(results)
    }

    /// The ids of the items that have a result (from the listing, without reading them).
    pub async fn done_ids(&self, tenant: &str, run: &str) -> Result<Vec<String>, StoreError> {
        let prefix = format!("{}items/", run_prefix(tenant, run));
        Ok(self
            .objects
            .list(&prefix)
            .await?
            .iter()
            .filter_map(|k| k.strip_prefix(&prefix)?.strip_suffix(".json"))
            .map(str::to_owned)
            .collect())
    }

    /// How many items have a result (without reading them).
    pub async fn items_done(&self, tenant: &str, run: &str) -> Result<usize, StoreError> {
        Ok(self.done_ids(tenant, run).await?.len())
    }

    /// Stores the run's report page (`runs/tenant=<t>/<run>/report.html`).
    pub async fn save_report(
        &self,
        tenant: &str,
        run: &str,
        html: String,
    ) -> Result<(), StoreError> {
        let key = format!("{}report.html", run_prefix(tenant, run));
        Ok(self.objects.put(&key, Bytes::from(html)).await?)
    }

    /// The run's report page, once written.
    pub async fn report(&self, tenant: &str, run: &str) -> Result<Option<Bytes>, StoreError> {
        let key = format!("{}report.html", run_prefix(tenant, run));
        Ok(self.objects.get(&key).await?)
    }

    /// A finished run's results as [`EvalStore::save_results`] wrote them (one read), or
    /// `None` before the run finished.
    pub async fn results(
        &self,
        tenant: &str,
        run: &str,
    ) -> Result<Option<Vec<ItemResult>>, StoreError> {
        let key = format!("{}results.jsonl.gz", run_prefix(tenant, run));
        let Some(body) = self.objects.get(&key).await? else {
            return Ok(None);
        };
        gunzip(&key, &body)?
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|line| parse(&key, line.as_bytes()))
            .collect::<Result<Vec<_>, _>>()
            .map(Some)
    }

    /// Writes every result as one gzip JSON-lines object, for DuckDB and Athena.
    pub async fn save_results(
        &self,
        tenant: &str,
        run: &str,
        results: &[ItemResult],
    ) -> Result<String, StoreError> {
        let key = format!("{}results.jsonl.gz", run_prefix(tenant, run));
        let mut text = Vec::new();
        for result in results {
            text.extend_from_slice(&serde_json::to_vec(result).unwrap_or_default());
            text.push(b'\n');
        }
        self.objects.put(&key, gzip(&text)).await?;
        Ok(key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use agentwire_fs::DirTraceArchive;

    #[tokio::test]
    async fn versions_are_added_once_and_never_change() {
        let dir = tempfile::tempdir().unwrap();
        let store = EvalStore::new(Arc::new(DirTraceArchive::new(dir.path())));
        let one = dataset::parse_jsonl("{\"id\": \"a\", \"input\": \"x\"}").unwrap();
        let two = dataset::parse_jsonl("{\"id\": \"a\", \"input\": \"y\"}").unwrap();
        assert_eq!(
            store.add_version("acme", "smoke", &one).await.unwrap(),
            (1, true)
        );
        assert_eq!(
            store.add_version("acme", "smoke", &one).await.unwrap(),
            (1, false)
        );
        assert_eq!(
            store.add_version("acme", "smoke", &two).await.unwrap(),
            (2, true)
        );
        assert_eq!(
            store.add_version("other", "smoke", &two).await.unwrap(),
            (1, true)
        );
        assert_eq!(
            store
                .dataset("acme", "smoke", Some(1))
                .await
                .unwrap()
                .unwrap()
                .items,
            one
        );
        assert_eq!(
            store
                .dataset("acme", "smoke", None)
                .await
                .unwrap()
                .unwrap()
                .version,
            2
        );
        assert_eq!(store.dataset("acme", "smoke", Some(3)).await.unwrap(), None);
        assert_eq!(store.dataset("acme", "nope", None).await.unwrap(), None);
        assert_eq!(
            store.datasets("acme").await.unwrap(),
            [("smoke".to_owned(), vec![1, 2])]
        );
        // The version's object is gzip JSON lines of the items.
        let body = std::fs::read(
            dir.path()
                .join("datasets/tenant=acme/name=smoke/v000002.jsonl.gz"),
        )
        .unwrap();
        assert_eq!(gunzip("k", &body).unwrap(), dataset::to_jsonl(&two));
    }
}
