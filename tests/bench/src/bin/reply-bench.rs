//! `reply-bench`: tokens per second one Rust SDK reply sustains into a session, and the CPU
//! the agent process spends on it. `tests/bench/sdk.sh` runs it beside the Python SDK's
//! `clients/python/bench/reply_bench.py` against one `agentwire dev`, same arguments; both
//! print one JSON line.

use std::time::{Duration, Instant};

use agentwire_sdk::{Client, Coalesce, Offset};
use anyhow::ensure;
use clap::Parser;
use serde_json::{Value, json};

#[derive(Debug, Parser)]
struct Args {
    #[arg(long, default_value = "http://127.0.0.1:8787")]
    url: String,
    /// Tokens in the reply.
    #[arg(long, default_value_t = 100_000)]
    tokens: usize,
    /// Tokens per second the "model" produces; 0: as fast as the SDK takes them.
    #[arg(long, default_value_t = 0)]
    rate: u64,
    #[arg(long, default_value = "bench-reply")]
    session: String,
}

/// User plus system CPU time of this process.
fn cpu_seconds() -> f64 {
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: getrusage fills the struct it is given.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) };
    let seconds = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    seconds(usage.ru_utime) + seconds(usage.ru_stime)
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let client = Client::new(&args.url, None);
    let session = client.open(&args.session).await?;
    let (cpu0, t0) = (cpu_seconds(), Instant::now());
    let reply = session.reply("r1", Some("u1"), Coalesce::default());
    let tick = (args.rate > 0).then(|| Duration::from_secs_f64(1.0 / args.rate as f64));
    for i in 0..args.tokens {
        reply.delta(format!("tok{} ", i % 10));
        if let Some(tick) = tick {
            // Paced: where the i-th token is due, so sleeps' overshoot does not add up.
            let due = t0 + tick * (i as u32 + 1);
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                tokio::time::sleep(wait).await;
            }
        } else if i % 64 == 0 {
            tokio::task::yield_now().await;
        }
    }
    reply.end(&session).await?;
    let (wall, cpu) = (t0.elapsed().as_secs_f64(), cpu_seconds() - cpu0);
    // Read back to the reply's end (pages from the start; none waits, the end is there).
    let (mut events, mut at) = (Vec::new(), Offset::ZERO);
    while !events
        .iter()
        .any(|(_, e): &(Offset, Value)| e["type"] == "message.end")
    {
        let (page, next) = client.wait_events(&args.session, at).await?;
        ensure!(!page.is_empty(), "the reply's end is not in the session");
        events.extend(page);
        at = next;
    }
    let deltas = events
        .iter()
        .filter(|(_, e)| e["type"] == "message.delta")
        .count();
    let text: usize = events
        .iter()
        .filter_map(|(_, e)| e["data"]["text"].as_str())
        .map(str::len)
        .sum();
    ensure!(
        text == args.tokens * 5,
        "the session holds {text} bytes of text"
    );
    println!(
        "{}",
        json!({"sdk": "rust", "tokens": args.tokens, "rate": args.rate, "seconds": wall,
               "tokens_per_s": args.tokens as f64 / wall, "cpu_s": cpu,
               "cpu_us_per_token": cpu * 1e6 / args.tokens as f64, "appends": deltas + 2})
    );
    Ok(())
}
