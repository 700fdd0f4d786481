"""One trace per request across the trio, with OpenTelemetry's gRPC instrumentation: a CMK
read that misses the data-key cache is one trace from speech through identity (the managed
identity's token) to the key vault (the unwrap), W3C trace context on the wire and the request
id on every span. The services' spans go to an in-memory exporter."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from cmk_trio.rpckit.tracing import REQUEST_ID_ATTRIBUTE, Tracing
from tests.speech.cmk_world import World
from tests.waiting import eventually


@pytest.fixture
def span_exporter() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture
def tracer_provider(span_exporter: InMemorySpanExporter) -> Iterator[TracerProvider]:
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(span_exporter))
    yield provider
    provider.shutdown()


def _server_spans(spans: tuple[ReadableSpan, ...], method: str) -> list[ReadableSpan]:
    return [s for s in spans if s.kind is SpanKind.SERVER and s.name.endswith(f"/{method}")]


async def test_a_cmk_read_that_misses_the_data_key_cache_is_one_trace(
    world: World, span_exporter: InMemorySpanExporter
) -> None:
    await world.set_encryption(key_uri=world.key.key_id, key_subscription_id=world.subscription_id)
    # The data key and the managed identity's token, both forgotten: the next read asks
    # identity for a token and the vault to unwrap.
    world.server.data_keys.drop_all()
    assert world.server.identity_gateway is not None
    world.server.identity_gateway.forget_token()
    span_exporter.clear()

    apps = await world.speech.list_applications(world.resource.name)
    assert len(apps.applications) == 3
    health: Any = health_pb2_grpc.HealthStub(world.speech.channel)  # a probe meanwhile: not traced
    assert (await health.Check(health_pb2.HealthCheckRequest())).status == health_pb2.HealthCheckResponse.SERVING

    spans = span_exporter.get_finished_spans()
    (read,) = _server_spans(spans, "ListApplications")
    trace_id = read.context.trace_id
    (token,) = _server_spans(spans, "IssueManagedIdentityToken")
    (unwrap,) = _server_spans(spans, "UnwrapKey")
    assert read.name == "/cmk.speech.v1.ApplicationService/ListApplications"
    assert token.name == "/cmk.identity.v1.TokenService/IssueManagedIdentityToken"
    assert unwrap.name == "/cmk.keyvault.v1.KeyService/UnwrapKey"
    for downstream in (token, unwrap):
        # The same trace, continued from speech's client span for that call (the traceparent
        # it sent), which is a child of speech's server span.
        assert downstream.context.trace_id == trace_id
        assert downstream.parent is not None
        client = next(s for s in spans if s.context.span_id == downstream.parent.span_id)
        assert client.kind is SpanKind.CLIENT and client.parent is not None
        assert client.parent.span_id == read.context.span_id
        assert client.name == downstream.name  # the client span names the method it called
    # The request id is on every server span of the trace: speech passed its own on.
    request_id = read.attributes[REQUEST_ID_ATTRIBUTE] if read.attributes else None
    assert isinstance(request_id, str) and len(request_id) == 32
    in_trace = [s for s in spans if s.kind is SpanKind.SERVER and s.context.trace_id == trace_id]
    assert {s.attributes[REQUEST_ID_ATTRIBUTE] for s in in_trace if s.attributes} == {request_id}
    # Health checks are not traced.
    assert not [s for s in spans if "grpc.health" in s.name]


async def test_no_span_has_a_parent_that_is_never_exported(world: World, span_exporter: InMemorySpanExporter) -> None:
    """What speech does on an event (here: following a key's rotation, a wrap at the vault)
    is a trace of its own, not a child of the event stream's span, which would be exported
    only when the stream ends, hours later (if ever)."""
    versionless = world.key.key_id.rsplit("/", 1)[0]
    await world.set_encryption(key_uri=versionless, key_subscription_id=world.subscription_id)
    newer = await world.vaults.rotate_key(versionless)

    async def followed() -> bool | None:
        resource = await world.speech.get_resource(world.resource.name)
        return True if resource.encryption.key_version == newer.version else None

    await eventually(followed, "the resource following the rotation")
    spans = span_exporter.get_finished_spans()
    assert [s for s in spans if s.kind is SpanKind.CLIENT and s.name.endswith("/WrapKey")], "the follow was traced"
    exported = {s.context.span_id for s in spans}
    orphans = [s.name for s in spans if s.parent is not None and not s.parent.is_remote
               and s.parent.span_id not in exported]  # fmt: skip
    assert orphans == []
    assert not [s for s in spans if s.name.endswith(("/WatchEvents", "/StreamAuditRecords"))]


def test_nothing_is_traced_unless_configured() -> None:
    assert not Tracing.from_env("speech", {}).enabled
    assert Tracing.from_env("speech", {}).server_interceptors() == []
    assert Tracing.from_env("speech", {}).client_interceptors() == []
    disabled = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4317", "OTEL_SDK_DISABLED": "true"}
    assert not Tracing.from_env("speech", disabled).enabled
    exported = Tracing.from_env("speech", {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4317"})
    try:
        assert exported.enabled and exported.owned
        assert exported.provider is not None
        assert exported.provider.resource.attributes["service.name"] == "speech"
    finally:
        exported.shutdown()
