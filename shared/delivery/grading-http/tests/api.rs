//! The grading API over a real socket, on the real SQLite grading store and score index
//! and a trace archive in a directory: an owner sets up a rubric and a queue, two graders
//! claim, draft and grade, their grades join the trace's scores as `human` records and a
//! disagreement goes to adjudication; bad input and other tokens are refused with the
//! right status and a message naming the problem, and change nothing.

use std::sync::Arc;

use agentwire_auth::{Auth, Claims, Role, Signer};
use agentwire_fs::DirTraceArchive;
use agentwire_grading::GradingStore;
use agentwire_grading_http::{DEFAULT_MAX_BODY_BYTES, GradingService, router};
use agentwire_scoring::{Evidence, ScoreIndex, ScoreRecord, Source};
use agentwire_session::SystemClock;
use agentwire_sqlite::{SqliteGradingStore, SqliteScoreIndex};
use agentwire_trace::{Span, SpanKind, SpanStatus, TraceArchive, encode_jsonl_gz, object_key};
use bytes::Bytes;
use serde_json::{Value, json};

const SECRET: &[u8] = b"a test secret of at least 32 bytes!!";
/// 2025-06-15T12:00:00Z, unix ms.
const NOON_MS: i64 = 1_749_988_800_000;
const ANSWER: &str = "Paris is the capital of France.";

fn trace_id(i: usize) -> String {
    format!("{:032x}", i + 1)
}

fn span(trace: &str, id: &str, parent: Option<&str>, at_ms: i64, attrs: Value) -> Span {
    let at = (at_ms as u64) * 1_000_000;
    Span {
        trace_id: trace.into(),
        span_id: id.into(),
        parent_span_id: parent.map(str::to_owned),
        name: "x".into(),
        kind: SpanKind::Internal,
        start_time_unix_nano: at,
        end_time_unix_nano: at + 1,
        attributes: attrs.as_object().cloned().unwrap_or_default(),
        events: Vec::new(),
        status: SpanStatus::Unset,
    }
}

/// A question, a retrieval and an answer, as the archiver writes them.
fn spans(trace: &str, session: &str) -> Vec<Span> {
    let message = |role: &str, text: &str| {
        json!([{"role": role, "parts": [{"type": "text", "content": text}]}]).to_string()
    };
    vec![
        span(
            trace,
            "r000000000000001",
            None,
            NOON_MS,
            json!({"gen_ai.operation.name": "invoke_agent", "agentwire.session": session}),
        ),
        span(
            trace,
            "u000000000000001",
            Some("r000000000000001"),
            NOON_MS + 1,
            json!({"gen_ai.operation.name": "chat", "agentwire.message.role": "user",
                   "gen_ai.input.messages": message("user", "What is the capital of France?")}),
        ),
        span(
            trace,
            "k000000000000001",
            Some("r000000000000001"),
            NOON_MS + 2,
            json!({"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": "search_docs",
                   "agentwire.tool.retrieval": true,
                   "gen_ai.tool.call.result": json!(["France's capital is Paris."]).to_string()}),
        ),
        span(
            trace,
            "a000000000000001",
            Some("r000000000000001"),
            NOON_MS + 3,
            json!({"gen_ai.operation.name": "chat", "agentwire.message.role": "assistant",
                   "gen_ai.output.messages": message("assistant", ANSWER)}),
        ),
    ]
}

const RUBRIC: &str = r#"{"name": "support", "version": 1, "title": "Support answers",
  "criteria": [
    {"key": "correct", "title": "Is the answer correct?", "scale": {"kind": "pass_fail"},
     "justification_required": true, "scorers": [{"name": "groundedness", "threshold": 0.5}]},
    {"key": "tone", "title": "Tone", "scale": {"kind": "ordinal", "anchors": ["rude", "curt", "fine", "kind", "warm"]}}
  ]}"#;

struct Fixture {
    url: String,
    client: reqwest::Client,
    signer: Signer,
    index: Arc<SqliteScoreIndex>,
    store: Arc<SqliteGradingStore>,
    _dir: tempfile::TempDir,
}

impl Fixture {
    /// A server over a fresh database and archive holding `traces` traces of tenant
    /// `acme`, each with one code score record pointing at the answer's first word.
    async fn start(traces: usize) -> Fixture {
        let dir = tempfile::tempdir().expect("temp dir");
        let db = dir.path().join("sessions.db");
        let index = Arc::new(SqliteScoreIndex::open(&db).expect("score index"));
        let store = Arc::new(SqliteGradingStore::open(&db).expect("grading store"));
        let archive: Arc<dyn TraceArchive> = Arc::new(DirTraceArchive::new(dir.path()));
        for i in 0..traces {
            let (trace, session) = (trace_id(i), format!("chat-{i}"));
            let body = encode_jsonl_gz(&spans(&trace, &session)).expect("encode");
            archive
                .put(&object_key("acme", &session, NOON_MS), Bytes::from(body))
                .await
                .expect("archive");
            let record = ScoreRecord {
                trace_id: trace.clone(),
                span_id: Some("a000000000000001".into()),
                session: session.clone(),
                tenant: "acme".into(),
                name: "groundedness".into(),
                value: 0.2,
                label: Some("ungrounded".into()),
                source: Source::Code,
                explanation: None,
                evidence: vec![Evidence::range("a000000000000001", 0, 5)],
                scorer: "groundedness".into(),
                scorer_version: "1".into(),
                trace_digest: format!("digest-{i}"),
                scored_at_ms: NOON_MS + 3_600_000 + i as i64,
                usage: None,
            };
            index
                .replace("acme", &trace, Source::Code, &[record])
                .await
                .expect("index");
        }
        let auth = Auth::Tokens(Signer::new(SECRET));
        let service = GradingService::new(
            store.clone() as Arc<dyn GradingStore>,
            index.clone() as Arc<dyn ScoreIndex>,
            archive,
            Arc::new(SystemClock),
        );
        let app = router(service, auth.clone(), DEFAULT_MAX_BODY_BYTES).merge(
            agentwire_traces_http::scores_router(index.clone() as Arc<dyn ScoreIndex>, auth),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        tokio::spawn(async move {
            axum::serve(listener, app).await.expect("serve");
        });
        Fixture {
            url,
            client: reqwest::Client::new(),
            signer: Signer::new(SECRET),
            index,
            store,
            _dir: dir,
        }
    }

    fn token(&self, tenant: &str, role: Role, sessions: &str, user: Option<&str>) -> String {
        self.signer.mint(&Claims {
            tenant: tenant.into(),
            sessions: sessions.into(),
            role,
            user: user.map(str::to_owned),
            exp: i64::MAX,
        })
    }

    fn admin(&self) -> String {
        self.token("acme", Role::Admin, "*", Some("owner"))
    }

    fn grader(&self, queue: &str, user: &str) -> String {
        self.token("acme", Role::Grader, queue, Some(user))
    }

    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        token: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut request = self
            .client
            .request(method, format!("{}{path}", self.url))
            .bearer_auth(token);
        if let Some(body) = body {
            request = request
                .header("content-type", "application/json")
                .body(body.to_string());
        }
        let response = request.send().await.expect("request");
        let status = response.status().as_u16();
        let text = response.text().await.expect("body");
        let value = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        (status, value)
    }

    async fn get(&self, path: &str, token: &str) -> (u16, Value) {
        self.call(reqwest::Method::GET, path, token, None).await
    }

    async fn post(&self, path: &str, token: &str, body: Value) -> (u16, Value) {
        self.call(reqwest::Method::POST, path, token, Some(body))
            .await
    }

    async fn put(&self, path: &str, token: &str, body: Value) -> (u16, Value) {
        self.call(reqwest::Method::PUT, path, token, Some(body))
            .await
    }

    /// The rubric and a queue `name` over the first two traces, graded by alice and bob.
    async fn queue(&self, name: &str, extra: Value) -> Value {
        let rubric: Value = serde_json::from_str(RUBRIC).expect("rubric json");
        let (status, _) = self
            .put("/v1/rubrics/support/1", &self.admin(), rubric)
            .await;
        assert!(status == 201 || status == 200, "{status}");
        let mut queue = json!({"name": name, "title": "Review", "rubric": {"name": "support", "version": 1},
                               "graders": ["alice", "bob"], "per_item": 2});
        for (key, value) in extra.as_object().cloned().unwrap_or_default() {
            queue[key] = value;
        }
        let (status, body) = self
            .post(
                "/v1/queues",
                &self.admin(),
                json!({"queue": queue, "traces": [trace_id(0), trace_id(1)]}),
            )
            .await;
        assert_eq!(status, 201, "{body}");
        body
    }
}

fn error(body: &Value) -> String {
    body["error"]
        .as_str()
        .unwrap_or_else(|| panic!("an error message in {body}"))
        .to_owned()
}

fn grade(correct: &str, justification: Option<&str>, tone: &str) -> Value {
    let mut correct = json!({"value": correct});
    if let Some(text) = justification {
        correct["justification"] = json!(text);
    }
    json!({"rubric": {"name": "support", "version": 1},
           "answers": {"correct": correct, "tone": {"value": tone}}})
}

#[tokio::test]
async fn an_owner_sets_up_a_queue_and_two_graders_grade_it_into_the_traces_scores() {
    let f = Fixture::start(3).await;
    let admin = f.admin();
    let rubric: Value = serde_json::from_str(RUBRIC).expect("rubric json");

    // Rubric versions: created, the same again, never changed.
    let (status, _) = f.put("/v1/rubrics/support/1", &admin, rubric.clone()).await;
    assert_eq!(status, 201);
    let (status, _) = f.put("/v1/rubrics/support/1", &admin, rubric.clone()).await;
    assert_eq!(status, 200, "the same body again is a no-op");
    let mut changed = rubric.clone();
    changed["title"] = json!("Something else");
    let (status, body) = f.put("/v1/rubrics/support/1", &admin, changed).await;
    assert_eq!(status, 409, "{body}");
    assert!(error(&body).contains("never change"), "{body}");
    let (status, body) = f.get("/v1/rubrics/support", &admin).await;
    assert_eq!(
        (status, body["rubric"]["title"].clone()),
        (200, json!("Support answers"))
    );

    // The queue, with an adjudication queue for disagreements.
    let queue = json!({"name": "review", "title": "Review", "rubric": {"name": "support", "version": 1},
                       "graders": ["alice", "bob"], "per_item": 2,
                       "adjudication": {"queue": "review-adj", "threshold": 1, "graders": ["carol"]}});
    let create = json!({"queue": queue, "traces": [trace_id(0), trace_id(1)]});
    let (status, body) = f.post("/v1/queues", &admin, create.clone()).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["items"], 2);
    let (status, body) = f.post("/v1/queues", &admin, create).await;
    assert_eq!(
        (status, body["items"].clone()),
        (200, json!(2)),
        "a retry is safe: {body}"
    );
    let (status, body) = f.get("/v1/queues/review", &admin).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["progress"]["items"], 2);
    assert_eq!(body["progress"]["slots"], 4);
    assert_eq!(body["progress"]["done"], 0);

    // Alice claims, reads the item (not blind: scores and flagged ranges), drafts.
    let alice = f.grader("review", "alice");
    let (status, body) = f.post("/v1/queues/review/claim", &alice, json!({})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["claim"]["item"]["trace_id"], trace_id(0));
    assert_eq!(body["progress"], json!({"done": 0, "total": 2}));
    let item_path = format!("/v1/queues/review/items/{}", trace_id(0));
    let (status, view) = f.get(&item_path, &alice).await;
    assert_eq!(status, 200, "{view}");
    assert_eq!(view["blind"], false);
    assert_eq!(view["rubric"]["name"], "support");
    assert_eq!(view["draft"], Value::Null);
    let messages = view["conversation"]["messages"]
        .as_array()
        .expect("messages");
    assert_eq!(messages.len(), 2, "{view}");
    assert_eq!(messages[0]["role"], "user");
    assert_eq!(messages[1]["text"], ANSWER);
    assert_eq!(
        messages[1]["flagged"],
        json!([{"start": 0, "end": 5, "label": "groundedness"}])
    );
    assert_eq!(
        view["conversation"]["passages"],
        json!([{"source": "search_docs", "text": "France's capital is Paris.", "flagged": []}])
    );
    assert_eq!(view["conversation"]["tool_calls"][0]["name"], "search_docs");
    assert_eq!(view["scores"][0]["name"], "groundedness");
    assert_eq!(view["grades"], json!([]));
    let draft = json!({"answers": {"correct": {"value": "pass"}}, "note": "half done"});
    let (status, _) = f
        .put(&format!("{item_path}/draft"), &alice, draft.clone())
        .await;
    assert_eq!(status, 204);
    let (_, view) = f.get(&item_path, &alice).await;
    assert_eq!(view["draft"], draft, "a reload finds the draft");

    // Bob gets the same item (two graders per item); both grade it, disagreeing.
    let bob = f.grader("review", "bob");
    let (_, body) = f.post("/v1/queues/review/claim", &bob, json!({})).await;
    assert_eq!(body["claim"]["item"]["trace_id"], trace_id(0));
    let (status, body) = f
        .post(
            &format!("{item_path}/grade"),
            &alice,
            grade("pass", Some("It names Paris, as the document does."), "4"),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["records"], 2);
    let (_, view) = f.get(&item_path, &alice).await;
    assert_eq!(view["draft"], Value::Null, "submitting deleted the draft");
    let (_, view) = f.get(&item_path, &bob).await;
    assert_eq!(
        view["grades"][0]["grader"], "alice",
        "bob sees alice's grade: {view}"
    );
    let (status, body) = f
        .post(
            &format!("{item_path}/grade"),
            &bob,
            grade("fail", Some("It should say more."), "2"),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let mut disagreed: Vec<String> =
        serde_json::from_value(body["disagreed"].clone()).expect("criteria");
    disagreed.sort();
    assert_eq!(disagreed, ["correct", "tone"], "{body}");
    assert_eq!(body["adjudication"], "review-adj");

    // The grades are the trace's human scores.
    let (status, body) = f
        .get(&format!("/v1/traces/{}/scores", trace_id(0)), &admin)
        .await;
    assert_eq!(status, 200, "{body}");
    let human: Vec<&Value> = body["scores"]
        .as_array()
        .expect("scores")
        .iter()
        .filter(|r| r["source"] == "human")
        .collect();
    let mut names: Vec<&str> = human.iter().map(|r| r["name"].as_str().unwrap()).collect();
    names.sort();
    assert_eq!(
        names,
        [
            "support.correct/alice",
            "support.correct/bob",
            "support.tone/alice",
            "support.tone/bob"
        ]
    );
    let alice_correct = human
        .iter()
        .find(|r| r["name"] == "support.correct/alice")
        .unwrap();
    assert_eq!(alice_correct["label"], "pass");
    assert_eq!(alice_correct["value"], 1.0);
    assert_eq!(alice_correct["scorer"], "alice");
    assert_eq!(alice_correct["scorer_version"], "support@1");
    assert_eq!(
        alice_correct["explanation"],
        "It names Paris, as the document does."
    );
    assert_eq!(alice_correct["trace_digest"], "digest-0");
    assert!(
        body["scores"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["source"] == "code"),
        "the code records stay"
    );

    // The disagreed item waits for carol in the adjudication queue.
    let (status, body) = f.get("/v1/queues/review-adj", &admin).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["progress"]["items"], 1);
    assert_eq!(body["queue"]["graders"], json!(["carol"]));
    let carol = f.grader("review-adj", "carol");
    let (_, body) = f
        .post("/v1/queues/review-adj/claim", &carol, json!({}))
        .await;
    assert_eq!(body["claim"]["item"]["trace_id"], trace_id(0), "{body}");

    // The owner's view of the queue.
    let (_, body) = f.get("/v1/queues/review/grades", &admin).await;
    assert_eq!(body["grades"].as_array().map(Vec::len), Some(2), "{body}");
    let (_, body) = f.get("/v1/queues/review", &admin).await;
    assert_eq!(body["progress"]["done"], 2);
    assert_eq!(body["progress"]["complete"], 1);
    assert_eq!(body["progress"]["graders"], json!({"alice": 1, "bob": 1}));
    let (_, body) = f.get("/v1/queues", &admin).await;
    let mut listed: Vec<&str> = body["queues"]
        .as_array()
        .unwrap()
        .iter()
        .map(|q| q["name"].as_str().unwrap())
        .collect();
    listed.sort();
    assert_eq!(listed, ["review", "review-adj"]);

    // Agreement: what the statistics code computes for these grades, with the linked
    // scorer (groundedness 0.2 < 0.5: "fail") as one more grader.
    let (status, body) = f.get("/v1/queues/review/agreement", &admin).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["grades"], 2);
    let criteria = body["criteria"].as_array().expect("criteria");
    assert_eq!(criteria.len(), 2);
    let mut correct = agentwire_agreement::GradeTable::new("correct");
    for (grader, value) in [("alice", "pass"), ("bob", "fail")] {
        correct
            .add(
                trace_id(0),
                grader,
                agentwire_agreement::Value::Text(value.into()),
            )
            .unwrap();
    }
    let mut want =
        agentwire_agreement::agreement(&correct, agentwire_agreement::Scale::Nominal).unwrap();
    want.scorers.push(
        agentwire_agreement::scorer_agreement(
            &correct,
            "groundedness",
            &[(trace_id(0), agentwire_agreement::Value::Text("fail".into()))],
            agentwire_agreement::Scale::Nominal,
            &agentwire_agreement::Options::default(),
        )
        .unwrap(),
    );
    assert_eq!(criteria[0], serde_json::to_value(&want).unwrap());
    assert_eq!(criteria[0]["disagreement_count"], 1);
    assert_eq!(criteria[0]["scorers"][0]["scorer"], "groundedness");
    let mut tone = agentwire_agreement::GradeTable::new("tone");
    for (grader, value) in [("alice", 4.0), ("bob", 2.0)] {
        tone.add(
            trace_id(0),
            grader,
            agentwire_agreement::Value::Number(value),
        )
        .unwrap();
    }
    let want = agentwire_agreement::agreement(&tone, agentwire_agreement::Scale::Ordinal).unwrap();
    assert_eq!(criteria[1], serde_json::to_value(&want).unwrap());
    let (status, _) = f.get("/v1/queues/review/agreement", &alice).await;
    assert_eq!(status, 403, "a grader cannot read agreement");

    // Alice moves on to the next item.
    let (_, body) = f.post("/v1/queues/review/claim", &alice, json!({})).await;
    assert_eq!(body["claim"]["item"]["trace_id"], trace_id(1));
    assert_eq!(body["progress"], json!({"done": 1, "total": 2}));
}

#[tokio::test]
async fn a_queue_from_a_filter_takes_the_matching_traces() {
    let f = Fixture::start(3).await;
    let admin = f.admin();
    let rubric: Value = serde_json::from_str(RUBRIC).expect("rubric json");
    f.put("/v1/rubrics/support/1", &admin, rubric).await;
    let queue = json!({"name": "low", "rubric": {"name": "support", "version": 1},
                       "graders": ["alice"], "per_item": 1});
    let (status, body) = f
        .post(
            "/v1/queues",
            &admin,
            json!({"queue": queue, "filter": {"name": "groundedness", "max_value": 0.5, "sample": 2}}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["items"], 2, "the sample's size");
    assert_eq!(
        body["queue"]["source"]["filter"]["name"], "groundedness",
        "the filter is recorded"
    );
    let (status, body) = f
        .post(
            "/v1/queues",
            &admin,
            json!({"queue": {"name": "none", "rubric": {"name": "support", "version": 1},
                             "graders": ["alice"], "per_item": 1},
                   "filter": {"name": "groundedness", "max_value": 0.1}}),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert!(error(&body).contains("no traces match"), "{body}");
}

#[tokio::test]
async fn a_blind_queue_shows_neither_scores_nor_other_grades() {
    let f = Fixture::start(2).await;
    f.queue("blind", json!({"blind": true})).await;
    let alice = f.grader("blind", "alice");
    f.post("/v1/queues/blind/claim", &alice, json!({})).await;
    let (status, view) = f
        .get(&format!("/v1/queues/blind/items/{}", trace_id(0)), &alice)
        .await;
    assert_eq!(status, 200, "{view}");
    assert_eq!(view["blind"], true);
    assert!(view.get("scores").is_none(), "{view}");
    assert!(view.get("grades").is_none(), "{view}");
    assert!(
        view["conversation"]["messages"][1].get("flagged").is_none(),
        "no scorer's flags: {view}"
    );
    // The owner sees everything.
    let (_, view) = f
        .get(
            &format!("/v1/queues/blind/items/{}", trace_id(0)),
            &f.admin(),
        )
        .await;
    assert_eq!(view["scores"][0]["name"], "groundedness", "{view}");
}

#[tokio::test]
async fn bad_input_and_foreign_tokens_are_refused_and_change_nothing() {
    let f = Fixture::start(2).await;
    f.queue("review", json!({})).await;
    let alice = f.grader("review", "alice");
    let (_, body) = f.post("/v1/queues/review/claim", &alice, json!({})).await;
    assert_eq!(body["claim"]["item"]["trace_id"], trace_id(0));
    let grade_path = format!("/v1/queues/review/items/{}/grade", trace_id(0));
    let (_, before) = f.get("/v1/queues/review", &f.admin()).await;

    let cases: Vec<(&str, String, Value, u16, &str)> = vec![
        (
            "a point outside the scale",
            alice.clone(),
            grade("pass", Some("fine"), "6"),
            400,
            "answers.tone.value",
        ),
        (
            "a value pass/fail does not have",
            alice.clone(),
            grade("maybe", Some("fine"), "3"),
            400,
            "answers.correct.value",
        ),
        (
            "a missing required justification",
            alice.clone(),
            grade("pass", None, "3"),
            400,
            "justification",
        ),
        (
            "a blank required justification",
            alice.clone(),
            grade("pass", Some("   "), "3"),
            400,
            "justification",
        ),
        (
            "an unknown criterion",
            alice.clone(),
            json!({"rubric": {"name": "support", "version": 1},
                   "answers": {"correct": {"value": "pass", "justification": "ok"}, "tone": {"value": "3"},
                               "speed": {"value": "pass"}}}),
            400,
            "speed",
        ),
        (
            "a grader the queue does not list",
            f.grader("review", "mallory"),
            grade("pass", Some("fine"), "3"),
            403,
            "mallory",
        ),
        (
            "a grader who never claimed the item",
            f.grader("review", "bob"),
            grade("pass", Some("fine"), "3"),
            409,
            "claim",
        ),
        (
            "a grader token for another queue",
            f.grader("other", "alice"),
            grade("pass", Some("fine"), "3"),
            403,
            "does not cover",
        ),
        (
            "a grader token without a grader",
            f.token("acme", Role::Grader, "review", None),
            grade("pass", Some("fine"), "3"),
            401,
            "--user",
        ),
        (
            "a reader token",
            f.token("acme", Role::Reader, "*", Some("alice")),
            grade("pass", Some("fine"), "3"),
            403,
            "reader",
        ),
    ];
    for (what, token, body, want, names) in cases {
        let (status, answer) = f.post(&grade_path, &token, body).await;
        assert_eq!(status, want, "{what}: {answer}");
        assert!(error(&answer).contains(names), "{what}: {answer}");
    }

    // A stale rubric version: the queue grades with version 1.
    let mut v2: Value = serde_json::from_str(RUBRIC).expect("rubric json");
    v2["version"] = json!(2);
    v2["title"] = json!("Support answers, revised");
    let (status, _) = f.put("/v1/rubrics/support/2", &f.admin(), v2).await;
    assert_eq!(status, 201);
    let mut stale = grade("pass", Some("fine"), "3");
    stale["rubric"]["version"] = json!(2);
    let (status, answer) = f.post(&grade_path, &alice, stale).await;
    assert_eq!(status, 400, "{answer}");
    assert!(error(&answer).contains("stale rubric version"), "{answer}");

    // A grader token is refused on another queue whether or not it exists, and on the
    // owner's routes.
    for path in ["/v1/queues/other/claim", "/v1/queues/ghost/claim"] {
        let (status, answer) = f.post(path, &alice, json!({})).await;
        assert_eq!(status, 403, "{path}: {answer}");
    }
    let (status, _) = f
        .post(
            "/v1/queues/review/claim",
            &f.grader("review", "mallory"),
            json!({}),
        )
        .await;
    assert_eq!(status, 403, "a grader the queue does not list cannot claim");
    for path in [
        "/v1/queues",
        "/v1/queues/review",
        "/v1/queues/review/grades",
    ] {
        let (status, answer) = f.get(path, &alice).await;
        assert_eq!(status, 403, "{path}: {answer}");
    }

    // Another tenant sees nothing of acme's.
    let globex = f.token("globex", Role::Admin, "*", Some("alice"));
    let (status, answer) = f.get("/v1/queues/review", &globex).await;
    assert_eq!(status, 404, "{answer}");
    let (_, answer) = f.get("/v1/queues", &globex).await;
    assert_eq!(answer["queues"], json!([]));
    let globex_alice = f.token("globex", Role::Grader, "review", Some("alice"));
    let (status, _) = f
        .post("/v1/queues/review/claim", &globex_alice, json!({}))
        .await;
    assert_eq!(status, 404, "acme's queue is not globex's");
    let (status, _) = f
        .get(
            &format!("/v1/queues/review/items/{}", trace_id(0)),
            &globex_alice,
        )
        .await;
    assert_eq!(status, 404);

    // Bad queues.
    let admin = f.admin();
    let queue = |extra: Value| {
        let mut q = json!({"name": "q2", "rubric": {"name": "support", "version": 1},
                           "graders": ["alice"], "per_item": 1});
        for (key, value) in extra.as_object().cloned().unwrap_or_default() {
            q[key] = value;
        }
        q
    };
    let bad_queues = [
        (
            json!({"queue": queue(json!({"per_item": 2})), "traces": [trace_id(0)]}),
            "per_item",
        ),
        (
            json!({"queue": queue(json!({"rubric": {"name": "nope", "version": 1}})), "traces": [trace_id(0)]}),
            "no rubric nope",
        ),
        (
            json!({"queue": queue(json!({})), "traces": [trace_id(0), trace_id(0)]}),
            "listed twice",
        ),
        (
            json!({"queue": queue(json!({})), "traces": ["not-a-trace"]}),
            "traces[0]",
        ),
        (
            json!({"queue": queue(json!({})), "traces": [trace_id(7)]}),
            "no score records",
        ),
        (
            json!({"queue": queue(json!({})), "traces": [trace_id(0)], "filter": {}}),
            "exactly one",
        ),
        (
            json!({"queue": queue(json!({"name": "review"})), "traces": [trace_id(1)]}),
            "review",
        ),
    ];
    for (body, names) in bad_queues {
        let (status, answer) = f.post("/v1/queues", &admin, body.clone()).await;
        assert!(status == 400 || status == 409, "{body}: {status} {answer}");
        assert!(error(&answer).contains(names), "{body}: {answer}");
    }

    // A draft too large, and for an item not claimed.
    let huge = json!({"note": "x".repeat(agentwire_grading::grade::MAX_DRAFT)});
    let draft_path = format!("/v1/queues/review/items/{}/draft", trace_id(0));
    let (status, _) = f.put(&draft_path, &alice, huge).await;
    assert_eq!(status, 413);
    let (status, _) = f
        .put(&draft_path, &f.grader("review", "bob"), json!({"a": 1}))
        .await;
    assert_eq!(status, 409);

    // Nothing changed: no grade, no slot filled, no human record, no draft, one queue.
    assert!(f.store.grades("acme", "review").await.unwrap().is_empty());
    let (_, after) = f.get("/v1/queues/review", &admin).await;
    assert_eq!(after["progress"], before["progress"]);
    assert_eq!(after["progress"]["done"], 0);
    assert_eq!(after["progress"]["held"], 1);
    let records = f.index.trace("acme", &trace_id(0)).await.unwrap();
    assert!(
        records.iter().all(|r| r.source == Source::Code),
        "{records:?}"
    );
    assert!(
        f.store
            .draft("acme", "review", &trace_id(0), "bob")
            .await
            .unwrap()
            .is_none()
    );
    let (_, listed) = f.get("/v1/queues", &admin).await;
    assert_eq!(
        listed["queues"].as_array().map(Vec::len),
        Some(1),
        "{listed}"
    );

    // And alice's grade, once right, is taken.
    let (status, answer) = f
        .post(&grade_path, &alice, grade("pass", Some("fine"), "3"))
        .await;
    assert_eq!(status, 201, "{answer}");
}

#[tokio::test]
async fn an_admin_of_some_sessions_cannot_own_queues() {
    let f = Fixture::start(2).await;
    f.queue("review", json!({})).await;
    let scoped = f.token("acme", Role::Admin, "chat-0", Some("owner"));
    let rubric: Value = serde_json::from_str(RUBRIC).expect("rubric json");
    for (status, body) in [
        f.put("/v1/rubrics/support/2", &scoped, rubric).await,
        f.get("/v1/queues", &scoped).await,
        f.get("/v1/queues/review/grades", &scoped).await,
        f.get(&format!("/v1/queues/review/items/{}", trace_id(1)), &scoped)
            .await,
        f.post(
            "/v1/queues",
            &scoped,
            json!({"queue": {"name": "mine", "rubric": {"name": "support", "version": 1},
                             "graders": ["alice"], "per_item": 1},
                   "traces": [trace_id(1)]}),
        )
        .await,
    ] {
        assert_eq!(status, 403, "{body}");
        assert!(
            error(&body).contains("every session of the tenant"),
            "{body}"
        );
    }
    let (_, queues) = f.get("/v1/queues", &f.admin()).await;
    assert_eq!(
        queues.to_string().matches("\"mine\"").count(),
        0,
        "{queues}"
    );
}

#[tokio::test]
async fn a_blind_grader_is_not_told_what_the_others_answered() {
    let f = Fixture::start(1).await;
    let adjudication = json!({"queue": "blind-adj", "graders": ["carol"]});
    let rubric: Value = serde_json::from_str(RUBRIC).expect("rubric json");
    f.put("/v1/rubrics/support/1", &f.admin(), rubric).await;
    let (status, body) = f
        .post(
            "/v1/queues",
            &f.admin(),
            json!({"queue": {"name": "blind", "rubric": {"name": "support", "version": 1},
                             "graders": ["alice", "bob"], "per_item": 2, "blind": true,
                             "adjudication": adjudication},
                   "traces": [trace_id(0)]}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let path = format!("/v1/queues/blind/items/{}/grade", trace_id(0));
    for (who, verdict) in [("alice", "pass"), ("bob", "fail")] {
        let token = f.grader("blind", who);
        f.post("/v1/queues/blind/claim", &token, json!({})).await;
        let (status, body) = f
            .post(&path, &token, grade(verdict, Some("why"), "3"))
            .await;
        assert_eq!(status, 201, "{body}");
        assert!(
            body.get("disagreed").is_none_or(|d| d == &json!([])) && body["adjudication"].is_null(),
            "{who} learns nothing of the other's answer: {body}"
        );
    }
    // The item still went to adjudication.
    let (_, adj) = f.get("/v1/queues/blind-adj", &f.admin()).await;
    assert_eq!(adj["progress"]["items"], 1, "{adj}");
}

#[tokio::test]
async fn a_retried_grade_is_accepted_again_and_a_different_one_is_not() {
    let f = Fixture::start(2).await;
    f.queue("retry", json!({"per_item": 1})).await;
    let alice = f.grader("retry", "alice");
    f.post("/v1/queues/retry/claim", &alice, json!({})).await;
    let path = format!("/v1/queues/retry/items/{}/grade", trace_id(0));
    let (status, body) = f.post(&path, &alice, grade("pass", Some("ok"), "4")).await;
    assert_eq!(status, 201, "{body}");
    // The same grade again (a client that never saw the answer): its follow-ups run again.
    let (status, body) = f.post(&path, &alice, grade("pass", Some("ok"), "4")).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["records"], 2, "{body}");
    let (status, body) = f.post(&path, &alice, grade("fail", Some("no"), "4")).await;
    assert_eq!(status, 409, "{body}");
    let (_, grades) = f.get("/v1/queues/retry/grades", &f.admin()).await;
    assert_eq!(
        grades["grades"].as_array().map(Vec::len),
        Some(1),
        "{grades}"
    );
    assert_eq!(grades["grades"][0]["answers"]["correct"]["value"], "pass");
}

/// A judge's whole-trace record for `support.<criterion>`, as the judge writes it.
fn judge_record(i: usize, criterion: &str, label: &str, scorer_version: &str) -> ScoreRecord {
    ScoreRecord {
        trace_id: trace_id(i),
        span_id: None,
        session: format!("chat-{i}"),
        tenant: "acme".into(),
        name: format!("support.{criterion}"),
        value: if label == "pass" { 1.0 } else { 0.0 },
        label: Some(label.into()),
        source: Source::Judge,
        explanation: Some("the judge's reason".into()),
        evidence: Vec::new(),
        scorer: "judge".into(),
        scorer_version: scorer_version.into(),
        trace_digest: format!("digest-{i}"),
        scored_at_ms: NOON_MS + 7_200_000,
        usage: None,
    }
}

#[tokio::test]
async fn each_judge_version_is_one_more_grader_and_one_that_contradicts_them_is_not_trusted() {
    const TRACES: usize = 8;
    let f = Fixture::start(TRACES).await;
    let rubric: Value = serde_json::from_str(RUBRIC).expect("rubric json");
    f.put("/v1/rubrics/support/1", &f.admin(), rubric).await;
    let traces: Vec<String> = (0..TRACES).map(trace_id).collect();
    let (status, body) = f
        .post(
            "/v1/queues",
            &f.admin(),
            json!({"queue": {"name": "judged", "rubric": {"name": "support", "version": 1},
                             "graders": ["alice", "bob"], "per_item": 2},
                   "traces": traces}),
        )
        .await;
    assert_eq!(status, 201, "{body}");

    // Alice alternates pass/fail; bob agrees except on item 2.
    let alice_says = |i: usize| if i.is_multiple_of(2) { "pass" } else { "fail" };
    let opposite = |v: &str| if v == "pass" { "fail" } else { "pass" };
    for who in ["alice", "bob"] {
        let token = f.grader("judged", who);
        for _ in 0..TRACES {
            let (_, claim) = f.post("/v1/queues/judged/claim", &token, json!({})).await;
            let trace = claim["claim"]["item"]["trace_id"]
                .as_str()
                .unwrap_or_else(|| panic!("{who} claims an item: {claim}"))
                .to_owned();
            let i = traces
                .iter()
                .position(|t| *t == trace)
                .expect("a queue trace");
            let verdict = match (who, i) {
                ("bob", 2) => opposite(alice_says(i)),
                _ => alice_says(i),
            };
            let (status, body) = f
                .post(
                    &format!("/v1/queues/judged/items/{trace}/grade"),
                    &token,
                    grade(verdict, Some("why"), "3"),
                )
                .await;
            assert_eq!(status, 201, "{who} grades {trace}: {body}");
        }
    }

    // Judge prompt 1 on items 0-3 says what alice says; prompt 2 on items 4-7 says the
    // opposite. Beside them: an answer off the scale, another rubric version's answer and a
    // span's record, none of which is an answer of this rubric's judge.
    const AGREES: &str = "gpt-4o-mini/judge-1/support@1";
    const CONTRADICTS: &str = "gpt-4o-mini/judge-2/support@1";
    for i in 0..TRACES {
        let mut records = if i < 4 {
            vec![
                judge_record(i, "correct", alice_says(i), AGREES),
                judge_record(i, "tone", "3", AGREES),
            ]
        } else {
            vec![judge_record(
                i,
                "correct",
                opposite(alice_says(i)),
                CONTRADICTS,
            )]
        };
        match i {
            5 => records.push(judge_record(i, "tone", "very", AGREES)),
            6 => records.push(judge_record(
                i,
                "tone",
                "3",
                "gpt-4o-mini/judge-1/support@2",
            )),
            _ => {}
        }
        if i >= 4 {
            let mut on_span = judge_record(i, "correct", alice_says(i), AGREES);
            on_span.span_id = Some("a000000000000001".into());
            records.push(on_span);
        }
        f.index
            .replace("acme", &trace_id(i), Source::Judge, &records)
            .await
            .expect("judge records");
    }
    let (status, body) = f.get("/v1/queues/judged/agreement", &f.admin()).await;
    assert_eq!(status, 200, "{body}");
    let scorers = |criterion: usize| -> Vec<Value> {
        body["criteria"][criterion]["scorers"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    };
    let correct = scorers(0);
    let names: Vec<&str> = correct
        .iter()
        .filter_map(|s| s["scorer"].as_str())
        .collect();
    assert_eq!(
        names,
        [
            "groundedness",
            "judge:gpt-4o-mini/judge-1/support@1",
            "judge:gpt-4o-mini/judge-2/support@1"
        ],
        "{body}"
    );
    let (agrees, contradicts) = (&correct[1], &correct[2]);
    assert_eq!(agrees["items"], 4, "{agrees}");
    assert_eq!(agrees["trusted"], true, "{agrees}");
    assert_eq!(contradicts["items"], 4, "{contradicts}");
    assert_eq!(contradicts["trusted"], false, "{contradicts}");
    assert!(
        contradicts["scorer_vs_others_mean"]["value"].as_f64()
            < contradicts["graders_vs_others_mean"]["value"].as_f64(),
        "{contradicts}"
    );

    // The same figures the statistics code gives on the judge's labels.
    let mut table = agentwire_agreement::GradeTable::new("correct");
    for (i, trace) in traces.iter().enumerate() {
        for who in ["alice", "bob"] {
            let verdict = match (who, i) {
                ("bob", 2) => opposite(alice_says(i)),
                _ => alice_says(i),
            };
            table
                .add(
                    trace.clone(),
                    who,
                    agentwire_agreement::Value::Text(verdict.into()),
                )
                .unwrap();
        }
    }
    let labels: Vec<(String, agentwire_agreement::Value)> = (0..4)
        .map(|i| {
            (
                trace_id(i),
                agentwire_agreement::Value::Text(alice_says(i).into()),
            )
        })
        .collect();
    let want = agentwire_agreement::scorer_agreement(
        &table,
        &format!("judge:{AGREES}"),
        &labels,
        agentwire_agreement::Scale::Nominal,
        &agentwire_agreement::Options::default(),
    )
    .unwrap();
    assert_eq!(*agrees, serde_json::to_value(&want).unwrap());

    // Ordinal labels are points on the scale; the off-scale one and the other rubric
    // version's are left out.
    let tone = scorers(1);
    assert_eq!(tone.len(), 1, "{body}");
    assert_eq!(tone[0]["scorer"], format!("judge:{AGREES}"));
    assert_eq!(tone[0]["items"], 4, "{}", tone[0]);
}
