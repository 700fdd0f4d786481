"""An aiohttp application served with connection limits, quiet about malformed requests and
about itself.

aiohttp gives no limit on how long a connection may take to send its request head (after
its first response, its keep-alive timeout closes a connection with no whole request), and
none on connections per peer or in total; it logs each request its parser refuses at ERROR
with a traceback that quotes the offending bytes (an over-long `Authorization: Basic` value,
say), and names itself and Python's version in a `Server` header. Here each accepted
connection passes a `ConnectionCount` first (closed at once beyond its caps), its TLS
handshake is done by us (so that a handshake in progress is counted and timed too), and a
timer closes it unless its first request head is complete within the head timeout; then
aiohttp's own handler takes over, made with the idle timeout as its keep-alive timeout,
logging through a filter that keeps a refused request to one rate-limited line naming the
kind of fault, never the bytes.
"""

from __future__ import annotations

import asyncio
import logging
import os
import ssl
import sys
from collections.abc import MutableMapping
from dataclasses import dataclass
from typing import Any, cast

from aiohttp import hdrs, web
from aiohttp.http_exceptions import HttpProcessingError

from cmk_trio.rpckit.config import TlsConfig
from cmk_trio.rpckit.datadir import StartupError
from cmk_trio.rpckit.listeners import ConnectionCount, ConnectionLimits
from cmk_trio.rpckit.server import dialable, is_loopback
from cmk_trio.rpckit.status import Throttle

log = logging.getLogger(__name__)

SERVER_NAME = "cmk-trio"
"""What the `Server` header says (aiohttp's default names its own and Python's versions)."""
MAX_LINE_BYTES = 8190
"""The longest request line and header field (aiohttp's defaults, stated here on purpose)."""


class _QuietLog(logging.LoggerAdapter):  # type: ignore[type-arg]
    """What aiohttp's request handler logs, for one connection: a request its parser refused
    becomes one line (at most so often) naming the fault's kind and the peer; any other
    error keeps its traceback but is rate-limited too; nothing quotes the request's bytes."""

    def __init__(self, listener: str, peer: str, throttle: Throttle) -> None:
        super().__init__(log, {"listener": listener, "peer": peer})
        self._throttle = throttle

    # (logging.LoggerAdapter's signature, as typeshed writes it)
    def log(self, level: int, msg: object, *args: object, exc_info: Any = None, **kwargs: Any) -> None:
        if exc_info is True:
            exc_info = sys.exc_info()[1]
        exc = exc_info[1] if isinstance(exc_info, tuple) else exc_info
        listener, peer = self.extra["listener"], self.extra["peer"]  # type: ignore[index]
        # A request aiohttp cannot parse, or whose body is not what its headers say (a "gzip" body
        # that is not: read_body has answered it, and aiohttp meets it again as it drains the body).
        # Nothing here may raise: aiohttp closes the connection only after this returns.
        if isinstance(exc, HttpProcessingError | web.RequestPayloadError):
            held = self._throttle.allow((str(listener), type(exc).__name__))
            if held is not None:
                log.info(
                    "malformed HTTP request refused",
                    extra={"listener": listener, "peer": peer, "reason": "REQUEST_MALFORMED",
                           "fault": type(exc).__name__, "code": getattr(exc, "code", 400),
                           "suppressed_before": held},
                )  # fmt: skip
            return
        if level < logging.WARNING:  # aiohttp's debug notes ("client disconnected"), without details
            log.log(level, "%s", msg, extra={"listener": listener, "peer": peer})
            return
        held = self._throttle.allow((str(listener), "error"))
        if held is not None:
            log.log(
                level, "unexpected error in the HTTP server", exc_info=exc,
                extra={"listener": listener, "peer": peer, "suppressed_before": held},
            )  # fmt: skip

    # (logging.LoggerAdapter's signature, as typeshed writes it)
    def process(self, msg: Any, kwargs: MutableMapping[str, Any]) -> tuple[Any, MutableMapping[str, Any]]:
        return msg, kwargs


class _Handler(web.RequestHandler):
    """aiohttp's request handler, answering without naming its version."""

    async def finish_response(
        self, request: web.BaseRequest, resp: web.StreamResponse, start_time: float | None
    ) -> tuple[web.StreamResponse, bool]:
        if not resp.prepared:  # (aiohttp only fills the header in when it is absent)
            resp.headers[hdrs.SERVER] = SERVER_NAME
        return await super().finish_response(request, resp, start_time)


class _Connection(asyncio.Protocol):
    """One accepted connection: counted, timed until its first request head is complete,
    TLS done here when the site has a context, then handed to aiohttp's handler."""

    def __init__(self, site: GuardedSite) -> None:
        self._site = site
        self._raw: asyncio.Transport | None = None
        self._peer = "?"
        self._admitted = False
        self._deadline: asyncio.TimerHandle | None = None
        self._handshake: asyncio.Task[None] | None = None
        self._inner: _Handler | None = None
        self._early = bytearray()
        self._tail = b""
        self._started = False
        """Whether a byte of the request line has come (empty lines before it do not count)."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if self._raw is not None:  # the TLS transport (asyncio's start_tls announces it so)
            self._begin(transport)
            return
        self._raw = cast(asyncio.Transport, transport)
        peer = transport.get_extra_info("peername")
        self._peer = str(peer[0]) if peer else "?"
        if not self._site.count.admit(self._peer):
            self._raw.abort()  # closed at once: no handshake, no buffer, nothing logged per connection
            return
        self._admitted = True
        self._site.connections.add(self)
        loop = asyncio.get_running_loop()
        self._deadline = loop.call_later(self._site.limits.head_timeout, self._too_slow)
        if self._site.ssl_context is None:
            self._begin(transport)
        else:
            self._handshake = loop.create_task(self._secure(self._raw, self._site.ssl_context))

    async def _secure(self, raw: asyncio.Transport, context: ssl.SSLContext) -> None:
        loop = asyncio.get_running_loop()
        try:
            secure = await loop.start_tls(
                raw, self, context, server_side=True,
                # (our own deadline, armed at accept, ends a slow handshake first and counts it)
                ssl_handshake_timeout=2 * self._site.limits.head_timeout,
            )  # fmt: skip
        except (OSError, TimeoutError, ssl.SSLError, ConnectionError):
            # A failed or abandoned handshake: the client learns nothing more from us.
            raw.abort()
            self._release()
            return
        except asyncio.CancelledError:
            raw.abort()
            self._release()
            raise
        if secure is None:  # (the connection was closed during the handshake)
            self._release()
        else:
            self._begin(secure)

    @property
    def waiting(self) -> bool:
        """Whether the connection has not yet sent its first request head."""
        return self._deadline is not None

    def _begin(self, transport: asyncio.BaseTransport) -> None:
        if self._inner is not None:
            return
        self._inner = self._site.handler(self._peer)
        self._inner.connection_made(transport)
        if self._early:
            early, self._early = bytes(self._early), bytearray()
            self._inner.data_received(early)

    def data_received(self, data: bytes) -> None:
        if self._deadline is not None:
            # The first request head ends at an empty line (CRLF CRLF, or a bare LF LF,
            # which lenient parsers accept) after its request line: empty lines before that
            # are skipped by parsers, so they must not stop the clock.
            window = self._tail + data
            if not self._started:
                window = window.lstrip(b"\r\n")
                self._started = bool(window)
            if self._started and (b"\n\r\n" in window or b"\n\n" in window):
                self._deadline.cancel()
                self._deadline = None
            else:
                self._tail = window[-2:]
        if self._inner is None:
            self._early += data
        else:
            self._inner.data_received(data)

    def eof_received(self) -> None:
        if self._inner is not None:
            self._inner.eof_received()

    def pause_writing(self) -> None:
        if self._inner is not None:
            self._inner.pause_writing()

    def resume_writing(self) -> None:
        if self._inner is not None:
            self._inner.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        self._release()
        if self._inner is not None:
            self._inner.connection_lost(exc)

    def _too_slow(self) -> None:
        self._deadline = None
        self._site.count.note_cut_off(self._peer, "request head" if self._inner is not None else "TLS handshake")
        if self._raw is not None:
            self._raw.abort()
        self._release()  # (at once: the handshake in progress may never report the close)

    def _release(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None
        if self._admitted:
            self._admitted = False
            self._site.connections.discard(self)
            self._site.count.release(self._peer)

    def abort(self) -> None:
        """Close the connection now, whatever it is doing."""
        if self._handshake is not None:
            self._handshake.cancel()
        if self._raw is not None:
            self._raw.abort()


class GuardedSite(web.BaseSite):
    """A TCP site of an `AppRunner` whose connections obey `limits` (see the module's
    docstring). `count` holds what it accepted, refused and cut off."""

    def __init__(
        self,
        runner: web.AppRunner,
        host: str,
        port: int,
        *,
        limits: ConnectionLimits,
        listener: str,
        ssl_context: ssl.SSLContext | None = None,
        backlog: int = 128,
    ) -> None:
        super().__init__(runner, ssl_context=None, backlog=backlog)  # (TLS is ours, not the base's)
        self._host, self._port = host, port
        self.ssl_context = ssl_context
        self.limits = limits
        self.count = ConnectionCount(listener, limits)
        self.connections: set[_Connection] = set()
        self._listening: asyncio.Server | None = None
        self._log_throttle = Throttle()
        self._web_server = cast(web.Server, runner.server)  # (the base checked that it is set up)

    @property
    def name(self) -> str:
        scheme = "https" if self.ssl_context is not None else "http"
        return f"{scheme}://{self._host}:{self.port}"

    @property
    def port(self) -> int:
        """The bound port (the asked one before the start)."""
        if self._listening is not None and self._listening.sockets:
            return int(self._listening.sockets[0].getsockname()[1])
        return self._port

    def handler(self, peer: str) -> _Handler:
        """aiohttp's handler for one connection from `peer`."""
        return _Handler(
            self._web_server,
            loop=asyncio.get_running_loop(),
            keepalive_timeout=self.limits.idle_timeout,
            logger=_QuietLog(self.count.listener, peer, self._log_throttle),  # type: ignore[arg-type]
            access_log=None,  # type: ignore[arg-type]
            max_line_size=MAX_LINE_BYTES,
            max_field_size=MAX_LINE_BYTES,
        )

    async def stop(self) -> None:
        """Stop listening, and close the connections aiohttp does not know of yet (in their
        handshake, or before their first request head); the runner closes the others."""
        await super().stop()
        for connection in list(self.connections):
            if connection.waiting:
                connection.abort()

    async def start(self) -> None:
        await super().start()
        loop = asyncio.get_running_loop()
        self._server = self._listening = await loop.create_server(
            lambda: _Connection(self), self._host, self._port, backlog=self._backlog, reuse_address=True
        )


@dataclass
class RunningHttp:
    """An HTTP(S) door that is listening: its port, the base URL clients reach it at, and its
    listener (with its count of what it accepted, refused and cut off)."""

    runner: web.AppRunner
    port: int
    base_url: str
    site: GuardedSite

    async def stop(self) -> None:
        await self.runner.cleanup()


def server_tls(tls: TlsConfig) -> ssl.SSLContext | None:
    """HTTPS with the service's certificate when it has one. No client certificate is asked
    for: an HTTP door's callers authenticate by what they send (a secret, a bearer token)."""
    if tls.cert_file is None or tls.key_file is None:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(tls.cert_file, tls.key_file)
    return context


async def serve_http(
    app: web.Application,
    host: str,
    port: int,
    tls: TlsConfig,
    *,
    listener: str,
    what: str,
    limits: ConnectionLimits | None = None,
) -> RunningHttp:
    """`app` on host:port (0: a free port), over HTTPS when the service has a certificate,
    with `limits` on the connections (by default from the environment: see
    ConnectionLimits.from_env). Plain HTTP only on loopback: `what` the door serves is named
    in the refusal to start. The base URL names the bound port."""
    context = server_tls(tls)
    if context is None and not is_loopback(host):
        raise StartupError(
            f"serving {what} on {host}, which other machines can reach, needs TLS: give the service's"
            " certificate (--tls-cert, --tls-key), or listen on 127.0.0.1"
        )
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    site = GuardedSite(runner, host, port, ssl_context=context, listener=listener,
                       limits=limits or ConnectionLimits.from_env(os.environ))  # fmt: skip
    try:
        await site.start()
    except OSError as exc:
        await runner.cleanup()
        raise StartupError(
            f"cannot listen for HTTP on {host}:{port}: the port is in use, or the address is not this machine's"
            f" ({exc.strerror or exc})"
        ) from None
    bound = runner.addresses[0][1]
    scheme = "https" if context is not None else "http"
    return RunningHttp(runner, bound, f"{scheme}://{dialable(host, bound)}", site)
