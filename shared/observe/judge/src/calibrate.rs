//! Choosing a rubric's prompt: each candidate (the built-in prompt and the rubric's
//! variants) judges the same graded items, held back from the examples, and the one whose
//! verdicts agree best with the experts' consensus is kept.
//!
//! - **Split**: by the stable hash of the trace id ([`stable_fraction`]), as the scorer's
//!   calibration splits, so a re-run holds back the same items. Few-shot examples come only
//!   from the other side: no candidate is shown an item it is graded on.
//! - **Agreement**: per criterion, Cohen's kappa of the candidate's verdicts with the
//!   consensus of all the item's graders ([`scorer_agreement`]'s `vs_consensus`, the figure
//!   the agreement reports show for a judge), averaged over the criteria.
//! - **Fair comparison**: a candidate that gives invalid verdicts on more items than the
//!   current prompt is not eligible (it is still reported). The eligible candidates are
//!   compared on the same items: those every one of them gave a valid verdict on (an
//!   endpoint failure or the budget running out leaves an item out for all), and over the
//!   criteria whose kappa is defined for every one of them.
//! - **Verdict**: the best eligible candidate replaces the current prompt only if its mean
//!   kappa is higher; a tie keeps the current one.

use std::collections::BTreeMap;

use agentwire_agreement::{Estimate, GradeTable, Options, scorer_agreement};
use agentwire_grading::calibrate::{MIN_ITEMS, stable_fraction};
use agentwire_grading::grade::Answer;
use agentwire_grading::rubric::Rubric;
use agentwire_scoring::TraceView;
use futures_util::StreamExt;
use serde::Serialize;

use crate::budget::LedgerError;
use crate::config::{PromptChoice, RubricConfig};
use crate::endpoint::TokenUsage;
use crate::judge::{Case, Judge, Judgement, Outcome};
use crate::prompt::Example;

/// One grader's answers to a graded trace.
#[derive(Debug, Clone, PartialEq)]
pub struct ExpertGrade {
    pub grader: String,
    /// By criterion key.
    pub answers: BTreeMap<String, Answer>,
    /// Given in an adjudication: such grades are the first examples shown.
    pub adjudicated: bool,
}

/// A trace the experts graded against the rubric.
#[derive(Debug, Clone)]
pub struct GradedTrace {
    /// Unredacted: the judge redacts before anything is sent.
    pub view: TraceView,
    pub grades: Vec<ExpertGrade>,
}

/// How one candidate did on the held-back items.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CandidateResult {
    pub name: String,
    /// The prompt version its records would carry.
    pub version: String,
    /// Held-back items it gave a valid verdict on.
    pub judged: usize,
    /// Held-back items it answered twice without a valid verdict.
    pub invalid: usize,
    /// Held-back items it could not judge (endpoint failure, budget, prompt too large).
    pub not_judged: usize,
    /// Whether it may replace the current prompt: no more invalid verdicts than it.
    pub eligible: bool,
    /// Per criterion, in the rubric's order, on the compared items.
    pub criteria: Vec<CriterionResult>,
    /// The mean kappa over the criteria compared (those defined for every eligible
    /// candidate); `None` when there are none, or for a candidate not eligible.
    pub mean_kappa: Option<f64>,
    pub usage: TokenUsage,
}

/// A candidate's agreement on one criterion.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CriterionResult {
    pub criterion: String,
    /// Cohen's kappa with the consensus of all graders, with its bootstrap interval.
    pub kappa: Estimate,
    /// The agreement reports' verdict: `Some(false)` when it agrees with the graders less
    /// than they agree with each other.
    pub trusted: Option<bool>,
}

/// What a comparison found.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Comparison {
    pub rubric: String,
    pub rubric_version: u32,
    pub holdout_share: f64,
    /// Graded items on the examples' side, and how many of them could be examples (graded
    /// with a justification).
    pub tuned_on: usize,
    pub examples: usize,
    pub held_back: usize,
    /// Held-back items every eligible candidate gave a valid verdict on: what the kappas
    /// are computed on.
    pub compared_on: usize,
    /// The criteria the mean kappas average.
    pub criteria_compared: Vec<String>,
    /// The prompt in use, and every candidate (the current one first).
    pub current: String,
    pub candidates: Vec<CandidateResult>,
    /// The candidate that agrees best (the current one on a tie).
    pub best: String,
    /// Whether `best` is not the current prompt: it agrees better on the held-back items.
    pub improves: bool,
}

impl Comparison {
    pub fn candidate(&self, name: &str) -> Option<&CandidateResult> {
        self.candidates.iter().find(|c| c.name == name)
    }
}

/// Why no comparison was made.
#[derive(Debug, thiserror::Error)]
pub enum CompareError {
    #[error("the held-back share must be in (0, 1), got {0}")]
    BadHoldout(f64),
    #[error("no candidate named `{0}`: the rubric's variants are {1}")]
    UnknownCandidate(String, String),
    #[error(
        "{compared} held-back items could be compared ({held_back} held back{why}); a comparison needs at least {MIN_ITEMS}"
    )]
    TooFew {
        held_back: usize,
        compared: usize,
        /// What became of the others, e.g. `; left out: 3 failed, 2 invalid`.
        why: String,
    },
    #[error("the tenant's [redaction] send = false forbids sending traces to the endpoint")]
    SendingForbidden,
    /// The grades cannot be read as agreement data (a grader twice on one item).
    #[error("agreement cannot be computed: {0}")]
    Agreement(String),
    /// The budget ledger failed: nothing can be judged safely.
    #[error(transparent)]
    Ledger(#[from] LedgerError),
}

/// The candidates `names` of `settings` (every one of them when empty), the current
/// prompt first.
pub fn candidates(
    settings: &RubricConfig,
    names: &[String],
) -> Result<Vec<PromptChoice>, CompareError> {
    let current = settings.current();
    let mut out = vec![current.clone()];
    if names.is_empty() {
        out.extend(
            settings
                .choices()
                .into_iter()
                .filter(|c| c.name != current.name),
        );
        return Ok(out);
    }
    for name in names {
        let choice = settings.choice(name).ok_or_else(|| {
            let known: Vec<String> = settings.choices().into_iter().map(|c| c.name).collect();
            CompareError::UnknownCandidate(name.clone(), known.join(", "))
        })?;
        if !out.iter().any(|c| c.name == choice.name) {
            out.push(choice);
        }
    }
    Ok(out)
}

/// Whether the trace is on the held-back side of a split holding back `share`.
pub fn is_held_back(trace_id: &str, share: f64) -> bool {
    stable_fraction(trace_id) < share
}

/// The examples the tuning side offers: one per item graded with a justification (an
/// adjudicated grade first), adjudicated items first, at most ten.
fn examples(rubric: &Rubric, judge: &Judge, tuning: &[&GradedTrace]) -> Vec<Example> {
    let mut out: Vec<Example> = Vec::new();
    let justified = |g: &&ExpertGrade| crate::prompt::justified(&g.answers);
    for item in tuning {
        let grade = item
            .grades
            .iter()
            .filter(justified)
            .find(|g| g.adjudicated)
            .or_else(|| item.grades.iter().find(justified));
        if let Some(grade) = grade {
            out.push(crate::prompt::example(
                &item.view,
                &grade.answers,
                rubric,
                judge.config(),
                grade.adjudicated,
            ));
        }
    }
    // Stable: items keep their order within each kind.
    out.sort_by_key(|e| !e.adjudicated);
    out.truncate(crate::prompt::MAX_EXAMPLES);
    out
}

/// What a comparison runs with.
pub struct Trial<'a> {
    pub judge: &'a Judge,
    pub rubric: &'a Rubric,
    /// The rubric's `[[rubric]]`, whose `prompt` is the current candidate.
    pub settings: &'a RubricConfig,
    /// The share of items held back from the examples and judged, in (0, 1).
    pub holdout_share: f64,
    /// The budget's day.
    pub now_ms: i64,
}

/// Judges the held-back share of `items` with each of `candidates` (from [`candidates`])
/// and compares their agreement with the experts. `progress` is called after each
/// verdict. Nothing is stored: the verdicts are an experiment's.
pub async fn compare(
    trial: &Trial<'_>,
    candidates: &[PromptChoice],
    items: &[GradedTrace],
    progress: &(dyn Fn() + Sync),
) -> Result<Comparison, CompareError> {
    let Trial {
        judge,
        rubric,
        settings,
        holdout_share,
        now_ms,
    } = *trial;
    if !(holdout_share > 0.0 && holdout_share < 1.0) {
        return Err(CompareError::BadHoldout(holdout_share));
    }
    if !judge.config().redaction.send {
        return Err(CompareError::SendingForbidden);
    }
    let (held, tuning): (Vec<&GradedTrace>, Vec<&GradedTrace>) = items
        .iter()
        .partition(|t| is_held_back(&t.view.trace_id, holdout_share));
    if held.len() < MIN_ITEMS {
        // Nothing is sent: the comparison could not be made however the calls went.
        return Err(CompareError::TooFew {
            held_back: held.len(),
            compared: 0,
            why: String::new(),
        });
    }
    let shown = examples(rubric, judge, &tuning);

    // Every candidate on every held-back item, judged as the job would but always (no
    // sampling) and afresh (no cache: an earlier verdict had other examples).
    let threshold = |_: &str| 0.5;
    let plans: Vec<RubricConfig> = candidates
        .iter()
        .map(|c| RubricConfig {
            sample: 1.0,
            always_if_flagged: Vec::new(),
            prompt: (c.name != crate::config::DEFAULT_PROMPT).then(|| c.name.clone()),
            ..settings.clone()
        })
        .collect();
    // Item by item, so a budget that runs out leaves whole items unjudged, not whole
    // candidates.
    let count = candidates.len();
    let jobs: Vec<(usize, usize)> = (0..held.len())
        .flat_map(|i| (0..count).map(move |c| (c, i)))
        .collect();
    let concurrency = judge.config().endpoint.concurrency.max(1) * 2;
    let results: Vec<((usize, usize), Result<Judgement, LedgerError>)> =
        futures_util::stream::iter(jobs)
            .map(|(c, i)| {
                let (plans, held, shown, threshold) = (&plans, &held, &shown, &threshold);
                async move {
                    let case = Case {
                        view: &held[i].view,
                        code: &[],
                        judged: &[],
                        threshold,
                    };
                    let few = &shown[..candidates[c].few_shot.min(shown.len())];
                    let judged = judge.judge(&case, rubric, &plans[c], few, now_ms).await;
                    progress();
                    ((c, i), judged)
                }
            })
            .buffer_unordered(concurrency)
            .collect()
            .await;
    let mut outcomes: Vec<Vec<Option<Judgement>>> = vec![vec![None; held.len()]; candidates.len()];
    for ((c, i), judged) in results {
        outcomes[c][i] = Some(judged?);
    }
    let kind = |c: usize, i: usize| {
        outcomes[c][i]
            .as_ref()
            .map_or("failed", |j| j.outcome.kind())
    };
    let invalid = |c: usize| (0..held.len()).filter(|&i| kind(c, i) == "invalid").count();
    let eligible: Vec<bool> = (0..count).map(|c| invalid(c) <= invalid(0)).collect();
    let compared: Vec<usize> = (0..held.len())
        .filter(|&i| (0..count).all(|c| !eligible[c] || kind(c, i) == "judged"))
        .collect();
    if compared.len() < MIN_ITEMS {
        let mut left: BTreeMap<&str, usize> = BTreeMap::new();
        for i in (0..held.len()).filter(|i| !compared.contains(i)) {
            // The first eligible candidate's outcome that kept the item out.
            if let Some(c) = (0..count).find(|&c| eligible[c] && kind(c, i) != "judged") {
                *left.entry(kind(c, i)).or_default() += 1;
            }
        }
        let parts: Vec<String> = left.iter().map(|(k, n)| format!("{n} {k}")).collect();
        return Err(CompareError::TooFew {
            held_back: held.len(),
            compared: compared.len(),
            why: if parts.is_empty() {
                String::new()
            } else {
                format!("; left out: {}", parts.join(", "))
            },
        });
    }

    let options = Options::default();
    let mut results = Vec::with_capacity(count);
    for (c, choice) in candidates.iter().enumerate() {
        let mut usage = TokenUsage::default();
        for judgement in outcomes[c].iter().flatten() {
            if let Some(u) = judgement.usage {
                usage.input_tokens += u.input_tokens;
                usage.output_tokens += u.output_tokens;
            }
        }
        let judgement = |i: usize| outcomes[c][i].as_ref();
        let mut criteria = Vec::with_capacity(rubric.criteria.len());
        for criterion in &rubric.criteria {
            let mut table = GradeTable::new(criterion.key.clone());
            for &i in &compared {
                for grade in &held[i].grades {
                    let Some(value) = grade
                        .answers
                        .get(&criterion.key)
                        .and_then(|a| criterion.scale.agreement_value(&a.value))
                    else {
                        continue;
                    };
                    table
                        .add(held[i].view.trace_id.clone(), grade.grader.clone(), value)
                        .map_err(|e| CompareError::Agreement(e.to_string()))?;
                }
            }
            let name = format!("{}.{}", rubric.name, criterion.key);
            let scored: Vec<(String, agentwire_agreement::Value)> = compared
                .iter()
                .filter_map(|&i| {
                    let judged = judgement(i).filter(|j| j.outcome == Outcome::Judged)?;
                    let record = judged.records.iter().find(|r| r.name == name)?;
                    let value = criterion.scale.agreement_value(record.label.as_deref()?)?;
                    Some((held[i].view.trace_id.clone(), value))
                })
                .collect();
            let versus = scorer_agreement(
                &table,
                &format!("judge:{}", choice.name),
                &scored,
                criterion.scale.level(),
                &options,
            )
            .map_err(|e| CompareError::Agreement(e.to_string()))?;
            criteria.push(CriterionResult {
                criterion: criterion.key.clone(),
                kappa: versus.vs_consensus,
                trusted: versus.trusted,
            });
        }
        let judged = (0..held.len()).filter(|&i| kind(c, i) == "judged").count();
        results.push(CandidateResult {
            name: choice.name.clone(),
            version: choice.version.clone(),
            judged,
            invalid: invalid(c),
            not_judged: held.len() - judged - invalid(c),
            eligible: eligible[c],
            criteria,
            mean_kappa: None,
            usage,
        });
    }

    // The criteria every eligible candidate has a kappa for, and the means over them.
    let criteria_compared: Vec<String> = rubric
        .criteria
        .iter()
        .enumerate()
        .filter(|(k, _)| {
            results
                .iter()
                .filter(|r| r.eligible)
                .all(|r| r.criteria[*k].kappa.value.is_some())
        })
        .map(|(_, c)| c.key.clone())
        .collect();
    for r in results.iter_mut().filter(|r| r.eligible) {
        let kappas: Vec<f64> = r
            .criteria
            .iter()
            .filter(|k| criteria_compared.contains(&k.criterion))
            .filter_map(|k| k.kappa.value)
            .collect();
        r.mean_kappa =
            (!kappas.is_empty()).then(|| kappas.iter().sum::<f64>() / kappas.len() as f64);
    }
    let mut best = 0;
    for (c, result) in results.iter().enumerate().skip(1) {
        if let (Some(kappa), Some(leader)) = (result.mean_kappa, results[best].mean_kappa)
            && kappa > leader
        {
            best = c;
        }
    }
    Ok(Comparison {
        rubric: rubric.name.clone(),
        rubric_version: rubric.version,
        holdout_share,
        tuned_on: tuning.len(),
        examples: shown.len(),
        held_back: held.len(),
        compared_on: compared.len(),
        criteria_compared,
        current: results[0].name.clone(),
        best: results[best].name.clone(),
        improves: best != 0,
        candidates: results,
    })
}
