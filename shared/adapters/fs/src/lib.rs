//! Local storage in a directory: the trace archive of `agentwire dev`, at the same keys as
//! on S3, so DuckDB reads either as is.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use bytes::Bytes;
use tokio::io::AsyncWriteExt;

use agentwire_trace::{ArchiveError, TraceArchive};

/// Traces as files under a root directory, at their object keys.
pub struct DirTraceArchive {
    root: PathBuf,
}

impl DirTraceArchive {
    pub fn new(root: impl Into<PathBuf>) -> DirTraceArchive {
        DirTraceArchive { root: root.into() }
    }

    /// The file for `key`. `object_key` never makes an empty, `.` or `..` segment; refusing
    /// them keeps every key inside the root and on a file of its own.
    fn path(&self, key: &str) -> Result<PathBuf, ArchiveError> {
        if key
            .split('/')
            .any(|part| part.is_empty() || part == "." || part == "..")
        {
            return Err(ArchiveError(format!("invalid archive key {key:?}")));
        }
        Ok(self.root.join(Path::new(key)))
    }
}

/// A new file beside `path` to write it aside in: its name is this put's alone, and it is
/// created, never opened, so no other key's file (which may have any name) is overwritten.
async fn create_partial(path: &Path) -> Result<(PathBuf, tokio::fs::File), ArchiveError> {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    loop {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let partial = path.with_file_name(format!("{name}.{}-{n}.partial", std::process::id()));
        let created = tokio::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&partial)
            .await;
        match created {
            Ok(file) => return Ok((partial, file)),
            // Left by a crashed process with the same pid; try the next name.
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(failed(&partial, e)),
        }
    }
}

/// Writes `body` and waits until it is on disk, so the rename never publishes a file whose
/// data a crash could still lose.
async fn write_durably(mut file: tokio::fs::File, body: &[u8]) -> std::io::Result<()> {
    file.write_all(body).await?;
    file.sync_all().await
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
        let (partial, file) = create_partial(&path).await?;
        let written = write_durably(file, &body).await;
        let renamed = match written {
            Ok(()) => tokio::fs::rename(&partial, &path).await,
            Err(e) => Err(e),
        };
        if let Err(e) = renamed {
            let _ = tokio::fs::remove_file(&partial).await;
            return Err(failed(&path, e));
        }
        Ok(())
    }

    async fn put_new(&self, key: &str, body: Bytes) -> Result<bool, ArchiveError> {
        let path = self.path(key)?;
        if let Some(dir) = path.parent() {
            tokio::fs::create_dir_all(dir)
                .await
                .map_err(|e| failed(dir, e))?;
        }
        // Written aside, then hard-linked in: a link, unlike a rename, fails when the name
        // is taken, so of two writers exactly one publishes.
        let (partial, file) = create_partial(&path).await?;
        let linked = match write_durably(file, &body).await {
            Ok(()) => tokio::fs::hard_link(&partial, &path).await,
            Err(e) => Err(e),
        };
        let _ = tokio::fs::remove_file(&partial).await;
        match linked {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
            Err(e) => Err(failed(&path, e)),
        }
    }

    async fn get(&self, key: &str) -> Result<Option<Bytes>, ArchiveError> {
        let path = self.path(key)?;
        match tokio::fs::read(&path).await {
            Ok(body) => Ok(Some(body.into())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(failed(&path, e)),
        }
    }

    async fn list(&self, prefix: &str) -> Result<Vec<String>, ArchiveError> {
        // Walk only the directory the prefix's whole segments name, not the whole archive.
        let dir_part = prefix.rsplit_once('/').map_or("", |(dir, _)| dir);
        let start = if dir_part.is_empty() {
            self.root.clone()
        } else {
            self.path(dir_part)?
        };
        let mut keys = Vec::new();
        let mut pending = vec![start];
        while let Some(dir) = pending.pop() {
            let mut entries = match tokio::fs::read_dir(&dir).await {
                Ok(entries) => entries,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(failed(&dir, e)),
            };
            while let Some(entry) = entries.next_entry().await.map_err(|e| failed(&dir, e))? {
                let path = entry.path();
                let kind = entry.file_type().await.map_err(|e| failed(&path, e))?;
                if kind.is_dir() {
                    pending.push(path);
                    continue;
                }
                let Ok(relative) = path.strip_prefix(&self.root) else {
                    continue;
                };
                let key = relative
                    .to_string_lossy()
                    .replace(std::path::MAIN_SEPARATOR, "/");
                // Files being written aside are not objects yet.
                if key.starts_with(prefix) && !key.ends_with(".partial") {
                    keys.push(key);
                }
            }
        }
        keys.sort();
        Ok(keys)
    }
}
