//! Clustering throughput and peak memory: N synthetic requests (families of one wording
//! with names and numbers varying, plus one-off requests as noise) through the nightly
//! pipeline with the local default (hashed TF-IDF, truncated SVD, HDBSCAN on a sample,
//! the rest assigned, labels, tracking). Prints one JSON line; `--texts FILE` also writes
//! the texts, one per line, for the scikit-learn peer in `tests/bench/clusters.sh`.
//!
//! One process per size: the peak resident set (`getrusage`) is this run's alone.

use std::io::Write;
use std::time::Instant;

use agentwire_cluster::{
    Doc, Embedder, LocalTfIdf, Night, Previous, Settings, View, cluster_night,
};
use clap::Parser;

#[derive(Parser)]
struct Args {
    /// Traces to cluster.
    #[arg(long, default_value_t = 10_000)]
    traces: usize,
    /// Families of requests among them.
    #[arg(long, default_value_t = 40)]
    families: usize,
    /// Write the texts here, one per line.
    #[arg(long)]
    texts: Option<std::path::PathBuf>,
}

const VERBS: &[&str] = &[
    "refund", "change", "cancel", "upgrade", "track", "return", "book", "renew", "transfer",
    "reset", "verify", "update", "close", "open", "report", "replace", "ship", "invoice", "price",
    "repair",
];
const THINGS: &[&str] = &[
    "order",
    "flight",
    "subscription",
    "seat",
    "package",
    "account",
    "booking",
    "card",
    "password",
    "address",
    "plan",
    "device",
    "warranty",
    "payment",
    "ticket",
    "delivery",
    "loan",
    "policy",
    "invoice",
    "license",
];
const TAILS: &[&str] = &[
    "it arrived broken",
    "before Friday",
    "for my trip next week",
    "because it was charged twice",
    "as soon as possible",
    "the app shows an error",
    "for my whole family",
    "it never arrived",
    "without a fee",
    "online not by phone",
];
const NAMES: &[&str] = &[
    "Ana", "Omar", "Li", "Sofia", "Raj", "Chen", "Maria", "Yusuf", "Ines", "Kofi", "Lena", "Tomas",
    "Aiko", "Priya", "Jonas", "Mina",
];
const WORDS: &[&str] = &[
    "weather", "poem", "recipe", "joke", "history", "music", "garden", "movie", "chess", "planet",
    "river", "coffee", "painting", "holiday", "football", "science",
];

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let mut rng = fastrand::Rng::with_seed(7);
    let families: Vec<String> = (0..args.families)
        .map(|f| {
            format!(
                "please {} my {} {{n}} {}",
                VERBS[f % VERBS.len()],
                THINGS[(f / VERBS.len() + f * 7) % THINGS.len()],
                TAILS[f % TAILS.len()]
            )
        })
        .collect();
    let docs: Vec<Doc> = (0..args.traces)
        .map(|i| {
            // One in ten is a one-off request: what density clustering leaves as noise.
            let text = if rng.u32(0..10) == 0 {
                let w: Vec<&str> = (0..4).map(|_| WORDS[rng.usize(0..WORDS.len())]).collect();
                format!(
                    "tell me something about {} {} and {} {}",
                    w[0], w[1], w[2], w[3]
                )
            } else {
                let family = &families[rng.usize(0..families.len())];
                let text = family.replace("{n}", &rng.u32(1000..99999).to_string());
                match rng.u32(0..3) {
                    0 => text,
                    1 => format!("{text}, thanks {}", NAMES[rng.usize(0..NAMES.len())]),
                    _ => format!("hi, I am {} and {text}", NAMES[rng.usize(0..NAMES.len())]),
                }
            };
            Doc {
                session: format!("s{i}"),
                trace_id: format!("{i:032x}"),
                text,
                scores: Default::default(),
                failed: rng.u32(0..5) == 0,
            }
        })
        .collect();
    if let Some(path) = &args.texts {
        let mut out = std::io::BufWriter::new(std::fs::File::create(path)?);
        for d in &docs {
            writeln!(out, "{}", d.text)?;
        }
    }
    let before = peak_rss_mib();
    let started = Instant::now();
    let texts: Vec<String> = docs.iter().map(|d| d.text.clone()).collect();
    let runtime = tokio::runtime::Builder::new_current_thread().build()?;
    let vectors = runtime.block_on(LocalTfIdf.embed(&texts))?;
    let embedded = started.elapsed().as_secs_f64();
    let night = Night {
        day: "2026-12-01".into(),
        tenant: "bench".into(),
        view: View::Requests,
        embedding: LocalTfIdf.name(),
    };
    let settings = Settings::default();
    let outcome = cluster_night(&night, &docs, &vectors, &Previous::default(), &settings);
    let seconds = started.elapsed().as_secs_f64();
    let clusters = outcome.clusters.len();
    let noise = outcome
        .members
        .iter()
        .filter(|m| m.cluster.is_none())
        .count();
    println!(
        "{}",
        serde_json::json!({
            "traces": args.traces,
            "families": args.families,
            "sampled": settings.sample.min(args.traces),
            "seconds": seconds,
            "embed_seconds": embedded,
            "traces_per_second": args.traces as f64 / seconds,
            "peak_rss_mib": peak_rss_mib(),
            "rss_before_mib": before,
            "clusters": clusters,
            "noise": noise,
        })
    );
    Ok(())
}

/// The process's peak resident set so far, MiB (Linux reports KiB).
fn peak_rss_mib() -> f64 {
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: getrusage fills the struct it is given and reads nothing else.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) };
    usage.ru_maxrss as f64 / 1024.0
}
