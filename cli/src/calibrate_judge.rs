//! `agentwire calibrate --judge`: compares a rubric's prompts (the built-in one and its
//! `[[rubric.variant]]`s) on graded items held back from the few-shot examples, and sets
//! `prompt` in `judge.toml` to the one that agrees best with the experts, only when it
//! beats the current one there.
//!
//! Two sources, as for a scorer: `agentwire dev`'s data directory (the grades of the
//! rubric's queues, the traces and the tenant's `judge.toml` in its archive, where the
//! choice is written; calls count against the tenant's daily budget), or files (grades as
//! JSON lines, traces in the archive layout, a `judge.toml` and `--out`).

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;

use agentwire_grading::rubric::Rubric;
use agentwire_grading::{Answer, GradingStore};
use agentwire_judge::budget::{BudgetLedger, MemoryLedger};
use agentwire_judge::calibrate::{self, Comparison, ExpertGrade, GradedTrace, Trial};
use agentwire_judge::config::{EndpointKind, JudgeConfig, RubricConfig};
use agentwire_judge::job::{Endpoints, OpenAiEndpoints, judge_config_key};
use agentwire_judge::judge::Judge;
use agentwire_scoring::{Scoring, ScoringConfig, TraceView};
use agentwire_session::{Clock, SystemClock};
use agentwire_trace::TraceArchive;
use anyhow::{Context, bail};
use indicatif::{ProgressBar, ProgressStyle};

use crate::calibrate::CalibrateArgs;

/// What the comparison runs on, from either source.
struct Source {
    /// The `judge.toml` as written, and parsed.
    text: String,
    config: JudgeConfig,
    rubric: Rubric,
    items: Vec<GradedTrace>,
    /// Graded items whose trace was not found.
    missing: usize,
    /// Where the grades came from, for the report and the file's comment.
    from: String,
    ledger: Arc<dyn BudgetLedger>,
    /// Where the new `judge.toml` goes.
    target: Target,
}

/// A graded trace as the store has it: where to find it, and each grader's latest grade.
struct Graded {
    session: String,
    graded_ms: i64,
    by_grader: BTreeMap<String, (i64, ExpertGrade)>,
}

enum Target {
    Archive(agentwire_fs::DirTraceArchive, String),
    File(std::path::PathBuf),
    Nowhere,
}

#[derive(serde::Serialize)]
struct Report<'a> {
    from: &'a str,
    items: usize,
    missing_traces: usize,
    #[serde(flatten)]
    comparison: &'a Comparison,
    written: Option<String>,
}

pub async fn run(args: &CalibrateArgs) -> anyhow::Result<()> {
    let mut source = match &args.grades {
        Some(grades) => from_files(args, grades)?,
        None => from_data_dir(args).await?,
    };
    let settings = settings_of(&source.config, args.rubric.as_deref())?;
    if source.config.endpoint.kind != EndpointKind::Openai {
        bail!(
            "agentwire calibrate calls OpenAI-compatible endpoints; a Bedrock judge is calibrated through an OpenAI-compatible gateway to the same model"
        );
    }
    if source.rubric.name != settings.name
        || settings.version.is_some_and(|v| v != source.rubric.version)
    {
        bail!(
            "the rubric is {}@{}, but the [[rubric]] of judge.toml is `{}`{}: they must be the same rubric",
            source.rubric.name,
            source.rubric.version,
            settings.name,
            settings
                .version
                .map(|v| format!("@{v}"))
                .unwrap_or_default()
        );
    }
    let candidates = calibrate::candidates(&settings, &args.candidates)?;
    if candidates.len() < 2 {
        if settings.variant.is_empty() {
            bail!(
                "rubric `{}` has no prompt to compare with its current one: add a [[rubric.variant]] to judge.toml",
                settings.name
            );
        }
        bail!(
            "--candidates names only the current prompt `{}`: name another",
            candidates[0].name
        );
    }
    let endpoint = OpenAiEndpoints
        .endpoint(&args.tenant, &source.config.endpoint)
        .await
        .map_err(|e| anyhow::anyhow!("endpoint: {e}"))?;
    let judge = Judge::new(
        &args.tenant,
        source.config.clone(),
        endpoint,
        source.ledger.clone(),
    )
    .map_err(|e| anyhow::anyhow!("{e}"))?;

    let held = source
        .items
        .iter()
        .filter(|t| calibrate::is_held_back(&t.view.trace_id, args.holdout))
        .count();
    let calls = held * candidates.len();
    let progress = ProgressBar::new(calls as u64).with_style(
        ProgressStyle::with_template(
            "{spinner} judging [{bar:30}] {pos}/{len} (held-back items × prompts), eta {eta}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    if args.json {
        progress.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    let trial = Trial {
        judge: &judge,
        rubric: &source.rubric,
        settings: &settings,
        holdout_share: args.holdout,
        now_ms: SystemClock.now_ms(),
    };
    let tick = || progress.inc(1);
    let comparison = calibrate::compare(&trial, &candidates, &source.items, &tick).await?;
    progress.finish_and_clear();

    let written = if comparison.improves {
        write(&mut source, &comparison).await?
    } else {
        None
    };
    let report = Report {
        from: &source.from,
        items: source.items.len(),
        missing_traces: source.missing,
        comparison: &comparison,
        written,
    };
    if args.json {
        crate::say(format_args!("{}", serde_json::to_string(&report)?));
    } else {
        print(&report);
    }
    Ok(())
}

/// The `[[rubric]]` named, or the only one.
fn settings_of(config: &JudgeConfig, name: Option<&str>) -> anyhow::Result<RubricConfig> {
    let names = || {
        config
            .rubric
            .iter()
            .map(|r| r.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    match name {
        Some(name) => config
            .rubric
            .iter()
            .find(|r| r.name == name)
            .cloned()
            .with_context(|| {
                format!(
                    "judge.toml has no [[rubric]] `{name}` (it has: {})",
                    names()
                )
            }),
        None => match config.rubric.as_slice() {
            [only] => Ok(only.clone()),
            [] => bail!("judge.toml has no [[rubric]]"),
            _ => bail!(
                "judge.toml has several rubrics ({}): name one with --rubric",
                names()
            ),
        },
    }
}

fn show(kappa: Option<f64>) -> String {
    kappa.map_or_else(|| "undefined".into(), |k| format!("{k:.3}"))
}

fn print(report: &Report<'_>) {
    let c = report.comparison;
    crate::say(format_args!(
        "{}@{} from {}: {} graded items ({} without a trace), {} held back ({:.0} %), {} examples from the other {}; {} compared on {}",
        c.rubric,
        c.rubric_version,
        report.from,
        report.items,
        report.missing_traces,
        c.held_back,
        c.holdout_share * 100.0,
        c.examples,
        c.tuned_on,
        c.compared_on,
        c.criteria_compared.join(", "),
    ));
    let width = c
        .candidates
        .iter()
        .map(|r| r.name.len())
        .max()
        .unwrap_or(7)
        .max(7);
    crate::say(format_args!(
        "  {:width$}  {:>9}  {:>6}  {:>7}  {:>10}  {:>11}  criteria",
        "prompt", "kappa", "valid", "invalid", "in tokens", "out tokens"
    ));
    for r in &c.candidates {
        let criteria: Vec<String> = r
            .criteria
            .iter()
            .map(|k| format!("{} {}", k.criterion, show(k.kappa.value)))
            .collect();
        let mark = match (r.name == c.current, r.name == c.best, r.eligible) {
            (true, true, _) => " (current, kept)",
            (true, false, _) => " (current)",
            (false, true, _) => " (best)",
            (false, false, false) => " (not eligible: more invalid verdicts than the current)",
            _ => "",
        };
        crate::say(format_args!(
            "  {:width$}  {:>9}  {:>6}  {:>7}  {:>10}  {:>11}  {}{mark}",
            r.name,
            show(r.mean_kappa),
            r.judged,
            r.invalid,
            r.usage.input_tokens,
            r.usage.output_tokens,
            criteria.join(", "),
        ));
    }
    match (&report.written, c.improves) {
        (Some(at), _) => crate::say(format_args!(
            "`{}` agrees better with the experts on the held-back items: prompt = \"{}\" written to {at}",
            c.best, c.best
        )),
        (None, true) => crate::say(format_args!(
            "`{}` agrees better with the experts on the held-back items; give --out to write it",
            c.best
        )),
        (None, false) => crate::say(format_args!(
            "no prompt agrees better than the current `{}` on the held-back items: nothing written",
            c.current
        )),
    }
}

/// The new `judge.toml`: the winner set, under a comment saying how it came.
async fn write(source: &mut Source, c: &Comparison) -> anyhow::Result<Option<String>> {
    let kappa = |name: &str| show(c.candidate(name).and_then(|r| r.mean_kappa));
    let header = format!(
        "# {}: prompt {} -> {} by `agentwire calibrate --judge` on {} ({} held-back items: mean kappa {} -> {})\n",
        c.rubric,
        c.current,
        c.best,
        source.from,
        c.compared_on,
        kappa(&c.current),
        kappa(&c.best),
    );
    let text = JudgeConfig::with_prompt(&source.text, &c.rubric, &c.best)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    // The last calibration of this rubric replaces the one before it at the top.
    let earlier = format!("# {}: prompt ", c.rubric);
    let mut rest = text.as_str();
    while let Some(line) = rest.lines().next()
        && line.starts_with(&earlier)
        && line.contains("`agentwire calibrate --judge`")
    {
        rest = rest[line.len()..].strip_prefix('\n').unwrap_or_default();
    }
    let text = format!("{header}{rest}");
    match &source.target {
        Target::Nowhere => Ok(None),
        Target::File(path) => {
            std::fs::write(path, &text)
                .with_context(|| format!("cannot write {}", path.display()))?;
            Ok(Some(path.display().to_string()))
        }
        Target::Archive(archive, key) => {
            archive.put(key, text.into_bytes().into()).await?;
            Ok(Some(key.clone()))
        }
    }
}

fn read(path: &Path) -> anyhow::Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))
}

fn parse_judge(text: &str, at: &str) -> anyhow::Result<JudgeConfig> {
    JudgeConfig::parse(text).map_err(|e| anyhow::anyhow!("{at}: {e}"))
}

fn from_files(args: &CalibrateArgs, grades: &Path) -> anyhow::Result<Source> {
    let need = |what: &str| anyhow::anyhow!("--judge with --grades needs {what}");
    let config_path = args
        .judge_config
        .as_ref()
        .ok_or_else(|| need("--judge-config"))?;
    let rubric_path = args
        .rubric_file
        .as_ref()
        .ok_or_else(|| need("--rubric-file"))?;
    let traces = args.traces.as_ref().ok_or_else(|| need("--traces"))?;
    let text = read(config_path)?;
    let config = parse_judge(&text, &config_path.display().to_string())?;
    let rubric: Rubric = serde_json::from_str(&read(rubric_path)?)
        .with_context(|| format!("{}: not a rubric", rubric_path.display()))?;
    rubric
        .validate()
        .map_err(|e| anyhow::anyhow!("{}: {e}", rubric_path.display()))?;
    let scoring = scoring_of(args.config.as_deref().map(read).transpose()?)?;

    let mut by_item: BTreeMap<String, BTreeMap<String, BTreeMap<String, Answer>>> = BTreeMap::new();
    #[derive(serde::Deserialize)]
    struct Row {
        item: String,
        grader: String,
        criterion: String,
        value: String,
        #[serde(default)]
        justification: Option<String>,
    }
    for (n, line) in crate::calibrate::read_lines(grades)? {
        let at = || format!("{}: line {n}", grades.display());
        let row: Row = serde_json::from_str(&line).with_context(|| {
            format!(
                "{}: not a grade {{item, grader, criterion, value, justification}}",
                at()
            )
        })?;
        let Some(criterion) = rubric.criterion(&row.criterion) else {
            continue;
        };
        if criterion.scale.code(&row.value).is_none() {
            bail!(
                "{}: `{}` is not on criterion `{}`'s scale ({})",
                at(),
                row.value,
                criterion.key,
                criterion.scale.values().join(", ")
            );
        }
        let answers = by_item
            .entry(row.item)
            .or_default()
            .entry(row.grader)
            .or_default();
        let answer = Answer {
            value: row.value,
            justification: row.justification,
        };
        if answers.insert(row.criterion.clone(), answer).is_some() {
            bail!(
                "{}: a second answer to `{}` by the same grader",
                at(),
                row.criterion
            );
        }
    }
    let mut views: HashMap<String, TraceView> = HashMap::new();
    for file in crate::score::trace_files(traces, &args.tenant)? {
        if let Ok(view) = crate::score::view_of(&scoring, &file) {
            views.insert(view.trace_id.clone(), view);
        }
    }
    let mut items = Vec::new();
    let mut missing = 0;
    for (item, graders) in by_item {
        let Some(view) = views.remove(&item) else {
            missing += 1;
            continue;
        };
        let grades = graders
            .into_iter()
            .map(|(grader, answers)| ExpertGrade {
                grader,
                answers,
                adjudicated: false,
            })
            .collect();
        items.push(GradedTrace { view, grades });
    }
    Ok(Source {
        text,
        config,
        rubric,
        items,
        missing,
        from: grades.display().to_string(),
        ledger: Arc::new(MemoryLedger::default()),
        target: args.out.clone().map_or(Target::Nowhere, Target::File),
    })
}

fn scoring_of(text: Option<String>) -> anyhow::Result<Scoring> {
    match text {
        None => Scoring::new(ScoringConfig::default()),
        Some(text) => Scoring::parse(&text),
    }
    .map_err(|e| anyhow::anyhow!("scoring configuration: {e}"))
}

async fn from_data_dir(args: &CalibrateArgs) -> anyhow::Result<Source> {
    let db = args.data_dir.join("sessions.db");
    if !db.exists() {
        bail!(
            "{} has no sessions.db: is it agentwire dev's --data-dir? (or give --grades)",
            args.data_dir.display()
        );
    }
    let tenant = &args.tenant;
    let store =
        agentwire_sqlite::SqliteGradingStore::open(&db).map_err(|e| anyhow::anyhow!("{e}"))?;
    let ledger =
        agentwire_sqlite::SqliteBudgetLedger::open(&db).map_err(|e| anyhow::anyhow!("{e}"))?;
    let archive = agentwire_fs::DirTraceArchive::new(&args.data_dir);
    let key = judge_config_key(tenant);
    let text = match archive.get(&key).await? {
        Some(body) => {
            String::from_utf8(body.to_vec()).with_context(|| format!("{key} is not UTF-8"))?
        }
        None => bail!(
            "tenant `{tenant}` has no judge: write {} first",
            args.data_dir.join(&key).display()
        ),
    };
    let config = parse_judge(&text, &key)?;
    let settings = settings_of(&config, args.rubric.as_deref())?;
    let rubric = store
        .rubric(tenant, &settings.name, settings.version)
        .await?
        .with_context(|| format!("no rubric `{}` in tenant `{tenant}`", settings.name))?;
    let scoring_key = agentwire_scorer::config_key(tenant);
    let scoring = match archive.get(&scoring_key).await? {
        Some(body) => scoring_of(Some(
            String::from_utf8(body.to_vec())
                .with_context(|| format!("{scoring_key} is not UTF-8"))?,
        ))?,
        None => scoring_of(None)?,
    };

    let queues = agentwire_grading::store::queues_of(&store, tenant, &rubric.reference()).await?;
    let chosen: Vec<&(agentwire_grading::QueueSpec, bool)> = queues
        .iter()
        .filter(|(q, _)| args.queue.as_ref().is_none_or(|name| *name == q.name))
        .collect();
    if chosen.is_empty() {
        match &args.queue {
            Some(queue) => bail!(
                "no queue `{queue}` of rubric {}@{} in tenant `{tenant}`",
                rubric.name,
                rubric.version
            ),
            None => bail!(
                "no queue grades rubric {}@{} in tenant `{tenant}`",
                rubric.name,
                rubric.version
            ),
        }
    }
    // Per trace and grader, the latest grade (a grader in two queues counts once).
    let mut by_trace: BTreeMap<String, Graded> = BTreeMap::new();
    for (queue, adjudicated) in chosen.iter().copied() {
        let adjudicated = *adjudicated;
        for grade in store.grades(tenant, &queue.name).await? {
            let entry = by_trace
                .entry(grade.trace_id.clone())
                .or_insert_with(|| Graded {
                    session: grade.session.clone(),
                    graded_ms: grade.graded_ms,
                    by_grader: BTreeMap::new(),
                });
            let newer = entry
                .by_grader
                .get(&grade.grader)
                .is_none_or(|(at, _)| *at <= grade.graded_ms);
            if newer {
                let at = grade.graded_ms;
                let expert = ExpertGrade {
                    grader: grade.grader.clone(),
                    answers: grade.answers,
                    adjudicated,
                };
                entry.by_grader.insert(grade.grader, (at, expert));
            }
        }
    }
    let mut items = Vec::new();
    let mut missing = 0;
    let options = scoring.config().view_options();
    for (trace_id, graded) in by_trace {
        let hint = [graded.graded_ms];
        let spans =
            agentwire_trace::find_trace(&archive, tenant, &graded.session, &trace_id, &hint)
                .await?;
        let Some(view) = spans.and_then(|spans| TraceView::from_spans(&spans, &options).ok())
        else {
            missing += 1;
            continue;
        };
        items.push(GradedTrace {
            view,
            grades: graded.by_grader.into_values().map(|(_, g)| g).collect(),
        });
    }
    let names: Vec<&str> = chosen.iter().map(|(q, _)| q.name.as_str()).collect();
    Ok(Source {
        text,
        config,
        rubric,
        items,
        missing,
        from: format!("queues {} of tenant {tenant}", names.join(", ")),
        ledger: Arc::new(ledger),
        target: match &args.out {
            Some(path) => Target::File(path.clone()),
            None => Target::Archive(archive, key),
        },
    })
}
