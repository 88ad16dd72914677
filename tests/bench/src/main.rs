//! `agentwire-bench`: the same workloads against any Durable Streams servers, one table.
//!
//! ```text
//! agentwire-bench --target 'agentwire=http://127.0.0.1:8787;ws;token=…;durability=fsync' \
//!                 --target 'reference=http://127.0.0.1:4437;durability=memory'
//! ```
//! `tests/bench/run.sh` starts agentwire and the Node reference server and runs this.

mod protocol;
mod stats;
mod wake;
mod workloads;

use std::time::Duration;

use clap::Parser;

use protocol::Target;
use stats::{Latency, ms};
use workloads::Live;

#[derive(Debug, Parser)]
#[command(about = "Latency, throughput, fan-out and resume against Durable Streams servers")]
struct Args {
    /// A server: `name=url[;ws][;token=T][;durability=text]` (`ws`: it serves agentwire's
    /// WebSocket gateway). Repeat for each server; all run the same workloads.
    #[arg(long = "target", required = true, value_parser = Target::parse)]
    targets: Vec<Target>,
    /// The target the others are compared with (default: the last one).
    #[arg(long)]
    reference: Option<String>,
    /// Measured appends per latency workload.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..))]
    appends: u64,
    /// Seconds each throughput workload runs.
    #[arg(long, default_value_t = 5.0)]
    seconds: f64,
    /// Subscriber counts of the fan-out workloads.
    #[arg(long, value_delimiter = ',', default_value = "10,100,1000")]
    fanout: Vec<usize>,
    /// Measured appends per fan-out workload.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..))]
    fanout_appends: u64,
    /// Which workload groups run: latency, throughput, fanout, resume, dispatch.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "latency,throughput,fanout,resume,dispatch"
    )]
    only: Vec<String>,
    /// Measured user messages per dispatch workload (append → worker's first delta).
    #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u64).range(1..))]
    wakes: u64,
    /// A directory on the servers' disk: the harness measures its fsync rate beside the
    /// throughput workloads.
    #[arg(long)]
    fsync_dir: Option<std::path::PathBuf>,
    /// Messages a resuming reader catches up.
    #[arg(long, default_value_t = 100_000, value_parser = clap::value_parser!(u64).range(1..))]
    resume_events: u64,
}

/// One measured figure of one target.
enum Figure {
    Latency(Latency),
    Rate(f64),
    /// A cost in microseconds (lower is better).
    Micros(f64),
    /// The target cannot run this workload (e.g. no WebSocket gateway).
    NotApplicable,
    Failed(String),
}

struct Row {
    workload: String,
    figures: Vec<Figure>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let reference = match &args.reference {
        Some(name) => args
            .targets
            .iter()
            .position(|t| &t.name == name)
            .ok_or_else(|| anyhow::anyhow!("--reference {name} is not a target"))?,
        None => args.targets.len() - 1,
    };
    let seconds = Duration::from_secs_f64(args.seconds);
    let mut rows = Vec::new();

    let runs = |group: &str| args.only.iter().any(|g| g == group);
    for live in [Live::LongPoll, Live::Sse, Live::WebSocket]
        .into_iter()
        .filter(|_| runs("latency"))
    {
        let workload = format!(
            "append → {} read, ms p50 / p90 / p99 / max ({} appends)",
            live.label(),
            args.appends
        );
        rows.push(
            run(&args.targets, workload, live, |t| async move {
                workloads::latency(&t, live, args.appends)
                    .await
                    .map(Figure::Latency)
            })
            .await,
        );
    }
    for (writers, separate, what) in [
        (1, false, "1 writer, 1 session"),
        (16, false, "16 writers, 1 session"),
        (100, true, "100 writers, 100 sessions"),
    ]
    .into_iter()
    .filter(|_| runs("throughput"))
    {
        let workload = format!("appends/s, {what}");
        let cpu = std::sync::Mutex::new(Vec::new());
        let row = run(&args.targets, workload, Live::LongPoll, |t| {
            let cpu = &cpu;
            async move {
                let (rate, per_append) =
                    workloads::throughput(&t, writers, separate, seconds).await?;
                cpu.lock()
                    .expect("cpu figures")
                    .push((t.name.clone(), per_append));
                Ok(Figure::Rate(rate))
            }
        })
        .await;
        rows.push(row);
        // Beside the rate: the server's own CPU per append, where its pid was given.
        let cpu = cpu.into_inner().expect("cpu figures");
        if cpu.iter().any(|(_, us)| us.is_some()) {
            let figures = args
                .targets
                .iter()
                .map(|t| {
                    match cpu
                        .iter()
                        .find(|(name, _)| *name == t.name)
                        .and_then(|(_, us)| *us)
                    {
                        Some(us) => Figure::Micros(us),
                        None => Figure::NotApplicable,
                    }
                })
                .collect();
            rows.push(Row {
                workload: format!("server CPU µs per append, {what}"),
                figures,
            });
        }
    }
    if runs("throughput")
        && let Some(dir) = &args.fsync_dir
    {
        let rate = workloads::fsyncs_per_second(dir, Duration::from_secs(2))?;
        println!(
            "This disk ({}): {rate:.0} write + fdatasync rounds a second, one after another: \
             the most appends/s one connection can get from a server that acknowledges after \
             its own fsync.\n",
            dir.display()
        );
    }
    for live in [Live::WebSocket, Live::Sse]
        .into_iter()
        .filter(|_| runs("fanout"))
    {
        for &subscribers in &args.fanout {
            let workload = format!(
                "fan-out to {subscribers} {} subscribers, ms p50 / p90 / p99 / max",
                live.label()
            );
            rows.push(
                run(&args.targets, workload, live, |t| async move {
                    workloads::fanout(&t, live, subscribers, args.fanout_appends)
                        .await
                        .map(Figure::Latency)
                })
                .await,
            );
        }
    }
    for live in [None, Some(Live::WebSocket)]
        .into_iter()
        .filter(|_| runs("resume"))
    {
        let how = live.map_or("catch-up reads", |_| "WebSocket subscribe");
        let workload = format!(
            "resume {} messages from 0, messages/s ({how})",
            args.resume_events
        );
        rows.push(
            run(
                &args.targets,
                workload,
                live.unwrap_or(Live::LongPoll),
                |t| async move {
                    workloads::resume(&t, live, args.resume_events)
                        .await
                        .map(Figure::Rate)
                },
            )
            .await,
        );
    }

    for webhook in [false, true].into_iter().filter(|_| runs("dispatch")) {
        let how = if webhook { "webhook" } else { "pull-wake" };
        let workload = format!(
            "user append → worker's first delta by {how}, ms p50 / p90 / p99 / max ({} messages)",
            args.wakes
        );
        rows.push(
            run(&args.targets, workload, Live::LongPoll, |t| async move {
                let latency = match webhook {
                    true => wake::webhook(&t, args.wakes).await,
                    false => wake::pull_wake(&t, args.wakes).await,
                };
                latency.map(Figure::Latency)
            })
            .await,
        );
    }

    print_table(&args.targets, reference, &rows);
    Ok(())
}

/// Runs one workload against every target (one after another, so they never compete).
async fn run<F, Fut>(targets: &[Target], workload: String, live: Live, bench: F) -> Row
where
    F: Fn(Target) -> Fut,
    Fut: Future<Output = anyhow::Result<Figure>>,
{
    let mut figures = Vec::new();
    for target in targets {
        if live == Live::WebSocket && !target.websocket {
            figures.push(Figure::NotApplicable);
            continue;
        }
        eprintln!("{workload}: {}", target.name);
        figures.push(match bench(target.clone()).await {
            Ok(figure) => figure,
            Err(e) => {
                eprintln!("  failed: {e:#}");
                Figure::Failed(format!("{e:#}"))
            }
        });
    }
    Row { workload, figures }
}

fn print_table(targets: &[Target], reference: usize, rows: &[Row]) {
    let base = &targets[reference].name;
    let others: Vec<usize> = (0..targets.len()).filter(|&i| i != reference).collect();
    let mut header = vec!["workload".to_owned()];
    header.extend(targets.iter().map(|t| t.name.clone()));
    header.extend(
        others
            .iter()
            .map(|&i| format!("{} ÷ {base}", targets[i].name)),
    );
    println!("| {} |", header.join(" | "));
    println!("|{}", "---|".repeat(header.len()));
    let mut durability = vec!["acknowledged append survives".to_owned()];
    durability.extend(targets.iter().map(|t| t.durability.clone()));
    durability.extend(others.iter().map(|_| String::new()));
    println!("| {} |", durability.join(" | "));
    for row in rows {
        let mut cells = vec![row.workload.clone()];
        cells.extend(row.figures.iter().map(cell));
        cells.extend(
            others
                .iter()
                .map(|&i| ratio(&row.figures[i], &row.figures[reference])),
        );
        println!("| {} |", cells.join(" | "));
    }
    println!();
    println!(
        "Ratios are value ÷ {base}: above 1 is better for rates, below 1 is better for CPU per append and \
         latencies (shown for p50 and p99)."
    );
}

fn cell(figure: &Figure) -> String {
    match figure {
        Figure::Latency(l) => format!(
            "{} / {} / {} / {}",
            ms(l.p50),
            ms(l.p90),
            ms(l.p99),
            ms(l.max)
        ),
        Figure::Rate(rate) => format!("{rate:.0}"),
        Figure::Micros(us) => format!("{us:.1} µs"),
        Figure::NotApplicable => "n/a".to_owned(),
        Figure::Failed(e) => format!("failed: {}", e.lines().next().unwrap_or_default()),
    }
}

fn ratio(figure: &Figure, base: &Figure) -> String {
    match (figure, base) {
        (Figure::Rate(a), Figure::Rate(b)) | (Figure::Micros(a), Figure::Micros(b)) => {
            format!("{:.2}×", a / b)
        }
        (Figure::Latency(a), Figure::Latency(b)) => format!(
            "p50 {:.2}×, p99 {:.2}×",
            a.p50.as_secs_f64() / b.p50.as_secs_f64(),
            a.p99.as_secs_f64() / b.p99.as_secs_f64()
        ),
        _ => String::new(),
    }
}
