//! `agentwire-quality judge-bench --traces DIR`: the judge's throughput and its overhead per
//! trace, against a local server speaking the OpenAI chat-completions protocol
//! (`agentwire_judge::fake::FakeModel`, answering at once), beside the peer measured in the
//! same run: the same requests sent straight through the endpoint, without the judge. The
//! difference is what the judge itself costs per trace: redaction, the prompt, the budget's
//! reservation and settlement, checking the verdict and making its records.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use agentwire_grading::{Criterion, Rubric, Scale};
use agentwire_judge::budget::MemoryLedger;
use agentwire_judge::config::JudgeConfig;
use agentwire_judge::fake::{FakeModel, Script};
use agentwire_judge::judge::{Case, Judge, Outcome};
use agentwire_judge::openai::OpenAiEndpoint;
use agentwire_judge::{ChatRequest, ModelEndpoint, Resilient, RetryPolicy};
use agentwire_scoring::{ScoringConfig, TraceView};
use agentwire_trace::decode_jsonl_gz;
use anyhow::Context;

#[derive(clap::Args)]
pub struct Args {
    /// An archive directory (`traces/dt=…/tenant=…/*.jsonl.gz` under it).
    #[arg(long)]
    traces: PathBuf,
    /// Traces judged per run (the first N).
    #[arg(long, default_value_t = 500)]
    limit: usize,
    /// Calls in flight, one run each.
    #[arg(long, value_delimiter = ',', default_value = "1,16")]
    concurrency: Vec<usize>,
    /// Rounds of each (judge and peer alternating); the best is reported.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
}

fn rubric() -> Rubric {
    let criterion = |key: &str, scale: Scale| Criterion {
        key: key.into(),
        title: key.into(),
        guidance: "Judge against the retrieved passages.".into(),
        scale,
        justification_required: false,
        scorers: Vec::new(),
    };
    Rubric {
        name: "answers".into(),
        version: 1,
        title: "Answer quality".into(),
        criteria: vec![
            criterion("grounded", Scale::PassFail),
            criterion(
                "helpful",
                Scale::Ordinal {
                    anchors: vec!["no".into(), "partly".into(), "yes".into()],
                },
            ),
        ],
    }
}

pub fn run(args: &Args) -> anyhow::Result<()> {
    let options = ScoringConfig::default().view_options();
    let mut views = Vec::new();
    for path in crate::archive::trace_files(&args.traces)?
        .into_iter()
        .take(args.limit)
    {
        let body = std::fs::read(&path).with_context(|| path.display().to_string())?;
        let spans =
            decode_jsonl_gz(&body).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        views.push(TraceView::from_spans(&spans, &options).map_err(|e| anyhow::anyhow!("{e}"))?);
    }
    anyhow::ensure!(
        !views.is_empty(),
        "no traces under {}",
        args.traces.display()
    );
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async {
        let model = FakeModel::start(Script::answer_with(|_| {
            serde_json::json!({"criteria": {
                "grounded": {"value": "pass", "explanation": "every claim is in passage 1"},
                "helpful": {"value": "3", "explanation": "answers the question"},
            }})
        }))
        .await;
        println!(
            "| calls in flight | judge: traces/s | endpoint alone: calls/s | judge µs/trace | endpoint µs/call | judge's own µs/trace |"
        );
        println!("|---:|---:|---:|---:|---:|---:|");
        for &concurrency in &args.concurrency {
            let (mut judge_s, mut raw_s) = (Duration::MAX, Duration::MAX);
            for _ in 0..args.rounds.max(1) {
                let (judged, requests) = judge_run(&model, &views, concurrency).await?;
                judge_s = judge_s.min(judged);
                raw_s = raw_s.min(raw_run(&model, &requests, concurrency).await?);
            }
            let n = views.len() as f64;
            let per = |d: Duration| d.as_secs_f64() * 1e6 / n;
            println!(
                "| {concurrency} | {:.0} | {:.0} | {:.0} | {:.0} | {:.0} |",
                n / judge_s.as_secs_f64(),
                n / raw_s.as_secs_f64(),
                per(judge_s),
                per(raw_s),
                per(judge_s).max(per(raw_s)) - per(raw_s),
            );
        }
        println!(
            "\n{} RAGTruth traces per run, best of {} rounds, a two-criterion rubric, structured json_schema replies; the server answers at once, so the figures are the judge's and the HTTP round trip's cost, not a model's.",
            views.len(),
            args.rounds.max(1)
        );
        Ok(())
    })
}

fn endpoint(model: &FakeModel, concurrency: usize) -> anyhow::Result<Arc<dyn ModelEndpoint>> {
    let inner = OpenAiEndpoint::new(&model.base_url(), None).map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(Arc::new(Resilient::new(
        Arc::new(inner),
        RetryPolicy::default(),
        concurrency,
    )))
}

/// Judges every view once (no cache, every trace sampled); returns the time and the
/// requests the judge sent, for the peer to replay.
async fn judge_run(
    model: &FakeModel,
    views: &[TraceView],
    concurrency: usize,
) -> anyhow::Result<(Duration, Vec<serde_json::Value>)> {
    let config = JudgeConfig::parse(&format!(
        "[endpoint]\nkind = \"openai\"\nbase_url = \"{}\"\nmodel = \"m\"\nconcurrency = {concurrency}\n[budget]\ndaily_tokens = 1000000000000\n[[rubric]]\nname = \"answers\"\nsample = 1.0\n",
        model.base_url()
    ))
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    let settings = config.rubric[0].clone();
    let judge = Judge::new(
        "bench",
        config,
        endpoint(model, concurrency)?,
        Arc::new(MemoryLedger::default()),
    )
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    let rubric = rubric();
    let before = model.requests();
    let threshold = |_: &str| 0.5;
    let started = Instant::now();
    let judgements =
        futures_util::future::join_all(views.chunks(views.len().div_ceil(concurrency)).map(
            |chunk| {
                let (judge, rubric, settings, threshold) = (&judge, &rubric, &settings, &threshold);
                async move {
                    let mut out = Vec::new();
                    for view in chunk {
                        let case = Case {
                            view,
                            code: &[],
                            judged: &[],
                            threshold,
                        };
                        out.push(
                            judge
                                .judge(&case, rubric, settings, &[], 0)
                                .await
                                .map(|j| j.outcome),
                        );
                    }
                    out
                }
            },
        ))
        .await;
    let elapsed = started.elapsed();
    let judged = judgements
        .iter()
        .flatten()
        .filter(|o| matches!(o, Ok(Outcome::Judged)))
        .count();
    anyhow::ensure!(judged == views.len(), "{judged} of {} judged", views.len());
    let requests = model.received()[before..].to_vec();
    Ok((elapsed, requests))
}

/// The judge's requests sent again straight through the endpoint.
async fn raw_run(
    model: &FakeModel,
    requests: &[serde_json::Value],
    concurrency: usize,
) -> anyhow::Result<Duration> {
    let endpoint = endpoint(model, concurrency)?;
    let requests: Vec<ChatRequest> = requests
        .iter()
        .map(|body| ChatRequest {
            model: "m".into(),
            messages: serde_json::from_value(body["messages"].clone()).unwrap_or_default(),
            max_tokens: 1024,
            temperature: 0.0,
            schema: body["response_format"]["json_schema"]["schema"].clone(),
            schema_name: "verdict".into(),
            structured: agentwire_judge::Structured::JsonSchema,
            stream: false,
        })
        .collect();
    let started = Instant::now();
    let results =
        futures_util::future::join_all(requests.chunks(requests.len().div_ceil(concurrency)).map(
            |chunk| {
                let endpoint = &endpoint;
                async move {
                    let mut ok = 0usize;
                    for request in chunk {
                        ok += usize::from(endpoint.complete(request).await.is_ok());
                    }
                    ok
                }
            },
        ))
        .await;
    let elapsed = started.elapsed();
    let ok: usize = results.iter().sum();
    anyhow::ensure!(
        ok == requests.len(),
        "{ok} of {} calls answered",
        requests.len()
    );
    Ok(elapsed)
}
