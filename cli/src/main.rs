//! `agentwire`: run the durable-session stack locally.

mod dev;
mod secret;
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
    Dev(dev::DevArgs),
    /// Mint a token for sessions of a tenant, signed with the local secret.
    Token(token::TokenArgs),
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    if let Command::Token(args) = cli.command {
        return token::run(args);
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    match cli.command {
        Command::Dev(args) => runtime.block_on(dev::run(args)),
        Command::Token(_) => unreachable!("handled above"),
    }
}
