//! What happened to a session, as the archiver needs to know it: told by the DynamoDB
//! adapter from the session table's stream on AWS, and by the session service's append
//! observer locally.

/// One change to a session (a stored, tenant-scoped name).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionChange {
    /// Appended to at `at_ms` (unix ms).
    Active { session: String, at_ms: i64 },
    /// Closed just now: nothing more will be appended, archive it.
    Closed { session: String },
    /// Deleted (or expired): its data is gone, there is nothing to archive.
    Deleted { session: String },
}
