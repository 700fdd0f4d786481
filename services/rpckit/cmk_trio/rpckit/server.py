"""Server bootstrap shared by the three services: a grpc.aio server with the error and auth
interceptors, gRPC health checking, server reflection, optional TLS or mutual TLS, and a
graceful shutdown on SIGTERM/SIGINT."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import os
import signal
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from cmk_trio.rpckit.channels import KEEPALIVE_TIME_MS, MAX_MESSAGE_BYTES, MAX_TRANSPORT_BYTES
from cmk_trio.rpckit.config import TlsConfig
from cmk_trio.rpckit.datadir import StartupError
from cmk_trio.rpckit.grpc_peers import PeerCap
from cmk_trio.rpckit.listeners import ConnectionLimits
from cmk_trio.rpckit.observe import Metrics, ObserveInterceptor
from cmk_trio.rpckit.tracing import Tracing

log = logging.getLogger(__name__)


LIVENESS = "liveness"
"""The health service name that is SERVING while the process serves at all (a liveness probe);
"" and the service names say whether it is ready (its dependencies current)."""
READINESS_INTERVAL = 0.1


@dataclass
class RunningServer:
    """A started server: the bound port and the handles to stop it."""

    server: grpc.aio.Server
    port: int
    health: health.aio.HealthServicer
    service_names: tuple[str, ...]
    interceptors: tuple[str, ...] = ()
    """The class names of the interceptor chain, outermost first (every service has the same)."""
    peer_cap: PeerCap | None = None
    """Keeps each peer to its share of the connections (gRPC's core caps only the total)."""
    _readiness: asyncio.Task[None] | None = None
    _ready: Callable[[], bool] | None = None
    _reported: bool | None = None

    def track_readiness(self, ready: Callable[[], bool], interval: float = READINESS_INTERVAL) -> None:
        """Report the server (health service "") and each of its services SERVING only while
        `ready()` (a dependency it needs is current), NOT_SERVING otherwise, checked every
        `interval` seconds and whenever `report_readiness` is called. LIVENESS stays
        SERVING while the process serves at all."""
        self._ready = ready

        async def watch() -> None:
            while True:
                await self.report_readiness()
                await asyncio.sleep(interval)

        self._readiness = asyncio.create_task(watch(), name="readiness")

    async def report_readiness(self) -> None:
        """Set the health statuses from `ready()` now (if it changed)."""
        if self._ready is None:
            return
        now = self._ready()
        if now != self._reported:
            serving = health_pb2.HealthCheckResponse
            for name in (*self.service_names, ""):
                await self.health.set(name, serving.SERVING if now else serving.NOT_SERVING)
            self._reported = now

    async def stop(self, grace: float = 5.0) -> None:
        """Report NOT_SERVING, finish calls in flight for up to `grace` seconds, then stop."""
        if self._readiness is not None:
            self._readiness.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._readiness
        await self.health.enter_graceful_shutdown()
        if self.peer_cap is not None:
            await self.peer_cap.stop()
        await self.server.stop(grace)


def server_credentials(tls: TlsConfig) -> grpc.ServerCredentials:
    """Credentials for TLS, or mutual TLS when a client CA is configured."""
    if tls.cert_file is None or tls.key_file is None:
        raise ValueError("TLS needs a certificate file and a key file")
    key_pair = [(tls.key_file.read_bytes(), tls.cert_file.read_bytes())]
    if tls.client_ca_file is None:
        return grpc.ssl_server_credentials(key_pair)
    return grpc.ssl_server_credentials(
        key_pair, root_certificates=tls.client_ca_file.read_bytes(), require_client_auth=True
    )


def dialable(host: str, port: int) -> str:
    """The endpoint a process on this machine dials to reach a server listening on `host`:
    a wildcard (0.0.0.0, ::, or empty: every address, as in a container) is reached on
    loopback, where the certificates name 127.0.0.1; a TLS check against "0.0.0.0" fails."""
    name = host.strip("[]")
    if name in {"", "0.0.0.0", "::"}:  # noqa: S104 (recognising the wildcard, not binding it)
        return f"[::1]:{port}" if name == "::" else f"127.0.0.1:{port}"
    return f"{host}:{port}"


def is_loopback(host: str) -> bool:
    """Whether `host` names this machine's loopback interface only."""
    name = host.strip("[]")
    if name.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False  # a name (or 0.0.0.0-like wildcard) that other machines can reach


def require_safe_listener(host: str, tls: TlsConfig | None) -> None:
    """A listener other machines can reach is mutual TLS, or the service does not start:
    plain TCP (or TLS without client certificates) is for loopback only."""
    if is_loopback(host) or (tls is not None and tls.enabled and tls.client_ca_file is not None):
        return
    raise StartupError(
        f"listening on {host}, which other machines can reach, needs mutual TLS: give --tls-cert, --tls-key and "
        "--tls-client-ca (CMK_TLS_CERT, CMK_TLS_KEY, CMK_TLS_CLIENT_CA), or listen on 127.0.0.1"
    )


async def start_server(
    *,
    register: Callable[[grpc.aio.Server], None],
    service_names: Sequence[str],
    interceptors: Sequence[grpc.aio.ServerInterceptor],
    host: str = "127.0.0.1",
    port: int = 0,
    tls: TlsConfig | None = None,
    metrics: Metrics | None = None,
    tracing: Tracing | None = None,
    connections: ConnectionLimits | None = None,
) -> RunningServer:
    """Start a server with the servicers that `register` adds, plus health and reflection.

    `port=0` picks a free port; the bound one is in the result. Every call gets a request
    id and, with `metrics`, is counted and timed; with `tracing` on, a span of the caller's trace.
    `connections` limits what connections may hold (by default from the environment: see
    ConnectionLimits.from_env).
    """
    require_safe_listener(host, tls)
    traced = tracing is not None and tracing.enabled
    limits = connections or ConnectionLimits.from_env(os.environ)
    chain = [*(tracing.server_interceptors() if tracing else ()), ObserveInterceptor(metrics, traced=traced),
             *interceptors]  # fmt: skip
    server = grpc.aio.server(
        interceptors=chain,
        options=[
            ("grpc.max_receive_message_length", MAX_TRANSPORT_BYTES),  # see MAX_MESSAGE_BYTES
            ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
            ("grpc.so_reuseport", 0),
            # Accept the clients' keepalive pings (every KEEPALIVE_TIME_MS, idle or not)
            # instead of answering them with GOAWAY "too many pings".
            ("grpc.keepalive_permit_without_calls", 1),
            ("grpc.http2.min_recv_ping_interval_without_data_ms", KEEPALIVE_TIME_MS // 2),
            ("grpc.http2.max_ping_strikes", 0),
            # A cap on connections, a time for the handshake, a time an idle one stays open.
            *limits.grpc_options(),
        ],
    )
    register(server)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    names = (*service_names, health.SERVICE_NAME, reflection.SERVICE_NAME)
    reflection.enable_server_reflection(names, server)
    address = f"{host}:{port}"
    try:
        if tls is not None and tls.enabled:
            bound = server.add_secure_port(address, server_credentials(tls))
        else:
            bound = server.add_insecure_port(address)
    except RuntimeError:  # grpc's "Failed to bind": the port is taken, or the address is not ours
        bound = 0
    if bound == 0:
        raise StartupError(f"cannot listen on {address}: the port is in use, or the address is not this machine's")
    await server.start()
    for name in (*service_names, "", LIVENESS):
        await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    peer_cap = PeerCap(f"grpc:{bound}", bound, limits.max_per_peer)
    peer_cap.start()
    return RunningServer(
        server=server,
        port=bound,
        health=health_servicer,
        service_names=tuple(service_names),
        interceptors=tuple(type(i).__name__ for i in chain),
        peer_cap=peer_cap,
    )


@contextmanager
def stop_signals(signals: Sequence[signal.Signals] = (signal.SIGTERM, signal.SIGINT)) -> Iterator[asyncio.Event]:
    """An event set when the process receives one of `signals`.

    Enter it before starting to serve, so that a signal arriving at any moment after the
    server announced itself stops it gracefully instead of killing it.
    """
    loop = asyncio.get_running_loop()
    stopped = asyncio.Event()
    for sig in signals:
        loop.add_signal_handler(sig, stopped.set)
    try:
        yield stopped
    finally:
        for sig in signals:
            loop.remove_signal_handler(sig)


UVLOOP_TLS_HANGS = True
"""Whether uvloop's start_tls may leave a TLS handshake waiting for good, as seen with
identity's HTTPS door (rpckit.http_listener does TLS itself, after counting a connection): in
about half of the processes that ran `cmk serve identity` with a certificate, every HTTPS
handshake timed out, where asyncio's loop never did. A process that serves HTTPS runs on
asyncio's loop until that is understood (`serves_https` in `run`)."""


def run(main: Callable[[], object], *, use_uvloop: bool = True, serves_https: bool = False) -> None:
    """Run an async main function, on uvloop where it is installed (it is faster for gRPC),
    unless the process serves HTTPS (see UVLOOP_TLS_HANGS)."""
    if serves_https and UVLOOP_TLS_HANGS:
        use_uvloop = False
    if use_uvloop:
        try:
            import uvloop  # (an optional dependency: not installed on Windows)
        except ImportError:  # not on this platform: the default loop works, only slower
            pass
        else:
            uvloop.run(main())  # type: ignore[arg-type]
            return
    asyncio.run(main())  # type: ignore[arg-type]
