//! `agentwire agreement`: how much graders agree, per criterion, from a JSON-lines file of
//! grades; the statistics are `agentwire-agreement`'s.

use std::collections::HashMap;
use std::io::Read;
use std::path::PathBuf;

use agentwire_agreement::{
    CriterionAgreement, Estimate, GradeTable, Options, Scale, ScorerAgreement, Value,
};
use anyhow::Context;
use clap::{Args, ValueEnum};

/// How many disagreeing items the readable output names per criterion (`--json` has all).
const SHOWN_DISAGREEMENTS: usize = 5;

#[derive(Debug, Args)]
pub struct AgreementArgs {
    /// JSON lines, one grade each: {"item", "grader", "criterion", "value"}, the value a
    /// string or a number (`-`: stdin). Missing grades are simply absent lines.
    #[arg(long)]
    grades: PathBuf,

    /// How values relate: nominal (labels), ordinal (ordered numeric codes, e.g. 1-5), or
    /// interval (numbers whose differences mean something).
    #[arg(long, value_enum, default_value = "nominal")]
    scale: ScaleArg,

    /// One JSON object per line per criterion instead of a readable table.
    #[arg(long)]
    json: bool,

    /// A "grader" in the file that is an automated scorer (repeatable): it is left out of
    /// the graders' statistics and compared with their consensus instead.
    #[arg(long = "scorer", value_name = "NAME")]
    scorers: Vec<String>,

    /// Bootstrap resamples of the items for the confidence intervals (0: none).
    #[arg(long, default_value_t = Options::default().resamples)]
    resamples: usize,

    /// Seed of the bootstrap, so the intervals repeat.
    #[arg(long, default_value_t = Options::default().seed)]
    seed: u64,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum ScaleArg {
    Nominal,
    Ordinal,
    Interval,
}

impl From<ScaleArg> for Scale {
    fn from(s: ScaleArg) -> Scale {
        match s {
            ScaleArg::Nominal => Scale::Nominal,
            ScaleArg::Ordinal => Scale::Ordinal,
            ScaleArg::Interval => Scale::Interval,
        }
    }
}

/// One criterion's grades, and its scorers' values, as read.
struct Criterion {
    name: String,
    graders: GradeTable,
    scorers: Vec<(String, Vec<(String, Value)>)>,
}

pub fn run(args: AgreementArgs) -> anyhow::Result<()> {
    let scale = Scale::from(args.scale);
    let options = Options {
        resamples: args.resamples,
        seed: args.seed,
        ..Options::default()
    };
    let file = args.grades.display().to_string();
    let text = if file == "-" {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .context("cannot read the grades from stdin")?;
        text
    } else {
        std::fs::read_to_string(&args.grades).with_context(|| format!("cannot read {file}"))?
    };
    let criteria =
        parse(&text, scale, &args.scorers).map_err(|e| anyhow::anyhow!("{file}: {e}"))?;
    if criteria.is_empty() {
        anyhow::bail!("{file}: no grades");
    }
    for scorer in &args.scorers {
        if !criteria
            .iter()
            .any(|c| c.scorers.iter().any(|(name, _)| name == scorer))
        {
            anyhow::bail!("--scorer {scorer}: {file} has no grades from {scorer:?}");
        }
    }
    // Everything is computed before anything is printed: an error prints no partial result.
    let mut results = Vec::with_capacity(criteria.len());
    for c in &criteria {
        let mut result = agentwire_agreement::agreement_with(&c.graders, scale, &options)
            .with_context(|| format!("criterion {:?}", c.name))?;
        for (name, values) in &c.scorers {
            result.scorers.push(
                agentwire_agreement::scorer_agreement(&c.graders, name, values, scale, &options)
                    .with_context(|| format!("criterion {:?}, scorer {name:?}", c.name))?,
            );
        }
        results.push(result);
    }
    let mut lines = Vec::new();
    for result in &results {
        if args.json {
            lines.push(serde_json::to_string(result)?);
        } else {
            readable(result, &mut lines);
        }
    }
    for line in lines {
        crate::say(format_args!("{line}"));
    }
    Ok(())
}

/// Reads the grades, grouped by criterion in first-seen order; the first bad line is the
/// error, named by its number.
fn parse(text: &str, scale: Scale, scorers: &[String]) -> Result<Vec<Criterion>, String> {
    let mut criteria: Vec<Criterion> = Vec::new();
    let mut index: HashMap<String, usize> = HashMap::new();
    let mut seen: HashMap<(String, String, String), usize> = HashMap::new();
    for (n, line) in text.lines().enumerate() {
        let n = n + 1;
        if line.trim().is_empty() {
            continue;
        }
        let fail = |problem: String| format!("line {n}: {problem}");
        let row: serde_json::Value =
            serde_json::from_str(line).map_err(|e| fail(format!("not JSON ({e})")))?;
        let Some(row) = row.as_object() else {
            return Err(fail("not a JSON object".into()));
        };
        let id = |field: &str| -> Result<String, String> {
            match row.get(field) {
                Some(serde_json::Value::String(s)) if !s.is_empty() => Ok(s.clone()),
                Some(serde_json::Value::Number(x)) if x.is_i64() || x.is_u64() => Ok(x.to_string()),
                None => Err(fail(format!("missing \"{field}\""))),
                Some(_) => Err(fail(format!(
                    "\"{field}\" must be a non-empty string (or an integer)"
                ))),
            }
        };
        let (item, grader, criterion) = (id("item")?, id("grader")?, id("criterion")?);
        let value = match row.get("value") {
            Some(serde_json::Value::Number(x)) => match x.as_f64() {
                Some(x) => Value::Number(x),
                None => return Err(fail(format!("value {x} is not a usable number"))),
            },
            Some(serde_json::Value::String(s)) if scale == Scale::Nominal => Value::Text(s.clone()),
            Some(serde_json::Value::String(s)) => {
                return Err(fail(format!(
                    "value {s:?} is not a number; --scale {scale} needs numeric codes"
                )));
            }
            None => return Err(fail("missing \"value\"".into())),
            Some(other) => {
                return Err(fail(format!(
                    "\"value\" must be a string or a number, not {other}"
                )));
            }
        };
        let key = (criterion.clone(), item.clone(), grader.clone());
        if let Some(first) = seen.get(&key) {
            return Err(fail(format!(
                "item {item:?} already has a grade from {grader:?} for criterion {criterion:?} (line {first})"
            )));
        }
        seen.insert(key, n);
        let at = *index.entry(criterion.clone()).or_insert_with(|| {
            criteria.push(Criterion {
                name: criterion.clone(),
                graders: GradeTable::new(criterion.clone()),
                scorers: Vec::new(),
            });
            criteria.len() - 1
        });
        let c = &mut criteria[at];
        if scorers.contains(&grader) {
            match c.scorers.iter_mut().find(|(name, _)| *name == grader) {
                Some((_, values)) => values.push((item, value)),
                None => c.scorers.push((grader, vec![(item, value)])),
            }
        } else {
            c.graders
                .add(item, grader, value)
                .map_err(|e| fail(e.to_string()))?;
        }
    }
    Ok(criteria)
}

fn estimate(e: &Estimate) -> String {
    match (e.value, e.reason) {
        (Some(v), _) => match e.ci {
            Some(ci) => format!(
                "{v:.3}  {:.0}% CI [{:.3}, {:.3}]",
                ci.level * 100.0,
                ci.low,
                ci.high
            ),
            None => format!("{v:.3}"),
        },
        (None, Some(reason)) => format!("undefined ({reason})"),
        (None, None) => "undefined".into(),
    }
}

fn readable(r: &CriterionAgreement, out: &mut Vec<String>) {
    let weighting = if r.scale == Scale::Nominal {
        "unweighted"
    } else {
        "quadratic weights"
    };
    out.push(format!("criterion {:?} ({} scale)", r.criterion, r.scale));
    out.push(format!(
        "  items {} ({} graded twice or more), graders {} ({}), grades {}",
        r.items,
        r.pairable_items,
        r.graders,
        r.grader_names.join(", "),
        r.grades
    ));
    out.push(format!(
        "  Krippendorff's alpha ({})  {}",
        r.scale,
        estimate(&r.krippendorff_alpha)
    ));
    let levels = &r.krippendorff_alpha_levels;
    if r.scale != Scale::Nominal {
        out.push(format!("    at nominal {}", estimate(&levels.nominal)));
        for (name, level) in [("ordinal", &levels.ordinal), ("interval", &levels.interval)] {
            if let Some(level) = level
                && name != r.scale.to_string()
            {
                out.push(format!("    at {name} {}", estimate(level)));
            }
        }
    }
    out.push(format!(
        "  Fleiss' kappa (nominal)  {}",
        estimate(&r.fleiss_kappa)
    ));
    out.push(format!("  Cohen's kappa by pair ({weighting}):"));
    let width = r.grader_names.iter().map(String::len).max().unwrap_or(0);
    for p in &r.pairwise {
        out.push(format!(
            "    {:width$}  {:width$}  items {:>4}  {}",
            p.a,
            p.b,
            p.items,
            estimate(&p.kappa)
        ));
    }
    out.push(format!(
        "  mean pairwise kappa  {}",
        estimate(&r.mean_pairwise_kappa)
    ));
    let shown: Vec<String> = r
        .disagreements
        .iter()
        .take(SHOWN_DISAGREEMENTS)
        .map(|d| {
            let values: Vec<String> = d
                .values
                .iter()
                .map(|v| format!("{}={}", v.grader, v.value))
                .collect();
            match d.spread {
                Some(spread) => format!("{} (spread {spread}: {})", d.item, values.join(" ")),
                None => format!("{} ({})", d.item, values.join(" ")),
            }
        })
        .collect();
    out.push(format!(
        "  disagreements: {} of {} items{}",
        r.disagreement_count,
        r.items,
        if shown.is_empty() {
            String::new()
        } else {
            ":".into()
        }
    ));
    for line in shown {
        out.push(format!("    {line}"));
    }
    if r.disagreement_count > SHOWN_DISAGREEMENTS {
        out.push(format!(
            "    ... and {} more (--json lists all)",
            r.disagreement_count - SHOWN_DISAGREEMENTS
        ));
    }
    for s in &r.scorers {
        scorer(s, out);
    }
}

fn scorer(s: &ScorerAgreement, out: &mut Vec<String>) {
    out.push(format!(
        "  scorer {:?} as one more grader ({} items):",
        s.scorer, s.items
    ));
    for (what, e) in [
        ("kappa with the graders' consensus", &s.vs_consensus),
        ("mean kappa with each grader", &s.mean_kappa_with_graders),
        (
            "graders' mean kappa with each other",
            &s.graders_mean_pairwise_kappa,
        ),
        (
            "leave-one-out: scorer vs the others' consensus",
            &s.scorer_vs_others_mean,
        ),
        (
            "leave-one-out: each grader vs the others'",
            &s.graders_vs_others_mean,
        ),
        ("Krippendorff's alpha with the scorer", &s.alpha_with_scorer),
        ("Krippendorff's alpha of the graders", &s.alpha_graders),
    ] {
        out.push(format!("    {what:48}{}", estimate(e)));
    }
    match s.trusted {
        Some(true) => out.push(
            "    trusted: agrees with the graders at least as well as they agree with each other"
                .into(),
        ),
        Some(false) => out.push(
            "    NOT TRUSTED: agrees with the graders less than they agree with each other".into(),
        ),
        None => {
            out.push("    trust undefined: the leave-one-out comparison is not defined here".into())
        }
    }
}
