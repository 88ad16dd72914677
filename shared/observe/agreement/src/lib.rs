//! How much graders agree with each other on one rubric criterion, and whether an automated
//! scorer agrees with them as well as they agree among themselves.
//!
//! Written here by hand: the statistics are short formulas, and no Rust crate offers Cohen's,
//! Fleiss' kappa and Krippendorff's alpha with missing grades and bootstrap intervals (the
//! crates that exist cover one statistic, without missing data). The values are checked to
//! 1e-6 against PyPI `krippendorff`, `statsmodels` and `scikit-learn` on the fixed tables in
//! `fixtures/tables.json` (made by `fixtures/make.py`), among them Krippendorff's own
//! worked example with missing grades.
//!
//! Input is a [`GradeTable`] of (item, grader, value) for one criterion; missing grades are
//! absent rows. [`agreement`] computes, on the [`Scale`] given:
//!
//! - **Cohen's kappa** for each pair of graders on the items both graded: (p_o − p_e) /
//!   (1 − p_e), chance p_e from the two graders' own marginals. Nominal: unweighted.
//!   Ordinal and interval: **quadratically weighted** on the numeric codes, w = (x_c − x_k)²,
//!   the usual choice for rubric scales (it is close to an intraclass correlation and to
//!   Krippendorff's interval alpha, and penalises a 1-vs-5 far more than a 4-vs-5); on
//!   consecutive integer codes it equals scikit-learn's
//!   `cohen_kappa_score(weights="quadratic", labels=range(lo, hi + 1))`.
//! - **Fleiss' kappa** over all graders, always nominal (it has no notion of order). Fleiss
//!   assumes every item has the same number of ratings; with missing grades this uses the
//!   generalised form (each item's agreement over its own m_i ratings, items with m_i < 2
//!   dropped, category shares over the kept ratings), which is Fleiss' kappa exactly when the
//!   table is complete (checked against statsmodels `fleiss_kappa` there).
//! - **Krippendorff's alpha**, 1 − D_o / D_e from the coincidence matrix, at the nominal,
//!   ordinal (Krippendorff's rank-based metric) and interval (squared difference) levels; the
//!   one matching the scale is `krippendorff_alpha`. Items with fewer than two grades are not
//!   pairable and are dropped, as the method says.
//! - **Bootstrap intervals**: percentile intervals (default 95 %, 1,000 resamples, seed
//!   [`Options::default`]) from resampling items with replacement; every statistic is
//!   recomputed on the same resamples. Seeded, so the same input gives the same interval.
//!   Resamples on which a statistic is undefined (e.g. all one category) are left out, and
//!   the interval says how many were used.
//! - **Disagreements**: the items whose graders gave more than one distinct value, with the
//!   spread (max − min code) on numeric scales, largest spread first.
//!
//! [`scorer_agreement`] treats an automated scorer as one more grader: its kappa with the
//! graders' consensus (nominal: majority, ties to the first category in [`Value`] order;
//! ordinal/interval: the lower median, so a value someone gave) and with each grader, beside
//! the graders' kappa with each other; and the fair comparison, leave-one-out: each grader's
//! kappa with the consensus of the *other* graders, next to the scorer's kappa with that same
//! consensus on the same items. Plus alpha of the graders with and without the scorer. A
//! scorer whose mean in that fair comparison is below the graders' is not `trusted`: it
//! agrees with them less than they agree with each other.
//!
//! Cost: each statistic is O(items × graders² + categories) (no category-by-category matrix,
//! so long numeric scales are cheap), and the bootstrap repeats all of them `resamples`
//! times; `resamples: 0` skips the intervals.
//!
//! A statistic that is undefined (one grader, no shared items, a single category used) is
//! `None` with an [`Undefined`] reason, never NaN.

mod stats;
mod table;

use serde::{Deserialize, Serialize};

use table::Dense;
pub use table::{GradeTable, Value};

/// How values relate: the level of measurement.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Scale {
    /// Unordered labels (pass/fail, categories): agreement is exact equality.
    Nominal,
    /// Ordered numeric codes (a 1–5 rubric): order matters, distances only through ranks
    /// (Krippendorff) or the codes (weighted kappa).
    Ordinal,
    /// Numeric codes whose differences mean something (scores on a line).
    Interval,
}

impl std::fmt::Display for Scale {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Scale::Nominal => "nominal",
            Scale::Ordinal => "ordinal",
            Scale::Interval => "interval",
        })
    }
}

/// Why a statistic has no value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[serde(rename_all = "snake_case")]
pub enum Undefined {
    /// Agreement needs at least two graders.
    #[error("fewer than two graders")]
    FewerThanTwoGraders,
    /// The two graders (or grader and consensus) share no item.
    #[error("no item graded by both")]
    NoOverlap,
    /// No item has two or more grades.
    #[error("no item has two or more grades")]
    NoPairableItems,
    /// Only one category was used, so chance agreement is total and the ratio is 0/0.
    #[error("only one value was used, so agreement beyond chance is undefined")]
    NoVariation,
}

/// Input refused: nothing is computed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum AgreementError {
    /// A second grade for the same item by the same grader.
    #[error("item {item:?} already has a grade from {grader:?}")]
    Duplicate { item: String, grader: String },
    /// A NaN or infinite number.
    #[error("item {item:?}, grader {grader:?}: the value is not a finite number")]
    NotFinite { item: String, grader: String },
    /// A label on a scale that needs numeric codes.
    #[error(
        "item {item:?}, grader {grader:?}: value {value:?} is not a number; the {scale} scale needs numeric codes"
    )]
    NotNumeric {
        item: String,
        grader: String,
        value: String,
        scale: Scale,
    },
    /// An option out of range.
    #[error("{0}")]
    BadOption(String),
}

/// Bootstrap settings.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Options {
    /// Resamples of the items (0: no intervals). Default 1,000.
    pub resamples: usize,
    /// Seed of the resampling, so results repeat. Default 14.
    pub seed: u64,
    /// Confidence level of the percentile intervals, in (0, 1). Default 0.95.
    pub level: f64,
}

/// Most resamples accepted: beyond this the intervals do not get meaningfully tighter.
pub const MAX_RESAMPLES: usize = 100_000;

impl Default for Options {
    fn default() -> Self {
        Options {
            resamples: 1000,
            seed: 14,
            level: 0.95,
        }
    }
}

impl Options {
    fn check(&self) -> Result<(), AgreementError> {
        if !(self.level > 0.0 && self.level < 1.0) {
            return Err(AgreementError::BadOption(format!(
                "confidence level {} is not between 0 and 1",
                self.level
            )));
        }
        if self.resamples > MAX_RESAMPLES {
            return Err(AgreementError::BadOption(format!(
                "{} resamples is more than the {MAX_RESAMPLES} allowed",
                self.resamples
            )));
        }
        Ok(())
    }
}

/// A percentile bootstrap interval.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Interval {
    pub low: f64,
    pub high: f64,
    /// Confidence level, e.g. 0.95.
    pub level: f64,
    /// Resamples on which the statistic was defined (and so used).
    pub resamples: usize,
}

/// A statistic's value, or why there is none, with its bootstrap interval.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Estimate {
    /// `None` when undefined; `reason` then says why.
    pub value: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<Undefined>,
    /// `None` without resamples, or when no resample had a defined value.
    pub ci: Option<Interval>,
}

impl Estimate {
    fn undefined(reason: Undefined) -> Self {
        Estimate {
            value: None,
            reason: Some(reason),
            ci: None,
        }
    }
}

/// Cohen's kappa of two graders.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PairKappa {
    pub a: String,
    pub b: String,
    /// Items both graded.
    pub items: usize,
    pub kappa: Estimate,
}

/// Krippendorff's alpha at each level the values allow.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlphaLevels {
    pub nominal: Estimate,
    /// Only on numeric scales.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ordinal: Option<Estimate>,
    /// Only on numeric scales.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<Estimate>,
}

/// One grader's value on a disagreed item.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GraderValue {
    pub grader: String,
    pub value: Value,
}

/// An item the graders gave more than one distinct value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Disagreement {
    pub item: String,
    /// Each grader's value, in grader order.
    pub values: Vec<GraderValue>,
    /// Highest minus lowest code (numeric scales only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spread: Option<f64>,
}

/// Agreement on one criterion.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CriterionAgreement {
    pub criterion: String,
    pub scale: Scale,
    /// Distinct items graded at least once.
    pub items: usize,
    /// Items with two or more grades (the ones agreement is measured on).
    pub pairable_items: usize,
    /// Number of graders.
    pub graders: usize,
    /// The graders, in first-seen order.
    pub grader_names: Vec<String>,
    /// Number of grades.
    pub grades: usize,
    /// Krippendorff's alpha at the scale's level.
    pub krippendorff_alpha: Estimate,
    pub krippendorff_alpha_levels: AlphaLevels,
    /// Fleiss' kappa (nominal; generalised to differing numbers of grades per item).
    pub fleiss_kappa: Estimate,
    /// Cohen's kappa of each pair of graders (weighted on numeric scales).
    pub pairwise: Vec<PairKappa>,
    /// Mean of the defined pairwise kappas.
    pub mean_pairwise_kappa: Estimate,
    /// Number of items with more than one distinct value.
    pub disagreement_count: usize,
    /// Those items: on numeric scales largest spread first, else in item order.
    pub disagreements: Vec<Disagreement>,
    pub bootstrap: Options,
    /// Filled by callers that compare scorers ([`scorer_agreement`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub scorers: Vec<ScorerAgreement>,
}

/// A grader against the consensus of the other graders, and the scorer against the same.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LeaveOneOut {
    pub grader: String,
    /// Items this grader graded, at least one other grader graded, and the scorer scored.
    pub items: usize,
    /// This grader's kappa with the others' consensus.
    pub grader_kappa: Estimate,
    /// The scorer's kappa with the same consensus on the same items.
    pub scorer_kappa: Estimate,
}

/// An automated scorer treated as one more grader.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScorerAgreement {
    pub scorer: String,
    /// Graded items the scorer has a value for.
    pub items: usize,
    /// Kappa of the scorer with the consensus of all graders.
    pub vs_consensus: Estimate,
    /// Mean of the scorer's kappa with each grader...
    pub mean_kappa_with_graders: Estimate,
    /// ...beside the graders' mean kappa with each other.
    pub graders_mean_pairwise_kappa: Estimate,
    /// Per grader, leave-one-out.
    pub leave_one_out: Vec<LeaveOneOut>,
    /// Mean over graders of `grader_kappa`...
    pub graders_vs_others_mean: Estimate,
    /// ...beside the mean of `scorer_kappa`: the fair comparison.
    pub scorer_vs_others_mean: Estimate,
    /// Krippendorff's alpha (scale's level) of the graders alone...
    pub alpha_graders: Estimate,
    /// ...and with the scorer as one more grader.
    pub alpha_with_scorer: Estimate,
    /// Whether the scorer may stand in for a grader: `Some(false)` when it agrees with the
    /// graders less than they agree with each other, by the fair leave-one-out comparison
    /// (`scorer_vs_others_mean` < `graders_vs_others_mean`); `None` when either is undefined.
    pub trusted: Option<bool>,
}

type Stat<'a> = Box<dyn Fn(&[usize]) -> Result<f64, Undefined> + 'a>;

/// Statistics to estimate on the full sample and on the same bootstrap resamples.
struct Plan<'a> {
    stats: Vec<Stat<'a>>,
}

impl<'a> Plan<'a> {
    fn add(&mut self, stat: impl Fn(&[usize]) -> Result<f64, Undefined> + 'a) -> usize {
        self.stats.push(Box::new(stat));
        self.stats.len() - 1
    }

    fn run(&self, items: usize, options: &Options) -> Vec<Estimate> {
        let all: Vec<usize> = (0..items).collect();
        let points: Vec<Result<f64, Undefined>> = self.stats.iter().map(|s| s(&all)).collect();
        let mut draws: Vec<Vec<f64>> = vec![Vec::new(); self.stats.len()];
        if items > 0 && options.resamples > 0 {
            let mut rng = fastrand::Rng::with_seed(options.seed);
            let mut sample = vec![0usize; items];
            for _ in 0..options.resamples {
                sample.iter_mut().for_each(|s| *s = rng.usize(0..items));
                for (k, stat) in self.stats.iter().enumerate() {
                    if points[k].is_ok()
                        && let Ok(x) = stat(&sample)
                    {
                        draws[k].push(x);
                    }
                }
            }
        }
        points
            .into_iter()
            .zip(draws)
            .map(|(point, mut draws)| match point {
                Err(reason) => Estimate::undefined(reason),
                Ok(value) => Estimate {
                    value: Some(value),
                    reason: None,
                    ci: percentile_interval(&mut draws, options.level),
                },
            })
            .collect()
    }
}

/// Linear-interpolated percentiles (numpy's default) of the defined draws.
fn percentile_interval(draws: &mut [f64], level: f64) -> Option<Interval> {
    if draws.is_empty() {
        return None;
    }
    draws.sort_by(f64::total_cmp);
    let at = |q: f64| {
        let h = q * (draws.len() - 1) as f64;
        let lo = h.floor() as usize;
        let hi = (lo + 1).min(draws.len() - 1);
        draws[lo] + (h - lo as f64) * (draws[hi] - draws[lo])
    };
    let tail = (1.0 - level) / 2.0;
    Some(Interval {
        low: at(tail),
        high: at(1.0 - tail),
        level,
        resamples: draws.len(),
    })
}

fn mean_of(values: impl Iterator<Item = Result<f64, Undefined>>) -> Result<f64, Undefined> {
    let (mut sum, mut n, mut first_err) = (0.0, 0usize, None);
    for v in values {
        match v {
            Ok(x) => {
                sum += x;
                n += 1;
            }
            Err(e) => {
                first_err.get_or_insert(e);
            }
        }
    }
    if n == 0 {
        Err(first_err.unwrap_or(Undefined::FewerThanTwoGraders))
    } else {
        Ok(sum / n as f64)
    }
}

/// Krippendorff's alpha of `columns` at `level`, undefined with fewer than two graders.
fn add_alpha<'a>(plan: &mut Plan<'a>, d: &'a Dense, columns: &'a [usize], level: Scale) -> usize {
    plan.add(move |s: &[usize]| {
        if columns.len() < 2 {
            return Err(Undefined::FewerThanTwoGraders);
        }
        stats::alpha(d, columns, s, level)
    })
}

fn grader_pairs(graders: usize) -> Vec<(usize, usize)> {
    (0..graders)
        .flat_map(|a| (a + 1..graders).map(move |b| (a, b)))
        .collect()
}

/// [`agreement_with`] with the default [`Options`].
pub fn agreement(table: &GradeTable, scale: Scale) -> Result<CriterionAgreement, AgreementError> {
    agreement_with(table, scale, &Options::default())
}

/// Agreement of the table's graders on its criterion, on `scale`. Refuses labels on numeric
/// scales and bad options; everything else (one grader, no overlap) gives undefined
/// statistics with reasons rather than an error.
pub fn agreement_with(
    table: &GradeTable,
    scale: Scale,
    options: &Options,
) -> Result<CriterionAgreement, AgreementError> {
    options.check()?;
    let d = &Dense::build(table, None, scale)?;
    let graders = table.graders().len();
    let columns: Vec<usize> = (0..graders).collect();
    let codes = d.codes.as_deref();
    let k = d.categories.len();
    let pairs = grader_pairs(graders);

    let mut plan = Plan { stats: Vec::new() };
    let nominal = add_alpha(&mut plan, d, &columns, Scale::Nominal);
    let numeric = (scale != Scale::Nominal).then(|| {
        (
            add_alpha(&mut plan, d, &columns, Scale::Ordinal),
            add_alpha(&mut plan, d, &columns, Scale::Interval),
        )
    });
    let fleiss = plan.add(|s: &[usize]| {
        if graders < 2 {
            return Err(Undefined::FewerThanTwoGraders);
        }
        stats::fleiss(d, &columns, s)
    });
    let pair_stats: Vec<usize> = pairs
        .iter()
        .map(|&(a, b)| {
            plan.add(move |s: &[usize]| stats::kappa(&stats::pairs_of(d, a, b, s), k, codes))
        })
        .collect();
    let mean_pairwise = plan.add(|s: &[usize]| {
        mean_of(
            pairs
                .iter()
                .map(|&(a, b)| stats::kappa(&stats::pairs_of(d, a, b, s), k, codes)),
        )
    });
    let mut estimates = plan.run(d.items.len(), options);
    let mut take =
        |i: usize| std::mem::replace(&mut estimates[i], Estimate::undefined(Undefined::NoOverlap));

    let levels = AlphaLevels {
        nominal: take(nominal),
        ordinal: numeric.map(|(o, _)| take(o)),
        interval: numeric.map(|(_, i)| take(i)),
    };
    let krippendorff_alpha = match scale {
        Scale::Nominal => levels.nominal.clone(),
        Scale::Ordinal => levels.ordinal.clone().unwrap_or(levels.nominal.clone()),
        Scale::Interval => levels.interval.clone().unwrap_or(levels.nominal.clone()),
    };
    let all: Vec<usize> = (0..d.items.len()).collect();
    let pairwise = pairs
        .iter()
        .zip(pair_stats)
        .map(|(&(a, b), stat)| PairKappa {
            a: table.graders()[a].clone(),
            b: table.graders()[b].clone(),
            items: stats::pairs_of(d, a, b, &all).len(),
            kappa: take(stat),
        })
        .collect();
    let fleiss_kappa = take(fleiss);
    let mean_pairwise_kappa = if graders < 2 {
        Estimate::undefined(Undefined::FewerThanTwoGraders)
    } else {
        take(mean_pairwise)
    };
    let disagreements = disagreements(d, table);
    Ok(CriterionAgreement {
        criterion: table.criterion().to_string(),
        scale,
        items: d.items.len(),
        pairable_items: (0..d.items.len())
            .filter(|&i| d.row(i).iter().flatten().count() >= 2)
            .count(),
        graders,
        grader_names: table.graders().to_vec(),
        grades: table.len(),
        krippendorff_alpha,
        krippendorff_alpha_levels: levels,
        fleiss_kappa,
        pairwise,
        mean_pairwise_kappa,
        disagreement_count: disagreements.len(),
        disagreements,
        bootstrap: *options,
        scorers: Vec::new(),
    })
}

fn disagreements(d: &Dense, table: &GradeTable) -> Vec<Disagreement> {
    let mut out: Vec<Disagreement> = (0..d.items.len())
        .filter_map(|i| {
            let row = d.row(i);
            let mut cats: Vec<u32> = row.iter().flatten().copied().collect();
            cats.sort_unstable();
            cats.dedup();
            if cats.len() < 2 {
                return None;
            }
            let spread = d
                .codes
                .as_ref()
                .map(|x| x[*cats.last().unwrap_or(&0) as usize] - x[cats[0] as usize]);
            let values = row
                .iter()
                .enumerate()
                .filter_map(|(g, c)| {
                    Some(GraderValue {
                        grader: table.graders()[g].clone(),
                        value: d.categories[(*c)? as usize].clone(),
                    })
                })
                .collect();
            Some(Disagreement {
                item: d.items[i].clone(),
                values,
                spread,
            })
        })
        .collect();
    if d.codes.is_some() {
        // Stable: equal spreads stay in item order.
        out.sort_by(|a, b| b.spread.unwrap_or(0.0).total_cmp(&a.spread.unwrap_or(0.0)));
    }
    out
}

/// The scorer `name`, with values `scored` as (item, value), treated as one more grader of
/// `graders`' criterion on `scale`. Scored items nobody graded are ignored. Kappas are
/// weighted as in [`agreement`]; consensus rules are in the crate docs.
pub fn scorer_agreement(
    graders: &GradeTable,
    name: &str,
    scored: &[(String, Value)],
    scale: Scale,
    options: &Options,
) -> Result<ScorerAgreement, AgreementError> {
    options.check()?;
    let d = &Dense::build(graders, Some(scored), scale)?;
    let g = graders.graders().len();
    let scorer = g;
    let human: Vec<usize> = (0..g).collect();
    let with_scorer: Vec<usize> = (0..=g).collect();
    let (k, codes) = (d.categories.len(), d.codes.as_deref());
    let n = d.items.len();
    let consensus_all: Vec<Option<u32>> = (0..n)
        .map(|i| stats::consensus(d, i, &human, scale))
        .collect();
    // Leave-one-out consensus of the others, per grader.
    let consensus_others: Vec<Vec<Option<u32>>> = (0..g)
        .map(|left| {
            let others: Vec<usize> = human.iter().copied().filter(|&c| c != left).collect();
            (0..n)
                .map(|i| stats::consensus(d, i, &others, scale))
                .collect()
        })
        .collect();
    let against = |col: usize, cons: &[Option<u32>], only_scored: bool, s: &[usize]| {
        let pairs: Vec<(u32, u32)> = s
            .iter()
            .filter(|&&i| !only_scored || d.cell(i, scorer).is_some())
            .filter_map(|&i| Some((d.cell(i, col)?, cons[i]?)))
            .collect();
        stats::kappa(&pairs, k, codes)
    };
    let pairs = grader_pairs(g);
    let mut plan = Plan { stats: Vec::new() };
    let vs_consensus = plan.add(|s: &[usize]| against(scorer, &consensus_all, false, s));
    let with_graders = plan.add(|s: &[usize]| {
        mean_of(
            human
                .iter()
                .map(|&c| stats::kappa(&stats::pairs_of(d, scorer, c, s), k, codes)),
        )
    });
    let graders_pairwise = plan.add(|s: &[usize]| {
        if g < 2 {
            return Err(Undefined::FewerThanTwoGraders);
        }
        mean_of(
            pairs
                .iter()
                .map(|&(a, b)| stats::kappa(&stats::pairs_of(d, a, b, s), k, codes)),
        )
    });
    let loo: Vec<(usize, usize)> = (0..g)
        .map(|c| {
            let cons = &consensus_others[c];
            let against = &against;
            (
                plan.add(move |s: &[usize]| against(c, cons, true, s)),
                plan.add(move |s: &[usize]| {
                    // The scorer on the items where grader c has a grade, so both face the
                    // same consensus on the same items.
                    let items: Vec<usize> = s
                        .iter()
                        .copied()
                        .filter(|&i| d.cell(i, c).is_some())
                        .collect();
                    against(scorer, cons, true, &items)
                }),
            )
        })
        .collect();
    let graders_mean =
        plan.add(|s: &[usize]| mean_of((0..g).map(|c| against(c, &consensus_others[c], true, s))));
    let scorer_mean = plan.add(|s: &[usize]| {
        mean_of((0..g).map(|c| {
            let items: Vec<usize> = s
                .iter()
                .copied()
                .filter(|&i| d.cell(i, c).is_some())
                .collect();
            against(scorer, &consensus_others[c], true, &items)
        }))
    });
    let alpha_graders = plan.add(|s: &[usize]| {
        if g < 2 {
            return Err(Undefined::FewerThanTwoGraders);
        }
        stats::alpha(d, &human, s, scale)
    });
    let alpha_with = plan.add(|s: &[usize]| stats::alpha(d, &with_scorer, s, scale));
    let mut estimates = plan.run(n, options);
    let mut take =
        |i: usize| std::mem::replace(&mut estimates[i], Estimate::undefined(Undefined::NoOverlap));
    let leave_one_out = loo
        .iter()
        .enumerate()
        .map(|(c, &(gk, sk))| LeaveOneOut {
            grader: graders.graders()[c].clone(),
            items: (0..n)
                .filter(|&i| {
                    d.cell(i, c).is_some()
                        && d.cell(i, scorer).is_some()
                        && consensus_others[c][i].is_some()
                })
                .count(),
            grader_kappa: take(gk),
            scorer_kappa: take(sk),
        })
        .collect();
    let graders_vs_others_mean = take(graders_mean);
    let scorer_vs_others_mean = take(scorer_mean);
    let trusted = match (scorer_vs_others_mean.value, graders_vs_others_mean.value) {
        (Some(scorer), Some(graders)) => Some(scorer >= graders),
        _ => None,
    };
    Ok(ScorerAgreement {
        scorer: name.to_string(),
        items: (0..n).filter(|&i| d.cell(i, scorer).is_some()).count(),
        vs_consensus: take(vs_consensus),
        mean_kappa_with_graders: take(with_graders),
        graders_mean_pairwise_kappa: take(graders_pairwise),
        leave_one_out,
        graders_vs_others_mean,
        scorer_vs_others_mean,
        alpha_graders: take(alpha_graders),
        alpha_with_scorer: take(alpha_with),
        trusted,
    })
}

#[cfg(test)]
mod tests;
