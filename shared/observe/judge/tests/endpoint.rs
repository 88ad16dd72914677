//! `OpenAiEndpoint` behind `Resilient`, against the fake OpenAI-compatible server.

use std::sync::Arc;
use std::time::Duration;

use agentwire_judge::endpoint::{
    ChatMessage, ChatRequest, EndpointError, ModelEndpoint, Resilient, RetryPolicy, Structured,
    TokenUsage,
};
use agentwire_judge::fake::{FakeModel, Reply, Script};
use agentwire_judge::openai::OpenAiEndpoint;
use serde_json::{Value, json};

fn verdict() -> Value {
    json!({"score": 0.75, "reason": "grounded"})
}

fn request(structured: Structured, stream: bool) -> ChatRequest {
    ChatRequest {
        model: "judge-1".into(),
        messages: vec![
            ChatMessage::system("You judge traces."),
            ChatMessage::user("the trace text, forty bytes long........"),
        ],
        max_tokens: 256,
        temperature: 0.0,
        schema: json!({"type": "object", "properties": {"score": {"type": "number"}}}),
        schema_name: "verdict".into(),
        structured,
        stream,
    }
}

fn resilient(fake: &FakeModel, key: Option<&str>, timeout_ms: u64) -> Resilient {
    let inner = OpenAiEndpoint::new(&fake.base_url(), key.map(str::to_owned)).unwrap();
    let policy = RetryPolicy {
        max_retries: 3,
        base_backoff: Duration::from_millis(1),
        max_backoff: Duration::from_millis(2000),
        timeout: Duration::from_millis(timeout_ms),
    };
    Resilient::new(Arc::new(inner), policy, 2)
}

/// These replies, then the verdict for every request after them.
fn first(replies: impl IntoIterator<Item = Reply>) -> Script {
    Script::new(replies).then(Script::verdict(verdict()))
}

fn parsed(text: &str) -> Value {
    serde_json::from_str(text).unwrap()
}

#[tokio::test]
async fn a_json_schema_reply_is_parsed_with_its_usage() {
    let fake = FakeModel::start(Script::verdict(verdict())).await;
    let endpoint = resilient(&fake, None, 5000);
    let reply = endpoint
        .complete(&request(Structured::JsonSchema, false))
        .await
        .unwrap();
    assert_eq!(parsed(&reply.text), verdict());
    assert_eq!(reply.model, "judge-1");
    let prompt_bytes = "You judge traces.".len() + 40;
    let usage = TokenUsage {
        input_tokens: (prompt_bytes / 4) as u64,
        output_tokens: (verdict().to_string().len() / 4) as u64,
    };
    assert_eq!(reply.usage, Some(usage));
    let body = &fake.received()[0];
    assert_eq!(body["response_format"]["type"], "json_schema");
    assert_eq!(body["response_format"]["json_schema"]["name"], "verdict");
    assert_eq!(body["response_format"]["json_schema"]["strict"], true);
    assert_eq!(
        body["response_format"]["json_schema"]["schema"]["type"],
        "object"
    );
    assert_eq!(body["max_tokens"], 256);
    assert!(body.get("tools").is_none());
    assert_eq!(endpoint.describe(), format!("openai:{}", fake.base_url()));
}

#[tokio::test]
async fn a_tool_call_reply_is_its_arguments() {
    let fake = FakeModel::start(Script::verdict(verdict())).await;
    let endpoint = resilient(&fake, None, 5000);
    let reply = endpoint
        .complete(&request(Structured::Tool, false))
        .await
        .unwrap();
    assert_eq!(parsed(&reply.text), verdict());
    assert!(reply.usage.is_some());
    let body = &fake.received()[0];
    assert_eq!(body["tools"][0]["type"], "function");
    assert_eq!(body["tools"][0]["function"]["name"], "verdict");
    assert_eq!(body["tools"][0]["function"]["parameters"]["type"], "object");
    assert_eq!(body["tool_choice"]["function"]["name"], "verdict");
    assert!(body.get("response_format").is_none());
}

#[tokio::test]
async fn streamed_replies_are_assembled_for_content_and_tool_calls() {
    let long =
        json!({"score": 1, "reason": "a reason long enough to span many events, ünïcode too"});
    let fake = FakeModel::start(Script::verdict(long.clone())).await;
    let endpoint = resilient(&fake, None, 5000);
    for structured in [Structured::JsonObject, Structured::Tool] {
        let reply = endpoint.complete(&request(structured, true)).await.unwrap();
        assert_eq!(parsed(&reply.text), long, "{structured:?}");
        assert_eq!(
            reply.usage.unwrap().output_tokens,
            (long.to_string().len() / 4) as u64
        );
    }
    let bodies = fake.received();
    assert_eq!(bodies[0]["stream"], true);
    assert_eq!(bodies[0]["stream_options"]["include_usage"], true);
    assert_eq!(bodies[0]["response_format"], json!({"type": "json_object"}));
    assert!(bodies[1].get("tools").is_some());
}

#[tokio::test]
async fn a_429_with_retry_after_is_waited_out_then_retried() {
    let script = first([Reply::Status(429, Some(1))]);
    let fake = FakeModel::start(script).await;
    let endpoint = resilient(&fake, None, 5000);
    let started = std::time::Instant::now();
    let reply = endpoint
        .complete(&request(Structured::JsonSchema, false))
        .await
        .unwrap();
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "Retry-After: 1 was honoured"
    );
    assert_eq!(parsed(&reply.text), verdict());
    assert_eq!(fake.requests(), 2);
}

#[tokio::test]
async fn a_500_twice_then_success() {
    let script = first([Reply::Status(500, None), Reply::Status(500, None)]);
    let fake = FakeModel::start(script).await;
    let endpoint = resilient(&fake, None, 5000);
    let reply = endpoint
        .complete(&request(Structured::JsonSchema, false))
        .await
        .unwrap();
    assert_eq!(parsed(&reply.text), verdict());
    assert_eq!(fake.requests(), 3);
}

#[tokio::test]
async fn errors_that_retrying_cannot_fix_are_returned_at_once() {
    let script = first([Reply::Status(400, None)]);
    let fake = FakeModel::start(script).await;
    let endpoint = resilient(&fake, None, 5000);
    let e = endpoint
        .complete(&request(Structured::JsonSchema, false))
        .await
        .unwrap_err();
    assert_eq!(
        e,
        EndpointError::Status {
            status: 400,
            message: "fake".into(),
            retry_after_ms: None
        }
    );
    assert_eq!(fake.requests(), 1);

    let fake = FakeModel::start(first([Reply::Garbage])).await;
    let endpoint = resilient(&fake, None, 5000);
    let e = endpoint
        .complete(&request(Structured::JsonSchema, false))
        .await
        .unwrap_err();
    assert_eq!(e, EndpointError::Protocol("the reply is not JSON".into()));
    assert_eq!(fake.requests(), 1);
}

#[tokio::test]
async fn malformed_content_is_passed_on_for_the_verdict_check() {
    let fake = FakeModel::start(first([Reply::Text("not json".into())])).await;
    let endpoint = resilient(&fake, None, 5000);
    let reply = endpoint
        .complete(&request(Structured::JsonSchema, true))
        .await
        .unwrap();
    assert_eq!(reply.text, "not json");
}

#[tokio::test]
async fn a_slow_reply_times_out_and_the_retry_succeeds() {
    let slow = Reply::Slow(Duration::from_secs(30), Box::new(Reply::Verdict(verdict())));
    let fake = FakeModel::start(first([slow])).await;
    let endpoint = resilient(&fake, None, 300);
    let reply = endpoint
        .complete(&request(Structured::JsonSchema, false))
        .await
        .unwrap();
    assert_eq!(parsed(&reply.text), verdict());
    assert_eq!(fake.requests(), 2);

    let slow = || Reply::Slow(Duration::from_secs(30), Box::new(Reply::Verdict(verdict())));
    let fake = FakeModel::start(first((0..4).map(|_| slow()))).await;
    let endpoint = resilient(&fake, None, 100);
    let e = endpoint
        .complete(&request(Structured::JsonSchema, true))
        .await
        .unwrap_err();
    assert_eq!(e, EndpointError::Timeout { after_ms: 100 });
    assert_eq!(fake.requests(), 4);
}

#[tokio::test]
async fn the_key_is_sent_as_a_bearer_token_only_when_given() {
    let fake = FakeModel::start(Script::verdict(verdict())).await;
    resilient(&fake, Some("sk-test"), 5000)
        .complete(&request(Structured::None, false))
        .await
        .unwrap();
    resilient(&fake, None, 5000)
        .complete(&request(Structured::None, false))
        .await
        .unwrap();
    assert_eq!(
        fake.authorizations(),
        vec![Some("Bearer sk-test".to_owned()), None]
    );
    let body = &fake.received()[0];
    assert!(body.get("response_format").is_none() && body.get("tools").is_none());
    assert_eq!(
        body["messages"][0],
        json!({"role": "system", "content": "You judge traces."})
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_callers_stay_within_the_limit() {
    let slow = || {
        Reply::Slow(
            Duration::from_millis(50),
            Box::new(Reply::Verdict(verdict())),
        )
    };
    let fake = FakeModel::start(first((0..8).map(|_| slow()))).await;
    let endpoint = Arc::new(resilient(&fake, None, 5000));
    let calls: Vec<_> = (0..8)
        .map(|_| {
            let endpoint = endpoint.clone();
            tokio::spawn(async move {
                endpoint
                    .complete(&request(Structured::JsonSchema, false))
                    .await
            })
        })
        .collect();
    for call in calls {
        call.await.unwrap().unwrap();
    }
    assert_eq!(fake.requests(), 8);
    assert_eq!(fake.max_in_flight(), 2);
}

#[tokio::test]
async fn a_refused_connection_is_unreachable_never_ran_and_names_no_url() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}/v1?secret=1");
    let endpoint = OpenAiEndpoint::new(&url, None).unwrap();
    let e = endpoint
        .complete(&request(Structured::JsonSchema, false))
        .await
        .unwrap_err();
    assert!(
        matches!(&e, EndpointError::Unreachable(m) if !m.contains("secret")),
        "{e}"
    );
    assert!(e.is_retryable());
    // The request never left: a budget gives its reservation back.
    assert!(e.never_ran());
}
