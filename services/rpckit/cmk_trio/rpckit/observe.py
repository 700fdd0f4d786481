"""What operators watch: request ids carried from caller to callee and written in every log
line, and Prometheus metrics per service (requests by method and status, latency, cache hits
and misses, event-stream lag), served on their own HTTP port."""

from __future__ import annotations

import contextlib
import contextvars
import os
import re
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import grpc
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from cmk_trio.rpckit.tracing import note_request_id
from cmk_trio.rpckit.types import Context, Continuation, Handler, Message, Stream, Unary, WrapCache, bound, rewrap

if TYPE_CHECKING:
    from cmk_trio.rpckit.storage import Store

REQUEST_ID_HEADER = "x-request-id"
_REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")


@dataclass
class CallFacts:
    """What the log lines of one call say about it: its request id, and once the token is
    verified, who called (so that a refusal is logged with its caller)."""

    request_id: str
    caller_object_id: str = ""
    caller_tenant_id: str = ""
    refusal_reason: str = ""
    """Set when the call is refused on purpose: the reason its status carries."""
    time_remaining: Callable[[], float | None] = lambda: None
    """How long the caller will still wait for the answer (its gRPC deadline), None if it set none."""


_call: contextvars.ContextVar[CallFacts | None] = contextvars.ContextVar("cmk_call", default=None)


def current_request_id() -> str | None:
    """The request id of the call being served (or made), if any."""
    facts = _call.get()
    return facts.request_id if facts is not None else None


def current_call() -> CallFacts | None:
    """The facts of the call being served, if any."""
    return _call.get()


def time_left() -> float | None:
    """Seconds until the deadline of the call being served, None if it has none (or if no
    call is being served): what a service may spend on a dependency and still answer with
    the cause before its caller gives up and learns only DEADLINE_EXCEEDED."""
    facts = _call.get()
    return facts.time_remaining() if facts is not None else None


def note_caller(object_id: str, tenant_id: str) -> None:
    """Record the verified caller in the facts of the call being served."""
    facts = _call.get()
    if facts is not None:
        facts.caller_object_id, facts.caller_tenant_id = object_id, tenant_id


@contextlib.contextmanager
def serving_call(request_id: str) -> Iterator[None]:
    """The facts of a call served outside gRPC (identity's HTTP endpoints), for its log lines."""
    with bound(_call, CallFacts(request_id)):
        yield


def request_id_from(metadata: Iterable[tuple[str, str | bytes]] | None) -> str:
    """The caller's request id if it sent a well-formed one, else a new one."""
    for key, value in metadata or ():
        if key == REQUEST_ID_HEADER and isinstance(value, str) and _REQUEST_ID.fullmatch(value):
            return value
    return uuid.uuid4().hex


@dataclass
class Metrics:
    """The metrics of one service, in a registry of its own (several services may share a
    process, as in `cmk up`). The gRPC server's are named as go-grpc-prometheus and
    py-grpc-prometheus name them, so that the usual dashboards and alerts read them; a
    refusal's reason is counted beside them, and the process and Python collectors are in."""

    service: str
    registry: CollectorRegistry
    started: Counter
    handled: Counter
    handling: Histogram
    sent: Counter
    received: Counter
    refusals: Counter
    cache: Counter
    event_lag: Gauge
    lease: Gauge
    change_signal: Gauge
    http_requests: Counter

    @classmethod
    def create(cls, service: str) -> Metrics:
        """The service's metrics. The process's own series (process_*, python_*) are added
        when its endpoint is served, by the first service of the process to serve one (see
        `serve`)."""
        registry = CollectorRegistry()
        grpc_labels = ["grpc_service", "grpc_method", "grpc_type"]
        return cls(
            service=service,
            registry=registry,
            started=Counter(
                "grpc_server_started", "RPCs started on the server", grpc_labels, registry=registry
            ),
            handled=Counter(
                "grpc_server_handled", "RPCs completed on the server, whatever their status",
                [*grpc_labels, "grpc_code"], registry=registry,
            ),
            handling=Histogram(
                "grpc_server_handling_seconds",
                "time to answer a unary RPC (streams, open for hours, are not mixed in)", grpc_labels,
                registry=registry,
            ),
            sent=Counter(
                "grpc_server_msg_sent", "messages sent by the server: a unary call's answer, each of a stream's",
                grpc_labels,
                registry=registry,
            ),
            received=Counter(
                "grpc_server_msg_received", "messages received by the server: each call's request",
                grpc_labels,
                registry=registry,
            ),
            refusals=Counter(
                "cmk_server_refusals", "RPCs refused on purpose, by status and our reason (ErrorInfo.reason)",
                ["grpc_service", "grpc_method", "grpc_code", "reason"], registry=registry,
            ),
            cache=Counter(
                "cmk_cache_lookups", "cache lookups, by cache and result", ["service", "cache", "result"],
                registry=registry,
            ),
            event_lag=Gauge(
                "cmk_event_lag_seconds", "age of the newest event applied from a stream", ["service", "stream"],
                registry=registry,
            ),
            lease=Gauge(
                "cmk_lease_held", "1 while this replica holds the lease on background work", ["service", "lease"],
                registry=registry,
            ),
            change_signal=Gauge(
                "cmk_change_signal_current",
                "1 while the change signal from the other replicas is live (0: caches are off)", ["service"],
                registry=registry,
            ),
            http_requests=Counter(
                "cmk_http_requests", "HTTP requests served (identity's discovery, keys and token endpoints), by route,"
                " status and, for a refusal, our reason", ["service", "route", "status", "reason"], registry=registry,
            ),
        )  # fmt: skip

    def watch_store(self, store: Store) -> None:
        """Report the store's lease on background work and whether its change signal is live."""
        self.lease.labels(self.service, "background").set_function(lambda: float(store.leadership().held))
        self.change_signal.labels(self.service).set_function(lambda: float(store.changes.current))

    def hit(self, cache: str, hit: bool) -> None:
        self.cache.labels(self.service, cache, "hit" if hit else "miss").inc()

    def lag(self, stream: str, seconds: float) -> None:
        self.event_lag.labels(self.service, stream).set(max(seconds, 0.0))

    async def serve(self, host: str, port: int) -> int:
        """Serve /metrics over HTTP, a listener with the connection limits of every other
        (ConnectionLimits from the environment; prometheus_client's own server has none, and
        names its version); returns the bound port (port 0 picks a free one)."""
        # Imported here: every client imports this module (client.calls does), and only a
        # service serves metrics; aiohttp's web server would cost each client 0.15 s.
        from aiohttp import web

        from cmk_trio.rpckit.http_listener import GuardedSite  # (it imports rpckit.status, which imports this)
        from cmk_trio.rpckit.listeners import ConnectionLimits  # (the same cycle, through rpckit.status)

        async def exposition(request: web.Request) -> web.Response:
            return web.Response(body=generate_latest(self.registry), headers={"Content-Type": CONTENT_TYPE_LATEST})

        app = web.Application()
        app.router.add_get("/metrics", exposition)
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        site = GuardedSite(
            runner, host, port, limits=ConnectionLimits.from_env(os.environ), listener=f"{self.service} metrics"
        )
        try:
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._http = runner
        _process_series.adopt(self.registry)
        return site.port

    async def close(self) -> None:
        """Stop serving /metrics (if served)."""
        http = getattr(self, "_http", None)
        if http is not None:
            del self._http
            _process_series.release(self.registry)
            await http.cleanup()


class ProcessSeries:
    """The process's own series (process_* from /proc, python_info, python_gc_*), in the
    registry of one metrics endpoint of the process: under `cmk up` the three services share
    a process, and each endpoint exporting them made every sum across targets three times the
    truth. The first endpoint served takes them; once it stops, the next to start serving does."""

    def __init__(self) -> None:
        self._owner: CollectorRegistry | None = None
        self._collectors: list[ProcessCollector | PlatformCollector | GCCollector] = []

    def adopt(self, registry: CollectorRegistry) -> None:
        if self._owner is not None:
            return
        self._owner = registry
        self._collectors = [ProcessCollector(registry=registry), PlatformCollector(registry=registry),
                            GCCollector(registry=registry)]  # fmt: skip

    def release(self, registry: CollectorRegistry) -> None:
        if self._owner is not registry:
            return
        for collector in self._collectors:
            registry.unregister(collector)
        self._owner, self._collectors = None, []


_process_series = ProcessSeries()


class ObserveInterceptor(grpc.aio.ServerInterceptor):
    """Outermost interceptor: sets the call's request id (the caller's, or a new one), sends
    it back, and records the call's status and latency."""

    def __init__(self, metrics: Metrics | None, *, traced: bool = False) -> None:
        self._metrics = metrics
        self._traced = traced
        self._wrapped = WrapCache()

    async def intercept_service(
        self,
        continuation: Continuation,
        handler_call_details: grpc.HandlerCallDetails,
    ) -> Handler | None:
        handler = await continuation(handler_call_details)
        if handler is None:
            return handler
        labels = grpc_labels_of(handler_call_details.method, handler)

        def unary(inner: Unary) -> Unary:
            async def observed(request: Message, context: Context) -> Message:
                # A unary call's answer carries its request id in the trailing metadata (an
                # error's too: ErrorInterceptor adds it to the status it sends). Sending it
                # ahead in initial metadata cost a write of its own: 0.35 ms of CPU per call,
                # 14 % of an unwrap's.
                facts = CallFacts(request_id_from(context.invocation_metadata()), time_remaining=context.time_remaining)
                context.set_trailing_metadata(((REQUEST_ID_HEADER, facts.request_id),))
                if self._traced:
                    note_request_id(facts.request_id)
                started = self._begin_count(labels)
                try:
                    with bound(_call, facts):
                        response = await inner(request, context)
                    if self._metrics is not None:
                        self._metrics.sent.labels(*labels).inc()
                    return response
                finally:
                    self._end(labels, context, facts, started, unary=True)

            return observed

        def stream(inner: Stream) -> Stream:
            async def observed(request: Message, context: Context) -> AsyncIterator[Message]:
                facts = CallFacts(request_id_from(context.invocation_metadata()), time_remaining=context.time_remaining)
                # A stream's id comes first, in the initial metadata: its trailers come only at its end.
                await context.send_initial_metadata(((REQUEST_ID_HEADER, facts.request_id),))
                if self._traced:
                    note_request_id(facts.request_id)
                started = self._begin_count(labels)
                sent = self._metrics.sent.labels(*labels) if self._metrics is not None else None
                try:
                    with bound(_call, facts):
                        async for item in inner(request, context):
                            if sent is not None:
                                sent.inc()
                            yield item
                finally:
                    self._end(labels, context, facts, started, unary=False)

            return observed

        return self._wrapped.get(handler_call_details.method, handler, lambda: rewrap(handler, unary, stream))

    def _begin_count(self, labels: tuple[str, str, str]) -> float:
        if self._metrics is not None:
            self._metrics.started.labels(*labels).inc()
            self._metrics.received.labels(*labels).inc()  # (no method of ours streams its requests)
        return time.perf_counter()

    def _end(
        self, labels: tuple[str, str, str], context: Context, facts: CallFacts, started: float, *, unary: bool
    ) -> None:
        if self._metrics is None:
            return
        code = context.code()
        name = getattr(code, "name", None) or (grpc.StatusCode(code).name if code else "OK")
        self._metrics.handled.labels(*labels, name).inc()
        if unary:
            self._metrics.handling.labels(*labels).observe(time.perf_counter() - started)
        if facts.refusal_reason:
            self._metrics.refusals.labels(labels[0], labels[1], name, facts.refusal_reason).inc()


def grpc_labels_of(method: str, handler: Handler) -> tuple[str, str, str]:
    """grpc_service, grpc_method and grpc_type of a call, as the gRPC Prometheus
    interceptors label them ("/cmk.identity.v1.TokenService/IssueToken" is the service
    cmk.identity.v1.TokenService and the method IssueToken)."""
    service, _, name = method.lstrip("/").rpartition("/")
    if handler.request_streaming:
        kind = "bidi_stream" if handler.response_streaming else "client_stream"
    else:
        kind = "server_stream" if handler.response_streaming else "unary"
    return service, name, kind
