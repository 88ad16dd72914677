//! tool_use vs tau-bench's rewards.
//!
//! tau-bench gives each run a reward: 1 when the database ends as the task's reference
//! actions leave it (and the answer contains the task's expected outputs), else 0. Two
//! figures:
//!
//! - **agreement with expected actions**: the `tool_use` label of traces that carry the
//!   task's actions (`agentwire import tau-bench`) against the reward, `pass` ⇔ reward 1,
//!   with the confusion matrix;
//! - **AUROC without expected actions**: the same runs imported without their actions
//!   (`agentwire import tau-bench --without-expected-actions`, which is how a production
//!   trace looks), scored again; the failure signal `1 − value` of `tool_use` against
//!   reward 0. A run with no tool call gets no `tool_use` outcome without expected actions;
//!   its failure signal is 0 (nothing was flagged), and the AUROC over the scored runs only
//!   is printed beside it.
//!
//! Two modes: `--traces DIR --scores FILE --scores-without FILE` reads what `agentwire
//! import`/`score` wrote (the traces only for the rewards; both imports give the same
//! trace ids, which depend on tenant and session only); `--file F [--config TOML]` imports
//! and scores in-process with the library functions those commands call.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use agentwire_ingest::import::tau_bench::{self, Options};
use agentwire_scoring::{ScoreRecord, Scoring, TraceView, ViewOptions};
use agentwire_trace::Span;
use anyhow::{Context as _, bail};
use clap::Parser;

use crate::archive::read_archive;
use crate::metrics::auroc;

#[derive(Parser)]
#[command(name = "agentwire-quality tau-bench")]
struct Args {
    /// An archive directory holding `traces/dt=*/tenant=*/*.jsonl.gz` (imported with
    /// expected actions; read for the rewards).
    #[arg(long, requires_all = ["scores", "scores_without"], conflicts_with = "file")]
    traces: Option<PathBuf>,
    /// Score records (JSON lines) of those traces, scored with their expected actions.
    #[arg(long)]
    scores: Option<PathBuf>,
    /// Score records of the same runs imported without expected actions.
    #[arg(long)]
    scores_without: Option<PathBuf>,
    /// A tau-bench results file: import and score in-process instead.
    #[arg(long)]
    file: Option<PathBuf>,
    /// The tenant's scoring configuration (TOML) for in-process scoring; defaults when absent.
    #[arg(long, requires = "file")]
    config: Option<PathBuf>,
    /// Also write the report as Markdown.
    #[arg(long)]
    markdown: Option<PathBuf>,
}

/// One run: its reward and its `tool_use` records with and without expected actions.
struct Run {
    session: String,
    reward: f64,
    with: Option<ScoreRecord>,
    without: Option<ScoreRecord>,
}

/// `agentwire-quality tau-bench ARGS...`.
pub fn run(args: &[String]) -> anyhow::Result<()> {
    let args = Args::try_parse_from(
        std::iter::once("agentwire-quality tau-bench".to_owned()).chain(args.iter().cloned()),
    )?;
    let (runs, source) = match (&args.traces, &args.file) {
        (Some(dir), _) => {
            let traces = read_archive(dir)?;
            let with = read_scores(args.scores.as_deref().context("--scores is required")?)?;
            let without = read_scores(
                args.scores_without
                    .as_deref()
                    .context("--scores-without is required")?,
            )?;
            (
                join(&traces, with, without)?,
                format!("{} traces from {}", traces.len(), dir.display()),
            )
        }
        (None, Some(file)) => {
            let config = match &args.config {
                Some(path) => std::fs::read_to_string(path)
                    .with_context(|| format!("reading {}", path.display()))?,
                None => String::new(),
            };
            let scoring = Scoring::parse(&config)
                .map_err(|e| anyhow::anyhow!("scoring configuration: {e}"))?;
            in_process(file, &scoring)?
        }
        (None, None) => bail!("give --traces DIR --scores FILE --scores-without FILE, or --file F"),
    };
    let report = report(&runs, &source);
    print!("{report}");
    if let Some(path) = &args.markdown {
        std::fs::write(path, &report).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

/// Imports `file` twice (with and without expected actions) and scores both.
fn in_process(file: &Path, scoring: &Scoring) -> anyhow::Result<(Vec<Run>, String)> {
    let bytes = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
    let name = file.display().to_string();
    let mut scored = Vec::new();
    for expected_actions in [true, false] {
        let import = tau_bench::read_with(&bytes, &name, "quality", &Options { expected_actions })?;
        for skipped in &import.skipped {
            eprintln!("skipped: {skipped}");
        }
        let mut records = HashMap::new();
        for spans in &import.traces {
            for record in scoring.score_spans(spans, 0)? {
                if record.name == "tool_use" {
                    records.insert(record.trace_id.clone(), record);
                }
            }
        }
        scored.push((import.traces, records));
    }
    let (without_traces, without) = scored.pop().context("two imports")?;
    let (traces, with) = scored.pop().context("two imports")?;
    debug_assert_eq!(traces.len(), without_traces.len());
    let runs = join(&traces, with, without)?;
    Ok((
        runs,
        format!("{} runs of {name}, scored in-process", traces.len()),
    ))
}

fn join(
    traces: &[Vec<Span>],
    mut with: HashMap<String, ScoreRecord>,
    mut without: HashMap<String, ScoreRecord>,
) -> anyhow::Result<Vec<Run>> {
    let mut runs = Vec::new();
    for spans in traces {
        let view = TraceView::from_spans(spans, &ViewOptions::default())?;
        let Some(reward) = view.dataset_reward else {
            bail!(
                "trace {} ({}) has no agentwire.dataset.reward: not a tau-bench import",
                view.trace_id,
                view.session
            );
        };
        runs.push(Run {
            session: view.session.clone(),
            reward,
            with: with.remove(&view.trace_id),
            without: without.remove(&view.trace_id),
        });
    }
    runs.sort_by(|a, b| a.session.cmp(&b.session));
    Ok(runs)
}

fn report(runs: &[Run], source: &str) -> String {
    let success = |r: &Run| r.reward >= 1.0;
    // Agreement: pass ⇔ reward 1. A run without a record (no calls, no expected actions) counts as a pass.
    let mut matrix = [[0usize; 2]; 2]; // [reward 1?][pass?]
    let mut disagreements = Vec::new();
    for run in runs {
        let pass = run
            .with
            .as_ref()
            .is_none_or(|r| r.label.as_deref() == Some("pass"));
        matrix[usize::from(success(run))][usize::from(pass)] += 1;
        if pass != success(run) {
            let why = run
                .with
                .as_ref()
                .and_then(|r| r.explanation.clone())
                .unwrap_or_default();
            disagreements.push(format!(
                "{} (reward {}, {}): {}",
                run.session,
                run.reward,
                if pass { "pass" } else { "fail" },
                why
            ));
        }
    }
    let n = runs.len().max(1) as f64;
    let agreement = (matrix[1][1] + matrix[0][0]) as f64 / n;
    let failed: Vec<bool> = runs.iter().map(|r| !success(r)).collect();
    let signal: Vec<f64> = runs
        .iter()
        .map(|r| r.without.as_ref().map_or(0.0, |s| 1.0 - s.value))
        .collect();
    let all = auroc(&failed, &signal);
    let (scored_failed, scored_signal): (Vec<bool>, Vec<f64>) = runs
        .iter()
        .filter_map(|r| Some((!success(r), 1.0 - r.without.as_ref()?.value)))
        .unzip();
    let scored = auroc(&scored_failed, &scored_signal);
    let flagged_without = runs
        .iter()
        .filter(|r| {
            r.without
                .as_ref()
                .is_some_and(|s| s.label.as_deref() == Some("fail"))
        })
        .count();
    let fmt = |x: Option<f64>| x.map_or("n/a".to_owned(), |x| format!("{x:.3}"));

    let mut out = String::new();
    let _ = writeln!(out, "## tool_use vs tau-bench reward\n");
    let _ = writeln!(
        out,
        "{source}: {} runs, {} with reward 1.\n",
        runs.len(),
        matrix[1][0] + matrix[1][1]
    );
    let _ = writeln!(out, "| measure | value |\n|---|---|");
    let _ = writeln!(
        out,
        "| agreement of `tool_use` (with expected actions) with reward (pass ⇔ 1) | **{agreement:.3}** |"
    );
    let _ = writeln!(
        out,
        "| AUROC of `1 − value` without expected actions vs reward 0, all runs | **{}** |",
        fmt(all)
    );
    let _ = writeln!(
        out,
        "| same, over the {} runs with a `tool_use` outcome | {} |",
        scored_signal.len(),
        fmt(scored)
    );
    let _ = writeln!(
        out,
        "| runs labelled `fail` without expected actions | {flagged_without} |\n"
    );
    let _ = writeln!(out, "Confusion matrix (with expected actions):\n");
    let _ = writeln!(out, "| | `pass` | `fail` |\n|---|---|---|");
    let _ = writeln!(out, "| reward 1 | {} | {} |", matrix[1][1], matrix[1][0]);
    let _ = writeln!(out, "| reward 0 | {} | {} |\n", matrix[0][1], matrix[0][0]);
    if !disagreements.is_empty() {
        let _ = writeln!(out, "Disagreements:\n");
        for d in &disagreements {
            let _ = writeln!(out, "- {d}");
        }
        let _ = writeln!(out);
    }
    out
}

/// `tool_use` records by trace id.
fn read_scores(path: &Path) -> anyhow::Result<HashMap<String, ScoreRecord>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let mut out = HashMap::new();
    for (n, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let record: ScoreRecord = serde_json::from_str(line)
            .with_context(|| format!("{}: line {}: not a score record", path.display(), n + 1))?;
        if record.name == "tool_use" {
            out.insert(record.trace_id.clone(), record);
        }
    }
    Ok(out)
}
