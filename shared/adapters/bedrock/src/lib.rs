//! The judge's [`ModelEndpoint`] on Amazon Bedrock, through the Converse API.
//!
//! One attempt per call: the SDK's own retries are switched off for each call, so
//! [`agentwire_judge::Resilient`] alone decides on timeouts, backoff and retries. A structured
//! verdict ([`Structured::Tool`] or [`Structured::JsonSchema`]) is one forced tool whose input
//! schema is the verdict's schema; the verdict is that tool's input, as JSON text.
//! `ChatRequest::stream` is ignored: `ConverseStream` is not used, since the judge needs the
//! whole verdict before it can validate it.

use std::collections::HashMap;

use agentwire_judge::{
    ChatReply, ChatRequest, EndpointError, ModelEndpoint, Structured, TokenUsage,
};
use async_trait::async_trait;
use aws_sdk_bedrockruntime::Client;
use aws_sdk_bedrockruntime::config::retry::RetryConfig;
use aws_sdk_bedrockruntime::error::SdkError;
use aws_sdk_bedrockruntime::operation::converse::{ConverseError, ConverseOutput};
use aws_sdk_bedrockruntime::types::{
    ContentBlock, ConversationRole, InferenceConfiguration, Message, SpecificToolChoice,
    SystemContentBlock, Tool, ToolChoice, ToolConfiguration, ToolInputSchema, ToolSpecification,
};
use aws_smithy_types::{Document, Number};
use tracing::instrument;

/// How much of a service's error message is kept.
const MESSAGE_LIMIT: usize = 200;

/// Models on Bedrock, called with `Converse`; the model is each request's `model` (a model
/// id or an inference profile).
pub struct BedrockEndpoint {
    client: Client,
}

impl BedrockEndpoint {
    /// An endpoint on this client (its region, credentials and any timeouts).
    pub fn new(client: Client) -> BedrockEndpoint {
        BedrockEndpoint { client }
    }

    /// An endpoint on a client from the shared AWS configuration.
    pub fn from_conf(conf: &aws_config::SdkConfig) -> BedrockEndpoint {
        BedrockEndpoint::new(Client::new(conf))
    }

    /// The forced tool of a structured verdict, or `None` when the schema is not enforced.
    fn tool_config(request: &ChatRequest) -> Result<Option<ToolConfiguration>, EndpointError> {
        if !matches!(
            request.structured,
            Structured::Tool | Structured::JsonSchema
        ) {
            return Ok(None);
        }
        let spec = ToolSpecification::builder()
            .name(&request.schema_name)
            .description("Record the verdict.")
            .input_schema(ToolInputSchema::Json(to_document(&request.schema)))
            .build()
            .map_err(config)?;
        let choice = SpecificToolChoice::builder()
            .name(&request.schema_name)
            .build()
            .map_err(config)?;
        ToolConfiguration::builder()
            .tools(Tool::ToolSpec(spec))
            .tool_choice(ToolChoice::Tool(choice))
            .build()
            .map(Some)
            .map_err(config)
    }

    fn attempt_timeout_ms(&self) -> u64 {
        self.client
            .config()
            .timeout_config()
            .and_then(|t| t.operation_attempt_timeout().or(t.operation_timeout()))
            .map_or(0, |d| d.as_millis() as u64)
    }
}

#[async_trait]
impl ModelEndpoint for BedrockEndpoint {
    fn describe(&self) -> String {
        match self.client.config().region() {
            Some(region) => format!("bedrock:{region}"),
            None => "bedrock".into(),
        }
    }

    #[instrument(skip_all, fields(model = %request.model))]
    async fn complete(&self, request: &ChatRequest) -> Result<ChatReply, EndpointError> {
        let mut system = Vec::new();
        let mut messages = Vec::new();
        for message in &request.messages {
            let role = match message.role.as_str() {
                "system" => {
                    system.push(SystemContentBlock::Text(message.content.clone()));
                    continue;
                }
                "user" => ConversationRole::User,
                "assistant" => ConversationRole::Assistant,
                other => {
                    return Err(EndpointError::Config(format!(
                        "a message with role {other:?}: Converse takes system, user and assistant"
                    )));
                }
            };
            messages.push(
                Message::builder()
                    .role(role)
                    .content(ContentBlock::Text(message.content.clone()))
                    .build()
                    .map_err(config)?,
            );
        }
        let tool_config = Self::tool_config(request)?;
        let forced = tool_config.is_some();
        let output = self
            .client
            .converse()
            .model_id(&request.model)
            .set_system((!system.is_empty()).then_some(system))
            .set_messages(Some(messages))
            .inference_config(
                InferenceConfiguration::builder()
                    .max_tokens(i32::try_from(request.max_tokens).unwrap_or(i32::MAX))
                    .temperature(request.temperature)
                    .build(),
            )
            .set_tool_config(tool_config)
            .customize()
            .config_override(
                aws_sdk_bedrockruntime::config::Builder::default()
                    .retry_config(RetryConfig::disabled()),
            )
            .send()
            .await
            .map_err(|e| from_sdk(e, self.attempt_timeout_ms()))?;
        let text = if forced {
            tool_input(&output, &request.schema_name)?
        } else {
            reply_text(&output)?
        };
        Ok(ChatReply {
            text,
            model: request.model.clone(),
            usage: output.usage().map(|u| TokenUsage {
                input_tokens: u.input_tokens().max(0) as u64,
                output_tokens: u.output_tokens().max(0) as u64,
            }),
        })
    }
}

fn content(output: &ConverseOutput) -> Result<&[ContentBlock], EndpointError> {
    match output.output() {
        Some(aws_sdk_bedrockruntime::types::ConverseOutput::Message(m)) => Ok(m.content()),
        _ => Err(EndpointError::Protocol(format!(
            "no message in the reply (stop reason {})",
            output.stop_reason()
        ))),
    }
}

/// The forced tool's input, as JSON text.
fn tool_input(output: &ConverseOutput, tool: &str) -> Result<String, EndpointError> {
    content(output)?
        .iter()
        .find_map(|block| match block {
            ContentBlock::ToolUse(usage) if usage.name() == tool => Some(usage.input()),
            _ => None,
        })
        .map(|input| to_json(input).to_string())
        .ok_or_else(|| {
            EndpointError::Protocol(format!(
                "no use of the forced tool {tool:?} in the reply (stop reason {})",
                output.stop_reason()
            ))
        })
}

/// The reply's text blocks, joined.
fn reply_text(output: &ConverseOutput) -> Result<String, EndpointError> {
    let text: String = content(output)?
        .iter()
        .filter_map(|block| block.as_text().ok().map(String::as_str))
        .collect();
    if text.is_empty() {
        return Err(EndpointError::Protocol(format!(
            "no text in the reply (stop reason {})",
            output.stop_reason()
        )));
    }
    Ok(text)
}

fn config(e: impl std::fmt::Display) -> EndpointError {
    EndpointError::Config(format!("the Converse request: {e}"))
}

fn cut(message: Option<&str>) -> String {
    message.unwrap_or("").chars().take(MESSAGE_LIMIT).collect()
}

/// The SDK's failure as the port's: throttling and the service's own troubles are worth
/// another attempt; a request the service refuses is not.
fn from_sdk(e: SdkError<ConverseError>, timeout_ms: u64) -> EndpointError {
    match e {
        SdkError::ServiceError(service) => {
            let retry_after_ms = service
                .raw()
                .headers()
                .get("retry-after")
                .and_then(|v| v.trim().parse::<u64>().ok())
                .map(|secs| secs.saturating_mul(1000));
            let raw_status = service.raw().status().as_u16();
            let err = service.into_err();
            // Display names the exception and carries its modeled message (the metadata may not).
            let message = cut(Some(&err.to_string()));
            let status = match &err {
                ConverseError::ThrottlingException(_) => 429,
                ConverseError::ServiceUnavailableException(_) => 503,
                ConverseError::InternalServerException(_) => 500,
                ConverseError::ModelNotReadyException(_) => 503,
                ConverseError::ModelTimeoutException(_) => 504,
                ConverseError::ValidationException(_) => 400,
                ConverseError::AccessDeniedException(_) => 403,
                ConverseError::ResourceNotFoundException(_) => 404,
                ConverseError::ModelErrorException(_) => 424,
                _ => raw_status,
            };
            EndpointError::Status {
                status,
                message,
                retry_after_ms,
            }
        }
        SdkError::TimeoutError(_) => EndpointError::Timeout {
            after_ms: timeout_ms,
        },
        SdkError::DispatchFailure(failure) if failure.is_timeout() => EndpointError::Timeout {
            after_ms: timeout_ms,
        },
        SdkError::DispatchFailure(failure) => {
            EndpointError::Transport(match failure.as_connector_error() {
                Some(c) => cut(Some(&c.to_string())),
                None => "the request could not be sent".into(),
            })
        }
        SdkError::ConstructionFailure(_) => {
            EndpointError::Config("the Converse request could not be built".into())
        }
        SdkError::ResponseError(_) => {
            EndpointError::Protocol("a reply that is not the Converse protocol".into())
        }
        other => EndpointError::Transport(cut(Some(&other.to_string()))),
    }
}

/// A JSON value as a Smithy document (a tool's input schema).
pub fn to_document(value: &serde_json::Value) -> Document {
    use serde_json::Value;
    match value {
        Value::Null => Document::Null,
        Value::Bool(b) => Document::Bool(*b),
        Value::Number(n) => Document::Number(if let Some(u) = n.as_u64() {
            Number::PosInt(u)
        } else if let Some(i) = n.as_i64() {
            Number::NegInt(i)
        } else {
            Number::Float(n.as_f64().unwrap_or(0.0))
        }),
        Value::String(s) => Document::String(s.clone()),
        Value::Array(items) => Document::Array(items.iter().map(to_document).collect()),
        Value::Object(fields) => Document::Object(
            fields
                .iter()
                .map(|(k, v)| (k.clone(), to_document(v)))
                .collect::<HashMap<_, _>>(),
        ),
    }
}

/// A Smithy document as JSON (a tool use's input); a non-finite number becomes `null`.
pub fn to_json(document: &Document) -> serde_json::Value {
    use serde_json::Value;
    match document {
        Document::Null => Value::Null,
        Document::Bool(b) => Value::Bool(*b),
        Document::Number(Number::PosInt(u)) => Value::from(*u),
        Document::Number(Number::NegInt(i)) => Value::from(*i),
        Document::Number(Number::Float(f)) => serde_json::Number::from_f64(*f)
            .map(Value::Number)
            .unwrap_or(Value::Null),
        Document::String(s) => Value::String(s.clone()),
        Document::Array(items) => Value::Array(items.iter().map(to_json).collect()),
        Document::Object(fields) => Value::Object(
            fields
                .iter()
                .map(|(k, v)| (k.clone(), to_json(v)))
                .collect(),
        ),
    }
}
