//! `agentwire import`: dataset files to traces in the archive layout, so every other
//! command (and DuckDB) reads them like production data.

use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use agentwire_fs::DirTraceArchive;
use agentwire_ingest::import::{self, Import, ImportError};
use agentwire_trace::{TraceArchive, encode_jsonl_gz, object_key};
use anyhow::Context;
use clap::{Args, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::Value;

#[derive(Debug, Args)]
pub struct ImportArgs {
    #[command(subcommand)]
    format: Format,

    /// The directory to write `traces/dt=…/tenant=…/<session>.jsonl.gz` under.
    #[arg(long, global = true, default_value = ".agentwire")]
    out: PathBuf,

    /// The tenant the traces belong to.
    #[arg(long, global = true, default_value = "local", value_parser = crate::token::tenant)]
    tenant: String,
}

#[derive(Debug, Subcommand)]
enum Format {
    /// OTLP/JSON export requests: one per file, or one per line (the collector's file
    /// exporter).
    Otlp {
        #[arg(long)]
        file: PathBuf,
    },
    /// tau-bench trajectories (a JSON array of runs): one trace per run, session
    /// `tau-<task_id>-<trial>`, with the task's expected actions and the run's reward.
    TauBench {
        #[arg(long)]
        file: PathBuf,
        /// Leave the task's expected actions out (to measure scorers without them).
        #[arg(long)]
        without_expected_actions: bool,
    },
    /// RAGTruth rows: one trace per response, session `ragtruth-<id>`, the passages as a
    /// retrieval call's result and the labelled spans as annotations.
    Ragtruth {
        #[arg(long)]
        responses: PathBuf,
        #[arg(long)]
        sources: PathBuf,
    },
}

pub async fn run(args: ImportArgs) -> anyhow::Result<()> {
    let read = |path: &Path| {
        std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))
    };
    let name = |path: &Path| path.display().to_string();
    let imported: Result<Import, ImportError> = match &args.format {
        Format::Otlp { file } => import::otlp_json::read(&read(file)?, &name(file), &args.tenant),
        Format::TauBench {
            file,
            without_expected_actions,
        } => import::tau_bench::read_with(
            &read(file)?,
            &name(file),
            &args.tenant,
            &import::tau_bench::Options {
                expected_actions: !without_expected_actions,
            },
        ),
        Format::Ragtruth { responses, sources } => {
            let open = |path: &Path| {
                std::fs::File::open(path)
                    .map(BufReader::new)
                    .with_context(|| format!("cannot read {}", path.display()))
            };
            import::ragtruth::read(
                open(responses)?,
                &name(responses),
                open(sources)?,
                &name(sources),
                &args.tenant,
            )
        }
    };
    let imported = imported?;
    for skipped in &imported.skipped {
        eprintln!("skipped {skipped}");
    }
    let archive: Arc<dyn TraceArchive> = Arc::new(DirTraceArchive::new(&args.out));
    let progress = ProgressBar::new(imported.traces.len() as u64).with_style(
        ProgressStyle::with_template("{spinner} writing [{bar:30}] {pos}/{len} traces, eta {eta}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    let mut written = 0usize;
    for spans in &imported.traces {
        let Some(root) = spans.iter().find(|s| s.parent_span_id.is_none()) else {
            continue;
        };
        let text = |key: &str| root.attributes.get(key).and_then(Value::as_str);
        let session = text("agentwire.session")
            .or_else(|| text("gen_ai.conversation.id"))
            .unwrap_or(&root.trace_id);
        let start_ms = i64::try_from(root.start_time_unix_nano / 1_000_000).unwrap_or(0);
        let key = object_key(&args.tenant, session, start_ms);
        let body = encode_jsonl_gz(spans)?;
        archive
            .put(&key, body.into())
            .await
            .with_context(|| format!("cannot write {key}"))?;
        written += 1;
        progress.inc(1);
    }
    progress.finish_and_clear();
    eprintln!(
        "imported {written} traces into {} (tenant {}); skipped {}",
        args.out.join("traces").display(),
        args.tenant,
        imported.skipped.len()
    );
    if written == 0 {
        anyhow::bail!("nothing could be imported");
    }
    Ok(())
}
