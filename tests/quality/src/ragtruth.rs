//! groundedness vs RAGTruth's human labels.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::time::Instant;

use agentwire_scoring::scorers::groundedness::assess;
use agentwire_scoring::{ScoreRecord, Scoring, TraceView, ViewOptions};
use agentwire_trace::Span;
use anyhow::{Context as _, bail};

use crate::archive::read_archive;
use crate::metrics::{
    Counts, add_span_counts, auroc, best_threshold, f1_at, grouped_folds, out_of_fold_f1,
};

/// Folds of the cross-validation that picks the threshold.
const FOLDS: usize = 5;

#[derive(clap::Args)]
pub struct Args {
    /// An archive directory holding `traces/dt=*/tenant=*/*.jsonl.gz`.
    #[arg(long, requires = "scores", conflicts_with_all = ["responses", "sources"])]
    traces: Option<PathBuf>,
    /// Score records (JSON lines) for those traces.
    #[arg(long)]
    scores: Option<PathBuf>,
    /// RAGTruth `response.jsonl`: import and score in-process instead.
    #[arg(long, requires = "sources")]
    responses: Option<PathBuf>,
    /// RAGTruth `source_info.jsonl`.
    #[arg(long)]
    sources: Option<PathBuf>,
    /// Also write each answer's groundedness features as CSV (in-process mode only).
    #[arg(long, requires = "responses")]
    features: Option<PathBuf>,
    /// Also write each answer sentence's quantities and its labelled chars as CSV
    /// (in-process mode only), for choosing the sentence rule.
    #[arg(long, requires = "responses")]
    sentences: Option<PathBuf>,
    /// The `[groundedness]` section to score with (in-process mode), e.g.
    /// `sentence_threshold = 0.6`; the defaults when absent.
    #[arg(long, requires = "responses")]
    options: Option<String>,
    /// Also write the table as Markdown.
    #[arg(long)]
    markdown: Option<PathBuf>,
    /// Also write the labels as expert grades, JSON lines `{item, grader, criterion, value}`
    /// (criterion `grounded`, `fail` when the answer has a labelled span), for
    /// `agentwire agreement` and `agentwire calibrate`.
    #[arg(long)]
    grades_out: Option<PathBuf>,
}

/// One labelled answer and what the scorer said of it.
struct Item {
    trace_id: String,
    group: String,
    answer: String,
    context: Vec<String>,
    labelled: Vec<(usize, usize)>,
    /// groundedness value (1 = supported); `None` when no record was found.
    value: Option<f64>,
    predicted: Vec<(usize, usize)>,
    ungrounded: bool,
}

pub fn run(args: &Args) -> anyhow::Result<()> {
    let (mut items, timing) = match (&args.traces, &args.responses) {
        (Some(dir), _) => {
            let traces = read_archive(dir)?;
            let scores = args.scores.as_deref().context("--scores is required")?;
            (items_from(&traces, read_scores(scores)?)?, None)
        }
        (None, Some(responses)) => {
            let sources = args.sources.as_deref().context("--sources is required")?;
            direct(
                responses,
                sources,
                args.features.as_deref(),
                args.sentences.as_deref(),
                args.options.as_deref(),
            )?
        }
        (None, None) => bail!("give --traces DIR --scores FILE, or --responses F --sources F"),
    };
    let missing = items.iter().filter(|i| i.value.is_none()).count();
    items.retain(|i| i.value.is_some());
    if items.is_empty() {
        bail!("no labelled answer with a groundedness score");
    }
    if let Some(path) = &args.grades_out {
        let mut lines = String::new();
        for i in &items {
            let value = if i.labelled.is_empty() {
                "pass"
            } else {
                "fail"
            };
            let row = serde_json::json!({"item": i.trace_id, "grader": "ragtruth", "criterion": "grounded", "value": value});
            lines.push_str(&row.to_string());
            lines.push('\n');
        }
        std::fs::write(path, lines).with_context(|| format!("writing {}", path.display()))?;
    }
    let table = report(&items, missing, timing);
    print!("{table}");
    if let Some(path) = &args.markdown {
        std::fs::write(path, &table).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

fn read_scores(path: &Path) -> anyhow::Result<HashMap<String, ScoreRecord>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let mut out = HashMap::new();
    for (n, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let r: ScoreRecord = serde_json::from_str(line)
            .with_context(|| format!("{}: line {}: not a score record", path.display(), n + 1))?;
        if r.name == "groundedness" {
            out.insert(r.trace_id.clone(), r);
        }
    }
    Ok(out)
}

fn items_from(
    traces: &[Vec<Span>],
    scores: HashMap<String, ScoreRecord>,
) -> anyhow::Result<Vec<Item>> {
    let mut items = Vec::new();
    for spans in traces {
        let view = TraceView::from_spans(spans, &ViewOptions::default())?;
        let Some(answer) = view.final_answer() else {
            continue;
        };
        let group = view
            .attributes
            .get("agentwire.dataset.group")
            .and_then(|v| v.as_str())
            .unwrap_or(&view.trace_id)
            .to_owned();
        let record = scores.get(&view.trace_id);
        let predicted = record.map_or_else(Vec::new, |r| {
            r.evidence
                .iter()
                .filter(|e| e.span_id == answer.span_id)
                .filter_map(|e| Some((e.start?, e.end?)))
                .collect()
        });
        items.push(Item {
            trace_id: view.trace_id.clone(),
            group,
            answer: answer.text.clone(),
            context: view
                .context_text()
                .iter()
                .map(|s| (*s).to_owned())
                .collect(),
            labelled: answer
                .annotations
                .iter()
                .map(|a| (a.start, a.end))
                .collect(),
            value: record.map(|r| r.value),
            predicted,
            ungrounded: record.is_some_and(|r| r.label.as_deref() == Some("ungrounded")),
        });
    }
    Ok(items)
}

/// Per-answer timing of `assess` in the in-process mode.
struct Timing {
    per_answer_us: f64,
}

fn direct(
    responses: &Path,
    sources: &Path,
    features: Option<&Path>,
    sentence_csv: Option<&Path>,
    section: Option<&str>,
) -> anyhow::Result<(Vec<Item>, Option<Timing>)> {
    let open = |p: &Path| -> anyhow::Result<BufReader<std::fs::File>> {
        Ok(BufReader::new(
            std::fs::File::open(p).with_context(|| format!("opening {}", p.display()))?,
        ))
    };
    let import = agentwire_ingest::import::ragtruth::read(
        open(responses)?,
        &responses.display().to_string(),
        open(sources)?,
        &sources.display().to_string(),
        "quality",
    )?;
    for e in &import.skipped {
        eprintln!("skipped: {e}");
    }
    let config = format!(
        "scorers = [\"groundedness\"]\n[groundedness]\n{}\n",
        section.unwrap_or("")
    );
    let scoring = Scoring::parse(&config)?;
    let options = scoring.config().groundedness.clone();
    let mut scores = HashMap::new();
    for spans in &import.traces {
        for r in scoring.score_spans(spans, 0)? {
            scores.insert(r.trace_id.clone(), r);
        }
    }
    let items = items_from(&import.traces, scores)?;
    // Time the text function alone, over every answer, a few rounds.
    let views: Vec<(String, Vec<String>)> = items
        .iter()
        .map(|i| (i.answer.clone(), i.context.clone()))
        .collect();
    let rounds = 3;
    let started = Instant::now();
    let mut sink = 0.0;
    for _ in 0..rounds {
        for (answer, context) in &views {
            let ctx: Vec<&str> = context.iter().map(String::as_str).collect();
            sink += assess(answer, &ctx, None, &options).score;
        }
    }
    let per_answer_us =
        started.elapsed().as_secs_f64() * 1e6 / (rounds * views.len().max(1)) as f64;
    std::hint::black_box(sink);
    if let Some(path) = sentence_csv {
        let mut csv = String::from(
            "trace_id,group,hallucinated,start,end,content_words,absent_words,reasons,numbers,names,negation,labelled_chars\n",
        );
        for (i, spans) in items.iter().zip(&import.traces) {
            let view = TraceView::from_spans(spans, &ViewOptions::default())?;
            let q = view.question().map(|m| m.text.as_str());
            let a = assess(&i.answer, &view.context_text(), q, &options);
            for s in &a.sentences {
                let labelled = (s.start..s.end)
                    .filter(|c| i.labelled.iter().any(|&(x, y)| x <= *c && *c < y))
                    .count();
                let has =
                    |k: &str| u8::from(s.reasons.iter().any(|r| format!("{r:?}").starts_with(k)));
                let _ = writeln!(
                    csv,
                    "{},{},{},{},{},{},{},{},{},{},{},{}",
                    i.trace_id,
                    i.group,
                    u8::from(!i.labelled.is_empty()),
                    s.start,
                    s.end,
                    s.content_words,
                    s.absent_words,
                    s.reasons.len(),
                    has("AbsentNumbers"),
                    has("AbsentNames"),
                    has("NegationFlip"),
                    labelled,
                );
            }
        }
        std::fs::write(path, csv).with_context(|| format!("writing {}", path.display()))?;
    }
    if let Some(path) = features {
        let mut csv = String::from(
            "trace_id,group,hallucinated,content_words,absent_words,absent_pairs,unsupported_sentences,absent_numbers,absent_names,negation_flips,question_coverage,refusal,answer_chars,weakly_supported_sentences,max_sentence_absent\n",
        );
        for (i, spans) in items.iter().zip(&import.traces) {
            let view = TraceView::from_spans(spans, &ViewOptions::default())?;
            let ctx = view.context_text();
            let q = view.question().map(|m| m.text.as_str());
            let f = assess(&i.answer, &ctx, q, &options).features;
            let _ = writeln!(
                csv,
                "{},{},{},{},{},{},{},{},{},{},{},{},{},{},{}",
                i.trace_id,
                i.group,
                u8::from(!i.labelled.is_empty()),
                f.content_words,
                f.absent_words,
                f.absent_pairs,
                f.unsupported_sentences,
                f.absent_numbers,
                f.absent_names,
                f.negation_flips,
                f.question_coverage,
                u8::from(f.refusal),
                f.answer_chars,
                f.weakly_supported_sentences,
                f.max_sentence_absent,
            );
        }
        std::fs::write(path, csv).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok((items, Some(Timing { per_answer_us })))
}

/// The baseline "fraction of the answer's content words absent from the passages":
/// lower-cased alphanumeric words, minus a short list of English function words.
fn absent_fraction(answer: &str, context: &[String]) -> f64 {
    const STOP: [&str; 40] = [
        "a", "an", "the", "and", "or", "but", "of", "to", "in", "on", "at", "by", "for", "with",
        "from", "as", "is", "are", "was", "were", "be", "been", "it", "its", "this", "that",
        "these", "those", "there", "which", "who", "what", "not", "no", "can", "will", "would",
        "should", "may", "also",
    ];
    let words = |t: &str| -> Vec<String> {
        t.split(|c: char| !c.is_alphanumeric())
            .filter(|w| !w.is_empty())
            .map(str::to_lowercase)
            .filter(|w| !STOP.contains(&w.as_str()))
            .collect()
    };
    let known: std::collections::HashSet<String> = context.iter().flat_map(|c| words(c)).collect();
    let answer = words(answer);
    if answer.is_empty() {
        return 0.0;
    }
    answer.iter().filter(|w| !known.contains(*w)).count() as f64 / answer.len() as f64
}

fn report(items: &[Item], missing: usize, timing: Option<Timing>) -> String {
    let labels: Vec<bool> = items.iter().map(|i| !i.labelled.is_empty()).collect();
    let groups: Vec<&str> = items.iter().map(|i| i.group.as_str()).collect();
    let folds = grouped_folds(&groups, FOLDS);
    let n = items.len();
    let pos = labels.iter().filter(|&&l| l).count();

    // Hallucination scores: higher = more likely hallucinated.
    let scorer: Vec<f64> = items.iter().map(|i| 1.0 - i.value.unwrap_or(1.0)).collect();
    let scorer_auc = auroc(&labels, &scorer).unwrap_or(f64::NAN);
    let (oof_f1, thresholds) = out_of_fold_f1(&labels, &scorer, &folds, FOLDS);
    let (all_t, in_sample_f1) = best_threshold(&labels, &scorer);
    let mut label_counts = Counts::default();
    for (i, &l) in items.iter().zip(&labels) {
        label_counts.add(l, i.ungrounded);
    }

    let baseline: Vec<f64> = items
        .iter()
        .map(|i| absent_fraction(&i.answer, &i.context))
        .collect();
    let base_auc = auroc(&labels, &baseline).unwrap_or(f64::NAN);
    let (base_f1, _) = out_of_fold_f1(&labels, &baseline, &folds, FOLDS);
    let always = f1_at(&labels, &vec![1.0; n], 0.5);

    // Span level: the evidence ranges of every answer vs the labelled ranges, pooled by char;
    // and the same counting only answers the scorer labels ungrounded.
    let mut spans_all = Counts::default();
    let mut spans_flagged = Counts::default();
    for i in items {
        let len = i.answer.chars().count();
        add_span_counts(&mut spans_all, &i.predicted, &i.labelled, len);
        let predicted: &[(usize, usize)] = if i.ungrounded { &i.predicted } else { &[] };
        add_span_counts(&mut spans_flagged, predicted, &i.labelled, len);
    }

    let mut t = String::new();
    let _ = writeln!(t, "## groundedness vs RAGTruth labels\n");
    let _ = writeln!(
        t,
        "{n} answers, {pos} hallucinated (a labelled span); {FOLDS} folds grouped by `agentwire.dataset.group`{}.\n",
        if missing > 0 {
            format!("; {missing} answers without a score left out")
        } else {
            String::new()
        }
    );
    let _ = writeln!(t, "| method | AUROC | F1 (out of fold) | notes |");
    let _ = writeln!(t, "|---|---|---|---|");
    let ts: Vec<String> = thresholds
        .iter()
        .map(|x| format!("{:.3}", 1.0 - x))
        .collect();
    let _ = writeln!(
        t,
        "| groundedness | {scorer_auc:.3} | {oof_f1:.3} | fold thresholds (value <) {}; all-data threshold {:.3} (in-sample F1 {in_sample_f1:.3}) |",
        ts.join(", "),
        1.0 - all_t,
    );
    let _ = writeln!(
        t,
        "| groundedness label as written | | {:.3} | P {:.3} R {:.3} |",
        label_counts.f1(),
        label_counts.precision(),
        label_counts.recall()
    );
    let _ = writeln!(
        t,
        "| baseline: fraction of answer words absent from passages | {base_auc:.3} | {base_f1:.3} | |"
    );
    let _ = writeln!(
        t,
        "| baseline: always hallucinated | 0.500 | {always:.3} | |"
    );
    let _ = writeln!(t);
    let _ = writeln!(t, "| span level (chars) | P | R | F1 |");
    let _ = writeln!(t, "|---|---|---|---|");
    for (name, c) in [
        (
            "unsupported sentences of answers labelled ungrounded",
            spans_flagged,
        ),
        ("unsupported sentences of every answer", spans_all),
    ] {
        let _ = writeln!(
            t,
            "| {name} | {:.3} | {:.3} | {:.3} |",
            c.precision(),
            c.recall(),
            c.f1()
        );
    }
    if let Some(timing) = timing {
        let _ = writeln!(
            t,
            "\n`assess` per answer: {:.1} µs (mean over all answers)",
            timing.per_answer_us
        );
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    const SOURCES: &str = concat!(
        r#"{"source_id": "s1", "source_info": {"question": "when was the tower built", "passages": "passage 1:The tower was built in 1990 by the city.\n\npassage 2:It is tall.\n\n"}}"#,
        "\n"
    );
    const RESPONSES: &str = concat!(
        r#"{"id": "1", "source_id": "s1", "labels": [], "response": "The tower was built in 1990 by the city."}"#,
        "\n",
        r#"{"id": "2", "source_id": "s1", "labels": [{"start": 26, "end": 80, "label_type": "Evident Baseless Info"}], "response": "The tower was built in 1990. Famous architect Zorg Blum painted it purple for millions of tourists."}"#,
        "\n",
        r#"{"id": "3", "source_id": "s1", "labels": [], "response": "Unable to answer based on given passages."}"#,
        "\n",
    );

    #[test]
    fn reads_an_archive_and_score_records_back_to_labelled_items() {
        let import = agentwire_ingest::import::ragtruth::read(
            RESPONSES.as_bytes(),
            "r",
            SOURCES.as_bytes(),
            "s",
            "t",
        )
        .expect("fixture imports");
        assert!(import.skipped.is_empty(), "{:?}", import.skipped);
        let dir = tempfile::tempdir().expect("temp dir");
        let scoring = Scoring::parse("scorers = [\"groundedness\"]\n").expect("config");
        let mut scores = String::new();
        for spans in &import.traces {
            let session = spans[0].attributes["agentwire.session"]
                .as_str()
                .unwrap_or("");
            let path = dir
                .path()
                .join(agentwire_trace::object_key("t", session, 0));
            std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
            std::fs::write(
                &path,
                agentwire_trace::encode_jsonl_gz(spans).expect("encode"),
            )
            .expect("write");
            for r in scoring.score_spans(spans, 0).expect("scores") {
                scores.push_str(&serde_json::to_string(&r).expect("json"));
                scores.push('\n');
            }
        }
        let scores_path = dir.path().join("scores.jsonl");
        std::fs::write(&scores_path, scores).expect("write scores");

        let traces = read_archive(dir.path()).expect("archive");
        let mut items =
            items_from(&traces, read_scores(&scores_path).expect("scores")).expect("items");
        items.sort_by_key(|i| i.answer.len());
        assert_eq!(items.len(), 3);
        assert!(items.iter().all(|i| i.group == "s1" && i.value.is_some()));
        let bad = items
            .iter()
            .find(|i| !i.labelled.is_empty())
            .expect("a labelled item");
        assert_eq!(bad.labelled, vec![(26, 80)]);
        assert!(bad.ungrounded, "made-up names and figures: ungrounded");
        assert_eq!(
            bad.predicted,
            vec![(29, 99)],
            "the second sentence is the evidence"
        );
        let refusal = items
            .iter()
            .find(|i| i.answer.starts_with("Unable"))
            .expect("refusal");
        assert_eq!(refusal.value, Some(1.0));
        let table = report(&items, 0, None);
        assert!(table.contains("3 answers, 1 hallucinated"), "{table}");
    }
}
