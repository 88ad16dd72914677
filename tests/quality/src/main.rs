//! `agentwire-quality`: how well the scorers agree with people, measured from files.
//!
//! `agentwire-quality ragtruth --traces DIR --scores FILE [--markdown FILE]` reads an
//! archive of imported RAGTruth traces (`traces/dt=*/tenant=*/*.jsonl.gz` under DIR, as
//! `agentwire import ragtruth` writes) and the score records `agentwire score --out FILE`
//! wrote for them, and prints the `groundedness` scorer's agreement with the human labels
//! (a response is hallucinated when it has a labelled span), next to two baselines computed
//! from the same traces.
//!
//! `agentwire-quality ragtruth --responses F --sources F [--features CSV]` does the import
//! and the scoring in-process (the library functions the CLI calls), and can write each
//! answer's groundedness features for fitting the scorer's weights.

mod archive;
mod bench;
mod clusters;
mod judge_bench;
mod metrics;
mod ragtruth;
mod tau_bench;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "agentwire-quality",
    about = "Measures scorer quality against labelled datasets"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// groundedness against RAGTruth's labelled hallucinations.
    Ragtruth(ragtruth::Args),
    /// How fast the scorers are, one core, beside reading the archive (the floor).
    Bench(bench::Args),
    /// The judge's throughput and own cost per trace, against a local OpenAI-compatible server.
    JudgeBench(judge_bench::Args),
    /// tool_use against tau-bench's rewards and expected actions.
    /// How well `agentwire cluster` separates the datasets' own categories (ARI, V-measure).
    Clusters(clusters::Args),
    TauBench {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Ragtruth(args) => ragtruth::run(&args),
        Command::Bench(args) => bench::run(&args),
        Command::JudgeBench(args) => judge_bench::run(&args),
        Command::Clusters(args) => clusters::run(&args),
        Command::TauBench { args } => tau_bench::run(&args),
    }
}
