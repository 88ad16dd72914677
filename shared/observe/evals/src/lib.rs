//! Evals: datasets of known inputs run through the real agent and scored by the same
//! scorers as production, plus the reference-based ones a dataset makes possible; runs
//! compared item by item with confidence intervals, and a gate for CI.
//!
//! - [`dataset`]: items (input, expectations, tags, metadata) as JSON lines;
//! - [`reference`]: exact, fuzzy, numeric, JSON and expected-facts scorers;
//! - [`run`]: runs, item results and their summary; [`stats`]: bootstrap and paired test;
//! - [`compare`]: two runs compared, and the gate's conditions;
//! - [`store`]: datasets and runs as objects beside the traces;
//! - [`runner`]: creates and carries out runs through the [`runner::Agent`] port, which
//!   [`drive::SessionAgent`] implements over sessions (dispatch delivers the question to
//!   whatever agent serves its name);.

pub mod compare;
pub mod dataset;
pub mod drive;
pub mod nightly;
pub mod pick;
pub mod reference;
pub mod run;
pub mod runner;
pub mod stats;
pub mod store;

pub use compare::{Comparison, Condition, compare, gate};
pub use dataset::{Item, parse_jsonl};
pub use drive::SessionAgent;
pub use run::{ItemResult, ItemStatus, Mode, Run, RunSpec, Status, Summary};
pub use runner::{AfterRun, Agent, AskError, EvalError, Launch, NewRun, Runner, Spawner};
pub use store::{EvalStore, StoreError};
