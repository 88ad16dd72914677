//! Score records as gzip JSON lines, the `scores/` objects' format.

use std::io::{Read, Write};

use agentwire_scoring::ScoreRecord;
use flate2::Compression;
use flate2::read::MultiGzDecoder;
use flate2::write::GzEncoder;

/// Why records could not be written or read.
#[derive(Debug, thiserror::Error)]
pub enum RecordsError {
    #[error("records cannot be compressed: {0}")]
    Compress(#[source] std::io::Error),
    #[error("not valid gzip: {0}")]
    Decompress(#[source] std::io::Error),
    #[error("line {line}: not a score record: {source}")]
    Decode {
        /// 1-based.
        line: usize,
        source: serde_json::Error,
    },
}

/// One JSON object per line, each ending in `\n`, gzipped.
pub fn encode_records(records: &[ScoreRecord]) -> Result<Vec<u8>, RecordsError> {
    let mut gzip = GzEncoder::new(Vec::new(), Compression::default());
    for record in records {
        // A record is strings and finite-or-not numbers; serde_json writes NaN as null,
        // which reads back as an error rather than a wrong number.
        let mut line = serde_json::to_vec(record).unwrap_or_default();
        line.push(b'\n');
        gzip.write_all(&line).map_err(RecordsError::Compress)?;
    }
    gzip.finish().map_err(RecordsError::Compress)
}

/// The records of an object [`encode_records`] wrote; blank lines are ignored.
pub fn decode_records(bytes: &[u8]) -> Result<Vec<ScoreRecord>, RecordsError> {
    let mut text = Vec::new();
    MultiGzDecoder::new(bytes)
        .read_to_end(&mut text)
        .map_err(RecordsError::Decompress)?;
    text.split(|&b| b == b'\n')
        .enumerate()
        .filter(|(_, line)| !line.trim_ascii().is_empty())
        .map(|(i, line)| {
            serde_json::from_slice(line).map_err(|source| RecordsError::Decode {
                line: i + 1,
                source,
            })
        })
        .collect()
}
