//! `eval-bench`: items per second of an eval run against an agent served by dispatch,
//! beside its peer measured in the same run: the same questions posted straight into
//! sessions and their replies awaited (the agent path alone, without archiving, scoring
//! and storing results). `tests/bench/evals.sh` starts agentwire dev and the demo agent.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Parser;
use futures_util::StreamExt;
use serde_json::{Value, json};

#[derive(Debug, Parser)]
struct Args {
    /// agentwire's base URL.
    #[arg(long, default_value = "http://127.0.0.1:8787")]
    url: String,
    /// An admin token of the tenant (none with `agentwire dev --insecure`).
    #[arg(long)]
    token: Option<String>,
    /// Items (questions) per workload.
    #[arg(long, default_value_t = 1000)]
    items: usize,
    /// Questions in flight at once, in both workloads.
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// The prefix the agent's pattern serves (`bench-*`).
    #[arg(long, default_value = "bench-")]
    prefix: String,
}

struct Api {
    http: reqwest::Client,
    url: String,
    token: Option<String>,
}

impl Api {
    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let request = self.http.request(method, format!("{}{path}", self.url));
        match &self.token {
            Some(token) => request.bearer_auth(token),
            None => request,
        }
    }
}

/// Posts one question into a fresh session and waits for a reply to end.
async fn ask(api: &Api, session: &str, question: &str) -> anyhow::Result<()> {
    let events = json!([
        {"type": "message.start", "id": "q", "role": "user"},
        {"type": "message.delta", "id": "q", "data": {"text": question}},
        {"type": "message.end", "id": "q", "role": "user"},
    ]);
    let created = api
        .request(reqwest::Method::PUT, &format!("/v1/stream/{session}"))
        .header("content-type", "application/json")
        .body(events.to_string())
        .send()
        .await?;
    if !created.status().is_success() {
        bail!("creating {session}: {}", created.status());
    }
    let mut offset = "-1".to_owned();
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        let read = api
            .request(
                reqwest::Method::GET,
                &format!("/v1/stream/{session}?offset={offset}&live=long-poll"),
            )
            .send()
            .await?;
        if let Some(next) = read
            .headers()
            .get("stream-next-offset")
            .and_then(|v| v.to_str().ok())
        {
            offset = next.to_owned();
        }
        let events: Value = read.json().await.unwrap_or(Value::Null);
        let replied = events
            .as_array()
            .into_iter()
            .flatten()
            .any(|e| e["type"] == "message.end" && e["role"] != "user" && e["id"] != "q");
        if replied {
            return Ok(());
        }
    }
    bail!("no reply in {session} within 60 s")
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let api = Api {
        http: reqwest::Client::new(),
        url: args.url.trim_end_matches('/').to_owned(),
        token: args.token.clone(),
    };
    let run = format!("{}", std::process::id());
    let question = |i: usize| format!("Tell me about item {i}");

    // The agent path alone.
    let started = Instant::now();
    let asked: Vec<anyhow::Result<()>> = futures_util::stream::iter(0..args.items)
        .map(|i| {
            let (api, session) = (&api, format!("{}raw-{run}-{i}", args.prefix));
            async move { ask(api, &session, &question(i)).await }
        })
        .buffer_unordered(args.concurrency)
        .collect()
        .await;
    let raw = started.elapsed();
    if let Some(Err(e)) = asked.into_iter().find(Result::is_err) {
        return Err(e.context("the agent path alone"));
    }

    // The same questions as an eval run.
    let dataset = format!("bench-{run}");
    let lines: String = (0..args.items)
        .map(|i| format!("{}\n", json!({"id": format!("i{i}"), "input": question(i), "expected": {"facts": [format!("item {i}")]}})))
        .collect();
    let pushed = api
        .request(
            reqwest::Method::PUT,
            &format!("/v1/evals/datasets/{dataset}"),
        )
        .body(lines)
        .send()
        .await?;
    if !pushed.status().is_success() {
        bail!("pushing the dataset: {}", pushed.status());
    }
    let started = Instant::now();
    let created: Value = api
        .request(reqwest::Method::POST, "/v1/evals/runs")
        .json(&json!({
            "dataset": dataset,
            "pattern": format!("{}eval-{run}-*", args.prefix),
            "concurrency": args.concurrency,
            "timeout_ms": 60000,
        }))
        .send()
        .await?
        .json()
        .await?;
    let id = created["run"]["spec"]["id"]
        .as_str()
        .context("no run id")?
        .to_owned();
    let run_state = loop {
        let state: Value = api
            .request(reqwest::Method::GET, &format!("/v1/evals/runs/{id}"))
            .send()
            .await?
            .json()
            .await?;
        match state["run"]["status"].as_str() {
            Some("finished") => break state,
            Some("failed") => bail!("the run failed: {}", state["run"]["error"]),
            _ => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    };
    let eval = started.elapsed();
    let summary = &run_state["run"]["summary"];
    let facts = summary["metrics"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|m| m["name"] == "reference.facts")
        .map(|m| m["mean"].as_f64().unwrap_or(f64::NAN))
        .unwrap_or(f64::NAN);

    let rate = |d: Duration| args.items as f64 / d.as_secs_f64();
    println!(
        "| workload ({} items, {} in flight) | seconds | items/s |",
        args.items, args.concurrency
    );
    println!("|---|---:|---:|");
    println!(
        "| the agent path alone: post the question, await the reply | {:.2} | **{:.1}** |",
        raw.as_secs_f64(),
        rate(raw)
    );
    println!(
        "| `agentwire eval run`: the same, plus archive, score and store each item, then summarise | {:.2} | **{:.1}** |",
        eval.as_secs_f64(),
        rate(eval)
    );
    println!(
        "\nthe eval run: {} answered, {} timed out, {} errors; reference.facts mean {facts:.3}; latency p50 {} ms, p95 {} ms",
        summary["answered"],
        summary["timeouts"],
        summary["errors"],
        summary["latency_p50_ms"],
        summary["latency_p95_ms"]
    );
    Ok(())
}
