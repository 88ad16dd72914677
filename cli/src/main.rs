//! `agentwire`: run the durable-session stack locally.

mod dev;

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
    Dev(dev::DevArgs),
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    match cli.command {
        Command::Dev(args) => runtime.block_on(dev::run(args)),
    }
}
