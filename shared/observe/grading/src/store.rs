//! The port rubrics, queues, claims, drafts and grades are kept through: SQLite locally,
//! DynamoDB on AWS. Every method is scoped to one tenant; nothing crosses tenants.
//!
//! Validation (is this rubric, queue or grade well formed, does the grade fit the rubric)
//! happens before a store is called; a store enforces what only it can: that a rubric
//! version never changes, that queue names are unique, and that claims and submissions
//! are atomic (two graders never hold one slot; a grade is only taken from the grader who
//! holds, or last held, its slot).

use async_trait::async_trait;

use crate::grade::{Draft, Grade};
use crate::queue::{Claim, ItemState, QueueItem, QueueSpec};
use crate::rubric::{Rubric, RubricRef};

/// Why a grading call failed. The messages name the problem and hold no trace content.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum GradingError {
    /// The input is malformed: `field` names what (a dotted path), `message` why. 400.
    #[error("{field}: {message}")]
    Invalid { field: String, message: String },
    /// No such rubric version, queue or item. 404.
    #[error("{0}")]
    NotFound(String),
    /// It exists with a different body (a rubric version, a queue name). 409.
    #[error("{0}")]
    Conflict(String),
    /// The grader does not hold this item's slot: never claimed it, or the lease ran out
    /// and another grader took the slot, or they already graded it. 409.
    #[error("{0}")]
    NotHeld(String),
    /// The grader is not one of the queue's graders. 403.
    #[error("{0}")]
    NotAGrader(String),
    /// The queue's deadline has passed: no new claims. 409.
    #[error("{0}")]
    Closed(String),
    /// The storage failed; the same call may succeed later. 503.
    #[error("grading store: {0}")]
    Storage(String),
}

/// Rubrics, queues and grades of each tenant.
#[async_trait]
pub trait GradingStore: Send + Sync {
    /// Stores a rubric version. Storing the same body again is a no-op; a different body
    /// under a stored version is [`GradingError::Conflict`] (versions never change).
    async fn put_rubric(&self, tenant: &str, rubric: &Rubric) -> Result<(), GradingError>;

    /// A rubric version, or the latest version when `version` is `None`.
    async fn rubric(
        &self,
        tenant: &str,
        name: &str,
        version: Option<u32>,
    ) -> Result<Option<Rubric>, GradingError>;

    /// Creates a queue with its items (positions `0..`, distinct trace ids, given in
    /// order). A queue of that name already existing is [`GradingError::Conflict`], unless
    /// `spec` equals the stored one, when the items are added as by [`Self::add_items`]
    /// (so a retried create is safe).
    async fn create_queue(
        &self,
        tenant: &str,
        spec: &QueueSpec,
        items: &[QueueItem],
    ) -> Result<(), GradingError>;

    /// Adds items to an existing queue; an item whose trace id is already there is left
    /// as it is. Positions are the caller's (after the queue's last).
    async fn add_items(
        &self,
        tenant: &str,
        queue: &str,
        items: &[QueueItem],
    ) -> Result<(), GradingError>;

    /// A queue's definition.
    async fn queue(&self, tenant: &str, name: &str) -> Result<Option<QueueSpec>, GradingError>;

    /// The tenant's queues, by name.
    async fn queues(&self, tenant: &str) -> Result<Vec<QueueSpec>, GradingError>;

    /// Every item of a queue with its slots, by position.
    async fn items(&self, tenant: &str, queue: &str) -> Result<Vec<ItemState>, GradingError>;

    /// Gives `grader` a slot to grade, leased until `now_ms + spec.lease_ms`:
    /// - first, the slot they hold or last held and have not yet graded, as long as no one
    ///   else took it — even when its lease ran out, and also after the deadline —
    ///   renewed (so a grader who comes back late finds their item and draft again);
    /// - else the first item by position that they never claimed and that has a slot
    ///   free (never taken, or held by someone whose lease ended before `now_ms`);
    /// - `None` when nothing is left for them.
    ///
    /// Atomic: two graders never come away holding the same slot, and the grader is
    /// recorded as having seen the item. Unknown queue: [`GradingError::NotFound`]; not one
    /// of its graders: [`GradingError::NotAGrader`]; past the deadline (for a new claim):
    /// [`GradingError::Closed`].
    async fn claim(
        &self,
        tenant: &str,
        queue: &str,
        grader: &str,
        now_ms: i64,
    ) -> Result<Option<Claim>, GradingError>;

    /// Keeps `grade` and fills the grader's slot of its item for good, deleting their
    /// draft, atomically. Accepted when the grader holds the item's slot, or held it and
    /// the lease ran out with no one else taking it; otherwise [`GradingError::NotHeld`]
    /// (also when they already graded it). Unknown queue or item: `NotFound`.
    async fn submit(&self, tenant: &str, grade: &Grade, now_ms: i64) -> Result<(), GradingError>;

    /// Saves (replaces) a grader's draft for an item they have claimed and not yet graded;
    /// a grader who never claimed the item, or whose slot of it is already graded (a late
    /// autosave after submit), [`GradingError::NotHeld`], and no draft is kept. The check
    /// and the write are atomic with `submit`: a draft never outlives its grade.
    async fn save_draft(&self, tenant: &str, draft: &Draft) -> Result<(), GradingError>;

    /// A grader's draft for an item.
    async fn draft(
        &self,
        tenant: &str,
        queue: &str,
        trace_id: &str,
        grader: &str,
    ) -> Result<Option<Draft>, GradingError>;

    /// Every grade of a queue, by position then grader.
    async fn grades(&self, tenant: &str, queue: &str) -> Result<Vec<Grade>, GradingError>;
}

/// The tenant's queues grading `rubric` (that version), each with whether it is another
/// queue's adjudication queue (its grades settle the experts' disagreements).
pub async fn queues_of(
    store: &dyn GradingStore,
    tenant: &str,
    rubric: &RubricRef,
) -> Result<Vec<(QueueSpec, bool)>, GradingError> {
    let queues: Vec<QueueSpec> = store
        .queues(tenant)
        .await?
        .into_iter()
        .filter(|q| q.rubric == *rubric)
        .collect();
    let adjudicating: Vec<String> = queues
        .iter()
        .filter_map(|q| q.adjudication.as_ref().map(|a| a.queue.clone()))
        .collect();
    Ok(queues
        .into_iter()
        .map(|q| {
            let settles = adjudicating.contains(&q.name);
            (q, settles)
        })
        .collect())
}
