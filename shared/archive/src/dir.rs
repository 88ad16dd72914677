//! The trace archive in a directory: `agentwire dev`'s, and readable by DuckDB as is.

use std::path::{Path, PathBuf};

use async_trait::async_trait;
use bytes::Bytes;

use crate::ports::{ArchiveError, TraceArchive};

/// Traces as files under a root directory, at their object keys.
pub struct DirTraceArchive {
    root: PathBuf,
}

impl DirTraceArchive {
    pub fn new(root: impl Into<PathBuf>) -> DirTraceArchive {
        DirTraceArchive { root: root.into() }
    }

    /// The file for `key`; keys are escaped by `object_key`, so no `..` can appear.
    fn path(&self, key: &str) -> Result<PathBuf, ArchiveError> {
        if key.split('/').any(|part| part.is_empty() || part == "..") {
            return Err(ArchiveError(format!("invalid archive key {key:?}")));
        }
        Ok(self.root.join(Path::new(key)))
    }
}

fn failed(path: &Path, e: std::io::Error) -> ArchiveError {
    ArchiveError(format!("{}: {e}", path.display()))
}

#[async_trait]
impl TraceArchive for DirTraceArchive {
    async fn put(&self, key: &str, body: Bytes) -> Result<(), ArchiveError> {
        let path = self.path(key)?;
        if let Some(dir) = path.parent() {
            tokio::fs::create_dir_all(dir)
                .await
                .map_err(|e| failed(dir, e))?;
        }
        // Write aside, then rename: readers never see half a trace.
        let partial = path.with_extension("partial");
        tokio::fs::write(&partial, &body)
            .await
            .map_err(|e| failed(&partial, e))?;
        tokio::fs::rename(&partial, &path)
            .await
            .map_err(|e| failed(&path, e))
    }

    async fn get(&self, key: &str) -> Result<Option<Bytes>, ArchiveError> {
        let path = self.path(key)?;
        match tokio::fs::read(&path).await {
            Ok(body) => Ok(Some(body.into())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(failed(&path, e)),
        }
    }
}
