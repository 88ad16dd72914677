//! The grading API as the HTTP function serves it (`Stack::api_app` on a stack wired as
//! the function is: `Needs::REQUESTS`, no delivery), on DynamoDB Local
//! and a local S3 server: an owner stores a rubric and a queue with an admin token, a
//! grader claims the item, reads its conversation from the trace in the bucket, saves a
//! draft and submits a grade, and the grade comes back as a `human` score record beside
//! the trace's machine one.

use agentwire_auth::{Claims, Role, Signer};
use agentwire_aws_stack::{Needs, SecretSource, Settings};
use agentwire_scoring::{Evidence, ScoreIndex, ScoreRecord, Source};
use agentwire_trace::{Span, SpanKind, SpanStatus, TraceArchive, encode_jsonl_gz, object_key};
use bytes::Bytes;
use serde_json::{Value, json};

use crate::common::stack_with;

/// 2025-06-15T12:00:00Z, unix ms.
const NOON_MS: i64 = 1_749_988_800_000;
const TRACE: &str = "0000000000000000000000000000a001";
const ANSWER: &str = "Paris is the capital of France.";

fn span(id: &str, parent: Option<&str>, at_ms: i64, attributes: Value) -> Span {
    let at = (at_ms as u64) * 1_000_000;
    Span {
        trace_id: TRACE.into(),
        span_id: id.into(),
        parent_span_id: parent.map(str::to_owned),
        name: "x".into(),
        kind: SpanKind::Internal,
        start_time_unix_nano: at,
        end_time_unix_nano: at + 1,
        attributes: attributes.as_object().cloned().unwrap_or_default(),
        events: Vec::new(),
        status: SpanStatus::Unset,
    }
}

/// A question and its answer, as the archiver writes them.
fn conversation(session: &str) -> Vec<Span> {
    let message = |role: &str, text: &str| {
        json!([{"role": role, "parts": [{"type": "text", "content": text}]}]).to_string()
    };
    vec![
        span(
            "r000000000000001",
            None,
            NOON_MS,
            json!({"gen_ai.operation.name": "invoke_agent", "agentwire.session": session}),
        ),
        span(
            "u000000000000001",
            Some("r000000000000001"),
            NOON_MS + 1,
            json!({"gen_ai.operation.name": "chat", "agentwire.message.role": "user",
                   "gen_ai.input.messages": message("user", "What is the capital of France?")}),
        ),
        span(
            "a000000000000001",
            Some("r000000000000001"),
            NOON_MS + 2,
            json!({"gen_ai.operation.name": "chat", "agentwire.message.role": "assistant",
                   "gen_ai.output.messages": message("assistant", ANSWER)}),
        ),
    ]
}

fn signer(settings: &Settings) -> Signer {
    let Some(SecretSource::Value(secret)) = &settings.secret else {
        panic!("the test stack is given its secret directly");
    };
    Signer::new(secret.clone())
}

fn token(signer: &Signer, role: Role, sessions: &str, user: &str) -> String {
    signer.mint(&Claims {
        tenant: "acme".into(),
        sessions: sessions.into(),
        role,
        user: Some(user.into()),
        exp: i64::MAX,
    })
}

async fn call(
    url: &str,
    method: reqwest::Method,
    path: &str,
    token: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut request = reqwest::Client::new()
        .request(method, format!("{url}{path}"))
        .bearer_auth(token);
    if let Some(body) = body {
        request = request
            .header("content-type", "application/json")
            .body(body.to_string());
    }
    let response = request.send().await.expect("request");
    let status = response.status().as_u16();
    let text = response.text().await.expect("body");
    let value = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, value)
}

#[tokio::test]
async fn a_grade_over_the_http_functions_router_becomes_a_human_score_on_dynamodb() {
    let (settings, stack) = stack_with(Needs::REQUESTS).await;
    // The trace in the bucket and the scorer's record of it in the score index.
    let body = encode_jsonl_gz(&conversation("chat-1")).expect("encode");
    TraceArchive::put(
        &stack.bucket,
        &object_key("acme", "chat-1", NOON_MS),
        Bytes::from(body),
    )
    .await
    .expect("archive the trace");
    let machine = ScoreRecord {
        trace_id: TRACE.into(),
        span_id: Some("a000000000000001".into()),
        session: "chat-1".into(),
        tenant: "acme".into(),
        name: "groundedness".into(),
        value: 0.9,
        label: Some("grounded".into()),
        source: Source::Code,
        explanation: None,
        evidence: vec![Evidence::range("a000000000000001", 0, 5)],
        scorer: "groundedness".into(),
        scorer_version: "1".into(),
        trace_digest: "digest-1".into(),
        scored_at_ms: NOON_MS + 60_000,
        usage: None,
    };
    stack
        .scores
        .replace("acme", TRACE, Source::Code, std::slice::from_ref(&machine))
        .await
        .expect("index the machine score");

    // The function's own router, on a real socket.
    let app = stack.api_app(
        stack.auth().await.expect("auth"),
        agentwire_aws_stack::MAX_BODY_BYTES,
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(async move { axum::serve(listener, app).await.expect("serve") });
    let signer = signer(&settings);
    let admin = token(&signer, Role::Admin, "*", "owner");
    let ana = token(&signer, Role::Grader, "review", "ana");
    let call = |method, path: String, token: String, body| {
        let url = url.clone();
        async move { call(&url, method, &path, &token, body).await }
    };
    use reqwest::Method;

    let rubric = json!({"name": "support", "version": 1, "title": "Support answers",
        "criteria": [{"key": "correct", "title": "Is the answer correct?",
                      "scale": {"kind": "pass_fail"}, "justification_required": true}]});
    let (status, body) = call(
        Method::PUT,
        "/v1/rubrics/support/1".into(),
        ana.clone(),
        Some(rubric.clone()),
    )
    .await;
    assert_eq!(status, 403, "a grader cannot store rubrics: {body}");
    let (status, body) = call(
        Method::PUT,
        "/v1/rubrics/support/1".into(),
        admin.clone(),
        Some(rubric),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let (status, body) = call(
        Method::GET,
        "/v1/rubrics/support".into(),
        admin.clone(),
        None,
    )
    .await;
    assert_eq!(
        (status, &body["rubric"]["version"]),
        (200, &json!(1)),
        "{body}"
    );

    let queue = json!({"name": "review", "title": "Review", "rubric": {"name": "support", "version": 1},
                       "graders": ["ana"], "per_item": 1});
    let (status, body) = call(
        Method::POST,
        "/v1/queues".into(),
        admin.clone(),
        Some(json!({"queue": queue, "traces": [TRACE]})),
    )
    .await;
    assert_eq!((status, &body["items"]), (201, &json!(1)), "{body}");
    let (status, body) = call(Method::GET, "/v1/queues".into(), admin.clone(), None).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.to_string().contains("\"review\""), "{body}");

    // Ana claims the item and reads its conversation from the trace in S3.
    let (status, body) = call(
        Method::POST,
        "/v1/queues/review/claim".into(),
        ana.clone(),
        Some(json!({})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["claim"]["item"]["trace_id"], TRACE, "{body}");
    let item = format!("/v1/queues/review/items/{TRACE}");
    let (status, view) = call(Method::GET, item.clone(), ana.clone(), None).await;
    assert_eq!(status, 200, "{view}");
    let messages = view["conversation"]["messages"]
        .as_array()
        .unwrap_or_else(|| panic!("messages in {view}"));
    assert_eq!(messages.len(), 2, "{view}");
    assert_eq!(messages[1]["text"], ANSWER, "{view}");
    assert_eq!(
        view["scores"][0]["name"], "groundedness",
        "not blind: {view}"
    );

    let draft = json!({"correct": {"value": "pass"}});
    let (status, body) = call(
        Method::PUT,
        format!("{item}/draft"),
        ana.clone(),
        Some(draft.clone()),
    )
    .await;
    assert_eq!(status, 204, "{body}");
    let (_, view) = call(Method::GET, item.clone(), ana.clone(), None).await;
    assert_eq!(view["draft"], draft, "the draft survives a reload");

    let grade = json!({"rubric": {"name": "support", "version": 1},
                       "answers": {"correct": {"value": "pass", "justification": "Paris is right."}}});
    let (status, body) = call(
        Method::POST,
        format!("{item}/grade"),
        ana.clone(),
        Some(grade),
    )
    .await;
    assert_eq!(status, 201, "{body}");

    // The grade is a human record beside the machine one, through the scores API and in
    // the DynamoDB score index itself.
    let (status, body) = call(
        Method::GET,
        format!("/v1/traces/{TRACE}/scores"),
        admin.clone(),
        None,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert!(body.to_string().contains("support.correct/ana"), "{body}");
    let records = stack
        .scores
        .trace("acme", TRACE)
        .await
        .expect("read scores");
    let human: Vec<&ScoreRecord> = records
        .iter()
        .filter(|r| r.source == Source::Human)
        .collect();
    assert_eq!(human.len(), 1, "{records:?}");
    let human = human[0];
    assert_eq!(human.name, "support.correct/ana");
    assert_eq!(human.label.as_deref(), Some("pass"));
    assert_eq!(human.scorer, "ana");
    assert_eq!(human.scorer_version, "support@1");
    assert_eq!(human.session, "chat-1");
    assert_eq!(
        human.trace_digest, "digest-1",
        "the machine record's digest"
    );
    assert!(
        records.contains(&machine),
        "the machine record stays: {records:?}"
    );

    let (status, body) = call(
        Method::GET,
        "/v1/queues/review/grades".into(),
        admin.clone(),
        None,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert!(body.to_string().contains("Paris is right."), "{body}");
}
