//! `agentwire judge`: judges archived traces offline against a rubric through a model
//! endpoint, as the judge job does: sampled, redacted, within a budget, with a progress
//! bar. The judgements (outcome, tokens, records) are written as JSON lines; running again
//! with the same `--out` reuses its verdicts (the cache), so nothing is judged twice.

use std::collections::HashMap;
use std::io::{BufRead, BufWriter, Write};
use std::path::PathBuf;
use std::sync::Arc;

use agentwire_grading::rubric::Rubric;
use agentwire_judge::budget::MemoryLedger;
use agentwire_judge::config::{
    BudgetConfig, EndpointConfig, EndpointKind, JudgeConfig, PromptConfig, RedactionConfig,
    RubricConfig,
};
use agentwire_judge::judge::{Case, Judge, Judgement, Outcome};
use agentwire_judge::openai::OpenAiEndpoint;
use agentwire_judge::{BudgetLedger, Resilient, Structured};
use agentwire_scoring::scorers::latency_cost::Price;
use agentwire_scoring::scorers::rules::PiiKind;
use agentwire_scoring::{ScoreRecord, Scoring, ScoringConfig, Source};
use agentwire_session::{Clock, SystemClock};
use anyhow::{Context, bail};
use clap::Args;
use futures_util::StreamExt;
use indicatif::{ProgressBar, ProgressStyle};

#[derive(Debug, Args)]
pub struct JudgeArgs {
    /// Traces in the archive layout (as `agentwire import --out` writes them), or one file.
    #[arg(long)]
    traces: PathBuf,

    /// The rubric, as JSON (the body the grading API stores).
    #[arg(long)]
    rubric: PathBuf,

    /// An OpenAI-compatible API's base URL (the part before `/chat/completions`).
    #[arg(long, required_unless_present = "judge_config")]
    endpoint: Option<String>,

    /// The model to ask.
    #[arg(long, required_unless_present = "judge_config")]
    model: Option<String>,

    /// The environment variable holding the API key, if the endpoint needs one.
    #[arg(long)]
    api_key_env: Option<String>,

    /// A whole `judge.toml` instead of the endpoint, budget and redaction flags (its first
    /// `[[rubric]]`'s sampling applies unless --sample is given).
    #[arg(long, conflicts_with_all = ["endpoint", "model", "api_key_env", "budget_usd", "budget_tokens", "price_in", "price_out", "structured", "stream", "concurrency"])]
    judge_config: Option<PathBuf>,

    /// The share of traces judged, picked by trace id (flagged ones always).
    #[arg(long)]
    sample: Option<f64>,

    /// Score record names whose failing verdicts mean a trace is always judged
    /// (comma-separated; `rules.*` matches a prefix).
    #[arg(long, value_delimiter = ',')]
    always_if_flagged: Vec<String>,

    /// The spend cap of this run, in US dollars (needs --price-in and --price-out).
    #[arg(long, requires_all = ["price_in", "price_out"])]
    budget_usd: Option<f64>,

    /// The spend cap of this run, in tokens.
    #[arg(long)]
    budget_tokens: Option<u64>,

    /// USD per million input tokens of the model.
    #[arg(long)]
    price_in: Option<f64>,

    /// USD per million output tokens of the model.
    #[arg(long)]
    price_out: Option<f64>,

    /// How the verdict's structure is asked for: json_schema, tool, json_object or none.
    #[arg(long, default_value = "json_schema", value_parser = structured)]
    structured: Option<Structured>,

    /// Ask for streamed replies.
    #[arg(long)]
    stream: bool,

    /// Calls in flight at once.
    #[arg(long, default_value_t = 4)]
    concurrency: usize,

    /// PII masked before sending (comma-separated: email, phone, card, iban); `none` sends
    /// the text as it is.
    #[arg(long, value_delimiter = ',', default_value = "email,phone,card,iban")]
    mask: Vec<String>,

    /// The deterministic scorers' configuration, for the strata (defaults without it).
    #[arg(long)]
    config: Option<PathBuf>,

    /// The tenant of traces whose path does not name one.
    #[arg(long, default_value = "local", value_parser = crate::token::tenant)]
    tenant: String,

    /// Where the judgements go, one JSON object per line; verdicts already in it are reused.
    #[arg(long)]
    out: PathBuf,
}

fn structured(text: &str) -> Result<Structured, String> {
    serde_json::from_value(serde_json::Value::String(text.to_owned()))
        .map_err(|_| format!("`{text}`: expected json_schema, tool, json_object or none"))
}

pub async fn run(args: JudgeArgs) -> anyhow::Result<()> {
    let rubric: Rubric = {
        let text = std::fs::read_to_string(&args.rubric)
            .with_context(|| format!("cannot read {}", args.rubric.display()))?;
        serde_json::from_str(&text)
            .with_context(|| format!("{}: not a rubric", args.rubric.display()))?
    };
    rubric
        .validate()
        .map_err(|e| anyhow::anyhow!("{}: {e}", args.rubric.display()))?;
    let mut config = judge_config(&args, &rubric.name)?;
    let mut settings = config
        .rubric
        .first()
        .cloned()
        .unwrap_or_else(|| RubricConfig {
            name: rubric.name.clone(),
            version: None,
            sample: 1.0,
            always_if_flagged: Vec::new(),
            near_threshold: 0.1,
            few_shot: 0,
            prompt: None,
            variant: Vec::new(),
        });
    if let Some(sample) = args.sample {
        settings.sample = sample;
    }
    if !args.always_if_flagged.is_empty() {
        settings.always_if_flagged = args.always_if_flagged.clone();
    }
    settings.name = rubric.name.clone();
    config.rubric = vec![settings.clone()];
    // The same checks a tenant's file gets.
    config
        .validate()
        .map_err(|e| match e.field.strip_prefix("rubric[0].") {
            // The rubric's settings came from flags: name the flag.
            Some(flag) => anyhow::anyhow!("--{}: {}", flag.replace('_', "-"), e.message),
            None => anyhow::anyhow!("{e}"),
        })?;
    if config.endpoint.kind != EndpointKind::Openai {
        bail!(
            "agentwire judge calls OpenAI-compatible endpoints; Bedrock runs in the judge function on AWS"
        );
    }

    let scoring = match &args.config {
        None => Scoring::new(ScoringConfig::default()),
        Some(path) => Scoring::parse(
            &std::fs::read_to_string(path)
                .with_context(|| format!("cannot read {}", path.display()))?,
        ),
    }
    .map_err(|e| anyhow::anyhow!("scoring configuration: {e}"))?;

    let files = crate::score::trace_files(&args.traces, &args.tenant)?;
    if files.is_empty() {
        bail!(
            "{}: no trace files (*.jsonl.gz) found",
            args.traces.display()
        );
    }
    let cache = read_cache(&args.out)?;

    let api_key = match &config.endpoint.api_key_env {
        None => None,
        Some(var) => Some(
            std::env::var(var).with_context(|| format!("environment variable {var} is not set"))?,
        ),
    };
    let base = config.endpoint.base_url.clone().unwrap_or_default();
    let endpoint =
        OpenAiEndpoint::new(&base, api_key).map_err(|e| anyhow::anyhow!("--endpoint: {e}"))?;
    let endpoint = Arc::new(Resilient::new(
        Arc::new(endpoint),
        config.endpoint.retry_policy(),
        config.endpoint.concurrency,
    ));
    let ledger = Arc::new(MemoryLedger::default());
    let concurrency = config.endpoint.concurrency;
    let judge = Judge::new(&args.tenant, config, endpoint, ledger.clone())
        .map_err(|e| anyhow::anyhow!("{e}"))?;

    let progress = ProgressBar::new(files.len() as u64).with_style(
        ProgressStyle::with_template(
            "{spinner} judging [{bar:30}] {pos}/{len} traces, {per_sec}, eta {eta} {msg}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    let now_ms = SystemClock.now_ms();
    let threshold = |name: &str| scoring.config().threshold(name).unwrap_or(0.5);
    let started = std::time::Instant::now();
    let results: Vec<(usize, Result<Judgement, String>)> =
        futures_util::stream::iter(files.iter().enumerate())
            .map(|(i, file)| {
                let (scoring, judge, rubric, settings, cache, threshold, progress) = (
                    &scoring, &judge, &rubric, &settings, &cache, &threshold, &progress,
                );
                async move {
                    let result = match crate::score::view_of(scoring, file) {
                        Err(e) => Err(e),
                        Ok(view) => {
                            let code = scoring.score_view(&view, now_ms);
                            let judged = cache.get(&view.trace_id).cloned().unwrap_or_default();
                            let case = Case {
                                view: &view,
                                code: &code,
                                judged: &judged,
                                threshold,
                            };
                            judge
                                .judge(&case, rubric, settings, &[], now_ms)
                                .await
                                .map_err(|e| e.to_string())
                        }
                    };
                    progress.inc(1);
                    (i, result)
                }
            })
            .buffer_unordered(concurrency.max(1) * 2)
            .collect()
            .await;
    progress.finish_and_clear();
    let mut results = results;
    results.sort_by_key(|(i, _)| *i);

    let file = std::fs::File::create(&args.out)
        .with_context(|| format!("cannot create {}", args.out.display()))?;
    let mut out = BufWriter::new(file);
    let mut counts: std::collections::BTreeMap<String, usize> = Default::default();
    let (mut input, mut output) = (0u64, 0u64);
    for (i, result) in &results {
        match result {
            Ok(judgement) => {
                let key = match &judgement.outcome {
                    Outcome::Invalid(_) => "invalid".to_owned(),
                    Outcome::Failed(_) => "failed".to_owned(),
                    other => other.to_string(),
                };
                *counts.entry(key).or_default() += 1;
                if let Some(usage) = judgement.usage {
                    input += usage.input_tokens;
                    output += usage.output_tokens;
                }
                serde_json::to_writer(&mut out, judgement)?;
                out.write_all(b"\n")?;
            }
            Err(e) => {
                *counts.entry("not a trace".into()).or_default() += 1;
                let path = files
                    .get(*i)
                    .map_or_else(String::new, |f| f.path.display().to_string());
                eprintln!("skipped {path}: {e}");
            }
        }
    }
    out.flush()?;
    let spent = ledger
        .spent(&args.tenant, &agentwire_trace::utc_day(now_ms))
        .await?;
    let summary: Vec<String> = counts.iter().map(|(k, n)| format!("{n} {k}")).collect();
    eprintln!(
        "{} traces in {:.1} s: {}; {input} input and {output} output tokens reported, {} tokens and ${:.4} counted against the budget",
        results.len(),
        started.elapsed().as_secs_f64(),
        summary.join(", "),
        spent.tokens,
        spent.micro_usd as f64 / 1e6,
    );
    Ok(())
}

/// The judge records of an earlier run's `--out`, by trace id.
fn read_cache(path: &std::path::Path) -> anyhow::Result<HashMap<String, Vec<ScoreRecord>>> {
    let mut cache: HashMap<String, Vec<ScoreRecord>> = HashMap::new();
    let Ok(file) = std::fs::File::open(path) else {
        return Ok(cache);
    };
    for (n, line) in std::io::BufReader::new(file).lines().enumerate() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let value: serde_json::Value = serde_json::from_str(&line)
            .with_context(|| format!("{}: line {}: not a judgement", path.display(), n + 1))?;
        let records: Vec<ScoreRecord> =
            serde_json::from_value(value["records"].clone()).unwrap_or_default();
        for record in records.into_iter().filter(|r| r.source == Source::Judge) {
            cache
                .entry(record.trace_id.clone())
                .or_default()
                .push(record);
        }
    }
    Ok(cache)
}

/// The run's configuration: a `judge.toml`, or the flags.
fn judge_config(args: &JudgeArgs, rubric: &str) -> anyhow::Result<JudgeConfig> {
    if let Some(path) = &args.judge_config {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let mut config =
            JudgeConfig::parse(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        config.rubric.retain(|r| r.name == rubric);
        return Ok(config);
    }
    let model = args.model.clone().unwrap_or_default();
    let mut prices = std::collections::BTreeMap::new();
    if let (Some(input), Some(output)) = (args.price_in, args.price_out) {
        prices.insert(
            model.clone(),
            Price {
                input_per_million: input,
                output_per_million: output,
            },
        );
    }
    let mask = if args.mask.iter().any(|m| m == "none") {
        Vec::new()
    } else {
        args.mask
            .iter()
            .map(|m| {
                PiiKind::ALL
                    .into_iter()
                    .find(|k| k.id() == m)
                    .ok_or_else(|| {
                        anyhow::anyhow!(
                            "--mask: `{m}` is not one of email, phone, card, iban, none"
                        )
                    })
            })
            .collect::<anyhow::Result<_>>()?
    };
    let endpoint: EndpointConfig = serde_json::from_value(serde_json::json!({
        "kind": "openai",
        "base_url": args.endpoint,
        "model": model,
        "api_key_env": args.api_key_env,
        "structured": args.structured.unwrap_or_default(),
        "stream": args.stream,
        "concurrency": args.concurrency,
    }))?;
    let config = JudgeConfig {
        endpoint,
        budget: BudgetConfig {
            daily_tokens: args.budget_tokens,
            daily_usd: args.budget_usd,
        },
        prices,
        redaction: RedactionConfig { send: true, mask },
        prompt: PromptConfig::default(),
        rubric: Vec::new(),
    };
    config.validate().map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(config)
}
