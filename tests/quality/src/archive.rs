//! Reading an archive directory, as `agentwire import --out` writes it.

use std::path::{Path, PathBuf};

use agentwire_trace::{Span, decode_jsonl_gz};
use anyhow::{Context, bail};

/// The spans of every trace under `dir/traces/`, in path order.
pub fn read_archive(dir: &Path) -> anyhow::Result<Vec<Vec<Span>>> {
    let files = trace_files(&dir.join("traces"))?;
    if files.is_empty() {
        bail!("no traces/**/*.jsonl.gz under {}", dir.display());
    }
    files
        .iter()
        .map(|f| {
            let bytes = std::fs::read(f).with_context(|| format!("reading {}", f.display()))?;
            decode_jsonl_gz(&bytes).with_context(|| format!("decoding {}", f.display()))
        })
        .collect()
}

/// Every `*.jsonl.gz` under `dir`, in path order.
pub fn trace_files(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    fn collect(dir: &Path, out: &mut Vec<PathBuf>) -> anyhow::Result<()> {
        for entry in std::fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))? {
            let path = entry?.path();
            if path.is_dir() {
                collect(&path, out)?;
            } else if path.to_string_lossy().ends_with(".jsonl.gz") {
                out.push(path);
            }
        }
        Ok(())
    }
    let mut files = Vec::new();
    collect(dir, &mut files)?;
    files.sort();
    Ok(files)
}
