//! The judge against a local server speaking the OpenAI chat-completions protocol: the
//! budget under 16 concurrent judges, the cache, sampling, redaction, and every way a
//! trace can end without a verdict.

use std::sync::Arc;

use agentwire_grading::rubric::{Criterion, Rubric, Scale};
use agentwire_judge::budget::{BudgetLedger, MemoryLedger};
use agentwire_judge::config::{JudgeConfig, RubricConfig};
use agentwire_judge::fake::{FakeModel, Reply, Script};
use agentwire_judge::judge::{Case, Judge, Judgement, Outcome};
use agentwire_judge::openai::OpenAiEndpoint;
use agentwire_judge::{ModelEndpoint, Resilient};
use agentwire_scoring::view::{Message, ToolCall};
use agentwire_scoring::{ScoreRecord, Source, TraceView};
use serde_json::{Value, json};

const NOW_MS: i64 = 1_764_590_400_000; // 2025-12-01T12:00Z

fn rubric() -> Rubric {
    Rubric {
        name: "advice".into(),
        version: 2,
        title: "Was the advice sound?".into(),
        criteria: vec![
            Criterion {
                key: "sound".into(),
                title: "Sound advice".into(),
                guidance: "Fail advice a professional would not give.".into(),
                scale: Scale::PassFail,
                justification_required: true,
                scorers: Vec::new(),
            },
            Criterion {
                key: "tone".into(),
                title: "Tone".into(),
                guidance: String::new(),
                scale: Scale::Ordinal {
                    anchors: vec!["curt".into(), "fine".into(), "warm".into()],
                },
                justification_required: false,
                scorers: Vec::new(),
            },
        ],
    }
}

fn verdict(sound: &str, tone: &str) -> Value {
    json!({"criteria": {
        "sound": {"value": sound, "explanation": "the answer follows the retrieved policy"},
        "tone": {"value": tone, "explanation": "polite"},
    }})
}

fn view(n: usize, user: &str) -> TraceView {
    TraceView {
        trace_id: format!("{n:032x}"),
        tenant: "acme".into(),
        session: format!("s-{n}"),
        root_span_id: "00000000000000aa".into(),
        digest: format!("digest-{n}"),
        messages: vec![
            Message {
                span_id: "00000000000000a1".into(),
                role: "user".into(),
                text: user.into(),
                ..Message::default()
            },
            Message {
                span_id: "00000000000000a2".into(),
                role: "assistant".into(),
                text: "You can return it within 30 days for a refund.".into(),
                ..Message::default()
            },
        ],
        tool_calls: vec![ToolCall {
            span_id: "00000000000000a3".into(),
            name: "search_docs".into(),
            arguments: Some(json!({"query": "refund policy for jane@example.com"})),
            result: Some(json!("Refunds within 30 days. Call +44 20 7946 0958.")),
            retrieval: true,
            documents: vec!["Refunds within 30 days; card 4111 1111 1111 1111 on file.".into()],
            ..ToolCall::default()
        }],
        ..TraceView::default()
    }
}

fn config(base_url: &str, extra: &str) -> JudgeConfig {
    JudgeConfig::parse(&format!(
        "[endpoint]\nkind = \"openai\"\nbase_url = \"{base_url}\"\nmodel = \"judge-model\"\nmax_retries = 1\ntimeout_ms = 2000\nconcurrency = 16\nmax_output_tokens = 200\n{extra}\n[[rubric]]\nname = \"advice\"\nsample = 1.0\nalways_if_flagged = [\"groundedness\"]\n"
    ))
    .unwrap_or_else(|e| panic!("{e}"))
}

fn judge_with(config: JudgeConfig, ledger: Arc<dyn BudgetLedger>) -> Judge {
    let base = config.endpoint.base_url.clone().unwrap();
    let endpoint: Arc<dyn ModelEndpoint> = Arc::new(Resilient::new(
        Arc::new(OpenAiEndpoint::new(&base, None).unwrap()),
        agentwire_judge::RetryPolicy {
            base_backoff: std::time::Duration::from_millis(1),
            max_backoff: std::time::Duration::from_millis(5),
            ..config.endpoint.retry_policy()
        },
        config.endpoint.concurrency,
    ));
    Judge::new("acme", config, endpoint, ledger).unwrap()
}

async fn judge_one(
    judge: &Judge,
    view: &TraceView,
    code: &[ScoreRecord],
    judged: &[ScoreRecord],
) -> Judgement {
    let settings = judge.config().rubric[0].clone();
    let threshold = |_: &str| 0.5;
    let case = Case {
        view,
        code,
        judged,
        threshold: &threshold,
    };
    judge
        .judge(&case, &rubric(), &settings, &[], NOW_MS)
        .await
        .expect("the ledger answers")
}

fn answering() -> Script {
    Script::answer_with(|_| verdict("pass", "3"))
}

#[tokio::test]
async fn a_verdict_becomes_judge_records_with_the_model_prompt_and_usage() {
    let server = FakeModel::start(answering()).await;
    let judge = judge_with(
        config(&server.base_url(), ""),
        Arc::new(MemoryLedger::default()),
    );
    let judgement = judge_one(&judge, &view(1, "Can I get a refund?"), &[], &[]).await;
    assert_eq!(judgement.outcome, Outcome::Judged, "{judgement:?}");
    assert_eq!(judgement.calls, 1);
    let names: Vec<&str> = judgement.records.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["advice.sound", "advice.tone"]);
    let sound = &judgement.records[0];
    assert_eq!(sound.source, Source::Judge);
    assert_eq!((sound.value, sound.label.as_deref()), (1.0, Some("pass")));
    assert_eq!(judgement.records[1].value, 1.0, "ordinal 3 of 3 maps to 1");
    assert_eq!(sound.scorer_version, "judge-model/judge-1/advice@2");
    assert_eq!(sound.trace_digest, "digest-1");
    let usage = sound.usage.expect("token usage on the record");
    assert!(usage.input_tokens > 0 && usage.output_tokens > 0);
    // The request asked for the verdict's schema.
    let request = &server.received()[0];
    assert_eq!(request["response_format"]["type"], "json_schema");
    assert_eq!(request["model"], "judge-model");
}

#[tokio::test]
async fn the_budget_is_never_exceeded_by_16_concurrent_judges() {
    let server = FakeModel::start(answering()).await;
    // Room for a few calls, not for all 64.
    let cap = 40_000u64;
    let ledger = Arc::new(MemoryLedger::default());
    let judge = Arc::new(judge_with(
        config(
            &server.base_url(),
            &format!("[budget]\ndaily_tokens = {cap}\n"),
        ),
        ledger.clone(),
    ));
    let views: Arc<Vec<TraceView>> = Arc::new(
        (0..64)
            .map(|n| view(n, &"Is this refundable? ".repeat(80)))
            .collect(),
    );
    let mut tasks = Vec::new();
    for worker in 0..16 {
        let (judge, views) = (judge.clone(), views.clone());
        tasks.push(tokio::spawn(async move {
            let mut out = Vec::new();
            for n in (worker..64).step_by(16) {
                out.push(judge_one(&judge, &views[n], &[], &[]).await);
            }
            out
        }));
    }
    let mut judgements = Vec::new();
    for task in tasks {
        judgements.extend(task.await.unwrap());
    }
    let judged = judgements
        .iter()
        .filter(|j| j.outcome == Outcome::Judged)
        .count();
    let skipped = judgements
        .iter()
        .filter(|j| j.outcome == Outcome::Skipped("budget".into()))
        .count();
    assert_eq!(judged + skipped, 64, "{judgements:?}");
    assert!(
        judged > 0 && skipped > 0,
        "judged {judged}, skipped {skipped}"
    );
    // What the server reported for the calls it answered is what the day spent, and
    // within the cap.
    let reported: u64 = judgements
        .iter()
        .filter_map(|j| j.usage)
        .map(|u| u.input_tokens + u.output_tokens)
        .sum();
    let spent = ledger.spent("acme", "2025-12-01").await.unwrap();
    assert_eq!(spent.tokens, reported);
    assert!(spent.tokens <= cap, "spent {} of {cap}", spent.tokens);
    assert_eq!(server.requests(), judged, "a skipped trace is never sent");
}

#[tokio::test]
async fn a_dollar_budget_is_priced_from_the_table() {
    let server = FakeModel::start(answering()).await;
    let ledger = Arc::new(MemoryLedger::default());
    let judge = judge_with(
        config(
            &server.base_url(),
            "[budget]\ndaily_usd = 0.01\n[prices.\"judge-model\"]\ninput_per_million = 1.0\noutput_per_million = 4.0\n",
        ),
        ledger.clone(),
    );
    let mut outcomes = Vec::new();
    for n in 0..20 {
        outcomes.push(
            judge_one(&judge, &view(n, "Refund?"), &[], &[])
                .await
                .outcome,
        );
    }
    assert!(outcomes.contains(&Outcome::Judged));
    assert!(outcomes.contains(&Outcome::Skipped("budget".into())));
    let spent = ledger.spent("acme", "2025-12-01").await.unwrap();
    assert!(spent.micro_usd <= 10_000, "{spent:?}");
}

#[tokio::test]
async fn a_trace_judged_before_is_not_sent_again() {
    let server = FakeModel::start(answering()).await;
    let judge = judge_with(
        config(&server.base_url(), ""),
        Arc::new(MemoryLedger::default()),
    );
    let trace = view(7, "Refund?");
    let first = judge_one(&judge, &trace, &[], &[]).await;
    assert_eq!(first.outcome, Outcome::Judged);
    let again = judge_one(&judge, &trace, &[], &first.records).await;
    assert_eq!(again.outcome, Outcome::Cached);
    assert_eq!(again.records, first.records);
    assert_eq!(server.requests(), 1);
    // A changed trace (another digest) is judged again.
    let changed = TraceView {
        digest: "digest-7b".into(),
        ..trace
    };
    assert_eq!(
        judge_one(&judge, &changed, &[], &first.records)
            .await
            .outcome,
        Outcome::Judged
    );
    assert_eq!(server.requests(), 2);
}

#[tokio::test]
async fn sampling_picks_the_same_traces_every_run_and_always_the_flagged() {
    let server = FakeModel::start(answering()).await;
    let mut config = config(&server.base_url(), "");
    config.rubric[0] = RubricConfig {
        sample: 0.25,
        ..config.rubric[0].clone()
    };
    let judge = judge_with(config, Arc::new(MemoryLedger::default()));
    let flagged = |n: usize| ScoreRecord {
        trace_id: format!("{n:032x}"),
        span_id: None,
        session: format!("s-{n}"),
        tenant: "acme".into(),
        name: "groundedness".into(),
        value: 0.1,
        label: Some("ungrounded".into()),
        source: Source::Code,
        explanation: None,
        evidence: Vec::new(),
        scorer: "groundedness".into(),
        scorer_version: "1".into(),
        trace_digest: format!("digest-{n}"),
        scored_at_ms: 0,
        usage: None,
    };
    let mut runs = Vec::new();
    for _ in 0..2 {
        let mut picked = Vec::new();
        for n in 0..80 {
            let code = if n % 10 == 0 {
                vec![flagged(n)]
            } else {
                Vec::new()
            };
            let j = judge_one(&judge, &view(n, "Refund?"), &code, &[]).await;
            if j.outcome == Outcome::Judged {
                picked.push((n, j.pick));
            }
        }
        runs.push(picked);
    }
    assert_eq!(runs[0], runs[1], "reruns pick the same traces");
    for n in (0..80).step_by(10) {
        assert!(
            runs[0].contains(&(n, "flagged: groundedness".to_owned())),
            "flagged trace {n} judged: {:?}",
            runs[0]
        );
    }
    let sampled = runs[0].iter().filter(|(_, p)| p == "sampled").count();
    assert!(
        (5..=35).contains(&sampled),
        "{sampled} of 72 sampled at 0.25"
    );
}

#[tokio::test]
async fn nothing_masked_reaches_the_endpoint_and_a_tenant_can_forbid_sending() {
    let server = FakeModel::start(answering()).await;
    let judge = judge_with(
        config(&server.base_url(), ""),
        Arc::new(MemoryLedger::default()),
    );
    let trace = view(
        3,
        "My email is jane@example.com and my card 4111 1111 1111 1111, phone +44 20 7946 0958",
    );
    let judgement = judge_one(&judge, &trace, &[], &[]).await;
    assert_eq!(judgement.outcome, Outcome::Judged);
    assert!(judgement.masked >= 5, "{}", judgement.masked);
    let sent = server
        .received()
        .iter()
        .map(Value::to_string)
        .collect::<String>();
    for secret in [
        "jane@example.com",
        "4111 1111 1111 1111",
        "+44 20 7946 0958",
        "7946 0958",
    ] {
        assert!(!sent.contains(secret), "`{secret}` was sent");
    }
    assert!(
        sent.contains("[redacted email]"),
        "the mask is visible to the model"
    );

    let quiet = FakeModel::start(answering()).await;
    let judge = judge_with(
        config(&quiet.base_url(), "[redaction]\nsend = false\n"),
        Arc::new(MemoryLedger::default()),
    );
    let judgement = judge_one(&judge, &trace, &[], &[]).await;
    assert_eq!(
        judgement.outcome,
        Outcome::Skipped("sending forbidden".into())
    );
    assert_eq!(quiet.requests(), 0);
}

#[tokio::test]
async fn an_invalid_reply_is_retried_once_with_the_problem_named_then_recorded() {
    let server = FakeModel::start(
        Script::new(vec![
            Reply::Text("I think it passes.".into()),
            Reply::Verdict(verdict("fail", "2")),
        ])
        .then(Script::answer_with(|_| verdict("pass", "9"))),
    )
    .await;
    let judge = judge_with(
        config(&server.base_url(), ""),
        Arc::new(MemoryLedger::default()),
    );
    let fixed = judge_one(&judge, &view(1, "Refund?"), &[], &[]).await;
    assert_eq!(
        (fixed.outcome.clone(), fixed.calls),
        (Outcome::Judged, 2),
        "{fixed:?}"
    );
    assert_eq!(fixed.records[0].label.as_deref(), Some("fail"));
    let retry = &server.received()[1];
    let last = retry["messages"].as_array().unwrap().last().unwrap()["content"].to_string();
    assert!(last.contains("not a valid verdict"), "{last}");

    // Off the scale twice: recorded as invalid, naming the field.
    let invalid = judge_one(&judge, &view(2, "Refund?"), &[], &[]).await;
    match &invalid.outcome {
        Outcome::Invalid(why) => assert!(why.contains("tone"), "{why}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(invalid.calls, 2);
    assert!(invalid.records.is_empty());
}

#[tokio::test]
async fn a_down_endpoint_and_a_prompt_too_large_are_recorded_failures() {
    // Nothing listens on the port of a server that was dropped.
    let gone = FakeModel::start(answering()).await;
    let url = gone.base_url();
    drop(gone);
    let ledger = Arc::new(MemoryLedger::default());
    let judge = judge_with(
        config(&url, "[budget]\ndaily_tokens = 1000000\n"),
        ledger.clone(),
    );
    let judgement = judge_one(&judge, &view(1, "Refund?"), &[], &[]).await;
    assert!(
        matches!(judgement.outcome, Outcome::Failed(_)),
        "{judgement:?}"
    );
    assert_eq!(
        ledger.spent("acme", "2025-12-01").await.unwrap().tokens,
        0,
        "a call that never reached the model gives its reservation back"
    );

    let server = FakeModel::start(answering()).await;
    let judge = judge_with(
        config(&server.base_url(), "").tap(|c| c.endpoint.context_tokens = 400),
        Arc::new(MemoryLedger::default()),
    );
    let judgement = judge_one(&judge, &view(1, &"long question ".repeat(2000)), &[], &[]).await;
    match &judgement.outcome {
        Outcome::Failed(why) => assert!(why.contains("context"), "{why}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(server.requests(), 0);
}

trait Tap: Sized {
    fn tap(self, f: impl FnOnce(&mut Self)) -> Self;
}

impl<T> Tap for T {
    fn tap(mut self, f: impl FnOnce(&mut Self)) -> Self {
        f(&mut self);
        self
    }
}

#[tokio::test]
async fn every_attempt_is_paid_for_before_it_is_made_and_a_failed_one_may_stay_spent() {
    use agentwire_judge::fake::Reply;
    // A 500 may have run the model: its reservation stays spent, and the retry needs
    // another one.
    let server = FakeModel::start(
        Script::new(vec![
            Reply::Status(500, None),
            Reply::Verdict(verdict("pass", "2")),
        ])
        .then(answering()),
    )
    .await;
    let ledger = Arc::new(MemoryLedger::default());
    let judge = judge_with(
        config(&server.base_url(), "[budget]\ndaily_tokens = 1000000\n"),
        ledger.clone(),
    );
    let judgement = judge_one(&judge, &view(1, "Refund?"), &[], &[]).await;
    assert_eq!(judgement.outcome, Outcome::Judged, "{judgement:?}");
    let spent = ledger.spent("acme", "2025-12-01").await.unwrap().tokens;
    let reported = judgement.usage.unwrap();
    assert!(
        spent > reported.input_tokens + reported.output_tokens,
        "the failed attempt's bound is still counted: {spent}"
    );
    let bound = spent - (reported.input_tokens + reported.output_tokens);

    // A cap with room for one bound only: the retry is not made, and nothing passes the cap.
    let server =
        FakeModel::start(Script::new(vec![Reply::Status(500, None)]).then(answering())).await;
    let ledger = Arc::new(MemoryLedger::default());
    let cap = bound + bound / 2;
    let judge = judge_with(
        config(
            &server.base_url(),
            &format!("[budget]\ndaily_tokens = {cap}\n"),
        ),
        ledger.clone(),
    );
    let judgement = judge_one(&judge, &view(1, "Refund?"), &[], &[]).await;
    match &judgement.outcome {
        Outcome::Failed(why) => assert!(why.contains("no budget left"), "{why}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(server.requests(), 1, "the retry was never sent");
    assert_eq!(
        ledger.spent("acme", "2025-12-01").await.unwrap().tokens,
        bound
    );
}

mod calibration {
    //! `calibrate::compare` against the local server: the model answers the way the
    //! prompt's instructions lead it, so the better prompt is known.

    use std::collections::BTreeMap;

    use agentwire_grading::grade::Answer;
    use agentwire_judge::calibrate::{
        self, CompareError, ExpertGrade, GradedTrace, Trial, candidates, compare,
    };
    use agentwire_scoring::view::Message;

    use super::*;

    /// Trace `n`'s answer is sound when `n` is even; the tone is warm (3) when `n` is a
    /// multiple of 3, else fine (2).
    fn graded(n: usize, adjudicated: bool) -> GradedTrace {
        let mut view = view(n, &format!("Question number {n}: can I get a refund?"));
        view.messages[1] = Message {
            text: if n.is_multiple_of(2) {
                format!("Answer {n}: within 30 days, with the receipt.")
            } else {
                format!("Answer {n}: never, sorry.")
            },
            ..view.messages[1].clone()
        };
        let answers = |why: Option<&str>| -> BTreeMap<String, Answer> {
            let sound = if n.is_multiple_of(2) { "pass" } else { "fail" };
            let tone = if n.is_multiple_of(3) { "3" } else { "2" };
            BTreeMap::from([
                (
                    "sound".to_owned(),
                    Answer {
                        value: sound.into(),
                        justification: why.map(str::to_owned),
                    },
                ),
                (
                    "tone".to_owned(),
                    Answer {
                        value: tone.into(),
                        justification: None,
                    },
                ),
            ])
        };
        GradedTrace {
            view,
            grades: vec![
                ExpertGrade {
                    grader: "ana".into(),
                    answers: answers(Some(&format!("the 30-day rule, item {n}"))),
                    adjudicated,
                },
                ExpertGrade {
                    grader: "ben".into(),
                    answers: answers(None),
                    adjudicated: false,
                },
            ],
        }
    }

    /// Following the `STRICT` instructions the model grades soundness as the experts do;
    /// without them it passes every third answer; `SLOPPY` makes it reply with prose.
    fn model() -> Script {
        Script::reply_with(|request| {
            let system = request["messages"][0]["content"]
                .as_str()
                .unwrap_or_default();
            let user = request["messages"][1]["content"]
                .as_str()
                .unwrap_or_default();
            let n: usize = user
                .split("Question number ")
                .nth(1)
                .and_then(|rest| rest.split(':').next())
                .and_then(|n| n.parse().ok())
                .unwrap_or(0);
            if system.contains("SLOPPY") || (system.contains("FLAKY") && n.is_multiple_of(5)) {
                return Reply::Text("It seems fine to me.".into());
            }
            let sound = if system.contains("STRICT") {
                user.contains("with the receipt")
            } else {
                n.is_multiple_of(3)
            };
            let tone = if n.is_multiple_of(3) { "3" } else { "2" };
            Reply::Verdict(verdict(if sound { "pass" } else { "fail" }, tone))
        })
    }

    const VARIANTS: &str = "\n[[rubric.variant]]\nname = \"strict\"\ninstructions = \"STRICT: an answer is sound when it states the 30-day rule.\"\n\n[[rubric.variant]]\nname = \"sloppy\"\ninstructions = \"SLOPPY\"\n\n[[rubric.variant]]\nname = \"plain\"\ninstructions = \"Grade carefully.\"\n\n[[rubric.variant]]\nname = \"flaky\"\ninstructions = \"STRICT FLAKY\"\n";

    fn trial_config(base_url: &str, extra_rubric: &str) -> JudgeConfig {
        JudgeConfig::parse(&format!(
            "[endpoint]\nkind = \"openai\"\nbase_url = \"{base_url}\"\nmodel = \"judge-model\"\nmax_retries = 0\ntimeout_ms = 2000\nconcurrency = 8\nmax_output_tokens = 200\n\n[[rubric]]\nname = \"advice\"\nfew_shot = 3\n{extra_rubric}{VARIANTS}"
        ))
        .unwrap_or_else(|e| panic!("{e}"))
    }

    #[tokio::test]
    async fn the_prompt_that_agrees_with_the_experts_wins_on_items_no_example_shows() {
        let server = FakeModel::start(model()).await;
        let judge = judge_with(
            trial_config(&server.base_url(), ""),
            Arc::new(MemoryLedger::default()),
        );
        let items: Vec<GradedTrace> = (1..=60).map(|n| graded(n, n == 7)).collect();
        let settings = judge.config().rubric[0].clone();
        let rubric = rubric();
        let trial = Trial {
            judge: &judge,
            rubric: &rubric,
            settings: &settings,
            holdout_share: 0.4,
            now_ms: NOW_MS,
        };
        let all = candidates(
            &settings,
            &["strict".into(), "sloppy".into(), "plain".into()],
        )
        .unwrap();
        let names: Vec<&str> = all.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["default", "strict", "sloppy", "plain"]);
        let every: Vec<String> = candidates(&settings, &[])
            .unwrap()
            .into_iter()
            .map(|c| c.name)
            .collect();
        assert_eq!(every, ["default", "strict", "sloppy", "plain", "flaky"]);
        let progressed = std::sync::atomic::AtomicUsize::new(0);
        let tick = || {
            progressed.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        };
        let comparison = compare(&trial, &all, &items, &tick).await.unwrap();

        let held = comparison.held_back;
        assert!(
            held >= 10 && comparison.tuned_on == 60 - held,
            "{comparison:?}"
        );
        assert_eq!(comparison.compared_on, held);
        assert_eq!(progressed.into_inner(), 4 * held);
        assert_eq!(comparison.current, "default");
        assert_eq!(comparison.best, "strict", "{comparison:#?}");
        assert!(comparison.improves);
        let strict = comparison.candidate("strict").unwrap();
        assert_eq!(strict.criteria[0].kappa.value, Some(1.0), "{strict:?}");
        assert_eq!(strict.mean_kappa, Some(1.0));
        assert!(
            strict.version.starts_with("judge-1+strict."),
            "{}",
            strict.version
        );
        assert!(strict.usage.input_tokens > 0);
        let default = comparison.candidate("default").unwrap();
        assert!(default.mean_kappa.unwrap() < 0.9, "{default:?}");
        assert_eq!(default.version, "judge-1");
        let sloppy = comparison.candidate("sloppy").unwrap();
        assert_eq!((sloppy.invalid, sloppy.judged), (held, 0));
        assert!(!sloppy.eligible && sloppy.mean_kappa.is_none());
        assert_eq!(comparison.criteria_compared, ["sound", "tone"]);

        // Every candidate judged every held-back item, shown only the other side's
        // examples (the adjudicated one first), each request once the retry is counted.
        let received = server.received();
        let held_ids: Vec<String> = items
            .iter()
            .map(|t| t.view.trace_id.clone())
            .filter(|id| agentwire_grading::calibrate::stable_fraction(id) < 0.4)
            .collect();
        assert_eq!(held_ids.len(), held);
        assert_eq!(received.len(), 3 * held + 2 * held, "sloppy is asked twice");
        for request in &received {
            // Redacted as the job redacts: the views carry an email and a card number.
            let text = request.to_string();
            assert!(
                !text.contains("jane@example.com") && !text.contains("4111 1111"),
                "{text}"
            );
            let system = request["messages"][0]["content"].as_str().unwrap();
            assert!(system.contains("# Examples graded by the experts"));
            assert!(
                system.find("Question number 7:").unwrap() < system.find("## Example 2").unwrap(),
                "the adjudicated item is the first example"
            );
            for n in 1..=60 {
                let id = format!("{n:032x}");
                if held_ids.contains(&id) {
                    assert!(
                        !system.contains(&format!("Question number {n}:")),
                        "held-back item {n} shown as an example"
                    );
                }
            }
        }
    }

    #[tokio::test]
    async fn a_tie_keeps_the_current_prompt_and_too_few_items_are_refused() {
        let server = FakeModel::start(model()).await;
        let judge = judge_with(
            trial_config(&server.base_url(), "prompt = \"strict\"\n"),
            Arc::new(MemoryLedger::default()),
        );
        let items: Vec<GradedTrace> = (1..=40).map(|n| graded(n, false)).collect();
        let settings = judge.config().rubric[0].clone();
        let rubric = rubric();
        let trial = Trial {
            judge: &judge,
            rubric: &rubric,
            settings: &settings,
            holdout_share: 0.5,
            now_ms: NOW_MS,
        };
        // `plain` answers like `default`, below `strict`; neither replaces it.
        let chosen = candidates(&settings, &["plain".into(), "default".into()]).unwrap();
        let names: Vec<&str> = chosen.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["strict", "plain", "default"]);
        let comparison = compare(&trial, &chosen, &items, &|| {}).await.unwrap();
        assert_eq!(
            (comparison.best.as_str(), comparison.improves),
            ("strict", false)
        );
        // Against itself under another name: a tie, kept.
        let twin = JudgeConfig::parse(
            &format!(
                "[endpoint]\nkind = \"openai\"\nbase_url = \"{}\"\nmodel = \"judge-model\"\n\n[[rubric]]\nname = \"advice\"\nprompt = \"a\"\n\n[[rubric.variant]]\nname = \"a\"\ninstructions = \"STRICT\"\n\n[[rubric.variant]]\nname = \"b\"\ninstructions = \"STRICT\"\n",
                server.base_url()
            ),
        )
        .unwrap();
        let twin_settings = twin.rubric[0].clone();
        let twin_judge = judge_with(twin, Arc::new(MemoryLedger::default()));
        let trial = Trial {
            judge: &twin_judge,
            settings: &twin_settings,
            ..trial
        };
        let both = candidates(&twin_settings, &["b".into()]).unwrap();
        let comparison = compare(&trial, &both, &items, &|| {}).await.unwrap();
        let kappas: Vec<Option<f64>> = comparison.candidates.iter().map(|c| c.mean_kappa).collect();
        assert_eq!(kappas[0], kappas[1]);
        assert_eq!(
            (comparison.best.as_str(), comparison.improves),
            ("a", false)
        );

        let e = candidates(&settings, &["loud".into()]).unwrap_err();
        assert!(
            e.to_string().contains("default, strict, sloppy, plain"),
            "{e}"
        );
        let before = server.requests();
        let e = compare(&trial, &both, &items[..8], &|| {})
            .await
            .unwrap_err();
        assert!(matches!(e, CompareError::TooFew { .. }), "{e}");
        assert!(e.to_string().contains("needs at least 10"), "{e}");
        assert_eq!(
            server.requests(),
            before,
            "nothing is sent for too few items"
        );
        let bad = Trial {
            holdout_share: 1.0,
            ..trial
        };
        assert!(matches!(
            compare(&bad, &both, &items, &|| {}).await,
            Err(calibrate::CompareError::BadHoldout(_))
        ));
    }

    #[tokio::test]
    async fn items_the_endpoint_failed_on_are_left_out_for_every_candidate() {
        // Every request about item 2 fails: it cannot be compared for anyone.
        let server = FakeModel::start(Script::reply_with(|request| {
            let user = request["messages"][1]["content"]
                .as_str()
                .unwrap_or_default();
            if user.contains("Question number 2:") {
                return Reply::Status(500, None);
            }
            let system = request["messages"][0]["content"]
                .as_str()
                .unwrap_or_default();
            let sound = !system.contains("STRICT") || user.contains("with the receipt");
            Reply::Verdict(verdict(if sound { "pass" } else { "fail" }, "2"))
        }))
        .await;
        let judge = judge_with(
            trial_config(&server.base_url(), ""),
            Arc::new(MemoryLedger::default()),
        );
        let items: Vec<GradedTrace> = (1..=40).map(|n| graded(n, false)).collect();
        let held_two = agentwire_grading::calibrate::stable_fraction(&format!("{:032x}", 2)) < 0.6;
        let settings = judge.config().rubric[0].clone();
        let rubric = rubric();
        let trial = Trial {
            judge: &judge,
            rubric: &rubric,
            settings: &settings,
            holdout_share: 0.6,
            now_ms: NOW_MS,
        };
        let chosen = candidates(&settings, &["strict".into()]).unwrap();
        let comparison = compare(&trial, &chosen, &items, &|| {}).await.unwrap();
        assert!(held_two, "item 2 is held back at 0.6 (the split is stable)");
        let left_out = 1;
        assert_eq!(comparison.compared_on, comparison.held_back - left_out);
        for c in &comparison.candidates {
            assert_eq!(c.not_judged, left_out);
            assert_eq!(c.judged, comparison.compared_on);
        }
        let e = {
            // No item comparable: every call fails, and the error says so.
            let down = FakeModel::start(Script::new([])).await;
            let judge = judge_with(
                trial_config(&down.base_url(), ""),
                Arc::new(MemoryLedger::default()),
            );
            let trial = Trial {
                judge: &judge,
                ..trial
            };
            compare(&trial, &chosen, &items, &|| {}).await.unwrap_err()
        };
        assert!(e.to_string().contains("left out: "), "{e}");
        assert!(e.to_string().contains(" failed"), "{e}");
        assert_eq!(comparison.best, "strict");
    }

    #[tokio::test]
    async fn a_prompt_with_more_invalid_verdicts_than_the_current_is_never_chosen() {
        let server = FakeModel::start(model()).await;
        let judge = judge_with(
            trial_config(&server.base_url(), ""),
            Arc::new(MemoryLedger::default()),
        );
        let items: Vec<GradedTrace> = (1..=60).map(|n| graded(n, false)).collect();
        let settings = judge.config().rubric[0].clone();
        let rubric = rubric();
        let trial = Trial {
            judge: &judge,
            rubric: &rubric,
            settings: &settings,
            holdout_share: 0.5,
            now_ms: NOW_MS,
        };
        // `flaky` grades as the experts do, but without a verdict on every fifth item.
        let chosen = candidates(&settings, &["flaky".into()]).unwrap();
        let comparison = compare(&trial, &chosen, &items, &|| {}).await.unwrap();
        let flaky = comparison.candidate("flaky").unwrap();
        assert!(flaky.invalid > 0 && !flaky.eligible, "{flaky:?}");
        assert_eq!(
            flaky.criteria[0].kappa.value,
            Some(1.0),
            "right where it answers"
        );
        assert_eq!(
            (comparison.best.as_str(), comparison.improves),
            ("default", false)
        );
        // Compared on every item the current prompt judged, flaky's gaps included.
        assert_eq!(comparison.compared_on, comparison.held_back);
        // Redaction forbidding sending stops the comparison before any call.
        let before = server.requests();
        let mut closed = trial_config(&server.base_url(), "");
        closed.redaction.send = false;
        let closed = judge_with(closed, Arc::new(MemoryLedger::default()));
        let trial = Trial {
            judge: &closed,
            ..trial
        };
        let e = compare(&trial, &chosen, &items, &|| {}).await.unwrap_err();
        assert!(matches!(e, CompareError::SendingForbidden), "{e}");
        assert_eq!(server.requests(), before);
    }
}
