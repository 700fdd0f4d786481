"""The CONNECT proxy that serves Azure's default names: it tunnels CONNECTs to port 443 of
the names it routes, each to its door, and refuses everything else without opening any
connection (it is never an open proxy). Real sockets on ephemeral loopback ports."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator

import pytest

from cmk_trio.rpckit import connect_proxy
from cmk_trio.rpckit.config import ConfigError
from cmk_trio.rpckit.connect_proxy import RunningProxy, parse_routes, route_for, start_proxy
from cmk_trio.rpckit.listeners import ConnectionLimits

ROUTES = {"login.microsoftonline.com": "door-a:1", "*.vault.azure.net": "door-b:2"}


def test_routes_are_exact_names_or_one_label_under_a_suffix_on_port_443():
    assert route_for(ROUTES, "login.microsoftonline.com:443") == "door-a:1"
    assert route_for(ROUTES, "LOGIN.microsoftonline.com:443") == "door-a:1"
    assert route_for(ROUTES, "contoso.vault.azure.net:443") == "door-b:2"
    for refused in ("login.microsoftonline.com:80", "login.microsoftonline.com", "vault.azure.net:443",
                    "a.b.vault.azure.net:443", ".vault.azure.net:443", "example.com:443", "127.0.0.1:443",
                    "management.azure.com:443", "login.microsoftonline.com:443:443"):  # fmt: skip
        assert route_for(ROUTES, refused) is None, refused


@pytest.fixture
async def echo_door() -> AsyncIterator[str]:
    """A stand-in door: echoes what it reads, upper-cased."""

    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(1024):
            writer.write(data.upper())
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(echo, "127.0.0.1", 0)
    try:
        yield f"127.0.0.1:{server.sockets[0].getsockname()[1]}"
    finally:
        server.close()
        await server.wait_closed()


@pytest.fixture
async def proxy(echo_door: str) -> AsyncIterator[RunningProxy]:
    running = await start_proxy({"*.vault.azure.net": echo_door},
                                limits=ConnectionLimits(head_timeout=0.5, max_per_peer=3))  # fmt: skip
    try:
        yield running
    finally:
        await running.stop()


async def _ask(proxy: RunningProxy, head: bytes) -> tuple[bytes, asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
    writer.write(head)
    await writer.drain()
    status = await asyncio.wait_for(reader.readline(), 5)
    return status, reader, writer


async def test_a_routed_name_is_tunnelled_to_its_door(proxy: RunningProxy) -> None:
    status, reader, writer = await _ask(proxy, b"CONNECT contoso.vault.azure.net:443 HTTP/1.1\r\nHost: x\r\n\r\n")
    assert status == b"HTTP/1.1 200 Connection Established\r\n"
    assert await reader.readline() == b"\r\n"
    writer.write(b"hello through\n")
    await writer.drain()
    assert await asyncio.wait_for(reader.readline(), 5) == b"HELLO THROUGH\n"
    writer.close()


@pytest.mark.parametrize(
    ("head", "status"),
    [
        (b"CONNECT example.com:443 HTTP/1.1\r\n\r\n", b"403"),
        (b"CONNECT contoso.vault.azure.net:22 HTTP/1.1\r\n\r\n", b"403"),
        (b"CONNECT 127.0.0.1:443 HTTP/1.1\r\n\r\n", b"403"),
        (b"GET http://contoso.vault.azure.net/keys HTTP/1.1\r\n\r\n", b"405"),
        (b"CONNECT contoso.vault.azure.net:443 SPDY/3\r\n\r\n", b"405"),
        (b"CONNECT " + b"a" * 9000 + b" HTTP/1.1\r\n\r\n", b"400"),
    ],
)
async def test_anything_else_is_refused_without_a_tunnel(proxy: RunningProxy, head: bytes, status: bytes) -> None:
    answer, reader, writer = await _ask(proxy, head)
    assert answer.split()[1] == status, answer
    assert await asyncio.wait_for(reader.read(), 5)  # the reason, then the connection closes
    writer.close()


async def test_a_slow_head_is_cut_off_and_a_peer_holds_at_most_its_cap(proxy: RunningProxy) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
    writer.write(b"CONNECT contoso")
    await writer.drain()
    assert await asyncio.wait_for(reader.read(), 5) == b""  # closed at the head timeout, nothing said
    assert proxy.count.cut_off == 1
    held = [await asyncio.open_connection("127.0.0.1", proxy.port) for _ in range(5)]
    await asyncio.sleep(0.1)
    assert proxy.count.refused == 2
    for _, w in held:
        w.close()


async def test_a_tunnel_closes_soon_after_one_side_finishes(monkeypatch) -> None:
    """A door that never answers the client's EOF does not hold the tunnel until its idle
    timeout: the other side gets LINGER_SECONDS, then both are closed."""
    monkeypatch.setattr(connect_proxy, "LINGER_SECONDS", 0.2)
    held = asyncio.Event()

    async def stubborn(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # until the client's EOF, then neither writes nor closes
        held.set()
        await asyncio.sleep(30)

    door = await asyncio.start_server(stubborn, "127.0.0.1", 0)
    running = await start_proxy({"*.vault.azure.net": f"127.0.0.1:{door.sockets[0].getsockname()[1]}"})
    try:
        status, reader, writer = await _ask(running, b"CONNECT contoso.vault.azure.net:443 HTTP/1.1\r\n\r\n")
        assert status.startswith(b"HTTP/1.1 200") and await reader.readline() == b"\r\n"
        writer.write_eof()
        await asyncio.wait_for(held.wait(), 5)
        assert await asyncio.wait_for(reader.read(), 5) == b""  # closed by the proxy, not in 60 s
        writer.close()
    finally:
        await running.stop()
        door.close()


def test_routes_are_given_as_name_equals_door():
    given = ["login.microsoftonline.com=identity:50054", "*.Vault.Azure.Net=keyvault:50055", "x.example=[::1]:7"]
    assert parse_routes(given) == {"login.microsoftonline.com": "identity:50054",
                                   "*.vault.azure.net": "keyvault:50055", "x.example": "[::1]:7"}  # fmt: skip
    for wrong in (["login.microsoftonline.com"], ["=identity:1"], ["*=identity:1"], ["*.com.*=a:1"],
                  ["localhost=a:1"], ["a.b=identity"], ["a.b=identity:0"], ["a.b=identity:70000"], ["a.b=:1"],
                  ["a.b=a:1", "A.B=b:2"], []):  # fmt: skip
        with pytest.raises(ConfigError):
            parse_routes(wrong)


async def _health(proxy: RunningProxy) -> tuple[bytes, bytes]:
    status, reader, writer = await _ask(proxy, b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
    rest = await asyncio.wait_for(reader.read(), 5)
    writer.close()
    return status, rest.partition(b"\r\n\r\n")[2]


async def test_health_is_serving_while_every_door_answers(proxy: RunningProxy, echo_door: str) -> None:
    assert await _health(proxy) == (b"HTTP/1.1 200 OK\r\n", b"SERVING\n")
    # Another path, or another method on /health, is what it always was: refused.
    answer, _, writer = await _ask(proxy, b"GET /other HTTP/1.1\r\n\r\n")
    assert answer.split()[1] == b"405"
    writer.close()
    with socket.socket() as spare:  # a door that does not answer: a port nobody listens on
        spare.bind(("127.0.0.1", 0))
        silent = f"127.0.0.1:{spare.getsockname()[1]}"
    down = await start_proxy({"*.vault.azure.net": echo_door, "login.microsoftonline.com": silent})
    try:
        status, body = await _health(down)
        assert status == b"HTTP/1.1 503 Service Unavailable\r\n"
        assert body == f"NOT_SERVING: no answer from {silent}\n".encode()
    finally:
        await down.stop()


async def test_a_door_is_reached_at_whichever_of_its_addresses_answers(echo_door: str) -> None:
    """Replicas behind one name: the addresses are tried in the shuffled order, and one that
    does not answer is passed over."""
    with socket.socket() as spare:
        spare.bind(("127.0.0.1", 0))
        gone = ("127.0.0.1", spare.getsockname()[1])
    tried: list[list[tuple[str, int]]] = []

    def dead_first(addresses: list[tuple[str, int]]) -> None:  # (what random.shuffle might have done)
        addresses.insert(0, gone)
        tried.append(list(addresses))

    host, _, port = echo_door.rpartition(":")
    running = await start_proxy({"*.vault.azure.net": f"localhost:{port}"}, shuffle=dead_first)
    try:
        status, reader, writer = await _ask(running, b"CONNECT a.vault.azure.net:443 HTTP/1.1\r\n\r\n")
        assert status == b"HTTP/1.1 200 Connection Established\r\n"
        await reader.readline()
        writer.write(b"replica\n")
        await writer.drain()
        assert await asyncio.wait_for(reader.readline(), 5) == b"REPLICA\n"
        writer.close()
        assert tried[0][0] == gone and (host, int(port)) in tried[0]
    finally:
        await running.stop()
