//! `agentwire eval`: datasets, runs through the real agent, comparisons and the CI gate,
//! over the evals API of a running deployment (`agentwire dev`, or AWS) with an admin
//! token of the tenant.

use std::time::Duration;

use agentwire_evals::compare::{Comparison, Condition, DEFAULT_MIN_DELTA};
use agentwire_evals::{ItemResult, Run, Status};
use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{Value, json};

#[derive(Debug, Args)]
pub struct EvalArgs {
    #[command(subcommand)]
    command: EvalCommand,

    /// agentwire's base URL.
    #[arg(
        long,
        global = true,
        env = "AGENTWIRE_URL",
        default_value = "http://127.0.0.1:8787"
    )]
    url: String,

    /// An admin token of the tenant for every session (`agentwire token --role admin`; not
    /// needed with `agentwire dev --insecure`).
    #[arg(long, global = true, env = "AGENTWIRE_TOKEN")]
    token: Option<String>,
}

#[derive(Debug, Subcommand)]
enum EvalCommand {
    /// Datasets: upload JSON lines, pick production traces, list.
    #[command(subcommand)]
    Dataset(DatasetCommand),
    /// Run a dataset through the agent serving a pattern (or replay its recorded traces),
    /// show progress, print the summary, and gate on it.
    Run(RunArgs),
    /// The runs, newest first.
    Runs,
    /// Compare two finished runs item by item; with a gate, exit 1 when it fails.
    Compare(CompareArgs),
    /// Save a finished run's report page (HTML with plots) to a file.
    Report {
        run: String,
        /// Where to write it.
        #[arg(long, default_value = "eval-report.html")]
        out: std::path::PathBuf,
    },
}

#[derive(Debug, Subcommand)]
enum DatasetCommand {
    /// Upload a JSON-lines file as the dataset's next version.
    Push {
        name: String,
        file: std::path::PathBuf,
    },
    /// Make the dataset's next version of the tenant's archived traces: by session
    /// pattern, by a score filter, or an annotation queue's graded traces (the graders'
    /// answers become the expected labels).
    #[command(group(clap::ArgGroup::new("pick").required(true).multiple(true).args(["sessions", "queue", "score_name"])))]
    FromTraces {
        name: String,
        /// Sessions whose name matches (`tau-*`).
        #[arg(long)]
        sessions: Option<String>,
        /// Only traces archived on these UTC days (YYYY-MM-DD).
        #[arg(long)]
        day: Vec<String>,
        /// The traces graded in this annotation queue.
        #[arg(long)]
        queue: Option<String>,
        /// Traces with a score record of this name …
        #[arg(long)]
        score_name: Option<String>,
        /// … with this label (e.g. fail) …
        #[arg(long, requires = "score_name")]
        score_label: Option<String>,
        /// … or a value at most this.
        #[arg(long, requires = "score_name")]
        score_max: Option<f64>,
    },
    /// The datasets and their versions.
    List,
}

#[derive(Debug, Args)]
struct Gate {
    /// Fail when this holds for the (second) run: `<measure>.<statistic> <op> <number>`,
    /// e.g. 'reference.facts.mean < 0.8' (statistics: mean, ci_low, ci_high, delta, p,
    /// regressions, improvements, n).
    #[arg(long = "fail-if", value_name = "CONDITION")]
    fail_if: Vec<String>,

    /// Fail when any item regressed on this measure.
    #[arg(long = "fail-if-regressed", value_name = "MEASURE")]
    fail_if_regressed: Vec<String>,

    /// The smallest change of an item's value that counts as a regression or improvement.
    #[arg(long, default_value_t = DEFAULT_MIN_DELTA)]
    min_delta: f64,

    /// Print the comparison as JSON instead of tables.
    #[arg(long)]
    json: bool,
}

impl Gate {
    fn conditions(&self) -> anyhow::Result<Vec<Condition>> {
        let mut conditions = Vec::new();
        for text in &self.fail_if {
            conditions.push(Condition::parse(text).map_err(anyhow::Error::msg)?);
        }
        conditions.extend(
            self.fail_if_regressed
                .iter()
                .map(|m| Condition::Regressed { measure: m.clone() }),
        );
        Ok(conditions)
    }
}

#[derive(Debug, Args)]
struct RunArgs {
    /// The dataset, and optionally its version: `smoke` or `smoke@3`.
    #[arg(long, required_unless_present = "resume")]
    dataset: Option<String>,

    /// The sessions the agent under test serves, with one `*` (each item's session is
    /// named with `<run>-<item>` in its place).
    #[arg(long)]
    pattern: Option<String>,

    /// Score the dataset's recorded traces; no agent runs.
    #[arg(long, conflicts_with = "pattern")]
    replay: bool,

    /// How long each item waits for its reply, in milliseconds.
    #[arg(long, default_value_t = 60_000)]
    timeout_ms: u64,

    /// Items in flight at once.
    #[arg(long, default_value_t = 8)]
    concurrency: usize,

    /// What this run is of (a prompt version, a commit).
    #[arg(long)]
    label: Option<String>,

    /// Carry on this interrupted run instead of starting one (done items are kept).
    #[arg(long, conflicts_with_all = ["dataset", "pattern", "replay"])]
    resume: Option<String>,

    /// Compare with this finished run (the gate then applies to the comparison).
    #[arg(long)]
    baseline: Option<String>,

    #[command(flatten)]
    gate: Gate,
}

#[derive(Debug, Args)]
struct CompareArgs {
    /// The baseline run.
    a: String,
    /// The candidate run (the gate's conditions are about it).
    b: String,
    #[command(flatten)]
    gate: Gate,
}

struct Api {
    http: reqwest::Client,
    url: String,
    token: Option<String>,
}

impl Api {
    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Body>,
    ) -> anyhow::Result<Value> {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.url.trim_end_matches('/')));
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        request = match body {
            Some(Body::Json(value)) => request.json(&value),
            Some(Body::Lines(text)) => request
                .header("content-type", "application/jsonl")
                .body(text),
            None => request,
        };
        let response = request
            .send()
            .await
            .with_context(|| format!("cannot reach {}", self.url))?;
        let status = response.status();
        let value: Value = response.json().await.unwrap_or(Value::Null);
        if !status.is_success() {
            let message = value["error"].as_str().unwrap_or("no message");
            bail!("{status}: {message}");
        }
        Ok(value)
    }

    async fn get(&self, path: &str) -> anyhow::Result<Value> {
        self.call(reqwest::Method::GET, path, None).await
    }

    async fn run(&self, id: &str) -> anyhow::Result<(Run, usize)> {
        let value = self.get(&format!("/v1/evals/runs/{id}")).await?;
        let run: Run = serde_json::from_value(value["run"].clone()).context("not a run")?;
        Ok((run, value["done"].as_u64().unwrap_or(0) as usize))
    }

    async fn items(&self, id: &str) -> anyhow::Result<Vec<ItemResult>> {
        let value = self.get(&format!("/v1/evals/runs/{id}/items")).await?;
        serde_json::from_value(value["items"].clone()).context("not item results")
    }
}

enum Body {
    Json(Value),
    Lines(String),
}

pub async fn run(args: EvalArgs) -> anyhow::Result<()> {
    let api = Api {
        http: reqwest::Client::new(),
        url: args.url.clone(),
        token: args.token.clone(),
    };
    match args.command {
        EvalCommand::Dataset(DatasetCommand::Push { name, file }) => {
            let text = std::fs::read_to_string(&file)
                .with_context(|| format!("cannot read {}", file.display()))?;
            let value = api
                .call(
                    reqwest::Method::PUT,
                    &format!("/v1/evals/datasets/{name}"),
                    Some(Body::Lines(text)),
                )
                .await?;
            say_version(&value);
        }
        EvalCommand::Dataset(DatasetCommand::FromTraces {
            name,
            sessions,
            day,
            queue,
            score_name,
            score_label,
            score_max,
        }) => {
            let mut pick = json!({"sessions": sessions, "days": day, "queue": queue});
            if let Some(score_name) = score_name {
                pick["scores"] =
                    json!({"name": score_name, "label": score_label, "max_value": score_max});
            }
            let value = api
                .call(
                    reqwest::Method::POST,
                    &format!("/v1/evals/datasets/{name}/from-traces"),
                    Some(Body::Json(pick)),
                )
                .await?;
            say_version(&value);
        }
        EvalCommand::Dataset(DatasetCommand::List) => {
            let value = api.get("/v1/evals/datasets").await?;
            for dataset in value["datasets"].as_array().into_iter().flatten() {
                crate::say(format_args!(
                    "{:<24} latest v{}  versions {}",
                    dataset["name"].as_str().unwrap_or_default(),
                    dataset["latest"],
                    dataset["versions"]
                ));
            }
        }
        EvalCommand::Runs => {
            let value = api.get("/v1/evals/runs").await?;
            for run in value["runs"].as_array().into_iter().flatten() {
                let run: Run = serde_json::from_value(run.clone())?;
                crate::say(format_args!(
                    "{}  {:<9} {}@{}  {} items  {}",
                    run.spec.id,
                    run.status.as_str(),
                    run.spec.dataset,
                    run.spec.version,
                    run.items,
                    run.spec.label.as_deref().unwrap_or("")
                ));
            }
        }
        EvalCommand::Run(run_args) => run_eval(&api, run_args).await?,
        EvalCommand::Report { run, out } => {
            let mut request = api.http.get(format!(
                "{}/v1/evals/runs/{run}/report",
                api.url.trim_end_matches('/')
            ));
            if let Some(token) = &api.token {
                request = request.bearer_auth(token);
            }
            let response = request
                .send()
                .await
                .with_context(|| format!("cannot reach {}", api.url))?;
            let status = response.status();
            let body = response.text().await?;
            if !status.is_success() {
                let message = serde_json::from_str::<Value>(&body)
                    .ok()
                    .and_then(|v| v["error"].as_str().map(str::to_owned))
                    .unwrap_or_default();
                bail!("{status}: {message}");
            }
            std::fs::write(&out, body)
                .with_context(|| format!("cannot write {}", out.display()))?;
            crate::say(format_args!(
                "report of run {run} written to {}",
                out.display()
            ));
        }
        EvalCommand::Compare(compare) => {
            let comparison =
                fetch_comparison(&api, &compare.a, &compare.b, compare.gate.min_delta).await?;
            print_comparison(&comparison, &api.url, compare.gate.json);
            apply_gate(&comparison, &compare.gate)?;
        }
    }
    Ok(())
}

fn say_version(value: &Value) {
    crate::say(format_args!(
        "dataset {}@{}: {} items",
        value["dataset"].as_str().unwrap_or_default(),
        value["version"],
        value["items"]
    ));
}

async fn run_eval(api: &Api, args: RunArgs) -> anyhow::Result<()> {
    let conditions = args.gate.conditions()?;
    let id = match &args.resume {
        Some(id) => {
            api.call(
                reqwest::Method::POST,
                &format!("/v1/evals/runs/{id}/resume"),
                None,
            )
            .await?;
            id.clone()
        }
        None => {
            let dataset = args.dataset.as_deref().unwrap_or_default();
            let (name, version) = match dataset.split_once('@') {
                Some((name, v)) => (
                    name,
                    Some(
                        v.parse::<u32>()
                            .with_context(|| format!("{v:?} is not a version number"))?,
                    ),
                ),
                None => (dataset, None),
            };
            if !args.replay && args.pattern.is_none() {
                bail!("give --pattern (the sessions your agent serves, e.g. 'eval-*') or --replay");
            }
            let body = json!({
                "dataset": name,
                "version": version,
                "mode": if args.replay { "replay" } else { "live" },
                "pattern": args.pattern,
                "timeout_ms": args.timeout_ms,
                "concurrency": args.concurrency,
                "label": args.label,
            });
            let value = api
                .call(
                    reqwest::Method::POST,
                    "/v1/evals/runs",
                    Some(Body::Json(body)),
                )
                .await?;
            value["run"]["spec"]["id"]
                .as_str()
                .context("the answer names no run")?
                .to_owned()
        }
    };
    let (mut run, mut done) = api.run(&id).await?;
    eprintln!(
        "run {id}: {}@{} ({} items){}",
        run.spec.dataset,
        run.spec.version,
        run.items,
        if args.resume.is_some() {
            ", resumed"
        } else {
            ""
        }
    );
    let bar = ProgressBar::new(run.items as u64).with_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} items  {elapsed_precise}  eta {eta}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    while matches!(run.status, Status::Queued | Status::Running) {
        bar.set_position(done as u64);
        tokio::time::sleep(Duration::from_millis(250)).await;
        (run, done) = api.run(&id).await?;
    }
    bar.set_position(done as u64);
    bar.finish_and_clear();
    if run.status == Status::Failed {
        bail!(
            "run {id} failed: {}",
            run.error.as_deref().unwrap_or("no reason given")
        );
    }
    print_run(&run);
    eprintln!(
        "report: agentwire eval report {id} (or {}/v1/evals/runs/{id}/report)",
        api.url.trim_end_matches('/')
    );
    let comparison = match &args.baseline {
        Some(baseline) => {
            let comparison = fetch_comparison(api, baseline, &id, args.gate.min_delta).await?;
            print_comparison(&comparison, &api.url, args.gate.json);
            comparison
        }
        None if conditions.is_empty() => return Ok(()),
        None => {
            // A run gated alone is compared with itself: its own figures, no changes.
            let items = api.items(&id).await?;
            agentwire_evals::compare(&run, &items, &run, &items, args.gate.min_delta)
        }
    };
    apply_gate(&comparison, &args.gate)
}

async fn fetch_comparison(
    api: &Api,
    a: &str,
    b: &str,
    min_delta: f64,
) -> anyhow::Result<Comparison> {
    let value = api
        .get(&format!(
            "/v1/evals/compare?a={a}&b={b}&min_delta={min_delta}"
        ))
        .await?;
    serde_json::from_value(value).context("not a comparison")
}

fn apply_gate(comparison: &Comparison, gate: &Gate) -> anyhow::Result<()> {
    let conditions = gate.conditions()?;
    if conditions.is_empty() {
        return Ok(());
    }
    match agentwire_evals::gate(comparison, &conditions) {
        Ok(()) => {
            eprintln!("gate passed ({} conditions)", conditions.len());
            Ok(())
        }
        Err(reason) => {
            eprintln!("{reason}");
            std::process::exit(1);
        }
    }
}

fn figure(value: f64) -> String {
    if value.is_nan() {
        "-".into()
    } else if value.abs() >= 100.0 {
        format!("{value:.0}")
    } else {
        format!("{value:.3}")
    }
}

fn print_run(run: &Run) {
    let Some(summary) = &run.summary else {
        return;
    };
    crate::say(format_args!(
        "run {} of {}@{}: {} items, {} answered, {} timed out, {} errors{}",
        run.spec.id,
        run.spec.dataset,
        run.spec.version,
        run.items,
        summary.answered,
        summary.timeouts,
        summary.errors,
        match (summary.latency_p50_ms, summary.latency_p95_ms) {
            (Some(p50), Some(p95)) => format!("; latency p50 {p50} ms, p95 {p95} ms"),
            _ => String::new(),
        }
    ));
    crate::say(format_args!(
        "{:<36} {:>5} {:>8}  95% CI",
        "measure", "n", "mean"
    ));
    for metric in &summary.metrics {
        crate::say(format_args!(
            "{:<36} {:>5} {:>8}  [{}, {}]{}",
            metric.name,
            metric.n,
            figure(metric.mean),
            figure(metric.ci.low),
            figure(metric.ci.high),
            metric
                .passed
                .map(|p| format!("  {p}/{} pass", metric.n))
                .unwrap_or_default()
        ));
    }
    // A measure that passes (or fails) every item agrees at the base rate: one line for all.
    let (varying, constant): (Vec<_>, Vec<_>) = summary.reward_agreement.iter().partition(|a| {
        a.table[0].iter().sum::<usize>() > 0 && a.table[1].iter().sum::<usize>() > 0
    });
    if let Some(first) = constant.first() {
        let t = first.table;
        crate::say(format_args!(
            "{} measures give every item one verdict: they agree with the recorded reward at its base rate (success in {} of {} items)",
            constant.len(),
            t[0][0] + t[1][0],
            first.n
        ));
    }
    for agreement in varying {
        let t = agreement.table;
        crate::say(format_args!(
            "agreement of {} with the recorded reward: {:.3} over {} items (pass&success {}, pass&failure {}, fail&success {}, fail&failure {})",
            agreement.name, agreement.agreement, agreement.n, t[0][0], t[0][1], t[1][0], t[1][1]
        ));
    }
}

fn print_comparison(comparison: &Comparison, url: &str, as_json: bool) {
    if as_json {
        crate::say(format_args!(
            "{}",
            serde_json::to_string_pretty(comparison).unwrap_or_default()
        ));
        return;
    }
    crate::say(format_args!(
        "compare {} (A) -> {} (B)",
        comparison.a, comparison.b
    ));
    crate::say(format_args!(
        "{:<32} {:>24} {:>24} {:>22} {:>7} {:>5} {:>6}",
        "measure", "A mean [95% CI]", "B mean [95% CI]", "B-A [95% CI]", "p", "worse", "better"
    ));
    for m in &comparison.measures {
        let side = |s: &agentwire_evals::compare::Side| {
            format!(
                "{} [{}, {}]",
                figure(s.mean),
                figure(s.ci.low),
                figure(s.ci.high)
            )
        };
        crate::say(format_args!(
            "{:<32} {:>24} {:>24} {:>22} {:>7} {:>5} {:>6}",
            m.name,
            side(&m.a),
            side(&m.b),
            format!(
                "{} [{}, {}]",
                figure(m.delta),
                figure(m.delta_ci.low),
                figure(m.delta_ci.high)
            ),
            format!("{:.3}", m.p),
            m.regressions.len(),
            m.improvements.len()
        ));
    }
    let link = |trace: &Option<String>| {
        trace
            .as_deref()
            .map(|t| format!("{}/v1/traces/{t}/scores", url.trim_end_matches('/')))
            .unwrap_or_else(|| "-".into())
    };
    for m in comparison
        .measures
        .iter()
        .filter(|m| !m.regressions.is_empty())
    {
        crate::say(format_args!("regressions of {}:", m.name));
        for change in &m.regressions {
            crate::say(format_args!(
                "  {:<24} {} -> {}   A {}   B {}",
                change.item,
                figure(change.a),
                figure(change.b),
                link(&change.a_trace),
                link(&change.b_trace)
            ));
        }
    }
    for m in comparison
        .measures
        .iter()
        .filter(|m| !m.improvements.is_empty())
    {
        crate::say(format_args!(
            "improvements of {}: {}",
            m.name,
            m.improvements
                .iter()
                .map(|c| c.item.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
}
