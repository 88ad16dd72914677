//! The judge job: every trace the scorer job scored is judged against the rubrics of its
//! tenant's `judge.toml`. Locally the scorer hands it each trace in process; on AWS a
//! queue does. Judge records go to the score index (upserted beside the code records)
//! and, with every outcome, to `judge/dt=<day>/tenant=<t>/<session>.jsonl.gz`.

use std::collections::HashMap;
use std::io::Write;
use std::sync::{Arc, Mutex};

use agentwire_grading::store::GradingStore;
use agentwire_scorer::{AfterScore, CONFIG_TTL, ScorerJob};
use agentwire_scoring::{ScoreIndex, Source};
use agentwire_session::Clock;
use agentwire_session::path::encode_segment;
use agentwire_trace::TraceArchive;
use async_trait::async_trait;
use bytes::Bytes;
use tracing::{info, warn};

use crate::budget::BudgetLedger;
use crate::config::{EndpointConfig, JudgeConfig};
use crate::endpoint::{EndpointError, ModelEndpoint};
use crate::judge::{Case, Judge, Judgement, Outcome};
use crate::prompt::Example;
use agentwire_grading::rubric::Rubric;
use agentwire_scoring::TraceView;

/// Where a tenant's judge configuration is kept.
pub fn judge_config_key(tenant: &str) -> String {
    format!("config/tenant={}/judge.toml", encode_segment(tenant))
}

/// Builds the endpoint a configuration names (wrapped in [`crate::Resilient`]), or says
/// why it cannot be built here.
#[async_trait]
pub trait Endpoints: Send + Sync {
    /// [`EndpointError::Config`] when the configuration cannot work here (kept until the
    /// file changes); any other error when it may work later (a secret store that did not
    /// answer).
    async fn endpoint(
        &self,
        tenant: &str,
        config: &EndpointConfig,
    ) -> Result<Arc<dyn ModelEndpoint>, EndpointError>;
}

/// The endpoints every process can reach: OpenAI-compatible ones, with the key from the
/// named environment variable. Bedrock and keys in Secrets Manager need the AWS stack's.
pub struct OpenAiEndpoints;

#[async_trait]
impl Endpoints for OpenAiEndpoints {
    async fn endpoint(
        &self,
        _tenant: &str,
        config: &EndpointConfig,
    ) -> Result<Arc<dyn ModelEndpoint>, EndpointError> {
        let refused = |m: &str| Err(EndpointError::Config(m.into()));
        if config.kind != crate::config::EndpointKind::Openai {
            return refused(
                "bedrock endpoints are reached from the AWS stack (the judge function, or agentwire dev --backend aws)",
            );
        }
        if config.api_key_secret.is_some() {
            return refused("api_key_secret is read on AWS only; use api_key_env here");
        }
        let key = match &config.api_key_env {
            None => None,
            Some(var) => Some(std::env::var(var).map_err(|_| {
                EndpointError::Config(format!("environment variable {var} is not set"))
            })?),
        };
        openai_endpoint(config, key)
    }
}

/// An OpenAI-compatible endpoint as `config` describes it, with `key`.
pub fn openai_endpoint(
    config: &EndpointConfig,
    key: Option<String>,
) -> Result<Arc<dyn ModelEndpoint>, EndpointError> {
    let base = config.base_url.as_deref().unwrap_or_default();
    let endpoint = crate::openai::OpenAiEndpoint::new(base, key)?;
    Ok(Arc::new(crate::Resilient::new(
        Arc::new(endpoint),
        config.retry_policy(),
        config.concurrency,
    )))
}

/// Why a trace was not judged at all (its rubrics' outcomes are in [`Judgement`]s).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JudgeJobError {
    /// The trace cannot be read or scored (not a trace key, not a trace).
    #[error("{0}")]
    Trace(String),
    /// The tenant's `judge.toml` is invalid: nothing of the tenant is judged until fixed.
    #[error("{key}: {reason}")]
    Config { key: String, reason: String },
    /// Storage failed; the same call may succeed later.
    #[error("{0}")]
    Storage(String),
}

impl JudgeJobError {
    pub fn is_retryable(&self) -> bool {
        matches!(self, JudgeJobError::Storage(_))
    }
}

type Loaded = (i64, Result<Option<Arc<Judge>>, JudgeJobError>);

/// A graded trace shown to the judge, and the trace it is (never shown for itself).
type Shot = (String, Example);
type Shots = (i64, Arc<Vec<Shot>>);

/// Judges traces with their tenants' judges.
pub struct JudgeJob {
    scorer: Arc<ScorerJob>,
    archive: Arc<dyn TraceArchive>,
    index: Arc<dyn ScoreIndex>,
    grading: Arc<dyn GradingStore>,
    ledger: Arc<dyn BudgetLedger>,
    endpoints: Arc<dyn Endpoints>,
    clock: Arc<dyn Clock>,
    judges: Mutex<HashMap<String, Loaded>>,
    /// Few-shot examples by tenant and rubric version, as last read.
    shots: Mutex<HashMap<(String, String, u32), Shots>>,
}

impl JudgeJob {
    /// `scorer` reads traces as the scorers do (it is not asked to score).
    pub fn new(
        scorer: Arc<ScorerJob>,
        archive: Arc<dyn TraceArchive>,
        index: Arc<dyn ScoreIndex>,
        grading: Arc<dyn GradingStore>,
        ledger: Arc<dyn BudgetLedger>,
        endpoints: Arc<dyn Endpoints>,
        clock: Arc<dyn Clock>,
    ) -> JudgeJob {
        JudgeJob {
            scorer,
            archive,
            index,
            grading,
            ledger,
            endpoints,
            clock,
            judges: Mutex::new(HashMap::new()),
            shots: Mutex::new(HashMap::new()),
        }
    }

    /// Judges the trace at `key` against every rubric its tenant configures (none when the
    /// tenant has no `judge.toml`).
    pub async fn judge_key(&self, key: &str) -> Result<Vec<Judgement>, JudgeJobError> {
        // The tenant's judge first: most tenants have none, and their traces are not read.
        let tenant = agentwire_trace::ObjectKey::parse(key)
            .filter(|k| k.prefix == "traces")
            .map(|k| k.tenant)
            .ok_or_else(|| JudgeJobError::Trace(format!("{key}: not a trace key")))?;
        let Some(judge) = self.judge_of(&tenant).await? else {
            return Ok(Vec::new());
        };
        let read = self.scorer.read(key).await.map_err(|e| {
            if e.is_retryable() {
                JudgeJobError::Storage(e.to_string())
            } else {
                JudgeJobError::Trace(e.to_string())
            }
        })?;
        let existing = self
            .index
            .trace(&tenant, &read.view.trace_id)
            .await
            .map_err(|e| JudgeJobError::Storage(e.to_string()))?;
        let (code, judged): (Vec<_>, Vec<_>) = existing
            .into_iter()
            .filter(|r| r.source != Source::Human)
            .partition(|r| r.source == Source::Code);
        let config = read.scoring.config().clone();
        let threshold = move |name: &str| config.threshold(name).unwrap_or(0.5);
        let case = Case {
            view: &read.view,
            code: &code,
            judged: &judged,
            threshold: &threshold,
        };
        let now_ms = self.clock.now_ms();
        let mut judgements = Vec::new();
        for settings in &judge.config().rubric {
            let rubric = self
                .grading
                .rubric(&tenant, &settings.name, settings.version)
                .await
                .map_err(|e| JudgeJobError::Storage(e.to_string()))?;
            let judgement = match rubric {
                Some(rubric) => {
                    let shots = self
                        .shots(&tenant, &rubric, judge.config(), &read.scoring)
                        .await?;
                    let examples: Vec<Example> = shots
                        .iter()
                        .filter(|(trace, _)| *trace != read.view.trace_id)
                        .take(settings.current().few_shot)
                        .map(|(_, example)| example.clone())
                        .collect();
                    judge
                        .judge(&case, &rubric, settings, &examples, now_ms)
                        .await
                        .map_err(|e| JudgeJobError::Storage(e.to_string()))?
                }
                None => missing_rubric(
                    &read.view,
                    &settings.name,
                    settings.version,
                    judge.config(),
                    now_ms,
                ),
            };
            info!(
                tenant = %tenant,
                trace_id = %judgement.trace_id,
                rubric = %judgement.rubric,
                outcome = judgement.outcome.kind(),
                calls = judgement.calls,
                "trace judged"
            );
            // Each verdict is kept as soon as it is paid for: a later rubric's storage
            // failure retries the trace, and the cache then answers for this one.
            if judgement.outcome == Outcome::Judged {
                self.index
                    .upsert(&tenant, &read.view.trace_id, &judgement.records)
                    .await
                    .map_err(|e| JudgeJobError::Storage(e.to_string()))?;
            }
            judgements.push(judgement);
        }
        let body = encode_judgements(&judgements).map_err(JudgeJobError::Storage)?;
        self.archive
            .put(&read.key.under("judge"), Bytes::from(body))
            .await
            .map_err(|e| JudgeJobError::Storage(e.to_string()))?;
        Ok(judgements)
    }

    /// The tenant's judge as last read (re-read after [`CONFIG_TTL`]); `None` without a
    /// `judge.toml`.
    async fn judge_of(&self, tenant: &str) -> Result<Option<Arc<Judge>>, JudgeJobError> {
        let now = self.clock.now_ms();
        if let Some((at, cached)) = lock(&self.judges).get(tenant)
            && now - at < CONFIG_TTL.as_millis() as i64
        {
            return cached.clone();
        }
        let key = judge_config_key(tenant);
        let body = self
            .archive
            .get(&key)
            .await
            .map_err(|e| JudgeJobError::Storage(e.to_string()))?;
        let loaded = match body {
            None => Ok(None),
            Some(body) => match self.build(tenant, &body).await {
                Ok(judge) => Ok(Some(judge)),
                // Not kept: the next trace tries again.
                Err(Built::Later(reason)) => return Err(JudgeJobError::Storage(reason)),
                Err(Built::Never(reason)) => Err(JudgeJobError::Config {
                    key: key.clone(),
                    reason,
                }),
            },
        };
        lock(&self.judges).insert(tenant.to_owned(), (now, loaded.clone()));
        loaded
    }

    async fn build(&self, tenant: &str, body: &[u8]) -> Result<Arc<Judge>, Built> {
        let text = std::str::from_utf8(body).map_err(|_| Built::Never("not UTF-8".into()))?;
        let config = JudgeConfig::parse(text).map_err(|e| Built::Never(e.to_string()))?;
        let endpoint = self
            .endpoints
            .endpoint(tenant, &config.endpoint)
            .await
            .map_err(|e| match e {
                EndpointError::Config(reason) => Built::Never(reason),
                other => Built::Later(other.to_string()),
            })?;
        let judge = Judge::new(tenant, config, endpoint, self.ledger.clone())
            .map_err(|e| Built::Never(e.to_string()))?;
        Ok(Arc::new(judge))
    }

    /// Up to [`MAX_EXAMPLES`](crate::prompt::MAX_EXAMPLES) (and one) graded traces of `rubric`'s version with the experts' answers and
    /// justifications: adjudicated items first (where the experts had to draw the line),
    /// then other graded items with a justification, each redacted as the tenant
    /// configures. Read again after [`CONFIG_TTL`].
    async fn shots(
        &self,
        tenant: &str,
        rubric: &Rubric,
        config: &JudgeConfig,
        scoring: &agentwire_scoring::Scoring,
    ) -> Result<Arc<Vec<Shot>>, JudgeJobError> {
        let now = self.clock.now_ms();
        let key = (tenant.to_owned(), rubric.name.clone(), rubric.version);
        if let Some((at, shots)) = lock(&self.shots).get(&key)
            && now - at < CONFIG_TTL.as_millis() as i64
        {
            return Ok(shots.clone());
        }
        let storage = |e: &dyn std::fmt::Display| JudgeJobError::Storage(e.to_string());
        let queues =
            agentwire_grading::store::queues_of(self.grading.as_ref(), tenant, &rubric.reference())
                .await
                .map_err(|e| storage(&e))?;
        let mut ordered: Vec<(&str, bool)> = queues
            .iter()
            .map(|(q, adjudicated)| (q.name.as_str(), *adjudicated))
            .collect();
        ordered.sort_by_key(|(_, adjudicated)| !adjudicated);
        let mut shots: Vec<Shot> = Vec::new();
        'queues: for (queue, adjudicated) in ordered {
            let grades = self
                .grading
                .grades(tenant, queue)
                .await
                .map_err(|e| storage(&e))?;
            for grade in grades {
                if shots.len() > crate::prompt::MAX_EXAMPLES {
                    break 'queues;
                }
                let justified = crate::prompt::justified(&grade.answers);
                if !justified || shots.iter().any(|(t, _)| *t == grade.trace_id) {
                    continue;
                }
                let Some(spans) = agentwire_trace::find_trace(
                    self.archive.as_ref(),
                    tenant,
                    &grade.session,
                    &grade.trace_id,
                    &[grade.graded_ms],
                )
                .await
                .map_err(|e| storage(&e))?
                else {
                    continue;
                };
                let Ok(view) = TraceView::from_spans(&spans, &scoring.config().view_options())
                else {
                    continue;
                };
                let example =
                    crate::prompt::example(&view, &grade.answers, rubric, config, adjudicated);
                shots.push((grade.trace_id.clone(), example));
            }
        }
        let shots = Arc::new(shots);
        lock(&self.shots).insert(key, (now, shots.clone()));
        Ok(shots)
    }
}

/// Why a tenant's judge was not built: for good (until its file changes), or for now.
enum Built {
    Never(String),
    Later(String),
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // The maps hold no invariant a panicking holder could break.
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

fn missing_rubric(
    view: &agentwire_scoring::TraceView,
    name: &str,
    version: Option<u32>,
    config: &JudgeConfig,
    now_ms: i64,
) -> Judgement {
    Judgement {
        tenant: view.tenant.clone(),
        trace_id: view.trace_id.clone(),
        session: view.session.clone(),
        rubric: name.to_owned(),
        rubric_version: version.unwrap_or(0),
        outcome: Outcome::Failed(match version {
            Some(v) => format!("no rubric `{name}` version {v} in the grading store"),
            None => format!("no rubric `{name}` in the grading store"),
        }),
        pick: String::new(),
        model: config.endpoint.model.clone(),
        prompt_version: config.rubric.iter().find(|r| r.name == name).map_or_else(
            || crate::prompt::PROMPT_VERSION.to_owned(),
            |r| r.current().version,
        ),
        usage: None,
        calls: 0,
        masked: 0,
        cut_chars: 0,
        judged_at_ms: now_ms,
        records: Vec::new(),
    }
}

/// Judgements as gzip JSON lines, each with its records.
pub fn encode_judgements(judgements: &[Judgement]) -> Result<Vec<u8>, String> {
    let mut gzip = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    for judgement in judgements {
        serde_json::to_writer(&mut gzip, judgement).map_err(|e| e.to_string())?;
        gzip.write_all(b"\n").map_err(|e| e.to_string())?;
    }
    gzip.finish().map_err(|e| e.to_string())
}

/// The local hook: each scored trace is judged on its own task, so a slow model never
/// holds up scoring (the endpoint's concurrency limit bounds the calls in flight).
pub struct JudgeInProcess {
    job: Arc<JudgeJob>,
}

impl JudgeInProcess {
    pub fn new(job: Arc<JudgeJob>) -> Arc<JudgeInProcess> {
        Arc::new(JudgeInProcess { job })
    }
}

#[async_trait]
impl AfterScore for JudgeInProcess {
    async fn scored(&self, trace_key: &str) {
        let job = self.job.clone();
        let key = trace_key.to_owned();
        tokio::spawn(async move {
            if let Err(e) = job.judge_key(&key).await {
                warn!(error = %e, "trace not judged");
            }
        });
    }
}
