//! `agentwire job list` and `agentwire job run <name>`: the jobs `agentwire dev` runs on
//! their schedules, run once on demand against the same data directory (the embedded
//! stack: sessions in its SQLite file).

use std::path::{Path, PathBuf};
use std::time::Duration;

use agentwire_local_stack::{LocalSettings, LocalStack};
use agentwire_session::{Clock, SystemClock};
use clap::{Args, Subcommand};

/// The jobs' settings, shared by `agentwire dev` and `agentwire job`.
#[derive(Debug, Clone, Args)]
pub struct JobSettings {
    /// Archive a session as a trace once it has had no append for this long, in seconds
    /// (a closed session is archived at once).
    #[arg(long, env = "AGENTWIRE_IDLE_SECONDS", global = true, default_value_t = 30 * 60)]
    idle_seconds: u64,

    /// How often the archiver sweeps for idle sessions, in seconds.
    #[arg(
        long,
        env = "AGENTWIRE_ARCHIVE_SWEEP_SECONDS",
        global = true,
        default_value_t = 60
    )]
    archive_sweep_seconds: u64,

    /// How often expired sessions' space is freed, in seconds.
    #[arg(
        long,
        env = "AGENTWIRE_EXPIRY_SWEEP_SECONDS",
        global = true,
        default_value_t = 60
    )]
    expiry_sweep_seconds: u64,

    /// How often the `evals` job starts the tenants' scheduled evals (each once a day, at
    /// or after its hour) and carries on unfinished runs, in seconds.
    #[arg(
        long,
        env = "AGENTWIRE_EVALS_EVERY_SECONDS",
        global = true,
        default_value_t = 3600
    )]
    evals_every_seconds: u64,
}

impl JobSettings {
    pub fn local(&self, data_dir: &Path) -> LocalSettings {
        LocalSettings {
            idle: Duration::from_secs(self.idle_seconds),
            archive_sweep: Duration::from_secs(self.archive_sweep_seconds),
            expiry_sweep: Duration::from_secs(self.expiry_sweep_seconds),
            evals_every: Duration::from_secs(self.evals_every_seconds),
            ..LocalSettings::new(data_dir)
        }
    }
}

#[derive(Debug, Args)]
pub struct JobArgs {
    #[command(subcommand)]
    command: JobCommand,

    /// The data directory of `agentwire dev` (sessions.db, traces/).
    #[arg(
        long,
        env = "AGENTWIRE_DATA_DIR",
        default_value = ".agentwire",
        global = true
    )]
    data_dir: PathBuf,

    #[command(flatten)]
    settings: JobSettings,
}

#[derive(Debug, Subcommand)]
enum JobCommand {
    /// The jobs, their schedules and what each does.
    List,
    /// Run one job now and print what it did.
    Run {
        /// The job's name, as `agentwire job list` shows it.
        name: String,
    },
}

pub async fn run(args: JobArgs) -> anyhow::Result<()> {
    let stack = LocalStack::open(&args.settings.local(&args.data_dir))?;
    match args.command {
        JobCommand::List => {
            for job in &stack.jobs {
                crate::say(format_args!(
                    "{:<10} {:<18} {}",
                    job.name(),
                    job.schedule().expression(),
                    job.about()
                ));
            }
        }
        JobCommand::Run { name } => {
            // Run here, not handed to a server's tasks: this process ends with the job.
            let inline = stack.evals_job_inline();
            let job = if name == inline.name() {
                &inline
            } else {
                agentwire_jobs::find(&stack.jobs, &name).map_err(anyhow::Error::msg)?
            };
            let report = job.run(SystemClock.now_ms()).await?;
            crate::say(format_args!("{}: {}", job.name(), report.summary));
            for line in &report.details {
                crate::say(format_args!("  {line}"));
            }
        }
    }
    stack.close().await;
    Ok(())
}
