//! Dataset files to traces: one `Vec<Span>` per trace, for `agentwire import`.

use agentwire_trace::Span;

pub mod otlp_json;
pub mod ragtruth;
pub mod tau_bench;

/// What an importer read from one file: the traces it could build, and the input elements
/// it could not (reported and skipped; one bad element never stops the file).
#[derive(Debug, Clone, Default)]
pub struct Import {
    /// One `Vec<Span>` per trace, root span first.
    pub traces: Vec<Vec<Span>>,
    pub skipped: Vec<RowError>,
}

/// One input element (an array element, a line) that could not be imported.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}: {location}: {message}")]
pub struct RowError {
    /// The input file's name, as the caller gave it.
    pub file: String,
    /// Where in the file, as the importer counts: `element 3` (0-based array index),
    /// `line 7` (1-based), with the field when one is to blame (`element 3, field traj[2].role`).
    pub location: String,
    pub message: String,
}

/// A file that cannot be imported at all (not the format the importer reads).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}: {message}")]
pub struct ImportError {
    pub file: String,
    pub message: String,
}
