"""A user's script, the CLI and the trio in one trace: with OpenTelemetry's export configured
(the OTLP variables) and the script's context handed down as TRACEPARENT, a command's span is
a child of the script's and the services' spans for its calls are the command's. The spans go
to a real OTLP collector of the test's own (OpenTelemetry's collector service, over gRPC)."""

from __future__ import annotations

import secrets
import subprocess
import time
from collections.abc import Iterator
from concurrent import futures
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import pytest
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2 as otlp
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2_grpc as otlp_grpc
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from tests.e2e.conftest import CMK, Trio, login_operator, service_env

WAIT_S = 30.0
"""How long the spans may take to arrive (exported in batches): a hang guard, not a measure."""


@dataclass
class Collector(otlp_grpc.TraceServiceServicer):
    """OTLP's trace service: keeps every span it is sent, with its service's name."""

    spans: list[tuple[str, Span]] = field(default_factory=list)

    def Export(
        self, request: otlp.ExportTraceServiceRequest, context: grpc.ServicerContext
    ) -> otlp.ExportTraceServiceResponse:
        for resource_spans in request.resource_spans:
            names = [a.value.string_value for a in resource_spans.resource.attributes if a.key == "service.name"]
            for scope in resource_spans.scope_spans:
                self.spans += [(names[0] if names else "", span) for span in scope.spans]
        return otlp.ExportTraceServiceResponse()


@pytest.fixture
def collector() -> Iterator[tuple[Collector, str]]:
    kept = Collector()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    otlp_grpc.add_TraceServiceServicer_to_server(kept, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield kept, f"http://127.0.0.1:{port}"
    finally:
        server.stop(0)


@pytest.fixture
def env(tmp_path: Path, collector: tuple[Collector, str]) -> dict[str, str]:
    """The trio's and the CLI's environment, exporting to the collector in batches of 0.1 s."""
    values = service_env(tmp_path)
    values.update({"OTEL_EXPORTER_OTLP_ENDPOINT": collector[1], "OTEL_EXPORTER_OTLP_INSECURE": "true",
                   "OTEL_BSP_SCHEDULE_DELAY": "100"})  # fmt: skip
    return values


def test_a_scripts_trace_goes_through_the_cli_into_the_trio(trio: Trio, collector: tuple[Collector, str]) -> None:
    kept, _ = collector
    login_operator(trio)
    trace_id, parent_id = secrets.token_hex(16), secrets.token_hex(8)
    done = subprocess.run(
        [*CMK, "--tls-dir", trio.banner["tls_dir"], "-o", "json", "tenant", "list"],
        env={**trio.env, "TRACEPARENT": f"00-{trace_id}-{parent_id}-01"}, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr

    def in_trace() -> list[tuple[str, Span]]:
        return [(service, s) for service, s in kept.spans if s.trace_id.hex() == trace_id]

    deadline = time.monotonic() + WAIT_S
    while not any(service == "identity" for service, _ in in_trace()) and time.monotonic() < deadline:
        time.sleep(0.1)
    spans = in_trace()
    (command,) = [s for service, s in spans if service == "cmk" and s.name == "cmk tenant list"]
    assert command.parent_span_id.hex() == parent_id
    served = [s for service, s in spans if service == "identity" and s.name.endswith("/ListTenants")]
    assert served, [(service, s.name) for service, s in spans]
    calls = {s.span_id for service, s in spans if service == "cmk"}  # the command's span and its calls'
    assert served[0].parent_span_id in calls
