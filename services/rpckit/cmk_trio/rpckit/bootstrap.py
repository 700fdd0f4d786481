"""One start-up and one teardown for every service: each service's `build_server` fills in
only its own parts between them.

    async with Bootstrap("keyvault", config, clock=clock, key_files=[...]) as boot:
        store = boot.owns(await open_store(...), "close")   # closed at the stop, or if start-up fails
        ... the service's own parts, on boot.clock, boot.metrics, boot.tracing ...
        await boot.serve(register, [pb.DESCRIPTOR, dev_pb.DESCRIPTOR], interceptors)
    server = KeyVaultServer(process=boot.process, ...)

The order is the bootstrap's: tracing, the clock (shiftable with the development clock), the
data directory's claim, then what the service opens (its store, its link to identity, its
channels), then its listener and its metrics; and at the stop the reverse: background tasks
cancelled, what must stop before the listener (event followers, other doors), the listener
drained for `grace` seconds, then everything the service opened, newest first, then tracing
and the claim. If start-up fails at any step, what was opened so far is closed in the same
reverse order, and the claim released.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar

import grpc
from google.protobuf.descriptor import FileDescriptor

from cmk_trio.rpckit.clock import Clock, ShiftableClock, SystemClock
from cmk_trio.rpckit.datadir import DataDirClaim, claim_data_dir
from cmk_trio.rpckit.observe import Metrics
from cmk_trio.rpckit.server import RunningServer, dialable, start_server
from cmk_trio.rpckit.settings import ServiceSettings
from cmk_trio.rpckit.tracing import Tracing

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider

T = TypeVar("T")
Closer = Callable[[], Awaitable[None] | None]


@dataclass
class Process:
    """What every started service holds from the bootstrap (tests reach into it through the
    service's server), and stops in the reverse order of its start."""

    name: str
    config: ServiceSettings
    clock: Clock
    shiftable: ShiftableClock | None
    """The development clock the operator may move (None: it is off)."""
    tracing: Tracing
    metrics: Metrics
    claim: DataDirClaim | None
    running: RunningServer | None = None
    metrics_port: int | None = None
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    before_listener_stops: list[Closer] = field(default_factory=list)
    """What stops while the listener still serves (event followers, the other doors)."""
    _closers: contextlib.AsyncExitStack = field(default_factory=contextlib.AsyncExitStack)

    @property
    def port(self) -> int:
        return self.listener.port

    @property
    def listener(self) -> RunningServer:
        if self.running is None:
            raise RuntimeError("the service is not serving yet")
        return self.running

    @property
    def endpoint(self) -> str:
        return dialable(self.config.host, self.port)

    # (a coroutine's yield and send types are the event loop's business)
    def spawn(self, work: Coroutine[Any, Any, None], name: str) -> None:
        """Run `work` in the background until the stop."""
        self.tasks.append(asyncio.create_task(work, name=f"{self.name}-{name}"))

    async def stop(self, grace: float = 2.0) -> None:
        for task in self.tasks:
            task.cancel()
        for task in self.tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        # Each step runs whatever the one before raised: the store is closed and the data
        # directory released even if a follower or the listener fails to stop.
        try:
            for closer in self.before_listener_stops:
                await _call(closer)
        finally:
            try:
                if self.running is not None:
                    await self.running.stop(grace)
            finally:
                await self._closers.aclose()


async def _call(closer: Closer) -> None:
    result = closer()
    if result is not None:
        await result


class Bootstrap:
    """Start-up in the bootstrap's order (see the module); the `Process` it makes owns what
    was opened once the block ends without an error, and closes it if it does not."""

    def __init__(
        self,
        name: str,
        config: ServiceSettings,
        *,
        key_files: Sequence[Path],
        clock: Clock | None = None,
        tracer_provider: TracerProvider | None = None,
    ) -> None:
        self._name = name
        self._config = config
        self._key_files = key_files
        self._clock = clock
        self._tracer_provider = tracer_provider
        self._process: Process | None = None

    @property
    def process(self) -> Process:
        if self._process is None:
            raise RuntimeError("use the bootstrap in `async with`")
        return self._process

    @property
    def clock(self) -> Clock:
        return self.process.clock

    @property
    def metrics(self) -> Metrics:
        return self.process.metrics

    @property
    def tracing(self) -> Tracing:
        return self.process.tracing

    async def __aenter__(self) -> Bootstrap:
        config = self._config
        tracing = Tracing.from_env(self._name, os.environ, self._tracer_provider)
        shiftable = ShiftableClock(self._clock or SystemClock()) if config.dev_time_control else None
        claim = claim_data_dir(
            config.data_dir,
            self._name,
            database=None if config.database_url else config.database_path,
            key_files=list(self._key_files),
        )
        process = Process(self._name, config, shiftable or self._clock or SystemClock(), shiftable, tracing,
                          Metrics.create(self._name), claim)  # fmt: skip
        process._closers.callback(claim.release)
        process._closers.callback(tracing.shutdown)
        self._process = process
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        if error is not None:
            await self.process.stop(0)

    def owns(self, thing: T, close: str = "close") -> T:
        """`thing`, closed by its `close` method at the stop (after the listener, newest first)."""
        closer = getattr(thing, close)
        if asyncio.iscoroutinefunction(closer):
            self.process._closers.push_async_callback(closer)
        else:
            self.process._closers.callback(closer)
        return thing

    def on_stop(self, closer: Closer) -> None:
        """Call `closer` at the stop, after the listener (newest first)."""
        self.process._closers.push_async_callback(_call, closer)

    def before_listener_stops(self, closer: Closer) -> None:
        """Call `closer` at the stop while the listener still serves (event followers, the
        other doors of the service)."""
        self.process.before_listener_stops.append(closer)

    async def serve(
        self,
        register: Callable[[grpc.aio.Server], None],
        protos: Sequence[FileDescriptor],
        interceptors: Sequence[grpc.aio.ServerInterceptor],
    ) -> RunningServer:
        """The service's gRPC listener for every service of the proto files `protos` (which
        `register` adds), as its settings say (host, port, TLS), with the bootstrap's metrics
        and tracing, and its metrics endpoint when one is asked for."""
        service_names = served_by(protos)
        config, process = self._config, self.process
        process._closers.push_async_callback(process.metrics.close)  # (first of what the service opened to go)
        process.running = await start_server(
            register=register, service_names=service_names, interceptors=interceptors, host=config.host,
            port=config.port, tls=config.tls, metrics=process.metrics, tracing=process.tracing,
        )  # fmt: skip
        if config.metrics_port is not None:
            process.metrics_port = await process.metrics.serve(config.metrics_host, config.metrics_port)
        return process.running


class Served:
    """What a service's server (a dataclass of its own parts that extends this) has from the
    bootstrap: its process's listener, metrics, tracing, claim, tasks, and the stop."""

    process: Process

    @property
    def running(self) -> RunningServer:
        return self.process.listener

    @property
    def port(self) -> int:
        return self.process.port

    @property
    def endpoint(self) -> str:
        return self.process.endpoint

    @property
    def metrics(self) -> Metrics:
        return self.process.metrics

    @property
    def metrics_port(self) -> int | None:
        return self.process.metrics_port

    @property
    def http_url(self) -> str | None:
        """The base URL of the service's HTTPS door, when it serves one (identity's OpenID
        Connect and token endpoints, the key vault's Azure data plane)."""
        return None

    @property
    def metrics_url(self) -> str | None:
        """Where Prometheus scrapes the service, when it serves its metrics."""
        port = self.process.metrics_port
        return None if port is None else f"http://{self.process.config.metrics_host}:{port}/metrics"

    @property
    def tracing(self) -> Tracing:
        return self.process.tracing

    @property
    def claim(self) -> DataDirClaim | None:
        return self.process.claim

    @property
    def tasks(self) -> list[asyncio.Task[None]]:
        return self.process.tasks

    async def stop(self, grace: float = 2.0) -> None:
        """Stop serving and close what the service opened (see the module for the order)."""
        await self.process.stop(grace)


def served_by(protos: Sequence[FileDescriptor]) -> list[str]:
    """The full names of every service the proto files declare."""
    return [service.full_name for proto in protos for service in proto.services_by_name.values()]
