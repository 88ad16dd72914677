//! `agentwire score`: scores archived traces offline, as the scorer job does, into JSON
//! lines of score records.

use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use agentwire_scoring::{ScoreRecord, Scoring, ScoringConfig};
use agentwire_session::{Clock, SystemClock};
use agentwire_trace::{ObjectKey, decode_jsonl_gz};
use anyhow::Context;
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};

#[derive(Debug, Args)]
pub struct ScoreArgs {
    /// A directory in the archive layout (`traces/dt=…/tenant=…/<session>.jsonl.gz`, as
    /// `agentwire import --out` and `agentwire dev` write it), or one trace file.
    #[arg(long)]
    traces: PathBuf,

    /// Where to write the score records, one JSON object per line (`-`: stdout).
    #[arg(long)]
    out: PathBuf,

    /// The tenant's scoring configuration (TOML); the defaults without it.
    #[arg(long)]
    config: Option<PathBuf>,

    /// The tenant of traces whose path does not name one.
    #[arg(long, default_value = "local", value_parser = crate::token::tenant)]
    tenant: String,

    /// Scoring threads (default: one per core).
    #[arg(long)]
    threads: Option<usize>,
}

/// A trace file and the tenant and session its path names.
pub(crate) struct TraceFile {
    pub(crate) path: PathBuf,
    pub(crate) tenant: String,
    pub(crate) session: Option<String>,
}

pub fn run(args: ScoreArgs) -> anyhow::Result<()> {
    let scoring = match &args.config {
        None => Scoring::new(ScoringConfig::default()),
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read {}", path.display()))?;
            Scoring::parse(&text)
        }
    }
    .map_err(|e| {
        let file = args
            .config
            .as_ref()
            .map_or("(defaults)".into(), |p| p.display().to_string());
        anyhow::anyhow!("{file}: {e}")
    })?;
    let files = trace_files(&args.traces, &args.tenant)?;
    if files.is_empty() {
        anyhow::bail!(
            "{}: no trace files (*.jsonl.gz) found",
            args.traces.display()
        );
    }

    let progress = ProgressBar::new(files.len() as u64).with_style(
        ProgressStyle::with_template(
            "{spinner} scoring [{bar:30}] {pos}/{len} traces, {per_sec}, eta {eta}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    let started = Instant::now();
    let now_ms = SystemClock.now_ms();
    let threads = args
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
        .clamp(1, 64);
    let next = AtomicUsize::new(0);
    // Each worker takes the next file; results go back in file order.
    let mut results: Vec<(usize, Result<Vec<ScoreRecord>, String>)> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                s.spawn(|| {
                    let mut done = Vec::new();
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(file) = files.get(i) else { break };
                        done.push((i, score_file(&scoring, file, now_ms)));
                        progress.inc(1);
                    }
                    done
                })
            })
            .collect();
        // A scorer that panicked would leave its files neither scored nor skipped: say so.
        workers
            .into_iter()
            .map(|w| w.join())
            .collect::<Result<Vec<_>, _>>()
            .map(|done| done.into_iter().flatten().collect())
    })
    .map_err(|_| anyhow::anyhow!("a scoring thread panicked; no records were written"))?;
    progress.finish_and_clear();
    results.sort_by_key(|(i, _)| *i);

    let mut out: Box<dyn Write> = if args.out == Path::new("-") {
        Box::new(std::io::stdout().lock())
    } else {
        let file = std::fs::File::create(&args.out)
            .with_context(|| format!("cannot create {}", args.out.display()))?;
        Box::new(file)
    };
    let mut out = BufWriter::new(&mut out);
    let (mut scored, mut records, mut skipped) = (0usize, 0usize, 0usize);
    for (i, result) in results {
        match result {
            Ok(list) => {
                scored += 1;
                records += list.len();
                for record in list {
                    serde_json::to_writer(&mut out, &record)?;
                    out.write_all(b"\n")?;
                }
            }
            Err(e) => {
                skipped += 1;
                eprintln!("skipped {}: {e}", files[i].path.display());
            }
        }
    }
    out.flush()?;
    let seconds = started.elapsed().as_secs_f64();
    eprintln!(
        "scored {scored} traces ({records} records) in {seconds:.1} s, {:.0} traces/s; skipped {skipped}",
        scored as f64 / seconds.max(1e-9)
    );
    if scored == 0 {
        anyhow::bail!("no trace could be scored");
    }
    Ok(())
}

/// The records of one file, or why it is not a trace (naming the line).
pub(crate) fn score_file(
    scoring: &Scoring,
    file: &TraceFile,
    now_ms: i64,
) -> Result<Vec<ScoreRecord>, String> {
    Ok(scoring.score_view(&view_of(scoring, file)?, now_ms))
}

/// One file's trace as the scorers see it, with the path's tenant (as the scorer job
/// takes the key's) and session.
pub(crate) fn view_of(
    scoring: &Scoring,
    file: &TraceFile,
) -> Result<agentwire_scoring::TraceView, String> {
    let body = std::fs::read(&file.path).map_err(|e| e.to_string())?;
    let spans = decode_jsonl_gz(&body).map_err(|e| agentwire_scorer::without_content(&e))?;
    let mut view =
        agentwire_scoring::TraceView::from_spans(&spans, &scoring.config().view_options())
            .map_err(|e| e.to_string())?;
    view.tenant = file.tenant.clone();
    if let Some(session) = &file.session
        && view.session == view.trace_id
    {
        view.session = session.clone();
    }
    Ok(view)
}

/// Every `*.jsonl.gz` under `root` (or `root` itself), in path order.
pub(crate) fn trace_files(root: &Path, tenant: &str) -> anyhow::Result<Vec<TraceFile>> {
    let mut paths = Vec::new();
    if root.is_file() {
        paths.push(root.to_path_buf());
    } else {
        let mut pending = vec![root.to_path_buf()];
        while let Some(dir) = pending.pop() {
            let entries = std::fs::read_dir(&dir)
                .with_context(|| format!("cannot read {}", dir.display()))?;
            for entry in entries {
                let path = entry?.path();
                if path.is_dir() {
                    pending.push(path);
                } else if path.to_string_lossy().ends_with(".jsonl.gz") {
                    paths.push(path);
                }
            }
        }
    }
    paths.sort();
    Ok(paths
        .into_iter()
        .map(|path| {
            // The last four components make a key when the file is in the archive layout.
            let parts: Vec<String> = path
                .components()
                .rev()
                .take(4)
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect();
            let key: Vec<&str> = parts.iter().rev().map(String::as_str).collect();
            let parsed = ObjectKey::parse(&key.join("/"));
            TraceFile {
                tenant: parsed
                    .as_ref()
                    .map_or_else(|| tenant.to_owned(), |k| k.tenant.clone()),
                session: parsed.map(|k| k.session),
                path,
            }
        })
        .collect())
}
