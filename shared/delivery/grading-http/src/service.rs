//! What the grading API does, apart from HTTP: creating queues from a filter, the item
//! view, and submitting a grade (check it, keep it, index its score records, send a
//! disagreed item to adjudication). Handlers authenticate, parse and call these.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::Arc;

use agentwire_grading::{
    Adjudication, Answer, Claim, Draft, Grade, GradingError, GradingStore, ItemState, QueueItem,
    QueueSpec, Rubric, RubricRef, SlotState,
};
use agentwire_scoring::{MAX_PAGE, ScoreFilter, ScoreIndex, ScoreRecord, Source, TraceView};
use agentwire_session::Clock;
use agentwire_trace::TraceArchive;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::sync::Mutex;

use crate::conversation::{self, Conversation};

/// The most score records a filter reads to find a queue's traces (newest first); the
/// traces found by then make the queue.
pub const MAX_FILTER_SCAN: usize = 100_000;

fn invalid(field: impl Into<String>, message: impl Into<String>) -> GradingError {
    GradingError::Invalid {
        field: field.into(),
        message: message.into(),
    }
}

fn storage(e: impl ToString) -> GradingError {
    GradingError::Storage(e.to_string())
}

/// Whether `id` is a trace id as the index keeps them: 32 lowercase hex digits.
pub fn valid_trace_id(id: &str) -> bool {
    id.len() == 32 && id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// `POST /v1/queues`: the queue and where its items come from (exactly one of `traces`
/// and `filter`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateQueue {
    pub queue: QueueSpec,
    #[serde(default)]
    pub traces: Option<Vec<String>>,
    #[serde(default)]
    pub filter: Option<TraceFilter>,
}

/// Which traces a queue is built from: those with a score record matching every condition
/// given, newest first, at most `sample` of them (default and most: `MAX_ITEMS`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TraceFilter {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_value: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<Source>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since_ms: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until_ms: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sample: Option<usize>,
}

/// `POST /v1/queues/{q}/items/{trace_id}/grade`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubmitGrade {
    pub rubric: RubricRef,
    pub answers: BTreeMap<String, Answer>,
}

/// Who is acting on a queue: its owner (an admin of the tenant) or one of its graders.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    pub tenant: String,
    /// The grader name (a token's `u`); an owner without one can look but not grade.
    pub grader: Option<String>,
    pub owner: bool,
}

impl Actor {
    fn grader(&self) -> Result<&str, GradingError> {
        self.grader.as_deref().ok_or_else(|| {
            GradingError::NotAGrader(
                "this token names no grader (u): only a grader can claim, draft or grade".into(),
            )
        })
    }
}

/// A queue's progress.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Progress {
    /// Items in the queue.
    pub items: usize,
    /// Grading slots over all items.
    pub slots: usize,
    /// Slots graded.
    pub done: usize,
    /// Slots held by a live lease.
    pub held: usize,
    /// Grades given, by grader (every grader of the queue, zero included).
    pub graders: BTreeMap<String, usize>,
    /// Items whose every slot is graded.
    pub complete: usize,
}

/// A grader's progress through a queue: `done` graded, `total` what they could grade
/// (`done`, plus held, plus items they never claimed that still have a slot open).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct GraderProgress {
    pub done: usize,
    pub total: usize,
}

/// What the page shows for one item.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ItemView {
    pub item: QueueItem,
    pub rubric: Rubric,
    pub blind: bool,
    pub conversation: Conversation,
    pub draft: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scores: Option<Vec<ScoreRecord>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub grades: Option<Vec<Grade>>,
}

/// What a submission did beyond keeping the grade.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Submitted {
    pub grade: Grade,
    /// Score records written to the index.
    pub records: usize,
    /// The criteria graders disagreed on, when the item was complete and sent to
    /// adjudication.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub disagreed: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub adjudication: Option<String>,
}

/// The grading API's logic over its ports.
pub struct GradingService {
    store: Arc<dyn GradingStore>,
    index: Arc<dyn ScoreIndex>,
    archive: Arc<dyn TraceArchive>,
    clock: Arc<dyn Clock>,
    adjudications: Mutex<()>,
}

impl GradingService {
    pub fn new(
        store: Arc<dyn GradingStore>,
        index: Arc<dyn ScoreIndex>,
        archive: Arc<dyn TraceArchive>,
        clock: Arc<dyn Clock>,
    ) -> GradingService {
        GradingService {
            store,
            index,
            archive,
            clock,
            adjudications: Mutex::new(()),
        }
    }

    /// The store, for reads the handlers pass straight through.
    pub fn store(&self) -> &Arc<dyn GradingStore> {
        &self.store
    }

    fn now_ms(&self) -> i64 {
        self.clock.now_ms()
    }

    /// Stores a rubric version under the path's name and version: `Ok(true)` when it was
    /// new, `Ok(false)` when the same body was there; a different body is `Conflict`.
    pub async fn put_rubric(
        &self,
        tenant: &str,
        name: &str,
        version: u32,
        rubric: &Rubric,
    ) -> Result<bool, GradingError> {
        if rubric.name != name || rubric.version != version {
            return Err(invalid(
                "name",
                format!(
                    "the body is rubric {} version {}, the path names {name} version {version}",
                    rubric.name, rubric.version
                ),
            ));
        }
        rubric.validate()?;
        match self.store.rubric(tenant, name, Some(version)).await? {
            Some(stored) if &stored == rubric => Ok(false),
            Some(_) => Err(GradingError::Conflict(format!(
                "rubric {name} version {version} exists with a different body: versions never change, store version {}",
                version + 1
            ))),
            None => {
                self.store.put_rubric(tenant, rubric).await?;
                Ok(true)
            }
        }
    }

    /// A queue, or `NotFound` naming it.
    pub async fn queue(&self, tenant: &str, name: &str) -> Result<QueueSpec, GradingError> {
        self.store
            .queue(tenant, name)
            .await?
            .ok_or_else(|| GradingError::NotFound(format!("no queue {name:?}")))
    }

    /// Creates a queue with its items: `Ok((spec, items, true))` when new, `false` when the
    /// same queue was there (a retried create).
    pub async fn create_queue(
        &self,
        tenant: &str,
        request: CreateQueue,
    ) -> Result<(QueueSpec, usize, bool), GradingError> {
        let CreateQueue {
            queue: mut spec,
            traces,
            filter,
        } = request;
        let traces = match (traces, filter) {
            (Some(ids), None) => {
                spec.source = json!({"traces": ids.len()});
                self.explicit_traces(tenant, &ids).await?
            }
            (None, Some(filter)) => {
                spec.source = json!({"filter": filter});
                self.filtered_traces(tenant, &filter).await?
            }
            _ => {
                return Err(invalid(
                    "traces",
                    "give exactly one of traces (a list of trace ids) and filter",
                ));
            }
        };
        spec.validate()?;
        if self
            .store
            .rubric(tenant, &spec.rubric.name, Some(spec.rubric.version))
            .await?
            .is_none()
        {
            return Err(invalid(
                "queue.rubric",
                format!(
                    "no rubric {} version {}: PUT /v1/rubrics/{}/{} first",
                    spec.rubric.name, spec.rubric.version, spec.rubric.name, spec.rubric.version
                ),
            ));
        }
        if traces.is_empty() {
            return Err(invalid(
                "filter",
                "no traces match: the queue would be empty",
            ));
        }
        let existing = self.store.queue(tenant, &spec.name).await?;
        spec.created_ms = match &existing {
            // A retry: the same spec but for its creation time.
            Some(stored) => stored.created_ms,
            None => self.now_ms(),
        };
        let items = agentwire_grading::plan_items(&spec, &traces);
        self.store.create_queue(tenant, &spec, &items).await?;
        Ok((spec, items.len(), existing.is_none()))
    }

    /// The sessions of explicitly listed traces, from their score records.
    async fn explicit_traces(
        &self,
        tenant: &str,
        ids: &[String],
    ) -> Result<Vec<(String, String)>, GradingError> {
        if ids.len() > agentwire_grading::queue::MAX_ITEMS {
            return Err(invalid(
                "traces",
                format!(
                    "{} traces: a queue has at most {}",
                    ids.len(),
                    agentwire_grading::queue::MAX_ITEMS
                ),
            ));
        }
        let mut seen = HashSet::new();
        let mut traces = Vec::with_capacity(ids.len());
        for (i, id) in ids.iter().enumerate() {
            if !valid_trace_id(id) {
                return Err(invalid(
                    format!("traces[{i}]"),
                    format!("{id:?} is not a trace id (32 lowercase hex digits)"),
                ));
            }
            if !seen.insert(id.as_str()) {
                return Err(invalid(
                    format!("traces[{i}]"),
                    format!("{id} is listed twice"),
                ));
            }
            let records = self.index.trace(tenant, id).await.map_err(storage)?;
            let Some(record) = records.first() else {
                return Err(invalid(
                    format!("traces[{i}]"),
                    format!(
                        "trace {id} has no score records, so its session is unknown: score it first"
                    ),
                ));
            };
            traces.push((id.clone(), record.session.clone()));
        }
        Ok(traces)
    }

    /// Distinct traces of the score records matching `filter`, newest first.
    async fn filtered_traces(
        &self,
        tenant: &str,
        filter: &TraceFilter,
    ) -> Result<Vec<(String, String)>, GradingError> {
        let max = agentwire_grading::queue::MAX_ITEMS;
        let sample = filter.sample.unwrap_or(max);
        if !(1..=max).contains(&sample) {
            return Err(invalid(
                "filter.sample",
                format!("{sample} traces: a queue has 1 to {max}"),
            ));
        }
        if filter.max_value.is_some_and(|v| !v.is_finite()) {
            return Err(invalid("filter.max_value", "not a finite number"));
        }
        let mut query = ScoreFilter {
            name: filter.name.clone(),
            label: filter.label.clone(),
            source: filter.source,
            since_ms: filter.since_ms,
            until_ms: filter.until_ms,
            max_value: filter.max_value,
            limit: MAX_PAGE,
            after: None,
        };
        let mut seen = HashSet::new();
        let mut traces = Vec::new();
        let mut scanned = 0;
        loop {
            let page = self.index.list(tenant, &query).await.map_err(storage)?;
            scanned += page.records.len();
            for record in page.records {
                if traces.len() < sample && seen.insert(record.trace_id.clone()) {
                    traces.push((record.trace_id, record.session));
                }
            }
            match page.next {
                Some(next) if traces.len() < sample && scanned < MAX_FILTER_SCAN => {
                    query.after = Some(next)
                }
                _ => break,
            }
        }
        Ok(traces)
    }

    /// A queue's progress at `now`.
    pub async fn progress(&self, tenant: &str, spec: &QueueSpec) -> Result<Progress, GradingError> {
        let items = self.store.items(tenant, &spec.name).await?;
        let now = self.now_ms();
        let mut progress = Progress {
            items: items.len(),
            graders: spec.graders.iter().map(|g| (g.clone(), 0)).collect(),
            ..Progress::default()
        };
        for state in &items {
            progress.slots += state.item.slots as usize;
            let mut done = 0;
            for (_, slot) in &state.slots {
                match slot {
                    SlotState::Done { grader } => {
                        done += 1;
                        *progress.graders.entry(grader.clone()).or_default() += 1;
                    }
                    SlotState::Held { until_ms, .. } if *until_ms >= now => progress.held += 1,
                    SlotState::Held { .. } => {}
                }
            }
            progress.done += done;
            if done >= state.item.slots as usize {
                progress.complete += 1;
            }
        }
        Ok(progress)
    }

    /// One grader's progress: graded, and what is still open to them.
    fn grader_progress(items: &[ItemState], grader: &str) -> GraderProgress {
        let mut progress = GraderProgress::default();
        for state in items {
            let mine = state.slots.iter().find_map(|(_, slot)| match slot {
                SlotState::Done { grader: g } if g == grader => Some(true),
                SlotState::Held { grader: g, .. } if g == grader => Some(false),
                _ => None,
            });
            match mine {
                Some(true) => {
                    progress.done += 1;
                    progress.total += 1;
                }
                Some(false) => progress.total += 1,
                None => {
                    let filled = state
                        .slots
                        .iter()
                        .filter(|(_, s)| matches!(s, SlotState::Done { .. }))
                        .count();
                    if !state.seen_by.iter().any(|g| g == grader)
                        && filled < state.item.slots as usize
                    {
                        progress.total += 1;
                    }
                }
            }
        }
        progress
    }

    /// Claims the grader's next slot (their live claim first), with their progress.
    pub async fn claim(
        &self,
        actor: &Actor,
        queue: &str,
    ) -> Result<(Option<Claim>, GraderProgress), GradingError> {
        let grader = actor.grader()?;
        let claim = self
            .store
            .claim(&actor.tenant, queue, grader, self.now_ms())
            .await?;
        let items = self.store.items(&actor.tenant, queue).await?;
        Ok((claim, Self::grader_progress(&items, grader)))
    }

    /// The item, checked to be one the actor may open: any item for an owner, an item a
    /// grader claimed for a grader.
    async fn open_item(
        &self,
        actor: &Actor,
        spec: &QueueSpec,
        trace_id: &str,
    ) -> Result<ItemState, GradingError> {
        if !valid_trace_id(trace_id) {
            return Err(invalid(
                "trace_id",
                format!("{trace_id:?} is not a trace id (32 lowercase hex digits)"),
            ));
        }
        if !actor.owner {
            let grader = actor.grader()?;
            if !spec.graders.iter().any(|g| g == grader) {
                return Err(GradingError::NotAGrader(format!(
                    "{grader} is not a grader of queue {}",
                    spec.name
                )));
            }
        }
        let items = self.store.items(&actor.tenant, &spec.name).await?;
        let state = items
            .into_iter()
            .find(|s| s.item.trace_id == trace_id)
            .ok_or_else(|| {
                GradingError::NotFound(format!("queue {} has no item {trace_id}", spec.name))
            })?;
        if !actor.owner {
            let grader = actor.grader()?;
            if !state.seen_by.iter().any(|g| g == grader) {
                return Err(GradingError::NotHeld(format!(
                    "{grader} has not claimed item {trace_id} of queue {}: claim it first",
                    spec.name
                )));
            }
        }
        Ok(state)
    }

    /// The item view. A blind queue shows a grader neither scores (nor their flags) nor
    /// other grades; its owner sees everything.
    pub async fn item(
        &self,
        actor: &Actor,
        queue: &str,
        trace_id: &str,
    ) -> Result<ItemView, GradingError> {
        let spec = self.queue(&actor.tenant, queue).await?;
        let state = self.open_item(actor, &spec, trace_id).await?;
        let rubric = self.queue_rubric(&actor.tenant, &spec).await?;
        let blind = spec.blind && !actor.owner;
        let records = self
            .index
            .trace(&actor.tenant, trace_id)
            .await
            .map_err(storage)?;
        let spans = conversation::find_trace(
            &self.archive,
            &actor.tenant,
            &state.item.session,
            trace_id,
            &hints(&records),
        )
        .await?
        .ok_or_else(|| {
            GradingError::NotFound(format!(
                "trace {trace_id} of session {:?} is not in the archive",
                state.item.session
            ))
        })?;
        let options = conversation::view_options(&self.archive, &actor.tenant).await?;
        let view = TraceView::from_spans(&spans, &options)
            .map_err(|e| GradingError::NotFound(format!("trace {trace_id}: {e}")))?;
        // Others' verdicts as a person gave them are in `grades`, not `scores`.
        let machine: Vec<ScoreRecord> = records
            .into_iter()
            .filter(|r| r.source != Source::Human)
            .collect();
        let conversation = conversation::conversation(&view, if blind { &[] } else { &machine });
        let draft = match &actor.grader {
            Some(grader) => self
                .store
                .draft(&actor.tenant, queue, trace_id, grader)
                .await?
                .map(|d| d.body),
            None => None,
        };
        let grades = if blind {
            None
        } else {
            let me = actor.grader.as_deref();
            Some(
                self.store
                    .grades(&actor.tenant, queue)
                    .await?
                    .into_iter()
                    .filter(|g| g.trace_id == trace_id && Some(g.grader.as_str()) != me)
                    .collect(),
            )
        };
        Ok(ItemView {
            item: state.item,
            rubric,
            blind,
            conversation,
            draft,
            scores: (!blind).then_some(machine),
            grades,
        })
    }

    async fn queue_rubric(&self, tenant: &str, spec: &QueueSpec) -> Result<Rubric, GradingError> {
        self.store
            .rubric(tenant, &spec.rubric.name, Some(spec.rubric.version))
            .await?
            .ok_or_else(|| {
                GradingError::NotFound(format!(
                    "rubric {} version {} of queue {} is missing",
                    spec.rubric.name, spec.rubric.version, spec.name
                ))
            })
    }

    /// Saves the grader's draft of an item they claimed.
    pub async fn save_draft(
        &self,
        actor: &Actor,
        queue: &str,
        trace_id: &str,
        body: Value,
    ) -> Result<(), GradingError> {
        let grader = actor.grader()?.to_owned();
        let spec = self.queue(&actor.tenant, queue).await?;
        let grader_actor = Actor {
            owner: false,
            ..actor.clone()
        };
        self.open_item(&grader_actor, &spec, trace_id).await?;
        self.store
            .save_draft(
                &actor.tenant,
                &Draft {
                    queue: queue.to_owned(),
                    trace_id: trace_id.to_owned(),
                    grader,
                    body,
                    saved_ms: self.now_ms(),
                },
            )
            .await
    }

    /// Checks and keeps a grade; writes its score records (source human) into the index
    /// beside the trace's other human records; and, when that completes the item and its
    /// graders disagree, adds the item to the queue's adjudication queue.
    pub async fn submit(
        &self,
        actor: &Actor,
        queue: &str,
        trace_id: &str,
        request: SubmitGrade,
    ) -> Result<Submitted, GradingError> {
        let grader = actor.grader()?.to_owned();
        let spec = self.queue(&actor.tenant, queue).await?;
        let grader_actor = Actor {
            owner: false,
            ..actor.clone()
        };
        let state = self.open_item(&grader_actor, &spec, trace_id).await?;
        // The version the grade names: check_grade refuses it unless it is the queue's.
        let rubric = self
            .store
            .rubric(
                &actor.tenant,
                &request.rubric.name,
                Some(request.rubric.version),
            )
            .await?
            .ok_or_else(|| {
                invalid(
                    "rubric",
                    format!(
                        "no rubric {} version {}: the queue grades with {} version {}",
                        request.rubric.name,
                        request.rubric.version,
                        spec.rubric.name,
                        spec.rubric.version
                    ),
                )
            })?;
        agentwire_grading::check_grade(&rubric, &spec, &request.answers)?;
        let now = self.now_ms();
        let grade = Grade {
            queue: queue.to_owned(),
            trace_id: trace_id.to_owned(),
            session: state.item.session.clone(),
            grader,
            rubric: spec.rubric.clone(),
            answers: request.answers,
            graded_ms: now,
        };
        let grade = match self.store.submit(&actor.tenant, &grade, now).await {
            Ok(()) => grade,
            // Already graded: a retry of the same grade (whose follow-ups below failed the
            // first time) does them again; any other grade is refused as it was.
            Err(GradingError::NotHeld(message)) => {
                let kept = self
                    .store
                    .grades(&actor.tenant, queue)
                    .await?
                    .into_iter()
                    .find(|g| g.trace_id == trace_id && g.grader == grade.grader);
                match kept {
                    Some(kept) if kept.answers == grade.answers && kept.rubric == grade.rubric => {
                        kept
                    }
                    _ => return Err(GradingError::NotHeld(message)),
                }
            }
            Err(e) => return Err(e),
        };
        let records = self.index_grade(&actor.tenant, &rubric, &grade).await?;
        let (mut disagreed, mut adjudication) = self
            .adjudicate(&actor.tenant, &spec, &rubric, trace_id)
            .await?;
        // Which criteria the graders disagreed on would tell a blind grader the others'
        // answers: the item still goes to adjudication, the grader is not told.
        if spec.blind && !actor.owner {
            disagreed.clear();
            adjudication = None;
        }
        Ok(Submitted {
            grade,
            records,
            disagreed,
            adjudication,
        })
    }

    /// The grade's records, written by key: they replace this grader's earlier records of
    /// the same rubric and criteria, and leave every other record of the trace alone (so
    /// graders submitting at once, in any process, never undo each other).
    async fn index_grade(
        &self,
        tenant: &str,
        rubric: &Rubric,
        grade: &Grade,
    ) -> Result<usize, GradingError> {
        let existing = self
            .index
            .trace(tenant, &grade.trace_id)
            .await
            .map_err(storage)?;
        let digest = match existing.iter().find(|r| r.source != Source::Human) {
            Some(record) => record.trace_digest.clone(),
            None => self.digest(tenant, grade, &existing).await?,
        };
        let fresh = grade.to_score_records(tenant, rubric, &digest);
        self.index
            .upsert(tenant, &grade.trace_id, &fresh)
            .await
            .map_err(storage)?;
        Ok(fresh.len())
    }

    /// The trace's digest from the archive, when no machine record carries it.
    async fn digest(
        &self,
        tenant: &str,
        grade: &Grade,
        records: &[ScoreRecord],
    ) -> Result<String, GradingError> {
        let spans = conversation::find_trace(
            &self.archive,
            tenant,
            &grade.session,
            &grade.trace_id,
            &hints(records),
        )
        .await?;
        let options = conversation::view_options(&self.archive, tenant).await?;
        Ok(spans
            .and_then(|spans| TraceView::from_spans(&spans, &options).ok())
            .map(|view| view.digest)
            .unwrap_or_default())
    }

    /// Sends a complete, disagreed item to the adjudication queue (creating it with its
    /// first item); returns the criteria disagreed on and the queue's name.
    async fn adjudicate(
        &self,
        tenant: &str,
        spec: &QueueSpec,
        rubric: &Rubric,
        trace_id: &str,
    ) -> Result<(Vec<String>, Option<String>), GradingError> {
        let Some(adjudication) = &spec.adjudication else {
            return Ok((Vec::new(), None));
        };
        let items = self.store.items(tenant, &spec.name).await?;
        let Some(state) = items.iter().find(|s| s.item.trace_id == trace_id) else {
            return Ok((Vec::new(), None));
        };
        let done = state
            .slots
            .iter()
            .filter(|(_, s)| matches!(s, SlotState::Done { .. }))
            .count();
        if done < state.item.slots as usize || done < 2 {
            return Ok((Vec::new(), None));
        }
        let grades: Vec<Grade> = self
            .store
            .grades(tenant, &spec.name)
            .await?
            .into_iter()
            .filter(|g| g.trace_id == trace_id)
            .collect();
        let disagreed = agentwire_grading::disagreement(rubric, &grades, adjudication);
        if disagreed.is_empty() {
            return Ok((disagreed, None));
        }
        // One adjudication at a time in this process: positions are read, then written.
        let _guard = self.adjudications.lock().await;
        let target = adjudication_spec(spec, adjudication, self.now_ms());
        let existing = match self.store.queue(tenant, &target.name).await? {
            Some(existing) => existing,
            None => match self.store.create_queue(tenant, &target, &[]).await {
                Ok(()) => target.clone(),
                // Created meanwhile (another process): use it.
                Err(GradingError::Conflict(_)) => self.queue(tenant, &target.name).await?,
                Err(e) => return Err(e),
            },
        };
        if existing.source != target.source || existing.rubric != spec.rubric {
            return Err(GradingError::Conflict(format!(
                "queue {:?} exists and is not the adjudication queue of {:?}: items are not sent into it",
                existing.name, spec.name
            )));
        }
        // Another process may take the same next position at once: read again and retry.
        let mut attempts = 0;
        loop {
            let present = self.store.items(tenant, &existing.name).await?;
            if present.iter().any(|s| s.item.trace_id == trace_id) {
                break;
            }
            let position = present
                .iter()
                .map(|s| s.item.position + 1)
                .max()
                .unwrap_or(0);
            let item = QueueItem {
                trace_id: trace_id.to_owned(),
                session: state.item.session.clone(),
                position,
                slots: 1,
            };
            match self.store.add_items(tenant, &existing.name, &[item]).await {
                Ok(()) => break,
                Err(GradingError::Conflict(_)) if attempts < 5 => attempts += 1,
                Err(e) => return Err(e),
            }
        }
        Ok((disagreed, Some(existing.name)))
    }
}

/// Agreement on one criterion of a queue: the graders' (see `agentwire_agreement`), with
/// each linked scorer and each judge version treated as one more grader in `scorers`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct QueueAgreement {
    pub queue: String,
    pub rubric: RubricRef,
    /// Grades the figures are computed from.
    pub grades: usize,
    /// By criterion, in the rubric's order.
    pub criteria: Vec<agentwire_agreement::CriterionAgreement>,
}

impl GradingService {
    /// Per criterion: the graders' agreement over the queue's grades, each linked scorer's
    /// agreement with them (its whole-trace record of that name, mapped onto the criterion's
    /// scale by the link's threshold), and each judge version's (`judge:<scorer_version>`).
    pub async fn agreement(
        &self,
        tenant: &str,
        queue: &str,
    ) -> Result<QueueAgreement, GradingError> {
        let spec = self.queue(tenant, queue).await?;
        let rubric = self.queue_rubric(tenant, &spec).await?;
        let grades = self.store.grades(tenant, queue).await?;
        let mut traces: Vec<&str> = grades.iter().map(|g| g.trace_id.as_str()).collect();
        traces.sort_unstable();
        traces.dedup();
        // Always read: any graded trace may carry judge records, linked scorers or not.
        let mut records: BTreeMap<String, Vec<ScoreRecord>> = BTreeMap::new();
        for trace in traces {
            let of_trace = self.index.trace(tenant, trace).await.map_err(storage)?;
            records.insert(trace.to_owned(), of_trace);
        }
        let count = grades.len();
        // The bootstrap is seconds of CPU on a big queue: off the async workers.
        let criteria =
            tokio::task::spawn_blocking(move || criteria_agreement(&rubric, &grades, &records))
                .await
                .map_err(|e| {
                    GradingError::Storage(format!("the agreement computation failed: {e}"))
                })??;
        Ok(QueueAgreement {
            queue: spec.name,
            rubric: spec.rubric,
            grades: count,
            criteria,
        })
    }
}

/// Each criterion's agreement over `grades`, with its linked scorers' records from
/// `records` (by trace) as more graders, and then every judge version found there: the
/// whole-trace `judge` records named `<rubric>.<criterion>` whose scorer version ends in
/// `/<rubric>@<version>` (this rubric version's), their labels read on the criterion's scale.
fn criteria_agreement(
    rubric: &Rubric,
    grades: &[Grade],
    records: &BTreeMap<String, Vec<ScoreRecord>>,
) -> Result<Vec<agentwire_agreement::CriterionAgreement>, GradingError> {
    use agentwire_agreement::{GradeTable, Options};
    let refused = |e: agentwire_agreement::AgreementError| {
        invalid("grades", format!("agreement cannot be computed: {e}"))
    };
    let mut criteria = Vec::with_capacity(rubric.criteria.len());
    for criterion in &rubric.criteria {
        let level = criterion.scale.level();
        let mut table = GradeTable::new(criterion.key.clone());
        for grade in grades {
            let Some(value) = grade
                .answers
                .get(&criterion.key)
                .and_then(|a| criterion.scale.agreement_value(&a.value))
            else {
                continue;
            };
            table
                .add(grade.trace_id.clone(), grade.grader.clone(), value)
                .map_err(refused)?;
        }
        let mut result = agentwire_agreement::agreement(&table, level).map_err(refused)?;
        for link in &criterion.scorers {
            let scored: Vec<(String, agentwire_agreement::Value)> = records
                .iter()
                .filter_map(|(trace, of_trace)| {
                    let record = of_trace
                        .iter()
                        .find(|r| {
                            r.name == link.name && r.source != Source::Human && r.span_id.is_none()
                        })
                        .or_else(|| {
                            of_trace
                                .iter()
                                .find(|r| r.name == link.name && r.source != Source::Human)
                        })?;
                    let answer = criterion.scale.from_score(record.value, link.threshold)?;
                    Some((trace.to_string(), criterion.scale.agreement_value(&answer)?))
                })
                .collect();
            let versus = agentwire_agreement::scorer_agreement(
                &table,
                &link.name,
                &scored,
                level,
                &Options::default(),
            )
            .map_err(refused)?;
            result.scorers.push(versus);
        }
        let name = format!("{}.{}", rubric.name, criterion.key);
        let suffix = format!("/{}@{}", rubric.name, rubric.version);
        let judged = |r: &&ScoreRecord| {
            r.source == Source::Judge
                && r.span_id.is_none()
                && r.name == name
                && r.scorer_version.ends_with(&suffix)
        };
        let versions: BTreeSet<&str> = records
            .values()
            .flatten()
            .filter(judged)
            .map(|r| r.scorer_version.as_str())
            .collect();
        for version in versions {
            // A label off the scale (a judge answering "maybe" on pass/fail) is no answer.
            let scored: Vec<(String, agentwire_agreement::Value)> = records
                .iter()
                .filter_map(|(trace, of_trace)| {
                    let record = of_trace
                        .iter()
                        .filter(judged)
                        .find(|r| r.scorer_version == version)?;
                    let value = criterion.scale.agreement_value(record.label.as_deref()?)?;
                    Some((trace.clone(), value))
                })
                .collect();
            let versus = agentwire_agreement::scorer_agreement(
                &table,
                &format!("judge:{version}"),
                &scored,
                level,
                &Options::default(),
            )
            .map_err(refused)?;
            result.scorers.push(versus);
        }
        criteria.push(result);
    }
    Ok(criteria)
}

/// The adjudication queue of `spec`: one slot per item, graded by the adjudicators with the
/// same rubric, never blind (they settle what the graders said).
fn adjudication_spec(spec: &QueueSpec, adjudication: &Adjudication, now_ms: i64) -> QueueSpec {
    QueueSpec {
        name: adjudication.queue.clone(),
        title: format!("Adjudication of {}", spec.name),
        rubric: spec.rubric.clone(),
        graders: adjudication.graders.clone(),
        per_item: 1,
        shared_share: 0.0,
        blind: false,
        deadline_ms: None,
        lease_ms: spec.lease_ms,
        adjudication: None,
        source: json!({"adjudication_of": spec.name}),
        created_ms: now_ms,
    }
}

/// The days a trace's records were scored (newest first, at most 4): where to look for its
/// archive object first.
fn hints(records: &[ScoreRecord]) -> Vec<i64> {
    const DAY_MS: i64 = 86_400_000;
    let mut days: Vec<i64> = records
        .iter()
        .map(|r| r.scored_at_ms.div_euclid(DAY_MS) * DAY_MS)
        .collect();
    days.sort_unstable_by(|a, b| b.cmp(a));
    days.dedup();
    days.truncate(4);
    days
}
