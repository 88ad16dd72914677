//! OpenAI-compatible `chat/completions`: hosted providers, llama.cpp, vLLM, Ollama. One
//! attempt per call; [`crate::endpoint::Resilient`] adds timeouts and retries.

use std::time::Duration;

use async_trait::async_trait;
use serde_json::{Value, json};

use crate::endpoint::{
    ChatReply, ChatRequest, EndpointError, ModelEndpoint, Structured, TokenUsage,
};

/// The most characters of a server's error body kept in an [`EndpointError`].
const ERROR_CHARS: usize = 200;

/// An OpenAI-compatible server at `base_url` (the part before `/chat/completions`, e.g.
/// `https://api.openai.com/v1`).
pub struct OpenAiEndpoint {
    base_url: String,
    api_key: Option<String>,
    client: reqwest::Client,
}

impl OpenAiEndpoint {
    /// `base_url` must be `http://` or `https://`; a trailing `/` is dropped. `api_key`,
    /// when given, is sent as a bearer token.
    pub fn new(base_url: &str, api_key: Option<String>) -> Result<OpenAiEndpoint, EndpointError> {
        let base_url = base_url.trim_end_matches('/');
        if !(base_url.starts_with("http://") || base_url.starts_with("https://")) {
            return Err(EndpointError::Config(
                "the base_url must start with http:// or https://".into(),
            ));
        }
        // reqwest is built without its default crypto (aws-lc): ring, which is linked anyway.
        let _ = rustls::crypto::ring::default_provider().install_default();
        // No overall timeout here: Resilient bounds each attempt, streaming included.
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| EndpointError::Config(format!("HTTP client: {}", e.without_url())))?;
        Ok(OpenAiEndpoint {
            base_url: base_url.to_owned(),
            api_key,
            client,
        })
    }
}

#[async_trait]
impl ModelEndpoint for OpenAiEndpoint {
    fn describe(&self) -> String {
        format!("openai:{}", self.base_url)
    }

    async fn complete(&self, request: &ChatRequest) -> Result<ChatReply, EndpointError> {
        let mut http = self
            .client
            .post(format!("{}/chat/completions", self.base_url))
            .json(&body(request));
        if let Some(key) = &self.api_key {
            http = http.bearer_auth(key);
        }
        let mut response = http.send().await.map_err(transport)?;
        let status = response.status();
        if !status.is_success() {
            let retry_after_ms = response
                .headers()
                .get(reqwest::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
                .map(|s| s.saturating_mul(1000));
            let text = response.text().await.unwrap_or_default();
            return Err(EndpointError::Status {
                status: status.as_u16(),
                message: server_message(&text),
                retry_after_ms,
            });
        }
        if request.stream {
            // `chunk()` reads the body frame by frame, as `bytes_stream()` would, without
            // a futures dependency.
            let mut stream = Stream::default();
            while let Some(bytes) = response.chunk().await.map_err(transport)? {
                stream.feed(&bytes)?;
            }
            stream.finish(request)
        } else {
            let bytes = response.bytes().await.map_err(transport)?;
            let reply: Value = serde_json::from_slice(&bytes)
                .map_err(|_| EndpointError::Protocol("the reply is not JSON".into()))?;
            whole_reply(&reply, request)
        }
    }
}

/// The request body; what `structured` asks of the server is added to the common fields.
fn body(request: &ChatRequest) -> Value {
    let mut body = json!({
        "model": request.model,
        "messages": request.messages,
        "max_tokens": request.max_tokens,
        "temperature": request.temperature,
        "stream": request.stream,
    });
    let name = &request.schema_name;
    match request.structured {
        Structured::JsonSchema => {
            body["response_format"] = json!({
                "type": "json_schema",
                "json_schema": {"name": name, "strict": true, "schema": request.schema},
            });
        }
        Structured::Tool => {
            body["tools"] = json!([{
                "type": "function",
                "function": {
                    "name": name,
                    "description": "Record the verdict",
                    "parameters": request.schema,
                },
            }]);
            body["tool_choice"] = json!({"type": "function", "function": {"name": name}});
        }
        Structured::JsonObject => body["response_format"] = json!({"type": "json_object"}),
        Structured::None => {}
    }
    if request.stream {
        body["stream_options"] = json!({"include_usage": true});
    }
    body
}

/// A non-streamed reply. For [`Structured::Tool`] the verdict is the forced call's
/// arguments; a server that answered in content instead is taken at its word (the
/// verdict check then judges the text).
fn whole_reply(reply: &Value, request: &ChatRequest) -> Result<ChatReply, EndpointError> {
    let message = reply
        .pointer("/choices/0/message")
        .ok_or_else(|| missing("choices[0].message"))?;
    let content = message.get("content").and_then(Value::as_str);
    let text = if request.structured == Structured::Tool {
        message
            .pointer("/tool_calls/0/function/arguments")
            .and_then(Value::as_str)
            .or(content)
            .ok_or_else(|| missing("choices[0].message.tool_calls[0].function.arguments"))?
    } else {
        content.ok_or_else(|| missing("choices[0].message.content"))?
    };
    Ok(ChatReply {
        text: text.to_owned(),
        model: model(reply, request),
        usage: usage(reply),
    })
}

fn missing(what: &str) -> EndpointError {
    EndpointError::Protocol(format!("the reply has no {what}"))
}

fn model(reply: &Value, request: &ChatRequest) -> String {
    reply
        .get("model")
        .and_then(Value::as_str)
        .filter(|m| !m.is_empty())
        .unwrap_or(&request.model)
        .to_owned()
}

fn usage(reply: &Value) -> Option<TokenUsage> {
    let usage = reply.get("usage")?;
    Some(TokenUsage {
        input_tokens: usage.get("prompt_tokens")?.as_u64()?,
        output_tokens: usage.get("completion_tokens")?.as_u64()?,
    })
}

/// A streamed reply being assembled from server-sent events. Bytes are buffered up to
/// each newline, so a network chunk may end anywhere, even inside a UTF-8 character.
#[derive(Default)]
struct Stream {
    pending: Vec<u8>,
    content: String,
    arguments: String,
    model: Option<String>,
    usage: Option<TokenUsage>,
    done: bool,
}

impl Stream {
    fn feed(&mut self, bytes: &[u8]) -> Result<(), EndpointError> {
        self.pending.extend_from_slice(bytes);
        while let Some(end) = self.pending.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = self.pending.drain(..=end).collect();
            self.line(&line)?;
        }
        Ok(())
    }

    /// One line: `data: {...}` or `data: [DONE]`; comments, `event:`, `id:` and blank
    /// lines carry nothing we use.
    fn line(&mut self, line: &[u8]) -> Result<(), EndpointError> {
        let line = std::str::from_utf8(line)
            .map_err(|_| EndpointError::Protocol("a stream line is not UTF-8".into()))?;
        let Some(data) = line.trim_end_matches(['\r', '\n']).strip_prefix("data:") else {
            return Ok(());
        };
        let data = data.trim_start();
        if self.done || data.is_empty() {
            return Ok(());
        }
        if data == "[DONE]" {
            self.done = true;
            return Ok(());
        }
        let event: Value = serde_json::from_str(data)
            .map_err(|_| EndpointError::Protocol("a stream event is not JSON".into()))?;
        if let Some(error) = event.get("error") {
            let message = error.get("message").and_then(Value::as_str).unwrap_or("");
            return Err(EndpointError::Protocol(format!(
                "the stream reported an error: {}",
                cut(message)
            )));
        }
        if let Some(model) = event.get("model").and_then(Value::as_str) {
            self.model = Some(model.to_owned());
        }
        if let Some(delta) = event.pointer("/choices/0/delta") {
            if let Some(piece) = delta.get("content").and_then(Value::as_str) {
                self.content.push_str(piece);
            }
            let arguments = delta.pointer("/tool_calls/0/function/arguments");
            if let Some(piece) = arguments.and_then(Value::as_str) {
                self.arguments.push_str(piece);
            }
        }
        if let Some(usage) = usage(&event) {
            self.usage = Some(usage);
        }
        Ok(())
    }

    fn finish(mut self, request: &ChatRequest) -> Result<ChatReply, EndpointError> {
        if !self.pending.is_empty() {
            let rest = std::mem::take(&mut self.pending);
            self.line(&rest)?;
        }
        if !self.done {
            return Err(EndpointError::Protocol("stream ended before [DONE]".into()));
        }
        let text = if request.structured == Structured::Tool && !self.arguments.is_empty() {
            self.arguments
        } else if !self.content.is_empty() {
            self.content
        } else {
            return Err(EndpointError::Protocol(
                "the stream carried no content and no tool call arguments".into(),
            ));
        };
        Ok(ChatReply {
            text,
            model: self.model.unwrap_or_else(|| request.model.clone()),
            usage: self.usage,
        })
    }
}

/// The server's own error message (`error.message` of an OpenAI error body, else the
/// body), cut short.
/// What an error body says, by its machine-readable parts only (`type`, `code`): a
/// server's free text can echo the request (some proxies do), and these messages go to
/// logs and the judgements kept in the archive.
fn server_message(body: &str) -> String {
    let parsed: Option<Value> = serde_json::from_str(body).ok();
    let part = |name: &str| {
        parsed
            .as_ref()
            .and_then(|v| v.pointer(&format!("/error/{name}")))
            .and_then(|v| match v {
                Value::String(s) => Some(cut(s.trim())),
                Value::Number(n) => Some(n.to_string()),
                _ => None,
            })
    };
    match (part("type"), part("code")) {
        (Some(kind), Some(code)) => format!("{kind} ({code})"),
        (Some(one), None) | (None, Some(one)) => one,
        (None, None) => format!("an error body of {} bytes, not quoted", body.len()),
    }
}

fn cut(text: &str) -> String {
    text.chars().take(ERROR_CHARS).collect()
}

/// A short description of what failed, without the URL (it may carry a query) and with
/// the innermost cause (`Connection refused`).
fn transport(error: reqwest::Error) -> EndpointError {
    if error.is_builder() {
        return EndpointError::Config("the request could not be built from the base_url".into());
    }
    let kind = if error.is_connect() {
        "connect failed"
    } else if error.is_timeout() {
        "timed out"
    } else if error.is_body() || error.is_decode() {
        "reading the reply failed"
    } else {
        "request failed"
    };
    let mut root = None;
    let mut cause = std::error::Error::source(&error);
    while let Some(c) = cause {
        root = Some(c);
        cause = c.source();
    }
    let message = match root {
        Some(root) => format!("{kind}: {}", cut(&root.to_string())),
        None => kind.into(),
    };
    // A failed connect never sent the request; anything later may have reached the model.
    if error.is_connect() {
        EndpointError::Unreachable(message)
    } else {
        EndpointError::Transport(message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::endpoint::ChatMessage;

    fn request(structured: Structured, stream: bool) -> ChatRequest {
        ChatRequest {
            model: "judge-m".into(),
            messages: vec![ChatMessage::system("rubric"), ChatMessage::user("trace")],
            max_tokens: 100,
            temperature: 0.0,
            schema: json!({"type": "object"}),
            schema_name: "verdict".into(),
            structured,
            stream,
        }
    }

    #[test]
    fn the_body_asks_for_the_configured_structure() {
        let b = body(&request(Structured::JsonSchema, false));
        assert_eq!(b["response_format"]["json_schema"]["strict"], true);
        assert_eq!(
            b["response_format"]["json_schema"]["schema"]["type"],
            "object"
        );
        assert_eq!(
            b["messages"][1],
            json!({"role": "user", "content": "trace"})
        );
        assert!(b.get("tools").is_none() && b.get("stream_options").is_none());
        let b = body(&request(Structured::Tool, true));
        assert_eq!(b["tools"][0]["function"]["name"], "verdict");
        assert_eq!(b["tool_choice"]["function"]["name"], "verdict");
        assert_eq!(b["stream_options"]["include_usage"], true);
        assert!(b.get("response_format").is_none());
        let b = body(&request(Structured::JsonObject, false));
        assert_eq!(b["response_format"], json!({"type": "json_object"}));
        let b = body(&request(Structured::None, false));
        assert!(b.get("response_format").is_none() && b.get("tools").is_none());
    }

    #[test]
    fn a_whole_reply_names_what_it_lacks() {
        let r = request(Structured::Tool, false);
        let e = whole_reply(&json!({"choices": []}), &r).unwrap_err();
        assert_eq!(
            e,
            EndpointError::Protocol("the reply has no choices[0].message".into())
        );
        let e = whole_reply(&json!({"choices": [{"message": {"content": null}}]}), &r);
        assert!(e.unwrap_err().to_string().contains("tool_calls[0]"));
        let ok = whole_reply(
            &json!({"choices": [{"message": {"content": "{\"a\":1}"}}]}),
            &request(Structured::JsonSchema, false),
        )
        .unwrap();
        assert_eq!(
            (ok.text.as_str(), ok.model.as_str(), ok.usage),
            ("{\"a\":1}", "judge-m", None)
        );
    }

    const SSE: &str = concat!(
        ": keep-alive\n\n",
        "data: {\"model\":\"m-2\",\"choices\":[{\"delta\":{\"role\":\"assistant\"}}]}\n\n",
        "data: {\"choices\":[{\"delta\":{\"content\":\"{\\\"é\\\":\"}}]}\r\n\r\n",
        "data: {\"choices\":[{\"delta\":{\"content\":\"1}\"}}]}\n\n",
        "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":7,\"completion_tokens\":3}}\n\n",
        "data: [DONE]\n\n",
    );

    #[test]
    fn a_stream_split_anywhere_assembles_the_same_reply() {
        let r = request(Structured::JsonSchema, true);
        let bytes = SSE.as_bytes();
        for size in 1..=bytes.len() {
            let mut stream = Stream::default();
            for piece in bytes.chunks(size) {
                stream.feed(piece).unwrap();
            }
            let reply = stream.finish(&r).unwrap();
            assert_eq!(reply.text, "{\"é\":1}", "split every {size} bytes");
            assert_eq!(reply.model, "m-2");
            assert_eq!(
                reply.usage,
                Some(TokenUsage {
                    input_tokens: 7,
                    output_tokens: 3
                })
            );
        }
    }

    #[test]
    fn a_stream_without_done_is_a_protocol_error() {
        let mut stream = Stream::default();
        stream
            .feed(SSE.trim_end_matches("data: [DONE]\n\n").as_bytes())
            .unwrap();
        let e = stream
            .finish(&request(Structured::JsonSchema, true))
            .unwrap_err();
        assert_eq!(
            e,
            EndpointError::Protocol("stream ended before [DONE]".into())
        );
    }

    #[test]
    fn a_servers_error_is_named_by_its_type_and_code_never_its_text() {
        let echo = r#"{"error":{"message":"bad input: my card is 4111 1111 1111 1111","type":"invalid_request_error","code":"context_length_exceeded"}}"#;
        assert_eq!(
            server_message(echo),
            "invalid_request_error (context_length_exceeded)"
        );
        assert_eq!(
            server_message(r#"{"error":{"message":"slow down","code":429}}"#),
            "429"
        );
        let long = "x".repeat(500);
        assert_eq!(
            server_message(&long),
            "an error body of 500 bytes, not quoted"
        );
        assert_eq!(
            server_message(&format!(r#"{{"error":{{"type":"{long}"}}}}"#)).len(),
            200
        );
    }

    #[test]
    fn a_base_url_needs_a_scheme_and_loses_its_trailing_slash() {
        let e = OpenAiEndpoint::new("localhost:8080", None).err().unwrap();
        assert!(matches!(e, EndpointError::Config(_)));
        let ok = OpenAiEndpoint::new("http://127.0.0.1:8080/v1/", None).unwrap();
        assert_eq!(ok.describe(), "openai:http://127.0.0.1:8080/v1");
    }
}
