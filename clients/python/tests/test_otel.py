"""The agent's spans into agentwire's OTLP ingest, through the OpenTelemetry SDK's own
OTLP/HTTP exporter."""

from __future__ import annotations

import gzip

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from agentwire import otel

from conftest import Server


def test_spans_reach_the_ingest_and_a_bad_token_is_refused(secured: Server, name: str) -> None:
    token = secured.token("--role", "ingest")
    memory = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("test-agent")
    with tracer.start_as_current_span("chat test-model") as span:
        span.set_attribute("gen_ai.operation.name", "chat")
        span.set_attribute("gen_ai.conversation.id", name)
        span.set_attribute("gen_ai.request.model", "test-model")
    spans = memory.get_finished_spans()
    assert len(spans) == 1

    exporter = otel.span_exporter(secured.url, token)
    assert exporter.export(spans) == SpanExportResult.SUCCESS
    refused = otel.span_exporter(secured.url, token + "x")
    assert refused.export(spans) == SpanExportResult.FAILURE

    env = otel.environment(secured.url, token)
    assert env["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"] == f"{secured.url}/v1/traces"
    assert env["OTEL_EXPORTER_OTLP_TRACES_HEADERS"] == f"Authorization=Bearer%20{token}"
    # The span names a conversation, so it joins that session's trace in the archive.
    [archived] = list(secured.data_dir.glob(f"traces/dt=*/tenant=*/{name}.jsonl.gz"))
    text = gzip.decompress(archived.read_bytes()).decode()
    assert format(spans[0].context.span_id, "016x") in text and "test-model" in text
