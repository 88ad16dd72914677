//! `agentwire`: run the durable-session stack locally.

mod agreement;
mod calibrate;
mod calibrate_judge;
mod cluster;
mod demo_agent;
mod dev;
mod eval;
mod import;
mod job;
mod judge;
mod report;
mod score;
mod secret;
mod tail;
mod token;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "agentwire", version, about = "Durable sessions for AI agents")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the whole stack in one process on embedded storage.
    Dev(Box<dev::DevArgs>),
    /// Mint a token for sessions of a tenant, signed with the local secret.
    Token(token::TokenArgs),
    /// Answer each new user message in a session with a scripted, token-by-token reply.
    DemoAgent(demo_agent::DemoAgentArgs),
    /// Follow a session live and print its events.
    Tail(tail::TailArgs),
    /// List the scheduled jobs, or run one now (as `agentwire dev` runs them).
    Job(job::JobArgs),
    /// Import dataset files (OTLP JSON, tau-bench, RAGTruth) as traces in the archive layout.
    Import(import::ImportArgs),
    /// Score archived traces with the deterministic scorers, into JSON lines of records.
    Score(score::ScoreArgs),
    /// Agreement among graders per criterion (kappas, Krippendorff's alpha) from JSON-lines grades.
    Agreement(agreement::AgreementArgs),
    /// Tune a scorer's threshold, or choose the judge's prompt, by the graders' consensus on held-back items.
    Calibrate(calibrate::CalibrateArgs),
    /// Judge archived traces against a rubric through a model endpoint, within a budget.
    Judge(judge::JudgeArgs),
    /// Evals: datasets, runs through the real agent, comparisons and the CI gate.
    Eval(eval::EvalArgs),
    /// Cluster trace files as the nightly job does: one JSON line per trace, ids stable against --previous.
    Cluster(cluster::ClusterArgs),
    /// Write the nightly report pages (scores, clusters, agreement, evals) from files on disk.
    Report(report::ReportArgs),
}

/// Prints a line to stdout for scripts to read; a reader that went away is not an error
/// worth stopping a server for.
pub fn say(line: std::fmt::Arguments<'_>) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = out
        .write_fmt(line)
        .and_then(|()| out.write_all(b"\n"))
        .and_then(|()| out.flush());
}

/// Logs of client commands go to stderr, leaving stdout to their output.
fn init_cli_logging() {
    agentwire_logging::init(agentwire_logging::Format::Text, "info");
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let cli = match cli.command {
        Command::Token(args) => return token::run(args),
        Command::Score(args) => return score::run(args),
        Command::Calibrate(args) => return calibrate::run(args),
        command => Cli { command },
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    match cli.command {
        Command::Dev(args) => runtime.block_on(dev::run(*args)),
        Command::DemoAgent(args) => {
            init_cli_logging();
            runtime.block_on(demo_agent::run(args))
        }
        Command::Tail(args) => runtime.block_on(tail::run(args)),
        Command::Job(args) => {
            init_cli_logging();
            runtime.block_on(job::run(args))
        }
        Command::Import(args) => runtime.block_on(import::run(args)),
        Command::Agreement(args) => agreement::run(args),
        Command::Judge(args) => runtime.block_on(judge::run(args)),
        Command::Eval(args) => runtime.block_on(eval::run(args)),
        Command::Cluster(args) => runtime.block_on(cluster::run(args)),
        Command::Report(args) => runtime.block_on(report::run(args)),
        Command::Token(_) | Command::Score(_) | Command::Calibrate(_) => {
            unreachable!("handled above")
        }
    }
}
