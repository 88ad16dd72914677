//! The local composition root, beside the AWS `Stack`: the adapters `agentwire dev` runs
//! on, the jobs it runs on their schedules, and the app it serves. Tests build the same
//! stack in-process on port 0.
//!
//! By default everything is embedded: sessions in SQLite (`<data-dir>/sessions.db`),
//! connections in memory, pushes to the local gateway's sockets, traces under
//! `<data-dir>/traces/` at the keys S3 has on AWS, and the archiver's activity index in
//! the same SQLite file, as are the grading store's rubrics, queues and grades.
//! [`LocalStack::assemble`] takes other parts (the AWS adapters of
//! `agentwire dev --backend aws`) and wires them the same way.

mod expiry;
mod serve;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use agentwire_archive::{Archiver, ChangeFeed};
use agentwire_auth::Auth;
use agentwire_dispatch::{
    Dispatch, DispatchConfig, DispatchObserver, StreamCatalog, SubscriptionStore, Targets,
};
use agentwire_evals::nightly::{NIGHTLY_EVERY, Nightly};
use agentwire_evals::{EvalStore, Runner, SessionAgent, Spawner};
use agentwire_fs::DirTraceArchive;
use agentwire_grading::GradingStore;
use agentwire_grading_http::GradingService;
use agentwire_jobs::{Job, Scheduler};
use agentwire_judge::BudgetLedger;
use agentwire_judge::job::{Endpoints, JudgeInProcess, JudgeJob};
use agentwire_local_gateway::LocalPush;
use agentwire_realtime::{
    ClientPush, ConnectionRegistry, Fanout, InMemoryConnectionRegistry, Realtime,
};
use agentwire_scorer::{RESCORE_EVERY, Rescore, ScorerJob, ScoringArchive};
use agentwire_scoring::ScoreIndex;
use agentwire_session::{Clock, SessionLog, Sessions, SystemClock};
use agentwire_sqlite::{
    ReadPool, SqliteActivityIndex, SqliteBudgetLedger, SqliteGradingStore, SqliteScoreIndex,
    SqliteSessionLog, SqliteSubscriptionStore,
};
use agentwire_streams_http::HttpConfig;
use agentwire_trace::{ActivityIndex, TraceArchive};
use agentwire_traces_http::TracesConfig;

pub use expiry::ExpirySweep;
pub use serve::{ServeLimits, accept, default_max_connections, serve};

/// The jobs' settings locally (on AWS the template sets them).
#[derive(Debug, Clone)]
pub struct LocalSettings {
    /// Holds `sessions.db` and `traces/`.
    pub data_dir: PathBuf,
    /// A session counts as idle, and is archived, after this long without an append.
    pub idle: Duration,
    /// How often the archiver sweeps for idle sessions.
    pub archive_sweep: Duration,
    /// How often expired sessions' space is freed (reads treat them as gone at once).
    pub expiry_sweep: Duration,
    /// Changes of this long are handed to the archiver as one batch (the DynamoDB Stream's
    /// batching window on AWS): a closed session is archived within about this long.
    pub change_window: Duration,
    /// The SQLite log's reader connections: how many at most, and when idle ones close.
    pub read_pool: ReadPool,
    /// How often the day that just ended is re-scored.
    pub rescore_every: Duration,
    /// How often the `evals` job looks for scheduled evals and unfinished runs.
    pub evals_every: Duration,
    /// How often the `clusters` job looks for a night to cluster (each night once).
    pub clusters_every: Duration,
    /// An OpenAI-compatible embeddings endpoint for the clusters job; the local TF-IDF
    /// without one.
    pub embeddings: Option<EmbeddingsEndpoint>,
    /// all-MiniLM-L6-v2's directory, for in-process embeddings (builds with the `minilm`
    /// feature); the endpoint wins when both are given.
    pub embedding_model_dir: Option<PathBuf>,
}

/// Where the clusters job's embeddings come from, when not from the local TF-IDF.
#[derive(Debug, Clone)]
pub struct EmbeddingsEndpoint {
    /// Ends before `/embeddings` (`https://api.openai.com/v1`).
    pub url: String,
    pub model: String,
    pub api_key: Option<String>,
}

impl LocalSettings {
    /// The defaults of `agentwire dev` for `data_dir`.
    pub fn new(data_dir: impl Into<PathBuf>) -> LocalSettings {
        LocalSettings {
            data_dir: data_dir.into(),
            idle: Duration::from_secs(30 * 60),
            archive_sweep: Duration::from_secs(60),
            expiry_sweep: Duration::from_secs(60),
            change_window: Duration::from_secs(1),
            read_pool: ReadPool::default(),
            rescore_every: RESCORE_EVERY,
            evals_every: NIGHTLY_EVERY,
            clusters_every: agentwire_cluster::NIGHTLY_EVERY,
            embeddings: None,
            embedding_model_dir: None,
        }
    }

    /// The session database.
    pub fn database(&self) -> PathBuf {
        self.data_dir.join("sessions.db")
    }

    /// The trace archive's root: `traces/dt=…` lives under it, as in the bucket.
    pub fn archive_root(&self) -> &Path {
        &self.data_dir
    }
}

/// A local stack that could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum LocalError {
    #[error("cannot create the data directory {path}: {source}")]
    DataDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot open {path}: {message}")]
    Storage { path: PathBuf, message: String },
}

/// The adapters a stack is assembled from.
pub struct Parts {
    pub log: Arc<dyn SessionLog>,
    pub registry: Arc<dyn ConnectionRegistry>,
    /// How pushes reach clients (the local sockets, or API Gateway's management API).
    pub client_push: Arc<dyn ClientPush>,
    /// Deliver pushes before the append is acknowledged (as a Lambda must), or after.
    pub inline_fanout: bool,
    /// Re-read live streams this often, for appends other processes make.
    pub poll: Option<Duration>,
    pub archive: Arc<dyn TraceArchive>,
    pub activity: Arc<dyn ActivityIndex>,
    /// Where score records are indexed per trace.
    pub scores: Arc<dyn ScoreIndex>,
    /// Rubrics, annotation queues and grades.
    pub grading: Arc<dyn GradingStore>,
    /// The LLM judge's daily spend per tenant.
    pub budget: Arc<dyn BudgetLedger>,
    /// How the judge reaches the endpoints tenants configure.
    pub endpoints: Arc<dyn Endpoints>,
    /// The SQLite log, when sessions are in SQLite: its expiry sweep is a job.
    pub sqlite: Option<Arc<SqliteSessionLog>>,
    /// Durable Streams subscriptions, where the backend has a store for them.
    pub dispatch: Option<Arc<Dispatch>>,
}

/// Everything `agentwire dev` runs, wired.
pub struct LocalStack {
    pub sessions: Sessions,
    pub registry: Arc<dyn ConnectionRegistry>,
    pub client_push: Arc<dyn ClientPush>,
    /// The local gateway's sockets.
    pub sockets: Arc<LocalPush>,
    pub archiver: Arc<Archiver>,
    /// The trace archive the archiver and OTLP ingest (`POST /v1/traces`) write to: every
    /// trace written through it is scored.
    pub archive: Arc<dyn TraceArchive>,
    /// The scoring side of `archive`: [`ScoringArchive::settled`] waits for the scorer.
    pub scoring: Arc<ScoringArchive>,
    /// The scorer job (also run nightly as the `rescore` job).
    pub scorer: Arc<ScorerJob>,
    /// The score index `GET /v1/traces/{id}/scores` and `GET /v1/scores` read.
    pub scores: Arc<dyn ScoreIndex>,
    /// The grading API's store (its grades also go into `scores`, as `human` records).
    pub grading: Arc<dyn GradingStore>,
    /// The LLM judge: every scored trace of a tenant with a `judge.toml` is judged.
    pub judge: Arc<JudgeJob>,
    /// Every job, as `agentwire job list` shows them.
    pub jobs: Vec<Arc<dyn Job>>,
    /// Subscriptions (webhooks and pull-wake), when the backend offers them.
    pub dispatch: Option<Arc<Dispatch>>,
    /// Evals: runs created through the API or by the `evals` job, carried out in this
    /// process through its sessions (so dispatch delivers them to the agent under test).
    pub evals: Arc<Runner>,
    pub eval_runs: Arc<Spawner>,
    /// The store under the scoring archive (configurations, datasets, runs).
    plain_archive: Arc<dyn TraceArchive>,
    clock: Arc<dyn Clock>,
    log: Arc<dyn SessionLog>,
    feed: Arc<ChangeFeed>,
}

impl LocalStack {
    /// The embedded stack over `settings.data_dir`.
    pub fn open(settings: &LocalSettings) -> Result<LocalStack, LocalError> {
        LocalStack::open_with_clock(settings, Arc::new(SystemClock))
    }

    /// The embedded stack, reading time from `clock` (for tests).
    pub fn open_with_clock(
        settings: &LocalSettings,
        clock: Arc<dyn Clock>,
    ) -> Result<LocalStack, LocalError> {
        let sockets = Arc::new(LocalPush::default());
        let parts = embedded_parts(settings, clock.clone(), None, sockets.clone())?;
        Ok(LocalStack::assemble(parts, sockets, settings, clock))
    }

    /// The embedded stack around another session log and the activity index beside it
    /// (`--backend dynamodb`: the index stays with the sessions it indexes, so a SQLite
    /// sweep of the data directory never forgets sessions it cannot read).
    pub fn open_on_log(
        settings: &LocalSettings,
        log: Arc<dyn SessionLog>,
        activity: Arc<dyn ActivityIndex>,
    ) -> Result<LocalStack, LocalError> {
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        let sockets = Arc::new(LocalPush::default());
        let parts = Parts {
            activity,
            // The data directory's catalog lists its own SQLite streams, not this log's.
            dispatch: None,
            ..embedded_parts(settings, clock.clone(), Some(log), sockets.clone())?
        };
        Ok(LocalStack::assemble(parts, sockets, settings, clock))
    }

    /// Wires `parts`: the session service with fan-out and the archiver's change feed,
    /// the archiver, and the jobs.
    pub fn assemble(
        parts: Parts,
        sockets: Arc<LocalPush>,
        settings: &LocalSettings,
        clock: Arc<dyn Clock>,
    ) -> LocalStack {
        // Scores are written beside the traces, through the plain archive; traces are
        // written through the scoring one, which hands each to the scorer.
        // The judge reads traces as the scorers do, and hears of each once it is scored.
        let reader = Arc::new(ScorerJob::new(
            parts.archive.clone(),
            parts.scores.clone(),
            clock.clone(),
        ));
        let judge = Arc::new(JudgeJob::new(
            reader.clone(),
            parts.archive.clone(),
            parts.scores.clone(),
            parts.grading.clone(),
            parts.budget,
            parts.endpoints,
            clock.clone(),
        ));
        let scorer = Arc::new(
            ScorerJob::new(parts.archive.clone(), parts.scores.clone(), clock.clone())
                .with_after(JudgeInProcess::new(judge.clone())),
        );
        let scoring = ScoringArchive::new(parts.archive.clone(), scorer.clone());
        let archive: Arc<dyn TraceArchive> = scoring.clone();
        let archiver = Arc::new(
            Archiver::new(
                parts.log.clone(),
                archive.clone(),
                parts.activity,
                settings.idle,
            )
            .with_sweep_every(settings.archive_sweep)
            .with_clock(clock.clone()),
        );
        let feed = Arc::new(ChangeFeed::start(
            archiver.clone(),
            settings.change_window,
            clock.clone(),
        ));
        let fanout = match parts.inline_fanout {
            true => Fanout::inline(parts.registry.clone(), parts.client_push.clone()),
            false => Fanout::new(parts.registry.clone(), parts.client_push.clone()),
        };
        let mut sessions = Sessions::new(parts.log.clone())
            .with_observer(Arc::new(fanout))
            .with_observer(feed.clone());
        if let Some(dispatch) = &parts.dispatch {
            sessions = sessions.with_observer(Arc::new(DispatchObserver(dispatch.clone())));
        }
        if let Some(poll) = parts.poll {
            sessions = sessions.with_poll_interval(poll);
        }
        let agent = SessionAgent::new(sessions.clone(), archiver.clone());
        let evals = Arc::new(
            Runner::new(
                EvalStore::new(parts.archive.clone()),
                Some(Arc::new(agent)),
                reader,
                clock.clone(),
            )
            .with_after(Arc::new(agentwire_report::RunReports)),
        );
        let eval_runs = Spawner::new(evals.clone());
        let mut jobs: Vec<Arc<dyn Job>> = vec![
            archiver.clone(),
            Arc::new(Rescore::new(scorer.clone(), settings.rescore_every)),
            Arc::new(Nightly::new(
                evals.clone(),
                parts.archive.clone(),
                Some(eval_runs.clone()),
                settings.evals_every,
            )),
        ];
        let agreements = Arc::new(agentwire_grading_http::reports::Agreements(
            GradingService::new(
                parts.grading.clone(),
                parts.scores.clone(),
                parts.archive.clone(),
                clock.clone(),
            ),
        ));
        let embedder: Arc<dyn agentwire_cluster::Embedder> = match &settings.embeddings {
            Some(e) => {
                match agentwire_cluster::OpenAiEmbeddings::new(&e.url, e.api_key.clone(), &e.model)
                {
                    Ok(endpoint) => Arc::new(endpoint),
                    Err(error) => {
                        tracing::warn!(%error, "embeddings endpoint not usable: clustering with the local TF-IDF");
                        Arc::new(agentwire_cluster::LocalTfIdf)
                    }
                }
            }
            None => match &settings.embedding_model_dir {
                Some(dir) => local_model(dir),
                None => Arc::new(agentwire_cluster::LocalTfIdf),
            },
        };
        jobs.push(Arc::new(agentwire_cluster::ClusterJob::new(
            parts.archive.clone(),
            embedder,
            Some(Arc::new(agentwire_report::site::SiteReports::new(
                parts.archive.clone(),
                Some(agreements),
            ))),
            settings.clusters_every,
        )));
        if let Some(sqlite) = parts.sqlite {
            jobs.push(Arc::new(ExpirySweep::new(sqlite, settings.expiry_sweep)));
        }
        LocalStack {
            sessions,
            registry: parts.registry,
            client_push: parts.client_push,
            sockets,
            archiver,
            archive,
            scoring,
            scorer,
            scores: parts.scores,
            grading: parts.grading,
            judge,
            jobs,
            dispatch: parts.dispatch,
            evals,
            eval_runs,
            plain_archive: parts.archive,
            clock,
            log: parts.log,
            feed,
        }
    }

    /// The app `agentwire dev` serves: the Durable Streams API, OTLP/HTTP trace ingest at
    /// `POST /v1/traces` (with the same body limit and body timeout as `http`), the scores,
    /// the grading API (`/v1/rubrics`, `/v1/queues`) and the WebSocket gateway at `/ws`
    /// (callers add the management API and the web pages).
    pub fn app(&self, auth: Auth, http: HttpConfig) -> axum::Router {
        let realtime = Realtime::new(
            self.sessions.clone(),
            self.registry.clone(),
            self.client_push.clone(),
            auth.clone(),
        );
        let traces = TracesConfig {
            max_body_bytes: http.max_body_bytes,
            body_timeout: http.body_timeout,
            ..TracesConfig::default()
        };
        let streams = match &self.dispatch {
            Some(dispatch) => {
                // Leases that expire and webhook retries that fall due, until shutdown.
                tokio::spawn(dispatch.clone().run_sweeper(self.sessions.clone()));
                agentwire_streams_http::router_with_dispatch(
                    self.sessions.clone(),
                    auth.clone(),
                    http,
                    dispatch.clone(),
                )
            }
            None => agentwire_streams_http::router(self.sessions.clone(), auth.clone(), http),
        };
        streams
            .merge(agentwire_traces_http::router(
                self.archive.clone(),
                auth.clone(),
                traces,
            ))
            .merge(agentwire_traces_http::scores_router(
                self.scores.clone(),
                auth.clone(),
            ))
            .merge(agentwire_grading_http::router(
                GradingService::new(
                    self.grading.clone(),
                    self.scores.clone(),
                    self.archive.clone(),
                    self.clock.clone(),
                ),
                auth.clone(),
                agentwire_grading_http::DEFAULT_MAX_BODY_BYTES,
            ))
            .merge(agentwire_evals_http::router(
                agentwire_evals_http::EvalsApi {
                    runner: self.evals.clone(),
                    launch: self.eval_runs.clone(),
                    archive: self.archive.clone(),
                    scores: self.scores.clone(),
                    grading: self.grading.clone(),
                    auth,
                },
            ))
            .merge(agentwire_local_gateway::router(
                realtime,
                self.sockets.clone(),
            ))
    }

    /// Runs every job on its schedule until [`Scheduler::stop`], and carries on the eval
    /// runs a stopped process left unfinished.
    pub fn start_jobs(&self) -> Scheduler {
        let eval_runs = self.eval_runs.clone();
        tokio::spawn(async move {
            match eval_runs.resume_all().await {
                Ok(0) => {}
                Ok(n) => tracing::info!(runs = n, "carrying on unfinished eval runs"),
                Err(e) => tracing::warn!(error = %e, "unfinished eval runs not resumed"),
            }
        });
        Scheduler::start(&self.jobs, self.clock.clone())
    }

    /// The `evals` job carrying runs out itself, as on AWS (for `agentwire job run evals`,
    /// whose process ends with the job).
    pub fn evals_job_inline(&self) -> Arc<dyn Job> {
        Arc::new(Nightly::new(
            self.evals.clone(),
            self.plain_archive.clone(),
            None,
            NIGHTLY_EVERY,
        ))
    }

    /// Ends live reads now and makes new ones answer at once: the server is stopping.
    pub fn stop_live_reads(&self) {
        self.sessions.stop_live_reads();
    }

    /// After the last request: hands the archiver every change still queued (a session
    /// closed just before Ctrl-C is archived, not forgotten) and waits for it.
    pub async fn close(&self) {
        self.feed.close().await;
    }

    /// The session log (dropping the last handle lets SQLite commit what is queued).
    pub fn log(&self) -> &Arc<dyn SessionLog> {
        &self.log
    }
}

/// The in-process model, or (said once, and named in every result) the local TF-IDF.
#[cfg(feature = "minilm")]
fn local_model(dir: &Path) -> Arc<dyn agentwire_cluster::Embedder> {
    match agentwire_cluster::minilm::MiniLm::load(dir) {
        Ok(model) => Arc::new(model),
        Err(error) => {
            tracing::warn!(%error, "embedding model not loaded: clustering with the local TF-IDF");
            Arc::new(agentwire_cluster::LocalTfIdf)
        }
    }
}

#[cfg(not(feature = "minilm"))]
fn local_model(_dir: &Path) -> Arc<dyn agentwire_cluster::Embedder> {
    tracing::warn!("built without the minilm feature: clustering with the local TF-IDF");
    Arc::new(agentwire_cluster::LocalTfIdf)
}

fn storage(path: &Path, e: impl std::fmt::Display) -> LocalError {
    LocalError::Storage {
        path: path.to_path_buf(),
        message: e.to_string(),
    }
}

/// SQLite (unless `log` is given), in-process connections and sockets, and the directory.
fn embedded_parts(
    settings: &LocalSettings,
    clock: Arc<dyn Clock>,
    log: Option<Arc<dyn SessionLog>>,
    sockets: Arc<LocalPush>,
) -> Result<Parts, LocalError> {
    std::fs::create_dir_all(&settings.data_dir).map_err(|source| LocalError::DataDir {
        path: settings.data_dir.clone(),
        source,
    })?;
    let db = settings.database();
    let (log, sqlite) = match log {
        Some(log) => (log, None),
        None => {
            let sqlite = Arc::new(
                SqliteSessionLog::open_with(&db, clock, settings.read_pool)
                    .map_err(|e| storage(&db, e))?,
            );
            (sqlite.clone() as Arc<dyn SessionLog>, Some(sqlite))
        }
    };
    let activity = SqliteActivityIndex::open(&db).map_err(|e| storage(&db, e))?;
    let scores = SqliteScoreIndex::open(&db).map_err(|e| storage(&db, e))?;
    let grading = SqliteGradingStore::open(&db).map_err(|e| storage(&db, e))?;
    let budget = SqliteBudgetLedger::open(&db).map_err(|e| storage(&db, e))?;
    let subscriptions = Arc::new(SqliteSubscriptionStore::open(&db).map_err(|e| storage(&db, e))?);
    let dispatch = local_dispatch(subscriptions.clone(), subscriptions, &settings.data_dir)?;
    Ok(Parts {
        log,
        registry: Arc::new(InMemoryConnectionRegistry::default()),
        client_push: sockets,
        inline_fanout: false,
        poll: None,
        archive: Arc::new(DirTraceArchive::new(settings.archive_root())),
        activity: Arc::new(activity),
        scores: Arc::new(scores),
        grading: Arc::new(grading),
        budget: Arc::new(budget),
        endpoints: Arc::new(agentwire_judge::job::OpenAiEndpoints),
        sqlite,
        dispatch: Some(dispatch),
    })
}

/// Subscriptions as a development server keeps them, on any store: signed with the data
/// directory's key, webhooks to this machine over plain http allowed, sent in-process.
pub fn local_dispatch(
    store: Arc<dyn SubscriptionStore>,
    catalog: Arc<dyn StreamCatalog>,
    data_dir: &Path,
) -> Result<Arc<Dispatch>, LocalError> {
    std::fs::create_dir_all(data_dir).map_err(|source| LocalError::DataDir {
        path: data_dir.to_owned(),
        source,
    })?;
    let key = webhook_key(data_dir)?;
    let targets = Targets::PublicAndLoopback;
    let webhooks = Arc::new(agentwire_webhook::HttpWebhookClient::new(
        targets,
        Duration::from_millis(agentwire_dispatch::model::DELIVERY_TIMEOUT_MS as u64),
    ));
    Dispatch::new(
        store,
        catalog,
        webhooks,
        &key,
        DispatchConfig {
            targets,
            ..DispatchConfig::default()
        },
    )
    .map_err(|e| storage(data_dir, e))
}

/// The webhook signing key of the data directory (`webhook-key.p8`, PKCS#8, readable by
/// its owner only), made on first use: receivers keep trusting it across restarts.
fn webhook_key(dir: &Path) -> Result<Vec<u8>, LocalError> {
    let path = dir.join("webhook-key.p8");
    match std::fs::read(&path) {
        Ok(bytes) => Ok(bytes),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let (_, document) = agentwire_dispatch::signing::WebhookKey::generate()
                .map_err(|e| storage(&path, e))?;
            let mut options = std::fs::OpenOptions::new();
            options.write(true).create_new(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
            match options.open(&path) {
                Ok(mut file) => {
                    std::io::Write::write_all(&mut file, &document)
                        .map_err(|e| storage(&path, e))?;
                    Ok(document)
                }
                // Another process made it first: use that one.
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    std::fs::read(&path).map_err(|e| storage(&path, e))
                }
                Err(e) => Err(storage(&path, e)),
            }
        }
        Err(e) => Err(storage(&path, e)),
    }
}
