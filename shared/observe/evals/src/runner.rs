//! The runner: creates runs and carries them out, item by item, through the [`Agent`] port
//! (live runs) or the archive (replays), scoring every trace with the tenant's scorers and
//! the reference ones. Each item's result is stored as it ends, so a run interrupted at
//! any point resumes where it stopped; a run is finished only once every item has one.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use agentwire_scorer::ScorerJob;
use agentwire_scoring::view::ExpectedAction;
use agentwire_scoring::{ScoreRecord, Source};
use agentwire_session::Clock;
use async_trait::async_trait;
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use tracing::{info, warn};

use crate::dataset::{InputMessage, Item, validate_name};
use crate::reference;
use crate::run::{ItemResult, ItemStatus, Mode, Run, RunSpec, Status, summarise};
use crate::store::{EvalStore, StoreError};

/// The longest per-item timeout a run may ask for.
/// (Well under the evals function's 15 minutes, so an item always ends within one invocation.)
pub const MAX_TIMEOUT: Duration = Duration::from_secs(10 * 60);
/// The most items a run keeps in flight.
pub const MAX_CONCURRENCY: usize = 256;

/// How an item's question went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// A reply ended.
    Answered,
    /// The reply ended with an error (or was stopped): the reason.
    Failed(String),
    /// No reply ended in time; `agent_seen` when an agent wrote anything at all.
    TimedOut { agent_seen: bool },
}

/// What asking one item's question gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Asked {
    pub answer: Answer,
    /// The session as archived (whatever the answer), when it was.
    pub trace_key: Option<String>,
    /// From the question's append to the reply's end.
    pub latency_ms: Option<u64>,
}

/// Why a question could not be asked at all.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AskError {
    /// Storage failed: the item is not recorded, and runs again when the run resumes.
    #[error("{0}")]
    Storage(String),
    /// The session cannot be used for it (another content type, a closed stream): the
    /// item's result is this error.
    #[error("{0}")]
    Unusable(String),
}

/// The agent as a run reaches it: through a session, as any user does.
#[async_trait]
pub trait Agent: Send + Sync {
    /// Posts `input` into a fresh session `session` of `tenant` (or, when the session
    /// already holds the question, from an interrupted attempt, posts nothing), waits up
    /// to `timeout` for the reply, and archives the session.
    async fn ask(
        &self,
        tenant: &str,
        session: &str,
        input: &[InputMessage],
        timeout: Duration,
    ) -> Result<Asked, AskError>;
}

/// Why a run could not be created or carried out.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EvalError {
    /// The request is wrong; the message names the field or item.
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    NotFound(String),
    /// Storage failed; retrying may help.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A run to create.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewRun {
    pub dataset: String,
    /// The latest when absent.
    #[serde(default)]
    pub version: Option<u32>,
    #[serde(default = "live")]
    pub mode: Mode,
    /// Live runs: the session name pattern an agent serves, with one `*` (`eval-*`).
    #[serde(default)]
    pub pattern: Option<String>,
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    #[serde(default = "default_concurrency")]
    pub concurrency: usize,
    #[serde(default)]
    pub label: Option<String>,
}

fn live() -> Mode {
    Mode::Live
}
fn default_timeout_ms() -> u64 {
    60_000
}
fn default_concurrency() -> usize {
    8
}

/// Told of every run once it finished (its results and summary stored): how its report
/// is written.
#[async_trait]
pub trait AfterRun: Send + Sync {
    /// Must not fail the run: whatever goes wrong is the hook's to record.
    async fn finished(&self, store: &EvalStore, run: &Run);
}

/// Creates and carries out runs.
pub struct Runner {
    store: EvalStore,
    agent: Option<Arc<dyn Agent>>,
    reader: Arc<ScorerJob>,
    clock: Arc<dyn Clock>,
    after: Option<Arc<dyn AfterRun>>,
    /// Live runs are accepted without an agent here: another runner carries them out.
    live_elsewhere: bool,
}

impl Runner {
    /// A runner storing in `store`, reading traces (with each tenant's scoring) through
    /// `reader`, and asking `agent` (live runs; without one only replays can run).
    pub fn new(
        store: EvalStore,
        agent: Option<Arc<dyn Agent>>,
        reader: Arc<ScorerJob>,
        clock: Arc<dyn Clock>,
    ) -> Runner {
        Runner {
            store,
            agent,
            reader,
            clock,
            after: None,
            live_elsewhere: false,
        }
    }

    /// Accepts live runs though this runner has no agent: for an API whose runs are
    /// queued and carried out by another runner that has one (the evals function). Never
    /// execute runs with it: without an agent every live item fails.
    pub fn with_live_runs_elsewhere(mut self) -> Runner {
        self.live_elsewhere = true;
        self
    }

    /// Tells `hook` of every run that finishes.
    pub fn with_after(mut self, hook: Arc<dyn AfterRun>) -> Runner {
        self.after = Some(hook);
        self
    }

    pub fn store(&self) -> &EvalStore {
        &self.store
    }

    /// Checks `new` against its dataset and stores it as a queued run; the dataset
    /// version it names is the one every item comes from, whatever is added later.
    pub async fn create(&self, tenant: &str, new: NewRun, origin: &str) -> Result<Run, EvalError> {
        self.create_as(tenant, new, origin, None).await
    }

    /// [`Runner::create`] under the id `id` when given: a run already stored under it is
    /// returned as it is (so a claim that names its run id can be completed by a retry).
    pub async fn create_as(
        &self,
        tenant: &str,
        new: NewRun,
        origin: &str,
        id: Option<&str>,
    ) -> Result<Run, EvalError> {
        if let Some(id) = id
            && let Some(existing) = self.store.run(tenant, id).await?
        {
            return Ok(existing);
        }
        validate_name("dataset", &new.dataset).map_err(EvalError::Invalid)?;
        let Some(dataset) = self
            .store
            .dataset(tenant, &new.dataset, new.version)
            .await?
        else {
            return Err(EvalError::NotFound(match new.version {
                Some(v) => format!("dataset {}@{v} does not exist", new.dataset),
                None => format!("dataset {:?} does not exist", new.dataset),
            }));
        };
        if new.timeout_ms == 0 || new.timeout_ms > MAX_TIMEOUT.as_millis() as u64 {
            return Err(EvalError::Invalid(format!(
                "timeout_ms must be from 1 to {}",
                MAX_TIMEOUT.as_millis()
            )));
        }
        if new.concurrency == 0 || new.concurrency > MAX_CONCURRENCY {
            return Err(EvalError::Invalid(format!(
                "concurrency must be from 1 to {MAX_CONCURRENCY}"
            )));
        }
        match new.mode {
            Mode::Live => {
                let pattern = new.pattern.as_deref().ok_or_else(|| {
                    EvalError::Invalid(
                        "a live run needs a pattern (the sessions its agent serves, e.g. eval-*)"
                            .into(),
                    )
                })?;
                if pattern.matches('*').count() != 1 || pattern.contains('/') {
                    return Err(EvalError::Invalid(format!(
                        "pattern {pattern:?} must hold exactly one * (replaced by <run>-<item> in each session's name) and no /"
                    )));
                }
                let example = pattern.replacen('*', "20261202-000000000-0000-item", 1);
                agentwire_session::path::validate_name(&example).map_err(|e| {
                    EvalError::Invalid(format!(
                        "pattern {pattern:?} makes no valid session name: {e}"
                    ))
                })?;
                if let Some(item) = dataset.items.iter().find(|i| i.input.is_empty()) {
                    return Err(EvalError::Invalid(format!(
                        "item {} of {}@{} has no input to send (a replay item: run it with mode replay)",
                        item.id, dataset.name, dataset.version
                    )));
                }
                if self.agent.is_none() && !self.live_elsewhere {
                    return Err(EvalError::Invalid(
                        "this deployment runs no live evals: use mode replay".into(),
                    ));
                }
            }
            Mode::Replay => {
                if let Some(item) = dataset.items.iter().find(|i| i.trace.is_none()) {
                    return Err(EvalError::Invalid(format!(
                        "item {} of {}@{} has no recorded trace to replay",
                        item.id, dataset.name, dataset.version
                    )));
                }
                for item in &dataset.items {
                    check_trace_key(item.trace.as_deref().unwrap_or_default(), tenant)
                        .map_err(|e| EvalError::Invalid(format!("item {}: {e}", item.id)))?;
                }
            }
        }
        let now = self.clock.now_ms();
        loop {
            let run = Run {
                spec: RunSpec {
                    id: id.map_or_else(|| run_id(now), str::to_owned),
                    tenant: tenant.to_owned(),
                    dataset: dataset.name.clone(),
                    version: dataset.version,
                    mode: new.mode,
                    pattern: new.pattern.clone().filter(|_| new.mode == Mode::Live),
                    timeout_ms: new.timeout_ms,
                    concurrency: new.concurrency,
                    label: new.label.clone(),
                    origin: origin.to_owned(),
                    created_ms: now,
                },
                status: Status::Queued,
                items: dataset.items.len(),
                error: None,
                finished_ms: None,
                summary: None,
            };
            if self.store.create_run(&run).await? {
                return Ok(run);
            }
            if let Some(id) = id
                && let Some(existing) = self.store.run(tenant, id).await?
            {
                return Ok(existing);
            }
        }
    }

    /// Carries out run `id` until every item has a result (items done before are not
    /// run again), then writes its summary. `progress` hears (done, total) as items end.
    pub async fn execute(
        &self,
        tenant: &str,
        id: &str,
        progress: impl Fn(usize, usize) + Send + Sync,
    ) -> Result<Run, EvalError> {
        let mut run = self
            .store
            .run(tenant, id)
            .await?
            .ok_or_else(|| EvalError::NotFound(format!("run {id:?} does not exist")))?;
        if matches!(run.status, Status::Finished | Status::Failed) {
            return Ok(run);
        }
        let spec = run.spec.clone();
        let dataset = self
            .store
            .dataset(tenant, &spec.dataset, Some(spec.version))
            .await?
            .ok_or_else(|| {
                EvalError::NotFound(format!(
                    "dataset {}@{} of run {id} is gone",
                    spec.dataset, spec.version
                ))
            })?;
        // Which items are done is the listing's to say: no result needs reading for it.
        let done: HashSet<String> = self.store.done_ids(tenant, id).await?.into_iter().collect();
        let answered_before = !done.is_empty();
        if run.status != Status::Running {
            run.status = Status::Running;
            self.store.save_run(&run).await?;
        }
        let total = dataset.items.len();
        let mut finished = done.len();
        progress(finished, total);
        let remaining: Vec<Item> = dataset
            .items
            .into_iter()
            .filter(|i| !done.contains(&i.id))
            .collect();
        info!(run = id, items = remaining.len(), "eval run started");
        // An agent that never answers would cost every item its timeout: when the first
        // wave of items all time out without an agent writing anything, the run stops.
        let probe = spec.concurrency.min(remaining.len());
        let (mut silent, mut heard) = (0usize, answered_before);
        let mut results = futures_util::stream::iter(remaining)
            .map(|item| {
                let spec = &spec;
                async move { self.run_item(spec, &item).await }
            })
            .buffer_unordered(spec.concurrency);
        while let Some(result) = results.next().await {
            let (result, silent_timeout) = result?;
            self.store.save_item(tenant, id, &result).await?;
            finished += 1;
            progress(finished, total);
            if silent_timeout {
                silent += 1;
            } else {
                heard = true;
            }
            if spec.mode == Mode::Live && !heard && silent >= probe {
                drop(results);
                run.status = Status::Failed;
                run.error = Some(format!(
                    "no agent answered: the first {silent} sessions ({}) got no reply and no agent wrote to them within {} s; start an agent serving {:?} (e.g. agentwire demo-agent --pattern '{}')",
                    spec.session_of("<item>").unwrap_or_default(),
                    spec.timeout_ms / 1000,
                    spec.pattern.as_deref().unwrap_or_default(),
                    spec.pattern.as_deref().unwrap_or_default(),
                ));
                run.finished_ms = Some(self.clock.now_ms());
                self.store.save_run(&run).await?;
                warn!(run = id, "eval run failed: no agent answered");
                return Ok(run);
            }
        }
        drop(results);
        let results = self.store.items(tenant, id).await?;
        let summary = summarise(&results);
        self.store.save_results(tenant, id, &results).await?;
        run.status = Status::Finished;
        run.summary = Some(summary);
        run.finished_ms = Some(self.clock.now_ms());
        self.store.save_run(&run).await?;
        info!(run = id, "eval run finished");
        if let Some(after) = &self.after {
            after.finished(&self.store, &run).await;
        }
        Ok(run)
    }

    /// One item's result, and whether it timed out without any agent writing.
    async fn run_item(&self, spec: &RunSpec, item: &Item) -> Result<(ItemResult, bool), EvalError> {
        let mut result = ItemResult {
            item: item.id.clone(),
            status: ItemStatus::Answered,
            error: None,
            session: None,
            trace_id: None,
            trace_key: None,
            latency_ms: None,
            records: Vec::new(),
            reward: item
                .metadata
                .get("reward")
                .and_then(serde_json::Value::as_f64),
            finished_ms: 0,
        };
        let mut silent = false;
        let key = match spec.mode {
            Mode::Replay => item.trace.clone(),
            Mode::Live => {
                let session = spec.session_of(&item.id).unwrap_or_default();
                result.session = Some(session.clone());
                let agent = self.agent.as_ref().ok_or_else(|| {
                    EvalError::Invalid("this deployment runs no live evals".into())
                })?;
                let timeout = Duration::from_millis(spec.timeout_ms);
                match agent
                    .ask(&spec.tenant, &session, &item.input, timeout)
                    .await
                {
                    Ok(asked) => {
                        result.latency_ms = asked.latency_ms;
                        match asked.answer {
                            Answer::Answered => {}
                            Answer::Failed(reason) => {
                                result.status = ItemStatus::Error;
                                result.error = Some(reason);
                            }
                            Answer::TimedOut { agent_seen } => {
                                silent = !agent_seen;
                                result.status = ItemStatus::Timeout;
                                result.error = Some(format!(
                                    "no reply ended within {} ms{}",
                                    spec.timeout_ms,
                                    if agent_seen {
                                        ""
                                    } else {
                                        " (no agent wrote to the session)"
                                    }
                                ));
                            }
                        }
                        asked.trace_key
                    }
                    Err(AskError::Storage(e)) => {
                        return Err(EvalError::Store(StoreError::Storage(e)));
                    }
                    Err(AskError::Unusable(e)) => {
                        result.status = ItemStatus::Error;
                        result.error = Some(e);
                        None
                    }
                }
            }
        };
        let key = match key.map(|k| check_trace_key(&k, &spec.tenant).map(|()| k)) {
            Some(Err(e)) => {
                result.status = ItemStatus::Error;
                result.error = Some(e);
                None
            }
            Some(Ok(key)) => Some(key),
            None => None,
        };
        if let Some(key) = key {
            result.trace_key = Some(key.clone());
            match self.score(&key, item).await {
                Ok((records, session, trace_id, reward)) => {
                    result.session.get_or_insert(session);
                    result.trace_id = Some(trace_id);
                    result.reward = result.reward.or(reward);
                    if result.status == ItemStatus::Answered {
                        result.records = records;
                    }
                }
                Err(e) if e.is_retryable() => {
                    return Err(EvalError::Store(StoreError::Storage(e.to_string())));
                }
                Err(e) => {
                    result.status = ItemStatus::Error;
                    result.error = Some(e.to_string());
                }
            }
        }
        result.finished_ms = self.clock.now_ms();
        if result.status != ItemStatus::Answered {
            // No answer did not do what the item expects: 0 on each of its measures.
            let reason = result.error.clone().unwrap_or_default();
            result.records = reference::expected_measures(item)
                .into_iter()
                .map(|name| ScoreRecord {
                    trace_id: result.trace_id.clone().unwrap_or_default(),
                    span_id: None,
                    session: result.session.clone().unwrap_or_default(),
                    tenant: spec.tenant.clone(),
                    name: name.to_owned(),
                    value: 0.0,
                    label: Some("fail".into()),
                    source: Source::Code,
                    explanation: Some(format!("no answer: {reason}")),
                    evidence: Vec::new(),
                    scorer: reference::SCORER.to_owned(),
                    scorer_version: reference::VERSION.to_owned(),
                    trace_digest: String::new(),
                    scored_at_ms: result.finished_ms,
                    usage: None,
                })
                .collect();
        }
        Ok((result, silent))
    }

    /// The item's trace scored: the tenant's scorers (tool use with the item's expected
    /// actions) and the reference scorers.
    async fn score(
        &self,
        key: &str,
        item: &Item,
    ) -> Result<(Vec<ScoreRecord>, String, String, Option<f64>), agentwire_scorer::ScoreError> {
        let mut read = self.reader.read(key).await?;
        if let Some(actions) = &item.expected.actions {
            read.view.expected_actions = Some(
                actions
                    .iter()
                    .map(|a| ExpectedAction {
                        name: a.name.clone(),
                        arguments: a.arguments.clone(),
                    })
                    .collect(),
            );
        }
        let now = self.clock.now_ms();
        let view = &read.view;
        let mut records = read.scoring.score_view(view, now);
        records.extend(
            reference::score(view, item)
                .into_iter()
                .map(|o| ScoreRecord {
                    trace_id: view.trace_id.clone(),
                    span_id: o.span_id,
                    session: view.session.clone(),
                    tenant: view.tenant.clone(),
                    name: o.name,
                    value: o.value,
                    label: o.label,
                    source: Source::Code,
                    explanation: o.explanation,
                    evidence: o.evidence,
                    scorer: reference::SCORER.to_owned(),
                    scorer_version: reference::VERSION.to_owned(),
                    trace_digest: view.digest.clone(),
                    scored_at_ms: now,
                    usage: None,
                }),
        );
        Ok((
            records,
            read.key.session.clone(),
            view.trace_id.clone(),
            view.dataset_reward,
        ))
    }
}

/// Checks that `key` is an archived trace of `tenant`: a replay never reads another
/// tenant's traces, whatever a dataset line says.
pub fn check_trace_key(key: &str, tenant: &str) -> Result<(), String> {
    match agentwire_trace::ObjectKey::parse(key) {
        Some(parsed) if parsed.prefix == "traces" && parsed.tenant == tenant => Ok(()),
        Some(parsed) if parsed.prefix == "traces" => {
            Err(format!("trace {key:?} is not a trace of this tenant"))
        }
        _ => Err(format!(
            "trace {key:?} is not an archive key (traces/dt=<day>/tenant=<t>/<session>.jsonl.gz)"
        )),
    }
}

/// A run id: its creation time to the millisecond (so ids sort by it) and four random
/// hex digits, `20261202-143005123-7f3a`.
pub fn run_id(now_ms: i64) -> String {
    let at = time::OffsetDateTime::from_unix_timestamp(now_ms.div_euclid(1000))
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    format!(
        "{:04}{:02}{:02}-{:02}{:02}{:02}{:03}-{:04x}",
        at.year(),
        u8::from(at.month()),
        at.day(),
        at.hour(),
        at.minute(),
        at.second(),
        now_ms.rem_euclid(1000),
        fastrand::u16(..)
    )
}

/// Starts a created (or interrupted) run in the background.
pub trait Launch: Send + Sync {
    fn launch(&self, tenant: &str, run: &str);
}

/// Runs each launched run in a task of this process, one task per run: a run launched
/// again while it runs is not started twice.
pub struct Spawner {
    runner: Arc<Runner>,
    running: Arc<std::sync::Mutex<HashSet<(String, String)>>>,
}

impl Spawner {
    pub fn new(runner: Arc<Runner>) -> Arc<Spawner> {
        Arc::new(Spawner {
            runner,
            running: Arc::default(),
        })
    }

    /// Launches every run of every tenant left queued or running (by a process that
    /// stopped): what `agentwire dev` does as it starts.
    pub async fn resume_all(&self) -> Result<usize, EvalError> {
        let unfinished = self.runner.store.unfinished().await?;
        for (tenant, run) in &unfinished {
            self.launch(tenant, run);
        }
        Ok(unfinished.len())
    }

    /// Whether `run` is being carried out in this process.
    pub fn is_running(&self, tenant: &str, run: &str) -> bool {
        lock(&self.running).contains(&(tenant.to_owned(), run.to_owned()))
    }
}

fn lock<T>(mutex: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // The set holds no invariant a panicking holder could break.
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

impl Launch for Spawner {
    fn launch(&self, tenant: &str, run: &str) {
        let key = (tenant.to_owned(), run.to_owned());
        if !lock(&self.running).insert(key.clone()) {
            return;
        }
        let (runner, running) = (self.runner.clone(), self.running.clone());
        tokio::spawn(async move {
            let (tenant, run) = (&key.0, &key.1);
            if let Err(e) = runner.execute(tenant, run, |_, _| {}).await {
                // The run stays unfinished: resuming it carries on from its last item.
                warn!(run = %run, error = %e, "eval run stopped");
            }
            lock(&running).remove(&key);
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use agentwire_fs::DirTraceArchive;
    use agentwire_session::SystemClock;

    /// Answers nothing (every item times out after an agent wrote), counting questions;
    /// after `hang_after` questions it never returns, as a process that died would.
    struct Counting {
        asked: AtomicUsize,
        hang_after: usize,
    }

    #[async_trait]
    impl Agent for Counting {
        async fn ask(
            &self,
            _: &str,
            _: &str,
            _: &[InputMessage],
            _: Duration,
        ) -> Result<Asked, AskError> {
            if self.asked.fetch_add(1, Ordering::SeqCst) >= self.hang_after {
                std::future::pending::<()>().await;
            }
            Ok(Asked {
                answer: Answer::TimedOut { agent_seen: true },
                trace_key: None,
                latency_ms: None,
            })
        }
    }

    fn runner(dir: &std::path::Path, agent: Option<Arc<dyn Agent>>) -> Runner {
        let archive: Arc<dyn agentwire_trace::TraceArchive> = Arc::new(DirTraceArchive::new(dir));
        let index =
            Arc::new(agentwire_sqlite::SqliteScoreIndex::open(dir.join("scores.db")).unwrap());
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        let reader = Arc::new(ScorerJob::new(archive.clone(), index, clock.clone()));
        Runner::new(EvalStore::new(archive), agent, reader, clock)
    }

    /// An API whose runs another runner carries out (the HTTP function's) accepts live runs
    /// without an agent; a runner with neither refuses them when they are created.
    #[tokio::test]
    async fn live_runs_are_refused_without_an_agent_unless_they_are_run_elsewhere() {
        let dir = tempfile::tempdir().unwrap();
        let alone = runner(dir.path(), None);
        let api = runner(dir.path(), None).with_live_runs_elsewhere();
        let items = crate::dataset::parse_jsonl("{\"id\": \"q\", \"input\": \"hi\"}\n").unwrap();
        alone
            .store()
            .add_version("acme", "d", &items)
            .await
            .unwrap();
        let new = || -> NewRun {
            serde_json::from_value(serde_json::json!({"dataset": "d", "pattern": "eval-*"}))
                .unwrap()
        };
        match alone.create("acme", new(), "api").await {
            Err(EvalError::Invalid(message)) => {
                assert!(message.contains("use mode replay"), "{message}")
            }
            other => panic!("a live run without an agent: {other:?}"),
        }
        let run = api.create("acme", new(), "api").await.unwrap();
        assert_eq!((run.status, run.spec.mode), (Status::Queued, Mode::Live));
    }

    #[tokio::test]
    async fn an_interrupted_run_resumes_without_running_done_items_again() {
        let dir = tempfile::tempdir().unwrap();
        let lines: String = (0..20)
            .map(|i| format!("{{\"id\": \"q{i:02}\", \"input\": \"question {i}\"}}\n"))
            .collect();
        let items = crate::dataset::parse_jsonl(&lines).unwrap();
        let first = Arc::new(Counting {
            asked: AtomicUsize::new(0),
            hang_after: 5,
        });
        let runner = runner(dir.path(), Some(first.clone()));
        runner
            .store()
            .add_version("acme", "d", &items)
            .await
            .unwrap();
        let new: NewRun = serde_json::from_value(serde_json::json!({
            "dataset": "d", "pattern": "eval-*", "concurrency": 1, "timeout_ms": 1000
        }))
        .unwrap();
        let run = runner.create("acme", new, "api").await.unwrap();
        assert_eq!(
            (run.status, run.items, run.spec.version),
            (Status::Queued, 20, 1)
        );
        // The process "dies" on the sixth question.
        let cut = tokio::time::timeout(
            Duration::from_millis(500),
            runner.execute("acme", &run.spec.id, |_, _| {}),
        )
        .await;
        assert!(cut.is_err());
        let stored = runner
            .store()
            .run("acme", &run.spec.id)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            (stored.status, stored.summary),
            (Status::Running, None),
            "not finished"
        );
        assert_eq!(
            runner
                .store()
                .items_done("acme", &run.spec.id)
                .await
                .unwrap(),
            5
        );
        assert_eq!(
            runner.store().unfinished().await.unwrap(),
            [("acme".to_owned(), run.spec.id.clone())]
        );

        let second = Arc::new(Counting {
            asked: AtomicUsize::new(0),
            hang_after: usize::MAX,
        });
        let resumed = self::runner(dir.path(), Some(second.clone()));
        let seen = std::sync::Mutex::new(Vec::new());
        let done = resumed
            .execute("acme", &run.spec.id, |done, total| {
                seen.lock().unwrap().push((done, total))
            })
            .await
            .unwrap();
        assert_eq!(
            second.asked.load(Ordering::SeqCst),
            15,
            "only the 15 items left"
        );
        assert_eq!(done.status, Status::Finished);
        let summary = done.summary.unwrap();
        assert_eq!((summary.timeouts, summary.answered), (20, 0));
        let seen = seen.into_inner().unwrap();
        assert_eq!((seen[0], *seen.last().unwrap()), ((5, 20), (20, 20)));
        assert!(resumed.store().unfinished().await.unwrap().is_empty());
        // Finished runs are not carried out again.
        resumed
            .execute("acme", &run.spec.id, |_, _| {})
            .await
            .unwrap();
        assert_eq!(second.asked.load(Ordering::SeqCst), 15);
    }

    #[tokio::test]
    async fn a_version_a_run_used_stays_what_the_run_read() {
        let dir = tempfile::tempdir().unwrap();
        let agent = Arc::new(Counting {
            asked: AtomicUsize::new(0),
            hang_after: usize::MAX,
        });
        let runner = runner(dir.path(), Some(agent));
        let one = crate::dataset::parse_jsonl("{\"id\": \"a\", \"input\": \"x\"}").unwrap();
        runner.store().add_version("acme", "d", &one).await.unwrap();
        let new: NewRun =
            serde_json::from_value(serde_json::json!({"dataset": "d", "pattern": "eval-*"}))
                .unwrap();
        let run = runner.create("acme", new.clone(), "api").await.unwrap();
        let two = crate::dataset::parse_jsonl(
            "{\"id\": \"a\", \"input\": \"y\"}\n{\"id\": \"b\", \"input\": \"z\"}",
        )
        .unwrap();
        assert_eq!(
            runner.store().add_version("acme", "d", &two).await.unwrap(),
            (2, true)
        );
        let done = runner
            .execute("acme", &run.spec.id, |_, _| {})
            .await
            .unwrap();
        assert_eq!((done.spec.version, done.items), (1, 1));
        assert_eq!(
            runner
                .store()
                .items("acme", &run.spec.id)
                .await
                .unwrap()
                .len(),
            1
        );
        // Other tenants see neither the dataset nor the run.
        assert_eq!(
            runner.store().run("globex", &run.spec.id).await.unwrap(),
            None
        );
        let theirs = runner.create("globex", new, "api").await.unwrap_err();
        assert_eq!(
            theirs,
            EvalError::NotFound("dataset \"d\" does not exist".into())
        );
    }

    #[tokio::test]
    async fn unanswered_items_score_zero_on_what_they_expect_and_replays_stay_in_their_tenant() {
        let dir = tempfile::tempdir().unwrap();
        let agent = Arc::new(Counting {
            asked: AtomicUsize::new(0),
            hang_after: usize::MAX,
        });
        let runner = runner(dir.path(), Some(agent));
        let items = crate::dataset::parse_jsonl(
            "{\"id\": \"a\", \"input\": \"x\", \"expected\": {\"facts\": [\"x\"], \"number\": 1}}",
        )
        .unwrap();
        runner
            .store()
            .add_version("acme", "d", &items)
            .await
            .unwrap();
        let new: NewRun =
            serde_json::from_value(serde_json::json!({"dataset": "d", "pattern": "eval-*"}))
                .unwrap();
        let run = runner.create("acme", new, "api").await.unwrap();
        let done = runner
            .execute("acme", &run.spec.id, |_, _| {})
            .await
            .unwrap();
        let summary = done.summary.unwrap();
        assert_eq!(summary.timeouts, 1);
        for name in ["reference.facts", "reference.numeric"] {
            assert_eq!(
                summary.metric(name).map(|m| (m.n, m.mean)),
                Some((1, 0.0)),
                "{name}"
            );
        }

        // A replay item naming another tenant's trace is refused, and never read.
        let theirs = crate::dataset::parse_jsonl(
            "{\"id\": \"t\", \"trace\": \"traces/dt=2026-12-01/tenant=globex/s.jsonl.gz\"}",
        )
        .unwrap();
        runner
            .store()
            .add_version("acme", "replay", &theirs)
            .await
            .unwrap();
        let replay: NewRun =
            serde_json::from_value(serde_json::json!({"dataset": "replay", "mode": "replay"}))
                .unwrap();
        let refused = runner.create("acme", replay, "api").await.unwrap_err();
        assert_eq!(
            refused,
            EvalError::Invalid(
                "item t: trace \"traces/dt=2026-12-01/tenant=globex/s.jsonl.gz\" is not a trace of this tenant".into()
            )
        );
        let bad: NewRun =
            serde_json::from_value(serde_json::json!({"dataset": "d", "pattern": "eval\u{7}-*"}))
                .unwrap();
        assert!(
            matches!(runner.create("acme", bad, "api").await, Err(EvalError::Invalid(m)) if m.contains("no valid session name"))
        );
    }
}
