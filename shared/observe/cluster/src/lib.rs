//! Unknown unknowns (docs/ARCHITECTURE.md §9.7): each night, every tenant's traces of the
//! day are clustered, so groups of similar conversations that go wrong together show up
//! without anyone writing a scorer for them.
//!
//! - [`docs`]: what is clustered of a trace, per [`View`]: the user's requests, or the
//!   explanations of its failing scores.
//! - [`embed`]: the embedding port; the local hashed TF-IDF ([`features`]) and
//!   OpenAI-compatible endpoints.
//! - [`reduce`], [`group`]: truncated SVD to a few dozen dimensions, then HDBSCAN with a
//!   noise class on a bounded sample, the rest assigned to the nearest cluster.
//! - [`label`]: distinctive terms per cluster (class-based TF-IDF).
//! - [`track`]: clusters matched one-to-one to the previous night's, so ids stay stable.
//! - [`night`]: one night of one tenant and view, start to end, and the records it writes.
//! - [`job`]: the nightly job over the archive, and where its results are kept.

pub mod docs;
pub mod embed;
pub mod features;
pub mod group;
pub mod job;
pub mod label;
#[cfg(feature = "minilm")]
pub mod minilm;
pub mod night;
pub mod reduce;
pub mod track;

pub use docs::{FAILING, docs_of};
pub use embed::{EmbedError, Embedder, LocalTfIdf, OpenAiEmbeddings};
pub use features::Sparse;
pub use job::{
    AfterNight, ClusterJob, ClusterSettings, NIGHTLY_EVERY, Store, clusters_key, embed_docs,
    members_key,
};
pub use night::{
    ClusterRecord, Doc, Figures, Member, Night, Outcome, Previous, Representative, Settings,
    Status, View, cluster_night,
};

use std::io::{Read, Write};

/// Records as gzip JSON lines (the format of every `clusters/` object).
pub fn encode_lines<T: serde::Serialize>(records: &[T]) -> Vec<u8> {
    let mut gzip = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    for record in records {
        let mut line = serde_json::to_vec(record).unwrap_or_default();
        line.push(b'\n');
        let _ = gzip.write_all(&line);
    }
    gzip.finish().unwrap_or_default()
}

/// The records of gzip (or plain) JSON lines; the error names the line.
pub fn decode_lines<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<Vec<T>, String> {
    let mut text = Vec::new();
    if bytes.starts_with(&[0x1f, 0x8b]) {
        flate2::read::MultiGzDecoder::new(bytes)
            .read_to_end(&mut text)
            .map_err(|e| format!("not valid gzip: {e}"))?;
    } else {
        text = bytes.to_vec();
    }
    text.split(|&b| b == b'\n')
        .enumerate()
        .filter(|(_, line)| !line.trim_ascii().is_empty())
        .map(|(i, line)| serde_json::from_slice(line).map_err(|e| format!("line {}: {e}", i + 1)))
        .collect()
}

#[cfg(test)]
mod tests;
