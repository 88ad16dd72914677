//! One trace judged against one rubric: sampled, looked up in the cache, redacted, put
//! into a prompt, paid for from the day's budget, sent, and its reply checked (one retry
//! with the problem named, then `invalid`). Every way this can end is a [`Judgement`]: a
//! batch never stops for one trace.

use std::sync::Arc;

use agentwire_grading::rubric::Rubric;
use agentwire_scoring::scorers::latency_cost::PriceTable;
use agentwire_scoring::{ScoreRecord, Source, TraceView};
use serde::Serialize;

use crate::budget::{BudgetLedger, Charge, LedgerError};
use crate::config::{JudgeConfig, PromptChoice, RubricConfig, micro_usd};
use crate::endpoint::{
    AttemptGate, ChatMessage, ChatReply, ChatRequest, EndpointError, Gated, ModelEndpoint,
    TokenUsage,
};
use crate::prompt::{self, Example, PromptError};
use crate::sample::{self, Pick};
use crate::{redact, verdict};

/// How judging one trace ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "outcome", content = "reason", rename_all = "snake_case")]
pub enum Outcome {
    /// A valid verdict, now in `records`.
    Judged,
    /// Judged before with the same trace digest, rubric version, model and prompt
    /// version: the earlier records stand, nothing was sent.
    Cached,
    /// Not sent: `not sampled`, `budget` (the day's cap would be crossed), or
    /// `sending forbidden` (the tenant's redaction forbids it).
    Skipped(String),
    /// The model answered twice without a valid verdict; the reason names the problem.
    Invalid(String),
    /// The endpoint failed (after its retries), the prompt cannot fit the model, or an
    /// invalid first reply could not be retried within the budget.
    Failed(String),
}

impl Outcome {
    /// The outcome without its reason (`judged`, `invalid`, …): what logs may carry, since
    /// a reason can quote a few characters of the model's reply.
    pub fn kind(&self) -> &'static str {
        match self {
            Outcome::Judged => "judged",
            Outcome::Cached => "cached",
            Outcome::Skipped(_) => "skipped",
            Outcome::Invalid(_) => "invalid",
            Outcome::Failed(_) => "failed",
        }
    }
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Outcome::Judged => f.write_str("judged"),
            Outcome::Cached => f.write_str("cached"),
            Outcome::Skipped(why) => write!(f, "skipped: {why}"),
            Outcome::Invalid(why) => write!(f, "invalid: {why}"),
            Outcome::Failed(why) => write!(f, "failed: {why}"),
        }
    }
}

/// What judging one trace against one rubric did. Never holds conversation text: the
/// records' explanations are the model's, and the reasons are structural.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Judgement {
    pub tenant: String,
    pub trace_id: String,
    pub session: String,
    pub rubric: String,
    pub rubric_version: u32,
    #[serde(flatten)]
    pub outcome: Outcome,
    /// Why the trace was picked (`flagged: groundedness`, `sampled`, …).
    pub pick: String,
    pub model: String,
    pub prompt_version: String,
    /// Tokens used by every call made for this trace (a retry included).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usage: Option<TokenUsage>,
    /// Calls made (0 when nothing was sent, 2 after an invalid first reply).
    pub calls: u32,
    /// Masks the redaction applied.
    pub masked: usize,
    /// Characters of trace text cut to fit the prompt budget.
    pub cut_chars: usize,
    pub judged_at_ms: i64,
    /// The verdict's records (a cache hit's earlier ones).
    pub records: Vec<ScoreRecord>,
}

/// The judge for one tenant: its configuration, endpoint and budget.
pub struct Judge {
    tenant: String,
    config: JudgeConfig,
    prices: PriceTable,
    endpoint: Arc<dyn ModelEndpoint>,
    ledger: Arc<dyn BudgetLedger>,
}

/// A trace to judge and what is known of it.
pub struct Case<'a> {
    /// The trace, unredacted (the judge redacts before sending).
    pub view: &'a TraceView,
    /// The trace's code records, for the strata.
    pub code: &'a [ScoreRecord],
    /// The trace's judge records so far, for the cache.
    pub judged: &'a [ScoreRecord],
    /// Thresholds of the tenant's scorers by record name (0.5 when a scorer has none).
    pub threshold: &'a (dyn Fn(&str) -> f64 + Sync),
}

impl Judge {
    /// `endpoint` should already be wrapped in [`crate::Resilient`].
    pub fn new(
        tenant: &str,
        config: JudgeConfig,
        endpoint: Arc<dyn ModelEndpoint>,
        ledger: Arc<dyn BudgetLedger>,
    ) -> Result<Judge, agentwire_scoring::ConfigError> {
        let prices = config.price_table()?;
        Ok(Judge {
            tenant: tenant.to_owned(),
            config,
            prices,
            endpoint,
            ledger,
        })
    }

    pub fn config(&self) -> &JudgeConfig {
        &self.config
    }

    /// The scorer version judge records carry: the model, the prompt version (the
    /// variant's, [`PromptChoice::version`]) and the rubric version. A record with this
    /// version and the trace's digest is a cache hit.
    pub fn scorer_version(&self, rubric: &Rubric, prompt: &PromptChoice) -> String {
        format!(
            "{}/{}/{}@{}",
            self.config.endpoint.model, prompt.version, rubric.name, rubric.version
        )
    }

    /// Judges `case` against `rubric` (configured by `settings`, whose prompt variant is
    /// used) with `examples` as the few-shot examples, on the UTC day of `now_ms`'s budget. Only the ledger failing is
    /// an error (the trace should be judged again later); everything else is an outcome.
    pub async fn judge(
        &self,
        case: &Case<'_>,
        rubric: &Rubric,
        settings: &RubricConfig,
        examples: &[Example],
        now_ms: i64,
    ) -> Result<Judgement, LedgerError> {
        let view = case.view;
        let choice = settings.current();
        let pick = sample::pick(&view.trace_id, settings, case.code, case.threshold);
        let mut judgement = Judgement {
            tenant: self.tenant.clone(),
            trace_id: view.trace_id.clone(),
            session: view.session.clone(),
            rubric: rubric.name.clone(),
            rubric_version: rubric.version,
            outcome: Outcome::Judged,
            pick: pick.to_string(),
            model: self.config.endpoint.model.clone(),
            prompt_version: choice.version.clone(),
            usage: None,
            calls: 0,
            masked: 0,
            cut_chars: 0,
            judged_at_ms: now_ms,
            records: Vec::new(),
        };
        if !pick.judged() {
            judgement.outcome = Outcome::Skipped(Pick::NotSampled.to_string());
            return Ok(judgement);
        }
        let version = self.scorer_version(rubric, &choice);
        let cached: Vec<ScoreRecord> = case
            .judged
            .iter()
            .filter(|r| {
                r.source == Source::Judge
                    && r.scorer_version == version
                    && r.trace_digest == view.digest
                    && r.name.starts_with(&format!("{}.", rubric.name))
            })
            .cloned()
            .collect();
        // Every criterion answered (a validated rubric has at least one).
        if cached.len() == rubric.criteria.len() {
            judgement.outcome = Outcome::Cached;
            judgement.records = cached;
            return Ok(judgement);
        }
        if !self.config.redaction.send {
            judgement.outcome = Outcome::Skipped("sending forbidden".into());
            return Ok(judgement);
        }
        let (redacted, masked) = redact::redact(view, &self.config.redaction.mask);
        judgement.masked = masked;
        let built = match prompt::build(
            rubric,
            &redacted,
            &choice.instructions,
            examples,
            &self.config.prompt,
            &self.config.endpoint,
        ) {
            Ok(built) => built,
            Err(e @ PromptError::DoesNotFit { .. }) => {
                judgement.outcome = Outcome::Failed(e.to_string());
                return Ok(judgement);
            }
        };
        judgement.cut_chars = built.cut_chars;
        let mut request = ChatRequest {
            model: self.config.endpoint.model.clone(),
            messages: built.messages,
            max_tokens: self.config.endpoint.max_output_tokens,
            temperature: self.config.endpoint.temperature,
            schema: built.schema,
            schema_name: built.schema_name,
            structured: self.config.endpoint.structured,
            stream: self.config.endpoint.stream,
        };
        let day = agentwire_trace::utc_day(now_ms);
        let mut used = TokenUsage::default();
        for attempt in 0..2 {
            let reply = match self.call(&request, &day).await? {
                Call::Replied(reply) => reply,
                Call::OverBudget if attempt == 0 => {
                    judgement.outcome = Outcome::Skipped("budget".into());
                    return Ok(judgement);
                }
                Call::OverBudget => {
                    // Not the reply's fault alone: the verdict may have come on the retry.
                    judgement.outcome = Outcome::Failed(
                        "the first reply was invalid and no budget is left for a retry".into(),
                    );
                    return Ok(judgement);
                }
                Call::Failed { sent, reason } => {
                    judgement.calls += u32::from(sent);
                    judgement.outcome = Outcome::Failed(reason);
                    return Ok(judgement);
                }
            };
            judgement.calls += 1;
            if let Some(usage) = reply.usage {
                used.input_tokens += usage.input_tokens;
                used.output_tokens += usage.output_tokens;
                judgement.usage = Some(used);
            }
            match verdict::parse(rubric, &reply.text) {
                Ok(verdict) => {
                    judgement.records = verdict::to_records(
                        &verdict,
                        rubric,
                        view,
                        &version,
                        judgement.usage,
                        now_ms,
                    );
                    judgement.outcome = Outcome::Judged;
                    return Ok(judgement);
                }
                Err(e) if attempt == 0 => {
                    // Once more, with the problem named; the model sees its own reply.
                    request.messages.push(ChatMessage::assistant(reply.text));
                    request.messages.push(ChatMessage::user(format!(
                        "That reply is not a valid verdict: {e}. Reply again with only the JSON object, every criterion answered with a value from its scale."
                    )));
                }
                Err(e) => {
                    judgement.outcome = Outcome::Invalid(e.to_string());
                    return Ok(judgement);
                }
            }
        }
        unreachable!("the loop returns on its second attempt")
    }

    /// One call paid for from the day's budget, attempt by attempt: before each attempt
    /// (retries included) an upper bound of its cost is reserved, conditionally on the
    /// caps; after it, the reply's usage replaces the bound, an attempt the model certainly
    /// never ran gives it back, and any other failure keeps it (it may have been billed).
    async fn call(&self, request: &ChatRequest, day: &str) -> Result<Call, LedgerError> {
        let input_bound = prompt::input_token_bound(&request.messages, &request.schema);
        let bound = self.charge(&request.model, input_bound, u64::from(request.max_tokens));
        let gate = Spend {
            judge: self,
            day,
            bound,
            failure: std::sync::Mutex::new(None),
        };
        let gated = self.endpoint.complete_gated(request, &gate).await;
        if let Some(e) = gate
            .failure
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
        {
            return Err(e);
        }
        Ok(match gated {
            Gated::Done(Ok(reply)) => Call::Replied(reply),
            Gated::Done(Err(e)) => Call::Failed {
                sent: !e.never_ran(),
                reason: e.to_string(),
            },
            Gated::Refused { last: None } => Call::OverBudget,
            Gated::Refused { last: Some(e) } => Call::Failed {
                sent: true,
                reason: format!("{e}; no budget left for another attempt"),
            },
        })
    }

    /// Tokens and their price.
    fn charge(&self, model: &str, input: u64, output: u64) -> Charge {
        let usd = self.prices.price(model).map_or(0.0, |p| {
            (input as f64 * p.input_per_million + output as f64 * p.output_per_million) / 1e6
        });
        Charge {
            tokens: input + output,
            micro_usd: micro_usd(usd),
        }
    }
}

/// The budget's side of a call's attempts.
struct Spend<'a> {
    judge: &'a Judge,
    day: &'a str,
    bound: Charge,
    /// The ledger's failure, if it failed: the call stops and the caller retries later.
    failure: std::sync::Mutex<Option<LedgerError>>,
}

#[async_trait::async_trait]
impl AttemptGate for Spend<'_> {
    async fn admit(&self) -> bool {
        let (judge, caps) = (self.judge, self.judge.config.budget.caps());
        match judge
            .ledger
            .reserve(&judge.tenant, self.day, self.bound, caps)
            .await
        {
            Ok(admitted) => admitted,
            Err(e) => {
                *self.failure.lock().unwrap_or_else(|e| e.into_inner()) = Some(e);
                false
            }
        }
    }

    async fn settle(&self, outcome: &Result<ChatReply, EndpointError>) {
        let judge = self.judge;
        let settled = match outcome {
            Ok(ChatReply {
                usage: Some(usage),
                model,
                ..
            }) => {
                let actual = judge.charge(model, usage.input_tokens, usage.output_tokens);
                if actual.tokens <= self.bound.tokens && actual.micro_usd <= self.bound.micro_usd {
                    judge
                        .ledger
                        .release(&judge.tenant, self.day, self.bound.minus(actual))
                        .await
                } else {
                    // More than the bound: counted all the same (never lost).
                    judge
                        .ledger
                        .add(&judge.tenant, self.day, actual.minus(self.bound))
                        .await
                }
            }
            // No usage reported: the bound stays spent.
            Ok(_) => Ok(()),
            Err(e) if e.never_ran() => {
                judge
                    .ledger
                    .release(&judge.tenant, self.day, self.bound)
                    .await
            }
            Err(_) => Ok(()),
        };
        if let Err(e) = settled {
            // The bound stays spent: the budget errs on the safe side.
            tracing::warn!(error = %e, "judge budget not settled");
        }
    }
}

enum Call {
    Replied(ChatReply),
    OverBudget,
    /// `sent`: the request went out (it may have reached the model).
    Failed {
        sent: bool,
        reason: String,
    },
}
