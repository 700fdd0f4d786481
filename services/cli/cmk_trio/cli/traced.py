"""The CLI's own spans. When OpenTelemetry export is configured as it is for the services
(OTEL_EXPORTER_OTLP_ENDPOINT, ...; see rpckit.tracing), each command that calls the trio is a
span named by its command line ("cmk tenant create"), and its calls carry that trace on to the
services: a user's script and the trio share one trace. The script's own trace is continued
when it hands its context down in the environment, as W3C trace context (TRACEPARENT and
TRACESTATE, the names OpenTelemetry's environment carrier uses). Off, at no cost, otherwise."""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager

import grpc

from cmk_trio.rpckit.tracing import Tracing

ENVIRONMENT_CARRIER = {"traceparent": "TRACEPARENT", "tracestate": "TRACESTATE"}
"""W3C trace context's fields, and the variables that carry them into a process."""


@contextmanager
def command_span(name: str, environ: Mapping[str, str] = os.environ) -> Iterator[Sequence[grpc.aio.ClientInterceptor]]:
    """A span for the command `name` while the block runs (exported when it ends), and the
    interceptors its channels need to carry it on; nothing at all when tracing is off."""
    tracing = Tracing.from_env("cmk", environ)
    if tracing.provider is None:
        yield ()
        return
    from opentelemetry import propagate  # (only when tracing is on: cmk starts without OpenTelemetry)

    carrier = {field: environ[variable] for field, variable in ENVIRONMENT_CARRIER.items() if environ.get(variable)}
    tracer = tracing.provider.get_tracer("cmk_trio.cli")
    try:
        with tracer.start_as_current_span(name, context=propagate.extract(carrier)):
            yield tracing.client_interceptors()
    finally:
        tracing.shutdown()
