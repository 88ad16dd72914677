//! The judge's Bedrock endpoint against the SDK's mock client: what the Converse request
//! carries, how replies become verdict text, and which failures are worth a retry.

use std::sync::Arc;
use std::time::Duration;

use agentwire_bedrock::{BedrockEndpoint, to_document, to_json};
use agentwire_judge::{
    ChatMessage, ChatRequest, EndpointError, ModelEndpoint, Resilient, RetryPolicy, Structured,
    TokenUsage,
};
use aws_sdk_bedrockruntime::Client;
use aws_sdk_bedrockruntime::operation::converse::{ConverseError, ConverseInput, ConverseOutput};
use aws_sdk_bedrockruntime::types::error::{ThrottlingException, ValidationException};
use aws_sdk_bedrockruntime::types::{
    ContentBlock, ConversationRole, Message, StopReason, SystemContentBlock, Tool, ToolChoice,
    ToolInputSchema, ToolUseBlock,
};
use aws_smithy_mocks::{RuleMode, mock, mock_client};
use serde_json::json;

fn schema() -> serde_json::Value {
    json!({
        "type": "object",
        "properties": {
            "value": {"type": "number", "minimum": 0, "maximum": 1},
            "label": {"type": "string", "enum": ["pass", "fail"]},
            "explanation": {"type": "string"}
        },
        "required": ["value", "label", "explanation"],
        "additionalProperties": false
    })
}

fn request(structured: Structured) -> ChatRequest {
    ChatRequest {
        model: "anthropic.claude-3-haiku".into(),
        messages: vec![
            ChatMessage::system("You grade answers."),
            ChatMessage::user("Grade this answer."),
            ChatMessage::assistant("Which rubric?"),
            ChatMessage::user("Helpfulness."),
        ],
        max_tokens: 321,
        temperature: 0.25,
        schema: schema(),
        schema_name: "verdict".into(),
        structured,
        stream: false,
    }
}

fn verdict() -> serde_json::Value {
    json!({"value": 0.75, "label": "pass", "explanation": "Mostly helpful.", "steps": 3})
}

fn reply(blocks: Vec<ContentBlock>, stop: StopReason) -> ConverseOutput {
    let message = Message::builder()
        .role(ConversationRole::Assistant)
        .set_content(Some(blocks))
        .build()
        .unwrap();
    ConverseOutput::builder()
        .output(aws_sdk_bedrockruntime::types::ConverseOutput::Message(
            message,
        ))
        .stop_reason(stop)
        .usage(
            aws_sdk_bedrockruntime::types::TokenUsage::builder()
                .input_tokens(120)
                .output_tokens(34)
                .total_tokens(154)
                .build()
                .unwrap(),
        )
        .build()
        .unwrap()
}

fn tool_reply() -> ConverseOutput {
    let tool_use = ToolUseBlock::builder()
        .tool_use_id("t1")
        .name("verdict")
        .input(to_document(&verdict()))
        .build()
        .unwrap();
    reply(vec![ContentBlock::ToolUse(tool_use)], StopReason::ToolUse)
}

fn throttled() -> ConverseError {
    ConverseError::ThrottlingException(
        ThrottlingException::builder()
            .message("Too many requests, please wait before trying again.")
            .build(),
    )
}

/// Whether the Converse input is `request(Tool)` as Bedrock should see it.
fn carries_the_request(input: &ConverseInput) -> bool {
    let texts = |m: &Message| -> Vec<String> {
        m.content()
            .iter()
            .filter_map(|b| b.as_text().ok().cloned())
            .collect()
    };
    let messages: Vec<(ConversationRole, Vec<String>)> = input
        .messages()
        .iter()
        .map(|m| (m.role().clone(), texts(m)))
        .collect();
    let inference = input.inference_config();
    let tool_config = input.tool_config();
    let forced = tool_config
        .and_then(|c| c.tool_choice())
        .and_then(|c| match c {
            ToolChoice::Tool(t) => Some(t.name().to_string()),
            _ => None,
        });
    let tool_schema = tool_config.map(|c| {
        c.tools()
            .iter()
            .filter_map(|t| match t {
                Tool::ToolSpec(spec) => Some((
                    spec.name().to_string(),
                    spec.input_schema().and_then(|s| match s {
                        ToolInputSchema::Json(d) => Some(to_json(d)),
                        _ => None,
                    }),
                )),
                _ => None,
            })
            .collect::<Vec<_>>()
    });
    input.model_id() == Some("anthropic.claude-3-haiku")
        && input.system() == [SystemContentBlock::Text("You grade answers.".into())]
        && messages
            == vec![
                (ConversationRole::User, vec!["Grade this answer.".into()]),
                (ConversationRole::Assistant, vec!["Which rubric?".into()]),
                (ConversationRole::User, vec!["Helpfulness.".into()]),
            ]
        && inference.and_then(|c| c.max_tokens()) == Some(321)
        && inference.and_then(|c| c.temperature()) == Some(0.25)
        && forced.as_deref() == Some("verdict")
        && tool_schema == Some(vec![("verdict".to_string(), Some(schema()))])
}

#[tokio::test]
async fn bedrock_forced_tool_use_becomes_the_verdict_with_usage() {
    let converse = mock!(Client::converse)
        .match_requests(carries_the_request)
        .then_output(tool_reply);
    let client = mock_client!(aws_sdk_bedrockruntime, RuleMode::MatchAny, [&converse]);
    let endpoint = BedrockEndpoint::new(client);
    for structured in [Structured::Tool, Structured::JsonSchema] {
        let reply = endpoint.complete(&request(structured)).await.unwrap();
        let text: serde_json::Value = serde_json::from_str(&reply.text).unwrap();
        assert_eq!(text, verdict());
        assert_eq!(reply.model, "anthropic.claude-3-haiku");
        assert_eq!(
            reply.usage,
            Some(TokenUsage {
                input_tokens: 120,
                output_tokens: 34
            })
        );
    }
    assert_eq!(
        converse.num_calls(),
        2,
        "both requests matched the predicate"
    );
}

#[tokio::test]
async fn bedrock_text_reply_without_tools_for_unstructured_requests() {
    let converse = mock!(Client::converse)
        .match_requests(|input| input.tool_config().is_none())
        .then_output(|| {
            reply(
                vec![
                    ContentBlock::Text("{\"value\": 1,".into()),
                    ContentBlock::Text(" \"label\": \"pass\"}".into()),
                ],
                StopReason::EndTurn,
            )
        });
    let client = mock_client!(aws_sdk_bedrockruntime, RuleMode::MatchAny, [&converse]);
    let endpoint = BedrockEndpoint::new(client);
    for structured in [Structured::None, Structured::JsonObject] {
        let reply = endpoint.complete(&request(structured)).await.unwrap();
        assert_eq!(reply.text, "{\"value\": 1, \"label\": \"pass\"}");
    }
    assert_eq!(converse.num_calls(), 2);
}

#[tokio::test]
async fn bedrock_throttling_is_a_retryable_429_of_one_attempt() {
    let converse = mock!(Client::converse)
        .sequence()
        .error(throttled)
        .output(tool_reply)
        .build();
    let client = mock_client!(aws_sdk_bedrockruntime, RuleMode::MatchAny, [&converse]);
    let endpoint = BedrockEndpoint::new(client);
    match endpoint.complete(&request(Structured::Tool)).await {
        Err(e @ EndpointError::Status { status: 429, .. }) => {
            assert!(e.is_retryable());
            assert!(e.to_string().contains("Too many requests"), "{e}");
        }
        other => panic!("expected a 429, got {other:?}"),
    }
    assert_eq!(converse.num_calls(), 1, "the SDK did not retry on its own");
}

fn resilient(endpoint: BedrockEndpoint) -> Resilient {
    let policy = RetryPolicy {
        max_retries: 3,
        base_backoff: Duration::from_millis(1),
        max_backoff: Duration::from_millis(2),
        timeout: Duration::from_secs(5),
    };
    Resilient::new(Arc::new(endpoint), policy, 4)
}

#[tokio::test]
async fn bedrock_throttle_then_success_through_resilient_returns_the_success() {
    let converse = mock!(Client::converse)
        .sequence()
        .error(throttled)
        .output(tool_reply)
        .build();
    let client = mock_client!(aws_sdk_bedrockruntime, RuleMode::MatchAny, [&converse]);
    let reply = resilient(BedrockEndpoint::new(client))
        .complete(&request(Structured::Tool))
        .await
        .unwrap();
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&reply.text).unwrap(),
        verdict()
    );
    assert_eq!(converse.num_calls(), 2);
}

#[tokio::test]
async fn bedrock_validation_failure_is_not_retried() {
    let converse = mock!(Client::converse)
        .sequence()
        .error(|| {
            ConverseError::ValidationException(
                ValidationException::builder()
                    .message("The provided model identifier is invalid.")
                    .build(),
            )
        })
        .repeatedly()
        .build();
    let client = mock_client!(aws_sdk_bedrockruntime, RuleMode::MatchAny, [&converse]);
    match resilient(BedrockEndpoint::new(client))
        .complete(&request(Structured::Tool))
        .await
    {
        Err(e @ EndpointError::Status { status: 400, .. }) => assert!(!e.is_retryable()),
        other => panic!("expected a 400, got {other:?}"),
    }
    assert_eq!(converse.num_calls(), 1, "only one call was made");
}

#[tokio::test]
async fn bedrock_reply_without_the_forced_tool_is_a_protocol_error() {
    let converse = mock!(Client::converse).then_output(|| {
        reply(
            vec![ContentBlock::Text("I'd rather not use tools.".into())],
            StopReason::EndTurn,
        )
    });
    let client = mock_client!(aws_sdk_bedrockruntime, RuleMode::MatchAny, [&converse]);
    match BedrockEndpoint::new(client)
        .complete(&request(Structured::Tool))
        .await
    {
        Err(EndpointError::Protocol(message)) => {
            assert!(message.contains("forced tool"), "{message}");
            assert!(!message.contains("rather not"), "no reply text in errors");
        }
        other => panic!("expected a protocol error, got {other:?}"),
    }
}

#[test]
fn bedrock_documents_round_trip_json() {
    let value = json!({"a": [1, -2, 2.5, null, true, "x"], "b": {"c": {}}});
    assert_eq!(to_json(&to_document(&value)), value);
}
