//! `agentwire job list` and `agentwire job run <name>`: the jobs `agentwire dev` runs on
//! their schedules, run once on demand against the same data directory (the embedded
//! stack: sessions in its SQLite file).

use std::path::{Path, PathBuf};
use std::time::Duration;

use agentwire_local_stack::{EmbeddingsEndpoint, LocalSettings, LocalStack};
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

    /// How often the `clusters` job looks for a night to cluster (each once), in seconds.
    #[arg(
        long,
        env = "AGENTWIRE_CLUSTERS_EVERY_SECONDS",
        global = true,
        default_value_t = 3600
    )]
    clusters_every_seconds: u64,

    /// An OpenAI-compatible embeddings endpoint (`https://…/v1`) for the clusters job; the
    /// local TF-IDF without one. The key is read from `AGENTWIRE_EMBEDDINGS_KEY`.
    #[arg(long, env = "AGENTWIRE_EMBEDDINGS_URL", global = true)]
    embeddings_url: Option<String>,

    /// all-MiniLM-L6-v2's directory (`config.json`, `model.safetensors`, `vocab.txt`) for
    /// in-process embeddings in the clusters job (builds with the `minilm` feature).
    #[arg(long, env = "AGENTWIRE_EMBEDDING_MODEL_DIR", global = true)]
    embedding_model_dir: Option<PathBuf>,

    /// The embeddings endpoint's model.
    #[arg(
        long,
        env = "AGENTWIRE_EMBEDDINGS_MODEL",
        global = true,
        default_value = "text-embedding-3-small"
    )]
    embeddings_model: String,
}

impl JobSettings {
    pub fn local(&self, data_dir: &Path) -> LocalSettings {
        LocalSettings {
            idle: Duration::from_secs(self.idle_seconds),
            archive_sweep: Duration::from_secs(self.archive_sweep_seconds),
            expiry_sweep: Duration::from_secs(self.expiry_sweep_seconds),
            evals_every: Duration::from_secs(self.evals_every_seconds),
            clusters_every: Duration::from_secs(self.clusters_every_seconds),
            embeddings: self.embeddings_url.as_ref().map(|url| EmbeddingsEndpoint {
                url: url.clone(),
                model: self.embeddings_model.clone(),
                api_key: std::env::var("AGENTWIRE_EMBEDDINGS_KEY").ok(),
            }),
            embedding_model_dir: self.embedding_model_dir.clone(),
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

        /// Run as in the night after this UTC day (`YYYY-MM-DD`, at 00:30 the next day):
        /// the nightly jobs then work on that day.
        #[arg(long)]
        day: Option<String>,
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
        JobCommand::Run { name, day } => {
            let now_ms = match day {
                Some(day) => crate::report::day_start_ms(&day)? + 86_400_000 + 30 * 60_000,
                None => SystemClock.now_ms(),
            };
            // Run here, not handed to a server's tasks: this process ends with the job.
            let inline = stack.evals_job_inline();
            let job = if name == inline.name() {
                &inline
            } else {
                agentwire_jobs::find(&stack.jobs, &name).map_err(anyhow::Error::msg)?
            };
            let report = job.run(now_ms).await?;
            crate::say(format_args!("{}: {}", job.name(), report.summary));
            for line in &report.details {
                crate::say(format_args!("  {line}"));
            }
        }
    }
    stack.close().await;
    Ok(())
}
