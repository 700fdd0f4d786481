"""The CONNECT proxy that serves Azure's default names: it tunnels CONNECTs to port 443 of
the names it routes, each to its door, and refuses everything else without opening any
connection (it is never an open proxy). Real sockets on ephemeral loopback ports."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from cmk_trio.rpckit.connect_proxy import RunningProxy, route_for, start_proxy
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
