//! Domain experts in the loop: versioned [`Rubric`]s, annotation queues whose items have
//! a fixed number of grading slots that graders lease one at a time ([`QueueSpec`],
//! [`Claim`]), [`Grade`]s with justifications, and the [`GradingStore`] port they are kept
//! in (SQLite locally, DynamoDB on AWS).
//!
//! The rules (what a valid rubric, queue or grade is) live here; a store only keeps what
//! it is given and makes claims and submissions atomic.

pub mod calibrate;
pub mod grade;
pub mod plan;
pub mod queue;
pub mod rubric;
pub mod store;

pub use grade::{Answer, Draft, Grade, check_grade, disagreement};
pub use plan::plan_items;
pub use queue::{Adjudication, Claim, ItemState, QueueItem, QueueSpec, SlotState};
pub use rubric::{Criterion, Rubric, RubricRef, Scale, ScorerLink};
pub use store::{GradingError, GradingStore};
