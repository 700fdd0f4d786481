"""Traces across the trio, with OpenTelemetry's maintained gRPC instrumentation: a server
interceptor opens a span per call, continuing the caller's trace from the W3C `traceparent`
metadata, and the interceptors of the channels a service calls its peers on carry it on. A
CMK read that misses the data-key cache is one trace: speech, identity (the managed
identity's token), the key vault (the unwrap).

Off unless asked for, at no cost: with no exporter configured there is no provider, and no
interceptor is added. OTLP export is configured as OpenTelemetry's own variables say
(OTEL_EXPORTER_OTLP_ENDPOINT or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT, and the rest of
OTEL_EXPORTER_OTLP_*); OTEL_SDK_DISABLED=true turns it off again. Tests hand a provider of
their own (an in-memory exporter) to the services they build.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import grpc

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider

# Imports inside functions: OpenTelemetry's SDK, exporter and gRPC instrumentation (and its
# API, which only a traced call needs) are imported when tracing is configured: every service
# and every client (through rpckit.observe) imports this module, and most run untraced.

REQUEST_ID_ATTRIBUTE = "cmk.request_id"
"""The span attribute that carries the call's request id (x-request-id)."""
UNTRACED_SERVICES = ("grpc.health.v1.Health", "grpc.reflection.v1alpha.ServerReflection",
                     "grpc.reflection.v1.ServerReflection")  # fmt: skip
"""Probes every few seconds and tooling: not traced."""
UNTRACED_METHODS = ("WatchEvents", "StreamAuditRecords")
"""Streams open for hours (the event streams replicas and services follow, an audit tail):
their span would be exported only when the stream ends, so every span made under it (a
follower's calls on an event) had a parent no backend ever saw. Not traced: what a follower
does on an event is a trace of its own."""


@dataclass(frozen=True)
class Tracing:
    """The tracing of one service: its provider, or None when nothing is exported."""

    provider: TracerProvider | None = None
    owned: bool = False
    """Whether the provider was made here (and is shut down with the service)."""

    @classmethod
    def from_env(cls, service: str, env: Mapping[str, str], provider: TracerProvider | None = None) -> Tracing:
        """The provider handed in (tests), else an OTLP exporter if the environment
        configures one, else none."""
        if provider is not None:
            return cls(provider)
        if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
            return cls()
        if not (env.get("OTEL_EXPORTER_OTLP_ENDPOINT") or env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")):
            return cls()
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        made = TracerProvider(resource=Resource.create({"service.name": service, "service.namespace": "cmk-trio"}))
        made.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
        return cls(made, owned=True)

    @property
    def enabled(self) -> bool:
        return self.provider is not None

    def server_interceptors(self) -> list[grpc.aio.ServerInterceptor]:
        """The span-per-call interceptor (outermost), or nothing."""
        if self.provider is None:
            return []
        from opentelemetry.instrumentation.grpc import aio_server_interceptor

        made = aio_server_interceptor(tracer_provider=self.provider, filter_=_traced())  # type: ignore[no-untyped-call]
        return [made]

    def client_interceptors(self) -> Sequence[grpc.aio.ClientInterceptor]:
        """What a channel to a peer needs to carry the trace on, or nothing."""
        if self.provider is None:
            return []
        from opentelemetry.instrumentation.grpc import aio_client_interceptors

        made = aio_client_interceptors(tracer_provider=self.provider, filter_=_traced())  # type: ignore[no-untyped-call]
        return list(made)

    def shutdown(self) -> None:
        """Flush what is still batched, if the provider is this service's own."""
        if self.owned and self.provider is not None:
            self.provider.shutdown()


def _traced() -> Any:  # opentelemetry's filter, whose type its package does not export
    from opentelemetry.instrumentation.grpc import filters

    untraced = [filters.service_name(name) for name in UNTRACED_SERVICES]
    untraced += [filters.method_name(name) for name in UNTRACED_METHODS]
    return filters.negate(filters.any_of(*untraced))


def note_request_id(request_id: str) -> None:
    """Put the call's request id on the current span (nothing when no span records)."""
    from opentelemetry import trace

    span = trace.get_current_span()
    if span.is_recording():
        span.set_attribute(REQUEST_ID_ATTRIBUTE, request_id)
