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

Alone (`cmk serve proxy`, as compose runs it) it answers one more request, `GET /health`: 200
`SERVING` when every door accepts a connection, else 503 `NOT_SERVING` and which door does
not (the readiness a container's health check asks; an answer at all is its liveness). A door
named by a host with several addresses (replicas behind one name) is dialled at one of them
picked at random, then the others in turn, so tunnels spread over the replicas and pass over
one that is gone.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import socket
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from cmk_trio.rpckit.config import ConfigError
from cmk_trio.rpckit.listeners import ConnectionCount, ConnectionLimits
from cmk_trio.rpckit.server import dialable

log = logging.getLogger(__name__)

MAX_HEAD_BYTES = 8 * 1024
CHUNK = 64 * 1024
LINGER_SECONDS = 5.0
"""How long a tunnel stays open after one side of it has finished."""
DOOR_CONNECT_SECONDS = 5.0
HEALTH_PATH = "/health"
DEFAULT_PORT = 50056
"""Where `cmk up` (port_base+6) and compose serve it."""

Shuffle = Callable[[list[tuple[str, int]]], None]
"""How the addresses (host, port) of a door's name are put in the order they are tried, in
place (random.shuffle; tests pass their own)."""


def parse_routes(items: Iterable[str]) -> dict[str, str]:
    """Routes from `NAME=HOST:PORT` items (`cmk serve proxy --route`): NAME an exact host name
    or `*.suffix` (one label under the suffix), the door a host and a port. Raises ConfigError
    naming what is wrong."""
    routes: dict[str, str] = {}
    for item in items:
        name, sep, door = item.partition("=")
        name = name.strip().lower()
        host, colon, port = door.strip().rpartition(":")
        bare = name.removeprefix("*.")
        if not sep or not bare or "*" in bare or "/" in bare or ":" in bare or bare.startswith(".") or "." not in bare:
            raise ConfigError(f"a route is NAME=HOST:PORT with NAME a host name or *.suffix, not {item!r}")
        if not colon or not host or not (port.isascii() and port.isdigit() and 0 < int(port) < 65536):
            raise ConfigError(f"the door of a route is HOST:PORT, not {door!r} (in {item!r})")
        if name in routes:
            raise ConfigError(f"two routes for {name}")
        routes[name] = f"{host}:{int(port)}"
    if not routes:
        raise ConfigError("the proxy needs at least one route (--route NAME=HOST:PORT, or CMK_PROXY_ROUTES)")
    return routes


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
        """Stop listening and cut every tunnel."""
        self.server.close()
        for task in list(self.tunnels):
            task.cancel()
        await asyncio.gather(*self.tunnels, return_exceptions=True)
        await self.server.wait_closed()


async def start_proxy(
    routes: Mapping[str, str],
    host: str = "127.0.0.1",
    port: int = 0,
    limits: ConnectionLimits | None = None,
    *,
    shuffle: Shuffle = random.shuffle,
) -> RunningProxy:
    """Listen on host:port (0: a free port) and tunnel CONNECTs to `routes`' doors."""
    count = ConnectionCount("connect proxy", limits or ConnectionLimits())
    routes = dict(routes)
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
            await _serve(reader, writer, routes, count, peer, shuffle)
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
    peer: str, shuffle: Shuffle,
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
    if method == "GET" and authority == HEALTH_PATH and version.startswith("HTTP/1."):
        await _health(writer, routes, shuffle)
        return
    if method != "CONNECT" or not version.startswith("HTTP/1."):
        await _answer(writer, "405 Method Not Allowed", "this proxy only tunnels (CONNECT) to the trio's doors")
        return
    door = route_for(routes, authority)
    if door is None:
        await _answer(writer, "403 Forbidden", f"this proxy tunnels only to {', '.join(sorted(routes))} on port 443")
        return
    try:
        upstream_reader, upstream_writer = await asyncio.wait_for(_dial(door, shuffle), DOOR_CONNECT_SECONDS)
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


async def _dial(door: str, shuffle: Shuffle) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A connection to `door` (host:port): to one of its name's addresses, tried in the order
    `shuffle` puts them; the last failure is raised when none answers."""
    host, _, port = door.rpartition(":")
    found = await asyncio.get_running_loop().getaddrinfo(host.strip("[]"), int(port), type=socket.SOCK_STREAM)
    addresses = list(dict.fromkeys((str(info[4][0]), int(info[4][1])) for info in found))
    shuffle(addresses)
    failure: OSError = OSError(f"{door}: no address")
    for address, number in addresses:
        try:
            return await asyncio.open_connection(address, number)
        except OSError as exc:
            failure = exc
    raise failure


async def doors_answer(routes: Mapping[str, str], shuffle: Shuffle = random.shuffle) -> dict[str, bool]:
    """Whether each door accepts a connection now (closed at once, before any byte)."""

    async def answers(door: str) -> bool:
        try:
            _, writer = await asyncio.wait_for(_dial(door, shuffle), DOOR_CONNECT_SECONDS)
        except (OSError, TimeoutError):
            return False
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()
        return True

    doors = sorted(set(routes.values()))
    return dict(zip(doors, await asyncio.gather(*(answers(door) for door in doors)), strict=True))


async def _health(writer: asyncio.StreamWriter, routes: Mapping[str, str], shuffle: Shuffle) -> None:
    silent = [door for door, answered in (await doors_answer(routes, shuffle)).items() if not answered]
    if silent:
        await _answer(writer, "503 Service Unavailable", f"NOT_SERVING: no answer from {', '.join(silent)}")
    else:
        await _answer(writer, "200 OK", "SERVING")


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
        # Once one side is done, the other has LINGER_SECONDS to finish (a TLS session does not
        # live on half-closed, and a door that never answers the EOF must not hold the tunnel
        # until its idle timeout).
        _, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        if pending:
            await asyncio.wait(pending, timeout=LINGER_SECONDS)
    finally:
        for task in tasks:
            task.cancel()
