//! `agentwire-quality bench --traces DIR`: how fast the deterministic scorers are, on one
//! core, beside the work every scorer run pays anyway (reading the archive object) measured
//! in the same run.
//!
//! Each stage runs over every trace under DIR (loaded into memory first, so the disk is
//! not measured), `--rounds` times; the table gives the best round.

use std::hint::black_box;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use agentwire_scoring::{Scorer, ScorerSet, Scoring, ScoringConfig, TraceView};
use agentwire_trace::decode_jsonl_gz;
use anyhow::Context;

#[derive(clap::Args)]
pub struct Args {
    /// An archive directory (`traces/dt=…/tenant=…/*.jsonl.gz` under it).
    #[arg(long)]
    traces: PathBuf,
    /// A scoring configuration (TOML); the defaults without it.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Rounds per stage; the best is reported.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
}

pub fn run(args: &Args) -> anyhow::Result<()> {
    let config = match &args.config {
        Some(path) => ScoringConfig::parse(&std::fs::read_to_string(path)?)
            .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?,
        None => ScoringConfig::default(),
    };
    let scoring = Scoring::new(config.clone()).map_err(|e| anyhow::anyhow!("{e}"))?;
    let set = ScorerSet::from_config(&config).map_err(|e| anyhow::anyhow!("{e}"))?;
    let options = config.view_options();

    let paths = crate::archive::trace_files(&args.traces)?;
    let objects: Vec<Vec<u8>> = paths
        .iter()
        .map(|p| std::fs::read(p).with_context(|| format!("cannot read {}", p.display())))
        .collect::<Result<_, _>>()?;
    anyhow::ensure!(
        !objects.is_empty(),
        "no traces under {}",
        args.traces.display()
    );
    let spans: Vec<_> = objects
        .iter()
        .map(|o| decode_jsonl_gz(o))
        .collect::<Result<_, _>>()?;
    let views: Vec<TraceView> = spans
        .iter()
        .map(|s| TraceView::from_spans(s, &options))
        .collect::<Result<_, _>>()?;
    let bytes: usize = objects.iter().map(Vec::len).sum();
    println!(
        "{} traces ({:.1} KiB gzip on average), one thread, best of {} rounds",
        objects.len(),
        bytes as f64 / objects.len() as f64 / 1024.0,
        args.rounds
    );

    let rounds = args.rounds.max(1);
    let mut rows: Vec<(String, Duration)> = Vec::new();
    rows.push((
        "read the archive object (gunzip + JSON): the floor".into(),
        best(rounds, || {
            for o in &objects {
                black_box(decode_jsonl_gz(o).ok());
            }
        }),
    ));
    rows.push((
        "build the trace view".into(),
        best(rounds, || {
            for s in &spans {
                black_box(TraceView::from_spans(s, &options).ok());
            }
        }),
    ));
    for scorer in set.scorers() {
        rows.push((
            format!("scorer {}", scorer.name()),
            time_scorer(rounds, scorer, &views),
        ));
    }
    rows.push((
        "all scorers, from the archive object (what the job does)".into(),
        best(rounds, || {
            for o in &objects {
                let spans = decode_jsonl_gz(o).unwrap_or_default();
                black_box(scoring.score_spans(&spans, 0).ok());
            }
        }),
    ));

    let n = objects.len() as f64;
    println!("| stage | traces/s | µs/trace |");
    println!("|---|---:|---:|");
    for (name, took) in rows {
        let secs = took.as_secs_f64().max(1e-9);
        println!("| {name} | {:.0} | {:.1} |", n / secs, secs / n * 1e6);
    }
    Ok(())
}

fn time_scorer(rounds: usize, scorer: &dyn Scorer, views: &[TraceView]) -> Duration {
    best(rounds, || {
        for view in views {
            black_box(scorer.score(view));
        }
    })
}

fn best(rounds: usize, mut work: impl FnMut()) -> Duration {
    (0..rounds)
        .map(|_| {
            let start = Instant::now();
            work();
            start.elapsed()
        })
        .min()
        .unwrap_or_default()
}
