"""The trio under Azure's own names: an HTTP CONNECT proxy (RFC 9110 section 9.3.6) that
tunnels the names Microsoft's SDKs dial by default (login.microsoftonline.com,
*.vault.azure.net) to the trio's HTTPS doors, so that code written for Azure runs with its
defaults given only `HTTPS_PROXY` and the trio's CA (`REQUESTS_CA_BUNDLE`,
`NODE_EXTRA_CA_CERTS`).

It is never an open proxy: it answers CONNECT to port 443 of those names only, each to the
door that serves it, and refuses everything else (another name or port 403, another method
405) without opening any connection. It does not terminate TLS: the client's TLS goes through
to the door, whose certificate (from the development CA) answers to the name, so the
client's own certificate check is what it always is. A head that does not arrive within the
head timeout, and connections beyond the caps, are cut off as at the other listeners.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field

from cmk_trio.rpckit.listeners import ConnectionCount, ConnectionLimits
from cmk_trio.rpckit.server import dialable

log = logging.getLogger(__name__)

MAX_HEAD_BYTES = 8 * 1024
CHUNK = 64 * 1024
DOOR_CONNECT_SECONDS = 5.0


def route_for(routes: Mapping[str, str], authority: str) -> str | None:
    """The door (host:port) for a CONNECT to `authority` (host:443), or None. A route is an
    exact name or `*.suffix`, which stands for one label under the suffix (a vault name)."""
    host, colon, port = authority.rpartition(":")
    if not colon or port != "443":
        return None
    host = host.lower()
    if host in routes:
        return routes[host]
    label, dot, rest = host.partition(".")
    return routes.get(f"*.{rest}") if dot and label else None


@dataclass
class RunningProxy:
    server: asyncio.Server
    port: int
    url: str
    """What HTTPS_PROXY is set to."""
    count: ConnectionCount
    tunnels: set[asyncio.Task[None]] = field(default_factory=set)

    async def stop(self) -> None:
        self.server.close()
        for task in list(self.tunnels):
            task.cancel()
        await asyncio.gather(*self.tunnels, return_exceptions=True)
        await self.server.wait_closed()


async def start_proxy(
    routes: Mapping[str, str], host: str = "127.0.0.1", port: int = 0, limits: ConnectionLimits | None = None
) -> RunningProxy:
    """Listen on host:port (0: a free port) and tunnel CONNECTs to `routes`' doors."""
    count = ConnectionCount("connect proxy", limits or ConnectionLimits())
    tunnels: set[asyncio.Task[None]] = set()

    async def accepted(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = str((writer.get_extra_info("peername") or ("?",))[0])
        if not count.admit(peer):
            writer.close()
            return
        task = asyncio.current_task()
        if task is not None:
            tunnels.add(task)
        try:
            await _serve(reader, writer, routes, count, peer)
        finally:
            count.release(peer)
            if task is not None:
                tunnels.discard(task)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    server = await asyncio.start_server(accepted, host, port, limit=MAX_HEAD_BYTES)
    bound = server.sockets[0].getsockname()[1]
    return RunningProxy(server, bound, f"http://{dialable(host, bound)}", count, tunnels)


async def _answer(writer: asyncio.StreamWriter, status: str, why: str) -> None:
    body = why.encode() + b"\n"
    writer.write(f"HTTP/1.1 {status}\r\nContent-Type: text/plain\r\nContent-Length: {len(body)}\r\n"
                 "Connection: close\r\n\r\n".encode() + body)  # fmt: skip
    with contextlib.suppress(ConnectionError):
        await writer.drain()


async def _serve(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, routes: Mapping[str, str], count: ConnectionCount,
    peer: str,
) -> None:  # fmt: skip
    try:
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), count.limits.head_timeout)
    except TimeoutError:
        count.note_cut_off(peer, "the CONNECT request")
        return
    except (asyncio.LimitOverrunError, asyncio.IncompleteReadError, ConnectionError):
        await _answer(writer, "400 Bad Request", "a CONNECT request's head, of at most 8 KiB")
        return
    method, _, rest = head.decode("latin-1").partition(" ")
    authority, _, version = rest.partition("\r\n")[0].partition(" ")
    if method != "CONNECT" or not version.startswith("HTTP/1."):
        await _answer(writer, "405 Method Not Allowed", "this proxy only tunnels (CONNECT) to the trio's doors")
        return
    door = route_for(routes, authority)
    if door is None:
        await _answer(writer, "403 Forbidden", f"this proxy tunnels only to {', '.join(sorted(routes))} on port 443")
        return
    door_host, _, door_port = door.rpartition(":")
    try:
        upstream_reader, upstream_writer = await asyncio.wait_for(
            asyncio.open_connection(door_host.strip("[]"), int(door_port)), DOOR_CONNECT_SECONDS
        )
    except (OSError, TimeoutError):
        await _answer(writer, "502 Bad Gateway", f"the door for {authority} does not answer")
        return
    writer.write(b"HTTP/1.1 200 Connection Established\r\n\r\n")
    try:
        await writer.drain()
        await _pipe_both_ways(reader, writer, upstream_reader, upstream_writer, count.limits.idle_timeout)
    finally:
        upstream_writer.close()
        with contextlib.suppress(Exception):
            await upstream_writer.wait_closed()


async def _pipe_both_ways(
    a_reader: asyncio.StreamReader, a_writer: asyncio.StreamWriter,
    b_reader: asyncio.StreamReader, b_writer: asyncio.StreamWriter, idle: float,
) -> None:  # fmt: skip
    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, TimeoutError):
            while data := await asyncio.wait_for(reader.read(CHUNK), idle):
                writer.write(data)
                await writer.drain()
        with contextlib.suppress(Exception):
            writer.write_eof()

    tasks = [asyncio.create_task(pipe(a_reader, b_writer)), asyncio.create_task(pipe(b_reader, a_writer))]
    try:
        await asyncio.gather(*tasks)
    finally:
        for task in tasks:
            task.cancel()
