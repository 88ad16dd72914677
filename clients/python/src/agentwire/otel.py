"""The agent's OpenTelemetry spans into agentwire's OTLP ingest (`POST /v1/traces`), where
spans naming a session (`gen_ai.conversation.id`) join the session's trace. Needs the
`otel` extra (the OpenTelemetry SDK and its OTLP/HTTP exporter)."""

from __future__ import annotations

from typing import Any, Dict, Optional


def traces_endpoint(base_url: str) -> str:
    return f"{base_url.rstrip('/')}/v1/traces"


def environment(base_url: str, token: Optional[str] = None) -> Dict[str, str]:
    """The `OTEL_EXPORTER_OTLP_TRACES_*` settings for any OTLP/HTTP exporter (set them
    before the agent's OpenTelemetry starts, e.g. `os.environ.update(environment(...))`)."""
    settings = {
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": traces_endpoint(base_url),
        "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "http/protobuf",
    }
    if token is not None:
        settings["OTEL_EXPORTER_OTLP_TRACES_HEADERS"] = f"Authorization=Bearer%20{token}"
    return settings


def span_exporter(base_url: str, token: Optional[str] = None) -> Any:
    """An `OTLPSpanExporter` (protobuf over HTTP) to agentwire; the token needs the
    `ingest` role."""
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    headers = {"authorization": f"Bearer {token}"} if token is not None else {}
    return OTLPSpanExporter(endpoint=traces_endpoint(base_url), headers=headers)


def configure_tracing(
    base_url: str, token: Optional[str] = None, service_name: str = "agent"
) -> Any:
    """Sets a global tracer provider that batches spans to agentwire; returns it (call its
    `shutdown()` before the process exits, so the last batch is sent)."""
    from opentelemetry import trace
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    provider = TracerProvider(resource=Resource.create({"service.name": service_name}))
    provider.add_span_processor(BatchSpanProcessor(span_exporter(base_url, token)))
    trace.set_tracer_provider(provider)
    return provider
