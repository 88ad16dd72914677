//! `agentwire report`: the nightly report pages written from files on disk (a data
//! directory of `agentwire dev`, or any directory in the archive layout), for anyone who
//! wants them without a server.

use std::path::PathBuf;
use std::sync::Arc;

use agentwire_fs::DirTraceArchive;
use agentwire_local_stack::{LocalSettings, LocalStack};
use agentwire_report::site::{AgreementSource, render_site};
use agentwire_session::path::percent_decode;
use agentwire_trace::TraceArchive;
use anyhow::{Context, bail};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};

#[derive(Debug, Args)]
pub struct ReportArgs {
    /// The UTC day (`YYYY-MM-DD`).
    #[arg(long)]
    day: String,

    /// One tenant (default: every tenant with traces, scores or clusters that day).
    #[arg(long)]
    tenant: Option<String>,

    /// Where the pages go: `<out>/tenant=<t>/index.html`.
    #[arg(long)]
    out: PathBuf,

    /// The directory the traces, scores and clusters are in (`agentwire dev`'s data
    /// directory); its grading store, when it has one, gives the agreement section.
    #[arg(long, env = "AGENTWIRE_DATA_DIR", default_value = ".agentwire")]
    data_dir: PathBuf,
}

/// Unix ms of a day's start, or an error naming the day.
pub fn day_start_ms(day: &str) -> anyhow::Result<i64> {
    let format = time::macros::format_description!("[year]-[month]-[day]");
    let date = time::Date::parse(day, &format)
        .with_context(|| format!("{day:?} is not a day (YYYY-MM-DD)"))?;
    Ok(date.midnight().assume_utc().unix_timestamp() * 1000)
}

/// Tenants with anything under a prefix of the day.
async fn tenants_of(archive: &dyn TraceArchive, day: &str) -> anyhow::Result<Vec<String>> {
    let mut tenants = std::collections::BTreeSet::new();
    for prefix in ["traces", "scores", "clusters"] {
        for key in archive.list(&format!("{prefix}/dt={day}/")).await? {
            if let Some(t) = key
                .split('/')
                .nth(2)
                .and_then(|p| p.strip_prefix("tenant="))
                .and_then(percent_decode)
            {
                tenants.insert(t);
            }
        }
    }
    Ok(tenants.into_iter().collect())
}

pub async fn run(args: ReportArgs) -> anyhow::Result<()> {
    day_start_ms(&args.day)?;
    if !args.data_dir.is_dir() {
        bail!("{} is not a directory", args.data_dir.display());
    }
    let archive: Arc<dyn TraceArchive> = Arc::new(DirTraceArchive::new(&args.data_dir));
    // The grading store lives in the data directory's database: only open one that exists.
    let settings = LocalSettings::new(&args.data_dir);
    let stack = if settings.database().exists() {
        Some(LocalStack::open(&settings)?)
    } else {
        None
    };
    let agreements = stack.as_ref().map(|s| {
        agentwire_grading_http::reports::Agreements(agentwire_grading_http::GradingService::new(
            s.grading.clone(),
            s.scores.clone(),
            archive.clone(),
            Arc::new(agentwire_session::SystemClock),
        ))
    });
    let tenants = match &args.tenant {
        Some(t) => vec![t.clone()],
        None => tenants_of(archive.as_ref(), &args.day).await?,
    };
    if tenants.is_empty() {
        bail!("nothing for {} under {}", args.day, args.data_dir.display());
    }
    let bar = ProgressBar::new(tenants.len() as u64);
    bar.set_style(
        ProgressStyle::with_template("report {bar:30} {pos}/{len} tenants ({eta} left)")
            .expect("a valid template"),
    );
    let mut written = Vec::new();
    for tenant in &tenants {
        let page = render_site(
            archive.clone(),
            agreements.as_ref().map(|a| a as &dyn AgreementSource),
            &args.day,
            tenant,
        )
        .await?;
        let dir = args.out.join(format!(
            "tenant={}",
            agentwire_session::path::encode_segment(tenant)
        ));
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
        let path = dir.join("index.html");
        std::fs::write(&path, page).with_context(|| format!("cannot write {}", path.display()))?;
        written.push(path);
        bar.inc(1);
    }
    bar.finish_and_clear();
    for path in written {
        crate::say(format_args!("{}", path.display()));
    }
    if let Some(stack) = stack {
        stack.close().await;
    }
    Ok(())
}
