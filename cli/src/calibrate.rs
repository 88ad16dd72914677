//! `agentwire calibrate`: tunes a scorer's threshold to agree best with the graders'
//! consensus, checks it on items held back from the tuning, and writes the new
//! configuration as a new version only when it helps there. With `--judge` it chooses the
//! LLM judge's prompt for a rubric instead (`calibrate_judge`).
//!
//! Two sources of grades and scores: a queue of `agentwire dev`'s data directory (its
//! grades, the score index's records of its traces, and the tenant's configuration in the
//! archive, where the new version is written), or files (grades as JSON lines of
//! `{item, grader, criterion, value}`, score records as `agentwire score` writes them).

use std::collections::{BTreeMap, HashMap};
use std::io::BufRead;
use std::path::{Path, PathBuf};

use agentwire_grading::calibrate::{Calibration, DEFAULT_HOLDOUT, Point, calibrate};
use agentwire_grading::{GradingStore, Scale};
use agentwire_scoring::{ScoreIndex, ScoreRecord, ScoringConfig, Source};
use anyhow::{Context, bail};
use clap::Args;

#[derive(Debug, Args)]
pub struct CalibrateArgs {
    /// The scorer whose threshold is tuned (its score records' name), e.g. `groundedness`.
    #[arg(long, required_unless_present = "judge", conflicts_with = "judge")]
    pub(crate) scorer: Option<String>,

    /// Choose the LLM judge's prompt for a rubric instead: the built-in prompt and the
    /// rubric's `[[rubric.variant]]`s of `judge.toml` judge the held-back graded items, and
    /// the one that agrees best with the experts is kept.
    #[arg(long)]
    pub(crate) judge: bool,

    /// With --judge: the `[[rubric]]` of `judge.toml` (default: its only one).
    #[arg(long, requires = "judge")]
    pub(crate) rubric: Option<String>,

    /// With --judge: the prompts compared with the current one (comma-separated variant
    /// names, `default` for the built-in prompt); default: all of the rubric's.
    #[arg(long, value_delimiter = ',', requires = "judge")]
    pub(crate) candidates: Vec<String>,

    /// With --judge and --grades: the `judge.toml` (the endpoint, budget and variants).
    #[arg(long, requires = "judge")]
    pub(crate) judge_config: Option<PathBuf>,

    /// With --judge and --grades: the rubric, as JSON (the body the grading API stores).
    #[arg(long, requires = "judge")]
    pub(crate) rubric_file: Option<PathBuf>,

    /// With --judge and --grades: the graded traces, in the archive layout.
    #[arg(long, requires = "judge")]
    pub(crate) traces: Option<PathBuf>,

    /// The queue whose grades are the consensus (in --data-dir); with --judge, default:
    /// every queue of the rubric.
    #[arg(long, conflicts_with_all = ["grades", "scores"])]
    pub(crate) queue: Option<String>,

    /// The criterion graded (pass/fail); default: the queue rubric's criterion linked to
    /// the scorer, or, with --grades, the scorer's name.
    #[arg(long)]
    criterion: Option<String>,

    /// `agentwire dev`'s data directory (with --queue).
    #[arg(long, default_value = ".agentwire")]
    pub(crate) data_dir: PathBuf,

    /// The tenant (with --queue).
    #[arg(long, default_value = "local", value_parser = crate::token::tenant)]
    pub(crate) tenant: String,

    /// Grades as JSON lines `{item, grader, criterion, value}` (with --judge also
    /// `justification`), value `pass` or `fail` for a scorer.
    #[arg(long)]
    pub(crate) grades: Option<PathBuf>,

    /// Score records as JSON lines (`agentwire score --out`), items being trace ids.
    #[arg(long, requires = "grades", conflicts_with = "judge")]
    scores: Option<PathBuf>,

    /// The configuration to start from (with --grades; defaults without it); with --judge,
    /// the scorers' configuration the traces are read with.
    #[arg(long)]
    pub(crate) config: Option<PathBuf>,

    /// Where to write the tuned configuration when it helps (with --grades).
    #[arg(long)]
    pub(crate) out: Option<PathBuf>,

    /// The share of items held back from the tuning, in (0, 1).
    #[arg(long, default_value_t = DEFAULT_HOLDOUT)]
    pub(crate) holdout: f64,

    /// Print the result as one JSON object.
    #[arg(long)]
    pub(crate) json: bool,
}

/// Majority of pass and fail per item; a tie has no consensus and is left out.
fn consensus(votes: &BTreeMap<String, (usize, usize)>) -> (HashMap<String, bool>, usize) {
    let mut out = HashMap::new();
    let mut ties = 0;
    for (item, &(pass, fail)) in votes {
        match pass.cmp(&fail) {
            std::cmp::Ordering::Greater => {
                out.insert(item.clone(), true);
            }
            std::cmp::Ordering::Less => {
                out.insert(item.clone(), false);
            }
            std::cmp::Ordering::Equal => ties += 1,
        }
    }
    (out, ties)
}

/// The scorer's whole-trace value per trace (a span-level record only when there is none).
fn values_of(records: impl IntoIterator<Item = ScoreRecord>, scorer: &str) -> HashMap<String, f64> {
    let mut out: HashMap<String, (bool, f64)> = HashMap::new();
    for r in records {
        if r.name != scorer || r.source == Source::Human {
            continue;
        }
        let whole = r.span_id.is_none();
        match out.get(&r.trace_id) {
            Some((true, _)) if !whole => {}
            _ => {
                out.insert(r.trace_id.clone(), (whole, r.value));
            }
        }
    }
    out.into_iter().map(|(k, (_, v))| (k, v)).collect()
}

pub(crate) fn read_lines(path: &Path) -> anyhow::Result<Vec<(usize, String)>> {
    let file =
        std::fs::File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut out = Vec::new();
    for (i, line) in std::io::BufReader::new(file).lines().enumerate() {
        let line = line.with_context(|| format!("{}: line {}", path.display(), i + 1))?;
        if !line.trim().is_empty() {
            out.push((i + 1, line));
        }
    }
    Ok(out)
}

fn file_votes(path: &Path, criterion: &str) -> anyhow::Result<BTreeMap<String, (usize, usize)>> {
    #[derive(serde::Deserialize)]
    struct Row {
        item: String,
        #[allow(dead_code)]
        grader: String,
        criterion: String,
        value: serde_json::Value,
    }
    let mut votes: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    for (n, line) in read_lines(path)? {
        let row: Row = serde_json::from_str(&line).with_context(|| {
            format!(
                "{}: line {n}: not a grade {{item, grader, criterion, value}}",
                path.display()
            )
        })?;
        if row.criterion != criterion {
            continue;
        }
        let pass = match &row.value {
            serde_json::Value::String(v) if v == "pass" => true,
            serde_json::Value::String(v) if v == "fail" => false,
            other => bail!(
                "{}: line {n}: value {other} is not `pass` or `fail`",
                path.display()
            ),
        };
        let entry = votes.entry(row.item).or_default();
        if pass { entry.0 += 1 } else { entry.1 += 1 }
    }
    Ok(votes)
}

fn points(
    votes: &BTreeMap<String, (usize, usize)>,
    values: &HashMap<String, f64>,
) -> (Vec<Point>, usize, usize) {
    let (consensus, ties) = consensus(votes);
    let mut unscored = 0;
    let mut out = Vec::new();
    for (item, pass) in consensus {
        match values.get(&item) {
            Some(&value) => out.push(Point { item, value, pass }),
            None => unscored += 1,
        }
    }
    out.sort_by(|a, b| a.item.cmp(&b.item));
    (out, ties, unscored)
}

/// What the run did, printed.
#[derive(serde::Serialize)]
struct Report {
    scorer: String,
    criterion: String,
    /// Where the grades came from.
    tuned_from: String,
    items: usize,
    ties_left_out: usize,
    unscored_left_out: usize,
    #[serde(flatten)]
    calibration: Calibration,
    /// The new configuration's version or file, when one was written.
    written: Option<String>,
}

pub fn run(args: CalibrateArgs) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    if args.judge {
        return runtime.block_on(crate::calibrate_judge::run(&args));
    }
    let scorer = args.scorer.clone().context("give --scorer or --judge")?;
    let report = match &args.queue {
        Some(queue) => runtime.block_on(from_queue(&args, &scorer, queue))?,
        None => from_files(&args, &scorer)?,
    };
    if args.json {
        crate::say(format_args!("{}", serde_json::to_string(&report)?));
        return Ok(());
    }
    let c = &report.calibration;
    let show = |k: Option<f64>| k.map_or("undefined".into(), |k| format!("{k:.3}"));
    crate::say(format_args!(
        "{} against {} ({}): {} items, {} held back ({:.0} %), {} ties and {} unscored left out",
        report.scorer,
        report.criterion,
        report.tuned_from,
        report.items,
        c.held_back,
        c.holdout_share * 100.0,
        report.ties_left_out,
        report.unscored_left_out
    ));
    crate::say(format_args!(
        "threshold {:.4} -> {:.4}; held-back Cohen's kappa {} -> {}, accuracy {:.3} -> {:.3}",
        c.threshold_before,
        c.threshold_after,
        show(c.held_back_kappa_before),
        show(c.held_back_kappa_after),
        c.held_back_accuracy_before,
        c.held_back_accuracy_after
    ));
    match &report.written {
        Some(at) => crate::say(format_args!(
            "it helps on the held-back items: written {at}"
        )),
        None => crate::say(format_args!(
            "it does not help on the held-back items: nothing written"
        )),
    }
    Ok(())
}

fn header(report: &Report) -> String {
    let c = &report.calibration;
    format!(
        "# {}.threshold {:.4} -> {:.4} by `agentwire calibrate` on {} ({} items tuned, {} held back: Cohen's kappa {} -> {})\n",
        report.scorer,
        c.threshold_before,
        c.threshold_after,
        report.tuned_from,
        c.tuned_on,
        c.held_back,
        c.held_back_kappa_before
            .map_or("undefined".into(), |k| format!("{k:.3}")),
        c.held_back_kappa_after
            .map_or("undefined".into(), |k| format!("{k:.3}")),
    )
}

/// The configuration text with the tuned threshold, under a comment saying how it came.
fn tuned_text(base: &str, report: &Report) -> anyhow::Result<String> {
    let text =
        ScoringConfig::with_threshold(base, &report.scorer, report.calibration.threshold_after)
            .map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(format!("{}{text}", header(report)))
}

fn current_threshold(text: &str, scorer: &str) -> anyhow::Result<f64> {
    let config =
        ScoringConfig::parse(text).map_err(|e| anyhow::anyhow!("the configuration: {e}"))?;
    config
        .threshold(scorer)
        .with_context(|| format!("scorer `{scorer}` has no threshold to tune"))
}

fn from_files(args: &CalibrateArgs, scorer: &str) -> anyhow::Result<Report> {
    let (Some(grades), Some(scores)) = (&args.grades, &args.scores) else {
        bail!("give --queue, or --grades and --scores");
    };
    let criterion = args.criterion.clone().unwrap_or_else(|| scorer.to_owned());
    let base = match &args.config {
        Some(p) => {
            std::fs::read_to_string(p).with_context(|| format!("cannot read {}", p.display()))?
        }
        None => String::new(),
    };
    let current = current_threshold(&base, scorer)?;
    let votes = file_votes(grades, &criterion)?;
    let mut records = Vec::new();
    for (n, line) in read_lines(scores)? {
        let r: ScoreRecord = serde_json::from_str(&line)
            .with_context(|| format!("{}: line {n}: not a score record", scores.display()))?;
        records.push(r);
    }
    let values = values_of(records, scorer);
    let (points, ties, unscored) = points(&votes, &values);
    let calibration =
        calibrate(&points, current, args.holdout).map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut report = Report {
        scorer: scorer.to_owned(),
        criterion,
        tuned_from: grades.display().to_string(),
        items: points.len(),
        ties_left_out: ties,
        unscored_left_out: unscored,
        calibration,
        written: None,
    };
    if report.calibration.improves
        && let Some(out) = &args.out
    {
        std::fs::write(out, tuned_text(&base, &report)?)
            .with_context(|| format!("cannot write {}", out.display()))?;
        report.written = Some(out.display().to_string());
    }
    Ok(report)
}

async fn from_queue(args: &CalibrateArgs, scorer: &str, queue: &str) -> anyhow::Result<Report> {
    let db = args.data_dir.join("sessions.db");
    if !db.exists() {
        bail!(
            "{} has no sessions.db: is it agentwire dev's --data-dir?",
            args.data_dir.display()
        );
    }
    let store =
        agentwire_sqlite::SqliteGradingStore::open(&db).map_err(|e| anyhow::anyhow!("{e}"))?;
    let index =
        agentwire_sqlite::SqliteScoreIndex::open(&db).map_err(|e| anyhow::anyhow!("{e}"))?;
    let archive = agentwire_fs::DirTraceArchive::new(&args.data_dir);
    let tenant = &args.tenant;
    let spec = store
        .queue(tenant, queue)
        .await?
        .with_context(|| format!("no queue `{queue}` in tenant `{tenant}`"))?;
    let rubric = store
        .rubric(tenant, &spec.rubric.name, Some(spec.rubric.version))
        .await?
        .with_context(|| {
            format!(
                "the queue's rubric {}@{} is missing",
                spec.rubric.name, spec.rubric.version
            )
        })?;
    let criterion = match &args.criterion {
        Some(key) => rubric
            .criterion(key)
            .with_context(|| format!("rubric {} has no criterion `{key}`", rubric.name))?,
        None => rubric
            .criteria
            .iter()
            .find(|c| c.scorers.iter().any(|s| s.name == scorer))
            .with_context(|| {
                format!(
                    "no criterion of rubric {} is linked to scorer `{}`: name one with --criterion",
                    rubric.name, scorer
                )
            })?,
    };
    if criterion.scale != Scale::PassFail {
        bail!(
            "criterion `{}` is not pass/fail: calibration tunes a pass/fail threshold",
            criterion.key
        );
    }
    let mut votes: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    for grade in store.grades(tenant, queue).await? {
        if let Some(answer) = grade.answers.get(&criterion.key) {
            let entry = votes.entry(grade.trace_id.clone()).or_default();
            if answer.value == "pass" {
                entry.0 += 1
            } else {
                entry.1 += 1
            }
        }
    }
    let mut records = Vec::new();
    for trace in votes.keys() {
        records.extend(index.trace(tenant, trace).await?);
    }
    let values = values_of(records, scorer);
    let key = agentwire_scorer::config_key(tenant);
    let base = match agentwire_trace::TraceArchive::get(&archive, &key).await? {
        Some(body) => {
            String::from_utf8(body.to_vec()).with_context(|| format!("{key} is not UTF-8"))?
        }
        None => String::new(),
    };
    let current = current_threshold(&base, scorer)?;
    let (points, ties, unscored) = points(&votes, &values);
    let calibration =
        calibrate(&points, current, args.holdout).map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut report = Report {
        scorer: scorer.to_owned(),
        criterion: criterion.key.clone(),
        tuned_from: format!("queue {queue} of tenant {tenant}"),
        items: points.len(),
        ties_left_out: ties,
        unscored_left_out: unscored,
        calibration,
        written: None,
    };
    if report.calibration.improves {
        let text = tuned_text(&base, &report)?;
        let n = agentwire_scorer::save_version(&archive, tenant, &text).await?;
        report.written = Some(format!(
            "version {n} ({})",
            agentwire_scorer::version_key(tenant, n)
        ));
    }
    Ok(report)
}
