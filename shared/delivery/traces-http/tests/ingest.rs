//! `POST /v1/traces` over a real socket: OTLP protobuf and JSON requests built from the
//! `opentelemetry-proto` types land in the archive in the trace model; OpenInference and
//! Vercel AI SDK spans are mapped to the contract's attributes; bad payloads, bad ids and
//! tokens get the OTLP answers and write nothing they should not.

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::{Arc, Mutex};

use agentwire_auth::{Auth, Claims, Role, Signer};
use agentwire_scoring::{TraceView, ViewOptions};
use agentwire_trace::{ArchiveError, Span, SpanStatus, TraceArchive, decode_jsonl_gz};
use agentwire_traces_http::{TracesConfig, router};
use async_trait::async_trait;
use bytes::Bytes;
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{
    ResourceSpans, ScopeSpans, Span as OtlpSpan, span, status,
};
use prost::Message;
use serde_json::{Value, json};

const SECRET: &[u8] = b"a test secret of at least 32 bytes!!";
/// 2025-06-15T12:00:00Z in unix nanoseconds.
const NOON: u64 = 1_749_988_800_000_000_000;
const MS: u64 = 1_000_000;

/// An archive in memory, so a test can see every object written.
#[derive(Default)]
struct MemoryArchive {
    objects: Mutex<BTreeMap<String, Bytes>>,
}

#[async_trait]
impl TraceArchive for MemoryArchive {
    async fn put(&self, key: &str, body: Bytes) -> Result<(), ArchiveError> {
        self.objects.lock().unwrap().insert(key.to_owned(), body);
        Ok(())
    }

    async fn put_new(&self, key: &str, body: Bytes) -> Result<bool, ArchiveError> {
        let mut objects = self.objects.lock().unwrap();
        if objects.contains_key(key) {
            return Ok(false);
        }
        objects.insert(key.to_owned(), body);
        Ok(true)
    }

    async fn get(&self, key: &str) -> Result<Option<Bytes>, ArchiveError> {
        Ok(self.objects.lock().unwrap().get(key).cloned())
    }

    async fn list(&self, prefix: &str) -> Result<Vec<String>, ArchiveError> {
        Ok(self
            .keys()
            .into_iter()
            .filter(|k| k.starts_with(prefix))
            .collect())
    }
}

impl MemoryArchive {
    fn keys(&self) -> Vec<String> {
        self.objects.lock().unwrap().keys().cloned().collect()
    }

    fn spans(&self, key: &str) -> Vec<Span> {
        let objects = self.objects.lock().unwrap();
        let body = objects
            .get(key)
            .unwrap_or_else(|| panic!("no object {key}; have {:?}", objects.keys()));
        decode_jsonl_gz(body).unwrap()
    }
}

struct Server {
    url: String,
    archive: Arc<MemoryArchive>,
    client: reqwest::Client,
}

impl Server {
    async fn start() -> Server {
        Server::with_config(TracesConfig::default()).await
    }

    async fn with_config(config: TracesConfig) -> Server {
        let archive = Arc::new(MemoryArchive::default());
        let app = router(archive.clone(), Auth::Tokens(Signer::new(SECRET)), config);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/v1/traces", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Server {
            url,
            archive,
            client: reqwest::Client::new(),
        }
    }

    async fn post(
        &self,
        content_type: &str,
        token: Option<&str>,
        gzip: bool,
        body: Vec<u8>,
    ) -> (u16, String, Vec<u8>) {
        let mut request = self
            .client
            .post(&self.url)
            .header("content-type", content_type);
        if let Some(token) = token {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        let body = if gzip {
            let mut encoder =
                flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            encoder.write_all(&body).unwrap();
            request = request.header("content-encoding", "gzip");
            encoder.finish().unwrap()
        } else {
            body
        };
        let response = request.body(body).send().await.unwrap();
        let status = response.status().as_u16();
        let content_type = response
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default();
        (
            status,
            content_type,
            response.bytes().await.unwrap().to_vec(),
        )
    }

    async fn protobuf(
        &self,
        request: &ExportTraceServiceRequest,
        token: &str,
    ) -> ExportTraceServiceResponse {
        let (status, content_type, body) = self
            .post(
                "application/x-protobuf",
                Some(token),
                false,
                request.encode_to_vec(),
            )
            .await;
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
        assert_eq!(content_type, "application/x-protobuf");
        ExportTraceServiceResponse::decode(&body[..]).unwrap()
    }
}

fn token(sessions: &str, role: Role) -> String {
    Signer::new(SECRET).mint(&Claims {
        tenant: "acme".into(),
        sessions: sessions.into(),
        role,
        user: None,
        exp: i64::MAX,
    })
}

fn kv(key: &str, value: Value) -> KeyValue {
    let value = match value {
        Value::String(s) => any_value::Value::StringValue(s),
        Value::Bool(b) => any_value::Value::BoolValue(b),
        Value::Number(n) if n.is_i64() => any_value::Value::IntValue(n.as_i64().unwrap()),
        Value::Number(n) => any_value::Value::DoubleValue(n.as_f64().unwrap()),
        other => any_value::Value::StringValue(other.to_string()),
    };
    KeyValue {
        key: key.into(),
        value: Some(AnyValue { value: Some(value) }),
        ..Default::default()
    }
}

/// A span of trace `trace` (one byte repeated), id `id`, under `parent` (0: a root).
fn otlp_span(trace: u8, id: u8, parent: u8, name: &str, start_ms: u64, attrs: Value) -> OtlpSpan {
    OtlpSpan {
        trace_id: vec![trace; 16],
        span_id: vec![id; 8],
        parent_span_id: if parent == 0 {
            Vec::new()
        } else {
            vec![parent; 8]
        },
        name: name.into(),
        kind: span::SpanKind::Internal as i32,
        start_time_unix_nano: NOON + start_ms * MS,
        end_time_unix_nano: NOON + (start_ms + 100) * MS,
        attributes: attrs
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| kv(k, v.clone()))
            .collect(),
        ..Default::default()
    }
}

fn request(spans: Vec<OtlpSpan>) -> ExportTraceServiceRequest {
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: vec![kv("service.name", json!("support-bot"))],
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans {
                spans,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

fn named<'s>(spans: &'s [Span], name: &str) -> &'s Span {
    spans
        .iter()
        .find(|s| s.name == name)
        .unwrap_or_else(|| panic!("no span {name}"))
}

fn parsed(span: &Span, key: &str) -> Value {
    let text = span.attributes[key]
        .as_str()
        .unwrap_or_else(|| panic!("{key} is not a string"));
    serde_json::from_str(text).unwrap()
}

/// The root every OTLP session gets: the contract's root attributes.
fn assert_root(spans: &[Span], session: &str) {
    let root = &spans[0];
    assert_eq!(root.parent_span_id, None);
    assert_eq!(
        spans.iter().filter(|s| s.parent_span_id.is_none()).count(),
        1
    );
    assert_eq!(root.attributes["gen_ai.operation.name"], "invoke_agent");
    assert_eq!(root.attributes["agentwire.session"], session);
    assert_eq!(root.attributes["gen_ai.conversation.id"], session);
    assert_eq!(root.attributes["agentwire.tenant"], "acme");
}

fn genai_chat() -> Vec<OtlpSpan> {
    vec![
        otlp_span(
            1,
            1,
            0,
            "invoke_agent support",
            0,
            json!({
                "gen_ai.operation.name": "invoke_agent",
                "gen_ai.agent.name": "support",
                "gen_ai.conversation.id": "conv-7",
            }),
        ),
        otlp_span(
            1,
            2,
            1,
            "chat gpt-4o",
            10,
            json!({
                "gen_ai.operation.name": "chat",
                "gen_ai.request.model": "gpt-4o",
                "gen_ai.usage.input_tokens": 42,
                "gen_ai.usage.output_tokens": 7,
                "gen_ai.conversation.id": "conv-7",
                "gen_ai.input.messages": json!([{"role": "user", "parts": [{"type": "text", "content": "Where is my order?"}]}]).to_string(),
                "gen_ai.output.messages": json!([{"role": "assistant", "parts": [{"type": "text", "content": "It ships today."}], "finish_reason": "stop"}]).to_string(),
            }),
        ),
    ]
}

#[tokio::test]
async fn a_protobuf_request_lands_in_the_archive_as_one_session_trace() {
    let s = Server::start().await;
    let response = s
        .protobuf(&request(genai_chat()), &token("*", Role::Ingest))
        .await;
    assert_eq!(response.partial_success, None);

    let key = "traces/dt=2025-06-15/tenant=acme/conv-7.jsonl.gz";
    assert_eq!(s.archive.keys(), [key]);
    let spans = s.archive.spans(key);
    assert_eq!(spans.len(), 3, "the session root and both spans");
    assert_root(&spans, "conv-7");
    // The session's id, not the OTLP trace's (which its other spans keep): no other
    // session's scores share it.
    assert_eq!(
        spans[0].trace_id,
        agentwire_trace::trace_id("acme", "conv-7")
    );
    assert_eq!(spans[1].trace_id, "01".repeat(16));
    assert_eq!(
        spans[0].name, "invoke_agent support",
        "named after the agent it runs"
    );
    let agent = &spans[1];
    assert_eq!(agent.span_id, "01".repeat(8));
    assert_eq!(
        agent.parent_span_id.as_deref(),
        Some(spans[0].span_id.as_str())
    );
    let chat = named(&spans, "chat gpt-4o");
    assert_eq!(chat.span_id, "02".repeat(8));
    assert_eq!(chat.parent_span_id.as_deref(), Some("0101010101010101"));
    // A model call, not one message: the trace view reads its history.
    assert!(!chat.attributes.contains_key("agentwire.message.role"));
    assert_eq!(chat.attributes["gen_ai.usage.input_tokens"], 42);
    assert_eq!(
        chat.attributes["service.name"], "support-bot",
        "resource attributes kept"
    );
    assert_eq!(
        parsed(chat, "gen_ai.output.messages")[0]["parts"][0]["content"],
        "It ships today."
    );
    assert_eq!(chat.start_time_unix_nano, NOON + 10 * MS);
}

#[tokio::test]
async fn a_gzip_json_request_lands_in_the_archive() {
    let s = Server::start().await;
    // The real types' serde: hex ids, lowerCamelCase, 64-bit integers as strings.
    let body = serde_json::to_vec(&request(genai_chat())).unwrap();
    let text = String::from_utf8(body.clone()).unwrap();
    assert!(text.contains("\"traceId\":\"01010101"), "{text}");
    let (status, content_type, answer) = s
        .post(
            "application/json",
            Some(&token("conv-*", Role::Ingest)),
            true,
            body,
        )
        .await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&answer));
    assert_eq!(content_type, "application/json");
    assert_eq!(serde_json::from_slice::<Value>(&answer).unwrap(), json!({}));
    let spans = s
        .archive
        .spans("traces/dt=2025-06-15/tenant=acme/conv-7.jsonl.gz");
    assert_eq!(spans.len(), 3);
    assert_root(&spans, "conv-7");
}

#[tokio::test]
async fn openinference_retriever_and_llm_spans_map_to_the_contract() {
    let s = Server::start().await;
    let spans = vec![
        otlp_span(
            2,
            1,
            0,
            "rag",
            0,
            json!({
                "openinference.span.kind": "CHAIN",
                "session.id": "oi-1",
                "input.value": "When was the bridge built?",
            }),
        ),
        otlp_span(
            2,
            2,
            1,
            "retrieve",
            5,
            json!({
                "openinference.span.kind": "RETRIEVER",
                "session.id": "oi-1",
                "input.value": "When was the bridge built?",
                "retrieval.documents.0.document.id": "d1",
                "retrieval.documents.0.document.content": "The bridge was built in 1932.",
                "retrieval.documents.0.document.score": 0.9,
                "retrieval.documents.1.document.content": "It is 500 m long.",
            }),
        ),
        otlp_span(
            2,
            3,
            1,
            "ChatOpenAI",
            50,
            json!({
                "openinference.span.kind": "LLM",
                "session.id": "oi-1",
                "llm.model_name": "gpt-4o-mini",
                "llm.input_messages.0.message.role": "system",
                "llm.input_messages.0.message.content": "Answer from the context.",
                "llm.input_messages.1.message.role": "user",
                "llm.input_messages.1.message.content": "When was the bridge built?",
                "llm.output_messages.0.message.role": "assistant",
                "llm.output_messages.0.message.content": "It was built in 1932.",
                "llm.token_count.prompt": 120,
                "llm.token_count.completion": 9,
            }),
        ),
        otlp_span(
            2,
            4,
            1,
            "lookup",
            200,
            json!({
                "openinference.span.kind": "TOOL",
                "session.id": "oi-1",
                "tool.name": "get_length",
                "input.value": "{\"bridge\":\"golden\"}",
                "output.value": "500 m",
            }),
        ),
    ];
    s.protobuf(&request(spans), &token("*", Role::Ingest)).await;
    let spans = s
        .archive
        .spans("traces/dt=2025-06-15/tenant=acme/oi-1.jsonl.gz");
    assert_root(&spans, "oi-1");

    let retriever = named(&spans, "retrieve");
    assert_eq!(
        retriever.attributes["gen_ai.operation.name"],
        "execute_tool"
    );
    assert_eq!(retriever.attributes["agentwire.tool.retrieval"], true);
    assert_eq!(retriever.attributes["gen_ai.tool.name"], "retrieve");
    assert_eq!(
        parsed(retriever, "gen_ai.tool.call.arguments"),
        json!({"query": "When was the bridge built?"})
    );
    let documents = parsed(retriever, "gen_ai.tool.call.result");
    assert_eq!(documents[0]["content"], "The bridge was built in 1932.");
    assert_eq!(documents[0]["id"], "d1");
    assert_eq!(documents[1]["content"], "It is 500 m long.");
    assert_eq!(
        retriever.attributes["retrieval.documents.0.document.content"],
        "The bridge was built in 1932.",
        "what came is kept"
    );

    let llm = named(&spans, "ChatOpenAI");
    assert_eq!(llm.attributes["gen_ai.operation.name"], "chat");
    assert!(!llm.attributes.contains_key("agentwire.message.role"));
    assert_eq!(llm.attributes["gen_ai.request.model"], "gpt-4o-mini");
    assert_eq!(llm.attributes["gen_ai.usage.input_tokens"], 120);
    assert_eq!(llm.attributes["gen_ai.usage.output_tokens"], 9);
    assert_eq!(
        parsed(llm, "gen_ai.input.messages"),
        json!([
            {"role": "system", "parts": [{"type": "text", "content": "Answer from the context."}]},
            {"role": "user", "parts": [{"type": "text", "content": "When was the bridge built?"}]},
        ])
    );
    assert_eq!(
        parsed(llm, "gen_ai.output.messages"),
        json!([{"role": "assistant", "parts": [{"type": "text", "content": "It was built in 1932."}]}])
    );

    let tool = named(&spans, "lookup");
    assert_eq!(tool.attributes["gen_ai.tool.name"], "get_length");
    assert_eq!(
        parsed(tool, "gen_ai.tool.call.arguments"),
        json!({"bridge": "golden"})
    );
    assert_eq!(parsed(tool, "gen_ai.tool.call.result"), json!("500 m"));
    assert!(!tool.attributes.contains_key("agentwire.tool.retrieval"));

    // What every scorer reads of it.
    let view = TraceView::from_spans(&spans, &ViewOptions::default()).unwrap();
    assert_eq!(view.session, "oi-1");
    assert_eq!(view.question().unwrap().text, "When was the bridge built?");
    assert_eq!(view.final_answer().unwrap().text, "It was built in 1932.");
    assert_eq!(
        view.context_text(),
        ["The bridge was built in 1932.", "It is 500 m long."]
    );
}

#[tokio::test]
async fn vercel_ai_sdk_spans_map_to_the_contract() {
    let s = Server::start().await;
    let meta = |mut attrs: Value| {
        attrs["ai.telemetry.metadata.sessionId"] = json!("chat-42");
        attrs["ai.telemetry.functionId"] = json!("weather-agent");
        attrs
    };
    let spans = vec![
        otlp_span(
            3,
            1,
            0,
            "ai.generateText",
            0,
            meta(json!({
                "ai.operationId": "ai.generateText",
                "ai.prompt": "{\"prompt\":\"Weather in Paris?\"}",
                "ai.response.text": "It is sunny in Paris.",
            })),
        ),
        otlp_span(
            3,
            2,
            1,
            "ai.generateText.doGenerate",
            10,
            meta(json!({
                "ai.operationId": "ai.generateText.doGenerate",
                "ai.model.id": "gpt-4o",
                "ai.prompt.messages": json!([
                    {"role": "system", "content": "You are helpful."},
                    {"role": "user", "content": [{"type": "text", "text": "Weather in Paris?"}]},
                ]).to_string(),
                "ai.response.toolCalls": json!([
                    {"toolCallType": "function", "toolCallId": "call-1", "toolName": "weather", "args": "{\"city\":\"Paris\"}"},
                ]).to_string(),
                "ai.response.finishReason": "tool-calls",
                "ai.usage.promptTokens": 30,
                "ai.usage.completionTokens": 12,
                "ai.response.msToFirstChunk": 120.5,
            })),
        ),
        otlp_span(
            3,
            3,
            1,
            "ai.toolCall",
            150,
            meta(json!({
                "ai.operationId": "ai.toolCall",
                "ai.toolCall.name": "weather",
                "ai.toolCall.id": "call-1",
                "ai.toolCall.args": "{\"city\":\"Paris\"}",
                "ai.toolCall.result": "{\"sky\":\"sunny\"}",
            })),
        ),
        otlp_span(
            3,
            4,
            1,
            "ai.generateText.doGenerate",
            300,
            meta(json!({
                "ai.operationId": "ai.generateText.doGenerate",
                "ai.model.id": "gpt-4o",
                "ai.response.text": "It is sunny in Paris.",
                "ai.response.finishReason": "stop",
                "ai.usage.inputTokens": 50,
                "ai.usage.outputTokens": 8,
            })),
        ),
    ];
    s.protobuf(&request(spans), &token("*", Role::Writer)).await;
    let spans = s
        .archive
        .spans("traces/dt=2025-06-15/tenant=acme/chat-42.jsonl.gz");
    assert_root(&spans, "chat-42");

    let outer = named(&spans, "ai.generateText");
    assert_eq!(outer.attributes["gen_ai.operation.name"], "invoke_agent");
    assert_eq!(outer.attributes["gen_ai.agent.name"], "weather-agent");
    assert!(
        !outer.attributes.contains_key("gen_ai.output.messages"),
        "the answer is the last model call's, not repeated on the outer span"
    );

    let calls: Vec<&Span> = spans
        .iter()
        .filter(|s| s.name == "ai.generateText.doGenerate")
        .collect();
    assert_eq!(calls.len(), 2);
    let first = calls[0];
    assert_eq!(first.attributes["gen_ai.operation.name"], "chat");
    assert_eq!(first.attributes["gen_ai.request.model"], "gpt-4o");
    assert_eq!(first.attributes["gen_ai.usage.input_tokens"], 30);
    assert_eq!(first.attributes["gen_ai.usage.output_tokens"], 12);
    assert_eq!(
        first.attributes["gen_ai.response.finish_reasons"],
        json!(["tool-calls"])
    );
    assert_eq!(
        first.attributes["ai.response.msToFirstChunk"], 120.5,
        "what came is kept"
    );
    assert_eq!(
        parsed(first, "gen_ai.input.messages"),
        json!([
            {"role": "system", "parts": [{"type": "text", "content": "You are helpful."}]},
            {"role": "user", "parts": [{"type": "text", "content": "Weather in Paris?"}]},
        ])
    );
    assert_eq!(
        parsed(first, "gen_ai.output.messages"),
        json!([{"role": "assistant", "finish_reason": "tool-calls", "parts": [
            {"type": "tool_call", "id": "call-1", "name": "weather", "arguments": {"city": "Paris"}}
        ]}])
    );
    let last = calls[1];
    assert_eq!(last.attributes["gen_ai.usage.input_tokens"], 50);
    assert_eq!(
        parsed(last, "gen_ai.output.messages")[0]["parts"][0]["content"],
        "It is sunny in Paris."
    );

    let tool = named(&spans, "ai.toolCall");
    assert_eq!(tool.attributes["gen_ai.operation.name"], "execute_tool");
    assert_eq!(tool.attributes["gen_ai.tool.name"], "weather");
    assert_eq!(tool.attributes["gen_ai.tool.call.id"], "call-1");
    assert_eq!(
        parsed(tool, "gen_ai.tool.call.arguments"),
        json!({"city": "Paris"})
    );
    assert_eq!(
        parsed(tool, "gen_ai.tool.call.result"),
        json!({"sky": "sunny"})
    );

    // What every scorer reads of it: the history once, the answer, the first chunk's time.
    let view = TraceView::from_spans(&spans, &ViewOptions::default()).unwrap();
    assert_eq!(view.session, "chat-42");
    assert_eq!(view.question().unwrap().text, "Weather in Paris?");
    assert_eq!(view.final_answer().unwrap().text, "It is sunny in Paris.");
    let users = view.messages.iter().filter(|m| m.role == "user").count();
    assert_eq!(users, 1, "the resent history is not read twice");
    assert_eq!(view.tool_calls[0].name, "weather");
    assert_eq!(view.time_to_first_token_ms(), Some(120.5));
}

#[tokio::test]
async fn bad_payloads_get_an_otlp_status_and_write_nothing() {
    let s = Server::start().await;
    let ingest = token("*", Role::Ingest);

    let (status, content_type, body) = s
        .post(
            "application/x-protobuf",
            Some(&ingest),
            false,
            b"\xff\xff\xff\xff garbage".to_vec(),
        )
        .await;
    assert_eq!(
        (status, content_type.as_str()),
        (400, "application/x-protobuf")
    );
    let rpc = RpcStatus::decode(&body[..]).unwrap();
    assert_eq!(rpc.code, 3, "INVALID_ARGUMENT");
    assert!(
        rpc.message
            .contains("not a protobuf ExportTraceServiceRequest"),
        "{}",
        rpc.message
    );

    let (status, content_type, body) = s
        .post(
            "application/json",
            Some(&ingest),
            false,
            b"{\"resourceSpans\": [".to_vec(),
        )
        .await;
    assert_eq!((status, content_type.as_str()), (400, "application/json"));
    let rpc: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(rpc["code"], 3);
    assert!(
        rpc["message"]
            .as_str()
            .unwrap()
            .contains("not an OTLP/JSON"),
        "{rpc}"
    );

    let (status, content_type, body) = s
        .post(
            "application/json",
            Some(&ingest),
            true,
            b"{\"resourceSpans\": 7}".to_vec(),
        )
        .await;
    assert_eq!(
        (status, content_type.as_str()),
        (400, "application/json"),
        "{}",
        String::from_utf8_lossy(&body)
    );

    let (status, _, body) = s
        .post(
            "application/json",
            Some(&ingest),
            false,
            b"\x1f\x8bnot gzip".to_vec(),
        )
        .await;
    assert_eq!(status, 400, "an unlabelled gzip body is not JSON");
    let _ = body;

    let (status, content_type, body) = s
        .post(
            "text/plain",
            Some(&ingest),
            false,
            request(genai_chat()).encode_to_vec(),
        )
        .await;
    assert_eq!((status, content_type.as_str()), (415, "application/json"));
    let rpc: Value = serde_json::from_slice(&body).unwrap();
    assert!(
        rpc["message"]
            .as_str()
            .unwrap()
            .contains("unsupported Content-Type \"text/plain\""),
        "{rpc}"
    );

    assert!(
        s.archive.keys().is_empty(),
        "nothing was written: {:?}",
        s.archive.keys()
    );
}

#[tokio::test]
async fn bodies_over_the_limits_get_413() {
    let s = Server::with_config(TracesConfig {
        max_body_bytes: 1024,
        max_decoded_bytes: 4096,
        ..TracesConfig::default()
    })
    .await;
    let ingest = token("*", Role::Ingest);
    let (status, _, body) = s
        .post("application/json", Some(&ingest), false, vec![b' '; 2048])
        .await;
    assert_eq!(status, 413);
    let rpc: Value = serde_json::from_slice(&body).unwrap();
    assert!(
        rpc["message"]
            .as_str()
            .unwrap()
            .contains("limit of 1024 bytes"),
        "{rpc}"
    );
    // Compresses to far under 1024 bytes, inflates past 4096.
    let (status, _, body) = s
        .post("application/json", Some(&ingest), true, vec![b' '; 100_000])
        .await;
    assert_eq!(status, 413, "{}", String::from_utf8_lossy(&body));
    assert!(s.archive.keys().is_empty());
}

/// `google.rpc.Status` as the test reads it.
#[derive(Clone, PartialEq, prost::Message)]
struct RpcStatus {
    #[prost(int32, tag = "1")]
    code: i32,
    #[prost(string, tag = "2")]
    message: String,
}

#[tokio::test]
async fn spans_with_bad_ids_are_rejected_as_partial_success() {
    let s = Server::start().await;
    let mut spans = genai_chat();
    let mut zero = spans[1].clone();
    zero.trace_id = vec![0; 16];
    let mut short = spans[1].clone();
    short.span_id = vec![9; 4];
    spans.push(zero);
    spans.push(short);
    let response = s
        .protobuf(&request(spans.clone()), &token("*", Role::Ingest))
        .await;
    let partial = response.partial_success.expect("a partial success");
    assert_eq!(partial.rejected_spans, 2);
    assert!(
        partial
            .error_message
            .contains("spans[2]: trace_id must be 16 bytes"),
        "{}",
        partial.error_message
    );
    assert!(
        partial
            .error_message
            .contains("spans[3]: span_id must be 8 bytes"),
        "{}",
        partial.error_message
    );
    let stored = s
        .archive
        .spans("traces/dt=2025-06-15/tenant=acme/conv-7.jsonl.gz");
    assert_eq!(stored.len(), 3, "the valid spans are stored");

    // The JSON answer says the same, with int64 as a string.
    let body = serde_json::to_vec(&request(spans)).unwrap();
    let (status, _, answer) = s
        .post(
            "application/json",
            Some(&token("*", Role::Ingest)),
            false,
            body,
        )
        .await;
    assert_eq!(status, 200);
    let answer: Value = serde_json::from_slice(&answer).unwrap();
    assert_eq!(answer["partialSuccess"]["rejectedSpans"], "2");
}

#[tokio::test]
async fn spans_of_one_session_over_several_requests_merge_into_one_object() {
    let s = Server::start().await;
    let ingest = token("*", Role::Ingest);
    // An exporter sends children first (they end first), and a trace may cross midnight:
    // the child starts at 00:00:01 on the 16th, its root at 23:59:59 on the 15th.
    let midnight_ms = 12 * 3600 * 1000;
    let child = otlp_span(
        4,
        2,
        1,
        "chat",
        midnight_ms + 1000,
        json!({
            "gen_ai.operation.name": "chat", "session.id": "late",
        }),
    );
    let root = otlp_span(
        4,
        1,
        0,
        "agent",
        midnight_ms - 1000,
        json!({
            "gen_ai.operation.name": "invoke_agent", "session.id": "late",
        }),
    );
    s.protobuf(&request(vec![child.clone()]), &ingest).await;
    assert_eq!(
        s.archive.keys(),
        ["traces/dt=2025-06-16/tenant=acme/late.jsonl.gz"]
    );
    s.protobuf(&request(vec![root]), &ingest).await;
    // Sent again (an exporter's retry): replaced, not duplicated.
    let mut retried = child;
    retried.status = Some(opentelemetry_proto::tonic::trace::v1::Status {
        code: status::StatusCode::Error as i32,
        message: "rate limited".into(),
    });
    s.protobuf(&request(vec![retried]), &ingest).await;

    assert_eq!(
        s.archive.keys(),
        ["traces/dt=2025-06-16/tenant=acme/late.jsonl.gz"]
    );
    let spans = s
        .archive
        .spans("traces/dt=2025-06-16/tenant=acme/late.jsonl.gz");
    assert_eq!(spans.len(), 3, "root, agent and chat, once each");
    assert_root(&spans, "late");
    assert_eq!(
        spans[0].start_time_unix_nano,
        NOON + (midnight_ms - 1000) * MS
    );
    let chat = named(&spans, "chat");
    assert_eq!(chat.status, SpanStatus::Error);
    assert_eq!(chat.attributes["error.type"], "rate limited");
    assert_eq!(
        named(&spans, "agent").parent_span_id.as_deref(),
        Some(spans[0].span_id.as_str())
    );
}

#[tokio::test]
async fn only_roles_that_may_ingest_get_in() {
    let s = Server::start().await;
    let body = request(genai_chat()).encode_to_vec();

    let (status, _, answer) = s
        .post("application/x-protobuf", None, false, body.clone())
        .await;
    assert_eq!(status, 401);
    assert_eq!(
        RpcStatus::decode(&answer[..]).unwrap().code,
        16,
        "UNAUTHENTICATED"
    );

    for role in [Role::Reader, Role::Controller] {
        let (status, content_type, answer) = s
            .post(
                "application/x-protobuf",
                Some(&token("*", role)),
                false,
                body.clone(),
            )
            .await;
        assert_eq!(
            (status, content_type.as_str()),
            (403, "application/x-protobuf"),
            "{role}"
        );
        let rpc = RpcStatus::decode(&answer[..]).unwrap();
        assert_eq!(rpc.code, 7, "PERMISSION_DENIED");
        assert!(
            rpc.message.contains(&format!("role {role} may not ingest")),
            "{}",
            rpc.message
        );
    }
    assert!(s.archive.keys().is_empty());

    // A token for other sessions: its spans are rejected, not stored.
    let response = s
        .protobuf(&request(genai_chat()), &token("other-*", Role::Ingest))
        .await;
    let partial = response.partial_success.expect("a partial success");
    assert_eq!(partial.rejected_spans, 2);
    assert!(
        partial
            .error_message
            .contains("does not cover session \"conv-7\""),
        "{}",
        partial.error_message
    );
    assert!(s.archive.keys().is_empty());

    for role in [Role::Ingest, Role::Writer, Role::Admin] {
        s.protobuf(&request(genai_chat()), &token("*", role)).await;
    }
    assert_eq!(s.archive.keys().len(), 1);
}

#[tokio::test]
async fn spans_naming_an_archived_agentwire_session_are_rejected_and_change_nothing() {
    let s = Server::start().await;
    // What the archiver wrote for the durable session `conv-7`.
    let event = br#"{"type": "message.start", "id": "u1", "role": "user", "ts": 1750000000000}"#;
    let archived = agentwire_trace::build_trace(
        &agentwire_trace::TraceContext {
            tenant: "acme",
            session: "conv-7",
            archived_at_ms: 1_750_000_000_000,
        },
        &[agentwire_trace::SessionEvent {
            offset: "0000000000000000_0000000000000001",
            json: event,
            at_ms: None,
        }],
    );
    let key = "traces/dt=2025-06-15/tenant=acme/conv-7.jsonl.gz";
    let body = Bytes::from(agentwire_trace::encode_jsonl_gz(&archived).unwrap());
    s.archive.put(key, body.clone()).await.unwrap();

    let response = s
        .protobuf(&request(genai_chat()), &token("*", Role::Ingest))
        .await;
    let partial = response.partial_success.expect("a partial success");
    assert_eq!(partial.rejected_spans, 2);
    assert!(
        partial
            .error_message
            .contains("archived trace of an agentwire session"),
        "{}",
        partial.error_message
    );
    assert_eq!(s.archive.get(key).await.unwrap(), Some(body), "unchanged");
}
